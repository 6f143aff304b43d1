"""Many boards in one command, boards by serial number and by name, and the everyday
conveniences (rtc, edit, aliases): all on real MicroPython through sim:// boards."""

from __future__ import annotations

import io
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpkick import kick
from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import ConnectError, InputError
from mpkick.fleet.parallel import BoardJob, Interrupted, run
from mpkick.fleet.selection import BoardRef, resolve
from mpkick.sim.options import parse_url
from mpkick.sim.registry import publish, withdraw
from mpkick.sim.supervisor import VirtualBoard
from mpkick.transport.devices import Device, list_devices, match_serial


def project(root: Path, seed: int = 14) -> dict[str, bytes]:
    """A small project with text and incompressible files in nested folders, laid out."""
    rng = random.Random(seed)
    files = {
        "main.py": b"import lib.util\nprint('main', lib.util.VALUE)\n",
        "lib/util.py": b"VALUE = 42\n" + b"# filler line for the module\n" * 200,
        "lib/drivers/sensor.py": "".join(f"R{i} = {i}\n" for i in range(500)).encode(),
        "assets/blob.bin": rng.randbytes(12_000),
        "assets/empty.txt": b"",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def board_files(url: str, paths: list[str]) -> dict[str, bytes]:
    with Board.connect(url) as board:
        return {p: board.read("/" + p) for p in paths}


def sims(tmp_path: Path, n: int, options: str = "") -> list[str]:
    return [f"sim://{tmp_path / f'b{i}.img'}{options}" for i in range(n)]


def ports_args(urls: list[str]) -> list[str]:
    return [arg for url in urls for arg in ("-p", url)]


# --------------------------------------------------------------------------- many at once


def test_eight_boards_get_the_same_tree_each_byte_for_byte(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    files = project(src)
    urls = sims(tmp_path, 8)
    assert main([*ports_args(urls), "push", str(src), "/"]) == 0
    out = capsys.readouterr().out
    for url in urls:  # on a pipe: one result line per board, prefixed with its name
        assert f"{url}: ok: 5 created" in out
    for url in urls:
        assert board_files(url, list(files)) == files


def test_a_board_unplugged_mid_push_fails_alone_and_is_named(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    files = project(src)
    (src / "assets/big.bin").write_bytes(random.Random(1).randbytes(60_000))
    files["assets/big.bin"] = (src / "assets/big.bin").read_bytes()
    good = sims(tmp_path, 3)
    # The cable is pulled once the board has been given 40 kB: well inside the 70 kB of files,
    # long after connecting and the agent (a few kB).
    bad = f"sim://{tmp_path / 'pulled.img'}?unplug_at=40000"
    assert main([*ports_args([good[0], bad, *good[1:]]), "push", str(src), "/"]) == 1
    err = capsys.readouterr().err
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("mpkick: 1 of 4 boards failed: ")
    assert bad in summary and "unplugged" in summary
    assert not any(url + " (" in summary for url in good)
    for url in good:
        assert board_files(url, list(files)) == files


def test_jobs_limits_the_boards_at_once_and_every_board_still_gets_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = project(src)
    urls = sims(tmp_path, 3)
    assert main([*ports_args(urls), "push", str(src), "/", "--jobs", "1"]) == 0
    for url in urls:
        assert board_files(url, list(files)) == files


def test_exec_and_run_on_many_boards_prefix_each_line_with_the_board(tmp_path: Path,
                                                                     capsys) -> None:
    urls = sims(tmp_path, 3)
    assert main([*ports_args(urls), "exec", "print('a'); print('b')"]) == 0
    out = capsys.readouterr().out.splitlines()
    for url in urls:
        assert [line for line in out if line.startswith(url + ": ") and "ok" not in line] == \
            [f"{url}: a", f"{url}: b"]
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hello from', sys.platform)\n")
    assert main([*ports_args(urls), "run", str(script)]) == 0
    out = capsys.readouterr().out
    assert all(f"{url}: hello from linux" in out for url in urls)


def test_a_failing_board_makes_the_exit_status_non_zero_with_its_reason(tmp_path: Path,
                                                                        capsys) -> None:
    urls = sims(tmp_path, 2)
    missing = str(tmp_path / "ttyUSB9")
    assert main([*ports_args([*urls, missing]), "exec", "print(1)"]) == 1
    err = capsys.readouterr().err
    assert f"mpkick: 1 of 3 boards failed: {missing} (cannot open port" in err


def test_reset_and_install_work_on_every_board(tmp_path: Path) -> None:
    urls = sims(tmp_path, 2)
    pkg = tmp_path / "blink.py"
    pkg.write_text("ON = 1\n")
    assert main([*ports_args(urls), "install", str(pkg)]) == 0
    for url in urls:
        assert board_files(url, ["lib/blink.py"]) == {"lib/blink.py": b"ON = 1\n"}
    assert main([*ports_args(urls), "reset"]) == 0


def test_a_one_board_command_refuses_many_boards_in_one_line(tmp_path: Path, capsys) -> None:
    assert main([*ports_args(sims(tmp_path, 2)), "ls"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mpkick: this command works on one board; 2 are named")


def test_kick_with_a_list_of_ports_returns_one_outcome_per_board(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = project(src)
    urls = sims(tmp_path, 2)
    missing = str(tmp_path / "ttyACM9")
    outcomes = kick(port=[urls[0], missing, urls[1]], src=src)
    assert [o.ref.url for o in outcomes] == [urls[0], missing, urls[1]]
    assert [o.ok for o in outcomes] == [True, False, True]
    assert outcomes[0].value.created == len(files)
    assert "cannot open port" in outcomes[1].reason
    assert kick(port=urls[0], src=src).unchanged == len(files)  # one board: a Result, as before


# --------------------------------------------------------------------------- Ctrl-C


@pytest.fixture
def pty_board(tmp_path: Path) -> Iterator[Callable[..., tuple[VirtualBoard, str]]]:
    """Virtual boards on ptys (as `mpkick sim` serves them), closed after the test."""
    started: list[tuple[VirtualBoard, Path | None]] = []

    def start(name: str, serial: str | None = None, baud: int = 0) -> tuple[VirtualBoard, str]:
        query = f"?baud={baud}" + (f"&serial={serial}" if serial else "")
        vb = VirtualBoard(parse_url(f"sim://{tmp_path / name}.img{query}"))
        port = vb.start("pty")
        assert isinstance(port, str)
        entry = publish(port, serial, vb.image) if serial else None
        started.append((vb, entry))
        return vb, port

    yield start
    for vb, entry in started:
        if entry is not None:
            withdraw(entry)
        vb.close()


def ctrl_c_once(args: list[str], watch: str, ready: Callable[[bytes], bool]) -> bytes:
    """Run ``mpkick ARGS``; once ``ready`` holds for what it printed on ``watch`` (stdout or
    stderr), send it Ctrl-C. Its stderr, after it exited with 130."""
    proc = subprocess.Popen([sys.executable, "-m", "mpkick", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        stream = proc.stdout if watch == "stdout" else proc.stderr
        assert stream is not None
        seen = b""
        deadline = time.monotonic() + 120
        while not ready(seen):
            assert time.monotonic() < deadline, f"the boards never got going: {seen[-500:]!r}"
            assert proc.poll() is None, seen
            if select.select([stream], [], [], 1)[0]:
                seen += os.read(stream.fileno(), 65536)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    return err


def test_ctrl_c_ends_every_board_cleanly_and_each_answers_after(pty_board, tmp_path) -> None:
    ports = [pty_board(f"c{i}")[1] for i in range(3)]
    code = "import time\nwhile True:\n print('tick')\n time.sleep(0.05)"
    err = ctrl_c_once([*ports_args(ports), "exec", code], "stdout",
                      lambda seen: all(f"{p}: tick".encode() in seen for p in ports))
    assert b"interrupted" in err
    for port in ports:  # each board was left at its prompt, ready for the next command
        with Board.connect(port) as board:
            assert board.eval("6 * 7") == 42


def test_ctrl_c_mid_push_leaves_every_board_answering_with_old_or_new_files(pty_board,
                                                                           tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    big = random.Random(5).randbytes(120_000)  # 10 s at 115200 baud: Ctrl-C lands mid-way
    (src / "big.bin").write_bytes(big)
    ports = [pty_board(f"p{i}", baud=115200)[1] for i in range(2)]
    ctrl_c_once([*ports_args(ports), "push", str(src), "/"], "stderr",  # a quarter sent
                lambda seen: all(f"{p}: 25%".encode() in seen for p in ports))
    for port in ports:
        with Board.connect(port) as board:
            assert board.eval("6 * 7") == 42
            names = [e.path for e in board.tree("/") if not e.path.startswith("/.mpkick")]
            assert names in ([], ["/big.bin"])  # the old state or the new file: never a part
            if names:
                assert board.read("/big.bin") == big


def test_ctrl_c_waits_for_every_boards_clean_up_however_long_it_takes() -> None:
    """Each board's clean-up (ending its session) runs to its end before ``run`` returns: the
    process exits after it, and a board cut off half-way would be left in binary mode."""
    cleaned: list[str] = []
    busy = threading.Semaphore(0)

    def job(board: BoardJob) -> None:
        try:
            busy.release()
            for _ in range(400):
                time.sleep(0.05)
        except KeyboardInterrupt:
            steps = 20 if board.ref.name == "b0" else 2  # the first board's takes longest
            for _ in range(steps):
                time.sleep(0.05)
            cleaned.append(board.ref.name)
            raise

    refs = [BoardRef(f"b{i}", f"sim://b{i}") for i in range(3)]
    main_thread = threading.main_thread().ident
    assert main_thread is not None and threading.get_ident() == main_thread

    def ctrl_c() -> None:  # as the terminal sends it: a SIGINT while run waits for the jobs
        for _ in refs:
            busy.acquire()
        time.sleep(0.2)
        signal.pthread_kill(main_thread, signal.SIGINT)

    threading.Thread(target=ctrl_c).start()
    with pytest.raises(Interrupted) as caught:
        run(refs, job)
    assert sorted(cleaned) == ["b0", "b1", "b2"]
    assert [o.reason for o in caught.value.outcomes] == ["interrupted"] * 3


# --------------------------------------------------------------------------- by identity


@pytest.fixture
def devices_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own list of published virtual boards (none of the developer's)."""
    where = tmp_path / "devices"
    monkeypatch.setenv("MPKICK_SIM_DEVICES", str(where))
    return where


def uid(port: str) -> str:
    with Board.connect(port) as board:
        info = board.info()
    assert info.uid is not None
    return info.uid


def test_id_picks_a_board_by_its_serial_number_or_a_unique_prefix(pty_board, devices_dir,
                                                                  capsys) -> None:
    pty_board("k1", "e6614c3101aa")
    pty_board("k2", "e6614c3102bb")
    pty_board("k3", "a1b2c3d4")
    assert main(["-p", "id:a1b2", "eval", "__import__('machine').unique_id().hex()"]) == 0
    assert capsys.readouterr().out.strip() == "'a1b2c3d4'"
    assert main(["-p", "id:E6614C3102", "info"]) == 0  # any case, a unique prefix
    assert "e6614c3102bb" in capsys.readouterr().out
    assert main(["-p", "id:e6614c31", "ls"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("mpkick: id:e6614c31 matches 2 boards") and "more of the serial" in err
    assert main(["-p", "id:ffff", "ls"]) == 1
    assert "no board with serial number ffff" in capsys.readouterr().err


def test_devices_lists_serial_numbers_and_json_says_the_same(pty_board, devices_dir,
                                                             capsys) -> None:
    _, port = pty_board("d1", "0badc0de")
    assert main(["devices", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    mine = [d for d in listed if d["serial_number"] == "0badc0de"]
    assert mine and mine[0]["port"] == port and mine[0]["board"] == "virtual board"
    assert set(mine[0]) >= {"port", "usb_id", "serial_number", "manufacturer", "product", "board"}
    assert main(["devices"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["port", "vid:pid", "serial", "manufacturer", "product", "board"]
    assert any(line.startswith(port) and "0badc0de" in line for line in table)


def test_all_means_every_board_the_host_lists(pty_board, devices_dir, capsys) -> None:
    serials = ["5e1a11", "5e1a12", "5e1a13"]
    for i, serial in enumerate(serials):
        pty_board(f"a{i}", serial)
    if len(list_devices()) != len(serials):
        pytest.skip("real boards are plugged in: -p all would reach them too")
    assert main(["-p", "all", "exec", "print(__import__('machine').unique_id().hex())"]) == 0
    out = capsys.readouterr().out
    assert sorted(s for s in serials if f": {s}" in out) == serials


def test_a_board_that_comes_back_on_another_port_is_found_by_its_serial(pty_board,
                                                                        devices_dir) -> None:
    first, before = pty_board("r1", "c0ffee01")
    assert uid("id:c0ffee01") == "c0ffee01"
    first.close()  # unplugged: the port is gone
    keep = pty_board("other", None)  # something else takes a port meanwhile
    _, after = pty_board("r1-again", "c0ffee01")  # the board re-enumerates elsewhere
    assert after != before and keep[1] != after
    assert uid("id:c0ffee01") == "c0ffee01"
    with Board.connect("id:c0ffee01") as board:
        assert board.transport.name == after


# --------------------------------------------------------------------------- names and groups


@given(st.lists(st.text("0123456789abcdef", min_size=1, max_size=10), min_size=1, max_size=8,
                unique=True), st.data())
def test_a_serial_prefix_picks_the_one_board_it_fits_and_refuses_to_guess(serials, data) -> None:
    devices = [Device(f"/dev/ttyACM{i}", 0x2E8A, 5, s) for i, s in enumerate(serials)]
    for device in devices:  # a whole serial number always finds its own board
        assert match_serial(str(device.serial_number).upper(), devices) == device
    prefix = data.draw(st.text("0123456789abcdef", min_size=1, max_size=4))
    fits = [d for d in devices if str(d.serial_number).startswith(prefix)]
    exact = [d for d in devices if d.serial_number == prefix]
    if exact or len(fits) == 1:
        assert match_serial(prefix, devices) == (exact or fits)[0]
    else:
        with pytest.raises(InputError if fits else ConnectError):
            match_serial(prefix, devices)


def fake_devices() -> list[Device]:
    return [Device("/dev/ttyACM0", 0x2E8A, 5, "e6614c311b7a2d25"),
            Device("/dev/ttyACM1", 0x2E8A, 5, "e6614c3299aa")]


def test_names_and_groups_expand_in_order_each_board_once() -> None:
    boards = {"kitchen": "id:e6614c31", "hall": "/dev/ttyACM1",
              "downstairs": ["kitchen", "hall"], "house": ["downstairs", "sim://"]}
    assert resolve(["house", "kitchen"], boards, fake_devices) == [
        BoardRef("kitchen", "id:e6614c31"), BoardRef("hall", "/dev/ttyACM1"),
        BoardRef("sim://", "sim://")]
    assert resolve(["all"], boards, fake_devices) == [
        BoardRef("kitchen", "id:e6614c311b7a2d25"), BoardRef("hall", "id:e6614c3299aa")]
    with pytest.raises(InputError, match="contains itself"):
        resolve(["loop"], {"loop": ["a", "loop"], "a": "sim://"}, fake_devices)
    with pytest.raises(InputError, match="no board is plugged in"):
        resolve(["all"], {}, list)


def write_config(folder: Path, text: str) -> None:
    (folder / "pyproject.toml").write_text(f"[tool.mpkick]\n{text}")


def test_config_names_and_groups_work_wherever_a_port_does(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    a, b, c = sims(tmp_path, 3)
    write_config(tmp_path, f'[tool.mpkick.boards]\nkitchen = "{a}"\n'
                           f'pair = ["kitchen", "{b}"]\nclass = ["pair", "{c}"]\n')
    monkeypatch.chdir(tmp_path)
    assert main(["-p", "kitchen", "eval", "6 * 7"]) == 0
    assert capsys.readouterr().out.strip() == "42"
    assert main(["-p", "class", "exec", "print(7)"]) == 0
    out = capsys.readouterr().out
    assert "kitchen: 7" in out and f"{b}: 7" in out and f"{c}: 7" in out
    assert main(["-p", "pair", "ls"]) == 1
    assert "2 are named (kitchen, " in capsys.readouterr().err
    monkeypatch.setenv("MPKICK_PORT", "kitchen")  # names work in MPKICK_PORT and `port =` too
    assert main(["eval", "1 + 1"]) == 0
    assert capsys.readouterr().out.strip() == "2"


def test_a_bad_boards_table_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    write_config(tmp_path, "[tool.mpkick.boards]\nkitchen = 3\n")
    monkeypatch.chdir(tmp_path)
    assert main(["-p", "kitchen", "ls"]) == 1
    assert "[boards] maps names to a port or a list of ports" in capsys.readouterr().err


# --------------------------------------------------------------------------- conveniences


@pytest.mark.sim_only("a fresh virtual board's clock was never set")
def test_a_clock_never_set_starts_in_2000(sim_url: str, capsys) -> None:
    assert main(["-p", sim_url, "rtc"]) == 0
    assert capsys.readouterr().out.startswith("2000-01-01 ")  # as a board's does


def test_rtc_set_sets_the_clock_from_the_host_and_rtc_prints_it(sim_url: str, capsys) -> None:
    import datetime as dt

    assert main(["-p", sim_url, "rtc", "--set"]) == 0
    set_to = dt.datetime.strptime(capsys.readouterr().out.strip(), "%Y-%m-%d %H:%M:%S")
    assert abs((set_to - dt.datetime.now()).total_seconds()) < 30
    assert main(["-p", sim_url, "rtc"]) == 0  # kept across power-off, battery-backed
    read = dt.datetime.strptime(capsys.readouterr().out.strip(), "%Y-%m-%d %H:%M:%S")
    assert abs((read - dt.datetime.now()).total_seconds()) < 30


def test_rtc_on_a_board_without_a_clock_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["-p", f"sim://{tmp_path / 'f.img'}?hide=machine", "rtc"]) == 1
    assert capsys.readouterr().err.strip() == \
        "mpkick: this board has no real-time clock (its firmware lacks machine.RTC)"


def scripted_editor(tmp_path: Path, body: str) -> str:
    """An $EDITOR that edits the file it is given as ``body`` says (``p``: its path)."""
    script = tmp_path / "editor.py"
    script.write_text(f"import sys, pathlib\np = pathlib.Path(sys.argv[1])\n{body}\n")
    return f"{sys.executable} {script}"


def test_edit_writes_back_a_changed_file(sim_url: str, tmp_path: Path, monkeypatch,
                                         capsys) -> None:
    with Board.connect(sim_url) as board:
        board.write("/main.py", b"print('hello')\n")
    monkeypatch.setenv("EDITOR", scripted_editor(
        tmp_path, "assert p.name == 'main.py'\np.write_text(p.read_text().upper())"))
    assert main(["-p", sim_url, "edit", ":main.py"]) == 0
    assert "/main.py: written" in capsys.readouterr().err
    with Board.connect(sim_url) as board:
        assert board.read("/main.py") == b"PRINT('HELLO')\n"


def test_edit_leaves_an_unchanged_file_alone(sim_url: str, tmp_path: Path, monkeypatch,
                                             capsys) -> None:
    with Board.connect(sim_url) as board:
        board.write("/keep.py", b"x = 1\n")
        before = board.stat("/keep.py")
    time.sleep(1.1)  # a rewrite would show in the file's mtime
    monkeypatch.setenv("EDITOR", scripted_editor(tmp_path, "p.write_bytes(p.read_bytes())"))
    assert main(["-p", sim_url, "edit", "keep.py"]) == 0
    assert "unchanged, not written" in capsys.readouterr().err
    with Board.connect(sim_url) as board:
        assert board.stat("/keep.py") == before


def test_edit_makes_a_new_file_and_a_failed_editor_writes_nothing(sim_url: str, tmp_path: Path,
                                                                  monkeypatch, capsys) -> None:
    monkeypatch.setenv("EDITOR", scripted_editor(tmp_path, "p.write_text('new = 1\\n')"))
    assert main(["-p", sim_url, "edit", "/lib/new.py"]) == 1  # no /lib yet: the board says so
    capsys.readouterr()
    assert main(["-p", sim_url, "edit", "/new.py"]) == 0
    monkeypatch.setenv("EDITOR", scripted_editor(tmp_path, "p.write_text('x')\nsys.exit(3)"))
    assert main(["-p", sim_url, "edit", "/new.py"]) == 1
    assert "exited with status 3" in capsys.readouterr().err
    with Board.connect(sim_url) as board:
        assert board.read("/new.py") == b"new = 1\n"


def test_aliases_are_shortcuts_for_command_lines(tmp_path: Path, monkeypatch, capsys) -> None:
    url = sims(tmp_path, 1)[0]
    src = tmp_path / "src"
    files = project(src)
    write_config(tmp_path, f'[tool.mpkick.boards]\nbench = "{url}"\n'
                           '[tool.mpkick.aliases]\n'
                           'deploy = "push src / --delete --run main.py"\n'
                           'answer = "eval"\nls = "eval 0"\n'
                           'loop = "again"\nagain = "loop"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["-p", "bench", "deploy"]) == 0
    assert "main 42" in capsys.readouterr().out
    assert board_files(url, list(files)) == files
    assert main(["answer", "6 * 7", "-p", "bench"]) == 0  # more arguments go after the alias
    assert capsys.readouterr().out.strip() == "42"
    assert main(["-p", "bench", "ls"]) == 0  # a built-in command wins over an alias
    assert "main.py" in capsys.readouterr().out
    assert main(["loop"]) == 1
    assert "expands to itself" in capsys.readouterr().err


def test_image_flash_writes_every_board_after_one_question(tmp_path: Path, monkeypatch,
                                                           capsys) -> None:
    src = tmp_path / "src"
    files = project(src)
    urls = sims(tmp_path, 2)
    built = tmp_path / "fs.img"
    assert main(["image", "build", str(src), "-o", str(built), "--block-size", "4096",
                 "--block-count", "512"]) == 0  # the virtual board's flash: 2 MiB
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main([*ports_args(urls), "image", "flash", str(built)]) == 1
    assert "Flash them?" in capsys.readouterr().err  # asked once, for both boards
    assert main([*ports_args(urls), "image", "flash", str(built), "--yes"]) == 0
    out = capsys.readouterr().out
    assert all(f"{url}: ok: flashed, verified by sha256" in out for url in urls)
    for url in urls:
        assert board_files(url, list(files)) == files


def test_mpkick_sim_with_a_serial_is_listed_until_it_stops(tmp_path: Path, devices_dir) -> None:
    url = f"sim://{tmp_path / 's.img'}?serial=5eed0001"
    proc = subprocess.Popen([sys.executable, "-m", "mpkick", "sim", url],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("virtual board on ")
        port = line.split()[3]
        assert [d.port for d in list_devices() if d.serial_number == "5eed0001"] == [port]
        assert uid("id:5eed") == "5eed0001"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert not [d for d in list_devices() if d.serial_number == "5eed0001"]
    assert not list(devices_dir.glob("*.json"))
