"""The one family of exceptions mpkick raises for things that went wrong off the host.

Filesystem failures on a target are Python's own ``OSError`` subclasses (with the board's errno),
so callers can write ``except FileNotFoundError``; everything else is an ``MpkickError``.
The CLI turns either into one line, ``mpkick: ...``, and exit code 1.
"""

from __future__ import annotations

import errno
import os


class MpkickError(Exception):
    """Root of mpkick's own errors; its message is written for the user, with what to do."""


class ConnectError(MpkickError):
    """The port cannot be opened, or no MicroPython answers on it."""


class PortBusy(ConnectError):
    """Another process holds the port."""


class NoAnswer(ConnectError):
    """The port opened but no MicroPython answered on it (hung, in its bootloader, not one)."""


class DeviceTimeout(MpkickError):
    """The board stopped answering within the time allowed."""


class ProtocolError(MpkickError):
    """The board answered, but not what the protocol says it must."""


class InputError(MpkickError):
    """The user asked for something that cannot be done (bad path, missing source ...)."""


class NoSpaceError(MpkickError):
    """What would be written does not fit the target's free space; nothing was written."""


class BoardError(MpkickError):
    """Code run on the board raised; ``exc_type`` is the board's exception name."""

    def __init__(self, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{exc_type}: {message}" if message else exc_type)
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback


class VerifyError(OSError):
    """A file the board wrote did not hash as the host's: the board kept its old copy.

    After a delta this means the base was not what the board's listing said (a file changed
    on the board behind the manifest); listing again and pushing again puts it right.
    """


def os_error(code: int, path: str) -> OSError:
    """An ``OSError`` of the right subclass (FileNotFoundError for ENOENT ...) for ``path``."""
    return OSError(code, os.strerror(code) if code in errno.errorcode else f"errno {code}", path)


def describe(exc: BaseException) -> str:
    """One line for the user: what went wrong and, where we know, what to do."""
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        hint = {
            errno.ENOSPC: " (the board's flash is full: remove files or push less)",
            errno.ENOENT: "",
        }.get(exc.errno, "")
        return f"{where}{exc.strerror or errno.errorcode.get(exc.errno, exc.errno)}{hint}"
    return str(exc) or type(exc).__name__
