"""Bad input and hostile trees through ``mpkick push``: one line of error, nothing changed.

Every check reads the board's flash back with littlefs-python (``faultlib.flash_files``), so
"nothing changed" is judged outside the code under test.
"""

from __future__ import annotations

import os
from pathlib import Path

import faultlib
import pytest

from mpkick.board.board import Board
from mpkick.cli import main


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A virtual board holding /app/keep.py and /outside.py."""
    u = f"sim://{tmp_path / 'flash.img'}"
    with Board.connect(u) as b, b.session() as s:
        s.mkdir("/app")
        s.put("/app/keep.py", b"keep = 1\n")
        s.put("/outside.py", b"mine = 1\n")
    return u


def image(url: str) -> Path:
    return Path(url[len("sim://"):])


def push(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["-p", url, "push", *args])
    return code, capsys.readouterr().err.strip()


def refused(url: str, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    before = faultlib.flash_files(image(url))
    code, err = push(url, capsys, *args)
    assert code != 0
    assert len(err.splitlines()) == 1 and err.startswith("mpkick:"), err
    assert faultlib.flash_files(image(url)) == before
    return err


def test_missing_src(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(url, capsys, str(tmp_path / "nope"), "/app")


def test_dest_that_is_a_file(url: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    refused(url, capsys, str(tmp_path / "src"), "/app/keep.py")


def test_tree_bigger_than_free_flash_is_refused_before_writing(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"big{i}.bin").write_bytes(os.urandom(1 << 20))
    refused(url, capsys, str(src), "/app")


def test_a_name_the_board_cannot_hold(url: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ("n" * 250 + ".py")).write_text("x = 1\n")  # 253 bytes: over littlefs's name limit
    (src / "ok.py").write_text("x = 1\n")
    refused(url, capsys, str(src), "/app")


@pytest.mark.parametrize("dest", ["/app/../etc", "../up", "/app/./../../x"])
def test_dest_that_climbs_out_is_rejected(url: str, tmp_path: Path, dest: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("a = 1\n")
    refused(url, capsys, str(tmp_path / "src"), dest)


def test_symlinks_out_of_src_are_not_followed_unless_asked(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("private\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("a = 1\n")
    (src / "leak.txt").symlink_to(secret)
    code, _ = push(url, capsys, str(src), "/app")
    files = faultlib.flash_files(image(url))
    assert "/app/leak.txt" not in files and files.get("/app/a.py") == b"a = 1\n"
    code, err = push(url, capsys, str(src), "/app", "--follow-links")
    assert code == 0, err
    assert faultlib.flash_files(image(url))["/app/leak.txt"] == b"private\n"


def test_delete_never_removes_anything_outside_dest(
        url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "new.py").write_text("n = 1\n")
    code, err = push(url, capsys, str(src), "/app", "--delete")
    assert code == 0, err
    files = faultlib.flash_files(image(url))
    assert files == {"/app/new.py": b"n = 1\n", "/outside.py": b"mine = 1\n"}


def test_awkward_names_go_through_intact(url: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    names = ["with space.py", "quote'single.py", 'quote"double.py', "back\\slash.py",
             "ünïcödé-日本.py", "x');import os;os.remove('outside.py');('.py"]
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(names):
        (src / name).write_bytes(f"v = {i}\n".encode())
    code, err = push(url, capsys, str(src), "/app")
    assert code == 0, err
    files = faultlib.flash_files(image(url))
    for i, name in enumerate(names):
        assert files["/app/" + name] == f"v = {i}\n".encode()
    assert files["/outside.py"] == b"mine = 1\n"


def test_unplug_mid_push_exits_nonzero_and_the_next_push_completes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    for i in range(4):
        (src / "lib" / f"m{i}.py").write_bytes(os.urandom(30_000))
    img = tmp_path / "flash.img"
    code, err = push(f"sim://{img}?unplug_at=40000", capsys, str(src), "/app")
    assert code != 0 and len(err.splitlines()) == 1
    code, err = push(f"sim://{img}", capsys, str(src), "/app")
    assert code == 0, err
    files = faultlib.flash_files(img)
    assert {p: d for p, d in files.items() if p.startswith("/app/")} == {
        f"/app/lib/m{i}.py": (src / "lib" / f"m{i}.py").read_bytes() for i in range(4)}
