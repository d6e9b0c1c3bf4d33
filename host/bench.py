"""``sigfuse bench``: throughput and latency of the reference engine, and of its priority queue
beside a plain :mod:`heapq`.

One process, one thread, so every figure is for one core.  All inputs (the synthetic stream, the
queue operation sequences) are generated from the seed before any clock starts, so everything in
the report except the timings and the run metadata is the same for a given seed.  Each
measurement is repeated (three times by default); the table shows the best run and the range, the
JSON keeps every run.  ``benchmarks/README.md`` explains the figures.

What is measured:

* **throughput** -- :meth:`ReferenceEngine.process` over the whole stream (signals of
  ``pairs`` pairs from the seven active sources) with a :class:`~sigfuse.contract.Pop` after every
  ``pop_every`` signals, so the queue drains as an executor would drain it instead of filling up
  and rejecting.  Pops take time but are not counted as signals.
* **latency** -- ``perf_counter_ns`` read around each ``fuse`` (+ ``push`` when a decision comes
  out) on the first ``latency_sample`` signals of the same stream; the pops happen outside the
  timed window.  The cost of reading the clock is measured the same way on an empty window and its
  median is subtracted from the percentiles.
* **queue** -- one sequence of pushes and pops that never exceeds the capacity, run through
  :class:`DecisionQueue` and through ``heapq`` with ``(-priority, push number, decision)``
  entries (the same order: highest priority first, FIFO among equals; the two must pop the same
  decisions, which the run checks).  A second, push-heavy sequence overflows the queue and runs
  through :class:`DecisionQueue` alone, since a bounded ``heapq`` with eviction of the newest
  lowest entry would be a different algorithm, not a baseline.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import random
import shlex
import subprocess
import sys
from dataclasses import dataclass
from heapq import heappop, heappush
from pathlib import Path
from time import perf_counter_ns
from typing import Any, Sequence

from . import __version__
from .config import SigfuseConfig
from .contract import (CONF_ONE, EDGE_MAX, PRIORITY_MAX, SEQ_MODULUS, Decision, Pop, Popped,
                       Signal, Source)
from .engine import ReferenceEngine
from .queue import DecisionQueue
from .synthetic import synthetic_events

__all__ = ["main", "build_parser", "BenchSettings", "run_bench", "render_table",
           "interleave_pops", "queue_op_sequence", "decision_queue_pops", "heapq_pops"]

#: The issue's target: fusion + queue through the reference engine on one core.
TARGET_SIGNALS_PER_S = 250_000
PAIRS = 10
ACTIVE_SOURCES = sum(1 for s in Source if s is not Source.CUSTOM)
#: The synthetic stream emits a decision for about one signal in 13, so a pop every 10 signals
#: drains slightly faster than fusion fills: the queue stays shallow, sometimes empty, as behind a
#: healthy executor.  Overflow is measured separately, on the queue alone.
POP_EVERY = 10
LATENCY_SAMPLE = 200_000
REPEATS = 3
#: Push probabilities of the queue op sequences: an unbiased walk between empty and full, and a
#: push-heavy one that reaches capacity and then overflows on a share of its pushes.
PUSH_PROBABILITY = 0.5
OVERFLOW_PUSH_PROBABILITY = 0.55
SCHEMA = 1


@dataclass
class BenchSettings:
    """What a run measures; ``main`` fills it from the command line."""
    signals: int = 1_000_000
    queue_ops: int = 1_000_000
    seed: int = 1
    repeats: int = REPEATS
    latency_sample: int = LATENCY_SAMPLE
    pop_every: int = POP_EVERY


# --- inputs (generated before any clock starts) -----------------------------------------------

def interleave_pops(signals: Sequence[Signal], every: int) -> list[Signal | Pop]:
    """``signals`` with a :class:`Pop` (at the preceding signal's timestamp) after every
    ``every`` of them."""
    events: list[Signal | Pop] = []
    append = events.append
    for i, signal in enumerate(signals, 1):
        append(signal)
        if i % every == 0:
            append(Pop(signal.ts_us))
    return events


def _random_priority(rng: random.Random) -> int:
    # Half over the whole UQ12.4 range, half in the low band where the fused priorities of real
    # streams sit (C x E of a few tens of bps) and ties -- FIFO order -- are common.
    if rng.random() < 0.5:
        return rng.randint(0, PRIORITY_MAX)
    return rng.randrange(1024)


def queue_op_sequence(count: int, *, seed: int, capacity: int,
                      overflow: bool) -> list[Decision | None]:
    """``count`` queue operations: a :class:`Decision` to push, or None to pop.

    A pop is never issued on an empty queue.  Without ``overflow`` the queue never holds more
    than ``capacity`` entries (a push is forced when empty, a pop when full); with it, pushes
    outnumber pops and push into a full queue.
    """
    rng = random.Random(seed)
    p_push = OVERFLOW_PUSH_PROBABILITY if overflow else PUSH_PROBABILITY
    ops: list[Decision | None] = []
    depth = pushes = 0
    ts = 1_000_000
    for _ in range(count):
        if depth == 0:
            push = True
        elif not overflow and depth >= capacity:
            push = False
        else:
            push = rng.random() < p_push
        if push:
            ts += rng.randint(0, 4_000)
            ops.append(Decision(ts, rng.randrange(PAIRS), rng.getrandbits(1),
                                rng.randint(CONF_ONE // 2, CONF_ONE), rng.randint(1, EDGE_MAX // 64),
                                _random_priority(rng), pushes % SEQ_MODULUS))
            pushes += 1
            depth = min(depth + 1, capacity)
        else:
            ops.append(None)
            depth -= 1
    return ops


def _depth_profile(ops: Sequence[Decision | None], capacity: int) -> dict[str, float]:
    """How full the queue is over a sequence (mean and maximum entries held)."""
    depth = total = deepest = 0
    for op in ops:
        depth = depth - 1 if op is None else min(depth + 1, capacity)
        total += depth
        deepest = max(deepest, depth)
    return {"mean_depth": round(total / max(1, len(ops)), 1), "max_depth": deepest}


# --- the pop sequences, for checking the comparison is fair (not timed) ------------------------

def decision_queue_pops(ops: Sequence[Decision | None], capacity: int) -> list[Decision | None]:
    queue = DecisionQueue(capacity)
    popped = []
    for op in ops:
        if op is None:
            popped.append(queue.pop())
        else:
            queue.push(op)
    return popped


def heapq_pops(ops: Sequence[Decision | None]) -> list[Decision]:
    heap: list[tuple[int, int, Decision]] = []
    popped = []
    seq = 0
    for op in ops:
        if op is None:
            popped.append(heappop(heap)[2])
        else:
            heappush(heap, (-op.priority, seq, op))
            seq += 1
    return popped


# --- timed sections -----------------------------------------------------------------------------

def _new_engine(config: SigfuseConfig) -> ReferenceEngine:
    return ReferenceEngine(config.fusion.params(), capacity=config.queue.capacity,
                           pair_slots=config.fusion.pair_slots)


def _throughput_run(events: Sequence[Signal | Pop],
                    config: SigfuseConfig) -> tuple[int, dict[str, int]]:
    engine = _new_engine(config)
    process = engine.process
    gc.collect()
    start = perf_counter_ns()
    results = process(events)
    elapsed = perf_counter_ns() - start
    counts = {
        "decisions": engine.fusion.decisions,
        "stale": engine.fusion.stale_drops,
        "pops": sum(1 for r in results if type(r) is Popped),
        "empty_pops": sum(1 for r in results if type(r) is Popped and r.decision is None),
        "evicted": engine.queue.evicted,
        "rejected": engine.queue.rejected,
        "queue_high_water": engine.queue.high_water,
    }
    return elapsed, counts


def _latency_run(signals: Sequence[Signal], pop_every: int,
                 config: SigfuseConfig) -> tuple[list[int], list[int]]:
    """Per-signal fuse(+push) times in ns, all signals and those that emitted a decision."""
    engine = _new_engine(config)
    fuse, push, pop = engine.fusion.fuse, engine.queue.push, engine.queue.pop
    clock = perf_counter_ns
    elapsed = [0] * len(signals)
    emitted = bytearray(len(signals))
    gc.collect()
    for i, signal in enumerate(signals):
        start = clock()
        outcome = fuse(signal)
        # A Decision is a non-empty tuple; None (no decision) and False (stale) are falsy.
        if outcome:
            push(outcome)
        end = clock()
        elapsed[i] = end - start
        if outcome:
            emitted[i] = 1
        if (i + 1) % pop_every == 0:
            pop()
    return elapsed, [t for t, e in zip(elapsed, emitted) if e]


def _timer_overhead(count: int) -> list[int]:
    """What two back-to-back clock reads cost, measured like the latency window."""
    clock = perf_counter_ns
    elapsed = [0] * count
    for i in range(count):
        start = clock()
        end = clock()
        elapsed[i] = end - start
    return elapsed


def _time_decision_queue(ops: Sequence[Decision | None], capacity: int) -> tuple[int, DecisionQueue]:
    queue = DecisionQueue(capacity)
    push, pop = queue.push, queue.pop
    gc.collect()
    start = perf_counter_ns()
    for op in ops:
        if op is None:
            pop()
        else:
            push(op)
    return perf_counter_ns() - start, queue


def _time_heapq(ops: Sequence[Decision | None]) -> int:
    # The equivalent of DecisionQueue on a sequence that never overflows: priority order, FIFO
    # among equals through a push counter, the decision as payload; no bound, no eviction.
    heap: list[tuple[int, int, Decision]] = []
    seq = 0
    gc.collect()
    start = perf_counter_ns()
    for op in ops:
        if op is None:
            heappop(heap)
        else:
            heappush(heap, (-op.priority, seq, op))
            seq += 1
    return perf_counter_ns() - start


# --- statistics -----------------------------------------------------------------------------------

def _percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return 0
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


_PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))


def _percentiles(samples: list[int]) -> dict[str, int]:
    ordered = sorted(samples)
    return {name: _percentile(ordered, q) for name, q in _PERCENTILES}


def _spread(runs: list[float], *, higher_is_better: bool) -> dict[str, Any]:
    best, worst = (max, min) if higher_is_better else (min, max)
    return {"best": best(runs), "worst": worst(runs), "runs": runs}


def _rate(count: int, elapsed_ns: int) -> float:
    return round(count * 1e9 / elapsed_ns, 1) if elapsed_ns else math.inf


# --- run metadata ---------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and os.path.basename(argv[0]) in ("sigfuse", "cli.py"):
        argv[0] = "sigfuse"
    elif argv and argv[0].endswith(".py"):
        argv[0:1] = ["python", os.path.relpath(argv[0])]
    return shlex.join(argv)


def _git_revision() -> dict[str, Any] | None:
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=5, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(status.strip())}


def _metadata(settings: BenchSettings) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": _command_line(),
        "seed": settings.seed,
        "sigfuse": __version__,
        "git": _git_revision(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "logical_cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "processes": 1,
    }


# --- the run --------------------------------------------------------------------------------------

def _progress(message: str) -> None:
    if sys.stderr.isatty():
        print(f"sigfuse bench: {message}", file=sys.stderr, flush=True)


def run_bench(settings: BenchSettings) -> dict[str, Any]:
    """Run every measurement; return the report (what ``--json`` writes)."""
    config = SigfuseConfig()
    capacity = config.queue.capacity
    report: dict[str, Any] = {"schema": SCHEMA, "meta": _metadata(settings)}

    _progress(f"generating {settings.signals:,} signals and 2 x {settings.queue_ops:,} queue ops")
    signals = list(synthetic_events(settings.signals, pairs=PAIRS, seed=settings.seed))
    events = interleave_pops(signals, settings.pop_every)
    sample = signals[:settings.latency_sample]
    fair_ops = queue_op_sequence(settings.queue_ops, seed=settings.seed, capacity=capacity,
                                 overflow=False)
    overflow_ops = queue_op_sequence(settings.queue_ops, seed=settings.seed + 1, capacity=capacity,
                                     overflow=True)
    pops_match = decision_queue_pops(fair_ops, capacity) == heapq_pops(fair_ops)
    # The inputs are long-lived and immutable: keep the collector from rescanning them in every
    # full collection (a streaming host would not hold a million events at once).
    gc.collect()
    gc.freeze()
    try:
        report["settings"] = {
            "signals": settings.signals, "pairs": PAIRS, "sources": ACTIVE_SOURCES,
            "pop_every": settings.pop_every, "latency_sample": len(sample),
            "queue_ops": settings.queue_ops, "queue_capacity": capacity,
            "pair_slots": config.fusion.pair_slots, "repeats": settings.repeats,
        }

        elapsed_runs, counts = [], None
        for run in range(settings.repeats):
            _progress(f"throughput, run {run + 1}/{settings.repeats}")
            elapsed, run_counts = _throughput_run(events, config)
            if counts is not None and run_counts != counts:
                raise RuntimeError(f"reference engine is not deterministic: {counts} != {run_counts}")
            counts = run_counts
            elapsed_runs.append(elapsed)
        best_rate = max(_rate(len(signals), e) for e in elapsed_runs)
        report["throughput"] = {
            "signals_per_s": _spread([_rate(len(signals), e) for e in elapsed_runs],
                                     higher_is_better=True),
            "events_per_s": _spread([_rate(len(events), e) for e in elapsed_runs],
                                    higher_is_better=True),
            "elapsed_ns": elapsed_runs,
            "events": len(events),
            **(counts or {}),
            "target_signals_per_s": TARGET_SIGNALS_PER_S,
            "target_met": best_rate >= TARGET_SIGNALS_PER_S,
        }

        latency_runs, emitting_runs, overhead_runs = [], [], []
        emitting_count = 0
        for run in range(settings.repeats):
            _progress(f"latency, run {run + 1}/{settings.repeats}")
            overhead_runs.append(_percentiles(_timer_overhead(len(sample))))
            all_ns, emitting_ns = _latency_run(sample, settings.pop_every, config)
            emitting_count = len(emitting_ns)
            latency_runs.append(_percentiles(all_ns))
            emitting_runs.append(_percentiles(emitting_ns))
        overhead = min(r["p50"] for r in overhead_runs)

        def net(runs: list[dict[str, int]]) -> dict[str, Any]:
            return {name: _spread([max(0, r[name] - overhead) for r in runs], higher_is_better=False)
                    for name, _ in _PERCENTILES}

        report["latency_ns"] = {
            "signals": len(sample),
            "emitting_signals": emitting_count,
            "timer_overhead": {name: _spread([r[name] for r in overhead_runs], higher_is_better=False)
                               for name, _ in _PERCENTILES},
            "timer_overhead_subtracted": overhead,
            "all": net(latency_runs),
            "emitting": net(emitting_runs),
            "raw_all": latency_runs,
            "raw_emitting": emitting_runs,
        }

        fair_dq, fair_heapq, overflow_dq = [], [], []
        overflow_queue = None
        for run in range(settings.repeats):
            _progress(f"queue, run {run + 1}/{settings.repeats}")
            fair_dq.append(_rate(len(fair_ops), _time_decision_queue(fair_ops, capacity)[0]))
            fair_heapq.append(_rate(len(fair_ops), _time_heapq(fair_ops)))
            elapsed, overflow_queue = _time_decision_queue(overflow_ops, capacity)
            overflow_dq.append(_rate(len(overflow_ops), elapsed))
        fair_pushes = sum(1 for op in fair_ops if op is not None)
        overflow_pushes = sum(1 for op in overflow_ops if op is not None)
        assert overflow_queue is not None
        report["queue"] = {
            "capacity": capacity,
            "non_overflowing": {
                "ops": len(fair_ops), "pushes": fair_pushes, "pops": len(fair_ops) - fair_pushes,
                **_depth_profile(fair_ops, capacity),
                "pop_sequences_match": pops_match,
                "decision_queue_ops_per_s": _spread(fair_dq, higher_is_better=True),
                "heapq_ops_per_s": _spread(fair_heapq, higher_is_better=True),
            },
            "overflowing": {
                "ops": len(overflow_ops), "pushes": overflow_pushes,
                "pops": len(overflow_ops) - overflow_pushes,
                **_depth_profile(overflow_ops, capacity),
                "evicted": overflow_queue.evicted, "rejected": overflow_queue.rejected,
                "decision_queue_ops_per_s": _spread(overflow_dq, higher_is_better=True),
            },
        }
    finally:
        gc.unfreeze()
    return report


# --- output ---------------------------------------------------------------------------------------

def _count(value: float) -> str:
    return f"{value:,.0f}"


def _micros(ns: float) -> str:
    return f"{ns / 1000:.2f}"


def render_table(report: dict[str, Any]) -> str:
    """The report as Markdown: a line of run metadata, the table, the target verdict."""
    meta, settings = report["meta"], report["settings"]
    throughput, latency, queue = report["throughput"], report["latency_ns"], report["queue"]
    fair, overflow = queue["non_overflowing"], queue["overflowing"]
    runs = settings["repeats"]

    def rate_row(label: str, spread: dict[str, Any], unit: str) -> str:
        best, worst = _count(spread["best"]), _count(spread["worst"])
        return f"| {label} | {best} | {worst}–{best} | {unit} |"

    def latency_row(label: str, spread: dict[str, Any]) -> str:
        best, worst = _micros(spread["best"]), _micros(spread["worst"])
        return f"| {label} | {best} | {best}–{worst} | µs |"

    overflow_share = (overflow["evicted"] + overflow["rejected"]) / max(1, overflow["pushes"])
    emitting_share = latency["emitting_signals"] / max(1, latency["signals"])
    lines = [
        f"`{meta['command']}` -- {meta['date']}, Python {meta['python']} "
        f"({meta['implementation']}), {meta['cpu']}, seed {meta['seed']}, one process",
        "",
        f"| measurement | best | range over {runs} run{'s' if runs != 1 else ''} | unit |",
        "|---|--:|--:|---|",
        rate_row(f"reference engine, fusion + queue: {settings['signals']:,} signals, "
                 f"{settings['pairs']} pairs, {settings['sources']} sources, "
                 f"pop every {settings['pop_every']}", throughput["signals_per_s"], "signals/s"),
        latency_row(f"per-signal fuse+push latency p50 ({latency['signals']:,} signals, "
                    f"{latency['timer_overhead_subtracted']} ns timer overhead subtracted)",
                    latency["all"]["p50"]),
        latency_row("per-signal fuse+push latency p99", latency["all"]["p99"]),
        latency_row("per-signal fuse+push latency p99.9", latency["all"]["p99_9"]),
        latency_row(f"latency p99, signals that emit a decision ({emitting_share:.1%})",
                    latency["emitting"]["p99"]),
        rate_row(f"DecisionQueue push/pop, {fair['ops']:,} ops, never overflowing "
                 f"(mean depth {fair['mean_depth']:.0f} of {queue['capacity']})",
                 fair["decision_queue_ops_per_s"], "ops/s"),
        rate_row("heapq push/pop (-priority, seq), same ops", fair["heapq_ops_per_s"], "ops/s"),
        rate_row(f"DecisionQueue push/pop, {overflow['ops']:,} ops, {overflow_share:.0%} of "
                 f"pushes into a full queue (mean depth {overflow['mean_depth']:.0f})",
                 overflow["decision_queue_ops_per_s"], "ops/s"),
        "",
        f"Target ≥ {throughput['target_signals_per_s']:,} signals/s through fusion + queue on one "
        f"core: {'met' if throughput['target_met'] else 'NOT met'}.",
    ]
    if not fair["pop_sequences_match"]:
        lines.append("WARNING: DecisionQueue and heapq popped different sequences; "
                     "the queue comparison is not like for like.")
    return "\n".join(lines) + "\n"


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    """The options of ``sigfuse bench`` and ``benchmarks/run_reference.py`` (one definition)."""
    parser = argparse.ArgumentParser(prog="run_reference.py", description=__doc__.splitlines()[0],
                                     add_help=add_help)
    parser.add_argument("--signals", type=int, default=BenchSettings.signals,
                        help="synthetic stream length")
    parser.add_argument("--queue-ops", type=int, default=BenchSettings.queue_ops,
                        help="push+pop operations per queue sequence")
    parser.add_argument("--seed", type=int, default=BenchSettings.seed)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of each measurement")
    parser.add_argument("--latency-sample", type=int, default=LATENCY_SAMPLE,
                        help="signals timed one by one")
    parser.add_argument("--pop-every", type=int, default=POP_EVERY,
                        help="signals between two pops in the throughput stream")
    return parser


def main(args: argparse.Namespace) -> int:
    """Entry point of ``sigfuse bench``; options the command does not define take defaults."""
    from .cli import UserError

    settings = BenchSettings()
    for name in ("signals", "queue_ops", "seed", "repeats", "latency_sample", "pop_every"):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    for name in ("signals", "queue_ops", "repeats", "latency_sample", "pop_every"):
        if getattr(settings, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, "
                            f"not {getattr(settings, name)}")

    report = run_bench(settings)
    sys.stdout.write(render_table(report))
    json_path = getattr(args, "json", None)
    if json_path:
        path = Path(json_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            raise UserError(f"cannot write {json_path}: {error.strerror}") from None
    return 0
