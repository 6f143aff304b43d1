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
import re
import struct
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import InputError, NoSpaceError, PortBusy, os_error
from ..ignore import IgnoreRules
from ..target import Entry, Progress, Target, Usage, norm

if TYPE_CHECKING:
    from littlefs import LittleFS

#: VfsLfs2 keeps a file's mtime as littlefs user attribute 1: 8 bytes, little-endian
#: nanoseconds since 1970-01-01 (``LFS_ATTR_MTIME`` in MicroPython's extmod/vfs_lfs.c).
MTIME_ATTR = 1

#: What MicroPython's VfsLfs2 uses unless a port says otherwise (extmod/vfs_lfsx.c): reading
#: and programming in 32-byte units, a lookahead of 32 bytes, caches of four units.
READ_SIZE = 32
LOOKAHEAD = 32

_CHUNK = 64 * 1024
_TMP_SUFFIX = ".mpkick.tmp"


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


class ImageTarget:
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


# --- whole images ----------------------------------------------------------------------------


class BuildResult(NamedTuple):
    """What ``build_image`` put into the image."""

    files: int
    folders: int
    data_bytes: int
    usage: Usage


def build_image(src: Path, out: str, *, size: int, block_size: int = 4096,
                prog_size: int = READ_SIZE, rules: IgnoreRules | None = None) -> BuildResult:
    """An image at ``out`` holding the kept files of folder ``src``, their host mtimes kept.

    The image is built in memory and saved once, so a failure (a file too big for the image)
    leaves any earlier ``out`` as it was.
    """
    if not src.is_dir():
        raise InputError(f"{src} is not a folder: give the folder whose files go into the image")
    rules = rules or IgnoreRules.from_folder(src)
    target = new_image(out, size, block_size, prog_size, autosave=False)
    files = folders = data_bytes = 0
    for rel, is_dir in rules.walk(src):
        if is_dir:
            target.mkdir("/" + rel)
            folders += 1
            continue
        local = src / rel
        data = local.read_bytes()
        try:
            target.write("/" + rel, data, mtime_ns=local.stat().st_mtime_ns)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise NoSpaceError(
                f"{src} does not fit in an image of {size} bytes (full at {rel}): give a larger "
                "--size or --block-count, or ignore more files") from None
        files += 1
        data_bytes += len(data)
    target.save()
    return BuildResult(files, folders, data_bytes, target.usage())


def copy_out(target: Target, src: str, dest: Path) -> list[Path]:
    """Copy the file or folder ``src`` of a target to ``dest`` on the host, keeping mtimes.

    A folder's content lands in ``dest`` (made when missing); a file lands at ``dest``, or
    inside it when ``dest`` is an existing folder. Returns the host files written.
    """
    entry = target.stat(src)
    written: list[Path] = []
    if not entry.is_dir:
        path = dest / posixpath.basename(entry.path) if dest.is_dir() else dest
        _put_local(path, target.read(entry.path), entry.mtime)
        return [path]
    dest.mkdir(parents=True, exist_ok=True)
    for child in target.tree(entry.path):
        local = dest.joinpath(*posixpath.relpath(child.path, entry.path).split("/"))
        if child.is_dir:
            local.mkdir(exist_ok=True)
        else:
            _put_local(local, target.read(child.path), child.mtime)
            written.append(local)
    return written


def _put_local(path: Path, data: bytes, mtime: int | None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class ImageInfo(NamedTuple):
    """An image file's geometry and fill, for ``mpkick image info``."""

    path: str
    block_size: int
    block_count: int
    disk_version: str
    name_max: int
    usage: Usage


def image_info(target: ImageTarget) -> ImageInfo:
    """Geometry as the mounted filesystem reports it."""
    with _mapped("/"):
        st = _lfs().lfs.fs_stat(target.fs.fs)
    version = f"{st.disk_version >> 16}.{st.disk_version & 0xFFFF}"
    return ImageInfo(target.path, target.block_size, target.block_count, version, st.name_max,
                     target.usage())
