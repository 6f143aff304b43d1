"""The board's real-time clock (``machine.RTC``): read it, or set it from the host's clock."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .errors import BoardError, InputError

if TYPE_CHECKING:
    from .board.board import Board


@contextlib.contextmanager
def _needs_clock() -> Iterator[None]:
    try:
        yield
    except BoardError as exc:
        if exc.exc_type in ("ImportError", "AttributeError"):
            raise InputError("this board has no real-time clock (its firmware lacks "
                             "machine.RTC)") from None
        raise


def read_clock(board: Board) -> dt.datetime:
    """What the board's clock says now (a board keeps no time zone: naive)."""
    with _needs_clock():
        value = board.eval("__import__('machine').RTC().datetime()")
    y, mo, d, _weekday, h, mi, s, sub = (tuple(value) + (0,) * 8)[:8]
    # Subseconds are microseconds on most ports, 1/256 s on some: only a hint.
    return dt.datetime(y, mo, d, h, mi, s, sub if 0 <= sub < 1_000_000 else 0)


def set_clock(board: Board, when: dt.datetime) -> dt.datetime:
    """Set the board's clock to ``when`` (to the second); return what it reads back."""
    fields = (when.year, when.month, when.day, when.weekday(), when.hour, when.minute,
              when.second, 0)
    with _needs_clock():
        board.exec(f"import machine\nmachine.RTC().datetime({fields!r})")
    return read_clock(board)
