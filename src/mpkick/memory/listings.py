"""Listings of board trees this host has seen or predicted, keyed by their digest.

Round trips are the enemy on a serial link, and a full listing with hashes is a few bytes per
file. The board can prove in one short answer that its tree is one we know: its agent folds
``kind size sha256 path`` of every entry into a 128-bit XOR of sha256s (order-free, so the host
can compute it from entries without knowing the board's walk order). A listing found under that
digest is exactly the board's tree, apart from mtimes. After a push the host stores the listing
it predicts from what the board acknowledged, so the next unchanged push is one exchange.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable

from ..target import Entry
from . import cachedir

KEEP = 200  # listings kept; the oldest go first


def digest(entries: Iterable[Entry]) -> str:
    """The digest the board's ``mk_tree(root, True, True)`` prints for these entries."""
    acc = 0
    for e in entries:
        line = (f"d\t0\t-\t{e.path}\n" if e.is_dir
                else f"f\t{e.size}\t{e.sha256 or '-'}\t{e.path}\n")
        folded = hashlib.sha256(line.encode("utf-8", "surrogateescape")).digest()[:16]
        acc ^= int.from_bytes(folded, "big")
    return f"{acc:032x}"


def load(key: str) -> list[Entry] | None:
    """The listing stored under ``key``, or None; checked against its digest before use."""
    raw = cachedir.load(cachedir.cache_dir("trees") / f"{key}.json")
    if raw is None:
        return None
    try:
        entries = [Entry(*row) for row in json.loads(raw)]
    except (ValueError, TypeError):
        return None
    return entries if digest(entries) == key else None


def store(entries: list[Entry]) -> str:
    """Remember ``entries`` under their digest; returns the digest."""
    key = digest(entries)
    folder = cachedir.cache_dir("trees")
    cachedir.store(folder / f"{key}.json", json.dumps([list(e) for e in entries]).encode())
    known = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)
    for old in known[:-KEEP]:
        old.unlink(missing_ok=True)
    return key
