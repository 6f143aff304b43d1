"""Virtual boards that the host can enumerate, as it enumerates USB serial ports.

A real board is found by what the operating system reports for its USB port (pyserial's
``list_ports``: device, VID:PID, serial number, manufacturer, product). A virtual board served
on a pty (``mpkick sim`` with ``serial=`` in its URL) publishes the same facts here: one small
JSON file per board in a runtime folder, removed when the board stops, ignored once the process
that served it is gone. ``devices.list_devices`` reads them next to the USB ports, so
``-p id:SERIAL``, ``-p all`` and ``mpkick devices`` use one code path for both.

The folder is ``$MPKICK_SIM_DEVICES``, else ``devices/`` in the user's runtime folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..transport.devices import Device

MANUFACTURER = "mpkick"
PRODUCT = "virtual board (MicroPython unix port)"


def folder() -> Path:
    explicit = os.environ.get("MPKICK_SIM_DEVICES")
    if explicit:
        return Path(explicit)
    from platformdirs import user_runtime_dir

    return Path(user_runtime_dir("mpkick")) / "devices"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(port: str, serial: str, image: Path | str | None = None) -> Path:
    """Make the board on ``port`` visible to the host under ``serial``; returns the entry to
    remove with ``withdraw`` when the board stops."""
    where = folder()
    where.mkdir(parents=True, exist_ok=True)
    entry = where / f"{serial}.json"
    text = json.dumps({"port": port, "serial_number": serial, "pid": os.getpid(),
                       "image": str(image) if image else None})
    fd, tmp = tempfile.mkstemp(dir=where, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, entry)  # a reader sees the old entry or the new one
    return entry


def withdraw(entry: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        entry.unlink()


def published() -> list[Device]:
    """The virtual boards being served now, by serial number."""
    from ..transport.devices import Device

    where = folder()
    if not where.is_dir():
        return []
    found = []
    for entry in sorted(where.glob("*.json")):
        try:
            data = json.loads(entry.read_text())
            port, serial, pid = str(data["port"]), str(data["serial_number"]), int(data["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not _alive(pid) or not os.path.exists(port):
            continue  # the process that served it is gone: the board was unplugged
        found.append(Device(port, None, None, serial, MANUFACTURER, PRODUCT, "virtual board",
                            f"virtual board, flash {data.get('image') or '-'}"))
    return found
