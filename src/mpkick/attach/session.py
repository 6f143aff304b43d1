"""Attached folders on a connected board: mount, run code while serving, detach."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..board import agent
from ..errors import BoardError, InputError, MpkickError
from ..protocol.repl import SOFT_REBOOT
from ..protocol.tracebacks import error_from_traceback
from .folders import Folder
from .server import Server
from .wire import LISTING_INLINE_MAX, MODULE, PRECOMPILE_MAX

if TYPE_CHECKING:
    from ..board.board import Board
    from ..watch import Event

Stream = Callable[[bytes], None]


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
            from ..compile.compiler import Compiler

            mpy = board.info().mpy
            compiler = Compiler.for_board(mpy, mpy_cross)
        caps = board.caps
        self.server = Server(self.folders, self._send, wbits=caps.wbits,
                             compress=caps.stream or caps.zlib, compiler=compiler)
        if compiler is not None:
            self._precompile()

    def _check_board(self) -> None:
        """A one-line refusal for firmware that cannot mount a Python VFS (micro:bit ...)."""
        report = self.board.exec(agent.board_source("mpkick_attach_check")).decode()
        ok, _, home = report.strip().partition("\n")
        self.home = home.strip()  # the cwd and sys.path to give back, before mpkick's own
        if ok.strip() != "True":
            raise InputError("this board's firmware cannot attach a host folder (it lacks "
                             "vfs.mount, select.poll, binary stdin or io.IOBase, as a "
                             "micro:bit does): use `mpkick push` to copy the files instead")

    def _precompile(self) -> None:
        """Every module compiled before the board asks: cached by hash, so this is instant
        after the first time, and a board never waits for mpy-cross."""
        from ..compile.compiler import should_compile
        from ..ignore import IgnoreRules

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
        self.board.load_part(MODULE)
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
        self.board.forget_agent()
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
        from ..terminal import _raw_keyboard, forward_keys

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
        with _raw_keyboard(stdin_fd):
            thread.start()  # only now: see _raw_keyboard
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
def attached(board: Board, folders: Sequence[Folder], **options: Any) -> Iterator[Attachment]:
    """``folders`` attached to ``board`` for the ``with`` block; detached after."""
    session = Attachment(board, folders, **options)
    try:
        session.start()
        yield session
    finally:
        session.close()


def watch_attached(board: Board, folders: Sequence[Folder], *, run: str | None = None,
                   stop: threading.Event, on_event: Callable[[Event], None],
                   compile: bool = False, debounce: float = 0.05) -> None:
    """Run ``run`` (default: main.py as a board boots) with ``folders`` attached; every
    change on the host (not one the program made) restarts it from a soft reset, attached
    again. Nothing is pushed. Events are ``watch``'s Output, Notice and Finished."""
    from ..watch import Finished, Notice, Output

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
