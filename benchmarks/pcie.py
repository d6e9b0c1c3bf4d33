"""Round-trip latency and throughput over ``pcie-sim://`` (issue 5, section 6).

::

    .venv/bin/python benchmarks/pcie.py --json benchmarks/results/pcie.json

One model (:class:`sigfuse.sim.pcie_model.PcieSimModel`, the product's 64 pair slots and
256-entry queue) and one transport (:class:`sigfuse.link.pcie.PcieTransport`, cffi accessors
unless ``--accessor mmap``):

* **round trip per batch** -- wall time of ``push_signals(batch)`` (N signals: entries written,
  doorbell, every result read back and the device's ``sig_done`` seen) and of ``pop(N)``, for
  several batch sizes; percentiles over ``--rounds`` batches.  This is host Python + the shared
  file + the Verilator model's polling and clock; on hardware the model's part would be PCIe
  round trips and a 125 MHz datapath.
* **accessors** -- 32-bit window reads and writes per second, cffi against the ``struct``/mmap
  fallback.
* **signals/s** -- ``execute()`` of a 100 000-event stream (10 pairs, 7 sources, 10 % pops) in
  4096-event batches, end to end (packing, ring, model, decoding); and the model's simulated
  clocks (from the window's ``clocks`` words) per second of wall time and per second of the
  model's own CPU time (its polling included).

The model and Python share a 2-core machine with whatever else runs: the load average at the
start is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sigfuse.bar import BAR
from sigfuse.contract import Signal
from sigfuse.synthetic import synthetic_events


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50_us": at(0.50) * 1e6, "p90_us": at(0.90) * 1e6, "p99_us": at(0.99) * 1e6,
            "p999_us": at(0.999) * 1e6, "max_us": ordered[-1] * 1e6,
            "mean_us": statistics.fmean(ordered) * 1e6, "samples": len(ordered)}


def model_clocks(transport) -> int:
    w = transport._w
    return w.read(BAR["clocks_hi"]) << 32 | w.read(BAR["clocks_lo"])


def round_trips(transport, batch: int, rounds: int, seed: int) -> dict:
    signals = [e for e in synthetic_events(batch * rounds * 2, pairs=10, seed=seed)
               if type(e) is Signal][:batch * rounds]
    push, pop = [], []
    results = 0
    for r in range(rounds):
        chunk = signals[r * batch:(r + 1) * batch]
        start = time.perf_counter()
        results += len(transport.push_signals(chunk))
        push.append(time.perf_counter() - start)
        start = time.perf_counter()
        results += len(transport.pop(batch))
        pop.append(time.perf_counter() - start)
    return {"batch": batch, "rounds": rounds, "results": results,
            "push_round_trip": percentiles(push), "pop_round_trip": percentiles(pop)}


def accessor_speed(url: str, reads: int = 200_000) -> dict:
    """32-bit window reads and writes per second with each accessor (``scratch``-free: the
    heartbeat word is read, ``res_tail`` rewritten with its own value)."""
    from sigfuse.link.pcie import open_url

    out = {}
    for accessor in ("cffi", "mmap"):
        with open_url(url, accessor=accessor) as transport:
            w = transport._w
            read_at, write_at = BAR["heartbeat"], BAR["res_tail"]
            value = w.read(write_at)
            start = time.perf_counter()
            for _ in range(reads):
                w.read(read_at)
            read_s = time.perf_counter() - start
            start = time.perf_counter()
            for _ in range(reads):
                w.write(write_at, value)
            write_s = time.perf_counter() - start
            out[accessor] = {"reads_per_s": reads / read_s, "writes_per_s": reads / write_s}
    return out


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(transport, count: int, batch: int, seed: int, model_pid: int) -> dict:
    events = list(synthetic_events(count, pairs=10, pop_ratio=0.1, seed=seed))
    clocks = model_clocks(transport)
    model_cpu = process_cpu_s(model_pid)
    start = time.perf_counter()
    cpu = time.process_time()
    results = 0
    for i in range(0, len(events), batch):
        results += len(transport.execute(events[i:i + batch]))
    seconds = time.perf_counter() - start
    host_cpu = time.process_time() - cpu
    model_cpu = process_cpu_s(model_pid) - model_cpu
    clocks = model_clocks(transport) - clocks
    signals = sum(type(e) is Signal for e in events)
    return {"events": len(events), "signals": signals, "results": results, "batch": batch,
            "seconds": seconds, "events_per_s": len(events) / seconds,
            "signals_per_s": signals / seconds, "host_cpu_s": host_cpu,
            "model_clocks": clocks, "model_clocks_per_s": clocks / seconds,
            # The model's own speed: clocks per second of its CPU time (polling included).
            "model_cpu_s": model_cpu, "model_clocks_per_cpu_s": clocks / model_cpu if model_cpu else None,
            "clocks_per_event": clocks / len(events)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--rounds", type=int, default=2000, help="batches per batch size")
    parser.add_argument("--batches", default="1,16,256", help="batch sizes, comma-separated")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pair-slots", type=int, default=64)
    parser.add_argument("--capacity", type=int, default=256)
    parser.add_argument("--accessor", choices=["cffi", "mmap"], default=None)
    parser.add_argument("--spin-us", type=int, default=200, help="the model's idle spin")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    from sigfuse.link.pcie import open_url
    from sigfuse.sim.pcie_model import PcieSimModel

    load = os.getloadavg()
    out: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["benchmarks/pcie.py", *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average_at_start": list(load),
        "build": {"pair_slots": args.pair_slots, "capacity": args.capacity},
        "model_spin_us": args.spin_us,
    }
    with tempfile.TemporaryDirectory(prefix="sigfuse-pcie-bench-") as tmp:
        with PcieSimModel(Path(tmp) / "bench.bar", pair_slots=args.pair_slots,
                          capacity=args.capacity, spin_us=args.spin_us) as model:
            with open_url(model.url, accessor=args.accessor) as transport:
                out["accessor"] = transport.accessor
                out["rings"] = {"sig_entries": transport.layout.sig_entries,
                                "res_entries": transport.layout.res_entries}
                out["round_trips"] = [round_trips(transport, int(b), args.rounds, args.seed + i)
                                      for i, b in enumerate(args.batches.split(","))]
            out["accessors"] = accessor_speed(model.url)
            # A fresh model for the stream: decision numbers from reset, an empty queue.
        with PcieSimModel(Path(tmp) / "stream.bar", pair_slots=args.pair_slots,
                          capacity=args.capacity, spin_us=args.spin_us) as model:
            with open_url(model.url, accessor=args.accessor) as transport:
                out["stream"] = throughput(transport, args.events, 4096, args.seed,
                                           model.process.pid)
    for r in out["round_trips"]:
        p, q = r["push_round_trip"], r["pop_round_trip"]
        print(f"batch {r['batch']:>4}: push p50 {p['p50_us']:8.1f} p99 {p['p99_us']:8.1f} "
              f"p99.9 {p['p999_us']:8.1f} us | pop p50 {q['p50_us']:8.1f} p99 {q['p99_us']:8.1f} "
              f"p99.9 {q['p999_us']:8.1f} us")
    for name, a in out["accessors"].items():
        print(f"accessor {name}: {a['reads_per_s']:,.0f} reads/s, {a['writes_per_s']:,.0f} writes/s")
    s = out["stream"]
    print(f"stream: {s['events']} events, {s['signals_per_s']:,.0f} signals/s, "
          f"{s['events_per_s']:,.0f} events/s, model {s['model_clocks_per_s']:,.0f} clocks/s "
          f"of wall time, {s['model_clocks_per_cpu_s'] or 0:,.0f} per CPU second, "
          f"{s['clocks_per_event']:.2f} clocks/event (load average at start {load[0]:.2f})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
