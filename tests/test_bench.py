"""The benchmark's workload and harness, run small so they cannot rot between `make bench` runs.

No timing is asserted: only that the workload has the promised shape and that the harness drives
a real push on a real virtual board and finds the board equal to the source.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))  # run.py imports its sibling workload.py
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


workload = _load("workload")


def test_workload_is_deterministic_and_shaped_like_the_issue_says() -> None:
    first, second = workload.generate(), workload.generate()
    assert first.files == second.files and first.edited == second.edited
    assert 36 <= len(first.files) <= 44
    assert 250_000 <= first.size <= 350_000
    folders = {p.rsplit("/", 1)[0] for p in first.files if "/" in p}
    assert folders == set(first.folders) and len(folders) == 6
    assert max(p.count("/") for p in first.files) == 3  # lib/drivers/sensors/x.py
    assets = [d for p, d in first.files.items() if p.endswith(".bin")]
    assert sorted(map(len, assets)) == [20 * 1024, 20 * 1024]
    assert 55_000 <= len(first.files[first.edit_path]) <= 70_000
    for path, data in first.files.items():
        if path.endswith(".py"):
            compile(data, path, "exec")  # it looks like code because it is code


def test_one_line_edit_changes_exactly_one_line_in_the_middle() -> None:
    work = workload.generate()
    old = work.files[work.edit_path].splitlines()
    new = work.edited.splitlines()
    assert len(old) == len(new)
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    assert len(changed) == 1
    assert 0.3 < changed[0] / len(old) < 0.7


def test_a_different_seed_gives_a_different_project() -> None:
    assert workload.generate(seed=1).digest() != workload.generate(seed=2).digest()


def test_harness_pushes_with_mpkick_and_checks_the_board(tmp_path: Path) -> None:
    run = _load("run")
    work = workload.generate(scale=0.05)
    results = run.run_bench(tools=["mpkick"], bauds=[0], reps=1, work=work, workdir=tmp_path,
                            log=lambda _line: None)
    assert [m.scenario for m in results] == ["full", "unchanged", "edit"]
    assert [m.problem for m in results] == [None, None, None]
    full, unchanged, _edit = results
    assert full.to_board > 0 and unchanged.to_board < full.to_board
    text = run.report(results, work, ["mpkick"], 1, {"mpkick": 0.1})
    assert "| mpkick |" in text and "## Method" in text


def test_harness_flags_a_board_that_differs_from_the_source(tmp_path: Path) -> None:
    run = _load("run")
    from mpkick.image.target import new_image

    image = tmp_path / "flash.img"
    target = new_image(str(image), 256 * 1024)
    target.write("/main.py", b"print('old')\n")
    target.write("/stale.py", b"")
    target.save()
    problem = run.check(image, {"main.py": b"print('new')\n", "lib/x.py": b"x = 1\n"})
    assert problem is not None
    assert "missing: lib/x.py" in problem and "extra: stale.py" in problem
    assert "differs: main.py" in problem


def test_fleet_harness_pushes_to_many_boards_and_checks_every_one(tmp_path: Path) -> None:
    fleet = _load("fleet")
    work = workload.generate(scale=0.05)
    ones, manys = fleet.measure(boards=2, baud=0, reps=1, work=work, workdir=tmp_path,
                                log=None)
    assert [r.boards for r in ones + manys] == [1, 2]
    assert all(r.problems == () and r.cpu > 0 for r in ones + manys)
    text = fleet.report(ones, manys, 0, work)
    assert "| 2 |" in text and "one board's wall time" in text
