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

    #: Bytes a second the link carries at most, where its speed is set (a UART's baud rate);
    #: 0 where it is fast or unknown. A host waiting for bytes to cross a slow link waits
    #: that much longer before it decides that nothing answers.
    rate: int = 0

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

    def hard_reset(self) -> bool:
        """Reset the board the way only this link can (the virtual board's power cut);
        False when the link has no such way and the board must reset itself."""
        return False

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
