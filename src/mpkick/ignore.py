"""Which local files never go to a board: one set of rules for push, watch and image build.

Rules are gitignore patterns, so a project's ``.gitignore`` keeps working as it is, and
``.mpkickignore`` adds what should stay in git but off the board. Editor droppings and caches
are ignored by default because a push that copies ``4913`` or ``.#main.py`` surprises everyone.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pathspec

#: Always ignored: version control, caches, editor swap and lock files, our own state.
DEFAULTS = (".git/", "__pycache__/", "*.pyc", "*.swp", "*.swo", "*~", ".#*", "#*#", ".DS_Store",
            "4913", "*.tmp", ".mpkick/")

#: Files at the source root whose lines are read as more rules.
RULE_FILES = (".gitignore", ".mpkickignore")


class IgnoreRules:
    """Gitwildmatch rules over ``/``-separated paths relative to the source root."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [p for p in patterns if p.strip() and not p.lstrip().startswith("#")]
        # Compiled on first use: importing pathspec costs a no-op push a twentieth of its time,
        # which a push spends in its scanning thread while the board lists its files.
        self._spec: pathspec.GitIgnoreSpec | None = None

    @classmethod
    def from_folder(cls, root: Path, extra: Iterable[str] = ()) -> IgnoreRules:
        """The defaults, the root's rule files, then ``extra`` (later rules win, as in git)."""
        patterns = list(DEFAULTS)
        for name in RULE_FILES:
            path = root / name
            if path.is_file():
                patterns += path.read_text(encoding="utf-8", errors="replace").splitlines()
        return cls([*patterns, *extra])

    def ignored(self, rel_posix_path: str, is_dir: bool) -> bool:
        """True when the path, or (for a folder) the folder itself, matches the rules."""
        path = rel_posix_path.strip("/")
        if not path:
            return False
        if self._spec is None:
            import pathspec

            self._spec = pathspec.GitIgnoreSpec.from_lines(self.patterns)
        return self._spec.match_file(path + "/" if is_dir else path)

    def walk(self, root: Path) -> list[tuple[str, bool]]:
        """Every kept ``(rel_posix_path, is_dir)`` below ``root``, parents before children.

        An ignored folder is not entered, so nothing below it is kept even when a later rule
        would re-include it: git behaves the same way.
        """
        out: list[tuple[str, bool]] = []
        pending = [root]
        while pending:
            for child in pending.pop().iterdir():
                rel = child.relative_to(root).as_posix()
                is_dir = child.is_dir()
                if not self.ignored(rel, is_dir):
                    out.append((rel, is_dir))
                    if is_dir:
                        pending.append(child)
        return sorted(out)
