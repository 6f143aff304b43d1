"""Delta transfer: a changed file reaches the board as ranges of its old copy plus new bytes."""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkick.board.board import Board
from mpkick.sync.delta import DeltaSender, apply_ops, diff

# On a --port board, these tests run only where mpkick's agent runs (not on a micro:bit).
pytestmark = pytest.mark.board_needs("agent")

MODULE = ("\n".join(f"def f{i}(x):\n    return x * {i} + {random.Random(i).random()}"
                    for i in range(1500))).encode()[:60000]


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MPKICK_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def slow_board(tmp_path: Path) -> Iterator[Board]:
    """A board behind a 115200 baud cable, where bytes on the wire are what users wait for."""
    with Board.connect(f"sim://{tmp_path / 'flash.img'}?baud=115200") as b:
        yield b


def wire(board: Board) -> int:
    counters = board.transport.board.counters  # type: ignore[attr-defined]
    return int(counters.host_to_board + counters.board_to_host)


def board_hash(board: Board, path: str) -> str | None:
    return next(e.sha256 for e in board.tree("/", hashes=True) if e.path == path)


def push(board: Board, path: str, data: bytes) -> str:
    """One delta push the way push and watch do it: prepare, then one session."""
    sender = DeltaSender(board)
    try:
        old: str | None = board_hash(board, path)
        size = board.stat(path).size
    except (StopIteration, FileNotFoundError):
        old, size = None, 0
    sender.prepare([(path, old, size)])
    with board.session() as s:
        return sender.put(s, path, data, old)


def test_one_line_edit_in_a_60k_module_is_under_1k_on_the_wire(slow_board: Board) -> None:
    push(slow_board, "/big.py", MODULE)
    old = board_hash(slow_board, "/big.py")
    edited = MODULE.replace(b"return x * 750 +", b"return x * 751 +")
    sender = DeltaSender(slow_board)  # asks the board for its id: counted too
    before = wire(slow_board)
    sender.prepare([("/big.py", old, len(MODULE))])
    with slow_board.session() as s:
        assert sender.put(s, "/big.py", edited, old) == "warm"
    assert wire(slow_board) - before < 1024
    assert slow_board.read("/big.py") == edited


def test_cold_cache_uses_signatures_computed_on_the_board(slow_board: Board, cache: Path) -> None:
    push(slow_board, "/big.py", MODULE)
    shutil.rmtree(cache)  # another host, or a cleared cache: no base on this side
    edited = MODULE[:30000] + b"# a new line in the middle\n" + MODULE[30000:]
    before = wire(slow_board)
    assert push(slow_board, "/big.py", edited) == "cold"
    assert wire(slow_board) - before < 6000  # the whole file, deflated, is ~18 KB
    assert slow_board.read("/big.py") == edited


def test_insertion_at_the_start_does_not_resend_the_rest(board: Board, cache: Path) -> None:
    push(board, "/m.py", MODULE)
    sender_stats = DeltaSender(board)
    old = board_hash(board, "/m.py")
    with board.session() as s:
        assert sender_stats.put(s, "/m.py", b"import os\n" + MODULE, old) == "warm"
    assert sender_stats.stats.literal == len(b"import os\n")
    assert board.read("/m.py") == b"import os\n" + MODULE
    shutil.rmtree(cache)
    assert push(board, "/m.py", b"import sys\n" + MODULE) == "cold"
    assert board.read("/m.py") == b"import sys\n" + MODULE


def test_binary_data(board: Board) -> None:
    rng = random.Random(7)
    blob = bytes(rng.getrandbits(8) for _ in range(40000))
    push(board, "/data.bin", blob)
    changed = blob[:100] + bytes(range(256)) * 2 + blob[5000:39000] + b"\x00\x04\x03\xa5" * 10
    assert push(board, "/data.bin", changed) == "warm"
    assert board.read("/data.bin") == changed


def test_a_copy_changed_behind_our_back_still_ends_right(board: Board, cache: Path) -> None:
    push(board, "/m.py", MODULE)
    # Someone edits the file on the board (another tool, the program itself).
    board.exec("f = open('/m.py', 'ab')\nf.write(b'# added on the board\\n' * 50)\nf.close()")
    edited = MODULE.replace(b"def f3(", b"def g3(")
    assert push(board, "/m.py", edited) == "cold"
    assert board.read("/m.py") == edited


def test_a_wrong_base_fails_the_commit_and_keeps_the_old_file(board: Board) -> None:
    push(board, "/m.py", MODULE)
    sender = DeltaSender(board)
    stale = MODULE.replace(b"def f1(", b"def XX(")  # what we wrongly believe is there
    sender.cache.put(stale)
    with pytest.raises(OSError), board.session() as s:
        sender.put(s, "/m.py", stale + b"\n", hashlib.sha256(stale).hexdigest())
    assert board.read("/m.py") == MODULE


def test_a_manifest_that_lies_costs_one_retry_not_a_stuck_push(board: Board,
                                                                  tmp_path: Path) -> None:
    """The board's manifest trusts size and mtime. A file rewritten on the board with both
    unchanged keeps its old hash there, so a delta is built on the wrong base: the commit
    check refuses it, the board forgets that hash, and push lists again and ends right."""
    from mpkick.push import kick

    project = tmp_path / "project"
    project.mkdir()
    first, second = MODULE, MODULE.replace(b"def f1(", b"def g1(")  # the same size
    for content in (first, second):
        (project / "m.py").write_bytes(content)
        kick(src=project, target=board)
    # What a stale manifest says: /m.py (really `second`) still hashes as `first`.
    board.exec("import mpkick_agent as a, os\nst = os.stat('/m.py')\nj = a._Journal()\n"
               f"j.add('/m.py', st[6], st[8], {hashlib.sha256(first).hexdigest()!r})\n"
               "j.close()\n__import__('mpkick_read')._compact()")
    edited = first.replace(b"def f2(", b"def g2(")
    (project / "m.py").write_bytes(edited)
    said: list[str] = []
    result = kick(src=project, target=board, log=said.append)
    assert result.updated == 1
    assert board.read("/m.py") == edited
    assert any("listing the board again" in line for line in said), said
    assert kick(src=project, target=board).updated == 0  # and the next push finds it in sync


def test_board_id_is_stable(board: Board) -> None:
    first = board.identity()
    assert first and board.identity() == first


def test_diff_round_trips_random_edits() -> None:
    rng = random.Random(3)
    for _ in range(200):
        old = bytes(rng.choice(b"ab\n") for _ in range(rng.randint(0, 300)))
        new = bytearray(old)
        for _ in range(rng.randint(0, 5)):
            at = rng.randint(0, len(new))
            if rng.random() < 0.5:
                new[at:at] = bytes(rng.choice(b"abc") for _ in range(rng.randint(0, 40)))
            else:
                del new[at:at + rng.randint(0, 40)]
        assert apply_ops(old, diff(old, bytes(new), 4)) == bytes(new)


def test_push_sends_an_edit_as_a_delta(slow_board: Board, tmp_path: Path) -> None:
    from mpkick.push import kick

    project = tmp_path / "project"
    project.mkdir()
    (project / "big.py").write_bytes(MODULE)
    kick(src=project, target=slow_board)
    (project / "big.py").write_bytes(MODULE.replace(b"f700(x)", b"f700(y)"))
    before = wire(slow_board)
    result = kick(src=project, target=slow_board)
    assert result.updated == 1
    assert wire(slow_board) - before < 1024  # the listing of the board's tree included
    assert slow_board.read("/big.py") == MODULE.replace(b"f700(x)", b"f700(y)")
