"""This host's record of what it pushed to a target that cannot hash: path -> size, weak sum
and the sha256 of the bytes sent.

Firmware without ``hashlib`` computes only a weak sum (``sum:...``, which misses bytes swapped
inside a block, as in ``x = 12`` -> ``x = 21``). A file whose size and weak sum still match
the record is taken to hold the recorded bytes; any other file has no known sha256 and is
sent again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ..target import Entry
from . import cachedir


class HostRecord:
    """What this host pushed to one target, kept in the user cache under its identity."""

    def __init__(self, key: str) -> None:
        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.path = cachedir.cache_dir("pushed") / f"{name}.json"
        self.key = key
        loaded = cachedir.load(self.path)
        try:
            data = json.loads(loaded) if loaded else {}
        except ValueError:
            data = {}
        self.files: dict[str, list[Any]] = data.get("files", {}) if data.get("key") == key else {}

    def resolve(self, entries: Iterable[Entry]) -> list[Entry]:
        """Entries with the recorded sha256 where size and weak sum still match the record."""
        out = []
        for e in entries:
            seen = self.files.get(e.path)
            known = seen is not None and not e.is_dir and [e.size, e.sha256] == seen[:2]
            out.append(e._replace(sha256=seen[2] if known and seen else None))
        return out

    def update(self, entries: Iterable[Entry], pushed: dict[str, tuple[int, str, str]]) -> None:
        """Keep what ``entries`` (the board after a push, weak sums) still agree with, plus
        ``pushed`` (path -> size, weak sum, sha256), and save."""
        now = {e.path: e for e in entries if not e.is_dir}
        files = {p: v for p, v in self.files.items() if p in now
                 and [now[p].size, now[p].sha256] == v[:2]}
        files.update({p: list(v) for p, v in pushed.items()})
        self.files = files
        cachedir.store(self.path, json.dumps({"key": self.key, "files": files}).encode())
