"""The virtual cable's character: how fast it is, how much the board's UART holds, what it alters.

A pty carries any amount at once and never loses a byte; a board's cable does neither. The URL
options here make the link behave like the ones users have:

* ``baud``: both directions are paced at 10 bits a byte (start, 8 data, stop), and bytes travel
  in 64-byte pieces, so a host that floods a board waits as it would on a real UART.
* ``rx_buffer``: the board's input buffer holds that many bytes; what the host sends beyond what
  the board has not read yet is lost, as from a full UART FIFO (flow control is the host's job).
* ``cook``: every LF the board sends arrives as CRLF, whatever the REPL's mode, as over a telnet
  hop or a terminal server with ``onlcr`` (binary transfers must survive that).
* ``net_latency`` and ``net_rate`` (a board on WiFi, ``webrepl.py``): every byte arrives that
  much later, and each direction carries at most that many bytes a second, queueing the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .options import SimOptions

CHUNK = 64  # bytes carried at a time on a paced link


class UartLink:
    """Pacing and buffer limits of one virtual cable, and the cooked link's translation."""

    def __init__(self, options: SimOptions) -> None:
        self.options = options
        self.child_ready = 0.0  # when the board's UART may take its next byte
        self.host_ready = 0.0  # when the host's end may take the board's next byte
        self.cooked = 0  # how much of the board's outgoing queue is translated already

    def byte_time(self) -> float:
        return 10.0 / self.options.baud if self.options.baud else 0.0

    def limit(self, queued: int) -> int:
        """How many of ``queued`` bytes may travel in one piece."""
        return CHUNK if self.options.baud else queued

    def sent_to_board(self, n: int) -> None:
        self.child_ready = max(self.child_ready, time.monotonic()) + n * self.byte_time()

    def sent_to_host(self, n: int) -> None:
        self.host_ready = max(self.host_ready, time.monotonic()) + n * self.byte_time()
        self.cooked = max(0, self.cooked - n)

    def overrun(self, chunk: bytes, pending: Callable[[], int | None]) -> int:
        """``rx_buffer``: how many bytes of ``chunk`` do not fit in the board's input buffer,
        which holds ``pending()`` bytes unread (None: it cannot tell, so all fit). Asked only
        on a link with a buffer limit: it costs system calls per write."""
        if not self.options.rx_buffer:
            return 0
        held = pending()
        if held is None:
            return 0
        return max(0, len(chunk) - max(0, self.options.rx_buffer - held))

    def cook(self, out: bytearray) -> None:
        """``cook=1``: translate what was queued for the host since the last call (once per
        byte: a CRLF made here is never made again)."""
        if self.options.cook and self.cooked < len(out):
            out[self.cooked:] = out[self.cooked:].replace(b"\n", b"\r\n")
            self.cooked = len(out)


class NetLink:
    """One direction of the network: bytes leave at ``rate`` and arrive ``latency`` later."""

    def __init__(self, latency: float, rate: int) -> None:
        self.latency = latency
        self.rate = rate
        self._free = 0.0

    def due(self, n: int) -> float:
        """When ``n`` bytes sent now arrive."""
        now = time.monotonic()
        if self.rate:
            self._free = max(self._free, now) + n / self.rate
            return self._free + self.latency
        return now + self.latency
