# Board code the host sends with its call and the board forgets after it: what it asks rarely
# (mpkick info, the board's id once, the benchmarks' heap and time accounts), so none of it
# holds heap between commands. Each function stands alone: it is sent by itself.


def mk_room():
    # Before the agent is installed: an older one imported since boot lives on through its
    # modules and the names it gave the REPL, which go first (a small heap has no room for it
    # and the new one); then whether the board can inflate what is sent, its free RAM and its
    # bytecode version.
    import gc
    import sys

    g = globals()
    for k in [k for k in g if k[:3] == "mk_" and k != "mk_room"]:
        del g[k]
    m = getattr(sys, "modules", {})
    for k in [k for k in m if k[:7] == "mpkick_"]:
        del m[k]
    gc.collect()
    try:
        import binascii
        import deflate
        import io

        z = hasattr(deflate, "DeflateIO") and hasattr(binascii, "a2b_base64")
    except ImportError:
        z = False
    print(repr((z, gc.mem_free() if hasattr(gc, "mem_free") else 16384,
                getattr(sys.implementation, "_mpy", 0))))


def mk_info():
    # What `mpkick info` shows, as one dict literal.
    import gc
    import os
    import sys

    gc.collect()
    impl = sys.implementation
    i = {"platform": sys.platform, "version": ".".join(str(x) for x in impl.version[:3]),
         "implementation": impl.name, "machine": getattr(impl, "_machine", ""),
         "mpy": getattr(impl, "_mpy", None),
         "mem_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
         "mem_alloc": gc.mem_alloc() if hasattr(gc, "mem_alloc") else None, "uid": None}
    try:
        import binascii
        import machine

        i["uid"] = binascii.hexlify(machine.unique_id()).decode()
    except Exception:
        pass
    try:
        v = os.statvfs("/")
        i["fs_total"] = v[0] * v[2]
        i["fs_free"] = v[0] * v[3]
    except Exception:
        pass
    print(repr(i))


def mk_id(fresh):
    # The id mpkick keeps on the board, made (as ``fresh``) on first use: caches follow the
    # flash, not the port it was found on.
    try:
        with open("/.mpkick/id") as f:
            print(f.read().strip())
        return
    except OSError:
        pass
    import os

    try:
        os.mkdir("/.mpkick")
    except OSError:
        pass
    with open("/.mpkick/id", "w") as f:
        f.write(fresh)
    print(fresh)


def mk_peak(watch):
    # The most heap the agent had in use since the last call; with watch, measure from now on.
    import gc
    import sys

    a = sys.modules.get("mpkick_agent")
    peak = a._peak if a else _peak  # sent in pieces, the agent's names are the REPL's
    print(peak[0])
    gc.collect()
    peak[0] = gc.mem_alloc() if watch else None


def mk_times(watch):
    # Where the board's time went since the last call (microseconds: receive, inflate,
    # write, hash, rename, list); with watch, count from now on, where it has ticks_us.
    import sys

    a = sys.modules.get("mpkick_agent")
    prof, us = (a._prof, a._us) if a else (_prof, _us)
    print(prof[0])
    prof[0] = [0] * 6 if watch and us else None
