"""The modules and dependencies inside a PyPI ``micropython-*`` sdist, the format upip installed.

Those sdists are ordinary setuptools tarballs; what a board needs from one is only its Python
files laid out as they import, and the names it requires. No setup.py is ever run: building would
execute a stranger's code on the host for what is, in practice, a copy of files.
"""

from __future__ import annotations

import ast
import io
import posixpath
import re
import tarfile
import zipfile
from email.parser import HeaderParser

from ..errors import InputError

#: Folders at the top of a source tree that are not part of what gets imported.
_NOT_SHIPPED = {"tests", "test", "examples", "example", "docs", "doc", "benchmarks"}
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def _members(data: bytes, name: str) -> dict[str, bytes]:
    """Every regular file of the archive, by its path below the archive's top folder."""
    files: dict[str, bytes] = {}
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                for info in zf.infolist():
                    if not info.is_dir():
                        files[info.filename] = zf.read(info)
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
                for member in tf.getmembers():
                    if member.isfile():
                        handle = tf.extractfile(member)
                        if handle is not None:
                            files[member.name] = handle.read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise InputError(f"{name} is not a readable sdist archive: {exc}") from exc
    stripped: dict[str, bytes] = {}
    for path, content in files.items():
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if len(parts) < 2 or ".." in parts:
            continue  # a file beside the top folder, or one that climbs out: not ours to install
        stripped["/".join(parts[1:])] = content
    return stripped


def _requires(files: dict[str, bytes]) -> list[str]:
    """Required distribution names: egg-info requires.txt, PKG-INFO, or a literal setup.py."""
    for path, content in files.items():
        if path.endswith(".egg-info/requires.txt"):
            names = []
            for line in content.decode(errors="replace").splitlines():
                if line.startswith("["):
                    break  # extras and markers follow: not needed on a board
                found = _NAME.match(line)
                if found:
                    names.append(found[1])
            return names
    if "PKG-INFO" in files:
        meta = HeaderParser().parsestr(files["PKG-INFO"].decode(errors="replace"))
        listed = meta.get_all("Requires-Dist") or meta.get_all("Requires") or []
        names = [m[1] for r in listed if "extra ==" not in r and (m := _NAME.match(r))]
        if names:
            return names
    if "setup.py" in files:
        return _setup_requires(files["setup.py"])
    return []


def _setup_requires(source: bytes) -> list[str]:
    """``install_requires=[...]`` from setup.py when it is a literal list; else nothing."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return []
            return [m[1] for r in value if isinstance(r, str) and (m := _NAME.match(r))]
    return []


def _shipped(path: str) -> bool:
    parts = path.split("/")
    if not path.endswith((".py", ".mpy")) or any(p.endswith(".egg-info") for p in parts):
        return False
    if len(parts) == 1:
        return path not in ("setup.py", "conftest.py") and not path.startswith("test_")
    return parts[0] not in _NOT_SHIPPED and "__pycache__" not in parts


def read_sdist(data: bytes, name: str) -> tuple[dict[str, bytes], list[str]]:
    """(modules by import path, required distribution names) of the sdist ``data``."""
    files = _members(data, name)
    modules = {path: content for path, content in files.items() if _shipped(path)}
    if any(p.startswith("src/") for p in modules):  # src layout: import paths start below src
        modules = {p[len("src/"):]: c for p, c in modules.items() if p.startswith("src/")}
    if not modules:
        raise InputError(f"{name} holds no Python modules to install")
    return {posixpath.normpath(p): c for p, c in sorted(modules.items())}, _requires(files)
