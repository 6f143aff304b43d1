"""The board library: code runs, errors come home as Python exceptions, files travel intact."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from mpkick.board.board import Board
from mpkick.errors import BoardError, ConnectError
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard
from mpkick.target import Target


def test_exec_and_eval(board: Board) -> None:
    assert board.exec("print('hello')").strip() == b"hello"
    assert board.eval("[1, 'two', {3: 4.5}]") == [1, "two", {3: 4.5}]


@pytest.mark.board_needs("folders")
def test_a_board_traceback_becomes_an_exception(board: Board) -> None:
    with pytest.raises(BoardError, match="ZeroDivisionError"):
        board.exec("1/0")
    with pytest.raises(FileNotFoundError) as err:
        board.read("/missing.txt")
    assert err.value.filename == "/missing.txt"
    board.mkdir("/d")
    with pytest.raises(FileExistsError):
        board.mkdir("/d")
    with pytest.raises(IsADirectoryError):
        board.remove("/d")


@pytest.mark.board_needs("big_files")
def test_files_travel_byte_for_byte_both_ways(board: Board) -> None:
    blobs = {"/empty": b"", "/all-bytes.bin": bytes(range(256)) * 300,
             "/random.bin": os.urandom(70_000), "/text.py": b"print('x')\r\n" * 5000}
    for path, data in blobs.items():
        board.write(path, data)
    for path, data in blobs.items():
        assert board.read(path) == data
    sizes = {e.path: e.size for e in board.tree("/")}
    assert all(sizes[p] == len(d) for p, d in blobs.items())


@pytest.mark.board_needs("strong_hashes")
def test_the_tree_comes_with_hashes_in_one_exchange(board: Board) -> None:
    import hashlib

    board.write("/a.txt", b"alpha")
    entries = {e.path: e for e in board.tree("/", hashes=True)}
    assert entries["/a.txt"].sha256 == hashlib.sha256(b"alpha").hexdigest()


@pytest.mark.board_needs("strong_hashes")
def test_the_tree_digest_folds_alike_with_and_without_big_integers(board: Board) -> None:
    # A port without big integers XORs the digest byte by byte; both ways give the host's.
    from mpkick.memory.listings import digest

    board.mkdir("/d")
    for path, data in (("/a.txt", b"alpha"), ("/d/b.py", b"x = 1\n"), ("/d/c", b"")):
        board.write(path, data)
    entries = board.tree("/", hashes=True)
    out = board.exec("import mpkick_read\nmpkick_read._tree('/', True, True)\n"
                     "mpkick_read._big = False\nmpkick_read._tree('/', True, True)\n"
                     "mpkick_read._big = True")
    assert out.split() == [digest(entries).encode()] * 2


@pytest.mark.board_needs("rename", "usage")
def test_it_is_a_filesystem_target(board: Board) -> None:
    assert isinstance(board, Target)
    board.write("/x", b"1")
    board.rename("/x", "/y")
    assert board.read("/y") == b"1"
    usage = board.usage()
    assert 0 < usage.free <= usage.total


@pytest.mark.sim_only("counts the bytes the sim received")
def test_the_agent_stays_on_the_board_and_is_not_resent(sim_url: str) -> None:
    with Board.connect(sim_url) as b:
        b.load_agent()
        first = b.transport.board.counters.host_to_board  # type: ignore[attr-defined]
    with Board.connect(sim_url) as b:
        b.load_agent()
        second = b.transport.board.counters.host_to_board  # type: ignore[attr-defined]
    assert second < first / 5


def test_an_agent_of_another_version_is_replaced_even_while_it_is_imported(
        tmp_path: Path) -> None:
    """Connections between two boots share the REPL: the agent an earlier one imported is used
    as it is, unless it is of another version (then it is installed afresh, once)."""
    vb = VirtualBoard(parse_url(f"sim://{tmp_path / 'flash.img'}"))
    port = vb.start("pty")
    assert isinstance(port, str)
    try:
        with Board.connect(port) as b:
            b.write("/a.txt", b"a")
        with Board.connect(port) as b:  # what an older mpkick left: on the flash and imported
            b.exec("import mpkick_agent\nmpkick_agent.MK_V = 'older'\n"
                   "with open('/.mpkick/mpkick_agent.py') as f: s = f.read()\n"
                   "with open('/.mpkick/mpkick_agent.py', 'w') as f:"
                   " f.write(\"MK_V = 'older'\\n\" + s.split('\\n', 1)[1])")
        sent = vb.counters.host_to_board
        with Board.connect(port) as b:
            assert b.read("/a.txt") == b"a"
        reinstall = vb.counters.host_to_board - sent
        sent = vb.counters.host_to_board
        with Board.connect(port) as b:
            assert b.read("/a.txt") == b"a"
            assert b.eval("__import__('sys').modules['mpkick_agent'].MK_V") != "older"
            module = b.eval("id(__import__('sys').modules['mpkick_agent'])")
        again = vb.counters.host_to_board - sent
        assert again < reinstall / 5
        with Board.connect(port) as b:  # the same module: not read and compiled again
            assert b.eval("id(__import__('sys').modules['mpkick_agent'])") == module
    finally:
        vb.close()


def test_files_holding_the_boards_own_banners_and_marks_are_plain_data(board: Board) -> None:
    """The virtual board watches its output for MicroPython's banners and its firmware's marks;
    a file that holds them (a README quoting the banner, say) must travel as data."""
    data = (b'raw REPL; CTRL-B to exit\r\n>Type "help()" for more information.\n>>> '
            b"\x1b[mpkick-sim-raw]\n\x1b[mpkick-sim-ready]\nthe end\n") * 3
    board.write("/README.txt", data)
    assert board.read("/README.txt") == data
    assert board.eval("1 + 1") == 2  # and the REPL carries on in the mode it was in


def test_a_looping_program_is_interrupted_on_connect(sim_url: str) -> None:
    with Board.connect(sim_url) as b:
        b.write("/main.py", b"while True:\n    print('busy')\n")
        b.reset()
    with Board.connect(sim_url) as b:
        assert b.eval("1 + 1") == 2


@pytest.mark.board_needs("usage")
def test_info_names_the_firmware(board: Board) -> None:
    info = board.info()
    assert info.implementation == "micropython"
    assert info.mpy_version and info.mpy_version.startswith("v6")
    assert info.fs_total and info.fs_free


def test_a_port_where_no_micropython_answers_fails_with_a_message() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    threading.Thread(target=echo, daemon=True).start()
    with pytest.raises(ConnectError, match="no MicroPython answered"):
        Board.connect(f"socket://127.0.0.1:{server.getsockname()[1]}")
    server.close()


def test_no_such_port(tmp_path: Path) -> None:
    with pytest.raises(ConnectError, match="no such port"):
        Board.connect(str(tmp_path / "ttyACM9"))
