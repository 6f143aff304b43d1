"""``image pull`` and ``image flash``: a board's whole filesystem, read and written as an image.

Everything runs on the virtual board, real MicroPython over a real littlefs2 block device; what
the board holds is read back through its REPL with MicroPython's own ``open``, not through mpkick.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import InputError
from mpkick.image.build import build_image
from mpkick.image.flash import block_device, image_flash, image_pull, plan_flash
from mpkick.image.geometry import detect_geometry
from mpkick.image.target import load_image

# On a --port board, these tests run only where mpkick's agent runs (not on a micro:bit).
pytestmark = pytest.mark.board_needs("agent")

#: A tree with nested folders, a binary file spanning blocks, and empty files (no main.py:
#: the board must not change its own files while the test looks at them).
TREE = {
    "boot.py": b"",
    "lib/util.py": b"def f():\n    return 1\n" * 20,
    "lib/__init__.py": b"",
    "lib/deep/blob.bin": bytes(range(256)) * 64 + os.urandom(1000),
    "data/readings.csv": b"".join(b"%d,%d\n" % (i, i * i) for i in range(700)),
    "data/empty.txt": b"",
}

#: Runs on the board: every file under / as (path, bytes), through MicroPython alone.
DUMP = """
import os
def _walk(d, out):
    for e in os.ilistdir(d):
        p = (d if d != '/' else '') + '/' + e[0]
        if e[1] & 0x4000:
            _walk(p, out)
        else:
            with open(p, 'rb') as f:
                out.append((p, f.read()))
_out = []
_walk('/', _out)
print(repr(_out))
"""


def board_files(board: Board) -> dict[str, bytes]:
    """What the board holds, read through its REPL; mpkick's own /.mpkick left out."""
    files = ast.literal_eval(board.exec(DUMP, timeout=60).decode())
    return {p: bytes(d) for p, d in files if not p.startswith("/.mpkick/")}


def make_tree(root: Path) -> None:
    for rel, data in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def image_files(path: Path) -> dict[str, bytes]:
    with load_image(str(path), path.read_bytes(), autosave=False) as image:
        return {e.path: image.read(e.path) for e in image.tree("/") if not e.is_dir}


def board_geometry(url: str) -> tuple[int, int]:
    with Board.connect(url) as board:
        device = block_device(board)
    return device.block_size, device.block_count


@pytest.fixture
def built(tmp_path: Path, sim_url: str) -> Path:
    """An image of TREE built with `mpkick image build`, sized for the board's block device."""
    src = tmp_path / "src"
    make_tree(src)
    block_size, block_count = board_geometry(sim_url)
    out = tmp_path / "built.img"
    assert main(["image", "build", str(src), "-o", str(out), "--block-size", str(block_size),
                 "--block-count", str(block_count)]) == 0
    return out


def test_flash_puts_the_tree_on_the_board_and_pull_gives_back_the_image_byte_for_byte(
        built: Path, sim_url: str, tmp_path: Path) -> None:
    assert main(["image", "flash", "-p", sim_url, str(built), "--yes"]) == 0
    with Board.connect(sim_url) as board:
        assert board_files(board) == {"/" + rel: data for rel, data in TREE.items()}

    pulled = tmp_path / "pulled.img"
    assert main(["image", "pull", "-p", sim_url, "-o", str(pulled)]) == 0
    assert pulled.read_bytes() == built.read_bytes()
    assert image_files(pulled) == {"/" + rel: data for rel, data in TREE.items()}


def test_the_board_runs_the_flashed_filesystem_at_once_in_the_same_session(
        built: Path, sim_url: str) -> None:
    with Board.connect(sim_url) as board:
        board.write("/old.txt", b"gone after the flash")
        image_flash(board, plan_flash(board, str(built)))
        assert board_files(board) == {"/" + rel: data for rel, data in TREE.items()}
        board.write("/new.txt", b"the new filesystem takes writes")
        assert board.read("/new.txt") == b"the new filesystem takes writes"


def test_a_wrong_geometry_image_is_refused_before_anything_is_written(
        tmp_path: Path, sim_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    make_tree(src)
    block_size, block_count = board_geometry(sim_url)
    small = tmp_path / "small.img"
    build_image(src, str(small), size=block_size * (block_count // 2), block_size=block_size)
    with Board.connect(sim_url) as board:
        board.write("/keep.txt", b"still here")
        before = tmp_path / "before.img"
        image_pull(board, str(before))
    capsys.readouterr()

    assert main(["image", "flash", "-p", sim_url, str(small), "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: ") and err.count("\n") == 1
    assert f"{block_count // 2} blocks" in err and f"{block_count} blocks" in err

    with Board.connect(sim_url) as board:
        after = tmp_path / "after.img"
        image_pull(board, str(after))
        assert board.read("/keep.txt") == b"still here"
    assert after.read_bytes() == before.read_bytes()


def test_a_file_that_is_not_an_image_is_refused_in_one_line(
        tmp_path: Path, sim_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\xff" * 8192)
    assert main(["image", "flash", "-p", sim_url, str(junk), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "not a littlefs2 image" in err and err.count("\n") == 1


def test_flash_asks_first_and_a_no_writes_nothing(
        built: Path, sim_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    with Board.connect(sim_url) as board:
        board.write("/keep.txt", b"still here")
    capsys.readouterr()
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["image", "flash", "-p", sim_url, str(built)]) == 1
    err = capsys.readouterr().err
    assert "replaces the board's whole filesystem" in err and "nothing was flashed" in err
    with Board.connect(sim_url) as board:
        assert board_files(board) == {"/keep.txt": b"still here"}


def test_pull_reads_what_micropython_wrote_and_leaves_the_board_as_it_was(
        board: Board, tmp_path: Path) -> None:
    board.exec("import os\nos.mkdir('/a')\nos.mkdir('/a/b')\n"
               "with open('/a/b/bin.dat', 'wb') as f: f.write(bytes(range(256)) * 40)\n"
               "with open('/a/empty', 'wb') as f: pass\n"
               "with open('/hello.txt', 'w') as f: f.write('hello from the board')\n")
    expected = board_files(board)
    out = tmp_path / "pulled.img"
    result = image_pull(board, str(out))
    assert (result.device.block_size, result.device.block_count) == detect_geometry(
        out.read_bytes())
    assert {p: d for p, d in image_files(out).items() if not p.startswith("/.mpkick/")} \
        == expected
    again = tmp_path / "again.img"
    image_pull(board, str(again))
    assert again.read_bytes() == out.read_bytes()


def test_a_board_without_a_block_device_gets_a_clear_error(board: Board) -> None:
    # As an ESP32 whose partition table has no 'vfs' partition: flashbdev.bdev is None.
    board.exec("import sys\nclass _NoFlash:\n bdev = None\nsys.modules['flashbdev'] = _NoFlash")
    with pytest.raises(InputError, match="no block device"):
        block_device(board)
