"""The channel's byte values, named once: the frame start, the frame kinds and the answers.

The host sends and reads them by these names, and the board's agent is compiled with the same
names in front of its text (``board_header``: ``_OPEN = const(0x4f)`` lines, which MicroPython
folds into the bytecode, so on the board they cost no RAM at all). No side spells a value out;
``tests/test_opcodes.py`` checks that the agent handles exactly the frames listed here.
"""

from __future__ import annotations

from enum import IntEnum

#: Where every frame starts, both ways.
SYNC = 0xA5


class Answer(IntEnum):
    """What the board answers to each frame, followed by the frame's sequence number."""

    ACK = 0x06  # done (or already done: a resent frame)
    NAK = 0x15  # damaged: the board skips to the resync pattern, the host resends from here
    ERR = 0x45  # E, then "errno text" and a newline: the operation failed


class Frame(IntEnum):
    """The kinds of frame a session carries, host to board (their letters read well in a
    trace). The part of the agent that handles each is named after it."""

    OPEN = 0x4F  # O  path NUL wbits: a temporary file for path, written until COMMIT
    DATA = 0x44  # D  raw bytes for the open file
    ZDATA = 0x5A  # Z  one self-contained deflate block (firmware that cannot stream)
    STREAM = 0x53  # S  raw length:3, then the next piece of the session's deflate stream
    PATCH = 0x50  # P  (offset:4, length:4) pairs, little-endian: ranges of the old file
    COMMIT = 0x43  # C  the file's digest: re-hashed from flash, then renamed over the old
    MKDIR = 0x4D  # M  path
    REMOVE = 0x52  # R  path (a file)
    RMDIR = 0x51  # Q  path (an empty folder)
    RENAME = 0x4E  # N  old NUL new
    END = 0x58  # X  the session ends: its answer covers every operation before it
    # agent/mpkick_flash.py (image flash): replace the whole filesystem
    FLASH = 0x46  # F  block size NUL block count: unmount, once the geometry matches
    BLOCK = 0x42  # B  block:4, offset:4, data: a block is written once it is whole
    VERIFY = 0x56  # V  sha256 of the image: every block read back must match
    # agent/mpkick_romfs.py (romfs deploy): rewrite a ROM partition
    ROM_WRITE = 0x57  # W  rid NUL length NUL wbits NUL blocks: the image's bytes follow
    ROM_CHECK = 0x4B  # K  sha256 of the image: read back; only then is its header written


#: Which frames each piece of board code handles (the core's session, and the parts).
HANDLED_BY = {
    "mpkick_recv": (Frame.OPEN, Frame.DATA, Frame.ZDATA, Frame.STREAM, Frame.PATCH,
                    Frame.COMMIT, Frame.MKDIR, Frame.REMOVE, Frame.RMDIR, Frame.RENAME),
    "mpkick_flash": (Frame.FLASH, Frame.BLOCK, Frame.VERIFY),
    "mpkick_romfs": (Frame.ROM_WRITE, Frame.ROM_CHECK),
}


def board_header() -> str:
    """The table as MicroPython constants, for the front of every piece of board code: names
    with a leading underscore, which the board's compiler inlines and never stores."""
    lines = [f"_SYNC = const({SYNC:#04x})"]
    lines += [f"_{a.name} = const({a.value:#04x})" for a in Answer]
    lines += [f"_{f.name} = const({f.value:#04x})" for f in Frame]
    return "\n".join(lines) + "\n"
