"""ROMFS: images MicroPython's own VfsRom mounts, deploys that write only what changed and
survive power cuts, and the virtual board's ROM partition as mpremote sees it."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from needs import missing

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import InputError, MpkickError
from mpkick.romfs import deploy as rom
from mpkick.romfs import image as romimage
from mpkick.romfs.source import collect
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard

BIN = Path(sys.executable).parent


def _writer() -> type:
    """MicroPython's own image writer, as mpremote ships it."""
    from mpremote.romfs import VfsRomWriter

    return VfsRomWriter  # type: ignore[no-any-return]


def _mpremote_image(files: dict[str, bytes], folders: list[str]) -> bytes:
    """What ``VfsRomWriter`` makes of the tree, walked as mpremote walks a folder."""
    writer = _writer()()
    tree: dict[str, object] = {}
    for folder in folders:
        node = tree
        for part in folder.split("/"):
            node = node.setdefault(part, {})  # type: ignore[assignment]
    for path, data in files.items():
        *parents, name = path.split("/")
        node = tree
        for part in parents:
            node = node.setdefault(part, {})  # type: ignore[assignment]
        node[name] = data

    def emit(node: dict[str, object]) -> None:
        for name in sorted(node):
            child = node[name]
            if isinstance(child, dict):
                writer.opendir(name)
                emit(child)
                writer.closedir()
            else:
                writer.mkfile(name, child)

    emit(tree)
    return bytes(writer.finalise())


def _project(root: Path, files: dict[str, bytes], folders: tuple[str, ...] = ()) -> Path:
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _rom_file(url: str) -> Path:
    return parse_url(url).romfs_path


def _board_files(board: Board, top: str = "/rom") -> dict[str, bytes]:
    """Every file MicroPython lists below ``top``, with the bytes it reads: the board's VfsRom,
    not mpkick's reader."""
    out = board.exec(
        "import os\n"
        "def _w(d):\n"
        " for e in os.ilistdir(d):\n"
        "  p = d + '/' + e[0]\n"
        "  if e[1] & 0x4000:\n"
        "   print('d', p)\n"
        "   _w(p)\n"
        "  else:\n"
        "   print('f', p)\n"
        f"_w({top!r})\n").decode()
    files = {}
    for line in out.splitlines():
        kind, path = line.split(" ", 1)
        if kind == "f":
            files[path[len(top) + 1:]] = board.read(path)
    return files


TREE = {"lib/greet.py": b"def hi():\n    return 'hi from rom'\n",
        "lib/pkg/__init__.py": b"V = 3\n",
        "lib/pkg/deep/data.bin": bytes(range(256)) * 20,
        "notes.txt": b"plain text\n"}


# ----------------------------------------------------------------- the format, on the host


names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)


@given(st.dictionaries(st.lists(names, min_size=1, max_size=3).map("/".join),
                       st.binary(max_size=300), max_size=8))
def test_build_writes_the_same_bytes_as_micropythons_writer(files: dict[str, bytes]) -> None:
    paths = sorted(files)
    # A path cannot be both a file and a folder.
    files = {p: d for p, d in files.items() if not any(q.startswith(p + "/") for q in paths)}
    image = romimage.build(files)
    assert image == _mpremote_image(files, [])
    assert len(image) % 2 == 0
    assert romimage.files(image) == files


def test_reader_follows_data_pointers_and_skips_padding() -> None:
    blob = b"pointed-to bytes"
    enc = romimage.encode_uint

    def record(kind: int, payload: bytes) -> bytes:
        return enc(kind) + enc(len(payload)) + payload

    def body(offset: int) -> bytes:
        pointer = record(romimage.KIND_POINTER, enc(len(blob)) + enc(offset))
        return (record(romimage.KIND_PADDING, b"xyz")
                + record(romimage.KIND_FILE, enc(5) + b"a.bin" + pointer)
                + enc(romimage.KIND_PADDING) + enc(len(blob)))  # the blob is padding's payload

    offset = len(body(0))
    assert len(body(offset)) == offset
    data = body(offset) + blob
    image = romimage.HEADER + enc(len(data)) + data
    assert romimage.files(image) == {"a.bin": blob}
    assert romimage.read(image)[0].offset == len(image) - len(blob)


def test_a_truncated_or_foreign_image_is_refused() -> None:
    image = romimage.build(TREE)
    with pytest.raises(romimage.RomfsError, match="truncated"):
        romimage.read(image[:-10])
    with pytest.raises(romimage.RomfsError, match="d2 cd 31"):
        romimage.read(b"\xff" * 64)


def test_collect_compiles_for_the_board_and_refuses_foreign_mpy(tmp_path: Path) -> None:
    from mpkick.compile.compiler import CompileError, Compiler

    src = _project(tmp_path / "p", {"lib/a.py": b"A = 1\n", "lib/b.mpy": b"M\x05\x00\x1fjunk"})
    compiler = Compiler.for_board(None)
    with pytest.raises(CompileError, match=r"lib/b\.mpy: it is \.mpy v5"):
        collect(src, compiler, board_mpy=compiler.tool.emits.version | compiler.tool.emits.sub << 8)
    (src / "lib/b.mpy").unlink()
    tree = collect(src, compiler)
    assert set(tree.files) == {"lib/a.mpy"} and tree.compiled == 1
    assert tree.files["lib/a.mpy"][:2] == b"M\x06"


# ----------------------------------------------------------------- on the virtual board


@pytest.fixture
def rom_url(tmp_path: Path) -> str:
    return f"sim://{tmp_path / 'flash.img'}"


def test_images_mount_in_micropythons_vfsrom_with_every_file_identical(rom_url: str) -> None:
    image = romimage.build(TREE, folders=["empty"])
    with Board.connect(rom_url) as board:
        result = rom.deploy(board, image)
        assert not result.unchanged and result.written == list(range(result.blocks))
        assert _board_files(board) == TREE
        assert board.eval("__import__('os').listdir('/rom/empty')") == []
    assert _rom_file(rom_url).read_bytes()[:len(image)] == image


def test_micropython_lists_mpremotes_image_and_mpkicks_alike(rom_url: str, tmp_path: Path) -> None:
    src = _project(tmp_path / "src", TREE)
    ours = tmp_path / "ours.img"
    theirs = tmp_path / "theirs.img"
    assert main(["romfs", "build", str(src), "-o", str(ours), "--no-compile"]) == 0
    run = subprocess.run([str(BIN / "mpremote"), "romfs", "--no-mpy", "-o", str(theirs), "build",
                          str(src)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    seen = []
    with Board.connect(rom_url) as board:
        for img in (theirs, ours):
            rom.deploy(board, img.read_bytes(), reset=False)
            seen.append(_board_files(board))
    assert seen[0] == seen[1] == TREE
    assert ours.read_bytes() == theirs.read_bytes()


def test_compiled_modules_import_from_rom_after_a_soft_reset(rom_url: str, tmp_path: Path) -> None:
    src = _project(tmp_path / "src", TREE)
    assert main(["-p", rom_url, "romfs", "deploy", str(src)]) == 0
    with Board.connect(rom_url) as board:
        board.soft_reset()
        out = board.exec("import sys, greet, pkg\n"
                         "print(greet.hi(), pkg.V, greet.__file__, sys.path[1:3])").decode()
        assert out.split() == ["hi", "from", "rom", "3", "/rom/lib/greet.mpy",
                               "['/rom',", "'/rom/lib']"]
        # In flash, read in place: the module is a .mpy, and the partition is not on the heap.
        assert board.eval("__import__('os').stat('/rom/lib/greet.mpy')[6]") > 0


def test_deploy_to_several_boards_at_once_makes_each_rom_live(tmp_path: Path) -> None:
    src = _project(tmp_path / "src", TREE)
    urls = [f"sim://{tmp_path / f'b{i}.img'}" for i in range(2)]
    assert main([*(a for u in urls for a in ("-p", u)), "romfs", "deploy", str(src)]) == 0
    for url in urls:
        with Board.connect(url) as board:
            board.soft_reset()
            assert board.exec("import greet\nprint(greet.__file__)").strip() == \
                b"/rom/lib/greet.mpy"


def test_an_unchanged_deploy_writes_nothing(rom_url: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    src = _project(tmp_path / "src", TREE)
    assert main(["-p", rom_url, "romfs", "deploy", str(src)]) == 0
    path = _rom_file(rom_url)
    before, stamp = path.read_bytes(), path.stat().st_mtime_ns
    capsys.readouterr()
    time.sleep(0.05)
    assert main(["-p", rom_url, "romfs", "deploy", str(src)]) == 0
    assert "nothing written" in capsys.readouterr().out
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stamp


def test_only_the_erase_blocks_that_changed_are_written(rom_url: str) -> None:
    rng = random.Random(3)
    files = {f"lib/m{i}.bin": rng.randbytes(3000) for i in range(12)}
    first = romimage.build(files)
    files["lib/m7.bin"] = rng.randbytes(3000)  # same size: the blocks after it do not move
    second = romimage.build(files)
    with Board.connect(rom_url) as board:
        rom.deploy(board, first, reset=False)
        result = rom.deploy(board, second, reset=False)
        assert 2 <= len(result.written) <= 3 and result.written[0] == 0, result.written
        assert result.blocks == (len(second) + 4095) // 4096
        assert _board_files(board) == files


def test_a_port_that_erases_only_from_the_start_is_rewritten_whole(tmp_path: Path) -> None:
    url = f"sim://{tmp_path / 'flash.img'}?romfs_erase=whole"
    rng = random.Random(4)
    files = {"a.bin": rng.randbytes(9000), "lib/b.py": b"B = 2\n"}
    with Board.connect(url) as board:
        part = rom.partition(board)
        assert not part.ranged and part.block == part.size
        rom.deploy(board, romimage.build(files), reset=False)
        files["lib/b.py"] = b"B = 3\n"
        result = rom.deploy(board, romimage.build(files))
        assert result.written == [0]
        assert board.exec("import b; print(b.B)").strip() == b"3"


def test_mismatched_mpy_versions_are_refused_before_anything_is_written(
        rom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _project(tmp_path / "src", {"lib/old.mpy": b"M\x05\x00\x1f" + b"\x00" * 40})
    img = tmp_path / "foreign.img"
    img.write_bytes(romimage.build({"lib/native.mpy": b"M\x06\x0f\x1f" + b"\x00" * 40}))
    before = _rom_file(rom_url).read_bytes() if _rom_file(rom_url).exists() else None
    assert main(["-p", rom_url, "romfs", "deploy", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lib/old.mpy: it is .mpy v5, the board loads .mpy v6" in err
    assert main(["-p", rom_url, "romfs", "deploy", str(img)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "native code for armv6 .mpy v6.3, the board runs x64" in err
    after = _rom_file(rom_url).read_bytes()
    assert before is None or after == before
    assert after.strip(b"\xff") == b""


def test_clear_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _project(tmp_path / "src", {"lib/big.bin": random.Random(1).randbytes(20_000)})
    bad = _project(tmp_path / "bad", {"lib/broken.py": b"def f(:\n"})
    cases = [
        (f"sim://{tmp_path / 'a.img'}?romfs=0", src, "no ROMFS (no vfs.rom_ioctl)"),
        (f"sim://{tmp_path / 'b.img'}?romfs=8K", src, "bytes (19.6 KiB) but ROM partition 0 holds "
                                                      "8192 bytes (8.0 KiB)"),
        (f"sim://{tmp_path / 'c.img'}", bad, "broken.py:1:"),
    ]
    for url, folder, said in cases:
        assert main(["-p", url, "romfs", "deploy", str(folder)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("mpkick: ") and err.count("\n") == 1 and said in err, err
    assert main(["-p", cases[0][0], "romfs", "query"]) == 1
    assert "no vfs.rom_ioctl" in capsys.readouterr().err


def test_query_ls_and_cat_read_the_live_romfs(rom_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src = _project(tmp_path / "src", TREE)
    assert main(["-p", rom_url, "romfs", "query"]) == 0
    assert "erased: no image" in capsys.readouterr().out
    assert main(["-p", rom_url, "romfs", "deploy", str(src), "--no-compile"]) == 0
    capsys.readouterr()
    assert main(["-p", rom_url, "romfs", "query", "-l"]) == 0
    out = capsys.readouterr().out
    assert "262144 bytes (256.0 KiB), 64 blocks of 4096 bytes" in out
    assert "4 files" in out and "/lib/pkg/deep/data.bin" in out
    assert main(["-p", rom_url, "romfs", "ls", "/lib"]) == 0
    assert capsys.readouterr().out.split() == ["greet.py", "pkg/"]
    assert main(["-p", rom_url, "romfs", "cat", "/rom/notes.txt"]) == 0
    assert capsys.readouterr().out == "plain text\n"
    img = tmp_path / "r.img"
    assert main(["romfs", "build", str(src), "-o", str(img), "--no-compile"]) == 0
    capsys.readouterr()
    assert main(["romfs", "ls", "-r", "-l", "--image", str(img)]) == 0
    assert "5120  /lib/pkg/deep/data.bin" in capsys.readouterr().out


# ----------------------------------------------------------------- power cuts


def _state(path: Path, old: dict[str, bytes], new: dict[str, bytes]) -> str:
    data = path.read_bytes()
    length = romimage.image_length(data[:16])
    if length is None:
        return "empty"
    try:
        files = romimage.files(data[:length])
    except romimage.RomfsError:
        return "broken"
    return "old" if files == old else "new" if files == new else "other"


def _seeds(request: pytest.FixtureRequest) -> list[int]:
    slow = request.config.getoption("--slow") or os.environ.get("MPKICK_SLOW") == "1"
    return list(range(40 if slow else 8))


def test_a_power_cut_anywhere_in_a_deploy_leaves_old_new_or_empty_and_a_booting_board(
        rom_url: str, request: pytest.FixtureRequest) -> None:
    rng = random.Random(11)
    old = {f"lib/o{i}.py": f"N = {i}\nS = '{rng.randbytes(1250).hex()}'\n".encode()
           for i in range(10)}
    new = dict(old)
    new.update({f"lib/o{i}.py": f"N = {100 + i}\nS = '{rng.randbytes(2000).hex()}'\n".encode()
                for i in range(0, 10, 3)})
    old_img, new_img = romimage.build(old), romimage.build(new)
    path = _rom_file(rom_url)
    with Board.connect(rom_url) as board:
        rom.deploy(board, old_img, reset=False)
        sim: VirtualBoard = board.transport.board  # type: ignore[attr-defined]
        start = sim.counters.host_to_board
        rom.deploy(board, new_img, reset=False)
        span = sim.counters.host_to_board - start
        rom.deploy(board, old_img, reset=False)
    seen: dict[str, int] = {}
    for seed in _seeds(request):
        with Board.connect(rom_url) as board:
            sim = board.transport.board  # type: ignore[attr-defined]
            at = random.Random(seed).randrange(1, span)
            sim.inject(kill_at=sim.counters.host_to_board + at)
            try:
                rom.deploy(board, new_img, reset=False)
                cut = False
            except (MpkickError, OSError):
                cut = True
        state = _state(path, old, new)
        seen[state] = seen.get(state, 0) + 1
        assert state in ("old", "new", "empty"), (seed, at, state)
        # The board boots, /rom is the image the partition holds, and an import from a cut
        # deploy fails cleanly instead of crashing the board.
        with Board.connect(rom_url) as board:
            answer = board.exec("try:\n import o3\n print(o3.N)\nexcept ImportError:\n"
                                " print('none')").decode().strip()
            expect = {"old": "3", "new": "103", "empty": "none"}[state]
            assert answer == expect, (seed, at, state, cut)
            if state != "new":
                rom.deploy(board, new_img, reset=False)  # a deploy after the cut recovers
                assert _state(path, old, new) == "new"
            rom.deploy(board, old_img, reset=False)
    assert seen.get("empty", 0) >= 1, seen  # the cuts did land inside the writes


# ----------------------------------------------------------------- mpremote, the real client


@pytest.fixture
def pty_board(tmp_path: Path) -> Iterator[tuple[VirtualBoard, Path]]:
    if shutil.which("mpremote", path=str(BIN)) is None:
        missing("mpremote is not installed (make test installs it: .[test])")
    board = VirtualBoard(parse_url(f"sim://{tmp_path / 'flash.img'}"))
    pty = board.start("pty")
    link = tmp_path / "ttyACM9"
    link.symlink_to(str(pty))
    try:
        yield board, link
    finally:
        board.close()


def _mpremote(link: Path, *args: str) -> str:
    run = subprocess.run([str(BIN / "mpremote"), "connect", str(link), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_mpremote_queries_and_deploys_to_the_virtual_boards_partition(
        pty_board: tuple[VirtualBoard, Path], tmp_path: Path) -> None:
    board, link = pty_board
    out = _mpremote(link, "romfs", "query")
    assert "ROMFS0 partition has size 262144 bytes (64 blocks of 4096 bytes each)" in out
    assert "Not a valid ROMFS" in out
    src = _project(tmp_path / "src", TREE)
    out = _mpremote(link, "romfs", "deploy", str(src))
    assert "ROMFS image deployed" in out
    out = _mpremote(link, "romfs", "query")
    assert "ROMFS image size:" in out
    out = _mpremote(link, "exec", "import greet, pkg; print(greet.hi(), pkg.V, greet.__file__)")
    assert out.split() == ["hi", "from", "rom", "3", "/rom/lib/greet.mpy"]
    image = board.options.romfs_path.read_bytes()
    files = romimage.files(image[:romimage.image_length(image[:16]) or 0])
    assert files["notes.txt"] == TREE["notes.txt"]
    assert set(files) == {"notes.txt", "lib/greet.mpy", "lib/pkg/__init__.mpy",
                          "lib/pkg/deep/data.bin"}


def test_mpkick_reads_what_mpremote_deployed_and_skips_it(
        pty_board: tuple[VirtualBoard, Path], tmp_path: Path) -> None:
    _board, link = pty_board
    src = _project(tmp_path / "src", TREE)
    _mpremote(link, "romfs", "--no-mpy", "deploy", str(src))
    with Board.connect(str(link)) as b:
        part = rom.partition(b)
        assert part.files is not None and ("/notes.txt", 11) in part.files
        result = rom.deploy(b, romimage.build(TREE))
        assert result.unchanged


def test_deploy_needs_a_romfs_image(rom_url: str) -> None:
    with Board.connect(rom_url) as board, pytest.raises(InputError, match="d2 cd 31"):
        rom.deploy(board, b"\x00" * 64)


# ----------------------------------------------------------------- push --romfs


def test_push_romfs_puts_the_subtree_in_rom_and_says_which_copy_wins(
        rom_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    src = _project(tmp_path / "proj", {"lib/greet.py": b"def hi():\n    return 'rom'\n",
                                       "lib/util.py": b"U = 1\n",
                                       "util.py": b"U = 'flash'\n",
                                       "main.py": b"import greet\nprint(greet.hi())\n"})
    (tmp_path / "proj" / "mpkick.toml").write_text('romfs = ["lib/"]\n')
    monkeypatch.chdir(src)
    assert main(["-p", rom_url, "push", ".", "/"]) == 0
    out = capsys.readouterr().out
    assert "ROMFS: " in out and "verified, mounted at /rom" in out
    assert "util: /util.py on the flash wins over /rom/lib/util.mpy" in out
    with Board.connect(rom_url) as board:
        flash = {e.path for e in board.tree("/") if not e.is_dir}
        assert "/lib/greet.py" not in flash and "/main.py" in flash
        assert board.exec("import greet, util\nprint(greet.__file__, util.U)").split() == \
            [b"/rom/lib/greet.mpy", b"flash"]
    assert main(["-p", rom_url, "push", ".", "/", "--dry-run"]) == 0
    assert "already holds it: nothing would be written" in capsys.readouterr().out


def test_bench_romfs_harness_measures_and_checks(tmp_path: Path) -> None:
    import importlib.util

    bench = Path(__file__).resolve().parent.parent / "bench"
    sys.path.insert(0, str(bench))
    spec = importlib.util.spec_from_file_location("bench_romfs", bench / "romfs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    from workload import generate

    work = generate(scale=0.05)
    ram = module.measure_ram(work, tmp_path)
    assert [r.where for r in ram] == ["littlefs .py", "littlefs .mpy", "/rom .mpy"]
    assert ram[2].sample.startswith("/rom/") and ram[2].used < ram[1].used
    deploys = module.measure_deploy(work, tmp_path, 0, 1, log=lambda _l: None)
    assert [d.problem for d in deploys] == [None] * 6
    text = module.report(ram, deploys, work, 0, 1)
    assert "| /rom .mpy |" in text and "| deploy again, nothing changed |" in text
