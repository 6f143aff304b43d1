"""The state a mounted target shares between FUSE calls: one lock, the cached tree, the table of
open files, and the one place where the target's failures become the errno FUSE passes on.

The cost model is a serial link: every exchange with the target is slow, bytes are cheap. So
the whole tree's names, sizes and times come from one ``target.tree()`` call, kept for a short
while and patched by our own changes rather than fetched again.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from ..errors import NoSpaceError
from ..target import Entry, Target, is_within

#: How long a tree listing is trusted before the target is asked again. Long enough that one
#: ``ls -l`` or one editor save costs one exchange, short enough that changes made on the board
#: by a running program show up almost at once.
TREE_TTL = 2.0

T = TypeVar("T")



class MountEvent(NamedTuple):
    """Something the user should hear about: ``kind`` is ``ready``, ``error`` or ``lost``."""

    kind: str
    message: str
    path: str | None = None


EventCallback = Callable[[MountEvent], None]


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


class MountState:
    """What every FUSE operation of ``TargetFS`` works on; the operations are its subclasses."""

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
