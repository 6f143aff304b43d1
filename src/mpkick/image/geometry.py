"""littlefs geometry: board presets, sizes, and an image's block size read from its superblock.

Read without littlefs-python, because the virtual board reads an image's geometry and must
boot where littlefs-python is not installed.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import NamedTuple

from ..errors import InputError

#: VfsLfs2 keeps a file's mtime as littlefs user attribute 1: 8 bytes, little-endian
#: nanoseconds since 1970-01-01 (``LFS_ATTR_MTIME`` in MicroPython's extmod/vfs_lfs.c).
MTIME_ATTR = 1

#: What MicroPython's VfsLfs2 uses unless a port says otherwise (extmod/vfs_lfsx.c): reading
#: and programming in 32-byte units, a lookahead of 32 bytes, caches of four units.
READ_SIZE = 32
LOOKAHEAD = 32


class Preset(NamedTuple):
    """A board's littlefs geometry as its MicroPython firmware sets it up by default."""

    block_size: int
    size: int  # bytes of flash given to the filesystem
    prog_size: int
    board: str


KIB = 1024
MIB = 1024 * KIB

#: Geometries of common boards' filesystems with MicroPython's own defaults
#: (ports/*/boards/*/mpconfigboard.h, partition tables, flashbdev.py).
PRESETS: dict[str, Preset] = {
    "rp2": Preset(4096, 1408 * KIB, 256, "Raspberry Pi Pico (RP2040, 2 MiB flash)"),
    "rp2-w": Preset(4096, 848 * KIB, 256, "Raspberry Pi Pico W (RP2040 + CYW43, 2 MiB flash)"),
    "rp2350": Preset(4096, 3 * MIB, 256, "Raspberry Pi Pico 2 / 2 W (RP2350, 4 MiB flash)"),
    "esp32": Preset(4096, 2 * MIB, 32, "ESP32 with 4 MiB flash ('vfs' partition)"),
    "esp8266": Preset(4096, 763 * 4096, 32, "ESP8266 with 4 MiB flash (after VfsLfs2.mkfs)"),
    "pyboard": Preset(512, 112 * KIB, 32, "pyboard v1.x internal flash, pyb.Flash(start=0)"),
}


def parse_size(text: str) -> int:
    """Bytes from ``1M``, ``848K``, ``0x100000`` or ``4096``; K and M are powers of 1024."""
    match = re.fullmatch(r"\s*(0x[0-9a-fA-F]+|\d+)\s*([kKmMgG]?)i?[bB]?\s*", text)
    if not match:
        raise InputError(f"size {text!r} is not a size: write e.g. 1M, 848K or 65536")
    number = int(match.group(1), 0)
    return number * {"": 1, "k": KIB, "m": MIB, "g": 1024 * MIB}[match.group(2).lower()]


# --- the superblock, read without littlefs-python --------------------------------------------

_LFS_TYPE_SUPERBLOCK = 0x0FF
_LFS_TYPE_INLINESTRUCT = 0x201


def _superblock(data: bytes, start: int, block_size: int) -> tuple[int, int, int, int] | None:
    """(revision, block_size, block_count, version) from the metadata block at ``start``.

    Walks the block's commits as littlefs does (tags XOR-chained, big-endian; a CRC closes each
    commit) and keeps the superblock of the last commit whose CRC holds, so an image grown or
    rewritten in place is read as littlefs reads it.
    """
    end = min(start + block_size, len(data))
    if end - start < 16:
        return None
    (revision,) = struct.unpack_from("<I", data, start)
    off, ptag, crc_from = start + 4, 0xFFFFFFFF, start
    found: tuple[int, int, int] | None = None
    pending = found
    named = False
    while off + 4 <= end:
        (raw,) = struct.unpack_from(">I", data, off)
        tag = raw ^ ptag
        if tag & 0x80000000:
            break
        kind, size = (tag >> 20) & 0x7FF, tag & 0x3FF
        dsize = 4 + (0 if size == 0x3FF else size)
        if off + dsize > end:
            break
        ptag = tag
        if kind & 0x780 == 0x500:  # a CRC tag closes a commit
            if off + 8 > end:
                break
            (stored,) = struct.unpack_from("<I", data, off + 4)
            if zlib.crc32(data[crc_from:off + 4]) ^ 0xFFFFFFFF != stored:
                break
            found = pending
            ptag ^= (kind & 1) << 31
            crc_from = off + dsize
        elif kind == _LFS_TYPE_SUPERBLOCK and size == 8:
            named = data[off + 4:off + 12] == b"littlefs"
        elif kind == _LFS_TYPE_INLINESTRUCT and (tag >> 10) & 0x3FF == 0 and named and size >= 12:
            version, bsize, bcount = struct.unpack_from("<III", data, off + 4)
            if version >> 16 != 2:
                return None
            pending = (bsize, bcount, version)
        off += dsize
    return None if found is None else (revision, *found)


def detect_geometry(data: bytes) -> tuple[int, int]:
    """(block_size, block_count) of a littlefs v2 image, from its superblock alone.

    Both blocks of the superblock pair are read and the newer one wins, like littlefs's mount.
    Block 1's offset is the block size, which block 0 gives; if block 0 is unreadable (a cut
    during its compaction), each power-of-two block size is tried for block 1.
    """
    _revision, block_size, block_count, _version = _newest_superblock(data)
    return block_size, block_count


def _newest_superblock(data: bytes) -> tuple[int, int, int, int]:
    first = _superblock(data, 0, 1 << 20)
    sizes = [first[1]] if first else [1 << n for n in range(7, 21)]
    best = first
    for size in sizes:
        second = _superblock(data, size, size)
        if second and second[1] == size and (
            best is None or 0 < (second[0] - best[0]) & 0xFFFFFFFF < 0x80000000
        ):
            best = second
    if best is None or best[1] < 128 or best[1] & (best[1] - 1) or best[2] < 2:
        raise InputError("not a littlefs2 image (no valid superblock): give an image made by "
                         "`mpkick image build` or read from a board with VfsLfs2")
    return best
