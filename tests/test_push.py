"""``mpkick push`` / ``kick()``: a project tree onto a board, only what changed, never a mix.

Every test pushes to the real MicroPython unix port through ``sim://`` (or to a littlefs image,
through the very same plan and apply).
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpkick import kick
from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.compile.compiler import CompileError
from mpkick.errors import InputError, NoSpaceError
from mpkick.ignore import DEFAULTS, IgnoreRules
from mpkick.image.target import open_image
from mpkick.sync.apply import Result
from mpkick.sync.plan import plan
from mpkick.sync.scan import scan_local
from mpkick.target import Entry, Target, is_within


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPKICK_CACHE_DIR", str(tmp_path / "cache"))


def make(root: Path, files: dict[str, bytes | str]) -> Path:
    """A project folder holding ``files`` (relative path -> content)."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
    return root


def on_board(target: Target, dest: str = "/") -> dict[str, bytes | None]:
    """Every path under ``dest`` (folders as None, files with their content), mpkick's own
    /.mpkick left out, relative to ``dest``."""
    out: dict[str, bytes | None] = {}
    for e in target.tree(dest):
        if is_within(e.path, "/.mpkick"):
            continue
        rel = posixpath.relpath(e.path, dest)
        out[rel] = None if e.is_dir else target.read(e.path)
    return out


def on_host(root: Path) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
            for p in root.rglob("*")}


def counters(board: Board) -> tuple[int, int]:
    c: Any = board.transport
    return c.counters.host_to_board, c.counters.board_to_host


PROJECT = {"main.py": "import app\napp.run()\n", "app.py": "def run():\n    print('hi')\n",
           "lib/util/__init__.py": "X = 1\n", "lib/util/deep/more.py": "Y = 2\n",
           "assets/logo.bin": bytes(range(256)) * 40}


# --------------------------------------------------------------------------- the basics

names = st.text(st.characters(codec="utf-8", exclude_characters="/\\\t\n\r\x00.",
                              exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
# Only names a push keeps: a folder called ``~`` or ``x.swp`` is dropped by the default ignore
# rules, on purpose, so the generator must not expect it on the board.
_DEFAULT_RULES = IgnoreRules(DEFAULTS)
kept_names = names.filter(lambda n: not _DEFAULT_RULES.ignored(n, True)
                          and not _DEFAULT_RULES.ignored(n + ".txt", False))
trees = st.dictionaries(
    st.lists(st.sampled_from(["a", "b c", "it's", "é", "日本"]) | kept_names,
             min_size=1, max_size=3).map(lambda parts: "/".join(parts) + ".txt"),
    st.binary(max_size=3000), min_size=1, max_size=8)


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(files=trees)
@pytest.mark.board_needs("folders")
def test_any_tree_pushed_equals_the_board_byte_for_byte(board: Board, tmp_path_factory: Any,
                                                        files: dict[str, bytes]) -> None:
    # Each example pushes with --delete onto what the previous one left: any tree onto any tree.
    files = {k: v for k, v in files.items()
             if not any(k.startswith(o[:-4] + "/") for o in files)}  # no file is also a folder
    src = make(tmp_path_factory.mktemp("src"), dict(files))
    kick(src=src, dest="/", delete=True, target=board)
    assert on_board(board) == on_host(src)


@pytest.mark.board_needs("folders")
def test_a_second_push_sends_no_file_data(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", PROJECT)
    first = kick(src=src, target=board)
    assert (first.created, first.bytes_sent) == (5, sum(len(v) for v in map(
        lambda d: d.encode() if isinstance(d, str) else d, PROJECT.values())))
    again = kick(src=src, target=board)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 5)
    assert again.bytes_sent == 0 and again.wire_bytes == 0


@pytest.mark.sim_only("counts the bytes on the sim's link")
def test_a_second_push_is_one_small_exchange(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", PROJECT)
    kick(src=src, target=board)
    before = counters(board)
    kick(src=src, target=board)
    sent, received = (a - b for a, b in zip(counters(board), before, strict=True))
    assert sent < 200 and received < 1500  # one tree listing, nothing else


@pytest.mark.board_needs("folders")
def test_after_an_edit_only_the_changed_file_travels(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", PROJECT)
    kick(src=src, target=board)
    (src / "lib/util/deep/more.py").write_text("Y = 21\n")
    result = kick(src=src, target=board)
    assert [a.path for a in result.plan.writes] == ["/lib/util/deep/more.py"]
    assert (result.updated, result.unchanged, result.bytes_sent) == (1, 4, 7)
    assert board.read("/lib/util/deep/more.py") == b"Y = 21\n"


@pytest.mark.board_needs("folders")
def test_a_push_that_ran_out_of_ram_part_way_reports_each_file_it_wrote_once(
        tmp_path: Path) -> None:
    # The first session runs out of RAM at its fourth file; the next one finds the first
    # three written and sends the rest: the result says six created, not three, nor nine.
    from memtarget import MemTarget

    for i in range(6):
        (tmp_path / f"f{i}.py").write_text(f"x = {i}\n")
    target = MemTarget()
    target.out_of_ram_at = 4
    said: list[str] = []
    result = kick(src=tmp_path, target=target, log=said.append)
    assert (result.created, result.updated, result.unchanged) == (6, 0, 0)
    assert result.bytes_sent == sum(len(f"x = {i}\n") for i in range(6))
    assert any("ran out of RAM" in line for line in said)
    assert sorted(target.files) == [f"/f{i}.py" for i in range(6)]


def test_nested_folders_and_a_missing_dest_are_created(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", PROJECT)
    kick(src=src, dest="/apps/demo", target=board)
    assert on_board(board, "/apps/demo") == on_host(src)


def test_the_kick_api_takes_a_port_and_a_source_like_pybkick(sim_url: str,
                                                             tmp_path: Path) -> None:
    src = make(tmp_path / "p", {"boot.py": "# hi\n"})
    result = kick(sim_url, str(src))
    assert isinstance(result, Result) and result.created == 1
    with Board.connect(sim_url) as board:
        assert board.read("/boot.py") == b"# hi\n"


# --------------------------------------------------------------------------- what goes, what stays


@pytest.mark.board_needs("folders")
def test_ignore_rules_keep_host_files_on_the_host(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", {
        "main.py": "", ".gitignore": "*.log\nbuild/\n", ".mpkickignore": "docs/\n",
        "run.log": "x", "build/out.py": "", "docs/index.md": "", "__pycache__/m.pyc": "",
        ".git/HEAD": "", "main.py.swp": "", "notes.txt~": "", "keep/secret.env": "",
        "keep/ok.py": ""})
    kick(src=src, target=board, ignore=["*.env"])
    assert sorted(on_board(board)) == ["keep", "keep/ok.py", "main.py"]


@pytest.mark.board_needs("folders")
def test_delete_removes_stale_files_under_dest_only(board: Board, tmp_path: Path) -> None:
    board.write("/outside.py", b"mine")
    src = make(tmp_path / "p", {"a.py": "1", "sub/b.py": "2"})
    kick(src=src, dest="/app", target=board)
    board.write("/app/stale.py", b"old")
    (src / "sub/b.py").unlink()
    (src / "sub").rmdir()
    result = kick(src=src, dest="/app", delete=True, target=board)
    assert result.deleted == 3  # stale.py, sub/b.py and the folder sub
    assert on_board(board, "/app") == {"a.py": b"1"}
    assert board.read("/outside.py") == b"mine"


@pytest.mark.board_needs("folders")  # a flat board keeps no /.mpkick
def test_delete_at_the_root_never_touches_mpkicks_own_folder(board: Board,
                                                             tmp_path: Path) -> None:
    src = make(tmp_path / "p", {"a.py": "1"})
    kick(src=src, target=board)
    kept = sorted(e.path for e in board.tree("/.mpkick"))
    board.write("/stale.py", b"x")
    result = kick(src=src, target=board, delete=True)
    assert [a.path for a in result.plan.of("delete", "rmdir")] == ["/stale.py"]
    assert sorted(e.path for e in board.tree("/.mpkick")) == kept


def test_plan_never_reaches_outside_dest() -> None:
    local = scan_local(make_tmp({"a.py": "1"}), IgnoreRules([]))
    remote = [Entry("/app/x.py", False, 1, None, "00"), Entry("/other.py", False, 1),
              Entry("/.mpkick", True), Entry("/.mpkick/manifest", False, 9)]
    actions = plan(local, remote, "/app", delete=True).actions
    assert [(a.kind, a.path) for a in actions] == [("delete", "/app/x.py"),
                                                   ("create", "/app/a.py")]
    with pytest.raises(InputError, match="mpkick's own folder"):
        plan(local, [], "/.mpkick", delete=True)


def make_tmp(files: dict[str, bytes | str]) -> Path:
    import tempfile

    return make(Path(tempfile.mkdtemp(prefix="mpkick-test-")), files)


@pytest.mark.board_needs("folders")
def test_dry_run_shows_the_plan_and_changes_nothing(board: Board, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = make(tmp_path / "p", {"a.py": "1", "b/c.py": "2"})
    kick(src=src, target=board)
    board.write("/stale.py", b"x")
    (src / "a.py").write_text("11")
    before = on_board(board)
    result = kick(src=src, target=board, delete=True, dry_run=True)
    assert result.dry_run and on_board(board) == before
    assert [(a.kind, a.path) for a in result.plan.actions if a.kind != "unchanged"] == [
        ("delete", "/stale.py"), ("update", "/a.py")]
    assert "update    /a.py  1 B -> 2 B" in str(result.plan)


# --------------------------------------------------------------------------- mistakes


def test_dest_that_is_a_file_is_one_line_error(sim_url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    with Board.connect(sim_url) as board:
        board.write("/app", b"a file")
    src = make(tmp_path / "p", {"a.py": "1"})
    assert main(["-p", sim_url, "push", str(src), "/app"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mpkick: /app is a file on the board")


def test_missing_src_is_one_line_error(sim_url: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", sim_url, "push", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_a_tree_bigger_than_the_free_flash_is_refused_before_writing(tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'small.img'}?size=256K"
    src = make(tmp_path / "p", {"big.bin": bytes(300_000), "a.py": "1"})
    with Board.connect(url) as board:
        before = on_board(board)
        with pytest.raises(NoSpaceError, match="nothing was written"):
            kick(src=src, target=board)
        assert on_board(board) == before


# --------------------------------------------------------------------------- atomicity


@pytest.mark.sim_only("cuts the sim's power")
def test_a_power_cut_mid_push_leaves_every_file_old_or_new(sim_url: str,
                                                           tmp_path: Path) -> None:
    rng = __import__("random").Random(7)
    old = {f"f{i}.bin": rng.randbytes(40_000) for i in range(5)}
    new = {k: rng.randbytes(60_000) for k in old}
    src = make(tmp_path / "p", old)
    with Board.connect(sim_url) as board:
        kick(src=src, target=board)
        make(src, new)
        sent = [0]
        link: Any = board.transport
        sim = link.board

        def cut(_action: Any, n: int) -> None:
            sent[0] += n
            if sent[0] > 130_000:  # in the middle of the third file
                sim.power_cut()

        with pytest.raises(Exception):  # noqa: B017 - whatever the dying link raises
            kick(src=src, target=board, progress=cut)
    with Board.connect(sim_url) as board:
        seen = on_board(board)
    for name in old:
        assert seen[name] in (old[name], new[name]), name
    assert any(seen[n] == old[n] for n in old)  # the cut did happen mid-push
    with Board.connect(sim_url) as board:  # and the next push repairs everything
        kick(src=src, target=board)
        assert on_board(board) == on_host(src)


# --------------------------------------------------------------------------- older boards


def test_an_old_board_without_hashlib_raw_paste_or_deflate(tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'old.img'}?profile=old"
    src = make(tmp_path / "p", PROJECT)
    with Board.connect(url) as board:
        assert not board.caps.hashlib and not board.caps.compress
        first = kick(src=src, target=board)
        assert on_board(board) == on_host(src)
        again = kick(src=src, target=board)
        assert (again.bytes_sent, again.unchanged) == (0, 5)
        # Same size, same byte sum: only a sha256 tells these apart; the host record does.
        (src / "app.py").write_text("def run():\n    print('ih')\n")
        edit = kick(src=src, target=board)
        assert [a.path for a in edit.plan.writes] == ["/app.py"]
        assert board.read("/app.py") == (src / "app.py").read_bytes()
    assert first.created == 5


def test_a_microbit_holds_flat_files_written_in_place_and_verified(tmp_path: Path) -> None:
    # The micro:bit's 16 KB heap holds the agent on its 32-bit MicroPython; the 64-bit unix
    # port needs about twice the RAM for the same objects, hence heap=128K here.
    url = f"sim://{tmp_path / 'mb.img'}?profile=microbit&heap=128K"
    src = make(tmp_path / "p", {"main.py": "print('hi')\n", "data.txt": "x" * 5000})
    with Board.connect(url) as board:
        assert not (board.caps.rename or board.caps.mkdir or board.caps.stat)
        kick(src=src, target=board)
        assert on_board(board) == on_host(src)
        assert kick(src=src, target=board).bytes_sent == 0
        (src / "main.py").write_text("print('ho')\n")
        assert kick(src=src, target=board).updated == 1
        assert board.exec("exec(open('main.py').read())").strip() == b"ho"
        (src / "lib").mkdir()
        (src / "lib/m.py").write_text("")
        with pytest.raises(InputError, match="no folders"):
            kick(src=src, target=board)


# --------------------------------------------------------------------------- other targets


def test_an_image_target_gets_the_very_same_push(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = make(tmp_path / "p", PROJECT)
    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    assert main(["-p", f"image:{img}", "push", str(src), "/"]) == 0
    assert "5 created" in capsys.readouterr().out
    with open_image(str(img)) as target:
        assert on_board(target) == on_host(src)
        (src / "app.py").write_text("changed\n")
        result = kick(src=src, target=target, delete=True)
        assert (result.updated, result.unchanged) == (1, 4)


# --------------------------------------------------------------------------- compile and run


def test_compile_sends_mpy_and_removes_the_stale_twin(board: Board, tmp_path: Path) -> None:
    src = make(tmp_path / "p", {"main.py": "import m\nprint(m.f())\n",
                                "m.py": "def f():\n    return 'compiled'\n"})
    kick(src=src, target=board)
    result = kick(src=src, target=board, compile=True)
    assert sorted(on_board(board)) == ["m.mpy", "main.py"]
    assert ("delete", "/m.py") in [(a.kind, a.path) for a in result.plan.actions]
    assert board.exec("import m\nprint(m.f(), m.__file__)").split() == [b"compiled", b"m.mpy"]


def test_a_syntax_error_stops_compile_before_anything_is_sent(board: Board,
                                                               tmp_path: Path) -> None:
    src = make(tmp_path / "p", {"good.py": "x = 1\n", "bad.py": "def (:\n"})
    with pytest.raises(CompileError, match=r"bad\.py"):
        kick(src=src, target=board, compile=True)
    assert on_board(board) == {}


@pytest.mark.board_needs("folders")
def test_push_then_run_streams_the_program_output(sim_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    examples = Path(__file__).parent.parent / "examples"
    assert main(["-p", sim_url, "push", str(examples), "/", "--delete", "--run",
                 "main.py"]) == 0
    out = capsys.readouterr().out
    assert "created" in out and "| mpkick demo |" in out and "HELLO FROM THE FLASH!" in out


@pytest.mark.board_needs("folders")
def test_config_gives_the_defaults(sim_url: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    make(tmp_path / "proj", {"mpkick.toml": f'port = "{sim_url}"\nsrc = "code"\n'
                                            'dest = "/app"\nignore = ["*.md"]\n',
                             "code/main.py": "print(1)\n", "code/README.md": "x"})
    monkeypatch.chdir(tmp_path / "proj")
    assert main(["push"]) == 0
    assert "1 created" in capsys.readouterr().out
    with Board.connect(sim_url) as board:
        assert on_board(board, "/app") == {"main.py": b"print(1)\n"}


def test_local_sha256_is_what_the_plan_compares(tmp_path: Path) -> None:
    tree = scan_local(make(tmp_path / "p", {"a": b"abc"}), IgnoreRules([]))
    assert tree.files["a"].sha256 == hashlib.sha256(b"abc").hexdigest()


def test_links_outside_src_or_back_up_are_left_out_and_links_inside_are_followed(
        tmp_path: Path) -> None:
    from mpkick.ignore import IgnoreRules

    src, elsewhere = tmp_path / "src", tmp_path / "elsewhere"
    (src / "lib").mkdir(parents=True)
    elsewhere.mkdir()
    (src / "lib" / "a.py").write_text("A = 1\n")
    (elsewhere / "secret.txt").write_text("host only\n")
    (src / "out").symlink_to(elsewhere)  # a host folder: not for the board
    (src / "lib" / "loop").symlink_to(src)  # back up the tree: would never end
    (src / "alias").symlink_to(src / "lib")  # inside SRC: its files go too
    tree = scan_local(src, IgnoreRules.from_folder(src))
    assert sorted(tree.files) == ["alias/a.py", "lib/a.py"]
    assert sorted(tree.skipped) == ["alias/loop", "lib/loop", "out"]
    followed = scan_local(src, IgnoreRules.from_folder(src), follow_links=True)
    assert "out/secret.txt" in followed.files and "lib/loop" in followed.skipped
