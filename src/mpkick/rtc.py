"""The board's real-time clock (``machine.RTC``): read it, or set it from the host's clock."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from .errors import BoardError, InputError

if TYPE_CHECKING:
    from .board import Board

READ = "import machine\nprint(repr(machine.RTC().datetime()))"


def _run(board: Board, code: str) -> Any:
    from .board import _literal

    try:
        return _literal(board.exec(code))
    except BoardError as exc:
        if exc.exc_type in ("ImportError", "AttributeError"):
            raise InputError("this board has no real-time clock (its firmware lacks "
                             "machine.RTC)") from None
        raise


def read_clock(board: Board) -> dt.datetime:
    """What the board's clock says now (a board keeps no time zone: naive)."""
    y, mo, d, _weekday, h, mi, s, sub = (tuple(_run(board, READ)) + (0,) * 8)[:8]
    # Subseconds are microseconds on most ports, 1/256 s on some: only a hint.
    return dt.datetime(y, mo, d, h, mi, s, sub if 0 <= sub < 1_000_000 else 0)


def set_clock(board: Board, when: dt.datetime) -> dt.datetime:
    """Set the board's clock to ``when`` (to the second); return what it reads back."""
    fields = (when.year, when.month, when.day, when.weekday(), when.hour, when.minute,
              when.second, 0)
    _run(board, f"import machine\nmachine.RTC().datetime({fields!r})\nprint(0)")
    return read_clock(board)
