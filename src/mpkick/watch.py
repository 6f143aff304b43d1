"""``watch``: every save reaches the board in a blink, and the program restarts if asked.

Native file events (watchfiles) wake us; a burst of saves is one push. The board's state is
kept as a model after the first sync, so a push costs no listing: the plan compares the local
tree with the model and the changed files travel as deltas. A board that resets or vanishes is
reconnected with backoff and resynced against its real tree. Nothing here prints: every
happening is an event for the caller's callback.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .board.board import Board
from .errors import BoardError, ConnectError, DeviceTimeout, InputError, ProtocolError
from .ignore import IgnoreRules
from .sync.delta import ContentCache, DeltaTransfer, board_id
from .sync.plan import CREATE, DELETE, MKDIR, RMDIR, UPDATE, Plan, apply, plan, scan_local
from .sync.state import missing_folders, remote_tree
from .target import Entry, norm

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
    """Keeps ``dest`` on the board at ``url`` equal to ``src`` until ``stop`` is set."""

    def __init__(self, url: str, src: Path, dest: str = "/", *, delete: bool = False,
                 run: str | None = None, reset: bool = False,
                 on_event: Callable[[Event], None] = lambda _e: None,
                 stop: threading.Event | None = None, debounce_ms: int = 50,
                 connect: Callable[[str], Board] = Board.connect) -> None:
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
        self.connect_board = connect
        self.rules = IgnoreRules.from_folder(src)
        self.board: Board | None = None
        self.model: list[Entry] = []
        self.cache: ContentCache | None = None
        self.changes: queue.Queue[set[str]] = queue.Queue()
        self.ready = threading.Event()  # set once the first sync is done (tests wait on it)
        self._running = False
        self._failed = False
        self._missing: list[str] = []
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
            with contextlib.suppress(*LINK_ERRORS, OSError):
                self._refresh_model()  # a failed push may have left anything: look again

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

        for batch in watchfiles.watch(root, watch_filter=wanted, stop_event=self.stop,
                                      debounce=self.debounce_ms, step=20, rust_timeout=200,
                                      yield_on_timeout=False, raise_interrupt=False):
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

    # ----------------------------------------------------------------- the board

    def _open(self) -> None:
        self.board = self.connect_board(self.url)
        self.cache = ContentCache(board_id(self.board))
        self._running = False
        self._refresh_model()

    def _close(self) -> None:
        board, self.board = self.board, None
        if board is None:
            return
        with contextlib.suppress(Exception):
            if self._running:
                board.interrupt()
        board.close()

    def _refresh_model(self) -> None:
        assert self.board is not None
        missing = missing_folders(self.board, self.dest)
        self.model = remote_tree(self.board, self.dest) if not missing else []
        self._missing = missing

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
        """Push what differs from the model; then run the program when asked."""
        assert self.board is not None and self.cache is not None
        local = scan_local(self.src, self.rules)
        the_plan = plan(local, self.model, self.dest, self.delete,
                        create_dest=self._missing if not self.model else ())
        if not the_plan.empty:
            transfer = DeltaTransfer(self.board, self.cache)
            transfer.prepare(the_plan)
            result = apply(self.board, the_plan, transfer=transfer)
            self._advance(the_plan)
            modes = transfer.sender.stats.files if transfer.sender is not None else {}
            self.emit(Pushed([a.path for a in the_plan.writes],
                             [a.path for a in the_plan.of(DELETE, RMDIR)], result.bytes_sent,
                             result.wire_bytes, result.seconds, dict(modes), resync))
        elif resync:
            self.emit(Notice("board back, already in sync"))
        if self.run_path and (not the_plan.empty or resync or not self._running):
            self._start_program()

    def _advance(self, done: Plan) -> None:
        """The model after ``done``: no listing needed to plan the next push."""
        entries = {e.path: e for e in self.model}
        local = done.local
        for a in done.actions:
            if a.kind in (DELETE, RMDIR):
                entries.pop(a.path, None)
            elif a.kind == MKDIR:
                entries[a.path] = Entry(a.path, True)
            elif a.kind in (CREATE, UPDATE) and local is not None:
                f = local.files[a.rel]
                entries[a.path] = Entry(a.path, False, f.size, None, f.sha256)
        self.model = list(entries.values())
        self._missing = []

    # ----------------------------------------------------------------- running the program

    def _start_program(self) -> None:
        assert self.board is not None and self.run_path is not None
        self.board.soft_reset()
        self.board.repl.send_code(
            f"exec(open({self.run_path!r}).read(), {{'__name__': '__main__'}})".encode())
        self._running = True
        self._stage = 0
        self._pending.clear()

    def _interrupt(self) -> None:
        assert self.board is not None
        self._running = False
        self.board.interrupt()

    def _listen(self, timeout: float) -> None:
        """Stream a running program's output; while idle, notice a board that restarted."""
        assert self.board is not None
        repl = self.board.repl
        data = repl.take(timeout)
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


def watch(url: str, src: Path, dest: str = "/", **options: object) -> None:
    """Watch ``src`` and keep the board in step until Ctrl-C (or ``stop``); see ``Watcher``."""
    Watcher(url, src, dest, **options).run()  # type: ignore[arg-type]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__
