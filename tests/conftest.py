"""Shared fixtures: every test runs against the real MicroPython unix port through sim://."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkick.board import Board


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
