"""Open files of a mounted target: content buffered per file, written back whole.

A file is read whole when first needed and served from memory; writes collect in its buffer
and reach the target in one atomic, verified ``target.write`` when the file is flushed, synced
or closed. Half-written files never land on the board, and editors that truncate or seek see
POSIX behaviour.
"""

from __future__ import annotations

import errno
import os
import posixpath
import time

from ..target import Entry
from .state import MountState, _fail, _OpenFile


class FileOps(MountState):
    """The FUSE operations on file content: open, create, read, write, truncate, flush, close."""

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

