"""The command line: parse, call one library function, render the result. ``main(argv) -> int``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from .. import __version__
from ..errors import describe
from . import common
from .aliases import AliasGroup

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

#: The module of this package that defines each command; a command's module is imported only
#: when it runs (tests/test_cli.py checks this table against what the modules define).
COMMANDS = {
    "attach": "attach_cmds",
    **dict.fromkeys(("info", "ls", "tree", "cat", "get", "put", "rm", "mkdir", "rmdir", "mv",
                     "df", "sha256sum", "run", "exec", "eval", "repl", "reset", "devices"),
                    "board_cmds"),
    "rtc": "convenience_cmds", "edit": "convenience_cmds",
    "image": "image_cmds",
    "mount": "mount_cmds", "umount": "mount_cmds",
    "install": "package_cmds", "compile": "package_cmds",
    "push": "push_cmds",
    "romfs": "romfs_cmds",
    "sim": "sim_cmds",
    "watch": "watch_cmds",
}


@click.group(cls=AliasGroup, context_settings=CONTEXT, lazy=COMMANDS)
@common.common_options
@click.version_option(__version__, prog_name="mpkick")
def cli() -> None:
    """mpkick: get Python code onto MicroPython boards, fast, atomic and verified.

    \b
    Quick start:
      mpkick -p sim:// push examples /     push a folder to the virtual board
      mpkick -p /dev/ttyACM0 ls -l        list a real board's files
    """
    from ..transport.websocket import set_password_source

    set_password_source(common.webrepl_password)


# Each family of commands lives in its own module and registers itself on ``cli`` when
# imported (see COMMANDS).


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()).rstrip(".")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code instead of exiting, so tests can call it.

    This is the one error boundary: whatever went wrong, the user reads one line,
    ``mpkick: ...``, never a traceback nor click's ``Usage: ... Error: ...`` block. A usage
    mistake (an unknown option, a missing argument, a bad value) keeps click's exit code 2,
    as shells and scripts expect, and names the command's --help; every other error is 1.
    """
    from ..errors import MpkickError

    try:
        code = cli.main(args=list(argv) if argv is not None else None, prog_name="mpkick",
                        standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            return code  # a click Exit(N) raised in a command arrives here as its code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("mpkick: interrupted", err=True)
        return 130
    except click.exceptions.NoArgsIsHelpError as exc:  # `mpkick image` alone: its help
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:
        where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
        click.echo(f"mpkick: {_one_line(exc.format_message())}{where}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"mpkick: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("mpkick: interrupted", err=True)
        return 130
    except (MpkickError, OSError) as exc:
        click.echo(f"mpkick: {describe(exc)}", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
