"""Which boards are plugged in, and finding one by its USB serial number (``id:SERIAL``).

A board is found the way the operating system reports it: pyserial's ``list_ports`` gives each
USB serial port's VID:PID, serial number, manufacturer and product. Virtual boards served on a
pty with a ``serial=`` option publish the same facts (``sim/registry.py``), so ``id:`` matching
and ``-p all`` run the same code for both. An ``id:`` is resolved again at every connection, so
a board that comes back on another port after a reset is found by its serial number.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import ConnectError, InputError

ID = "id:"


@dataclass(frozen=True)
class Device:
    """One port with a board on it, as the host enumerates it."""

    port: str
    vid: int | None = None
    pid: int | None = None
    serial_number: str | None = None
    manufacturer: str | None = None
    product: str | None = None
    board: str | None = None  # the kind of board, where the VID:PID tells
    description: str | None = None

    @property
    def usb_id(self) -> str | None:
        """``2e8a:0005`` style VID:PID, when the port is on USB."""
        if self.vid is None:
            return None
        return f"{self.vid:04x}:{self.pid or 0:04x}"

    @property
    def url(self) -> str:
        """What to open it by: its serial number when it has one (stable across ports)."""
        return f"{ID}{self.serial_number}" if self.serial_number else self.port

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "usb_id": self.usb_id}


def usb_devices(every: bool = False) -> list[Device]:
    """Serial ports on this host; only those whose VID:PID is a known MicroPython board unless
    ``every``."""
    from serial.tools import list_ports

    from .serialport import describe_usb

    found = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        kind = describe_usb(port.vid, port.pid)
        if kind or every:
            found.append(Device(port.device, port.vid, port.pid, port.serial_number or None,
                                port.manufacturer, port.product, kind, port.description))
    return found


def list_devices(every: bool = False) -> list[Device]:
    """Every board the host can see: USB ports, then published virtual boards."""
    from ..sim.registry import published

    return usb_devices(every) + published()


def match_serial(prefix: str, devices: list[Device]) -> Device:
    """The one device whose serial number is ``prefix`` or starts with it (case-insensitive).

    An exact match wins over longer serial numbers it is a prefix of; an ambiguous prefix is
    refused, never guessed.
    """
    want = prefix.strip().lower()
    if not want:
        raise InputError("id: needs a serial number (or a unique prefix of one): "
                         "`mpkick devices` lists them")
    serials = [d for d in devices if d.serial_number]
    exact = [d for d in serials if d.serial_number.lower() == want]  # type: ignore[union-attr]
    hits = exact or [d for d in serials
                     if d.serial_number.lower().startswith(want)]  # type: ignore[union-attr]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ConnectError(f"no board with serial number {prefix}... is plugged in; "
                           "`mpkick devices` lists the boards and their serial numbers")
    names = ", ".join(f"{d.serial_number} on {d.port}" for d in hits[:4])
    raise InputError(f"id:{prefix} matches {len(hits)} boards ({names}): give more of the "
                     "serial number")


def find_serial(prefix: str, wait: float = 0.0) -> Device:
    """The board with serial number ``prefix``, waiting up to ``wait`` seconds for it to
    (re)appear: a board that resets re-enumerates, often on another port."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return match_serial(prefix, list_devices(every=True))
        except ConnectError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
