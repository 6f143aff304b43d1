"""Bytes in, bytes out: what every way of reaching a board offers."""

from __future__ import annotations

import abc


class Transport(abc.ABC):
    """A byte stream to a board. ``read`` blocks up to ``timeout`` and returns what has arrived
    (never byte-at-a-time polling); ``b""`` means nothing came. A vanished link raises
    ``ConnectError``."""

    name: str = ""

    @abc.abstractmethod
    def write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def read(self, size: int = 65536, timeout: float = 0.1) -> bytes: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
