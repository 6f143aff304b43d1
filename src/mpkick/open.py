"""What a port URL names: a littlefs image file (``image:PATH``) or a board to connect to.

One place decides, so the CLI, ``kick()`` and every capability open targets alike.
"""

from __future__ import annotations

from collections.abc import Callable

from .target import Target

IMAGE = "image:"


def open_target(url: str, verbose: int = 0,
                log: Callable[[str], None] | None = None) -> Target:
    """The filesystem target ``url`` names, opened (a board is connected and interrupted)."""
    if url.startswith(IMAGE):
        from .image.target import open_image

        return open_image(url[len(IMAGE):])
    from .board.board import Board

    return Board.connect(url, verbose=verbose, log=log)
