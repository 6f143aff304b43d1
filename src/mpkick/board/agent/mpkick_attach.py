# mpkick's attach VFS: runs ON the board. A host folder mounted with vfs.mount; every file
# operation is a request on stdout and an answer on stdin, over the REPL's own stream, while
# the user's program runs. Exported names start with mk_.
#
# Board to host: b"\x18mK" + body + b"\x19", the body escaped so it holds no LF, CR, 0x18,
# 0x19 or 0x10 (a link that cooks LF into CRLF cannot damage it). Host to board: 0x10 "S",
# one byte ("z" deflated, "r" raw), 6 hex digits of length, then that many bytes escaped so
# they hold no 0x01-0x05 (0x03 is the interrupt key: it stays the user's) and 0x10 only as an
# escape. A whole answer is one frame; a listing brings its entries with their stats and the
# contents of small files. Ctrl-C works at every moment: an interrupted request tells the host
# ("X"), skips what is still coming up to the host's 0x10 "X", then raises. A host that goes
# silent makes every operation fail with EIO; the board then unmounts, and restores its cwd and
# sys.path, by itself.
import io
import os
import sys

try:
    import vfs as _vfs
except ImportError:
    _vfs = os
try:
    import select as _select
except ImportError:
    import uselect as _select
try:
    from time import ticks_diff as _tdiff
    from time import ticks_ms as _tms
except ImportError:
    import time as _t

    def _tms():
        return int(_t.time() * 1000)

    def _tdiff(a, b):
        return a - b
try:
    import micropython as _mp
except ImportError:
    _mp = None
try:
    import deflate as _deflate
except ImportError:
    _deflate = None
try:
    import zlib as _zlib
except ImportError:
    _zlib = None
import gc

_OUT = ((b"\x10", b"\x10P"), (b"\n", b"\x10J"), (b"\r", b"\x10M"), (b"\x18", b"\x10X"),
        (b"\x19", b"\x10Y"))
_IN = (b"\x10A", b"\x01"), (b"\x10B", b"\x02"), (b"\x10C", b"\x03"), (b"\x10D", b"\x04"), \
    (b"\x10E", b"\x05"), (b"\x10P", b"\x10")
_DIR = 0x4000
_FILE = 0x8000


def _kbd(on):
    if _mp and hasattr(_mp, "kbd_intr"):
        _mp.kbd_intr(3 if on else -1)


class _Link:
    """The one conversation with the host that every attached folder shares."""

    def __init__(self, wbits, timeout):
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer
        self.poll = _select.poll()
        self.poll.register(sys.stdin, _select.POLLIN)
        self.one = bytearray(1)
        self.wbits = wbits
        self.timeout = timeout
        self.epoch = 0
        self.last = _tms()
        self.dead = False
        self.mounts = []
        self.writers = []  # files still open for writing: closed (saved) at the detach
        self.cwd = None
        self.path = None

    def ask(self, body):
        # One request, one answer: (status, body); an error status raises OSError.
        if self.dead:
            raise OSError(5)
        body = b"%d " % self.epoch + body
        try:
            for a, b in _OUT:
                if a in body:
                    body = body.replace(a, b)
            self.out.write(b"\x18mK" + body + b"\x19")
            data = self._frame()
        except KeyboardInterrupt:
            self._abandon()
            raise
        self.last = _tms()
        meta, _, data = data.partition(b"\x02")
        meta = meta.split(b"\x01")
        self._changes(int(meta[0]), meta[2:])
        if meta[1] != b"0":
            raise OSError(int(meta[1]))
        return data

    def _wait(self):
        if not self.poll.poll(self.timeout):
            self.hang_up()
            raise OSError(5)

    def _frame(self):
        # Keys typed just before the answer came are not the answer: the host is told which,
        # and types them again once the answer is in, so the REPL or input() still gets them.
        one = self.one
        typed = bytearray()
        esc = False
        while True:
            self._byte(one)
            c = one[0]
            if esc and c == 0x53:
                break
            if esc:
                typed.append(0x10)
            esc = c == 0x10
            if not esc:
                typed.append(c)
        head = self._read(7)
        data = bytes(self._read(int(bytes(head[1:]), 16)))
        if typed:
            typed = bytes(typed)
            for a, b in _OUT:
                if a in typed:
                    typed = typed.replace(a, b)
            self.out.write(b"\x18mKK" + typed + b"\x19")
        if b"\x10" in data:
            for a, b in _IN:
                if a in data:
                    data = data.replace(a, b)
        if head[0] == 0x7A:
            if _deflate:
                return _deflate.DeflateIO(io.BytesIO(data), _deflate.RAW, self.wbits).read()
            return _zlib.decompress(data, -self.wbits)
        return data

    def _byte(self, one):
        # Before an answer starts: keys typed meanwhile are skipped. An end of input (a link
        # that reports the host leaving) is a hang-up, as silence is.
        self._wait()
        if not self.inp.readinto(one):
            self.hang_up()
            raise OSError(5)

    def _read(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            self._wait()
            k = self.inp.readinto(mv[got:got + min(n - got, 512)])
            if not k:
                self.hang_up()
                raise OSError(5)
            got += k
        return buf

    def _abandon(self):
        # Ctrl-C in the middle of a request: what the host still sends is skipped, up to the
        # mark it sends once it has read our "X", so none of it reaches the REPL.
        _kbd(False)
        try:
            self.out.write(b"\x18mKX\x19")
            one = self.one
            esc = False
            while self.poll.poll(self.timeout) and self.inp.readinto(one):
                if esc and one[0] == 0x58:
                    return
                esc = one[0] == 0x10
            self.hang_up()
        finally:
            _kbd(True)

    def _changes(self, epoch, paths):
        # What changed on the host since our last answer: forget it (and its folder's listing).
        if epoch == self.epoch:
            return
        self.epoch = epoch
        for p in paths:
            if p == b"*":
                for m in self.mounts:
                    m.dirs = {}
                    m.cached = 0
                continue
            i, _, rel = p.decode().partition(":")
            for m in self.mounts:
                if str(m.idx) == i:
                    m.forget(rel)

    def hang_up(self):
        # The host is gone: leave the board as it was before the attach.
        if self.dead:
            return
        self.dead = True
        for m in list(self.mounts):
            m.detach()


_link = None


def _split(rel):
    i = rel.rfind("/")
    return (rel[:i], rel[i + 1:]) if i >= 0 else ("", rel)


class _Folder:
    """One host folder, mounted at ``where``."""

    def __init__(self, idx, where, ro, budget, listing):
        self.idx = idx
        self.where = where
        self.ro = ro
        self.budget = budget
        self.cached = 0
        self.dirs = {}
        self.cwd = ""
        self.tag = b"%d" % idx
        if listing is not None:
            self._learn("", listing)

    # ------------------------------------------------------------ the cache

    def _learn(self, rel, body):
        head, _, blob = body.partition(b"\x02")
        entries = {}
        pos = 0
        if head:
            for e in head.split(b"\x01"):
                f = e.split(b"\x00")
                n = int(f[4])
                data = None
                if n >= 0:
                    data = blob[pos:pos + n]
                    pos += n
                    self.cached += n
                entries[f[0].decode()] = [f[1] == b"d", int(f[2]), int(f[3]), data]
        self.dirs[rel] = entries
        return entries

    def forget(self, rel):
        d, name = _split(rel)
        for key in (rel, d):
            gone = self.dirs.pop(key, None)
            if gone:
                for e in gone.values():
                    if e[3] is not None:
                        self.cached -= len(e[3])

    def _sync(self):
        # Answers from the cache stay valid while the host was heard from lately; otherwise
        # one short request brings what changed since.
        if _tdiff(_tms(), _link.last) > 250:
            _link.ask(b"Y" + self.tag)

    def _listing(self, rel, inline=True):
        # A listing asked for by an import or an open brings the small modules with it; one
        # asked for by listdir brings stats only.
        d = self.dirs.get(rel)
        if d is None:
            room = max(0, self.budget - self.cached) if inline else 0
            d = self._learn(rel, _link.ask(b"L" + self.tag + b"\x00" + rel.encode() +
                                           b"\x00%d" % room))
        return d

    def _entry(self, rel):
        # Every miss an import makes (x.py, x.mpy, x/__init__.py ...) is answered from the
        # folder's listing: no question to the host.
        if rel == "":
            return [True, 0, 0, None]
        d, name = _split(rel)
        parent = self._entry(d) if d else [True]
        if parent is None or not parent[0]:
            return None
        return self._listing(d).get(name)

    def _path(self, path):
        if not path.startswith("/"):
            path = self.cwd + "/" + path
        out = []
        for c in path.split("/"):
            if c == "..":
                if out:
                    out.pop()
            elif c and c != ".":
                out.append(c)
        return "/".join(out)

    def _need(self, path):
        self._sync()
        e = self._entry(self._path(path))
        if e is None:
            raise OSError(2)
        return e

    def _write(self):
        if self.ro:
            raise OSError(30)

    def _changed(self, rel):
        self.forget(rel)

    # ------------------------------------------------------------ the VFS protocol

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        if self in _link.mounts:
            _link.mounts.remove(self)

    def stat(self, path):
        e = self._need(path)
        return (_DIR if e[0] else _FILE, 0, 0, 0, 0, 0, e[1], e[2], e[2], e[2])

    def ilistdir(self, path):
        rel = self._path(path)
        e = self._need(path)
        if not e[0]:
            raise OSError(20)
        return iter([(n, _DIR if v[0] else _FILE, 0, v[1])
                     for n, v in self._listing(rel, False).items()])

    def chdir(self, path):
        rel = self._path(path)
        if not self._need(path)[0]:
            raise OSError(20)
        self.cwd = "/" + rel if rel else ""

    def getcwd(self):
        return self.cwd

    def statvfs(self, path):
        return tuple(int(x) for x in _link.ask(b"V" + self.tag).split(b" "))

    def open(self, path, mode):
        rel = self._path(path)
        text = "b" not in mode
        if "w" in mode or "a" in mode or "+" in mode or "x" in mode:
            self._write()
            h = int(_link.ask(b"O" + self.tag + b"\x00" + rel.encode() + b"\x00" +
                              mode.encode()))
            self._changed(rel)
            return _Writer(self, rel, h, text)
        e = self._need(path)
        if e[0]:
            raise OSError(21)
        data = e[3]
        if data is None:
            if e[1] > 32768:
                return _Reader(self, rel, e[1], text)
            data = _link.ask(b"R" + self.tag + b"\x00" + rel.encode() + b"\x000\x00-1")
            if self.cached + len(data) <= self.budget:
                e[3] = data
                self.cached += len(data)
        return io.StringIO(data.decode()) if text else io.BytesIO(data)

    def mkdir(self, path):
        self._write()
        rel = self._path(path)
        _link.ask(b"M" + self.tag + b"\x00" + rel.encode())
        self._changed(rel)

    def remove(self, path):
        self._write()
        rel = self._path(path)
        _link.ask(b"D" + self.tag + b"\x00" + rel.encode())
        self._changed(rel)

    def rmdir(self, path):
        self._write()
        rel = self._path(path)
        _link.ask(b"Q" + self.tag + b"\x00" + rel.encode())
        self._changed(rel)

    def rename(self, old, new):
        self._write()
        a, b = self._path(old), self._path(new)
        _link.ask(b"N" + self.tag + b"\x00" + a.encode() + b"\x00" + b.encode())
        self._changed(a)
        self._changed(b)

    def detach(self):
        # Unmount, and put back the cwd and sys.path the board had before the attach.
        try:
            _vfs.umount(self.where)
        except OSError:
            pass
        self.umount()
        if self.where in sys.path:
            sys.path.remove(self.where)
        if not _link.mounts and _link.cwd is not None:
            try:
                os.chdir(_link.cwd)
            except OSError:
                pass


class _Reader(io.IOBase):
    """A large file, read from the host in pieces as the program asks."""

    def __init__(self, folder, rel, size, text):
        self.f = folder
        self.rel = rel.encode()
        self.size = size
        self.pos = 0  # where the host's next piece starts
        self.buf = b""
        self.at = 0
        self.text = text

    def _get(self, n):
        n = min(n, self.size - self.pos)
        if n <= 0:
            return b""
        data = _link.ask(b"R" + self.f.tag + b"\x00" + self.rel + b"\x00%d\x00%d" % (self.pos, n))
        self.pos += len(data)
        return data

    def _fill(self):
        if self.at >= len(self.buf):
            self.buf, self.at = self._get(16384), 0
        return len(self.buf) - self.at

    def _take(self, n):
        out = self.buf[self.at:self.at + n]
        self.at += len(out)
        return out

    def read(self, n=-1):
        if n < 0:
            parts = [self._take(len(self.buf))]
            while self.pos < self.size:
                parts.append(self._get(32768))
            gc.collect()  # the whole file needs one free block of its size
            data = b"".join(parts)
        else:
            parts = []
            while n > 0 and self._fill():
                part = self._take(n)
                n -= len(part)
                parts.append(part)
            data = b"".join(parts)
        return data.decode() if self.text else data

    def readinto(self, buf):
        if not self._fill():
            return 0
        data = self._take(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readline(self):
        parts = []
        while self._fill():
            i = self.buf.find(b"\n", self.at)
            part = self._take(len(self.buf) if i < 0 else i + 1 - self.at)
            parts.append(part)
            if i >= 0:
                break
        line = b"".join(parts)
        return line.decode() if self.text else line

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def seek(self, off, whence=0):
        here = self.pos - len(self.buf) + self.at
        self.pos = off if whence == 0 else here + off if whence == 1 else self.size + off
        self.buf, self.at = b"", 0
        return self.pos

    def tell(self):
        return self.pos - len(self.buf) + self.at

    def ioctl(self, req, arg):
        return 0

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


class _Writer(io.IOBase):
    """A file being written on the host: a temporary file there, renamed over on close."""

    def __init__(self, folder, rel, handle, text):
        self.f = folder
        self.rel = rel
        self.h = b"%d" % handle
        self.text = text
        self.buf = bytearray()
        self.open = True
        _link.writers.append(self)

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.buf += data
        if len(self.buf) >= 4096:
            self.flush()
        return len(data)

    def flush(self):
        if self.buf:
            data, self.buf = bytes(self.buf), bytearray()
            _link.ask(b"W" + self.f.tag + b"\x00" + self.h + b"\x00" + data)

    def readinto(self, buf):
        raise OSError(9)

    def ioctl(self, req, arg):
        if req == 4:
            self.close()
        return 0

    def close(self):
        if self.open:
            self.open = False
            if self in _link.writers:
                _link.writers.remove(self)
            self.flush()
            _link.ask(b"C" + self.f.tag + b"\x00" + self.h)
            self.f._changed(self.rel)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def mk_attach(idx, where, ro, budget, wbits, timeout, listing, chdir, home=None):
    """Mount host folder ``idx`` at ``where``; ``listing``: its top folder's answer;
    ``home``: the cwd and sys.path to restore at the end."""
    global _link
    if _link is None or _link.dead:
        _link = _Link(wbits, timeout)
        _link.cwd, _link.path = home or (os.getcwd(), list(sys.path))
    gc.collect()
    if budget < 0:
        budget = gc.mem_free() // 3 if hasattr(gc, "mem_free") else 16384
    f = _Folder(idx, where, ro, budget, listing)
    _vfs.mount(f, where)
    _link.mounts.append(f)
    if where not in sys.path:
        sys.path.insert(1 if sys.path[:1] == [""] else 0, where)
    if chdir:
        os.chdir(where)


def mk_detach():
    """Unmount every host folder; the cwd and sys.path are as before the attach."""
    global _link
    if _link is not None:
        for w in list(_link.writers):
            try:
                w.close()
            except Exception:
                pass
        for m in list(_link.mounts):
            m.detach()
        if _link.path is not None:
            sys.path[:] = _link.path
        _link = None
    print("detached")


def mk_main():
    # What a board runs at boot, now with the host folders attached: the first folder's
    # main.py, else the flash's.
    for p in ("main.py", "/main.py"):
        try:
            os.stat(p)
        except OSError:
            continue
        exec(open(p).read(), {"__name__": "__main__"})
        return
