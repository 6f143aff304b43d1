# The virtual board's ROM partition: firmware.py runs this at boot when the board has one.


def _romfs(vfs):
    # The ROM partition behind vfs.rom_ioctl, as ports with ROMFS offer it: the unix port has
    # vfs.VfsRom but no rom_ioctl, so "vfs" becomes a module-like object that adds one.
    # MPKICK_SIM_ROMFS is "SIZE,ERASE,PATH". The launcher maps the file into the process (the
    # ROM is then memory outside the heap, read in place); a plain binary reads it into the
    # heap instead and writes through to the file.
    import os
    import sys

    spec = os.getenv("MPKICK_SIM_ROMFS")
    if not spec:
        return None
    size, mode, path = spec.split(",", 2)

    class Rom:
        BLOCK = 4096  # erase block
        MIN_WRITE = 8  # a write starts and ends on this alignment, like internal flash

        def __init__(self, size, mode, path, addr):
            # (Arguments, not closures: MicroPython's methods do not see the enclosing names.)
            self.size = size
            if addr:
                import uctypes

                self.mem = uctypes.bytearray_at(int(addr), size)
                self.f = None
            else:
                self.f = open(path, "r+b")
                self.mem = bytearray(size)
                self.f.readinto(self.mem)
            self.segment = memoryview(self.mem)
            self.ranged = mode == "block"

        def _sync(self, start, n):
            if self.f is not None:
                self.f.seek(start)
                self.f.write(self.segment[start:start + n])

        def erase(self, start, n):
            # NOR flash: whole erase blocks go back to 0xFF.
            bs = self.BLOCK
            start -= start % bs
            end = min(self.size, (start + n + bs - 1) // bs * bs)
            ones = b"\xff" * bs
            for at in range(start, end, bs):
                self.mem[at:at + bs] = ones
                self._sync(at, bs)
            return self.MIN_WRITE

        def write(self, at, buf):
            # Programming can only clear bits: what was not erased first comes out damaged,
            # as on a real flash.
            n = len(buf)
            if at % self.MIN_WRITE or at + n > self.size:
                return -22
            old = int.from_bytes(self.segment[at:at + n], "little")
            self.mem[at:at + n] = (old & int.from_bytes(buf, "little")).to_bytes(n, "little")
            self._sync(at, n)
            return 0

        def ioctl(self, op, rid=0, *args):
            if op == 1:  # number of partitions
                return 1
            if rid != 0:
                return -22
            if op == 2:  # the partition's memory
                return self.segment
            if op == 3:  # prepare: erase (ranged: offset, length; else length from the start)
                if self.ranged and len(args) == 2:
                    return self.erase(args[0], args[1])
                if len(args) >= 1 and args[0] <= self.size:
                    return self.erase(0, args[0])
                return -22
            if op == 4:  # write buf at offset
                return self.write(args[0], args[1])
            if op == 5:  # write complete
                if self.f is not None:
                    self.f.flush()
                return 0
            if op == 6 and self.ranged:  # the smallest range prepare can erase
                return self.BLOCK
            return -22

    rom = Rom(int(size), mode, path, os.getenv("MPKICK_SIM_ROMFS_ADDR"))

    mod = _module_like(vfs, __name__="vfs", rom_ioctl=rom.ioctl)  # noqa: F821 (from firmware._part)
    sys.modules["vfs"] = mod
    return rom
