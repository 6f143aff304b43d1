# mpkick on firmware that cannot host its agent: no binary stdin, no sys.path, a few kB of heap
# (the BBC micro:bit's MicroPython 1.9). The host sends one of these functions at a time with
# its call, so nothing stays in the heap between commands, and every answer is a printed
# Python literal: a link that cooks line endings changes nothing.
import os


def mk_sum(p):
    # The weak sum the host computes the same way (channel.file_digest): such firmware has no
    # hashlib. Per 1024-byte block, read 128 bytes at a time into one small buffer: a 9 kB
    # heap, fragmented, may have no kilobyte in one piece.
    a = 0
    s = 0
    n = 0
    b = bytearray(128)
    f = open(p, "rb")
    while 1:
        k = f.readinto(b)
        if not k:
            break
        s += sum(b) if k == 128 else sum(b[:k])
        n += k
        if n % 1024 == 0:
            a = (a * 31 + s) & 0xFFFFFFFF
            s = 0
    f.close()
    if n % 1024:
        a = (a * 31 + s) & 0xFFFFFFFF
    return "sum:%08x:%d" % (a, n)


def mk_ls(d, sums):
    # One literal per entry: (path, is folder, size, weak sum or None). Flat firmware has no
    # os.stat and a listdir without arguments.
    st = getattr(os, "stat", None)
    names = os.listdir(d) if st else os.listdir()
    for n in names:
        p = (d.rstrip("/") + "/" + n) if st else n
        isdir = st and st(p)[0] & 0x4000
        if isdir:
            print(repr((p, 1, 0, None)))
            mk_ls(p, sums)
        else:
            size = st(p)[6] if st else os.size(p)
            print(repr((p, 0, size, mk_sum(p) if sums else None)))


def mk_rd(p, k):
    # The file as bytes literals of k bytes each.
    f = open(p, "rb")
    while 1:
        b = f.read(k)
        if not b:
            break
        print(repr(b))
    f.close()


def mk_id():
    import gc
    import sys

    i = sys.implementation
    u = None
    try:
        import machine

        u = machine.unique_id()
    except Exception:
        pass
    gc.collect()
    print(repr((sys.platform, i.name, tuple(i.version[:3]), getattr(i, "_mpy", None),
                gc.mem_free() if hasattr(gc, "mem_free") else None,
                gc.mem_alloc() if hasattr(gc, "mem_alloc") else None, u)))
