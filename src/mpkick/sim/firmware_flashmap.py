# The virtual board's flash driver over the image the launcher maps into the process: a block
# read is one copy in native code, as a board's flash driver makes it. firmware.py runs this at
# boot; where it cannot compile (a port without the viper emitter) the image is read through
# the file instead.
#
# The copy is viper: it allocates nothing, so a full heap cannot fail it halfway through a
# littlefs update, and native code never looks for a pending Ctrl-C, so none can cut it either
# (a board's flash driver is native code too). The methods around it hold no branch, for the
# same reason: the VM looks for a pending Ctrl-C at branches.


@micropython.viper
def _move(buf, at: int, inward: int):
    # Between buf and the flash at address at: into buf when inward, else out of it. Four
    # bytes at a time, then the rest (the hosts the port runs on allow unaligned words).
    b = int(ptr8(buf))
    n = int(len(buf))
    dst = b if inward else at
    src = at if inward else b
    d = ptr32(dst)
    s = ptr32(src)
    w = n >> 2
    i = 0
    while i < w:
        d[i] = s[i]
        i += 1
    db = ptr8(dst)
    sb = ptr8(src)
    i = w << 2
    while i < n:
        db[i] = sb[i]
        i += 1


class _flashmap:
    def __init__(self, addr, block_size, block_count):
        self.addr = addr
        self.bs = block_size
        self.answers = {4: block_count, 5: block_size}  # ioctl: block count, block size

    def readblocks(self, block, buf, off=0):
        _move(buf, self.addr + block * self.bs + off, 1)

    def writeblocks(self, block, buf, off=0):
        _move(buf, self.addr + block * self.bs + off, 0)

    def ioctl(self, op, arg):
        return self.answers.get(op, 0)

    def close(self):
        pass  # the launcher unmaps the image when the port ends
