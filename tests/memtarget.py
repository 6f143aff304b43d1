"""A filesystem target kept in a dict: the ``Target`` contract with nothing behind it.

Used where a test is about the layer above the target (mount's caching and buffering), and to
make a target fail on purpose (``gone``, which a real board only does when unplugged; and
``out_of_ram_at``, a write that finds the heap too fragmented, as a small board's may).
"""

from __future__ import annotations

import errno
import hashlib
import posixpath
import threading
import time

from mpkick.errors import DeviceTimeout, os_error
from mpkick.target import Entry, LocalTarget, Progress, Usage, is_within, norm


class MemTarget(LocalTarget):
    """Files and folders in memory. ``calls`` counts exchanges, as a serial link would cost them."""

    def __init__(self, total: int = 1 << 20) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {"/"}
        self.total = total
        self.gone = False  # True: every operation times out, like an unplugged board
        self.out_of_ram_at: int | None = None  # this write (counted from 1) fails with ENOMEM
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()  # catches a caller that forgets to serialise

    def _enter(self, op: str) -> None:
        if not self._lock.acquire(blocking=False):
            raise AssertionError(f"{op}: concurrent access to a single-link target")
        self._lock.release()
        self.calls[op] = self.calls.get(op, 0) + 1
        if self.gone:
            raise DeviceTimeout("the board stopped answering (unplugged?)")

    def _need_parent(self, path: str) -> None:
        parent = posixpath.dirname(path)
        if parent in self.files:
            raise os_error(errno.ENOTDIR, path)
        if parent not in self.dirs:
            raise os_error(errno.ENOENT, path)

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        self._enter("tree")
        path = norm(path)
        if path not in self.dirs:
            raise os_error(errno.ENOTDIR if path in self.files else errno.ENOENT, path)
        out = [Entry(d, True, 0, None) for d in self.dirs if d != path and is_within(d, path)]
        out += [Entry(f, False, len(b), int(time.time()),
                      hashlib.sha256(b).hexdigest() if hashes else None)
                for f, b in self.files.items() if is_within(f, path)]
        return sorted(out)

    def stat(self, path: str) -> Entry:
        self._enter("stat")
        path = norm(path)
        if path in self.dirs:
            return Entry(path, True)
        if path in self.files:
            return Entry(path, False, len(self.files[path]))
        raise os_error(errno.ENOENT, path)

    def read(self, path: str) -> bytes:
        self._enter("read")
        path = norm(path)
        if path in self.dirs:
            raise os_error(errno.EISDIR, path)
        if path not in self.files:
            raise os_error(errno.ENOENT, path)
        return self.files[path]

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        self._enter("write")
        path = norm(path)
        self._need_parent(path)
        if path in self.dirs:
            raise os_error(errno.EISDIR, path)
        if self.calls["write"] == self.out_of_ram_at:
            raise os_error(errno.ENOMEM, path)
        used = sum(map(len, self.files.values())) - len(self.files.get(path, b""))
        if used + len(data) > self.total:
            raise os_error(errno.ENOSPC, path)
        self.files[path] = bytes(data)
        if progress:
            progress(len(data))

    def mkdir(self, path: str) -> None:
        self._enter("mkdir")
        path = norm(path)
        self._need_parent(path)
        if path in self.dirs or path in self.files:
            raise os_error(errno.EEXIST, path)
        self.dirs.add(path)

    def remove(self, path: str) -> None:
        self._enter("remove")
        path = norm(path)
        if path in self.dirs:
            raise os_error(errno.EISDIR, path)
        if self.files.pop(path, None) is None:
            raise os_error(errno.ENOENT, path)

    def rmdir(self, path: str) -> None:
        self._enter("rmdir")
        path = norm(path)
        if path not in self.dirs:
            raise os_error(errno.ENOTDIR if path in self.files else errno.ENOENT, path)
        if any(posixpath.dirname(p) == path for p in [*self.files, *self.dirs] if p != "/"):
            raise os_error(errno.ENOTEMPTY, path)
        self.dirs.discard(path)

    def rename(self, src: str, dst: str) -> None:
        self._enter("rename")
        src, dst = norm(src), norm(dst)
        self._need_parent(dst)
        if src in self.files:
            if dst in self.dirs:
                raise os_error(errno.EISDIR, dst)
            self.files[dst] = self.files.pop(src)
            return
        if src not in self.dirs:
            raise os_error(errno.ENOENT, src)
        if dst in self.dirs or dst in self.files:
            raise os_error(errno.EEXIST, dst)
        self.dirs = {dst + d[len(src):] if is_within(d, src) else d for d in self.dirs}
        self.files = {dst + f[len(src):] if is_within(f, src) else f: b
                      for f, b in self.files.items()}

    def usage(self) -> Usage:
        self._enter("usage")
        return Usage(self.total, self.total - sum(map(len, self.files.values())), 4096)

    def close(self) -> None:
        pass
