"""Orchestrator benchmark: loop jitter at 100 Hz, host RSS during the demo, signal -> order latency.

    .venv/bin/python benchmarks/orchestrator.py --json benchmarks/results/orchestrator.json

Rows (each a run of the whole system -- synthetic market, seven sources, fusion, coordinator,
paper venues, journal on disk -- as the demo runs it, non-interactive, metrics off):

* **demo run** (software backend, sources at 5 Hz, 10 pairs, ``--duration`` s): cycle jitter
  p50/p99/max (|cycle start - its schedule|) and cycle time at 100 Hz; peak RSS of the process
  (sampled every 0.5 s); signal -> order latency p50/p99 (from the signal's creation to the
  order leaving for the venue: fusion, hand-off, coordinator, journal write-ahead commit).
* **busy run** (sources at 25 Hz, ``--busy-duration`` s): the same with five times the signal
  rate, for more latency samples and a busier loop.
* **stand-in primary** (sources at 25 Hz): the busy run through :class:`FailoverBackend` over the
  stand-in primary (the reference engine in a child process behind pipes) with the software
  engine as hot standby: the cost of a round trip per batch plus mirroring.  It is not a board.
* **virtual board** (``sim``, when the Verilator toolchain is present): the demo run and the busy
  run again with the virtual iCEBreaker as primary (the product core compiled by Verilator, a
  separate process behind a TCP link; 32-entry queue, 16 pair slots) and the software hot
  standby: loop jitter, host RSS (and the board process's own RSS), signal -> order latency.
  Every batch with signals is a round trip to the board; the fusion stage's p99 is reported.
* ``--realtime``: the demo run again under SCHED_FIFO (needs root or CAP_SYS_NICE).

The JSON keeps the load average and the share of a 1 s busy loop other processes took
(``contention``), because on a shared two-core machine those set the p99.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from ..config import SigfuseConfig
from ..execution.bench import contention_probe
from ..log import setup_logging
from .backend import build_backend
from .demo import run_demo
from .loop import Orchestrator

__all__ = ["bench_demo", "bench_loop", "run_all", "markdown_table", "main"]


def _row(summary: dict[str, Any]) -> dict[str, Any]:
    loop = summary["loop"]
    return {
        "duration_s": summary["duration_s"], "cycles": loop["cycles"], "overruns": loop["overruns"],
        "jitter_us": loop["jitter_us"], "cycle_us": loop["cycle_us"],
        "stages_p99_us": {k: v.get("p99") for k, v in loop["stages_us"].items()},
        "signals": summary["signals"], "decisions": summary["decisions"], "orders": summary["orders"],
        "signal_to_order_us": summary["signal_to_order_us"], "decision_to_order_us": summary["decision_to_order_us"],
        "peak_rss_mib": summary["resources"]["peak_rss_bytes"] / 2**20, "backend": summary["backend"],
        "peak_board_rss_mib": summary["resources"].get("peak_board_rss_bytes", 0) / 2**20,
        "queue_capacity": summary.get("queue_capacity"), "pair_slots": summary.get("pair_slots"),
        "failover": {k: summary["failover"][k] for k in ("signals_primary", "signals_software", "mirror_mismatches",
                                                         "failovers")},
    }


def bench_demo(duration_s: float, *, seed: int = 1, frequency_hz: float = 5.0,
               backend: str = "software") -> dict[str, Any]:
    """The demo itself (``software`` or ``sim``), non-interactive."""
    config = SigfuseConfig.model_validate({"metrics": {"enabled": False}, "demo": {"status_interval_s": 3600}})
    with tempfile.TemporaryDirectory(prefix="sigfuse-bench-") as directory:
        summary = asyncio.run(run_demo(config, duration_s=duration_s, frequency_hz=frequency_hz, backend=backend,
                                       seed=seed, out_dir=directory, out=io.StringIO(), serve_metrics=False))
    return _row(summary)


def bench_loop(duration_s: float, *, backend: str = "software", seed: int = 1,
               frequency_hz: float = 25.0) -> dict[str, Any]:
    """One orchestrator run with sources at ``frequency_hz`` on ``backend`` (software, standin or sim)."""
    config = SigfuseConfig.model_validate({"metrics": {"enabled": False}})
    with tempfile.TemporaryDirectory(prefix="sigfuse-bench-") as directory:
        chosen: Any = backend
        if backend == "standin":
            chosen = build_backend("standin", config.fusion.params(), capacity=config.queue.capacity,
                                   pair_slots=config.fusion.pair_slots)
        orchestrator = Orchestrator(config, journal_path=Path(directory) / "j.sqlite", backend=chosen, seed=seed,
                                    source_poll_hz=frequency_hz)
        summary = asyncio.run(orchestrator.run(duration_s))
    return _row(summary)


def _realtime(duration_s: float, seed: int) -> dict[str, Any] | None:
    if not hasattr(os, "sched_setscheduler"):
        return None
    try:
        before = os.sched_getscheduler(0), os.sched_getparam(0)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except PermissionError:
        return None
    try:
        return bench_demo(duration_s, seed=seed)
    finally:
        os.sched_setscheduler(0, before[0], before[1])


def run_all(*, duration_s: float = 30.0, busy_duration_s: float = 15.0, seed: int = 1,
            realtime: bool = False, sim: bool = True) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    from .backend import choose_backend
    sim = sim and choose_backend("auto", progress=lambda m: print(m, file=sys.stderr, flush=True))[0] == "sim"
    started = time.time()
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "load_average_at_start": load,
        "contention": contention_probe(1.0),
        "demo": bench_demo(duration_s, seed=seed),
        "busy": bench_loop(busy_duration_s, seed=seed),
        "standin": bench_loop(busy_duration_s, backend="standin", seed=seed),
        "demo_sim": bench_demo(duration_s, seed=seed, backend="sim") if sim else None,
        "busy_sim": bench_loop(busy_duration_s, backend="sim", seed=seed) if sim else None,
        "demo_realtime": _realtime(duration_s, seed) if realtime else None,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "wall_s": round(time.time() - started, 1),
    }
    return results


def _ms(stats: dict[str, Any], key: str) -> str:
    return f"{stats.get(key, float('nan')) / 1e3:.2f}"


def markdown_table(results: dict[str, Any]) -> str:
    demo, busy, standin = results["demo"], results["busy"], results["standin"]
    rows = [
        ("Loop at 100 Hz, cycle jitter p50 / p99 / max (demo: 7 sources at 5 Hz, 10 pairs; target p99 <= 2 ms)",
         f"{_ms(demo['jitter_us'], 'p50')} / {_ms(demo['jitter_us'], 'p99')} / {_ms(demo['jitter_us'], 'max')} ms"),
        ("Loop at 100 Hz, cycle jitter p50 / p99 (sources at 25 Hz)",
         f"{_ms(busy['jitter_us'], 'p50')} / {_ms(busy['jitter_us'], 'p99')} ms"),
        ("Host RSS during the demo, peak (target <= 100 MB)", f"{demo['peak_rss_mib']:.1f} MiB"),
        (f"Signal -> order latency p50 / p99, software backend (demo, {demo['signal_to_order_us'].get('samples', 0)} orders)",
         f"{_ms(demo['signal_to_order_us'], 'p50')} / {_ms(demo['signal_to_order_us'], 'p99')} ms"),
        (f"Signal -> order latency p50 / p99, software backend (sources at 25 Hz, "
         f"{busy['signal_to_order_us'].get('samples', 0)} orders)",
         f"{_ms(busy['signal_to_order_us'], 'p50')} / {_ms(busy['signal_to_order_us'], 'p99')} ms"),
        (f"Signal -> order latency p50 / p99, stand-in primary in a child process + software hot standby "
         f"({standin['signal_to_order_us'].get('samples', 0)} orders)",
         f"{_ms(standin['signal_to_order_us'], 'p50')} / {_ms(standin['signal_to_order_us'], 'p99')} ms"),
        ("Fusion stage p99: software / stand-in primary",
         f"{busy['stages_p99_us']['fusion'] / 1e3:.2f} / {standin['stages_p99_us']['fusion'] / 1e3:.2f} ms"),
    ]
    demo_sim, busy_sim = results.get("demo_sim"), results.get("busy_sim")
    if demo_sim and busy_sim:
        rows[3:3] = [
            ("Loop at 100 Hz, cycle jitter p50 / p99 / max, virtual board (demo: 7 sources at 5 Hz, 10 pairs)",
             f"{_ms(demo_sim['jitter_us'], 'p50')} / {_ms(demo_sim['jitter_us'], 'p99')} / "
             f"{_ms(demo_sim['jitter_us'], 'max')} ms"),
            ("Loop at 100 Hz, cycle jitter p50 / p99, virtual board (sources at 25 Hz)",
             f"{_ms(busy_sim['jitter_us'], 'p50')} / {_ms(busy_sim['jitter_us'], 'p99')} ms"),
            ("Host RSS during the demo on the virtual board, peak (the board's own process beside it)",
             f"{demo_sim['peak_rss_mib']:.1f} MiB (+ {demo_sim['peak_board_rss_mib']:.1f} MiB)"),
        ]
        rows[-1:-1] = [
            (f"Signal -> order latency p50 / p99, virtual board + software hot standby (demo, "
             f"{demo_sim['signal_to_order_us'].get('samples', 0)} orders)",
             f"{_ms(demo_sim['signal_to_order_us'], 'p50')} / {_ms(demo_sim['signal_to_order_us'], 'p99')} ms"),
            (f"Signal -> order latency p50 / p99, virtual board + software hot standby (sources at 25 Hz, "
             f"{busy_sim['signal_to_order_us'].get('samples', 0)} orders)",
             f"{_ms(busy_sim['signal_to_order_us'], 'p50')} / {_ms(busy_sim['signal_to_order_us'], 'p99')} ms"),
        ]
        rows.append(("Fusion stage p99 (sources at 25 Hz): virtual board (a round trip per batch with work)",
                     f"{busy_sim['stages_p99_us']['fusion'] / 1e3:.2f} ms"))
    realtime = results.get("demo_realtime")
    if realtime:
        rows.insert(1, ("Loop at 100 Hz, cycle jitter p50 / p99, SCHED_FIFO",
                        f"{_ms(realtime['jitter_us'], 'p50')} / {_ms(realtime['jitter_us'], 'p99')} ms"))
    contention = results.get("contention")
    if contention:
        rows.append(("CPU time other processes took from a 1 s busy loop at the start (machine contention)",
                     f"{contention['lost_share']:.0%}"))
    lines = ["| measurement | result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/orchestrator.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the demo run")
    parser.add_argument("--busy-duration", type=float, default=15.0, help="seconds of each 25 Hz run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--realtime", action="store_true", help="also run the demo under SCHED_FIFO")
    parser.add_argument("--no-sim", action="store_true", help="skip the virtual-board rows")
    parser.add_argument("--json", metavar="FILE", help="write the results here")
    args = parser.parse_args(argv)
    setup_logging("error", console="json")
    results = run_all(duration_s=args.duration, busy_duration_s=args.busy_duration, seed=args.seed,
                      realtime=args.realtime, sim=not args.no_sim)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
