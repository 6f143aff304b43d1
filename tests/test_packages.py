"""``mpkick install``: packages from a mip index, local folders and PyPI sdists, onto a target."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from needs import missing

from mpkick.cli import main
from mpkick.compile.compiler import CompileError, Compiler, read_header
from mpkick.errors import InputError
from mpkick.image.target import open_image
from mpkick.packages.fetch import FetchError, fetch
from mpkick.packages.install import Item, install, resolve, rewrite_url, split_version
from mpkick.target import Target

MICROPYTHON = Path(sys.executable).parent / "micropython"
UNIX_X64_63 = 6 | 3 << 8 | 2 << 10


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPKICK_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on 127.0.0.1, as a package index or PyPI would be."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def image(tmp_path: Path) -> Iterator[Target]:
    target = open_image(str(tmp_path / "fs.img"), create=True)
    try:
        yield target
    finally:
        target.close()


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def make_index(root: Path, base: str) -> None:
    """A micropython-lib style index: ``greet`` (files by URL) depends on ``shout`` (by hash)."""
    shout = b"def shout(s):\n    return s.upper() + '!'\n"
    short = hashlib.sha256(shout).hexdigest()[:8]
    _write(root / "file" / short[:2] / short, shout)
    _write(root / "package/py/shout/latest.json",
           json.dumps({"hashes": [["shout.py", short]], "version": "1.0"}))
    _write(root / "src/greet/__init__.py", "from shout import shout\n"
                                           "def hello(n):\n    return shout('hello ' + n)\n")
    _write(root / "src/greet/names.py", "DEFAULT = 'board'\n")
    _write(root / "package/py/greet/latest.json", json.dumps({
        "urls": [["greet/__init__.py", f"{base}/src/greet/__init__.py"],
                 ["greet/names.py", "../../../src/greet/names.py"]],
        "deps": [["shout", "latest"]],
        "version": "0.2",
    }))


def run_on_micropython(target: Target, tmp_path: Path, code: str) -> str:
    """Copy the target's /lib to the host and run ``code`` on the MicroPython unix port."""
    if not MICROPYTHON.exists():
        missing("the MicroPython unix port is not installed (make test installs it: .[sim])")
    lib = tmp_path / "board-lib"
    for entry in target.tree("/lib"):
        dest = lib / entry.path[len("/lib/"):]
        if entry.is_dir:
            dest.mkdir(parents=True, exist_ok=True)
        else:
            _write(dest, target.read(entry.path))
    out = subprocess.run([str(MICROPYTHON), "-c", code], capture_output=True, check=False,
                         env={"MICROPYPATH": str(lib)})
    assert out.returncode == 0, out.stderr.decode() + out.stdout.decode()
    return out.stdout.decode().strip()


def test_install_from_a_mip_index_brings_dependencies(served: tuple[Path, str], image: Target,
                                                      tmp_path: Path) -> None:
    root, url = served
    make_index(root, url)
    items = resolve(["greet"], index=url)
    assert sorted(i.path for i in items) == ["/lib/greet/__init__.py", "/lib/greet/names.py",
                                             "/lib/shout.py"]
    result = install(image, items)
    assert len(result.written) == 3
    assert run_on_micropython(image, tmp_path, "import greet, greet.names; "
                                               "print(greet.hello(greet.names.DEFAULT))") \
        == "HELLO BOARD!"


def test_index_hash_mismatch_is_refused(served: tuple[Path, str]) -> None:
    root, url = served
    make_index(root, url)
    for file in (root / "file").rglob("*"):
        if file.is_file():
            file.write_bytes(b"tampered = True\n")
    with pytest.raises(InputError, match="does not match its hash"):
        resolve(["shout"], index=url)


def test_unknown_package_names_the_index(served: tuple[Path, str]) -> None:
    _, url = served
    with pytest.raises(InputError, match=r"'nosuch' .* is not in the index"):
        resolve(["nosuch"], index=url)


def test_install_compiled_gives_mpy_files_that_import(served: tuple[Path, str], image: Target,
                                                      tmp_path: Path) -> None:
    root, url = served
    make_index(root, url)
    mpy = int(subprocess.run([str(MICROPYTHON), "-c", "import sys;print(sys.implementation._mpy)"],
                             capture_output=True, check=True).stdout) \
        if MICROPYTHON.exists() else UNIX_X64_63
    items = resolve(["greet"], index=url, compiler=Compiler.for_board(mpy))
    assert sorted(i.path for i in items) == ["/lib/greet/__init__.mpy", "/lib/greet/names.mpy",
                                             "/lib/shout.mpy"]
    assert all(read_header(i.data).version == 6 for i in items)
    image.mkdir("/lib")
    image.write("/lib/shout.py", b"raise ImportError('stale twin')\n")
    result = install(image, items)
    assert result.removed == ["/lib/shout.py"]
    assert run_on_micropython(image, tmp_path, "import greet; print(greet.hello('x'))") \
        == "HELLO X!"


def test_install_from_a_local_folder_with_package_json(tmp_path: Path, image: Target) -> None:
    pkg = tmp_path / "drivers"
    _write(pkg / "sensor/__init__.py", "from bus import read\ndef value():\n    return read()\n")
    _write(tmp_path / "bus/bus.py", "def read():\n    return 7\n")
    _write(tmp_path / "bus/package.json", json.dumps({"urls": [["bus.py", "bus.py"]]}))
    _write(pkg / "package.json", json.dumps({
        "urls": [["sensor/__init__.py", "sensor/__init__.py"]],
        "deps": [["../bus", ""]],
    }))
    result = install(image, resolve([str(pkg)], base=tmp_path))
    assert sorted(i.path for i in result.written) == ["/lib/bus.py", "/lib/sensor/__init__.py"]
    assert run_on_micropython(image, tmp_path, "import sensor; print(sensor.value())") == "7"


def test_install_a_plain_package_folder_and_single_files(tmp_path: Path, image: Target) -> None:
    _write(tmp_path / "tool/__init__.py", "X = 1\n")
    _write(tmp_path / "tool/sub/deep.py", "Y = 2\n")
    _write(tmp_path / "tool/__pycache__/junk.py", "")
    _write(tmp_path / "one.py", "Z = 3\n")
    items = resolve(["tool", "one.py", "tool"], base=tmp_path, target="/flash/lib")
    assert sorted(i.path for i in items) == ["/flash/lib/one.py", "/flash/lib/tool/__init__.py",
                                             "/flash/lib/tool/sub/deep.py"]
    install(image, items)
    assert image.read("/flash/lib/tool/sub/deep.py") == b"Y = 2\n"


def make_sdist(folder: Path, name: str, version: str, modules: dict[str, str],
               requires: list[str]) -> Path:
    """A setuptools-style sdist as PyPI held them for upip: name-version/ with PKG-INFO."""
    top = f"{name}-{version}"
    files = {f"{top}/{path}": text for path, text in modules.items()}
    files[f"{top}/setup.py"] = ("from setuptools import setup\n"
                                f"setup(name={name!r}, install_requires={requires!r})\n")
    files[f"{top}/PKG-INFO"] = f"Metadata-Version: 1.1\nName: {name}\nVersion: {version}\n"
    files[f"{top}/tests/test_it.py"] = "assert False\n"
    path = folder / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def publish(root: Path, base: str, sdist: Path, name: str, version: str) -> None:
    """Lay ``sdist`` out the way PyPI's JSON API describes a release."""
    _write(root / "files" / sdist.name, sdist.read_bytes())
    _write(root / "pypi" / name / "json", json.dumps({
        "info": {"name": name, "version": version},
        "urls": [{"packagetype": "sdist", "filename": sdist.name,
                  "url": f"{base}/files/{sdist.name}",
                  "digests": {"sha256": hashlib.sha256(sdist.read_bytes()).hexdigest()}}],
    }))


def test_install_from_a_pypi_sdist_with_a_dependency(served: tuple[Path, str], image: Target,
                                                     tmp_path: Path) -> None:
    root, url = served
    dep = make_sdist(tmp_path, "micropython-units", "0.1",
                     {"units.py": "def mm(x):\n    return x * 1000\n"}, [])
    publish(root, url, dep, "micropython-units", "0.1")
    main_sdist = make_sdist(tmp_path, "micropython-ruler", "1.0",
                            {"ruler/__init__.py": "from units import mm\nLENGTH = mm(2)\n"},
                            ["micropython-units>=0.1"])
    items = resolve([str(main_sdist)], base=tmp_path, pypi=f"{url}/pypi")
    assert sorted(i.path for i in items) == ["/lib/ruler/__init__.py", "/lib/units.py"]
    install(image, items)
    assert run_on_micropython(image, tmp_path, "import ruler; print(ruler.LENGTH)") == "2000"
    # By name, through the PyPI JSON API, with the same dependency resolved once.
    publish(root, url, main_sdist, "micropython-ruler", "1.0")
    named = resolve(["micropython-ruler", "micropython-units"], pypi=f"{url}/pypi")
    assert sorted(i.path for i in named) == ["/lib/ruler/__init__.py", "/lib/units.py"]


def test_dependency_cycles_end(tmp_path: Path) -> None:
    for a, b in (("a", "b"), ("b", "a")):
        _write(tmp_path / a / f"{a}.py", f"NAME = {a!r}\n")
        _write(tmp_path / a / "package.json", json.dumps({"urls": [[f"{a}.py", f"{a}.py"]],
                                                          "deps": [[f"../{b}", ""]]}))
    assert sorted(i.path for i in resolve(["a"], base=tmp_path)) == ["/lib/a.py", "/lib/b.py"]


def test_fetch_serves_the_cache_when_offline(served: tuple[Path, str]) -> None:
    root, url = served
    _write(root / "x.json", "{}")
    assert fetch(f"{url}/x.json") == b"{}"
    (root / "x.json").unlink()
    offline = "http://127.0.0.1:9"  # discard port: nothing listens
    with pytest.raises(FetchError, match="not in the cache"):
        fetch(f"{offline}/x.json")
    assert fetch(f"{url}/x.json", refresh=False) == b"{}"


def test_spec_parsing_and_github_urls() -> None:
    assert split_version("aioble@0.4") == ("aioble", "0.4")
    assert split_version("micropython-foo==1.2") == ("micropython-foo", "1.2")
    assert split_version("github:org/repo/pkg@v1") == ("github:org/repo/pkg", "v1")
    assert rewrite_url("github:org/repo/pkg/package.json", "v1") == \
        "https://raw.githubusercontent.com/org/repo/v1/pkg/package.json"
    assert rewrite_url("github:org/repo/x.py") == \
        "https://raw.githubusercontent.com/org/repo/HEAD/x.py"


def test_install_command_dry_run_lists_and_writes_nothing(
        served: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, url = served
    make_index(root, url)
    img = tmp_path / "fs.img"
    assert main(["-p", f"image:{img}", "install", "greet", "--index", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would install /lib/shout.py" in out and "/lib/greet/__init__.py" in out
    assert not img.exists()


def test_install_command_installs_config_requirements(
        served: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, url = served
    make_index(root, url)
    project = tmp_path / "proj"
    _write(project / "mpkick.toml", f'requirements = ["greet", "local_mod.py"]\nindex = "{url}"\n')
    _write(project / "local_mod.py", "M = 1\n")
    monkeypatch.chdir(project)
    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    assert main(["-p", f"image:{img}", "install", "--compile", "--mpy", "6.3"]) == 0
    assert "installed 4 files" in capsys.readouterr().out
    target = open_image(str(img))
    try:
        names = sorted(e.path for e in target.tree("/lib") if not e.is_dir)
    finally:
        target.close()
    assert names == ["/lib/greet/__init__.mpy", "/lib/greet/names.mpy", "/lib/local_mod.mpy",
                     "/lib/shout.mpy"]


# -- end to end on the virtual board ------------------------------------------------------------

@pytest.fixture
def board(tmp_path: Path) -> Iterator[Any]:
    """The virtual board (real MicroPython unix port on littlefs flash), once it is built."""
    import mpkick.board.board as board_module
    connected = board_module.Board.connect("sim://" + str(tmp_path / "flash.img"))
    try:
        yield connected
    finally:
        connected.close()


def test_installed_package_imports_on_the_board(served: tuple[Path, str], board: Any) -> None:
    root, url = served
    make_index(root, url)
    install(board, resolve(["greet"], index=url))
    assert board.exec("import greet; print(greet.hello('sim'))").strip() == b"HELLO SIM!"


def test_compiled_install_imports_on_the_board(served: tuple[Path, str], board: Any) -> None:
    root, url = served
    make_index(root, url)
    items = resolve(["greet"], index=url, compiler=Compiler.for_board(board.info().mpy))
    assert all(item.path.endswith(".mpy") for item in items)
    install(board, items)
    out = board.exec("import greet, shout; print(greet.hello('mpy'), shout.__file__)")
    assert out.split() == [b"HELLO", b"MPY!", b"/lib/shout.mpy"]


def test_mpy_for_another_version_is_refused_before_the_board_sees_it(board: Any) -> None:
    with pytest.raises(CompileError, match=r"board runs \.mpy v9\.3"):
        Compiler.for_board((board.info().mpy & ~0xFF) | 9)


def test_install_command_compiles_for_the_board_it_installs_on(
        served: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mpkick.board.board as board_module
    root, url = served
    make_index(root, url)
    port = "sim://" + str(tmp_path / "flash.img")
    assert main(["-p", port, "install", "greet", "--index", url, "--compile"]) == 0
    assert "installed 3 files" in capsys.readouterr().out
    with board_module.Board.connect(port) as connected:
        out = connected.exec("import greet; print(greet.hello('cli'), greet.__file__)")
    assert out.split() == [b"HELLO", b"CLI!", b"/lib/greet/__init__.mpy"]


def test_installing_again_sends_nothing_and_a_full_board_is_refused_first(
        served: tuple[Path, str], tmp_path: Path) -> None:
    """Install goes through push's plan: same bytes are not sent again, and a set of files
    that cannot fit is refused before anything is written."""
    from mpkick.errors import NoSpaceError

    root, url = served
    make_index(root, url)
    items = resolve(["greet"], index=url)
    with open_image(str(tmp_path / "fs.img"), create=True) as target:
        assert len(install(target, items).written) == 3
        again = install(target, items)
        assert again.written == [] and sorted(again.unchanged) == sorted(i.path for i in items)
    with open_image(str(tmp_path / "small.img"), create=True, size=64 * 1024) as small:
        big = [Item("/lib/big.bin", bytes(200 * 1024), "big"), *items]
        with pytest.raises(NoSpaceError):
            install(small, big)
        assert small.tree("/") == []
