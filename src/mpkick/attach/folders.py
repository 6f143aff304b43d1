"""Which host folders are attached, and where the board sees them."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .wire import DEFAULT_PATH


@dataclass(frozen=True)
class Folder:
    """A host folder and where the board sees it."""

    root: Path
    where: str = DEFAULT_PATH
    write: bool = False


def parse_folders(args: Sequence[str], write: bool = False) -> list[Folder]:
    """``[DIR] [BOARD_PATH]``, or several ``DIR[:BOARD_PATH]``; the first defaults to
    ``/remote``, later ones to ``/remote1``, ``/remote2`` ..."""
    pairs: list[list[str | None]] = []
    for arg in args:
        cut = arg.rfind(":/")
        if cut > 0 and not Path(arg).exists() and Path(arg[:cut]).is_dir():
            pairs.append([arg[:cut], arg[cut + 1:]])
        elif arg.startswith("/") and pairs and pairs[-1][1] is None and not Path(arg).is_dir():
            pairs[-1][1] = arg
        else:
            pairs.append([arg, None])
    if not pairs:
        pairs.append([".", None])
    folders = []
    for i, (root, where) in enumerate(pairs):
        path = Path(root or ".")
        if not path.is_dir():
            raise InputError(f"{root} is not a folder on the host: give the folder to attach")
        where = where or (DEFAULT_PATH if i == 0 else f"{DEFAULT_PATH}{i}")
        if not where.startswith("/") or where == "/" or ".." in where.split("/"):
            raise InputError(f"{where}: the board path must be absolute and not / "
                             "(e.g. /remote)")
        folders.append(Folder(path, posixpath.normpath(where), write))
    if len({f.where for f in folders}) < len(folders):
        raise InputError("two folders at the same board path: give each its own")
    return folders
