"""The raw REPL and raw-paste protocol: how code reaches a board and its output comes back.

Reads are in blocks with a deadline, never byte-at-a-time with sleeps. Output arriving while
code runs can be streamed to a callback. A traceback from the board becomes a Python exception:
``OSError`` subclasses with the board's errno for filesystem errors, ``BoardError`` otherwise.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable

from ..errors import (
    BoardError,
    ConnectError,
    DeviceTimeout,
    MpkickError,
    NoAnswer,
    ProtocolError,
)
from ..transport import Transport
from .tracebacks import error_from_traceback

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
#: The raw REPL's banner up to its line end, where a link that is not 8-bit clean shows itself.
RAW_BANNER = RAW_PROMPT[:-2]
SOFT_REBOOT = b"soft reboot\r\n"
#: What a board prints when it powers on (never after a soft reset in the raw REPL).
POWER_ON = re.compile(rb'MicroPython [^\r\n]* on [^\r\n]*\r\nType "help\(\)" for more '
                      rb'information\.\r\n>>> ')
Stream = Callable[[bytes], None]
#: Without raw-paste, code goes out in bursts of this many bytes, this many seconds apart:
#: 6.4 kB/s, which a 64-byte receive buffer kept up with in every trial on the real micro:bit
#: firmware under QEMU (256 bytes every 10 ms lost bytes in a third of them).
PACE_BURST, PACE_GAP = 32, 0.005
#: What a paced host assumes a board without raw-paste can hold unread (pyboard.py's figure).
UNPASTED_BUFFER = 256
#: On a cooked link, how long a CR may wait for the LF the link would send right after it.
CR_GRACE = 0.3

#: Without raw-paste, printable code goes in through this loader (see RawRepl._echo_send).
LOADER = (b"def _mk_r():\n import gc\n s=[]\n while 1:\n  l=input()\n  if l=='#.':break\n"
          b"  s.append(l)\n s='\\n'.join(s)\n gc.collect()\n exec(s,globals())")
LOADER_END = b"#."


def checked(code: bytes) -> bytes:
    """``code`` (ASCII) that runs only if it arrived whole: its byte sum travels with it, and a copy
    that lost a byte raises SyntaxError (which is sent again, slower) instead of defining a
    broken function. For code that nothing checks on the way in: the echo loader itself."""
    return (f"_s={code.decode()!r}\nif sum(map(ord,_s))=={sum(code)}:exec(_s)\n"
            "else:raise SyntaxError('damaged on the way')\ndel _s").encode()


def _loader_ran_out(exc: BoardError) -> bool:
    """True when the echo loader itself ran out of RAM joining or compiling the code (its
    frame is the last): on a 9 kB heap, fragmented, that happens, and nothing has run yet."""
    frames = [ln for ln in exc.traceback.splitlines() if ln.strip().startswith("File ")]
    return exc.exc_type == "MemoryError" and bool(frames) and frames[-1].endswith("in _mk_r")


ECHO_WINDOW = 16
#: Times code damaged on the way (it did not compile) is sent again before the error stands.
DAMAGE_RETRIES = 3
ECHO_WAIT = 2.0  # seconds: an echo takes milliseconds, a lost byte forever
_ECHOABLE = re.compile(rb"[\x20-\x7e\n]*")

class RawRepl:
    """One board's REPL, driven in raw mode."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self._buf = bytearray()
        self.raw_paste: bool | None = None  # None: not probed yet
        self.in_raw = False
        self.interrupted = False  # entering the raw REPL stopped a running program
        self.broken = False
        self.pace = (PACE_BURST, PACE_GAP)  # for code sent without raw-paste
        self._loader = False  # the echo loader is defined on the board (see _echo_send)
        #: The link turns every LF the board sends into CRLF (seen in the raw REPL's banner);
        #: from then on every read deletes the CR it inserted.
        self.cooked = False
        self._held_cr = False  # a CR at the end of a read: is it the link's, before an LF?
        #: The link loses what the board does not read in time (a UART without flow control):
        #: never have more than ``budget`` bytes unread on the way.
        self.paced = transport.overruns
        self.paste_window = 0  # the board's raw-paste window, once it has said

    @property
    def budget(self) -> int | None:
        """How many bytes may be on their way to the board unread; None: no limit (the link
        makes the writer wait). A board with raw-paste names its buffer in its window."""
        if not self.paced:
            return None
        return self.paste_window or UNPASTED_BUFFER

    # ----------------------------------------------------------------- reading

    def read_until(self, marker: bytes, timeout: float, stream: Stream | None = None,
                   what: str = "the board's answer", limit: float | None = None) -> bytes:
        """Bytes up to and including ``marker``. ``timeout`` is the longest silence allowed;
        ``limit``, the longest wait in all, however much the board says meanwhile."""
        deadline = time.monotonic() + timeout
        end = None if limit is None else time.monotonic() + limit
        streamed = 0
        while True:
            i = self._buf.find(marker)
            if i >= 0:
                end = i + len(marker)
                data = bytes(self._buf[:end])
                del self._buf[:end]
                if stream is not None and i > streamed:
                    stream(data[streamed:i])
                return data
            if stream is not None:
                # Pass on what cannot be part of the marker yet.
                safe = len(self._buf) - len(marker) + 1
                if safe > streamed:
                    stream(bytes(self._buf[streamed:safe]))
                    streamed = safe
            remaining = deadline - time.monotonic()
            if end is not None and time.monotonic() >= end:
                raise DeviceTimeout(f"{what} did not come within {limit:g} s")
            if remaining <= 0:
                raise DeviceTimeout(f"the board stopped answering while waiting for {what} "
                                    f"({timeout:g} s of silence); press its reset button or "
                                    "replug it, then retry")
            chunk = self._recv(min(remaining, 0.5))
            if chunk:
                self._take(chunk)
                deadline = time.monotonic() + timeout

    def _recv(self, timeout: float) -> bytes:
        """One read from the link, with a cooked link's CRLF turned back into LF."""
        chunk = self.transport.read(65536, timeout)
        if not self.cooked:
            return chunk
        out = self._uncook(chunk)
        while self._held_cr:
            # The link sends its CR and the LF after it together: a CR followed by silence is
            # the board's own (an ACK for frame 13, say), and the board waits for us.
            more = self.transport.read(65536, CR_GRACE)
            if not more:
                self._held_cr = False
                return out + b"\r"
            out += self._uncook(more)
        return out

    def _uncook(self, chunk: bytes) -> bytes:
        """Undo LF -> CRLF exactly: the link put one CR before every LF, so each CRLF was an
        LF. A CR that ends a read waits for the next byte to tell which it is."""
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        return chunk.replace(b"\r\n", b"\n")

    def _read_raw_prompt(self, timeout: float) -> bytes:
        """The raw REPL's prompt. Its banner ends in CRLF from the firmware itself; a link
        that turns LF into CRLF makes that CR CR LF, and from then on is undone on every read:
        noticing costs no byte more than the prompt."""
        # A program that prints without end is never silent: after a few times the wait for
        # silence (a slow link may still be flushing a long output), the caller interrupts
        # it again.
        seen = self.read_until(RAW_BANNER, timeout, what="the raw REPL prompt",
                               limit=4 * timeout)
        tail = self.read_exact(2, 2)
        if tail == b"\r\n" and not self.cooked:
            tail = b"\n" + self.read_exact(1, 2)  # CR (the link's) LF (the firmware's) >
            self.cooked = True
            self._buf[:] = self._uncook(bytes(self._buf))
        if tail != b"\n>":
            raise DeviceTimeout(f"the raw REPL prompt arrived damaged ({tail!r})")
        return seen + tail

    def _take(self, chunk: bytes) -> None:
        """Buffer ``chunk``; a power-on banner in the raw REPL means the board lost its power
        or crashed: say so now rather than wait out a timeout or type into its fresh REPL."""
        self._buf += chunk
        fresh = max(0, len(self._buf) - len(chunk) - 3)
        if self.in_raw and self._buf.find(b">>> ", fresh) >= 0 and POWER_ON.search(
                self._buf, max(0, fresh - 300)):
            self._buf.clear()
            self.in_raw = False
            raise ConnectError(f"the board on {self.transport.name} restarted in the middle of "
                               "the operation (power loss, reset or crash); run the command "
                               "again: files are whole, old or new")

    def read_exact(self, n: int, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeviceTimeout("the board stopped answering in the middle of a transfer; "
                                    "replug it and retry")
            chunk = self._recv(min(remaining, 0.5))
            if chunk:
                self._take(chunk)
                deadline = time.monotonic() + timeout
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def drain(self, quiet: float = 0.05, limit: float = 1.0) -> bytes:
        """What the board is still saying: until it is quiet for ``quiet`` seconds, but never
        longer than ``limit`` (a program may print forever)."""
        data = bytes(self._buf)
        self._buf.clear()
        end = time.monotonic() + limit
        while time.monotonic() < end:
            chunk = self._recv(quiet)
            if not chunk:
                break
            data += chunk
        return data

    def take(self, timeout: float = 0.0) -> bytes:
        """What is buffered, plus what arrives within ``timeout`` (one read; 0: none)."""
        data = bytes(self._buf)
        self._buf.clear()
        if timeout > 0:
            data += self._recv(timeout)
        return data

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is still to be read."""
        self._buf[:0] = data

    def write(self, data: bytes) -> None:
        try:
            self.transport.write(data)
        except (DeviceTimeout, ConnectError):
            self.broken = True  # a link that refused bytes is not written to again on close
            raise

    # ----------------------------------------------------------------- modes

    def enter_raw(self, soft_reset: bool = False, timeout: float = 3.0) -> None:
        """Stop whatever runs and enter the raw REPL; no soft reset unless asked."""
        seen = bytearray()
        for attempt, wait in enumerate((timeout / 2, timeout / 2, timeout)):
            if attempt == 0:
                # Ctrl-C stops a running program, Ctrl-A asks for the raw REPL; whatever the
                # board prints before the prompt is skipped, so no waiting for silence.
                self.write(b"\r\x03\x03\x01")
            else:
                self.write(b"\r\x03")
                seen += self.drain(0.2)
                self.write(b"\r\x01")
            try:
                seen += self._read_raw_prompt(wait)
                if attempt:
                    # Every Ctrl-A sent gets its own prompt, and the board may only now be
                    # answering the earlier ones (it was busy, or the line slow): swallow
                    # them, or the next command reads a stale prompt as its answer.
                    seen += self._stale_prompts(attempt)
                break
            except DeviceTimeout:
                seen += self._buf
                self._buf.clear()
        else:
            sample = bytes(seen[-60:]).decode("ascii", "replace").strip() or "nothing"
            raise NoAnswer(f"no MicroPython answered on {self.transport.name} (it said: "
                               f"{sample!r}); is the board running MicroPython?")
        self.in_raw = True
        self.interrupted = b"KeyboardInterrupt" in seen
        if soft_reset:
            self.soft_reset()

    def _stale_prompts(self, extra: int) -> bytes:
        """Up to ``extra`` more raw prompts, each within a short wait, once the line is quiet."""
        got = self.drain(0.3, 3.0)
        while got.count(RAW_PROMPT) < extra:
            more = self.drain(0.3, 1.0)
            if not more:
                break
            got += more
        return got

    def soft_reset(self, timeout: float = 10.0) -> None:
        """Soft-reboot from the raw REPL and wait until the board is back in it."""
        self.write(b"\x04")
        self._loader = False
        self.read_until(SOFT_REBOOT, timeout, what="the soft reboot")
        self.read_until(RAW_PROMPT, timeout, what="the raw REPL after reboot")
        self.in_raw = True

    def exit_raw(self) -> None:
        if self.in_raw:
            self.write(b"\x02")
            self.in_raw = False

    # ----------------------------------------------------------------- running code

    def send_code(self, code: bytes, timeout: float = 10.0, retry: bool = True,
                  echo: bool = False) -> None:
        """Hand ``code`` to the raw REPL; it starts running once this returns. ``echo``: on a
        board without raw-paste, send it through the echo loader (mpkick's own code only:
        the loader's frames cost stack a user's program may need)."""
        if self.raw_paste is not False:
            self.write(b"\x05A\x01")
            reply = self.read_exact(2, timeout)
            if reply == b"R\x01":
                self.raw_paste = True
                self._paste(code, timeout)
                return
            if reply[:1] == b"R" and reply != b"R\x00" and retry:
                # A raw-paste answer damaged on the way: Ctrl-C ends raw-paste mode, Ctrl-A
                # gives the raw prompt again; then once more from the start.
                self.enter_raw()
                self.send_code(code, timeout, retry=False)
                return
            if reply != b"R\x00":
                # Firmware older than raw-paste: it took our bytes as input and re-entered.
                self.read_until(RAW_PROMPT[-3:], timeout, what="the raw REPL prompt")
            self.raw_paste = False
        if echo and _ECHOABLE.fullmatch(code):
            self._echo_send(code, timeout)
            return
        self.paced_write(code + b"\x04")
        self.read_until(b"OK", timeout, what="the board to accept the code")

    def _echo_send(self, code: bytes, timeout: float) -> None:
        """Code for a board without raw-paste, with flow control after all: a loader reads it
        line by line with ``input()``, which echoes every byte as it takes it, and the host
        never has more than ``ECHO_WINDOW`` bytes in flight. Nothing runs until the last line
        is in, so a failure on the way leaves nothing half done."""
        if not self._loader:
            for attempt in range(DAMAGE_RETRIES + 1):
                try:
                    self.exec(checked(LOADER))
                    break
                except BoardError as exc:
                    # Defining a function has no side effects: any error there is damage. A
                    # SyntaxError has had its resends in ``exec`` already; others (a name in
                    # the check itself hit) get theirs here.
                    if attempt == DAMAGE_RETRIES or \
                            exc.exc_type in ("SyntaxError", "IndentationError"):
                        raise
                    self.slow_down()
            self._loader = True
        self.write(b"_mk_r()\x04")
        self.read_until(b"OK", timeout, what="the board to accept the code")
        for line in [*code.split(b"\n"), LOADER_END]:
            data = line + b"\r"
            for i in range(0, len(data), ECHO_WINDOW):
                part = data[i:i + ECHO_WINDOW]
                self.write(part)
                echo = part.replace(b"\r", b"\r\n")
                try:
                    got = self.read_until(echo, ECHO_WAIT, what="the board's echo")
                except DeviceTimeout:
                    got = b""
                if got != echo:
                    self.write(b"\x03")  # input() raises KeyboardInterrupt: nothing ran
                    with contextlib.suppress(MpkickError):
                        self.read_until(b"\x04>", 2, what="the raw REPL prompt")
                    raise ProtocolError("the board did not echo what it was sent (bytes lost "
                                        "on the way): run the command again")

    def paced_write(self, data: bytes) -> None:
        """Write at a pace a small receive buffer survives: without raw-paste nothing tells
        the host how much the board can take, and a UART drops what overruns its buffer
        while the REPL is busy (pyboard.py pauses after every 256 bytes for the same reason;
        under QEMU, which feeds the micro:bit's UART at memory speed, 256 was too many)."""
        burst, gap = self.pace
        for i in range(0, len(data), burst):
            if i:
                time.sleep(gap)
            self.write(data[i:i + burst])

    def slow_down(self) -> None:
        """Bytes were lost on the way in: halve the bursts, double the pauses (to a floor)."""
        burst, gap = self.pace
        self.pace = (max(8, burst // 2), min(0.02, gap * 2))

    def _paste(self, code: bytes, timeout: float) -> None:
        window = int.from_bytes(self.read_exact(2, timeout), "little")
        self.paste_window = window
        remain = window
        i = 0
        while i < len(code):
            while remain == 0 or self._buf or self.transport_pending():
                flag = self.read_exact(1, timeout)
                if flag == b"\x01":
                    remain += window
                elif flag == b"\x04":
                    self.write(b"\x04")
                    raise ProtocolError("the board ended the raw-paste transfer early")
                else:
                    raise ProtocolError(f"the board's answer was damaged on the way (a "
                                        f"{flag!r} during raw-paste): run the command again")
            part = code[i:i + remain]
            self.write(part)
            remain -= len(part)
            i += len(part)
        self.write(b"\x04")
        self.read_until(b"\x04", timeout, what="the board to accept the code")

    def transport_pending(self) -> bool:
        chunk = self._recv(0)
        if chunk:
            self._take(chunk)
        return bool(chunk)

    def finish(self, timeout: float | None = 10.0, stream: Stream | None = None) -> bytes:
        """Collect the output of running code; raise what it raised."""
        wait = timeout if timeout is not None else 1e9
        out = self.read_until(b"\x04", wait, stream, what="the code's output")[:-1]
        try:
            # Error output and prompt follow the output at once; silence means a damaged byte.
            err = self.read_until(b"\x04", 2, what="the code's error output")[:-1]
        except DeviceTimeout:
            self.enter_raw()
            raise ProtocolError("the board's answer was damaged on the way (a lost byte): "
                                "run the command again") from None
        try:
            self.read_until(b">", 2, what="the raw REPL prompt")
        except DeviceTimeout:
            self.enter_raw()  # a damaged prompt: find the REPL again rather than fail
        if err:
            raise error_from_traceback(err.decode("utf-8", "replace"))
        return out

    def fail(self, got: bytes, timeout: float = 10.0) -> None:
        """Code meant to answer something else ended instead: raise what the board raised.

        ``got`` is what was read so far; the end-of-output marker in it is where the board's
        error output starts."""
        if b"\x04" not in got:
            raise ProtocolError(f"the board answered {got[:60]!r} instead of the expected reply")
        self.unread(got[got.index(b"\x04") + 1:])
        err = self.read_until(b"\x04", timeout, what="the board's error output")[:-1]
        self.read_until(b">", timeout, what="the raw REPL prompt")
        raise error_from_traceback(err.decode("utf-8", "replace")) if err else \
            ProtocolError("the board ended the transfer without a word")

    def exec(self, code: str | bytes, timeout: float | None = 10.0,
             stream: Stream | None = None, echo: bool = False) -> bytes:
        """Run ``code`` on the board and return what it printed."""
        data = code.encode() if isinstance(code, str) else code
        for attempt in range(DAMAGE_RETRIES + 1):
            if not self.in_raw:
                self.enter_raw()
            try:
                self.send_code(data, echo=echo)
                return self.finish(timeout, stream)
            except BoardError as exc:
                if echo and attempt < DAMAGE_RETRIES and _loader_ran_out(exc):
                    continue  # nothing ran; the loader collects garbage before each try
                # Without raw-paste nothing stops an overrun, and code that lost bytes does
                # not compile: nothing ran, so it can go again, slower.
                if self.raw_paste is not False or attempt == DAMAGE_RETRIES or \
                        exc.exc_type not in ("SyntaxError", "IndentationError"):
                    raise
            except ProtocolError:
                # The echo loader saw bytes go missing before anything ran.
                if not echo or attempt == DAMAGE_RETRIES:
                    raise
                self.enter_raw()
            self.slow_down()
        raise AssertionError("unreachable")
