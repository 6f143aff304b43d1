"""Commands people reach for every day: rtc (the board's clock) and edit (a board file in
$EDITOR)."""

from __future__ import annotations

import datetime as dt
from contextlib import closing
from typing import TYPE_CHECKING

import click

from . import cli, common, fleet_cmds
from .common import common_options, example, jobs_option, open_board, open_target

if TYPE_CHECKING:
    from ..board.board import Board
    from ..fleet.parallel import BoardJob

FORMAT = "%Y-%m-%d %H:%M:%S"


@cli.command("rtc")
@click.option("--set", "set_", is_flag=True, help="Set the board's clock from the host's")
@click.option("--utc", is_flag=True, help="With --set: the host's UTC time, not local time")
@common_options
@jobs_option
def rtc_cmd(set_: bool, utc: bool) -> None:
    """Print the board's real-time clock, or set it from the host's with --set."""
    from ..rtc import read_clock, set_clock

    def clock(board: Board) -> str:
        if set_:
            now = dt.datetime.now(dt.timezone.utc if utc else None).replace(tzinfo=None)
            return set_clock(board, now).strftime(FORMAT)
        return read_clock(board).strftime(FORMAT)

    refs = common.many()
    if refs is not None:  # a classroom's clocks, all at once
        def job(bj: BoardJob) -> str:
            with fleet_cmds.connect(bj) as board:
                return clock(board)

        fleet_cmds.on_boards(refs, job, "rtc")
        return
    with open_board() as board:
        click.echo(clock(board))


rtc_cmd.epilog = example("mpkick rtc\nmpkick rtc --set\nmpkick -p all rtc --set")


@cli.command("edit")
@click.argument("path")
@common_options
def edit_cmd(path: str) -> None:
    """Edit a board file in $EDITOR; it is written back (atomically) only if it changed."""
    from ..edit import edit
    from .board_cmds import board_path

    where = board_path(path)
    with closing(open_target()) as target:
        changed = edit(target, where)
    click.echo(f"{where}: {'written' if changed else 'unchanged, not written'}", err=True)


edit_cmd.epilog = example("mpkick edit main.py\nEDITOR='code --wait' mpkick edit :/lib/config.py")
