"""Transports chosen by URL: a device path, any pyserial URL, ``sim://``, ``qemu://``, ``auto``."""

from __future__ import annotations

from .base import Transport

__all__ = ["Transport", "open_transport"]


def open_transport(url: str, baudrate: int = 115200) -> Transport:
    """The transport for ``url``; pyserial handles every URL that is not ours."""
    if url.startswith("sim://"):
        from ..sim.options import parse_url
        from .simport import SimTransport

        return SimTransport(parse_url(url))
    if url.startswith("qemu://"):
        from .qemuport import QemuTransport

        return QemuTransport(url)
    from .serialport import SerialTransport, auto_port

    if url == "auto":
        url = auto_port()
    return SerialTransport(url, baudrate)
