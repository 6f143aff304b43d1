"""A board's whole filesystem as an image file: ``image pull`` reads it, ``image flash`` writes it.

Both go below the filesystem, to the block device MicroPython mounts at ``/`` (the agent finds
it the way each port exposes it: ``flashbdev.bdev``, ``rp2.Flash()``, the ESP32's ``vfs``
partition, ``pyb.Flash(start=0)``). A pull streams every block through the same checked frames
as a file read and compares the board's sha256 of what it read. A flash refuses an image whose
geometry differs from the board's before a single block is written, sends blocks through the
binary session (each frame checked, resent when damaged), has the board read the whole device
back and compare its hash with the image's, then mounts the new filesystem and soft-resets.

A pull never writes to the board (the agent is loaded without being stored), so pulling right
after a flash gives back the flashed image byte for byte.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..board.agenthost import _literal
from ..board.board import Board
from ..errors import ConnectError, InputError, MpkickError, ProtocolError
from ..protocol.channel import SendSession, receive_frames
from ..protocol.opcodes import Frame
from ..target import META, Usage
from .geometry import detect_geometry
from .target import load_image, save_file

#: A flash session's frames wait on the board's erase and program; its verify reads every block.
FLASH_ACK_TIMEOUT = 120.0
BLOCK, FLASH, VERIFY = Frame.BLOCK, Frame.FLASH, Frame.VERIFY


class BlockDevice(NamedTuple):
    """The board's filesystem block device, as its ``ioctl`` reports it."""

    block_size: int
    block_count: int
    found_as: str

    @property
    def size(self) -> int:
        return self.block_size * self.block_count


class PullResult(NamedTuple):
    path: str
    device: BlockDevice
    sha256: str


class FlashPlan(NamedTuple):
    """What a flash will replace and with what, known before anything is written."""

    image_path: str
    data: bytes
    device: BlockDevice
    board_files: int | None  # None: the board's filesystem does not mount
    board_usage: Usage | None
    image_files: int
    image_usage: Usage

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def block_device(board: Board) -> BlockDevice:
    """The board's block device; a clear error on firmware that exposes none."""
    board.load_part("mpkick_flash", store=False)
    raw = _literal(board.exec("mk_bdev()"))
    if raw is None:
        raise InputError("this board exposes no block device for its filesystem (none of "
                         "flashbdev.bdev, rp2.Flash(), esp32.Partition 'vfs', "
                         "pyb.Flash(start=0)): image pull/flash cannot reach its flash")
    block_size, block_count, found_as = raw
    return BlockDevice(int(block_size), int(block_count), str(found_as))


def image_pull(board: Board, out_path: str,
               progress: Callable[[int], None] | None = None) -> PullResult:
    """Read the board's whole filesystem into the image file ``out_path`` (written atomically).

    ``progress`` is called with the bytes of each frame as it arrives.
    """
    device = block_device(board)
    caps = board.caps
    if not caps.buffer:
        raise ConnectError("this board's firmware has no binary stdout (sys.stdout.buffer): "
                           "update MicroPython to 1.12 or newer to pull its flash")
    data = receive_frames(board.repl, caps, f"mk_pull({caps.chunk})", "the board's flash",
                          progress)
    if len(data) != device.size:
        raise ProtocolError(f"the board sent {len(data)} bytes of flash, not {device.size}; "
                            "retry")
    save_file(out_path, data)
    return PullResult(out_path, device, hashlib.sha256(data).hexdigest())


def plan_flash(board: Board, image_path: str) -> FlashPlan:
    """Check ``image_path`` against the board's block device; what a flash would replace.

    Refuses (``InputError``, one line) an image that is not littlefs2, is truncated, or whose
    block size or count differs from the board's, before anything on the board changes.
    """
    try:
        data = Path(image_path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"no image at {image_path}: make one with `mpkick image build SRC "
                         f"-o {image_path}` or `mpkick image pull`") from None
    except IsADirectoryError:
        raise InputError(f"{image_path} is a folder, not an image file") from None
    block_size, block_count = detect_geometry(data)
    device = block_device(board)
    if (block_size, block_count) != (device.block_size, device.block_count):
        raise InputError(
            f"{image_path} has {block_count} blocks of {block_size} bytes but the board's "
            f"{device.found_as} has {device.block_count} blocks of {device.block_size}: build "
            f"the image with --block-size {device.block_size} --block-count "
            f"{device.block_count}")
    with load_image(image_path, data, autosave=False) as image:
        image_files = sum(1 for e in image.tree("/") if not e.is_dir)
        image_usage = image.usage()
    board_files: int | None = None
    board_usage: Usage | None = None
    try:
        board_files = sum(1 for e in board.tree("/")
                          if not e.is_dir and not e.path.startswith(META + "/"))
        board_usage = board.usage() if board.caps.statvfs else None
    except OSError:
        pass  # nothing mounted at "/": the flash gives the board a filesystem again
    return FlashPlan(image_path, data, device, board_files, board_usage, image_files,
                     image_usage)


def _digest(data: bytes, use_sha: bool, crc: bool) -> str:
    """What the board's read-back of the whole device hashes to (``_digest_blocks``)."""
    if use_sha:
        return hashlib.sha256(data).hexdigest()
    acc = 0
    for start in range(0, len(data), 1 << 16):
        part = data[start:start + (1 << 16)]
        acc = (zlib.crc32(part, acc) if crc else acc + sum(part) + len(part) * 0x10001)
        acc &= 0xFFFFFFFF
    return f"crc:{acc:08x}"


def image_flash(board: Board, plan: FlashPlan, progress: Callable[[int], None] | None = None,
                reset: bool = True) -> None:
    """Write the planned image over the board's whole filesystem, verified by hash.

    The board unmounts ``/``, takes every block, reads the device back and compares its hash,
    then mounts the new filesystem; ``reset`` then soft-resets it (staying in the raw REPL, so
    ``main.py`` does not run), so it boots from the new files as after power-on. A link cut
    mid-way leaves a partial filesystem: flash again.
    """
    device, data = plan.device, plan.data
    caps = board.caps
    piece = max(64, caps.chunk - 8)
    session: SendSession | None = None
    try:
        with board.binary_session() as session:
            session.ack_timeout = FLASH_ACK_TIMEOUT
            session.send(FLASH, f"{device.block_size}\x00{device.block_count}".encode())
            for block in range(device.block_count):
                start = block * device.block_size
                for off in range(0, device.block_size, piece):
                    part = data[start + off:start + min(off + piece, device.block_size)]
                    session.send(BLOCK, block.to_bytes(4, "little") + off.to_bytes(4, "little")
                                 + part)
                    if progress is not None:
                        progress(len(part))
            session.send(VERIFY, _digest(data, caps.hashlib, caps.crc32).encode())
    except OSError as exc:
        said = (session.error_text if session is not None else "") or exc.strerror or str(exc)
        raise MpkickError(f"flashing {plan.image_path} failed on the board ({said}): its "
                          "filesystem may be incomplete; flash the image again") from exc
    if reset:
        board.soft_reset()
