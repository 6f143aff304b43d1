"""The ``Target`` contract (``src/mpkick/target.py``), one set of specifications for every target.

push, watch, mount, image and install are each written once against ``Target``; they are only
right if every target keeps the same promises. Each spec below runs on the virtual board
(``sim://``), a littlefs image file, the in-memory target (``memtarget.py``) and the BBC
micro:bit's real firmware under QEMU; with ``--port URL``, on the board at URL instead of the
two boards. What a target cannot do (the micro:bit has a flat flash, no os.rename, no
os.statvfs) is what it declares in ``target.features``, never probed: a spec that needs it does
not run there, and says why.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest
from memtarget import MemTarget
from needs import Abilities, abilities, clear

from mpkick.board.board import Board
from mpkick.errors import InputError, MpkickError
from mpkick.image.target import open_image
from mpkick.target import META, Target, is_within, makedirs, norm, remove_tree

#: What each known target must declare it can do (``target.features``, plus room for big
#: files): the specs read the declaration, and the first spec checks it against this.
EXPECTED = {
    "sim": Abilities(folders=True, atomic=True, strong_hashes=True, rename=True, usage=True,
                    big_files=True),
    "image": Abilities(folders=True, atomic=True, strong_hashes=True, rename=True, usage=True,
                      big_files=True),
    "memory": Abilities(folders=True, atomic=True, strong_hashes=True, rename=True, usage=True,
                       big_files=True),
    "microbit": Abilities(folders=False, atomic=False, strong_hashes=False, rename=False,
                         usage=False, big_files=False),
}

#: More than one binary frame (and one image chunk) holds.
BIG = 200_000
ALL_BYTES = bytes(range(256))


class Subject(NamedTuple):
    name: str
    target: Target
    features: Abilities


def _targets(config: pytest.Config) -> list[str]:
    boards = ["port"] if config.getoption("--port") else ["sim", "microbit"]
    return [boards[0], "image", "memory", *boards[1:]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "connected" in metafunc.fixturenames:
        metafunc.parametrize("connected", _targets(metafunc.config), indirect=True,
                             scope="module")


@pytest.fixture(scope="module")
def connected(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Subject]:
    """One target of each kind for the whole module (the boards are connected once)."""
    name: str = request.param
    folder = tmp_path_factory.mktemp(name)
    target: Target
    if name == "sim":
        target = Board.connect(f"sim://{folder / 'flash.img'}")
    elif name == "image":
        target = open_image(str(folder / "fs.img"), create=True, size=4 << 20)
    elif name == "memory":
        target = MemTarget()
    elif name == "microbit":
        target = Board.connect(request.getfixturevalue("microbit_port"))
    else:
        target = Board.connect(request.getfixturevalue("port_url"))
    try:
        yield Subject(name, target, abilities(target))
    finally:
        target.close()


@pytest.fixture
def subject(connected: Subject) -> Subject:
    """The module's target, emptied (mpkick's own /.mpkick on a board stays)."""
    clear(connected.target)
    return connected


@pytest.fixture
def fs(subject: Subject) -> Target:
    return subject.target


def require(subject: Subject, *wanted: str) -> None:
    """Skip the calling spec on a target that lacks any of the ``wanted`` features."""
    have = subject.features._asdict()
    lacking = [w for w in wanted if not have[w]]
    if lacking:
        pytest.skip(f"{subject.name} lacks {', '.join(lacking)}")


def test_each_target_declares_what_it_can_do(connected: Subject) -> None:
    """The declaration is the truth the specs below rely on: it says what the micro:bit
    lacks (folders, rename, atomic writes, sha256, free space) and that the others lack none."""
    if connected.name == "port":
        pytest.skip("a --port board declares what its firmware's probe found")
    assert connected.features == EXPECTED[connected.name]


def user_files(target: Target, path: str = "/") -> list[str]:
    return [e.path for e in target.tree(path) if not is_within(e.path, META)]


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name, data", [
    ("/empty", b""),
    ("/all-bytes.bin", ALL_BYTES * 4),
    ("/line-ends.txt", b"a\r\nb\nc\rd\x00\x1a\x03\x04\x1b[0m"),
    ("/héllo wörld 日本.txt", "grüße, 世界\n".encode()),
])
def test_a_file_reads_back_byte_for_byte(fs: Target, name: str, data: bytes) -> None:
    fs.write(name, data)
    assert fs.read(name) == data
    assert fs.stat(name).size == len(data) and not fs.stat(name).is_dir
    assert [(e.path, e.size, e.is_dir) for e in fs.tree("/") if e.path == name] == \
        [(name, len(data), False)]


def test_a_file_of_many_frames_reads_back_byte_for_byte(subject: Subject) -> None:
    require(subject, "big_files")
    data = os.urandom(BIG) + ALL_BYTES * 100
    subject.target.write("/big.bin", data)
    assert subject.target.read("/big.bin") == data
    assert subject.target.stat("/big.bin").size == len(data)


def test_progress_counts_every_byte_once(fs: Target) -> None:
    seen: list[int] = []
    data = ALL_BYTES * 12
    fs.write("/p.bin", data, progress=seen.append)
    assert sum(seen) == len(data)


def test_tree_hashes_are_the_sha256_of_the_content_or_its_weak_sum(subject: Subject) -> None:
    """A target without hashlib answers with the weak sum it can compute (what such boards
    are checked by), in a form no sha256 can be mistaken for."""
    from mpkick.protocol.channel import file_digest

    files = {"/a.txt": b"alpha", "/b.bin": ALL_BYTES, "/empty": b""}
    for path, data in files.items():
        subject.target.write(path, data)
    listed = {e.path: e for e in subject.target.tree("/", hashes=True)}
    got = {path: listed[path].sha256 for path in files}
    if subject.features.strong_hashes:
        assert got == {p: hashlib.sha256(d).hexdigest() for p, d in files.items()}
    else:
        assert got == {p: file_digest(d, False) for p, d in files.items()}
        assert all(str(v).startswith("sum:") for v in got.values())
    assert {p: listed[p].size for p in files} == {p: len(d) for p, d in files.items()}


def test_the_root_is_a_folder(fs: Target) -> None:
    assert fs.stat("/").is_dir


# --------------------------------------------------------------------------- whole writes


def test_a_shorter_write_leaves_no_tail_of_the_longer_file(fs: Target) -> None:
    fs.write("/f.txt", b"0123456789" * 50)
    fs.write("/f.txt", b"short")
    assert fs.read("/f.txt") == b"short"
    assert fs.stat("/f.txt").size == 5
    fs.write("/f.txt", b"")
    assert fs.read("/f.txt") == b""


def test_a_write_cut_short_leaves_the_old_content_or_the_new(subject: Subject) -> None:
    require(subject, "atomic")
    fs = subject.target
    old, new = b"old " * 1000, os.urandom(BIG if subject.features.big_files else 6000)

    def cut(_done: int) -> None:
        raise KeyboardInterrupt

    fs.write("/f.bin", old)
    with pytest.raises(KeyboardInterrupt):
        fs.write("/f.bin", new, progress=cut)
    assert fs.read("/f.bin") in (old, new)
    assert user_files(fs) == ["/f.bin"]  # nothing written aside is left behind
    fs.write("/f.bin", b"after")  # and the target still works
    assert fs.read("/f.bin") == b"after"


# --------------------------------------------------------------------------- trees


def test_tree_lists_every_entry_once_and_never_the_path_itself(subject: Subject) -> None:
    require(subject, "folders")
    fs = subject.target
    for folder in ("/a", "/a/b", "/a/b/c", "/a/empty", "/z"):
        fs.mkdir(folder)
    files = {"/a/1.txt": b"1", "/a/b/2.txt": b"22", "/a/b/c/3.txt": b"333", "/top.txt": b""}
    for path, data in files.items():
        fs.write(path, data)
    listed = fs.tree("/a")
    paths = [e.path for e in listed]
    assert sorted(paths) == ["/a/1.txt", "/a/b", "/a/b/2.txt", "/a/b/c", "/a/b/c/3.txt",
                             "/a/empty"]
    assert {e.path: e.is_dir for e in listed} == {p: p not in files for p in paths}
    everything = user_files(fs)
    assert len(everything) == len(set(everything)) == 9 and "/" not in everything
    assert {e.path: e.size for e in fs.tree("/") if not e.is_dir and e.path in files} == \
        {p: len(d) for p, d in files.items()}
    assert fs.tree("/a/empty") == []
    assert fs.stat("/a/b").is_dir
    assert (fs.stat("/a/b/2.txt").is_dir, fs.stat("/a/b/2.txt").size) == (False, 2)


def test_a_flat_tree_lists_every_file_once(fs: Target) -> None:
    names = [f"/f{i}.py" for i in range(6)]
    for i, path in enumerate(names):
        fs.write(path, b"x" * i)
    assert sorted(user_files(fs)) == names


def test_tree_of_a_file_or_of_nothing_is_refused(fs: Target) -> None:
    fs.write("/f", b"x")
    _raises(NotADirectoryError, errno.ENOTDIR, lambda: fs.tree("/f"), "/f")
    _raises(FileNotFoundError, errno.ENOENT, lambda: fs.tree("/nothing"), "/nothing")


# --------------------------------------------------------------------------- mistakes


def _raises(kind: type[OSError], code: int, call: Callable[[], object], path: str) -> None:
    """``call`` fails with ``kind`` and ``code`` and names ``path``."""
    with pytest.raises(kind) as caught:
        call()
    assert caught.value.errno == code
    assert caught.value.filename == path


@pytest.mark.parametrize("what", ["read", "stat", "remove"])
def test_a_missing_file_is_file_not_found(fs: Target, what: str) -> None:
    call = getattr(fs, what)
    _raises(FileNotFoundError, errno.ENOENT, lambda: call("/missing.py"), "/missing.py")


def test_folder_mistakes_each_raise_their_own_error(subject: Subject) -> None:
    require(subject, "folders")
    fs = subject.target
    fs.mkdir("/d")
    fs.write("/d/x", b"x")
    fs.write("/f", b"f")
    _raises(IsADirectoryError, errno.EISDIR, lambda: fs.read("/d"), "/d")
    _raises(IsADirectoryError, errno.EISDIR, lambda: fs.remove("/d"), "/d")
    _raises(IsADirectoryError, errno.EISDIR, lambda: fs.write("/d", b"y"), "/d")
    _raises(OSError, errno.ENOTEMPTY, lambda: fs.rmdir("/d"), "/d")
    _raises(NotADirectoryError, errno.ENOTDIR, lambda: fs.rmdir("/f"), "/f")
    _raises(FileNotFoundError, errno.ENOENT, lambda: fs.rmdir("/nope"), "/nope")
    _raises(FileExistsError, errno.EEXIST, lambda: fs.mkdir("/d"), "/d")
    _raises(FileExistsError, errno.EEXIST, lambda: fs.mkdir("/f"), "/f")
    _raises(FileNotFoundError, errno.ENOENT, lambda: fs.write("/nope/x", b"x"), "/nope/x")
    _raises(FileNotFoundError, errno.ENOENT, lambda: fs.mkdir("/nope/y"), "/nope/y")
    _raises(NotADirectoryError, errno.ENOTDIR, lambda: fs.write("/f/x", b"x"), "/f/x")
    # and nothing changed
    assert sorted(user_files(fs)) == ["/d", "/d/x", "/f"]
    assert (fs.read("/d/x"), fs.read("/f")) == (b"x", b"f")


def test_what_a_flat_target_cannot_do_is_refused_by_name(subject: Subject) -> None:
    if subject.features.folders:
        pytest.skip(f"{subject.name} has folders")
    fs = subject.target
    with pytest.raises(InputError, match="folders"):
        fs.mkdir("/lib")
    with pytest.raises(InputError, match="folders"):
        fs.write("/lib/x.py", b"x")
    with pytest.raises(InputError, match="folders"):
        fs.rmdir("/lib")
    assert user_files(fs) == []


def test_rename_moves_a_file_and_replaces_one_at_the_destination(subject: Subject) -> None:
    require(subject, "rename")
    fs = subject.target
    fs.write("/a", b"new")
    fs.write("/b", b"old content, longer")
    fs.rename("/a", "/b")
    assert fs.read("/b") == b"new"
    assert user_files(fs) == ["/b"]
    _raises(FileNotFoundError, errno.ENOENT, lambda: fs.rename("/a", "/c"), "/a")


def test_rename_moves_a_folder_with_everything_in_it(subject: Subject) -> None:
    require(subject, "rename", "folders")
    fs = subject.target
    makedirs(fs, "/src/deep")
    fs.write("/src/deep/x.py", b"x")
    fs.rename("/src", "/dst")
    assert sorted(user_files(fs)) == ["/dst", "/dst/deep", "/dst/deep/x.py"]
    assert fs.read("/dst/deep/x.py") == b"x"
    with pytest.raises(IsADirectoryError):
        fs.rename("/dst/deep/x.py", "/dst/deep")  # a file never replaces a folder
    assert fs.read("/dst/deep/x.py") == b"x"


def test_a_target_without_renaming_says_so(subject: Subject) -> None:
    if subject.features.rename:
        pytest.skip(f"{subject.name} can rename")
    subject.target.write("/a", b"a")
    with pytest.raises(MpkickError, match="renaming"):
        subject.target.rename("/a", "/b")
    assert subject.target.read("/a") == b"a"


# --------------------------------------------------------------------------- space


def test_usage_is_sane_and_free_space_drops_after_a_big_write(subject: Subject) -> None:
    require(subject, "usage")
    fs = subject.target
    before = fs.usage()
    assert before.block_size > 0 and 0 < before.free <= before.total
    size = min(BIG, before.free // 4)
    fs.write("/big.bin", os.urandom(size))
    after = fs.usage()
    assert after.total == before.total and after.block_size == before.block_size
    assert before.free - after.free >= size - before.block_size
    fs.remove("/big.bin")
    assert fs.usage().free > after.free


def test_a_target_without_statvfs_says_so(subject: Subject) -> None:
    if subject.features.usage:
        pytest.skip(f"{subject.name} reports its space")
    with pytest.raises(MpkickError, match="statvfs"):
        subject.target.usage()


# --------------------------------------------------------------------------- helpers


def test_makedirs_makes_every_missing_parent_once(subject: Subject) -> None:
    require(subject, "folders")
    fs = subject.target
    makedirs(fs, "/a/b/c")
    makedirs(fs, "/a/b/c")  # already there: nothing to do
    makedirs(fs, "/a/b2")
    makedirs(fs, "/")
    assert sorted(user_files(fs)) == ["/a", "/a/b", "/a/b/c", "/a/b2"]
    fs.write("/a/f", b"")
    with pytest.raises(NotADirectoryError):
        makedirs(fs, "/a/f/g")


def test_remove_tree_removes_that_path_and_nothing_else(subject: Subject) -> None:
    fs = subject.target
    if subject.features.folders:
        makedirs(fs, "/gone/deep/er")
        for path in ("/gone/1", "/gone/deep/2", "/gone/deep/er/3"):
            fs.write(path, b"x")
        makedirs(fs, "/kept")
        fs.write("/kept/4", b"y")
        remove_tree(fs, "/gone")
        assert sorted(user_files(fs)) == ["/kept", "/kept/4"]
    fs.write("/file", b"z")
    remove_tree(fs, "/file")  # a file is removed as it is
    assert "/file" not in user_files(fs)
    with pytest.raises(FileNotFoundError):
        remove_tree(fs, "/file")


@pytest.mark.parametrize("given, base, want", [
    ("/", "/", "/"),
    ("main.py", "/", "/main.py"),
    ("lib//x/./y.py", "/app", "/app/lib/x/y.py"),
    ("/a/b/", "/ignored", "/a/b"),
    ("日本/é.py", "/", "/日本/é.py"),
])
def test_norm_gives_one_absolute_spelling(given: str, base: str, want: str) -> None:
    assert norm(given, base) == want


@pytest.mark.parametrize("bad", ["../x", "/a/../../b", "a/..", "x\x00y"])
def test_norm_refuses_climbing_out_and_nul_bytes(bad: str) -> None:
    with pytest.raises(InputError):
        norm(bad)


def test_every_target_meets_the_protocol(connected: Subject) -> None:
    assert isinstance(connected.target, Target)
