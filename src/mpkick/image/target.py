"""A littlefs image file on the host as a filesystem target, the same way a board is one.

The image is held in memory and written back to its file as a whole, atomically (``PATH.tmp``,
fsync, ``os.replace``) after every change: a crash at any instant leaves the old image or the
new one, never a mix, and another program reading the file never sees a half-written image.

littlefs-python is imported only where it is used, because the virtual board reads an image's
geometry with :func:`detect_geometry` and must boot where littlefs-python is not installed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import InputError, PortBusy, os_error
from ..target import Entry, LocalTarget, Progress, TargetWriter, Usage, Writer, norm
from .geometry import LOOKAHEAD, MIB, MTIME_ATTR, READ_SIZE, _newest_superblock

if TYPE_CHECKING:
    from littlefs import LittleFS

_CHUNK = 64 * 1024
_TMP_SUFFIX = ".mpkick.tmp"

# --- the target ------------------------------------------------------------------------------


_LFS_ERR_CORRUPT = -84
#: littlefs's codes are Linux's errno values, negated; the host's may differ (macOS).
_ERRNO = {-2: errno.ENOENT, -5: errno.EIO, -9: errno.EBADF, -12: errno.ENOMEM,
          -17: errno.EEXIST, -20: errno.ENOTDIR, -21: errno.EISDIR, -22: errno.EINVAL,
          -27: errno.EFBIG, -28: errno.ENOSPC, -36: errno.ENAMETOOLONG, -39: errno.ENOTEMPTY,
          -61: errno.ENODATA}


def _lfs() -> Any:
    import littlefs

    return littlefs


@contextmanager
def _mapped(path: str) -> Iterator[None]:
    """littlefs's negative error codes as Python's own OSErrors, so callers catch one kind."""
    littlefs = _lfs()
    try:
        yield
    except littlefs.LittleFSError as exc:
        if exc.code == _LFS_ERR_CORRUPT:
            raise InputError(f"the image is corrupt at {path}: rebuild it with "
                             "`mpkick image build`") from exc
        raise os_error(_ERRNO.get(exc.code, errno.EIO), path) from exc


class ImageTarget(LocalTarget):
    """A littlefs image file, read and written like a board's filesystem."""

    def __init__(self, path: str, fs: LittleFS, autosave: bool = True) -> None:
        self.path = path
        self.fs = fs
        self.autosave = autosave
        self.block_size: int = fs.cfg.block_size
        self.block_count: int = fs.cfg.block_count
        self.dirty = False

    # reading

    def stat(self, path: str) -> Entry:
        path = norm(path)
        if path == "/":
            return Entry("/", True)
        lfs = _lfs().lfs
        with _mapped(path):
            st = lfs.stat(self.fs.fs, path)
        if st.type == 2:
            return Entry(path, True)
        return Entry(path, False, st.size, self._mtime(path))

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        root = norm(path)
        if not self.stat(root).is_dir:
            raise os_error(errno.ENOTDIR, root)
        out: list[Entry] = []
        self._walk(root, hashes, out)
        return out

    def _walk(self, folder: str, hashes: bool, out: list[Entry]) -> None:
        lfs = _lfs().lfs
        with _mapped(folder):
            handle = lfs.dir_open(self.fs.fs, folder)
            try:
                items = []
                while (st := lfs.dir_read(self.fs.fs, handle)) is not None:
                    if st.name not in (".", ".."):
                        items.append(st)
            finally:
                lfs.dir_close(self.fs.fs, handle)
        for st in sorted(items, key=lambda s: s.name):
            child = posixpath.join(folder, st.name)
            if st.type == 2:
                out.append(Entry(child, True))
                self._walk(child, hashes, out)
            else:
                digest = hashlib.sha256(self.read(child)).hexdigest() if hashes else None
                out.append(Entry(child, False, st.size, self._mtime(child), digest))

    def _mtime(self, path: str) -> int | None:
        lfs = _lfs()
        try:
            raw = lfs.lfs.getattr(self.fs.fs, path, MTIME_ATTR)
        except lfs.LittleFSError:
            return None
        if len(raw) != 8:
            return None
        return int(struct.unpack("<Q", raw)[0] // 1_000_000_000)

    def read(self, path: str) -> bytes:
        path = norm(path)
        lfs = _lfs().lfs
        with _mapped(path):
            handle = lfs.file_open(self.fs.fs, path, "rb")
            try:
                return bytes(lfs.file_read(self.fs.fs, handle, lfs.file_size(self.fs.fs, handle)))
            finally:
                lfs.file_close(self.fs.fs, handle)

    def usage(self) -> Usage:
        with _mapped("/"):
            used = _lfs().lfs.fs_size(self.fs.fs)
        total = self.block_size * self.block_count
        return Usage(total, total - used * self.block_size, self.block_size)

    # writing

    def write(self, path: str, data: bytes, progress: Progress | None = None,
              mtime_ns: int | None = None) -> None:
        """Write to a temporary name, stamp MicroPython's mtime, then rename over ``path``."""
        path = norm(path)
        if path == "/" or self._is_dir(path):
            raise os_error(errno.EISDIR, path)
        folder, name = posixpath.split(path)
        temp = posixpath.join(folder, f".{name}{_TMP_SUFFIX}")
        lfs = _lfs().lfs
        stamp = struct.pack("<Q", time.time_ns() if mtime_ns is None else mtime_ns)
        try:
            with _mapped(path):
                handle = lfs.file_open(self.fs.fs, temp, "wb")
                try:
                    for start in range(0, len(data), _CHUNK):
                        piece = data[start:start + _CHUNK]
                        lfs.file_write(self.fs.fs, handle, piece)
                        if progress:
                            progress(len(piece))
                finally:
                    lfs.file_close(self.fs.fs, handle)
                lfs.setattr(self.fs.fs, temp, MTIME_ATTR, stamp)
                lfs.rename(self.fs.fs, temp, path)
        except BaseException:
            self._discard(temp)
            raise
        self._changed()

    def _discard(self, temp: str) -> None:
        try:
            _lfs().lfs.remove(self.fs.fs, temp)
        except _lfs().LittleFSError:
            pass

    def _is_dir(self, path: str) -> bool:
        try:
            return self.stat(path).is_dir
        except FileNotFoundError:
            return False

    def mkdir(self, path: str) -> None:
        path = norm(path)
        if path == "/":
            raise os_error(errno.EEXIST, path)
        with _mapped(path):
            _lfs().lfs.mkdir(self.fs.fs, path)
        self._changed()

    def remove(self, path: str) -> None:
        if self.stat(path).is_dir:
            raise os_error(errno.EISDIR, norm(path))
        with _mapped(norm(path)):
            _lfs().lfs.remove(self.fs.fs, norm(path))
        self._changed()

    def rmdir(self, path: str) -> None:
        path = norm(path)
        if path == "/":
            raise os_error(errno.EBUSY, path)
        if not self.stat(path).is_dir:
            raise os_error(errno.ENOTDIR, path)
        with _mapped(path):
            _lfs().lfs.remove(self.fs.fs, path)
        self._changed()

    def rename(self, src: str, dst: str) -> None:
        src, dst = norm(src), norm(dst)
        with _mapped(src):
            _lfs().lfs.rename(self.fs.fs, src, dst)
        self._changed()

    # the image file

    def _changed(self) -> None:
        self.dirty = True
        if self.autosave:
            self.save()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many changes, one save at the end (a push: not one copy of the image per file).

        The image file then goes from the old tree to the new one in a single atomic step; if
        the batch fails halfway, what it finished is saved, as a board keeps finished files.
        """
        autosave, self.autosave = self.autosave, False
        try:
            yield
        finally:
            self.autosave = autosave
            if autosave:
                self.save()

    @contextmanager
    def writer(self, fresh: str | None = None) -> Iterator[Writer]:
        """A plan's changes, saved once at the end (see ``batch``)."""
        with self.batch():
            yield TargetWriter(self)

    def identity(self) -> str:
        return "image:" + os.path.abspath(self.path)

    def notes(self) -> list[str]:
        return [f"target is a filesystem image ({self.path}): files are written directly, each "
                "to a temporary name then renamed, and the image is saved once"]

    def save(self) -> None:
        """Write the image file atomically; a no-op when nothing changed since the last save."""
        if not self.dirty:
            return
        save_file(self.path, bytes(self.fs.context.buffer))
        self.dirty = False

    def close(self) -> None:
        self.save()

    def __enter__(self) -> ImageTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_free(path: str) -> None:
    """Refuse an image a running virtual board holds (it keeps an exclusive ``flock`` on it).

    Replacing the file under a running board would lose one side's writes, whichever saves
    last; refusing is the only safe answer.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows has no virtual board
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise PortBusy(f"{path} is in use by a running virtual board: close it first, or work "
                       f"on the board itself (mpkick -p sim://{path} ...)") from None
    finally:
        os.close(fd)


def save_file(path: str, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see old or new, never a mix."""
    check_free(path)
    temp = f"{path}.tmp"
    with open(temp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temp, path)


#: On-disk version of new images: 2.0 mounts on every MicroPython with VfsLfs2, where 2.1
#: (littlefs 2.5+) does not mount on firmware older than that.
DISK_VERSION = 0x00020000


def _config(block_size: int, block_count: int, prog_size: int,
            disk_version: int = DISK_VERSION) -> dict[str, int]:
    """littlefs-python settings that match what VfsLfs2 on a board would use.

    ``disk_version`` pins the on-disk format: littlefs would otherwise upgrade an older image
    on its first write, and the board it came from could no longer mount it.
    """
    if block_size < 128 or block_size & (block_size - 1):
        raise InputError(f"block size {block_size} is not a power of two of at least 128")
    prog = min(prog_size, block_size)
    board_cache = min(4 * max(READ_SIZE, prog), block_size)
    # The host reads and caches whole blocks and looks ahead over the whole flash: littlefs
    # then calls back into Python once per block, not once per 32 bytes (what made a build
    # 10x slower than littlefs-python's own). None of these is on the flash. What lands
    # on the flash stays the board's: the same units, and files inline in their folder up to
    # the size the board's cache allows (littlefs: min(cache, attr_max, block_size / 8)).
    return {"block_size": block_size, "block_count": block_count, "read_size": block_size,
            "prog_size": prog, "cache_size": block_size,
            "lookahead_size": max(LOOKAHEAD, min(-(-block_count // 64) * 8, 4096)),
            "inline_max": min(board_cache, 1022, block_size // 8),
            "block_cycles": 100, "disk_version": disk_version}


class _FastContext:
    """littlefs-python's in-memory block device without its per-call debug logging, which
    cost more than the filesystem itself on a tree of a thousand files."""

    def __init__(self, buffer: bytearray) -> None:
        self.buffer = buffer

    def read(self, cfg: Any, block: int, off: int, size: int) -> bytearray:
        start = block * cfg.block_size + off
        return self.buffer[start:start + size]

    def prog(self, cfg: Any, block: int, off: int, data: bytes) -> int:
        start = block * cfg.block_size + off
        self.buffer[start:start + len(data)] = data
        return 0

    def erase(self, cfg: Any, block: int) -> int:
        start = block * cfg.block_size
        self.buffer[start:start + cfg.block_size] = b"\xff" * cfg.block_size
        return 0

    def sync(self, cfg: Any) -> int:
        return 0


def new_image(path: str, size: int, block_size: int = 4096, prog_size: int = READ_SIZE,
              autosave: bool = True) -> ImageTarget:
    """A freshly formatted, empty image of ``size`` bytes; nothing is written until a save."""
    littlefs = _lfs()
    block_count = size // block_size
    if block_count < 2:
        raise InputError(f"an image of {size} bytes holds fewer than 2 blocks of {block_size}: "
                         "give a larger --size")
    context = _FastContext(buffer=bytearray(b"\xff" * (block_count * block_size)))
    fs = littlefs.LittleFS(context=context, mount=False,
                           **_config(block_size, block_count, prog_size))
    with _mapped(path):
        fs.format()
        fs.mount()
    target = ImageTarget(path, fs, autosave)
    target.dirty = True
    return target


def load_image(path: str, data: bytes, autosave: bool = True) -> ImageTarget:
    """Mount image bytes read from ``path``, checking the geometry its superblock claims."""
    littlefs = _lfs()
    _revision, block_size, block_count, version = _newest_superblock(data)
    if len(data) != block_size * block_count:
        raise InputError(
            f"{path} is {len(data)} bytes but its filesystem says {block_count} blocks of "
            f"{block_size} ({block_size * block_count} bytes): the image is truncated or padded; "
            "read it again from the board or rebuild it")
    context = _FastContext(buffer=bytearray(data))
    fs = littlefs.LittleFS(context=context, mount=False,
                           **_config(block_size, block_count, READ_SIZE, version))
    try:
        fs.mount()
    except littlefs.LittleFSError as exc:
        raise InputError(f"{path} does not mount as littlefs2 ({exc.name}): the image is "
                         "corrupt; rebuild it or read it again from the board") from exc
    return ImageTarget(path, fs, autosave)


def open_image(path: str, *, create: bool = False, size: int = MIB, block_size: int = 4096,
               autosave: bool = True) -> ImageTarget:
    """The image at ``path`` as a target; with ``create``, a new empty one when there is none."""
    try:
        check_free(path)
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if not create:
            raise InputError(f"no image at {path}: make one with "
                             f"`mpkick image build SRC -o {path}`") from None
        target = new_image(path, size, block_size, autosave=autosave)
        if autosave:
            target.save()
        return target
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not an image file") from None
    return load_image(path, data, autosave)
