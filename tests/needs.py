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

from mpkick.target import META, Target, remove_tree

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (or, in CI, fail) the calling test because ``reason``."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}: `make test` should have installed it", pytrace=False)
    pytest.skip(reason)


class Abilities(NamedTuple):
    """What a test may need of its target: what the target declares (``target.features``),
    and whether it has room for files of a few hundred kB (many binary frames)."""

    folders: bool
    atomic: bool
    strong_hashes: bool
    rename: bool
    usage: bool
    big_files: bool


#: Free space that counts as room for big files.
ROOMY = 1 << 20


def abilities(target: Target) -> Abilities:
    f = target.features
    return Abilities(folders=f.folders, atomic=f.atomic, strong_hashes=f.strong_hashes,
                     rename=f.rename, usage=f.usage,
                     big_files=f.usage and target.usage().free >= ROOMY)


def clear(target: Target) -> None:
    """Remove every file and folder on ``target`` but mpkick's own /.mpkick: where each test
    starts from."""
    for entry in target.tree("/"):
        if posixpath.dirname(entry.path) == "/" and entry.path != META:
            remove_tree(target, entry.path)
