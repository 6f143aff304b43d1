"""The commands that work on many boards at once: push, install, exec, run, reset, image flash.

Each command keeps its one-board path as it was; when the user names more than one board
(``-p`` several times, ``-p all``, a group from ``[tool.mpkick.boards]``) it hands a per-board
job to ``on_boards``, which runs them in parallel (``--jobs``) and draws the table or the
prefixed lines. Any failed board makes the exit status 1 and is named with its reason; Ctrl-C
ends every board cleanly and exits 130.

Another command joins the same way: build a ``job(BoardJob) -> value`` and call
``on_boards(refs, job, title)`` (romfs deploy is meant to plug in here).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..fleet.parallel import BoardJob, Interrupted, Outcome, failures, run
from ..fleet.selection import BoardRef
from . import common
from .fleet_view import LiveTable, PrefixedLines, on_terminal

if TYPE_CHECKING:
    from ..board.board import Board
    from ..sync.apply import Result
    from ..sync.plan import Action, Plan

T = TypeVar("T")


def on_boards(refs: list[BoardRef], job: Callable[[BoardJob], T], title: str) -> list[Outcome[T]]:
    """Run ``job`` on every board, draw it, sum it up; exit 1 when any board failed."""
    opts = common.options()
    outcomes: list[Outcome[T]]
    interrupted = False
    if on_terminal() and not opts.quiet:
        table = LiveTable(refs, title)
        try:
            with table:
                outcomes = run(refs, job, opts.jobs or None, table)
        except Interrupted as exc:
            outcomes, interrupted = exc.outcomes, True
        table.show_output()
    else:
        lines = PrefixedLines(opts.quiet, opts.verbose)
        try:
            outcomes = run(refs, job, opts.jobs or None, lines)
        except Interrupted as exc:
            outcomes, interrupted = exc.outcomes, True
    failed = failures(outcomes)
    if interrupted:
        click.echo(f"mpkick: interrupted: {len(outcomes) - len(failed)} of {len(outcomes)} "
                   "boards had finished; every other board was stopped", err=True)
        raise click.exceptions.Exit(130)
    if failed:
        click.echo(f"mpkick: {len(failed)} of {len(outcomes)} boards failed: "
                   + "; ".join(f"{o.ref.name} ({o.reason})" for o in failed), err=True)
        raise click.exceptions.Exit(1)
    if not opts.quiet:
        click.echo(f"{title}: all {len(outcomes)} boards ok", err=True)
    return outcomes


def connect(job: BoardJob) -> Board:
    from ..board.board import Board

    job.status("connecting")
    return Board.connect(job.ref.url)


def push_many(refs: list[BoardRef], *, run_file: str | None, reset: bool,
              **kick_options: Any) -> None:
    """``push`` on every board: the same tree, each board's own plan."""
    from ..open import open_target
    from ..push import kick
    from .push_cmds import run_pushed

    def job(bj: BoardJob) -> Result:
        bj.status("connecting")
        target = open_target(bj.ref.url)
        try:
            sent = [0, 0]

            def on_plan(plan: Plan) -> None:
                sent[1] = plan.bytes_to_write
                n = len(plan.writes)
                bj.status(f"pushing {n} file{'' if n == 1 else 's'}" if n else "up to date")
                bj.progress(0, sent[1])

            def progress(_action: Action, n: int) -> None:
                if n:
                    sent[0] += n
                    bj.progress(sent[0], sent[1])

            result: Result = kick(target=target, progress=progress, on_plan=on_plan,
                                  **kick_options)
            if run_file or reset:
                bj.status(f"running {run_file or 'main.py'}")
                run_pushed(target, run_file or "main.py", result.plan.dest, bj.output)
            return result
        finally:
            target.close()

    on_boards(refs, job, "push")


def code_many(refs: list[BoardRef], code: str, title: str) -> None:
    """``exec`` and ``run``: the same code on every board, each board's output its own."""
    def job(bj: BoardJob) -> None:
        with connect(bj) as board:
            bj.status("running")
            board.run(code, bj.output)

    on_boards(refs, job, title)


def reset_many(refs: list[BoardRef], hard: bool) -> None:
    def job(bj: BoardJob) -> str:
        with connect(bj) as board:
            bj.status("resetting")
            board.reset(hard=hard)
        return "hard reset" if hard else "soft reset"

    on_boards(refs, job, "reset")


def install_many(refs: list[BoardRef], resolve_for: Callable[[int | None], list[Any]]) -> None:
    """``install`` on every board; packages are resolved once per bytecode version."""
    from ..open import open_target
    from ..packages.install import install

    lock = threading.Lock()
    resolved: dict[int | None, list[Any]] = {}

    def job(bj: BoardJob) -> str:
        from .package_cmds import _board_mpy

        bj.status("connecting")
        target = open_target(bj.ref.url)
        try:
            mpy = _board_mpy(target)
            with lock:  # fetching and compiling happen once, not once per board
                if mpy not in resolved:
                    bj.status("resolving")
                    resolved[mpy] = resolve_for(mpy)
                items = resolved[mpy]
            bj.status(f"installing {len(items)} files")
            done = [0]

            def say(_item: Any) -> None:
                done[0] += 1
                bj.progress(done[0], len(items))

            result = install(target, items, progress=say)
        finally:
            target.close()
        return (f"installed {len(result.written)} files ({result.size} bytes) from "
                f"{len({i.package for i in result.written})} packages")

    on_boards(refs, job, "install")


def flash_many(refs: list[BoardRef], img: str, yes: bool) -> None:
    """``image flash`` on every board: asked once for all of them, each board checked alone."""
    from ..errors import MpkickError
    from ..image.flash import image_flash, plan_flash

    if not Path(img).is_file():
        raise FileNotFoundError(2, "No such file or directory", img)
    if not yes and not click.confirm(f"This replaces the whole filesystem of {len(refs)} boards ("
                                     + ", ".join(r.name for r in refs[:6])
                                     + f") with {img}. Flash them?", default=False, err=True):
        raise MpkickError("nothing was flashed: the boards are as they were")

    def job(bj: BoardJob) -> str:
        with connect(bj) as board:
            plan = plan_flash(board, img)
            size = plan.device.size
            bj.status("flashing")
            written = [0]

            def progress(n: int) -> None:
                written[0] += n
                bj.progress(written[0], size)

            image_flash(board, plan, progress)
        return f"flashed, verified by sha256 {plan.sha256[:16]}"

    on_boards(refs, job, "image flash")
