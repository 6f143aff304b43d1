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

    image, block_size, block_count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    flash = None
    mapped = os.getenv("MPKICK_SIM_FLASH_ADDR")  # the image the launcher mapped (launcher.py)
    if mapped:
        try:
            flash = _part("flashmap")(int(mapped), block_size, block_count)
        except Exception:
            pass  # this port has no viper emitter
    if flash is None:
        flash = _part("flash")(image, block_size, block_count)

    class FlashBdev:
        """Like esp8266's frozen flashbdev module: how tools find the board's block device."""

        bdev = flash

    sys.modules["flashbdev"] = FlashBdev
    rom = None
    if os.getenv("MPKICK_SIM_ROMFS"):
        # Compiled only when the board has a ROM partition: a small heap (profile=microbit)
        # could not compile the whole firmware in one piece.
        rom = _part("romfs")(vfs)
    sys.modules["machine"] = _part("machine")(image + ".rtc", os.getenv("MPKICK_SIM_SERIAL") or "")
    # The host's files go first: whatever happens next, the board never sees them.
    vfs.umount("/")
    progsize = int(os.getenv("MPKICK_SIM_PROGSIZE") or 32)  # rp2 mounts with 256
    try:
        fs = vfs.VfsLfs2(flash, progsize=progsize)
    except OSError:
        # A blank flash is formatted, as a board's _boot.py does; anything else is kept as it is
        # (it may be someone's image): the board then runs with no filesystem and says why.
        head = bytearray(min(block_size, 512))
        flash.readblocks(0, head)
        if any(b not in (0, 0xFF) for b in head):
            raise OSError(19, "the flash image is not a littlefs2 filesystem; not formatting it")
        vfs.VfsLfs2.mkfs(flash, progsize=progsize)
        fs = vfs.VfsLfs2(flash, progsize=progsize)
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
        if len(files) > 2:
            # Closed files go at once: a board frees them, and each holds a littlefs cache.
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
        flash.close()

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
        # Older firmware lacks modules (ImportError), and os or sys names (no attribute):
        # pretend. Flat firmware without os.stat has the micro:bit's os.size instead.
        real_import = builtins.__import__
        gone = [n for n in names if "." not in n]

        def smaller(module, prefix):
            left = [n[len(prefix):] for n in names if n.startswith(prefix)]
            return _module_like(module, left) if left else None

        small_os = smaller(os, "os.")
        small_sys = smaller(sys, "sys.")
        if small_os is not None and not hasattr(small_os, "stat"):
            small_os.size = lambda path: os.stat(path)[6]

        def guarded_import(name, *args):
            if name in gone:
                raise ImportError("no module named '%s'" % name)
            if name in ("os", "uos") and small_os is not None:
                return small_os
            if name in ("sys", "usys") and small_sys is not None:
                return small_sys
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


class _Module:
    pass


def _module_like(module, drop=(), **more):
    # A module-like copy of ``module`` without the names in ``drop`` and with ``more``: how the
    # firmware gives a board's modules what the unix port's lack (or takes away what an older
    # firmware has not got). ``import`` returns it once it is in sys.modules.
    copy = _Module()
    for name in dir(module):
        if name not in drop and not name.startswith("__"):
            setattr(copy, name, getattr(module, name))
    for name in more:
        setattr(copy, name, more[name])
    return copy


def _part(name):
    import os

    # A part of the firmware in its own file (firmware_NAME.py, its function _NAME), compiled
    # on its own: a small heap (profile=microbit) cannot compile the whole firmware at once.
    code = {"_module_like": _module_like}
    with open(os.getenv("MPKICK_SIM_FIRMWARE_DIR") + "/firmware_" + name + ".py") as f:
        exec(f.read(), code)
    return code["_" + name]


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
finally:
    # Even when a Ctrl-C meant for main.py lands as it returns: a board's boot code never
    # stays in the REPL (here it would hold kB of a small heap).
    del _boot, _part, _module_like, _Module
