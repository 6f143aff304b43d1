"""Real ports and every URL pyserial knows (``socket://``, ``rfc2217://``, ``loop://`` ...)."""

from __future__ import annotations

import contextlib
import os

import serial
from serial.tools import list_ports

from ..errors import ConnectError, PortBusy
from .base import Transport
from .lines import Lines, pulse_reset, settle

#: USB vendor:product pairs of boards that run MicroPython (and the bridges they use).
KNOWN_USB = {
    (0x2E8A, None): "Raspberry Pi RP2040/RP2350",
    (0xF055, None): "MicroPython pyboard / generic",
    (0x303A, None): "Espressif native USB",
    (0x0D28, 0x0204): "BBC micro:bit (DAPLink)",
    (0x239A, None): "Adafruit",
    (0x10C4, 0xEA60): "CP210x USB-UART (ESP32/ESP8266 boards)",
    (0x1A86, 0x7523): "CH340 USB-UART (ESP boards)",
    (0x1A86, 0x55D4): "CH9102 USB-UART (ESP boards)",
    (0x0403, 0x6001): "FTDI USB-UART",
}


#: USB vendors whose MicroPython boards speak USB-CDC from the chip itself: the host's writes
#: wait while the board's buffer is full, so nothing overruns. (DAPLink and USB-UART bridges
#: pass bytes on to a UART at its pace, and a UART drops what the board does not read in time.)
NATIVE_USB = {0x2E8A, 0xF055, 0x303A, 0x239A}


def overruns(url: str) -> bool:
    """Whether bytes sent to the board at ``url`` can be lost when it is slow to read them."""
    if "://" in url:
        return url.lower().startswith(("socket://", "rfc2217://"))  # often a UART far away
    real = os.path.realpath(url)
    for port in list_ports.comports():
        if port.vid is not None and real in (port.device, os.path.realpath(port.device)):
            return port.vid not in NATIVE_USB
    # A pty waits for its reader; ttyACM / usbmodem are USB-CDC; anything else may be a UART.
    return not (real.startswith("/dev/pts/") or "ttyACM" in real or "usbmodem" in real)


def describe_usb(vid: int | None, pid: int | None) -> str | None:
    if vid is None:
        return None
    return KNOWN_USB.get((vid, pid)) or KNOWN_USB.get((vid, None))


def candidates() -> list[tuple[str, str]]:
    """(device, description) of every port that looks like a MicroPython board, best first."""
    found = []
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        kind = describe_usb(port.vid, port.pid)
        if kind:
            found.append((port.device, f"{kind} - {port.description}"))
    return found


def auto_port() -> str:
    ports = candidates()
    if not ports:
        raise ConnectError("no MicroPython board found on USB: plug one in, name its port with "
                           "-p (e.g. -p /dev/ttyACM0), or try the virtual board with -p sim://")
    return ports[0][0]


class SerialTransport(Transport):
    def __init__(self, url: str, baudrate: int = 115200, lines: Lines | None = None) -> None:
        self.name = url
        self.lines = lines or Lines.from_env()
        self.overruns = overruns(url)
        self.rate = baudrate // 10  # a USB-CDC port ignores it; a UART (or bridge) keeps to it
        try:
            self._port = serial.serial_for_url(url, baudrate=baudrate, timeout=0.1,
                                               write_timeout=10, do_not_open=True)
            if hasattr(self._port, "exclusive") and "://" not in url:
                self._port.exclusive = True
            # As the port opens the OS asserts both lines: ask for the same, so opening changes
            # nothing, then move to the chosen states in an order that resets no board.
            self._port.dtr = True
            self._port.rts = True
            self._port.open()
            self._set_lines(self.lines)
        except serial.SerialException as exc:
            text = str(exc)
            if "exclusively lock" in text or "Resource temporarily unavailable" in text \
                    or "busy" in text.lower():
                raise PortBusy(f"port busy: another program (a terminal, mpremote, a second "
                               f"mpkick) has {url} open; close that first") from exc
            if "No such file" in text or "could not open port" in text:
                raise ConnectError(f"cannot open port {url}: no such port; list boards with "
                                   "`mpkick devices`") from exc
            raise ConnectError(f"cannot open port {url}: {text}") from exc
        except (ValueError, OSError) as exc:
            raise ConnectError(f"cannot open port {url}: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise ConnectError(f"lost the board on {self.name}: {exc}") from exc

    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes:
        try:
            self._port.timeout = timeout
            first: bytes = self._port.read(1)
            if not first:
                return b""
            waiting = self._port.in_waiting
            rest: bytes = self._port.read(min(waiting, size - 1)) if waiting else b""
            return first + rest
        except (serial.SerialException, OSError, TypeError) as exc:
            raise ConnectError(f"lost the board on {self.name}: {exc}") from exc

    def _set_lines(self, lines: Lines) -> None:
        with contextlib.suppress(serial.SerialException, OSError):  # a pty has no lines
            settle(self._port, lines.dtr, lines.rts)

    def pulse_reset(self) -> str:
        """Hard-reset a board wired for it through the lines; what was done, in words."""
        try:
            return pulse_reset(self._port, self.lines)
        except (serial.SerialException, OSError) as exc:
            raise ConnectError(f"cannot reset the board on {self.name} through its lines: "
                               f"{exc}") from exc

    def close(self) -> None:
        # Closing drops both lines; releasing RTS first means they never pass through the
        # auto-reset circuit's reset state (Windows drops DTR first: mpremote PR #18001).
        self._set_lines(Lines(dtr=False, rts=False))
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()
