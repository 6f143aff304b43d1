"""The host's side of attach: it answers the board's requests for the attached folders."""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import MpkickError
from .folders import Folder
from .wire import (
    ABORTED,
    CHANGE_LOG,
    INLINE_KINDS,
    INLINE_MAX,
    LISTING_INLINE_MAX,
    REQUEST,
    REQUEST_END,
    TEMP_SUFFIX,
    escape_for_board,
    unescape_from_board,
)

if TYPE_CHECKING:
    from ..compile.compiler import Compiler


class Server:
    """Answers the board's requests for ``folders``; ``write`` sends bytes to the board."""

    def __init__(self, folders: Sequence[Folder], write: Callable[[bytes], None], *,
                 wbits: int = 12, compress: bool = True, compiler: Compiler | None = None,
                 watch: bool = True) -> None:
        self.folders = list(folders)
        self.roots = [f.root.resolve() for f in self.folders]
        self.write = write
        self.wbits = wbits
        self.compress = compress
        self.compiler = compiler
        self.lock = threading.RLock()
        self.epoch = 0
        self._log: list[tuple[int, str]] = []  # (epoch, "idx:rel"), oldest first
        self._buf = bytearray()
        self._handles: dict[int, tuple[int, Path, Path, BinaryIO]] = {}
        self._next_handle = 1
        self._sent: dict[tuple[int, str], tuple[int, int]] = {}  # what the board may cache
        self._scan_at = 0.0
        self.requests = 0
        self.aborts = 0  # requests the board gave up on (Ctrl-C)
        self.retyped = 0  # keys that came while the board waited for an answer, sent again
        self.stop = threading.Event()
        self.changed = threading.Event()  # a change the board did not make (watch --attach)
        self._own: dict[tuple[int, str], float] = {}  # what the board changed itself, when
        self._watcher: threading.Thread | None = None
        if watch:
            with contextlib.suppress(ImportError):
                import watchfiles  # noqa: F401

                self._watcher = threading.Thread(target=self._watch, daemon=True,
                                                 name="mpkick-attach-watch")
                self._watcher.start()

    def drop_open(self) -> None:
        """Files the board was writing and never closed (it reset): the old content stays."""
        for handle in list(self._handles):
            self._discard(handle)

    def close(self) -> None:
        self.stop.set()
        self.drop_open()
        if self._watcher is not None:
            self._watcher.join(2)

    # ----------------------------------------------------------------- the stream

    def feed(self, data: bytes) -> bytes:
        """What the board printed, less the requests in it (each is answered here)."""
        buf = self._buf
        buf += data
        out = bytearray()
        while True:
            i = buf.find(REQUEST)
            if i < 0:
                keep = next((k for k in (2, 1) if buf.endswith(REQUEST[:k])), 0)
                out += buf[:len(buf) - keep]
                del buf[:len(buf) - keep]
                break
            out += buf[:i]
            j = buf.find(REQUEST_END, i + len(REQUEST))
            if j < 0:
                del buf[:i]
                break
            body = unescape_from_board(bytes(buf[i + len(REQUEST):j]))
            del buf[:j + 1]
            self.answer(body)
        return bytes(out)

    def answer(self, body: bytes) -> None:
        """Answer one request (already unescaped)."""
        with self.lock:
            self.requests += 1
            if body == b"X":
                self.aborts += 1
                self.write(ABORTED)  # the board gave up on its request: it skips up to here
                return
            if body[:1] == b"K":
                self.retyped += len(body) - 1
                self.write(body[1:])  # keys the board took for noise before an answer
                return
            epoch_text, _, rest = body.partition(b" ")
            try:
                board_epoch = int(epoch_text)
                reply = self._handle(rest[:1], rest[1:])
                status = 0
            except OSError as exc:
                reply, status = b"", exc.errno or errno.EIO
            except (ValueError, IndexError, UnicodeError):
                reply, status, board_epoch = b"", errno.EINVAL, -1
            except MpkickError:  # a module mpy-cross cannot compile, say
                reply, status = b"", errno.EIO
            self.write(self._frame(board_epoch, status, reply))

    def _frame(self, board_epoch: int, status: int, body: bytes) -> bytes:
        meta = f"{self.epoch}\x01{status}"
        if board_epoch != self.epoch:
            meta += "".join(f"\x01{c}" for c in self._changes_since(board_epoch))
        payload = meta.encode() + b"\x02" + body
        kind = b"r"
        if self.compress and len(payload) > 160:
            pack = zlib.compressobj(9, zlib.DEFLATED, -self.wbits)
            packed = pack.compress(payload) + pack.flush()
            if len(packed) < len(payload) - 32:
                payload, kind = packed, b"z"
        wire = escape_for_board(payload)
        return b"\x10S" + kind + b"%06x" % len(wire) + wire

    def _changes_since(self, board_epoch: int) -> list[str]:
        self._scan()
        if board_epoch < 0 or (self._log and board_epoch < self._log[0][0] - 1) or \
                (not self._log and board_epoch != self.epoch):
            return ["*"]
        return sorted({c for e, c in self._log if e > board_epoch})

    # ----------------------------------------------------------------- changes on the host

    def note_change(self, idx: int, rel: str) -> None:
        with self.lock:
            self.epoch += 1
            self._log.append((self.epoch, f"{idx}:{rel}"))
            del self._log[:-CHANGE_LOG]
            self._sent.pop((idx, rel), None)
            own = time.monotonic() - self._own.get((idx, rel), -10.0) < 2.0 or \
                rel.endswith(TEMP_SUFFIX)
        if not own:
            self.changed.set()

    def _watch(self) -> None:
        import watchfiles

        for batch in watchfiles.watch(*self.roots, stop_event=self.stop, debounce=20, step=10,
                                      rust_timeout=200, yield_on_timeout=False,
                                      raise_interrupt=False, ignore_permission_denied=True):
            for _change, path in batch:
                self._event(Path(path))

    def _event(self, path: Path) -> None:
        for idx, root in enumerate(self.roots):
            try:
                rel = path.relative_to(root).as_posix()
            except ValueError:
                continue
            rel = "" if rel == "." else rel
            self.note_change(idx, rel)
            if self.compiler is not None and rel.endswith(".py"):
                self.note_change(idx, rel[:-3] + ".mpy")

    def _scan(self) -> None:
        """Without watchfiles: compare what the board may have cached with the disk, at most
        five times a second."""
        if self._watcher is not None or time.monotonic() - self._scan_at < 0.2:
            return
        self._scan_at = time.monotonic()
        for (idx, rel), sig in list(self._sent.items()):
            if self._signature(idx, rel) != sig:
                self.note_change(idx, rel)

    def _signature(self, idx: int, rel: str) -> tuple[int, int]:
        try:
            st = os.stat(self.folders[idx].root / rel)
        except OSError:
            return (-1, -1)
        return (st.st_mtime_ns, st.st_size)

    # ----------------------------------------------------------------- requests

    def _handle(self, op: bytes, rest: bytes) -> bytes:
        if op == b"W":
            idx_text, handle_text, data = rest.split(b"\x00", 2)
            self._folder(int(idx_text))
            return self._write_data(int(handle_text), data)
        fields = rest.split(b"\x00")
        idx = int(fields[0])
        folder = self._folder(idx)
        args = [f.decode("utf-8") for f in fields[1:]]
        if op == b"Y":
            return b""
        if op == b"L":
            return self.listing(idx, args[0], int(args[1]))
        if op == b"R":
            return self._read(idx, args[0], int(args[1]), int(args[2]))
        if op == b"V":
            usage = shutil.disk_usage(folder.root)
            block = 4096
            return (f"{block} {block} {usage.total // block} {usage.free // block} "
                    f"{usage.free // block} 0 0 0 0 255").encode()
        if op == b"C":
            return self._close(int(args[0]))
        if not folder.write:
            raise OSError(errno.EROFS, "read-only: attach with --write to change files")
        for rel in args[:2] if op == b"N" else args[:1]:
            self._own[(idx, rel)] = self._own[(idx, posixpath.dirname(rel))] = time.monotonic()
        if op == b"O":
            return self._open(idx, args[0], args[1])
        path = self.resolve(idx, args[0])
        if op == b"M":
            path.mkdir()
        elif op == b"D":
            if path.is_dir():
                raise OSError(errno.EISDIR, "is a folder")
            path.unlink()
        elif op == b"Q":
            path.rmdir()
        elif op == b"N":
            os.replace(path, self.resolve(idx, args[1]))
        else:
            raise OSError(errno.EINVAL, "unknown request")
        return b""

    def _folder(self, idx: int) -> Folder:
        if not 0 <= idx < len(self.folders):
            raise OSError(errno.EINVAL, "no such folder")
        return self.folders[idx]

    def resolve(self, idx: int, rel: str) -> Path:
        """The host path of board path ``rel`` in folder ``idx``; EACCES for one that would
        leave the folder (``..``, an absolute path, a symlink pointing out)."""
        parts = rel.split("/") if rel else []
        if rel.startswith("/") or "\\" in rel or any(p in ("..", ".") for p in parts) or \
                "\x00" in rel:
            raise OSError(errno.EACCES, "outside the attached folder", rel)
        root = self.roots[idx]
        path = root.joinpath(*parts)
        real = path.resolve()
        if real != root and root not in real.parents:
            raise OSError(errno.EACCES, "outside the attached folder", rel)
        return path

    def _source(self, idx: int, rel: str) -> tuple[Path, bool]:
        """The host file behind ``rel``; True when it is an .mpy to compile from a .py."""
        path = self.resolve(idx, rel)
        if self.compiler is not None and rel.endswith(".mpy") and not path.exists():
            source = path.with_suffix(".py")
            if source.is_file() and self._compiles(rel[:-4] + ".py"):
                return source, True
        return path, False

    def _compiles(self, rel_py: str) -> bool:
        from ..compile.compiler import should_compile

        return self.compiler is not None and should_compile(rel_py)

    def _content(self, idx: int, rel: str) -> bytes:
        path, compile_it = self._source(idx, rel)
        if path.is_dir():
            raise OSError(errno.EISDIR, "is a folder", rel)
        data = path.read_bytes()
        if compile_it and self.compiler is not None:
            data = self.compiler.compile(data, rel[:-4] + ".py", str(path))
        self._sent[(idx, rel)] = self._signature(idx, rel) if not compile_it else \
            self._signature(idx, rel[:-4] + ".py")
        return data

    def _read(self, idx: int, rel: str, offset: int, size: int) -> bytes:
        data = self._content(idx, rel)
        return data[offset:] if size < 0 else data[offset:offset + size]

    def listing(self, idx: int, rel: str, budget: int) -> bytes:
        """A folder's entries with their stats, and the content of its small modules while
        ``budget`` lasts: name, kind, size, mtime, length of the inline content."""
        path = self.resolve(idx, rel)
        if not path.is_dir():
            raise OSError(errno.ENOTDIR if path.exists() else errno.ENOENT, "", rel)
        root = self.roots[idx]
        rows: dict[str, tuple[bool, int, int]] = {}
        with os.scandir(path) as scan:
            for entry in scan:
                name = entry.name
                if any(ord(c) < 0x20 for c in name) or name.endswith(TEMP_SUFFIX):
                    continue
                try:
                    name.encode("utf-8")
                    if entry.is_symlink():
                        real = Path(entry.path).resolve()
                        if real != root and root not in real.parents:
                            continue  # a way out of the folder: the board never sees it
                    st = entry.stat()
                except (OSError, UnicodeError):
                    continue
                is_dir = entry.is_dir()
                rows[name] = (is_dir, 0 if is_dir else st.st_size, int(st.st_mtime))
        if self.compiler is not None:
            for name in [n for n, r in rows.items() if not r[0] and n.endswith(".py")]:
                if not self._compiles(posixpath.join(rel, name)):
                    continue
                try:
                    size = len(self._content(idx, posixpath.join(rel, name[:-3] + ".mpy")))
                except MpkickError:
                    continue  # the board imports the .py and shows the error itself
                rows.setdefault(name[:-3] + ".mpy", (False, size, rows[name][2]))
                del rows[name]  # the board imports the .mpy in its place
        self._sent[(idx, rel)] = self._signature(idx, rel)
        budget = min(budget, LISTING_INLINE_MAX)
        inline: dict[str, bytes] = {}
        small = sorted((r[1], n) for n, r in rows.items()
                       if not r[0] and n.endswith(INLINE_KINDS) and r[1] <= INLINE_MAX)
        for size, name in small:
            if size > budget and size >= 0:
                break
            try:
                data = self._content(idx, posixpath.join(rel, name))
            except (OSError, MpkickError):
                continue
            if len(data) > budget:
                break
            budget -= len(data)
            inline[name] = data
        entries = []
        for name, (is_dir, size, mtime) in rows.items():
            if name in inline:
                size = len(inline[name])
            elif size < 0:
                with contextlib.suppress(OSError, MpkickError):
                    size = len(self._content(idx, posixpath.join(rel, name)))
            n = len(inline[name]) if name in inline else -1
            entries.append(f"{name}\x00{'d' if is_dir else 'f'}\x00{max(size, 0)}\x00{mtime}"
                           f"\x00{n}".encode())
        return b"\x01".join(entries) + b"\x02" + b"".join(inline.get(n, b"") for n in rows
                                                           if n in inline)

    # ----------------------------------------------------------------- writing

    def _open(self, idx: int, rel: str, mode: str) -> bytes:
        path = self.resolve(idx, rel)
        if path.is_dir():
            raise OSError(errno.EISDIR, "is a folder", rel)
        if "x" in mode and path.exists():
            raise OSError(errno.EEXIST, "exists", rel)
        if not path.parent.is_dir():
            raise OSError(errno.ENOENT, "no such folder", rel)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        f = os.fdopen(fd, "wb")
        if ("a" in mode or "+" in mode) and path.exists():
            f.write(path.read_bytes())
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = (idx, path, Path(tmp), f)
        return str(handle).encode()

    def _write_data(self, handle: int, data: bytes) -> bytes:
        if handle not in self._handles:
            raise OSError(errno.EBADF, "file not open")
        f = self._handles[handle][3]
        f.write(data)
        return b""

    def _close(self, handle: int) -> bytes:
        """The new content replaces the old in one rename: a reader sees old or new."""
        if handle not in self._handles:
            raise OSError(errno.EBADF, "file not open")
        idx, path, tmp, f = self._handles.pop(handle)
        rel = path.relative_to(self.roots[idx]).as_posix()
        self._own[(idx, rel)] = self._own[(idx, posixpath.dirname(rel))] = time.monotonic()
        try:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            if path.exists():
                with contextlib.suppress(OSError):
                    os.chmod(tmp, path.stat().st_mode & 0o7777)
            else:
                os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return b""

    def _discard(self, handle: int) -> None:
        _idx, _path, tmp, f = self._handles.pop(handle)
        with contextlib.suppress(OSError):
            f.close()
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
