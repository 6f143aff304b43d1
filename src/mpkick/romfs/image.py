"""The ROMFS image format that MicroPython's ``vfs.VfsRom`` mounts, built and read on the host.

An image is one record of kind 0x14a6b1, whose varuint encoding is the header ``d2 cd 31``,
followed by the varuint length of its payload; the payload is a sequence of records, each a
varuint kind, a varuint payload length and the payload. A directory record (kind 4) holds its
name (varuint length, bytes) and then the records of its contents; a file record (kind 5) holds
its name and then a data record: verbatim (kind 2, the bytes themselves) or a pointer (kind 3:
varuint size, varuint offset from the start of the filesystem payload). Padding records (kind 1)
and unknown kinds are skipped; a kind-0 record means corruption. The whole image must be an even
number of bytes, so an odd one gets its length varuint padded with a leading ``0x80``.

:func:`build` writes exactly what MicroPython's own writer (``mpremote romfs build``) writes for
the same tree: entries of each folder in sorted order, every file verbatim. :func:`read` parses
any valid image, pointers and padding included, with every length checked against its parent,
as ``vfs_rom.c`` checks them.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from ..errors import InputError

HEADER = b"\xd2\xcd\x31"
KIND_UNUSED, KIND_PADDING, KIND_VERBATIM, KIND_POINTER, KIND_DIR, KIND_FILE = range(6)
KIND_FILESYSTEM = 0x14A6B1


class RomfsError(InputError):
    """Bytes that are not a ROMFS image (or a damaged one)."""


def encode_uint(value: int) -> bytes:
    """MicroPython's varuint: big-endian groups of 7 bits, the high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def decode_uint(data: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it); ``RomfsError`` when it runs past ``end``."""
    value = 0
    while True:
        if pos >= end:
            raise RomfsError("a length runs past the end of its record")
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _record(kind: int, payload: bytes) -> bytes:
    return encode_uint(kind) + encode_uint(len(payload)) + payload


def _name(name: str) -> bytes:
    raw = name.encode("utf-8")
    return encode_uint(len(raw)) + raw


@dataclass(frozen=True)
class RomEntry:
    """One folder or file of an image; ``offset`` is where a file's bytes start in the image."""

    path: str  # "/lib/x.mpy"
    is_dir: bool
    data: bytes = b""
    offset: int = 0

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str | None:
        return None if self.is_dir else hashlib.sha256(self.data).hexdigest()


def build(files: Mapping[str, bytes], folders: Iterable[str] = ()) -> bytes:
    """The image of ``files`` (``"lib/x.mpy"`` -> bytes) plus the (possibly empty) ``folders``.

    Every folder's entries go in sorted name order, as ``mpremote romfs build`` lays them out,
    so the same tree gives the same bytes with either tool.
    """
    tree: dict[str, dict[str, object]] = {}

    def folder(path: str) -> dict[str, object]:
        node = tree.setdefault("", {})
        for part in [p for p in path.split("/") if p]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RomfsError(f"{path}: a file and a folder share the name {part!r}")
            node = child
        return node

    for path in folders:
        folder(path.strip("/"))
    for path, data in files.items():
        path = path.strip("/")
        parent, name = posixpath.split(path)
        node = folder(parent)
        if not name or isinstance(node.get(name), dict):
            raise RomfsError(f"{path}: a file and a folder share this name")
        node[name] = bytes(data)

    def encode(node: Mapping[str, object]) -> bytes:
        out = bytearray()
        for name in sorted(node):
            child = node[name]
            if isinstance(child, dict):
                out += _record(KIND_DIR, _name(name) + encode(child))
            else:
                assert isinstance(child, bytes)
                out += _record(KIND_FILE, _name(name) + _record(KIND_VERBATIM, child))
        return bytes(out)

    body = encode(tree.get("", {}))
    length = encode_uint(len(body))
    if (len(HEADER) + len(length) + len(body)) % 2:
        length = b"\x80" + length  # a padded varuint: the image must be an even size
    return HEADER + length + body


def image_length(head: bytes | memoryview) -> int | None:
    """The whole image's size from its first bytes (header and length), or None when they
    are not a ROMFS header: what a board's partition holds, from a few bytes of it."""
    if bytes(head[:3]) != HEADER:
        return None
    try:
        length, pos = decode_uint(head, 3, len(head))
    except RomfsError:
        return None
    return pos + length


def _body(data: bytes) -> tuple[int, int]:
    """Start and end of the filesystem payload; ``RomfsError`` when ``data`` is no image."""
    if len(data) < 4 or data[:3] != HEADER:
        raise RomfsError("not a ROMFS image (it does not start with d2 cd 31)")
    kind, pos = decode_uint(data, 0, len(data))
    assert kind == KIND_FILESYSTEM
    length, pos = decode_uint(data, pos, len(data))
    if pos + length > len(data):
        raise RomfsError(f"the image says it holds {pos + length} bytes but it has {len(data)}: "
                         "it is truncated")
    return pos, pos + length


def read(data: bytes) -> list[RomEntry]:
    """Every folder and file in the image, parents before children."""
    base, end = _body(data)
    return list(_walk(data, base, base, end, ""))


def _walk(data: bytes, base: int, pos: int, end: int, parent: str) -> Iterator[RomEntry]:
    while pos < end:
        kind, at = decode_uint(data, pos, end)
        length, at = decode_uint(data, at, end)
        nxt = at + length
        if kind == KIND_UNUSED or nxt > end:
            raise RomfsError(f"damaged record at byte {pos}")
        if kind in (KIND_DIR, KIND_FILE):
            size, at = decode_uint(data, at, nxt)
            if at + size > nxt:
                raise RomfsError(f"damaged name at byte {pos}")
            name = data[at:at + size].decode("utf-8", "surrogateescape")
            path = f"{parent}/{name}"
            at += size
            if kind == KIND_DIR:
                yield RomEntry(path, True)
                yield from _walk(data, base, at, nxt, path)
            else:
                start, stop = _data(data, base, at, nxt, path)
                yield RomEntry(path, False, data[start:stop], start)
        pos = nxt


def _data(data: bytes, base: int, pos: int, end: int, path: str) -> tuple[int, int]:
    while pos < end:
        kind, at = decode_uint(data, pos, end)
        length, at = decode_uint(data, at, end)
        nxt = at + length
        if kind == KIND_UNUSED or nxt > end:
            break
        if kind == KIND_VERBATIM:
            return at, nxt
        if kind == KIND_POINTER:
            size, at = decode_uint(data, at, nxt)
            offset, at = decode_uint(data, at, nxt)
            if base + offset + size > len(data):
                raise RomfsError(f"{path}: its data lies outside the image")
            return base + offset, base + offset + size
        pos = nxt
    raise RomfsError(f"{path}: a file record without data")


def files(data: bytes) -> dict[str, bytes]:
    """Path (without the leading slash) -> content, for every file in the image."""
    return {e.path.lstrip("/"): e.data for e in read(data) if not e.is_dir}


def lookup(data: bytes, path: str) -> RomEntry:
    """The entry at ``path``; ``FileNotFoundError`` when the image has none."""
    want = "/" + path.strip("/")
    if want == "/":
        return RomEntry("/", True)
    for entry in read(data):
        if entry.path == want:
            return entry
    raise FileNotFoundError(2, "No such file or directory", path)
