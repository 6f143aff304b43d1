"""An interactive terminal between the user's keyboard and the board's REPL (``mpkick repl``)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from .errors import ConnectError
from .transport import Transport

EXIT_KEY = b"\x1d"  # Ctrl-]


def terminal(transport: Transport, stdin_fd: int, stdout: BinaryIO) -> None:
    """Pass keys to the board and its output back until Ctrl-] (or the end of piped input)."""
    stop = threading.Event()

    def pump_output() -> None:
        while not stop.is_set():
            try:
                data = transport.read(4096, 0.05)
            except ConnectError:
                stop.set()
                return
            if data:
                stdout.write(data)
                stdout.flush()

    reader = threading.Thread(target=pump_output, daemon=True)
    with _raw_keyboard(stdin_fd):
        reader.start()  # only now: see _raw_keyboard
        transport.write(b"\r")
        forward_keys(stdin_fd, transport.write, stop)
    stop.set()
    reader.join(1)


def forward_keys(stdin_fd: int, write: Callable[[bytes], None], stop: threading.Event,
                 linger: float = 0.5) -> None:
    """Keys to the board until Ctrl-], ``stop``, or the end of piped input (after which the
    board has ``linger`` seconds to finish answering)."""
    while not stop.is_set():
        keys = os.read(stdin_fd, 1024)
        if not keys:
            stop.wait(linger)
            return
        if EXIT_KEY in keys:
            write(keys[: keys.index(EXIT_KEY)].replace(b"\n", b"\r"))
            return
        write(keys.replace(b"\n", b"\r"))


@contextlib.contextmanager
def _raw_keyboard(fd: int):  # type: ignore[no-untyped-def]
    """Every key goes to the board as typed (Ctrl-C included) while the terminal is ours.

    Enter it before showing the board's output: going raw flushes what was typed (and echoed)
    in cooked mode, so keys typed at a prompt shown a moment earlier would be lost."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
