"""Starts the PyPI wheel's MicroPython unix port so that Ctrl-C behaves as on a board.

Runs as its own CPython process (``python launcher.py ARGS``); the supervisor's pty is its stdio.

The unix port turns SIGINT into an *asynchronous* KeyboardInterrupt: its signal handler jumps
out of whatever C code is running, be it littlefs in the middle of an update or the garbage
collector (whose heap then stays locked). A board never does that: its UART interrupt only marks
a KeyboardInterrupt as pending, and the VM raises it at the next safe point between bytecodes.
So the supervisor does not send SIGINT. For each Ctrl-C it writes a byte to the first pipe
named by ``MPKICK_SIM_INTR_FD``, and a thread here decides as a board's UART interrupt does:
if code is running with ``kbd_intr`` on (the port's SIGINT handler is installed), it calls the
port's ``mp_sched_keyboard_interrupt()``, the very function a board's UART interrupt calls,
then wakes the port's main thread with a harmless SIGUSR1 so that a ``time.sleep`` or a
blocking read ends early and raises it, as a board's delay loop does. It answers on the second
pipe: ``1`` taken, ``0`` not (the byte is then data for the REPL, as on a board). For that
thread to run beside MicroPython, the port's ``main`` is called through ctypes, which lets go
of CPython's lock during the call.

A wheel without those C symbols is run as before, and the pipes are closed: the supervisor
then falls back to SIGINT.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import threading
import time


def _takes_ctrl_c(libc: ctypes.CDLL) -> bool:
    """True while the port has its SIGINT handler installed, which it does exactly while a
    Ctrl-C should interrupt (code running, ``kbd_intr`` on): the flag a board's UART tests."""
    action = ctypes.create_string_buffer(512)  # a struct sigaction; its handler comes first
    if libc.sigaction(signal.SIGINT, None, action) != 0:
        return False
    handler = int.from_bytes(action.raw[:ctypes.sizeof(ctypes.c_void_p)], sys.byteorder)
    return handler not in (int(signal.SIG_DFL), int(signal.SIG_IGN))


def _forward_interrupts(asks: int, answers: int, lib: ctypes.CDLL, port_thread: int) -> None:
    """Each byte asked is one Ctrl-C for the board; the pipe closing ends the thread.

    A KeyboardInterrupt left pending when code has just ended would hit the next command, so
    one raised just as the code ends is taken back (the port looks for pending interrupts
    once more as code ends, so none is lost that way). The byte is then data, as a board's
    UART takes a Ctrl-C that comes a moment after the code ended, or after it turned
    ``kbd_intr`` off (which looks the same from here): taken back and dropped, it was lost,
    and a program reading stdin waited for it for ever.
    """
    libc = ctypes.CDLL(None)
    while os.read(asks, 1):
        taken = _takes_ctrl_c(libc)
        if taken:
            lib.mp_sched_keyboard_interrupt()
            signal.pthread_kill(port_thread, signal.SIGUSR1)
            if not _takes_ctrl_c(libc):
                lib.mp_sched_exception(None)  # nothing pending: what a board has at its prompt
                taken = False
            else:
                threading.Thread(target=_wake, args=(libc, port_thread), daemon=True).start()
        os.write(answers, b"1" if taken else b"0")


def _wake(libc: ctypes.CDLL, port_thread: int) -> None:
    """Wake the port a few more times while its code runs: a ``time.sleep`` that began just
    after the first wake-up would otherwise sleep on, where a board's delay loop looks for
    a pending interrupt every millisecond. Harmless when the interrupt was raised already."""
    for _ in range(25):
        time.sleep(0.02)
        if not _takes_ctrl_c(libc):
            return
        signal.pthread_kill(port_thread, signal.SIGUSR1)


def _map_shared(path: str, size: int, address_variable: str) -> mmap.mmap:
    """``size`` bytes of the file at ``path`` mapped into this process, shared: a board's
    flash is memory its CPU reads in place, outside MicroPython's heap, and what is written to
    it is on the "flash" at once (a power cut, SIGKILL, keeps it). The firmware finds it by
    ``address_variable``: the ROM wrapped with ``uctypes.bytearray_at``, the flash read and
    written by its driver's viper pointers (``firmware_flashmap.py``)."""
    with open(path, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), size, mmap.MAP_SHARED)
    os.environ[address_variable] = str(ctypes.addressof(ctypes.c_char.from_buffer(mapped)))
    return mapped


def _map_flash() -> list[mmap.mmap]:
    """The flash image (``MPKICK_SIM_FLASH``: SIZE,PATH) and the ROM partition
    (``MPKICK_SIM_ROMFS``: SIZE,ERASE,PATH), each where the board has it. Mapped, a block read
    is one copy, as a board's native flash driver makes it; through the file it was a seek and
    a read, each a syscall, which made the virtual board's filesystem slower than its CPU."""
    maps = []
    flash = os.environ.get("MPKICK_SIM_FLASH")
    if flash:
        size, path = flash.split(",", 1)
        maps.append(_map_shared(path, int(size), "MPKICK_SIM_FLASH_ADDR"))
    rom = os.environ.get("MPKICK_SIM_ROMFS")
    if rom:
        size, _erase, path = rom.split(",", 2)
        maps.append(_map_shared(path, int(size), "MPKICK_SIM_ROMFS_ADDR"))
    return maps


def main() -> int:
    # CPython's own SIGINT handler would swallow the SIGINT of the fallback path.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    import micropython_run  # type: ignore[import-not-found]

    maps = _map_flash()  # kept referenced (mapped) while the port runs

    args = ["micropython", *sys.argv[1:]]
    fds = [int(fd) for fd in os.environ.pop("MPKICK_SIM_INTR_FD", "").split(",") if fd]
    lib = ctypes.CDLL(micropython_run.__file__)
    try:
        port_main = lib.micropython_unix_main
        lib.mp_sched_keyboard_interrupt.restype = lib.mp_sched_exception.restype = None
        lib.mp_sched_exception.argtypes = [ctypes.c_void_p]
    except AttributeError:
        for fd in fds:
            os.close(fd)  # the supervisor sees the closed pipes and sends SIGINT instead
        return int(micropython_run.run_main(args))
    if len(fds) == 2:
        # A handler that does nothing: the signal only makes a sleeping syscall return EINTR,
        # on which the port checks for the pending KeyboardInterrupt.
        signal.signal(signal.SIGUSR1, lambda signum, frame: None)
        threading.Thread(target=_forward_interrupts, daemon=True,
                         args=(*fds, lib, threading.get_ident())).start()
    port_main.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
    argv = (ctypes.c_char_p * (len(args) + 1))(*(os.fsencode(a) for a in args), None)
    code = int(port_main(len(args), argv))
    del maps
    return code


if __name__ == "__main__":
    sys.exit(main())
