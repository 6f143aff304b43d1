# mpkick's agent, its reading half: what the board offers (mk_caps), the tree listing
# (mk_tree) and the manifest it reads and merges, stat, free space and sending a file to the
# host. The core (mpkick_agent.py) imports it on first use; on a small heap it goes again
# after each call, so that the session (mpkick_recv.py) finds the room.
import gc
import os
import sys
from mpkick_agent import _Journal, _hash_file, _stat, _isdir, _mark, _hex, _put_frame, _key
from mpkick_agent import _line
from mpkick_agent import _peak, _lean, META, MANIFEST, JOURNAL, RUN, S, hashlib

try:
    # A port with big integers (a 64-bit "long long" one would truncate): a digest then folds
    # in one operation, not sixteen.
    _big = int.from_bytes(b"\xff" * 17, "big") >> 128 == 255 and "%032x" % 255 == "0" * 30 + "ff"
except Exception:
    _big = False
_ilist = getattr(os, "ilistdir", None)


def _caps():
    # Printed at every connection, so a bit mask, not a dict: about 30 bytes instead of 220.
    # The bits come from mk_have (agent/mpkick_probe.py, in front of this file).
    mask, free = mk_have()
    ident = None
    try:
        with open(META + "/id") as f:
            ident = f.read().strip()
    except OSError:
        pass
    print(repr((mask, free, ident)))


# The journal the sessions append to is merged here, by the listing that starts every push.
# A journal of at most JMAX bytes (an edit or a few) stays beside the manifest, read into RAM
# over it: rewriting the whole manifest would cost a slow board more than the edit did. A
# longer one is merged a run at a time, each run in walk order, so RAM holds one line of it.
HEAD = "#mk2\n"
JMAX = 2048


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
    # {key: (path, size, mtime, hash)} of the whole journal, later lines winning.
    d = {}
    with open(JOURNAL) as j:
        for line in j:
            e = _parse(line)
            if e:
                d[_key(e[0])] = e
    return d


class _Man:
    """The manifest, read forward only: get(path) in walk order costs one line at a time.
    With kept, what a short journal says overrides it."""

    skipped = None  # called with entries passed over unasked: gone from the board

    def __init__(self, kept=False):
        self.f = None
        self.kept = kept
        self.open()

    def open(self):
        self.close()
        self.cur = None
        self.last = ""
        self.over = _load() if self.kept and 0 <= _jsize() <= JMAX else {}
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
        for k in sorted(self.over):
            p = self.over[k][0]
            if p.startswith(within) and self.over[k][3] != "-":
                self.skipped(p)
        self.over = {}

    def close(self):
        if self.f is not None:
            f, self.f = self.f, None
            f.close()


def _settle():
    # Merge the journal unless it is short enough to stay beside the manifest.
    if _jsize() > (-1 if _lean[0] else JMAX):
        _compact()


def _compact():
    # Manifest and journal into a new manifest ("-" removes): a short journal in one pass,
    # sorted in RAM; a long one a pass per run. A run out of order or a damaged line (never
    # written so) drops the cache: the next listing hashes every file again rather than
    # trust an entry that may be stale.
    size = _jsize()
    if size < 0:
        return
    try:
        if size <= JMAX:
            d = _load()
            _pass([d[k] for k in sorted(d)])
        else:
            with open(JOURNAL) as j:
                more = [True]
                while more[0]:
                    _pass(_run_of(j, more))
    except ValueError:
        for p in (MANIFEST, MANIFEST + ".tmp"):
            try:
                os.remove(p)
            except OSError:
                pass
    os.remove(JOURNAL)


def _run_of(j, more):
    # The entries of the journal's next run; more[0] tells whether another follows.
    more[0] = False
    last = ""
    for line in j:
        if line == RUN:
            more[0] = True
            return
        e = _parse(line)
        if e:
            k = _key(e[0])
            if k <= last:
                raise ValueError("journal order")
            last = k
            yield e


def _pass(run):
    # One run in walk order and the manifest, both read a line at a time, into a new one.
    m = _Man()
    tmp = MANIFEST + ".tmp"
    try:
        with open(tmp, "w") as out:
            out.write(HEAD)
            for e in run:
                k = _key(e[0])
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
    os.rename(tmp, MANIFEST)


def _entries(path):
    if _ilist:
        for e in _ilist(path):
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


def _tree(root, hashes, digest):
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
            _settle()
        except MemoryError:
            gc.collect()  # what the failed merge held is garbage now: once more
            _compact()
        man = _Man(True)
        jour = _Journal()
        within = root.rstrip("/") + "/"
        man.skipped = lambda p: jour.add(p) if p.startswith(within) else None
    out = sys.stdout
    acc = (0 if _big else bytearray(16)) if digest else None
    stat = os.stat if hasattr(os, "stat") else _stat
    watched = _peak[0] is not None
    try:
        for full, isdir, size in _walk(root):
            if isdir:
                if acc is None:
                    out.write("d\t0\t0\t-\t%s\n" % full)
                else:
                    acc = _fold(acc, "d\t0\t-\t%s\n" % full)
                continue
            st = stat(full)
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
            if watched:
                _mark()
            if acc is None:
                out.write("f\t%d\t%d\t%s\t%s\n" % (size, mtime, h, full))
            else:
                acc = _fold(acc, "f\t%d\t%s\t%s\n" % (size, h, full))
        if man:
            man.rest(within)  # every entry left below root is gone too
    finally:
        if man:
            man.close()
            jour.close()
    if jour and jour.last:
        _settle()
    if acc is not None:
        out.write((("%032x" % acc) if _big else _hex(acc)) + "\n")


def _fold(acc, line):
    # The XOR of the first 16 bytes of each line's sha256: an int where the port has big
    # integers, else 16 bytes XORed one by one.
    h = hashlib.sha256(line.encode()).digest()
    if _big:
        return acc ^ int.from_bytes(h[:16], "big")
    for i in range(16):
        acc[i] ^= h[i]
    return acc


def _stat1(path):
    st = _stat(path)
    if st is None:
        for name, isdir, size in _entries(path.rsplit("/", 1)[0] or "/"):
            if name == path.rsplit("/", 1)[1]:
                print(repr((isdir and 0x4000 or 0x8000, size, 0)))
                return
        raise OSError(2)
    print(repr((st[0], st[6], st[8])))


def _usage(path):
    v = os.statvfs(path)
    print(repr((v[0] * v[2], v[0] * v[3], v[0])))


def _send(path, chunk):
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
