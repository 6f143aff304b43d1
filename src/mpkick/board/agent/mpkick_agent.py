# mpkick's agent: runs ON the board. Kept at /.mpkick/mpkick_agent.py and imported when its
# version matches, so it is not resent every session. Every name it exports starts with mk_.
# It must run on old, small firmware too: every optional module is probed, never assumed.
# This is its core (capabilities, the manifest, what both halves share); its two halves are
# imported on first use: mpkick_read.py (listing, stat, sending a file) and mpkick_recv.py
# (the binary session that writes). The frame kinds (_OPEN, _ACK, ...) are
# protocol/opcodes.py's, compiled in front of this text.
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
    import micropython as _mp
except ImportError:
    _mp = None
import gc

try:
    from time import ticks_us as _us, ticks_diff as _since
except ImportError:
    _us = None

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


# Where the board's time goes, in microseconds, while the host watches (Board.session_times):
# in sessions receiving frames (waiting for them included), inflating, writing, hashing,
# renaming; and listing the tree (the whole of a push that finds nothing to send).
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
# Changes go to a journal, appended in runs (each in walk order), merged into it by one pass
# (_compact). A journal of at most JMAX bytes (an edit or a few) stays beside the manifest,
# and readers hold it in RAM: rewriting the whole manifest costs more than the edit itself on
# a slow board. A longer journal is one run (a writer merges earlier runs before it grows
# past JMAX), so it merges streaming; a small heap (_lean) merges every journal at once.
S = "\U0010ffff"  # sorts after every character: a folder's files before a longer sibling name
HEAD = "#mk2\n"
JMAX = 2048
_lean = [False]


def _key(path):
    # littlefs lists a folder with a name before a longer one it is the start of ("aa", "a"):
    # ending every part with S gives the same order, and a folder's entries right after it.
    return path.replace("/", S) + S


def _parse(line):
    p = line.rstrip("\n").split("\t", 3)
    if len(p) != 4:
        return None
    return p[3], int(p[0]), int(p[1]), p[2]


def _jsize():
    # The journal's length; -1 when there is none, JMAX + 1 when the port cannot say.
    try:
        return os.stat(JOURNAL)[6]
    except OSError:
        return -1
    except AttributeError:
        return JMAX + 1


def _load():
    # {key: (path, size, mtime, hash)} of the journal, later lines winning.
    d = {}
    try:
        with open(JOURNAL) as j:
            for line in j:
                e = _parse(line)
                if e:
                    d[_key(e[0])] = e
    except OSError:
        pass
    return d


def _kept():
    # The journal a reader holds beside the manifest: a small one, on a roomy heap.
    return {} if _lean[0] or _jsize() > JMAX else _load()


def _settle():
    # Merge the journal unless it is small enough to stay beside the manifest.
    if _lean[0] or _jsize() > JMAX:
        _compact()


class _Man:
    """The manifest, read forward only: get(path) in walk order costs one line at a time.
    With kept, what a small journal says overrides it."""

    def __init__(self, kept=False):
        self.f = None
        self.skipped = None  # called with entries passed over unasked: gone from the board
        self.kept = kept
        self.open()

    def open(self):
        self.close()
        self.cur = None
        self.last = ""
        self.over = _kept() if self.kept else {}
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
        e = None
        if self.cur is not None and self.cur[0] == k:
            e = self.cur[2:]
            self.next()
        o = self.over.pop(k, None)
        if o is not None:
            e = None if o[3] == "-" else o[1:]
        return e

    def rest(self, within):
        # The end of a walk: every entry below within not asked for is gone from the board.
        self.get(within + S)
        if self.skipped is not None:
            for k in sorted(self.over):
                p = self.over[k][0]
                if p.startswith(within) and self.over[k][3] != "-":
                    self.skipped(p)
        self.over = {}

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


class _Journal:
    """Manifest changes, appended in walk order; out of order, what is there is merged first,
    as are earlier runs before this one grows past JMAX."""

    def __init__(self, man=None):
        self.f = None
        self.last = ""
        self.man = man  # a manifest being read, closed while the journal is merged into it
        self.base = 0  # what earlier runs left in the journal
        self.n = 0  # what this run wrote

    def add(self, path, size=0, mtime=0, h="-"):
        if not hashlib or path.startswith(META + "/"):
            return
        k = _key(path)
        line = "%d\t%d\t%s\t%s\n" % (size, mtime, h, path)
        if self.f is not None and k <= self.last:
            self._merge()
        if self.f is None:
            if _lean[0] or _jsize() > JMAX:
                self._merge()  # a long journal: one run, whose order is not known here
            self.base = max(_jsize(), 0)
            self.n = 0
            try:
                os.mkdir(META)
            except OSError:
                pass
            self.f = open(JOURNAL, "a")
        if self.base and self.base + self.n + len(line) > JMAX:
            self._merge()  # several runs never outgrow JMAX: the long journal is one run
            self.f = open(JOURNAL, "a")
        self.last = k
        self.f.write(line)
        self.n += len(line)

    def _merge(self):
        self.close()
        if self.man:
            self.man.close()  # it reads the new manifest from the start when next asked
        _compact()
        self.base = self.n = 0

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


def _runs():
    # The journal's entries in walk order, as (key, entry): a small one sorted in RAM (it may
    # hold several runs), a long one streamed (it is one run).
    if _jsize() <= JMAX:
        d = _load()
        for k in sorted(d):
            yield k, d[k]
        return
    last = ""
    with open(JOURNAL) as j:
        for line in j:
            e = _parse(line)
            if e:
                k = _key(e[0])
                if k <= last:
                    raise ValueError("journal order")
                last = k
                yield k, e


def _line(e):
    return "%d\t%d\t%s\t%s\n" % (e[1], e[2], e[3], e[0])


def _compact():
    # One pass: manifest and journal, both in walk order, into a new manifest; "-" removes.
    if _jsize() < 0:
        return
    m = _Man()
    tmp = MANIFEST + ".tmp"
    try:
        _merge_into(tmp, m)
    except ValueError:
        # Not one run, or a damaged line (never written so): the cache is dropped, and the
        # next listing hashes every file again, rather than trust an entry that may be stale.
        for p in (tmp, MANIFEST):
            try:
                os.remove(p)
            except OSError:
                pass
        os.remove(JOURNAL)
        return
    os.rename(tmp, MANIFEST)
    os.remove(JOURNAL)


def _merge_into(tmp, m):
    try:
        with open(tmp, "w") as out:
            out.write(HEAD)
            for k, e in _runs():
                while m.cur is not None and m.cur[0] < k:
                    out.write(_line(m.cur[1:]))
                    m.next()
                if m.cur is not None and m.cur[0] == k:
                    m.next()
                if e[3] != "-":
                    out.write(_line(e))
                _mark()
            while m.cur is not None:
                out.write(_line(m.cur[1:]))
                m.next()
    finally:
        m.close()


def _run(name, fn, keep, args):
    # A call into one half of the agent: mpkick_read (listing, stat, sending a file) or
    # mpkick_recv (the session that writes). Imported on first use; with keep false (a small
    # heap) dropped again after, so that the other half finds the room.
    try:
        f = globals()[fn]  # sent in pieces (a tiny heap): here already, beside the core
    except KeyError:
        try:
            f = getattr(__import__(name), fn)
        except Exception:
            sys.modules.pop(name, None)  # half imported (out of RAM): afresh next time
            raise
    _lean[0] = not keep
    try:
        f(*args)
    finally:
        if not keep:
            sys.modules.pop(name, None)
            f = None
            gc.collect()


def mk_caps(want=None):
    # ``want``: the version the host expects (MK_V is prepended when the agent is installed);
    # checked before a half of another version could be imported. What the board offers
    # comes from the reading half (agent/mpkick_probe.py's mk_have is in front of it).
    if want is not None and want != globals().get("MK_V"):
        raise ImportError("agent version")
    _run("mpkick_read", "_caps", True, ())


def mk_tree(root, hashes, digest=False, keep=True):
    t = _us() if _prof[0] is not None else 0
    _run("mpkick_read", "_tree", keep, (root, hashes, digest))
    if t:
        _tick(5, t)


def mk_stat(path, keep=True):
    _run("mpkick_read", "_stat1", keep, (path,))


def mk_usage(path="/", keep=True):
    _run("mpkick_read", "_usage", keep, (path,))


def mk_send(path, chunk, keep=True):
    _run("mpkick_read", "_send", keep, (path, chunk))


def mk_recv(chunk, keep=True):
    """Receive framed operations on stdin until the host ends the session."""
    if _mp:
        _mp.kbd_intr(-1)
    try:
        _run("mpkick_recv", "_recv", keep, (chunk,))
    finally:
        if _mp:
            _mp.kbd_intr(3)


def _put_frame(out, data):
    # Board to host: SYNC, 3-byte length, check, data. mk_send and mk_pull speak the same.
    k = len(data)
    c = _check(data)
    out.write(bytes((_SYNC, k & 0xFF, (k >> 8) & 0xFF, k >> 16, c & 0xFF, (c >> 8) & 0xFF,
                     (c >> 16) & 0xFF, c >> 24)))
    if k:
        out.write(data)


# Parts of the agent loaded only when needed (mpkick_flash, mpkick_romfs) use these names; a
# part that handles session frames registers its handlers here, by frame kind.
_ext = {}
mk_check = _check
mk_hex = _hex
mk_frame = _put_frame


def mk_extend(handlers):
    _ext.update(handlers)
