"""``kick``: push a project tree to a board or an image, the library call behind ``mpkick push``.

Local problems (SRC missing, names a board cannot hold, syntax errors with ``compile``) are
found before the target is opened, so a mistake costs no round trip and touches nothing.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .board import OutOfMemory
from .boardstate import HostRecord, is_board, missing_folders, remote_tree, verify_weak, weak_board
from .channel import file_digest
from .errors import InputError, VerifyError
from .ignore import IgnoreRules
from .ports import open_target
from .sync import ApplyProgress, LocalTree, Plan, Result, Transfer, apply, plan, scan_local
from .target import Target, norm


def kick(port: str = "auto", src: str | Path = ".", dest: str = "/", delete: bool = False,
         dry_run: bool = False, ignore: Iterable[str] = (), follow_links: bool = False,
         progress: ApplyProgress | None = None, compile: bool = False, verbose: int = 0, *,
         target: Target | None = None, transfer: Transfer | None = None,
         mpy_cross: str | None = None, log: Callable[[str], None] | None = None,
         on_plan: Callable[[Plan], None] | None = None, **kw: Any) -> Result:
    """Make ``dest`` on the board at ``port`` hold the tree ``src``; return what was done.

    ``target``: an open Target to use instead of ``port`` (left open). ``transfer``: how a
    changed file's bytes travel (see ``sync.Transfer``). ``on_plan``: sees the plan before it
    runs (a progress bar learns its totals there). ``compile``: send ``.py`` files (but
    boot.py and main.py) as ``.mpy`` built for the board's bytecode version.
    """
    if kw:
        raise TypeError(f"kick() got unexpected options: {', '.join(sorted(kw))}")
    start = time.monotonic()
    say = log or (lambda _msg: None)
    dest = norm(dest)
    src_path = Path(src)
    if not src_path.exists():
        raise InputError(f"{src} does not exist: give the folder to push (SRC)")
    root = src_path if src_path.is_dir() else src_path.parent
    local = scan_local(src_path, IgnoreRules.from_folder(root, ignore), follow_links)
    for rel in local.skipped:
        say(f"left out {rel}: a link pointing outside {src} (use --follow-links)")
    own = target is None
    if target is None:
        target = open_target(port, verbose, say)
    try:
        if compile:
            local = compile_tree(local, target, mpy_cross, say)
        notes = transfer_notes(target)
        for note in notes:
            say(note)
        verified = False
        floor = 0
        while True:
            try:
                result = _sync(target, local, dest, delete, dry_run, progress, transfer, on_plan)
                break
            except VerifyError as exc:
                if verified:
                    raise
                verified = True
                say(f"{exc.filename}: the board's copy was not what its listing said (changed "
                    "on the board?); listing the board again and pushing again")
            except OutOfMemory:
                if floor >= FLOOR_TRIES:
                    raise
                floor += 1  # a listing or a merge that found the heap in pieces: once more
                say("the board ran out of RAM listing its files; asking again")
            except OSError as exc:
                step = _squeeze(target, exc)
                if step is None and exc.errno == errno.ENOMEM and floor < FLOOR_TRIES:
                    # The smallest frames already: a fresh session starts on a heap without
                    # the last one's garbage, and the files done so far are not sent again.
                    floor += 1
                    step = "the smallest frames again, for the files still to send"
                if step is None:
                    raise
                say(f"{exc.filename or 'the board'}: the board ran out of RAM; pushing again "
                    f"with {step} (slower)")
        result.notes = notes
        result.seconds = time.monotonic() - start
        return result
    finally:
        if own:
            target.close()


def _sync(target: Target, local: LocalTree, dest: str, delete: bool, dry_run: bool,
          progress: ApplyProgress | None, transfer: Transfer | None,
          on_plan: Callable[[Plan], None] | None) -> Result:
    """List the target, plan, and (unless ``dry_run``) apply: one attempt of ``kick``."""
    missing = missing_folders(target, dest)
    record = HostRecord.for_board(target) if weak_board(target) else None
    remote = remote_tree(target, dest, record) if not missing else []
    if missing and hasattr(target, "expect_empty"):
        target.expect_empty(dest)
    the_plan = plan(local, remote, dest, delete, create_dest=missing)
    if on_plan is not None:
        on_plan(the_plan)
    if dry_run:
        return Result(the_plan, unchanged=len(the_plan.of("unchanged")), dry_run=True)
    if transfer is None and record is None and is_board(target):
        from .delta import DeltaTransfer

        transfer = DeltaTransfer(target)  # type: ignore[arg-type]
    prepare = getattr(transfer, "prepare", None)
    if callable(prepare):
        prepare(the_plan)  # a delta asks the board for block signatures, all in one go
    result = apply(target, the_plan, progress, transfer)
    if record is not None and not the_plan.empty:
        _verify_and_record(target, record, local, the_plan)
    return result


#: Sessions that may run out of RAM at the smallest frames, each one getting further.
FLOOR_TRIES = 4


def _squeeze(target: Target, exc: OSError) -> str | None:
    """After the board ran out of RAM (ENOMEM) in a session: the smaller frames and window
    the next try takes, or None when there is nothing left to give up (or no RAM ran out)."""
    if exc.errno != errno.ENOMEM or not is_board(target):
        return None
    return target.caps.squeezed()  # type: ignore[attr-defined, no-any-return]


def compile_tree(local: LocalTree, target: Target, mpy_cross: str | None,
                 log: Callable[[str], None]) -> LocalTree:
    """``local`` with its ``.py`` files (but boot.py / main.py) as ``.mpy`` for the target's
    firmware; every file is compiled before anything is sent, so a syntax error stops the push
    with nothing written."""
    from .compile import Compiler, should_compile, twin

    info = getattr(target, "info", None)
    mpy = info().mpy if callable(info) else None
    compiler = Compiler.for_board(mpy, mpy_cross)
    out = LocalTree(local.root, dirs=list(local.dirs), skipped=list(local.skipped))
    for rel, file in local.files.items():
        if should_compile(rel):
            data = compiler.compile(file.data, rel, origin=str(file.origin))
            out.add(twin(rel), data, file.origin)
        elif rel not in out.files:
            out.files[rel] = file
    log(f"compiled with {compiler.tool.path} for .mpy {compiler.emits} "
        f"({compiler.runs} compiled, {compiler.hits} from the cache)")
    return out


def transfer_notes(target: Target) -> list[str]:
    """Which transfer path this target gets, for ``--verbose``."""
    if not is_board(target):
        return [f"target is a filesystem image ({type(target).__name__}): files are written "
                "directly, each to a temporary name then renamed"]
    caps = target.caps  # type: ignore[attr-defined]
    compress = (f"deflate, window 2^{caps.wbits}" if caps.deflate else
                f"zlib, window 2^{caps.wbits}" if caps.zlib else "off (no deflate or zlib)")
    return [
        f"transfer: binary frames of {caps.chunk} bytes with "
        f"{'CRC-32' if caps.crc32 else 'sum'} checks; compression {compress}",
        "compare: " + ("sha256 on the board, manifest keeps unchanged files from rehashing"
                       if caps.hashlib else
                       "no hashlib: size + weak sum + this host's record of what it pushed"),
        "write: " + ("temporary name, verified, renamed over the old file (atomic)"
                     if caps.rename and caps.hashlib else
                     "temporary name, renamed; verified after writing by weak sum"
                     if caps.rename else
                     "in place (no os.rename), verified after writing"),
    ]


def _verify_and_record(board: Any, record: HostRecord, local: LocalTree, done: Any) -> None:
    """Weak-hash boards: check every written file's sum, then remember what they hold."""
    written = {a.path: local.files[a.rel].data for a in done.writes}
    entries = verify_weak(board, done.dest, written)
    pushed = {a.path: (len(f.data), file_digest(f.data, False), f.sha256)
              for a in done.actions if a.rel and (f := local.files[a.rel])}
    record.update(entries, pushed)
