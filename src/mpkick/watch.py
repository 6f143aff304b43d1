"""``watch``: every save reaches the target in a blink, and the program restarts if asked.

Native file events (watchfiles) wake us; a burst of saves is one push, and a push is
exactly ``kick`` on the open target: the same plan, deltas, checks, retries and host record,
on any target (a board, the virtual board, an image file). A board keeps the listing its
last session left under its tree's digest, so a push after a save costs one short exchange
to learn the board's state. A board that resets or vanishes is reconnected with backoff and
resynced. Running the program needs a target that runs code (``Target.runner()``). Nothing
here prints: every happening is an event for the caller's callback.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BoardError, ConnectError, DeviceTimeout, InputError, ProtocolError
from .ignore import IgnoreRules
from .open import open_target
from .push import kick
from .sync.plan import DELETE, RMDIR
from .target import CodeRunner, Target, norm

#: Errors that mean the link or the board's state is gone, not that the user did something wrong.
LINK_ERRORS = (ConnectError, DeviceTimeout, ProtocolError, BoardError)
BACKOFF = (0.2, 0.5, 1.0, 2.0, 4.0)


@dataclass
class Pushed:
    """One push: what changed, how many bytes, how long."""

    written: list[str]
    deleted: list[str]
    bytes_sent: int
    wire_bytes: int
    seconds: float
    modes: dict[str, str] = field(default_factory=dict)  # path -> warm / cold / whole
    resync: bool = False


@dataclass
class Notice:
    """One line for the user (the board went away, came back, a push failed)."""

    text: str
    error: bool = False


@dataclass
class Output:
    """Bytes the running program printed; ``error``: its traceback."""

    data: bytes
    error: bool = False


@dataclass
class Finished:
    """The program ran to its end (``ok`` False: it raised)."""

    ok: bool


Event = Pushed | Notice | Output | Finished


class _Lost(Exception):
    """The board restarted or vanished."""


class Watcher:
    """Keeps ``dest`` on the target at ``url`` equal to ``src`` until ``stop`` is set."""

    def __init__(self, url: str, src: Path, dest: str = "/", *, delete: bool = False,
                 run: str | None = None, reset: bool = False,
                 on_event: Callable[[Event], None] = lambda _e: None,
                 stop: threading.Event | None = None, debounce_ms: int = 50,
                 connect: Callable[[str], Target] = open_target) -> None:
        if not src.is_dir():
            raise InputError(f"{src} is not a folder: give the project folder to watch (SRC)")
        self.url = url
        self.src = src
        self.dest = norm(dest)
        self.delete = delete
        self.run_path = self._board_path(run) if run else ("/main.py" if reset else None)
        self.emit = on_event
        self.stop = stop or threading.Event()
        self.debounce_ms = debounce_ms
        self.connect = connect
        self.rules = IgnoreRules.from_folder(src)
        self.target: Target | None = None
        self.runner: CodeRunner | None = None
        self.changes: queue.Queue[set[str]] = queue.Queue()
        self.ready = threading.Event()  # set once the first sync is done (tests wait on it)
        self._watching = threading.Event()  # set once file events are being delivered
        self._running = False
        self._failed = False
        self._pending = bytearray()
        self._stage = 0  # of a running program's output: 0 stdout, 1 traceback, 2 prompt

    def _board_path(self, run: str) -> str:
        local = Path(run)
        if not local.is_absolute():
            local = self.src / run
        try:
            return norm(local.resolve().relative_to(self.src.resolve()).as_posix(), self.dest)
        except ValueError:
            return norm(run)  # not in SRC: a path on the board

    # ----------------------------------------------------------------- the loop

    def run(self) -> None:
        """Watch until ``stop``; raise only for a first connection that fails."""
        thread = threading.Thread(target=self._watch_files, name="mpkick-watch", daemon=True)
        thread.start()
        try:
            # A save between the first scan and a live watch would be lost: wait for it.
            self._watching.wait(10)
            self._open()
            self._guarded(lambda: self._sync(resync=False))
            self.ready.set()
            while not self.stop.is_set():
                self._guarded(self._tick)
        finally:
            self.stop.set()
            self._close()
            thread.join(2)

    def _tick(self) -> None:
        self._listen(0.05)
        batch = self._take_changes()
        if batch is None:
            return
        if self._running:
            self._interrupt()
        self._sync(resync=False)

    def _guarded(self, step: Callable[[], None]) -> None:
        """Run ``step``; a lost board is reconnected and resynced, other failures are a line."""
        try:
            step()
        except (_Lost, *LINK_ERRORS) as exc:
            self._recover(str(exc) or "the board restarted")
        except (InputError, OSError) as exc:
            self.emit(Notice(_describe(exc), error=True))

    # ----------------------------------------------------------------- file events

    def _watch_files(self) -> None:
        import watchfiles

        root = self.src.resolve()

        def wanted(_change: object, path: str) -> bool:
            try:
                rel = Path(path).resolve().relative_to(root).as_posix()
            except ValueError:
                return False
            return not self.rules.ignored(rel, Path(path).is_dir())

        # An empty batch after each quiet 200 ms: the first one says the watch is live.
        for batch in watchfiles.watch(root, watch_filter=wanted, stop_event=self.stop,
                                      debounce=self.debounce_ms, step=20, rust_timeout=200,
                                      yield_on_timeout=True, raise_interrupt=False):
            self._watching.set()
            if batch:
                self.changes.put({p for _c, p in batch})

    def _take_changes(self) -> set[str] | None:
        try:
            batch = self.changes.get_nowait()
        except queue.Empty:
            return None
        time.sleep(self.debounce_ms / 1000)  # saves come in bursts (editor, formatter, git)
        while True:
            try:
                batch |= self.changes.get_nowait()
            except queue.Empty:
                return batch

    # ----------------------------------------------------------------- the target

    def _open(self) -> None:
        target = self.connect(self.url)
        runner = target.runner()
        if self.run_path and runner is None:
            target.close()
            raise InputError(f"{self.url} does not run code: watch it without --run/--reset")
        self.target, self.runner = target, runner
        self._running = False

    def _close(self) -> None:
        target, self.target = self.target, None
        if target is None:
            return
        with contextlib.suppress(Exception):
            if self._running and self.runner is not None:
                self.runner.interrupt()
        target.close()

    def _recover(self, reason: str) -> None:
        self.emit(Notice(f"lost the board ({reason.rstrip('.')}); reconnecting"))
        self._close()
        for attempt in range(10**9):
            if self.stop.wait(BACKOFF[min(attempt, len(BACKOFF) - 1)]):
                return
            try:
                self._open()
                self._sync(resync=True)
                return
            except (_Lost, *LINK_ERRORS, OSError):
                self._close()

    def _sync(self, resync: bool) -> None:
        """Push what differs (``kick`` on the open target); then run the program when asked."""
        assert self.target is not None
        result = kick(target=self.target, src=self.src, dest=self.dest, delete=self.delete)
        done = result.plan
        if not done.empty:
            self.emit(Pushed([a.path for a in done.writes],
                             [a.path for a in done.of(DELETE, RMDIR)], result.bytes_sent,
                             result.wire_bytes, result.seconds, dict(result.modes), resync))
        elif resync:
            self.emit(Notice("board back, already in sync"))
        if self.run_path and (not done.empty or resync or not self._running):
            self._start_program()

    # ----------------------------------------------------------------- running the program

    def _start_program(self) -> None:
        assert self.runner is not None and self.run_path is not None
        self.runner.soft_reset()
        self.runner.run_file(self.run_path)
        self._running = True
        self._stage = 0
        self._pending.clear()

    def _interrupt(self) -> None:
        assert self.runner is not None
        self._running = False
        self.runner.interrupt()

    def _listen(self, timeout: float) -> None:
        """Stream a running program's output; while idle, notice a board that restarted."""
        if self.runner is None:
            self.stop.wait(timeout)  # an image: nothing runs, nothing to hear
            return
        data = self.runner.take(timeout)
        if not data:
            return
        if not self._running:
            raise _Lost("the board restarted" if b"soft reboot" in data or b"MicroPython" in data
                        else "the board spoke unasked")
        self._pending += data
        while self._pending and self._running:
            if self._stage == 2:
                if self._pending[:1] == b">":
                    self._running = False
                    self.emit(Finished(ok=not self._failed))
                del self._pending[:1]
                continue
            end = self._pending.find(b"\x04")
            chunk = bytes(self._pending if end < 0 else self._pending[:end])
            if chunk:
                self.emit(Output(chunk.replace(b"\r\n", b"\n"), error=self._stage == 1))
                if self._stage == 1:
                    self._failed = True
            if end < 0:
                self._pending.clear()
                return
            del self._pending[:end + 1]
            if self._stage == 0:
                self._failed = False
            self._stage += 1


def watch(url: str, src: Path, dest: str = "/", **options: Any) -> None:
    """Watch ``src`` and keep the board in step until Ctrl-C (or ``stop``); see ``Watcher``."""
    Watcher(url, src, dest, **options).run()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__
