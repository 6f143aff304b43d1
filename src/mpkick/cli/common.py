"""What every command shares: the target option, opening the target, the error boundary."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..board.board import Board
    from ..fleet.selection import BoardRef
    from ..target import Target

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """Options given before or after the command name, merged."""

    ports: list[str] = field(default_factory=list)  # every -p, in order
    password: str | None = None
    verbose: int = 0
    quiet: bool = False
    jobs: int = 0  # --jobs: boards at once when many are named (0: all)
    settings: dict[str, Any] = field(default_factory=dict)
    project: Path | None = None
    loaded: bool = False

    def load_settings(self) -> None:
        if not self.loaded:
            from ..config import load

            self.settings, self.project = load()
            self.loaded = True

    def boards(self) -> list[BoardRef]:
        """Every board the command is for: each ``-p`` (else MPKICK_PORT, else the config's
        ``port``, else ``auto``), with ``all``, names and groups expanded."""
        from ..fleet.selection import resolve

        self.load_settings()
        for line in ("dtr", "rts"):  # the settings' line states, unless --dtr/--rts said
            if line in self.settings:
                os.environ.setdefault(f"MPKICK_{line.upper()}", str(self.settings[line]))
        specs = self.ports or [os.environ.get("MPKICK_PORT") or ""]
        if specs == [""]:
            configured = self.settings.get("port") or "auto"
            specs = [configured] if isinstance(configured, str) else list(configured)
        return resolve(specs, self.settings.get("boards", {}))

    def resolved_port(self) -> str:
        """The one board of a single-board command."""
        refs = self.boards()
        if len(refs) != 1:
            from ..errors import InputError

            raise InputError(f"this command works on one board; {len(refs)} are named ("
                             + ", ".join(r.name for r in refs[:5])
                             + "): give one with -p")
        return refs[0].url


def options() -> Options:
    return click.get_current_context().ensure_object(Options)


def many() -> list[BoardRef] | None:
    """The boards named, when there are several; None for the usual one-board command (which
    then does not import the fleet's machinery)."""
    refs = options().boards()
    return refs if len(refs) > 1 else None


def _store(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if isinstance(value, tuple):  # -p, given any number of times, before or after
            getattr(ctx.ensure_object(Options), name).extend(value)
        elif value not in (None, 0, False):
            setattr(ctx.ensure_object(Options), name, value)

    return callback


def common_options(f: F) -> F:
    """``-p/--port``, ``-v`` and ``-q``, accepted after the command name as well as before it."""
    return _common(f, ("-p", "--port"))


def common_options_long_port(f: F) -> F:
    """As ``common_options``, for commands whose own ``-p`` means something else (mkdir -p)."""
    return _common(f, ("--port",))


def _common(f: F, port_names: tuple[str, ...]) -> F:
    f = click.option(*port_names, "ports", metavar="URL", expose_value=False, is_eager=True,
                     callback=_store("ports"), multiple=True,
                     help="Target: /dev/ttyACM0, COM3, socket://host:port, ws://HOST (WebREPL), "
                          "sim://, qemu://microbit, image:fs.img, id:SERIAL, a name from "
                          "[tool.mpkick.boards], all, auto (default; also MPKICK_PORT); repeat "
                          "it for many boards")(f)
    f = click.option("--password", "password", metavar="PW", expose_value=False, is_eager=True,
                     callback=_store("password"),
                     help="WebREPL password for ws:// ports (or MPKICK_PASSWORD, the config's "
                          "password; asked for when missing)")(f)
    f = click.option("-v", "--verbose", count=True, expose_value=False,
                     callback=_store("verbose"), help="Say more (which paths were chosen)")(f)
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False,
                     callback=_store("quiet"), help="Print only errors")(f)
    for line in ("dtr", "rts"):
        f = click.option(f"--{line}", metavar="on|off", expose_value=False,
                         callback=_line(line),
                         help=f"{line.upper()} while mpkick holds a serial port (default on; "
                              f"off for boards with {line.upper()} wired to reset; also "
                              f"MPKICK_{line.upper()})")(f)
    return f


def jobs_option(f: F) -> F:
    """``-j/--jobs N`` for the commands that run on many boards at once."""
    return click.option("-j", "--jobs", type=click.IntRange(min=1), expose_value=False,
                        callback=_store("jobs"), metavar="N",
                        help="With many boards: how many at once [default: all]")(f)


def _line(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """``--dtr``/``--rts``: the serial transport reads them from the environment, so every
    way a command opens a port (and its subprocesses) keeps the lines alike."""
    def callback(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value is not None:
            from ..transport.lines import line_value

            os.environ[f"MPKICK_{name.upper()}"] = "on" if line_value(name, value) else "off"

    return callback


def webrepl_password(url: str) -> str | None:
    """The password for a WebREPL board: ``--password``, MPKICK_PASSWORD, the config, or asked
    for at the terminal (never echoed, never printed)."""
    context = click.get_current_context(silent=True)
    opts = context.ensure_object(Options) if context is not None else Options()
    opts.load_settings()
    given = opts.password or os.environ.get("MPKICK_PASSWORD") or opts.settings.get("password")
    if given:
        return str(given)
    if sys.stdin.isatty():
        return str(click.prompt(f"WebREPL password for {url}", hide_input=True, err=True))
    return None


def open_target(port: str | None = None) -> Target:
    """The filesystem target the user named: ``image:PATH`` or a board."""
    from ..open import open_target as open_url

    context = click.get_current_context(silent=True)  # None when called outside a command
    verbose = context.ensure_object(Options).verbose if context is not None else 0
    return open_url(port or options().resolved_port(), verbose)


def open_board(port: str | None = None) -> Board:
    """A connected ``Board`` for the port the user named."""
    from ..board.board import Board
    from ..open import IMAGE

    url = port or options().resolved_port()
    if url.startswith(IMAGE):
        from ..errors import InputError

        raise InputError(f"{url} is an image file, not a board: this command needs a board")
    return Board.connect(url, verbose=options().verbose)


def example(text: str) -> str:
    """Help epilog with an example, shown under the command's help (a test checks every command)."""
    return "\b\nExample:\n  " + text.strip().replace("\n", "\n  ")
