# mpkick's ROMFS agent: runs ON the board, loaded only by the commands that touch a ROM
# partition (mpkick romfs ..., push --romfs). Kept at /.mpkick/mpkick_romfs.py like the main
# agent, whose binary session it extends with two frames (protocol/opcodes.py names them):
#   W  rid, image length, wbits, blocks: erase block 0 at once (the old image stops being valid
#      before anything else changes), then take the bytes of the listed blocks in order, each
#      block erased before its first byte is written; the image's first bytes (its header) are
#      held back in RAM;
#   K  sha256 of the whole image: the partition is read back and hashed with the held header in
#      front; only when that matches is the header written, the whole image hashed again and
#      the write completed. A cut at any moment leaves the old image, the new one, or none.
import sys
import vfs
from mpkick_agent import _hex, _put_frame, hashlib, mk_extend, mk_recv

HEAD = 16  # bytes of the image held back and written last (header and length fit in 8)
CHUNK = 1024


def _umount():
    # Nothing may run from a partition while it is rewritten: unmount /rom and forget the
    # modules imported from it (the soft reset that follows a deploy drops every reference).
    try:
        vfs.umount("/rom")
    except OSError:
        pass
    for name in list(sys.modules):
        f = getattr(sys.modules[name], "__file__", "") or ""
        if f.startswith("/rom/"):
            del sys.modules[name]


class _Rom:
    def __init__(self, rid):
        seg = vfs.rom_ioctl(2, rid)
        if isinstance(seg, int):
            raise OSError(19, "the board has no ROM partition %d" % rid)
        self.rid = rid
        self.seg = seg
        self.minw = 1
        if hasattr(seg, "ioctl"):  # a block device (esp32's Partition): erase by block
            self.dev = seg
            self.bs = seg.ioctl(5, 0)
            self.size = seg.ioctl(4, 0) * self.bs
            self.ranged = True
            try:
                self.mem = memoryview(seg)
            except TypeError:
                self.mem = None
        else:  # memory: prepared (erased) by range where the port can, else from the start
            self.dev = None
            self.mem = memoryview(seg)
            self.size = len(self.mem)
            try:
                b = vfs.rom_ioctl(6, rid)
            except Exception:
                b = -1
            self.ranged = 0 < b < self.size
            self.bs = b if self.ranged else self.size

    def view(self, off, n, buf):
        # n bytes at off: straight from memory, or read into buf (n <= len(buf)).
        if self.mem is not None:
            return self.mem[off:off + n]
        mv = memoryview(buf)[:n]
        self.dev.readblocks(off // self.bs, mv, off % self.bs)
        return mv

    def digest(self, off, n, h=None):
        if h is None:
            h = hashlib.sha256()
        buf = bytearray(CHUNK) if self.mem is None else None
        end = off + n
        while off < end:
            k = min(CHUNK, end - off)
            h.update(self.view(off, k, buf))
            off += k
        return h

    def erase(self, off, n):
        if self.dev is not None:
            b = off // self.bs
            while b * self.bs < off + n:
                self.dev.ioctl(6, b)
                b += 1
            return
        if self.ranged:
            r = vfs.rom_ioctl(3, self.rid, off, n)
        else:
            r = vfs.rom_ioctl(3, self.rid, off + n)  # erases from the start
        if r < 0:
            raise OSError(-r, "erasing the ROM partition failed")
        if r > self.minw:
            self.minw = r

    def write(self, off, data):
        if self.dev is not None:
            self.dev.writeblocks(off // self.bs, data, off % self.bs)
            return
        r = vfs.rom_ioctl(4, self.rid, off, data)
        if r < 0:
            raise OSError(-r, "writing the ROM partition failed")

    def complete(self):
        if self.dev is None:
            vfs.rom_ioctl(5, self.rid)


class _Writer:
    # The bytes of the planned blocks, in order, buffered into aligned writes.
    def __init__(self, rom, length, blocks):
        self.rom, self.length, self.blocks = rom, length, blocks
        if blocks[0] != 0:
            raise OSError(22, "a ROM deploy starts at block 0")
        rom.erase(0, min(rom.bs, length))  # from here on the partition holds no valid image
        w = rom.minw
        self.head_n = (max(HEAD, w) + w - 1) // w * w
        self.buf = bytearray(max(CHUNK, self.head_n, w))
        self.head = None
        self.i = 0  # index into blocks
        self.at = 0  # flash offset of buf[0]
        self.n = 0  # bytes in buf
        self.end = min(rom.bs, length)  # end of the current block's part of the image

    def write(self, data):
        mv = memoryview(data)
        i = 0
        while i < len(mv):
            if self.at + self.n >= self.end:
                self.flush()
                self.i += 1
                if self.i >= len(self.blocks):
                    raise OSError(22, "more data than the planned blocks hold")
                b = self.blocks[self.i]
                self.at = b * self.rom.bs
                self.end = min(self.at + self.rom.bs, self.length)
                self.rom.erase(self.at, self.end - self.at)
            k = min(len(mv) - i, self.end - self.at - self.n, len(self.buf) - self.n)
            self.buf[self.n:self.n + k] = mv[i:i + k]
            self.n += k
            i += k
            if self.n == len(self.buf):
                self.flush()

    def flush(self):
        n, start = self.n, 0
        if not n:
            return
        if self.at == 0 and self.head is None:
            k = min(n, self.head_n)
            self.head = bytearray(self.buf[:k])
            start = k
        if start < n:
            w = self.rom.minw
            m = (n - start + w - 1) // w * w
            part = self.buf[start:n] + b"\xff" * (m - n + start)  # erased flash pads the tail
            self.rom.write(self.at + start, part)
        self.at += n
        self.n = 0

    def close(self):
        pass  # only a verified image gets its header (see finish)

    def finish(self, want):
        self.flush()
        if self.i != len(self.blocks) - 1 or self.at < self.end:
            raise OSError(5, "the image arrived incomplete")
        rom, head = self.rom, self.head
        h = hashlib.sha256(head[:min(len(head), self.length)])
        if self.length > len(head):
            rom.digest(len(head), self.length - len(head), h)
        if _hex(h.digest()) != want:
            raise OSError(5, "ROM read back with a different hash; its image stays invalid")
        w = rom.minw
        if len(head) % w:
            head += b"\xff" * (w - len(head) % w)
        rom.write(0, head)
        rom.complete()
        if _hex(rom.digest(0, self.length).digest()) != want:
            raise OSError(5, "ROM header read back wrong; its image stays invalid")
        if rom.rid == 0:
            _mount(rom)


def _mount(rom):
    try:
        vfs.mount(vfs.VfsRom(rom.seg), "/rom")
    except Exception:
        return False
    for i, p in enumerate(("/rom", "/rom/lib")):
        if p not in sys.path:
            sys.path.insert(1 + i, p)
    return True


def _rom_write(s, payload):
    # W: rid, length, wbits, blocks; ``s`` is the agent's session
    a = bytes(payload).decode().split("\x00")
    s.close_file()
    _umount()
    s.wbits = int(a[2])
    s.f = _Writer(_Rom(int(a[0])), int(a[1]), [int(b) for b in a[3].split(",")])
    s.rom_w = s.f


def _rom_check(s, payload):
    # K: sha256 of the image
    w = getattr(s, "rom_w", None)
    if w is None:
        raise OSError(5, "no ROM write under way")
    s.f = s.rom_w = None
    w.finish(bytes(payload).decode())


mk_extend({_ROM_WRITE: _rom_write, _ROM_CHECK: _rom_check})
#: The binary session of the main agent, with the ROM frames.
mk_rom_recv = mk_recv


def _walk(top, out, limit):
    import os

    for e in os.ilistdir(top):
        p = top + "/" + e[0]
        if e[1] & 0x4000:
            out.append((p, -1))
            _walk(p, out, limit)
        else:
            out.append((p, e[3] if len(e) > 3 else 0))
        if len(out) > limit:
            return


def mk_rom_query(limit=500):
    """One tuple per partition: id, size, erase block, ranged, device?, first 16 bytes,
    files (path, size; -1 for a folder) or None when it holds no valid image."""
    n = vfs.rom_ioctl(1)
    parts = []
    for rid in range(max(0, n)):
        try:
            rom = _Rom(rid)
        except OSError:
            continue
        head = bytes(rom.view(0, 16, bytearray(16)))
        listing = None
        if rom.mem is not None:
            try:
                fs = vfs.VfsRom(rom.seg)
            except OSError:
                fs = None
            if fs is not None:
                listing = []
                vfs.mount(fs, "/.mkrom")
                try:
                    _walk("/.mkrom", listing, limit)
                finally:
                    vfs.umount("/.mkrom")
                listing = [(p[7:], s) for p, s in listing]
        parts.append((rid, rom.size, rom.bs, rom.ranged, rom.dev is not None, head, listing))
    print(repr(parts))


def mk_rom_sums(rid, length):
    """Per erase block of the first ``length`` bytes: 8 bytes of sha256, hex; then the whole
    range's sha256. The host writes only the blocks whose sums differ from its image's."""
    rom = _Rom(rid)
    out = sys.stdout
    b = 0
    while b * rom.bs < length:
        k = min(rom.bs, length - b * rom.bs)
        out.write(_hex(rom.digest(b * rom.bs, k).digest()[:8]))
        b += 1
    out.write(" " + _hex(rom.digest(0, length).digest()) + "\n")


def mk_rom_read(rid, off, n, chunk):
    """Bytes of the partition as the main agent's checked frames, then their sha256."""
    rom = _Rom(rid)
    out = sys.stdout.buffer
    buf = bytearray(chunk)
    h = hashlib.sha256()
    end = off + n
    while off < end:
        k = min(chunk, end - off)
        part = bytes(rom.view(off, k, buf))
        h.update(part)
        _put_frame(out, part)
        off += k
    _put_frame(out, b"")
    out.write(_hex(h.digest()).encode() + b"\n")


def mk_rom_mount():
    """Mount partition 0 at /rom if it holds a valid image and nothing is there yet."""
    import os

    try:
        os.stat("/rom")
        print(True)
        return
    except OSError:
        pass
    print(_mount(_Rom(0)))
