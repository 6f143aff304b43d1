"""Many boards at once: the benchmark workload pushed to 8 virtual boards in one command, against
the same push to one board, same run; writes the "fleet" section of docs/benchmarks.md.

Each board is bound by its own wire, so the issue's target is a wall time for 8 boards of at
most 1.3x one board's. The boards run in this process (each a MicroPython process on a pty,
reached through a symlink named like a USB device, as in bench/run.py); mpkick runs as its own
process, as a user types it, and its CPU time (user + system, from wait4) is the host's cost
of driving the boards, reported per board. Every board's flash is read back with littlefs-python
and compared file by file with the source, outside the timing.

    python bench/fleet.py              # 8 boards at 115200 baud, 3 repetitions, writes the doc
    python bench/fleet.py --quick      # 2 boards, unpaced, 1 repetition, print only
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc import write_section
from run import BIN, check, tool_env, virtual_board
from workload import Workload, generate

#: The issue's target: wall time of N boards at once / one board's.
TARGET = 1.3


@dataclass(frozen=True)
class Run:
    boards: int
    seconds: float
    cpu: float  # mpkick's own user + system seconds
    problems: tuple[str, ...]

    @property
    def cpu_per_board(self) -> float:
        return self.cpu / self.boards


def push(boards: int, baud: int, work: Workload, workdir: Path, tag: str) -> Run:
    """One `mpkick -p ... -p ... push SRC /` to ``boards`` fresh virtual boards."""
    src = workdir / f"src-{tag}"
    shutil.rmtree(src, ignore_errors=True)
    work.write(src)
    images = [workdir / f"flash-{tag}-{i}.img" for i in range(boards)]
    for image in images:
        image.unlink(missing_ok=True)
    with contextlib.ExitStack() as stack:
        links = []
        for i, image in enumerate(images):
            link = workdir / f"ttyACM{i}"
            stack.enter_context(virtual_board(image, baud, link))
            links.append(link)
        args = [str(BIN / "mpkick"), "-q"]
        for link in links:
            args += ["-p", str(link)]
        args += ["push", str(src), "/"]
        start = time.perf_counter()
        pid = os.posix_spawn(args[0], args, tool_env(workdir),
                             file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
        _, status, usage = os.wait4(pid, 0)
        seconds = time.perf_counter() - start
    problems = [] if os.waitstatus_to_exitcode(status) == 0 else [
        f"exit status {os.waitstatus_to_exitcode(status)}"]
    problems += [f"{image.name}: {p}" for image in images if (p := check(image, work.files))]
    return Run(boards, seconds, usage.ru_utime + usage.ru_stime, tuple(problems))


def measure(boards: int = 8, baud: int = 115200, reps: int = 3, work: Workload | None = None,
            workdir: Path | None = None, log: object = print) -> tuple[list[Run], list[Run]]:
    """``reps`` pushes to one board and to ``boards`` boards, interleaved."""
    work = work or generate()
    say = log if callable(log) else (lambda _m: None)
    with tempfile.TemporaryDirectory(prefix="mpkick-bench-fleet-") as tmp:
        where = workdir or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        ones, manys = [], []
        for rep in range(reps):
            for n, into in ((1, ones), (boards, manys)):
                run = push(n, baud, work, where, f"{n}-{rep}")
                into.append(run)
                say(f"  rep={rep} boards={n:<2} {run.seconds:7.2f} s wall, "
                    f"{run.cpu:6.2f} s CPU ({run.cpu_per_board:.2f} s per board)"
                    + (f"  WRONG: {'; '.join(run.problems)}" if run.problems else ""))
    return ones, manys


def report(ones: list[Run], manys: list[Run], baud: int, work: Workload) -> str:
    one = statistics.median(r.seconds for r in ones)
    many = statistics.median(r.seconds for r in manys)
    n = manys[0].boards
    ratio = many / one
    verdict = "met" if ratio <= TARGET else "NOT met"
    return "\n".join([
        f"## Many boards at once (issue [14], {time.strftime('%Y-%m-%d')})",
        "",
        f"`bench/fleet.py`: the workload ({len(work.files)} files, {work.size:,} bytes) pushed "
        f"with one `mpkick push` to {n} fresh virtual boards at {baud} baud at once, against the "
        f"same push to one board; median of {len(ones)} runs each, every board's flash checked "
        "file by file. CPU is mpkick's own process (user + system), the host's cost of driving "
        "the boards; the virtual boards' MicroPython processes are not in it.",
        "",
        "| boards | wall time | mpkick CPU | CPU per board |",
        "|---:|---:|---:|---:|",
        *(f"| {rs[0].boards} | {statistics.median(r.seconds for r in rs):.2f} s | "
          f"{statistics.median(r.cpu for r in rs):.2f} s | "
          f"{statistics.median(r.cpu_per_board for r in rs):.2f} s |" for rs in (ones, manys)),
        "",
        f"{n} boards took **{ratio:.2f}x** one board's wall time (target: at most {TARGET}x: "
        f"{verdict}). Measured on {os.cpu_count()} cores; {n} boards are {n} MicroPython "
        "processes plus their pumps, so on a machine with fewer cores than boards (or a loaded "
        "one) the boards, not the wire, become the bound.",
        "",
        "Wrong results: " + ("none" if not any(r.problems for r in ones + manys) else
                             "; ".join(p for r in ones + manys for p in r.problems)),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 boards, unpaced, 1 run, print")
    parser.add_argument("--boards", type=int, default=None)
    parser.add_argument("--baud", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    boards = args.boards or (2 if args.quick else 8)
    baud = args.baud if args.baud is not None else (0 if args.quick else 115200)
    reps = args.reps or (1 if args.quick else 3)
    work = generate()
    print(f"workload: {len(work.files)} files, {work.size:,} bytes; {boards} boards at {baud} "
          f"baud; {reps} repetitions")
    ones, manys = measure(boards, baud, reps, work)
    text = report(ones, manys, baud, work)
    print()
    print(text)
    if not args.quick:
        write_section("fleet", text)
        print("\nwritten to docs/benchmarks.md (section fleet)")
    return 1 if any(r.problems for r in ones + manys) else 0


if __name__ == "__main__":
    sys.exit(main())
