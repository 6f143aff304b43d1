"""``sim://`` URLs: which flash image, how large, how fast a link, which kind of board.

``sim://PATH?size=1M&block_size=4096&baud=115200&heap=64K&raw_paste=0&hide=hashlib,deflate``
or ``sim://?profile=microbit``. Without a path the board keeps one flash image per user, so
``mpkick -p sim:// push`` and a later ``mpkick -p sim:// ls`` see the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import InputError
from ..image import parse_size

#: Boards the virtual board can pretend to be (the flash, heap and features they lack).
PROFILES: dict[str, dict[str, str]] = {
    # The micro:bit v1's MicroPython 1.9: tiny heap, flat flash, none of the modern modules.
    "microbit": {"size": "128K", "heap": "64K", "raw_paste": "0",
                 "hide": "hashlib,binascii,deflate,zlib,os.rename,os.stat,os.mkdir,os.statvfs"},
    "old": {"raw_paste": "0", "hide": "deflate,zlib,hashlib"},
    # The unix port is a 64-bit build: the same objects take about twice the heap they take on
    # a 32-bit board, so each heap here is twice the free RAM of the board it stands for.
    "small": {"size": "256K", "heap": "64K"},  # an ESP8266-class board: about 30 kB free
    "esp8266": {"size": "2M", "heap": "64K"},  # about 30 kB free
    "esp32": {"size": "2M", "heap": "224K"},  # without PSRAM: about 110 kB free
    "pico": {"size": "1408K", "heap": "400K"},  # RP2040: about 200 kB free, 1.4 MB of flash
}


@dataclass(frozen=True)
class SimOptions:
    """Everything that makes one virtual board."""

    image: Path | None = None
    size: int = 2 << 20
    block_size: int = 4096
    baud: int = 0
    heap: str | None = None
    raw_paste: bool = True
    hide: tuple[str, ...] = ()
    micropython: str | None = None
    cpu: float = 1.0  # share of one host core the board's process gets (sim/cpu.py)
    faults: dict[str, str] = field(default_factory=dict)

    @property
    def image_path(self) -> Path:
        if self.image is not None:
            return self.image
        from platformdirs import user_data_dir

        return Path(user_data_dir("mpkick")) / "sim-flash.img"


FAULT_KEYS = {"kill_after", "kill_at", "corrupt_at", "drop_at", "corrupt_dir", "stall_at",
              "stall_for", "unplug_after", "unplug_at", "noise", "loop_main", "seed"}


def parse_url(url: str) -> SimOptions:
    """The options a ``sim://`` URL names; unknown options are refused, not ignored."""
    if not url.startswith("sim://"):
        raise InputError(f"{url!r} is not a sim:// URL")
    rest = url[len("sim://"):]
    path, _, query = rest.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    profile = params.pop("profile", None)
    if profile is not None:
        if profile not in PROFILES:
            raise InputError(f"unknown sim profile {profile!r}; known: {', '.join(PROFILES)}")
        params = {**PROFILES[profile], **params}
    updates: dict[str, Any] = {"image": Path(unquote(path)).expanduser() if path else None}
    known = {f.name for f in fields(SimOptions)} - {"image", "faults"}
    faults: dict[str, str] = {}
    for key, value in params.items():
        key = key.replace("-", "_")
        if key in FAULT_KEYS:
            faults[key] = value
        elif key not in known:
            raise InputError(f"unknown sim:// option {key!r}; known: "
                             + ", ".join(sorted(known | FAULT_KEYS | {"profile"})))
        elif key in ("size", "block_size"):
            updates[key] = parse_size(value)
        elif key == "baud":
            updates[key] = int(value) if value.isdigit() else _bad(key, value)
        elif key == "cpu":
            updates[key] = _share(value)
        elif key == "raw_paste":
            updates[key] = value.lower() not in ("0", "no", "false", "off")
        elif key == "hide":
            updates[key] = tuple(h for h in value.split(",") if h)
        else:
            updates[key] = value
    return replace(SimOptions(), faults=faults, **updates)


def _bad(key: str, value: str) -> int:
    raise InputError(f"sim:// option {key}={value!r} is not a whole number")


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = 0.0
    if not 0 < share <= 1:
        raise InputError(f"sim:// option cpu={value!r} is the board's share of one host core: "
                         "above 0 and at most 1 (cpu=0.05 models a Pico)")
    return share
