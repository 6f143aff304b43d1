"""What this host last pushed to each target, by content: the base a delta is made against.

Content-addressed, so an entry is right whenever the target reports that hash, however old
it is; bounded, so a cache that only grows never fills the user's disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from .cachedir import cache_dir, load, store

CACHE_LIMIT = 64 << 20  # per target


class ContentCache:
    """What this host last pushed to one board, by sha256; content-addressed, so an entry is
    right whenever the board reports that hash, however old it is."""

    def __init__(self, board_id: str) -> None:
        self.folder = cache_dir("delta") / board_id
        self._total: int | None = None  # bytes held, counted once, then kept up to date

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest

    def get(self, digest: str | None) -> bytes | None:
        if not digest or len(digest) != 64:
            return None
        path = self._path(digest)
        data = load(path)
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            return None  # a damaged entry is a miss, never a wrong base
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return data

    def put(self, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return
        store(path, data)
        if self._total is None:
            self.prune()  # counts what is there; a push of 1,000 files lists the folder once
        else:
            self._total += len(data)
            if self._total > CACHE_LIMIT:
                self.prune()

    def prune(self, limit: int = CACHE_LIMIT) -> None:
        """Forget the least recently used entries past ``limit`` bytes."""
        try:
            files = [(st.st_mtime, st.st_size, p) for p in self.folder.glob("*/*")
                     for st in (p.stat(),)]
        except OSError:
            return
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
        self._total = total
