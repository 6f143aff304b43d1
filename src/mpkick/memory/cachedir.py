"""The user cache folder that compiled .mpy files and network fetches share.

One place decides where it lives so that ``MPKICK_CACHE_DIR`` (what tests and CI set) moves every
cache at once, and so entries are always written whole: a cut mid-write must never leave a
truncated .mpy or download that a later run would trust.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """The folder for one kind of cached thing (``mpy``, ``fetch`` ...), created on demand."""
    root = os.environ.get("MPKICK_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("mpkick")
    folder = Path(root) / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load(path: Path) -> bytes | None:
    """The cached bytes at ``path``, or None when there are none (or they cannot be read)."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def store(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` atomically; a cache that cannot be written is only slower."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass
