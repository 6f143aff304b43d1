"""Fault injection for the virtual board: the failures users meet on real cables, on cue.

A power cut at a byte count, corrupt or dropped bytes, stalls, unplugging, power-on noise from
the ROM, a main.py that never returns: each is a ``sim://`` URL option (or ``inject()`` on a
running board), so a test can put any of them at an exact place in a transfer. Byte positions
count the bytes of one direction's stream since the board was started (``host_to_board``
counts what the board's UART was given, ``board_to_host`` what it sent); times count from
``start()``. This module decides what is due; the supervisor's pump, which carries every byte,
asks it and acts (cutting the power, pulling the cable, pausing the link).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from ..errors import InputError

#: What an ESP32's ROM prints at 74880 baud before MicroPython starts; a host reads it as garbage.
ROM_NOISE = (b"\x00\xff\xfe\x1cets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),"
             b"boot:0x13 (SPI_FAST_FLASH_BOOT)\r\nload:0x3fff0030,len:4\r\n")
#: The main.py ``loop_main`` leaves on the flash: it never returns and never stops printing.
LOOP_MAIN = ("n = 0\n"
             "while True:\n"
             "    print('main.py is busy', n)\n"
             "    n += 1\n")

#: What the supervisor does when a fault is due.
Action = Literal["stall", "unplug", "kill"]


def _number_list(text: str) -> list[int]:
    return sorted(int(x) for x in text.split(",") if x.strip())


def _switch(text: str) -> bool:
    return text.lower() not in ("", "0", "no", "false", "off")


@dataclass
class Faults:
    """The faults still to come. Positions are stream byte offsets; times are seconds.

    ``kill_at`` / ``stall_at`` / ``unplug_at`` fire once the board's UART has been given that
    many host bytes (so a kill at N leaves exactly bytes 0..N-1 delivered); ``drop_at`` and
    ``corrupt_at`` hit the byte at that offset of the ``corrupt_dir`` stream (``h2b``, host to
    board, or ``b2h``). ``kill_after`` / ``unplug_after`` count from ``start()``.
    """

    kill_at: int | None = None
    kill_after: float | None = None
    stall_at: int | None = None
    stall_for: float = 5.0
    unplug_at: int | None = None
    unplug_after: float | None = None
    drop_h2b: list[int] = field(default_factory=list)
    drop_b2h: list[int] = field(default_factory=list)
    corrupt_h2b: list[int] = field(default_factory=list)
    corrupt_b2h: list[int] = field(default_factory=list)
    noise: int = 0
    loop_main: bool = False

    @classmethod
    def parse(cls, raw: dict[str, str]) -> Faults:
        """The URL's fault options; a malformed one is refused, since a typo would hide a test."""
        try:
            direction = raw.get("corrupt_dir", "h2b").lower()
            if direction not in ("h2b", "b2h"):
                raise ValueError("corrupt_dir is h2b (host to board) or b2h")
            drops = _number_list(raw.get("drop_at", ""))
            corrupts = _number_list(raw.get("corrupt_at", ""))
            noise = raw.get("noise", "0").lower()
            return cls(
                kill_at=int(raw["kill_at"]) if raw.get("kill_at") else None,
                kill_after=float(raw["kill_after"]) if raw.get("kill_after") else None,
                stall_at=int(raw["stall_at"]) if raw.get("stall_at") else None,
                stall_for=float(raw.get("stall_for") or 5.0),
                unplug_at=int(raw["unplug_at"]) if raw.get("unplug_at") else None,
                unplug_after=float(raw["unplug_after"]) if raw.get("unplug_after") else None,
                drop_h2b=drops if direction == "h2b" else [],
                drop_b2h=drops if direction == "b2h" else [],
                corrupt_h2b=corrupts if direction == "h2b" else [],
                corrupt_b2h=corrupts if direction == "b2h" else [],
                noise=(64 if noise in ("1", "yes", "true", "on") else
                       0 if not _switch(noise) else int(noise)),
                loop_main=_switch(raw.get("loop_main", "0")),
            )
        except ValueError as exc:
            raise InputError(f"bad sim:// fault option: {exc}") from exc


class FaultInjector:
    """The faults of one board: what is due, and the log of what fired, in order."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.plan = Faults.parse(raw)
        self._rng = random.Random(int(raw.get("seed", "0") or 0))
        self.log: list[str] = []  # for tests and reports

    def inject(self, **faults: str | int | float) -> None:
        """Arm more faults, with the URL's keys (a new position replaces an armed one; drops
        and corruptions add up)."""
        more = Faults.parse({k: str(v) for k, v in faults.items()})
        f = self.plan
        for name in ("kill_at", "kill_after", "stall_at", "unplug_at", "unplug_after"):
            if getattr(more, name) is not None:
                setattr(f, name, getattr(more, name))
        if "stall_for" in faults:
            f.stall_for = more.stall_for
        for name in ("drop_h2b", "drop_b2h", "corrupt_h2b", "corrupt_b2h"):
            setattr(f, name, sorted(getattr(f, name) + getattr(more, name)))

    def noise(self) -> bytes:
        """What the board prints at power-on before MicroPython does (nothing unless asked)."""
        n = self.plan.noise
        return ROM_NOISE + self._rng.randbytes(n) if n else b""

    @property
    def damages_host_bound(self) -> bool:
        return bool(self.plan.drop_b2h or self.plan.corrupt_b2h)

    def damage(self, data: bytes, start: int, to_board: bool) -> bytes:
        """``data``, at ``start`` of its stream, with the bytes due dropped or flipped; each
        fault fires once."""
        f = self.plan
        drops, corrupts = (f.drop_h2b, f.corrupt_h2b) if to_board else (f.drop_b2h, f.corrupt_b2h)
        way = "host->board" if to_board else "board->host"
        end = start + len(data)
        if not any(start <= at < end for at in drops + corrupts):
            return data
        out = bytearray(data)
        for at in [a for a in corrupts if start <= a < end]:
            corrupts.remove(at)
            out[at - start] ^= self._rng.randrange(1, 256)
            self.log.append(f"corrupted {way} byte {at}")
        for at in sorted((a for a in drops if start <= a < end), reverse=True):
            drops.remove(at)
            del out[at - start]
            self.log.append(f"dropped {way} byte {at}")
        return bytes(out)

    def next_mark(self) -> int | None:
        """The next host byte count at which a fault fires (delivery stops there first)."""
        f = self.plan
        marks = [m for m in (f.kill_at, f.stall_at, f.unplug_at) if m is not None]
        return min(marks) if marks else None

    def due_at(self, fed: int) -> list[Action]:
        """The faults due once the board has been given ``fed`` host bytes, disarmed."""
        return self._take((("stall_at", "stall"), ("unplug_at", "unplug"), ("kill_at", "kill")),
                          fed)

    def due_by_clock(self, elapsed: float) -> tuple[list[Action], float]:
        """The faults due ``elapsed`` seconds after the start, disarmed; and the seconds until
        the next one (0.5 when none is armed: the pump looks again then anyway)."""
        due = self._take((("kill_after", "kill"), ("unplug_after", "unplug")), elapsed)
        left = [t for t in (self.plan.kill_after, self.plan.unplug_after) if t is not None]
        return due, (min(left) - elapsed if left else 0.5)

    def _take(self, armed: tuple[tuple[str, Action], ...], now: float) -> list[Action]:
        """Disarm and return, in the order given, the faults whose field is reached by ``now``."""
        due: list[Action] = []
        for name, action in armed:
            at = getattr(self.plan, name)
            if at is not None and now >= at:
                setattr(self.plan, name, None)
                due.append(action)
        return due
