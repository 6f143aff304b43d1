"""The attach wire format: how requests and answers share the REPL's stream with a program.

Board to host: ``REQUEST`` + body + ``REQUEST_END``, the body escaped by the board so that it
holds no LF, CR, 0x18, 0x19 or 0x10 (a link that cooks LF into CRLF cannot damage it). Host
to board: 0x10 ``S``, one byte (``z`` deflated, ``r`` raw), six hex digits of length, then the
payload escaped so that it holds none of the REPL's control keys 0x01-0x05 (0x03 stays the
user's interrupt) and 0x10 only as an escape. ``agent/mpkick_attach.py`` is the other end.
"""

from __future__ import annotations

import re

MODULE = "mpkick_attach"
DEFAULT_PATH = "/remote"
REQUEST = b"\x18mK"
REQUEST_END = b"\x19"
ABORTED = b"\x10X"
#: Bytes the board must never find in an answer: the REPL's control keys (0x03 stays the
#: user's interrupt) and the escape itself.
_ESCAPED_IN = (0x10, 0x01, 0x02, 0x03, 0x04, 0x05)
_UNESCAPE_OUT = re.compile(rb"\x10(.)", re.S)
#: Files of these kinds ride along with a listing an import asks for.
INLINE_KINDS = (".py", ".mpy")
INLINE_MAX = 16384  # one file larger than this is read when opened, not with its listing
LISTING_INLINE_MAX = 96 * 1024
CHANGE_LOG = 2000
PRECOMPILE_MAX = 400  # modules compiled ahead at attach; the rest when the board asks
TEMP_SUFFIX = ".mpkick-tmp"  # a file the board is writing, renamed over the real one on close


def escape_for_board(data: bytes) -> bytes:
    """What the host sends: each byte the board must not meet becomes 0x10, byte + 0x40."""
    for b in _ESCAPED_IN:
        char = bytes((b,))
        if char in data:
            data = data.replace(char, bytes((0x10, b + 0x40)))
    return data


def unescape_from_board(data: bytes) -> bytes:
    """A request's body as the board meant it."""
    return _UNESCAPE_OUT.sub(lambda m: bytes((m.group(1)[0] - 0x40,)), data)
