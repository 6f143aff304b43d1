"""The filesystem-target interface that push, watch, mount and image are written against once.

A live board, the virtual board and a littlefs image file all implement ``Target``. Paths are
absolute, ``/``-separated board paths. Failures are ``OSError`` subclasses carrying an errno
(``FileNotFoundError``, ``IsADirectoryError`` ...), so the same ``except`` works for every target.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import NamedTuple, Protocol, runtime_checkable

from .errors import InputError

#: Called with the number of bytes just handled for the current file.
Progress = Callable[[int], None]


class Entry(NamedTuple):
    """One file or folder of a target's tree."""

    path: str
    is_dir: bool
    size: int = 0
    mtime: int | None = None  # seconds since 1970, when the target keeps it
    sha256: str | None = None  # hex digest, when asked for and the target can compute it


class Usage(NamedTuple):
    """Space on a target's filesystem, in bytes."""

    total: int
    free: int
    block_size: int


@runtime_checkable
class Target(Protocol):
    """What every filesystem target offers. Writes are atomic: old content or new, never a mix."""

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        """Every entry below ``path`` (not ``path`` itself), in one exchange with the target."""

    def stat(self, path: str) -> Entry:
        """The entry at ``path``; ``FileNotFoundError`` when there is none."""

    def read(self, path: str) -> bytes:
        """The whole content of the file at ``path``."""

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        """Replace (or create) the file at ``path`` atomically, verified where the target can."""

    def mkdir(self, path: str) -> None:
        """Make one folder; ``FileExistsError`` if something is already there."""

    def remove(self, path: str) -> None:
        """Remove one file; ``IsADirectoryError`` for a folder."""

    def rmdir(self, path: str) -> None:
        """Remove one empty folder."""

    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst``, replacing a file at ``dst``."""

    def usage(self) -> Usage:
        """Total and free space."""

    def close(self) -> None:
        """Release the port or file behind the target."""


def norm(path: str, base: str = "/") -> str:
    """An absolute, normalised board path; refuses anything that climbs above the root.

    ``..`` is rejected outright rather than resolved: a name that only makes sense by climbing
    out of its folder is a mistake or an attack, never what a user means on a board.
    """
    if "\x00" in path:
        raise InputError(f"path {path!r} contains a NUL byte")
    joined = path if path.startswith("/") else posixpath.join(base, path)
    parts = [p for p in joined.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"path {path!r} contains '..': give a path inside the board's filesystem")
    return "/" + "/".join(parts)


def is_within(path: str, root: str) -> bool:
    """True when normalised ``path`` is ``root`` or lies below it."""
    return root == "/" or path == root or path.startswith(root.rstrip("/") + "/")


def makedirs(target: Target, path: str) -> None:
    """Make ``path`` and its missing parents, like ``mkdir -p``."""
    path = norm(path)
    if path == "/":
        return
    try:
        entry = target.stat(path)
    except FileNotFoundError:
        makedirs(target, posixpath.dirname(path))
        target.mkdir(path)
        return
    if not entry.is_dir:
        raise NotADirectoryError(20, "Not a directory", path)


def remove_tree(target: Target, path: str) -> None:
    """Remove ``path`` and everything below it, like ``rm -r``."""
    entry = target.stat(path)
    if not entry.is_dir:
        target.remove(path)
        return
    for child in sorted(target.tree(path), key=lambda e: e.path.count("/"), reverse=True):
        (target.rmdir if child.is_dir else target.remove)(child.path)
    if norm(path) != "/":
        target.rmdir(path)
