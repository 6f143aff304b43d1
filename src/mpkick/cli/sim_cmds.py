"""Commands: the virtual board as a serial port other tools can open."""

from __future__ import annotations

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
    URL's image file and survives restarts.
    """
    from ..sim.options import parse_url
    from ..sim.supervisor import VirtualBoard

    options = parse_url(url if url.startswith("sim://") else f"sim://{url}")
    server = None
    if options.webrepl is not None:
        from ..sim.webrepl import serve

        board, server = serve(options)  # WebREPL is the board's terminal: no pty
        click.echo(f"virtual board on {server.url} (WebREPL)")
    else:
        board = VirtualBoard(options)
        port = board.start("pty")
        assert isinstance(port, str)
        if link:
            Path(link).unlink(missing_ok=True)
            os.symlink(port, link)
        click.echo(f"virtual board on {port}" + (f" (also {link})" if link else ""))
    click.echo(f"flash image {board.image}; Ctrl-C to stop", err=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.close()
        board.close()
        if link and server is None:
            Path(link).unlink(missing_ok=True)
        c = board.counters
        click.echo(f"stopped: {c.host_to_board} bytes in, {c.board_to_host} bytes out, "
                   f"{c.reboots} reboots", err=True)


sim_cmd.epilog = example("mpkick sim sim://./flash.img?baud=115200 --link /tmp/ttyMP0\n"
                         "mpremote connect /tmp/ttyMP0 fs ls\n"
                         "mpkick sim 'sim://./flash.img?webrepl=8266&password=pw&net_latency=5ms'\n"
                         "mpkick -p ws://127.0.0.1 --password pw ls")
