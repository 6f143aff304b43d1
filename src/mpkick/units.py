"""The one way mpkick writes a size: binary units, as littlefs, FAT and boards count flash."""

from __future__ import annotations


def human(n: int) -> str:
    """``512 B``, ``4.0 KiB``, ``3.7 MiB``: a size as a person reads it on a flash chip."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover
