"""What ``--verbose`` says about how bytes reach a board and how they are checked there."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocol.channel import paced_chunk

if TYPE_CHECKING:
    from .board import Board


def transfer_notes(board: Board) -> list[str]:
    """Which transfer path this board gets, for ``--verbose``."""
    caps = board.caps
    if board.plain is not None:
        return [f"transfer: plain REPL commands ({board.plain_reason}): data as bytes "
                f"literals, paced for a small receive buffer, {caps.free:,} B of heap",
                "compare: size + weak sum + this host's record of what it pushed",
                "write: " + ("temporary name, read back by weak sum, renamed" if caps.rename
                             else "in place (no os.rename), read back by weak sum")]
    repl = board.repl
    budget = repl.budget
    frames = caps.chunk if budget is None else min(caps.chunk, paced_chunk(budget))
    compress = (f"deflate, window 2^{caps.wbits}" if caps.deflate else
                f"zlib, window 2^{caps.wbits}" if caps.zlib else "off (no deflate or zlib)")
    note = board.transport.link_note
    return [
        *link_notes(repl.cooked, budget, repl.paste_window),
        *([f"link: {note}"] if note else []),
        f"transfer: binary frames of {frames} bytes with "
        f"{'CRC-32' if caps.crc32 else 'sum'} checks; compression {compress}",
        "compare: " + ("sha256 on the board, manifest keeps unchanged files from rehashing"
                       if caps.hashlib else
                       "no hashlib: size + weak sum + this host's record of what it pushed"),
        "write: " + ("temporary name, verified, renamed over the old file (atomic)"
                     if caps.rename and caps.hashlib else
                     "temporary name, renamed; verified after writing by weak sum"
                     if caps.rename else
                     "in place (no os.rename), verified after writing"),
    ]


def link_notes(cooked: bool, budget: int | None, paste_window: int) -> list[str]:
    """What the link does to bytes and how the host copes, for ``--verbose``."""
    notes = []
    if cooked:
        notes.append("link: turns LF into CRLF on the way back (seen in the raw REPL's "
                     "banner): every read deletes the CR it inserted")
    if budget is not None:
        source = ("the board's raw-paste window" if paste_window else
                  "no raw-paste: pyboard.py's figure; code goes in pieces the board "
                  "acknowledges")
        notes.append(f"link: loses what the board cannot buffer (a UART without flow "
                     f"control): at most {budget} bytes unread on the way ({source}), "
                     "one acknowledgement window of frames")
    return notes
