"""A deterministic large project: about 1,000 files and 4 MB, shaped like an app with its
libraries, web assets and fonts on an ESP32 or a Pico with several MB of flash.

Built from ``workload``'s source writer, so its Python compresses like hand-written code. At
``scale=1``: 14 library packages of about 54 modules each (1-8 kB), a vendored library nested
eight folders deep, a web UI (HTML, CSS, JS: compressible text), 120 small JSON configs, 40
sprite images (incompressible), and three big font assets of 220-350 kB. The same seed always
gives the same bytes.
"""

from __future__ import annotations

import json
import random

from workload import NOUNS, VERBS, Workload, _Writer

SEED = 20251201
#: The module the one-line edit changes, and the line.
EDIT_PATH = "lib/net/protocol.py"
EDIT_LINE = "DEFAULT_RETRIES = 3\n"
EDITED_LINE = "DEFAULT_RETRIES = 5\n"
PACKAGES = ("net", "drivers", "sensors", "display", "ui", "storage", "audio", "power", "radio",
            "motion", "util", "config", "app", "tasks")
DEEP = "lib/vendor/umqtt/v2/core/transport/tls/impl"  # eight folders deep


def _web(rng: random.Random, kind: str, size: int) -> bytes:
    words = [rng.choice(NOUNS) for _ in range(40)]
    out = []
    while sum(map(len, out)) < size:
        w, v = rng.choice(words), rng.choice(VERBS)
        if kind == "html":
            out.append(f'<div class="{w}-panel" id="{w}{rng.randint(0, 99)}">'
                       f'<button onclick="{v}_{w}()">{v.title()} {w}</button></div>\n')
        elif kind == "css":
            out.append(f".{w}-panel {{ margin: {rng.randint(0, 16)}px; color: "
                       f"#{rng.randint(0, 0xFFFFFF):06x}; display: flex; }}\n")
        else:
            out.append(f"function {v}_{w}(el) {{ fetch('/api/{w}').then(r => r.json())"
                       f".then(d => {{ el.textContent = d.{w}; }}); }}\n")
    return "".join(out).encode()


def generate_large(seed: int = SEED, scale: float = 1.0) -> Workload:
    """The large project; smaller ``scale`` keeps the shape with fewer, smaller files."""
    rng = random.Random(seed)
    w = _Writer(rng)
    files: dict[str, bytes] = {}
    per_package = max(2, round(54 * scale))
    for pkg in PACKAGES:
        files[f"lib/{pkg}/__init__.py"] = f"# {pkg}\n".encode()
        for i in range(per_package):
            stem = f"{rng.choice(VERBS)}_{rng.choice(NOUNS)}"
            rel = f"lib/{pkg}/{stem}.py"
            while rel in files:
                stem += str(i)
                rel = f"lib/{pkg}/{stem}.py"
            size = int(rng.choice((900, 1500, 2500, 3500, 5000, 8000)) * scale) + 200
            files[rel] = w.module(size, stem)
    for i in range(max(1, round(6 * scale))):
        files[f"{DEEP}/part{i}.py"] = w.module(int(2500 * scale) + 200, f"part{i}")
    files[EDIT_PATH] = w.module(int(40_000 * scale) + 400, "protocol", marker=EDIT_LINE)
    for i in range(max(2, round(60 * scale))):
        kind = ("html", "css", "js")[i % 3]
        files[f"www/{'pages' if kind == 'html' else kind}/{rng.choice(NOUNS)}{i}.{kind}"] = \
            _web(rng, kind, int(rng.choice((800, 2000, 4000)) * scale) + 100)
    for i in range(max(2, round(120 * scale))):
        files[f"config/devices/{rng.choice(NOUNS)}_{i}.json"] = json.dumps(
            {"id": i, "name": rng.choice(NOUNS), "interval_ms": rng.choice((100, 250, 1000)),
             "pins": [rng.randint(0, 39) for _ in range(4)]}, indent=2).encode()
    for i in range(max(2, round(40 * scale))):
        files[f"assets/sprites/sprite{i:02d}.bin"] = rng.randbytes(int(2048 * scale) + 64)
    for name, size in (("assets/fonts/regular.bin", 350_000), ("assets/fonts/bold.bin", 300_000),
                       ("assets/fonts/icons.bin", 220_000)):
        files[name] = rng.randbytes(int(size * scale))
    files["boot.py"] = b"import gc\ngc.collect()\n"
    files["main.py"] = w.module(int(3000 * scale) + 200, "main")
    big = files[EDIT_PATH]
    assert big.count(EDIT_LINE.encode()) == 1
    folders = tuple(sorted({p.rsplit("/", 1)[0] for p in files if "/" in p}))
    return Workload(dict(sorted(files.items())), folders, EDIT_PATH,
                    big.replace(EDIT_LINE.encode(), EDITED_LINE.encode()))


if __name__ == "__main__":
    wl = generate_large()
    print(f"{len(wl.files)} files, {wl.size} bytes, {len(wl.folders)} folders, "
          f"deepest {max(p.count('/') for p in wl.files)}; digest {wl.digest()[:16]}")
