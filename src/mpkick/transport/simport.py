"""``sim://``: a virtual board started in this process, reached through a socket pair."""

from __future__ import annotations

import socket

from ..errors import ConnectError, DeviceTimeout
from ..sim.options import SimOptions
from ..sim.supervisor import VirtualBoard
from .base import Transport

WRITE_TIMEOUT = 10.0


class SimTransport(Transport):
    def __init__(self, options: SimOptions) -> None:
        self.board = VirtualBoard(options)
        self.name = f"sim://{self.board.image}"
        self.overruns = options.rx_buffer > 0  # it models a UART's input buffer
        self.rate = options.baud // 10
        end = self.board.start("socket")
        assert isinstance(end, socket.socket)
        self._sock = end

    @property
    def counters(self) -> object:
        return self.board.counters

    def write(self, data: bytes) -> None:
        # A board that stops reading fills the cable's buffer; like a serial port's write
        # timeout, that ends in DeviceTimeout rather than a wait forever.
        self._sock.settimeout(WRITE_TIMEOUT)
        try:
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise DeviceTimeout(f"the virtual board stopped reading for {WRITE_TIMEOUT:g} s; "
                                "it may be stalled: retry") from exc
        except OSError as exc:
            raise ConnectError(f"lost the virtual board: {self.board.error or exc}") from exc

    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes:
        self._sock.settimeout(timeout if timeout > 0 else 0.0)
        try:
            data = self._sock.recv(size)
        except (TimeoutError, BlockingIOError):
            return b""
        except OSError as exc:
            raise ConnectError(f"lost the virtual board: {self.board.error or exc}") from exc
        if not data:
            raise ConnectError(self.board.error or "the virtual board was unplugged")
        return data

    def hard_reset(self) -> bool:
        self.board.power_cut()
        return True

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            self.board.close()
