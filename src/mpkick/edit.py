"""``mpkick edit``: a board file in the user's editor, written back only if it changed.

The file is copied to a private temporary folder on the host (keeping its name, so the editor
picks the right mode), the editor runs, and the board gets the new content through the
target's own atomic, verified write: a cable pulled mid-save leaves the old file or the new.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import InputError
from .target import Target


def editor_command() -> list[str]:
    """``$VISUAL``, else ``$EDITOR`` (a command line, arguments allowed), else vi / notepad."""
    text = os.environ.get("VISUAL") or os.environ.get("EDITOR")
    if text:
        return shlex.split(text)
    for fallback in ("vi", "nano", "notepad"):
        if shutil.which(fallback):
            return [fallback]
    raise InputError("no editor: set EDITOR (e.g. EDITOR=nano)")


def run_editor(path: Path) -> None:
    command = editor_command()
    try:
        code = subprocess.call([*command, str(path)])
    except OSError as exc:
        raise InputError(f"cannot start the editor {command[0]!r}: {exc.strerror}; "
                         "fix EDITOR") from exc
    if code != 0:
        raise InputError(f"the editor {command[0]!r} exited with status {code}: "
                         "the board's file was left as it was")


def edit(target: Target, path: str, editor: Callable[[Path], None] = run_editor) -> bool:
    """Let ``editor`` change the file at ``path`` (a new file if there is none); True when the
    board's copy was replaced. Nothing is written when the content is unchanged."""
    try:
        entry = target.stat(path)
    except FileNotFoundError:
        old: bytes | None = None
    else:
        if entry.is_dir:
            raise IsADirectoryError(21, "Is a directory", path)
        old = target.read(path)
    with tempfile.TemporaryDirectory(prefix="mpkick-edit-") as folder:
        local = Path(folder) / (posixpath.basename(path) or "file")
        local.write_bytes(old or b"")
        editor(local)
        new = local.read_bytes()
    if new == (old or b""):
        return False  # unchanged, or a new file left empty: nothing to write
    target.write(path, new)
    return True
