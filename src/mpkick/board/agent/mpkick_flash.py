# Part of mpkick's agent, loaded only for image pull and image flash: the board's block device.
# It uses the core's mk_ names (mpkick_agent.py) and handles the session's F, B and V frames.
try:
    import hashlib
except ImportError:
    hashlib = None
import os
import sys
from mpkick_agent import mk_check, mk_extend, mk_frame, mk_hex


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
        part = buf if k == per else memoryview(buf)[:bs * k]
        dev.readblocks(b, part)
        if hashlib:
            h.update(part)
        mk_frame(out, part)
        b += k
    mk_frame(out, b"")
    out.write((mk_hex(h.digest()) if hashlib else "-").encode() + b"\n")


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
            acc = mk_check(buf, acc)
    return mk_hex(h.digest()) if h else "crc:%08x" % acc


def _flash_mount(s):
    # After a flash, "/" is the new filesystem (a soft reset would mount it the same way).
    dev, s.dev = s.dev, None
    v = _vfs()
    v.mount(v.VfsLfs2(dev), "/")
    os.chdir("/")


# The frames of a session that replaces the whole filesystem; ``s`` is the agent's session.


def _flash(s, p):
    # F: replace the filesystem; unmount it once the geometry matches
    args = bytes(p).decode().split("\x00")
    dev, name = _bdev()
    if dev is None:
        raise OSError(19, "no block device")
    have = _geometry(dev)
    if have != (int(args[0]), int(args[1])):
        raise OSError(22, "block device is %d blocks of %d" % (have[1], have[0]))
    s.close_file()
    try:
        _vfs().umount("/")
    except OSError:
        pass  # nothing mounted: a board whose filesystem did not mount
    s.dev, s.blk, s.count = dev, bytearray(have[0]), have[1]


def _block(s, p):
    # B: block:4, offset:4, data; a block is written once it is whole
    off = p[4] | p[5] << 8 | p[6] << 16 | p[7] << 24
    s.blk[off:off + len(p) - 8] = p[8:]
    if off + len(p) - 8 == len(s.blk):
        s.dev.writeblocks(p[0] | p[1] << 8 | p[2] << 16 | p[3] << 24, s.blk)


def _verify(s, p):
    # V: every block read back must hash as the host's image does
    got = _digest_blocks(s.dev, len(s.blk), s.count)
    _flash_mount(s)
    if got != bytes(p).decode():
        raise OSError(5, "flash read back with a different hash")


def _end(s, p):
    # X: the session ends before V came
    if s.dev is not None:
        _flash_mount(s)


mk_extend({_FLASH: _flash, _BLOCK: _block, _VERIFY: _verify, _END: _end})
