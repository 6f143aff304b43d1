# The virtual board's flash driver over the image file, where the image is not mapped into the
# port (firmware_flashmap.py): a port run without the launcher, or without the viper emitter.
# firmware.py runs this at boot.


class _flash:
    """Block device over the image file, unbuffered: a returned write is on the flash. A seek
    and a read, each a syscall, per block read.

    Not one branch in its methods: the VM looks for a pending Ctrl-C at branches, and a
    KeyboardInterrupt raised in here would escape into littlefs halfway through an update.
    A board's flash driver is native code, which Ctrl-C cannot cut either.
    """

    def __init__(self, path, block_size, block_count):
        self.f = open(path, "r+b")
        self.bs = block_size
        self.answers = {4: block_count, 5: block_size}  # ioctl: block count, block size

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        return self.answers.get(op, 0)

    def close(self):
        self.f.close()
