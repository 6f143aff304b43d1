"""``mpkick install``: turn package specs into files for a board's /lib, then write them.

Resolution (every fetch, hash check, dependency and compile) happens before the first write, so
``--dry-run`` shows exactly what would land and a bad spec or a failed download leaves the board
untouched. Sources follow mip's rules (micropython-lib index layout, ``github:`` URLs) plus what
upip used to install (PyPI ``micropython-*`` sdists) and local files and folders.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..compile.compiler import Compiler, should_compile, twin
from ..errors import InputError
from ..target import Target, norm
from .fetch import NotFound, fetch
from .sdist import read_sdist

DEFAULT_INDEX = "https://micropython.org/pi/v2"
DEFAULT_PYPI = "https://pypi.org/pypi"
_REMOTE = ("http://", "https://", "github:", "gitlab:")
_ARCHIVES = (".tar.gz", ".tgz", ".zip")


class Item(NamedTuple):
    """One file to install: its board path, its bytes, and the package it came from."""

    path: str
    data: bytes
    package: str


@dataclass
class InstallResult:
    """What ``install`` did, for the CLI to render."""

    written: list[Item] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # already on the board, byte for byte
    removed_why: dict[str, str] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(item.data) for item in self.written)


def rewrite_url(url: str, ref: str | None = None) -> str:
    """``github:`` / ``gitlab:`` shorthands as raw-file URLs at ``ref`` (HEAD by default)."""
    branch = ref or "HEAD"
    for scheme, fmt in (("github:", "https://raw.githubusercontent.com/{}/{}/{}/{}"),
                        ("gitlab:", "https://gitlab.com/{}/{}/-/raw/{}/{}")):
        if url.startswith(scheme):
            parts = url[len(scheme):].split("/")
            if len(parts) < 2 or not all(parts[:2]):
                raise InputError(f"{url}: expected {scheme}owner/repo[/path][@ref]")
            return fmt.format(parts[0], parts[1], branch, "/".join(parts[2:])).rstrip("/")
    return url


def split_version(spec: str) -> tuple[str, str | None]:
    """``name@1.2`` / ``name==1.2`` / ``github:o/r/p@ref`` -> (spec, version or ref)."""
    if spec.startswith(_REMOTE):
        head, sep, ref = spec.rpartition("@")
        return (head, ref) if sep and head and ref and "/" not in ref else (spec, None)
    for sep in ("==", "@"):
        name, found, version = spec.partition(sep)
        if found and name and version:
            return name, version
    return spec, None


class Resolver:
    """Collects the files of packages and their dependencies, each package once."""

    def __init__(self, *, target: str = "/lib", index: str = DEFAULT_INDEX, mpy: str = "py",
                 pypi: str = DEFAULT_PYPI, compiler: Compiler | None = None,
                 base: Path | None = None) -> None:
        self.target = norm(target)
        self.index = index.rstrip("/")
        self.mpy = mpy
        self.pypi = pypi.rstrip("/")
        self.compiler = compiler
        self.base = base or Path.cwd()
        self.items: dict[str, Item] = {}
        self.seen: set[str] = set()

    # -- entry --------------------------------------------------------------------------------

    def add(self, spec: str, version: str | None = None) -> None:
        """Resolve one spec (and its dependencies) into ``self.items``."""
        spec = spec.strip()
        if not spec:
            return
        local = self._local(spec)
        if local is not None:
            self._add_local(local)
        elif spec.startswith(_REMOTE):
            name, ref = split_version(spec)
            self._add_remote(name, ref or version)
        elif spec.startswith("pypi:") or spec.lower().startswith("micropython-"):
            name, ver = split_version(spec.removeprefix("pypi:"))
            self._add_pypi(name, ver or version)
        else:
            name, ver = split_version(spec)
            self._add_index(name, ver or version)

    def _once(self, key: str) -> bool:
        """True the first time ``key`` is seen: each package is resolved once, cycles end."""
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def _put(self, rel: str, data: bytes, package: str, origin: str) -> None:
        rel = norm(rel).lstrip("/")
        if self.compiler and should_compile(rel, exclude=()):
            data = self.compiler.compile(data, rel, origin)
            rel = twin(rel)
        path = norm(rel, self.target)
        self.items.setdefault(path, Item(path, data, package))

    # -- local ---------------------------------------------------------------------------------

    def _local(self, spec: str) -> Path | None:
        if spec.startswith(_REMOTE) or spec.startswith("pypi:"):
            return None
        path = (self.base / spec).expanduser()
        if path.exists():
            return path.resolve()
        if spec.endswith((".py", ".mpy", ".json", *_ARCHIVES)) or "/" in spec or "\\" in spec:
            raise InputError(f"{spec}: no such file or folder")
        return None

    def _add_local(self, path: Path) -> None:
        if not self._once(str(path)):
            return
        name = path.name
        if path.is_dir():
            if (path / "package.json").is_file():
                self._add_package_json(_load_json(path / "package.json"), str(path), None,
                                       local=path)
            elif (path / "__init__.py").is_file() or (path / "__init__.mpy").is_file():
                for file in _modules(path):
                    rel = f"{name}/{file.relative_to(path).as_posix()}"
                    self._put(rel, file.read_bytes(), name, str(file))
            else:
                for file in _modules(path):
                    rel = file.relative_to(path).as_posix()
                    self._put(rel, file.read_bytes(), name, str(file))
        elif name.endswith((".py", ".mpy")):
            self._put(name, path.read_bytes(), path.stem, str(path))
        elif name.endswith(".json"):
            self._add_package_json(_load_json(path), str(path), None, local=path.parent)
        elif name.endswith(_ARCHIVES):
            self._add_sdist(path.read_bytes(), name)
        else:
            raise InputError(f"{path}: install a folder, .py, .mpy, package.json or sdist")

    # -- mip: index, URL, github -------------------------------------------------------------

    def _add_index(self, name: str, version: str | None) -> None:
        url = f"{self.index}/package/{self.mpy}/{name}/{version or 'latest'}.json"
        if not self._once(f"index:{name}"):
            return
        try:
            meta = json.loads(fetch(url))
        except NotFound as exc:
            raise InputError(f"package {name!r} ({version or 'latest'}) is not in the index "
                             f"{self.index}; check the name or pass --index") from exc
        except ValueError as exc:
            raise InputError(f"{url}: not a package.json ({exc})") from exc
        self._add_package_json(meta, name, version, url=url)

    def _add_remote(self, spec: str, ref: str | None) -> None:
        if spec.endswith((".py", ".mpy")):
            if self._once(spec):
                self._put(posixpath.basename(spec), fetch(rewrite_url(spec, ref)),
                          posixpath.basename(spec), spec)
            return
        if not spec.endswith(".json"):
            spec = spec.rstrip("/") + "/package.json"
        if not self._once(spec):
            return
        url = rewrite_url(spec, ref)
        try:
            meta = json.loads(fetch(url))
        except ValueError as exc:
            raise InputError(f"{url}: not a package.json ({exc})") from exc
        self._add_package_json(meta, spec, ref, url=url, spec=spec)

    def _add_package_json(self, meta: Any, package: str, version: str | None, *,
                          url: str | None = None, spec: str | None = None,
                          local: Path | None = None) -> None:
        """mip's package.json: ``hashes`` from the index, ``urls`` (relative ok), ``deps``."""
        if not isinstance(meta, dict):
            raise InputError(f"{package}: package.json must be a JSON object")
        for rel, short in _pairs(meta, "hashes", package):
            data = fetch(f"{self.index}/file/{short[:2]}/{short}", refresh=False)
            if not hashlib.sha256(data).hexdigest().startswith(short):
                raise InputError(f"{package}: {rel} does not match its hash {short}; "
                                 "the index is inconsistent, try again later")
            self._put(rel, data, package, f"{package}:{rel}")
        for rel, src in _pairs(meta, "urls", package):
            self._put(rel, self._file(src, version, url, spec, local, package), package, src)
        for dep, dep_version in _pairs(meta, "deps", package, optional_second=True):
            self._dep(dep, dep_version or None, spec, local)

    def _file(self, src: str, version: str | None, url: str | None, spec: str | None,
              local: Path | None, package: str) -> bytes:
        if src.startswith(_REMOTE):
            return fetch(rewrite_url(src, version))
        if local is not None:
            path = (local / src).resolve()
            if not path.is_file():
                raise InputError(f"{package}: {src} is listed in package.json but missing")
            return path.read_bytes()
        if url is None:
            raise InputError(f"{package}: relative URL {src} without a base")
        if spec and spec.startswith(("github:", "gitlab:")):
            return fetch(rewrite_url(posixpath.join(posixpath.dirname(spec), src), version))
        return fetch(urllib.parse.urljoin(url, src))

    def _dep(self, dep: str, version: str | None, spec: str | None, local: Path | None) -> None:
        if local is not None and not dep.startswith(_REMOTE):
            candidate = (local / dep)
            if candidate.exists():
                self._add_local(candidate.resolve())
                return
        self.add(dep, version)

    # -- PyPI sdists ---------------------------------------------------------------------------

    def _add_pypi(self, name: str, version: str | None) -> None:
        if not self._once(f"pypi:{_canonical(name)}"):
            return
        url = f"{self.pypi}/{name}/{version}/json" if version else f"{self.pypi}/{name}/json"
        try:
            meta = json.loads(fetch(url))
        except NotFound as exc:
            raise InputError(f"{name}{'==' + version if version else ''} is not on PyPI") from exc
        except ValueError as exc:
            raise InputError(f"{url}: not PyPI JSON ({exc})") from exc
        sdists = [u for u in meta.get("urls", []) if u.get("packagetype") == "sdist"]
        if not sdists:
            raise InputError(f"{name}: PyPI has no sdist for it; MicroPython packages on PyPI "
                             "are sdists (micropython-*)")
        chosen = sdists[0]
        data = fetch(chosen["url"], refresh=False)
        want = chosen.get("digests", {}).get("sha256")
        if want and hashlib.sha256(data).hexdigest() != want:
            raise InputError(f"{chosen['url']}: download does not match PyPI's sha256")
        self._add_sdist(data, chosen.get("filename") or chosen["url"].rsplit("/", 1)[-1])

    def _add_sdist(self, data: bytes, filename: str) -> None:
        modules, requires = read_sdist(data, filename)
        package = re.sub(r"(\.tar\.gz|\.tgz|\.zip)$", "", filename)
        self.seen.add(f"pypi:{_canonical(package.rsplit('-', 1)[0])}")
        for rel, content in modules.items():
            self._put(rel, content, package, f"{filename}:{rel}")
        for dep in requires:
            self._add_pypi(dep, None)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read package.json ({exc})") from exc


def _pairs(meta: dict[str, Any], key: str, package: str,
           optional_second: bool = False) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for entry in meta.get(key, ()):
        if isinstance(entry, str) and optional_second:
            entry = [entry, ""]
        if not (isinstance(entry, list | tuple) and len(entry) == 2
                and all(isinstance(v, str) for v in entry)):
            raise InputError(f"{package}: package.json {key!r} entries must be [string, string]")
        pairs.append((entry[0], entry[1]))
    return pairs


def _modules(folder: Path) -> list[Path]:
    """The .py / .mpy files below ``folder``, skipping caches and hidden folders."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".py", ".mpy")
                  and not any(part.startswith((".", "__pycache__"))
                              for part in p.relative_to(folder).parts))


def resolve(specs: Iterable[str], **options: Any) -> list[Item]:
    """Every file that installing ``specs`` puts on the board, dependencies included."""
    resolver = Resolver(**options)
    for spec in specs:
        resolver.add(spec)
    return list(resolver.items.values())


def install(target: Target, items: Iterable[Item],
            progress: Callable[[Item], None] | None = None) -> InstallResult:
    """Put ``items`` on ``target`` the way a push would: one plan, applied in one session,
    after a check that they fit. A file already there with the same content is not sent; a
    ``foo.py`` beside a new ``foo.mpy`` (or the reverse) is removed, since the board would
    import the .py and ignore what was installed."""
    from ..push import sync
    from ..sync.plan import CREATE, DELETE, UPDATE, Action
    from ..sync.scan import LocalTree

    result = InstallResult()
    items = list(items)
    if not items:
        return result
    by_path = {item.path: item for item in items}
    dest = posixpath.commonpath([posixpath.dirname(p) for p in by_path]) or "/"
    local = LocalTree(Path(dest))
    dirs: set[str] = set()
    for path, item in by_path.items():
        rel = posixpath.relpath(path, dest)
        local.add(rel, item.data, Path(item.package))
        parent = posixpath.dirname(rel)
        while parent:
            dirs.add(parent)
            parent = posixpath.dirname(parent)
    local.dirs = sorted(dirs)

    def started(action: Action, n: int) -> None:
        if progress is not None and n == 0 and action.kind in (CREATE, UPDATE):
            progress(by_path[action.path])

    done = sync(target, local, dest, progress=started)
    result.removed_why = {a.path: a.reason or "stale" for a in done.plan.of(DELETE)}
    result.removed = list(result.removed_why)
    written = {a.path for a in done.plan.of(CREATE, UPDATE)}
    result.written = [item for path, item in by_path.items() if path in written]
    result.unchanged = [path for path in by_path if path not in written]
    return result
