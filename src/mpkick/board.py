"""A live board (or the virtual one): code execution plus the filesystem-target interface.

Every filesystem operation goes through the agent (``agent/mpkick_agent.py``), which the board
keeps under ``/.mpkick/`` and imports when its version matches; bulk data travels over the
binary channel. Board-side failures arrive as ``OSError`` with the board's errno.
"""

from __future__ import annotations

import ast
import contextlib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import agent
from .channel import Caps, SendSession, receive_file
from .errors import ConnectError, InputError, ProtocolError
from .repl import RawRepl, Stream
from .target import Entry, Progress, Usage, norm
from .transport import Transport, open_transport

META = "/.mpkick"
AGENT = "mpkick_agent"


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
        from .mpycross import MpyVersion

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
        self._caps: Caps | None = None

    @classmethod
    def connect(cls, url: str = "auto", *, verbose: int = 0, soft_reset: bool = False,
                log: Callable[[str], None] | None = None) -> Board:
        """Open ``url``, stop whatever runs on the board and enter the raw REPL."""
        transport = open_transport(url)
        board = cls(transport, verbose, log)
        try:
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
        with contextlib.suppress(Exception):
            self.repl.exit_raw()
        self.transport.close()

    # ----------------------------------------------------------------- running code

    def exec(self, code: str, timeout: float | None = 10.0, stream: Stream | None = None) -> bytes:
        """Run ``code``; return what it printed; raise what it raised."""
        return self.repl.exec(code, timeout, stream)

    def eval(self, expr: str, timeout: float | None = 10.0) -> Any:
        """The value of ``expr`` on the board (anything ``repr`` round-trips)."""
        return _literal(self.exec(f"print(repr({expr}))", timeout))

    def call(self, func: str, *args: Any, timeout: float | None = 30.0) -> bytes:
        """Run the agent's ``func`` with ``args`` (passed only through ``repr``)."""
        self.load_agent()
        with about(args[0] if args and isinstance(args[0], str) else ""):
            return self.exec(f"{func}({', '.join(repr(a) for a in args)})", timeout)

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
        sim = getattr(self.transport, "board", None)
        if hard and sim is not None:
            sim.power_cut()
            return
        if hard:
            self.repl.send_code(b"import machine\nmachine.reset()")
            return
        self.repl.exit_raw()
        self.repl.read_until(b">>> ", 5, what="the friendly prompt")
        self.repl.write(b"\x04")
        self.repl.read_until(b"soft reboot\r\n", 10, what="the soft reboot")

    def soft_reset(self) -> None:
        self.repl.enter_raw(soft_reset=True)
        self._agent_loaded = False

    def interrupt(self) -> None:
        self.repl.enter_raw()

    @property
    def interrupt_note(self) -> str | None:
        """What connecting did to a running program, for commands that should say so."""
        if self.repl.interrupted:
            return "stopped the program that was running on the board (KeyboardInterrupt)"
        return None

    # ----------------------------------------------------------------- the agent

    def load_agent(self, store: bool = True) -> None:
        """Import the agent the board keeps; send and store it when missing or stale.

        ``store=False`` leaves the flash untouched (``image pull`` must read the filesystem
        exactly as it was, not with a fresh copy of the agent in it).
        """
        if self._agent_loaded:
            return
        want = agent.version(AGENT)
        have = _literal(self.exec(
            "import sys\n"
            f"if {META!r} not in sys.path: sys.path.append({META!r})\n"
            f"sys.modules.pop({AGENT!r}, None)\n"
            "try:\n"
            f" from {AGENT} import *\n"
            " _mk_v = MK_V\n"
            "except Exception:\n"
            " _mk_v = None\n"
            "print(repr(_mk_v))"))
        if have != want:
            self.log(f"installing the mpkick agent on the board ({want})")
            source = agent.source(AGENT)
            self.exec(source, timeout=30)
            self._agent_loaded = True
            caps = self.caps
            if store and caps.mkdir and caps.buffer:
                with contextlib.suppress(OSError):
                    self._session_write([(f"{META}/{AGENT}.py",
                                          f"MK_V = {want!r}\n{source}".encode())], mkdirs=[META])
        self._agent_loaded = True

    @property
    def caps(self) -> Caps:
        if self._caps is None:
            self.load_agent()
            raw = _literal(self.exec("mk_caps()"))
            self._caps = Caps(**{k: v for k, v in raw.items() if k in Caps.__annotations__})
            self.log("board offers: " + ", ".join(k for k, v in raw.items() if v is True))
            missing = [k for k, v in raw.items() if v is False]
            if missing:
                self.log("board lacks: " + ", ".join(missing) + " (using fallbacks)")
        return self._caps

    def info(self) -> BoardInfo:
        raw = _literal(self.call("mk_info"))
        known = {k: raw.pop(k, None) for k in ("platform", "version", "implementation", "machine",
                                               "mpy", "mem_free", "mem_alloc", "uid",
                                               "fs_total", "fs_free")}
        return BoardInfo(**known, extra=raw)

    # ----------------------------------------------------------------- filesystem target

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        path = norm(path)
        text = self.call("mk_tree", path, bool(hashes) and self.caps.hashlib, timeout=300)
        entries = []
        for line in text.decode("utf-8", "surrogateescape").splitlines():
            kind, size, mtime, digest, p = line.rstrip("\r").split("\t", 4)
            entries.append(Entry(p, kind == "d", int(size), int(mtime) or None,
                                 None if digest == "-" else digest))
        return entries

    def stat(self, path: str) -> Entry:
        path = norm(path)
        if path == "/":
            return Entry("/", True)
        mode, size, mtime = _literal(self.call("mk_stat", path))
        return Entry(path, bool(mode & 0x4000), size, mtime or None)

    def read(self, path: str) -> bytes:
        path = norm(path)
        self.load_agent()
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
    def session(self) -> Iterator[SendSession]:
        """A binary session: many operations for one exec (what push uses)."""
        self.load_agent()
        if not self.caps.buffer or not self.caps.kbd_intr:
            raise ConnectError("this board's firmware has no binary stdin (sys.stdin.buffer and "
                               "micropython.kbd_intr); update MicroPython to 1.12 or newer")
        s = SendSession(self.repl, self.caps)
        try:
            yield s
        except BaseException:
            with contextlib.suppress(Exception):
                s.close()
            raise
        s.close()

    def mkdir(self, path: str) -> None:
        self._need("mkdir", "folders")
        path = norm(path)
        with about(path):
            self.exec(f"import os\nos.mkdir({path!r})")

    def remove(self, path: str) -> None:
        path = norm(path)
        if self.stat(path).is_dir:
            raise IsADirectoryError(21, "Is a directory", path)
        with about(path):
            self.exec(f"import os\nos.remove({path!r})")

    def rmdir(self, path: str) -> None:
        path = norm(path)
        with about(path):
            self.exec(f"import os\nos.rmdir({path!r})")

    def rename(self, src: str, dst: str) -> None:
        self._need("rename", "renaming")
        src, dst = norm(src), norm(dst)
        with about(src):
            self.exec("import os\n"
                  f"try:\n os.remove({dst!r})\nexcept OSError:\n pass\n"
                      f"os.rename({src!r}, {dst!r})" if src != dst else "pass")

    def usage(self) -> Usage:
        if not self.caps.statvfs:
            raise InputError("this board's firmware cannot report free space (no os.statvfs)")
        total, free, block = _literal(self.call("mk_usage"))
        return Usage(total, free, block)

    def _need(self, cap: str, what: str) -> None:
        if not getattr(self.caps, cap):
            raise InputError(f"this board's filesystem does not support {what} (no os.{cap})")

    @staticmethod
    def join(*parts: str) -> str:
        return posixpath.join(*parts)


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
