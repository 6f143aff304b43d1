"""Framed binary transfer over the board's stdin/stdout: the fast path for every write and read.

Host to board, one exec carries a whole session of operations (open, data, commit, mkdir,
remove, rename): each frame is ``A5 kind seq len:3 check:4 payload``, where ``check`` is CRC-32
(or, on firmware without ``binascii``, a sum both sides compute alike) over kind, seq, len and
payload. The board answers every frame with ACK, NAK or an error line; a window of frames stays
in flight so the link never idles. A frame that arrives damaged is NAKed and the board skips
input until a resync pattern, after which the host resends from the damaged frame; a frame is
never written unless its check matched, and every file is committed only after the board has
re-read it from flash and its hash matched. Data frames are deflate-compressed independently
when the board can inflate and the data shrinks.

Board to host, ``mk_send`` streams a file as checked frames ending with its sha256.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BoardError, ConnectError, DeviceTimeout, ProtocolError, VerifyError, os_error
from .caps import Caps
from .opcodes import SYNC, Answer, Frame
from .repl import RawRepl

RESYNC = b"\x00\xffmpkick-resync"
ACK, NAK, ERR = Answer.ACK, Answer.NAK, Answer.ERR
OPEN, DATA, ZDATA, STREAM, PATCH = Frame.OPEN, Frame.DATA, Frame.ZDATA, Frame.STREAM, Frame.PATCH
COMMIT, MKDIR, REMOVE, RMDIR, RENAME, END = (Frame.COMMIT, Frame.MKDIR, Frame.REMOVE,
                                             Frame.RMDIR, Frame.RENAME, Frame.END)
#: Resends in a row with no frame acknowledged in between: then the link loses more than it
#: carries (an overrunning UART, a bad cable), and trying on would never end.
MAX_RESENDS = 8


def paced_chunk(budget: int) -> int:
    """The payload of a frame that, with its header and a resync, fits in ``budget`` bytes."""
    return max(16, budget - len(RESYNC) - 10)


def check(data: bytes, init: int, crc: bool) -> int:
    if crc:
        return zlib.crc32(data, init) & 0xFFFFFFFF
    return (init + sum(data) + len(data) * 0x10001) & 0xFFFFFFFF


def file_digest(data: bytes, use_sha: bool) -> str:
    """The digest the board will compute over the file it wrote."""
    if use_sha:
        return hashlib.sha256(data).hexdigest()
    a = 0
    for i in range(0, len(data), 1024):
        a = (a * 31 + sum(data[i:i + 1024])) & 0xFFFFFFFF
    return f"sum:{a:08x}:{len(data)}"


@dataclass
class Stats:
    """What a session moved: file bytes, and bytes on the wire each way."""

    payload: int = 0
    wire_out: int = 0
    frames: int = 0
    resent: int = 0


class SendSession:
    """Host side of ``mk_recv``: queue operations; ``close()`` waits until all are acknowledged."""

    def __init__(self, repl: RawRepl, caps: Caps, window: int = 4,
                 ack_timeout: float = 10.0, entry: str = "mk_recv") -> None:
        self.repl = repl
        self.caps = caps
        self.window = window
        self.window_bytes = max(2 * caps.chunk + 1024, 4096)
        self.ack_timeout = ack_timeout
        self.stats = Stats()
        self._seq = 0
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._owner = ""  # the path of the operation being sent
        self._owners: dict[int, str] = {}  # frame seq -> the path of its operation
        self._error: OSError | None = None
        #: What this session did, for a host that keeps track of the board's tree.
        self.journal: list[tuple[str, str, int, str]] = []
        self._stream: Any = None  # the session's deflate compressor, made on first use
        self._ended = False  # the board left the session (seen from its prompt)
        self._resends = 0  # resends since the board last acknowledged a frame
        self._torn = 0  # the length of a write that an exception (Ctrl-C) may have cut short
        self.error_text = ""  # the board's own words for the first error it reported
        # mk_recv, or a part's; a lean board drops the code that receives after the session.
        repl.send_code(f"{entry}({caps.chunk}, {not caps.lean})".encode())
        # The first byte tells: 04 the board raised instead (it says why); anything else is
        # the agent's READY line, which only the agent prints, damaged or not.
        first = repl.read_exact(1, 10)
        if first == b"\x04":
            try:
                repl.fail(first + repl.read_until(b"\n", 10, what="the board's error"))
            except BoardError as exc:
                if exc.exc_type != "MemoryError":
                    raise
                raise OSError(12, "the board ran out of RAM for a session's buffers "
                              f"({exc.message}): soft-reset the board (`mpkick reset`) and "
                              "retry") from None
        try:
            ready = first + repl.read_until(b"\n", 2, what="the agent to start receiving")
        except DeviceTimeout:
            ready = first + repl.take()  # its newline lost: the agent waits for frames
        if first != b"\x06" and b"READY" not in ready:
            raise ProtocolError(f"the agent answered {ready!r} instead of READY: retry")
        #: Frame size the board could allocate (less than asked on a fragmented heap). A size
        #: damaged on the way cannot be trusted: 256 bytes always fit (slow, but right).
        said = ready.split()[-1] if ready.split() else b""
        self.chunk = min(int(said), caps.chunk) if said.isdigit() else 256
        self.window_bytes = max(2 * self.chunk + 1024, 4096)
        budget = repl.budget
        if budget is not None:
            # A link that loses what the board has no room for: unacknowledged frames (and a
            # resync before them) never outgrow its buffer, since each ACK means "read".
            self.chunk = min(self.chunk, paced_chunk(budget))
            self.window_bytes = budget - len(RESYNC)

    # ----------------------------------------------------------------- operations

    def put(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write ``data`` to ``path`` atomically: temp name, verify on the board, rename."""
        self._send(OPEN, f"{path}\x00{self.caps.wbits}".encode())
        self._send_literal(data, progress)
        self._commit(path, data)

    def _commit(self, path: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        self._send(COMMIT, (sha if self.caps.hashlib else file_digest(data, False)).encode())
        self.journal.append(("put", path, len(data), sha))

    @property
    def wire_bytes(self) -> int:
        return self.stats.wire_out

    def put_delta(self, path: str, ops: Sequence[tuple[int, int] | bytes], data: bytes,
                  progress: Callable[[int], None] | None = None) -> None:
        """Rebuild ``path`` as ``data`` from ranges of its current content plus literal bytes.

        ``ops`` are ``(offset, length)`` ranges of the board's copy or literal ``bytes``, in
        order. The board builds a temp file, checks it against ``data``'s hash and renames it,
        so a wrong guess about the board's copy fails the commit instead of corrupting it.
        """
        self._send(OPEN, f"{path}\x00{self.caps.wbits}".encode())
        ranges: list[tuple[int, int]] = []
        per_frame = max(1, self.chunk // 8)
        for op in [*ops, b""]:
            if isinstance(op, tuple) and len(ranges) < per_frame:
                ranges.append(op)
                continue
            if ranges:
                self._send(PATCH, b"".join(o.to_bytes(4, "little") + n.to_bytes(4, "little")
                                           for o, n in ranges))
                if progress is not None:
                    progress(sum(n for _, n in ranges))
                ranges = []
            if isinstance(op, tuple):
                ranges.append(op)
            else:
                self._send_literal(op, progress)
        self._commit(path, data)

    def send_data(self, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Data for the operation under way (an extension's: a ROM write), compressed."""
        self._send_literal(data, progress)

    def _send_literal(self, data: bytes, progress: Callable[[int], None] | None) -> None:
        chunk = self.chunk - 4  # room for the stream frame's length field
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            kind, payload = self._pack(part)
            self._send(kind, payload)
            self.stats.payload += len(part)
            if progress is not None:
                progress(len(part))

    def _pack(self, part: bytes) -> tuple[int, bytes]:
        """The smallest way to send ``part``: a piece of the session-wide deflate stream
        (files share their context), a self-contained deflate block on firmware that cannot
        stream, or the bytes themselves when they do not shrink."""
        if not self.caps.compress or len(part) <= 64:
            return DATA, part
        if self.caps.stream:
            if self._stream is None:
                self._stream = zlib.compressobj(9, zlib.DEFLATED, -self.caps.wbits)
            before = self._stream.copy()
            packed = self._stream.compress(part) + self._stream.flush(zlib.Z_SYNC_FLUSH)
            if len(packed) + 3 < len(part):
                return STREAM, len(part).to_bytes(3, "little") + packed
            self._stream = before  # the board never sees this piece: keep the streams in step
            return DATA, part
        comp = zlib.compressobj(9, zlib.DEFLATED, -self.caps.wbits)
        packed = comp.compress(part) + comp.flush()
        return (ZDATA, packed) if len(packed) < len(part) - 16 else (DATA, part)

    def mkdir(self, path: str) -> None:
        self._send(MKDIR, path.encode())
        self.journal.append(("mkdir", path, 0, ""))

    def send(self, kind: int, payload: bytes) -> None:
        """Queue a frame of a kind this module does not wrap (``image flash``'s blocks)."""
        self._send(kind, payload)

    def remove(self, path: str) -> None:
        self._send(REMOVE, path.encode())
        self.journal.append(("remove", path, 0, ""))

    def rmdir(self, path: str) -> None:
        self._send(RMDIR, path.encode())
        self.journal.append(("rmdir", path, 0, ""))

    def rename(self, src: str, dst: str) -> None:
        self._send(RENAME, f"{src}\x00{dst}".encode())
        self.journal.append(("rename", src, 0, dst))

    def close(self) -> None:
        """End the session; raise the first error the board reported."""
        if self._torn:
            # Ctrl-C cut a write short: the board waits for the rest of that frame, which
            # never comes. Zeros as long as the write finish it (or, after a whole frame, are
            # no frame): the board answers NAK at once and the resend below begins with a
            # resync, instead of both sides waiting out the ack timeout.
            self.repl.write(bytes(self._torn))
            self._torn = 0
        self._send(END, b"")
        while self._unacked:
            self._wait_ack()
        if self._ended:
            if self._error is not None:
                raise self._error
            return
        try:
            # The end was acknowledged: every operation is done. The board's closing bytes
            # follow at once; if one of them is damaged, only the REPL needs finding again.
            self.repl.finish(3)
        except (DeviceTimeout, ProtocolError):
            self.repl.enter_raw()
        if self._error is not None:
            raise self._error

    # ----------------------------------------------------------------- frames

    def _frame(self, kind: int, seq: int, payload: bytes) -> bytes:
        head = bytes((kind, seq)) + len(payload).to_bytes(3, "little")
        crc = check(payload, check(head, 0, self.caps.crc32), self.caps.crc32)
        return bytes((SYNC,)) + head + crc.to_bytes(4, "little") + payload

    def _send(self, kind: int, payload: bytes) -> None:
        if self._error is not None and kind != END:
            return  # the board refused an earlier operation: send nothing more but the end
        frame = self._frame(kind, self._seq, payload)
        if kind in (OPEN, MKDIR, REMOVE, RMDIR, RENAME):
            self._owner = payload.split(b"\x00")[0].decode("utf-8", "replace")
        self._owners[self._seq] = self._owner  # seq wraps at 256, far beyond the window
        while self._unacked and (len(self._unacked) >= self.window or
                                 sum(len(f) for _, f in self._unacked) + len(frame)
                                 > self.window_bytes):
            self._wait_ack()
        self._unacked.append((self._seq, frame))
        self._seq = (self._seq + 1) & 0xFF
        self._put(frame)
        self.stats.wire_out += len(frame)
        self.stats.frames += 1

    def _put(self, data: bytes) -> None:
        self._torn = len(data)
        self.repl.write(data)
        self._torn = 0

    def _wait_ack(self) -> None:
        """Take one answer from the board. Answers are cumulative (the board works in order),
        so a damaged one is skipped and the next good one covers it; when nothing good follows,
        the host resyncs and resends what is unacknowledged, and the board re-acknowledges
        what it already has. A damaged byte on the way back costs a resend, not the push."""
        for attempt in range(6):
            try:
                code = self.repl.read_exact(1, self.ack_timeout)[0]
                if code not in (ACK, NAK, ERR):
                    self._damaged(code)
                    if not self._unacked:
                        return  # the board left the session: nothing is outstanding
                    continue
                seq = self.repl.read_exact(1, 0.5)[0]  # half an answer, then silence: damage
            except DeviceTimeout:
                if attempt == 5:
                    raise
                self._resend(self._unacked[0][0])  # lost bytes: resync and send again
                continue
            pending = [s for s, _ in self._unacked]
            if code == NAK:
                self._resend(seq)
                return
            if seq not in pending:
                continue  # a second answer to a frame sent twice, or a damaged number
            if code == ACK:
                self._acked(seq)
                return
            self._board_error(seq)
            return
        raise DeviceTimeout("the board stopped acknowledging data; replug it and retry")

    def _board_error(self, seq: int) -> None:
        line = self.repl.read_until(b"\n", self.ack_timeout).decode("utf-8", "replace")
        errno_text, _, message = line.strip().partition(" ")
        path = self._path_of(seq)
        if self._error is None:
            self.error_text = message
            err = os_error(int(errno_text) if errno_text.isdigit() else 5, path)
            if err.errno == 12:
                err = OSError(12, f"the board ran out of RAM while writing it ({message}, frames "
                              f"of {self.chunk} bytes): soft-reset the board (`mpkick reset`) "
                              "and push again", path or None)
            elif "hash mismatch" in message:
                err = VerifyError(5, "the board's copy did not match after writing", path)
            elif "operation(s) failed" in message:
                err = OSError(5, f"the board reports {message}; push again", path or None)
            elif err.errno == 5 and message:
                # An I/O error says what the board said, never a bare "Input/output error".
                said = message.split("] ", 1)[-1]
                err = OSError(5, f"the board reports an I/O error ({said}); push again, and if "
                              "it stays, check the board's flash (mpkick df, image pull)",
                              path or None)
            self._error = err
        self._acked(seq)

    def _damaged(self, code: int) -> None:
        """A byte that starts no answer. Look ahead: a board that restarted says so in its
        banner; a board that already left the session shows its prompt."""
        ahead = self.repl.drain(0.05, limit=0.2)
        seen = bytes((code,)) + ahead
        if b"MicroPython" in seen or b"soft reboot" in seen:
            raise ConnectError("the board restarted in the middle of the transfer (power, reset "
                               "button or a crash); files it had finished are intact: run the "
                               "command again")
        end_seq = next((s for s, f in self._unacked if f[1] == END), None)
        if end_seq is not None and seen.endswith(b"\x04\x04>"):
            # The board left the session; whether its last answers said "all done" is in them.
            self._unacked.clear()
            self._ended = True
            if bytes((ACK, end_seq, 4)) not in seen and self._error is None:
                self._error = OSError(5, "the board's last answers were damaged on the way, so "
                                      "it is not known that every file was written: push again")
            return
        self.repl.unread(ahead)  # the answers after the damaged byte are still good

    def _acked(self, seq: int) -> None:
        self._resends = 0
        while self._unacked:
            first, _ = self._unacked.popleft()
            if first == seq:
                return

    def _resend(self, seq: int) -> None:
        self._resends += 1
        if self._resends > MAX_RESENDS:
            raise ProtocolError(f"the board lost frame {seq} {MAX_RESENDS} times in a row: the "
                                "link drops bytes (a UART overrun, a bad cable); files it "
                                "finished are intact: retry, at a lower baud rate if it "
                                "happens again")
        while self._unacked and self._unacked[0][0] != seq:
            if not any(s == seq for s, _ in self._unacked):
                break
            self._unacked.popleft()
        time.sleep(0.05)  # let what is in flight arrive, so the resync lands after it
        self._put(RESYNC)
        for _, frame in self._unacked:
            self._put(frame)
            self.stats.resent += 1
            self.stats.wire_out += len(frame)

    def _path_of(self, seq: int) -> str:
        """The path of the operation frame ``seq`` belongs to (an error names its file)."""
        return self._owners.get(seq, "")


def receive_file(repl: RawRepl, caps: Caps, path: str) -> bytes:
    """Read a whole file from the board through ``mk_send``'s checked frames."""
    return receive_frames(repl, caps, f"mk_send({path!r}, {caps.chunk}, {not caps.lean})", path)


def receive_frames(repl: RawRepl, caps: Caps, code: str, what: str,
                   progress: Callable[[int], None] | None = None) -> bytes:
    """Run ``code`` (an agent function writing checked frames, then a sha256 line); the data.

    ``what`` names the data in errors (a file's path, the board's flash).
    """
    repl.send_code(code.encode())
    parts = []
    while True:
        head = repl.read_exact(8, 10)
        if head[0] != SYNC:
            # Not a frame: the board raised (e.g. no such file) and printed a traceback.
            repl.unread(head)
            repl.finish(10)
            raise ProtocolError(f"the board sent something other than the data of {what}")
        n = int.from_bytes(head[1:4], "little")
        crc = int.from_bytes(head[4:8], "little")
        data = repl.read_exact(n, 10) if n else b""
        if check(data, 0, caps.crc32) != crc:
            repl.drain(0.2)
            raise ProtocolError(f"damaged data while reading {what}; retry")
        if not n:
            break
        parts.append(data)
        if progress is not None:
            progress(n)
    digest = repl.read_until(b"\n", 10).strip().decode()
    repl.finish(10)
    content = b"".join(parts)
    if digest != "-" and digest != hashlib.sha256(content).hexdigest():
        raise ProtocolError(f"{what} read back with a different hash; retry")
    return content
