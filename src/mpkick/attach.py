"""``attach``: a host folder in the board's filesystem, served over the REPL while code runs.

The opposite direction of ``mount`` (the board's files on the host): here the board mounts a
VFS (``agent/mpkick_attach.py``) whose every operation is a request on its stdout, answered by
this module on its stdin. Nothing is copied to the flash. What makes it fast on a serial link:

* a folder's listing comes in one answer, with every entry's stats and the contents of its
  small modules, deflated as one stream; the top folder's listing travels with the mount itself;
* the board keeps listings and small files, answers every miss an import makes (``x.py``,
  ``x.mpy``, ``x/__init__.py`` ...) from them, and learns what changed on the host (watchfiles
  events, or a stat scan without watchfiles) in the header of every answer, or with one short
  question when it has not heard from the host for a quarter of a second;
* with ``compile``, ``.py`` modules appear as ``.mpy`` made by the board's matching mpy-cross,
  cached by source hash.

The host refuses every path that leaves the folder (``..``, symlinks out of it), and every
change unless the folder was attached with ``write``; a written file goes to a temporary file
beside it and is renamed over the old one on close.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import agent
from .errors import BoardError, InputError, MpkickError
from .repl import SOFT_REBOOT, error_from_traceback

if TYPE_CHECKING:
    from .board import Board
    from .compile import Compiler

MODULE = "mpkick_attach"
DEFAULT_PATH = "/remote"
REQUEST = b"\x18mK"
REQUEST_END = b"\x19"
ABORTED = b"\x10X"
#: Bytes the board must never find in an answer: the REPL's control keys (0x03 stays the
#: user's interrupt) and the escape itself.
_ESCAPED_IN = (0x10, 0x01, 0x02, 0x03, 0x04, 0x05)
_UNESCAPE_OUT = re.compile(rb"\x10(.)", re.S)
#: Files of these kinds ride along with a listing an import asks for.
INLINE_KINDS = (".py", ".mpy")
INLINE_MAX = 16384  # one file larger than this is read when opened, not with its listing
LISTING_INLINE_MAX = 96 * 1024
CHANGE_LOG = 2000
PRECOMPILE_MAX = 400  # modules compiled ahead at attach; the rest when the board asks
TEMP_SUFFIX = ".mpkick-tmp"  # a file the board is writing, renamed over the real one on close
Stream = Callable[[bytes], None]


@dataclass(frozen=True)
class Folder:
    """A host folder and where the board sees it."""

    root: Path
    where: str = DEFAULT_PATH
    write: bool = False


def parse_folders(args: Sequence[str], write: bool = False) -> list[Folder]:
    """``[DIR] [BOARD_PATH]``, or several ``DIR[:BOARD_PATH]``; the first defaults to
    ``/remote``, later ones to ``/remote1``, ``/remote2`` ..."""
    pairs: list[list[str | None]] = []
    for arg in args:
        cut = arg.rfind(":/")
        if cut > 0 and not Path(arg).exists() and Path(arg[:cut]).is_dir():
            pairs.append([arg[:cut], arg[cut + 1:]])
        elif arg.startswith("/") and pairs and pairs[-1][1] is None and not Path(arg).is_dir():
            pairs[-1][1] = arg
        else:
            pairs.append([arg, None])
    if not pairs:
        pairs.append([".", None])
    folders = []
    for i, (root, where) in enumerate(pairs):
        path = Path(root or ".")
        if not path.is_dir():
            raise InputError(f"{root} is not a folder on the host: give the folder to attach")
        where = where or (DEFAULT_PATH if i == 0 else f"{DEFAULT_PATH}{i}")
        if not where.startswith("/") or where == "/" or ".." in where.split("/"):
            raise InputError(f"{where}: the board path must be absolute and not / "
                             "(e.g. /remote)")
        folders.append(Folder(path, posixpath.normpath(where), write))
    if len({f.where for f in folders}) < len(folders):
        raise InputError("two folders at the same board path: give each its own")
    return folders


def escape_for_board(data: bytes) -> bytes:
    for b in _ESCAPED_IN:
        char = bytes((b,))
        if char in data:
            data = data.replace(char, bytes((0x10, b + 0x40)))
    return data


def unescape_from_board(data: bytes) -> bytes:
    return _UNESCAPE_OUT.sub(lambda m: bytes((m.group(1)[0] - 0x40,)), data)


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
        from .compile import should_compile

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


# --------------------------------------------------------------------------- the board side


class Attachment:
    """Host folders attached to a connected board: ``start()``, run code, ``close()``.

    While attached, everything the board prints must pass through ``feed`` (``run`` and
    ``terminal`` do that), so its requests are answered.
    """

    def __init__(self, board: Board, folders: Sequence[Folder], *, compile: bool = False,
                 timeout: float = 4.0, mpy_cross: str | None = None,
                 log: Callable[[str], None] = lambda _m: None) -> None:
        self.board = board
        self.folders = list(folders)
        self.timeout = timeout
        self.log = log
        self.lock = threading.RLock()
        self.attached = False
        self._check_board()
        compiler = None
        if compile:
            from .compile import Compiler

            mpy = board.eval("getattr(__import__('sys').implementation, '_mpy', None)")
            compiler = Compiler.for_board(mpy, mpy_cross)
        caps = board.caps
        self.server = Server(self.folders, self._send, wbits=caps.wbits,
                             compress=caps.stream or caps.zlib, compiler=compiler)
        if compiler is not None:
            self._precompile()

    def _check_board(self) -> None:
        """A one-line refusal for firmware that cannot mount a Python VFS (micro:bit ...)."""
        ok, _, home = self.board.exec(
            "try:\n import vfs as _v\nexcept ImportError:\n import os as _v\n"
            "try:\n import select as _s\nexcept ImportError:\n _s = None\n"
            "import sys\n"
            "print(hasattr(_v, 'mount') and hasattr(_s, 'poll') and hasattr(sys, 'stdin') and "
            "hasattr(sys.stdin, 'buffer'))\n"
            # A folder an earlier host left mounted when it died unnoticed: let it go.
            "try:\n import os\n for _o, _p in _v.mount():\n"
            "  if type(_o).__name__ == '_Folder':\n   _v.umount(_p)\n"
            "   if _p in sys.path: sys.path.remove(_p)\n"
            "   if os.getcwd().startswith(_p): os.chdir('/')\nexcept Exception:\n pass\n"
            "del _v, _s\n"
            "try:\n print(repr((os.getcwd(), sys.path)))\nexcept Exception:\n"
            " print(None)").decode().strip().partition("\n")
        self.home = home.strip()  # the cwd and sys.path to give back, before mpkick's own
        if ok.strip() != "True":
            raise InputError("this board's firmware cannot attach a host folder (it has no "
                             "vfs.mount, select.poll or binary stdin, e.g. a micro:bit): "
                             "use `mpkick push` to copy the files instead")

    def _precompile(self) -> None:
        """Every module compiled before the board asks: cached by hash, so this is instant
        after the first time, and a board never waits for mpy-cross."""
        from .compile import should_compile
        from .ignore import IgnoreRules

        assert self.server.compiler is not None
        left = PRECOMPILE_MAX
        for folder in self.folders:
            rules = IgnoreRules.from_folder(folder.root)
            for top, dirs, files in os.walk(folder.root):
                here = Path(top).relative_to(folder.root)
                dirs[:] = [d for d in dirs if not rules.ignored((here / d).as_posix(), True)]
                for name in files:
                    rel = (here / name).as_posix()
                    if left > 0 and should_compile(rel) and not rules.ignored(rel, False):
                        left -= 1
                        with contextlib.suppress(MpkickError, OSError):
                            self.server.compiler.compile((Path(top) / name).read_bytes(), rel,
                                                         str(Path(top) / name))

    def _send(self, data: bytes) -> None:
        with self.lock:
            self.board.repl.write(data)

    def send_keys(self, keys: bytes) -> None:
        """Keys for the board, never in the middle of an answer."""
        self._send(keys)

    def feed(self, data: bytes) -> bytes:
        return self.server.feed(data)

    # ----------------------------------------------------------------- attach / detach

    def start(self) -> None:
        """Mount every folder; the first becomes the cwd, all go on ``sys.path``."""
        self._load_module()
        for idx, folder in enumerate(self.folders):
            # The top folder's listing rides with the mount code, which the board compiles:
            # its modules only as far as a small heap can take them.
            room = min(LISTING_INLINE_MAX // 4, self.board.caps.free // 16)
            top = self.server.listing(idx, "", room)
            self.server._sent.pop((idx, ""), None)
            code = (f"mk_attach({idx}, {folder.where!r}, {not folder.write}, -1, "
                    f"{self.server.wbits}, {int(self.timeout * 1000)}, {top!r}, {idx == 0}, "
                    f"{self.home})")
            self.board.exec(code, timeout=30)
        self.attached = True

    def _load_module(self) -> None:
        from .board import META, _self_installer

        self.board.load_agent()
        want = agent.version(MODULE)
        load = (f"import sys\nif {META!r} not in sys.path:sys.path.append({META!r})\n"
                f"try:\n import {MODULE} as _m\n if _m.MK_V != {want!r}: raise ImportError\n"
                f" from {MODULE} import *\n print(1)\n"
                f"except Exception:\n sys.modules.pop({MODULE!r},0);print(0)")
        if self.board.exec(load).decode().strip() == "1":
            return
        self.log(f"installing the attach module on the board ({want})")
        text = f"MK_V = {want!r}\n{agent.source(MODULE)}"
        self.board.exec(_self_installer(text, True, MODULE), timeout=30)
        # Stored: from now on the module itself serves, as at every later attach (a board
        # that could not store it keeps the copy just run).
        self.board.exec(load)

    def close(self) -> None:
        """Stop what runs, unmount, and give the board back its cwd and sys.path."""
        try:
            if self.attached:
                self.interrupt()
                with contextlib.suppress(BoardError, OSError):
                    self.run("mk_detach()")  # served: files left open are saved first
                self.attached = False
        finally:
            self.server.close()

    def interrupt(self) -> None:
        """Stop the running program, answering the requests it abandons, and enter the raw
        REPL."""
        repl = self.board.repl
        self._send(b"\r\x03\x03")
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            self.feed(repl.take(0.05))
        repl.in_raw = False
        repl.enter_raw()

    def reattach(self) -> None:
        """After a soft reset: the board forgot the mount; stop its main.py and mount again."""
        self.board._agent_loaded = False
        self.attached = False
        self.server.drop_open()
        self.board.repl.enter_raw()
        # A board that was booting when our Ctrl-A came may print its raw prompt twice: what
        # follows the first is no answer to what comes next.
        self.board.repl.drain(0.1)
        self.start()

    # ----------------------------------------------------------------- running code

    def run(self, code: str, stream: Stream | None = None) -> bytes:
        """Run ``code`` in the raw REPL while serving the folders; its output, streamed too.
        Ctrl-C on the host stops the board's program at once (its traceback is raised)."""
        repl = self.board.repl
        if not repl.in_raw:
            repl.enter_raw()
        repl.send_code(code.encode())
        try:
            return self._finish(stream)
        except KeyboardInterrupt:
            self._send(b"\x03")
            with contextlib.suppress(Exception):
                self._finish(stream, limit=10)
            raise

    def _finish(self, stream: Stream | None, limit: float | None = None) -> bytes:
        repl = self.board.repl
        out = bytearray()
        err = bytearray()
        stage = 0
        deadline = None if limit is None else time.monotonic() + limit
        while stage < 2:
            if deadline is not None and time.monotonic() > deadline:
                break
            data = self.feed(repl.take(0.05))
            while data and stage < 2:
                end = data.find(b"\x04")
                part, data = (data, b"") if end < 0 else (data[:end], data[end + 1:])
                if stage == 0:
                    out += part
                    if stream is not None and part:
                        stream(part)
                else:
                    err += part
                if end >= 0:
                    stage += 1
            if stage == 2:
                repl.unread(data)
        repl.read_until(b">", 5, what="the raw REPL prompt")
        if err:
            raise error_from_traceback(err.decode("utf-8", "replace"))
        return bytes(out)

    # ----------------------------------------------------------------- the terminal

    def terminal(self, stdin_fd: int, stdout: Stream, main: bool = False) -> None:
        """The board's friendly REPL with the folders attached, until Ctrl-]. A soft reset
        (Ctrl-D) is followed by the folders again, then main.py, as a board boots."""
        from .terminal import _raw_keyboard, forward_keys

        stop = threading.Event()
        repl = self.board.repl
        repl.exit_raw()

        def pump() -> None:
            tail = b""
            try:
                if main:
                    self._boot_main(stdout)
                while not stop.is_set():
                    data = self.feed(repl.take(0.05))
                    if not data:
                        continue
                    seen = tail + data
                    at = seen.find(SOFT_REBOOT)
                    if at >= 0:
                        stdout(data[:max(0, at + len(SOFT_REBOOT) - len(tail))])
                        with self.lock:  # keys wait until the folders are back
                            self.reattach()
                        self._boot_main(stdout)  # keys reach main.py: Ctrl-C stops it
                        tail = b""
                        continue
                    stdout(data)
                    tail = seen[-len(SOFT_REBOOT):]
            except Exception as exc:  # the link went away: say so and leave
                stdout(f"\r\nmpkick: {exc}\r\n".encode())
                stop.set()

        thread = threading.Thread(target=pump, daemon=True, name="mpkick-attach-pump")
        thread.start()
        with _raw_keyboard(stdin_fd):
            if not main:
                self.send_keys(b"\r")
            forward_keys(stdin_fd, self.send_keys, stop, linger=1.0)
        stop.set()
        thread.join(2)

    def _boot_main(self, stdout: Stream) -> None:
        """Run main.py (the folder's, else the flash's) as boot would, then the friendly REPL."""
        repl = self.board.repl
        if not repl.in_raw:
            repl.enter_raw()
        repl.send_code(b"mk_main()")
        with contextlib.suppress(BoardError, OSError):
            self._finish(stdout)
        repl.exit_raw()


@contextlib.contextmanager
def attached(board: Board, folders: Sequence[Folder], **options: object) -> Iterator[Attachment]:
    """``folders`` attached to ``board`` for the ``with`` block; detached after."""
    session = Attachment(board, folders, **options)  # type: ignore[arg-type]
    try:
        session.start()
        yield session
    finally:
        session.close()


def watch_attached(board: Board, folders: Sequence[Folder], *, run: str | None = None,
                   stop: threading.Event, on_event: Callable[[object], None],
                   compile: bool = False, debounce: float = 0.05) -> None:
    """Run ``run`` (default: main.py as a board boots) with ``folders`` attached; every
    change on the host (not one the program made) restarts it from a soft reset, attached
    again. Nothing is pushed. Events are ``watch``'s Output, Notice and Finished."""
    from .watch import Finished, Notice, Output

    session = Attachment(board, folders, compile=compile)
    session.start()
    code = f"exec(open({run!r}).read(), {{'__name__': '__main__'}})" if run else "mk_main()"
    repl = board.repl
    try:
        while not stop.is_set():
            session.server.changed.clear()
            repl.send_code(code.encode())
            stage, failed = 0, False
            while not stop.is_set() and not session.server.changed.is_set():
                data = session.feed(repl.take(0.05))
                while data and stage < 3:
                    if stage == 2:
                        stage = 3 if data[:1] == b">" else 2
                        data = data[1:]
                        if stage == 3:
                            on_event(Finished(ok=not failed))
                        continue
                    end = data.find(b"\x04")
                    part, data = (data, b"") if end < 0 else (data[:end], data[end + 1:])
                    if part:
                        on_event(Output(part.replace(b"\r\n", b"\n"), error=stage == 1))
                        failed = failed or stage == 1
                    if end >= 0:
                        stage += 1
            if stop.is_set():
                break
            time.sleep(debounce)  # saves come in bursts
            on_event(Notice("changed on the host: restarting the program"))
            if stage < 3:
                session.interrupt()
            board.soft_reset()
            session.reattach()
    finally:
        session.close()
