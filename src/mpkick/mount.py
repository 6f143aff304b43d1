"""Any filesystem target as a FUSE filesystem, so the host's file manager and editors work on it.

The cost model is a serial link: every exchange with the target is slow, bytes are cheap. So the
whole tree's names, sizes and times come from one ``target.tree()`` call, kept for a short while
and patched by our own changes rather than fetched again; a file is read whole when first needed
and served from memory; writes collect in a per-file buffer and reach the target in one atomic,
verified ``target.write`` when the file is flushed, synced or closed. Half-written files never
land on the board, and editors that truncate, seek or rename over a file see POSIX behaviour.

One lock serialises every exchange: there is one serial link and the target is not thread-safe.
Nothing here prints; what the user should know (mounted, an operation failed and why) goes to
the ``on_event`` callback.
"""

from __future__ import annotations

import errno
import itertools
import os
import posixpath
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from .errors import MpkickError, NoSpaceError
from .target import META, Entry, Target, is_within

#: How long a tree listing is trusted before the target is asked again. Long enough that one
#: ``ls -l`` or one editor save costs one exchange, short enough that changes made on the board
#: by a running program show up almost at once.
TREE_TTL = 2.0

T = TypeVar("T")

#: renameat2(2) flags, which libfuse 3 passes on and mfusepy drops (see ``_fuse_class``).
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class MountEvent(NamedTuple):
    """Something the user should hear about: ``kind`` is ``ready``, ``error`` or ``lost``."""

    kind: str
    message: str
    path: str | None = None


EventCallback = Callable[[MountEvent], None]


def _fuse() -> Any:
    """The ``mfusepy`` module, imported late so the CLI loads without FUSE installed."""
    try:
        import mfusepy
    except (ImportError, OSError, AttributeError) as exc:  # libfuse missing or too old
        raise MpkickError(
            f"FUSE is not available ({exc}): install fuse3 (Linux: apt install fuse3) or "
            "macFUSE (macOS), and the 'mount' extra: pip install 'mpkick[mount]'"
        ) from exc
    return mfusepy


def _fuse_class(mfusepy: Any) -> Any:
    """mfusepy's ``FUSE``, passing on two things its libfuse 3 glue drops.

    renameat2's flags: without them ``mv --no-clobber`` (RENAME_NOREPLACE) would replace the
    file it must keep. ftruncate's handle: with ``nullpath_ok`` libfuse gives no path for it,
    so without the handle ``truncate -s`` on an open file could not find the file.
    """

    class FUSE(mfusepy.FUSE):  # type: ignore[misc]
        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            ops, enc, errs = self.operations, self.encoding, self.errors
            result: int = ops.rename(old.decode(enc, errs), new.decode(enc, errs), flags)
            return result

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            name = None if path is None else path.decode(self.encoding, self.errors)
            result: int = self.operations.truncate(name, length, fip.contents.fh if fip else None)
            return result

    return FUSE


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class _OpenFile:
    """One file's content while any handle has it open; handles of the same path share it.

    ``data`` is ``None`` until someone reads or writes: ``cp`` and editors open with O_TRUNC, and
    fetching a file only to throw it away would double the traffic of every overwrite.
    """

    path: str | None  # None once unlinked or renamed over: still usable, never written back
    data: bytearray | None = None
    dirty: bool = False
    handles: int = 0
    mtime: float | None = None  # set by our own changes; else the target's time shows


class TargetFS:
    """The FUSE operations over a ``Target``; ``mfusepy.FUSE(TargetFS(...), mountpoint)`` runs it.

    Subclassing ``mfusepy.Operations`` is not needed: mfusepy only wires up the methods that exist,
    which lets the class be defined (and type-checked) without libfuse on the machine.
    """

    use_ns = True  # utimens gets integer nanoseconds, not deprecated floats
    flag_nullpath_ok = True  # libfuse 2: see init_with_config
    # mfusepy wires up every attribute named like a FUSE operation (``lock``, ``flush`` ...):
    # keep anything that is not an operation under a leading underscore.

    def __init__(self, target: Target, *, read_only: bool = False,
                 on_event: EventCallback | None = None, ttl: float = TREE_TTL,
                 cwd: str | None = None) -> None:
        self.target = target
        self._cwd = cwd
        self.read_only = read_only
        self.on_event = on_event
        self.ttl = ttl
        #: Held for every exchange with the target and every change of the state below.
        self._lock = threading.RLock()
        self._entries: dict[str, Entry] = {}
        self._loaded_at: float | None = None
        self._open: dict[str, _OpenFile] = {}  # by path, for files with a path
        self._handles: dict[int, _OpenFile] = {}
        self._dirs: dict[int, str] = {}  # handle -> folder, for readdir
        self._next_fh = itertools.count(1)
        self._uid, self._gid = os.getuid(), os.getgid()
        self._started = time.time()
        #: True once the kernel has the mount: from then on, libfuse stopping is an unmount.
        self.ready = False
        #: The last failure that was not an ordinary filesystem error, for the CLI to show.
        self.last_error: str | None = None

    # -- talking to the target -----------------------------------------------------------------

    def _call(self, what: str, path: str | None, fn: Callable[[], T]) -> T:
        """Run one target operation, turning its failures into the errno FUSE passes on.

        Filesystem errors keep their errno. Anything else (board gone, timeout, protocol) is EIO
        plus an event with the one-line reason, since the errno alone tells the user nothing.
        The cached tree is dropped then: after a reset, what we knew may no longer be true.
        """
        try:
            return fn()
        except OSError as exc:
            raise _fail(exc.errno if isinstance(exc.errno, int) and exc.errno > 0
                        else errno.EIO) from exc
        except NoSpaceError as exc:
            self._report("error", f"{what}: {exc}", path)
            raise _fail(errno.ENOSPC) from exc
        except Exception as exc:
            self._loaded_at = None
            self._report("error", f"{what}: {exc or type(exc).__name__}", path)
            raise _fail(errno.EIO) from exc

    def _report(self, kind: str, message: str, path: str | None = None) -> None:
        if kind != "ready":
            self.last_error = message
        if self.on_event is not None:
            self.on_event(MountEvent(kind, message, path))

    def _writable(self) -> None:
        if self.read_only:
            raise _fail(errno.EROFS)

    # -- the cached tree -------------------------------------------------------------------------

    def _tree(self) -> dict[str, Entry]:
        now = time.monotonic()
        if self._loaded_at is None or now - self._loaded_at > self.ttl:
            entries = self._call("listing the files", "/", lambda: self.target.tree("/"))
            self._entries = {e.path: e for e in entries}
            self._entries["/"] = Entry("/", True)
            self._loaded_at = time.monotonic()
        return self._entries

    def _lookup(self, path: str) -> Entry | None:
        """The entry at ``path`` as it is now: an open file's buffer wins over the target's view."""
        known = self._tree().get(path)
        of = self._open.get(path)
        if of is None:
            return known
        if known is None or known.is_dir:
            known = Entry(path, False)
        return known._replace(size=len(of.data) if of.data is not None else known.size,
                              mtime=int(of.mtime) if of.mtime is not None else known.mtime)

    def _entry(self, path: str) -> Entry:
        entry = self._lookup(path)
        if entry is None:
            raise _fail(errno.ENOENT)
        return entry

    def _remember(self, entry: Entry) -> None:
        if self._loaded_at is not None:
            self._entries[entry.path] = entry

    def _forget(self, path: str) -> None:
        for p in [p for p in self._entries if is_within(p, path)]:
            del self._entries[p]

    # -- attributes and listings ---------------------------------------------------------------

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        with self._lock:
            of = self._handles.get(fh) if fh is not None else None
            if of is not None and of.path is None:  # unlinked but still open
                entry = Entry("", False, len(of.data or b""), int(of.mtime or time.time()))
            else:
                entry = self._entry(self._path(path, fh))
        write = 0 if self.read_only else 0o200
        if entry.is_dir:
            mode, nlink = stat.S_IFDIR | 0o555 | write, 2
        else:
            mode, nlink = stat.S_IFREG | 0o444 | write, 1
        t = int((entry.mtime if entry.mtime is not None else self._started) * 1e9)
        return {"st_mode": mode, "st_nlink": nlink, "st_size": entry.size,
                "st_uid": self._uid, "st_gid": self._gid,
                "st_atime": t, "st_mtime": t, "st_ctime": t,
                "st_blocks": (entry.size + 511) // 512, "st_blksize": 4096}

    def opendir(self, path: str) -> int:
        """Remember which folder a handle lists: with ``nullpath_ok`` readdir may get no path."""
        with self._lock:
            if not self._entry(path).is_dir:
                raise _fail(errno.ENOTDIR)
            fh = next(self._next_fh)
            self._dirs[fh] = path
            return fh

    def releasedir(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._dirs.pop(fh, None)
        return 0

    def readdir(self, path: str | None, fh: int) -> list[str]:
        with self._lock:
            path = path if path is not None else self._dirs.get(fh)
            if path is None:
                raise _fail(errno.EBADF)
            if not self._entry(path).is_dir:
                raise _fail(errno.ENOTDIR)
            # The board's agent and manifest stay out of sight (as ``ls`` hides dotfiles): a
            # project copied in and diffed back must match, and nobody should edit them by hand.
            names = {posixpath.basename(p) for p in itertools.chain(self._tree(), self._open)
                     if p not in ("/", META) and posixpath.dirname(p) == path}
        return [".", "..", *sorted(names)]

    def statfs(self, path: str) -> dict[str, int]:
        with self._lock:
            usage = self._call("reading free space", None, self.target.usage)
        bs = max(usage.block_size, 512)
        return {"f_bsize": bs, "f_frsize": bs, "f_blocks": usage.total // bs,
                "f_bfree": usage.free // bs, "f_bavail": usage.free // bs,
                "f_files": 0, "f_ffree": 0, "f_favail": 0, "f_namemax": 255}

    def access(self, path: str, amode: int) -> int:
        with self._lock:
            self._entry(path)
        if amode & os.W_OK and self.read_only:
            raise _fail(errno.EROFS)
        return 0

    # -- open files ------------------------------------------------------------------------------

    def _attach(self, path: str) -> int:
        of = self._open.get(path)
        if of is None:
            of = self._open[path] = _OpenFile(path)
        of.handles += 1
        fh = next(self._next_fh)
        self._handles[fh] = of
        return fh

    def _path(self, path: str | None, fh: int | None) -> str:
        """The path an operation is about: libfuse gives NULL for some handle operations."""
        if path is None:
            of = self._handles.get(fh) if fh is not None else None
            if of is None or of.path is None:
                raise _fail(errno.EBADF)
            return of.path
        return path

    def _handle(self, fh: int) -> _OpenFile:
        of = self._handles.get(fh)
        if of is None:
            raise _fail(errno.EBADF)
        return of

    def _load(self, of: _OpenFile) -> bytearray:
        if of.data is None:
            path = of.path or "/"
            of.data = bytearray(self._call(f"reading {path}", path,
                                           lambda: self.target.read(path)))
        return of.data

    def _store(self, of: _OpenFile) -> None:
        """Send a changed buffer to the target in one atomic, verified write."""
        if not of.dirty or of.path is None:
            return
        path, data = of.path, bytes(self._load(of))
        self._call(f"writing {path}", path, lambda: self.target.write(path, data))
        of.dirty = False
        self._remember(Entry(path, False, len(data), int(of.mtime or time.time())))

    def open(self, path: str, flags: int) -> int:
        wants_write = flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC
        if wants_write:
            self._writable()
        with self._lock:
            if self._entry(path).is_dir:
                raise _fail(errno.EISDIR)
            fh = self._attach(path)
            if flags & os.O_TRUNC:
                self._truncate(self._handles[fh], 0)
            return fh

    def create(self, path: str, mode: int, flags: int = 0) -> int:
        """A new (or emptied) file that reaches the target when it is first flushed.

        Until then it lives only in the open-file table, which ``getattr`` and ``readdir`` show,
        so a ``cp -r`` of many files costs one write per file and no empty placeholders.
        """
        self._writable()
        with self._lock:
            parent = self._lookup(posixpath.dirname(path))
            if parent is None:
                raise _fail(errno.ENOENT)
            if not parent.is_dir:
                raise _fail(errno.ENOTDIR)
            existing = self._lookup(path)
            if existing is not None and existing.is_dir:
                raise _fail(errno.EISDIR)
            fh = self._attach(path)
            if existing is None or flags & os.O_TRUNC:
                self._truncate(self._handles[fh], 0)
            return fh

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        with self._lock:
            data = self._load(self._handle(fh))
            return bytes(data[offset:offset + size])

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        self._writable()
        with self._lock:
            of = self._handle(fh)
            buf = self._load(of)
            if offset > len(buf):
                buf.extend(bytes(offset - len(buf)))
            buf[offset:offset + len(data)] = data
            of.dirty, of.mtime = True, time.time()
            return len(data)

    def _truncate(self, of: _OpenFile, length: int) -> None:
        if length == 0:
            of.data = bytearray()  # dirty even if it was empty: a new file must still be created
        else:
            buf = self._load(of)
            if length < len(buf):
                del buf[length:]
            else:
                buf.extend(bytes(length - len(buf)))
        of.dirty, of.mtime = True, time.time()

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        """Truncate an open file's buffer, or a closed file with one read and one write.

        Without a handle the open file is found by path: every handle of a path shares one buffer.
        """
        self._writable()
        with self._lock:
            of = self._handles.get(fh) if fh is not None else None
            if of is None and path is not None:
                of = self._open.get(path)
            if of is not None:
                self._truncate(of, length)
                return 0
            if path is None:  # ftruncate of an unlinked file under libfuse 3: nothing to find
                raise _fail(errno.EBADF)
            if self._entry(path).is_dir:
                raise _fail(errno.EISDIR)
            temp = _OpenFile(path)
            self._truncate(temp, length)
            self._store(temp)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        with self._lock:
            self._store(self._handle(fh))
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        return self.flush(path, fh)

    def release(self, path: str | None, fh: int) -> int:
        with self._lock:
            of = self._handles.pop(fh, None)
            if of is None:
                return 0
            of.handles -= 1
            if of.handles > 0:
                return 0
            if of.path is not None and self._open.get(of.path) is of:
                del self._open[of.path]
            try:
                self._store(of)
            except OSError:
                # close() has already returned: the caller can no longer hear about it.
                self._report("lost", f"changes to {of.path} could not be written", of.path)
        return 0

    # -- names -----------------------------------------------------------------------------------

    def mkdir(self, path: str, mode: int) -> int:
        self._writable()
        with self._lock:
            if self._lookup(path) is not None:
                raise _fail(errno.EEXIST)
            self._call(f"making {path}", path, lambda: self.target.mkdir(path))
            self._remember(Entry(path, True, 0, int(time.time())))
        return 0

    def rmdir(self, path: str) -> int:
        self._writable()
        with self._lock:
            if path == "/":
                raise _fail(errno.EBUSY)
            if any(posixpath.dirname(p) == path for p in self._open):
                raise _fail(errno.ENOTEMPTY)
            self._call(f"removing {path}", path, lambda: self.target.rmdir(path))
            self._forget(path)
        return 0

    def unlink(self, path: str) -> int:
        """Remove a file; handles still open on it keep their content, as on POSIX."""
        self._writable()
        with self._lock:
            of = self._keep_readable(path)
            try:
                self._call(f"removing {path}", path, lambda: self.target.remove(path))
            except FileNotFoundError:
                if of is None or path in self._tree():
                    raise  # a created file not yet flushed is not on the target: that is fine
            self._orphan(path)
            self._forget(path)
        return 0

    def rename(self, old: str, new: str, flags: int = 0) -> int:
        """Rename a file or folder, replacing a file (or an empty folder) at ``new``.

        An open, changed file is written first so the target renames what the user sees; a file
        still open at ``new`` is detached, since the name now belongs to the renamed one.
        ``flags`` are renameat2's: NOREPLACE is honoured, EXCHANGE cannot be done atomically.
        """
        self._writable()
        if flags & RENAME_EXCHANGE:
            raise _fail(errno.EINVAL)
        with self._lock:
            src = self._entry(old)
            dst = self._lookup(new)
            if dst is not None and flags & RENAME_NOREPLACE:
                raise _fail(errno.EEXIST)
            if old == new:
                return 0
            if is_within(new, old):
                raise _fail(errno.EINVAL)
            if dst is not None:
                if src.is_dir and not dst.is_dir:
                    raise _fail(errno.ENOTDIR)
                if dst.is_dir and not src.is_dir:
                    raise _fail(errno.EISDIR)
                if dst.is_dir:
                    self.rmdir(new)  # ENOTEMPTY from the target when it is not empty
            for of in [of for p, of in self._open.items() if is_within(p, old)]:
                self._store(of)
            self._keep_readable(new)
            self._call(f"renaming {old}", old, lambda: self.target.rename(old, new))
            self._orphan(new)
            self._move(old, new)
        return 0

    def _keep_readable(self, path: str) -> _OpenFile | None:
        """Before a name goes away, fetch what its open handles may still read (POSIX keeps it)."""
        of = self._open.get(path)
        if of is not None and of.data is None:
            self._load(of)
        return of

    def _orphan(self, path: str) -> None:
        """After the name went away: its open file lives on for its handles, never written back."""
        of = self._open.pop(path, None)
        if of is not None:
            of.path = None

    def _move(self, old: str, new: str) -> None:
        """Carry cached entries and open files from ``old`` to ``new`` after a rename."""
        def moved(p: str) -> str:
            return new + p[len(old):]

        self._forget(new)
        for p in [p for p in self._entries if is_within(p, old)]:
            self._entries[moved(p)] = self._entries.pop(p)._replace(path=moved(p))
        for p in [p for p in self._open if is_within(p, old)]:
            of = self._open.pop(p)
            of.path = moved(p)
            self._open[of.path] = of

    # -- accepted and ignored: the board keeps no modes, owners or times we can set --------------

    def chmod(self, path: str | None, mode: int) -> int:
        self._writable()
        if path is not None:  # None: a file unlinked while open (fchmod)
            with self._lock:
                self._entry(path)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return self.chmod(path, 0)

    def utimens(self, path: str | None, times: tuple[int, int] | None = None) -> int:
        return self.chmod(path, 0)

    def init_with_config(self, conn: Any, config: Any) -> None:
        """Mount is up. With libfuse 3, ask for NULL paths on handles of unlinked files.

        Together with ``hard_remove`` this keeps libfuse from renaming a file that is unlinked
        or renamed over while open to ``.fuse_hiddenNNN`` on the board, a leftover if the mount
        dies; such files live on in our open-file table instead. The price: ``fstat`` on such a
        file says ESTALE (libfuse has forgotten its node); reading and writing it still work.
        """
        if config is not None:
            config.nullpath_ok = 1
        if self._cwd is not None:
            os.chdir(self._cwd)  # libfuse moved the process to / when it started
        self.ready = True
        self._report("ready", "mounted")

    def destroy(self, path: str) -> None:
        """Unmounting: write what is still buffered, so an unmount never loses a save."""
        with self._lock:
            for of in list(self._handles.values()):
                try:
                    self._store(of)
                except OSError:
                    self._report("lost", f"changes to {of.path} could not be written", of.path)

    def open_files(self) -> list[str]:
        """Paths open right now (for messages such as 'still open at unmount')."""
        with self._lock:
            return list(self._open)


def mount(target: Target, mountpoint: str | os.PathLike[str], *, read_only: bool = False,
          foreground: bool = True, on_event: EventCallback | None = None) -> None:
    """Serve ``target`` at ``mountpoint`` until it is unmounted (or Ctrl-C in the foreground).

    Runs libfuse's loop in this thread; returns once unmounted. The target is not closed: the
    caller opened it and closes it.
    """
    fuse = _fuse()
    ops = TargetFS(target, read_only=read_only, on_event=on_event,
                   cwd=os.getcwd() if foreground else None)
    options: dict[str, Any] = {"foreground": foreground, "fsname": "mpkick", "subtype": "mpkick",
                               "default_permissions": True, "hard_remove": True}
    version = (getattr(fuse, "fuse_version_major", 2), getattr(fuse, "fuse_version_minor", 0))
    if version >= (3, 12):
        # These libfuses complain about their own default thread limits unless told them;
        # older ones refuse the options.
        options.update(max_threads=8, max_idle_threads=4)
    if read_only:
        options["ro"] = True
    try:
        _fuse_class(fuse)(ops, os.fspath(mountpoint), **options)
    except RuntimeError as exc:
        if ops.ready:
            return  # libfuse 3 reports a loop ended by Ctrl-C (SIGINT/SIGTERM) as a failure
        raise MpkickError(
            f"could not mount at {os.fspath(mountpoint)} (libfuse said {exc}): is it an empty "
            "folder that is not already mounted, and is /dev/fuse usable?") from exc
