"""mount: a target as a real FUSE filesystem, driven with shell tools and Python file I/O.

Every test mounts for real (libfuse in a thread, or ``mpkick mount`` in a subprocess), works
only through the mountpoint, unmounts, and then checks what the target itself holds: that is
what a board would run.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from needs import missing

from mpkick.mount import MountEvent, mount
from mpkick.target import META, Entry, Target, is_within

sys.path.insert(0, str(Path(__file__).parent))
from memtarget import MemTarget

pytestmark = pytest.mark.fuse

FUSERMOUNT = shutil.which("fusermount3") or shutil.which("fusermount")


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    if FUSERMOUNT is None:
        return "no fusermount3/fusermount: install fuse3 (make sysdeps)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError, AttributeError) as exc:
        return f"mfusepy or libfuse not usable: {exc}"
    return None


@pytest.fixture(autouse=True)
def _needs_fuse() -> None:
    reason = _fuse_missing()
    if reason:
        missing(reason)


def unmount(mountpoint: Path) -> None:
    """Unmount, lazily if busy, so a failing test never leaves a stale mount behind."""
    assert FUSERMOUNT is not None
    if subprocess.run([FUSERMOUNT, "-u", str(mountpoint)], capture_output=True).returncode:
        subprocess.run([FUSERMOUNT, "-uz", str(mountpoint)], capture_output=True)


def wait_until(condition: Callable[[], bool], what: str, alive: Callable[[], bool]) -> None:
    """Poll without a clock limit of its own: it stops when the thing it waits for died."""
    while not condition():
        if not alive():
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.02)


# -- targets --------------------------------------------------------------------------------


def make_mem(tmp_path: Path) -> Target:
    return MemTarget()


def make_image(tmp_path: Path) -> Target:
    import littlefs  # noqa: F401

    import mpkick.image.target as image
    target: Target = image.open_image(str(tmp_path / "fs.img"), create=True)
    return target


def make_sim(tmp_path: Path) -> Target:
    import mpkick.board.board as board
    target: Target = board.Board.connect("sim://" + str(tmp_path / "flash.img"))
    return target


TARGETS: dict[str, Callable[[Path], Target]] = {
    "mem": make_mem, "image": make_image, "sim": make_sim}


class Mounted:
    """A target mounted in a thread of this process."""

    def __init__(self, target: Target, mountpoint: Path) -> None:
        self.target = target
        self.mp = mountpoint
        self.events: list[MountEvent] = []
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def p(self, name: str) -> Path:
        return self.mp / name

    def sh(self, command: str) -> subprocess.CompletedProcess[str]:
        """Run a shell command in the mountpoint; fail the test with its output when it fails."""
        done = subprocess.run(command, shell=True, cwd=self.mp, capture_output=True, text=True)
        assert done.returncode == 0, f"{command!r} failed:\n{done.stdout}{done.stderr}"
        return done


@contextmanager
def mounted(target: Target, mountpoint: Path, read_only: bool = False) -> Iterator[Mounted]:
    mountpoint.mkdir(exist_ok=True)
    m = Mounted(target, mountpoint)
    # libfuse installs process-wide signal handlers from whatever thread runs it: put back ours.
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                              signal.SIGPIPE)}

    def run() -> None:
        try:
            mount(target, mountpoint, read_only=read_only, on_event=m.events.append)
        except BaseException as exc:
            m.error = exc

    m.thread = threading.Thread(target=run, name="fuse", daemon=True)
    m.thread.start()
    try:
        wait_until(lambda: os.path.ismount(mountpoint), "mount to appear", m.thread.is_alive)
        yield m
    finally:
        unmount(mountpoint)
        m.thread.join()
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)
    assert m.error is None, f"mount() raised {m.error!r}"


@pytest.fixture(params=list(TARGETS))
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    t = TARGETS[request.param](tmp_path)
    yield t
    t.close()


@pytest.fixture
def mnt(target: Target, tmp_path: Path) -> Iterator[Mounted]:
    with mounted(target, tmp_path / "mnt") as m:
        yield m


def after_unmount(m: Mounted) -> Target:
    """Unmount now (the fixture's own unmount is then a no-op) and give the target back."""
    unmount(m.mp)
    assert m.thread is not None
    m.thread.join()
    return m.target


def project(root: Path) -> Path:
    """A small MicroPython project, the kind of tree people mount and edit."""
    src = root / "project"
    (src / "lib" / "drivers").mkdir(parents=True)
    (src / "main.py").write_text("import lib.util\nlib.util.blink()\n")
    (src / "boot.py").write_text("# boot\n")
    (src / "lib" / "__init__.py").write_text("")
    (src / "lib" / "util.py").write_text("def blink():\n    pass\n" * 50)
    (src / "lib" / "drivers" / "bme280.py").write_bytes(bytes(range(256)) * 40)
    (src / "data.bin").write_bytes(os.urandom(20000))
    return src


def host_files(root: Path) -> dict[str, bytes]:
    return {"/" + p.relative_to(root).as_posix(): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def user_tree(target: Target) -> list[Entry]:
    """The target's tree without the board's own ``/.mpkick`` (its agent and manifest)."""
    return [e for e in target.tree("/") if not is_within(e.path, META)]


def target_files(target: Target) -> dict[str, bytes]:
    return {e.path: target.read(e.path) for e in user_tree(target) if not e.is_dir}


# -- reading ------------------------------------------------------------------------------------


def test_ls_stat_and_cat_show_what_the_target_holds(target: Target, tmp_path: Path) -> None:
    target.mkdir("/lib")
    target.write("/main.py", b"print('hello')\n")
    target.write("/lib/util.py", b"x = 1\n" * 1000)
    with mounted(target, tmp_path / "mnt") as m:
        assert sorted(os.listdir(m.mp)) == ["lib", "main.py"]
        assert m.p("lib").is_dir()
        assert m.p("main.py").stat().st_size == 15
        assert m.p("lib/util.py").stat().st_size == 6000
        assert m.sh("cat main.py").stdout == "print('hello')\n"
        assert m.p("lib/util.py").read_bytes() == b"x = 1\n" * 1000
        assert "util.py" in m.sh("ls -l lib").stdout
        with pytest.raises(FileNotFoundError):
            m.p("nothing.py").stat()


def test_statfs_reports_the_targets_space(mnt: Mounted) -> None:
    usage = mnt.target.usage()
    st = os.statvfs(mnt.mp)
    assert st.f_blocks * st.f_frsize == usage.total // st.f_frsize * st.f_frsize
    assert "mpkick" in mnt.sh("df -P .").stdout


# -- copying in and out ---------------------------------------------------------------------------


def test_cp_r_of_a_project_in_matches_host_and_target(mnt: Mounted, tmp_path: Path) -> None:
    src = project(tmp_path)
    mnt.sh(f"cp -r {src}/. .")
    mnt.sh(f"diff -r {src} .")
    out = tmp_path / "copied-out"
    mnt.sh(f"cp -r . {out}")
    assert host_files(out) == host_files(src)
    assert target_files(after_unmount(mnt)) == host_files(src)


# -- folders and names ------------------------------------------------------------------------


def test_mkdir_rmdir_rm(mnt: Mounted) -> None:
    mnt.sh("mkdir -p a/b/c && echo x > a/b/c/f.txt")
    with pytest.raises(OSError) as info:
        os.rmdir(mnt.p("a/b/c"))
    assert info.value.errno == errno.ENOTEMPTY
    mnt.sh("rm a/b/c/f.txt && rmdir a/b/c")
    assert os.listdir(mnt.p("a/b")) == []
    with pytest.raises(FileExistsError):
        os.mkdir(mnt.p("a"))
    mnt.sh("mkdir keep && rm -r a")
    assert os.listdir(mnt.mp) == ["keep"]
    t = after_unmount(mnt)
    assert [e.path for e in user_tree(t)] == ["/keep"]


def test_mv_renames_files_and_folders_and_replaces_an_existing_file(mnt: Mounted) -> None:
    mnt.sh("echo old > a.py && echo new > b.py && mv b.py a.py")
    assert mnt.p("a.py").read_text() == "new\n"
    assert not mnt.p("b.py").exists()
    mnt.sh("mkdir -p lib/sub && echo z > lib/sub/z.py && mv lib pkg")
    assert mnt.p("pkg/sub/z.py").read_text() == "z\n"
    assert not mnt.p("lib").exists()
    mnt.sh("mkdir empty && mkdir full && echo f > full/f && mv full empty")  # into the folder
    assert mnt.p("empty/full/f").read_text() == "f\n"
    os.mkdir(mnt.p("dest"))
    os.rename(mnt.p("empty"), mnt.p("dest"))  # a folder over an empty folder replaces it
    assert mnt.p("dest/full/f").read_text() == "f\n"
    with pytest.raises(IsADirectoryError):
        os.rename(mnt.p("a.py"), mnt.p("pkg"))
    t = after_unmount(mnt)
    assert target_files(t) == {"/a.py": b"new\n", "/pkg/sub/z.py": b"z\n", "/dest/full/f": b"f\n"}


# -- changing content -------------------------------------------------------------------------


def test_truncate_append_and_seek_write(mnt: Mounted) -> None:
    f = mnt.p("log.txt")
    f.write_bytes(b"0123456789")
    mnt.sh("truncate -s 4 log.txt")
    assert f.read_bytes() == b"0123"
    mnt.sh("printf abc >> log.txt")
    assert f.read_bytes() == b"0123abc"
    with open(f, "r+b") as fh:
        fh.seek(2)
        fh.write(b"XY")
        fh.seek(10)  # past the end: the gap reads as zeros
        fh.write(b"!")
    assert f.read_bytes() == b"01XYabc\0\0\0!"
    mnt.sh("truncate -s 12 log.txt")
    assert f.stat().st_size == 12
    with open(f, "wb") as fh:  # O_TRUNC
        fh.write(b"fresh")
    with open(f, "ab") as fh:
        fh.write(b"+more")
    os.truncate(f, 7)
    assert f.read_bytes() == b"fresh+m"
    assert after_unmount(mnt).read("/log.txt") == b"fresh+m"


def test_a_file_reaches_the_target_on_close_and_fsync_only(target: Target, tmp_path: Path) -> None:
    with mounted(target, tmp_path / "mnt") as m:
        fd = os.open(m.p("live.py"), os.O_CREAT | os.O_WRONLY)
        os.write(fd, b"a = 1\n")
        os.fsync(fd)
        os.write(fd, b"b = 2\n")
        assert m.p("live.py").stat().st_size == 12  # the open buffer is what others see
        os.close(fd)
        assert m.p("live.py").read_bytes() == b"a = 1\nb = 2\n"
    assert target.read("/live.py") == b"a = 1\nb = 2\n"


def test_an_unlinked_open_file_stays_readable(mnt: Mounted) -> None:
    mnt.p("gone.txt").write_bytes(b"still here")
    with open(mnt.p("gone.txt"), "rb") as fh:
        os.unlink(mnt.p("gone.txt"))
        assert os.listdir(mnt.mp) == []
        assert fh.read() == b"still here"
    assert os.listdir(mnt.mp) == []


def test_a_file_open_when_renamed_over_keeps_its_old_content(mnt: Mounted) -> None:
    mnt.p("main.py").write_bytes(b"old")
    mnt.p("new.py").write_bytes(b"new")
    with open(mnt.p("main.py"), "rb") as reader:
        os.replace(mnt.p("new.py"), mnt.p("main.py"))
        assert os.listdir(mnt.mp) == ["main.py"]  # no .fuse_hidden file left on the board
        assert reader.read() == b"old"
    assert mnt.p("main.py").read_bytes() == b"new"
    assert target_files(after_unmount(mnt)) == {"/main.py": b"new"}


def renameat2(old: Path, new: Path, flags: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("this libc has no renameat2")
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, bytes(old), at_fdcwd, bytes(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(old))


def test_rename_noreplace_keeps_the_existing_file(mnt: Mounted) -> None:
    mnt.p("a.py").write_text("a")
    mnt.p("b.py").write_text("b")
    with pytest.raises(FileExistsError):
        renameat2(mnt.p("a.py"), mnt.p("b.py"), 1)  # RENAME_NOREPLACE
    renameat2(mnt.p("a.py"), mnt.p("c.py"), 1)
    assert target_files(after_unmount(mnt)) == {"/b.py": b"b", "/c.py": b"a"}


# -- editors ----------------------------------------------------------------------------------


def test_vscode_style_save_write_temp_fsync_rename_over(mnt: Mounted) -> None:
    mnt.p("main.py").write_text("v1\n")
    temp = mnt.p(".main.py.tmp-1234")
    with open(temp, "w") as fh:
        fh.write("v2\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(temp, 0o644)
    os.replace(temp, mnt.p("main.py"))
    assert os.listdir(mnt.mp) == ["main.py"]
    assert mnt.p("main.py").read_text() == "v2\n"
    assert target_files(after_unmount(mnt)) == {"/main.py": b"v2\n"}


def test_vim_style_save_swap_probe_backup_rename(mnt: Mounted) -> None:
    """What vim does with ``backupcopy=no``: swap file, ``4913`` probe, backup by rename."""
    mnt.p("main.py").write_text("old\n")
    swap = os.open(mnt.p(".main.py.swp"), os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o600)
    os.write(swap, b"b0VIM 9.0" + bytes(4087))
    os.fsync(swap)
    probe = os.open(mnt.p("4913"), os.O_CREAT | os.O_WRONLY | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchown(probe, os.getuid(), os.getgid())
    os.close(probe)
    os.unlink(mnt.p("4913"))
    os.rename(mnt.p("main.py"), mnt.p("main.py~"))
    with open(mnt.p("main.py"), "w") as fh:
        fh.write("new\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(mnt.p("main.py"), 0o644)
    os.unlink(mnt.p("main.py~"))
    os.close(swap)
    os.unlink(mnt.p(".main.py.swp"))
    assert os.listdir(mnt.mp) == ["main.py"]
    assert target_files(after_unmount(mnt)) == {"/main.py": b"new\n"}


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
@pytest.mark.parametrize("backupcopy", ["yes", "no"])
def test_real_vim_edits_and_saves(mnt: Mounted, backupcopy: str) -> None:
    mnt.p("main.py").write_text("led = 1\n")
    mnt.sh(f"vim -u NONE -i NONE -N -es -c 'set backup writebackup backupcopy={backupcopy}' "
           "-c '%s/1/2/' -c 'wq' main.py")
    assert mnt.p("main.py").read_text() == "led = 2\n"
    assert target_files(after_unmount(mnt)) == {"/main.py": b"led = 2\n"}


# -- modes and failures -----------------------------------------------------------------------


def test_read_only_mount_refuses_every_change(target: Target, tmp_path: Path) -> None:
    target.write("/main.py", b"x\n")
    with mounted(target, tmp_path / "mnt", read_only=True) as m:
        assert m.p("main.py").read_bytes() == b"x\n"
        for change in (lambda: m.p("main.py").write_bytes(b"y"),
                       lambda: m.p("new.py").write_bytes(b"y"),
                       lambda: os.mkdir(m.p("d")),
                       lambda: os.unlink(m.p("main.py")),
                       lambda: os.rename(m.p("main.py"), m.p("b.py"))):
            with pytest.raises(OSError) as info:
                change()
            assert info.value.errno == errno.EROFS
    assert target_files(target) == {"/main.py": b"x\n"}


def test_a_target_that_stops_answering_gives_eio_and_a_message(tmp_path: Path) -> None:
    target = MemTarget()
    target.write("/main.py", b"x\n")
    with mounted(target, tmp_path / "mnt") as m:
        assert os.listdir(m.mp) == ["main.py"]
        target.gone = True
        with pytest.raises(OSError) as info:
            m.p("main.py").read_bytes()
        assert info.value.errno == errno.EIO
        with pytest.raises(OSError) as info:
            m.p("new.py").write_bytes(b"y")
        assert info.value.errno == errno.EIO
        errors = [e for e in m.events if e.kind == "error"]
        assert errors and "stopped answering" in errors[0].message
    # ...and unmounting still worked: the context manager returned.
    assert not os.path.ismount(tmp_path / "mnt")


def test_a_full_target_gives_enospc(tmp_path: Path) -> None:
    target = MemTarget(total=1000)
    with mounted(target, tmp_path / "mnt") as m:
        with pytest.raises(OSError) as info:
            m.p("big.bin").write_bytes(bytes(5000))
        assert info.value.errno == errno.ENOSPC
        m.p("small.bin").write_bytes(bytes(500))
    assert target.files["/small.bin"] == bytes(500)


def test_one_tree_exchange_serves_a_whole_listing(tmp_path: Path) -> None:
    target = MemTarget()
    for i in range(50):
        target.write(f"/f{i}.py", b"x" * i)
    target.calls.clear()
    with mounted(target, tmp_path / "mnt") as m:
        m.sh("ls -lR . > /dev/null && find . -type f | wc -l && stat *.py > /dev/null")
        assert target.calls.get("read", 0) == 0
        assert target.calls.get("stat", 0) == 0
        assert target.calls["tree"] <= 2  # the listing may expire once while ls runs


# -- the command line -------------------------------------------------------------------------


def _cli(*args: str, **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mpkick", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def cli_mount(url: str, mp: Path, cwd: Path, work: Callable[[], object]) -> str:
    """Run ``mpkick -p URL mount`` (default mountpoint), do ``work`` in the mount, leave with
    ``mpkick umount``; both commands must succeed. Returns what ``mount`` printed."""
    proc = _cli("-p", url, "mount", cwd=cwd)
    try:
        wait_until(lambda: os.path.ismount(mp), "mpkick mount", lambda: proc.poll() is None)
        work()
        done = subprocess.run([sys.executable, "-m", "mpkick", "umount", str(mp)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            unmount(mp)
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    return out


def test_cli_mount_and_umount_an_image(tmp_path: Path) -> None:
    import littlefs  # noqa: F401

    import mpkick.image.target as image
    img = tmp_path / "fs.img"
    image.open_image(str(img), create=True).close()
    mp = tmp_path / "fs"  # the default: the image's name without its extension
    out = cli_mount(f"image:{img}", mp, tmp_path,
                    lambda: (mp / "main.py").write_text("print(1)\n"))
    assert f"mounted image:{img} at fs" in out and "unmounted fs" in out
    with image.open_image(str(img)) as t:
        assert t.read("/main.py") == b"print(1)\n"


def _mount_image_cli(tmp_path: Path, mp: Path) -> subprocess.Popen[str]:
    import littlefs  # noqa: F401

    import mpkick.image.target as image
    img = tmp_path / "fs.img"
    image.open_image(str(img), create=True).close()
    proc = _cli("-p", f"image:{img}", "mount", str(mp), cwd=tmp_path)
    wait_until(lambda: os.path.ismount(mp), "mpkick mount", lambda: proc.poll() is None)
    return proc


def test_cli_ctrl_c_unmounts_and_keeps_what_was_saved(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    proc = _mount_image_cli(tmp_path, mp)
    try:
        (mp / "boot.py").write_text("# boot\n")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
        unmount(mp)
    assert proc.returncode == 0, out
    assert not os.path.ismount(mp)
    from mpkick.image.target import open_image

    with open_image(str(tmp_path / "fs.img")) as t:
        assert t.read("/boot.py") == b"# boot\n"


def test_cli_umount_clears_a_mount_whose_process_died(tmp_path: Path) -> None:
    mp = tmp_path / "mnt"
    proc = _mount_image_cli(tmp_path, mp)
    proc.kill()  # no chance to unmount: the kernel keeps a dead mount
    proc.communicate()
    try:
        again = subprocess.run([sys.executable, "-m", "mpkick", "-p", "image:fs.img", "mount",
                                str(mp)], cwd=tmp_path, capture_output=True, text=True)
        assert again.returncode == 1
        assert "umount" in again.stderr
        done = subprocess.run([sys.executable, "-m", "mpkick", "umount", str(mp)],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert mp.is_dir() and not os.path.ismount(mp)
    finally:
        unmount(mp)


def test_cli_refuses_a_folder_that_is_not_empty_and_umount_of_nothing(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    done = subprocess.run([sys.executable, "-m", "mpkick", "-p", "image:fs.img", "mount", "full"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "not empty" in done.stderr
    done = subprocess.run([sys.executable, "-m", "mpkick", "umount", "full"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "not mounted" in done.stderr


def test_cli_mounts_a_virtual_board_and_its_repl_sees_the_files(tmp_path: Path) -> None:
    import mpkick.board.board as board
    url = "sim://" + str(tmp_path / "flash.img")
    src = project(tmp_path)
    mp = tmp_path / "board"  # the default for a board
    with board.Board.connect(url) as b:  # a program that runs forever (and leaves no file)
        b.write("/main.py", b"import os\nos.remove('main.py')\nwhile True:\n    pass\n")
    out = cli_mount(url, mp, tmp_path, lambda: subprocess.run(
        f"cp -r {src}/. {mp}/ && diff -r {src} {mp}", shell=True, check=True))
    assert "stopped the program that was running on the board" in out
    with board.Board.connect(url) as b:
        on_board = {p: b.eval(f"open({p!r}, 'rb').read()") for p in host_files(src)}
        assert sorted(b.eval("__import__('os').listdir('/lib')")) == ["__init__.py", "drivers",
                                                                      "util.py"]
    assert on_board == host_files(src)


def test_an_unplugged_virtual_board_gives_eio_and_a_message_and_unmounts(tmp_path: Path) -> None:
    target = make_sim(tmp_path)
    target.write("/main.py", b"x = 1\n")
    try:
        with mounted(target, tmp_path / "mnt") as m:
            assert os.listdir(m.mp) == ["main.py"]
            target.transport.board.unplug()  # type: ignore[attr-defined]
            with pytest.raises(OSError) as info:
                m.p("main.py").read_bytes()
            assert info.value.errno == errno.EIO
            with pytest.raises(OSError) as info:
                m.p("new.py").write_bytes(b"y")
            assert info.value.errno == errno.EIO
            errors = [e.message for e in m.events if e.kind == "error"]
            assert errors and "main.py" in errors[0], errors
        assert not os.path.ismount(tmp_path / "mnt")
    finally:
        target.close()
