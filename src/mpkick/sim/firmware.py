# The virtual board's "firmware": runs inside the MicroPython unix port at every boot.
#
# It makes the unix port look like a board: the flash image on the host becomes a littlefs2
# block device mounted at "/", the host's own files disappear, /boot.py and /main.py run as a
# board runs them, and at a soft reset every file still open is closed (a board's soft reset runs
# every finaliser, committing what an interrupted tool had written).
# argv: IMAGE BLOCK_SIZE BLOCK_COUNT MODE [HIDE]   (MODE "raw": soft reboot in raw REPL, skip
# main.py; HIDE: "hashlib,os.rename,..." modules and os functions an older firmware lacks)
# Everything lives inside _boot() so the REPL's namespace starts empty, as on a board.


def _boot():
    import builtins
    import os
    import sys
    import vfs

    class Flash:
        """Block device over the image file, unbuffered: a returned write is on the flash.

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

    image, block_size, block_count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    flash = Flash(image, block_size, block_count)

    class FlashBdev:
        """Like esp8266's frozen flashbdev module: how tools find the board's block device."""

        bdev = flash

    sys.modules["flashbdev"] = FlashBdev
    rom = _romfs(vfs)
    # The host's files go first: whatever happens next, the board never sees them.
    vfs.umount("/")
    try:
        fs = vfs.VfsLfs2(flash)
    except OSError:
        # A blank flash is formatted, as a board's _boot.py does; anything else is kept as it is
        # (it may be someone's image): the board then runs with no filesystem and says why.
        head = bytearray(min(block_size, 512))
        flash.readblocks(0, head)
        if any(b not in (0, 0xFF) for b in head):
            raise OSError(19, "the flash image is not a littlefs2 filesystem; not formatting it")
        vfs.VfsLfs2.mkfs(flash)
        fs = vfs.VfsLfs2(flash)
    vfs.mount(fs, "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    if rom is not None:
        # As a port does at start-up: a valid ROMFS is mounted at /rom, ahead on sys.path.
        try:
            vfs.mount(vfs.VfsRom(rom.segment), "/rom")
            sys.path[1:1] = ["/rom", "/rom/lib"]
        except OSError:
            pass  # no valid image in the partition (erased, or a deploy was cut): nothing mounts
    sys_argv = list(sys.argv)
    sys.argv[:] = [""]
    main = os.getenv("MPKICK_SIM_MAIN")  # the loop_main fault: a main.py that never returns
    if main:
        with open("main.py", "w") as f:
            f.write(main)

    real_open = builtins.open
    files = []

    def is_open(f):
        try:
            f.tell()
            return True
        except Exception:
            return False

    def tracked_open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        if len(files) > 32:
            files[:] = [g for g in files if is_open(g)]
        files.append(f)
        return f

    def soft_reset():
        for f in files:
            try:
                f.close()
            except Exception:
                pass
        try:
            vfs.umount("/")
        except Exception:
            pass
        flash.f.close()

    def run(path):
        try:
            with real_open(path) as f:
                source = f.read()
        except OSError:
            return
        try:
            exec(source, globals())  # as a board does: main.py's names stay in the REPL
        except SystemExit:
            raise
        except BaseException as e:
            sys.print_exception(e)

    def hide(names):
        # Older firmware lacks modules (ImportError) and os functions (no attribute): pretend.
        real_import = builtins.__import__
        gone = [n for n in names if "." not in n]
        os_gone = [n[3:] for n in names if n.startswith("os.")]

        class SmallOs:
            pass

        small_os = SmallOs()
        for name in dir(os):
            if name not in os_gone and not name.startswith("__"):
                setattr(small_os, name, getattr(os, name))

        def guarded_import(name, *args):
            if name in gone:
                raise ImportError("no module named '%s'" % name)
            if name in ("os", "uos") and os_gone:
                return small_os
            return real_import(name, *args)

        builtins.__import__ = guarded_import

    builtins.open = tracked_open
    if len(sys_argv) > 5 and sys_argv[5]:
        hide(sys_argv[5].split(","))
    sys.atexit(soft_reset)
    # Like a board's frozen _boot.py, the set-up cannot be interrupted: the supervisor holds
    # every Ctrl-C until this mark (which it hides), so boot.py and main.py get them.
    token = os.getenv("MPKICK_SIM_TOKEN") or ""  # supervisor.firmware_marks: one per boot
    print("\x1b[mpkick-sim-ready %s]" % token)
    run("boot.py")
    if mode == "raw":
        print("\x1b[mpkick-sim-raw %s]" % token)
    else:
        run("main.py")


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

    class Vfs:
        pass

    mod = Vfs()
    for name in dir(vfs):
        if not name.startswith("__"):
            setattr(mod, name, getattr(vfs, name))
    mod.__name__ = "vfs"
    mod.rom_ioctl = rom.ioctl
    sys.modules["vfs"] = mod
    return rom


try:
    _boot()
except Exception as _e:
    # Never leave the host's filesystem mounted where the board's should be.
    import sys
    import vfs

    try:
        vfs.umount("/")
    except Exception:
        pass
    sys.print_exception(_e)
    del _e, sys, vfs
del _boot, _romfs
