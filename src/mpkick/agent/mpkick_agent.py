# mpkick's agent: runs ON the board. Kept at /.mpkick/mpkick_agent.py and imported when its
# version matches, so it is not resent every session. Every name it exports starts with mk_.
# It must run on old, small firmware too: every optional module is probed, never assumed.
import os
import sys

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

SYNC = 0xA5
IDLE = 5000  # ms of silence where a frame should start: the host is gone
QUIET = 500  # ms of silence that ends what was in flight
RESYNC = b"\x00\xffmpkick-resync"
META = "/.mpkick"
MANIFEST = META + "/manifest"


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


def mk_info():
    gc.collect()
    impl = sys.implementation
    info = {
        "platform": sys.platform,
        "version": ".".join(str(x) for x in impl.version[:3]),
        "implementation": impl.name,
        "machine": getattr(impl, "_machine", ""),
        "mpy": getattr(impl, "_mpy", None),
        "mem_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
        "mem_alloc": gc.mem_alloc() if hasattr(gc, "mem_alloc") else None,
        "uid": None,
    }
    try:
        import machine

        info["uid"] = _hex(machine.unique_id())
    except Exception:
        pass
    try:
        v = os.statvfs("/")
        info["fs_total"] = v[0] * v[2]
        info["fs_free"] = v[0] * v[3]
    except Exception:
        pass
    print(repr(info))


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


def _load_manifest():
    m = {}
    try:
        with open(MANIFEST) as f:
            for line in f:
                p = line.rstrip("\n").split("\t")
                if len(p) == 4:
                    m[p[3]] = (int(p[0]), int(p[1]), p[2])
    except (OSError, ValueError):
        pass
    return m


def _save_manifest(m):
    try:
        try:
            os.mkdir(META)
        except OSError:
            pass
        tmp = MANIFEST + ".tmp"
        with open(tmp, "w") as f:
            for path in m:
                e = m[path]
                f.write("%d\t%d\t%s\t%s\n" % (e[0], e[1], e[2], path))
        os.rename(tmp, MANIFEST)
    except Exception:
        pass


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


def mk_tree(root, hashes, digest=False):
    """One line per entry below root: kind, size, mtime, hash, path (tab separated).

    With digest, only 32 hex digits: the XOR of sha256("kind size hash path") over all entries,
    which the host compares with listings it already knows, so an unchanged board costs one
    short answer. mpkick's own folder is left out unless it is the root asked for."""
    buf = bytearray(1024)
    man = _load_manifest() if hashes else {}
    dirty = False
    stack = [root]
    out = sys.stdout
    acc = bytearray(16) if digest else None
    while stack:
        d = stack.pop()
        for name, isdir, size in _entries(d):
            full = (d + "/" + name) if d != "/" else "/" + name
            if isdir:
                if full == META and root != META:
                    continue
                stack.append(full)
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
                e = man.get(full)
                if e and e[0] == size and e[1] == mtime:
                    h = e[2]
                else:
                    h = _hash_file(full, buf)
                    man[full] = (size, mtime, h)
                    dirty = True
            if acc is None:
                out.write("f\t%d\t%d\t%s\t%s\n" % (size, mtime, h, full))
            else:
                _fold(acc, "f\t%d\t%s\t%s\n" % (size, h, full))
    if dirty and hashlib:
        _save_manifest(man)
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
        self.inp = sys.stdin.buffer
        self.out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
        self.buf = bytearray(chunk + 16)
        self.rbuf = bytearray(1024)
        self.f = None
        self.src = None
        self.zs = None
        self.errors = 0
        self.tmp = None
        self.dest = None
        self.fail = None
        self.man = None
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
        # The source is a BytesIO refilled in place: the unread tail moves to the front.
        if self.zs is None:
            self.zsrc = _io.BytesIO()
            self.zs = _deflate.DeflateIO(self.zsrc, _deflate.RAW, self.wbits)
            self.zend = 0
        src = self.zsrc
        rest = src.read(self.zend - src.tell())
        src.seek(0)
        src.write(rest)
        src.write(payload[3:])
        self.zend = len(rest) + len(payload) - 3
        src.seek(0)
        return self.zs.read(payload[0] | payload[1] << 8 | payload[2] << 16)

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
            got = self.frame()
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
                try:
                    self.mount()
                except Exception:
                    pass  # the flash already failed and was reported; nothing mounts
                if self.man is not None:
                    _save_manifest(self.man)
                # The end answers for the whole session: an error the host may have missed
                # (its answer damaged on the way) still shows here.
                if self.errors:
                    self.reply(0x45, seq, "5 %d operation(s) failed" % self.errors)
                else:
                    self.reply(0x06, seq)
                return
            try:
                self.op(kind, payload)
                self.reply(0x06, seq)
            except Exception as e:
                self.abandon()
                self.errors += 1
                err = e.args[0] if e.args and isinstance(e.args[0], int) else 5
                self.reply(0x45, seq, "%d %s" % (err, e))

    def op(self, kind, payload):
        if kind == 0x42:  # B: block:4, offset:4, data; a block is written once it is whole
            p = payload
            off = p[4] | p[5] << 8 | p[6] << 16 | p[7] << 24
            self.blk[off:off + len(p) - 8] = p[8:]
            if off + len(p) - 8 == len(self.blk):
                self.dev.writeblocks(p[0] | p[1] << 8 | p[2] << 16 | p[3] << 24, self.blk)
            return
        if kind == 0x50:  # P: copy (offset, length) ranges of the old file into the new one
            self.copy(payload)
            return
        if kind == 0x53:  # S: raw length:3, then the next piece of the session's deflate stream
            data = self.stream(payload)
            if self.f is not None:
                self.f.write(data)
            return
        if kind == 0x44 or kind == 0x5A:  # D raw data, Z deflated data
            if self.f is None:
                return
            if kind == 0x5A:
                data = _inflate(bytes(payload), self.wbits)
            else:
                data = payload
            self.f.write(data)
            return
        args = bytes(payload).decode().split("\x00")
        if kind == 0x4F:  # O: open DEST for writing (atomic when the board can rename)
            self.close_file()
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
            h = _hash_file(self.tmp, self.rbuf)
            if h != args[0] and not (args[0].startswith("sum:") and not hashlib):
                try:
                    os.remove(self.tmp)
                except OSError:
                    pass
                # A delta built on a hash this manifest gave for a file changed behind it (same
                # size and mtime): forget it, so the next listing hashes the file afresh.
                if self.man is None:
                    self.man = _load_manifest()
                self.man.pop(self.dest, None)
                raise OSError(5, "hash mismatch after writing %s" % self.dest)
            if self.tmp != self.dest:
                os.rename(self.tmp, self.dest)
            if hashlib:
                if self.man is None:
                    self.man = _load_manifest()
                st = _stat(self.dest)
                if st:
                    self.man[self.dest] = (st[6], st[8], h)
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
            if self.man is None:
                self.man = _load_manifest()
            self.man.pop(args[0], None)
        elif kind == 0x51:  # Q: remove empty folder
            os.rmdir(args[0])
        elif kind == 0x4E:  # N: rename
            os.rename(args[0], args[1])
            if self.man is None:
                self.man = _load_manifest()
            self.man.pop(args[0], None)
            self.man.pop(args[1], None)
        elif kind == 0x46:  # F: replace the filesystem; unmount it once the geometry matches
            self.flash_begin(int(args[0]), int(args[1]))
        elif kind == 0x56:  # V: every block read back must hash as the host's image does
            got = _digest_blocks(self.dev, len(self.blk), self.count)
            self.mount()
            if got != args[0]:
                raise OSError(5, "flash read back with a different hash")
        else:
            raise OSError(22, "unknown frame %d" % kind)

    def flash_begin(self, bs, n):
        dev, name = _bdev()
        if dev is None:
            raise OSError(19, "no block device")
        have = _geometry(dev)
        if have != (bs, n):
            raise OSError(22, "block device is %d blocks of %d" % (have[1], have[0]))
        self.close_file()
        try:
            _vfs().umount("/")
        except OSError:
            pass  # nothing mounted: a board whose filesystem did not mount
        self.dev, self.blk, self.count = dev, bytearray(bs), n

    def mount(self):
        # After a flash, "/" is the new filesystem (a soft reset would mount it the same way).
        if self.dev is None:
            return
        dev, self.dev = self.dev, None
        v = _vfs()
        v.mount(v.VfsLfs2(dev), "/")
        os.chdir("/")

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


def _bdev():
    # The block device under "/", probed the way each port exposes it; None when there is none.
    try:
        import flashbdev  # esp8266, esp32, the virtual board

        if flashbdev.bdev:
            return flashbdev.bdev, "flashbdev.bdev"
    except (ImportError, AttributeError):
        pass
    try:
        import rp2

        return rp2.Flash(), "rp2.Flash()"
    except (ImportError, AttributeError):
        pass
    try:
        import esp32

        p = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
        if p:
            return p[0], "esp32.Partition 'vfs'"
    except (ImportError, AttributeError):
        pass
    try:
        import pyb

        return pyb.Flash(start=0), "pyb.Flash(start=0)"
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    return None, None


def _geometry(dev):
    return dev.ioctl(5, 0) or 512, dev.ioctl(4, 0)


def mk_bdev():
    """(block size, block count, how it was found), or None: the host checks before it writes."""
    dev, name = _bdev()
    print(repr(None if dev is None else _geometry(dev) + (name,)))


def mk_pull(chunk):
    """Send every block of the filesystem's block device as checked frames, then its sha256."""
    dev, name = _bdev()
    if dev is None:
        raise OSError(19, "no block device")
    bs, n = _geometry(dev)
    per = max(1, chunk // bs)
    buf = bytearray(bs * per)
    out = sys.stdout.buffer
    if hashlib:
        h = hashlib.sha256()
    b = 0
    while b < n:
        k = min(per, n - b)
        part = buf if k == per else bytearray(bs * k)
        dev.readblocks(b, part)
        if hashlib:
            h.update(part)
        _put_frame(out, part)
        b += k
    _put_frame(out, b"")
    out.write((_hex(h.digest()) if hashlib else "-").encode() + b"\n")


def _vfs():
    try:
        import vfs

        return vfs
    except ImportError:
        return os


def _digest_blocks(dev, bs, n):
    buf = bytearray(bs)
    h = hashlib.sha256() if hashlib else None
    acc = 0
    for b in range(n):
        dev.readblocks(b, buf)
        if h:
            h.update(buf)
        else:
            acc = _check(buf, acc)
    return _hex(h.digest()) if h else "crc:%08x" % acc


def mk_sigs(items):
    """Per (path, block): size, then per block CRC-32 and 6 bytes of sha256, base64.

    The host finds which blocks of the board's copy it can reuse without reading the file,
    for many files in one exchange.
    """
    from binascii import b2a_base64

    for path, block in items:
        try:
            f = open(path, "rb")
        except OSError:
            print("-")
            continue
        buf = bytearray(block)
        out = bytearray()
        n = 0
        with f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                b = buf if k == block else memoryview(buf)[:k]
                c = _crc32(b) & 0xFFFFFFFF
                out += bytes((c & 255, (c >> 8) & 255, (c >> 16) & 255, c >> 24))
                out += hashlib.sha256(b).digest()[:6]
                n += k
        print(n, b2a_base64(out).decode().strip())
