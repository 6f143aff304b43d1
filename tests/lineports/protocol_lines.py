"""``lines://DEVICE``: pyserial's own POSIX port on DEVICE (a pty), recording every change of
the modem-control lines it is asked for instead of asking the pty, which has none.

Registered by ``tests/test_link.py``; ``EVENTS`` holds ``("open"|"close"|"dtr"|"rts", state)``.
"""

from __future__ import annotations

from serial.serialposix import Serial as PosixSerial

EVENTS: list[tuple[str, bool]] = []


def serial_class_for_url(url: str) -> tuple[str, type[PosixSerial]]:
    return url[len("lines://"):], Serial


class Serial(PosixSerial):  # type: ignore[misc]
    def open(self) -> None:
        EVENTS.append(("open", True))  # the OS raises both lines; pyserial then applies its own
        try:
            super().open()
        except BaseException:
            EVENTS.pop()
            raise

    def close(self) -> None:
        if self.is_open:
            EVENTS.append(("close", True))
        super().close()

    def _update_dtr_state(self) -> None:
        EVENTS.append(("dtr", bool(self._dtr_state)))

    def _update_rts_state(self) -> None:
        EVENTS.append(("rts", bool(self._rts_state)))


def states() -> list[tuple[bool, bool]]:
    """The (DTR, RTS) the board saw, in order: an open port starts with both asserted, as the
    OS raises them, and closing drops both."""
    seen: list[tuple[bool, bool]] = []
    dtr = rts = False
    for what, state in EVENTS:
        if what == "open":
            dtr = rts = True
        elif what == "close":
            dtr = rts = False
        elif what == "dtr":
            dtr = state
        else:
            rts = state
        if not seen or seen[-1] != (dtr, rts):
            seen.append((dtr, rts))
    return seen
