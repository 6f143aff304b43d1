# Part of mpkick's agent, loaded only when a delta needs the board's block signatures.
from binascii import b2a_base64, crc32
import hashlib


def mk_sigs(items):
    """Per (path, block): size, then per block CRC-32 and 6 bytes of sha256, base64.

    The host finds which blocks of the board's copy it can reuse without reading the file,
    for many files in one exchange. One file's signatures are printed a block at a time
    (base64 in groups of 3 blocks: 30 bytes, 40 characters), never held whole.
    """
    for path, block in items:
        try:
            f = open(path, "rb")
        except OSError:
            print("-")
            continue
        buf = bytearray(block)
        out = bytearray(30)
        n = 0
        with f:
            print(f.seek(0, 2), end=" ")
            f.seek(0)
            i = 0
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                b = buf if k == block else memoryview(buf)[:k]
                c = crc32(b) & 0xFFFFFFFF
                out[i:i + 4] = bytes((c & 255, (c >> 8) & 255, (c >> 16) & 255, c >> 24))
                out[i + 4:i + 10] = hashlib.sha256(b).digest()[:6]
                i += 10
                n += k
                if i == 30:
                    print(b2a_base64(out).decode().strip(), end="")
                    i = 0
            if i:
                print(b2a_base64(memoryview(out)[:i]).decode().strip(), end="")
        print()
