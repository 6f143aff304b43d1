"""``ws://HOST[:8266]`` and ``wss://``: a board's WebREPL, the REPL carried in WebSocket frames.

The board speaks as its ``_webrepl`` module does: ``Password: ``, then ``WebREPL connected`` or
``Access denied``; REPL text both ways in text frames (which carry whatever bytes the board
prints, UTF-8 or not, and whatever bytes we type: the raw REPL and mpkick's binary channel run
over them unchanged); the ``WA`` file opcodes in binary frames. WebREPL takes one client at a
time: a second one is accepted and at once closed, before any prompt.

The library is ``websockets`` (its threaded sync client): it does the handshake, TLS for
``wss://`` and masking, and with ``decode=False`` hands text frames over as bytes without
validating UTF-8. A board sends non-UTF-8 in text frames (MicroPython issues #3034 and #13540),
which clients that validate, as wsproto does for text frames, turn into a closed connection.
The board answers no pings, so keepalive pings are off (they would close a healthy link);
nor does it negotiate compression.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConnectError, DeviceTimeout, PortBusy
from .base import Transport

PASSWORD_PROMPT = b"Password: "
CONNECTED = b"\r\nWebREPL connected\r\n"
DENIED = b"Access denied"
DEFAULT_PORT = 8266
#: Largest frame we send: a board reads frames through a small socket buffer.
MAX_FRAME = 4096
LOGIN_TIMEOUT = 10.0
BUSY_RETRY = 2.0


class Busy(PortBusy):
    """The board's WebREPL has a client already (it takes one at a time)."""

#: Where a password comes from when none was passed: called with the URL, it returns the
#: password or None. The CLI installs its own (``--password``, the config, a prompt).
PasswordSource = Callable[[str], "str | None"]


def _from_environment(_url: str) -> str | None:
    return os.environ.get("MPKICK_PASSWORD")


_source: PasswordSource = _from_environment


def set_password_source(source: PasswordSource) -> None:
    global _source
    _source = source


def normalise(url: str) -> str:
    """``ws://host`` means WebREPL's own port, 8266; any path is the board's business."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConnectError(f"{url}: name the board, as in ws://192.168.1.20 or ws://esp32.local")
    port = parts.port or DEFAULT_PORT
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}{parts.path or '/'}"


class WebSocketTransport(Transport):
    """One WebREPL session, logged in. ``read`` returns the payload of any data frame."""

    link_note = ("WebREPL: file content in the raw REPL's binary channel, in text frames "
                 "(measured faster than WebREPL's WA put/get opcodes: bench/webrepl.py)")

    ends_at_reset = True

    def __init__(self, url: str, password: str | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.name = normalise(url)
        self._url = url
        self._on_close = on_close
        self._closed = False
        self._password = password
        # A board frees its one WebREPL slot a moment after a client leaves (the previous
        # mpkick command, say): a busy answer is tried again for a little while.
        deadline = time.monotonic() + BUSY_RETRY
        while True:
            try:
                self._open()
                return
            except Busy:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def reopen(self, wait: float = 20.0) -> None:
        """Log in again once the board's WebREPL is back (boot.py starts it after a reset)."""
        with contextlib.suppress(Exception):
            self._ws.close()
        deadline = time.monotonic() + wait
        while True:
            try:
                self._open()
                return
            except ConnectError:  # not up yet, or our old connection not yet let go
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

    def _open(self) -> None:
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        self._buf = bytearray()
        options: dict[str, Any] = {}
        if self.name.startswith("wss://"):
            import ssl

            # A board's certificate is its own, self-signed: encryption without a CA to ask.
            ctx = ssl.create_default_context()
            if os.environ.get("MPKICK_WSS_VERIFY", "0") in ("", "0"):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            options["ssl"] = ctx
        options.update(compression=None, ping_interval=None, close_timeout=1, max_size=None,
                       open_timeout=LOGIN_TIMEOUT, user_agent_header=None)
        try:
            try:
                # A connection kept open across calls, not a ``with`` block (newer releases
                # ask for the flag; older ones know no such flag).
                self._ws = connect(self.name, legacy=True, **options)
            except TypeError:
                self._ws = connect(self.name, **options)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise ConnectError(f"cannot reach WebREPL at {self.name}: {exc or type(exc).__name__}"
                               "; is the board on the network, with WebREPL started "
                               "(import webrepl_setup)?") from exc
        try:
            self._password = self._login(self._url, self._password)
        except BaseException:
            with contextlib.suppress(Exception):
                self._ws.close()
            raise

    def _login(self, url: str, password: str | None) -> str:
        seen = self._read_until(PASSWORD_PROMPT, "the password prompt", busy=True)
        if not seen.endswith(PASSWORD_PROMPT):
            raise ConnectError(f"{self.name} is not a WebREPL (it said {bytes(seen[:40])!r})")
        if password is None:
            password = _source(url)
        if not password:
            raise ConnectError(f"WebREPL at {self.name} asks for a password: give --password, "
                               "set MPKICK_PASSWORD, or put password in the project's config")
        self._send(password.encode() + b"\r")
        # The prompt that follows stays in the buffer for the REPL.
        self._read_until(CONNECTED, "WebREPL to accept the password", denied=True)
        return password  # kept in memory only, to log in again after a reset

    def _read_until(self, marker: bytes, what: str, busy: bool = False,
                    denied: bool = False) -> bytes:
        from websockets.exceptions import ConnectionClosed

        deadline = time.monotonic() + LOGIN_TIMEOUT
        while True:
            i = self._buf.find(marker)
            if i >= 0:
                got = bytes(self._buf[:i + len(marker)])
                del self._buf[:i + len(marker)]
                return got
            if denied and DENIED in self._buf:
                raise ConnectError(f"Access denied: WebREPL at {self.name} refused the password")
            left = deadline - time.monotonic()
            if left <= 0:
                raise DeviceTimeout(f"WebREPL at {self.name} did not answer while waiting for "
                                    f"{what}")
            try:
                message = self._ws.recv(left, decode=False)
            except TimeoutError:
                continue
            except ConnectionClosed as exc:
                if denied and DENIED in self._buf:
                    continue
                if busy and not self._buf:
                    raise Busy(f"WebREPL at {self.name} already has a client (it takes "
                                       "one at a time): close the other one (a browser tab, "
                                       "webrepl_cli, another mpkick) and retry") from exc
                raise ConnectError(f"WebREPL at {self.name} closed the connection while "
                                   f"waiting for {what}") from exc
            self._buf += message

    def _send(self, data: bytes) -> None:
        for i in range(0, len(data), MAX_FRAME):
            # Text frames, whatever the bytes: the board's REPL reads text frames, and takes
            # binary ones for its file opcodes.
            self._ws.send(data[i:i + MAX_FRAME], text=True)

    def write(self, data: bytes) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            self._send(data)
        except (ConnectionClosed, OSError) as exc:
            raise ConnectError(f"lost the board on {self.name}: the WebREPL connection "
                               "dropped; run the command again: files are whole, old or new"
                               ) from exc

    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes:
        from websockets.exceptions import ConnectionClosed

        if not self._buf:
            try:
                self._buf += self._ws.recv(max(timeout, 0.0), decode=False)
            except TimeoutError:
                return b""
            except ConnectionClosed as exc:
                raise ConnectError(f"lost the board on {self.name}: the WebREPL connection "
                                   "dropped; run the command again: files are whole, old or "
                                   "new") from exc
            # What else has already arrived comes along (never one frame per read).
            while len(self._buf) < size:
                try:
                    self._buf += self._ws.recv(0, decode=False)
                except (TimeoutError, ConnectionClosed):
                    break
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            ws = getattr(self, "_ws", None)
            if ws is not None:
                ws.close()
        finally:
            if self._on_close is not None:
                self._on_close()
