"""Transports chosen by URL: a device path, any pyserial URL, ``sim://``, ``qemu://``,
``ws://``, ``auto``."""

from __future__ import annotations

from .base import Transport

__all__ = ["Transport", "open_transport"]

#: How long ``id:SERIAL`` waits for its board to appear: a reset board re-enumerates in ~1 s.
ID_WAIT = 3.0


def open_transport(url: str, baudrate: int = 115200, password: str | None = None) -> Transport:
    """The transport for ``url``; pyserial handles every URL that is not ours."""
    if url.startswith(("ws://", "wss://")):
        from .websocket import WebSocketTransport

        return WebSocketTransport(url, password)
    if url.startswith("sim://"):
        from ..sim.options import parse_url
        from .simport import SimTransport

        options = parse_url(url)
        if options.webrepl is not None:
            from ..sim.webrepl import open_networked

            return open_networked(options)
        return SimTransport(options)
    if url.startswith("qemu://"):
        from .qemuport import QemuTransport

        return QemuTransport(url)
    from .serialport import SerialTransport, auto_port

    if url.startswith("id:"):  # looked up now, so a board that re-enumerated is still found
        from .devices import ID, find_serial

        url = find_serial(url[len(ID):], wait=ID_WAIT).port

    if url == "auto":
        url = auto_port()
    return SerialTransport(url, baudrate)
