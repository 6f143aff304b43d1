"""Commands: the virtual board as a serial port (or a WebREPL server) other tools can open."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import click

from . import cli
from .common import example


@cli.command("sim")
@click.argument("url", default="sim://")
@click.option("--link", type=click.Path(dir_okay=False),
              help="Also make this symlink to the port (a stable name for other tools)")
def sim_cmd(url: str, link: str | None) -> None:
    """Run a virtual board (the real MicroPython unix port) on a pty until Ctrl-C.

    It prints the port's path; open it with mpremote, picocom or mpkick. The flash lives in the
    URL's image file and survives restarts. ``qemu://microbit`` runs the BBC micro:bit's real
    firmware under QEMU instead (its flash lasts as long as the process); ``webrepl=PORT``
    serves the board over WebREPL instead of a pty.
    """
    if url.startswith("qemu://"):
        _serve_qemu(url, link)
        return
    from ..sim.options import parse_url
    from ..sim.supervisor import VirtualBoard

    options = parse_url(url if url.startswith("sim://") else f"sim://{url}")
    server = None
    entry = None
    if options.webrepl is not None:
        from ..sim.webrepl import serve

        board, server = serve(options)  # WebREPL is the board's terminal: no pty
        click.echo(f"virtual board on {server.url} (WebREPL)")
    else:
        board = VirtualBoard(options)
        port = board.start("pty")
        assert isinstance(port, str)
        _symlink(port, link)
        if board.options.serial:  # enumerable like a USB board: mpkick devices, -p id:SERIAL
            from ..sim.registry import publish

            entry = publish(port, board.options.serial, board.image)
        click.echo(f"virtual board on {port}" + (f" (also {link})" if link else ""))
    click.echo(f"flash image {board.image}; Ctrl-C to stop", err=True)
    try:
        _wait_for_stop()
    finally:
        if entry is not None:
            from ..sim.registry import withdraw

            withdraw(entry)
        if server is not None:
            server.close()
        board.close()
        if link and server is None:
            Path(link).unlink(missing_ok=True)
        c = board.counters
        click.echo(f"stopped: {c.host_to_board} bytes in, {c.board_to_host} bytes out, "
                   f"{c.reboots} reboots", err=True)


def _serve_qemu(url: str, link: str | None) -> None:
    from ..sim.qemu import QemuBoard, machine_for

    board = QemuBoard(machine_for(url))
    port = board.start()
    _symlink(port, link)
    click.echo(f"{board.machine.name} under QEMU on {port}" + (f" (also {link})" if link else ""))
    click.echo("real firmware, flash in memory only; Ctrl-C to stop", err=True)
    try:
        _wait_for_stop()
    finally:
        board.close()
        if link:
            Path(link).unlink(missing_ok=True)


def _symlink(port: str, link: str | None) -> None:
    if link:
        Path(link).unlink(missing_ok=True)
        os.symlink(port, link)


def _wait_for_stop() -> None:
    """Until Ctrl-C or SIGTERM."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with contextlib.suppress(KeyboardInterrupt):
        done.wait()


sim_cmd.epilog = example("mpkick sim sim://./flash.img?baud=115200 --link /tmp/ttyMP0\n"
                         "mpremote connect /tmp/ttyMP0 fs ls\n"
                         "mpkick sim qemu://microbit --link /tmp/microbit\n"
                         "mpkick sim 'sim://./b1.img?serial=e6614c3101' & mpkick -p id:e661 info\n"
                         "mpkick sim 'sim://./flash.img?webrepl=8266&password=pw&net_latency=5ms'\n"
                         "mpkick -p ws://127.0.0.1 --password pw ls")
