"""One file, docs/benchmarks.md, with a section per benchmark script.

``bench/run.py`` owns the top of the file (down to its keep mark); every other script owns one
section below it, between ``<!-- begin NAME -->`` and ``<!-- end NAME -->``, and replaces only
that. Each script can then be rerun alone without losing the others' figures.
"""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, text: str, path: Path = DOC) -> None:
    """Replace section ``name`` of the doc with ``text`` (appended when it is new)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
