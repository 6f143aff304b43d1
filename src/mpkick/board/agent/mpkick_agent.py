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
# Changes go to a journal, appended here in runs, each in walk order; the listing reads the
# journal and merges it (mpkick_read: a session never merges, so it needs no room for it).
S = "\U0010ffff"  # sorts after every character: a folder's files before a longer sibling name
RUN = "#\n"  # the line that begins a run of the journal after the first
_lean = [False]  # a small heap: set by _run from the host's keep


def _key(path):
    # littlefs lists a folder with a name before a longer one it is the start of ("aa", "a"):
    # ending every part with S gives the same order, and a folder's entries right after it.
    return path.replace("/", S) + S


def _line(e):
    # An entry (path, size, mtime, hash) as the journal and the manifest keep it.
    return "%d\t%d\t%s\t%s\n" % (e[1], e[2], e[3], e[0])


class _Journal:
    """Manifest changes, appended: a path out of walk order begins a new run."""

    def __init__(self):
        self.f = None
        self.last = ""

    def add(self, path, size=0, mtime=0, h="-"):
        if not hashlib or path.startswith(META + "/"):
            return
        k = _key(path)
        if self.f is None:
            try:
                os.mkdir(META)
            except OSError:
                pass
            try:
                left = _stat(JOURNAL)  # what an earlier session left: this run follows it
            except OSError:
                left = None
            self.f = open(JOURNAL, "a")
            if left:
                self.f.write(RUN)
        elif k <= self.last:
            self.f.write(RUN)
        self.last = k
        self.f.write(_line((path, size, mtime, h)))

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


def _run(name, fn, keep, args):
    # A call into one half of the agent: mpkick_read (listing, stat, sending a file) or
    # mpkick_recv (the session that writes). Imported on first use; with keep false (a small
    # heap) dropped again after, so that the other half finds the room; and the other half
    # goes first (the reading half stays after mk_caps).
    if not keep:
        sys.modules.pop("mpkick_recv" if name == "mpkick_read" else "mpkick_read", None)
        gc.collect()
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
