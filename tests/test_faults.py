"""Faults on the link and the board: what a push must survive, on the real MicroPython port.

Each randomized test draws its fault positions from a fixed seed list (``faultlib.seeds``), so a
failure replays exactly. The default run keeps the counts small; ``--slow`` or MPKICK_SLOW=1 runs
the issue's full counts (200 power cuts). ``docs/reliability.md`` is written from the same trials
by ``bench/reliability.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import faultlib
import pytest

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import ConnectError, DeviceTimeout, MpkickError
from mpkick.protocol.channel import SendSession
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard

T = TypeVar("T")


def slow(config: pytest.Config) -> bool:
    return bool(config.getoption("--slow")) or os.environ.get("MPKICK_SLOW") == "1"


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> faultlib.Bench:
    return faultlib.Bench(tmp_path_factory.mktemp("faults"))


def bounded(fn: Callable[[], T], limit: float = 60.0) -> T:
    """Run ``fn`` but fail (not hang) if it does not return within ``limit`` seconds."""
    box: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"still running after {limit} s: a hang"
    if errors:
        raise errors[0]
    return box[0]


def run_trials(bench: faultlib.Bench, fault: str, n: int,
               every: bool = True) -> list[faultlib.Outcome]:
    outcomes = [bounded(lambda s=seed: bench.trial(s, fault, faultlib.FAULTS[fault]))  # type: ignore[misc]
                for seed in faultlib.seeds(n)]
    for o in outcomes:
        assert o.fired or not every, f"seed {o.seed}: the {fault} never happened"
        assert not o.problems, f"seed {o.seed} ({o.fault} at {o.position}): {o.problems}"
    return outcomes


def test_power_cut_at_random_points_leaves_every_file_old_or_new(
        bench: faultlib.Bench, request: pytest.FixtureRequest) -> None:
    outcomes = run_trials(bench, "power cut", 200 if slow(request.config) else 20)
    # The cuts really interrupted pushes, and the host said so in a sentence.
    interrupted = [o for o in outcomes if not o.completed]
    assert interrupted
    assert all("restarted" in o.error or "reset" in o.error for o in interrupted)
    assert any("old" in o.states.values() and "new" in o.states.values() for o in outcomes)


def test_unplug_mid_push_fails_at_once_and_the_next_push_completes(
        bench: faultlib.Bench, request: pytest.FixtureRequest) -> None:
    outcomes = run_trials(bench, "unplug", 50 if slow(request.config) else 5)
    for o in outcomes:
        assert not o.completed and o.error.startswith("ConnectError")


@pytest.mark.parametrize("fault", ["corrupt host->board", "drop host->board"])
def test_damaged_bytes_to_the_board_are_detected_and_resent(
        bench: faultlib.Bench, request: pytest.FixtureRequest, fault: str) -> None:
    for o in run_trials(bench, fault, 50 if slow(request.config) else 5):
        assert o.completed, f"seed {o.seed}: {o.error}"


@pytest.mark.parametrize("fault", ["corrupt board->host", "drop board->host"])
def test_damaged_answers_from_the_board_end_in_a_clear_error_never_a_wrong_byte(
        bench: faultlib.Bench, request: pytest.FixtureRequest, fault: str) -> None:
    # The board's answers are short and their length varies a little, so a drawn position can
    # fall past the end: most trials must fire, not all.
    outcomes = run_trials(bench, fault, 50 if slow(request.config) else 4, every=False)
    assert sum(bool(o.fired) for o in outcomes) * 2 >= len(outcomes)
    for o in outcomes:
        assert o.completed or o.error.split(":")[0] in ("ProtocolError", "DeviceTimeout")


def test_a_power_cut_boots_the_board_afresh_not_as_a_soft_reboot(tmp_path: Path) -> None:
    vb = VirtualBoard(parse_url(f"sim://{tmp_path / 'f.img'}?noise=32"))
    end = vb.start()
    assert isinstance(end, socket.socket)
    try:
        def read_banner() -> bytes:
            data = b""
            while b">>> " not in data:
                data += end.recv(4096)
            return data

        first = bounded(read_banner)
        assert first.startswith(b"\x00\xff") and b"MicroPython" in first  # ROM noise, then banner
        vb.power_cut()
        again = bounded(read_banner)
        assert b"MicroPython" in again and b"soft reboot" not in again
        assert vb.counters.power_cuts == 1
    finally:
        end.close()
        vb.close()


def test_boot_noise_and_a_main_py_that_never_stops_do_not_keep_mpkick_out(tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'f.img'}?noise=200&loop_main=1"

    def use() -> tuple[bytes, str | None, bytes]:
        with Board.connect(url) as b:
            b.write("/x.txt", b"hello")
            return b.read("/x.txt"), b.interrupt_note, b.read("/main.py")

    data, note, main = bounded(use)
    assert data == b"hello"
    assert note and "stopped the program" in note  # the endless main.py was running
    assert b"while True" in main


def test_a_stalled_link_times_out_with_a_message(tmp_path: Path) -> None:
    def stalled_exec() -> str:
        with Board.connect(f"sim://{tmp_path / 'a.img'}") as b:
            vb = b.transport.board  # type: ignore[attr-defined]
            vb.inject(stall_at=vb.counters.host_to_board + 5, stall_for=3600)
            with pytest.raises(DeviceTimeout) as info:
                b.exec("print(1)", timeout=1)
            return str(info.value)

    assert "stopped answering" in bounded(stalled_exec)

    def stalled_session() -> str:
        with Board.connect(f"sim://{tmp_path / 'b.img'}") as b:
            caps = b.caps
            vb = b.transport.board  # type: ignore[attr-defined]
            session = SendSession(b.repl, caps, ack_timeout=0.5)
            vb.stall(3600)
            # DeviceTimeout waiting for acks, or ConnectError when the stalled link stops
            # taking bytes at all: either way a sentence, not a hang.
            with pytest.raises((DeviceTimeout, ConnectError)) as info:
                session.put("/big.bin", os.urandom(200_000))
                session.close()
            return str(info.value)

    assert "board" in bounded(stalled_session)


def test_a_second_mpkick_on_the_same_port_fails_fast_with_port_busy(tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'f.img'}"
    with Board.connect(url):
        done = subprocess.run([sys.executable, "-m", "mpkick", "-p", url, "ls"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "port busy" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.fixture
def echo_port() -> Iterator[str]:
    """A TCP server that echoes every byte: a port that answers, but not as MicroPython."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.settimeout(0.2)
            with conn:
                while not stop.is_set():
                    try:
                        data = conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    server.close()


def test_a_port_that_is_not_micropython_gives_one_line(
        echo_port: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = bounded(lambda: main(["-p", echo_port, "ls"]))
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "MicroPython" in err
    with pytest.raises(ConnectError):
        bounded(lambda: Board.connect(echo_port))


def test_fault_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(MpkickError):
        VirtualBoard(parse_url(f"sim://{tmp_path / 'f.img'}?kill_at=soon"))
