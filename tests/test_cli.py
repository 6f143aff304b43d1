"""The command line: every command documented with an example; user mistakes give one line."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from mpkick.cli import COMMANDS, cli, main

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def all_commands() -> list[tuple[str, click.Command]]:
    found = []
    for name, cmd in cli.load_all().items():
        found.append((name, cmd))
        if isinstance(cmd, click.Group):
            found += [(f"{name} {sub}", c) for sub, c in cmd.commands.items()]
    return found


def test_each_command_is_found_in_the_module_the_table_names() -> None:
    commands = cli.load_all()
    assert set(commands) == set(COMMANDS)
    for name, cmd in commands.items():
        assert cmd.callback is not None
        assert cmd.callback.__module__ == f"mpkick.cli.{COMMANDS[name]}", name


def test_a_command_imports_only_its_own_module() -> None:
    import subprocess
    import sys

    code = ("import sys; from mpkick.cli import main; main(['push', '--help']); "
            "print(sorted(m for m in sys.modules if m.startswith('mpkick.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    loaded = eval(out.strip().splitlines()[-1])
    assert "mpkick.cli.push_cmds" in loaded
    assert not {"mpkick.cli.board_cmds", "mpkick.cli.mount_cmds", "mpkick.cli.image_cmds"} & set(
        loaded)


@pytest.mark.parametrize("name,cmd", all_commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_has_help_with_an_example(name: str, cmd: click.Command) -> None:
    if isinstance(cmd, click.Group):
        return
    assert cmd.help, f"{name} has no help"
    assert "Example" in (cmd.epilog or ""), f"{name} has no example in its help"


@pytest.mark.parametrize("name", [n for n, _ in all_commands()])
def test_every_command_is_in_the_readme(name: str) -> None:
    assert re.search(rf"`{re.escape(name)}\b", README) or re.search(
        rf"`mpkick (-p \S+ )?{re.escape(name)}\b", README), f"README does not document {name}"


def test_the_port_goes_before_or_after_the_command(sim_url: str, capsys) -> None:
    assert main(["-p", sim_url, "eval", "6 * 7"]) == 0
    assert capsys.readouterr().out.strip() == "42"
    assert main(["eval", "6 * 7", "-p", sim_url]) == 0
    assert capsys.readouterr().out.strip() == "42"


def test_a_missing_remote_file_is_one_line_and_exit_1(sim_url: str, capsys) -> None:
    assert main(["-p", sim_url, "cat", "/nope.py"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "mpkick: /nope.py: No such file or directory"


def test_a_board_error_is_one_line(sim_url: str, capsys) -> None:
    assert main(["-p", sim_url, "exec", "1/0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    # the message is the firmware's own ("divide by zero"; "division by zero" on 1.9)
    assert len(err) == 1 and re.fullmatch(r"mpkick: ZeroDivisionError: divi\w+ by zero", err[0])


def test_no_such_port_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["-p", str(tmp_path / "ttyUSB7"), "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: cannot open port") and err.count("\n") == 1


@pytest.mark.board_needs("folders", "rename")
def test_files_round_trip_through_put_get_and_cat(sim_url: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / "proj"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("X = 'é'\n", encoding="utf-8")
    (src / "blob.bin").write_bytes(bytes(range(256)))
    assert main(["-p", sim_url, "put", str(src), "/"]) == 0
    assert main(["-p", sim_url, "ls", "-r", "/proj"]) == 0
    assert capsys.readouterr().out.split() == ["/proj/blob.bin", "/proj/pkg/", "/proj/pkg/mod.py"]
    out = tmp_path / "back"
    assert main(["-p", sim_url, "get", ":/proj", str(out)]) == 0
    assert (out / "blob.bin").read_bytes() == bytes(range(256))
    assert (out / "pkg" / "mod.py").read_text(encoding="utf-8") == "X = 'é'\n"
    assert main(["-p", sim_url, "mv", "/proj/blob.bin", "/proj/pkg"]) == 0
    assert main(["-p", sim_url, "sha256sum", "/proj/pkg/blob.bin"]) == 0
    import hashlib

    assert hashlib.sha256(bytes(range(256))).hexdigest() in capsys.readouterr().out
    assert main(["-p", sim_url, "mkdir", "-p", "/a/b/c"]) == 0
    assert main(["-p", sim_url, "rmdir", "/a/b/c"]) == 0
    assert main(["-p", sim_url, "rm", "-r", "/proj", "/a"]) == 0
    capsys.readouterr()
    assert main(["-p", sim_url, "ls"]) == 0
    assert capsys.readouterr().out.split() == []


@pytest.mark.board_needs("usage")
def test_info_df_tree_and_run(sim_url: str, tmp_path: Path, capsys) -> None:
    assert main(["-p", sim_url, "info"]) == 0
    out = capsys.readouterr().out
    assert "micropython" in out and "mpy" in out and "flash" in out
    assert main(["-p", sim_url, "df"]) == 0
    assert "free" in capsys.readouterr().out
    script = tmp_path / "hello.py"
    script.write_text("for i in range(3):\n    print('line', i)\n")
    assert main(["-p", sim_url, "run", str(script)]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["line 0", "line 1", "line 2"]
    assert main(["-p", sim_url, "put", str(script), "/main.py"]) == 0
    assert main(["-p", sim_url, "tree"]) == 0
    assert "main.py" in capsys.readouterr().out
    assert main(["-p", sim_url, "reset"]) == 0


def test_a_full_flash_is_one_line(tmp_path: Path, capsys) -> None:
    url = f"sim://{tmp_path}/tiny.img?size=64K"
    big = tmp_path / "big.bin"
    import os

    big.write_bytes(os.urandom(200_000))
    assert main(["-p", url, "put", str(big), "/big.bin"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: ") and err.count("\n") == 1
    assert main(["-p", url, "ls"]) == 0
    assert "big.bin" not in capsys.readouterr().out  # nothing half-written is left


@pytest.mark.parametrize(("argv", "code"), [
    (["ls", "--no-such-option"], 2),  # click: an unknown option
    (["image", "ls"], 2),  # click: a missing argument
    (["push", "--jobs", "0"], 2),  # click: a value out of range (BadParameter)
    (["image", "build", "no-such-folder", "-o", "x.img"], 2),  # click.Path: no such folder
    (["no-such-command"], 2),
    (["get", "only-one-path"], 2),  # the command's own UsageError
    (["image", "ls", "-p", "sim://", "fs.img"], 2),  # a twin names its image, not a port
    (["umount", "."], 1),  # mount_cmds: not a mount point
    (["-p", "image:fs.img", "mount", "."], 1),  # mount_cmds: a folder that holds files
    (["image", "df", "no-such.img"], 1),  # MpkickError
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_every_mistake_is_one_mpkick_line_through_the_real_cli(
        tmp_path: Path, argv: list[str], code: int) -> None:
    import subprocess
    import sys

    (tmp_path / "a-file").write_text("x")  # the folder is not empty
    done = subprocess.run([sys.executable, "-m", "mpkick", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "Usage:" not in done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("mpkick: "), done.stderr
    assert not done.stderr.startswith("mpkick: Error")
