"""A folder turned into the tree a ROMFS image holds: ``.py`` compiled to ``.mpy`` for the board.

ROMFS earns its keep with ``.mpy`` files, whose bytecode the board runs in place from flash, so
every ``.py`` is compiled by the mpy-cross that matches the board (``compile.Compiler``), and a
``.mpy`` already in the folder must be one the board loads: a mismatch is refused here, on the
host, with the file's name, before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..compile.compiler import CompileError, Compiler, read_header, twin
from ..compile.mpycross import MpyVersion
from ..errors import InputError
from ..ignore import IgnoreRules
from . import image as romimage


@dataclass
class RomTree:
    """What goes into the image: files by relative path, folders (empty ones too), and notes."""

    files: dict[str, bytes] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    compiled: int = 0
    notes: list[str] = field(default_factory=list)

    def image(self) -> bytes:
        return romimage.build(self.files, self.folders)


def collect(src: Path, compiler: Compiler | None, rules: IgnoreRules | None = None,
            board_mpy: int | None = None) -> RomTree:
    """The ROMFS tree of folder ``src`` (files named by the ignore rules are left out).

    With ``compiler``, each ``.py`` becomes ``.mpy`` (a twin ``.mpy`` already there is replaced
    by the fresh one, and said so). ``board_mpy`` (``sys.implementation._mpy``) checks every
    ``.mpy`` that ends up in the tree.
    """
    if not src.is_dir():
        raise InputError(f"{src} is not a folder")
    rules = rules or IgnoreRules.from_folder(src)
    tree = RomTree()
    entries = rules.walk(src)
    sources = {rel for rel, is_dir in entries if not is_dir}
    for rel, is_dir in entries:
        if is_dir:
            tree.folders.append(rel)
            continue
        data = (src / rel).read_bytes()
        if compiler is not None and rel.endswith(".py"):
            tree.files[twin(rel)] = compiler.compile(data, rel, str(src / rel))
            tree.compiled += 1
            if twin(rel) in sources:
                tree.notes.append(f"{twin(rel)}: replaced by the one compiled from {rel}")
            continue
        if compiler is not None and rel.endswith(".mpy") and twin(rel) in sources:
            continue  # compiled afresh from its .py
        tree.files[rel] = data
    if board_mpy is not None:
        check_mpy(tree.files, board_mpy)
    return tree


def check_mpy(files: Mapping[str, bytes], board_mpy: int, where: str = "") -> None:
    """Refuse any ``.mpy`` the board would reject ("incompatible .mpy file"), by name."""
    want = MpyVersion.from_sys(board_mpy)
    for path, data in sorted(files.items()):
        if not path.endswith(".mpy"):
            continue
        problem = mpy_problem(data, want)
        if problem:
            raise CompileError(f"{where}{path.lstrip('/')}: {problem}; rebuild it with "
                               "`mpkick romfs build` for this board (or compile its .py with "
                               f"`pip install '{want.requirement()}'`)")


def mpy_problem(data: bytes, want: MpyVersion) -> str | None:
    """Why a board running ``want`` cannot load ``data``; None when it can."""
    try:
        head = read_header(data)
    except CompileError:
        return "not an .mpy file (it does not start with 'M')"
    if head.version != want.version:
        return f"it is .mpy v{head.version}, the board loads .mpy {want}"
    if head.version < 6 and head.features != want.features:
        return "its feature flags differ from the board's"
    if head.native and (head.arch != want.arch or head.sub != want.sub):
        runs = f"{want.arch} .mpy {want}" if want.arch else "no native code"
        return (f"it holds native code for {head.arch} .mpy v{head.version}.{head.sub}, "
                f"the board runs {runs}")
    return None


def modules(paths: Iterable[str]) -> dict[str, str]:
    """Importable module name -> path, for ``.py``/``.mpy`` files (``lib/a/b.mpy`` -> ``a.b``
    below ``lib``, else from the root)."""
    out: dict[str, str] = {}
    for path in paths:
        rel = path.strip("/")
        if not rel.endswith((".py", ".mpy")):
            continue
        stem = rel.rsplit(".", 1)[0]
        if stem.endswith("/__init__"):
            stem = stem[: -len("/__init__")]
        out[stem.replace("/", ".")] = rel
    return out
