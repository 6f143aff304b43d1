"""The host side of a push: SRC read once, every kept file with its content and sha256.

What is hashed is what is sent: the data is read once, so a file saved during a push goes
either whole or not at all.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..ignore import RULE_FILES, IgnoreRules

#: Longest name littlefs and FAT keep (bytes of UTF-8).
NAME_MAX = 255


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
            # Only a link needs resolving: any other child's real path is its folder's plus
            # its name (resolving every file cost a 1,000-file no-op push a tenth of its time).
            real = ancestors[-1] / child.name
            if child.is_symlink():
                real = child.resolve()
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


class Scanning:
    """``scan_local`` in a thread of its own, started at once: the host reads SRC while the
    board is opened and lists its files (for a large tree that is unchanged, the two take about
    as long). Reading files and hashing them release the GIL, as does waiting on the port."""

    def __init__(self, src: Path, rules: IgnoreRules, follow_links: bool = False) -> None:
        self._tree: LocalTree | None = None
        self._error: BaseException | None = None
        # A daemon: a push that fails on the board side does not wait for a big tree's read.
        self._thread = threading.Thread(target=self._run, args=(src, rules, follow_links),
                                        name="mpkick-scan", daemon=True)
        self._thread.start()

    def _run(self, src: Path, rules: IgnoreRules, follow_links: bool) -> None:
        try:
            self._tree = scan_local(src, rules, follow_links)
        except BaseException as exc:  # handed to whoever asks for the tree
            self._error = exc

    def error(self) -> BaseException | None:
        """What the scan raised, once it has ended."""
        self._thread.join()
        return self._error

    def result(self) -> LocalTree:
        error = self.error()
        if error is not None:
            raise error
        assert self._tree is not None
        return self._tree
