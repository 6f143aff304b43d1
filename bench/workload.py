"""A deterministic MicroPython project to push, shaped like the ones users push.

Compression ratios, file counts and folder depth decide which tool wins a push benchmark, so the
generated tree mimics a real project rather than random text: Python source built from a
vocabulary of identifiers into classes, methods, docstrings and comments (it compresses about as
well as hand-written code), a few incompressible binary assets, one large module, and nested
folders. The same seed always gives the same bytes, so numbers from different runs and machines
compare.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SEED = 20240611
#: The six folders of the full workload, nested up to three deep.
FOLDERS = ("lib", "lib/drivers", "lib/drivers/sensors", "lib/net", "app", "app/assets")
BIG_MODULE = "lib/net/protocol.py"
#: The line of the big module that the one-line edit changes (and the edit itself).
EDIT_LINE = "DEFAULT_RETRIES = 3\n"
EDITED_LINE = "DEFAULT_RETRIES = 5\n"

NOUNS = ("sensor", "buffer", "packet", "frame", "register", "channel", "display", "pixel",
         "button", "timer", "motor", "speed", "offset", "value", "count", "index", "address",
         "payload", "config", "state", "mode", "level", "sample", "reading", "threshold",
         "interval", "delay", "retry", "header", "checksum", "length", "queue", "event",
         "handler", "callback", "message", "topic", "client", "socket", "status", "error",
         "result", "window", "scale", "factor", "pin", "bus", "device", "calibration", "cache",
         "voltage", "current", "temperature", "humidity", "pressure", "lux", "angle", "duty",
         "frequency", "baudrate", "timeout", "deadline", "counter", "flags", "mask", "opcode",
         "response", "request", "token", "session", "battery", "charger", "relay", "servo",
         "encoder", "accel", "gyro", "compass", "neopixel", "palette", "glyph", "cursor", "row",
         "column", "sector", "block", "page", "partition", "manifest", "schedule", "alarm")
VERBS = ("read", "write", "update", "reset", "send", "receive", "parse", "encode", "decode",
         "apply", "check", "measure", "configure", "start", "stop", "poll", "flush", "handle",
         "compute", "load", "store", "clear", "wait_for", "schedule", "notify", "convert",
         "validate", "publish", "subscribe", "connect", "scan", "probe", "calibrate", "sync",
         "drain", "fill", "pack", "unpack", "draw", "render", "toggle", "enable", "disable",
         "sleep_until", "retry", "log", "dump", "restore", "advance", "rewind", "select")
ADJECTIVES = ("raw", "last", "next", "max", "min", "default", "current", "pending", "active",
              "local", "remote", "total", "average", "filtered", "cached", "scaled", "signed",
              "initial", "spare", "primary", "secondary", "staged", "stale", "fresh", "peak")
MODULES = ("time", "struct", "micropython", "machine", "gc", "sys", "os", "json", "select",
           "binascii", "collections", "asyncio")
SENTENCES = (
    "Keep the {n} small: the board has little RAM and the heap fragments quickly.",
    "The {n} is read once per call so that a slow {m} cannot stall the main loop.",
    "Return the {a} {n}, or None when the {m} did not answer in time.",
    "This mirrors what the datasheet calls the {n} {m} sequence.",
    "Values outside the {a} range are clamped instead of raising, because a glitch on the {m}"
    " should not stop the program.",
    "Called from an interrupt handler: no allocation, no floating point.",
    "The {n} and the {m} are kept together so one lock protects both.",
    "Retries with a short delay; the {m} often needs a moment after power-up.",
)


@dataclass(frozen=True)
class Workload:
    """A project tree (relative path -> bytes) and its one-line edit."""

    files: Mapping[str, bytes]
    folders: tuple[str, ...]
    edit_path: str
    edited: bytes

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())

    def write(self, root: Path) -> None:
        """Lay the tree out under ``root`` (which may already exist)."""
        for folder in self.folders:
            (root / folder).mkdir(parents=True, exist_ok=True)
        for rel, data in self.files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def apply_edit(self, root: Path) -> None:
        """Make the one-line edit in the tree already written under ``root``."""
        (root / self.edit_path).write_bytes(self.edited)

    def digest(self) -> str:
        """One hash over every path and content: equal digests, equal workloads."""
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(rel.encode() + b"\0" + hashlib.sha256(self.files[rel]).digest())
        return h.hexdigest()


class _Writer:
    """Builds plausible MicroPython source from a seeded random stream."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def name(self, parts: int = 2) -> str:
        pools = (ADJECTIVES, NOUNS) if parts == 2 else (NOUNS,)
        return "_".join(self.rng.choice(pool) for pool in pools)

    def camel(self) -> str:
        return "".join(w.capitalize() for w in (self.rng.choice(ADJECTIVES),
                                                 self.rng.choice(NOUNS),
                                                 self.rng.choice(("Driver", "Manager", "Reader",
                                                                  "Client", "Buffer", "Filter"))))

    def sentence(self) -> str:
        return self.rng.choice(SENTENCES).format(n=self.rng.choice(NOUNS),
                                                 m=self.rng.choice(NOUNS),
                                                 a=self.rng.choice(ADJECTIVES))

    def docstring(self, indent: str) -> str:
        lines = [f'{indent}"""{self.sentence()}']
        if self.rng.random() < 0.5:
            lines += ["", f"{indent}{self.sentence()}", f'{indent}"""']
        else:
            lines[0] += '"""'
        return "\n".join(line if line.strip() else "" for line in lines) + "\n"

    def expr(self, names: list[str]) -> str:
        r = self.rng.random()
        a, b = self.rng.choice(names), self.rng.choice(names)
        if r < 0.25:
            return f"{a} + {self.rng.randint(1, 64)}"
        if r < 0.45:
            return f"({a} * {b}) // {self.rng.choice((2, 4, 8, 10, 100, 1000))}"
        if r < 0.6:
            return f"self.{self.rng.choice(VERBS)}_{self.rng.choice(NOUNS)}({a})"
        if r < 0.75:
            return f"min(max({a}, 0), {self.rng.choice((255, 1023, 4095, 65535))})"
        if r < 0.88:
            return f"{a} & 0x{self.rng.randint(1, 255):02X}"
        fmt, at = self.rng.choice("HhIiBb"), self.rng.randint(0, 12)
        return f"struct.unpack_from('<{fmt}', {a}, {at})[0]"

    def body(self, indent: str, names: list[str], depth: int = 0) -> list[str]:
        out = []
        for _ in range(self.rng.randint(2, 5 if depth else 7)):
            r = self.rng.random()
            target = self.name()
            if r < 0.12:
                out.append(f"{indent}# {self.sentence()}")
            if r < 0.45 or depth >= 1:
                out.append(f"{indent}{target} = {self.expr(names)}")
                names = [*names, target]
            elif r < 0.62:
                out.append(f"{indent}if {self.rng.choice(names)} > {self.rng.randint(0, 200)}:")
                out += self.body(indent + "    ", names, depth + 1)
                if self.rng.random() < 0.4:
                    out.append(f"{indent}else:")
                    out += self.body(indent + "    ", names, depth + 1)
            elif r < 0.78:
                out.append(f"{indent}for {target} in range({self.rng.choice(names)}):")
                out += self.body(indent + "    ", [*names, target], depth + 1)
            elif r < 0.9:
                out.append(f"{indent}try:")
                out += self.body(indent + "    ", names, depth + 1)
                out.append(f"{indent}except OSError as exc:")
                out.append(f"{indent}    self._{self.rng.choice(NOUNS)}_errors += 1")
                out.append(f"{indent}    print('{self.rng.choice(VERBS)} failed:', exc)")
            else:
                out.append(f"{indent}self.{target} = {self.expr(names)}")
        return out

    def function(self, indent: str, method: bool) -> str:
        params = [self.name() for _ in range(self.rng.randint(0, 3))]
        params = list(dict.fromkeys(params))
        head = ["self"] if method else []
        defaults = ", ".join(head + params + ([f"timeout_ms={self.rng.choice((50, 100, 500))}"]
                                              if self.rng.random() < 0.3 else []))
        name = f"{self.rng.choice(VERBS)}_{self.rng.choice(NOUNS)}"
        if method and self.rng.random() < 0.2:
            name = "_" + name
        lines = [f"{indent}def {name}({defaults}):"]
        text = "\n".join(lines) + "\n" + self.docstring(indent + "    ")
        names = params or [self.name()]
        if not params:
            text += f"{indent}    {names[0]} = {self.rng.randint(0, 9)}\n"
        body = self.body(indent + "    ", names)
        body.append(f"{indent}    return {self.rng.choice(names)}")
        return text + "\n".join(body) + "\n"

    def klass(self) -> str:
        name = self.camel()
        attrs = list(dict.fromkeys(self.name() for _ in range(self.rng.randint(2, 6))))
        out = [f"class {name}:", self.docstring("    ").rstrip("\n"), ""]
        out.append(f"    def __init__(self, bus, address=0x{self.rng.randint(8, 119):02X}):")
        out += ["        self.bus = bus", "        self.address = address"]
        initial = ("0", "None", "[]", "bytearray(16)", "False")
        out += [f"        self.{a} = {self.rng.choice(initial)}" for a in attrs]
        out += [f"        self._{n}_errors = 0" for n in self.rng.sample(NOUNS, 2)]
        text = "\n".join(out) + "\n"
        for _ in range(self.rng.randint(2, 5)):
            text += "\n" + self.function("    ", method=True)
        return text

    def module(self, size: int, title: str, marker: str | None = None) -> bytes:
        """About ``size`` bytes of source; ``marker`` (a whole line) lands near its middle."""
        mods = self.rng.sample(MODULES, self.rng.randint(2, 5))
        text = f'"""{title}: {self.sentence()}\n\n{self.sentence()}\n"""\n\n'
        text += "".join(f"import {m}\n" for m in sorted(mods)) + "\n"
        for _ in range(self.rng.randint(2, 5)):
            values = (f"0x{self.rng.randint(0, 255):02X}", str(self.rng.randint(1, 5000)))
            text += f"{self.name().upper()} = {self.rng.choice(values)}\n"
        text += "\n"
        while len(text) < size or marker is not None:
            if marker is not None and len(text) >= size // 2:
                text += "\n" + marker
                marker = None
            big = size - len(text) > 3000 and self.rng.random() < 0.6
            text += "\n\n" + (self.klass() if big else self.function("", method=False))
        return text.encode()


def generate(seed: int = SEED, scale: float = 1.0) -> Workload:
    """The project: ~40 files, ~300 KB at ``scale=1`` (smaller scales keep the shape).

    At full scale: 36 Python modules of 1.5-12 KB, one 60 KB module, two 20 KB binary assets
    (incompressible) and a JSON config, spread over six nested folders.
    """
    rng = random.Random(seed)
    w = _Writer(rng)
    files: dict[str, bytes] = {}
    n_modules = max(3, round(36 * scale))
    for i in range(n_modules):
        folder = FOLDERS[i % 5] if i % 6 else ""  # app/assets holds only data
        stem = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"
        rel = f"{folder}/{stem}.py".lstrip("/")
        while rel in files:
            stem += "2"
            rel = f"{folder}/{stem}.py".lstrip("/")
        target = int(rng.choice((1000, 2200, 3200, 4000, 5500, 7500, 10000)) * scale) + 200
        files[rel] = w.module(target, stem)
    files["main.py"] = w.module(int(3000 * scale) + 200, "main") + (
        b'\n\ndef main():\n    """Started by hand or from boot: importing must not run it."""\n'
        b"    print('hello from the workload')\n")
    files[BIG_MODULE] = w.module(int(60_000 * scale), "protocol", marker=EDIT_LINE)
    for name in ("app/assets/font.bin", "app/assets/logo.bin"):
        files[name] = rng.randbytes(int(20 * 1024 * scale))
    files["app/config.json"] = (
        b'{\n  "name": "workload",\n  "interval_ms": 250,\n  "sensors": ["temp", "humidity"]\n}\n'
    )
    big = files[BIG_MODULE]
    assert big.count(EDIT_LINE.encode()) == 1
    edited = big.replace(EDIT_LINE.encode(), EDITED_LINE.encode())
    return Workload(dict(sorted(files.items())), FOLDERS, BIG_MODULE, edited)


if __name__ == "__main__":
    import sys
    import zlib

    wl = generate()
    src = b"".join(d for p, d in wl.files.items() if p.endswith(".py"))
    ratio = len(src) / len(zlib.compress(src, 9))
    print(f"{len(wl.files)} files, {wl.size} bytes, {len(wl.folders)} folders; "
          f"python compresses {ratio:.2f}x; digest {wl.digest()[:16]}")
    if len(sys.argv) > 1:
        wl.write(Path(sys.argv[1]))
