"""How a run on many boards looks: one live table on a terminal, name-prefixed lines on a pipe.

Both are ``fleet.Events``: the jobs report from their threads, these draw. The table has a row
per board (name, port, status, progress, result); after it, what each board printed follows
under its name. On a pipe every line a board prints or a status it reaches is one line
``NAME: ...``, so logs of thirty boards can be read and grepped.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from typing import Any

import click

from ..fleet.parallel import Events, Outcome
from ..fleet.selection import BoardRef


class Lines:
    """Bytes a board printed, cut into whole lines (the rest waits for its line's end)."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, data: bytes) -> list[str]:
        text = self._tail + data
        *whole, self._tail = text.split(b"\n")
        return [line.rstrip(b"\r").decode("utf-8", "replace") for line in whole]

    def rest(self) -> list[str]:
        tail, self._tail = self._tail, b""
        return [tail.rstrip(b"\r").decode("utf-8", "replace")] if tail.strip() else []


class PrefixedLines(Events):
    """On a pipe: ``NAME: line`` for output (stdout) and statuses (stderr, unless quiet)."""

    def __init__(self, quiet: bool = False, verbose: int = 0) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self._lock = threading.Lock()
        self._lines: dict[str, Lines] = {}
        self._percent: dict[str, int] = {}

    def _say(self, ref: BoardRef, text: str, err: bool = False) -> None:
        with self._lock:
            click.echo(f"{ref.name}: {text}", err=err)

    def on_status(self, ref: BoardRef, text: str) -> None:
        if not self.quiet:
            self._say(ref, text, err=True)

    def on_progress(self, ref: BoardRef, done: int, total: int) -> None:
        """Every quarter of the way, not every frame: a log, not a film."""
        if self.quiet or not total:
            return
        quarter = 4 * done // total
        if quarter > self._percent.get(ref.url, 0) and quarter < 4:
            self._percent[ref.url] = quarter
            self._say(ref, f"{25 * quarter}% ({done}/{total} bytes)", err=True)

    def on_output(self, ref: BoardRef, data: bytes) -> None:
        for line in self._lines.setdefault(ref.url, Lines()).feed(data):
            self._say(ref, line)

    def on_done(self, outcome: Outcome[Any]) -> None:
        ref = outcome.ref
        for line in self._lines.pop(ref.url, Lines()).rest():
            self._say(ref, line)
        if not outcome.ok:
            self._say(ref, f"FAILED: {outcome.reason}", err=True)
        elif not self.quiet:
            self._say(ref, f"ok: {result_text(outcome)}")


@dataclass
class Row:
    ref: BoardRef
    status: str = "waiting"
    done: int = 0
    total: int = 0
    result: str = ""
    ok: bool | None = None
    last: str = ""


class LiveTable(Events):
    """On a terminal: one table, redrawn as the boards go (rich, on stderr)."""

    def __init__(self, refs: list[BoardRef], title: str) -> None:
        from rich.console import Console
        from rich.live import Live

        self.title = title
        self.rows = {r.url: Row(r) for r in refs}
        self.output: dict[str, bytearray] = {r.url: bytearray() for r in refs}
        self._lock = threading.Lock()
        self._lines: dict[str, Lines] = {}
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=8,
                         get_renderable=self.render, transient=False)

    def __enter__(self) -> LiveTable:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self.title, title_justify="left", expand=False)
        with self._lock:
            rows = list(self.rows.values())
        ports = any(r.ref.url != r.ref.name for r in rows)  # a column only when names differ
        table.add_column("board", no_wrap=True, max_width=32)
        if ports:
            table.add_column("url", no_wrap=True, max_width=24)
        table.add_column("status", no_wrap=True, max_width=18)
        table.add_column("progress", no_wrap=True, width=16)
        table.add_column("result", overflow="fold", min_width=20)
        for row in rows:
            bar: Any = ProgressBar(total=row.total or 1, completed=row.done, width=16) \
                if row.total else Text("")
            style = {True: "green", False: "red", None: ""}[row.ok]
            cells = [row.ref.name, *([row.ref.url] if ports else []), row.status, bar,
                     Text((row.result or row.last)[-120:], style=style)]
            table.add_row(*cells)
        return table

    def on_start(self, ref: BoardRef) -> None:
        self._row(ref).status = "starting"

    def on_status(self, ref: BoardRef, text: str) -> None:
        row = self._row(ref)
        row.status, row.done, row.total = text, 0, 0

    def on_progress(self, ref: BoardRef, done: int, total: int) -> None:
        row = self._row(ref)
        row.done, row.total = done, total

    def on_output(self, ref: BoardRef, data: bytes) -> None:
        with self._lock:
            self.output[ref.url] += data
        lines = self._lines.setdefault(ref.url, Lines()).feed(data)
        if lines:
            self._row(ref).last = lines[-1]

    def on_done(self, outcome: Outcome[Any]) -> None:
        row = self._row(outcome.ref)
        row.ok = outcome.ok
        row.status = "done" if outcome.ok else ("interrupted" if outcome.interrupted
                                                else "failed")
        if row.total:
            row.done = row.total if outcome.ok else row.done
        row.result = result_text(outcome) if outcome.ok else outcome.reason

    def _row(self, ref: BoardRef) -> Row:
        with self._lock:
            return self.rows[ref.url]

    def show_output(self) -> None:
        """What each board printed, under its name, once the table is done."""
        for url, data in self.output.items():
            if data:
                click.secho(f"── {self.rows[url].ref.name} ──", bold=True)
                text = data.decode("utf-8", "replace").replace("\r\n", "\n")
                click.echo(text if text.endswith("\n") else text + "\n", nl=False)


def result_text(outcome: Outcome[Any]) -> str:
    value = outcome.value
    summary = getattr(value, "summary", None)
    if callable(summary):
        return str(summary())
    return str(value) if isinstance(value, str) else f"{outcome.seconds:.2f} s"


def on_terminal() -> bool:
    return sys.stderr.isatty()
