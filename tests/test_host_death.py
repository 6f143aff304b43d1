"""A board never hears its host leave: whatever mpkick was doing when it died, the board answers.

Over USB-CDC or a UART, a killed host (a crashed laptop, a closed lid, a killed terminal) gives
the board no EOF: its line goes quiet, and what it prints falls into the void. The virtual board
on a pty behaves the same (``mpkick sim``). Each trial (tests/deathlib.py) SIGKILLs an
``mpkick`` command at a seeded random moment; then mpremote and the next ``mpkick`` command both
get the REPL without a reset (each goes first in one trial), and the next push restores DEST
exactly, leaving no temporary file. ``bench/host_death.py`` runs more trials and writes
docs/reliability.md's table.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import deathlib
import pytest
from needs import missing

from mpkick.board.board import Board
from mpkick.protocol.opcodes import SYNC, Frame
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard

TRIALS = int(os.environ.get("MPKICK_HOST_DEATH_TRIALS", "2"))


@pytest.mark.parametrize("command", list(deathlib.COMMANDS))
def test_killing_the_host_leaves_a_board_that_answers(tmp_path: Path, command: str) -> None:
    if command == "mount" and shutil.which("fusermount3") is None \
            and shutil.which("fusermount") is None:
        missing("no fusermount: install fuse3 (make sysdeps)")
    for outcome in deathlib.trials(tmp_path, command, TRIALS):
        assert outcome.ok, outcome


def test_a_host_gone_in_the_middle_of_a_frame_on_a_slow_link_is_ended_by_the_next(
        tmp_path: Path) -> None:
    """The board waits for the rest of a long frame that a dead host began; at 115200 baud the
    filler that completes it takes seconds to arrive, and the next host waits for it."""
    vb = VirtualBoard(parse_url(f"sim://{tmp_path / 'b.img'}?baud=115200"))
    port = vb.start("pty")
    assert isinstance(port, str)
    try:
        board = Board.connect(port)
        board.load_agent()
        board.repl.send_code(f"mk_recv({board.caps.chunk}, False)".encode())
        assert b"READY" in board.repl.read_until(b"\n", 10)
        length = board.caps.chunk - 64
        assert length > 20_000  # longer than what the first fillers give
        head = bytes((Frame.DATA, 0)) + length.to_bytes(3, "little") + bytes(4)
        board.repl.write(bytes((SYNC,)) + head + bytes(100))  # and then the host died
        board.transport.close()
        with Board.connect(port) as again:
            assert again.eval("6 * 7") == 42
    finally:
        vb.close()
