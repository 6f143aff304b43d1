"""Any filesystem target as a FUSE filesystem, so the host's file manager and editors work on it.

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
import time
from typing import Any

from ..target import META, Entry, is_within
from .files import FileOps
from .state import _fail, _OpenFile

#: renameat2(2) flags, which libfuse 3 passes on and mfusepy drops (see ``fuse._fuse_class``).
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


class TargetFS(FileOps):
    """The FUSE operations over a ``Target``; ``mfusepy.FUSE(TargetFS(...), mountpoint)`` runs it.

    Subclassing ``mfusepy.Operations`` is not needed: mfusepy only wires up the methods that exist,
    which lets the class be defined (and type-checked) without libfuse on the machine.
    """

    use_ns = True  # utimens gets integer nanoseconds, not deprecated floats
    flag_nullpath_ok = True  # libfuse 2: see init_with_config
    # mfusepy wires up every attribute named like a FUSE operation (``lock``, ``flush`` ...):
    # keep anything that is not an operation under a leading underscore.

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
