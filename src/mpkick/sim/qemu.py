"""Real board firmware under QEMU, on a pty: the BBC micro:bit's own MicroPython.

The unix port is modern MicroPython with names hidden; this is the firmware pupils run, with
its 9 kB heap, flat filesystem, cooked output and no raw-paste. Debian packages it
(``qemu-system-arm``, ``firmware-microbit-micropython``); ``make test`` installs both.
Each start is a board fresh from the factory: QEMU keeps the flash in memory only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConnectError, InputError

FIRMWARE_DIR = Path("/usr/share/firmware-microbit-micropython")


@dataclass(frozen=True)
class Machine:
    """One board QEMU can run: its machine model and the firmware image it boots."""

    name: str
    machine: str
    firmware: Path
    packages: str


MACHINES = {
    "microbit": Machine("microbit", "microbit", FIRMWARE_DIR / "firmware.hex",
                        "qemu-system-arm firmware-microbit-micropython"),
}


def machine_for(url: str) -> Machine:
    """The machine a ``qemu://NAME`` URL names."""
    name = url[len("qemu://"):].strip("/") or "microbit"
    if name not in MACHINES:
        raise InputError(f"unknown QEMU board {name!r}; known: {', '.join(MACHINES)}")
    return MACHINES[name]


def missing(machine: Machine) -> str | None:
    """What is not installed to run ``machine``, as a sentence; None when all is there."""
    if shutil.which("qemu-system-arm") is None or not machine.firmware.is_file():
        return (f"QEMU or the {machine.name} firmware is not installed: apt-get install "
                f"{machine.packages}")
    return None


class QemuBoard:
    """A QEMU process running ``machine``'s firmware, its serial port on a pty.

    We hold the pty open ourselves: QEMU takes up to a second to notice that its pty was
    opened again after every client closed it, and bytes sent in that gap are delayed.
    """

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.port = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._hold = -1

    def start(self, timeout: float = 10.0) -> str:
        reason = missing(self.machine)
        if reason:
            raise ConnectError(reason)
        self._proc = subprocess.Popen(
            ["qemu-system-arm", "-M", self.machine.machine, "-device",
             f"loader,file={self.machine.firmware}", "-nographic", "-serial", "pty",
             "-monitor", "none"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        said = b""
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            said += line
            found = re.search(rb"/dev/pts/\d+", line)
            if found:
                self.port = found.group(0).decode()
                break
            if not line and self._proc.poll() is not None:
                break
        if not self.port:
            self.close()
            raise ConnectError(f"QEMU did not start the {self.machine.name}: "
                               f"{said.decode(errors='replace').strip()[-200:] or 'no output'}")
        self._hold = os.open(self.port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        return self.port

    def close(self) -> None:
        """Power off (the flash goes with it)."""
        if self._hold >= 0:
            with contextlib.suppress(OSError):
                os.close(self._hold)
            self._hold = -1
        if self._proc is not None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(5)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
