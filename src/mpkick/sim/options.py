"""``sim://`` URLs: which flash image, how large, how fast a link, which kind of board.

``sim://PATH?size=1M&block_size=4096&baud=115200&heap=64K&raw_paste=0&hide=hashlib,deflate``
(``cook=1``: a link that turns LF into CRLF; ``rx_buffer=256``: a UART that overruns)
or ``sim://?profile=microbit``. ``romfs=256K`` (the default; 0 for none) is the ROM partition
behind ``vfs.rom_ioctl``, kept in its own file beside the flash image (``PATH.romfs``);
``romfs_erase=whole`` makes it erase only from its start, as ports before ranged erase do.
``progsize=256`` mounts the flash as rp2 firmware does (``VfsLfs2(bdev, progsize=256)``):
littlefs then caches 1 KiB instead of 128 B, so a folder's log is read in fewer, larger pieces
(the ``pico`` profile has it). littlefs mounts an image made with either progsize.
``webrepl=8266&password=pw`` (with ``net_latency=5ms`` and
``net_rate=1M``, bytes a second) puts the board on the network: see ``webrepl.py``.
Without a path the board keeps one flash image per user, so
``mpkick -p sim:// push`` and a later ``mpkick -p sim:// ls`` see the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

from ..errors import InputError
from ..image.geometry import parse_size

#: Boards the virtual board can pretend to be (the flash, heap and features they lack).
PROFILES: dict[str, dict[str, str]] = {
    # The micro:bit v1's MicroPython 1.9: tiny heap, flat flash, none of the modern modules,
    # no sys.path or sys.stdin (so no agent: plain REPL commands). tests/test_real_firmware.py
    # checks that mpkick detects the same capabilities here as on the real firmware in QEMU.
    "microbit": {"size": "128K", "heap": "24K", "raw_paste": "0", "romfs": "0",
                 "hide": "hashlib,binascii,deflate,zlib,os.rename,os.stat,os.mkdir,os.statvfs,"
                         "sys.path,sys.stdin,sys.stdout"},
    "old": {"raw_paste": "0", "hide": "deflate,zlib,hashlib", "romfs": "0"},
    "small": {"size": "256K", "heap": "64K"},  # an ESP8266-class board: about 30 kB free
    # The unix port is a 64-bit build: the same objects take about twice the heap they take on
    # a 32-bit board, so each heap here is twice the free RAM of the board it stands for.
    "esp8266": {"size": "2M", "heap": "64K"},  # about 30 kB free
    "esp32": {"size": "2M", "heap": "224K"},  # without PSRAM: about 110 kB free
    # RP2040: about 200 kB free, 1.4 MB of flash, mounted as rp2's _boot.py does.
    "pico": {"size": "1408K", "heap": "400K", "progsize": "256"},
}


@dataclass(frozen=True)
class SimOptions:
    """Everything that makes one virtual board."""

    image: Path | None = None
    size: int = 2 << 20
    block_size: int = 4096
    progsize: int = 32  # VfsLfs2's own default; rp2 firmware uses 256
    baud: int = 0
    heap: str | None = None
    raw_paste: bool = True
    hide: tuple[str, ...] = ()
    micropython: str | None = None
    romfs: int = 256 << 10  # the ROM partition's size for a new one; 0: the board has none
    romfs_erase: str = "block"  # "block": erases any 4 KiB block; "whole": only from the start
    serial: str | None = None  # the board's serial number: machine.unique_id() and id:SERIAL
    cpu: float = 1.0  # share of one host core the board's process gets (sim/cpu.py)
    faults: dict[str, str] = field(default_factory=dict)
    #: The link is not 8-bit clean: every LF the board sends arrives as CRLF (a telnet hop).
    cook: bool = False
    #: The board's UART input buffer, in bytes (0: unbounded): what arrives while it is full
    #: and nobody reads is lost, as on a real UART without flow control.
    rx_buffer: int = 0
    webrepl: int | None = None  # serve WebREPL on 127.0.0.1 at this port (0: any free one)
    password: str = "mpkick"
    net_latency: float = 0.0  # seconds, each way
    net_rate: int = 0  # bytes a second, each way; 0: as fast as loopback goes
    tls: str | None = None  # a PEM file (certificate and key): WebREPL over wss://
    net_drop_at: int | None = None  # the link drops after this many bytes from the client

    @property
    def image_path(self) -> Path:
        if self.image is not None:
            return self.image
        from platformdirs import user_data_dir

        return Path(user_data_dir("mpkick")) / "sim-flash.img"

    @property
    def romfs_path(self) -> Path:
        """The ROM partition's own file, beside the flash image."""
        image = self.image_path
        return image.with_name(image.name + ".romfs")


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
        elif key == "romfs_erase":
            if value not in ("block", "whole"):
                raise InputError(f"sim:// option romfs_erase={value!r}: block or whole")
            updates[key] = value
        elif key in ("size", "block_size", "romfs"):
            updates[key] = parse_size(value)
        elif key == "progsize":
            updates[key] = _progsize(value)
        elif key in ("baud", "webrepl", "net_drop_at"):
            updates[key] = int(value) if value.isdigit() else _bad(key, value)
        elif key == "cpu":
            updates[key] = _share(value)
        elif key == "net_rate":
            updates[key] = parse_size(value)
        elif key == "net_latency":
            updates[key] = _seconds(key, value)
        elif key in ("raw_paste", "cook"):
            updates[key] = value.lower() not in ("0", "no", "false", "off")
        elif key == "serial":
            updates[key] = value if _is_hex(value) else _bad_serial(value)
        elif key == "rx_buffer":
            updates[key] = parse_size(value)
        elif key == "hide":
            updates[key] = tuple(h for h in value.split(",") if h)
        else:
            updates[key] = value
    return replace(SimOptions(), faults=faults, **updates)


def _seconds(key: str, value: str) -> float:
    """``5ms``, ``0.005`` or ``0.005s``."""
    text = value.strip().lower()
    scale = 1e-3 if text.endswith("ms") else 1.0
    try:
        return float(text.removesuffix("ms").removesuffix("s")) * scale
    except ValueError:
        raise InputError(f"sim:// option {key}={value!r} is not a time: write e.g. 5ms") from None


def _bad(key: str, value: str) -> int:
    raise InputError(f"sim:// option {key}={value!r} is not a whole number")


def _is_hex(text: str) -> bool:
    return len(text) % 2 == 0 and all(c in "0123456789abcdefABCDEF" for c in text) and bool(text)


def _bad_serial(value: str) -> str:
    raise InputError(f"sim:// option serial={value!r}: give an even number of hex digits, as "
                     "machine.unique_id() reports them (e.g. serial=e6614c311b7a2d25)")


def _progsize(value: str) -> int:
    size = int(value) if value.isdigit() else 0
    if size < 8 or size & (size - 1):
        raise InputError(f"sim:// option progsize={value!r}: a power of two of at least 8 "
                         "(32, VfsLfs2's default; 256 as rp2 firmware mounts)")
    return size


def _share(value: str) -> float:
    try:
        share = float(value)
    except ValueError:
        share = 0.0
    if not 0 < share <= 1:
        raise InputError(f"sim:// option cpu={value!r} is the board's share of one host core: "
                         "above 0 and at most 1 (cpu=0.05 models a Pico)")
    return share
