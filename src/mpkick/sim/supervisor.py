"""The virtual board: the real MicroPython unix port on a pty, made to behave like a board.

The unix port differs from a board on the wire in four ways, and the virtual board evens them
out in one pump, a thread that carries every byte between the host's end and the port:

* **Soft reboot.** Ctrl-D (and ``sys.exit()``) ends the process where a board soft-reboots. The
  supervisor prints ``MPY: soft reboot``, restarts the port on the same flash image and, if the
  board was in the raw REPL, enters it again and hides the friendly banner, as a board does.
* **Line endings.** The port writes a bare LF where a board's text output writes CRLF; the
  friendly REPL's output is translated (``console.py``), the raw REPL's is left alone.
* **Ctrl-C.** The pty is raw, so 0x03 is a plain byte. When the port would raise
  KeyboardInterrupt (its SIGINT handler is installed: it is running code with ``kbd_intr`` on),
  the byte becomes a KeyboardInterrupt; otherwise it is passed on as data, as a board's UART
  passes it. It is raised at the VM's next safe point, never inside littlefs or the garbage
  collector (``process.py`` and ``launcher.py`` say how).
* **A UART.** ``baud`` paces both directions and both directions are counted; ``rx_buffer`` and
  ``cook`` model a small input buffer and a link that is not 8-bit clean (``shaping.py``).

Fault switches (power cut at a byte count, corrupt or dropped bytes, stalls, unplugging) act in
the same pump, so tests exercise exactly the failures users meet on real cables
(``faults.py``). The flash image and its lock are ``flash.py``'s.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import select
import socket
import threading
import time
import tty
from dataclasses import dataclass
from pathlib import Path

from .console import Console
from .cpu import CpuBudget
from .faults import LOOP_MAIN, Action, FaultInjector
from .flash import Flash
from .options import SimOptions
from .process import UnixPort, micropython_command
from .shaping import UartLink

__all__ = ["Counters", "VirtualBoard", "micropython_command"]

SOFT_REBOOT = b"MPY: soft reboot\r\n"
QUEUE = 65536  # bytes either way the pump holds before it stops reading that side


@dataclass
class Counters:
    """Bytes that crossed the virtual cable, each way."""

    host_to_board: int = 0
    board_to_host: int = 0
    reboots: int = 0
    power_cuts: int = 0
    overrun: int = 0  # host bytes lost because the board's input buffer was full (rx_buffer)


class VirtualBoard:
    """One virtual board; ``start()`` returns the host's end of its cable."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.counters = Counters()
        self.port = UnixPort(options)
        self.flash = Flash(options)
        self.console = Console()
        self.link = UartLink(options)
        self.faults = FaultInjector(options.faults)
        self.fault_log = self.faults.log  # what fired, in order, for tests and reports
        self.cpu: CpuBudget | None = None
        self.error: str | None = None
        self._host_fd = -1
        #: Somebody has the pty open and reads it. While nobody does, the board's output is
        #: dropped, as over USB-CDC, and its stdin just goes quiet: a board is never told the
        #: host left (no EOF), so neither is this one.
        self._listening = True
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._unplugged = threading.Event()
        self._to_child = bytearray()
        self._to_host = bytearray()
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
        self.flash.open()
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
        self._to_host += self.faults.noise()
        self._spawn(raw=False, main=LOOP_MAIN if self.faults.plan.loop_main else None)
        self._thread = threading.Thread(target=self._pump, name="mpkick-sim", daemon=True)
        self._thread.start()
        self.cpu = CpuBudget(self.options.cpu, lambda: self.port.pid)
        self.cpu.start()
        return result

    def close(self) -> None:
        """Power off: the process is killed, the flash keeps what was written."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5)
        if self.cpu is not None:
            self.cpu.stop()
        self._hang_up()
        self.flash.close()

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
        self.port.cut_power()

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
        self.faults.inject(**faults)

    @property
    def image(self) -> Path:
        return self.options.image_path

    @property
    def pid(self) -> int | None:
        """The port's process id right now (it changes at every reboot)."""
        return self.port.pid

    @property
    def raw_mode(self) -> bool:
        """The board's REPL is the raw one, as its output last showed."""
        return self.console.raw_mode

    @property
    def booting(self) -> bool:
        """Still starting up: its REPL has not shown a prompt since power-on or reset."""
        return self.console.booting

    def _fire(self, due: list[Action]) -> None:
        for action in due:
            if action == "stall":
                self.stall(self.faults.plan.stall_for)
            elif action == "unplug":
                self.unplug()
            else:
                self.power_cut()

    # ----------------------------------------------------------------- the child

    def _spawn(self, raw: bool, main: str | None = None) -> None:
        flash = self.flash
        self.port.spawn(flash.path, flash.block_size, flash.block_count, flash.romfs_size,
                        raw, main)
        self.console.boot(raw, (self.port.ready_mark, self.port.hide_mark))

    def _reboot(self) -> None:
        """The port exited: do what a board's soft reset does, or its power-on after a cut."""
        raw = self.console.raw_mode
        self.port.kill()
        self.counters.reboots += 1
        if self._cold:
            self._cold = False
            self._to_child.clear()
            self._to_host += self.faults.noise()
            self._spawn(raw=False)
            self._cold_boot = True
            return
        self._to_host += SOFT_REBOOT
        self._spawn(raw=raw)

    # ----------------------------------------------------------------- the pump

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
        """The board is off and the cable gone: the host's end sees it close (or EIO)."""
        self.port.kill()
        if self._host_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._host_fd)
            self._host_fd = -1

    def _pump_once(self) -> None:
        now = time.monotonic()
        child_fd = self.port.fd
        rlist = []
        wlist = []
        stalled = now < self._stall_until
        if len(self._to_child) < QUEUE:
            rlist.append(self._host_fd)
        if len(self._to_host) < QUEUE:
            rlist.append(child_fd)
        due, next_due = self.faults.due_by_clock(now - self._started)
        self._fire(due)
        timeout = max(min(0.5, next_due), 0.0)
        if stalled:
            timeout = min(timeout, self._stall_until - now)
        elif self._to_child and not self.console.booting:
            if now >= self.link.child_ready:
                wlist.append(child_fd)
            else:
                timeout = min(timeout, self.link.child_ready - now)
        if self._to_host and not stalled:
            if now >= self.link.host_ready:
                wlist.append(self._host_fd)
            else:
                timeout = min(timeout, self.link.host_ready - now)
        if self.console.booting and self._to_child:
            timeout = min(timeout, 0.02)  # watch for Ctrl-C meant for a looping main.py
        readable, writable, _ = select.select(rlist, wlist, [], max(timeout, 0.0))
        if self._host_fd in readable:
            self._read_host()
        if child_fd in readable:
            self._read_child()  # a reboot there gives the port a new pty
        if self.console.booting:
            self._interrupt_during_boot()
        if self.port.fd in writable and not self._unplugged.is_set():
            self._write_child()
        if self._host_fd in writable and self._host_fd >= 0 and not self._unplugged.is_set():
            self._write_host()

    def _read_host(self) -> None:
        try:
            data = os.read(self._host_fd, QUEUE)
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
        if self._cold or (self._cold_boot and self.console.booting):
            return  # the board is powering up: its UART is not listening yet
        self._cold_boot = False
        self._to_child += self.faults.damage(data, start, to_board=True)

    def _read_child(self) -> None:
        try:
            data = os.read(self.port.fd, QUEUE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._reboot()
            return
        text, rejoin = self.console.shape(data)
        # A board that was in the raw REPL comes back in it.
        self._to_child[:0] = b"\x01" * rejoin
        self._to_host += text

    def _interrupt_during_boot(self) -> None:
        """A looping main.py is stopped by Ctrl-C even though input is held until the REPL."""
        idx = self._to_child.find(b"\x03")
        if idx >= 0 and self.console.armed and self.port.interrupt():
            del self._to_child[idx]

    def _write_child(self) -> None:
        limit = self.link.limit(len(self._to_child))
        mark = self.faults.next_mark()
        if mark is not None:
            if mark <= self._fed:
                self._fire(self.faults.due_at(self._fed))
                return
            limit = min(limit, mark - self._fed)
        chunk = bytes(self._to_child[:limit])
        cut = chunk.find(b"\x03")
        if cut == 0:
            if self.port.interrupt():
                del self._to_child[0]
                self._fed += 1
                return
            chunk = chunk[:1]
        elif cut > 0:
            chunk = chunk[:cut]
        if not self.options.raw_paste and self.console.raw_mode and chunk.startswith(b"\x05A\x01"):
            # A board without raw-paste: it understood the request but refuses it.
            del self._to_child[:3]
            self._to_host += b"R\x00"
            return
        lost = self.link.overrun(chunk, self.port.pending_input)
        try:
            n = os.write(self.port.fd, chunk[:len(chunk) - lost]) if lost < len(chunk) else 0
        except BlockingIOError:
            return
        except OSError:
            return  # the child is gone; _read_child reboots it
        if lost:
            n = len(chunk)  # what did not fit is gone, as from a UART's full FIFO
            self.counters.overrun += lost
            self.fault_log.append(f"overrun: lost {lost} host->board bytes after {self._fed}")
        if n:
            self.console.expect_banner = chunk[n - 1] in (0x01, 0x02)
        del self._to_child[:n]
        self._fed += n
        self.link.sent_to_board(n)
        if mark is not None and self._fed >= mark:
            self._fire(self.faults.due_at(self._fed))

    def _write_host(self) -> None:
        if not self._listening:
            # A client that opened the pty and only reads says nothing: but then the master is
            # not readable, where with no client at all it is (EIO).
            if select.select([self._host_fd], [], [], 0)[0]:
                self._to_host.clear()  # into the void, as over USB-CDC with no host
                self.link.cooked = 0
                return
            self._listening = True
        self.link.cook(self._to_host)
        limit = self.link.limit(len(self._to_host))
        if self.faults.damages_host_bound:
            part = bytes(self._to_host[:limit])
            damaged = self.faults.damage(part, self._b2h_pos, to_board=False)
            self._b2h_pos += len(part) - len(damaged)  # dropped bytes still took their place
            self._to_host[:limit] = damaged
            self.link.cooked -= len(part) - len(damaged)
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
        self.link.sent_to_host(n)
