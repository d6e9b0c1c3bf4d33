#!/usr/bin/env python3
"""Link benchmarks of issue 5 (section 6): link efficiency at 3 Mbaud, and round-trip latency
per push/pop batch over the virtual board beside ``pcie-sim://``.

    .venv/bin/python benchmarks/link.py --json benchmarks/results/link.json

**Link efficiency** (simulated time).  The virtual board runs only a little faster than a real
one, and its speed depends on what else the machine runs, so the link is measured in
*simulated* clocks: the board is paced at the line rate of a 3 Mbaud 8N1 UART in simulated
time (``VirtualBoard(..., baud=3_000_000)``: one byte per ``clk_hz * 10 / baud`` clocks each
way) and the host reads ``uptime_clocks`` (a STATS snapshot) before and after pushing
``--frames`` full PUSH_SIGNALS frames (17 signals each) through :class:`sigfuse.link.board.Board`
-- the UartTransport's own pipelining, at most two commands in flight.  Signals per simulated
second are compared with the line-rate bound for the frames actually sent::

    bound = min(baud / 10 / host->board bytes per frame,
                baud / 10 / board->host bytes per frame) * 17 signals

(the RESULTS and acks share the board's transmit line: the bound is that of the direction that
limits).  The elapsed clocks include one STATS reply (the snapshot is taken before it is sent),
the host's reaction times and the last frame's replies; the JSON breaks them down.  Workloads:

* ``synthetic``: the synthetic stream (10 pairs, 7 sources, seed 1), about one result per six
  signals: the host -> board direction limits;
* ``decision-heavy``: consensus threshold, quorum, minimum confidence and cooldown 0, so most
  signals are decisions and the 32-entry queue overflows (decisions and drops: about 1.6
  result records a signal, 28 a frame): the board -> host direction limits;
* ``synthetic, 1 in flight``: ``max_outstanding=1`` -- what the second command in flight buys.

Host reaction times enter in simulated clocks at the rate the simulation runs (~1.4 M clocks
per wall second instead of 48 M), so they weigh about 35 times less here than on a real board;
with a frame taking 0.8 ms on the wire they are hidden by the second command in flight as long
as they stay below one frame time.

**Round-trip latency** (wall clock, unpaced).  ``Board.push(batch)`` and ``Board.pop(n)`` for
batches of 1, 17 and 170 signals (1 and 10 frames) over the unpaced virtual board
(``socket://``), and the same calls over ``pcie-sim://`` (:class:`sigfuse.sim.pcie_model.PcieSimModel`
with the same batch sizes); percentiles over ``--rounds`` batches.  Both are host Python plus a
Verilator model sharing the machine's two cores: the figures say what the host stack costs, not
what a real UART (0.8 ms per full frame on the wire at 3 Mbaud) or a PCIe card would take.
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

from sigfuse import protocol as p
from sigfuse.contract import FusionParams, Signal
from sigfuse.link.board import Board
from sigfuse.sim.board import VirtualBoard, build_board
from sigfuse.synthetic import synthetic_events

# The same push/pop round-trip measurement as the pcie-sim benchmark (benchmarks/ is on
# sys.path when this script runs).
from pcie import round_trips  # noqa: E402

BAUD = 3_000_000
#: 8N1: a start bit, 8 data bits, a stop bit.
BITS_PER_BYTE = 10
#: A full PUSH_SIGNALS frame on the wire: COBS(type, seq, 238 record bytes, CRC) + delimiter.
FULL_FRAME_WIRE = len(p.push_signals(1, [Signal(1, 0, 0, 0, 0, 0)] * p.MAX_SIGNALS).encode())

#: Most signals a decision (and, once the queue is full, a drop).
DECISION_HEAVY = FusionParams(consensus_threshold=0, quorum=0, min_confidence=0, cooldown_us=0)


def percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return {"p50_us": at(0.50) * 1e6, "p90_us": at(0.90) * 1e6, "p99_us": at(0.99) * 1e6,
            "max_us": ordered[-1] * 1e6, "mean_us": statistics.fmean(ordered) * 1e6,
            "samples": len(ordered)}


def _signals(count: int, seed: int, pairs: int = 10) -> list[Signal]:
    out = [e for e in synthetic_events(count * 2, pairs=pairs, seed=seed) if type(e) is Signal]
    return out[:count]


# --- link efficiency (paced, simulated time) --------------------------------------------------

def efficiency(board: str, frames: int, *, seed: int, params: FusionParams | None = None,
               in_flight: int = 2, baud: int = BAUD) -> dict:
    signals = _signals(frames * p.MAX_SIGNALS, seed)
    with VirtualBoard(board, baud=baud) as vb:
        with Board.open(vb.url, timeout=10.0, max_outstanding=in_flight) as b:
            clk_hz = b.identity.clk_hz
            if params is not None:
                b.set_params(params)
            stats_bytes = b.counters.bytes_in
            before = b.stats()
            stats_bytes = b.counters.bytes_in - stats_bytes        # one STATS reply on the wire
            out0, in0 = b.counters.bytes_out, b.counters.bytes_in
            wall = time.perf_counter()
            results = b.push(signals)
            wall = time.perf_counter() - wall
            sent, received = b.counters.bytes_out - out0, b.counters.bytes_in - in0
            after = b.stats()
        summary = vb.stop()
    clocks = after["uptime_clocks"] - before["uptime_clocks"]
    seconds = clocks / clk_hz
    line_bytes_per_s = baud / BITS_PER_BYTE
    clocks_per_byte = clk_hz * BITS_PER_BYTE / baud
    rx_per_frame, tx_per_frame = sent / frames, received / frames
    rx_bound = line_bytes_per_s / rx_per_frame * p.MAX_SIGNALS
    tx_bound = line_bytes_per_s / tx_per_frame * p.MAX_SIGNALS
    bound = min(rx_bound, tx_bound)
    rate = len(signals) / seconds
    # Where the clocks beyond the limiting direction's line time went.
    line_clocks = max(sent, received) * clocks_per_byte
    known = {
        "stats_reply_before": stats_bytes * clocks_per_byte,
        # Filling or draining the pipeline: the last frame's replies when host -> board limits,
        # the first frame's command when board -> host does.
        "pipeline_other_direction": (tx_per_frame if rx_bound <= tx_bound else rx_per_frame)
        * clocks_per_byte,
        "stats_command_after": len(p.stats_snapshot(0).encode()) * clocks_per_byte,
    }
    return {
        "frames": frames, "signals": len(signals), "results": len(results),
        "in_flight": in_flight, "baud": baud, "clk_hz": clk_hz,
        "clocks_per_byte": clocks_per_byte,
        "host_to_board_bytes": sent, "board_to_host_bytes": received,
        "host_to_board_bytes_per_frame": rx_per_frame, "board_to_host_bytes_per_frame": tx_per_frame,
        "simulated_clocks": clocks, "simulated_seconds": seconds,
        "signals_per_simulated_s": rate,
        "bound_host_to_board_signals_per_s": rx_bound,
        "bound_board_to_host_signals_per_s": tx_bound,
        "limiting_direction": "host->board" if rx_bound <= tx_bound else "board->host",
        "bound_signals_per_s": bound, "efficiency": rate / bound,
        "vs_bare_records": rate / (line_bytes_per_s / p.SIGNAL_RECORD_BYTES),
        "overhead_clocks": {"total": clocks - line_clocks, **known,
                            "rest (host reaction, execution)": clocks - line_clocks - sum(known.values())},
        "bytes_held_by_core": summary.bytes_held if summary else None,
        "wall_seconds": wall, "harness": summary.line if summary else None,
    }


# --- round trips (unpaced, wall clock) --------------------------------------------------------

def latency_virtual_board(board: str, batches: list[int], rounds: int, seed: int) -> dict:
    with VirtualBoard(board) as vb:
        with Board.open(vb.url, timeout=10.0) as b:
            identity = b.identity
            out = [round_trips(b.transport, n, rounds, seed + i) for i, n in enumerate(batches)]
            ping = []
            for _ in range(rounds):
                start = time.perf_counter()
                b.transport.ping()
                ping.append(time.perf_counter() - start)
        summary = vb.stop()
    return {"url": "socket:// (virtual board, unpaced)", "pair_slots": identity.pair_slots,
            "queue_capacity": identity.queue_capacity, "round_trips": out,
            "ping_round_trip": percentiles(ping), "harness": summary.line if summary else None}


def latency_pcie_sim(batches: list[int], rounds: int, seed: int) -> dict:
    from sigfuse.sim.pcie_model import PcieSimModel
    with tempfile.TemporaryDirectory(prefix="sigfuse-link-bench-") as tmp:
        with PcieSimModel(Path(tmp) / "bench.bar", pair_slots=64, capacity=256) as model:
            with Board.open(model.url) as b:
                accessor = getattr(b.transport, "accessor", None)
                out = [round_trips(b.transport, n, rounds, seed + i) for i, n in enumerate(batches)]
    return {"url": "pcie-sim://", "pair_slots": 64, "queue_capacity": 256, "accessor": accessor,
            "round_trips": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="icebreaker", choices=("icebreaker", "ulx3s"))
    parser.add_argument("--frames", type=int, default=300,
                        help="PUSH_SIGNALS frames per efficiency run (17 signals each)")
    parser.add_argument("--rounds", type=int, default=300, help="batches per latency figure")
    parser.add_argument("--batches", default="1,17,170", help="latency batch sizes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip-efficiency", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]

    out: dict = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(["benchmarks/link.py", *(argv if argv is not None else sys.argv[1:])]),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg()),
        "board": args.board, "full_frame_wire_bytes": FULL_FRAME_WIRE,
    }
    build = build_board(args.board)
    out["build_id"] = f"0x{build.build_id:08x}"
    if not args.skip_efficiency:
        runs = {
            "synthetic": efficiency(args.board, args.frames, seed=args.seed),
            "decision-heavy": efficiency(args.board, args.frames, seed=args.seed,
                                         params=DECISION_HEAVY),
            "synthetic, 1 in flight": efficiency(args.board, args.frames, seed=args.seed,
                                                 in_flight=1),
        }
        out["efficiency"] = runs
        print(f"link efficiency at {BAUD:,} baud, {args.frames} full frames "
              f"({FULL_FRAME_WIRE} bytes on the wire), simulated time:")
        print("| workload | in flight | host->board B/frame | board->host B/frame | limiting | "
              "bound signals/s | signals/s | efficiency |")
        print("|---|--:|--:|--:|---|--:|--:|--:|")
        for name, r in runs.items():
            print(f"| {name} | {r['in_flight']} | {r['host_to_board_bytes_per_frame']:.1f} | "
                  f"{r['board_to_host_bytes_per_frame']:.1f} | {r['limiting_direction']} | "
                  f"{r['bound_signals_per_s']:,.0f} | {r['signals_per_simulated_s']:,.0f} | "
                  f"{r['efficiency'] * 100:.1f} % |")
    if not args.skip_latency:
        out["latency"] = {"virtual_board": latency_virtual_board(args.board, batches, args.rounds,
                                                                 args.seed),
                          "pcie_sim": latency_pcie_sim(batches, args.rounds, args.seed)}
        print("\nround trip per batch, wall clock (p50 / p99, µs):")
        print("| batch | virtual board push | virtual board pop | pcie-sim push | pcie-sim pop |")
        print("|--:|--:|--:|--:|--:|")
        vb, pc = out["latency"]["virtual_board"], out["latency"]["pcie_sim"]
        for v, c in zip(vb["round_trips"], pc["round_trips"]):
            cells = [f"{x['p50_us']:,.0f} / {x['p99_us']:,.0f}" for x in
                     (v["push_round_trip"], v["pop_round_trip"], c["push_round_trip"],
                      c["pop_round_trip"])]
            print(f"| {v['batch']} | " + " | ".join(cells) + " |")
        ping = vb["ping_round_trip"]
        print(f"virtual board PING: p50 {ping['p50_us']:,.0f} µs, p99 {ping['p99_us']:,.0f} µs")
    out["load_average_at_end"] = list(os.getloadavg())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
