"""What a test needs: components on the host (FUSE, QEMU, a peer tool), features of its target.

A missing component skips the test with the reason on a developer's machine. Under ``CI=true``
it fails: CI installs everything ``make test`` names, so a missing piece there is a broken setup,
never a pass. A target's features say which specifications apply to it at all.
"""

from __future__ import annotations

import os
import posixpath
from typing import NamedTuple

import pytest

from mpkick.board.board import META, Board
from mpkick.target import Target, remove_tree

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (or, in CI, fail) the calling test because ``reason``."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}: `make test` should have installed it", pytrace=False)
    pytest.skip(reason)


class Features(NamedTuple):
    """What one filesystem target can do. Named as ``target.features`` will name it: when
    targets declare their own, ``board_features`` returns ``board.features`` and tests read
    that."""

    folders: bool  # paths below the root (os.mkdir)
    atomic: bool  # a write cut short leaves the old content (written aside, renamed over)
    strong_hashes: bool  # tree(hashes=True) carries each file's sha256
    rename: bool  # rename(), replacing a file at the destination
    usage: bool  # usage() reports total and free space (os.statvfs)
    big_files: bool  # room for files of a few hundred kB (many binary frames)


#: Free space that counts as room for big files.
ROOMY = 1 << 20


def board_features(board: Board) -> Features:
    """What a connected board can do, from what its firmware's probe found."""
    caps = board.caps
    return Features(folders=caps.mkdir, atomic=caps.rename, strong_hashes=caps.hashlib,
                    rename=caps.rename, usage=caps.statvfs,
                    big_files=caps.statvfs and board.usage().free >= ROOMY)


def clear(target: Target) -> None:
    """Remove every file and folder on ``target`` but mpkick's own /.mpkick: where each test
    starts from."""
    for entry in target.tree("/"):
        if posixpath.dirname(entry.path) == "/" and entry.path != META:
            remove_tree(target, entry.path)
