"""Commands: image — build littlefs images on the host and look inside them."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..units import human
from . import board_cmds, cli, common  # noqa: F401 (board_cmds: the commands twinned here)
from .common import common_options

if TYPE_CHECKING:
    from ..target import Usage


def _size(text: str) -> int:
    from ..image.geometry import parse_size

    return parse_size(text)


@cli.group("image")
def image() -> None:
    """littlefs images on the host: build one from a folder, look inside, take files out.

    An image is also a target for every other command: mpkick -p image:fs.img push src /
    """


#: The options that name or reach a board: IMG takes their place.
TARGET_OPTIONS = {"ports", "password", "dtr", "rts"}


def _twin(name: str, example: str) -> None:
    """``image NAME IMG ARGS...`` is ``-p image:IMG NAME ARGS...``: the board command itself,
    with its options, on the image as its target, so both print exactly the same (one
    formatting path; an image is a target like a board). Kept for the habit of naming the
    image after the command."""
    from ..open import IMAGE

    command = cli.commands[name]

    def callback(img: str, **kwargs: Any) -> Any:
        common.options().ports[:] = [IMAGE + img]  # the image named here is the target
        assert command.callback is not None
        return command.callback(**kwargs)

    own = [p for p in command.params if p.name not in TARGET_OPTIONS]
    image.add_command(click.Command(
        name, params=[click.Argument(["img"]), *own], callback=callback,
        help=f"The same as mpkick -p image:IMG {name}: {command.help or ''}",
        short_help=f"The same as mpkick -p image:IMG {name}", epilog=common.example(example)))


_twin("ls", "mpkick image ls -l fs.img /lib")
_twin("tree", "mpkick image tree fs.img")
_twin("cat", "mpkick image cat fs.img /main.py")
_twin("get", "mpkick image get fs.img /lib ./lib-from-image")
_twin("df", "mpkick image df fs.img")


@image.command("build", epilog=common.example(
    "mpkick image build src -o fs.img --preset rp2\n"
    "mpkick image build src -o fs.img --size 512K --block-size 4096"))
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", required=True, metavar="IMG", help="Image file to write")
@click.option("--size", metavar="BYTES", help="Filesystem size: 1M, 848K, 0x100000 (default 1M)")
@click.option("--block-size", type=int, help="Erase block size in bytes (default 4096)")
@click.option("--block-count", type=int, help="Number of blocks (instead of --size)")
@click.option("--preset", metavar="BOARD", help="Board geometry: rp2, rp2-w, rp2350, esp32, ...")
@click.option("--ignore", "extra", multiple=True, metavar="PATTERN",
              help="Also leave out files matching this gitignore pattern (repeatable)")
def build(src: Path, out: str, size: str | None, block_size: int | None,
          block_count: int | None, preset: str | None, extra: tuple[str, ...]) -> None:
    """Build a littlefs image of folder SRC, ready to flash or to boot the virtual board.

    Files are left out by the same ignore rules as push (.gitignore, .mpkickignore, the
    project's ignore setting). Each file keeps its modification time as MicroPython's mtime.
    """
    from ..errors import InputError
    from ..ignore import IgnoreRules
    from ..image.build import build_image
    from ..image.geometry import PRESETS, READ_SIZE

    geometry = PRESETS.get(preset) if preset else None
    if preset and geometry is None:
        raise InputError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    bsize = block_size or (geometry.block_size if geometry else 4096)
    if block_count is not None and size is not None:
        raise InputError("give --size or --block-count, not both")
    total = (block_count * bsize if block_count is not None
             else _size(size) if size is not None
             else geometry.size if geometry else 1024 * 1024)
    opts = common.options()
    opts.load_settings()
    configured = opts.settings.get("ignore", [])
    rules = IgnoreRules.from_folder(src, [*([configured] if isinstance(configured, str)
                                            else configured), *extra])
    result = build_image(src, out, size=total, block_size=bsize,
                         prog_size=geometry.prog_size if geometry else READ_SIZE, rules=rules)
    if not opts.quiet:
        used = result.usage.total - result.usage.free
        click.echo(f"{out}: {result.files} files, {result.folders} folders, "
                   f"{human(result.data_bytes)} of data; {human(used)} used of "
                   f"{human(result.usage.total)} ({bsize}-byte blocks)")


@image.command("extract", epilog=common.example("mpkick image extract fs.img ./board-files"))
@click.argument("img")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def extract(img: str, folder: Path) -> None:
    """Copy every file of image IMG into FOLDER, keeping folders and modification times."""
    from ..image.build import copy_out
    from ..image.target import open_image

    with open_image(img) as target:
        written = copy_out(target, "/", folder)
    if not common.options().quiet:
        click.echo(f"{len(written)} file(s) extracted to {folder}")


@image.command("info", epilog=common.example("mpkick image info fs.img"))
@click.argument("img")
def info(img: str) -> None:
    """Show the geometry of image IMG: block size and count, littlefs version, space."""
    from ..image.build import image_info
    from ..image.target import open_image

    with open_image(img) as target:
        facts = image_info(target)
    used = facts.usage.total - facts.usage.free
    click.echo(f"image:        {facts.path}\n"
               f"littlefs:     v{facts.disk_version}\n"
               f"block size:   {facts.block_size}\n"
               f"block count:  {facts.block_count}\n"
               f"size:         {facts.usage.total} ({human(facts.usage.total)})\n"
               f"used:         {used} ({human(used)})\n"
               f"free:         {facts.usage.free} ({human(facts.usage.free)})\n"
               f"name max:     {facts.name_max}")


@contextmanager
def _bytes_bar(what: str, total: int) -> Iterator[Callable[[int], None] | None]:
    """A transfer bar on stderr, only on a terminal and without -q."""
    if common.options().quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    with Progress(TextColumn(what), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _fill(files: int | None, usage: Usage | None) -> str:
    if files is None:
        return "no filesystem that mounts"
    used = f", {human(usage.total - usage.free)} used" if usage is not None else ""
    return f"{files} file(s){used}"


@image.command("pull", epilog=common.example(
    "mpkick -p /dev/ttyACM0 image pull -o backup.img\n"
    "mpkick image pull -p sim:// -o fs.img && mpkick image ls fs.img"))
@common_options
@click.option("-o", "--output", "out", required=True, metavar="IMG", help="Image file to write")
def pull(out: str) -> None:
    """Read the board's whole filesystem, block by block, into image file IMG.

    The board's block device (flashbdev, rp2.Flash, the ESP32 'vfs' partition, pyb.Flash) is
    read as it is, without writing to it; the board hashes what it read and the image is saved
    only when the hash matches. Inspect the result with the other image commands, push to it
    with -p image:IMG, or write it back with image flash.
    """
    from ..image.flash import block_device, image_pull

    with common.open_board() as board:
        device = block_device(board)
        with _bytes_bar("pull", device.size) as progress:
            result = image_pull(board, out, progress)
    if not common.options().quiet:
        click.echo(f"{out}: {device.block_count} blocks of {device.block_size} bytes "
                   f"({human(device.size)}) from {device.found_as}, sha256 "
                   f"{result.sha256[:16]}")


@image.command("flash", epilog=common.example(
    "mpkick -p /dev/ttyACM0 image flash fs.img\n"
    "mpkick image build src -o fs.img --preset rp2 && mpkick -p /dev/ttyACM0 image flash "
    "fs.img --yes"))
@common_options
@click.argument("img")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before replacing the filesystem")
@common.jobs_option
def flash(img: str, yes: bool) -> None:
    """Replace the board's whole filesystem with image IMG, verified by hash.

    Every file now on the board is lost: IMG takes the place of its filesystem, block for
    block. An image whose block size or count differs from the board's is refused before
    anything is written (build it to fit with image build --block-size/--block-count, or
    --preset). The board reads every block back and compares its hash, mounts the new
    filesystem and soft-resets. Keep a copy first with image pull.
    """
    from ..errors import MpkickError
    from ..image.flash import image_flash, plan_flash
    from .common import many
    from .fleet_cmds import flash_many

    refs = many()
    if refs is not None:
        flash_many(refs, img, yes)
        return
    with common.open_board() as board:
        plan = plan_flash(board, img)
        dev = plan.device
        if not (yes and common.options().quiet):
            click.echo(f"This replaces the board's whole filesystem ({dev.found_as}, "
                       f"{dev.block_count} blocks of {dev.block_size} bytes: "
                       f"{_fill(plan.board_files, plan.board_usage)})\n"
                       f"with {img} ({_fill(plan.image_files, plan.image_usage)}).", err=True)
        if not yes and not click.confirm("Flash it?", default=False, err=True):
            raise MpkickError("nothing was flashed: the board is as it was")
        with _bytes_bar("flash", dev.size) as progress:
            image_flash(board, plan, progress)
    if not common.options().quiet:
        click.echo(f"flashed {img} ({human(dev.size)}), verified by sha256 "
                   f"{plan.sha256[:16]}; the board was soft-reset")
