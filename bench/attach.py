"""Attach benchmark: a host folder on the board, mpkick against mpremote and mpytool mounts.

Each tool runs as a user types it (``mpkick attach DIR --exec CODE``, ``mpremote connect PORT
mount DIR exec CODE``, ``mpytool -p PORT mount DIR -- exec CODE``) against a virtual board on
a pty (through a device-like symlink, see run.py), in the same run, unpaced and at 115200
baud. The board times each scenario itself (``time.ticks_ms``), so process start-up and the
mount set-up are left out and only the file traffic counts:

* import a 50-module package (2 kB modules) and call a function from each, cold (just
  mounted) and warm (``sys.modules`` emptied, the same again);
* read a 200 kB file (incompressible bytes);
* walk a 500-file tree (10 folders) with ``os.ilistdir``.

As a yardstick the same package is imported from the board's own flash (pushed there first).
``python bench/attach.py`` writes its section of docs/benchmarks.md; ``--quick`` only prints.
"""

from __future__ import annotations

import argparse
import datetime
import random
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc import write_section
from run import BIN, tool_env, virtual_board

TOOLS = ("mpkick", "mpremote", "mpytool")
BAUDS = (0, 115200)
MODULES = 50
SCENARIOS = {"cold": "import 50 modules, cold", "warm": "import them again, warm",
             "read": "read a 200 kB file", "walk": "list a 500-file tree"}
#: What issue [11] asks at 115200: (scenario, peer, minimum peer/mpkick time ratio).
TARGETS = (("cold", "mpremote", 3.0), ("cold", "mpytool", 1.5))
WARM_VS_FLASH = 2.0

MODULE = '''"""Module {i} of the benchmark package: a little of everything a real module has."""

import sys

TABLE = {table}


class Thing{i}:
    """A class, so the module has methods to compile."""

    def __init__(self, value):
        self.value = value

    def scaled(self, k):
        return [self.value * k + j for j in range(4)]

    def __repr__(self):
        return "Thing{i}(%r)" % (self.value,)


def helper(xs):
    total = 0
    for x in xs:
        if x % 3 == 0:
            total += x
        elif x % 5 == 0:
            total -= x
        else:
            total ^= x
    return total


def f():
    """The function the benchmark calls: it returns the module's number."""
    t = Thing{i}(len(TABLE))
    helper(t.scaled(2))
    return {i}
'''


NOTES = """\
The 200 kB file is random bytes, which do not compress: at 115200 baud the wire alone takes
17.8 s (10 bits a byte), for every tool. The file scenarios run first, on a fresh heap: after a
hundred imports this board's heap is too fragmented for any tool to hold 200 kB in one piece.
mpremote answers every request in its own round trip and polls the port with sleeps, hence its
seconds even unpaced. mpkick's cold import is mostly the 78 kB of modules crossing the wire as
one deflated listing (12 kB); the warm one asks the host at most once ("anything changed?").
The machine was loaded by other work during this run: the lead reruns it on a quiet one."""


def make_project(top: Path) -> None:
    pkg = top / "benchpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""The benchmark package."""\n')
    rng = random.Random(11)
    for i in range(MODULES):
        table = {f"key{j}": rng.randrange(1000) for j in range(60)}
        (pkg / f"m{i:02d}.py").write_text(MODULE.format(i=i, table=table))
    (top / "big.bin").write_bytes(rng.randbytes(200 * 1024))
    for d in range(10):
        folder = top / "tree" / f"d{d}"
        folder.mkdir(parents=True)
        for n in range(50):
            (folder / f"f{n:02d}.txt").write_text(f"{d}/{n}\n")


def board_code(where: str) -> str:
    """What the board runs: it times each scenario itself and prints one line."""
    imports = "\n".join(f" from benchpkg import m{i:02d}\n s += m{i:02d}.f()"
                        for i in range(MODULES))
    return f"""import sys, os, time
if {where!r} not in sys.path:
    sys.path.insert(0, {where!r})
def load():
 s = 0
{imports}
 return s
def walk(p):
    n = 0
    for e in list(os.ilistdir(p)):
        n += walk(p + '/' + e[0]) if e[1] & 0x4000 else 1
    return n
import gc; gc.collect()
try:
    t = time.ticks_ms(); size = len(open({where + '/big.bin'!r}, 'rb').read())
    read = time.ticks_diff(time.ticks_ms(), t)
except Exception as e:
    print('MKFAIL read', repr(e)); read = size = -1
gc.collect()
t = time.ticks_ms(); n = walk({where + '/tree'!r}); lst = time.ticks_diff(time.ticks_ms(), t)
t = time.ticks_ms(); s = load(); cold = time.ticks_diff(time.ticks_ms(), t)
for k in [k for k in sys.modules if k.startswith('benchpkg')]:
    del sys.modules[k]
t = time.ticks_ms(); s2 = load(); warm = time.ticks_diff(time.ticks_ms(), t)
print('MKBENCH', cold, warm, read, lst, s, s2, size, n)
"""


def command(tool: str, port: str, top: Path) -> list[str]:
    code = board_code("/remote")
    if tool == "mpkick":
        return [str(BIN / "mpkick"), "-p", port, "-q", "attach", str(top), "--exec", code]
    if tool == "mpremote":
        return [str(BIN / "mpremote"), "connect", port, "mount", str(top), "exec", code]
    if tool == "mpytool":
        return [str(BIN / "mpytool"), "-p", port, "mount", str(top), "--", "exec", code]
    raise ValueError(tool)


def parse(out: str) -> dict[str, float | str] | str:
    """Seconds per scenario, or what went wrong."""
    failed = [line.split(" ", 2)[2] for line in out.splitlines() if line.startswith("MKFAIL")]
    for line in out.splitlines():
        if line.startswith("MKBENCH"):
            cold, warm, read, walk, s, s2, size, n = (int(x) for x in line.split()[1:])
            want = sum(range(MODULES))
            if (s, s2, n) != (want, want, 500) or size not in (-1, 200 * 1024):
                return f"wrong results {(s, s2, size, n)}"
            return {"cold": cold / 1000, "warm": warm / 1000,
                    "read": read / 1000 if read >= 0 else failed[0][:60],
                    "walk": walk / 1000}
    return "no result: " + out.strip()[-200:]


def measure(tool: str, baud: int, top: Path, work: Path) -> dict[str, float | str] | str:
    link = work / "ttyACM-bench"
    with virtual_board(work / f"{tool}-{baud}.img", baud, link):
        try:
            done = subprocess.run(command(tool, str(link), top), capture_output=True, text=True,
                                  timeout=1200, env=tool_env(work), cwd=top)
        except subprocess.TimeoutExpired:
            return "timed out"
    return parse(done.stdout + done.stderr)


def flash_import(baud: int, top: Path, work: Path) -> float | str:
    """The same package imported from the board's own flash, cold then warm (the better)."""
    link = work / "ttyACM-bench"
    with virtual_board(work / f"flash-{baud}.img", baud, link):
        env = tool_env(work)
        subprocess.run([str(BIN / "mpkick"), "-p", str(link), "-q", "push", str(top / "benchpkg"),
                        "/flash/benchpkg"], check=True, capture_output=True, env=env, timeout=1200)
        full = board_code("/flash")  # its imports, without the file scenarios
        code = full.split("import gc; gc.collect()")[0] + \
            full[full.index("t = time.ticks_ms(); s = load()"):full.index("print('MKBENCH'")] + \
            "print('MKFLASH', cold, warm)\n"
        done = subprocess.run([str(BIN / "mpkick"), "-p", str(link), "exec", code],
                              capture_output=True, text=True, env=env, timeout=1200)
    for line in done.stdout.splitlines():
        if line.startswith("MKFLASH"):
            return min(int(x) for x in line.split()[1:]) / 1000
    return "no result: " + (done.stdout + done.stderr).strip()[-200:]


def seconds(result: dict[str, float | str] | str, key: str) -> float | None:
    value = result.get(key) if isinstance(result, dict) else None
    return value if isinstance(value, float) and value > 0 else None


def fmt(v: float | str) -> str:
    return f"{v:.3f} s" if isinstance(v, float) else f"failed ({v.split('(')[0].strip()})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="unpaced only; print, write nothing")
    args = parser.parse_args()
    bauds = (0,) if args.quick else BAUDS
    lines = ["## Attach: a host folder on the board (`mpkick attach`)", "",
             f"Run {datetime.date.today()} by `bench/attach.py` on the virtual board (a pty, "
             "paced at the baud rate shown, 0 = unpaced). The board times each scenario itself "
             "(`time.ticks_ms`): set-up and process start are left out. Lower is better; "
             "the ratio columns are the peer's time over mpkick's.", ""]
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="mpkick-bench-attach-") as tmp:
        work = Path(tmp)
        top = work / "project"
        make_project(top)
        for baud in bauds:
            results = {tool: measure(tool, baud, top, work) for tool in TOOLS}
            flash = flash_import(baud, top, work)
            lines += [f"### {baud or 'unpaced'}{' baud' if baud else ''}", "",
                      "| scenario | mpkick | mpremote | mpytool | mpremote/mpkick | "
                      "mpytool/mpkick |", "|---|---|---|---|---|---|"]
            for key, title in SCENARIOS.items():
                cells = [fmt(r if isinstance(r, str) else r[key]) for r in results.values()]
                ratios = []
                for peer in ("mpremote", "mpytool"):
                    a, b = seconds(results["mpkick"], key), seconds(results[peer], key)
                    ratios.append(f"{b / a:.1f}x" if a and b else "-")
                lines.append(f"| {title} | " + " | ".join(cells + ratios) + " |")
            lines += ["", f"Same package imported from the board's own flash: {fmt(flash)}.",
                      ""]
            print("\n".join(lines[-len(SCENARIOS) - 6:]))
            if baud == 115200:
                for scenario, peer, want in TARGETS:
                    a, b = seconds(results["mpkick"], scenario), seconds(results[peer], scenario)
                    if a and b:
                        got = b / a
                        verdicts.append(f"- {scenario} import at 115200: {got:.1f}x {peer} "
                                        f"(target {want:g}x): {'met' if got >= want else 'MISSED'}")
                warm = seconds(results["mpkick"], "warm")
                if isinstance(flash, float) and warm:
                    got = warm / flash
                    verdicts.append(f"- warm re-import at 115200: {got:.2f}x the flash import "
                                    f"(target at most {WARM_VS_FLASH:g}x): "
                                    f"{'met' if got <= WARM_VS_FLASH else 'MISSED'}")
    lines += ["### Targets (issue [11])", "", *verdicts, "", NOTES, ""]
    text = "\n".join(lines)
    print("\n".join(verdicts))
    if not args.quick:
        write_section("attach", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
