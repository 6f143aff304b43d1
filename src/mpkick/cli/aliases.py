"""Shortcuts from ``[tool.mpkick.aliases]``: ``deploy = "push --delete --run main.py"`` makes
``mpkick deploy`` run that command line, with any further arguments added after it.

A built-in command always wins over an alias of the same name, so a shortcut cannot change
what ``mpkick push`` means. An alias may start with another alias; a loop is refused.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import MutableMapping
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
    """The top-level group: looks a command name up among the project's aliases too, and
    imports a command's module only when that command is asked for (``lazy``: name -> module
    of ``mpkick.cli``): a push does not pay for importing the other thirty commands."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def _load(self, name: str) -> None:
        if name not in self.commands and name in self.lazy:
            importlib.import_module(f"{__package__}.{self.lazy[name]}")

    def load_all(self) -> MutableMapping[str, click.Command]:
        """Every command, each module imported: for help and for the tests."""
        for name in self.lazy:
            self._load(name)
        return self.commands

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.load_all())

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        known = set(self.commands) | set(self.lazy)
        if args and args[0] not in known:
            from ..config import load

            aliases = load()[0].get("aliases", {})
            if args[0] in aliases:
                args = expand(args, aliases, known)
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
