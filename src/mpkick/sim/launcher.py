"""Starts the PyPI wheel's MicroPython unix port so that Ctrl-C behaves as on a board.

Runs as its own CPython process (``python launcher.py ARGS``); the supervisor's pty is its stdio.

The unix port turns SIGINT into an *asynchronous* KeyboardInterrupt: its signal handler jumps
out of whatever C code is running, be it littlefs in the middle of an update or the garbage
collector (whose heap then stays locked). A board never does that: its UART interrupt only marks
a KeyboardInterrupt as pending, and the VM raises it at the next safe point between bytecodes.
So the supervisor does not send SIGINT. It writes a byte to the pipe named by
``MPKICK_SIM_INTR_FD``, and a thread here calls the port's ``mp_sched_keyboard_interrupt()``,
the very function a board's UART interrupt calls, then wakes the port's main thread with a
harmless SIGUSR1 so that a ``time.sleep`` or a blocking read ends early and raises it, as a
board's delay loop does. For that thread to run beside MicroPython, the port's ``main`` is
called through ctypes, which lets go of CPython's lock during the call.

A wheel without those C symbols is run as before, and the pipe is closed: the supervisor then
falls back to SIGINT.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading


def _takes_ctrl_c(libc: ctypes.CDLL) -> bool:
    """True while the port has its SIGINT handler installed, which it does exactly while a
    Ctrl-C should interrupt (code running, ``kbd_intr`` on): the flag a board's UART tests."""
    action = ctypes.create_string_buffer(512)  # a struct sigaction; its handler comes first
    if libc.sigaction(signal.SIGINT, None, action) != 0:
        return False
    handler = int.from_bytes(action.raw[:ctypes.sizeof(ctypes.c_void_p)], sys.byteorder)
    return handler not in (int(signal.SIG_DFL), int(signal.SIG_IGN))


def _forward_interrupts(fd: int, lib: ctypes.CDLL, port_thread: int) -> None:
    """Each byte on the pipe is one Ctrl-C for the board; the pipe closing ends the thread.

    The supervisor sent it while code was running, but that code may have ended since, and a
    KeyboardInterrupt left pending then would hit the next command instead. So it is raised
    only if code still runs, and taken back if the code ended while it was being raised (the
    port looks for pending interrupts once more as code ends, so none is lost that way).
    """
    libc = ctypes.CDLL(None)
    while os.read(fd, 1):
        if _takes_ctrl_c(libc):
            lib.mp_sched_keyboard_interrupt()
            signal.pthread_kill(port_thread, signal.SIGUSR1)
            if not _takes_ctrl_c(libc):
                lib.mp_sched_exception(None)  # nothing pending: what a board has at its prompt


def main() -> int:
    # CPython's own SIGINT handler would swallow the SIGINT of the fallback path.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    import micropython_run  # type: ignore[import-not-found]

    args = ["micropython", *sys.argv[1:]]
    fd = int(os.environ.pop("MPKICK_SIM_INTR_FD", "-1"))
    lib = ctypes.CDLL(micropython_run.__file__)
    try:
        port_main = lib.micropython_unix_main
        lib.mp_sched_keyboard_interrupt.restype = lib.mp_sched_exception.restype = None
        lib.mp_sched_exception.argtypes = [ctypes.c_void_p]
    except AttributeError:
        if fd >= 0:
            os.close(fd)  # the supervisor sees the closed pipe and sends SIGINT instead
        return int(micropython_run.run_main(args))
    if fd >= 0:
        # A handler that does nothing: the signal only makes a sleeping syscall return EINTR,
        # on which the port checks for the pending KeyboardInterrupt.
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        threading.Thread(target=_forward_interrupts, daemon=True,
                         args=(fd, lib, threading.get_ident())).start()
    port_main.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    argv = (ctypes.c_char_p * (len(args) + 1))(*(os.fsencode(a) for a in args), None)
    return int(port_main(len(args), argv))


if __name__ == "__main__":
    sys.exit(main())
