"""Bytes in, bytes out: what every way of reaching a board offers."""

from __future__ import annotations

import abc


class Transport(abc.ABC):
    """A byte stream to a board. ``read`` blocks up to ``timeout`` and returns what has arrived
    (never byte-at-a-time polling); ``b""`` means nothing came. A vanished link raises
    ``ConnectError``."""

    name: str = ""
    #: How file content travels over this link, where there is a choice (``--verbose``).
    link_note: str = ""

    #: A soft reset ends this link (a board closes its sockets when it resets): the link is
    #: opened anew with ``reopen`` once the board is back.
    ends_at_reset: bool = False

    def reopen(self) -> None:
        """Open the link again after the board reset (where ``ends_at_reset``)."""
        raise NotImplementedError

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
