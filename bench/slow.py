"""The benchmark on a board with a Pico's CPU: do the targets hold where the board is slow?

The host is 30-50x faster than an RP2040, and the virtual board is as fast as the host unless
told otherwise. Here every tool pushes ``workload.generate()`` (the 41-file benchmark workload)
at 115200 baud to a fresh ``profile=pico`` board whose MicroPython process gets ``cpu=0.03``
of one host core (``sim/cpu.py``), in the same run: full push, push again with nothing
changed, push after a one-line edit, each board checked file by file afterwards (bench/run.py's
harness). The targets are bench/run.py's.

``python bench/slow.py`` writes the "slow" section of docs/benchmarks.md; ``--quick`` runs
mpkick and mpytool once with the workload at a fifth, to prove the script works.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run
from doc import write_section
from workload import generate

CPU = 0.03  # a Pico's RP2040 is 30-50x slower than one host core
OPTIONS = f"profile=pico&cpu={CPU}"
BAUD = 115200
TOOLS = ("mpkick", "mpytool", "mpremote")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--tool", action="append", choices=TOOLS, help="tool(s) (default all)")
    parser.add_argument("--quick", action="store_true", help="a reduced run that proves it works")
    args = parser.parse_args(argv)
    tools = args.tool or (["mpkick", "mpytool"] if args.quick else list(TOOLS))
    work = generate(scale=0.2 if args.quick else 1.0)
    results: list[run.Measurement] = []
    with tempfile.TemporaryDirectory(prefix="mpkick-slow-") as tmp:
        for rep in range(args.reps):
            for tool in tools:
                results += run.session(tool, BAUD, rep, work, Path(tmp), print, OPTIONS)
    cells = run.summarise(results)
    text = "\n".join([
        f"## The benchmark on a Pico's CPU (`cpu={CPU}`)", "",
        f"`python bench/slow.py`: the {len(work.files)}-file benchmark workload at {BAUD} baud "
        f"on `sim://?{OPTIONS}` (a Pico's heap and flash mount, the MicroPython process given "
        f"{CPU:.0%} of one host core), every tool on a fresh board in the same run; median of "
        f"{args.reps} run(s).", "",
        run.table(cells, tools), "",
        *run.targets(cells, work),
    ])
    print(text)
    if not args.quick:
        write_section("slow", text)
    return 1 if any(m.problem for m in results) else 0


if __name__ == "__main__":
    sys.exit(main())
