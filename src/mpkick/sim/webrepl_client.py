"""One WebREPL client of the virtual board: the WebSocket wire, the login, the file opcodes.

What a board's ``_webrepl`` does for the connection it accepted, as a client can see it: the
HTTP upgrade read line by line, frames both ways (a board never masks, a client always does),
``Password: `` with at most nine characters compared and nothing echoed, and the ``WA``
opcodes (put, get in 256-byte pieces with one request each, version) carried out by the board
itself through the server's hidden raw-REPL runs (``webrepl.py``). Each direction goes through
a ``NetLink``, so ``net_latency`` and ``net_rate`` hold for every byte.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .shaping import NetLink

if TYPE_CHECKING:
    from .webrepl import WebReplServer

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WA_HEADER = struct.Struct("<2sBBQLH64s")  # sig, op, flags, offset, size, name length, name
PUT, GET, VERSION = 1, 2, 3
PASSWORD_PROMPT = b"Password: "
CONNECTED = b"\r\nWebREPL connected\r\n>>> "
DENIED = b"\r\nAccess denied\r\n"
PASSWORD_MAX = 9  # the board keeps ten bytes, NUL included
GET_PIECE = 256  # what the board's _webrepl reads per request
PIECE = 16384  # file bytes per hidden exec


def frame(payload: bytes, opcode: int) -> bytes:
    """One unmasked, final frame, as a server sends it."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


class Frames:
    """Client frames from a byte stream: (opcode, payload); continuations take their
    message's opcode."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self._kind = 1

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self.buf += data
        out: list[tuple[int, bytes]] = []
        while True:
            got = self._one()
            if got is None:
                return out
            out.append(got)

    def _one(self) -> tuple[int, bytes] | None:
        b = self.buf
        if len(b) < 2:
            return None
        opcode, masked, n = b[0] & 0x0F, b[1] & 0x80, b[1] & 0x7F
        pos = 2
        if n == 126:
            if len(b) < 4:
                return None
            n, pos = int.from_bytes(b[2:4], "big"), 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, pos = int.from_bytes(b[2:10], "big"), 10
        mask = b""
        if masked:
            mask, pos = bytes(b[pos:pos + 4]), pos + 4
        if len(b) < pos + n:
            return None
        payload = bytes(b[pos:pos + n])
        del b[:pos + n]
        if mask:
            payload = bytes(c ^ mask[i & 3] for i, c in enumerate(payload)) if n < 64 else \
                (int.from_bytes(payload, "big") ^ int.from_bytes(
                    (mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        if opcode in (1, 2):
            self._kind = opcode
        elif opcode == 0:
            opcode = self._kind
        return opcode, payload


def handshake(sock: socket.socket) -> bool:
    """The HTTP upgrade, read as the board reads it: header lines until a blank one."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            return False
        data += more
    key = None
    for line in data.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            key = value.strip()
    if key is None:
        return False
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    sock.settimeout(None)
    # The board's replies go out at once (a piece of a get is one small frame per request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return True


class Client:
    """One logged-in (or logging-in) client: a reader, a writer, and the opcodes' state."""

    def __init__(self, server: WebReplServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.authenticated = False
        self._out: queue.Queue[tuple[float, bytes | None]] = queue.Queue(256)
        self._in: queue.Queue[tuple[float, bytes | None]] = queue.Queue(256)
        self._up = NetLink(server.latency, server.rate)
        self._down = NetLink(server.latency, server.rate)
        self._gone = threading.Event()
        self._typed = bytearray()
        self._bin = bytearray()
        self._put_left = 0
        self._put_buf = bytearray()
        self._get: bytes | None = None  # what a get still has to send
        self.closing = False  # a close is queued behind the last frames
        self.writer = threading.Thread(target=self._writer, daemon=True,
                                       name="mpkick-webrepl-out")
        self.writer.start()
        threading.Thread(target=self._reader, daemon=True, name="mpkick-webrepl-in").start()

    def hang_up(self) -> None:
        if not self._gone.is_set():
            self._gone.set()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.sock.close()
            with contextlib.suppress(queue.Full):
                self._in.put_nowait((0.0, None))
                self._out.put_nowait((0.0, None))

    def send(self, payload: bytes, opcode: int) -> None:
        """Queue a frame (opcode -1: close the connection once what is queued has gone)."""
        if self._gone.is_set():
            return
        data = frame(payload, opcode) if opcode >= 0 else None
        self.closing = self.closing or data is None
        due = self._down.due(len(data) if data else 0)
        while not self._gone.is_set():
            try:
                self._out.put((due, data), timeout=0.2)
                return
            except queue.Full:
                continue

    def _writer(self) -> None:
        while not self._gone.is_set():
            due, data = self._out.get()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if data is None:
                self.hang_up()
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.hang_up()
                return
            self.server.sent += len(data)

    def _reader(self) -> None:
        while not self._gone.is_set():
            try:
                data = self.sock.recv(4096)
            except OSError:
                data = b""
            server = self.server
            if data and server.drop_at is not None and \
                    server.received + len(data) >= server.drop_at:
                server.drop_at = None
                server.log.append(f"dropped the connection after {server.received} bytes")
                self.hang_up()
                return
            server.received += len(data)
            item = (self._up.due(len(data)), data or None)
            while not self._gone.is_set():
                try:
                    self._in.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not data:
                return

    def run(self) -> None:
        self.send(PASSWORD_PROMPT, 1)
        frames = Frames()
        while not self._gone.is_set():
            try:
                due, data = self._in.get(timeout=0.2)
            except queue.Empty:
                if self.authenticated:
                    with contextlib.suppress(OSError):
                        self.server.give_back_when_quiet()
                continue
            if data is None:
                return
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            for opcode, payload in frames.feed(data):
                if opcode == 8:  # close: answer it, then the connection ends
                    self.server.release(self)  # free for the next client before it asks
                    self.send(payload[:2], 8)
                    self.send(b"", -1)
                    return
                if opcode not in (1, 2):
                    continue  # pings and pongs: the board ignores them
                if not self.authenticated:
                    if not self._login(payload):
                        return
                elif opcode == 1:
                    self.server.type(payload)
                else:
                    self._binary(payload)

    def _login(self, payload: bytes) -> bool:
        """Password characters until CR or LF; False: refused, and the connection ends."""
        for i, c in enumerate(payload):
            if c in (10, 13):
                if bytes(self._typed[:PASSWORD_MAX + 1]) != self.server.password:
                    self.server.log.append("access denied")
                    self.send(DENIED, 1)
                    self.send(b"", -1)
                    return False
                self.authenticated = True
                self.server.log.append("client connected")
                self.send(CONNECTED, 1)
                rest = payload[i + 1:]
                if rest:
                    self.server.type(rest)
                return True
            if len(self._typed) < PASSWORD_MAX + 1:
                self._typed.append(c)
        return True

    # ----------------------------------------------------------------- the WA opcodes

    def _binary(self, payload: bytes) -> None:
        self._bin += payload
        while self._bin:
            if self._put_left:
                take = bytes(self._bin[:self._put_left])
                del self._bin[:len(take)]
                self._put_left -= len(take)
                self._put_buf += take
                if len(self._put_buf) >= PIECE or not self._put_left:
                    self._write_piece()
                if not self._put_left:
                    self._finish(self._try(lambda: self.server.run("_mk_wa.close()"))[0])
                continue
            if self._get is not None:
                del self._bin[:1]  # a request for the next piece
                piece, self._get = self._get[:GET_PIECE], self._get[GET_PIECE:]
                self.send(len(piece).to_bytes(2, "little") + piece, 2)
                if not piece:
                    self._get = None
                    self._finish(True)
                continue
            if len(self._bin) < WA_HEADER.size:
                return
            head = WA_HEADER.unpack(bytes(self._bin[:WA_HEADER.size]))
            del self._bin[:WA_HEADER.size]
            self._start(head)

    def _start(self, head: tuple[Any, ...]) -> None:
        sig, op, _flags, _offset, size, name_len, name = head
        if sig != b"WA":
            return
        path = name[:name_len].decode("utf-8", "replace")
        run = self.server.run
        if op == VERSION:
            ok, version = self._try(lambda: _literal(run(
                "import sys\nprint(tuple(sys.implementation.version[:3]))")))
            if ok:
                self.send(bytes(version), 2)
        elif op == PUT:
            ok, _ = self._try(lambda: run(f"_mk_wa = open({path!r}, 'wb')"))
            self._finish(ok)
            if ok and size:
                self._put_left, self._put_buf = size, bytearray()
            elif ok:
                self._finish(self._try(lambda: run("_mk_wa.close()"))[0])
        elif op == GET:
            # A board whose open() fails ends the connection; the status says it here.
            ok, data = self._try(lambda: self._read_file(path))
            if ok:
                self._get = data
            self._finish(ok)

    def _read_file(self, path: str) -> bytes:
        run = self.server.run
        run(f"_mk_wa = open({path!r}, 'rb')")
        data = bytearray()
        while True:
            piece = _literal(run(f"print(repr(_mk_wa.read({PIECE})))"))
            if not piece:
                break
            data += piece
        run("_mk_wa.close()")
        return bytes(data)

    def _write_piece(self) -> None:
        data, self._put_buf = bytes(self._put_buf), bytearray()
        if not data:
            return
        if self.server.has_binascii:
            code = f"import binascii\n_mk_wa.write(binascii.a2b_base64({base64.b64encode(data)!r}))"
        else:
            code = f"_mk_wa.write({data!r})"
        self._try(lambda: self.server.run(code))

    def _try(self, action: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            return True, action()
        except (OSError, ValueError, SyntaxError) as exc:
            self.server.log.append(f"file operation failed: {exc}")
            return False, None

    def _finish(self, ok: bool) -> None:
        self.send(b"WB" + (0 if ok else 1).to_bytes(2, "little"), 2)


def _literal(data: bytes) -> Any:
    return ast.literal_eval(data.decode("utf-8", "surrogateescape").strip())
