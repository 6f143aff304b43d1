"""Commands: install (packages onto a target) and compile (.py to .mpy on the host)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InputError
from . import cli, common

if TYPE_CHECKING:
    from ..target import Target


def parse_mpy(text: str | None) -> int | None:
    """``--mpy``: a board's ``sys.implementation._mpy`` number, or ``6.3`` / ``6`` as written."""
    if text is None:
        return None
    found = re.fullmatch(r"v?(\d+)(?:\.(\d+))?", text.strip())
    if not found:
        raise InputError(f"--mpy {text}: give sys.implementation._mpy (e.g. 2822) or a .mpy "
                         "version like 6.3")
    number = int(found[1]) | int(found[2] or 0) << 8 if found[2] else int(found[1])
    if number < 6 or (found[2] and int(found[1]) < 6):
        number = (number & 0xFF) | 2 << 8  # a bare v5 or older: the usual unicode build
    return number


def _board_mpy(target: Target) -> int | None:
    """The board's ``_mpy`` when the target runs code (an image has no firmware to ask)."""
    runner = target.runner()
    return runner.info().mpy if runner is not None else None


def _requirements(settings: dict[str, Any], project: Path | None) -> list[str]:
    """``requirements`` from the config: a list of specs, or a file with one spec per line."""
    value = settings.get("requirements")
    if not value:
        raise InputError("nothing to install: name packages, or list `requirements` in "
                         "mpkick.toml / [tool.mpkick]")
    if isinstance(value, str):
        path = (project or Path.cwd()) / value
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(f"requirements file {path}: {exc.strerror}") from exc
        return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    return [str(spec) for spec in value]


@cli.command("install", epilog=common.example("""
mpkick -p sim:// install aioble                    from micropython-lib
mpkick install github:org/repo/pkg@v1.0 --compile  as .mpy for the board
mpkick install ./drivers micropython-ssd1306 --dry-run
"""))
@common.common_options
@click.argument("packages", nargs=-1)
@click.option("--index", metavar="URL", help="mip package index (default: micropython-lib's)")
@click.option("--target", "target_dir", metavar="DIR", help="Folder on the board [default: /lib]")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="Install .py files as .mpy built for the board")
@click.option("--mpy-cross", "mpy_cross", metavar="PATH", help="mpy-cross binary to use")
@click.option("--mpy", metavar="N", help="Board's sys.implementation._mpy (or 6.3) when the "
                                         "target cannot say, e.g. an image")
@click.option("--dry-run", is_flag=True, help="List what would be installed, write nothing")
@common.jobs_option
def install_cmd(packages: tuple[str, ...], index: str | None, target_dir: str | None,
                compile_: bool | None, mpy_cross: str | None, mpy: str | None,
                dry_run: bool) -> None:
    """Install MicroPython packages (mip index, github:, PyPI micropython-*, local) into /lib.

    With no PACKAGES, installs the `requirements` listed in the project's config.
    """
    from ..compile.compiler import Compiler
    from ..packages.install import DEFAULT_INDEX, Item, install, resolve

    opts = common.options()
    opts.load_settings()
    settings = opts.settings
    specs = list(packages) or _requirements(settings, opts.project)
    base = opts.project if not packages and opts.project else Path.cwd()
    do_compile = compile_ if compile_ is not None else bool(settings.get("compile", False))
    board_mpy = parse_mpy(mpy)
    from . import fleet_cmds

    refs = None if dry_run else common.many()
    if refs is not None:
        def resolve_for(found: int | None) -> list[Item]:
            compiler = Compiler.for_board(board_mpy or found, mpy_cross or
                                          settings.get("mpy_cross")) if do_compile else None
            return resolve(specs, target=target_dir or settings.get("target") or "/lib",
                           index=index or settings.get("index") or DEFAULT_INDEX,
                           compiler=compiler, base=base)

        fleet_cmds.install_many(refs, resolve_for)
        return
    target = None if dry_run and not (do_compile and board_mpy is None) else common.open_target()
    try:
        if board_mpy is None and target is not None:
            board_mpy = _board_mpy(target)
        compiler = None
        if do_compile:
            compiler = Compiler.for_board(board_mpy, mpy_cross or settings.get("mpy_cross"))
        items = resolve(specs, target=target_dir or settings.get("target") or "/lib",
                        index=index or settings.get("index") or DEFAULT_INDEX,
                        compiler=compiler, base=base)
        if dry_run or target is None:
            for item in items:
                click.echo(f"would install {item.path} ({len(item.data)} bytes) from "
                           f"{item.package}")
            return
        def say(item: Item) -> None:
            click.echo(f"installing {item.path}")

        result = install(target, items, progress=say if opts.verbose and not opts.quiet else None)
    finally:
        if target is not None:
            target.close()
    if not opts.quiet:
        for path, why in result.removed_why.items():
            click.echo(f"removed {path} ({why})")
        same = f"; {len(result.unchanged)} already there" if result.unchanged else ""
        click.echo(f"installed {len(result.written)} files ({result.size} bytes) from "
                   f"{len({i.package for i in result.written})} packages{same}")


@cli.command("compile", epilog=common.example("""
mpkick compile src -o build          every .py but boot.py / main.py, as .mpy
mpkick compile lib/util.py --mpy 6.3
"""))
@common.common_options
@click.argument("sources", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the .mpy files [default: beside each source]")
@click.option("--mpy", metavar="N", help="Board's sys.implementation._mpy, or a version like "
                                         "6.3 [default: what the installed mpy-cross emits]")
@click.option("--mpy-cross", "mpy_cross", metavar="PATH", help="mpy-cross binary to use")
@click.option("--exclude", multiple=True, metavar="PATTERN",
              help="Sources in a folder to leave as .py [default: boot.py, main.py]")
def compile_cmd(sources: tuple[Path, ...], output: Path | None, mpy: str | None,
                mpy_cross: str | None, exclude: tuple[str, ...]) -> None:
    """Compile .py files to .mpy on the host; no board needed."""
    from ..compile.compiler import DEFAULT_EXCLUDE, Compiler, should_compile

    opts = common.options()
    compiler = Compiler.for_board(parse_mpy(mpy), mpy_cross)
    jobs: list[tuple[Path, str]] = []
    for source in sources:
        if source.is_dir():
            for file in sorted(source.rglob("*.py")):
                rel = file.relative_to(source).as_posix()
                if should_compile(rel, exclude or DEFAULT_EXCLUDE):
                    jobs.append((file, rel))
        else:
            jobs.append((source, source.name))
    built = [(file, rel, compiler.compile(file.read_bytes(), rel, str(file)))
             for file, rel in jobs]  # every file compiles before any is written
    for file, rel, data in built:
        dest = (output / rel if output else file).with_suffix(".mpy")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
    if not opts.quiet:
        click.echo(f"compiled {len(built)} files to .mpy {compiler.emits} with "
                   f"{compiler.tool.banner} ({compiler.hits} from cache)")
