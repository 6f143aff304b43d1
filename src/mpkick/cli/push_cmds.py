"""Commands: push (and, after it, running the pushed program)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import cli, common

if TYPE_CHECKING:
    from ..sync.apply import Result
    from ..sync.plan import Action, Plan
    from ..target import Target


def _settings_src(settings: dict[str, Any], project: Path | None) -> str:
    """SRC from the config, relative to the config file's folder."""
    value = settings.get("src")
    if value is None:
        return "."
    return str((project or Path.cwd()) / str(value))


class Bar:
    """A rich progress bar (files and bytes, bytes/s) on stderr; only made on a terminal."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.fields[files]}"), DownloadColumn(), TransferSpeedColumn(),
            console=Console(stderr=True), transient=True)
        self.task: Any = None
        self.files = 0
        self.total_files = 0

    def on_plan(self, plan: Plan) -> None:
        self.total_files = len(plan.writes)
        if self.total_files:
            self.progress.start()
            self.task = self.progress.add_task("push", total=plan.bytes_to_write or 1,
                                               files=f"0/{self.total_files} files")

    def __call__(self, action: Action, n: int) -> None:
        if self.task is None:
            return
        if n == 0 and action.kind in ("create", "update"):
            self.files += 1
            self.progress.update(self.task, description=action.path[-30:],
                                 files=f"{self.files}/{self.total_files} files")
        elif n:
            self.progress.advance(self.task, n)

    def stop(self) -> None:
        self.progress.stop()


def show_plan(plan: Plan, verbose: int) -> None:
    """``--dry-run``: every action, coloured on a terminal."""
    colours = {"mkdir": "blue", "create": "green", "update": "yellow", "delete": "red",
               "unchanged": "dim"}
    for line in plan.lines(unchanged=verbose > 0 or len(plan.actions) < 40):
        kind = line.split(" ", 1)[0]
        click.secho(line, fg=None if kind == "unchanged" else colours.get(kind),
                    dim=kind == "unchanged")
    click.echo(plan.summary() + " (dry run: nothing was changed)")


def run_after(board: Target, file: str, dest: str) -> None:
    """Soft-reset the board, then run ``file`` (relative to DEST) streaming its output, until
    it ends or Ctrl-C, which interrupts the board too."""
    from ..errors import BoardError

    def stream(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    try:
        run_pushed(board, file, dest, stream)
    except BoardError as exc:
        sys.stdout.flush()
        click.echo(exc.traceback.rstrip() or str(exc), err=True)
        raise click.exceptions.Exit(1) from None


def run_pushed(target: Target, file: str, dest: str, stream: Callable[[bytes], None]) -> None:
    """Soft-reset, then run ``file`` (relative to DEST), its output to ``stream``."""
    from ..errors import InputError
    from ..target import norm

    runner = target.runner()
    if runner is None:
        raise InputError("--run and --reset need a board, not an image file")
    path = norm(file, dest)
    runner.soft_reset()
    try:
        target.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path} is not on the board: nothing to run (check --run)") from None
    runner.run_file(path, stream)


@cli.command("push", epilog=common.example("""
mpkick -p sim:// push examples /            push a folder to the board's root
mpkick push --delete --dry-run              show what a push would change, from the config
mpkick push src /app --compile --run main.py
mpkick -p image:fs.img push src /           the same push into an image file
mpkick push src / --romfs lib/               lib/ into the ROM partition (/rom/lib), the rest to /
"""))
@common.common_options
@click.argument("src", required=False)
@click.argument("dest", required=False)
@click.option("--delete/--no-delete", default=None,
              help="Remove files under DEST that are not in SRC (never outside DEST)")
@click.option("-n", "--dry-run", is_flag=True, help="Show the plan; change nothing")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="Send .py files (but boot.py, main.py) as .mpy built for the board")
@click.option("--mpy-cross", "mpy_cross", metavar="PATH", help="mpy-cross binary for --compile")
@click.option("--follow-links", is_flag=True, help="Follow links that point outside SRC")
@click.option("--ignore", multiple=True, metavar="PATTERN",
              help="More gitignore-style patterns to leave on the host (repeatable)")
@click.option("--run", "run_file", metavar="FILE",
              help="Afterwards soft-reset the board and run FILE (relative to DEST), "
                   "showing its output until it ends or Ctrl-C")
@click.option("--reset", is_flag=True, help="Afterwards soft-reset the board and run main.py")
@click.option("--romfs", "romfs", multiple=True, metavar="SUBTREE",
              help="Put this subtree of SRC (lib/), compiled, into the board's ROM partition "
                   "(as /rom/lib) instead of its filesystem (repeatable; config: romfs)")
@common.jobs_option
def push_cmd(src: str | None, dest: str | None, delete: bool | None, dry_run: bool,
             compile_: bool | None, mpy_cross: str | None, follow_links: bool,
             ignore: tuple[str, ...], run_file: str | None, reset: bool,
             romfs: tuple[str, ...]) -> None:
    """Make DEST on the board hold the tree SRC: only what changed travels.

    SRC and DEST default to `src` and `dest` in mpkick.toml / [tool.mpkick], else `.` and `/`.
    .gitignore and .mpkickignore rules (and caches, editor files) are left on the host.
    """
    from ..open import open_target
    from ..push import kick

    opts = common.options()
    opts.load_settings()
    settings = opts.settings
    src = src or _settings_src(settings, opts.project)
    dest = dest or str(settings.get("dest") or "/")
    patterns = [*settings.get("ignore", ()), *ignore]
    delete = bool(settings.get("delete", False)) if delete is None else delete
    if compile_ is None:
        compile_ = bool(settings.get("compile", False)) and not settings.get("no_compile")
    configured = settings.get("romfs", [])
    subtrees = list(romfs) or ([configured] if isinstance(configured, str) else list(configured))

    def log(message: str) -> None:
        if opts.verbose and not opts.quiet:
            click.echo(f"mpkick: {message}", err=True)

    if not Path(src).exists():
        from ..errors import InputError

        raise InputError(f"{src} does not exist: give the folder to push (SRC)")
    refs = common.many()
    if refs is not None:
        from . import fleet_cmds

        fleet_cmds.push_many(refs, run_file=run_file, reset=reset, src=src, dest=dest,
                             delete=delete, dry_run=dry_run, ignore=patterns,
                             follow_links=follow_links, compile=compile_,
                             mpy_cross=mpy_cross or settings.get("mpy_cross"))
        return
    bar = Bar() if sys.stderr.isatty() and not opts.quiet and not dry_run else None
    target = open_target(opts.resolved_port(), opts.verbose, log)
    try:
        try:
            result: Result = kick(src=src, dest=dest, delete=delete, dry_run=dry_run,
                                  ignore=patterns, follow_links=follow_links, progress=bar,
                                  compile=compile_, verbose=opts.verbose, target=target,
                                  mpy_cross=mpy_cross or settings.get("mpy_cross"), log=log,
                                  on_plan=bar.on_plan if bar else None, romfs=subtrees)
        finally:
            if bar is not None:
                bar.stop()
        if dry_run:
            show_plan(result.plan, opts.verbose)
            for note in result.notes if subtrees else ():
                if not note.startswith(("transfer:", "compare:", "write:", "target is")):
                    click.echo(note)
            return
        if opts.verbose and not opts.quiet:
            for line in result.plan.lines(unchanged=opts.verbose > 1):
                click.echo(line, err=True)
        if not opts.quiet:
            click.echo(result.summary())
            if subtrees:
                for note in result.notes:
                    if not note.startswith(("transfer:", "compare:", "write:", "target is")):
                        click.echo(note)
        if run_file or reset:
            run_after(target, run_file or "main.py", result.plan.dest)
    finally:
        target.close()
