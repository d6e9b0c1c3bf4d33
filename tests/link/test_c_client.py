"""The C client library and its example (``firmware/``), compiled here and run against the
virtual board (``sigfuse.sim.board.VirtualBoard``): the decisions it prints are those of the
reference engine for the same signals."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from sigfuse.contract import Decision, DecisionEmitted, Dropped, DropReason, FusionParams, Pop, Popped, Signal
from sigfuse.engine import ReferenceEngine

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"

needs_cc = pytest.mark.skipif(shutil.which("cc") is None or shutil.which("make") is None,
                              reason="no C compiler or make")


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    if shutil.which("cc") is None or shutil.which("make") is None:
        pytest.skip("no C compiler or make")
    out = tmp_path_factory.mktemp("firmware")
    run = subprocess.run(["make", "-C", str(FIRMWARE), f"OUT={out}", "CFLAGS=-O2 -Werror"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return out / "push_decisions"


def test_usage_and_unreachable_board(example):
    run = subprocess.run([str(example)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "usage" in run.stderr
    # Port 1 on loopback: nothing listens there.
    run = subprocess.run([str(example), "socket://127.0.0.1:1"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "push_decisions:" in run.stderr
    run = subprocess.run([str(example), "/nonexistent/ttyUSB9"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "/nonexistent/ttyUSB9" in run.stderr


_FIELD = re.compile(r"(\w+)=(\S+)")


def _fields(line: str) -> dict[str, int]:
    return {k: (1 if v == "sell" else 0) if k == "side" else int(v, 0) for k, v in _FIELD.findall(line)}


def _signal_line(kind: str, s: Signal) -> str:
    return (f"{kind} ts_us={s.ts_us} source={s.source} pair={s.pair} side={'sell' if s.side else 'buy'} "
            f"confidence={s.confidence} edge_bps={s.edge_bps}")


def _decision_line(kind: str, d: Decision) -> str:
    return (f"{kind} ts_us={d.ts_us} pair={d.pair} side={'sell' if d.side else 'buy'} "
            f"confidence={d.confidence} edge_bps={d.edge_bps} priority={d.priority} seq={d.seq}")


def _reference_lines(results) -> list[str]:
    lines = []
    for r in results:
        if isinstance(r, DecisionEmitted):
            lines.append(_decision_line("decision", r.decision))
        elif isinstance(r, Popped):
            lines.append("popped_empty" if r.decision is None else _decision_line("popped", r.decision))
        elif r.reason is DropReason.STALE:
            lines.append(_signal_line("stale", r.record))
        else:
            lines.append(_decision_line(r.reason.name.lower(), r.record))
    return lines


@pytest.mark.slow
def test_push_decisions_on_the_virtual_board(example):
    try:
        from sigfuse.sim.board import VirtualBoard
    except ImportError as error:  # the virtual board is another part of issue 5
        pytest.skip(f"sigfuse.sim.board is not available: {error}")
    with VirtualBoard(board="icebreaker") as board:
        run = subprocess.run([str(example), board.url], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr  # no bad or lost board frames
    lines = run.stdout.splitlines()
    info = _fields(lines[0])
    assert lines[0].startswith("board ") and info["version"] >> 24 == 1
    signals = [Signal(**_fields(line)) for line in lines if line.startswith("signal ")]
    assert len(signals) == 7
    pushed = lines[1 + len(signals):lines.index("pop 3")]
    popped = lines[lines.index("pop 3") + 1:]

    engine = ReferenceEngine(FusionParams(), capacity=info["queue_capacity"], pair_slots=info["pair_slots"])
    assert pushed == _reference_lines(engine.process(signals))
    assert popped == _reference_lines(engine.process([Pop(3000)] * 3))
    assert any(line.startswith("decision ") for line in pushed)  # the example shows a decision
    assert any(line.startswith("popped ") for line in popped)
