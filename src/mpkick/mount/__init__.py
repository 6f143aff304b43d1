"""``mount``: a target's files on the host through FUSE (see ``fs.TargetFS``)."""

from .fs import TargetFS
from .fuse import mount
from .state import MountEvent

__all__ = ["MountEvent", "TargetFS", "mount"]
