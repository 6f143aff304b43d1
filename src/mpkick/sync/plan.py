"""What a push changes on a target: pure, so ``--dry-run`` shows exactly what ``apply`` does.

``plan`` compares the host tree with the target's tree without any I/O. Only paths under
DEST are ever touched, and never mpkick's own folder.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..errors import InputError
from ..target import META, Entry, is_within, norm
from ..units import human
from .scan import LocalTree

#: The temporary suffix the board's agent writes under before renaming; a power cut can leave one.
TEMP_SUFFIX = ".mkt"

MKDIR, CREATE, UPDATE, DELETE, RMDIR, UNCHANGED = (
    "mkdir", "create", "update", "delete", "rmdir", "unchanged")



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
