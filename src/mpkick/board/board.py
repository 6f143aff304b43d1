"""A live board (or the virtual one) as a target: the filesystem verbs over mpkick's agent.

Every filesystem operation goes through the agent (``agent/mpkick_agent.py``; installing and
importing it, and the fallbacks where it does not fit, are ``agenthost``'s); bulk data travels
over the binary channel. Board-side failures arrive as ``OSError`` with the board's errno.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable, Iterator

from ..errors import ConnectError, DeviceTimeout, InputError, ProtocolError
from ..memory import listings
from ..protocol.channel import SendSession, receive_file
from ..target import Entry, Features, Progress, Usage, is_within, norm
from ..transport import Transport
from .agenthost import AgentHost, OutOfMemory, _literal, about
from .identity import board_id
from .plainfs import PlainSession

__all__ = ["Board", "OutOfMemory", "parse_listing"]


class Board(AgentHost):
    """One connected board as a target. Use as a context manager; ``close()`` leaves it at
    the REPL."""

    def __init__(self, transport: Transport, verbose: int = 0,
                 log: Callable[[str], None] | None = None) -> None:
        super().__init__(transport, verbose, log)
        self._known: tuple[str, dict[str, Entry]] | None = None  # the last listing, kept current

    # ----------------------------------------------------------------- the target contract

    @property
    def features(self) -> Features:
        caps = self.caps
        # Plain commands check by weak sum: sha256 and deltas need the agent.
        agent_hashes = caps.hosts_agent and self.plain is None and caps.hashlib
        return Features(folders=caps.mkdir, atomic=caps.rename, rename=caps.rename,
                        usage=caps.statvfs, strong_hashes=agent_hashes, delta=agent_hashes,
                        frame=caps.chunk)

    @contextlib.contextmanager
    def writer(self, fresh: str | None = None) -> Iterator[SendSession | PlainSession]:
        if fresh is not None:
            self.expect_empty(fresh)
        with self.session() as s:
            yield s

    def runner(self) -> Board:
        return self

    def identity(self) -> str:
        # Asked once per connection: a board that goes plain part-way keeps the id it had.
        if self._identity is None:
            self._identity = board_id(self)
        return self._identity

    def notes(self) -> list[str]:
        from .notes import transfer_notes

        return transfer_notes(self)

    def signatures(self, want: list[tuple[str, int]]) -> list[str]:
        """Block signatures (CRC-32 and a slice of sha256 per block) for files with no base
        this host remembers, all in one exchange; none where the firmware lacks CRC-32."""
        caps = self.caps
        if not (caps.crc32 and caps.hashlib and caps.buffer and caps.hosts_agent):
            return []
        self.load_part("mpkick_sigs")
        return self.call("mk_sigs", want, timeout=120).decode("ascii", "replace").splitlines()

    # ----------------------------------------------------------------- filesystem target

    def tree(self, path: str = "/", hashes: bool = False) -> list[Entry]:
        """Every entry below ``path``. With hashes, the board first answers with a digest of
        its tree; a listing this host already knows under that digest is not sent again.
        Firmware without hashlib answers with its weak sums (``features.strong_hashes``)."""
        path = norm(path)
        self.load_agent()
        if hashes and not self.features.strong_hashes:
            return self.summed_tree(path)
        if self.plain is not None:
            return self.plain.listing(path, sums=False)
        try:
            return self._agent_tree(path, hashes)
        except OutOfMemory:
            if self._starved() is None:
                raise
            return self.tree(path, hashes)

    def _agent_tree(self, path: str, hashes: bool) -> list[Entry]:
        if not (hashes and self.caps.hashlib):
            return parse_listing(self.call("mk_tree", path, False, False, self._keep, timeout=300))
        key = self.call("mk_tree", path, True, True, self._keep, timeout=300).decode().strip()
        entries = listings.load(key)
        if entries is None:
            entries = parse_listing(self.call("mk_tree", path, True, False, self._keep,
                                              timeout=300))
            listings.store(entries)
        self._known = (path, {e.path: e for e in entries})
        return entries

    def summed_tree(self, path: str) -> list[Entry]:
        """Every entry below ``path`` with the digest the board itself computes: sha256, or
        a weak sum where the firmware has no hashlib (what such boards are checked by)."""
        self.load_agent()
        if self.plain is not None:
            return self.plain.listing(path, sums=True)
        return parse_listing(self.call("mk_tree", norm(path), True, False, self._keep,
                                       timeout=300))

    def expect_empty(self, path: str) -> None:
        """``path`` does not exist yet and is about to be made: what the next session creates
        there is all there is, so its listing can be predicted without asking the board."""
        self._known = (norm(path), {})

    def _learn(self, journal: list[tuple[str, str, int, str]]) -> None:
        """Carry the last listing forward through what a session did, and remember the
        result: the next push then finds it under the board's digest."""
        if self._known is None:
            return
        root, known = self._known
        for op, path, size, extra in journal:
            if not is_within(path, root) or path == root:
                continue
            if op == "put":
                known[path] = Entry(path, False, size, None, extra)
            elif op == "mkdir":
                known.setdefault(path, Entry(path, True))
            elif op in ("remove", "rmdir"):
                known.pop(path, None)
            elif op == "rename" and path in known:
                moved = known.pop(path)
                if is_within(extra, root):
                    known[extra] = moved._replace(path=extra)
        listings.store(list(known.values()))

    def stat(self, path: str) -> Entry:
        path = norm(path)
        if path == "/":
            return Entry("/", True)
        self.load_agent()
        if self.plain is not None:
            with about(path):
                return self.plain.stat(path)
        mode, size, mtime = _literal(self.call("mk_stat", path, self._keep))
        return Entry(path, bool(mode & 0x4000), size, mtime or None)

    def read(self, path: str) -> bytes:
        path = norm(path)
        self.load_agent()
        if self.plain is not None:
            with about(path):
                return self.plain.read(path)
        if not self.caps.buffer:
            data = _literal(self.exec(f"with open({path!r},'rb') as f: print(repr(f.read()))"))
            return bytes(data)
        with about(path):
            try:
                return receive_file(self.repl, self.caps, path)
            except ProtocolError:
                return receive_file(self.repl, self.caps, path)  # one retry for a damaged read

    def write(self, path: str, data: bytes, progress: Progress | None = None) -> None:
        self._session_write([(norm(path), data)], progress=progress)

    def _session_write(self, files: list[tuple[str, bytes]], mkdirs: list[str] | None = None,
                       progress: Progress | None = None) -> None:
        with self.session() as s:
            for d in mkdirs or ():
                s.mkdir(d)
            for path, data in files:
                s.put(path, data, progress)

    @contextlib.contextmanager
    def session(self) -> Iterator[SendSession | PlainSession]:
        """What push writes through: a binary session, or on firmware that cannot host the
        agent, the same verbs as plain REPL commands."""
        self.load_agent()
        if self.plain is None:
            with self.binary_session() as s:
                yield s
            return
        try:
            yield PlainSession(self.plain)
        finally:
            self._known = None

    @contextlib.contextmanager
    def binary_session(self, entry: str = "mk_recv") -> Iterator[SendSession]:
        """A binary session: many operations for one exec. ``entry``: the agent function
        that receives it (a part's, loaded with ``load_part``)."""
        self.load_agent()
        if not self.caps.buffer or not self.caps.kbd_intr:
            raise ConnectError("this board's firmware has no binary stdin (sys.stdin.buffer and "
                               "micropython.kbd_intr); update MicroPython to 1.12 or newer")
        s = SendSession(self.repl, self.caps, entry=entry)
        try:
            yield s
        except (ConnectError, DeviceTimeout):
            self._known = None
            raise  # the board restarted, vanished or stalled: there is no session to end
        except BaseException:
            # A host-side failure (or Ctrl-C): the board still listens; end the session so it
            # leaves its binary mode and the REPL answers again.
            self._known = None
            with contextlib.suppress(Exception):
                s.close()
            raise
        try:
            s.close()
        except BaseException:
            self._known = None
            raise
        self._learn(s.journal)

    def mkdir(self, path: str) -> None:
        self._need("mkdir", "folders")
        path = norm(path)
        with about(path):
            self.exec(f"import os\nos.mkdir({self._name(path)!r})")

    def remove(self, path: str) -> None:
        path = norm(path)
        if self.stat(path).is_dir:
            raise IsADirectoryError(21, "Is a directory", path)
        with about(path):
            self.exec(f"import os\nos.remove({self._name(path)!r})")

    def rmdir(self, path: str) -> None:
        self._need("mkdir", "folders")
        path = norm(path)
        with about(path):
            # littlefs's rmdir removes a file just as well: refuse one, as POSIX does.
            self.exec(f"import os\nif not os.stat({path!r})[0] & 0x4000:\n raise OSError(20)\n"
                      f"os.rmdir({path!r})")

    def rename(self, src: str, dst: str) -> None:
        self._need("rename", "renaming")
        src, dst = norm(src), norm(dst)
        if self.plain is not None:
            with about(src):
                self.plain.rename(src, dst)
            return
        with about(src):
            self.exec("import os\n"
                  f"try:\n os.remove({dst!r})\nexcept OSError:\n pass\n"
                      f"os.rename({src!r}, {dst!r})" if src != dst else "pass")

    def usage(self) -> Usage:
        if not self.caps.statvfs:
            raise InputError("this board's firmware cannot report free space (no os.statvfs)")
        if self.plain is not None:
            return self.plain.usage()
        total, free, block = _literal(self.call("mk_usage", "/", self._keep))
        return Usage(total, free, block)

    def _name(self, path: str) -> str:
        """The firmware's own name for ``path`` (flat firmware has no leading slash)."""
        self.load_agent()
        return self.plain.name(path) if self.plain is not None else path

    def _need(self, cap: str, what: str) -> None:
        if not getattr(self.caps, cap):
            raise InputError(f"this board's filesystem does not support {what} (no os.{cap})")

    @staticmethod
    def join(*parts: str) -> str:
        return posixpath.join(*parts)


def parse_listing(text: bytes) -> list[Entry]:
    """Entries from ``mk_tree``'s lines: kind, size, mtime, hash, path (tab separated)."""
    entries = []
    for line in text.decode("utf-8", "surrogateescape").splitlines():
        kind, size, mtime, digest, path = line.rstrip("\r").split("\t", 4)
        entries.append(Entry(path, kind == "d", int(size), int(mtime) or None,
                             None if digest == "-" else digest))
    return entries
