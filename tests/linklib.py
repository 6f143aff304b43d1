"""Link trials on the virtual board, shared by tests/test_link.py and ``bench/reliability.py``.

One trial: a seeded project rich in CR and LF bytes is pushed with the real push to a board
behind a link that is not kind (LF turned into CRLF, a 256-byte UART buffer that drops what
does not fit), then pushed again after one edit, then every file is read back through the
agent (what get, cat and mount use). The verdicts: the host noticed the link, the flash (read
with littlefs-python, not through the agent) equals the source after each push, the reads equal
it too, and nothing was lost to an overrun.
"""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from faultlib import flash_files

from mpkick.board.board import Board
from mpkick.errors import MpkickError
from mpkick.push import kick

#: The links a trial runs behind: name -> sim:// options.
LINKS = {
    "LF -> CRLF": "cook=1",
    "UART overrun, 256 B buffer": "rx_buffer=256",
    "UART overrun, 256 B buffer, no raw-paste": "rx_buffer=256&raw_paste=0",
    "LF -> CRLF and overrun, no raw-paste": "cook=1&rx_buffer=256&raw_paste=0",
}


def project(rng: random.Random) -> dict[str, bytes]:
    """Files whose bytes a cooked link mangles: CR, LF, CRLF, CR CR LF, a CR at the end."""
    def tricky(n: int) -> bytes:
        return bytes(rng.choice(b"\r\n\r\nab\x00\xff") for _ in range(n))
    return {"main.py": b"import app\r\napp.run()\n", "app.py": b"def run():\n    print(1)\n",
            "lib/data.bin": tricky(rng.randint(3000, 9000)) + b"\r",
            "lib/blob.bin": rng.randbytes(rng.randint(5000, 20000)),
            "notes.txt": b"line\n" * rng.randint(1, 300)}


@dataclass
class LinkOutcome:
    seed: int
    link: str
    noticed: bool = False
    pushed: bool = False
    repushed: bool = False
    read_back: bool = False
    overrun: int = 0
    error: str = ""
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def trial(workdir: Path, seed: int, link: str) -> LinkOutcome:
    """One push, one re-push after an edit and a read of every file behind ``link``."""
    rng = random.Random(seed)
    query = LINKS[link]
    out = LinkOutcome(seed, link)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        files = project(rng)
        src = root / "src"
        for rel, data in files.items():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(data)
        image = root / "flash.img"
        url = f"sim://{image}?{query}"
        try:
            with Board.connect(url) as board:
                out.noticed = (board.repl.cooked == ("cook=1" in query)
                               and board.repl.paced == ("rx_buffer" in query))
                kick(src=src, target=board)
                out.overrun += _lost(board)
            out.pushed = _on_flash(image, files)
            files["lib/data.bin"] = files["lib/data.bin"][::-1] + b"\n\r"
            (src / "lib/data.bin").write_bytes(files["lib/data.bin"])
            with Board.connect(url) as board:
                kick(src=src, target=board)
                out.overrun += _lost(board)
            out.repushed = _on_flash(image, files)
            with Board.connect(url) as board:
                out.read_back = all(board.read("/" + rel) == data for rel, data in files.items())
        except (MpkickError, OSError) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.monotonic() - start
    for verdict in ("noticed", "pushed", "repushed", "read_back"):
        if not getattr(out, verdict):
            out.problems.append(f"not {verdict.replace('_', ' ')}")
    if out.overrun:
        out.problems.append(f"{out.overrun} bytes lost to overruns")
    return out


def _lost(board: Board) -> int:
    return int(board.transport.board.counters.overrun)  # type: ignore[attr-defined]


def _on_flash(image: Path, files: dict[str, bytes]) -> bool:
    return flash_files(image) == {"/" + rel: data for rel, data in files.items()}
