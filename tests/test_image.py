"""littlefs images on the host: built here, mounted by real MicroPython, and the other way round.

The board side of every round trip is the MicroPython unix port running its own VfsLfs2 over
the image file (tests/micropython/lfs_image.py), never a re-implementation of littlefs.
"""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from littlefs import LittleFS, UserContext
from needs import missing

from mpkick.cli import cli, main
from mpkick.cli.common import open_target
from mpkick.errors import InputError, NoSpaceError, PortBusy
from mpkick.ignore import IgnoreRules
from mpkick.image.build import build_image
from mpkick.image.geometry import PRESETS, detect_geometry, parse_size
from mpkick.image.target import ImageTarget, new_image, open_image
from mpkick.target import Target, makedirs, remove_tree

MICROPYTHON = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which(
    "micropython")
BOARD_SCRIPT = Path(__file__).parent / "micropython" / "lfs_image.py"


def micropython_here() -> None:
    """MicroPython's own VfsLfs2 is the judge of our images: without it, skip (CI: fail)."""
    if MICROPYTHON is None:
        missing("the MicroPython unix port is not installed (make test installs it: .[sim])")


@pytest.fixture
def _micropython() -> None:
    micropython_here()


needs_micropython = pytest.mark.usefixtures("_micropython")


def on_board(image: Path, *args: str) -> str:
    """Run the board-side script on the image with MicroPython's own VfsLfs2; its stdout."""
    block_size, block_count = detect_geometry(image.read_bytes())
    assert MICROPYTHON is not None
    done = subprocess.run([MICROPYTHON, str(BOARD_SCRIPT), str(image), str(block_size),
                           str(block_count), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


def board_write(image: Path, path: str, data: bytes) -> int:
    """MicroPython writes ``data`` to ``path`` in the image; the file's mtime on the board."""
    source = image.with_name("board-write.bin")
    source.write_bytes(data)
    return int(on_board(image, "write", path, str(source)).split()[-1])


def board_files(image: Path) -> dict[str, tuple[int, int, str]]:
    """``{path: (size, mtime, sha256)}`` of every file as MicroPython sees it."""
    files = {}
    for line in on_board(image, "dump").splitlines():
        if line.startswith("F "):
            _, path, size, mtime, digest = line.split()
            files[path] = (int(size), int(mtime), digest)
    return files


def make_source(root: Path) -> dict[str, bytes]:
    """A project with nested folders, binary and empty files, sizes either side of inlining."""
    content = {
        "main.py": b"import lib.util\nprint('hello')\n",
        "boot.py": b"",
        "lib/util.py": b"def f():\n    return 1\n" * 6,
        "lib/__init__.py": b"",
        "lib/deep/er/blob.bin": bytes(range(256)) * 400,  # many blocks: a CTZ skip-list
        "lib/deep/small.bin": os.urandom(129),
        "data/readings.csv": b"t,v\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(900)),
        "data/empty.txt": b"",
    }
    for rel, data in content.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "empty-folder").mkdir()
    return content


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path / "src"
    root.mkdir()
    return root, make_source(root)


@pytest.fixture
def image(tmp_path: Path, source: tuple[Path, dict[str, bytes]]) -> Path:
    out = tmp_path / "fs.img"
    build_image(source[0], str(out), size=512 * 1024)
    return out


# --- an image built on the host ---------------------------------------------------------------


@needs_micropython
def test_built_image_mounts_in_micropython_and_every_file_reads_back_identical(
        image: Path, source: tuple[Path, dict[str, bytes]]) -> None:
    root, content = source
    files = board_files(image)
    assert {p: (size, digest) for p, (size, _m, digest) in files.items()} == {
        "/" + rel: (len(data), sha(data)) for rel, data in content.items()}
    # each file keeps its host modification time as MicroPython's own mtime
    for rel in content:
        assert files["/" + rel][1] == int((root / rel).stat().st_mtime)
    assert "D /empty-folder" in on_board(image, "dump").splitlines()


def test_built_image_reads_back_identical_with_littlefs_python_alone(
        image: Path, source: tuple[Path, dict[str, bytes]]) -> None:
    block_size, block_count = detect_geometry(image.read_bytes())
    fs = LittleFS(context=UserContext(buffer=bytearray(image.read_bytes())), mount=False,
                  block_size=block_size, block_count=block_count)
    fs.mount()
    for rel, data in source[1].items():
        with fs.open(rel, "rb") as file:
            assert file.read() == data
    assert fs.stat("empty-folder").type == 2


def test_the_image_file_has_exactly_the_geometry_asked_for(tmp_path: Path,
                                                          source: tuple[Path, dict]) -> None:
    out = tmp_path / "pico.img"
    preset = PRESETS["rp2"]
    result = build_image(source[0], str(out), size=preset.size, block_size=preset.block_size,
                         prog_size=preset.prog_size)
    assert out.stat().st_size == 1408 * 1024
    assert detect_geometry(out.read_bytes()) == (4096, 352)
    assert result.files == len(source[1])
    assert result.usage.total == 1408 * 1024


def test_build_leaves_out_ignored_files(tmp_path: Path, source: tuple[Path, dict]) -> None:
    root = source[0]
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"x")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref")
    (root / "main.py~").write_bytes(b"backup")
    (root / ".mpkickignore").write_text("data/\n")
    (root / "notes.md").write_text("keep off the board")
    out = tmp_path / "fs.img"
    build_image(root, str(out), size=256 * 1024,
                rules=IgnoreRules.from_folder(root, ["*.md"]))
    with open_image(str(out)) as target:
        paths = {e.path for e in target.tree()}
    assert "/main.py" in paths and "/lib/deep/er/blob.bin" in paths
    assert not any(p.startswith(("/__pycache__", "/.git", "/data")) for p in paths)
    assert "/main.py~" not in paths and "/notes.md" not in paths


def test_a_source_too_big_for_the_image_is_refused_and_an_older_image_is_kept(
        tmp_path: Path, image: Path, source: tuple[Path, dict]) -> None:
    before = image.read_bytes()
    (source[0] / "huge.bin").write_bytes(os.urandom(600 * 1024))
    with pytest.raises(NoSpaceError, match="larger --size"):
        build_image(source[0], str(image), size=512 * 1024)
    assert image.read_bytes() == before
    assert not Path(f"{image}.tmp").exists()


# --- an image written by MicroPython -----------------------------------------------------------


@needs_micropython
def test_a_file_micropython_writes_reads_back_identical_with_its_mtime(
        image: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    data = bytes(range(256)) * 40 + b"\x00\xff" * 77
    board_mtime = board_write(image, "/from/board.bin", data)

    with open_image(str(image)) as target:
        assert target.read("/from/board.bin") == data
        entry = target.stat("/from/board.bin")
        assert entry.mtime == board_mtime
        assert entry.size == len(data)

    capsysbinary.readouterr()
    assert main(["image", "cat", str(image), "/from/board.bin"]) == 0
    assert capsysbinary.readouterr().out == data
    assert main(["image", "get", str(image), "/from/board.bin", str(image.parent / "got")]) == 0
    assert (image.parent / "got").read_bytes() == data


@needs_micropython
def test_mtime_written_on_the_host_is_what_os_stat_shows_on_the_board(tmp_path: Path) -> None:
    path = tmp_path / "t.img"
    with new_image(str(path), 128 * 1024) as target:
        target.write("/a.txt", b"x", mtime_ns=1_700_000_000_123_456_789)
        assert target.stat("/a.txt").mtime == 1_700_000_000
    assert board_files(path)["/a.txt"][1] == 1_700_000_000


@needs_micropython
def test_a_host_change_to_a_board_written_image_is_seen_by_the_board(image: Path) -> None:
    board_write(image, "/counter.txt", b"1")
    with open_image(str(image)) as target:
        target.write("/counter.txt", b"2")
        target.remove("/boot.py")
    files = board_files(image)
    assert files["/counter.txt"][2] == sha(b"2")
    assert "/boot.py" not in files


# --- the filesystem-target interface -----------------------------------------------------------


@pytest.fixture
def target(tmp_path: Path) -> ImageTarget:
    t = open_image(str(tmp_path / "t.img"), create=True, size=64 * 1024, block_size=4096)
    assert isinstance(t, Target)
    return t


def test_every_change_is_saved_to_the_image_file_at_once(tmp_path: Path,
                                                        target: ImageTarget) -> None:
    target.mkdir("/lib")
    target.write("/lib/a.py", b"A = 1\n")
    with open_image(target.path) as again:
        assert again.read("/lib/a.py") == b"A = 1\n"
    target.rename("/lib/a.py", "/lib/b.py")
    with open_image(target.path) as again:
        assert [e.path for e in again.tree()] == ["/lib", "/lib/b.py"]
    assert not Path(f"{target.path}.tmp").exists()


def test_a_push_writes_the_image_file_once_whatever_the_number_of_files(
        tmp_path: Path, source: tuple[Path, dict[str, bytes]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import mpkick.image.target as image_module
    from mpkick import kick

    root, content = source
    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    saves: list[str] = []
    real_save = image_module.save_file
    monkeypatch.setattr(image_module, "save_file",
                        lambda path, data: (saves.append(path), real_save(path, data)))
    result = kick(port=f"image:{img}", src=str(root))
    assert result.created == len(content) > 1
    assert saves == [str(img)]
    with open_image(str(img)) as t:
        assert {e.path: t.read(e.path) for e in t.tree() if not e.is_dir} == {
            "/" + rel: data for rel, data in content.items()}


def test_write_replaces_a_file_and_leaves_no_temporary_name(target: ImageTarget) -> None:
    seen: list[int] = []
    target.write("/f.bin", b"old")
    target.write("/f.bin", b"new" * 10000, progress=seen.append)
    assert target.read("/f.bin") == b"new" * 10000
    assert sum(seen) == 30000
    assert [e.path for e in target.tree()] == ["/f.bin"]


def test_a_write_that_does_not_fit_keeps_the_old_file(target: ImageTarget) -> None:
    target.write("/f.bin", b"old")
    with pytest.raises(OSError) as caught:
        target.write("/f.bin", os.urandom(200 * 1024))
    assert caught.value.errno == errno.ENOSPC
    assert target.read("/f.bin") == b"old"
    assert [e.path for e in target.tree()] == ["/f.bin"]


@pytest.mark.parametrize(("operation", "code"), [
    (lambda t: t.read("/nope"), errno.ENOENT),
    (lambda t: t.stat("/d/nope"), errno.ENOENT),
    (lambda t: t.write("/no/such/folder/f", b"x"), errno.ENOENT),
    (lambda t: t.read("/d"), errno.EISDIR),
    (lambda t: t.remove("/d"), errno.EISDIR),
    (lambda t: t.write("/d", b"x"), errno.EISDIR),
    (lambda t: t.mkdir("/d"), errno.EEXIST),
    (lambda t: t.rmdir("/d/f"), errno.ENOTDIR),
    (lambda t: t.rmdir("/d"), errno.ENOTEMPTY),
])
def test_failures_are_pythons_own_oserrors(target: ImageTarget,
                                           operation: Callable[[ImageTarget], object],
                                           code: int) -> None:
    target.mkdir("/d")
    target.write("/d/f", b"x")
    with pytest.raises(OSError) as caught:
        operation(target)
    assert caught.value.errno == code
    assert type(caught.value) is type(OSError(code, "", ""))  # FileNotFoundError for ENOENT ...


def test_tree_stat_usage_and_hashes(target: ImageTarget) -> None:
    makedirs(target, "/a/b")
    target.write("/a/b/c.txt", b"hello")
    target.write("/z", b"")
    assert target.stat("/") == (target.stat("/")._replace(path="/", is_dir=True))
    tree = target.tree("/", hashes=True)
    assert [(e.path, e.is_dir, e.size) for e in tree] == [
        ("/a", True, 0), ("/a/b", True, 0), ("/a/b/c.txt", False, 5), ("/z", False, 0)]
    assert tree[2].sha256 == sha(b"hello") and tree[3].sha256 == sha(b"")
    assert [e.path for e in target.tree("/a/b")] == ["/a/b/c.txt"]
    usage = target.usage()
    assert usage.total == 64 * 1024 and usage.block_size == 4096
    assert 0 < usage.free < usage.total
    remove_tree(target, "/a")
    assert [e.path for e in target.tree()] == ["/z"]


def test_an_image_port_opens_an_image_target(image: Path) -> None:
    target = open_target(f"image:{image}")
    try:
        assert isinstance(target, ImageTarget)
        assert target.read("/main.py").startswith(b"import lib.util")
    finally:
        target.close()


names = st.sampled_from(["/a", "/b", "/d/a", "/d/b", "/d/e/a"])
operations = st.lists(st.one_of(
    st.tuples(st.just("write"), names, st.binary(max_size=3000)),
    st.tuples(st.just("remove"), names, st.just(b"")),
    st.tuples(st.just("rename"), names, names.map(str.encode)),
), max_size=25)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_any_sequence_of_changes_leaves_what_a_plain_dict_predicts(ops: list[tuple]) -> None:
    micropython_here()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "p.img"
        model: dict[str, bytes] = {}
        with open_image(str(path), create=True, size=128 * 1024) as target:
            for kind, name, arg in ops:
                if kind == "write":
                    makedirs(target, posixpath.dirname(name))
                    target.write(name, arg)
                    model[name] = arg
                elif kind == "remove" and name in model:
                    target.remove(name)
                    del model[name]
                elif kind == "rename" and name in model:
                    dst = arg.decode()
                    makedirs(target, posixpath.dirname(dst))
                    target.rename(name, dst)
                    model[dst] = model.pop(name)
        with open_image(str(path)) as target:
            files = {e.path: e.sha256 for e in target.tree(hashes=True) if not e.is_dir}
        assert files == {name: sha(data) for name, data in model.items()}
        if ops:  # and MicroPython's own VfsLfs2 reads the same
            assert {p: d for p, (_s, _m, d) in board_files(path).items()} == files


# --- geometry and broken images -----------------------------------------------------------------


@pytest.mark.parametrize(("block_size", "block_count"), [(512, 224), (4096, 16), (8192, 40)])
def test_geometry_is_read_from_the_superblock(tmp_path: Path, block_size: int,
                                              block_count: int) -> None:
    path = tmp_path / "g.img"
    with new_image(str(path), block_size * block_count, block_size) as target:
        for i in range(40):  # enough commits to compact the superblock pair more than once
            target.write(f"/f{i % 7}", b"x" * i)
    data = path.read_bytes()
    assert detect_geometry(data) == (block_size, block_count)


def test_geometry_survives_an_erased_first_superblock_block(tmp_path: Path) -> None:
    path = tmp_path / "g.img"
    with new_image(str(path), 64 * 4096, 4096) as target:
        for i in range(300):
            target.write("/f", b"x" * (i % 50))
    data = bytearray(path.read_bytes())
    data[:4096] = b"\xff" * 4096
    assert detect_geometry(bytes(data)) == (4096, 64)


@pytest.mark.parametrize("data", [b"", b"\x00" * 65536, b"\xff" * 65536, os.urandom(65536),
                                  b"littlefs" * 8192])
def test_what_is_not_littlefs2_is_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(InputError, match="not a littlefs2 image"):
        detect_geometry(data)


def broken_images(image: Path) -> dict[str, bytes]:
    data = image.read_bytes()
    return {
        "zeros": b"\x00" * len(data),
        "truncated": data[:-4096],
        "padded": data + b"\xff" * 4096,
        "metadata gone": data[:8192] + b"\x00" * (len(data) - 8192),
    }


@pytest.mark.parametrize("kind", ["zeros", "truncated", "padded", "metadata gone"])
def test_a_corrupt_or_wrong_geometry_image_gives_one_clear_line(
        image: Path, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    image.write_bytes(broken_images(image)[kind])
    capsys.readouterr()
    assert main(["image", "tree", str(image)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpkick: ") and "Traceback" not in err
    assert "image" in err


def test_a_missing_image_says_how_to_make_one(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["image", "df", str(tmp_path / "none.img")]) == 1
    assert "mpkick image build" in capsys.readouterr().err


def test_sizes_are_written_as_people_write_them() -> None:
    assert parse_size("1M") == 1024 * 1024
    assert parse_size("848K") == 848 * 1024
    assert parse_size("848KiB") == 848 * 1024
    assert parse_size("0x100000") == 1024 * 1024
    assert parse_size("4096") == 4096
    with pytest.raises(InputError):
        parse_size("big")


# --- the command line ---------------------------------------------------------------------------


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_cli_build_with_a_preset(tmp_path: Path, source: tuple[Path, dict],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pico.img"
    said = run(capsys, "image", "build", str(source[0]), "-o", str(out), "--preset", "rp2")
    assert f"{len(source[1])} files" in said
    assert detect_geometry(out.read_bytes()) == (4096, 352)


def test_cli_build_with_size_block_size_and_count(tmp_path: Path, source: tuple[Path, dict],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    run(capsys, "image", "build", str(source[0]), "-o", str(a), "--size", "512K",
        "--block-size", "1024")
    assert detect_geometry(a.read_bytes()) == (1024, 512)
    run(capsys, "image", "build", str(source[0]), "-o", str(b), "--block-count", "100",
        "--ignore", "data/")
    assert detect_geometry(b.read_bytes()) == (4096, 100)
    assert "data/" not in run(capsys, "image", "ls", str(b))


@pytest.mark.parametrize(("args", "says"), [
    (["--preset", "nosuchboard"], "unknown preset"),
    (["--size", "1M", "--block-count", "4"], "not both"),
    (["--size", "4K"], "fewer than 2 blocks"),
    (["--size", "64K"], "does not fit"),
    (["--block-size", "1000"], "power of two"),
])
def test_cli_build_refuses_what_cannot_work(tmp_path: Path, source: tuple[Path, dict],
                                            capsys: pytest.CaptureFixture[str], args: list[str],
                                            says: str) -> None:
    capsys.readouterr()
    assert main(["image", "build", str(source[0]), "-o", str(tmp_path / "x.img"), *args]) == 1
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1
    assert not (tmp_path / "x.img").exists()


@pytest.mark.parametrize(("name", "args"), [
    ("ls", []), ("ls", ["/lib"]), ("ls", ["-l", "/lib/util.py"]), ("ls", ["-l", "-r"]),
    ("tree", []), ("tree", ["/lib"]), ("df", []), ("cat", ["/main.py", "/boot.py"]),
])
def test_an_image_twin_prints_exactly_what_the_generic_command_prints_on_the_image(
        image: Path, capsys: pytest.CaptureFixture[str], name: str, args: list[str]) -> None:
    twin = run(capsys, "image", name, str(image), *args)
    assert twin
    assert twin == run(capsys, "-p", f"image:{image}", name, *args)


def test_cli_ls_lists_one_folder(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "image", "ls", str(image)).split() == [
        "boot.py", "data/", "empty-folder/", "lib/", "main.py"]
    assert run(capsys, "image", "ls", str(image), "/lib").split() == [
        "__init__.py", "deep/", "util.py"]
    long = run(capsys, "image", "ls", "-l", str(image), "/lib/util.py")
    assert long.split()[0] == str(len(b"def f():\n    return 1\n" * 6))
    assert long.rstrip().endswith("util.py")


def test_cli_ls_shows_times_in_utc_whatever_the_host_zone(
        image: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    with open_image(str(image)) as target:
        mtime = target.stat("/main.py").mtime
    assert mtime is not None
    expected = time.strftime("%Y-%m-%d %H:%M", time.gmtime(mtime))
    try:
        for zone in ("UTC0", "FAR-13:45"):  # POSIX zones (no tz database): UTC and UTC+13:45
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            assert expected in run(capsys, "image", "ls", "-l", str(image), "/main.py")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_cli_tree_shows_everything(image: Path, source: tuple[Path, dict],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = run(capsys, "image", "tree", str(image))
    assert out.splitlines()[0] == "/"
    assert any(line.endswith("blob.bin  (100.0 KiB)") for line in out.splitlines())
    for rel in source[1]:
        assert Path(rel).name in out


def test_cli_cat_writes_the_bytes(image: Path, capsysbinary: pytest.CaptureFixture[bytes],
                                  source: tuple[Path, dict]) -> None:
    capsysbinary.readouterr()
    assert main(["image", "cat", str(image), "/lib/deep/small.bin"]) == 0
    assert capsysbinary.readouterr().out == source[1]["lib/deep/small.bin"]


def test_cli_get_and_extract_copy_files_out(tmp_path: Path, image: Path,
                                            source: tuple[Path, dict],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root, content = source
    run(capsys, "image", "get", str(image), "/lib", str(tmp_path / "lib-copy"))
    assert (tmp_path / "lib-copy" / "deep" / "er" / "blob.bin").read_bytes() == content[
        "lib/deep/er/blob.bin"]
    (tmp_path / "into").mkdir()
    run(capsys, "image", "get", str(image), "/main.py", "/boot.py", str(tmp_path / "into"))
    assert (tmp_path / "into" / "main.py").read_bytes() == content["main.py"]
    assert (tmp_path / "into" / "boot.py").read_bytes() == content["boot.py"]

    run(capsys, "image", "extract", str(image), str(tmp_path / "all"))
    for rel, data in content.items():
        copy = tmp_path / "all" / rel
        assert copy.read_bytes() == data
        assert int(copy.stat().st_mtime) == int((root / rel).stat().st_mtime)
    assert (tmp_path / "all" / "empty-folder").is_dir()


def test_cli_df_and_info_report_the_geometry(image: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from mpkick.units import human

    with open_image(str(image)) as target:
        usage = target.usage()
    df = run(capsys, "image", "df", str(image)).splitlines()
    assert df[1].split()[:4] == [*human(usage.total).split(), *human(usage.total -
                                                                       usage.free).split()]
    info = run(capsys, "image", "info", str(image))
    assert "block size:   4096" in info and "block count:  128" in info
    assert "littlefs:     v2.0" in info


def test_a_twin_takes_no_port_option_since_its_image_is_the_target(
        image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["image", "ls", "-p", "sim://", str(image)]) != 0
    assert "-p" in capsys.readouterr().err


def test_every_image_command_has_help_with_an_example() -> None:
    group = cli.load_all()["image"]
    assert isinstance(group, click.Group)
    assert set(group.commands) >= {"build", "ls", "tree", "cat", "get", "df", "extract", "info"}
    for name, command in group.commands.items():
        assert command.help, name
        assert command.epilog and "Example:" in command.epilog and f"image {name}" in (
            command.epilog), name


# --- the virtual board boots an image -----------------------------------------------------------


def test_the_virtual_board_boots_a_built_image_and_sees_the_same_files(
        tmp_path: Path, source: tuple[Path, dict[str, bytes]]) -> None:
    import mpkick.board.board as board_mod
    image = tmp_path / "flash.img"
    build_image(source[0], str(image), size=256 * 1024)
    with open_image(str(image)) as target:
        host = target.tree(hashes=True)

    board = board_mod.Board.connect(f"sim://{image}")
    try:
        seen = board.tree("/", hashes=True)
    finally:
        board.close()
    assert [(e.path, e.is_dir, e.size, e.sha256) for e in sorted(seen)] == [
        (e.path, e.is_dir, e.size, e.sha256) for e in host]
    assert {e.path: e.mtime for e in seen if not e.is_dir} == {
        e.path: e.mtime for e in host if not e.is_dir}


def test_an_image_a_running_virtual_board_holds_is_refused(image: Path) -> None:
    import fcntl
    with open(image, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # what the virtual board does while it runs
        with pytest.raises(PortBusy, match="virtual board"):
            open_image(str(image))
    open_image(str(image)).close()
