"""Commands: attach (a host folder on the board), and ``--attach`` for run, repl and watch."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import cli, common

if TYPE_CHECKING:
    from ..attach import Attachment
    from ..board.board import Board

F = TypeVar("F", bound=Callable[..., Any])


def attach_options(f: F) -> F:
    """``--write`` and ``--compile``, shared by attach and the ``--attach`` of other commands."""
    f = click.option("--compile", "compile_", is_flag=True,
                     help="The board imports .mpy compiled by the matching mpy-cross (cached)")(f)
    f = click.option("--write", is_flag=True,
                     help="Let the board change the host's files (atomic: temp file, rename)")(f)
    return f


def attach_option(f: F) -> F:
    """``--attach DIR[:BOARD_PATH]`` (repeatable) plus ``--write`` and ``--compile``."""
    f = attach_options(f)
    return click.option("--attach", "attach_dirs", multiple=True, metavar="DIR[:BOARD_PATH]",
                        help="Attach this host folder (default at /remote) while the command "
                             "runs; repeat for several")(f)


@contextlib.contextmanager
def attached_board(board: Board, dirs: Sequence[str], write: bool,
                   compile_: bool) -> Iterator[Attachment]:
    """The board with ``dirs`` attached; detached (path and cwd restored) afterwards."""
    from ..attach import Attachment, parse_folders

    folders = parse_folders(dirs, write)
    session = Attachment(board, folders, compile=compile_)
    try:
        session.start()
        if not common.options().quiet:
            for f in folders:
                mode = "read-write" if f.write else "read-only"
                click.echo(f"attached {f.root} at {f.where} ({mode})", err=True)
        yield session
    finally:
        session.close()


def _stream(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@cli.command("attach", epilog=common.example(
    "mpkick attach                        # this folder at /remote, then the REPL\n"
    "mpkick attach src /app --write        # src at /app, the board may save files\n"
    "mpkick attach src lib:/hostlib --compile  # two folders; modules as .mpy\n"
    "mpkick attach --exec 'import app'     # run code with the folder attached, then leave"))
@click.argument("folders", nargs=-1)
@attach_options
@click.option("--exec", "code", metavar="CODE", help="Run CODE with the folders attached, then "
              "detach (no REPL)")
@click.option("--main", "run_main", is_flag=True,
              help="Run main.py from the folder first, as a board does at boot")
@common.common_options
def attach_cmd(folders: tuple[str, ...], write: bool, compile_: bool, code: str | None,
               run_main: bool) -> None:
    """Put a host folder in the board's filesystem: `import app` on the board reads the
    host's current file. Nothing is copied to the flash.

    FOLDERS is `[DIR] [BOARD_PATH]` (default: . at /remote) or several `DIR:BOARD_PATH`.
    The board's cwd and sys.path point at the first folder. Read-only unless --write. Then
    the REPL (Ctrl-] leaves); a soft reset (Ctrl-D) attaches again and runs main.py. On exit
    the board is unmounted and its cwd and sys.path are as before. This is the opposite
    direction of `mpkick mount`, which shows the board's files on the host.
    """
    with common.open_board() as board, attached_board(board, folders, write,
                                                     compile_) as session:
        if code is not None:
            session.run(code, _stream)
            return
        if not common.options().quiet:
            click.echo("Ctrl-] leaves; Ctrl-D soft-resets and attaches again", err=True)
        session.terminal(sys.stdin.fileno(), _stream, main=run_main)
