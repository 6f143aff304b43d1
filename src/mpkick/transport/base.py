"""Bytes in, bytes out: what every way of reaching a board offers."""

from __future__ import annotations

import abc


class Transport(abc.ABC):
    """A byte stream to a board. ``read`` blocks up to ``timeout`` and returns what has arrived
    (never byte-at-a-time polling); ``b""`` means nothing came. A vanished link raises
    ``ConnectError``."""

    name: str = ""
    #: Bytes the board does not read in time are lost (a UART without flow control), where
    #: USB-CDC or a pty make the writer wait: the host then paces itself.
    overruns: bool = False

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def pulse_reset(self) -> str:
        """Hard-reset the board through a reset line; what was done, in words. A link
        without modem-control lines has none."""
        from ..errors import ConnectError

        raise ConnectError(f"{self.name} has no reset line: press the board's reset button "
                           "or replug it")

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
