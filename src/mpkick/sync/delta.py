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
import hashlib
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..memory.contents import ContentCache

if TYPE_CHECKING:
    from ..target import Progress, Target, Writer
    from .plan import Action, Plan
    from .scan import LocalFile

#: A copy of ``(offset, length)`` bytes from the board's old copy, or literal bytes.
Op = tuple[int, int] | bytes

LOCAL_BLOCK = 32  # both sides known: small blocks, then matches are extended byte by byte
FRAME = 10  # bytes of framing per channel frame


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


# ------------------------------------------------------------------------- the sender


class DeltaSender:
    """Sends changed files as deltas through a target's writer.

    Call ``prepare`` before opening the writer with every file about to be sent (the target's
    signatures for files without a remembered base come in one exchange), then ``put`` for each.
    """

    def __init__(self, target: Target, cache: ContentCache | None = None) -> None:
        self.target = target
        self.cache = cache or ContentCache(target.identity())
        self.sigs: dict[str, Signatures] = {}
        self.stats = DeltaStats()
        self.features = target.features

    def prepare(self, files: Iterable[tuple[str, str | None, int]]) -> None:
        """``files``: (target path, the target's sha256 or None, the target's size)."""
        want = [(path, sig_block(size)) for path, digest, size in files
                if digest and size >= 1024 and self.features.delta
                and self.cache.get(digest) is None]
        if not want:
            return
        for (path, block), line in zip(want, self.target.signatures(want), strict=False):
            sig = parse_sigs(line, block)
            if sig is not None:
                self.sigs[path] = sig

    def put(self, writer: Writer, path: str, data: bytes, old_digest: str | None,
            progress: Progress | None = None) -> str:
        """Send ``data`` to ``path``, as a delta where that is cheaper; return the mode."""
        chunk = self.features.frame
        ops: list[Op] | None = None
        mode = "whole"
        old = self.cache.get(old_digest)
        if old is not None and self.features.delta:
            ops, mode = diff(old, data), "warm"
        elif path in self.sigs:
            ops, mode = match(self.sigs.pop(path), data), "cold"
        if ops is not None and wire_cost(ops, chunk) >= whole_cost(data, chunk):
            ops, mode = None, "whole"
        if ops is None:
            writer.put(path, data, progress)
            self.stats.literal += len(data)
        else:
            writer.put_delta(path, ops, data, progress)
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

    Make it and call ``prepare(plan)`` before the writer opens (``push.kick`` does): both
    talk to the target, which they cannot do once a board's session holds the link. Only a
    target with strong hashes gets one: a weak sum can never vouch for a delta's base.
    """

    def __init__(self, target: Target, cache: ContentCache | None = None) -> None:
        self.target = target
        self.cache = cache
        self.sender: DeltaSender | None = None

    def prepare(self, plan: Plan) -> None:
        if not plan.writes or not self.target.features.strong_hashes:
            return
        if self.sender is None:
            self.sender = DeltaSender(self.target, self.cache)
        self.sender.prepare([(a.path, a.old_sha256, a.old_size) for a in plan.of("update")])

    def __call__(self, writer: Writer, action: Action, file: LocalFile,
                 progress: Progress) -> None:
        if self.sender is None:
            writer.put(action.path, file.data, progress)
            return
        self.sender.put(writer, action.path, file.data,
                        action.old_sha256 if action.kind == "update" else None, progress)
