"""watch: saved files reach the virtual board, and watching survives the board restarting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mpkick.board.board import Board
from mpkick.watch import Event, Finished, Notice, Output, Pushed, Watcher

LIB = "".join(f"X{i} = {i * 7919 % 10007}  # {i * 104729 % 7907:x}\n" for i in range(500))


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPKICK_CACHE_DIR", str(tmp_path / "cache"))


class Running:
    """A Watcher in a thread, with the events it reported."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.events: list[Event] = []
        self.cond = threading.Condition()
        watcher.emit = self._add
        self.thread = threading.Thread(target=watcher.run, daemon=True)

    def _add(self, event: Event) -> None:
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait(self, what: Callable[[list[Event]], bool], timeout: float = 30) -> list[Event]:
        with self.cond:
            assert self.cond.wait_for(lambda: what(self.events), timeout), self.events
            return list(self.events)

    def pushed(self) -> list[Pushed]:
        return [e for e in self.events if isinstance(e, Pushed)]

    def output(self) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, Output))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "project"
    src.mkdir()
    (src / "main.py").write_text("print('hello')\n")
    (src / "lib.py").write_text(LIB)
    return src


@pytest.fixture
def running(project: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    options = getattr(request, "param", {})
    watcher = Watcher(f"sim://{tmp_path / 'flash.img'}", project, "/", **options)
    run = Running(watcher)
    run.thread.start()
    assert watcher.ready.wait(30)
    yield run
    watcher.stop.set()
    run.thread.join(10)
    assert not run.thread.is_alive()


def read_after_stop(running: Running, path: str) -> bytes:
    """Stop watching, then read through a fresh connection, as a user would."""
    running.watcher.stop.set()
    running.thread.join(10)
    with Board.connect(running.watcher.url) as board:
        return board.read(path)


def save(path: Path, text: str) -> None:
    """As an editor saves: a temp file, then a rename over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def count_pushes(n: int) -> Callable[[list[Event]], bool]:
    return lambda events: sum(isinstance(e, Pushed) for e in events) >= n


def test_a_saved_file_is_pushed_and_a_swap_file_is_not(running: Running, project: Path) -> None:
    first = running.pushed()
    assert sorted(first[0].written) == ["/lib.py", "/main.py"]
    (project / ".lib.py.swp").write_bytes(b"\x00vim swap")
    (project / "4913").write_text("")
    save(project / "lib.py", LIB.replace("X250 =", "Y250 ="))
    events = running.wait(count_pushes(2))
    push = [e for e in events if isinstance(e, Pushed)][1]
    assert push.written == ["/lib.py"]
    assert push.modes == {"/lib.py": "warm"}
    assert push.wire_bytes < 300
    time.sleep(0.3)  # let a late event for the swap file arrive, if one were coming
    assert len(running.pushed()) == 2
    sent = {path for p in running.pushed() for path in p.written}
    assert "/.lib.py.swp" not in sent and "/4913" not in sent


@pytest.mark.parametrize("running", [{"delete": True}], indirect=True)
def test_a_deleted_file_is_deleted_with_delete(running: Running, project: Path) -> None:
    (project / "lib.py").unlink()
    events = running.wait(count_pushes(2))
    assert [e for e in events if isinstance(e, Pushed)][1].deleted == ["/lib.py"]


def test_watching_survives_a_board_reboot(running: Running, project: Path) -> None:
    board = running.watcher.target
    assert board is not None
    board.transport.board.power_cut()  # type: ignore[attr-defined]
    time.sleep(0.5)
    save(project / "main.py", "print('after the reboot')\n")
    events = running.wait(lambda ev: any(isinstance(e, Pushed) and "/main.py" in e.written
                                         for e in ev[1:]))
    lost = [e for e in events if isinstance(e, Notice) and "reconnecting" in e.text]
    assert len(lost) == 1 and "\n" not in lost[0].text
    assert read_after_stop(running, "/main.py") == b"print('after the reboot')\n"


@pytest.mark.parametrize("running", [{"run": "main.py"}], indirect=True)
def test_the_program_runs_after_each_push_and_its_output_shows(running: Running,
                                                              project: Path) -> None:
    running.wait(lambda ev: any(isinstance(e, Finished) for e in ev))
    assert b"hello\n" in running.output()
    save(project / "main.py", "import time\nprint('second')\nwhile True:\n    time.sleep(0.05)\n")
    running.wait(lambda ev: b"second" in running.output())
    # The next save interrupts the endless program, pushes and runs again.
    save(project / "main.py", "print('third')\nraise ValueError('boom')\n")
    events = running.wait(lambda ev: sum(isinstance(e, Finished) for e in ev) >= 2)
    assert b"third" in running.output()
    assert any(isinstance(e, Output) and e.error and b"ValueError" in e.data for e in events)


def test_the_cli_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from mpkick.cli import main

    code = main(["-p", f"sim://{tmp_path / 'f.img'}", "watch", str(tmp_path / "nope")])
    assert code == 1
    assert capsys.readouterr().err.startswith("mpkick: ")


def test_board_is_left_usable_after_watching(running: Running) -> None:
    assert read_after_stop(running, "/main.py") == b"print('hello')\n"


def test_ctrl_c_leaves_cleanly(project: Path, tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    err = tmp_path / "err.txt"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "mpkick", "-p",
                                 f"sim://{tmp_path / 'flash.img'}", "watch", str(project)],
                                stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ.copy())
        try:
            for _ in range(300):
                if b"pushed" in err.read_bytes():
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    text = err.read_text()
    assert "stopped watching" in text and "Traceback" not in text


def test_watch_keeps_an_image_file_in_step_the_way_push_does(project: Path,
                                                             tmp_path: Path) -> None:
    """Watch is push on every save, on any target: an image file too, through the same plan."""
    from mpkick.image.target import open_image

    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    run = Running(Watcher(f"image:{img}", project, "/app"))
    run.thread.start()
    assert run.watcher.ready.wait(30)
    try:
        assert sorted(run.pushed()[0].written) == ["/app/lib.py", "/app/main.py"]
        save(project / "main.py", "print('saved')\n")
        run.wait(count_pushes(2))
    finally:
        run.watcher.stop.set()
        run.thread.join(10)
    with open_image(str(img)) as target:
        assert target.read("/app/main.py") == b"print('saved')\n"
        assert target.read("/app/lib.py") == LIB.encode()


def test_watch_with_run_on_a_target_that_runs_no_code_says_so(project: Path,
                                                              tmp_path: Path) -> None:
    from mpkick.errors import InputError
    from mpkick.image.target import open_image

    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    with pytest.raises(InputError, match="does not run code"):
        Watcher(f"image:{img}", project, "/", run="main.py").run()


def test_watch_run_on_an_image_is_one_line_from_the_cli(project: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from mpkick.cli import main
    from mpkick.image.target import open_image

    img = tmp_path / "fs.img"
    open_image(str(img), create=True).close()
    assert main(["-p", f"image:{img}", "watch", str(project), "--run", "main.py"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mpkick: ") and "does not run code" in err[-1]
    assert "Traceback" not in "\n".join(err)
