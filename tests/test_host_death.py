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

TRIALS = int(os.environ.get("MPKICK_HOST_DEATH_TRIALS", "2"))


@pytest.mark.parametrize("command", list(deathlib.COMMANDS))
def test_killing_the_host_leaves_a_board_that_answers(tmp_path: Path, command: str) -> None:
    if command == "mount" and shutil.which("fusermount3") is None \
            and shutil.which("fusermount") is None:
        missing("no fusermount: install fuse3 (make sysdeps)")
    for outcome in deathlib.trials(tmp_path, command, TRIALS):
        assert outcome.ok, outcome
