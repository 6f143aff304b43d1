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
def board_source(name: str) -> str:
    """``source(name)`` as the board gets it: without comment lines and blank lines, which
    cost the wire and the board's compiler and do nothing there."""
    keep = [line for line in source(name).splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return "\n".join(keep) + "\n"
