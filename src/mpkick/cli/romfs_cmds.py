"""Commands: romfs — build ROMFS images, see a board's ROM partitions, deploy into them."""

from __future__ import annotations

import os
import posixpath
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.globals import pop_context, push_context

from ..errors import InputError
from ..units import human
from . import cli, common, fleet_cmds
from .common import common_options

if TYPE_CHECKING:
    from ..board.board import Board
    from ..compile.compiler import Compiler
    from ..fleet.parallel import BoardJob
    from ..fleet.selection import BoardRef
    from ..ignore import IgnoreRules
    from ..romfs.source import RomTree


@cli.group("romfs")
def romfs() -> None:
    """ROMFS: a read-only filesystem in the board's ROM partition, mounted at /rom with
    /rom/lib on sys.path, whose .mpy files run in place from flash (MicroPython 1.25+).

    \b
    mpkick romfs build lib -o rom.img     compile and pack a folder on the host
    mpkick romfs query                    the board's partitions and what they hold
    mpkick romfs deploy lib               compile for the board, write what changed, verify
    """


def _rules(src: Path, extra: tuple[str, ...]) -> IgnoreRules:
    from ..ignore import IgnoreRules

    opts = common.options()
    opts.load_settings()
    configured = opts.settings.get("ignore", [])
    return IgnoreRules.from_folder(src, [*([configured] if isinstance(configured, str)
                                           else configured), *extra])


def _tree(src: Path, compiler: Compiler | None, board_mpy: int | None,
          extra: tuple[str, ...]) -> RomTree:
    from ..romfs.source import collect

    tree = collect(src, compiler, _rules(src, extra), board_mpy)
    if not common.options().quiet:
        for note in tree.notes:
            click.echo(f"mpkick: {note}", err=True)
    return tree


def _explicit_port() -> str | None:
    opts = common.options()
    opts.load_settings()
    return (opts.ports[0] if opts.ports else None) or os.environ.get("MPKICK_PORT") \
        or opts.settings.get("port")


@romfs.command("build", epilog=common.example(
    "mpkick romfs build lib -o rom.img            .mpy for the newest mpy-cross here\n"
    "mpkick -p /dev/ttyACM0 romfs build lib -o rom.img   .mpy for that board\n"
    "mpkick romfs build assets -o rom.img --no-compile --mpy 6.3"))
@common_options
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, metavar="IMG", help="Image file to write")
@click.option("--compile/--no-compile", "compile_", default=True, show_default=True,
              help="Compile .py files to .mpy")
@click.option("--mpy", metavar="N", help="Board's sys.implementation._mpy, or 6.3 [default: ask "
                                         "the board named by -p, else the newest mpy-cross]")
@click.option("--mpy-cross", "mpy_cross", metavar="PATH", help="mpy-cross binary to use")
@click.option("--ignore", "extra", multiple=True, metavar="PATTERN",
              help="Also leave out files matching this gitignore pattern (repeatable)")
def build_cmd(src: Path, out: str, compile_: bool, mpy: str | None, mpy_cross: str | None,
              extra: tuple[str, ...]) -> None:
    """Build a ROMFS image of folder SRC: what MicroPython's VfsRom mounts (header d2 cd 31).

    Every .py is compiled to .mpy by the mpy-cross that matches the board; a .mpy already in
    SRC must match it too. Ignore rules are push's.
    """
    from ..compile.compiler import Compiler
    from ..image.target import save_file
    from .package_cmds import parse_mpy

    board_mpy = parse_mpy(mpy)
    if board_mpy is None and _explicit_port():
        with common.open_board() as board:
            board_mpy = board.info().mpy
    compiler = Compiler.for_board(board_mpy, mpy_cross) if compile_ else None
    tree = _tree(src, compiler, board_mpy, extra)
    data = tree.image()
    save_file(out, data)
    if not common.options().quiet:
        made = f", {tree.compiled} compiled for .mpy {compiler.emits}" if compiler else ""
        click.echo(f"{out}: {len(tree.files)} files{made}; {len(data)} bytes "
                   f"({human(len(data))})")


@romfs.command("query", epilog=common.example("mpkick -p /dev/ttyACM0 romfs query"))
@common_options
@click.option("-l", "long", is_flag=True, help="List every file of each image")
def query_cmd(long: bool) -> None:
    """Show the board's ROM partitions: size, erase block, and the image each holds."""
    from ..romfs.deploy import partitions

    with common.open_board() as board:
        parts = partitions(board)
    for p in parts:
        erase = (f"{p.size // p.block} blocks of {p.block} bytes, erased by block" if p.ranged
                 else "erased only from its start")
        click.echo(f"ROM partition {p.rid}: {p.size} bytes ({human(p.size)}), {erase}")
        if p.files is None:
            said = {"erased": "erased: no image", "empty": "no valid image (first bytes "
                    f"{p.head[:8].hex(':')})", "damaged": "a damaged image (not mounted)"}
            click.echo(f"  {said.get(p.state, p.state)}")
            continue
        files = [f for f in p.files if f[1] >= 0]
        length = p.image_length or 0
        click.echo(f"  ROMFS image: {length} bytes ({human(length)}), {len(files)} files, "
                   f"{human(p.size - length)} free" + (", mounted at /rom" if p.rid == 0 else ""))
        shown = p.files if long else [f for f in p.files if f[0].count("/") <= 2][:20]
        for path, size in shown:
            click.echo(f"  {'' if size < 0 else size:>8}  {path}{'/' if size < 0 else ''}")
        if not long and len(shown) < len(p.files):
            click.echo(f"  ... {len(p.files) - len(shown)} more (-l lists all)")


def _deploy_source(board: Board, src: Path, compile_: bool, mpy_cross: str | None,
                   extra: tuple[str, ...]) -> tuple[bytes, str]:
    """The image to deploy and a name for it: an image file as it is, a folder built."""
    if src.is_file():
        return src.read_bytes(), str(src)
    from ..compile.compiler import Compiler

    mpy = board.info().mpy
    compiler = Compiler.for_board(mpy, mpy_cross) if compile_ else None
    return _tree(src, compiler, mpy, extra).image(), f"the image of {src}"


def _deploy_many(refs: list[BoardRef], src: Path, rid: int, compile_: bool,
                 mpy_cross: str | None, extra: tuple[str, ...], no_reset: bool) -> None:
    """``romfs deploy`` on every board at once, each built for its own firmware."""
    from ..romfs import deploy as rom

    context = click.get_current_context()  # the options and config, in every board's thread

    def job(bj: BoardJob) -> str:
        push_context(context)  # this thread's own stack: the context itself is not touched
        try:
            return deploy_one(bj)
        finally:
            pop_context()

    def deploy_one(bj: BoardJob) -> str:
        with fleet_cmds.connect(bj) as board:
            image, name = _deploy_source(board, src, compile_, mpy_cross, extra)
            bj.status("deploying")
            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                bj.progress(done[0], len(image))

            result = rom.deploy(board, image, rid, name=name, reset=not no_reset,
                                board_mpy=board.info().mpy, progress=progress)
        return ("unchanged: nothing written" if result.unchanged
                else f"{name}: {len(image)} bytes, verified")

    fleet_cmds.on_boards(refs, job, "romfs deploy")


@romfs.command("deploy", epilog=common.example(
    "mpkick romfs deploy lib                 compile lib/ for the board and make it /rom\n"
    "mpkick romfs deploy rom.img --partition 1\n"
    "mpkick romfs deploy lib --dry-run       what would be written"))
@common_options
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.option("--partition", "rid", type=int, default=0, show_default=True,
              help="ROM partition to write")
@click.option("--compile/--no-compile", "compile_", default=True, show_default=True,
              help="Compile .py files to .mpy (a folder SRC)")
@click.option("--mpy-cross", "mpy_cross", metavar="PATH", help="mpy-cross binary to use")
@click.option("--ignore", "extra", multiple=True, metavar="PATTERN",
              help="Also leave out files matching this gitignore pattern (repeatable)")
@click.option("-n", "--dry-run", is_flag=True, help="Compare with the board; write nothing")
@click.option("--no-reset", is_flag=True, help="Do not soft-reset the board afterwards")
def deploy_cmd(src: Path, rid: int, compile_: bool, mpy_cross: str | None,
               extra: tuple[str, ...], dry_run: bool, no_reset: bool) -> None:
    """Put SRC (a folder, built for the board, or an image file) into a ROM partition and make
    it live: only the erase blocks that changed are written, an identical image not at all;
    the board verifies it by hash before its header is written. A cut leaves the old image,
    the new one, or none, never a broken one. The board is then soft-reset.
    """
    from ..romfs import deploy as rom

    opts = common.options()
    refs = common.many()
    if refs is not None:
        if dry_run:
            raise InputError("--dry-run compares one board: give one with -p")
        _deploy_many(refs, src, rid, compile_, mpy_cross, extra, no_reset)
        return
    with common.open_board() as board:
        image, name = _deploy_source(board, src, compile_, mpy_cross, extra)
        mpy = board.info().mpy
        if dry_run:
            rom.check_image(image, mpy, name)
            part = rom.partition(board, rid)
            click.echo(f"{name}: {len(image)} bytes for ROM partition {rid} "
                       f"({part.size} bytes): " + rom.describe_plan(board, image, part))
            return
        bar = _Bar(len(image)) if sys.stderr.isatty() and not opts.quiet else None
        try:
            result = rom.deploy(board, image, rid, name=name, reset=not no_reset,
                                board_mpy=mpy, progress=bar.advance if bar else None)
        finally:
            if bar is not None:
                bar.stop()
    if opts.quiet:
        return
    if result.unchanged:
        click.echo(f"ROM partition {rid} already holds {name} ({len(image)} bytes): "
                   "nothing written")
        return
    click.echo(f"deployed {name}: {len(image)} bytes into ROM partition {rid}, "
               f"{len(result.written)} of {result.blocks} erase blocks written, verified"
               + ("" if no_reset else "; board soft-reset"))


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

        self.progress = Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.progress.start()
        self.task = self.progress.add_task("romfs", total=total)

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def stop(self) -> None:
        self.progress.stop()


def _entries(image: str | None, rid: int) -> tuple[list[tuple[str, int]], bytes | None]:
    """(path, size) of every entry, and the image's bytes when it is a local file."""
    if image is not None:
        from ..romfs.image import read

        data = Path(image).read_bytes()
        return [(e.path, -1 if e.is_dir else e.size) for e in read(data)], data
    from ..romfs.deploy import partition

    with common.open_board() as board:
        part = partition(board, rid)
    if part.files is None:
        from ..errors import InputError

        raise InputError(f"ROM partition {rid} holds no valid ROMFS image ({part.state})")
    return list(part.files), None


@romfs.command("ls", epilog=common.example("mpkick romfs ls -l /lib\n"
                                           "mpkick romfs ls --image rom.img"))
@common_options
@click.argument("path", default="/")
@click.option("-l", "long", is_flag=True, help="Show sizes")
@click.option("-r", "recursive", is_flag=True, help="Everything below PATH")
@click.option("--image", metavar="IMG", help="Read a ROMFS image file instead of the board")
@click.option("--partition", "rid", type=int, default=0, show_default=True)
def ls_cmd(path: str, long: bool, recursive: bool, image: str | None, rid: int) -> None:
    """List the live ROMFS (what the board has at /rom), or an image file's."""
    from ..target import norm

    here = norm(path.removeprefix("/rom") if path.startswith("/rom") else path)
    entries, _ = _entries(image, rid)
    kinds = dict(entries)
    if here != "/" and here not in kinds:
        raise FileNotFoundError(2, "No such file or directory", path)
    if here != "/" and kinds[here] >= 0:
        shown = [(here, kinds[here])]
    else:
        prefix = here.rstrip("/") + "/"
        shown = [(p, s) for p, s in entries if p.startswith(prefix)
                 and (recursive or "/" not in p[len(prefix):])]
    for p, size in shown:
        name = (p if recursive else posixpath.basename(p)) + ("/" if size < 0 else "")
        click.echo(f"{'' if size < 0 else size:>10}  {name}" if long else name)


@romfs.command("cat", epilog=common.example("mpkick romfs cat /lib/config.json\n"
                                            "mpkick romfs cat --image rom.img /lib/x.py"))
@common_options
@click.argument("path")
@click.option("--image", metavar="IMG", help="Read a ROMFS image file instead of the board")
@click.option("--partition", "rid", type=int, default=0, show_default=True)
def cat_cmd(path: str, image: str | None, rid: int) -> None:
    """Print a file of the live ROMFS (or of an image file)."""
    from ..romfs.image import lookup
    from ..target import norm

    rel = norm(path.removeprefix("/rom") if path.startswith("/rom/") else path)
    if image is not None:
        entry = lookup(Path(image).read_bytes(), rel)
        if entry.is_dir:
            raise IsADirectoryError(21, "Is a directory", path)
        data = entry.data
    else:
        from ..romfs.deploy import mount, read_image

        with common.open_board() as board:
            if rid == 0 and mount(board):  # read through /rom: only the file crosses the wire
                if board.stat("/rom" + rel).is_dir:
                    raise IsADirectoryError(21, "Is a directory", path)
                data = board.read("/rom" + rel)
            else:
                entry = lookup(read_image(board, rid), rel)
                if entry.is_dir:
                    raise IsADirectoryError(21, "Is a directory", path)
                data = entry.data
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
