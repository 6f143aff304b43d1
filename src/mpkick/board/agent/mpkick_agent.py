# mpkick's agent: runs ON the board. Kept at /.mpkick/mpkick_agent.py and imported when its
# version matches, so it is not resent every session. Every name it exports starts with mk_.
# It must run on old, small firmware too: every optional module is probed, never assumed.
import os
import sys

# What the REPL gets from "from mpkick_agent import *": the mk_ names only. Every name more
# grows the REPL's globals, in one allocation a fragmented small heap may not have.
__all__ = ["mk_caps", "mk_usage", "mk_tree", "mk_stat", "mk_recv", "mk_send", "mk_check",
           "mk_hex", "mk_frame", "mk_extend"]

try:
    import hashlib
except ImportError:
    hashlib = None
try:
    from binascii import crc32 as _crc32
except ImportError:
    _crc32 = None
try:
    from binascii import hexlify as _hexlify
except ImportError:
    _hexlify = None
try:
    import deflate as _deflate
except ImportError:
    _deflate = None
try:
    import zlib as _zlib
except ImportError:
    _zlib = None
try:
    import micropython as _mp
except ImportError:
    _mp = None
try:
    import io as _io
except ImportError:
    _io = None
import gc

try:
    from time import ticks_us as _us, ticks_diff as _since
except ImportError:
    _us = None

SYNC = 0xA5
IDLE = 5000  # ms of silence where a frame should start: the host is gone
QUIET = 500  # ms of silence that ends what was in flight
RESYNC = b"\x00\xffmpkick-resync"
META = "/.mpkick"
MANIFEST = META + "/manifest"
JOURNAL = META + "/journal"


# The most heap in use seen so far, while the host watches (Board.heap_peak sets it).
_peak = [None]


def _mark():
    # Heap in use right now (after a collection, so garbage does not count).
    if _peak[0] is not None:
        gc.collect()
        a = gc.mem_alloc()
        if a > _peak[0]:
            _peak[0] = a


# Where a session's time goes, in microseconds, while the host watches (Board.session_times):
# receiving frames (waiting for them included), inflating, writing, hashing, renaming.
_prof = [None]


def _tick(i, t0):
    # Add the time since t0 to account i; the time now, for the next account.
    t = _us()
    _prof[0][i] += _since(t, t0)
    return t


def _hex(b):
    if _hexlify:
        return _hexlify(b).decode()
    return "".join("%02x" % x for x in b)


def _check(data, init=0):
    # CRC-32 where binascii has it; otherwise a sum the host computes the same way.
    if _crc32:
        return _crc32(data, init) & 0xFFFFFFFF
    return (init + sum(data) + len(data) * 0x10001) & 0xFFFFFFFF


def _isdir(mode):
    return mode & 0x4000


def _stat(path):
    try:
        return os.stat(path)
    except AttributeError:
        return None


def mk_caps(want=None):
    # Printed at every connection, so a bit mask, not a dict: about 30 bytes instead of 220.
    # The bits come from mk_have (agent/mpkick_probe.py, installed in front of this file).
    # ``want``: the version the host expects (MK_V is prepended when the agent is installed).
    if want is not None and want != globals().get("MK_V"):
        raise ImportError("agent version")
    mask, free = mk_have()
    ident = None
    try:
        with open(META + "/id") as f:
            ident = f.read().strip()
    except OSError:
        pass
    print(repr((mask, free, ident)))


def mk_usage(path="/"):
    v = os.statvfs(path)
    print(repr((v[0] * v[2], v[0] * v[3], v[0])))


def _hash_file(path, buf):
    if hashlib:
        h = hashlib.sha256()
    else:
        a = 0
    n = 0
    with open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            chunk = buf if k == len(buf) else memoryview(buf)[:k]
            if hashlib:
                h.update(chunk)
            else:
                a = (a * 31 + sum(chunk)) & 0xFFFFFFFF
            n += k
    if hashlib:
        return _hex(h.digest())
    return "sum:%08x:%d" % (a, n)


# The manifest keeps (size, mtime, sha256) per file so unchanged files are not hashed again.
# It is a file sorted in the order the tree is walked (_key), read with one cursor while the
# tree is walked, so its size costs the board nothing: RAM holds one line, never the whole.
# Changes go to a journal, in the same order, merged into it by one streaming pass (_compact).
S = "\U0010ffff"  # sorts after every character: a folder's files before a longer sibling name
HEAD = "#mk2\n"


def _key(path):
    # littlefs lists a folder with a name before a longer one it is the start of ("aa", "a"):
    # ending every part with S gives the same order, and a folder's entries right after it.
    return path.replace("/", S) + S


def _parse(line):
    p = line.rstrip("\n").split("\t", 3)
    if len(p) != 4:
        return None
    return p[3], int(p[0]), int(p[1]), p[2]


class _Man:
    """The manifest, read forward only: get(path) in walk order costs one line at a time."""

    def __init__(self):
        self.f = None
        self.skipped = None  # called with entries passed over unasked: gone from the board
        self.open()

    def open(self):
        self.close()
        self.cur = None
        self.last = ""
        try:
            self.f = open(MANIFEST)
            if self.f.readline() != HEAD:
                self.close()
        except OSError:
            self.f = None
        self.next()

    def next(self):
        self.cur = None
        while self.f is not None:
            line = self.f.readline()
            if not line:
                self.close()
                return
            e = _parse(line)
            if e:
                self.cur = (_key(e[0]),) + e
                return

    def get(self, path):
        k = _key(path)
        if k < self.last or self.f is None and self.cur is not None:
            self.open()  # asked out of walk order: read again from the start (slow, right)
        self.last = k
        while self.cur is not None and self.cur[0] < k:
            if self.skipped is not None:
                self.skipped(self.cur[1])
            self.next()
        if self.cur is not None and self.cur[0] == k:
            e = self.cur
            self.next()
            return e[2:]
        return None

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


class _Journal:
    """Manifest changes, appended in walk order; out of order, it is merged in first."""

    def __init__(self, man=None):
        self.f = None
        self.last = ""
        self.man = man  # a manifest being read, closed while the journal is merged into it

    def add(self, path, size=0, mtime=0, h="-"):
        if not hashlib or path.startswith(META + "/"):
            return
        k = _key(path)
        if k <= self.last:
            self.close()
            if self.man:
                self.man.close()  # it reads the new manifest from the start when next asked
            _compact()
        self.last = k
        if self.f is None:
            _compact()  # a journal an earlier session left: its order is not known here
            try:
                os.mkdir(META)
            except OSError:
                pass
            self.f = open(JOURNAL, "a")
        self.f.write("%d\t%d\t%s\t%s\n" % (size, mtime, h, path))

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


def _compact():
    # One pass: manifest and journal, both sorted, into a new manifest; "-" removes a file.
    try:
        j = open(JOURNAL)
    except OSError:
        return
    m = _Man()
    tmp = MANIFEST + ".tmp"
    try:
        with open(tmp, "w") as out:
            out.write(HEAD)
            for line in j:
                e = _parse(line)
                if not e:
                    continue
                k = _key(e[0])
                while m.cur is not None and m.cur[0] < k:
                    out.write("%d\t%d\t%s\t%s\n" % (m.cur[2], m.cur[3], m.cur[4], m.cur[1]))
                    m.next()
                if m.cur is not None and m.cur[0] == k:
                    m.next()
                if e[3] != "-":
                    out.write(line)
                _mark()
            while m.cur is not None:
                out.write("%d\t%d\t%s\t%s\n" % (m.cur[2], m.cur[3], m.cur[4], m.cur[1]))
                m.next()
    finally:
        m.close()
        j.close()
    os.rename(tmp, MANIFEST)
    os.remove(JOURNAL)


def _entries(path):
    if hasattr(os, "ilistdir"):
        for e in os.ilistdir(path):
            size = e[3] if len(e) > 3 else -1
            yield e[0], _isdir(e[1]), size
    else:
        for name in os.listdir(path):
            full = (path.rstrip("/") + "/" + name) if path != "/" else "/" + name
            st = _stat(full)
            if st:
                yield name, _isdir(st[0]), st[6]
            else:
                yield name, False, os.size(full) if hasattr(os, "size") else -1


def _walk(root):
    # Depth first, holding one folder iterator per level: (path, isdir, size). On littlefs
    # that is _key order; elsewhere (FAT) the manifest is read again where the order breaks.
    stack = [_entries(root)]
    base = [root]
    while stack:
        for name, isdir, size in stack[-1]:
            d = base[-1]
            full = (d + "/" + name) if d != "/" else "/" + name
            if isdir and full == META and root != META:
                continue
            yield full, isdir, size
            if isdir:
                stack.append(_entries(full))
                base.append(full)
                break
        else:
            stack.pop()
            base.pop()


def mk_tree(root, hashes, digest=False):
    """One line per entry below root: kind, size, mtime, hash, path (tab separated).

    With digest, only 32 hex digits: the XOR of sha256("kind size hash path") over all entries,
    which the host compares with listings it already knows, so an unchanged board costs one
    short answer. mpkick's own folder is left out unless it is the root asked for. RAM holds
    one path per folder level and one manifest line, however large the tree."""
    gc.collect()
    buf = bytearray(1024)  # its size is part of the weak sum (channel.file_digest)
    man = jour = None
    if hashes and hashlib:
        try:
            _compact()
        except MemoryError:
            gc.collect()  # what the failed merge held is garbage now: once more
            _compact()
        man = _Man()
        jour = _Journal(man)
        within = root.rstrip("/") + "/"
        man.skipped = lambda p: jour.add(p) if p.startswith(within) else None
    out = sys.stdout
    acc = bytearray(16) if digest else None
    try:
        for full, isdir, size in _walk(root):
            if isdir:
                if acc is None:
                    out.write("d\t0\t0\t-\t%s\n" % full)
                else:
                    _fold(acc, "d\t0\t-\t%s\n" % full)
                continue
            st = _stat(full)
            mtime = st[8] if st else 0
            if st and size < 0:
                size = st[6]
            h = "-"
            if hashes:
                e = man.get(full) if man else None
                if e and e[0] == size and e[1] == mtime:
                    h = e[2]
                else:
                    h = _hash_file(full, buf)
                    if jour:
                        jour.add(full, size, mtime, h)
            _mark()
            if acc is None:
                out.write("f\t%d\t%d\t%s\t%s\n" % (size, mtime, h, full))
            else:
                _fold(acc, "f\t%d\t%s\t%s\n" % (size, h, full))
        if man:
            man.get(within + S)  # every entry left below root is gone too
    finally:
        if man:
            man.close()
            jour.close()
    if jour and jour.last:
        _compact()
    if acc is not None:
        out.write(_hex(acc) + "\n")


def _fold(acc, line):
    h = hashlib.sha256(line.encode()).digest()
    for i in range(16):
        acc[i] ^= h[i]


def mk_stat(path):
    st = _stat(path)
    if st is None:
        for name, isdir, size in _entries(path.rsplit("/", 1)[0] or "/"):
            if name == path.rsplit("/", 1)[1]:
                print(repr((isdir and 0x4000 or 0x8000, size, 0)))
                return
        raise OSError(2)
    print(repr((st[0], st[6], st[8])))


class _Gone(Exception):
    # The host left: it went silent, or a new host sent Ctrl-C where a frame should start.
    pass


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
        self.fail = None
        self.jour = _Journal()
        self.expect = 0
        self.dev = None  # set by F: the whole filesystem is being replaced
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

    def stream(self, payload):
        # One deflate stream for the whole session (files share their context, so a project
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
        if b != SYNC:
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
            # Nothing half-written stays: the temporary file goes, the old file is whole.
            self.abandon()
            if self.man is not None:
                _save_manifest(self.man)

    def serve(self):
        while True:
            t = _us() if _prof[0] is not None else 0
            got = self.frame()
            if t:
                _tick(0, t)
            if got is None:
                self.reply(0x15, self.expect)
                self.resync()
                continue
            kind, seq, payload = got
            if seq != self.expect:
                # A frame already handled (the host resent it), or one after a lost one.
                if (self.expect - seq) & 0xFF < 128:
                    self.reply(0x06, seq)
                else:
                    self.reply(0x15, self.expect)
                    self.resync()
                continue
            self.expect = (seq + 1) & 0xFF
            if kind == 0x58:  # X: end of session
                self.close_file()
                if self.dev is not None:
                    try:
                        _ext[0](self, kind, payload)  # mount what was flashed
                    except Exception:
                        pass  # the flash already failed and was reported; nothing mounts
                self.jour.close()
                self.zs = self.zsrc = self.buf = None  # room for merging the journal
                if self.jour.last:
                    try:
                        _compact()
                    except MemoryError:
                        # Kept as it is: the next listing merges it, before it takes RAM.
                        gc.collect()
                # The end answers for the whole session: an error the host may have missed
                # (its answer damaged on the way) still shows here.
                if self.errors:
                    self.reply(0x45, seq, "5 %d operation(s) failed" % self.errors)
                else:
                    self.reply(0x06, seq)
                return
            try:
                self.op(kind, payload)
                _mark()
                self.reply(0x06, seq)
            except Exception as e:
                self.abandon()
                self.errors += 1
                err = e.args[0] if e.args and isinstance(e.args[0], int) else 5
                if isinstance(e, MemoryError):
                    err = 12
                    gc.collect()
                self.reply(0x45, seq, "%d %s" % (err, e))

    def op(self, kind, payload):
        if kind in (0x42, 0x46, 0x56):  # B, F, V: image flash, in mpkick_flash (loaded first)
            if _ext[0] is None:
                raise OSError(22, "the flash part of the agent is not loaded")
            _ext[0](self, kind, payload)
            return
        if kind == 0x50:  # P: copy (offset, length) ranges of the old file into the new one
            self.copy(payload)
            return
        if kind == 0x53:  # S: raw length:3, then the next piece of the session's deflate stream
            self.stream(payload)
            return
        if kind == 0x44 or kind == 0x5A:  # D raw data, Z deflated data
            if self.f is None:
                return
            if kind == 0x5A:
                data = _inflate(bytes(payload), self.wbits)
            else:
                data = payload
            t = _us() if _prof[0] is not None else 0
            self.f.write(data)
            if t:
                _tick(2, t)
            return
        args = bytes(payload).decode().split("\x00")
        if kind == 0x4F:  # O: open DEST for writing (atomic when the board can rename)
            self.close_file()
            if len(self.buf) < 1024:
                gc.collect()  # a tiny heap: each file's objects go where the last one's went
            self.dest = args[0]
            self.wbits = int(args[1])
            self.tmp = (self.dest + ".mkt") if hasattr(os, "rename") else self.dest
            self.f = open(self.tmp, "wb")
        elif kind == 0x43:  # C: commit with hash
            if self.f is None:
                raise OSError(5, "no file open")
            f, self.f = self.f, None
            f.close()
            self.close_src()
            t = _us() if _prof[0] is not None else 0
            h = _hash_file(self.tmp, self.rbuf)
            if t:
                t = _tick(3, t)
            if h != args[0] and not (args[0].startswith("sum:") and not hashlib):
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
        elif kind == 0x4D:  # M: mkdir
            try:
                os.mkdir(args[0])
            except OSError as e:
                st = _stat(args[0])
                if not (st and _isdir(st[0])):
                    raise e
        elif kind == 0x52:  # R: remove file
            os.remove(args[0])
            self.jour.add(args[0])
        elif kind == 0x51:  # Q: remove empty folder
            os.rmdir(args[0])
        elif kind == 0x4E:  # N: rename
            os.rename(args[0], args[1])
            for p in sorted(args[:2], key=_key):
                self.jour.add(p)
        else:
            raise OSError(22, "unknown frame %d" % kind)

    def close_file(self):
        if self.f is not None:
            self.abandon()

    def copy(self, payload):
        # The old file stays intact at dest until commit renames the temp file over it.
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


def _inflate(data, wbits):
    if _deflate and _io:
        return _deflate.DeflateIO(_io.BytesIO(data), _deflate.RAW, wbits).read()
    return _zlib.decompress(data, -wbits)


def mk_recv(chunk):
    """Receive framed operations on stdin until the host ends the session."""
    if _mp:
        _mp.kbd_intr(-1)
    try:
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
    finally:
        if _mp:
            _mp.kbd_intr(3)
        gc.collect()


def mk_send(path, chunk):
    """Send a file as checked frames: SYNC, 3-byte length, check, data; an empty frame ends it."""
    out = sys.stdout.buffer
    buf = bytearray(chunk)
    if hashlib:
        h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            k = f.readinto(buf)
            data = bytes(buf[:k]) if k else b""
            if hashlib and k:
                h.update(data)
            _put_frame(out, data)
            if not k:
                break
    out.write((_hex(h.digest()) if hashlib else "-").encode() + b"\n")


def _put_frame(out, data):
    # Board to host: SYNC, 3-byte length, check, data. mk_send and mk_pull speak the same.
    k = len(data)
    c = _check(data)
    out.write(bytes((SYNC, k & 0xFF, (k >> 8) & 0xFF, k >> 16, c & 0xFF, (c >> 8) & 0xFF,
                     (c >> 16) & 0xFF, c >> 24)))
    if k:
        out.write(data)


# Parts of the agent loaded only when needed (mpkick_flash, mpkick_sigs) run beside it in the
# REPL's namespace and use these names; a part that handles session frames registers here.
_ext = [None]
mk_check = _check
mk_hex = _hex
mk_frame = _put_frame


def mk_extend(handler):
    _ext[0] = handler
