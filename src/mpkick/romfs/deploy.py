"""The board's ROM partitions: what they hold, and putting a new image into one, safely.

A deploy compares the board's partition with the image block by block (the board hashes each
erase block and answers with 8 bytes per block), so an identical image writes nothing and a
changed one writes only the erase blocks that differ, where the port erases by range; a port
that erases only from the partition's start (``rom_ioctl(6)`` unsupported) is rewritten up to
the image's end. The order makes a cut harmless: block 0 is erased first, so from that moment
the partition holds no valid image (``VfsRom`` refuses it, the board boots without ``/rom``);
the blocks are written; the board hashes the whole range with the image's first 16 bytes, held
in its RAM, in front, and only when that matches the host's sha256 does it write those bytes,
the header, last. Old image, new image or none: nothing else can be on the board.

Bytes travel through the agent's binary session (checked frames, resent when damaged, one
deflate stream), not as base64 text in a REPL line per 4 KiB as mpremote sends them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ..board.agenthost import _literal
from ..board.board import Board
from ..errors import InputError, MpkickError
from ..protocol.opcodes import Frame
from . import image as romimage
from .source import check_mpy

MODULE = "mpkick_romfs"
WRITE, CHECK = Frame.ROM_WRITE, Frame.ROM_CHECK
#: Frames wait for erases, and the final check reads the whole image back.
ACK_TIMEOUT = 120.0


class NoRomfs(InputError):
    """The board's firmware has no ``vfs.rom_ioctl`` (or no partition)."""


@dataclass(frozen=True)
class Partition:
    """One ROM partition as the board reports it."""

    rid: int
    size: int
    block: int  # erase block (the whole partition where the port erases only from the start)
    ranged: bool
    device: bool  # a block device object (esp32) rather than memory
    head: bytes
    files: tuple[tuple[str, int], ...] | None  # (path, size; -1 for a folder), None: no image

    @property
    def image_length(self) -> int | None:
        return romimage.image_length(self.head)

    @property
    def state(self) -> str:
        if self.files is not None:
            return "image"
        if self.head.strip(b"\xff") == b"":
            return "erased"
        return "empty" if self.head[:3] != romimage.HEADER else "damaged"


@dataclass
class DeployResult:
    """What a deploy did."""

    partition: Partition
    length: int
    blocks: int  # erase blocks the image spans
    written: list[int] = field(default_factory=list)  # the erase blocks written
    unchanged: bool = False
    wire_bytes: int = 0

    @property
    def skipped(self) -> bool:
        return self.unchanged


def has_romfs(board: Board) -> bool:
    return bool(board.eval("hasattr(__import__('vfs'), 'rom_ioctl')"))


def _load(board: Board) -> None:
    board.load_agent()
    if not has_romfs(board):
        raise NoRomfs("this board's firmware has no ROMFS (no vfs.rom_ioctl): it needs "
                      "MicroPython 1.25 or newer built with ROMFS (stm32, rp2, esp32, esp8266, "
                      "unix; mimxrt, nrf, renesas-ra, samd from 1.28)")
    board.load_part(MODULE)


def partitions(board: Board) -> list[Partition]:
    """Every ROM partition of the board, with what is in it."""
    _load(board)
    raw = _literal(board.exec("mk_rom_query()", timeout=60))
    parts = [Partition(int(r), int(s), int(b), bool(g), bool(d), bytes(h),
                       tuple((str(p), int(n)) for p, n in f) if f is not None else None)
             for r, s, b, g, d, h, f in raw]
    if not parts:
        raise NoRomfs("this board has vfs.rom_ioctl but no ROM partition")
    return parts


def partition(board: Board, rid: int = 0) -> Partition:
    for part in partitions(board):
        if part.rid == rid:
            return part
    raise InputError(f"the board has no ROM partition {rid}")


def block_sums(image: bytes, block: int) -> list[str]:
    """What ``mk_rom_sums`` answers for a partition holding ``image``."""
    return [hashlib.sha256(image[at:at + block]).digest()[:8].hex()
            for at in range(0, len(image), block)]


def check_image(image: bytes, board_mpy: int | None, name: str = "the image") -> None:
    """A valid ROMFS image whose .mpy files this board loads; ``InputError`` otherwise."""
    try:
        files = romimage.files(image)
    except romimage.RomfsError as exc:
        raise InputError(f"{name}: {exc}") from None
    if board_mpy is not None:
        check_mpy(files, board_mpy, where=f"{name}: ")


def deploy(board: Board, image: bytes, rid: int = 0, *, name: str = "the image",
           progress: Callable[[int], None] | None = None, reset: bool = True,
           board_mpy: int | None = None) -> DeployResult:
    """Make ``image`` the live ROMFS of partition ``rid``: verified, header last, only the
    changed blocks written, nothing at all when the board already holds it.

    ``reset``: soft-reset afterwards (staying in the raw REPL), so the board runs from the new
    image as after power-on. ``progress`` gets the bytes of each block sent.
    """
    check_image(image, board_mpy, name)
    part = partition(board, rid)
    length = len(image)
    if length > part.size:
        raise InputError(f"{name} is {length} bytes ({length / 1024:.1f} KiB) but ROM partition "
                         f"{rid} holds {part.size} bytes ({part.size / 1024:.1f} KiB): leave "
                         "files out or choose a larger partition")
    blocks, total = plan_blocks(board, image, part)
    result = DeployResult(part, length, total)
    if not blocks:
        result.unchanged = True
        return result
    try:
        with board.binary_session(entry="mk_rom_recv") as session:
            session.ack_timeout = ACK_TIMEOUT
            session.send(WRITE, f"{rid}\x00{length}\x00{board.caps.wbits}\x00"
                                f"{','.join(map(str, blocks))}".encode())
            for b in blocks:
                start = b * part.block
                session.send_data(image[start:min(start + part.block, length)], progress)
            session.send(CHECK, hashlib.sha256(image).hexdigest().encode())
        result.wire_bytes = session.stats.wire_out
    except OSError as exc:
        said = session.error_text if "session" in locals() else ""
        raise MpkickError(f"writing ROM partition {rid} failed on the board "
                          f"({said or exc.strerror or exc}): it holds no valid image now "
                          "(the board boots without /rom); deploy again") from exc
    result.written = blocks if part.ranged else list(range(total))
    if reset:
        board.soft_reset()
    return result


def plan_blocks(board: Board, image: bytes, part: Partition) -> tuple[list[int], int]:
    """The erase blocks a deploy of ``image`` writes (none when the partition holds it), and
    how many the image spans. Where the port erases only from the start, the list is ``[0]``:
    everything is rewritten."""
    length = len(image)
    out = board.exec(f"mk_rom_sums({part.rid}, {length})", timeout=120).decode().split()
    if len(out) != 2:
        raise MpkickError(f"the board answered {' '.join(out)[:80]!r} to a ROM check")
    sums, whole = out
    theirs = [sums[i:i + 16] for i in range(0, len(sums), 16)]
    mine = block_sums(image, part.block)
    if whole == hashlib.sha256(image).hexdigest():
        return [], len(mine)
    if not part.ranged:
        return [0], len(mine)
    return sorted({0} | {i for i, s in enumerate(mine) if i >= len(theirs) or theirs[i] != s}), \
        len(mine)


def describe_plan(board: Board, image: bytes, part: Partition) -> str:
    """What a deploy would write, in words (``--dry-run``)."""
    blocks, total = plan_blocks(board, image, part)
    if not blocks:
        return "the partition already holds it: nothing would be written"
    if not part.ranged:
        return (f"the port erases only from the partition's start: all {total} erase blocks "
                "would be written")
    return (f"{len(blocks)} of {total} erase blocks would be written "
            f"({', '.join(map(str, blocks[:12]))}{' ...' if len(blocks) > 12 else ''})")


def mount(board: Board) -> bool:
    """Partition 0 mounted at /rom (as at boot), if it holds a valid image."""
    _load(board)
    return bool(_literal(board.exec("mk_rom_mount()")))


def read_image(board: Board, rid: int = 0) -> bytes:
    """The live image of partition ``rid`` (``InputError`` when it holds none)."""
    from ..protocol.channel import receive_frames

    part = partition(board, rid)
    length = part.image_length
    if part.files is None or length is None:
        raise InputError(f"ROM partition {rid} holds no valid ROMFS image ({part.state})")
    caps = board.caps
    return receive_frames(board.repl, caps, f"mk_rom_read({rid}, 0, {length}, {caps.chunk})",
                          f"ROM partition {rid}")


def shadowing(board: Board, rom_paths: list[str]) -> list[str]:
    """Which copy the board imports for each ROM module that also exists on its flash: the
    first on ``sys.path`` wins ('' is the current folder, /rom and /rom/lib come next, /lib
    after them), and within one folder a ``.py`` beats a ``.mpy``. One line per module."""
    from .source import modules

    path = list(board.eval("__import__('sys').path"))
    for i, extra in enumerate(("/rom", "/rom/lib")):
        if extra not in path:
            path.insert(min(1 + i, len(path)), extra)
    wanted: dict[str, str] = {}  # module name -> where it is in the ROM
    for name, rel in modules(p.removeprefix("lib/") for p in rom_paths if p.startswith("lib/")
                             ).items():
        wanted.setdefault(name, "/rom/lib/" + rel)
    for name, rel in modules(p for p in rom_paths if not p.startswith("lib/")).items():
        wanted.setdefault(name, "/rom/" + rel)
    if not wanted:
        return []
    flash_dirs = [d for d in path if d and not d.startswith("/rom") and d != ".frozen"]
    found = _literal(board.exec(
        "import os\n_mk_f = []\n"
        f"for _mk_n in {sorted(wanted)!r}:\n"
        f" for _mk_d in {[*flash_dirs, ''] if '' in path else flash_dirs!r}:\n"
        "  for _mk_x in ('.py', '.mpy', '/__init__.py', '/__init__.mpy'):\n"
        "   _mk_p = (_mk_d or os.getcwd()).rstrip('/') + '/' + _mk_n.replace('.', '/') + _mk_x\n"
        "   try:\n    os.stat(_mk_p)\n    _mk_f.append((_mk_n, _mk_d, _mk_p))\n    break\n"
        "   except OSError:\n    pass\n"
        "print(repr(_mk_f))\ndel _mk_f", timeout=60))
    notes = []
    order = {d: i for i, d in enumerate(path)}
    for name, d, where in found:
        rom_at = wanted[name]
        rom_dir = "/rom/lib" if rom_at.startswith("/rom/lib/") else "/rom"
        if order.get(d, len(path)) < order[rom_dir]:
            notes.append(f"{name}: {where} on the flash wins over {rom_at} "
                         f"({d or repr('')} comes first on sys.path)")
        else:
            notes.append(f"{name}: {rom_at} in the ROM wins over {where} on the flash "
                         f"({rom_dir} comes first on sys.path)")
    return notes
