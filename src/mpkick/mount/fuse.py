"""libfuse glue: loading mfusepy late, passing on what its libfuse 3 glue drops, and running
the loop until the mount goes away."""

from __future__ import annotations

import os
from typing import Any

from ..errors import MpkickError
from ..target import Target
from .fs import TargetFS
from .state import EventCallback


def _fuse() -> Any:
    """The ``mfusepy`` module, imported late so the CLI loads without FUSE installed."""
    try:
        import mfusepy
    except (ImportError, OSError, AttributeError) as exc:  # libfuse missing or too old
        raise MpkickError(
            f"FUSE is not available ({exc}): install fuse3 (Linux: apt install fuse3) or "
            "macFUSE (macOS), and the 'mount' extra: pip install 'mpkick[mount]'"
        ) from exc
    return mfusepy


def _fuse_class(mfusepy: Any) -> Any:
    """mfusepy's ``FUSE``, passing on two things its libfuse 3 glue drops.

    renameat2's flags: without them ``mv --no-clobber`` (RENAME_NOREPLACE) would replace the
    file it must keep. ftruncate's handle: with ``nullpath_ok`` libfuse gives no path for it,
    so without the handle ``truncate -s`` on an open file could not find the file.
    """

    class FUSE(mfusepy.FUSE):  # type: ignore[misc]
        def rename_fuse_3(self, old: bytes, new: bytes, flags: int) -> int:
            ops, enc, errs = self.operations, self.encoding, self.errors
            result: int = ops.rename(old.decode(enc, errs), new.decode(enc, errs), flags)
            return result

        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            name = None if path is None else path.decode(self.encoding, self.errors)
            result: int = self.operations.truncate(name, length, fip.contents.fh if fip else None)
            return result

    return FUSE


def mount(target: Target, mountpoint: str | os.PathLike[str], *, read_only: bool = False,
          foreground: bool = True, on_event: EventCallback | None = None) -> None:
    """Serve ``target`` at ``mountpoint`` until it is unmounted (or Ctrl-C in the foreground).

    Runs libfuse's loop in this thread; returns once unmounted. The target is not closed: the
    caller opened it and closes it.
    """
    fuse = _fuse()
    ops = TargetFS(target, read_only=read_only, on_event=on_event,
                   cwd=os.getcwd() if foreground else None)
    options: dict[str, Any] = {"foreground": foreground, "fsname": "mpkick", "subtype": "mpkick",
                               "default_permissions": True, "hard_remove": True}
    version = (getattr(fuse, "fuse_version_major", 2), getattr(fuse, "fuse_version_minor", 0))
    if version >= (3, 12):
        # These libfuses complain about their own default thread limits unless told them;
        # older ones refuse the options.
        options.update(max_threads=8, max_idle_threads=4)
    if read_only:
        options["ro"] = True
    try:
        _fuse_class(fuse)(ops, os.fspath(mountpoint), **options)
    except RuntimeError as exc:
        if ops.ready:
            return  # libfuse 3 reports a loop ended by Ctrl-C (SIGINT/SIGTERM) as a failure
        raise MpkickError(
            f"could not mount at {os.fspath(mountpoint)} (libfuse said {exc}): is it an empty "
            "folder that is not already mounted, and is /dev/fuse usable?") from exc
