"""Commands: mount, umount."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from ..errors import InputError, MpkickError
from . import cli, common


def default_mountpoint(url: str) -> Path:
    """``./board`` for a board; for ``image:fs.img``, ``./fs`` (``./fs-mnt`` if ``fs`` is taken)."""
    if not url.startswith("image:"):
        return Path("board")
    image = Path(url[len("image:"):])
    name = Path(image.stem or "image")
    if name.exists() and not name.is_dir():
        name = Path(image.stem + "-mnt")
    return name


def _stale(mountpoint: Path) -> bool:
    """A mount whose process died: the kernel still has it, every access says ENOTCONN."""
    try:
        os.stat(mountpoint)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def _prepare(mountpoint: Path) -> None:
    """Make the folder if missing; refuse one that is not empty, since the mount would hide it."""
    if os.path.ismount(mountpoint) or _stale(mountpoint):
        raise InputError(
            f"{mountpoint} is already a mount point (maybe of a mount that died): "
            f"`mpkick umount {mountpoint}` first")
    mountpoint.mkdir(parents=True, exist_ok=True)
    if not mountpoint.is_dir():
        raise InputError(f"{mountpoint} is not a folder")
    if any(mountpoint.iterdir()):
        raise InputError(
            f"{mountpoint} is not empty: `mpkick mount` shows the board's files in a host "
            f"folder; to put this folder on the board (what `mpremote mount` does), use "
            f"`mpkick attach {mountpoint}`")


@cli.command("mount", epilog=common.example(
    "mpkick -p /dev/ttyACM0 mount            # the board at ./board until Ctrl-C\n"
    "mpkick -p image:fs.img mount mnt --read-only\n"
    "mpkick umount board                     # from another terminal"))
@click.argument("mountpoint", required=False, type=click.Path(path_type=Path))
@click.option("--read-only", is_flag=True, help="Refuse every change (EROFS)")
@common.common_options
def mount_cmd(mountpoint: Path | None, read_only: bool) -> None:
    """Mount the board's (or image's) files as a folder, for file managers and editors.

    Files reach the board when saved (closed or synced), each in one atomic, verified write.
    Runs in the foreground until Ctrl-C or `mpkick umount MOUNTPOINT`. Needs FUSE: fuse3 on
    Linux, macFUSE on macOS (see docs/mount.md).
    """
    from ..mount import MountEvent, mount

    opts = common.options()
    url = opts.resolved_port()
    mp = mountpoint or default_mountpoint(url)
    _prepare(mp)
    target = common.open_target()
    try:
        # Board.connect stops what runs; say so when it did.
        runner = target.runner()
        note = runner.interrupt_note if runner is not None else None
        if not opts.quiet and note:
            click.echo(f"{note}; it stays at the REPL while mounted")

        def on_event(event: MountEvent) -> None:
            if event.kind == "ready":
                if not opts.quiet:
                    mode = " (read-only)" if read_only else ""
                    click.echo(f"mounted {url} at {mp}{mode}; Ctrl-C or "
                               f"`mpkick umount {mp}` to unmount")
            else:
                click.echo(f"mpkick: {event.message}", err=True)

        mount(target, mp, read_only=read_only, on_event=on_event)
    finally:
        target.close()
    if not opts.quiet:
        click.echo(f"unmounted {mp}")


def unmount_command(mountpoint: Path, lazy: bool) -> list[str]:
    """The system's own FUSE unmount: fusermount3 / fusermount on Linux, umount on macOS."""
    if sys.platform == "darwin":
        return ["umount", *(["-f"] if lazy else []), str(mountpoint)]
    tool = shutil.which("fusermount3") or shutil.which("fusermount")
    if tool is None:
        raise MpkickError("no fusermount3 or fusermount: install fuse3")
    return [tool, "-uz" if lazy else "-u", str(mountpoint)]


@cli.command("umount", epilog=common.example("mpkick umount board"))
@click.argument("mountpoint", type=click.Path(path_type=Path))
@click.option("--lazy", is_flag=True,
              help="Detach now even if busy; the mount goes when the last file closes")
@common.common_options
def umount_cmd(mountpoint: Path, lazy: bool) -> None:
    """Unmount what `mpkick mount` mounted; buffered changes are written first."""
    if not (os.path.ismount(mountpoint) or _stale(mountpoint)):
        raise InputError(f"{mountpoint} is not mounted")
    done = subprocess.run(unmount_command(mountpoint, lazy), capture_output=True, text=True)
    if done.returncode:
        said = (done.stderr or done.stdout).strip().splitlines()
        hint = "" if lazy else "; if a shell or editor is using it, close it or use --lazy"
        raise MpkickError(f"could not unmount {mountpoint}: "
                          f"{said[-1] if said else 'failed'}{hint}")
