"""A board's traceback, read back into the exception it stands for.

Filesystem failures become Python's own ``OSError`` subclasses with the board's errno, so the
same ``except FileNotFoundError`` works for a board as for the host; anything else is a
``BoardError`` carrying the board's own text. Old firmware names errors in words or by
errno name instead of number; both are understood.
"""

from __future__ import annotations

import re

from ..errors import BoardError, os_error

_ERRNO_NAMES = {"EPERM": 1, "ENOENT": 2, "EIO": 5, "EBADF": 9, "EAGAIN": 11, "ENOMEM": 12,
                "EACCES": 13, "EEXIST": 17, "ENODEV": 19, "ENOTDIR": 20, "EISDIR": 21,
                "EINVAL": 22, "EFBIG": 27, "ENOSPC": 28, "EROFS": 30, "ENAMETOOLONG": 36,
                "ENOTEMPTY": 39, "ETIMEDOUT": 110}

#: What older firmware says instead of an errno (the micro:bit's MicroPython 1.9).
_OLD_MESSAGES = {"file not found": 2, "no more storage space": 28, "file exists": 17}


def error_from_traceback(text: str) -> Exception:
    """The exception a board's traceback stands for."""
    lines = [ln.strip() for ln in text.replace("\r\n", "\n").strip().split("\n") if ln.strip()]
    last = lines[-1] if lines else "Exception"
    name, _, message = last.partition(":")
    message = message.strip()
    if name in ("OSError", "FileNotFoundError", "IsADirectoryError") or (name.endswith("Error") \
            and name.startswith("OSError")):
        m = re.match(r"\[Errno (\d+)\]\s*(\S*)\s*(.*)", message) or re.match(r"(-?\d+)$", message)
        if m:
            code = abs(int(m.group(1)))
            path = m.group(3) if m.lastindex and m.lastindex >= 3 else ""
            return os_error(code, path)
        named = _ERRNO_NAMES.get(message.split(" ")[0]) or _OLD_MESSAGES.get(message.lower()) \
            if message else None
        if named:
            return os_error(named, "")
    return BoardError(name, message, text)
