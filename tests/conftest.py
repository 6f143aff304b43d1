"""Shared fixtures: every test runs against the real MicroPython unix port through sim://.

``pytest --port URL`` runs the board tests (those on the ``board`` and ``sim_url`` fixtures, and
the target contract) on the board at URL instead: a real board, or ``qemu://microbit``, booted
once for the run. Assertions only the virtual board can make (its own byte counters, power
cuts, fault injection, ``sim://`` options) are marked ``sim_only`` and skip there with a reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from needs import IN_CI, abilities, clear, missing

from mpkick.board.board import Board
from mpkick.sim import qemu

# Property tests draw the same examples on every CI run: a red CI is a real failure, never luck.
settings.register_profile("ci", derandomize=True, print_blob=True)
if IN_CI:
    settings.load_profile("ci")

# Every cache mpkick keeps (tree listings, pushed contents, .mpy, fetches: all under
# MPKICK_CACHE_DIR), the tools it runs keep (XDG_CACHE_HOME), the sims' device registry and the
# default sim:// flash live in a folder of this run's own, never in the developer's real ones.
# mpkick reads them at each use; subprocesses inherit them.
_RUN = Path(tempfile.mkdtemp(prefix="mpkick-test-run-"))
for _name, _sub in (("MPKICK_CACHE_DIR", "cache/mpkick"), ("XDG_CACHE_HOME", "cache"),
                    ("MPKICK_SIM_DEVICES", "devices"), ("XDG_DATA_HOME", "data")):
    os.environ[_name] = str(_RUN / _sub)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None, metavar="URL",
                     help="run the board tests on the board at URL (a serial port, "
                          "qemu://microbit, sim://PATH ...) instead of a fresh sim:// board; "
                          "sim-only assertions skip")
    parser.addoption("--slow", action="store_true", help="run the long randomized trials too")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_RUN, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sim_only(why): an assertion only the virtual board can "
                                       "make; skipped under --port")
    config.addinivalue_line("markers", "board_needs(*features): what the test needs of its board "
                                       "(needs.Features, or agent); skipped on a --port board "
                                       "without it")


def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("sim_only")
    port = item.config.getoption("--port")
    if marker is not None and port:
        why = marker.args[0] if marker.args else "needs the virtual board"
        pytest.skip(f"sim only ({why}): --port {port} is not a fresh virtual board")


@pytest.fixture(scope="session")
def microbit_port() -> Iterator[str]:
    """One QEMU micro:bit for the whole run (a boot takes a while): the pty its firmware's
    serial port is on. Each test that uses it empties it first."""
    machine = qemu.MACHINES["microbit"]
    reason = qemu.missing(machine)
    if reason:
        missing(reason)
    board = qemu.QemuBoard(machine)
    port = board.start()
    yield port
    board.close()


@pytest.fixture(scope="session")
def port_url(request: pytest.FixtureRequest) -> str | None:
    """The board ``--port`` names (a ``qemu://`` board booted once for the run), or None."""
    url: str | None = request.config.getoption("--port")
    if url is not None and url.startswith("qemu://"):
        qemu.machine_for(url)  # an unknown machine is refused in one line
        return str(request.getfixturevalue("microbit_port"))
    return url


def empty(url: str) -> None:
    """Soft-reset the board at ``url`` (what earlier tests imported is forgotten) and remove
    every file and folder on it but mpkick's own /.mpkick."""
    with Board.connect(url, soft_reset=True) as b:
        clear(b)


@pytest.fixture(scope="session")
def port_features(port_url: str | None) -> dict[str, bool]:
    """What the board ``--port`` names can do: its ``Features``, and ``agent``: whether its
    firmware hosts mpkick's agent (binary sessions, deltas, attach, images need it)."""
    assert port_url is not None
    with Board.connect(port_url) as b:
        return {**abilities(b)._asdict(), "agent": b.caps.hosts_agent}


@pytest.fixture
def sim_url(tmp_path: Path, port_url: str | None, request: pytest.FixtureRequest) -> str:
    """A fresh virtual board's URL (its flash image lives in the test's own folder); under
    ``--port``, that board's, emptied, when it has what the test's ``board_needs`` names."""
    if not port_url:
        return f"sim://{tmp_path / 'flash.img'}"
    marker = request.node.get_closest_marker("board_needs")
    if marker is not None:
        have = request.getfixturevalue("port_features")
        lacking = [name for name in marker.args if not have[name]]
        if lacking:
            pytest.skip(f"the board at --port {request.config.getoption('--port')} lacks "
                        f"{', '.join(lacking)}")
    empty(port_url)
    return port_url


@pytest.fixture
def board(sim_url: str) -> Iterator[Board]:
    """A connected board with an empty flash (apart from mpkick's own /.mpkick)."""
    with Board.connect(sim_url) as b:
        yield b
