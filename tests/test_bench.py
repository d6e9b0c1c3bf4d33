"""``sigfuse bench`` runs and reports every figure; its queue comparison is like for like.

No timing assertions here: speed targets are checked by running the benchmarks, never by tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sigfuse import cli
from sigfuse.bench import decision_queue_pops, heapq_pops, queue_op_sequence
from sigfuse.queue import DecisionQueue

REPO = Path(__file__).resolve().parent.parent
TINY = ["--signals", "2000", "--queue-ops", "2000", "--seed", "3"]


def _run(command: list[str], json_path: Path) -> tuple[str, dict]:
    done = subprocess.run([sys.executable, *command, *TINY, "--json", str(json_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(json_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    return _run(["-m", "sigfuse.cli", "bench"], tmp_path_factory.mktemp("bench") / "out.json")


def _spread_ok(spread: dict, repeats: int) -> None:
    assert set(spread) == {"best", "worst", "runs"}
    assert len(spread["runs"]) == repeats
    assert spread["best"] in spread["runs"] and spread["worst"] in spread["runs"]


def test_bench_prints_a_markdown_table(bench_run: tuple[str, dict]) -> None:
    stdout, _ = bench_run
    lines = stdout.splitlines()
    assert lines[0].startswith("`sigfuse bench --signals 2000")
    assert "seed 3" in lines[0] and "Python " in lines[0]
    header = lines.index("| measurement | best | range over 3 runs | unit |")
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert len(rows) == 8
    assert all(line.count("|") == 5 for line in rows)
    units = [row.rsplit("|", 2)[1].strip() for row in rows]
    assert units == ["signals/s"] + ["µs"] * 4 + ["ops/s"] * 3
    assert "heapq" in rows[6]
    assert any(line.startswith("Target ≥ 250,000 signals/s") for line in lines)


def test_bench_json_has_every_field(bench_run: tuple[str, dict]) -> None:
    _, report = bench_run
    meta = report["meta"]
    for key in ("date", "command", "seed", "python", "implementation", "cpu", "sigfuse"):
        assert meta[key] not in (None, ""), key
    assert meta["seed"] == 3 and meta["processes"] == 1
    assert meta["command"].startswith("sigfuse bench")

    settings = report["settings"]
    assert settings["signals"] == 2000 and settings["queue_ops"] == 2000
    assert (settings["pairs"], settings["sources"]) == (10, 7)
    repeats = settings["repeats"]

    throughput = report["throughput"]
    _spread_ok(throughput["signals_per_s"], repeats)
    _spread_ok(throughput["events_per_s"], repeats)
    assert throughput["events"] == 2000 + 2000 // settings["pop_every"]
    assert throughput["pops"] == 2000 // settings["pop_every"]
    assert throughput["decisions"] > 0
    assert isinstance(throughput["target_met"], bool)

    latency = report["latency_ns"]
    assert latency["signals"] == 2000 and 0 < latency["emitting_signals"] < 2000
    for group in ("all", "emitting", "timer_overhead"):
        assert set(latency[group]) == {"p50", "p99", "p99_9"}
        for spread in latency[group].values():
            _spread_ok(spread, repeats)
    for raw in latency["raw_all"]:
        assert raw["p50"] <= raw["p99"] <= raw["p99_9"]

    queue = report["queue"]
    fair, overflow = queue["non_overflowing"], queue["overflowing"]
    assert fair["pop_sequences_match"] is True
    assert fair["ops"] == fair["pushes"] + fair["pops"] == 2000
    assert fair["max_depth"] <= queue["capacity"]
    for spread in (fair["decision_queue_ops_per_s"], fair["heapq_ops_per_s"],
                   overflow["decision_queue_ops_per_s"]):
        _spread_ok(spread, repeats)
    assert overflow["ops"] == overflow["pushes"] + overflow["pops"] == 2000


def test_run_reference_script_gives_the_same_counts(bench_run: tuple[str, dict],
                                                    tmp_path: Path) -> None:
    # Everything but the timings and the run metadata is a function of the seed.
    _, first = bench_run
    _, second = _run(["benchmarks/run_reference.py"], tmp_path / "out.json")
    assert second["meta"]["command"].startswith("python benchmarks/run_reference.py")
    assert second["settings"] == first["settings"]
    # target_met follows from the measured rate, so it is a timing too (it flips under load).
    timing = {"signals_per_s", "events_per_s", "elapsed_ns", "target_met"}
    assert ({k: v for k, v in second["throughput"].items() if k not in timing}
            == {k: v for k, v in first["throughput"].items() if k not in timing})
    for key in ("signals", "emitting_signals"):
        assert second["latency_ns"][key] == first["latency_ns"][key]
    for sequence in ("non_overflowing", "overflowing"):
        counts = {k: v for k, v in second["queue"][sequence].items() if not k.endswith("_per_s")}
        assert counts == {k: v for k, v in first["queue"][sequence].items()
                          if not k.endswith("_per_s")}


@pytest.mark.parametrize("capacity, seed", [(256, 1), (16, 2), (4, 3)])
def test_heapq_baseline_pops_what_decision_queue_pops(capacity: int, seed: int) -> None:
    ops = queue_op_sequence(20_000, seed=seed, capacity=capacity, overflow=False)
    depth = 0
    for op in ops:
        depth += -1 if op is None else 1
        assert 0 <= depth <= capacity
    popped = decision_queue_pops(ops, capacity)
    assert None not in popped
    assert popped == heapq_pops(ops)
    # Ties are frequent enough that FIFO order among equal priorities is exercised.
    ties = sum(1 for a, b in zip(popped, popped[1:]) if a.priority == b.priority)
    assert ties > 0


def test_overflowing_sequence_overflows() -> None:
    ops = queue_op_sequence(5_000, seed=1, capacity=16, overflow=True)
    queue = DecisionQueue(16)
    for op in ops:
        if op is None:
            assert queue.pop() is not None
        else:
            queue.push(op)
    assert queue.evicted > 0 and queue.rejected > 0


def test_bench_rejects_empty_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "--signals", "0"]) == cli.EXIT_USAGE
    assert "--signals must be at least 1" in capsys.readouterr().err
