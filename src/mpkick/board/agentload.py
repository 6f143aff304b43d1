"""The agent's code as the board gets it, and the pieces of code that put it there.

Every file under ``agent/`` reaches the board compacted (``agent.compact``) with the channel's
opcodes in front (``protocol.opcodes.board_header``). The agent is three modules: its core
(``mpkick_agent``) and two halves it imports on first use: ``mpkick_read`` (capabilities,
listing, stat, sending a file; the probe's ``mk_have`` in front) and ``mpkick_recv`` (the
session that writes). On a small heap each half goes again after its call, so the other finds
the room. The rarely used parts (``mpkick_flash``, ``mpkick_sigs``, ``mpkick_romfs``,
``mpkick_attach``) are modules too, stored and imported only when a command needs them. A
board too small to compile a module gets it compiled here (``.mpy``), or, without mpy-cross,
in pieces it compiles one at a time into the REPL's namespace.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable

from ..protocol.opcodes import board_header
from ..target import META
from . import agent

AGENT = "mpkick_agent"
READ = "mpkick_read"
RECV = "mpkick_recv"
PROBE = "mpkick_probe"
INFO = "mpkick_info"  # sent with its call, never kept
#: The line that gives a part of the agent the core's names. In pieces, beside the core in the
#: REPL's namespace, those names are there already (and the module is not): it is left out.
CORE_IMPORT = f"from {AGENT} import "
#: Below this much free RAM a board gets the agent compiled (.mpy), where mpy-cross is here:
#: the unix port needs about 100 kB to compile the agent's source, a 32-bit board about half.
SMALL_HEAP = 160 * 1024
#: The name each stored module keeps its version under (not exported by ``import *``).
MARK = "_MK_V"


def text(name: str) -> str:
    """Agent file ``name`` as the board compiles it: opcodes in front, compacted."""
    return board_header() + agent.board_source(name)


def version_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def agent_texts() -> tuple[list[tuple[str, str]], str]:
    """The agent's modules as the board keeps them, and their one version: the core (``MK_V``
    in front of it), then its reading half (the probe's ``mk_have`` in front of it) and its
    receiving half."""
    core = text(AGENT)
    halves = [(READ, text(PROBE) + agent.board_source(READ)), (RECV, text(RECV))]
    want = version_of(core + "".join(body for _, body in halves))
    return [(AGENT, f"MK_V = {want!r}\n{core}"), *halves], want


def part_text(name: str) -> tuple[str, str]:
    """An optional part of the agent as the board keeps it (its version in front), and that
    version."""
    body = text(name)
    want = version_of(body)
    return f"{MARK} = {want!r}\n{body}", want


def sent(module: str, func: str, *args: object) -> str:
    """Code that defines ``func`` of agent file ``module``, calls it with ``args`` (through
    ``repr``) and forgets it: board code asked for rarely costs the heap nothing between
    calls."""
    call = f"{func}({', '.join(repr(a) for a in args)})"
    return f"{agent.compact(agent.function(module, func))}\ntry:\n {call}\nfinally:\n del {func}"


def in_pieces(source: str, size: int = 2048) -> list[str]:
    """``source`` in pieces that compile one at a time on a heap far too small for the whole
    (``_batches``), run into the REPL's namespace beside the core: each gets the opcodes (a
    constant lives in the text it is compiled with), none imports the core."""
    head = board_header()
    body = "".join(line for line in source.replace(head, "", 1).splitlines(keepends=True)
                   if not line.startswith(CORE_IMPORT))
    return [head + piece for piece in _batches(body, size)]


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


def precompiled(source: str, name: str, mpy: int, log: Callable[[str], None]) -> bytes | None:
    """Module ``name`` as .mpy for the board's bytecode version: importing it needs no
    compiler, whose parse of the source takes more RAM than a small board has. None when no
    matching mpy-cross is installed here."""
    if not mpy:
        return None
    from ..compile.compiler import Compiler
    from ..compile.mpycross import CompileError

    try:
        data = Compiler.for_board(mpy).compile(source.encode(), f"{name}.py")
    except (CompileError, OSError) as exc:
        log(f"sending {name} as source: no mpy-cross for this board ({exc})")
        return None
    log(f"sending {name} compiled (.mpy): the board has too little RAM to compile it")
    return data


def stored_installer(name: str, data: bytes, free: int) -> list[str]:
    """Code that stores file ``name`` under /.mpkick, sent compressed: the pieces run one
    after another, each small enough for the raw REPL of a board with ``free`` bytes of RAM,
    and the board inflates the whole into the file 256 bytes at a time. A copy of the other
    kind (``.py`` for ``.mpy``) goes: the import would prefer the ``.mpy``."""
    pack = zlib.compressobj(9, zlib.DEFLATED, -10)
    blob = base64.b64encode(pack.compress(data) + pack.flush())
    step = max(1024, min(free // 6, 1 << 16)) // 4 * 4
    stem = name.rsplit(".", 1)[0]
    z, tmp, final = f"{META}/{stem}.z", f"{META}/{stem}.mkt", f"{META}/{name}"
    other = f"{META}/{stem}.mpy" if name.endswith(".py") else f"{META}/{stem}.py"
    pieces = [f"import os, binascii, gc\ntry:\n os.mkdir({META!r})\nexcept OSError:\n pass\n"
              f"gc.collect()\n_mk_f = open({z!r}, 'wb')\n"]
    for i in range(0, len(blob), step):
        # The piece before is garbage now: its room is this one's.
        pieces.append(f"gc.collect()\n"
                      f"_mk_f.write(binascii.a2b_base64({blob[i:i + step].decode()!r}))\n")
    pieces.append(
        f"_mk_f.close()\nimport deflate\ngc.collect()\n_mk_b = bytearray(256)\n"
        f"with open({z!r}, 'rb') as _mk_z, open({tmp!r}, 'wb') as _mk_f:\n"
        f" _mk_d = deflate.DeflateIO(_mk_z, deflate.RAW, 10)\n"
        f" while True:\n  _mk_n = _mk_d.readinto(_mk_b)\n  if not _mk_n:\n   break\n"
        f"  _mk_f.write(memoryview(_mk_b)[:_mk_n])\n"
        f"os.rename({tmp!r}, {final!r})\nos.remove({z!r})\n"
        f"try:\n os.remove({other!r})\nexcept OSError:\n pass\n"
        "_mk_f = _mk_z = _mk_d = _mk_b = _mk_n = None\n")
    return pieces


def importer(name: str, want: str) -> str:
    """Code that imports stored part ``name`` when it is this version and gives the REPL its
    names; it prints whether it did (an older copy is forgotten, to be installed afresh)."""
    return (f"import sys\ntry:\n import {name}\n _mk_ok = {name}.{MARK} == {want!r}\n"
            f"except Exception:\n _mk_ok = False\n"
            f"if _mk_ok:\n from {name} import *\n"
            f"else:\n sys.modules.pop({name!r}, 0)\nprint(_mk_ok)\ndel _mk_ok")
