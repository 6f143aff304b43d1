"""Host-death trials, shared by tests/test_host_death.py and bench/host_death.py.

Each trial SIGKILLs an ``mpkick`` command at a seeded random moment, as a crashed laptop or a
killed terminal would, then asks the board for the REPL: first with one tool, then the other
(mpremote knows nothing of mpkick's sessions), and pushes again to check DEST is exact and no
temporary file is left anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mpkick.board.board import Board

MPKICK = [sys.executable, "-m", "mpkick"]
MPREMOTE = Path(sys.executable).with_name("mpremote")
#: Long enough for every command below to be well under way at 115200 baud.
KILL_WITHIN = 2.5
#: What is killed: connecting (and installing the agent on a fresh board), push, get, a
#: program that runs forever, watch, a FUSE mount (whose mount point is then unmounted).
COMMANDS = {
    "connect": ("exec", "print(1)"),
    "push": ("push", "{src}", "/"),
    "get": ("get", "/lib/drivers/blob.bin", "{out}"),
    "running program": ("exec", "import time\nwhile True:\n    time.sleep_ms(10)"),
    "watch": ("watch", "{src}", "/"),
    "mount": ("mount", "{mnt}"),
}


@dataclass
class Outcome:
    """One trial: whether each tool got the REPL, and whether the re-push was exact."""

    command: str
    peer_first: bool
    ours: str | None = None  # None: answered; else what went wrong
    peer: str | None = None
    exact: str | None = None

    @property
    def ok(self) -> bool:
        return self.ours is None and self.peer is None and self.exact is None


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


@contextlib.contextmanager
def served(folder: Path) -> Iterator[str]:
    """A virtual board on a pty at 115200 baud, as a separate process: it outlives each host."""
    link = folder / "tty"
    sim = subprocess.Popen([*MPKICK, "sim", f"sim://{folder / 'flash.img'}?baud=115200",
                            "--link", str(link)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        assert sim.stdout is not None and "virtual board on" in sim.stdout.readline()
        yield str(link)
    finally:
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


def ours_answers(port: str) -> str | None:
    try:
        done = mpkick(port, "exec", "print(6 * 7)", timeout=30)
    except subprocess.TimeoutExpired:
        return "mpkick hung"
    return None if (done.returncode, done.stdout.strip()) == (0, "42") else done.stderr.strip()


def peer_answers(port: str) -> str | None:
    try:
        got = subprocess.run([str(MPREMOTE), "connect", port, "exec", "print(7 * 6)"],
                             capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "mpremote hung"
    return None if got.stdout.strip() == "42" else (got.stdout + got.stderr).strip()[-200:]


def restore(port: str, src: Path, files: dict[str, bytes]) -> str | None:
    """Push again with --delete; None when the board then holds exactly ``files``."""
    push = mpkick(port, "push", str(src), "/", "--delete", timeout=120)
    if push.returncode:
        return push.stderr.strip()
    with Board.connect(port) as b:
        entries = [e for e in b.tree("/") if not e.is_dir]
        have = {e.path: hashlib.sha256(b.read(e.path)).hexdigest() for e in entries
                if not e.path.startswith("/.mpkick")}
        temps = [e.path for e in entries if e.path.endswith(".mkt")]
    if temps:
        return f"temporary files left: {temps}"
    want = {"/" + k: hashlib.sha256(v).hexdigest() for k, v in files.items()}
    return None if have == want else "the board's files differ from the source"


def trials(folder: Path, name: str, count: int) -> list[Outcome]:
    """``count`` trials of killing command ``name``, on one board that lives through them."""
    src = folder / "src"
    files = make_project(src)
    out: list[Outcome] = []
    rng = random.Random(f"{name}-{count}")
    with served(folder) as port:
        if name == "get":
            restore(port, src, files)  # something to read
        for n in range(count):
            if name == "push" and n:  # each push after the first has an edit to send
                files["lib/drivers/bus.py"] += b"# edit\n"
                (src / "lib/drivers/bus.py").write_bytes(files["lib/drivers/bus.py"])
            mnt = folder / "mnt"
            mnt.mkdir(exist_ok=True)
            args = [a.format(src=src, out=folder / "out.bin", mnt=mnt) for a in COMMANDS[name]]
            kill_at(rng, port, *args)
            if name == "mount":  # a killed FUSE process leaves its mount point behind
                subprocess.run([shutil.which("fusermount3") or "fusermount", "-uz", str(mnt)],
                               capture_output=True)
            outcome = Outcome(name, peer_first=n % 2 == 0)
            checks = [("peer", peer_answers), ("ours", ours_answers)]
            for field, check in checks if outcome.peer_first else checks[::-1]:
                setattr(outcome, field, check(port))
            outcome.exact = restore(port, src, files)
            out.append(outcome)
    return out
