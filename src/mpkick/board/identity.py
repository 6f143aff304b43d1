"""The id mpkick keeps on a board, so what the host remembers follows the flash, not the port."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from .agentload import INFO, sent

if TYPE_CHECKING:
    from .board import Board


def board_id(board: Board) -> str:
    """The board's id (made on first use); it usually comes with the capabilities for free."""
    known = "".join(c for c in board.caps.id or "" if c.isalnum())[:32]
    if known:
        return known
    if board.plain is not None:
        # Plain firmware (a micro:bit) has no folder to keep an id in, and a board too small
        # for the agent no room to run its id code: the chip id serves.
        uid = board.info().uid
        return uid or hashlib.sha256(board.transport.name.encode()).hexdigest()[:16]
    fresh = secrets.token_hex(8)
    text = board.exec(sent(INFO, "mk_id", fresh)).decode("ascii", "replace").strip()
    return "".join(c for c in text if c.isalnum())[:32] or fresh
