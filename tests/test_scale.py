"""A 1,000-file project and a board with a small heap: every push works, and the board's
memory stays bounded by a frame, a compression window and one path, however large the tree.

The virtual board is the 64-bit unix port, where the same objects take about twice the heap
they take on a 32-bit board: ``heap=32K`` here is a board with about 16 kB free, ``heap=64K``
an ESP8266 (about 30 kB), ``heap=400K`` a Pico (about 200 kB). The default suite pushes the
benchmark workload at 32K, and the 1,000-file tree at 64K, each checked byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from mpkick.board.board import Board, OutOfMemory
from mpkick.image.target import load_image
from mpkick.push import kick
from mpkick.sim.cpu import CpuBudget

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from largework import generate_large
from workload import Workload, generate

# On a --port board, these tests run only where mpkick's agent runs (not on a micro:bit).
pytestmark = pytest.mark.board_needs("agent")


def flash_files(image: Path) -> dict[str, str]:
    """Every file on the flash image (mpkick's own folder aside) with its sha256, read on
    the host with littlefs-python: nothing of mpkick's board-side code is trusted for it."""
    target = load_image(str(image), image.read_bytes(), autosave=False)
    return {e.path.lstrip("/"): e.sha256 or "" for e in target.tree("/", hashes=True)
            if not e.is_dir and not e.path.startswith("/.mpkick")}


def same(image: Path, files: Mapping[str, bytes]) -> bool:
    return flash_files(image) == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}


@pytest.fixture
def small(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Board, Path]]:
    heap = getattr(request, "param", "64K")
    image = tmp_path / "flash.img"
    with Board.connect(f"sim://{image}?size=16M&heap={heap}") as b:
        yield b, image


def pushed(board: Board, work: Workload, root: Path, log: list[str] | None = None) -> int:
    """Push ``work`` laid out under ``root``; the file bytes sent."""
    work.write(root)
    result = kick(src=root, target=board, log=(log.append if log is not None else None))
    return result.bytes_sent


def test_the_benchmark_workload_pushes_to_a_32k_heap_and_again_after_it_rebooted(
        tmp_path: Path) -> None:
    """Where mpytool works (a board with about 16 kB free), mpkick works too: it may fall back
    to smaller frames and no compression, and says so; a re-push sends no file data. After a
    reboot the workload's own main.py runs first (until the host stops it) and may keep part of
    the heap: a re-push still sends nothing, and a one-line edit goes through."""
    image, work, src = tmp_path / "flash.img", generate(), tmp_path / "src"
    url = f"sim://{image}?size=16M&heap=32K"
    said: list[str] = []
    with Board.connect(url, log=said.append) as board:
        pushed(board, work, src, said)
        assert same(image, work.files)
        again = kick(src=src, target=board)
        assert again.bytes_sent == 0 and again.created == again.updated == 0
    assert any("small heap" in line for line in said), said
    for n in range(2):
        with Board.connect(url, log=said.append) as board:
            assert kick(src=src, target=board, log=said.append).bytes_sent == 0
            if n:
                work.apply_edit(src)
                assert kick(src=src, target=board, log=said.append).updated == 1
    assert same(image, {**work.files, work.edit_path: work.edited})
    assert all("Traceback" not in line for line in said)


@pytest.mark.sim_only("hides this host's mpy-cross from a board of known size")
@pytest.mark.parametrize("heap", ["32K", "64K"])
def test_a_small_board_without_mpy_cross_here_goes_on_with_plain_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, heap: str) -> None:
    """A small board must compile the agent itself when this host has no mpy-cross, which
    leaves it too little RAM to run it (at 64K the session runs out, at 32K taking the agent
    in pieces does): the push goes on with plain REPL commands, as peers without an agent
    work, and says why; the next push goes plain at once and sends nothing. Once mpy-cross is
    here, the board gets the agent compiled, and an edit goes through."""
    import mpkick.compile.compiler as compiler
    import mpkick.compile.mpycross as mpycross

    image = tmp_path / "flash.img"
    url = f"sim://{image}?size=16M&heap={heap}"
    work, src = generate(), tmp_path / "src"
    work.write(src)
    for module in (compiler, mpycross):
        monkeypatch.setattr(module, "installed", lambda: [])
    said: list[str] = []
    with Board.connect(url, log=said.append) as board:
        assert kick(src=src, target=board, log=said.append).created == len(work.files)
    assert same(image, work.files)
    assert any("plain REPL commands" in line and "mpy-cross" in line for line in said), said
    said.clear()
    with Board.connect(url, log=said.append) as board:
        again = kick(src=src, target=board, log=said.append)
    assert again.bytes_sent == 0 and again.created == again.updated == 0
    assert not any("ran out of RAM" in line for line in said), said
    monkeypatch.undo()
    said.clear()
    with Board.connect(url, log=said.append) as board:
        assert kick(src=src, target=board, log=said.append).bytes_sent == 0
        work.apply_edit(src)
        assert kick(src=src, target=board, log=said.append).updated == 1
    assert any("goes to this small board compiled" in line for line in said), said
    assert same(image, {**work.files, work.edit_path: work.edited})
    assert all("Traceback" not in line for line in said)


@pytest.mark.parametrize("heap", ["32K", "2M"])
def test_a_small_heap_holds_one_half_of_the_agent_at_a_time(tmp_path: Path, heap: str) -> None:
    """The agent's listing and receiving halves are imported on first use; below 32 kB free
    each goes again after its call (and --verbose says so), where a roomy board keeps both."""
    said: list[str] = []
    with Board.connect(f"sim://{tmp_path / 'flash.img'}?heap={heap}", log=said.append) as board:
        board.write("/a.py", b"a = 1\n")
        assert board.tree("/", hashes=True)[0].sha256 == hashlib.sha256(b"a = 1\n").hexdigest()
        held = board.eval("sorted(m for m in __import__('sys').modules if m[:7] == 'mpkick_')")
    lean = heap == "32K"
    assert held == (["mpkick_agent"] if lean else ["mpkick_agent", "mpkick_read", "mpkick_recv"])
    assert any("small heap" in line for line in said) == lean


def test_a_300_file_tree_pushes_to_a_64k_heap_and_lists_in_one_short_answer(
        small: tuple[Board, Path], tmp_path: Path) -> None:
    board, image = small
    work = generate_large(scale=0.3)
    pushed(board, work, tmp_path / "src")
    assert same(image, work.files)
    vb = board.transport.board  # type: ignore[attr-defined]
    before = (vb.counters.host_to_board, vb.counters.board_to_host)
    again = kick(src=tmp_path / "src", target=board)
    assert again.bytes_sent == 0
    wire = vb.counters.host_to_board - before[0] + vb.counters.board_to_host - before[1]
    assert wire < 400, wire  # one exchange: the digest asked for and its 32 hex digits
    work.apply_edit(tmp_path / "src")
    before = (vb.counters.host_to_board, vb.counters.board_to_host)
    edit = kick(src=tmp_path / "src", target=board)
    wire = vb.counters.host_to_board - before[0] + vb.counters.board_to_host - before[1]
    assert edit.updated == 1 and wire < 1024, wire
    assert same(image, {**work.files, work.edit_path: work.edited})


def test_the_boards_memory_does_not_grow_with_the_tree(tmp_path: Path) -> None:
    """The most heap the agent had in use, measured by the agent itself (garbage collected
    first), while pushing 41 files and while pushing 312: frames, window and one path only."""
    peaks = []
    for n, work in enumerate((generate(), generate_large(scale=0.3))):
        with Board.connect(f"sim://{tmp_path / f'{n}.img'}?size=8M&heap=256K") as board:
            board.load_agent()
            board.heap_peak()
            work.write(tmp_path / f"src{n}")
            kick(src=tmp_path / f"src{n}", target=board)  # full push
            full = board.heap_peak()
            kick(src=tmp_path / f"src{n}", target=board)  # no-op
            board.exec("import os\nos.remove('/.mpkick/manifest')")  # every file hashed again
            board.tree("/", hashes=True)
            peaks.append((len(work.files), full, board.heap_peak(watch=False)))
    (few, full_few, list_few), (many, full_many, list_many) = peaks
    assert many > 7 * few
    assert full_few and full_many and list_few and list_many
    assert full_many - full_few < 3072, peaks
    # The large tree is eight folders deep, the small one three: a level holds a folder
    # iterator and its path (a few hundred bytes), whatever the number of files.
    assert list_many - list_few < 6144, peaks


def test_a_board_out_of_ram_says_so_in_one_line(board: Board) -> None:
    with pytest.raises(OutOfMemory) as caught:
        board.exec("x = bytearray(1 << 40)")
    assert "ran out of RAM" in str(caught.value) and "\n" not in str(caught.value)


def meta(board: Board) -> dict[str, bytes]:
    """The agent's manifest and journal as the board holds them."""
    names = board.exec("import os\nprint(' '.join(os.listdir('/.mpkick')))").decode().split()
    return {n: board.read(f"/.mpkick/{n}") for n in ("manifest", "journal") if n in names}


def left_journal(board: Board, paths: list[str]) -> None:
    """What a session that died after writing ``paths`` leaves: their journal lines."""
    lines = "".join(f"6\\t1\\t{'0' * 64}\\t{p}\\n" for p in paths)
    board.exec(f"j = open('/.mpkick/journal', 'a')\nj.write('{lines}')\nj.close()")


def hashes(board: Board) -> dict[str, str | None]:
    return {e.path: e.sha256 for e in board.tree("/", hashes=True) if not e.is_dir}


A = hashlib.sha256(b"a = 1\n").hexdigest()


def test_the_manifest_survives_a_session_that_died(board: Board, tmp_path: Path) -> None:
    """A journal left by a session that never ended is read by the next listing: beside the
    manifest while it is short, merged into it once it is long, dropped with the manifest if
    it is out of order (the next listing hashes every file again)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_bytes(b"a = 1\n")
    kick(src=src, target=board)
    left_journal(board, ["/zz.py"])
    assert hashes(board) == {"/a.py": A}
    assert "journal" in meta(board)  # short: kept
    board.exec("import os\nos.remove('/.mpkick/journal')")
    left_journal(board, [f"/z{i:03}.py" for i in range(40)])  # one run, longer than JMAX
    assert hashes(board) == {"/a.py": A}
    kept = meta(board).get("journal", b"")  # merged: what is left is the listing's own lines
    assert len(kept) <= 2048 and b"0" * 64 not in kept
    left_journal(board, [f"/z{i:03}.py" for i in range(40, 0, -1)])  # out of order
    assert hashes(board) == {"/a.py": A}
    assert b"/z0" not in meta(board).get("manifest", b"")


def test_an_edit_leaves_the_manifest_as_it_is_until_the_journal_grows_long(
        board: Board, tmp_path: Path) -> None:
    """A one-file push adds a line to the journal, not a rewritten manifest (a whole pass
    over the tree's entries, which a slow board feels); the next listing reads the journal
    beside the manifest, and merges it once it passes JMAX bytes."""
    src = tmp_path / "src"
    work = generate()  # 41 files: the full push's journal is long, so the next listing
    work.write(src)    # merges it
    kick(src=src, target=board)
    assert kick(src=src, target=board).updated == 0
    before = meta(board)
    assert set(before) == {"manifest"}
    path = src / "main.py"
    merged = False
    for n in range(30):
        path.write_bytes(b"x = %d\n" % n)
        assert kick(src=src, target=board).updated == 1
        now = meta(board)
        if n == 0:
            assert now["manifest"] == before["manifest"] and now["journal"].count(b"\n") == 1
        assert len(now.get("journal", b"")) < 2048 + 256  # JMAX, and the last edit's run
        merged |= now["manifest"] != before["manifest"]
        assert hashes(board)["/main.py"] == hashlib.sha256(b"x = %d\n" % n).hexdigest()
    assert merged
    assert kick(src=src, target=board).updated == 0


def test_a_cpu_budget_slows_the_board_and_the_agent_says_where_its_time_went(
        tmp_path: Path) -> None:
    with Board.connect(f"sim://{tmp_path / 'flash.img'}?cpu=0.2") as board:
        assert board.eval("sum(range(1000))") == 499500
        budget = board.transport.board.cpu  # type: ignore[attr-defined]
        assert isinstance(budget, CpuBudget) and budget.stops > 0
        board.session_times()
        work = generate(scale=0.2)
        pushed(board, work, tmp_path / "src")
        times = board.session_times(watch=False)
        assert times is not None and set(times) == {"receive", "inflate", "write", "hash",
                                                     "rename", "list"}
        assert times["hash"] > 0 and times["rename"] > 0 and times["list"] > 0


@pytest.mark.parametrize("small", ["64K", pytest.param("192K", marks=pytest.mark.slow)],
                         indirect=True)
def test_a_1000_file_project_works_at_small_heaps(small: tuple[Board, Path],
                                                  tmp_path: Path,
                                                  request: pytest.FixtureRequest) -> None:
    """Full push, no-op, one-line edit, --delete, listing and reading back, on 16 MB of flash,
    all checked against the flash byte for byte (192K, too, with --slow)."""
    slow = request.config.getoption("--slow") or os.environ.get("MPKICK_SLOW") == "1"
    if "192K" in request.node.name and not slow:
        pytest.skip("run with --slow")
    board, image = small
    work = generate_large()
    src = tmp_path / "src"
    pushed(board, work, src)
    assert same(image, work.files)
    assert kick(src=src, target=board).bytes_sent == 0
    work.apply_edit(src)
    assert kick(src=src, target=board).updated == 1
    stale = sorted(work.files)[::97]
    for rel in stale:
        (src / rel).unlink()
    done = kick(src=src, target=board, delete=True)
    assert done.deleted == len(stale)
    left = {p: d for p, d in work.files.items() if p not in stale}
    left[work.edit_path] = work.edited
    assert same(image, left)
    assert {e.path.lstrip("/") for e in board.tree("/") if not e.is_dir
            and not e.path.startswith("/.mpkick")} == set(left)
    assert board.read("/" + work.edit_path) == work.edited


def test_a_64k_board_pushes_again_after_it_rebooted(tmp_path: Path) -> None:
    """Each connection boots the virtual board afresh: the stored (compiled) agent is
    imported, not installed again, and the unchanged tree costs no file data."""
    image, work = tmp_path / "flash.img", generate()
    work.write(tmp_path / "src")
    for n in range(3):
        said: list[str] = []
        with Board.connect(f"sim://{image}?heap=64K", log=said.append) as board:
            result = kick(src=tmp_path / "src", target=board, log=said.append)
        assert (result.created == len(work.files)) if n == 0 else (result.bytes_sent == 0)
        assert n == 0 or not any("installing" in line for line in said), said
    assert same(image, work.files)
