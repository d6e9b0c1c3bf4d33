"""Cycles per signal, latency, and Verilator backend throughput of the gateware datapath.

Issue 3's benchmark.  Three measurements, one run::

    .venv/bin/python benchmarks/datapath.py --json benchmarks/results/datapath.json

* **cycles per signal** -- the datapath (:class:`~sigfuse.gateware.datapath.FusionDatapath`,
  compiled by Verilator) counts its own clocks.  A batch of back-to-back signals for *one* pair
  (every signal forwarded from the vote in flight before it) costs ``N + k`` clocks, where ``k``
  is the fixed fill/drain time of one batch; ``k`` is measured with a batch of one signal and
  subtracted, so the figure is the steady-state clocks per signal (the issue requires 1.0).
  The same for a mixed stream (10 pairs, pops interleaved: a pop waits for the signals in
  flight, so mixed streams cost more).
* **latency** -- clock edges from the one that accepts a signal into the fusion pipeline to
  the one that transfers its decision (``LATENCY`` in the docs), measured in the Amaranth simulator on
  :class:`~sigfuse.gateware.fusion.FusionPipeline`, and in ns at the Fmax given (default: the
  best measured ECP5 Fmax of the pipeline, docs/fusion-pipeline.md).
* **events/s** -- ``process()`` of the Verilator backend and of the reference engine on the same
  100 000-event stream (10 pairs, 7 sources, 10 % pops), in the same run; outputs compared.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from sigfuse.contract import FusionParams, Signal, Source
from sigfuse.engine import ReferenceEngine, open_backend
from sigfuse.synthetic import synthetic_events

#: Best measured Fmax of the fusion pipeline alone (ECP5-85F −6, LUT RAM), docs/fusion-pipeline.md.
DEFAULT_FMAX_MHZ = 65.6


def same_pair_stream(count: int) -> list[Signal]:
    """``count`` signals for pair 0, sources cycling, 1 µs apart, all agreeing (every signal
    reads the vote its predecessor is still writing)."""
    sources = [s for s in Source if s.value < 7]
    return [Signal(ts_us=1_000 + i, source=sources[i % len(sources)], pair=0, side=1,
                   confidence=30_000, edge_bps=1_000) for i in range(count)]


def cycles_per_signal(backend, events) -> float:
    start = backend.clocks
    backend.process(events)
    return backend.clocks - start


def measure_latency() -> dict[str, int]:
    """Clocks from acceptance to decision/stale valid, in the Amaranth simulator."""
    from amaranth.sim import Simulator

    from sigfuse.gateware.fusion import LATENCY, STALE_LATENCY, FusionPipeline
    from sigfuse.contract import SIGNAL_LAYOUT
    from sigfuse.gateware.layouts import pack

    dut = FusionPipeline(16)
    measured: dict[str, int] = {}

    async def bench(ctx):
        ctx.set(dut.decisions.ready, 1)
        for _ in range(4000):           # let the reset-time mask table refresh finish
            if ctx.get(dut.signals.ready):
                break
            await ctx.tick()
        async def send(signal: Signal, port) -> int | None:
            """Clock edges from the one that accepts ``signal`` to the one that transfers its
            result on ``port`` (``valid`` is seen after one edge fewer); None: nothing within 20."""
            ctx.set(dut.signals.payload.as_value(), pack(SIGNAL_LAYOUT, signal))
            ctx.set(dut.signals.valid, 1)
            await ctx.tick()
            ctx.set(dut.signals.valid, 0)
            for clocks in range(20):
                if ctx.get(port.valid):
                    result = clocks + 1
                    break
                await ctx.tick()
            else:
                result = None
            for _ in range(10):
                await ctx.tick()
            return result

        # Agreeing signals from the sources in weight order until the first decision.
        for source in range(7):
            clocks = await send(Signal(10_000 + source, source, 0, 1, 32_000, 500), dut.decisions)
            if clocks is not None:
                measured["decision"] = clocks
                break
        measured["stale"] = await send(Signal(5_000, 0, 0, 1, 32_000, 500), dut.stale)
        measured["LATENCY"] = LATENCY
        measured["STALE_LATENCY"] = STALE_LATENCY

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--fmax-mhz", type=float, default=DEFAULT_FMAX_MHZ)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    params = FusionParams()
    report: dict = {"command": " ".join(["python", *sys.argv]), "python": platform.python_version(),
                    "date": time.strftime("%Y-%m-%d")}

    with open_backend("verilator", params, capacity=256, pair_slots=64) as backend:
        # One harness request for the whole stream: the backend normally cuts a batch into
        # 1024-event requests, each drained before it is answered (8 clocks apiece).
        backend.chunk_events = args.signals
        backend.process(same_pair_stream(1))      # warm up: reset refresh, first fill
        overhead = cycles_per_signal(backend, same_pair_stream(1)) - 1
        clocks = cycles_per_signal(backend, same_pair_stream(args.signals))
        report["same_pair"] = {"signals": args.signals, "clocks": clocks, "batch_overhead": overhead,
                               "cycles_per_signal": (clocks - overhead) / args.signals}

    events = list(synthetic_events(args.signals, pairs=10, pop_ratio=0.1, seed=1))
    pops = sum(1 for e in events if not isinstance(e, Signal))
    with open_backend("verilator", params, capacity=256, pair_slots=64) as backend:
        backend.process(same_pair_stream(1))
        start_clocks = backend.clocks
        t0 = time.perf_counter()
        got = []
        for i in range(0, len(events), 4096):
            got += backend.process(events[i:i + 4096])
        verilator_s = time.perf_counter() - t0
        mixed_clocks = backend.clocks - start_clocks
    t0 = time.perf_counter()
    want = ReferenceEngine(params, capacity=256, pair_slots=64).process(events)
    reference_s = time.perf_counter() - t0
    if got != want:
        raise SystemExit("verilator backend and reference disagree")
    report["mixed"] = {"events": len(events), "pops": pops, "clocks": mixed_clocks,
                       "cycles_per_event": mixed_clocks / len(events)}
    report["events_per_s"] = {"verilator": len(events) / verilator_s,
                              "reference": len(events) / reference_s, "identical": True}

    latency = measure_latency()
    ns = 1_000 / args.fmax_mhz
    report["latency"] = {"decision_clocks": latency["decision"], "stale_clocks": latency["stale"],
                         "fmax_mhz": args.fmax_mhz, "decision_ns": latency["decision"] * ns,
                         "documented": {"LATENCY": latency["LATENCY"],
                                        "STALE_LATENCY": latency["STALE_LATENCY"]}}

    same, mixed, rate, lat = report["same_pair"], report["mixed"], report["events_per_s"], report["latency"]
    print("| measurement | result |")
    print("|---|---|")
    print(f"| cycles per signal, {same['signals']:,} back-to-back signals on one pair | "
          f"{same['cycles_per_signal']:.4f} ({same['clocks']:,} clocks, {same['batch_overhead']} of "
          f"them batch fill/drain) |")
    print(f"| cycles per event, mixed stream (10 pairs, {mixed['pops']:,} pops) | "
          f"{mixed['cycles_per_event']:.3f} |")
    print(f"| latency, signal accepted → decision transferred | {lat['decision_clocks']} clocks = "
          f"{lat['decision_ns']:.1f} ns at {lat['fmax_mhz']} MHz |")
    print(f"| latency, signal accepted → stale report transferred | {lat['stale_clocks']} clock(s) |")
    print(f"| Verilator backend, {len(events):,} events | {rate['verilator']:,.0f} events/s |")
    print(f"| reference engine, same events, same run | {rate['reference']:,.0f} events/s |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
