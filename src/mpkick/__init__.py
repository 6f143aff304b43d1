"""mpkick: get Python code onto MicroPython boards, fast, atomic and verified.

``from mpkick import kick; kick(port="/dev/ttyACM0", src="project")`` pushes a tree.
Heavy parts are imported only when used, to keep the command's start-up lean.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "connect", "kick"]

if TYPE_CHECKING:
    from .board.board import Board


def kick(port: str | list[str] = "auto", src: str = ".", dest: str = "/",
         **options: Any) -> Any:
    """Push the tree ``src`` to ``dest`` on the board at ``port`` (pybkick's ``kick``); a list
    of ports pushes to every board at once and returns one outcome per board."""
    from .push import kick as _kick

    return _kick(port=port, src=src, dest=dest, **options)


def connect(port: str = "auto", **options: Any) -> Board:
    """A connected board: ``with connect("sim://") as board: board.eval("1+1")``."""
    from .board.board import Board

    return Board.connect(port, **options)
