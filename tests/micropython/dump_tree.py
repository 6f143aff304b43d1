# Runs ON MicroPython: print every folder and file below a folder, the way tests compare trees.
# ``fs`` is a VfsLfs2 object or the ``os`` module (a board's mounted filesystem): both offer
# ilistdir, open and stat. Prints "D path" for folders and "F path size mtime sha256" for files.
import binascii
import hashlib


def dump(fs, folder):
    for name, kind, *_ in sorted(fs.ilistdir(folder)):
        path = folder.rstrip("/") + "/" + name
        if kind == 0x4000:
            print("D", path)
            dump(fs, path)
            continue
        digest = hashlib.sha256()
        with fs.open(path, "rb") as file:
            while True:
                chunk = file.read(4096)
                if not chunk:
                    break
                digest.update(chunk)
        st = fs.stat(path)
        print("F", path, st[6], st[8], binascii.hexlify(digest.digest()).decode())
