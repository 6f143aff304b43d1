"""A board never hears its host leave: whatever mpkick was doing when it died, the board answers.

Over USB-CDC or a UART, a killed host (a crashed laptop, a closed lid, a killed terminal) gives
the board no EOF: its line goes quiet, and what it prints falls into the void. The virtual board
on a pty behaves the same (``mpkick sim``). Each trial SIGKILLs an ``mpkick`` command at a
seeded random moment, then checks that the next ``mpkick`` command and ``mpremote`` both get
the REPL without a reset, and that the next push restores DEST exactly, leaving no temporary
file anywhere.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkick.board import Board

MPKICK = [sys.executable, "-m", "mpkick"]
MPREMOTE = Path(sys.executable).with_name("mpremote")
TRIALS = int(os.environ.get("MPKICK_HOST_DEATH_TRIALS", "2"))
#: Long enough for every command below to be well under way at 115200 baud.
KILL_WITHIN = 2.5


def make_project(root: Path) -> dict[str, bytes]:
    rng = random.Random(11)
    files = {"main.py": b"print('main')\n",
             "lib/drivers/bus.py": "".join(f"REG_{i} = {i * 7}\n" for i in range(900)).encode(),
             "lib/drivers/blob.bin": rng.randbytes(24_000),
             "lib/app.py": b"def run():\n    return 42\n" * 300}
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A virtual board on a pty at 115200 baud, as a separate process: it outlives each host."""
    link = tmp_path / "tty"
    sim = subprocess.Popen([*MPKICK, "sim", f"sim://{tmp_path / 'flash.img'}?baud=115200",
                            "--link", str(link)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    assert sim.stdout is not None and "virtual board on" in sim.stdout.readline()
    yield str(link)
    sim.send_signal(signal.SIGTERM)
    sim.wait(10)


def mpkick(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MPKICK, "-p", port, *args], capture_output=True, text=True,
                          timeout=timeout)


def kill_at(rng: random.Random, port: str, *args: str) -> None:
    """Start ``mpkick -p PORT ARGS`` and SIGKILL it at a random moment."""
    proc = subprocess.Popen([*MPKICK, "-p", port, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    time.sleep(rng.uniform(0.3, KILL_WITHIN))
    proc.kill()
    proc.wait()


def board_state(port: str) -> tuple[dict[str, str], list[str]]:
    """Every file under / with its sha256, and any temporary file mpkick could have left."""
    with Board.connect(port) as b:
        entries = [e for e in b.tree("/") if not e.is_dir]
        files = {e.path: hashlib.sha256(b.read(e.path)).hexdigest() for e in entries
                 if not e.path.startswith("/.mpkick")}
        temps = [e.path for e in entries if e.path.endswith(".mkt")]
    return files, temps


def answers_after(port: str, peer_first: bool) -> None:
    """The next command reaches the REPL with no reset, whether it is mpkick's or a tool
    that knows nothing of mpkick (mpremote); then the other does too."""
    def ours() -> None:
        done = mpkick(port, "exec", "print(6 * 7)", timeout=30)
        assert (done.returncode, done.stdout.strip()) == (0, "42"), done.stderr

    def peer() -> None:
        got = subprocess.run([str(MPREMOTE), "connect", port, "exec", "print(7 * 6)"],
                             capture_output=True, text=True, timeout=30)
        assert got.stdout.strip() == "42", (got.stdout, got.stderr)

    for check in ((peer, ours) if peer_first else (ours, peer)):
        check()


def restored(port: str, src: Path, files: dict[str, bytes]) -> None:
    push = mpkick(port, "push", str(src), "/", "--delete", timeout=120)
    assert push.returncode == 0, push.stderr
    on_board, temps = board_state(port)
    assert temps == []
    assert on_board == {"/" + k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


@pytest.mark.parametrize("command", [
    ("exec", "print(1)"),  # connecting and installing the agent, on a fresh board first
    ("push", "{src}", "/"),
    ("get", "/lib/drivers/blob.bin", "{out}"),
    ("exec", "import time\nwhile True:\n    time.sleep_ms(10)"),  # a running program
    ("watch", "{src}", "/"),
])
def test_killing_the_host_leaves_a_board_that_answers(served: str, tmp_path: Path,
                                                     command: tuple[str, ...]) -> None:
    src = tmp_path / "src"
    files = make_project(src)
    if command[0] == "get":
        restored(served, src, files)  # something to read
    rng = random.Random(f"{command[0]}-{TRIALS}")
    for trial in range(TRIALS):
        if command[0] == "push" and trial:
            (src / "lib/drivers/bus.py").write_bytes(files["lib/drivers/bus.py"] + b"# edit\n")
            files["lib/drivers/bus.py"] += b"# edit\n"
        args = [a.format(src=src, out=tmp_path / "out.bin") for a in command]
        kill_at(rng, served, *args)
        answers_after(served, peer_first=trial % 2 == 0)
        restored(served, src, files)
