"""What is on a target under DEST, with a sha256 per file wherever it can be known.

A board with ``hashlib`` answers with sha256s in one exchange (its agent keeps a manifest so
unchanged files are not rehashed). Firmware without ``hashlib`` can only compute a weak sum
(``sum:...``, which misses bytes swapped inside a block, as in ``x = 12`` -> ``x = 21``), so
the host keeps its own record of what it pushed to that board: path -> size, weak sum and the
sha256 of the bytes sent. A file whose size and weak sum still match the record is taken to
hold those bytes, and its sha256 is the record's; any other file has no known sha256 and is
sent again. The same weak sums verify each file after writing, since such a board cannot
check a sha256 itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from ..errors import InputError
from ..protocol.channel import file_digest
from ..target import Entry, Target, norm


def is_board(target: Target) -> bool:
    return callable(getattr(target, "session", None)) and hasattr(target, "caps")


def weak_board(target: Target) -> bool:
    """True for a board whose firmware cannot compute sha256."""
    return is_board(target) and not bool(getattr(target, "caps", None) and
                                               target.caps.hashlib)  # type: ignore[attr-defined]


def weak_tree(board: Any, dest: str) -> list[Entry]:
    """The tree with the board's own digests (weak sums where it has no hashlib)."""
    entries: list[Entry] = board.summed_tree(norm(dest))
    return entries


class HostRecord:
    """What this host pushed to one board, kept in the user cache (per board identity)."""

    def __init__(self, key: str) -> None:
        from ..memory import cachedir

        name = hashlib.sha256(key.encode()).hexdigest()[:32]
        self.path = cachedir.cache_dir("pushed") / f"{name}.json"
        self.key = key
        loaded = cachedir.load(self.path)
        try:
            data = json.loads(loaded) if loaded else {}
        except ValueError:
            data = {}
        self.files: dict[str, list[Any]] = data.get("files", {}) if data.get("key") == key else {}

    @classmethod
    def for_board(cls, board: Any) -> HostRecord:
        info = board.info()
        return cls(f"{info.uid or board.transport.name}")

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
        from ..memory import cachedir

        now = {e.path: e for e in entries if not e.is_dir}
        files = {p: v for p, v in self.files.items() if p in now
                 and [now[p].size, now[p].sha256] == v[:2]}
        files.update({p: list(v) for p, v in pushed.items()})
        self.files = files
        cachedir.store(self.path, json.dumps({"key": self.key, "files": files}).encode())


def remote_tree(target: Target, dest: str, record: HostRecord | None = None) -> list[Entry]:
    """Every entry below ``dest``, each file with its sha256 where it can be known."""
    if weak_board(target):
        entries = weak_tree(target, dest)
        return record.resolve(entries) if record else [e._replace(sha256=None) for e in entries]
    return target.tree(dest, hashes=True)


def verify_weak(board: Any, dest: str, written: dict[str, bytes]) -> list[Entry]:
    """Read back the weak sums of ``written`` (path -> bytes sent); EIO for any that differ."""
    entries = weak_tree(board, dest)
    found = {e.path: e for e in entries}
    for path, data in written.items():
        entry = found.get(path)
        if entry is None or entry.sha256 != file_digest(data, False):
            raise OSError(5, "the board's copy did not match after writing; push again", path)
    return entries


def missing_folders(target: Target, dest: str) -> list[str]:
    """The folders from the root down to ``dest`` that do not exist yet, outermost first;
    refused when one of them is a file."""
    dest = norm(dest)
    missing: list[str] = []
    path = dest
    while path != "/":
        try:
            entry = target.stat(path)
        except FileNotFoundError:
            missing.insert(0, path)
            path = path.rsplit("/", 1)[0] or "/"
            continue
        if not entry.is_dir:
            raise InputError(f"{path} is a file on the board, not a folder: give a DEST folder "
                             "(or remove the file)")
        break
    return missing
