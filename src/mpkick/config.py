"""Project settings from ``[tool.mpkick]`` in pyproject.toml or from mpkick.toml.

The nearest such file at or above the current folder wins, so ``mpkick push`` alone does the
right thing anywhere inside a project. Relative paths in it are relative to the file's folder.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KEYS = {"port", "src", "dest", "ignore", "delete", "compile", "no_compile", "requirements",
        "target", "index", "mpy_cross", "baud", "romfs", "boards", "aliases", "dtr", "rts",
        "password"}


def _read(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}; fix or remove the file") from exc
    return data


def load(start: Path | None = None) -> tuple[dict[str, Any], Path | None]:
    """The settings and the folder they came from (``({}, None)`` when there are none)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        own = folder / "mpkick.toml"
        if own.is_file():
            return _check(_read(own), own), folder
        project = folder / "pyproject.toml"
        if project.is_file():
            section = _read(project).get("tool", {}).get("mpkick")
            if section is not None:
                return _check(section, project), folder
    return {}, None


def _check(section: Any, path: Path) -> dict[str, Any]:
    if not isinstance(section, dict):
        raise InputError(f"{path}: mpkick settings must be a table")
    unknown = sorted(set(section) - KEYS)
    if unknown:
        raise InputError(f"{path}: unknown mpkick setting {unknown[0]!r}; known: "
                         + ", ".join(sorted(KEYS)))
    for table in ("boards", "aliases"):  # [tool.mpkick.boards]: names; .aliases: shortcuts
        value = section.get(table, {})
        if not isinstance(value, dict) or not all(
                isinstance(v, str) or (table == "boards" and isinstance(v, list)
                                       and all(isinstance(x, str) for x in v))
                for v in value.values()):
            raise InputError(f"{path}: [{table}] maps names to "
                             + ("a port or a list of ports" if table == "boards" else
                                "a command line, e.g. deploy = \"push --delete\""))
    return dict(section)
