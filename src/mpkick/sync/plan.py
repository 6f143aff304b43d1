"""Plan, then apply: what a push changes on a target, and doing it.

``scan_local`` reads the host tree once (content and sha256), ``plan`` compares it with the
target's tree without any I/O (so ``--dry-run`` shows exactly what ``apply`` would do), and
``apply`` carries the plan out on any ``Target``. On a board the whole plan travels in one
binary session (one exec), so a push costs one exchange to learn the board's state and one to
change it, however many files move.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..errors import InputError, NoSpaceError
from ..ignore import RULE_FILES, IgnoreRules
from ..target import Entry, Progress, Target, is_within, norm

#: mpkick's own folder on a board: never planned, never deleted.
META = "/.mpkick"

#: The temporary suffix the board's agent writes under before renaming; a power cut can leave one.
TEMP_SUFFIX = ".mkt"

#: Longest name littlefs and FAT keep (bytes of UTF-8).
NAME_MAX = 255

MKDIR, CREATE, UPDATE, DELETE, RMDIR, UNCHANGED = (
    "mkdir", "create", "update", "delete", "rmdir", "unchanged")


# --------------------------------------------------------------------------- the host side


@dataclass(frozen=True)
class LocalFile:
    """One file as it will be on the target; ``data`` is read once so what is hashed is sent."""

    rel: str
    data: bytes = field(repr=False)
    sha256: str
    origin: Path

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class LocalTree:
    """The kept files and folders of SRC, by ``/``-separated path relative to it."""

    root: Path
    files: dict[str, LocalFile] = field(default_factory=dict)
    dirs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # links left out, for --verbose

    def add(self, rel: str, data: bytes, origin: Path) -> None:
        self.files[rel] = LocalFile(rel, data, hashlib.sha256(data).hexdigest(), origin)


def check_name(rel: str) -> None:
    """Refuse a name the board cannot hold, or that mpkick's line-based tree listing would split."""
    for part in rel.split("/"):
        try:
            size = len(part.encode("utf-8"))
        except UnicodeEncodeError:
            raise InputError(f"{rel!r} is not valid UTF-8: a board keeps only UTF-8 names; "
                             "rename it or add it to .mpkickignore") from None
        if size > NAME_MAX:
            raise InputError(f"{rel}: name longer than {NAME_MAX} bytes; boards cannot hold it")
        if any(c in part for c in "\t\n\r\x00"):
            raise InputError(f"{rel!r}: tabs and line breaks in names cannot go to a board; "
                             "rename it or add it to .mpkickignore")


def scan_local(src: Path, rules: IgnoreRules, follow_links: bool = False) -> LocalTree:
    """Every kept file of ``src`` with its content and sha256.

    The root's ``.gitignore`` and ``.mpkickignore`` stay on the host.
    A symbolic link pointing outside ``src`` is left out unless ``follow_links``: it usually
    names a host resource (a venv, a home folder) that was never meant for the board. A link
    back to one of its own parent folders is always left out, or the walk would never end.
    """
    if not src.exists():
        raise InputError(f"{src} does not exist: give the folder (or file) to push")
    tree = LocalTree(src)
    if src.is_file():
        check_name(src.name)
        tree.add(src.name, src.read_bytes(), src)
        return tree
    base = src.resolve()
    pending: list[tuple[Path, str, tuple[Path, ...]]] = [(src, "", (base,))]
    while pending:
        folder, prefix, ancestors = pending.pop()
        for child in sorted(folder.iterdir()):
            rel = prefix + child.name
            if not prefix and child.name in RULE_FILES:
                continue  # rules for the host, not files for the board
            real = child.resolve()
            if child.is_symlink():
                outside = real != base and base not in real.parents
                if (outside and not follow_links) or real in ancestors or not child.exists():
                    tree.skipped.append(rel)
                    continue
            is_dir = child.is_dir()
            if rules.ignored(rel, is_dir):
                continue
            check_name(rel)
            if is_dir:
                tree.dirs.append(rel)
                pending.append((child, rel + "/", (*ancestors, real)))
            else:
                tree.add(rel, child.read_bytes(), child)
    tree.dirs.sort()
    return tree


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Action:
    """One step of a plan; ``path`` is the target's absolute path."""

    kind: str
    path: str
    size: int = 0
    old_size: int = 0
    rel: str = ""  # the local file's relative path, for writes
    reason: str = ""  # why a delete happens (stale, twin, leftover, replaced)
    old_sha256: str | None = None  # the target's copy, for an update: a delta's base


@dataclass
class Plan:
    """What a push does, in order: deletes, folders, writes; ``unchanged`` is listed last."""

    dest: str
    actions: list[Action] = field(default_factory=list)
    local: LocalTree | None = field(default=None, repr=False)

    def of(self, *kinds: str) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    @property
    def writes(self) -> list[Action]:
        return self.of(CREATE, UPDATE)

    @property
    def bytes_to_write(self) -> int:
        return sum(a.size for a in self.writes)

    @property
    def empty(self) -> bool:
        """True when applying would change nothing."""
        return not any(a.kind != UNCHANGED for a in self.actions)

    def counts(self) -> dict[str, int]:
        out = {k: 0 for k in (CREATE, UPDATE, DELETE, UNCHANGED, MKDIR)}
        for a in self.actions:
            out[DELETE if a.kind == RMDIR else a.kind] += 1
        return out

    def lines(self, unchanged: bool = True) -> list[str]:
        """One line per action, as ``--dry-run`` shows them."""
        out = []
        for a in self.actions:
            if a.kind == UNCHANGED and not unchanged:
                continue
            size = "" if a.kind in (MKDIR, RMDIR) else human(a.size if a.kind != DELETE
                                                             else a.old_size)
            if a.kind == UPDATE:
                size = f"{human(a.old_size)} -> {size}"
            why = f"  ({a.reason})" if a.reason else ""
            label = "delete" if a.kind == RMDIR else a.kind
            out.append(f"{label:<9} {a.path}{'/' if a.kind in (MKDIR, RMDIR) else ''}"
                       f"{'  ' + size if size else ''}{why}")
        return out

    def summary(self) -> str:
        c = self.counts()
        return (f"{c[CREATE]} to create, {c[UPDATE]} to update, {c[DELETE]} to delete, "
                f"{c[UNCHANGED]} unchanged; {human(self.bytes_to_write)} to send")

    def __str__(self) -> str:
        return "\n".join([*self.lines(), self.summary()])


def human(n: int) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1000 or unit == "MB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


#: Ends every part of a path in ``board_order``: sorts after every character.
_LAST = "\U0010ffff"


def board_order(path: str) -> str:
    """The order a board's agent walks its tree in (littlefs's own listing order: in a
    folder, a name before a longer one that starts with it): writes and removals sent in this
    order let the board update its manifest in one streaming pass."""
    return path.replace("/", _LAST) + _LAST


def _twin(path: str) -> str | None:
    stem, ext = posixpath.splitext(path)
    return stem + {".py": ".mpy", ".mpy": ".py"}[ext] if ext in (".py", ".mpy") else None


def plan(local: LocalTree, remote_entries: Iterable[Entry], dest: str, delete: bool,
         create_dest: Iterable[str] = ()) -> Plan:
    """What to do so that ``dest`` holds ``local``; pure, so it can be shown before it runs.

    Files compare by size and sha256; a remote file without a known sha256 counts as changed
    (sending again is slow, never wrong). Only paths under ``dest`` are ever touched, and never
    mpkick's own ``/.mpkick``. Besides ``--delete``'s stale files, a few deletions always happen:
    a ``foo.py`` beside a pushed ``foo.mpy`` (or the reverse) would shadow it, a temporary file
    a power cut left behind, and a file standing where a folder must go (or the reverse, which
    needs ``--delete`` since it removes a whole folder). ``create_dest``: missing folders above
    and including ``dest``, outermost first.
    """
    dest = norm(dest)
    if is_within(dest, META) and dest != "/":
        raise InputError(f"{dest} is mpkick's own folder on the board: push somewhere else")
    out = Plan(dest, local=local)

    def at(rel: str) -> str:
        return norm(rel, dest)

    remote = {e.path: e for e in remote_entries
              if e.path != dest and is_within(e.path, dest) and not is_within(e.path, META)}
    want_files = {at(rel): f for rel, f in local.files.items()}
    want_dirs = {at(rel) for rel in local.dirs}
    deletes: list[Action] = []
    gone: set[str] = set()

    def drop(entry: Entry, reason: str) -> None:
        if entry.path in gone:
            return
        if entry.is_dir:
            for child in sorted((e for e in remote.values() if e.path != entry.path
                                 and is_within(e.path, entry.path)), key=lambda e: e.path):
                drop(child, reason)
        gone.add(entry.path)
        deletes.append(Action(RMDIR if entry.is_dir else DELETE, entry.path,
                              old_size=entry.size, reason=reason))

    for path, entry in sorted(remote.items()):
        if path in gone:
            continue
        if entry.is_dir and path in want_files:
            if not delete:
                raise InputError(f"{path} is a folder on the board but a file in "
                                 f"{local.root}: remove it, or push with --delete")
            drop(entry, "replaced by a file")
        elif not entry.is_dir and path in want_dirs:
            drop(entry, "replaced by a folder")
        elif not entry.is_dir and path.endswith(TEMP_SUFFIX) and \
                path[:-len(TEMP_SUFFIX)] in want_files:
            drop(entry, "left by an interrupted push")
        elif not entry.is_dir and path not in want_files and _twin(path) in want_files:
            drop(entry, "would shadow " + posixpath.basename(_twin(path) or ""))
        elif delete and path not in want_files and path not in want_dirs:
            drop(entry, "")
    # Files before their folders, deepest folders first.
    deletes.sort(key=lambda a: (a.kind == RMDIR, -a.path.count("/") if a.kind == RMDIR else 0,
                                board_order(a.path)))
    out.actions += deletes
    for path in [*create_dest, *sorted(want_dirs)]:
        existing = remote.get(path)
        if existing is None or path in gone:
            out.actions.append(Action(MKDIR, path))
    unchanged = []
    for path, f in sorted(want_files.items(), key=lambda item: board_order(item[0])):
        old = remote.get(path)
        if old is None or path in gone:
            out.actions.append(Action(CREATE, path, f.size, rel=f.rel))
        elif old.size == f.size and old.sha256 == f.sha256:
            unchanged.append(Action(UNCHANGED, path, f.size, f.size, rel=f.rel))
        else:
            out.actions.append(Action(UPDATE, path, f.size, old.size, rel=f.rel,
                                      old_sha256=old.sha256))
    out.actions += unchanged
    return out


# --------------------------------------------------------------------------- applying


class Writer(Protocol):
    """What ``apply`` writes through: a board's binary session, or a plain target."""

    def put(self, path: str, data: bytes, progress: Progress | None = None) -> None: ...

    def mkdir(self, path: str) -> None: ...

    def remove(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...


class TargetWriter:
    """A ``Writer`` over the plain ``Target`` methods (images, and anything not a board)."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def put(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        self.target.write(path, data, progress)

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


#: Called for each action with the bytes just sent (0 when an action starts).
ApplyProgress = Callable[[Action, int], None]

#: How one changed file's bytes travel (the default sends them whole with ``writer.put``);
#: a delta transfer plugs in here.
Transfer = Callable[[Writer, Action, LocalFile, Progress], None]


def send_whole(writer: Writer, action: Action, file: LocalFile, progress: Progress) -> None:
    writer.put(action.path, file.data, progress)


@dataclass
class Result:
    """What a push did (or, with ``dry_run``, would do: see ``plan``)."""

    plan: Plan
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    bytes_sent: int = 0  # file content handed to the target
    wire_bytes: int = 0  # bytes that crossed the link (compressed, framed)
    seconds: float = 0.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # which transfer path was chosen

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, {self.deleted} deleted, "
                f"{self.unchanged} unchanged; {human(self.bytes_sent)} sent, "
                f"{human(self.wire_bytes)} on the wire, {self.seconds:.2f} s")


def space_needed(plan: Plan, block_size: int) -> int:
    """Bytes of free flash the plan needs, counted in whole blocks as littlefs allocates them.

    Each write needs its new size while the old copy still exists (temp file, then rename), so
    the largest update counts whole on top of the growth of all others; a new folder costs a
    metadata pair; deletions run first and give their blocks back.
    """
    def blocks(n: int) -> int:
        return -(-n // block_size) * block_size if n else 0

    grow = sum(blocks(a.size) - blocks(a.old_size) for a in plan.writes)
    peak = max((blocks(a.old_size) for a in plan.of(UPDATE)), default=0)
    freed = sum(blocks(a.old_size) for a in plan.of(DELETE))
    dirs = 2 * block_size * len(plan.of(MKDIR))
    return max(0, grow + peak + dirs - freed) + 2 * block_size


def check_space(target: Target, plan: Plan) -> None:
    """Refuse, before anything is written, a plan the target's free space cannot hold."""
    if not plan.writes and not plan.of(MKDIR):
        return
    try:
        usage = target.usage()
    except InputError:
        return  # the firmware cannot say (no os.statvfs): ENOSPC will name the file instead
    need = space_needed(plan, usage.block_size or 4096)
    if need > usage.free:
        raise NoSpaceError(
            f"the push needs about {human(need)} of flash but only {human(usage.free)} is free: "
            "nothing was written; remove files from the board (push --delete), ignore more "
            "files, or push less")


def apply(target: Target, plan: Plan, progress: ApplyProgress | None = None,
          transfer: Transfer | None = None) -> Result:
    """Carry ``plan`` out on ``target``; on a board, in one binary session (one exec)."""
    start = time.monotonic()
    result = Result(plan, unchanged=len(plan.of(UNCHANGED)))
    if plan.empty:
        result.seconds = time.monotonic() - start
        return result
    if plan.of(MKDIR) and not getattr(getattr(target, "caps", None), "mkdir", True):
        raise InputError("this board's flash has no folders (no os.mkdir): push a flat folder, "
                         "or give a DEST folder that exists")
    check_space(target, plan)
    local = plan.local
    files = local.files if local is not None else {}
    send = transfer or send_whole
    report = progress or (lambda _a, _n: None)
    session = getattr(target, "session", None)

    def run(writer: Writer) -> None:
        for action in plan.actions:
            if action.kind == UNCHANGED:
                continue
            report(action, 0)
            if action.kind == DELETE:
                writer.remove(action.path)
                result.deleted += 1
            elif action.kind == RMDIR:
                writer.rmdir(action.path)
                result.deleted += 1
            elif action.kind == MKDIR:
                writer.mkdir(action.path)
            else:
                file = files[action.rel]

                def step(n: int, action: Action = action) -> None:
                    result.bytes_sent += n
                    report(action, n)

                send(writer, action, file, step)
                if action.kind == CREATE:
                    result.created += 1
                else:
                    result.updated += 1

    if callable(session):
        with session() as s:
            try:
                run(s)
            finally:
                result.wire_bytes = s.stats.wire_out
    else:
        batch = getattr(target, "batch", None)  # an image saves once, not after every file
        with batch() if callable(batch) else contextlib.nullcontext():
            run(TargetWriter(target))
        result.wire_bytes = result.bytes_sent
    result.seconds = time.monotonic() - start
    return result
