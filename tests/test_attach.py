"""attach: a host folder in the board's filesystem, served over the REPL while code runs."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpkick.attach import Attachment, Folder, Server, attached, parse_folders
from mpkick.board.board import Board
from mpkick.cli import main
from mpkick.errors import BoardError, InputError
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard
from mpkick.transport.serialport import SerialTransport

# On a --port board, these tests run only where mpkick's agent runs (not on a micro:bit).
pytestmark = pytest.mark.board_needs("agent")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A project on the host: a module, a package, a data file."""
    top = tmp_path / "project"
    (top / "pkg").mkdir(parents=True)
    (top / "app.py").write_text("def answer():\n    return 42\n")
    (top / "pkg" / "__init__.py").write_text("")
    for i in range(5):
        (top / "pkg" / f"mod{i}.py").write_text(f"def f():\n    return {i}\n")
    (top / "data.bin").write_bytes(bytes(range(256)) * 400)  # 100 kB: read in pieces
    return top


@pytest.fixture
def session(board: Board, host: Path) -> Iterator[Attachment]:
    with attached(board, [Folder(host)]) as s:
        yield s


def lines(out: bytes) -> list[str]:
    return out.decode().splitlines()


def test_the_board_imports_reads_and_lists_the_host_folder(session: Attachment, host: Path) -> None:
    out = session.run("import app, os\nprint(app.answer())\nprint(os.getcwd())\n"
                      "print(sorted(os.listdir()))\nprint(os.stat('app.py')[6])\n"
                      "from pkg import mod3\nprint(mod3.f())")
    assert lines(out) == ["42", "/remote", str(sorted(p.name for p in host.iterdir())),
                          str((host / "app.py").stat().st_size), "3"]
    data = session.run("d = open('/remote/data.bin', 'rb').read()\nprint(len(d), d[:3], d[-1])")
    assert data.decode().split() == ["102400", "b'\\x00\\x01\\x02'", "255"]


def test_imports_find_misses_in_the_cached_listing(session: Attachment) -> None:
    """Every name an import tries (x, x.py, x.mpy, x/__init__.py) is answered on the board:
    once a folder is listed, importing all of it asks the host nothing more."""
    session.run("import pkg")
    before = session.server.requests
    session.run("from pkg import mod0, mod1, mod2, mod3, mod4\n"
                "try:\n import pkg.nothere\nexcept ImportError:\n pass")
    assert session.server.requests - before <= 1  # at most one "anything changed?"


def test_a_changed_host_file_is_seen_again(session: Attachment, host: Path) -> None:
    session.run("import app")
    (host / "app.py").write_text("def answer():\n    return 43\n")
    deadline = time.monotonic() + 20
    while True:
        out = session.run("import sys\ndel sys.modules['app']\nimport app\nprint(app.answer())")
        if out.strip() == b"43" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert out.strip() == b"43"


def test_on_exit_the_board_is_as_it_was(board: Board, host: Path) -> None:
    before = board.exec("import os, sys\nprint(os.getcwd(), sys.path)")
    with attached(board, [Folder(host)]) as s:
        assert b"/remote" in s.run("import sys\nprint(sys.path)")
    assert board.exec("import os, sys\nprint(os.getcwd(), sys.path)") == before
    with pytest.raises(OSError):
        board.exec("import os\nos.stat('/remote/app.py')")


def test_read_only_unless_write(session: Attachment, host: Path) -> None:
    for code in ("open('new.txt', 'w')", "import os\nos.mkdir('d')",
                 "import os\nos.remove('app.py')", "import os\nos.rename('app.py', 'b.py')",
                 "import os\nos.rmdir('pkg')"):
        with pytest.raises(OSError) as err:
            session.run(code)
        assert err.value.errno == errno.EROFS
    assert sorted(p.name for p in host.iterdir()) == ["app.py", "data.bin", "pkg"]


def test_writes_land_atomically_on_the_host(board: Board, host: Path) -> None:
    with attached(board, [Folder(host, write=True)]) as s:
        s.run("with open('notes.txt', 'w') as f:\n f.write('x' * 10000)\n f.write('end')\n"
              "import os\nos.mkdir('sub')\nwith open('sub/b.bin', 'wb') as f:\n"
              " f.write(bytes(range(256)))\nos.rename('notes.txt', 'sub/notes.txt')\n"
              "os.remove('app.py')")
        assert (host / "sub" / "notes.txt").read_text() == "x" * 10000 + "end"
        assert (host / "sub" / "b.bin").read_bytes() == bytes(range(256))
        assert not (host / "app.py").exists()
        out = s.run("import os\n"
                    "print(sorted(os.listdir('sub')), open('sub/notes.txt').read()[-3:])")
        assert out.split() == [b"['b.bin',", b"'notes.txt']", b"end"]
    assert not [p for p in host.rglob("*") if "mpkick-tmp" in p.name]


def test_a_file_left_open_is_saved_at_the_detach(board: Board, host: Path) -> None:
    with attached(board, [Folder(host, write=True)]) as s:
        s.run("f = open('open.txt', 'w')\nf.write('a' * 5000)\nf.write('end')")
        assert not (host / "open.txt").exists()  # old content (none) until it is closed
    assert (host / "open.txt").read_text() == "a" * 5000 + "end"
    assert not [p for p in host.rglob("*") if "mpkick-tmp" in p.name]


def test_several_folders_at_once(board: Board, host: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper.py").write_text("NAME = 'helper'\n")
    with attached(board, parse_folders([str(host), f"{lib}:/hostlib"])) as s:
        out = s.run("import app, helper, os\nprint(app.answer(), helper.NAME, "
                    "os.listdir('/hostlib'), os.getcwd())")
    assert out.split() == [b"42", b"helper", b"['helper.py']", b"/remote"]


def test_names_with_spaces_and_non_ascii(board: Board, tmp_path: Path) -> None:
    top = tmp_path / "dossier été"
    (top / "sous dossier").mkdir(parents=True)
    (top / "sous dossier" / "naïve café.txt").write_text("crème brûlée")
    with attached(board, [Folder(top, "/h ô")]) as s:
        out = s.run("import os\nprint(*os.listdir('/h ô/sous dossier'))\n"
                    "print(open('/h ô/sous dossier/naïve café.txt').read())")
    assert out.decode().splitlines() == ["naïve café.txt", "crème brûlée"]


def test_hostile_paths_are_refused_on_the_host(host: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("no")
    (host / "out").symlink_to(tmp_path)
    (host / "inside").symlink_to(host / "pkg")
    server = Server([Folder(host, write=True)], lambda _b: None, watch=False)
    for rel in ("../secret.txt", "pkg/../../secret.txt", "/etc/passwd", "out/secret.txt", "out"):
        with pytest.raises(OSError) as err:
            server.resolve(0, rel)
        assert err.value.errno == errno.EACCES
    listed = server.listing(0, "", 0)
    assert b"out\x00" not in listed and b"inside\x00" in listed
    assert server.resolve(0, "inside/mod1.py").read_text().startswith("def f")
    server.close()


def test_hostile_requests_from_the_board_get_eacces(board: Board, host: Path,
                                                    tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("no")
    (host / "out").symlink_to(tmp_path)
    with attached(board, [Folder(host, write=True)]) as s:
        for rel in ("../secret.txt", "out/secret.txt"):
            with pytest.raises(OSError) as err:
                s.run(f"import mpkick_attach as m\nm._link.ask(b'R0\\x00{rel}\\x000\\x00-1')")
            assert err.value.errno == errno.EACCES
        with pytest.raises(OSError) as err:
            s.run("import mpkick_attach as m\nm._link.ask(b'O0\\x00../evil.txt\\x00w')")
        assert err.value.errno == errno.EACCES
        assert "out" not in s.run("import os\nprint(os.listdir())").decode()
    assert not (tmp_path / "evil.txt").exists()


def test_compile_makes_the_board_import_mpy(board: Board, host: Path) -> None:
    (host / "bad.py").write_text("def broken(:\n")
    with attached(board, [Folder(host)], compile=True) as s:
        out = s.run("import app, os\nprint(app.__file__, app.answer())\n"
                    "print(sorted(os.listdir()))")
        with pytest.raises(BoardError, match="SyntaxError"):
            s.run("import bad")  # the source the board compiles itself names the error
    first, second = out.decode().splitlines()
    assert first == "app.mpy 42"
    assert "'app.mpy'" in second and "'app.py'" not in second and "'bad.py'" in second


def test_ctrl_c_stops_the_program_in_the_middle_of_a_read(session: Attachment) -> None:
    """Ctrl-C lands while the board waits for (or reads) an answer: the program stops, the
    rest of the answer never reaches the REPL, and the folder keeps working."""
    code = ("print('go')\nn = 0\nwhile True:\n"
            " with open('data.bin', 'rb') as f:\n  n += len(f.read())\n")
    for _ in range(5):
        def interrupt(data: bytes) -> None:
            if b"go" in data:
                time.sleep(0.2)
                session.send_keys(b"\x03")

        with pytest.raises(BoardError) as err:
            session.run(code, interrupt)
        assert err.value.exc_type == "KeyboardInterrupt"
        assert session.run("import app\nprint(app.answer())").strip() == b"42"
        if session.server.aborts:
            break
    assert session.server.aborts  # at least one Ctrl-C landed inside a file operation


@pytest.mark.parametrize("lacks", ["vfs,os.mount", "select,io"])
def test_no_vfs_mount_is_one_line(tmp_path: Path, host: Path, capsys: pytest.CaptureFixture[str],
                                  lacks: str) -> None:
    url = f"sim://{tmp_path / 'mb.img'}?profile=microbit&hide={lacks}"
    with Board.connect(url) as board, pytest.raises(InputError, match="cannot attach"):
        Attachment(board, [Folder(host)])
    assert main(["-p", url, "attach", str(host), "--exec", "pass"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mpkick: this board's firmware cannot attach")


def test_mount_of_a_project_folder_names_attach(host: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "mpkick", "-p", "sim://", "mount", str(host)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"mpkick attach {host}" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_cli_runs_code_with_the_folder_attached(sim_url: str, host: Path,
                                                    capfd: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["-p", sim_url, "attach", str(host), "--exec", "import app; print(app.answer())"]
                ) == 0
    assert capfd.readouterr().out.strip() == "42"
    monkeypatch.chdir(host)  # the default folder: "." at /remote
    assert main(["-p", sim_url, "attach", "--write", "--exec",
                 "with open('new.txt', 'w') as f: f.write('saved')"]) == 0
    assert (host / "new.txt").read_text() == "saved"
    (host / "main.py").write_text("import app\nprint('main', app.answer())\n")
    assert main(["-p", sim_url, "run", "--attach", str(host), str(host / "main.py")]) == 0
    assert capfd.readouterr().out.strip() == "main 42"


class Screen:
    """What a terminal shows, and a way to wait for a piece of it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.grew = threading.Condition()

    def write(self, data: bytes) -> None:
        with self.grew:
            self.data += data
            self.grew.notify_all()

    def wait_for(self, text: bytes, after: int = 0, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        with self.grew:
            while (at := self.data.find(text, after)) < 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{text!r} never showed; screen: {bytes(self.data)!r}")
                self.grew.wait(left)
        return at + len(text)


def test_a_soft_reset_attaches_again_even_with_a_busy_main_py(tmp_path: Path, host: Path) -> None:
    """Ctrl-D in the REPL: the board reboots into a main.py that never ends; the folder is
    attached again anyway and the folder's main.py runs, then the prompt comes back."""
    (host / "main.py").write_text("print('host main runs')\n")
    url = f"sim://{tmp_path / 'flash.img'}?loop_main=1"
    keys_r, keys_w = os.pipe()
    screen = Screen()
    with Board.connect(url) as board, attached(board, [Folder(host)]) as s:
        thread = threading.Thread(target=s.terminal, args=(keys_r, screen.write), daemon=True)
        thread.start()
        os.write(keys_w, b"import app\r")
        at = screen.wait_for(b">>> ", screen.wait_for(b"import app"))
        os.write(keys_w, b"\x04")
        at = screen.wait_for(b"host main runs", screen.wait_for(b"soft reboot", at))
        at = screen.wait_for(b">>> ", at)
        os.write(keys_w, b"import app, os; print(app.answer(), os.getcwd())\r")
        screen.wait_for(b"42 /remote", at)
        os.write(keys_w, b"\x1d")
        thread.join(30)
        assert not thread.is_alive()
    assert b"main.py is busy" not in screen.data[at:]


HOST_SCRIPT = """
import sys
from pathlib import Path
from mpkick.attach import Attachment, Folder
from mpkick.board.board import Board
board = Board.connect(sys.argv[1])
s = Attachment(board, [Folder(Path(sys.argv[2]))], timeout=1.5)
s.start()
s.run('''
import os, time
print('attached')
try:
    while True:
        os.statvfs('/remote')
        time.sleep(0.02)
except OSError as e:
    print('board saw', e)
''', lambda d: (sys.stdout.buffer.write(d), sys.stdout.flush()))
"""


def test_a_killed_host_leaves_a_responsive_board(tmp_path: Path, host: Path) -> None:
    board = VirtualBoard(parse_url(f"sim://{tmp_path / 'flash.img'}"))
    port = board.start("pty")
    assert isinstance(port, str)
    try:
        script = tmp_path / "host.py"
        script.write_text(HOST_SCRIPT)
        proc = subprocess.Popen([sys.executable, str(script), port, str(host)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert b"attached" in proc.stdout.readline()
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        transport = SerialTransport(port)
        seen = b""
        deadline = time.monotonic() + 30
        while b"\x04" not in seen.partition(b"board saw")[2] and time.monotonic() < deadline:
            seen += transport.read(4096, 0.2)
        assert b"board saw [Errno 5] EIO" in seen
        with Board(transport) as again:
            again.repl.enter_raw()
            out = again.exec("import os, sys\nprint(os.getcwd(), '/remote' in sys.path, "
                             "'.mpkick' in os.listdir('/'))")
        assert out.split() == [b"/", b"False", b"True"]
    finally:
        board.close()


def test_watch_attached_restarts_the_program_on_every_save(board: Board, host: Path) -> None:
    from mpkick.attach import watch_attached
    from mpkick.watch import Output

    (host / "main.py").write_text("import app\nprint('answer', app.answer())\n")
    seen = Screen()
    stop = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, Output):
            seen.write(event.data)

    thread = threading.Thread(target=watch_attached, args=(board, [Folder(host)]),
                              kwargs={"stop": stop, "on_event": on_event}, daemon=True)
    thread.start()
    try:
        at = seen.wait_for(b"answer 42")
        time.sleep(0.3)
        (host / "app.py").write_text("def answer():\n    return 7\n")
        seen.wait_for(b"answer 7", at)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert b"/remote" not in board.exec("import sys\nprint(sys.path)")


def test_the_benchmark_harness_measures_a_real_attach(tmp_path: Path) -> None:
    """bench/attach.py, run small: the project has the promised shape and mpkick's run on a
    virtual board gives a time for every scenario (no time is asserted)."""
    import importlib.util

    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("bench_attach", ROOT / "bench" / "attach.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    top = tmp_path / "project"
    bench.make_project(top)
    assert len(list((top / "benchpkg").glob("m*.py"))) == 50
    assert len(list((top / "tree").rglob("*.txt"))) == 500
    assert (top / "big.bin").stat().st_size == 200 * 1024
    result = bench.measure("mpkick", 0, top, tmp_path)
    assert isinstance(result, dict) and all(isinstance(v, float) for v in result.values()), result


def test_a_large_file_reads_in_lines_pieces_and_seeks(board: Board, host: Path) -> None:
    text = "".join(f"line {i}\n" for i in range(6000))  # 53 kB: not kept whole on the board
    (host / "log.txt").write_text(text)
    with attached(board, [Folder(host)]) as session:
        out = session.run("f = open('log.txt')\nprint(f.readline().strip(), len(f.read(10)))\n"
                          "n = sum(1 for _ in f)\nf.seek(7)\nprint(n, repr(f.read(7)), f.tell())\n"
                          "f.close()")
    assert out.decode().split() == ["line", "0", "10", "5998", "'line", "1\\n'", "14"]


def test_a_folder_left_by_a_dead_host_is_replaced(board: Board, host: Path) -> None:
    """A host that died while the board sat idle left its folder mounted: the next attach
    takes its place instead of failing, and gives back the board as it was before both."""
    first = Attachment(board, [Folder(host)])
    first.start()
    first.server.close()  # the host goes away without detaching
    with attached(board, [Folder(host)]) as s:
        assert s.run("import app\nprint(app.answer())").strip() == b"42"
    assert board.exec("import os, sys\nprint(os.getcwd(), '/remote' in sys.path)").split() == \
        [b"/", b"False"]


def test_keys_typed_ahead_of_an_answer_still_reach_the_repl(board: Board, host: Path) -> None:
    """A paste lands while the board waits for the host: no key of it is lost."""
    keys_r, keys_w = os.pipe()
    screen = Screen()
    with attached(board, [Folder(host)]) as s:
        thread = threading.Thread(target=s.terminal, args=(keys_r, screen.write), daemon=True)
        thread.start()
        at = screen.wait_for(b">>> ")
        os.write(keys_w, b"import pkg.mod1, pkg.mod2\rx = 6\rprint(x * 7, pkg.mod2.f())\r")
        screen.wait_for(b"42 2", at)
        assert s.server.retyped  # the lines after the import came while it waited
        os.write(keys_w, b"\x1d")
        thread.join(30)


def test_ctrl_c_in_the_middle_of_an_answer_on_a_slow_uart(tmp_path: Path, host: Path) -> None:
    """At 115200 baud an answer of 32 kB takes seconds to arrive: Ctrl-C in the middle of it
    stops the program, the rest of the answer is skipped, and the REPL is clean after."""
    (host / "noise.bin").write_bytes(os.urandom(40_000))  # incompressible: two long answers
    with Board.connect(f"sim://{tmp_path / 'flash.img'}?baud=115200") as board, \
            attached(board, [Folder(host)]) as s:
        def interrupt(data: bytes) -> None:
            if b"go" in data:
                threading.Timer(1.0, s.send_keys, (b"\x03",)).start()

        with pytest.raises(BoardError) as err:
            s.run("print('go')\nd = open('noise.bin', 'rb').read()\nprint('read', len(d))",
                  interrupt)
        assert err.value.exc_type == "KeyboardInterrupt" and s.server.aborts == 1
        assert s.run("import app\nprint(app.answer())").strip() == b"42"
