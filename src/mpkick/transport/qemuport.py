"""``qemu://microbit``: real board firmware under QEMU, started for this connection only."""

from __future__ import annotations

from ..sim.qemu import QemuBoard, machine_for
from .serialport import SerialTransport


class QemuTransport(SerialTransport):
    """A serial connection to a QEMU board that lives as long as the connection does: for one
    command on a factory-fresh board. ``mpkick sim qemu://microbit`` keeps one running."""

    def __init__(self, url: str) -> None:
        self.board = QemuBoard(machine_for(url))
        port = self.board.start()
        try:
            super().__init__(port)
        except BaseException:
            self.board.close()
            raise
        self.name = url

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.board.close()
