"""The virtual board on the network: WebREPL on 127.0.0.1, as a board's ``_webrepl`` serves it.

The unix port has no ``_webrepl`` module, so this server plays its part, byte for byte where
a client can tell: the handshake (a second client is accepted, then closed at once, before any
prompt); ``Password: `` (at most 9 characters are compared, nothing is echoed, output is held
back until the password is right); ``\\r\\nWebREPL connected\\r\\n>>> `` or
``\\r\\nAccess denied\\r\\n`` and a closed socket; REPL text both ways in text frames, carrying
whatever bytes the board prints (not UTF-8 either); binary frames for the ``WA`` opcodes (put,
get in 256-byte pieces, one round trip each, version), acting on the board's own flash. A soft
or hard reset closes the connection, as the board's reboot does. Pings are not answered.

The server owns the board's UART (the board's REPL has one terminal here: WebREPL). File
opcodes are carried out by the board itself, as ``_webrepl`` does them in the REPL's input path:
while the board waits at a prompt, the server runs them through the raw REPL and shows the
client none of it. While a program runs, a file opcode waits, as on a board.

``net_latency`` delays every byte each way; ``net_rate`` caps each direction's bytes a second,
queueing what exceeds it, as a WiFi link does; ``net_drop_at`` drops the connection once that
many bytes came from clients.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import queue
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ConnectError
from ..transport.websocket import WebSocketTransport
from .options import SimOptions
from .shaping import NetLink
from .supervisor import VirtualBoard

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WA_HEADER = struct.Struct("<2sBBQLH64s")  # sig, op, flags, offset, size, name length, name
PUT, GET, VERSION = 1, 2, 3
PASSWORD_PROMPT = b"Password: "
CONNECTED = b"\r\nWebREPL connected\r\n>>> "
DENIED = b"\r\nAccess denied\r\n"
PASSWORD_MAX = 9  # the board keeps ten bytes, NUL included
GET_PIECE = 256  # what the board's _webrepl reads per request
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY = b">>> "
OP_TIMEOUT = 30.0
_WRITES = re.compile(rb"(\r\n|>>> |\.\.\. )")
PIECE = 16384  # file bytes per hidden exec
BOOT_WAIT = 10.0  # longest a new client waits for a rebooting board


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


class _Frames:
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


class WebReplServer:
    """WebREPL for one virtual board, on 127.0.0.1:``port`` (0: a free port, see ``port``)."""

    def __init__(self, board: VirtualBoard, uart: socket.socket, port: int = 8266,
                 password: str = "mpkick", latency: float = 0.0, rate: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.board = board
        self.tls = tls  # wss://, as webrepl.start(ssl_context=...) serves it
        self.uart = uart
        self.password = password.encode()[:PASSWORD_MAX]
        self.latency, self.rate = latency, rate
        self._listen = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listen.getsockname()[1]
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._client: _Client | None = None
        self._tail = b""  # the end of what the board printed, to see it wait at a prompt
        self._typed = False  # the client typed since the board's last prompt
        self._capture: bytearray | None = None  # output of an opcode's hidden exec
        self._borrowed = False  # a hidden exec left the friendly REPL in the raw one
        self._binascii: bool | None = None
        self._reboots = board.counters.reboots
        self.refused = 0  # second clients turned away
        self.log: list[str] = []  # what happened, for tests (never the password)
        self.drop_at: int | None = None  # client bytes after which the link drops
        self.received = 0  # bytes from clients, WebSocket framing included
        self.sent = 0  # bytes to clients
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True,
                                          name="mpkick-webrepl-accept"),
                         threading.Thread(target=self._uart_loop, daemon=True,
                                          name="mpkick-webrepl-uart")]
        for t in self._threads:
            t.start()

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listen.close()
        client = self._client
        if client is not None:
            client.hang_up()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(2)

    def release(self, client: _Client) -> None:
        """The client has gone (or said goodbye): the next one may log in."""
        with self._cond:
            if self._client is client:
                self._client = None

    def drop(self) -> None:
        """The WiFi goes: the client's connection ends without a word."""
        client = self._client
        if client is not None:
            self.log.append("dropped the connection")
            client.hang_up()

    # ----------------------------------------------------------------- the board's terminal

    def _uart_loop(self) -> None:
        self.uart.settimeout(0.2)
        while not self._stop.is_set():
            try:
                data = self.uart.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            with self._cond:
                if self._capture is not None:
                    self._capture += data
                else:
                    self._tail = (self._tail + data)[-64:]
                    if self._tail.endswith(FRIENDLY) or self._tail.endswith(RAW_PROMPT) or \
                            self._tail.endswith(b"\x04>"):
                        self._typed = False
                    client = self._client
                    if client is not None and client.authenticated:
                        for piece in self._pieces(data):
                            client.send(piece, 1)
                self._cond.notify_all()
            if self.board.counters.reboots != self._reboots:
                # A reboot closes the board's sockets: the client hears the board go.
                self._reboots = self.board.counters.reboots
                with self._cond:
                    self._tail = b""
                    self._borrowed = False
                client = self._client
                if client is not None:
                    client.send(b"", -1)

    def _pieces(self, data: bytes) -> list[bytes]:
        """Text frames cut where a board's REPL writes: each line end and each prompt is a
        write of its own there, and so a frame (clients such as ``webrepl`` 0.2.0 wait for a
        frame that is just ``>>> ``). Raw-REPL output goes as it comes."""
        if self.board.raw_mode:
            return [data]
        return [p for p in _WRITES.split(data) if p]

    def type(self, data: bytes) -> None:
        """Text from the client, for the board's REPL."""
        with self._cond:
            if self._borrowed and self._idle():
                self._give_back()
            self._typed = True
        self.uart.sendall(data)

    def _idle(self) -> bool:
        return not self._typed and (self._tail.endswith(FRIENDLY) or
                                    self._tail.endswith(RAW_PROMPT) or
                                    self._tail.endswith(b"\x04>"))

    def _wait(self, test: Callable[[], bool], what: str) -> None:
        if not self._cond.wait_for(lambda: test() or self._stop.is_set(), OP_TIMEOUT) or \
                self._stop.is_set():
            raise OSError(f"the board did not {what}")

    def run(self, code: str) -> bytes:
        """Run ``code`` on the board through its raw REPL, unseen by the client; its output.

        Waits for the board to sit at a prompt. From the friendly REPL, the board is left in
        the raw one (borrowed) until the client types again: a run of opcodes pays the mode
        change once."""
        with self._cond:
            self._wait(self._idle, "come back to its prompt")
            if not self._borrowed and self._tail.endswith(FRIENDLY):
                self._borrowed = True
                self._capture = bytearray()
                self.uart.sendall(b"\x01")
                self._wait(lambda: self._capture is not None and
                           self._capture.endswith(RAW_PROMPT), "enter its raw REPL")
            self._capture = bytearray()
            self.uart.sendall(code.encode() + b"\x04")
            self._wait(lambda: self._capture is not None and
                       self._capture.count(b"\x04") >= 2 and self._capture.endswith(b">"),
                       "finish a file operation")
            done = bytes(self._capture)
            self._capture = None
        body = done[done.find(b"OK") + 2:] if b"OK" in done else done
        out, _, err = body.partition(b"\x04")
        err = err.rpartition(b"\x04")[0]
        if err.strip():
            raise OSError(err.decode("utf-8", "replace").strip().splitlines()[-1])
        return out

    def _give_back(self) -> None:
        """Return the borrowed friendly REPL (its fresh banner is not shown: the client
        already has its prompt). Called with the condition held."""
        self._borrowed = False
        self._capture = bytearray()
        self.uart.sendall(b"\x02")
        self._wait(lambda: self._capture is not None and self._capture.endswith(FRIENDLY),
                   "come back to its friendly REPL")
        self._capture = None

    def give_back_when_quiet(self) -> None:
        with self._cond:
            if self._borrowed and self._idle():
                self._give_back()

    @property
    def has_binascii(self) -> bool:
        if self._binascii is None:
            self._binascii = self.run(
                "try:\n import binascii\n print(1)\nexcept ImportError:\n print(0)"
            ).strip() == b"1"
        return self._binascii

    # ----------------------------------------------------------------- clients

    def _accept_loop(self) -> None:
        # A board is up long before anyone connects: clients wait out its boot, unseen.
        with self._cond:
            self._cond.wait_for(lambda: self._tail.endswith(FRIENDLY) or self._stop.is_set(),
                                OP_TIMEOUT)
        while not self._stop.is_set():
            try:
                sock, _ = self._listen.accept()
            except OSError:
                break
            threading.Thread(target=self._serve, args=(sock,), daemon=True,
                             name="mpkick-webrepl-client").start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(10)
                sock = self.tls.wrap_socket(sock, server_side=True)
            if not _handshake(sock):
                sock.close()
                return
        except OSError:
            sock.close()
            return
        with self._cond:
            busy = self._client is not None
            if not busy:
                self._client = client = _Client(self, sock)
        if busy:
            self.refused += 1
            self.log.append("concurrent connection rejected")
            sock.close()
            return
        # A board serves WebREPL once boot.py has started it: after its reset, not during.
        deadline = time.monotonic() + BOOT_WAIT
        while self.board.booting and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)
        try:
            client.run()
        finally:
            if client.closing:
                client.writer.join(5)  # the last words (Access denied) go out first
            client.hang_up()
            self.release(client)
            with contextlib.suppress(OSError):
                self.give_back_when_quiet()


def _handshake(sock: socket.socket) -> bool:
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


class _Client:
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
        frames = _Frames()
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


class SimWebSocketTransport(WebSocketTransport):
    """``sim://...?webrepl=PORT``: a virtual board started here, reached over its WebREPL."""

    def __init__(self, board: VirtualBoard, server: WebReplServer, password: str) -> None:
        self.board = board
        self.server = server
        super().__init__(server.url, password, on_close=self._power_off)

    def _power_off(self) -> None:
        self.server.close()
        self.board.close()

    @property
    def counters(self) -> object:
        return self.board.counters


def serve(options: SimOptions) -> tuple[VirtualBoard, WebReplServer]:
    """Boot a virtual board whose only terminal is WebREPL on 127.0.0.1."""
    tls = None
    if options.tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_cert_chain(options.tls)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"sim:// tls={options.tls}: not a PEM file with a certificate "
                               f"and its key ({exc})") from exc
    board = VirtualBoard(options)
    uart = board.start("socket")
    assert isinstance(uart, socket.socket)
    try:
        server = WebReplServer(board, uart, options.webrepl or 0, options.password,
                               options.net_latency, options.net_rate, tls)
    except OSError as exc:
        board.close()
        raise ConnectError(f"cannot serve WebREPL on 127.0.0.1:{options.webrepl}: {exc}") \
            from exc
    server.drop_at = options.net_drop_at
    return board, server


def open_networked(options: SimOptions) -> SimWebSocketTransport:
    board, server = serve(options)
    try:
        return SimWebSocketTransport(board, server, options.password)
    except BaseException:
        server.close()
        board.close()
        raise
