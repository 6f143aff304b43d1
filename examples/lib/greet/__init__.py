"""A tiny package in /lib, imported by main.py: proof that nested folders arrive."""

from .words import shout


def banner(title):
    line = "=" * (len(title) + 4)
    return "\n".join((line, "| " + title + " |", line))


__all__ = ["banner", "shout"]
