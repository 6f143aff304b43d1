"""The channel's opcodes are named once (``protocol/opcodes.py``), and the board's agent handles
exactly the frames the host sends: checked on a real board (the sim), so an opcode changed or
added on one side only, or a value spelled out by hand in board code, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from mpkick.board import agent, agentload
from mpkick.board.board import Board
from mpkick.protocol.opcodes import HANDLED_BY, SYNC, Answer, Frame, board_header

NAMES = {f"_{m.name}" for m in (*Answer, *Frame)} | {"_SYNC"}


def dispatched(board: Board, module: str) -> set[int]:
    """The frame kinds ``module``'s handlers are registered under, on the board itself."""
    if module == agentload.RECV:
        return set(board.eval(f"sorted(__import__({module!r})._OPS)"))
    board.exec(f"import {agentload.AGENT}\n{agentload.AGENT}._ext.clear()")
    board._parts.discard(module)
    board.exec(f"import sys\nsys.modules.pop({module!r}, 0)")
    board.load_part(module)
    return set(board.eval(f"sorted({agentload.AGENT}._ext)")) - {Frame.END}


def test_the_session_dispatches_exactly_the_frames_the_host_sends(board: Board) -> None:
    board.load_agent()
    assert dispatched(board, agentload.RECV) == set(HANDLED_BY[agentload.RECV])


def test_the_flash_part_handles_exactly_the_flash_frames(board: Board) -> None:
    board.load_agent()
    assert dispatched(board, "mpkick_flash") == set(HANDLED_BY["mpkick_flash"])


def test_every_frame_kind_has_one_handler_and_every_value_one_name() -> None:
    owned = [kind for kinds in HANDLED_BY.values() for kind in kinds]
    assert sorted([*owned, Frame.END]) == sorted(Frame)  # END: the session's own ending
    values = [SYNC, *Answer, *Frame]
    assert len(set(values)) == len(values)


def test_the_board_gets_the_hosts_values() -> None:
    """What the agent is compiled with is the host's table, value for value."""
    consts = {}
    for node in ast.parse(board_header()).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
        target, arg = node.targets[0], node.value.args[0]
        assert isinstance(target, ast.Name) and isinstance(arg, ast.Constant)
        consts[target.id] = arg.value
    assert consts == {"_SYNC": SYNC, **{f"_{m.name}": m.value for m in (*Answer, *Frame)}}
    files, _ = agentload.agent_texts()
    assert all(board_header() in body for _, body in files)


def test_an_agent_compiled_with_another_value_is_caught(board: Board) -> None:
    """The check has teeth: the session code compiled with OPEN moved (the board's side
    changed alone) no longer dispatches what the host sends."""
    board.load_agent()
    moved = agentload.text(agentload.RECV).replace(f"_OPEN = const({Frame.OPEN:#04x})",
                                                   "_OPEN = const(0x6f)")
    board.exec(moved, timeout=30)
    assert set(board.eval("sorted(_OPS)")) != set(HANDLED_BY[agentload.RECV])


def test_no_board_code_spells_an_opcode_out() -> None:
    """Frame kinds and answers appear in agent files only by name: a comparison with a frame's
    kind, a handler table's key or an answer's code is never a number."""
    for path in sorted(Path(agent.HERE).glob("mpkick_*.py")):
        if path.stem == "mpkick_attach":  # its own link protocol, not the channel's
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            numbers: list[ast.expr] = []
            if isinstance(node, ast.Compare) and any(
                    isinstance(n, ast.Name) and n.id in ("kind", "code", "b")
                    for n in [node.left, *node.comparators]):
                numbers = [n for n in [node.left, *node.comparators]
                           if isinstance(n, ast.Constant) and n.value in _opcode_values()]
            elif isinstance(node, ast.Dict) and any(isinstance(k, ast.Name) and k.id in NAMES
                                                    for k in node.keys):
                numbers = [k for k in node.keys if not isinstance(k, ast.Name)]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "reply":
                numbers = [a for a in node.args[:1] if isinstance(a, ast.Constant)]
            assert not numbers, f"{path.name}:{node.lineno}: an opcode spelled out"
        # A constant-like name the file neither defines nor gets from the table: a typo, or
        # an opcode the host never named.
        defined = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign)
                   for t in n.targets if isinstance(t, ast.Name)}
        loose = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and
                 n.id.startswith("_") and n.id[1:].isupper()} - defined
        assert loose <= NAMES, (path.name, loose - NAMES)


def _opcode_values() -> set[int]:
    return {SYNC, *(a.value for a in Answer), *(f.value for f in Frame)} - {0x0A, 0x0D, 0x03}
