"""What is on a target under DEST, with a sha256 per file wherever it can be known.

A board with ``hashlib`` answers with sha256s in one exchange (its agent keeps a manifest so
unchanged files are not rehashed). A target whose ``features`` say it has no strong hashes
answers with weak sums, which ``memory.record.HostRecord`` turns into sha256s where this host
knows what it pushed; the same weak sums verify each file after writing, since such a board
cannot check a sha256 itself.
"""

from __future__ import annotations

from ..errors import InputError
from ..memory.record import HostRecord
from ..protocol.channel import file_digest
from ..target import Entry, Target, norm


def remote_tree(target: Target, dest: str, record: HostRecord | None = None) -> list[Entry]:
    """Every entry below ``dest``, each file with its sha256 where it can be known."""
    entries = target.tree(norm(dest), hashes=True)
    if target.features.strong_hashes:
        return entries
    return record.resolve(entries) if record else [e._replace(sha256=None) for e in entries]


def verify_weak(target: Target, dest: str, written: dict[str, bytes]) -> list[Entry]:
    """Read back the weak sums of ``written`` (path -> bytes sent); EIO for any that differ."""
    entries = target.tree(norm(dest), hashes=True)
    found = {e.path: e for e in entries}
    for path, data in written.items():
        entry = found.get(path)
        if entry is None or entry.sha256 != file_digest(data, False):
            raise OSError(5, "the board's copy did not match after writing; push again", path)
    return entries


def missing_folders(target: Target, dest: str) -> list[str]:
    """The folders from the root down to ``dest`` that do not exist yet, outermost first;
    refused when one of them is a file."""
    dest = norm(dest)
    missing: list[str] = []
    path = dest
    while path != "/":
        try:
            entry = target.stat(path)
        except FileNotFoundError:
            missing.insert(0, path)
            path = path.rsplit("/", 1)[0] or "/"
            continue
        if not entry.is_dir:
            raise InputError(f"{path} is a file on the board, not a folder: give a DEST folder "
                             "(or remove the file)")
        break
    return missing
