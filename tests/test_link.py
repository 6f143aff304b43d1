"""Links kinder boards do not have: one that turns LF into CRLF, a UART that overruns, and
modem-control lines wired to a chip's reset."""

from __future__ import annotations

import itertools
import os
import pty
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faultlib
import linklib
import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st
from lineports import protocol_lines
from needs import missing

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import DeviceTimeout, MpkickError, ProtocolError
from mpkick.protocol.channel import SendSession
from mpkick.protocol.repl import RawRepl
from mpkick.push import kick
from mpkick.sim.options import SimOptions
from mpkick.sim.supervisor import VirtualBoard
from mpkick.transport import Transport

#: Bytes a cooked link mangles: LF, CR, CRLF, CR CR LF, a CR at the very end.
TRICKY = b"a\nb\r\nc\rd\r\r\ne\n\n\r" + bytes(range(256)) + b"\r"
PROJECT = {"main.py": b"print('hi')\nprint('there')\r\n", "lib/tricky.bin": TRICKY,
           "lib/big.bin": random.Random(8).randbytes(30000) + b"\r"}


def make(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def board_files(board: Board) -> dict[str, bytes]:
    return {e.path.lstrip("/"): board.read(e.path) for e in board.tree("/")
            if not e.is_dir and not e.path.startswith("/.mpkick")}


def counters(board: Board) -> Any:
    return board.transport.board.counters  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- a cooked link


@pytest.fixture
def cooked_url(tmp_path: Path) -> str:
    return f"sim://{tmp_path / 'flash.img'}?cook=1"


def test_connecting_notices_a_cooked_link_without_a_byte_more(tmp_path: Path,
                                                              cooked_url: str) -> None:
    with Board.connect(f"sim://{tmp_path / 'clean.img'}") as clean:
        assert not clean.repl.cooked
        clean_bytes = counters(clean).host_to_board
    with Board.connect(cooked_url) as cooked:
        assert cooked.repl.cooked
        assert counters(cooked).host_to_board == clean_bytes  # the prompt itself tells
        assert cooked.exec("print('a\\nb')") == b"a\nb\n"


def test_push_get_and_cat_over_a_cooked_link_are_exact(cooked_url: str, tmp_path: Path,
                                                       capsys: Any) -> None:
    src = make(tmp_path / "src", PROJECT)
    with Board.connect(cooked_url) as board:
        result = kick(src=src, target=board)
        assert result.created == 3
        assert board_files(board) == PROJECT
        assert any(n.startswith("link: turns LF into CRLF") for n in result.notes)
    capsys.readouterr()
    assert main(["-p", cooked_url, "cat", "/main.py"]) == 0
    assert capsys.readouterr().out.encode() == PROJECT["main.py"]
    assert main(["-p", cooked_url, "get", ":/lib", str(tmp_path / "back")]) == 0
    assert (tmp_path / "back" / "tricky.bin").read_bytes() == TRICKY
    assert (tmp_path / "back" / "big.bin").read_bytes() == PROJECT["lib/big.bin"]


def test_mount_reads_over_a_cooked_link_are_exact(cooked_url: str, tmp_path: Path) -> None:
    from test_mount import _fuse_missing, mounted

    reason = _fuse_missing()
    if reason:
        missing(reason)
    with Board.connect(cooked_url) as board:
        board.write("/tricky.bin", TRICKY)
        with mounted(board, tmp_path / "mnt") as m:
            assert m.p("tricky.bin").read_bytes() == TRICKY
            m.p("new.bin").write_bytes(TRICKY[::-1])
        assert board.read("/new.bin") == TRICKY[::-1]


class Playback(Transport):
    """A link that hands over the given chunks, one per read: what a cooked link delivered."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    def write(self, data: bytes) -> None:
        pass

    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes:
        return self.chunks.pop(0) if self.chunks else b""

    def close(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\r")),
       cuts=st.lists(st.integers(0, 600), max_size=6))
def test_undoing_a_cooked_link_gives_back_every_byte_however_reads_split_it(
        data: bytes, cuts: list[int]) -> None:
    wire = data.replace(b"\n", b"\r\n")
    edges = sorted({0, len(wire), *(c for c in cuts if c <= len(wire))})
    repl = RawRepl(Playback([wire[a:b] for a, b in itertools.pairwise(edges)]))
    repl.cooked = True
    got = b""
    for _ in range(len(edges) + 2):
        got += repl.take(0.01)
    assert got == data


# --------------------------------------------------------------------------- a UART that overruns


def test_without_pacing_an_overrunning_board_loses_the_code(tmp_path: Path) -> None:
    src = make(tmp_path / "src", PROJECT)
    with Board.connect(f"sim://{tmp_path / 'flash.img'}?raw_paste=0&rx_buffer=256") as board:
        board.repl.paced = False  # what mpkick did before: everything at once
        with pytest.raises(MpkickError):  # a truncated exec, a lost Ctrl-D: an error, never a hang
            kick(src=src, target=board)
        assert counters(board).overrun > 0


def test_without_pacing_frames_overrun_and_the_session_gives_up_rather_than_retry_forever(
        tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'flash.img'}?rx_buffer=256"
    with Board.connect(url) as board:
        board.repl.paced = False  # raw-paste gets the code there; the frames are too many
        board.load_agent()
        session = SendSession(board.repl, board.caps, ack_timeout=1)
        with pytest.raises((ProtocolError, DeviceTimeout)):
            session.put("/big.bin", PROJECT["lib/big.bin"])
            session.close()
        assert counters(board).overrun > 0
    src = make(tmp_path / "src", PROJECT)
    with Board.connect(url) as board:  # paced, as connecting chooses: the next push is exact
        assert kick(src=src, target=board).created == 3
        files = board_files(board)
        files.pop("big.bin.mkt", None)  # the cut session's temp file: the host-death work's
        assert files == PROJECT


@pytest.mark.parametrize("paste", ["0", "1"], ids=["no-raw-paste", "raw-paste"])
def test_a_paced_push_to_an_overrunning_board_is_exact(tmp_path: Path, paste: str) -> None:
    src = make(tmp_path / "src", PROJECT)
    url = f"sim://{tmp_path / 'flash.img'}?raw_paste={paste}&rx_buffer=256"
    with Board.connect(url) as board:
        assert board.repl.paced  # the link says it is a UART without flow control
        result = kick(src=src, target=board)
        edited = {**PROJECT, "main.py": b"print('edited')\n"}
        (src / "main.py").write_bytes(edited["main.py"])
        again = kick(src=src, target=board)
        assert (result.created, again.updated) == (3, 1)
        assert board_files(board) == edited
        assert counters(board).overrun == 0
        budget = "128 bytes unread on the way (the board's raw-paste window" if paste == "1" \
            else "256 bytes unread on the way (no raw-paste"
        assert any(budget in n for n in result.notes), result.notes


def test_links_that_make_the_writer_wait_are_not_paced(tmp_path: Path) -> None:
    with Board.connect(f"sim://{tmp_path / 'flash.img'}") as board:
        assert board.repl.budget is None
    from mpkick.transport.serialport import overruns

    assert overruns("socket://192.168.4.1:23") and overruns("/dev/ttyUSB0")
    assert not overruns("loop://") and not overruns("/dev/ttyACM0")


# --------------------------------------------------------------------------- modem-control lines

RESET = (False, True)  # DTR off, RTS on: EN held low by an ESP auto-reset circuit


@pytest.fixture
def lines_scheme(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``lines://`` URLs work, and the run's line states (which --dtr, --rts and the settings
    put in the environment) start and end unset."""
    monkeypatch.setattr(serial, "protocol_handler_packages",
                        [*serial.protocol_handler_packages, "lineports"])
    names = ("MPKICK_DTR", "MPKICK_RTS")
    saved = {name: os.environ.pop(name, None) for name in names}
    protocol_lines.EVENTS.clear()
    yield
    for name, value in saved.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture
def pty_board(tmp_path: Path) -> Iterator[str]:
    """A virtual board on a pty, as any serial tool sees one."""
    vb = VirtualBoard(SimOptions(image=tmp_path / "flash.img"))
    path = vb.start("pty")
    assert isinstance(path, str)
    yield path
    vb.close()


def test_connecting_and_leaving_never_resets_an_esp_board(lines_scheme: None, pty_board: str,
                                                          tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"main.py": b"print(1)\n"})
    assert kick(f"lines://{pty_board}", src).created == 1
    with Board.connect(f"lines://{pty_board}") as board:
        assert board.exec("print(6 * 7)") == b"42\n"  # a second client, raw bytes still raw
    # Each session: both on from the open (what USB-CDC boards need to talk) with no change
    # on the way in; on the way out RTS goes first, then DTR, then the port closes.
    session = [(True, True), (True, False), (False, False)]
    assert protocol_lines.states() == session * 2
    assert RESET not in session


def test_dtr_and_rts_options_set_the_lines_for_boards_wired_otherwise(
        lines_scheme: None, pty_board: str, capsys: Any) -> None:
    assert main(["-p", f"lines://{pty_board}", "--dtr", "off", "--rts", "off", "exec",
                 "print('up')"]) == 0
    assert capsys.readouterr().out == "up\n"
    seen = protocol_lines.states()
    assert seen == [(True, True), (True, False), (False, False)]  # off before any byte
    assert main(["-p", f"lines://{pty_board}", "--dtr", "maybe", "exec", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: --dtr 'maybe'") and err.count("\n") == 1


def test_the_settings_can_set_the_lines(lines_scheme: None, pty_board: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mpkick.toml").write_text(f'port = "lines://{pty_board}"\nrts = false\n')
    monkeypatch.chdir(tmp_path)
    assert main(["exec", "print(1)"]) == 0
    assert protocol_lines.states()[:2] == [(True, True), (True, False)]


def test_hard_reset_of_a_board_that_no_longer_answers_pulses_its_reset_line(
        lines_scheme: None, capsys: Any) -> None:
    master, slave = pty.openpty()  # a board that hears nothing and says nothing
    try:
        assert main(["-p", f"lines://{os.ttyname(slave)}", "reset", "--hard"]) == 0
    finally:
        os.close(master)
        os.close(slave)
    out = capsys.readouterr().out
    assert out.startswith("the board did not answer, so mpkick pulsed the reset line: RTS on")
    seen = protocol_lines.states()
    assert seen.count(RESET) == 1 and seen[seen.index(RESET) + 1] == (False, False)


def test_a_link_without_lines_says_it_cannot_pulse_them(tmp_path: Path) -> None:
    from mpkick.errors import ConnectError

    with Board.connect(f"sim://{tmp_path / 'flash.img'}") as board, \
            pytest.raises(ConnectError, match="has no reset line"):
        board.transport.pulse_reset()


# --------------------------------------------------------------------------- the trials


@pytest.mark.parametrize("link", list(linklib.LINKS))
def test_link_trials_keep_every_promise(tmp_path: Path, link: str,
                                        request: pytest.FixtureRequest) -> None:
    # docs/reliability.md's rows for these links come from the same trials (bench/reliability.py).
    for seed in faultlib.seeds(10 if request.config.getoption("--slow") else 1):
        outcome = linklib.trial(tmp_path, seed, link)
        assert outcome.problems == [], (seed, outcome.error)


def test_code_sent_unchecked_runs_only_if_it_arrived_whole(board: Board) -> None:
    """The echo loader's own definition has no echo to check it: it travels with its byte
    sum, and a copy that lost a byte on the way is a SyntaxError (sent again), never a
    function that fails later with a NameError."""
    from mpkick.errors import BoardError
    from mpkick.protocol.repl import checked

    good = checked(b"def _mk_t():\n return globals() is not None\n")
    board.exec(good.decode())
    assert board.exec("print(_mk_t())").strip() == b"True"
    lost = good.replace(b"globals", b"globls", 1)  # one byte gone inside the literal
    with pytest.raises(BoardError) as err:
        board.exec(lost.decode())
    assert err.value.exc_type == "SyntaxError"


#: What the real micro:bit (MicroPython 1.9.2, 9 kB of heap) printed, through the echo loader,
#: for code that ran out of RAM itself; and the same with the loader's own frame last, as when
#: the loader cannot hold the code's lines or compile them.
_CODE_RAN_OUT = ('Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
                 '  File "<string>", line 10, in _mk_r\r\n'
                 '  File "<string>", line 1, in <module>\r\n'
                 'MemoryError: memory allocation failed, allocating 20000 bytes\r\n')
_LOADER_RAN_OUT = ('Traceback (most recent call last):\r\n  File "<stdin>", line 1, in <module>\r\n'
                   '  File "<string>", line 8, in _mk_r\r\n'
                   'MemoryError: memory allocation failed, allocating 802 bytes\r\n')


def test_only_the_loader_running_out_of_ram_may_go_again() -> None:
    """Code the loader could not hold never ran, so it may be sent again; a MemoryError of the
    code itself stands (it may have done half its work)."""
    from mpkick.errors import BoardError
    from mpkick.protocol.repl import _loader_ran_out

    assert _loader_ran_out(BoardError("MemoryError", "", _LOADER_RAN_OUT))
    assert not _loader_ran_out(BoardError("MemoryError", "", _CODE_RAN_OUT))
    assert not _loader_ran_out(BoardError("SyntaxError", "", _LOADER_RAN_OUT))
