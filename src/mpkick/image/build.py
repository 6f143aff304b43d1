"""Whole trees in and out of targets: an image built from a host folder, a target's tree copied
to the host, and an image's facts."""

from __future__ import annotations

import errno
import os
import posixpath
from pathlib import Path
from typing import NamedTuple

from ..errors import InputError, NoSpaceError
from ..ignore import IgnoreRules
from ..target import Target, Usage
from .geometry import READ_SIZE
from .target import ImageTarget, _lfs, _mapped, new_image


class BuildResult(NamedTuple):
    """What ``build_image`` put into the image."""

    files: int
    folders: int
    data_bytes: int
    usage: Usage


def build_image(src: Path, out: str, *, size: int, block_size: int = 4096,
                prog_size: int = READ_SIZE, rules: IgnoreRules | None = None) -> BuildResult:
    """An image at ``out`` holding the kept files of folder ``src``, their host mtimes kept.

    The image is built in memory and saved once, so a failure (a file too big for the image)
    leaves any earlier ``out`` as it was.
    """
    if not src.is_dir():
        raise InputError(f"{src} is not a folder: give the folder whose files go into the image")
    rules = rules or IgnoreRules.from_folder(src)
    target = new_image(out, size, block_size, prog_size, autosave=False)
    files = folders = data_bytes = 0
    for rel, is_dir in rules.walk(src):
        if is_dir:
            target.mkdir("/" + rel)
            folders += 1
            continue
        local = src / rel
        data = local.read_bytes()
        try:
            target.write("/" + rel, data, mtime_ns=local.stat().st_mtime_ns)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            raise NoSpaceError(
                f"{src} does not fit in an image of {size} bytes (full at {rel}): give a larger "
                "--size or --block-count, or ignore more files") from None
        files += 1
        data_bytes += len(data)
    target.save()
    return BuildResult(files, folders, data_bytes, target.usage())


def copy_out(target: Target, src: str, dest: Path) -> list[Path]:
    """Copy the file or folder ``src`` of a target to ``dest`` on the host, keeping mtimes.

    A folder's content lands in ``dest`` (made when missing); a file lands at ``dest``, or
    inside it when ``dest`` is an existing folder. Returns the host files written.
    """
    entry = target.stat(src)
    written: list[Path] = []
    if not entry.is_dir:
        path = dest / posixpath.basename(entry.path) if dest.is_dir() else dest
        _put_local(path, target.read(entry.path), entry.mtime)
        return [path]
    dest.mkdir(parents=True, exist_ok=True)
    for child in target.tree(entry.path):
        local = dest.joinpath(*posixpath.relpath(child.path, entry.path).split("/"))
        if child.is_dir:
            local.mkdir(exist_ok=True)
        else:
            _put_local(local, target.read(child.path), child.mtime)
            written.append(local)
    return written


def _put_local(path: Path, data: bytes, mtime: int | None) -> None:
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


class ImageInfo(NamedTuple):
    """An image file's geometry and fill, for ``mpkick image info``."""

    path: str
    block_size: int
    block_count: int
    disk_version: str
    name_max: int
    usage: Usage


def image_info(target: ImageTarget) -> ImageInfo:
    """Geometry as the mounted filesystem reports it."""
    with _mapped("/"):
        st = _lfs().lfs.fs_stat(target.fs.fs)
    version = f"{st.disk_version >> 16}.{st.disk_version & 0xFFFF}"
    return ImageInfo(target.path, target.block_size, target.block_count, version, st.name_max,
                     target.usage())
