"""Many boards at once: the same job on every board of a selection, each in its own thread.

Each board is bound by its own wire, so boards run in parallel (``jobs`` at a time, default
all) and a push to eight boards takes about as long as a push to one. A failing board does not
stop the others: its exception becomes its ``Outcome``. Nothing here prints; a job reports
through its ``BoardJob`` (status, progress, output) to ``Events`` the caller supplies, and the
caller draws them (a live table on a terminal, prefixed lines on a pipe).

Ctrl-C arrives in the main thread only. ``run`` then raises ``KeyboardInterrupt`` inside every
running job, where a single board's job would have met it (a transport read, a session), so
each board gets the clean-up a single board gets (its session ended, its program interrupted,
the raw REPL left): every board is left responsive. Boards not yet started are not started.
``run`` raises ``Interrupted`` (a ``KeyboardInterrupt``) with every outcome once all have ended.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import describe
from .selection import BoardRef

T = TypeVar("T")


class Events:
    """What a fleet run tells its caller; every method may be called from any job's thread."""

    def on_start(self, ref: BoardRef) -> None:
        """The board's job began."""

    def on_status(self, ref: BoardRef, text: str) -> None:
        """A new phase: "connecting", "pushing 12 files" ..."""

    def on_progress(self, ref: BoardRef, done: int, total: int) -> None:
        """``done`` of ``total`` units (bytes, usually) of the current phase."""

    def on_output(self, ref: BoardRef, data: bytes) -> None:
        """What the board printed."""

    def on_done(self, outcome: Outcome[Any]) -> None:
        """The board's job ended, well or not."""


class BoardJob:
    """What a job gets: its board, and where to report how it is going."""

    def __init__(self, ref: BoardRef, events: Events) -> None:
        self.ref = ref
        self._events = events

    def status(self, text: str) -> None:
        self._events.on_status(self.ref, text)

    def progress(self, done: int, total: int) -> None:
        self._events.on_progress(self.ref, done, total)

    def output(self, data: bytes) -> None:
        self._events.on_output(self.ref, data)


@dataclass
class Outcome(Generic[T]):
    """How one board's job ended: ``value`` on success, else ``error``."""

    ref: BoardRef
    value: T | None = None
    error: BaseException | None = None
    seconds: float = 0.0
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.started and self.error is None

    @property
    def interrupted(self) -> bool:
        return isinstance(self.error, KeyboardInterrupt) or not self.started

    @property
    def reason(self) -> str:
        """Why it failed, in one line (empty when it did not)."""
        if not self.started:
            return "not started (interrupted)"
        if self.error is None:
            return ""
        if isinstance(self.error, KeyboardInterrupt):
            return "interrupted"
        return describe(self.error)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended a fleet run; ``outcomes`` says what each board got done."""

    def __init__(self, outcomes: list[Outcome[Any]]) -> None:
        super().__init__("interrupted")
        self.outcomes = outcomes


def failures(outcomes: Sequence[Outcome[T]]) -> list[Outcome[T]]:
    return [o for o in outcomes if not o.ok]


@dataclass
class _Slot:
    """A worker thread and the board it is on (``busy`` while a job runs)."""

    ident: int = 0
    busy: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # the worker has ended


def run(refs: Sequence[BoardRef], job: Callable[[BoardJob], T], jobs: int | None = None,
        events: Events | None = None) -> list[Outcome[T]]:
    """Run ``job`` for every board of ``refs``, ``jobs`` at a time; one outcome per board, in
    the order of ``refs``."""
    events = events or Events()
    outcomes: list[Outcome[T] | None] = [None] * len(refs)
    pending = list(range(len(refs)))
    lock = threading.Lock()
    cancel = threading.Event()
    count = max(1, min(jobs or len(refs), len(refs)))
    slots = [_Slot() for _ in range(count)]

    def one(index: int) -> Outcome[T]:
        ref = refs[index]
        start = time.monotonic()
        try:
            events.on_start(ref)
            value = job(BoardJob(ref, events))
            return Outcome(ref, value, seconds=time.monotonic() - start)
        except BaseException as exc:  # one board's failure (or Ctrl-C) is its outcome
            return Outcome(ref, error=exc, seconds=time.monotonic() - start)

    def worker(slot: _Slot) -> None:
        slot.ident = threading.get_ident()
        try:
            while True:
                with lock:
                    if cancel.is_set() or not pending:
                        return
                    index = pending.pop(0)
                    slot.busy = True
                outcome = one(index)
                _leave(slot, lock)
                outcomes[index] = outcome
                _quietly(events.on_done, outcome)
        finally:
            slot.done.set()

    threads = [threading.Thread(target=worker, args=(s,), name=f"mpkick-fleet-{i}", daemon=True)
               for i, s in enumerate(slots)]
    try:
        for t in threads:
            t.start()
        _wait(slots)
    except KeyboardInterrupt:
        cancel.set()
        for slot, t in zip(slots, threads, strict=True):
            if t.ident is None:  # Ctrl-C came before this worker began: it takes no job
                slot.done.set()
        while True:
            with lock:
                for slot in slots:
                    if slot.busy:
                        _raise_in(slot.ident, KeyboardInterrupt)
            try:
                _wait(slots)
                break
            except KeyboardInterrupt:
                continue  # another Ctrl-C: pass it on too, as a second Ctrl-C would be
        done = [o if o is not None else Outcome(refs[i], started=False)
                for i, o in enumerate(outcomes)]
        for o in done:
            if not o.started:
                _quietly(events.on_done, o)
        raise Interrupted(done) from None
    return [o for o in outcomes if o is not None]


def _wait(slots: list[_Slot]) -> None:
    """Until every worker has ended; a short wait keeps Ctrl-C deliverable. Not
    ``Thread.join``: on Python 3.11 a Ctrl-C that lands inside a join marks the thread ended
    while it still runs, and the process would exit in the middle of a board's clean-up."""
    for slot in slots:
        while not slot.done.wait(0.05):
            pass


def _leave(slot: _Slot, lock: threading.Lock) -> None:
    """The job is over: no more interrupts for this thread, and none left pending (one raised
    just as the job returned would otherwise kill the worker)."""
    while True:
        try:
            with lock:
                slot.busy = False
                _raise_in(slot.ident, None)
            return
        except KeyboardInterrupt:
            continue


def _raise_in(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next bytecode (None: take back a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident),
                                               ctypes.py_object(exc) if exc else None)


def _quietly(callback: Callable[[Outcome[Any]], None], outcome: Outcome[Any]) -> None:
    with contextlib.suppress(Exception):  # a renderer's bug must not lose other boards' results
        callback(outcome)
