"""Shortcuts from ``[tool.mpkick.aliases]``: ``deploy = "push --delete --run main.py"`` makes
``mpkick deploy`` run that command line, with any further arguments added after it.

A built-in command always wins over an alias of the same name, so a shortcut cannot change
what ``mpkick push`` means. An alias may start with another alias; a loop is refused.
"""

from __future__ import annotations

import shlex
from typing import Any

import click


def expand(args: list[str], aliases: dict[str, str], commands: set[str]) -> list[str]:
    """``args`` (starting at the command name) with an alias replaced by what it stands for."""
    seen: list[str] = []
    while args and args[0] not in commands and args[0] in aliases:
        name = args[0]
        if name in seen:
            from ..errors import InputError

            raise InputError(f"alias {name!r} expands to itself ({' -> '.join([*seen, name])})")
        seen.append(name)
        args = [*shlex.split(aliases[name]), *args[1:]]
    return args


class AliasGroup(click.Group):
    """The top-level group: looks a command name up among the project's aliases too."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and args[0] not in self.commands:
            from ..config import load

            aliases = load()[0].get("aliases", {})
            if args[0] in aliases:
                args = expand(args, aliases, set(self.commands))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        from ..config import load
        from ..errors import MpkickError

        try:
            aliases = load()[0].get("aliases", {})
        except MpkickError:
            return
        if aliases:
            with formatter.section("Aliases (this project's [tool.mpkick.aliases])"):
                formatter.write_dl(sorted(aliases.items()))
