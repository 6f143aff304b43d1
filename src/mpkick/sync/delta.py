"""What byte ranges of a changed file must travel: rsync-style deltas against the board's copy.

A serial link moves ~11 KB/s, so resending a 60 KB module for a one-line edit is what makes a
save feel slow. The host remembers, per board, the content it last pushed, keyed by sha256 (the
hash the board's tree already reports). When the board's copy has a remembered hash the diff is
computed locally, with no extra exchange; otherwise the board sends block signatures (CRC-32 plus
a slice of sha256, both cheap in C on a board) for all such files in one exchange. The board
then rebuilds each file from ranges of its old copy plus literal bytes, and the usual commit
checks the result's hash, so a wrong guess costs a failed commit, never a corrupt file.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..board.agentload import INFO, sent
from ..memory.cachedir import cache_dir, load, store

if TYPE_CHECKING:
    from ..board.board import Board
    from ..protocol.channel import SendSession
    from ..target import Progress
    from .plan import Action, LocalFile, Plan, Writer

#: A copy of ``(offset, length)`` bytes from the board's old copy, or literal bytes.
Op = tuple[int, int] | bytes

LOCAL_BLOCK = 32  # both sides known: small blocks, then matches are extended byte by byte
FRAME = 10  # bytes of framing per channel frame
CACHE_LIMIT = 64 << 20  # per board: a cache that only grows would fill the user's disk


@dataclass(frozen=True)
class Signatures:
    """The board's copy of one file, as block checksums."""

    size: int
    block: int
    weak: tuple[int, ...]
    strong: tuple[bytes, ...]


@dataclass
class DeltaStats:
    """How a file travelled: ``mode`` is ``"warm"``, ``"cold"`` or ``"whole"``."""

    files: dict[str, str] = field(default_factory=dict)
    literal: int = 0
    copied: int = 0


# ------------------------------------------------------------------------- the pure diff


def _prefix(a: bytes, b: bytes, i: int, j: int, limit: int) -> int:
    """Length of the common run of ``a[i:]`` and ``b[j:]``, at most ``limit``: doubling
    slice compares, so long runs cost C-speed comparisons, not a Python loop per byte."""
    n = 0
    step = 64
    while n < limit:
        k = min(step, limit - n)
        if a[i + n:i + n + k] == b[j + n:j + n + k]:
            n += k
            step *= 2
        elif k <= 8:
            while n < limit and a[i + n] == b[j + n]:
                n += 1
            return n
        else:
            step = max(8, k // 2)
    return n


def _suffix(a: bytes, b: bytes, limit: int) -> int:
    """Length of the common tail of ``a`` and ``b``, at most ``limit``."""
    n = 0
    while n < limit and a[len(a) - n - 1] == b[len(b) - n - 1]:
        n += 1
        if n % 64 == 0:
            # Jump ahead in big compares once the tail agrees.
            step = 64
            while n + step <= limit and a[len(a) - n - step:len(a) - n] == \
                    b[len(b) - n - step:len(b) - n]:
                n += step
                step *= 2
    return n


def _coalesce(ops: Iterable[Op]) -> list[Op]:
    out: list[Op] = []
    for op in ops:
        if not op or (isinstance(op, tuple) and not op[1]):
            continue
        last = out[-1] if out else None
        if isinstance(op, tuple) and isinstance(last, tuple) and last[0] + last[1] == op[0]:
            out[-1] = (last[0], last[1] + op[1])
        elif isinstance(op, bytes) and isinstance(last, bytes):
            out[-1] = last + op
        else:
            out.append(op)
    return out


def diff(old: bytes, new: bytes, block: int = LOCAL_BLOCK) -> list[Op]:
    """Ops that build ``new`` from ``old`` when both are known: common head and tail first
    (one edit costs just the edit), then block matches, extended to the exact byte, for the
    middle (moved or repeated text, edits in many places)."""
    head = _prefix(old, new, 0, 0, min(len(old), len(new)))
    tail = _suffix(old, new, min(len(old), len(new)) - head)
    ops: list[Op] = [(0, head)]
    end = len(new) - tail
    index: dict[bytes, int] = {}
    for j in range(0, len(old) - block + 1, block):
        index.setdefault(old[j:j + block], j)
    literal = bytearray()
    i = head
    while i < end:
        j = index.get(new[i:i + block], -1) if i + block <= end else -1
        if j < 0:
            literal.append(new[i])
            i += 1
            continue
        back = 0
        while back < len(literal) and back < j and old[j - back - 1] == literal[-back - 1]:
            back += 1
        if back:
            del literal[-back:]
        n = block + _prefix(old, new, j + block, i + block,
                            min(len(old) - j - block, end - i - block))
        ops += [bytes(literal), (j - back, n + back)]
        literal.clear()
        i += n
    ops += [bytes(literal), (len(old) - tail, tail)]
    return _coalesce(ops)


def match(sigs: Signatures, new: bytes) -> list[Op]:
    """Ops that build ``new`` from a copy known only by its signatures (rsync's search:
    a weak checksum at every offset, the strong one to confirm)."""
    block = sigs.block
    full = sigs.size // block
    where: dict[int, list[int]] = {}
    for k in range(full):
        where.setdefault(sigs.weak[k], []).append(k)
    ops: list[Op] = []
    literal = bytearray()
    view = memoryview(new)
    i = 0
    while i + block <= len(new):
        found = -1
        for k in where.get(zlib.crc32(view[i:i + block]) & 0xFFFFFFFF, ()):
            if hashlib.sha256(view[i:i + block]).digest()[:6] == sigs.strong[k]:
                found = k
                break
        if found < 0:
            literal.append(new[i])
            i += 1
            continue
        ops += [bytes(literal), (found * block, block)]
        literal.clear()
        i += block
    literal += new[i:]
    rest = sigs.size - full * block
    if rest and len(literal) >= rest:
        tail = bytes(literal[-rest:])
        if (zlib.crc32(tail) & 0xFFFFFFFF == sigs.weak[full]
                and hashlib.sha256(tail).digest()[:6] == sigs.strong[full]):
            del literal[-rest:]
            ops += [bytes(literal), (full * block, rest)]
            literal.clear()
    ops.append(bytes(literal))
    return _coalesce(ops)


def apply_ops(old: bytes, ops: Sequence[Op]) -> bytes:
    """What the board builds: the reference the tests and the board agree on."""
    return b"".join(old[op[0]:op[0] + op[1]] if isinstance(op, tuple) else op for op in ops)


def wire_cost(ops: Sequence[Op], chunk: int = 4096) -> int:
    """About how many bytes ``ops`` take on the wire (literals as the channel compresses them)."""
    cost = 0
    copies = 0
    for op in ops:
        if isinstance(op, tuple):
            copies += 1
            continue
        cost += FRAME * (copies > 0) + 8 * copies
        copies = 0
        cost += whole_cost(op, chunk)
    return cost + FRAME * (copies > 0) + 8 * copies


def whole_cost(data: bytes, chunk: int = 4096) -> int:
    """About how many bytes sending ``data`` whole takes (deflated per frame, as the channel)."""
    cost = 0
    for i in range(0, len(data), chunk):
        part = data[i:i + chunk]
        packed = len(zlib.compress(part, 6)) - 6 if len(part) > 64 else len(part)
        cost += FRAME + min(len(part), packed)
    return cost


def sig_block(size: int) -> int:
    """Block size for board-side signatures: about twice sqrt(size), a power of two."""
    block = 128
    while block < 4096 and block * block < 4 * size:
        block *= 2
    return block


def parse_sigs(line: str, block: int) -> Signatures | None:
    """One line of ``mk_sigs`` output; None when the board has no such file."""
    size_text, _, b64 = line.strip().partition(" ")
    if not size_text.isdigit():
        return None
    raw = base64.b64decode(b64) if b64 else b""
    weak = tuple(int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 10))
    strong = tuple(raw[i + 4:i + 10] for i in range(0, len(raw), 10))
    return Signatures(int(size_text), block, weak, strong)


# ------------------------------------------------------------------------- the board's memory


class ContentCache:
    """What this host last pushed to one board, by sha256; content-addressed, so an entry is
    right whenever the board reports that hash, however old it is."""

    def __init__(self, board_id: str) -> None:
        self.folder = cache_dir("delta") / board_id
        self._total: int | None = None  # bytes held, counted once, then kept up to date

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / digest

    def get(self, digest: str | None) -> bytes | None:
        if not digest or len(digest) != 64:
            return None
        path = self._path(digest)
        data = load(path)
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            return None  # a damaged entry is a miss, never a wrong base
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return data

    def put(self, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return
        store(path, data)
        if self._total is None:
            self.prune()  # counts what is there; a push of 1,000 files lists the folder once
        else:
            self._total += len(data)
            if self._total > CACHE_LIMIT:
                self.prune()

    def prune(self, limit: int = CACHE_LIMIT) -> None:
        """Forget the least recently used entries past ``limit`` bytes."""
        try:
            files = [(st.st_mtime, st.st_size, p) for p in self.folder.glob("*/*")
                     for st in (p.stat(),)]
        except OSError:
            return
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= limit:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            total -= size
        self._total = total


def board_id(board: Board) -> str:
    """The id mpkick keeps on the board (made on first use), so caches follow the flash."""
    known = "".join(c for c in board.caps.id or "" if c.isalnum())[:32]
    if known:
        return known  # it came with the capabilities: no exchange of its own
    if not board.caps.hosts_agent:
        # Plain firmware (a micro:bit) has no folder to keep an id in: its chip id serves.
        uid = board.info().uid
        return uid or hashlib.sha256(board.transport.name.encode()).hexdigest()[:16]
    fresh = secrets.token_hex(8)
    text = board.exec(sent(INFO, "mk_id", fresh)).decode("ascii", "replace").strip()
    return "".join(c for c in text if c.isalnum())[:32] or fresh


# ------------------------------------------------------------------------- the sender


class DeltaSender:
    """Sends changed files as deltas inside a ``Board.session()``.

    Call ``prepare`` before opening the session with every file about to be sent (the board's
    signatures for files without a remembered base come in one exchange), then ``put`` for each.
    """

    def __init__(self, board: Board, cache: ContentCache | None = None) -> None:
        self.board = board
        self.cache = cache or ContentCache(board_id(board))
        self.sigs: dict[str, Signatures] = {}
        self.stats = DeltaStats()
        caps = board.caps
        self.can_sign = caps.crc32 and caps.hashlib and caps.buffer

    def prepare(self, files: Iterable[tuple[str, str | None, int]]) -> None:
        """``files``: (board path, the board's sha256 or None, the board's size)."""
        want = [(path, sig_block(size)) for path, digest, size in files
                if digest and size >= 1024 and self.can_sign and self.cache.get(digest) is None]
        if not want:
            return
        self.board.load_part("mpkick_sigs")
        text = self.board.call("mk_sigs", want, timeout=120).decode("ascii", "replace")
        for (path, block), line in zip(want, text.splitlines(), strict=False):
            sig = parse_sigs(line, block)
            if sig is not None:
                self.sigs[path] = sig

    def put(self, session: SendSession, path: str, data: bytes, old_digest: str | None,
            progress: Progress | None = None) -> str:
        """Send ``data`` to ``path``, as a delta where that is cheaper; return the mode."""
        chunk = self.board.caps.chunk
        ops: list[Op] | None = None
        mode = "whole"
        old = self.cache.get(old_digest)
        if old is not None:
            ops, mode = diff(old, data), "warm"
        elif path in self.sigs:
            ops, mode = match(self.sigs.pop(path), data), "cold"
        if ops is not None and wire_cost(ops, chunk) >= whole_cost(data, chunk):
            ops, mode = None, "whole"
        if ops is None:
            session.put(path, data, progress)
            self.stats.literal += len(data)
        else:
            session.put_delta(path, ops, data, progress)
            for op in ops:
                if isinstance(op, tuple):
                    self.stats.copied += op[1]
                else:
                    self.stats.literal += len(op)
        self.stats.files[path] = mode
        self.cache.put(data)
        return mode


class DeltaTransfer:
    """``sync.apply``'s ``transfer`` hook: updates travel as deltas, every write is remembered.

    Make it and call ``prepare(plan)`` before the session opens (``push.kick`` does): both
    talk to the board, which they cannot do once the session holds the link.
    """

    def __init__(self, board: Board, cache: ContentCache | None = None) -> None:
        self.board = board
        self.cache = cache
        self.sender: DeltaSender | None = None

    def prepare(self, plan: Plan) -> None:
        if not plan.writes or not self.board.caps.hashlib:  # weak checks: never trust a base
            return
        if self.sender is None:
            self.sender = DeltaSender(self.board, self.cache)
        self.sender.prepare([(a.path, a.old_sha256, a.old_size) for a in plan.of("update")])

    def __call__(self, writer: Writer, action: Action, file: LocalFile,
                 progress: Progress) -> None:
        from ..protocol.channel import SendSession

        if self.sender is None or not isinstance(writer, SendSession):
            writer.put(action.path, file.data, progress)
            return
        self.sender.put(writer, action.path, file.data,
                        action.old_sha256 if action.kind == "update" else None, progress)
