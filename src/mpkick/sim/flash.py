"""The virtual board's flash: the littlefs2 image file, its ROM partition, and who owns them.

A real board's flash is used by whoever holds its cable; here the image file is locked for as
long as the board runs, so two programs never write one flash at once (``PortBusy``). The
geometry is read from an existing image, so one built by ``mpkick image build`` with another
block size boots as it is; only a new, empty file takes the URL's size and block size.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import InputError, PortBusy
from ..image.geometry import detect_geometry
from .options import SimOptions


class Flash:
    """The locked image file and its geometry, from ``open()`` until ``close()``."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.path: Path = options.image_path
        self.block_size = 0
        self.block_count = 0
        self.romfs_size = 0  # 0 when this board has no ROM partition
        self._lock: int | None = None

    def open(self) -> None:
        """Lock the image (creating it erased, at the URL's size) and learn its geometry."""
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise PortBusy(f"port busy: the virtual board {path} is in use by another program; "
                           "close it first (one board, one user)") from exc
        self._lock = fd
        if os.fstat(fd).st_size == 0:
            os.ftruncate(fd, self.options.size)
        self.block_size = self._block_size(fd)
        self.block_count = os.fstat(fd).st_size // self.block_size
        self.romfs_size = self._prepare_romfs()

    def close(self) -> None:
        """Let another program have the board's flash."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _prepare_romfs(self) -> int:
        """The ROM partition's file: a new one is erased flash (all 0xFF); an existing one keeps
        its size and content."""
        if not self.options.romfs:
            return 0
        path = self.options.romfs_path
        if not path.exists() or path.stat().st_size == 0:
            with open(path, "wb") as f:
                f.write(b"\xff" * self.options.romfs)
        return path.stat().st_size

    def _block_size(self, fd: int) -> int:
        """An existing image tells its own geometry; a fresh one takes the URL's."""
        head = os.pread(fd, 1 << 21, 0)
        try:
            return detect_geometry(head)[0]
        except InputError:
            if head.strip(b"\x00") and head.strip(b"\xff"):
                os.close(fd)
                self._lock = None
                raise InputError(f"{self.path} is not a littlefs2 flash image; give the "
                                 "virtual board a new file, or an image made by "
                                 "`mpkick image build`") from None
            return self.options.block_size
