"""ROMFS: read-only filesystem images in a board's ROM partition, whose ``.mpy`` files run in
place from flash. ``image`` builds and reads the format, ``source`` turns a folder into one
(compiled for the board), ``deploy`` queries a board's partitions and writes them safely."""

from .image import HEADER, RomEntry, RomfsError, build, files, read

__all__ = ["HEADER", "RomEntry", "RomfsError", "build", "files", "read"]
