"""Large-project benchmark: about 1,000 files and 4.6 MB on a board with a Pico's heap.

mpkick, mpytool and mpremote each push ``largework.generate_large()`` to a fresh virtual board
(``profile=pico``: heap=400K, as the unix port is 64-bit and a Pico has about 200 kB free, and
the flash mounted as rp2 firmware mounts it, progsize=256; 16 MB of flash), unpaced and at
115200 baud, in the same run: full push, push again with nothing changed (three times), push
after a one-line edit. Every board is checked file by file afterwards,
as in bench/run.py (whose harness this uses). mpremote takes far longer than 15 minutes for the
full push at 115200 (it sends every byte as text, uncompressed); there it pushes a subset (every
``SUBSET``-th file), and the table says so. Then, untimed, mpkick's agent reports the most heap
it had in use in each scenario, for the 41-file benchmark workload and for the large one.

``python bench/large.py`` writes the "large" section of docs/benchmarks.md;
``--quick`` (``--scale 0.2``) is a reduced run that proves it works.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run
from doc import write_section
from largework import generate_large
from workload import Workload, generate

HEAP = "400K"  # a Pico: about 200 kB free on a 32-bit board, twice that on the 64-bit port
# The pico profile: that heap, and littlefs mounted as rp2's _boot.py does (progsize=256).
OPTIONS = f"profile=pico&heap={HEAP}&size=16M"
AGAIN = 3  # no-op pushes per session: the shortest figure is the noisiest, so its median
SUBSET = 4  # mpremote at 115200 pushes every 4th file
TOOLS = ("mpkick", "mpytool", "mpremote")
BAUDS = (0, 115200)


def subset(work: Workload, every: int) -> Workload:
    """Every ``every``-th file of ``work``, the edited file always among them."""
    keep = {p: d for i, (p, d) in enumerate(work.files.items())
            if i % every == 0 or p == work.edit_path}
    return Workload(keep, work.folders, work.edit_path, work.edited)


def heap_peaks(work: Workload, workdir: Path, name: str) -> dict[str, int | None]:
    """The most heap mpkick's agent had in use (collected first) in each scenario."""
    from mpkick.board.board import Board
    from mpkick.push import kick

    src = workdir / f"peak-src-{name}"
    work.write(src)
    peaks: dict[str, int | None] = {}
    with Board.connect(f"sim://{workdir / f'peak-{name}.img'}?{OPTIONS}") as board:
        board.load_agent()
        board.heap_peak()
        for scenario in run.SCENARIOS:
            if scenario == "edit":
                work.apply_edit(src)
            kick(src=src, target=board)
            peaks[scenario] = board.heap_peak()
        peaks["free"] = board.caps.free
    return peaks


PICO_CPU = 0.03  # a Pico's RP2040 is 30-50x slower than one host core


#: The agent's accounts of the board's time (``Board.session_times``), in the table's order.
ACCOUNTS = ("receive", "inflate", "write", "hash", "rename", "list")
Breakdown = dict[str, tuple[float, dict[str, float]]]


def board_time(work: Workload, workdir: Path, baud: int) -> Breakdown:
    """mpkick's three scenarios on a board with a Pico's heap and CPU (``cpu=0.03``), untimed
    by the others: per scenario its wall time, and where the board's time went (the agent's
    own accounts, ``Board.session_times``)."""
    import time

    from mpkick.board.board import Board
    from mpkick.push import kick

    src = workdir / f"cpu-src-{baud}"
    work.write(src)
    url = f"sim://{workdir / f'cpu-{baud}.img'}?{OPTIONS}&cpu={PICO_CPU}&baud={baud}"
    out: Breakdown = {}
    with Board.connect(url) as board:
        board.load_agent()
        for scenario in run.SCENARIOS:
            if scenario == "edit":
                work.apply_edit(src)
            board.session_times()
            start = time.perf_counter()
            kick(src=src, target=board)
            seconds = time.perf_counter() - start
            out[scenario] = (seconds, board.session_times(watch=False) or {})
    return out


def measure(work: Workload, tools: Sequence[str], bauds: Sequence[int], reps: int,
            workdir: Path, log: Callable[[str], None]) -> tuple[list[run.Measurement], set[str]]:
    results: list[run.Measurement] = []
    subsetted: set[str] = set()
    for baud in bauds:
        for rep in range(reps):
            for tool in tools:
                use = work
                if tool == "mpremote" and baud:
                    use = subset(work, SUBSET)
                    subsetted.add(f"{baud}")
                results += run.session(tool, baud, rep, use, workdir, log, OPTIONS, AGAIN)
    return results, subsetted


def report(results: Sequence[run.Measurement], work: Workload, tools: Sequence[str],
           subsetted: set[str], peaks: dict[str, dict[str, int | None]], scale: float,
           reps: int, slow: dict[int, Breakdown] | None = None) -> str:
    cells = run.summarise(results)
    part = subset(work, SUBSET)
    lines = ["## Large project (1,000 files)", "",
             f"`python bench/large.py`{f' --scale {scale}' if scale != 1 else ''}: "
             f"{len(work.files)} files, {work.size / 1e6:.2f} MB in {len(work.folders)} "
             "folders (14 library packages, a vendored library eight folders deep, a web UI, "
             "JSON configs, sprites, three big font assets; `bench/largework.py`), pushed to a "
             f"virtual board with `profile=pico` (`heap={HEAP}`: a Pico, as the 64-bit port "
             "needs about twice a 32-bit board's heap; littlefs mounted as rp2 firmware mounts "
             "it, `progsize=256`) and 16 MB of flash; median of "
             f"{reps} run(s), and of the {AGAIN} no-op pushes in each.", ""]
    lines += ["Which `heap=` models which board: the unix port is a 64-bit build, where the same "
              "objects take about twice the heap they take on a 32-bit board, so `heap=` is "
              "twice the board's free RAM. `heap=32K`: a board with about 16 kB free (where "
              "mpytool still works); `heap=64K` (`profile=small`, `esp8266`): an ESP8266, about "
              "30 kB; `heap=224K` (`profile=esp32`): an ESP32 without PSRAM, about 110 kB; "
              "`heap=400K` (`profile=pico`): a Pico, about 200 kB. The tests use these figures "
              "(`tests/test_scale.py`).", ""]
    if scale != 1:
        lines += [f"**A reduced run (scale {scale}) on a loaded machine, to prove the script "
                  "works; the figures of record come from a full run on a quiet machine.**", ""]
    if subsetted:
        lines += [f"mpremote at 115200 baud pushes a subset ({len(part.files)} files, "
                  f"{part.size / 1e6:.2f} MB: every {SUBSET}th file): the whole tree takes it "
                  "well over 15 minutes. Its row is not comparable with the others.", ""]
    lines += [run.table(cells, tools), ""]
    targets = []
    full = run.ratio(cells, 115200, "full", "mpytool")
    for baud in sorted({m.baud for m in results}, reverse=True):
        noop = run.ratio(cells, baud, "unchanged", "mpytool")
        if noop is not None:
            where = f"at {baud}" if baud else "unpaced"
            targets.append(f"- no-op push {where}: mpytool takes {noop:.1f}x mpkick's time "
                           f"(target ≥ 10x): **{'met' if noop >= 10 else 'missed'}**")
    if full is not None:
        targets.append(f"- full push at 115200: mpytool takes {full:.2f}x mpkick's time "
                       f"(target ≥ 1.5x): **{'met' if full >= 1.5 else 'missed'}**")
    edit = cells.get((115200, "edit", "mpkick")) or cells.get((0, "edit", "mpkick"))
    if edit is not None:
        wire = edit.to_board + edit.to_host
        targets.append(f"- one-line edit: {edit.to_board:,} B host→board + {edit.to_host:,} B "
                       f"board→host = {wire:,} B (target < 1,024 B): "
                       f"**{'met' if wire < 1024 else 'missed'}**")
    lines += [*targets, "", "### Peak board heap (mpkick)", "",
                        "The most heap the agent had in use during each scenario, as the agent "
                        "itself measured it (`gc.mem_alloc()` after a collection, at every frame "
                        "and every file; `Board.heap_peak`), on the same board model. It "
                        "includes the agent's code (on the 64-bit port about 8 kB of core, "
                        "3 kB for the listing half and 7 kB for the receiving half, each half "
                        "imported on first use) and the session's frames and deflate window, "
                        "which follow the free RAM the board reports.", "",
                        "| workload | files | free RAM at start | full | no-op | edit |",
                        "|---|---:|---:|---:|---:|---:|"]
    for name, p in peaks.items():
        count = {"benchmark (41 files)": 41}.get(name, len(work.files))
        lines.append(f"| {name} | {count:,} | {p['free'] or 0:,} B | " + " | ".join(
            f"{p[s]:,} B" if p[s] else "?" for s in run.SCENARIOS) + " |")
    if slow:
        lines += ["", f"### A board with a Pico's CPU (`cpu={PICO_CPU}`)", "",
                  "mpkick's three scenarios on the same board model with the MicroPython "
                  f"process given {PICO_CPU:.0%} of one host core (`sim/cpu.py`), and where "
                  "the board's time went, as the agent accounts it (`Board.session_times`): "
                  "in the session, receive (waiting for the host's frames included, so on a "
                  "slow link it is mostly the link), inflate, write, hash (the file read back "
                  "from flash) and rename; list is the tree listing that starts every push "
                  "(the manifest walk, and hashing what it does not know).", "",
                  "| baud | scenario | push (s) | " + " | ".join(ACCOUNTS) + " |",
                  "|---:|---|---:|" + "---:|" * len(ACCOUNTS)]
        for baud, scenarios in slow.items():
            for scenario, (seconds, times) in scenarios.items():
                lines.append(f"| {baud or 'unpaced'} | {scenario} | {seconds:.1f} | " +
                             " | ".join(f"{times.get(k, 0):.2f} s" for k in ACCOUNTS) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="workload size factor")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--baud", type=int, action="append", help="baud rate(s)")
    parser.add_argument("--tool", action="append", choices=TOOLS, help="tool(s) (default all)")
    parser.add_argument("--no-doc", action="store_true", help="print, do not write the doc")
    parser.add_argument("--quick", action="store_true",
                        help="a reduced run that proves the script works (--scale 0.2)")
    args = parser.parse_args(argv)
    if args.quick:
        args.scale = min(args.scale, 0.2)
    tools = args.tool or list(TOOLS)
    bauds = args.baud or list(BAUDS)
    work = generate_large(scale=args.scale)
    with tempfile.TemporaryDirectory(prefix="mpkick-large-") as tmp:
        workdir = Path(tmp)
        results, subsetted = measure(work, tools, bauds, args.reps, workdir, print)
        peaks = {"benchmark (41 files)": heap_peaks(generate(), workdir, "small"),
                 f"large ({len(work.files):,} files)": heap_peaks(work, workdir, "large")}
        slow = {baud: board_time(work, workdir, baud) for baud in bauds}
    text = report(results, work, tools, subsetted, peaks, args.scale, args.reps, slow)
    print(text)
    if not args.no_doc:
        write_section("large", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
