"""``kick``: push a project tree to a board or an image, the library call behind ``mpkick push``.

Local problems (SRC missing, names a board cannot hold, syntax errors with ``compile``) are
found before anything is written, so a mistake touches nothing. SRC is read while the target is
opened and lists its files: on a large tree that finds nothing to send, the two take about as
long, so they should not add up.
"""

from __future__ import annotations

import errno
import functools
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, overload

from .board.board import OutOfMemory
from .errors import InputError, VerifyError
from .ignore import IgnoreRules
from .memory.record import HostRecord
from .open import open_target
from .protocol.channel import file_digest
from .sync.apply import ApplyProgress, Result, Transfer, apply
from .sync.plan import Plan, plan
from .sync.scan import LocalTree, Scanning
from .sync.state import missing_folders, remote_tree, verify_weak
from .target import Target, norm

if TYPE_CHECKING:
    from .board.board import Board
    from .fleet.parallel import Events, Outcome


@overload
def kick(port: str = ..., src: str | Path = ..., dest: str = ..., delete: bool = ...,
         dry_run: bool = ..., ignore: Iterable[str] = ..., follow_links: bool = ...,
         progress: ApplyProgress | None = ..., compile: bool = ..., verbose: int = ..., *,
         target: Target | None = ..., transfer: Transfer | None = ...,
         mpy_cross: str | None = ..., log: Callable[[str], None] | None = ...,
         on_plan: Callable[[Plan], None] | None = ..., romfs: Iterable[str] = ...,
         **kw: Any) -> Result: ...


@overload
def kick(port: Sequence[str], src: str | Path = ..., dest: str = ..., delete: bool = ...,
         dry_run: bool = ..., ignore: Iterable[str] = ..., follow_links: bool = ...,
         progress: None = ..., compile: bool = ..., verbose: int = ..., *,
         target: None = ..., transfer: None = ..., mpy_cross: str | None = ...,
         log: Callable[[str], None] | None = ..., on_plan: None = ...,
         romfs: Iterable[str] = ..., **kw: Any) -> list[Outcome[Result]]: ...


def kick(port: str | Sequence[str] = "auto", src: str | Path = ".", dest: str = "/",
         delete: bool = False, dry_run: bool = False, ignore: Iterable[str] = (),
         follow_links: bool = False, progress: ApplyProgress | None = None,
         compile: bool = False, verbose: int = 0, *,
         target: Target | None = None, transfer: Transfer | None = None,
         mpy_cross: str | None = None, log: Callable[[str], None] | None = None,
         on_plan: Callable[[Plan], None] | None = None, romfs: Iterable[str] = (),
         **kw: Any) -> Result | list[Outcome[Result]]:
    """Make ``dest`` on the board at ``port`` hold the tree ``src``; return what was done.

    ``target``: an open Target to use instead of ``port`` (left open). ``transfer``: how a
    changed file's bytes travel (see ``sync.Transfer``). ``on_plan``: sees the plan before it
    runs (a progress bar learns its totals there). ``compile``: send ``.py`` files (but
    boot.py and main.py) as ``.mpy`` built for the board's bytecode version. ``romfs``:
    subtrees of ``src`` (``"lib/"``) that go, compiled, into the board's ROM partition at their
    paths (``lib/`` becomes ``/rom/lib``) instead of onto its filesystem; the result's notes
    say, for a module in both places, which one the board imports.

    ``port`` a list (``["/dev/ttyACM0", "id:e661", "all"]``): every board at once, and one
    ``fleet.Outcome`` per board, in order (``.value`` the Result, or ``.error``); one board's
    failure does not stop the others. ``jobs=N`` limits how many run at once, ``events=``
    (``fleet.Events``) hears each board's progress.
    """
    if not isinstance(port, str):
        if progress or on_plan or target or transfer:
            raise TypeError("kick(port=[...]) runs many boards: progress, on_plan, target and "
                            "transfer are one board's; pass events=fleet.Events() instead")
        return _kick_many(port, src=src, dest=dest, delete=delete, dry_run=dry_run,
                          ignore=list(ignore), follow_links=follow_links, compile=compile,
                          verbose=verbose, mpy_cross=mpy_cross, log=log, romfs=list(romfs),
                          **kw)
    if kw:
        raise TypeError(f"kick() got unexpected options: {', '.join(sorted(kw))}")
    start = time.monotonic()
    say = log or (lambda _msg: None)
    dest = norm(dest)
    src_path = Path(src)
    if not src_path.exists():
        raise InputError(f"{src} does not exist: give the folder to push (SRC)")
    root = src_path if src_path.is_dir() else src_path.parent
    rules = IgnoreRules.from_folder(root, ignore)
    own = target is None
    scanning = Scanning(src_path, rules, follow_links)

    @functools.cache
    def scanned() -> LocalTree:
        tree = scanning.result()
        for rel in tree.skipped:
            say(f"left out {rel}: a link pointing outside {src} (use --follow-links)")
        return tree

    try:
        if target is None:
            target = open_target(port, verbose, say)
    except BaseException:
        if isinstance(scanning.error(), InputError):
            scanned()  # the local mistake first: it is the one to fix before any board
        raise
    try:
        local: LocalTree | Callable[[], LocalTree] = scanned
        rom_image = rom_tree = None
        if romfs or compile:
            tree, rom_tree = split_romfs(scanned(), romfs)
            if rom_tree is not None:
                rom_image = build_rom(rom_tree, target, mpy_cross, say)
            local = compile_tree(tree, target, mpy_cross, say) if compile else tree
        notes = target.notes()
        for note in notes:
            say(note)
        result = sync(target, local, dest, delete=delete, dry_run=dry_run,
                      progress=progress, transfer=transfer, on_plan=on_plan, log=say)
        result.notes = notes
        if rom_image is not None and rom_tree is not None:
            result.notes += push_rom(target, rom_image, rom_tree, dry_run, say)
        result.seconds = time.monotonic() - start
        return result
    finally:
        if own:
            target.close()


def sync(target: Target, local: LocalTree | Callable[[], LocalTree], dest: str, *,
         delete: bool = False, dry_run: bool = False, progress: ApplyProgress | None = None,
         transfer: Transfer | None = None, on_plan: Callable[[Plan], None] | None = None,
         log: Callable[[str], None] = lambda _msg: None) -> Result:
    """Make ``dest`` on an open target hold ``local``: list, plan, apply, verify, and try
    again where a board ran out of RAM or its listing was stale. What ``kick``, ``watch``
    and ``install`` all push through."""
    verified = False
    floor = 0
    done = Result(Plan(norm(dest)))  # every attempt adds what it wrote
    while True:
        try:
            result = _sync(target, local, dest, delete, dry_run, progress, transfer, on_plan,
                           done)
            break
        except VerifyError as exc:
            if verified:
                raise
            verified = True
            log(f"{exc.filename}: the board's copy was not what its listing said (changed "
                "on the board?); listing the board again and pushing again")
        except OutOfMemory:
            if floor >= FLOOR_TRIES:
                raise
            floor += 1  # a listing or a merge that found the heap in pieces: once more
            log("the board ran out of RAM listing its files; asking again")
        except OSError as exc:
            step = target.relieve(exc)
            if step is None and exc.errno == errno.ENOMEM and floor < FLOOR_TRIES:
                # The smallest frames already: a fresh session starts on a heap without
                # the last one's garbage, and the files done so far are not sent again.
                floor += 1
                step = "the smallest frames again, for the files still to send (slower)"
            if step is None:
                raise
            log(f"{exc.filename or 'the board'}: the board ran out of RAM; pushing again "
                f"with {step}")
    return result


def _kick_many(ports: Sequence[str], jobs: int | None = None, events: Events | None = None,
               **options: Any) -> list[Outcome[Result]]:
    from .fleet.parallel import run
    from .fleet.selection import resolve

    refs = resolve(ports)
    if not refs:
        raise InputError("kick(port=[...]) needs at least one board")
    return run(refs, lambda job: kick(port=job.ref.url, **options), jobs, events)


def _sync(target: Target, source: LocalTree | Callable[[], LocalTree], dest: str,
          delete: bool, dry_run: bool, progress: ApplyProgress | None,
          transfer: Transfer | None, on_plan: Callable[[Plan], None] | None,
          done: Result) -> Result:
    """List the target, plan, and (unless ``dry_run``) apply: one attempt of ``kick``."""
    features = target.features
    missing = missing_folders(target, dest)
    record = None if features.strong_hashes else HostRecord(target.identity())
    remote = remote_tree(target, dest, record) if not missing else []
    local = source if isinstance(source, LocalTree) else source()
    the_plan = plan(local, remote, dest, delete, create_dest=missing)
    if on_plan is not None:
        on_plan(the_plan)
    if dry_run:
        return Result(the_plan, unchanged=len(the_plan.of("unchanged")), dry_run=True)
    delta = None
    if transfer is None and features.delta:
        from .sync.delta import DeltaTransfer

        delta = DeltaTransfer(target)
        delta.prepare(the_plan)  # block signatures, all in one go, before the writer opens
        transfer = delta
    result = apply(target, the_plan, progress, transfer, done)
    if delta is not None and delta.sender is not None:
        result.modes = dict(delta.sender.stats.files)
    if record is not None and not the_plan.empty:
        _verify_and_record(target, record, local, the_plan)
    return result


#: Sessions that may run out of RAM at the smallest frames, each one getting further.
FLOOR_TRIES = 4


def compile_tree(local: LocalTree, target: Target, mpy_cross: str | None,
                 log: Callable[[str], None]) -> LocalTree:
    """``local`` with its ``.py`` files (but boot.py / main.py) as ``.mpy`` for the target's
    firmware; every file is compiled before anything is sent, so a syntax error stops the push
    with nothing written."""
    from .compile.compiler import Compiler, should_compile, twin

    runner = target.runner()
    mpy = runner.info().mpy if runner is not None else None
    if runner is not None and mpy is None:
        raise InputError("this board's firmware does not say which bytecode it runs (no "
                         "sys.implementation._mpy, as before MicroPython 1.11): push without "
                         "--compile, its .py files run as they are")
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


def split_romfs(local: LocalTree, subtrees: Iterable[str]) -> tuple[LocalTree, LocalTree | None]:
    """``local`` without the ``romfs`` subtrees, and those subtrees (None when there are none)."""
    prefixes = [s.strip("/") + "/" for s in subtrees if s.strip("/")]
    if not prefixes:
        return local, None

    def chosen(rel: str) -> bool:
        return any((rel + "/").startswith(p) for p in prefixes)

    rest = LocalTree(local.root, skipped=list(local.skipped))
    rom = LocalTree(local.root)
    for rel, file in local.files.items():
        (rom if chosen(rel) else rest).files[rel] = file
    for d in local.dirs:
        (rom if chosen(d) else rest).dirs.append(d)
    if not rom.files:
        raise InputError(f"--romfs {', '.join(prefixes)}: no files there in {local.root}")
    return rest, rom


def build_rom(rom: LocalTree, target: Target, mpy_cross: str | None,
              log: Callable[[str], None]) -> bytes:
    """The ROMFS image of the chosen subtrees, every .py compiled for the board."""
    from .compile.compiler import Compiler, twin
    from .romfs.image import build
    from .romfs.source import check_mpy

    runner = target.runner()
    if runner is None:
        raise InputError("--romfs needs a board: an image file has no ROM partition")
    mpy = runner.info().mpy
    compiler = Compiler.for_board(mpy, mpy_cross)
    files: dict[str, bytes] = {}
    for rel, file in rom.files.items():
        if rel.endswith(".py"):
            files[twin(rel)] = compiler.compile(file.data, rel, origin=str(file.origin))
        elif not (rel.endswith(".mpy") and twin(rel) in rom.files):
            files.setdefault(rel, file.data)
    if mpy is not None:
        check_mpy(files, mpy)
    log(f"ROMFS: {len(files)} files compiled with {compiler.tool.path} for .mpy "
        f"{compiler.emits}")
    return build(files, rom.dirs)


def push_rom(target: Target, image: bytes, rom: LocalTree, dry_run: bool,
             log: Callable[[str], None]) -> list[str]:
    """Deploy the ROM part of a push (or, dry, say what it would write); the notes to show.

    ``build_rom`` has made sure the target runs code; a ROM partition is reached through the
    board's own protocol, so the runner is the Board (the only code runner there is).
    """
    from .romfs import deploy as romdeploy

    board = cast("Board", target.runner())

    part = romdeploy.partition(board)
    if dry_run:
        notes = [f"ROMFS: {len(image)} bytes for ROM partition 0 ({part.size} bytes): "
                 + romdeploy.describe_plan(board, image, part)]
    else:
        result = romdeploy.deploy(board, image, reset=False, name="the ROMFS part of the push")
        notes = ([f"ROMFS: partition 0 already holds these {len(image)} bytes: nothing written"]
                 if result.unchanged else
                 [f"ROMFS: {len(image)} bytes into ROM partition 0, {len(result.written)} of "
                  f"{result.blocks} erase blocks written, verified, mounted at /rom"])
    from .romfs.image import files

    notes += romdeploy.shadowing(board, sorted(files(image)))
    for note in notes:
        log(note)
    return notes


def _verify_and_record(target: Target, record: HostRecord, local: LocalTree, done: Plan) -> None:
    """Weak-hash targets: check every written file's sum, then remember what they hold."""
    written = {a.path: local.files[a.rel].data for a in done.writes}
    entries = verify_weak(target, done.dest, written)
    pushed = {a.path: (len(f.data), file_digest(f.data, False), f.sha256)
              for a in done.actions if a.rel and (f := local.files[a.rel])}
    record.update(entries, pushed)
