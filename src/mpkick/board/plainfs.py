"""The filesystem over plain REPL commands, for firmware that cannot host mpkick's agent.

The BBC micro:bit's MicroPython 1.9 has 9 kB of heap, no binary stdin, no ``sys.path`` and a
flat filesystem, so no binary session can run there. Every operation is then one short exec
of one function from ``agent/mpkick_plain.py``; data goes in as bytes literals and comes back
as printed literals (text only, so a link that cooks line endings changes nothing), and each
written file is read back by weak sum (such firmware has no hashlib) before the next one is
sent. Without ``os.rename`` a file is rewritten in place: a cut in the middle leaves it
damaged, and the next push sees a sum that does not match and sends it again.
"""

from __future__ import annotations

import ast
import contextlib
import errno
from collections.abc import Callable
from typing import Any

from ..errors import BoardError, InputError, ProtocolError, os_error
from ..protocol.caps import Caps
from ..protocol.channel import Stats, file_digest
from ..protocol.repl import RawRepl
from ..target import Entry, Usage, norm
from . import agent

PLAIN = "mpkick_plain"
#: Bytes per ``mk_rd`` literal: small enough for the firmware to print from a 9 kB heap.
READ_PIECE = 96
#: The least code one exec of file data carries.
MIN_BUDGET = 64


class PlainFs:
    """One board's files through short execs; ``caps`` is what the probe found."""

    def __init__(self, repl: RawRepl, caps: Caps) -> None:
        self.repl = repl
        self.caps = caps
        # Code per exec: the REPL holds the text, the lexer the literal, the compiler the rest.
        self.budget = max(MIN_BUDGET, min(4096, caps.free // 10))

    # ----------------------------------------------------------------- names and calls

    def exec(self, code: str, timeout: float = 30.0) -> bytes:
        """Run mpkick's own ``code`` through the echo loader, which no overrun gets past."""
        return self.repl.exec(code, timeout, echo=True)

    def name(self, path: str) -> str:
        """The firmware's name for board path ``path``: flat firmware has no folders."""
        path = norm(path)
        if self.caps.mkdir:
            return path
        if path.count("/") > 1:
            raise InputError(f"{path}: this board's flash has no folders (no os.mkdir): "
                             "give a path at the top level, like /main.py")
        return path[1:]

    def path(self, name: str) -> str:
        return name if name.startswith("/") else "/" + name

    def call(self, func: str, *args: Any, needs: tuple[str, ...] = (),
             timeout: float = 30.0, show: bool = False) -> bytes:
        """Define ``func`` (and the functions it ``needs``), call it (printing the value it
        returns with ``show``), forget them again. Each definition is its own exec: a 9 kB
        heap, fragmented, parses a few hundred bytes at a time, not a kilobyte."""
        names = (*needs, func)
        for name in names:
            self.exec(agent.compact(agent.function(PLAIN, name)))
        call = f"{func}({', '.join(repr(a) for a in args)})"
        if show:
            call = f"print(repr({call}))"
        return self.exec(f"import os,gc\ngc.collect()\ntry:\n {call}\nfinally:\n"
                         f" del {','.join(names)}", timeout)

    # ----------------------------------------------------------------- reading

    def listing(self, root: str, sums: bool) -> list[Entry]:
        """Every entry below ``root``; with ``sums``, each file's weak sum as its digest."""
        root = norm(root)
        if not self.caps.mkdir and root != "/":
            try:
                self.stat(root)  # refuses a folder path
            except OSError as exc:
                raise os_error(exc.errno or errno.ENOENT, root) from None
            raise os_error(errno.ENOTDIR, root)  # a file at the top: nothing below it
        out = self.call("mk_ls", self.name(root) if self.caps.mkdir else "/", bool(sums),
                        needs=("mk_sum",), timeout=300)
        entries = []
        for line in _lines(out):
            name, isdir, size, digest = _value(line)
            entries.append(Entry(self.path(name), bool(isdir), int(size), None, digest))
        return entries

    def stat(self, path: str) -> Entry:
        path = norm(path)
        if path == "/":
            return Entry("/", True)
        name = self.name(path)
        if self.caps.stat:
            mode, size = _value(self.exec(f"import os\ns=os.stat({name!r})\n"
                                               "print(repr((s[0],s[6])))"))
            return Entry(path, bool(mode & 0x4000), size)
        return Entry(path, False, _value(self.exec(f"import os\nprint(os.size({name!r}))")))

    def read(self, path: str) -> bytes:
        data = bytearray()
        for line in _lines(self.call("mk_rd", self.name(path), READ_PIECE, timeout=120)):
            piece = _value(line)
            if not isinstance(piece, bytes):
                raise ProtocolError(f"the board answered {line[:60]!r} while reading {path}")
            data += piece
        return bytes(data)

    def sum(self, name: str) -> str:
        """The weak sum of the firmware's file ``name``, computed on the board."""
        return str(_value(self.call("mk_sum", name, timeout=120, show=True)))

    def usage(self) -> Usage:
        """Total and free bytes of the flash, and its block size (as the agent's mk_usage)."""
        total, free, block = _value(self.exec("import os\nv=os.statvfs('/')\n"
                                              "print(repr((v[0]*v[2],v[0]*v[3],v[0])))"))
        return Usage(total, free, block)

    def info(self) -> dict[str, Any]:
        platform, impl, version, mpy, free, alloc, uid = _value(self.call("mk_id"))
        return {"platform": platform, "implementation": impl,
                "version": ".".join(str(x) for x in version), "machine": "", "mpy": mpy,
                "mem_free": free, "mem_alloc": alloc,
                "uid": uid.hex() if isinstance(uid, bytes) else None}

    # ----------------------------------------------------------------- writing

    def put(self, path: str, data: bytes, progress: Callable[[int], None] | None = None,
            stats: Stats | None = None) -> None:
        """Write, read back by sum, and (where the firmware can rename) move into place; a
        copy that does not match is written once more, then refused."""
        name = self.name(path)
        tmp = name + ".mkt" if self.caps.rename else name
        want = file_digest(data, False)
        attempt = 0
        told = _Told(progress)
        while True:
            told.again()
            try:
                sent = self._send(tmp, data, told)
            except BoardError as exc:
                sent = 0
                self.exec("try:\n f.close()\nexcept Exception:\n pass")
                if exc.exc_type == "MemoryError" and self.budget > MIN_BUDGET:
                    # The heap is smaller or more broken up than the probe saw (a program
                    # ran since): smaller pieces, and this try does not count.
                    self.budget = max(MIN_BUDGET, self.budget // 2)
                    continue
            attempt += 1
            if stats is not None:
                stats.wire_out += sent
                stats.payload += len(data)
            if sent and self.sum(tmp) == want:
                break
            if attempt == 2:
                with contextlib.suppress(OSError):
                    if tmp != name:
                        self.exec(f"import os\nos.remove({tmp!r})")
                raise OSError(5, "the board's copy did not match after writing twice (a "
                                 "damaged link?); push again", path)
        if tmp != name:
            self.exec(f"import os\ntry:\n os.remove({name!r})\nexcept OSError:\n pass\n"
                           f"os.rename({tmp!r},{name!r})")

    def _send(self, name: str, data: bytes, progress: Callable[[int], None] | None) -> int:
        sent = 0
        code = f"f=open({name!r},'wb')\nw=f.write"
        self.exec(code)
        sent += len(code)
        batch: list[str] = []
        size = 0
        i = 0
        while i < len(data):
            piece = data[i:i + self.budget]
            text = repr(piece)
            while len(text) > self.budget and len(piece) > 16:
                piece = piece[:len(piece) * self.budget // len(text) or 16]
                text = repr(piece)
            if batch and size + len(text) > self.budget:
                sent += self._exec_batch(batch)
                batch, size = [], 0
            batch.append(f"w({text})")
            size += len(text) + 4
            i += len(piece)
            if progress is not None:
                progress(len(piece))
        if batch:
            sent += self._exec_batch(batch)
        self.exec("f.close()\ndel f,w")
        return sent + 16

    def _exec_batch(self, lines: list[str]) -> int:
        code = "\n".join(lines)
        self.exec(code)
        return len(code)

    def remove(self, path: str) -> None:
        self.exec(f"import os\nos.remove({self.name(path)!r})")

    def rmdir(self, path: str) -> None:
        self.exec(f"import os\nos.rmdir({self.name(path)!r})")

    def mkdir(self, path: str) -> None:
        self.exec(f"import os\nos.mkdir({self.name(path)!r})")

    def rename(self, src: str, dst: str) -> None:
        a, b = self.name(src), self.name(dst)
        self.exec(f"import os\ntry:\n os.remove({b!r})\nexcept OSError:\n pass\n"
                       f"os.rename({a!r},{b!r})")


class _Told:
    """Progress for a write that may be sent more than once: each byte is counted once."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.told = 0  # bytes the caller heard of
        self.done = 0  # bytes this attempt sent

    def again(self) -> None:
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress is not None and self.done > self.told:
            self.progress(self.done - self.told)
            self.told = self.done


class PlainSession:
    """What ``sync.apply`` writes through on such a board: the same verbs as a binary
    session, each carried out as it comes."""

    def __init__(self, fs: PlainFs) -> None:
        self.fs = fs
        self.stats = Stats()
        self.journal: list[tuple[str, str, int, str]] = []

    def put(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        self.fs.put(path, data, progress, self.stats)
        self.journal.append(("put", path, len(data), file_digest(data, False)))

    def put_delta(self, path: str, ops: list[Any], data: bytes,
                  progress: Callable[[int], None] | None = None) -> None:
        self.put(path, data, progress)  # no patching in plain REPL commands: the whole file

    @property
    def wire_bytes(self) -> int:
        return self.stats.wire_out

    def mkdir(self, path: str) -> None:
        self.fs.mkdir(path)
        self.journal.append(("mkdir", path, 0, ""))

    def remove(self, path: str) -> None:
        self.fs.remove(path)
        self.journal.append(("remove", path, 0, ""))

    def rmdir(self, path: str) -> None:
        self.fs.rmdir(path)
        self.journal.append(("rmdir", path, 0, ""))

    def close(self) -> None:
        """Nothing to end: every operation finished as it was made."""


def _lines(out: bytes) -> list[str]:
    return [ln.strip() for ln in out.decode("utf-8", "replace").splitlines() if ln.strip()]


def _value(text: bytes | str) -> Any:
    line = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    try:
        return ast.literal_eval(line.strip())
    except (ValueError, SyntaxError) as exc:
        raise ProtocolError(f"the board answered {line.strip()[:80]!r}, not a value") from exc
