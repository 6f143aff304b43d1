"""What a test does when a component it needs (FUSE, QEMU, a peer tool) is missing.

On a developer's machine it skips with the reason. Under ``CI=true`` it fails: CI installs
everything ``make test`` names, so a missing piece there is a broken setup, never a pass.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip (or, in CI, fail) the calling test because ``reason``."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}: `make test` should have installed it", pytrace=False)
    pytest.skip(reason)
