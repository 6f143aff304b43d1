"""The code that runs on the board, kept in real ``.py`` files and loaded by name."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent


@lru_cache(maxsize=None)
def source(name: str) -> str:
    """The text of agent module ``name`` (e.g. ``"mpkick_agent"``)."""
    return (HERE / f"{name}.py").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def version(name: str) -> str:
    """A short content hash: the board keeps a copy and reuses it while this matches."""
    return hashlib.sha256(source(name).encode()).hexdigest()[:12]


@lru_cache(maxsize=None)
def function(module: str, name: str) -> str:
    """The source of one top-level function of agent module ``module``: firmware with a few
    kB of heap is sent only the function it is about to call, never the whole module."""
    import ast

    text = source(module)
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return ast.get_source_segment(text, node) or ""
    raise KeyError(f"{module}.{name}")


def compact(text: str) -> str:
    """``text`` with comment lines and blank lines dropped and 4-space indents made 1-space:
    the same program in about half the bytes, which is what a 9 kB heap can compile (the
    agent files are indented by fours, and no string in them spans lines)."""
    out = []
    for line in text.splitlines():
        body = line.lstrip(" ")
        if not body or body.startswith("#"):
            continue
        depth = len(line) - len(body)
        out.append(" " * (depth // 4) + " " * (depth % 4) + body.rstrip())
    return "\n".join(out)


def board_source(name: str) -> str:
    """``source(name)`` as the board gets it: ``compact``, which costs the wire and the
    board's compiler less and does the same there."""
    return compact(source(name)) + "\n"
