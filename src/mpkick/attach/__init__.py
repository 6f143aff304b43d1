"""``attach``: a host folder in the board's filesystem, served over the REPL while code runs.

The opposite direction of ``mount`` (the board's files on the host): here the board mounts a
VFS (``agent/mpkick_attach.py``) whose every operation is a request on its stdout, answered by
this module on its stdin. Nothing is copied to the flash. What makes it fast on a serial link:

* a folder's listing comes in one answer, with every entry's stats and the contents of its
  small modules, deflated as one stream; the top folder's listing travels with the mount itself;
* the board keeps listings and small files, answers every miss an import makes (``x.py``,
  ``x.mpy``, ``x/__init__.py`` ...) from them, and learns what changed on the host (watchfiles
  events, or a stat scan without watchfiles) in the header of every answer, or with one short
  question when it has not heard from the host for a quarter of a second;
* with ``compile``, ``.py`` modules appear as ``.mpy`` made by the board's matching mpy-cross,
  cached by source hash.

The host refuses every path that leaves the folder (``..``, symlinks out of it), and every
change unless the folder was attached with ``write``; a written file goes to a temporary file
beside it and is renamed over the old one on close.
"""

from .folders import Folder, parse_folders
from .server import Server
from .session import Attachment, attached, watch_attached
from .wire import DEFAULT_PATH, MODULE

__all__ = ["DEFAULT_PATH", "MODULE", "Attachment", "Folder", "Server", "attached",
           "parse_folders", "watch_attached"]
