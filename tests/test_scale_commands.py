"""Every command works on a 1,000-file, 4.6 MB project, from an ESP8266's heap to 2 MB.

``heap=64K`` on the 64-bit unix port is about what a 32-bit board with 30 kB free holds. The
project (``bench/largework.py``) is built into a 16 MB image once with ``mpkick image build``;
each test boots its own copy, so no test sees another's changes. Every result is checked
against the files, byte for byte.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from largework import generate_large
from needs import missing
from test_mount import _fuse_missing, mounted
from workload import Workload

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.image.target import open_image
from mpkick.push import kick
from mpkick.target import META, is_within
from mpkick.watch import Event, Pushed, Watcher

#: An ESP8266's heap on the 64-bit port, and the virtual board's default (a roomy ESP32).
HEAPS = ("64K", "2M")


@pytest.fixture(params=HEAPS)
def heap(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workload, Path, Path]:
    """The large project on the host, and the 16 MB image ``mpkick image build`` made of it."""
    root = tmp_path_factory.mktemp("large")
    work = generate_large()
    src = root / "src"
    work.write(src)
    image = root / "built.img"
    assert main(["image", "build", str(src), "-o", str(image), "--size", "16M"]) == 0
    return work, src, image


def fresh(built: tuple[Workload, Path, Path], tmp_path: Path, heap: str) -> str:
    """A virtual board with ``heap`` booting its own copy of the built image."""
    copy = tmp_path / "flash.img"
    shutil.copyfile(built[2], copy)
    return f"sim://{copy}?heap={heap}"


def user_files(url_or_image: Path | Board) -> dict[str, bytes]:
    """Every file outside mpkick's own folder, read back through the target."""
    target = url_or_image if isinstance(url_or_image, Board) else open_image(str(url_or_image))
    try:
        return {e.path.lstrip("/"): target.read(e.path) for e in target.tree("/")
                if not e.is_dir and not is_within(e.path, META)}
    finally:
        if not isinstance(url_or_image, Board):
            target.close()


def test_image_build_holds_the_project_byte_for_byte(built: tuple[Workload, Path, Path]) -> None:
    work, _src, image = built
    assert len(work.files) > 900
    assert user_files(image) == work.files


def test_image_push_then_nothing_changed_sends_nothing(built: tuple[Workload, Path, Path],
                                                       tmp_path: Path) -> None:
    work, src, _ = built
    image = tmp_path / "pushed.img"
    (tmp_path / "empty").mkdir()
    assert main(["image", "build", str(tmp_path / "empty"), "-o", str(image), "--size", "16M"]) \
        == 0
    first = kick(port=f"image:{image}", src=src)
    assert first.created == len(work.files)
    assert kick(port=f"image:{image}", src=src).bytes_sent == 0
    assert user_files(image) == work.files


def test_tree_ls_r_and_get_see_every_file(heap: str, built: tuple[Workload, Path, Path],
                                          tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    work, _src, _ = built
    url = fresh(built, tmp_path, heap)
    capsys.readouterr()
    assert main(["-p", url, "ls", "-r", "/"]) == 0
    listed = capsys.readouterr().out
    for rel in list(work.files)[::50]:
        assert "/" + rel in listed or rel in listed
    assert main(["-p", url, "tree", "/lib/net"]) == 0
    tree = capsys.readouterr().out
    assert "protocol.py" in tree
    out = tmp_path / "copy"
    assert main(["-p", url, "get", "/lib", str(out)]) == 0
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == {rel[len("lib/"):]: data for rel, data in work.files.items()
                   if rel.startswith("lib/")}


def test_a_board_that_got_its_files_elsewhere_is_hashed_once_then_pushes_nothing(
        heap: str, built: tuple[Workload, Path, Path], tmp_path: Path) -> None:
    """The board's files came from an image, not from mpkick: the first push hashes them all
    on the board (streaming, at 64K) and sends no file data, and so does the next."""
    _work, src, _ = built
    with Board.connect(fresh(built, tmp_path, heap)) as board:
        assert kick(src=src, target=board).bytes_sent == 0
        assert kick(src=src, target=board).bytes_sent == 0


def test_watch_pushes_a_save_into_the_large_tree(heap: str, built: tuple[Workload, Path, Path],
                                                 tmp_path: Path) -> None:
    work, src0, _ = built
    src = tmp_path / "src"
    shutil.copytree(src0, src)
    url = fresh(built, tmp_path, heap)
    seen: list[Event] = []
    pushed = threading.Event()

    def on_event(event: Event) -> None:
        seen.append(event)
        if isinstance(event, Pushed) and event.written:
            pushed.set()

    watcher = Watcher(url, src, "/", on_event=on_event)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(300), seen
        work.apply_edit(src)
        assert pushed.wait(120), seen
    finally:
        watcher.stop.set()
        thread.join(30)
    done = [e for e in seen if isinstance(e, Pushed) and e.written]
    assert done[-1].written == ["/" + work.edit_path]
    with Board.connect(url) as board:
        assert board.read("/" + work.edit_path) == work.edited


def test_mount_lists_reads_and_writes_the_large_tree(heap: str, built: tuple[Workload, Path, Path],
                                                     tmp_path: Path) -> None:
    reason = _fuse_missing()
    if reason:
        missing(reason)
    work, _src, _ = built
    with Board.connect(fresh(built, tmp_path, heap)) as board:
        with mounted(board, tmp_path / "mnt") as m:
            names = {os.path.relpath(os.path.join(d, f), m.mp)
                     for d, _dirs, files in os.walk(m.mp) for f in files}
            assert names == set(work.files)
            assert m.p(work.edit_path).read_bytes() == work.files[work.edit_path]
            m.p(work.edit_path).write_bytes(work.edited)
        assert board.read("/" + work.edit_path) == work.edited
