# mpkick's agent, its receiving half: the binary session that writes files (mk_recv). The core
# (mpkick_agent.py) imports it on the first session, so a board that only lists its tree (a
# push with nothing to send) never holds it; on a small heap it goes again after the session.
# The frame kinds (_OPEN, _ACK, ...) are protocol/opcodes.py's, compiled in front of this text.
import gc
import os
import sys
from mpkick_agent import _Journal, _hash_file, _check, _stat, _isdir, _key, _mark
from mpkick_agent import _tick, _us, _prof, _ext

try:
    import deflate as _deflate
except ImportError:
    _deflate = None
try:
    import io as _io
except ImportError:
    _io = None
try:
    import hashlib
except ImportError:
    hashlib = None

IDLE = 5000  # ms of silence where a frame should start: the host is gone
QUIET = 500  # ms of silence that ends what was in flight
RESYNC = b"\x00\xffmpkick-resync"


class _Gone(Exception):
    # The host left: it went silent, or a new host sent Ctrl-C where a frame should start.
    pass


def _args(payload):
    # An operation's arguments: text, NUL separated.
    return bytes(payload).decode().split("\x00")


class _Session:
    """One binary receive session: many file operations for one exec."""

    def __init__(self, chunk):
        gc.collect()  # the listing before left garbage: its buffers take that room
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        self.buf = bytearray(chunk + 16)
        # Its size is part of the weak sum (channel.file_digest); sha256 takes any size.
        self.rbuf = bytearray(1024 if not hashlib else max(256, min(1024, chunk)))
        self.f = None
        self.src = None
        self.zs = None
        self.errors = 0
        self.tmp = None
        self.dest = None
        self.jour = _Journal()
        self.expect = 0
        self.dev = None  # set by F (mpkick_flash): the whole filesystem is being replaced
        self.blk = None
        self.count = 0
        self.one = bytearray(1)
        # A board never hears its host leave (no EOF over USB or a UART): poll, where the
        # firmware can, so a silent line ends the session instead of holding Ctrl-C off.
        self.poll = None
        try:
            import select

            p = select.poll()
            p.register(sys.stdin, select.POLLIN)
            self.poll = p
        except Exception:
            pass

    # ------------------------------------------------------------- frames in, answers out

    def read(self, n):
        mv = memoryview(self.buf)[:n]
        got = 0
        while got < n:
            k = self.inp.readinto(mv[got:])
            if k == 0:
                raise _Gone()  # EOF: nobody will ever send the rest
            if k:
                got += k
        return mv

    def byte(self, ms):
        # One byte, or _Gone after ms of silence (never, where there is no poll).
        if self.poll is not None and not self.poll.poll(ms):
            raise _Gone()
        if self.inp.readinto(self.one) == 0:
            raise _Gone()
        return self.one[0]

    def reply(self, code, seq, text=None):
        if text is None:
            self.out.write(bytes((code, seq)))
        else:
            self.out.write(bytes((code, seq)) + text.encode() + b"\n")

    def resync(self):
        # Skip everything until the host's resync pattern: what was in flight is discarded.
        # What follows a pause is no longer in flight: there a Ctrl-C is a new host's.
        n = len(RESYNC)
        win = bytearray(n)
        quiet = False
        while True:
            if self.poll is not None and not self.poll.poll(QUIET):
                quiet = True
            b = self.byte(IDLE)
            if quiet and b == 3:
                raise _Gone()
            if b != 10 and b != 13:
                quiet = False
            win[:-1] = win[1:]
            win[-1] = b
            if win == RESYNC:
                return

    def frame(self):
        # Where a frame should start, a live host has always sent SYNC. A Ctrl-C there (after
        # a terminal's line end, perhaps: mpremote sends CR first) is a new host that wants
        # the REPL: the one that began this session is gone. So is one silent for IDLE.
        b = self.byte(IDLE)
        while b == 10 or b == 13:
            b = self.byte(IDLE)
        if b == 3:
            raise _Gone()
        if b != _SYNC:
            return None
        head = bytes(self.read(9))
        kind, seq = head[0], head[1]
        n = head[2] | head[3] << 8 | head[4] << 16
        check = head[5] | head[6] << 8 | head[7] << 16 | head[8] << 24
        if n > len(self.buf) - 16:
            return None
        payload = self.read(n)
        if _check(payload, _check(head[0:5])) != check:
            return None
        return kind, seq, payload

    def run(self):
        try:
            self.serve()
        except _Gone:
            # Nothing half-written stays: the temporary file goes, the old file is whole; what
            # the journal holds is merged by the next listing.
            self.abandon()
            self.jour.close()

    def serve(self):
        while True:
            t = _us() if _prof[0] is not None else 0
            got = self.frame()
            if t:
                _tick(0, t)
            if got is None:
                self.reply(_NAK, self.expect)
                self.resync()
                continue
            kind, seq, payload = got
            if seq != self.expect:
                # A frame already handled (the host resent it), or one after a lost one.
                if (self.expect - seq) & 0xFF < 128:
                    self.reply(_ACK, seq)
                else:
                    self.reply(_NAK, self.expect)
                    self.resync()
                continue
            self.expect = (seq + 1) & 0xFF
            if kind == _END:
                self.end(seq, payload)
                return
            try:
                self.op(kind, payload)
                _mark()
                self.reply(_ACK, seq)
            except Exception as e:
                self.abandon()
                self.errors += 1
                err = e.args[0] if e.args and isinstance(e.args[0], int) else 5
                if isinstance(e, MemoryError):
                    err = 12
                    gc.collect()
                self.reply(_ERR, seq, "%d %s" % (err, e))

    def op(self, kind, payload):
        # Each frame kind has its handler: the session's own (_OPS), or a part's (mk_extend).
        h = _OPS.get(kind) or _ext.get(kind)
        if h is None:
            raise OSError(22, "unknown frame %d" % kind)
        h(self, payload)

    def end(self, seq, payload):
        # X: the session ends; its answer covers every operation before it.
        self.close_file()
        h = _ext.get(_END)
        if h is not None:
            try:
                h(self, payload)  # a part's last word (mpkick_flash mounts what it flashed)
            except Exception:
                pass  # it failed already and was reported
        self.jour.close()  # the next listing merges it (mpkick_read)
        # An error the host may have missed (its answer damaged on the way) still shows here.
        if self.errors:
            self.reply(_ERR, seq, "5 %d operation(s) failed" % self.errors)
        else:
            self.reply(_ACK, seq)

    # ------------------------------------------------------------- one handler per frame

    def open(self, payload):
        # O: open DEST for writing (atomic when the board can rename)
        a = _args(payload)
        self.close_file()
        if len(self.buf) < 1024:
            gc.collect()  # a tiny heap: each file's objects go where the last one's went
        self.dest = a[0]
        self.wbits = int(a[1])
        self.tmp = (self.dest + ".mkt") if hasattr(os, "rename") else self.dest
        self.f = open(self.tmp, "wb")

    def data(self, payload):
        # D: raw data for the open file
        if self.f is not None:
            self.write(payload)

    def zdata(self, payload):
        # Z: one deflate block of its own
        if self.f is not None:
            self.write(_inflate(bytes(payload), self.wbits))

    def write(self, data):
        t = _us() if _prof[0] is not None else 0
        self.f.write(data)
        if t:
            _tick(2, t)

    def stream(self, payload):
        # S: one deflate stream for the whole session (files share their context, so a project
        # compresses as one): every frame ends on a sync flush, so its bytes decode completely.
        # The source is a BytesIO refilled in place: the unread tail moves to the front. Its
        # room and the output's are taken once, so a long session does not fragment the heap.
        if self.zs is None:
            self.zsrc = _io.BytesIO(bytearray(len(self.buf)))
            self.zs = _deflate.DeflateIO(self.zsrc, _deflate.RAW, self.wbits)
            self.zend = 0
        src = self.zsrc
        rest = src.read(self.zend - src.tell())
        src.seek(0)
        src.write(rest)
        src.write(payload[3:])
        self.zend = len(rest) + len(payload) - 3
        src.seek(0)
        n = payload[0] | payload[1] << 8 | payload[2] << 16
        out = memoryview(self.buf)  # the payload is in the source already
        p = _prof[0] is not None
        while n:
            t = _us() if p else 0
            k = self.zs.readinto(out[:min(n, len(out))])
            if not k:
                raise OSError(5, "the compressed data ended early")
            if p:
                t = _tick(1, t)
            if self.f is not None:
                self.f.write(out[:k])
            if p:
                _tick(2, t)
            n -= k

    def patch(self, payload):
        # P: copy (offset, length) ranges of the old file into the new one. The old file
        # stays intact at dest until commit renames the temporary file over it.
        if self.f is None:
            return
        if self.src is None:
            self.src = open(self.dest, "rb")
        mv = memoryview(self.rbuf)
        for i in range(0, len(payload), 8):
            p = payload[i:i + 8]
            n = p[4] | p[5] << 8 | p[6] << 16 | p[7] << 24
            self.src.seek(p[0] | p[1] << 8 | p[2] << 16 | p[3] << 24)
            while n:
                k = self.src.readinto(mv[:min(n, len(mv))])
                if not k:
                    raise OSError(5, "old copy of %s is shorter than expected" % self.dest)
                self.f.write(mv[:k])
                n -= k

    def commit(self, payload):
        # C: the file is whole; hashed again from flash, it replaces the old one if it matches
        want = _args(payload)[0]
        if self.f is None:
            raise OSError(5, "no file open")
        f, self.f = self.f, None
        f.close()
        self.close_src()
        t = _us() if _prof[0] is not None else 0
        h = _hash_file(self.tmp, self.rbuf)
        if t:
            t = _tick(3, t)
        if h != want and not (want.startswith("sum:") and not hashlib):
            try:
                os.remove(self.tmp)
            except OSError:
                pass
            # A delta built on a hash this manifest gave for a file changed behind it (same
            # size and mtime): forget it, so the next listing hashes the file afresh.
            self.jour.add(self.dest)
            raise OSError(5, "hash mismatch after writing %s" % self.dest)
        if self.tmp != self.dest:
            os.rename(self.tmp, self.dest)
            if t:
                _tick(4, t)
        st = _stat(self.dest)
        if st:
            self.jour.add(self.dest, st[6], st[8], h)
        self.tmp = None

    def mkdir(self, payload):
        # M: a folder (one already there is fine)
        path = _args(payload)[0]
        try:
            os.mkdir(path)
        except OSError as e:
            st = _stat(path)
            if not (st and _isdir(st[0])):
                raise e

    def remove(self, payload):
        # R: remove a file
        path = _args(payload)[0]
        os.remove(path)
        self.jour.add(path)

    def rmdir(self, payload):
        # Q: remove an empty folder
        os.rmdir(_args(payload)[0])

    def rename(self, payload):
        # N: rename
        a = _args(payload)
        os.rename(a[0], a[1])
        for p in sorted(a[:2], key=_key):
            self.jour.add(p)

    # ------------------------------------------------------------- the open file

    def close_file(self):
        if self.f is not None:
            self.abandon()

    def close_src(self):
        if self.src is not None:
            src, self.src = self.src, None
            src.close()

    def abandon(self):
        self.close_src()
        if self.f is not None:
            try:
                self.f.close()
            except Exception:
                pass
            self.f = None
        if self.tmp is not None and self.tmp != self.dest:
            try:
                os.remove(self.tmp)
            except OSError:
                pass
        self.tmp = None


_OPS = {_OPEN: _Session.open, _DATA: _Session.data, _ZDATA: _Session.zdata,
        _STREAM: _Session.stream, _PATCH: _Session.patch, _COMMIT: _Session.commit,
        _MKDIR: _Session.mkdir, _REMOVE: _Session.remove, _RMDIR: _Session.rmdir,
        _RENAME: _Session.rename}


def _inflate(data, wbits):
    if _deflate and _io:
        return _deflate.DeflateIO(_io.BytesIO(data), _deflate.RAW, wbits).read()
    import zlib  # firmware without deflate.DeflateIO: the host sends Z only where zlib is

    return zlib.decompress(data, -wbits)


def _recv(chunk):
    # The core's mk_recv calls this, with Ctrl-C switched off. The host chose the frame size
    # from the free RAM before this half was imported: frames of a 24th of what is left now
    # at most (as protocol/caps.py's Caps.chunk reckons), or a small heap runs out mid-file.
    gc.collect()
    while chunk > 256 and chunk * 24 > gc.mem_free():
        chunk //= 2
    while True:
        try:
            s = _Session(chunk)
            break
        except MemoryError:
            # A fragmented heap: take smaller frames rather than fail.
            if chunk <= 256:
                raise
            chunk //= 2
            gc.collect()
    sys.stdout.write("\x06READY %d\n" % chunk)
    s.run()
