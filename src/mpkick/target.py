"""The filesystem-target contract that push, watch, mount, install and image are written against.

A live board, the virtual board, a littlefs image file and the tests' in-memory target all
implement ``Target``. Paths are absolute, ``/``-separated board paths. Failures are ``OSError``
subclasses carrying an errno (``FileNotFoundError``, ``IsADirectoryError`` ...), so the same
``except`` works for every target.

The few ways targets differ are declared, never probed: ``features`` says what a target can
do, ``writer()`` is how a plan's changes reach it (one binary session on a board, one save at
the end on an image), and ``runner()`` is the separate code-running side, which only boards
have. A command that needs something a target lacks reads ``features`` and says so.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

from .errors import InputError

#: Called with the number of bytes just handled for the current file.
Progress = Callable[[int], None]

#: Called with each piece of a running program's output.
Stream = Callable[[bytes], None]

#: mpkick's own folder on a target (agent, manifest, id): never planned, listed or deleted.
META = "/.mpkick"


@dataclass(frozen=True)
class Features:
    """What a target can do, declared by the target itself.

    ``folders``: ``mkdir`` exists (a micro:bit's flash is flat). ``atomic``: a write is whole
    or not at all (temporary name, then rename); without it a cut leaves a damaged file the
    next push finds by its sum. ``rename``: ``rename()`` works. ``usage``: ``usage()`` can
    say how much space is free (``os.statvfs``); without it a push finds out by ENOSPC.
    ``strong_hashes``: ``tree(hashes=True)`` gives sha256s; else it gives weak sums
    (``sum:...``) that only the host's own record of what it pushed can turn into sha256s.
    ``delta``: ``signatures()`` works and updates may travel as copy ranges of the old file.
    ``frame``: payload bytes per message on the way there, for choosing between a delta and
    the whole file.
    """

    folders: bool = True
    atomic: bool = True
    rename: bool = True
    usage: bool = True
    strong_hashes: bool = True
    delta: bool = False
    frame: int = 4096


#: A local file system or a file: everything on, no link to spare.
LOCAL = Features()


class Entry(NamedTuple):
    """One file or folder of a target's tree."""

    path: str
    is_dir: bool
    size: int = 0
    mtime: int | None = None  # seconds since 1970, when the target keeps it
    #: Hex sha256 when asked for; a weak sum (``sum:...``) on a target whose features say it
    #: has no strong hashes; None where nothing is known.
    sha256: str | None = None


class Usage(NamedTuple):
    """Space on a target's filesystem, in bytes."""

    total: int
    free: int
    block_size: int


class Writer(Protocol):
    """How the changes of a plan reach a target, in the order the plan gives them."""

    def put(self, path: str, data: bytes, progress: Progress | None = None) -> None: ...

    def put_delta(self, path: str, ops: list[Any], data: bytes,
                  progress: Progress | None = None) -> None:
        """Write ``data`` as ``ops``: ranges ``(offset, length)`` of the old file and literal
        bytes (``sync.delta``'s ops); ``data`` is the result, for checking."""

    def mkdir(self, path: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    @property
    def wire_bytes(self) -> int:
        """Bytes that crossed the link so far (compressed and framed where the target is)."""


class RunnerInfo(Protocol):
    """What a code-running target says about its firmware."""

    @property
    def mpy(self) -> int | None:
        """``sys.implementation._mpy``: the bytecode version its compiled files must have."""

    @property
    def uid(self) -> str | None: ...


class CodeRunner(Protocol):
    """The code-running side of a target (a board): only ``Target.runner()`` hands one out."""

    def exec(self, code: str, timeout: float | None = 10.0,
             stream: Stream | None = None) -> bytes: ...

    def run(self, code: str, stream: Stream) -> None:
        """Run ``code`` for as long as it runs, streaming its output; Ctrl-C interrupts."""

    def reset(self, hard: bool = False) -> None: ...

    def soft_reset(self) -> None:
        """A fresh interpreter (boot.py does not run), back at the raw REPL."""

    def start(self, code: str) -> None:
        """Start ``code`` and return at once; its output comes through ``take``."""

    def run_file(self, path: str, stream: Stream | None = None) -> None:
        """Run the program at ``path`` as ``__main__``: to its end with ``stream``, or started
        and left running without (its output for ``take``)."""

    def take(self, timeout: float) -> bytes:
        """Whatever a started program printed within ``timeout`` (raw REPL framing kept)."""

    def interrupt(self) -> None:
        """Stop whatever runs and get the REPL back."""

    def info(self) -> RunnerInfo: ...

    @property
    def interrupt_note(self) -> str | None:
        """What connecting did to a program that was running, for commands that should say."""


@runtime_checkable
class Target(Protocol):
    """What every filesystem target offers. Writes are atomic: old content or new, never a mix."""

    @property
    def features(self) -> Features: ...

    def writer(self, fresh: str | None = None) -> AbstractContextManager[Writer]:
        """The writer a plan is applied through. ``fresh``: a folder that did not exist
        before; what the writer makes under it is all there is (a board remembers that
        listing instead of asking for it next time)."""

    def runner(self) -> CodeRunner | None:
        """The target's code-running side; None for a target that only stores files."""

    def identity(self) -> str:
        """A stable name for this target's storage: what the host remembers is kept under it."""

    def notes(self) -> list[str]:
        """How bytes travel to this target and how they are checked, for ``--verbose``."""

    def relieve(self, exc: OSError) -> str | None:
        """After ``exc`` (a board out of RAM): give something up for the next try and say
        what, or None when there is nothing left to give up (or nothing to do with RAM)."""

    def signatures(self, want: list[tuple[str, int]]) -> list[str]:
        """Block signatures of the files ``want`` (path, block size), one line each; only
        for a target whose ``features.delta`` is set."""

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


# --------------------------------------------------------------------------- shared parts


class TargetWriter:
    """A ``Writer`` over a target's own verbs, for targets without a link to spare."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sent = 0

    def put(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        self.target.write(path, data, progress)
        self.sent += len(data)

    def put_delta(self, path: str, ops: list[Any], data: bytes,
                  progress: Progress | None = None) -> None:
        self.put(path, data, progress)  # the bytes are at hand: nothing to save by patching

    def mkdir(self, path: str) -> None:
        try:
            self.target.mkdir(path)
        except FileExistsError:
            if not self.target.stat(path).is_dir:
                raise

    def remove(self, path: str) -> None:
        self.target.remove(path)

    def rmdir(self, path: str) -> None:
        self.target.rmdir(path)

    @property
    def wire_bytes(self) -> int:
        return self.sent


class LocalTarget:
    """The contract's parts that every target without a link shares: images, memory.

    Subclasses give the file verbs; this gives a plain writer, no code runner, no delta.
    """

    features = LOCAL

    def writer(self, fresh: str | None = None) -> AbstractContextManager[Writer]:
        return contextlib.nullcontext(TargetWriter(cast(Target, self)))

    def runner(self) -> CodeRunner | None:
        return None

    def identity(self) -> str:
        return f"{type(self).__name__}:{id(self)}"

    def notes(self) -> list[str]:
        return [f"target is a {type(self).__name__}: files are written directly, each to a "
                "temporary name then renamed"]

    def relieve(self, exc: OSError) -> str | None:
        return None

    def signatures(self, want: list[tuple[str, int]]) -> list[str]:
        raise OSError(95, "this target keeps no block signatures (features.delta is off)")
