"""Run the fault trials of tests/test_faults.py at the issue's counts; write docs/reliability.md.

    python bench/reliability.py            # 200 power cuts, 50 of every other fault
    python bench/reliability.py --quick    # the default test suite's counts
    python bench/reliability.py --links    # only the links section (25 trials per link)

The trials are the tests' own (``tests/faultlib.py``): same seeds, same verdicts, so the table
is what the tests prove, with the numbers the tests only assert on.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import faultlib  # noqa: E402
import linklib  # noqa: E402

HOW = {
    "power cut": "`kill_at=N`: SIGKILL of the MicroPython process once the board's UART has been "
                 "given N host bytes; no finaliser runs, the board then boots as from power-on",
    "unplug": "`unplug_at=N`: the host's end of the cable closes (and the board loses power)",
    "corrupt host->board": "`corrupt_at=N`: byte N of the host's stream is XORed with a random "
                           "non-zero value",
    "drop host->board": "`drop_at=N`: byte N of the host's stream vanishes",
    "corrupt board->host": "`corrupt_at=N&corrupt_dir=b2h`: byte N of the board's answers "
                           "(acks, errors, prompts) is flipped",
    "drop board->host": "`drop_at=N&corrupt_dir=b2h`: byte N of the board's answers vanishes",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the default test suite's counts")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    parser.add_argument("--links", action="store_true",
                        help="rerun only the link trials and rewrite only their section")
    args = parser.parse_args(argv)
    if args.links:
        return rewrite_links(args.out, 3 if args.quick else 25)
    counts = {name: (20 if name == "power cut" else 5) if args.quick else
              (200 if name == "power cut" else 50) for name in faultlib.FAULTS}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = faultlib.Bench(Path(tmp))
        for name, inject in faultlib.FAULTS.items():
            outcomes = []
            for seed in faultlib.seeds(counts[name]):
                outcomes.append(bench.trial(seed, name, inject))
            rows.append((name, outcomes))
            done = sum(o.completed for o in outcomes)
            bad = [o for o in outcomes if o.problems]
            print(f"{name}: {len(outcomes)} trials, {done} completed, "
                  f"{len(outcomes) - done} clear errors, {len(bad)} broken", flush=True)
            for o in bad:
                print(f"  seed {o.seed} at {o.position}: {o.problems}", flush=True)
        links = link_trials(Path(tmp), 3 if args.quick else 25)
    args.out.write_text(render(rows, bench) + link_section(links))
    print(f"wrote {args.out}")
    return 1 if any(o.problems for _, outs in rows for o in outs) or \
        any(o.problems for outs in links.values() for o in outs) else 0


LINKS_HEADING = "## Links that are not kind"


def rewrite_links(out: Path, n: int) -> int:
    """Replace the links section of ``out`` (or append it), leaving the fault tables alone."""
    with tempfile.TemporaryDirectory() as tmp:
        links = link_trials(Path(tmp), n)
    text = out.read_text() if out.exists() else ""
    head, found, rest = text.partition(LINKS_HEADING)
    tail = rest[rest.find("\n## "):] if found and "\n## " in rest else ""
    after = "\n" + tail.lstrip("\n") if tail else ""
    out.write_text(head.rstrip("\n") + "\n\n" + link_section(links) + after)
    print(f"wrote the links section of {out}")
    return 1 if any(o.problems for outs in links.values() for o in outs) else 0


def link_trials(workdir: Path, n: int) -> dict[str, list[linklib.LinkOutcome]]:
    """``n`` seeded trials behind each link of ``linklib.LINKS``."""
    links: dict[str, list[linklib.LinkOutcome]] = {}
    for link in linklib.LINKS:
        links[link] = [linklib.trial(workdir, seed, link) for seed in faultlib.seeds(n)]
        bad = [o for o in links[link] if o.problems]
        print(f"{link}: {n} trials, {len(bad)} broken", flush=True)
        for o in bad:
            print(f"  seed {o.seed}: {o.problems} {o.error}", flush=True)
    return links


def link_section(links: dict[str, list[linklib.LinkOutcome]]) -> str:
    lines = [f"{LINKS_HEADING} (tests/linklib.py, tests/test_link.py)", "",
             "Each trial pushes a seeded project full of CR and LF bytes with the real push, "
             "pushes again after one edit, and reads every file back through the agent (what "
             "get, cat and mount use). The flash is checked with littlefs-python after each "
             "push. *Noticed*: connecting found the link's kind (LF -> CRLF from the raw REPL's "
             "banner, with no byte more on the wire; a UART from the transport) and chose to "
             "undo it or to pace itself.", "",
             "| link | sim:// options | trials | noticed | push exact | re-push exact | "
             "reads exact | bytes lost to overruns | seconds per trial |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for link, outs in links.items():
        lines.append(f"| {link} | `{linklib.LINKS[link]}` | {len(outs)} | "
                     f"{sum(o.noticed for o in outs)} | {sum(o.pushed for o in outs)} | "
                     f"{sum(o.repushed for o in outs)} | {sum(o.read_back for o in outs)} | "
                     f"{sum(o.overrun for o in outs)} | "
                     f"{sum(o.seconds for o in outs) / max(1, len(outs)):.1f} |")
    errors = sorted({o.error for outs in links.values() for o in outs if o.error})
    lines += [""] + [f"- error seen: `{_short(e)}`" for e in errors]
    lines += ["Without pacing, the same pushes fail: to `rx_buffer=256&raw_paste=0` the first "
              "exec loses bytes and ends in a Python error or 10 s of silence"
              "; to `rx_buffer=256` the binary session's frames overrun the buffer and every "
              "resend overruns it again: that retried for ever, and now gives up after 8 "
              "resends without progress with a one-line error (both in `tests/test_link.py`).",
              ""]
    return "\n".join(lines)


def render(rows: list[tuple[str, list[faultlib.Outcome]]], bench: faultlib.Bench) -> str:
    old, new = bench.old, bench.new
    lines = [
        "# Reliability: what a push survives",
        "",
        "Generated by `python bench/reliability.py` on " + time.strftime("%Y-%m-%d") + "; the "
        "same trials run (fewer of them) in `tests/test_faults.py`, all of them with `--slow`.",
        "",
        "Every trial starts from a flash image holding an *old* tree "
        f"({len(old)} files, {sum(map(len, old.values())) // 1000} kB) and pushes a *new* one "
        f"({len(new)} files: changed, unchanged, added, deleted, one in a subfolder, most larger "
        "than one frame) to the virtual board: the real MicroPython unix port on littlefs2. One "
        "fault is injected at a position drawn from the trial's fixed seed, uniformly over the "
        f"push's {bench.h2b_span} host bytes (or the board's {bench.b2h_span} answer bytes). "
        "Then the flash image is read with littlefs-python (not through the agent under test) "
        "and judged: every file is its old content or its new one, never a mix; no file that "
        "exists in both trees is missing; a push that reported success left exactly the new "
        "tree. Finally a clean push must complete and leave the board equal to the source.",
        "",
        "| fault | how it is injected | trials | push completed | clear error | promise broken |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, outcomes in rows:
        done = sum(o.completed for o in outcomes)
        bad = sum(bool(o.problems) for o in outcomes)
        lines.append(f"| {name} | {HOW[name]} | {len(outcomes)} | {done} | "
                     f"{len(outcomes) - done} | {bad} |")
    lines += ["", "## What the user saw", ""]
    for name, outcomes in rows:
        errors = collections.Counter(_short(o.error) for o in outcomes if o.error)
        states = collections.Counter(s for o in outcomes for s in o.states.values())
        slow = sum(o.seconds > 5 for o in outcomes)
        lines.append(f"- **{name}**: files after the fault: "
                     + ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                     + (f"; {slow} trial(s) needed a 10 s timeout to end" if slow else ""))
        for text, n in errors.most_common(4):
            lines.append(f"  - {n} x `{text}`")
    broken = [o for _, outs in rows for o in outs if o.problems]
    if broken:
        lines += ["", "## Broken promises (to fix)", ""]
        lines += [f"- {o.fault}, seed {o.seed}, at {o.position}: {'; '.join(o.problems)}"
                  for o in broken]
    lines += ["", "## Other faults (tests/test_faults.py, tests/test_reliability.py)", "",
              "- **Stall** (`stall_at=N&stall_for=S`, or `VirtualBoard.stall(S)`): an exec with a "
              "1 s timeout and a session with 0.5 s ack timeout both end in `DeviceTimeout` with "
              "a message; nothing hangs.",
              "- **Noise at boot** (`noise=N`: ESP32 ROM text plus N random bytes before every "
              "power-on banner) and **a main.py that loops forever printing** (`loop_main=1`): "
              "connect, write and read still work.",
              "- **Second process on the same port**: fails at once with `port busy`, one line.",
              "- **A port that is not MicroPython** (a TCP echo server through `socket://`): one "
              "line, `no MicroPython answered`, after the raw-REPL retries (about 12 s).",
              "- **Power-on banner**: after a cut the board prints a fresh banner, never "
              "`soft reboot`; the host recognises it in the raw REPL and stops at once.",
              "", "## Known gaps", "",
              "- Code sent to the raw REPL and the text the board prints back (the tree listing) "
              "carry no checksum: a damaged byte there gives a Python error on the board or a "
              "garbled name on the host, not a resend. File content is never affected: it only "
              "travels in checked frames and is committed after the board re-hashes it.",
              "- Damaged answers from the board are mostly recovered (acknowledgements are "
              "cumulative; damage is skipped or resynced and resent; the board's answer to the "
              "end of a session reports how many operations failed). What remains ends in a "
              "clear error: a damaged raw-paste flow-control byte, a READY line damaged twice, "
              "or a lost answer to the end of the session, where mpkick says it cannot know "
              "that every file was written rather than claim success.",
              ""]
    return "\n".join(lines)


def _short(error: str) -> str:
    text = error.split(" on sim://")[0] if " on sim://" in error else error
    return text[:110]


if __name__ == "__main__":
    raise SystemExit(main())
