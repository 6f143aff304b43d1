"""A board still inside a binary session that its host abandoned: end that session.

When the link drops in the middle of a push (WiFi gone, a WebREPL client closed, a host killed),
the board's agent goes on waiting for frames: its stdin never ends, and with Ctrl-C turned into
data nothing a new host types reaches the REPL. The agent answers a damaged frame with NAK and
the sequence number it expects, then skips input up to the resync pattern, so a new host can
end the session properly: fill whatever frame the agent was reading, resync, learn the sequence
number, send the end frame. The open temporary file is dropped (the old file stays whole), and
the raw REPL prompt comes back.
"""

from __future__ import annotations

import time

from ..errors import ConnectError, DeviceTimeout
from .channel import ACK, END, ERR, NAK, RESYNC, check
from .opcodes import SYNC
from .repl import RawRepl

#: Filler sent before each try, growing up to a whole frame of the largest size a board takes.
FILL = (0, 1024, 8192, 33 * 1024)


def _end_frame(seq: int, crc: bool, valid: bool = True) -> bytes:
    head = bytes((END, seq)) + (0).to_bytes(3, "little")
    ok = check(b"", check(head, 0, crc), crc)
    if not valid:  # wrong under either kind of check
        ok = next(v for v in range(4) if v not in (ok, check(b"", check(head, 0, not crc),
                                                             not crc)))
    return bytes((SYNC,)) + head + ok.to_bytes(4, "little")


def _answers(repl: RawRepl, wait: float) -> bytes:
    """What the board says within ``wait`` seconds, until it is quiet for a moment."""
    out = repl.take()
    end = time.monotonic() + wait
    while time.monotonic() < end:
        more = repl.take(0.2)
        if more:
            out += more
            end = max(end, time.monotonic() + 0.3)
        elif out:
            break
    return out


def _last_nak(data: bytes) -> int | None:
    i = data.rfind(bytes((NAK,)), 0, len(data) - 1)
    return data[i + 1] if i >= 0 else None


def end_stale_session(repl: RawRepl) -> bool:
    """True when an abandoned session was found and ended (the board is at its raw REPL, or
    one Ctrl-A from it); False when nothing on the board answered like the agent."""
    try:
        seq = None
        for fill in FILL:
            repl.write(bytes(fill) + RESYNC + _end_frame(0, True, valid=False))
            rate = repl.transport.rate
            seq = _last_nak(_answers(repl, 1.0 + (fill / rate if rate else 0.0)))
            if seq is not None:
                break
        if seq is None:
            return False
        for crc in (True, False):
            repl.write(RESYNC + _end_frame(seq, crc))
            said = _answers(repl, 2.0)
            if bytes((ACK, seq)) in said or bytes((ERR, seq)) in said:
                return True
            again = _last_nak(said)
            if again is not None:
                seq = again
        return False
    except (ConnectError, DeviceTimeout):
        return False
