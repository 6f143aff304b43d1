"""Which boards a command is for: ``-p`` given once or many times, ``all``, ``id:SERIAL``, and
names and groups from ``[tool.mpkick.boards]``.

``kitchen = "id:e6614c3"`` names one board; ``class = ["kitchen", "/dev/ttyACM1"]`` names a
group (members may be names themselves). A name works wherever a port does. What comes out is
a list of ``BoardRef``: what the user calls the board, and the URL to open. An ``id:`` stays an
``id:`` until the moment of connecting (``transport.open_transport`` looks it up then), so a
board that re-enumerated since is still found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..errors import InputError
from ..transport.devices import ID, Device, list_devices

ALL = "all"


@dataclass(frozen=True)
class BoardRef:
    """One board of a selection: ``name`` for people (tables, prefixes), ``url`` to open."""

    name: str
    url: str


Boards = Mapping[str, "str | list[str]"]


def resolve(specs: Iterable[str], boards: Boards | None = None,
            devices: Callable[[], list[Device]] = list_devices) -> list[BoardRef]:
    """The boards ``specs`` name, in order, each once."""
    boards = boards or {}
    found: list[BoardRef] = []
    for spec in specs:
        found += _expand(spec, boards, devices, ())
    unique: dict[str, BoardRef] = {}
    for ref in found:
        unique.setdefault(ref.url, ref)
    return list(unique.values())


def _expand(spec: str, boards: Boards, devices: Callable[[], list[Device]],
            seen: tuple[str, ...]) -> list[BoardRef]:
    spec = spec.strip()
    if spec == ALL:
        listed = devices()
        if not listed:
            raise InputError("-p all: no board is plugged in (`mpkick devices` lists what the "
                             "host sees)")
        return [BoardRef(_name_of(d, boards), d.url) for d in listed]
    if spec in boards:
        if spec in seen:
            raise InputError(f"[tool.mpkick.boards] {spec!r} contains itself "
                             f"({' -> '.join((*seen, spec))})")
        value = boards[spec]
        if isinstance(value, str):
            inner = _expand(value, boards, devices, (*seen, spec))
            return [BoardRef(spec, r.url) for r in inner] if len(inner) == 1 else inner
        group: list[BoardRef] = []
        for member in value:
            group += _expand(member, boards, devices, (*seen, spec))
        return group
    if not spec:
        raise InputError("an empty port name: give a port, id:SERIAL, a name from "
                         "[tool.mpkick.boards], or all")
    return [BoardRef(spec, spec)]


def _name_of(device: Device, boards: Boards) -> str:
    """The config's name for ``device``, so ``-p all`` shows the names people gave."""
    serial = (device.serial_number or "").lower()
    for name, value in boards.items():
        if not isinstance(value, str):
            continue
        if value == device.port or (serial and value.startswith(ID)
                                    and serial.startswith(value[len(ID):].lower())):
            return name
    return device.port
