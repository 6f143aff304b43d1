"""What a board's firmware offers, as the agent reports it, and what the host makes of it: frame
size, deflate window, and the steps down after the board ran out of RAM."""

from __future__ import annotations

from dataclasses import dataclass

#: How many times a session steps down after the board ran out of RAM (see ``Caps.squeezed``).
SQUEEZE_STEPS = 3

#: Below this much free RAM (as the agent reports it, itself loaded) a board is lean: the
#: agent's receiving half (``mpkick_recv``) goes again after each session, so a listing or the
#: next session finds the heap whole instead of around it (a 32-bit board with about 16 kB).
LEAN_FREE = 32 * 1024

#: The capabilities ``mk_caps`` reports as bits of a mask, in its order.
CAP_FLAGS = ("hashlib", "crc32", "deflate", "stream", "zlib", "rename", "stat", "mkdir",
             "statvfs", "buffer", "kbd_intr", "path")


@dataclass
class Caps:
    """What the board's firmware offers, probed once per session."""

    hashlib: bool = True
    crc32: bool = True
    deflate: bool = False
    stream: bool = False  # can inflate one deflate stream across frames
    zlib: bool = False
    rename: bool = True
    stat: bool = True
    mkdir: bool = True
    statvfs: bool = True
    buffer: bool = True
    kbd_intr: bool = True
    path: bool = True  # sys.path: the agent can be imported from the board's flash
    free: int = 16384
    id: str | None = None  # the id mpkick keeps on the board, once it has made one
    #: Steps down from what ``free`` allows, taken after the board ran out of RAM: each
    #: halves the frames and the deflate window; the last turns compression off.
    squeeze: int = 0

    @classmethod
    def from_report(cls, mask: int, free: int, ident: str | None) -> Caps:
        """Read ``mk_caps``'s answer: ``(bit mask of CAP_FLAGS, free RAM, board id)``."""
        flags = {name: bool(mask >> bit & 1) for bit, name in enumerate(CAP_FLAGS)}
        return cls(**flags, free=free, id=ident)

    @property
    def hosts_agent(self) -> bool:
        """Whether the firmware can run mpkick's agent: it reads binary frames from stdin
        with Ctrl-C switched off, and imports the agent from /.mpkick."""
        return self.buffer and self.kbd_intr and self.path

    @property
    def lean(self) -> bool:
        """Whether the board drops the agent's receiving half after each session."""
        return self.free < LEAN_FREE

    @property
    def compress(self) -> bool:
        return (self.deflate or self.zlib) and self.squeeze < SQUEEZE_STEPS

    @property
    def chunk(self) -> int:
        """Frame size: as large as the board's free RAM comfortably allows. A session holds
        about three frames (received, to inflate, inflated) beside the window: with a
        frame at a 12th of the free RAM at most and the window at a 16th, half is left."""
        size = 256
        while size < 32768 and size * 24 <= self.free:
            size *= 2
        return max(256, size >> self.squeeze)

    def squeezed(self) -> str | None:
        """Take the next step down after the board ran out of RAM; what it is, for
        ``--verbose``, or None when there is none left."""
        if self.squeeze >= SQUEEZE_STEPS:
            return None
        self.squeeze += 1
        if not self.compress:
            return f"frames of {self.chunk} bytes, no compression (slower)"
        return f"frames of {self.chunk} bytes, deflate window 2^{self.wbits} (slower)"

    @property
    def wbits(self) -> int:
        """Deflate window, from the free RAM the board reported: a larger one compresses
        better, and the board's inflater holds all of it; a 16th of the free RAM at most."""
        bits = 9
        while bits < 15 and (1 << (bits + 1)) * 16 <= self.free:
            bits += 1
        return max(9, bits - self.squeeze)
