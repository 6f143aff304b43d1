# Runs ON the MicroPython unix port: mount a littlefs image file with the firmware's own VfsLfs2
# and report or change it, so tests compare the host's view of an image with a board's.
#
#   micropython lfs_image.py IMAGE BLOCK_SIZE BLOCK_COUNT dump
#   micropython lfs_image.py IMAGE BLOCK_SIZE BLOCK_COUNT write PATH HOST_FILE
#
# dump prints "D path" for folders and "F path size mtime sha256" for files; write copies a
# host file into the image (making folders) and prints the new file's mtime.
# ruff: noqa: SIM105, SIM115  (MicroPython has no contextlib; the file lives as long as the fs)
import sys

import vfs
from dump_tree import dump


class FileBlockDevice:
    """A flash chip backed by the image file, read apart from the virtual board's own drivers
    (sim/firmware_flash*.py) so that a test checks an image with code the board does not run."""

    def __init__(self, path, block_size, block_count):
        self.file = open(path, "r+b")
        self.block_size = block_size
        self.block_count = block_count

    def readblocks(self, block, buf, off=0):
        self.file.seek(block * self.block_size + off)
        self.file.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        self.file.seek(block * self.block_size + off)
        self.file.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.block_count
        if op == 5:
            return self.block_size
        if op == 6:
            return 0
        if op == 3:
            self.file.flush()
            return 0
        return None


def write(fs, path, data):
    folder = ""
    for part in path.split("/")[1:-1]:
        folder += "/" + part
        try:
            fs.mkdir(folder)
        except OSError:
            pass
    with fs.open(path, "wb") as file:
        file.write(data)
    print("mtime", fs.stat(path)[8])


def main():
    image, block_size, block_count, command = sys.argv[1:5]
    bdev = FileBlockDevice(image, int(block_size), int(block_count))
    fs = vfs.VfsLfs2(bdev)
    if command == "dump":
        dump(fs, "/")
    elif command == "write":
        with open(sys.argv[6], "rb") as source:
            write(fs, sys.argv[5], source.read())
    fs.umount()
    bdev.file.close()


main()
