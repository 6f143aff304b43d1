# Can this firmware mount a Python VFS for `mpkick attach`? Prints True or False, then the
# cwd and sys.path to give back after detaching (or None). Run as top-level statements.
try:
    import vfs as _v
except ImportError:
    import os as _v
import sys
try:
    import select as _s, io as _i
    _ok = hasattr(_v, 'mount') and hasattr(_s, 'poll') and hasattr(sys, 'stdin') and hasattr(sys.stdin, 'buffer') and hasattr(_i, 'IOBase')
except Exception:
    _ok = _s = _i = False
print(_ok)
# A folder an earlier host left mounted when it died unnoticed: let it go.
try:
    import os
    for _o, _p in _v.mount():
        if type(_o).__name__ == '_Folder':
            _v.umount(_p)
            if _p in sys.path:
                sys.path.remove(_p)
            if os.getcwd().startswith(_p):
                os.chdir('/')
except Exception:
    pass
del _v, _s, _i, _ok
try:
    print(repr((os.getcwd(), sys.path)))
except Exception:
    print(None)
