"""Carrying a plan out on any target, through the writer the target declares.

A board's writer is one binary session (one exec), so a push costs one exchange to learn the
board's state and one to change it, however many files move; an image's writer saves the
file once at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import InputError, NoSpaceError
from ..target import Progress, Target, Writer
from ..units import human
from .plan import CREATE, DELETE, MKDIR, RMDIR, UNCHANGED, UPDATE, Action, Plan
from .scan import LocalFile

#: Called for each action with the bytes just sent (0 when an action starts).
ApplyProgress = Callable[[Action, int], None]

#: How one changed file's bytes travel (the default sends them whole with ``writer.put``);
#: a delta transfer plugs in here.
Transfer = Callable[[Writer, Action, LocalFile, Progress], None]


def send_whole(writer: Writer, action: Action, file: LocalFile, progress: Progress) -> None:
    writer.put(action.path, file.data, progress)


@dataclass
class Result:
    """What a push did (or, with ``dry_run``, would do: see ``plan``)."""

    plan: Plan
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    bytes_sent: int = 0  # file content handed to the target
    wire_bytes: int = 0  # bytes that crossed the link (compressed, framed)
    seconds: float = 0.0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)  # which transfer path was chosen
    modes: dict[str, str] = field(default_factory=dict)  # path -> warm / cold / whole (deltas)
    written: set[str] = field(default_factory=set, repr=False)  # paths counted as written

    def summary(self) -> str:
        return (f"{self.created} created, {self.updated} updated, {self.deleted} deleted, "
                f"{self.unchanged} unchanged; {human(self.bytes_sent)} sent, "
                f"{human(self.wire_bytes)} on the wire, {self.seconds:.2f} s")


def space_needed(plan: Plan, block_size: int) -> int:
    """Bytes of free flash the plan needs, counted in whole blocks as littlefs allocates them.

    Each write needs its new size while the old copy still exists (temp file, then rename), so
    the largest update counts whole on top of the growth of all others; a new folder costs a
    metadata pair; deletions run first and give their blocks back.
    """
    def blocks(n: int) -> int:
        return -(-n // block_size) * block_size if n else 0

    grow = sum(blocks(a.size) - blocks(a.old_size) for a in plan.writes)
    peak = max((blocks(a.old_size) for a in plan.of(UPDATE)), default=0)
    freed = sum(blocks(a.old_size) for a in plan.of(DELETE))
    dirs = 2 * block_size * len(plan.of(MKDIR))
    return max(0, grow + peak + dirs - freed) + 2 * block_size


def check_space(target: Target, plan: Plan) -> None:
    """Refuse, before anything is written, a plan the target's free space cannot hold."""
    if not (plan.writes or plan.of(MKDIR)) or not target.features.usage:
        return  # a target that cannot say (no os.statvfs): ENOSPC will name the file instead
    usage = target.usage()
    need = space_needed(plan, usage.block_size or 4096)
    if need > usage.free:
        raise NoSpaceError(
            f"the push needs about {human(need)} of flash but only {human(usage.free)} is free: "
            "nothing was written; remove files from the board (push --delete), ignore more "
            "files, or push less")


def apply(target: Target, plan: Plan, progress: ApplyProgress | None = None,
          transfer: Transfer | None = None, result: Result | None = None) -> Result:
    """Carry ``plan`` out on ``target`` through its writer (on a board, one binary session).

    ``result``: what earlier attempts of the same push did before they failed (the board ran
    out of RAM); this attempt adds to it, so the push reports all it wrote, each file once,
    and not the files an earlier attempt wrote as unchanged.
    """
    start = time.monotonic()
    if result is None:
        result = Result(plan)
    result.unchanged = sum(a.path not in result.written for a in plan.of(UNCHANGED))
    result.plan = plan
    if plan.empty:
        result.seconds = time.monotonic() - start
        return result
    if plan.of(MKDIR) and not target.features.folders:
        raise InputError("this board's flash has no folders (no os.mkdir): push a flat folder, "
                         "or give a DEST folder that exists")
    check_space(target, plan)
    local = plan.local
    files = local.files if local is not None else {}
    send = transfer or send_whole
    report = progress or (lambda _a, _n: None)
    fresh = plan.dest if any(a.path == plan.dest for a in plan.of(MKDIR)) else None
    with target.writer(fresh) as writer:
        try:
            for action in plan.actions:
                if action.kind != UNCHANGED:
                    report(action, 0)
                    _one(writer, action, files, send, report, result)
        finally:
            result.wire_bytes += writer.wire_bytes
    result.seconds = time.monotonic() - start
    return result


def _one(writer: Writer, action: Action, files: dict[str, LocalFile], send: Transfer,
         report: ApplyProgress, result: Result) -> None:
    if action.kind == DELETE:
        writer.remove(action.path)
        result.deleted += 1
    elif action.kind == RMDIR:
        writer.rmdir(action.path)
        result.deleted += 1
    elif action.kind == MKDIR:
        writer.mkdir(action.path)
    else:
        def step(n: int) -> None:
            result.bytes_sent += n
            report(action, n)

        send(writer, action, files[action.rel], step)
        if action.path in result.written:
            return  # an earlier attempt wrote it, and counted it
        result.written.add(action.path)
        if action.kind == CREATE:
            result.created += 1
        else:
            result.updated += 1
