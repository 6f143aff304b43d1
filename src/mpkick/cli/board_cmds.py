"""Everyday board commands: info, ls, tree, cat, get, put, rm, mkdir, rmdir, mv, df, sha256sum,
run, exec, eval, repl, reset, devices. Filesystem commands work on image targets too."""

from __future__ import annotations

import hashlib
import posixpath
import sys
import time
from contextlib import closing
from pathlib import Path

import click

from ..errors import InputError
from ..target import META, Entry, Target, is_within, makedirs, norm, remove_tree
from ..units import human
from . import cli, common, fleet_cmds
from .attach_cmds import attach_option, attached_board
from .common import (
    common_options,
    common_options_long_port,
    example,
    jobs_option,
    open_board,
    open_target,
    options,
)


def board_path(text: str) -> str:
    """Board paths may be written mpremote-style with a leading ``:``."""
    return norm(text[1:] if text.startswith(":") else text)


def out(text: str = "") -> None:
    click.echo(text)


@cli.command("info")
@common_options
def info_cmd() -> None:
    """Show what the board is: firmware, bytecode version, memory, flash, id."""
    with open_board() as board:
        i = board.info()
    rows = [("platform", i.platform), ("micropython", f"{i.version} ({i.machine})"),
            ("mpy", i.mpy_version or "-"),
            ("ram free", human(i.mem_free) if i.mem_free is not None else "-"),
            ("flash", f"{human(i.fs_free)} free of {human(i.fs_total)}"
             if i.fs_total is not None and i.fs_free is not None else "-"),
            ("unique id", i.uid or "-")]
    for key, value in rows:
        out(f"{key:12} {value}")


info_cmd.epilog = example("mpkick -p /dev/ttyACM0 info")


def _listing(target: Target, path: str, recursive: bool) -> list[Entry]:
    entry = target.stat(path)
    if not entry.is_dir:
        return [entry]
    entries = [e for e in target.tree(path) if not is_within(e.path, META)]
    if not recursive:
        entries = [e for e in entries if posixpath.dirname(e.path) == path]
    return sorted(entries, key=lambda e: e.path)


def _when(mtime: int | None) -> str:
    """A file's time as UTC, never shifted into the host's zone. A board keeps no time zone
    (MicroPython's ``time.localtime()`` and ``time.gmtime()`` agree; ``ntptime`` sets the clock
    to UTC), so this shows the time the board's own clock stamped, the same on every host, for
    a board and an image alike (an image built here is stamped with the host's UTC time)."""
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime)) if mtime else " " * 16


@cli.command("ls")
@click.argument("path", default="/")
@click.option("-l", "long", is_flag=True, help="Show sizes and times")
@click.option("-r", "recursive", is_flag=True, help="List folders below too")
@common_options
def ls_cmd(path: str, long: bool, recursive: bool) -> None:
    """List files on the board (or an image)."""
    path = board_path(path)
    with closing(open_target()) as target:
        entries = _listing(target, path, recursive)
    for e in entries:
        name = e.path if recursive or e.path == path else posixpath.basename(e.path)
        name += "/" if e.is_dir else ""
        if long:
            out(f"{'' if e.is_dir else e.size:>9}  {_when(e.mtime)}  {name}")
        else:
            out(name)


ls_cmd.epilog = example("mpkick ls -l /lib\nmpkick -p image:fs.img ls -r")


@cli.command("tree")
@click.argument("path", default="/")
@common_options
def tree_cmd(path: str) -> None:
    """Show the board's folders and files as a tree."""
    from rich.console import Console
    from rich.tree import Tree

    path = board_path(path)
    with closing(open_target()) as target:
        entries = _listing(target, path, recursive=True)
    root = Tree(path)
    nodes = {path: root}
    for e in entries:
        parent = nodes.get(posixpath.dirname(e.path), root)
        label = posixpath.basename(e.path) + ("/" if e.is_dir else f"  ({human(e.size)})")
        nodes[e.path] = parent.add(label)
    Console(highlight=False, soft_wrap=True).print(root)


tree_cmd.epilog = example("mpkick tree /")


@cli.command("cat")
@click.argument("paths", nargs=-1, required=True)
@common_options
def cat_cmd(paths: tuple[str, ...]) -> None:
    """Print files from the board (binary-safe)."""
    with closing(open_target()) as target:
        for p in paths:
            sys.stdout.buffer.write(target.read(board_path(p)))
    sys.stdout.buffer.flush()


cat_cmd.epilog = example("mpkick cat main.py")


@cli.command("get")
@click.argument("args", nargs=-1, required=True)
@common_options
def get_cmd(args: tuple[str, ...]) -> None:
    """Copy files or folders from the board: get SRC... DEST."""
    if len(args) < 2:
        raise click.UsageError("give at least one board path and a host destination")
    *srcs, dest = args
    dest_path = Path(dest)
    with closing(open_target()) as target:
        for src in srcs:
            path = board_path(src)
            entry = target.stat(path)
            into = dest_path / posixpath.basename(path) if dest_path.is_dir() else dest_path
            if entry.is_dir:
                for e in [entry, *target.tree(path)]:
                    rel = posixpath.relpath(e.path, path)
                    local = into / rel if rel != "." else into
                    if e.is_dir:
                        local.mkdir(parents=True, exist_ok=True)
                    else:
                        local.parent.mkdir(parents=True, exist_ok=True)
                        local.write_bytes(target.read(e.path))
            else:
                if len(srcs) > 1 and not dest_path.is_dir():
                    raise InputError(f"{dest} is not a folder: give a folder for several files")
                into.write_bytes(target.read(path))


get_cmd.epilog = example("mpkick get main.py lib ./backup/")


@cli.command("put")
@click.argument("args", nargs=-1, required=True)
@common_options
def put_cmd(args: tuple[str, ...]) -> None:
    """Copy host files or folders onto the board: put SRC... DEST (atomic, verified)."""
    if len(args) < 2:
        raise click.UsageError("give at least one host path and a board destination")
    *srcs, dest = args
    dest_path = board_path(dest)
    with closing(open_target()) as target:
        try:
            dest_is_dir = target.stat(dest_path).is_dir
        except FileNotFoundError:
            dest_is_dir = False
            if len(srcs) > 1:
                makedirs(target, dest_path)
                dest_is_dir = True
        for src in srcs:
            local = Path(src)
            if not local.exists():
                raise InputError(f"{src} does not exist on the host")
            into = posixpath.join(dest_path, local.name) if dest_is_dir else dest_path
            if local.is_dir():
                makedirs(target, into)
                for item in sorted(local.rglob("*")):
                    remote = posixpath.join(into, item.relative_to(local).as_posix())
                    if item.is_dir():
                        makedirs(target, remote)
                    elif item.is_file():
                        target.write(norm(remote), item.read_bytes())
            else:
                target.write(into, local.read_bytes())


put_cmd.epilog = example("mpkick put main.py :/main.py\nmpkick put lib /")


@cli.command("rm")
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "recursive", is_flag=True, help="Remove folders and everything in them")
@common_options
def rm_cmd(paths: tuple[str, ...], recursive: bool) -> None:
    """Remove files (and with -r, folders) from the board."""
    with closing(open_target()) as target:
        for p in paths:
            path = board_path(p)
            if path == "/" and not recursive:
                raise InputError("refusing to remove /")
            if recursive:
                remove_tree(target, path)
            else:
                target.remove(path)


rm_cmd.epilog = example("mpkick rm old.py\nmpkick rm -r /lib/unused")


@cli.command("mkdir")
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "--parents", is_flag=True, help="Make parents too; fine if it exists")
@common_options_long_port
def mkdir_cmd(paths: tuple[str, ...], parents: bool) -> None:
    """Make folders on the board (here -p means --parents: name the port before the command)."""
    with closing(open_target()) as target:
        for p in paths:
            if parents:
                makedirs(target, board_path(p))
            else:
                target.mkdir(board_path(p))


mkdir_cmd.epilog = example("mpkick -p sim:// mkdir -p /lib/drivers")


@cli.command("rmdir")
@click.argument("paths", nargs=-1, required=True)
@common_options
def rmdir_cmd(paths: tuple[str, ...]) -> None:
    """Remove empty folders from the board."""
    with closing(open_target()) as target:
        for p in paths:
            target.rmdir(board_path(p))


rmdir_cmd.epilog = example("mpkick rmdir /lib/empty")


@cli.command("mv")
@click.argument("src")
@click.argument("dst")
@common_options
def mv_cmd(src: str, dst: str) -> None:
    """Rename or move a file or folder on the board (replaces a file at DST)."""
    with closing(open_target()) as target:
        s, d = board_path(src), board_path(dst)
        try:
            if target.stat(d).is_dir:
                d = posixpath.join(d, posixpath.basename(s))
        except FileNotFoundError:
            pass
        target.rename(s, d)


mv_cmd.epilog = example("mpkick mv main.py old_main.py")


@cli.command("df")
@common_options
def df_cmd() -> None:
    """Show the size and free space of the board's filesystem."""
    with closing(open_target()) as target:
        u = target.usage()
    used = u.total - u.free
    out(f"{'size':>10} {'used':>10} {'free':>10} {'use%':>5}")
    out(f"{human(u.total):>10} {human(used):>10} {human(u.free):>10} "
        f"{(100 * used // u.total) if u.total else 0:>4}%")


df_cmd.epilog = example("mpkick df")


@cli.command("sha256sum")
@click.argument("paths", nargs=-1, required=True)
@common_options
def sha256sum_cmd(paths: tuple[str, ...]) -> None:
    """Print the sha256 of files on the board (computed on the board where it can)."""
    with closing(open_target()) as target:
        for p in paths:
            path = board_path(p)
            entry = target.stat(path)
            if entry.is_dir:
                raise IsADirectoryError(21, "Is a directory", path)
            found = [e for e in target.tree(posixpath.dirname(path), hashes=True)
                     if e.path == path]
            digest = found[0].sha256 if found and found[0].sha256 else \
                hashlib.sha256(target.read(path)).hexdigest()
            out(f"{digest}  {path}")


sha256sum_cmd.epilog = example("mpkick sha256sum main.py")


def _stream(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@cli.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@attach_option
@common_options
@jobs_option
def run_cmd(file: str, attach_dirs: tuple[str, ...], write: bool, compile_: bool) -> None:
    """Run a host file on the board without copying it; output streams live, Ctrl-C stops it.
    With --attach, the program imports its modules from host folders."""
    path = Path(file)
    if not path.is_file():
        raise InputError(f"{file} does not exist on the host")
    refs = common.many()
    if refs is not None:
        if attach_dirs:
            raise InputError("--attach serves one board: give one with -p")
        fleet_cmds.code_many(refs, path.read_text(encoding="utf-8"), f"run {file}")
        return
    with open_board() as board:
        if attach_dirs:
            with attached_board(board, attach_dirs, write, compile_) as session:
                session.run(path.read_text(encoding="utf-8"), _stream)
            return
        board.run(path.read_text(encoding="utf-8"), _stream)


run_cmd.epilog = example("mpkick run blink.py\nmpkick run --attach src src/main.py")


@cli.command("exec")
@click.argument("code")
@common_options
@jobs_option
def exec_cmd(code: str) -> None:
    """Run a piece of code on the board and print its output."""
    refs = common.many()
    if refs is not None:
        fleet_cmds.code_many(refs, code, "exec")
        return
    with open_board() as board:
        board.run(code, _stream)


exec_cmd.epilog = example("mpkick exec \"import os; print(os.listdir())\"")


@cli.command("eval")
@click.argument("expr")
@common_options
def eval_cmd(expr: str) -> None:
    """Evaluate an expression on the board and print its value."""
    with open_board() as board:
        out(repr(board.eval(expr)))


eval_cmd.epilog = example("mpkick eval \"1 + 1\"")


@cli.command("repl")
@attach_option
@common_options
def repl_cmd(attach_dirs: tuple[str, ...], write: bool, compile_: bool) -> None:
    """An interactive terminal on the board's REPL; Ctrl-] leaves. With --attach, host
    folders are in the board's filesystem meanwhile (and again after a soft reset)."""
    from ..terminal import terminal

    with open_board() as board:
        if attach_dirs:
            with attached_board(board, attach_dirs, write, compile_) as session:
                session.terminal(sys.stdin.fileno(), _stream)
            return
        board.repl.exit_raw()
        terminal(board.transport, sys.stdin.fileno(), sys.stdout.buffer)


repl_cmd.epilog = example("mpkick -p /dev/ttyACM0 repl\nmpkick repl --attach .")


@cli.command("reset")
@click.option("--hard", is_flag=True, help="Reset the whole chip (as the reset button does)")
@common_options
@jobs_option
def reset_cmd(hard: bool) -> None:
    """Soft-reset the board (it runs boot.py and main.py again), or hard-reset with --hard.

    A board that no longer answers is reset with --hard through the port's reset line, on
    boards wired for one (ESP32/ESP8266 auto-reset circuits)."""
    from ..errors import NoAnswer

    refs = common.many()
    if refs is not None:
        fleet_cmds.reset_many(refs, hard)
        return
    try:
        board = open_board()
    except NoAnswer:
        if not hard:
            raise
        from ..transport import open_transport

        with open_transport(options().resolved_port()) as transport:
            out(f"the board did not answer, so mpkick {transport.pulse_reset()}")
        return
    with board:
        board.reset(hard=hard)


reset_cmd.epilog = example("mpkick reset\nmpkick reset --hard")


@cli.command("devices")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON")
@click.option("-a", "--all", "every", is_flag=True,
              help="Every serial port, not only those that look like MicroPython boards")
def devices_cmd(as_json: bool, every: bool) -> None:
    """List the boards plugged in: port, VID:PID, serial number, manufacturer, product, kind.

    A serial number works as a port: -p id:SERIAL (a unique prefix is enough).
    """
    import json

    from ..transport.devices import list_devices

    found = list_devices(every)
    if as_json:
        out(json.dumps([d.as_json() for d in found], indent=2))
        return
    if not found:
        out("no MicroPython board found on USB (the virtual board is always there: -p sim://)")
        return
    rows = [(d.port, d.usb_id or "-", d.serial_number or "-", d.manufacturer or "-",
             d.product or "-", d.board or "-") for d in found]
    head = ("port", "vid:pid", "serial", "manufacturer", "product", "board")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


devices_cmd.epilog = example("mpkick devices\nmpkick devices --json\nmpkick -p id:e6614c31 info")
