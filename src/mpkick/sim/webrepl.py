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

This module is the server: the board's terminal, the hidden runs that carry out file opcodes,
and accepting one client at a time; each client's connection is ``webrepl_client.py``'s.
``net_latency`` delays every byte each way; ``net_rate`` caps each direction's bytes a second,
queueing what exceeds it, as a WiFi link does; ``net_drop_at`` drops the connection once that
many bytes came from clients.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable

from ..errors import ConnectError
from ..transport.websocket import WebSocketTransport
from .options import SimOptions
from .supervisor import VirtualBoard
from .webrepl_client import PASSWORD_MAX, Client, handshake

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY = b">>> "
OP_TIMEOUT = 30.0
_WRITES = re.compile(rb"(\r\n|>>> |\.\.\. )")
BOOT_WAIT = 10.0  # longest a new client waits for a rebooting board


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
        self._client: Client | None = None
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

    def release(self, client: Client) -> None:
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
            if not handshake(sock):
                sock.close()
                return
        except OSError:
            sock.close()
            return
        with self._cond:
            busy = self._client is not None
            if not busy:
                self._client = client = Client(self, sock)
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
