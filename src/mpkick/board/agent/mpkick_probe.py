# What this firmware offers, as bits in the order of the host's channel.CAP_FLAGS. It runs on
# any MicroPython from 1.9 on, in a few kB of heap, before the agent is installed (to decide
# whether the board can host it) and inside the agent (its mk_caps), so one piece of code
# answers the question both times.
import gc
import os
import sys


def _mod(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def mk_have():
    h = _mod("hashlib")
    b = _mod("binascii")
    d = _mod("deflate")
    z = _mod("zlib")
    m = _mod("micropython")
    i = _mod("io")
    have = (
        h and hasattr(h, "sha256"),
        b and hasattr(b, "crc32"),
        d and i,
        d and i and hasattr(d, "DeflateIO"),
        z and hasattr(z, "decompress"),
        hasattr(os, "rename"),
        hasattr(os, "stat"),
        hasattr(os, "mkdir"),
        hasattr(os, "statvfs"),
        hasattr(getattr(sys, "stdin", None), "buffer"),
        m and hasattr(m, "kbd_intr"),
        hasattr(sys, "path"),
    )
    mask = 0
    for k in range(len(have)):
        if have[k]:
            mask |= 1 << k
    gc.collect()
    return mask, gc.mem_free() if hasattr(gc, "mem_free") else 16384
