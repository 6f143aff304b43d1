"""The modem-control lines (DTR, RTS) of a serial port, set so that they never reset a board.

On most ESP32 and ESP8266 dev boards DTR and RTS drive EN and GPIO0 through a two-transistor
auto-reset circuit: ``RTS and not DTR`` holds EN low (reset), ``DTR and not RTS`` pulls GPIO0
low (the bootloader, if the chip resets then); both equal does nothing. An open port has both
asserted, and USB-CDC firmware (rp2, samd, ESP32-S3 native USB) sends nothing while DTR is off,
so mpkick keeps both asserted while it holds the port and changes lines in an order that never
passes through the reset state on the way (esptool and mpremote PR #18001 avoid it the same way:
Windows drops DTR before RTS on close, which resets the board). Boards wired otherwise (DTR
straight to reset, as on the ESP32-CAM-MB) are served with ``--dtr``/``--rts`` (mpremote's open
PR #17532 adds the same), or ``MPKICK_DTR``/``MPKICK_RTS``, or the ``dtr``/``rts`` settings.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Protocol

from ..errors import InputError

#: How long ``pulse_reset`` holds EN low: esptool's classic reset holds it 100 ms.
RESET_PULSE = 0.1
_ON = ("1", "on", "true", "yes", "high")
_OFF = ("0", "off", "false", "no", "low")


class LinePort(Protocol):
    """What pyserial's port objects offer for the lines."""

    dtr: bool
    rts: bool


def line_value(name: str, text: str | bool) -> bool:
    """``on``/``off`` (or 1/0, true/false) as a line state; anything else is refused."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise InputError(f"--{name} {text!r}: say on or off (1 or 0)")


@dataclass(frozen=True)
class Lines:
    """The line states while mpkick holds the port (True: asserted)."""

    dtr: bool = True
    rts: bool = True

    @classmethod
    def from_env(cls) -> Lines:
        """What ``--dtr``/``--rts`` (or the settings) chose for this run; both on by default."""
        return cls(**{name: line_value(name, os.environ.get(f"MPKICK_{name.upper()}", "on"))
                      for name in ("dtr", "rts")})

    def __str__(self) -> str:
        return f"DTR {'on' if self.dtr else 'off'}, RTS {'on' if self.rts else 'off'}"


def settle(port: LinePort, dtr: bool, rts: bool) -> None:
    """Move the lines to ``dtr``/``rts`` without passing through ``RTS and not DTR`` (reset)
    unless that is where they are going: a line that goes off waits for RTS to go first."""
    if dtr:
        if not port.dtr:
            port.dtr = True
        if port.rts != rts:
            port.rts = rts
    else:
        if port.rts != rts:
            port.rts = rts
        if port.dtr:
            port.dtr = False


def pulse_reset(port: LinePort, after: Lines) -> str:
    """Reset a board wired for it, as esptool does: EN low for a moment through RTS with DTR
    released; then the lines go back to ``after``. Returns what was done, in words."""
    settle(port, dtr=False, rts=False)
    port.rts = True
    time.sleep(RESET_PULSE)
    port.rts = False
    settle(port, after.dtr, after.rts)
    return (f"pulsed the reset line: RTS on for {RESET_PULSE * 1000:.0f} ms with DTR off (EN on "
            f"ESP32/ESP8266 auto-reset boards), then {after}; a board wired otherwise was not "
            "reset: press its reset button or replug it")
