"""What the virtual board prints, made to read as a board's output.

The unix port's output differs from a board's in what it shows, not in what it means: it
writes a bare LF where a board's text output writes CRLF, and the virtual board's firmware
prints marks (set-up done; back from a soft reboot in the raw REPL) that no board prints. This
module reads the port's output once, as it passes: it follows the REPL's mode from the banners,
hides the marks, and turns LF into CRLF in the friendly REPL only (in the raw REPL tools
exchange binary data through ``sys.stdout.buffer``, and hosts accept either line ending).
"""

from __future__ import annotations

from .process import TOKEN_BYTES, firmware_marks

RAW_MARK = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_MARK = b'Type "help()" for more information.'
PROMPT = b">>> "
KEEP = max(len(m) for m in (RAW_MARK, FRIENDLY_MARK, *firmware_marks("0" * 2 * TOKEN_BYTES)))


def crlf(data: bytes, prev: int) -> bytes:
    """Bare LF -> CRLF; ``prev`` is the byte before ``data`` (a CR there already pairs an LF)."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if prev == 13 and data[:1] == b"\n":
        out = out[1:]
    return out


class Console:
    """The board's REPL as its output shows it: booting or not, raw or friendly.

    ``armed``: the firmware's set-up is done, so a Ctrl-C may interrupt. ``expect_banner``: the
    last byte the board was given was Ctrl-A or Ctrl-B, so a banner that follows is an answer.
    """

    def __init__(self) -> None:
        self.raw_mode = False
        self.booting = True
        self.armed = False  # no SIGINT before the firmware's ready mark
        self.expect_banner = False
        self._hiding = False
        self._scan = b""
        self._last_out = 10
        self._ready_mark, self._hide_mark = firmware_marks("-")  # set at each boot

    def boot(self, raw: bool, marks: tuple[bytes, bytes]) -> None:
        """A new boot of the port, which prints this boot's ``(ready, hide)`` marks."""
        self._ready_mark, self._hide_mark = marks
        self.booting = True
        self.armed = False
        self._hiding = False
        self.raw_mode = raw
        self._scan = b""

    def shape(self, data: bytes) -> tuple[bytes, int]:
        """What the host sees of ``data``, and how many times the board must be put back into
        the raw REPL (it was in it before a soft reboot, as a board stays).

        ``_scan`` holds the tail of what was already handled, so a marker split across two reads
        is still seen; a marker counts once, when its last byte arrives.
        """
        out = bytearray()
        rejoin = 0
        buf = self._scan + data
        pos = len(self._scan)
        while pos < len(buf):
            if self._hiding:
                i = buf.find(PROMPT, max(0, pos - len(PROMPT) + 1))
                if i < 0:
                    pos = len(buf)
                    break
                pos = i + len(PROMPT)
                self._hiding = False
                self.booting = False
                rejoin += 1
                continue
            marks = [self._hide_mark, self._ready_mark]
            if self.booting or self.expect_banner:
                # MicroPython's own banners, believed only where they answer a boot, Ctrl-A or
                # Ctrl-B: a file that holds them (a README, say) is data, not a mode change.
                marks += [RAW_MARK, FRIENDLY_MARK]
            if self.booting and not self.raw_mode:
                marks.append(PROMPT)
            hits = []
            for mark in marks:
                i = buf.find(mark, max(0, pos - len(mark) + 1))
                if i >= 0 and i + len(mark) > pos:
                    hits.append((i + len(mark), i, mark))
            if not hits:
                out += self._text(buf[pos:])
                break
            end, i, mark = min(hits)
            if mark is self._ready_mark:
                out += self._text(buf[pos:i])
                self.armed = True
            elif mark is self._hide_mark:
                out += self._text(buf[pos:i])
                self._hiding = True
            else:
                out += self._text(buf[pos:end])
                # The expectation stays until the host's next byte: a friendly banner that a
                # client's Ctrl-B asked for can arrive late, with the raw one for the next
                # client's Ctrl-A in the same read, and that one must count too.
                if mark is RAW_MARK:
                    self.raw_mode = True
                elif mark is FRIENDLY_MARK:
                    self.raw_mode = False
                else:
                    self.booting = False
            pos = end
        self._scan = buf[-KEEP:]
        return bytes(out), rejoin

    def _text(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = data if self.raw_mode else crlf(data, self._last_out)
        self._last_out = data[-1]
        return out
