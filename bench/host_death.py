"""Host-death trials at larger counts; writes their section of docs/reliability.md.

    python bench/host_death.py             # 10 trials per command
    python bench/host_death.py --trials 3

The trials are the tests' own (``tests/deathlib.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import deathlib  # noqa: E402
from doc import write_section  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args(argv)
    rows = []
    failures = []
    for name in deathlib.COMMANDS:
        with tempfile.TemporaryDirectory() as tmp:
            got = deathlib.trials(Path(tmp), name, args.trials)
        ours = sum(o.ours is None for o in got)
        peer = sum(o.peer is None for o in got)
        exact = sum(o.exact is None for o in got)
        rows.append(f"| {name} | {len(got)} | {ours} | {peer} | {exact} |")
        failures += [o for o in got if not o.ok]
        print(rows[-1], flush=True)
    text = "\n".join([
        "## The host dies (issue [8])",
        "",
        "`bench/host_death.py`, trials from `tests/deathlib.py`: a virtual board on a pty at "
        "115200 baud (`mpkick sim`, a process of its own, which like a board never sees EOF "
        "and drops its output while nobody listens); an `mpkick` command is SIGKILLed at a "
        "seeded random moment within its first 2.5 s. Then `mpremote connect PORT exec` and "
        "`mpkick exec` must each get the REPL (each goes first in half the trials), with no "
        "reset of the board; then `mpkick push --delete` must leave the board exactly equal to "
        "the source, with no temporary file anywhere.",
        "",
        "| command killed | trials | mpkick answered | mpremote answered "
        "| re-push exact, no temp file |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "Failures: " + ("none" if not failures else "; ".join(
            f"{o.command}: {o.ours or o.peer or o.exact}" for o in failures)),
    ])
    write_section("host-death", text, ROOT / "docs" / "reliability.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
