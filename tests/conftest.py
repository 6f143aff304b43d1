"""Shared fixtures: every test runs against the real MicroPython unix port through sim://."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from needs import IN_CI

from mpkick.board.board import Board

# Property tests draw the same examples on every CI run: a red CI is a real failure, never luck.
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")

# Every cache mpkick keeps (tree listings, pushed contents, .mpy, fetches) lives in a folder of
# this run's own, never in the developer's real cache; subprocesses inherit it.
_CACHE = tempfile.mkdtemp(prefix="mpkick-test-cache-")
os.environ["MPKICK_CACHE_DIR"] = _CACHE


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None,
                     help="run the board tests on this port instead of a fresh sim:// board")
    parser.addoption("--slow", action="store_true", help="run the long randomized trials too")


@pytest.fixture
def sim_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh virtual board's URL (its flash image lives in the test's own folder)."""
    port = request.config.getoption("--port")
    return str(port) if port else f"sim://{tmp_path / 'flash.img'}"


@pytest.fixture
def board(sim_url: str) -> Iterator[Board]:
    """A connected board with an empty flash (apart from mpkick's own /.mpkick)."""
    with Board.connect(sim_url) as b:
        yield b
