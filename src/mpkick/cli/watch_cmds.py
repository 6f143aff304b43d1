"""Commands: watch."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import cli, common
from .attach_cmds import attach_option

if TYPE_CHECKING:
    from ..watch import Event


def render(event: Event, quiet: bool) -> None:
    """Program output to stdout as it comes; one status line per happening to stderr."""
    from ..units import human
    from ..watch import Finished, Notice, Output, Pushed

    if isinstance(event, Output):
        stream = sys.stderr if event.error else sys.stdout
        stream.buffer.write(event.data)
        stream.flush()
    elif isinstance(event, Pushed) and not quiet:
        names = ", ".join(event.written[:4]) + (f" +{len(event.written) - 4}"
                                                 if len(event.written) > 4 else "")
        gone = f"deleted {', '.join(event.deleted)}; " if event.deleted else ""
        deltas = sum(1 for m in event.modes.values() if m != "whole")
        how = f", {deltas} as delta" if deltas else ""
        lead = "resynced" if event.resync else "pushed"
        click.echo(f"{lead} {names or '-'}: {gone}{human(event.bytes_sent)}, "
                   f"{human(event.wire_bytes)} on the wire{how}, {event.seconds:.2f} s", err=True)
    elif isinstance(event, Notice) and (event.error or not quiet):
        click.echo(("mpkick: " if event.error else "") + event.text, err=True)
    elif isinstance(event, Finished) and not quiet:
        click.echo("-- program ended" + ("" if event.ok else " with an error") + "; watching",
                   err=True)


@cli.command("watch", epilog=common.example("mpkick -p sim:// watch src / --run main.py\n"
                                            "mpkick watch --attach src --run main.py"))
@click.argument("src", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.argument("dest", default="/")
@click.option("--delete", is_flag=True, help="Delete board files that are gone locally")
@click.option("--run", "run_file", metavar="FILE",
              help="After each push, soft-reset and run FILE, showing its output")
@click.option("--reset", is_flag=True, help="After each push, soft-reset and run main.py")
@attach_option
@common.common_options
def watch_cmd(src: Path, dest: str, delete: bool, run_file: str | None, reset: bool,
              attach_dirs: tuple[str, ...], write: bool, compile_: bool) -> None:
    """Push every saved change to the board until Ctrl-C; changed files travel as deltas.

    With --attach DIR nothing is pushed: DIR is attached (the board reads it from the host)
    and every save restarts the program (--run FILE, default main.py) from a soft reset."""
    from ..errors import InputError
    from ..watch import watch

    opts = common.options()
    url = opts.resolved_port()
    if attach_dirs:
        if url.startswith("image:"):
            raise InputError(f"{url} is an image file: --attach needs a board to run code")
        _watch_attached(attach_dirs, run_file, write, compile_)
        return
    if not src.is_dir():
        raise InputError(f"{src} is not a folder: give the project folder to watch (SRC)")
    if not opts.quiet:
        click.echo(f"watching {src} -> {dest} (Ctrl-C to stop)", err=True)
    # Ctrl-C sets the stop event: the loop leaves at its next step, stopping the program
    # it runs and leaving the board at its prompt (a KeyboardInterrupt could land anywhere).
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        watch(url, src, dest, delete=delete, run=run_file, reset=reset, stop=stop,
              on_event=lambda e: render(e, opts.quiet))
    finally:
        signal.signal(signal.SIGINT, previous)
    if not opts.quiet:
        click.echo("stopped watching", err=True)


def _watch_attached(dirs: tuple[str, ...], run_file: str | None, write: bool,
                    compile_: bool) -> None:
    from ..attach import parse_folders, watch_attached

    opts = common.options()
    folders = parse_folders(dirs, write)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with common.open_board() as board:
            if not opts.quiet:
                names = ", ".join(f"{f.root} at {f.where}" for f in folders)
                click.echo(f"attached {names}; every save restarts {run_file or 'main.py'} "
                           "(Ctrl-C to stop)", err=True)
            watch_attached(board, folders, run=run_file, stop=stop, compile=compile_,
                           on_event=lambda e: render(e, opts.quiet))
    finally:
        signal.signal(signal.SIGINT, previous)
    if not opts.quiet:
        click.echo("stopped watching", err=True)
