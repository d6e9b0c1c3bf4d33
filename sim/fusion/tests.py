"""cocotb tests of the gateware fusion pipeline (run by ``tests/gateware/test_fusion_cocotb.py``
through :func:`sigfuse.sim.runner.build_and_test`).

Every test logs its seed; ``SIGFUSE_SEED`` (set by the runner, default 1) reproduces a run.
The pipeline's pair slots come from ``SIGFUSE_FUSION_PAIR_SLOTS``.  Each test starts from the
power-on state (see :meth:`FusionTB.start`), so a test rerun alone sees what it saw in a run
of all tests.
"""

from __future__ import annotations

import os
import random
import zlib

import cocotb

from ...contract import CONF_ONE, SOURCE_SLOTS, FusionParams, Signal
from ...gateware.fusion import LATENCY, refresh_clocks
from .model import COVERAGE_POINTS, random_stimulus
from .tb import FusionTB

PAIR_SLOTS = int(os.environ.get("SIGFUSE_FUSION_PAIR_SLOTS", "16"))
#: Signals per random test: enough for every coverage point on every seed tried, small enough
#: for the whole file to run in well under two minutes.
RANDOM_SIGNALS = int(os.environ.get("SIGFUSE_FUSION_SIGNALS", "2400"))


#: Simulated time after which a test fails instead of hanging (a stuck ``ready``); the random
#: streams take about 0.16 ms.
TIMEOUT_MS = 5


def _seed(name: str) -> int:
    """The run's seed mixed with the test's name: each test gets its own stream."""
    return int(os.environ.get("SIGFUSE_SEED", "1")) * 1_000_003 + zlib.crc32(name.encode())


#: Ready probability of the decision sink by clock (runs of 1-8 clocks share a draw).
BACKPRESSURE = {
    "none": lambda clock: 1.0,
    # blocks of always, mostly, rarely and almost never ready, as in the Amaranth test
    "mixed": lambda clock: (1.0, 0.8, 0.3, 0.05)[(clock // 97) % 4],
    "heavy": lambda clock: 0.2,
}


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
@cocotb.parametrize(backpressure=list(BACKPRESSURE))
async def test_random_streams(dut, backpressure: str) -> None:
    """Constrained-random signals in four phases with parameter writes between them (a weight
    change among them, and a phase where θ and the quorum are met with equality), compared
    decision by decision and stale report by stale report with the reference engine, with the
    decision stream's consumer ``backpressure``; every coverage point must be hit."""
    seed = _seed(f"random/{backpressure}")
    rng = random.Random(seed)
    stim = random_stimulus(rng, RANDOM_SIGNALS, pair_slots=PAIR_SLOTS)
    tb = FusionTB(dut, pair_slots=PAIR_SLOTS, seed=seed,
                  ready_probability=BACKPRESSURE[backpressure])
    await tb.start(stim.initial)
    tb.send(stim.events)
    await tb.drain()
    tb.check()
    sb = tb.scoreboard
    counts = sb.coverage.counts
    dut._log.info("seed=%d backpressure=%s: %d signals, %d decisions, %d stale; output stalled "
                  "%d clocks, input throttled %d clocks; latency %d..%d clocks (%d at %d); "
                  "coverage %s", seed, backpressure, sb.accepted, sb.decisions, sb.stale,
                  tb.stalled_clocks, tb.throttled_clocks, min(sb.latencies), max(sb.latencies),
                  sb.latencies.get(LATENCY, 0), LATENCY, counts)
    assert sb.accepted == len(stim.signals())
    assert sb.decisions > 50, f"seed={seed}: only {sb.decisions} decisions"
    assert len(sb.config_clocks) == 3, f"seed={seed}: {len(sb.config_clocks)} parameter writes"
    missing = sb.coverage.missing(COVERAGE_POINTS)
    assert not missing, f"seed={seed}: the stream never hit {missing}: {counts}"
    if backpressure != "none":
        assert tb.stalled_clocks > 0 and tb.throttled_clocks > 0, (
            f"seed={seed}: backpressure never reached the input ({tb.stalled_clocks} stalled, "
            f"{tb.throttled_clocks} throttled clocks)")
    else:
        assert set(sb.latencies) == {LATENCY}, f"seed={seed}: latencies {sb.latencies}"
        assert tb.throttled_clocks == 0, f"seed={seed}: throttled {tb.throttled_clocks} clocks"


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def test_back_to_back_same_pair(dut) -> None:
    """One pair, a signal every clock (a few of them stale), output always ready: accepted in
    consecutive clocks, every decision exactly LATENCY clocks after its signal and every stale
    report exactly STALE_LATENCY after its own (checked by the scoreboard).  Three signals per
    µs and a 1 µs cooldown: whether a signal may emit depends on what the one before it (one
    clock ahead, its emission state not yet in memory) emitted."""
    seed = _seed("back_to_back")
    rng = random.Random(seed)
    params = FusionParams(cooldown_us=1, min_confidence=0, quorum=0, consensus_threshold=0,
                          weights=(CONF_ONE,) * SOURCE_SLOTS)
    n = 600
    events = []
    for i in range(n):
        ts = 1000 + i // 3
        if rng.random() < 0.05:
            ts -= rng.randint(1, 5)       # stale: leaves at S1, the next one still forwards
        events.append((0, Signal(ts, i % SOURCE_SLOTS, 2, rng.randrange(2),
                                 rng.randint(1, CONF_ONE), rng.randint(1, 50))))
    tb = FusionTB(dut, pair_slots=PAIR_SLOTS, seed=seed)
    await tb.start(params)
    tb.send(events)
    await tb.drain()
    tb.check()
    sb = tb.scoreboard
    clocks = sb.accept_clocks[-1] - sb.accept_clocks[0] + 1
    dut._log.info("seed=%d: %d signals in %d clocks, %d decisions, %d stale, latencies %s",
                  seed, n, clocks, sb.decisions, sb.stale, sb.latencies)
    assert clocks == n, f"seed={seed}: {n} signals took {clocks} clocks"
    assert sb.decisions > n // 5 and sb.stale > 0
    assert set(sb.latencies) == {LATENCY}, f"seed={seed}: latencies {sb.latencies}"


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def test_hot_pair_with_backpressure(dut) -> None:
    """One pair, eight sources, timestamps mostly equal, short TTL and cooldown: every signal
    forwards the previous row and emission state while the output is stalled half the time."""
    seed = _seed("hot_pair")
    rng = random.Random(seed)
    params = FusionParams(cooldown_us=3, vote_ttl_us=5, min_confidence=0, quorum=CONF_ONE // 4)
    ts, events = 10, []
    for _ in range(1500):
        ts += rng.choice((0, 0, 0, 1, 2, 6))
        events.append((0, Signal(ts, rng.randrange(SOURCE_SLOTS), 5, rng.randrange(2),
                                 rng.randint(0, CONF_ONE), rng.randint(-5, 40))))
    tb = FusionTB(dut, pair_slots=PAIR_SLOTS, seed=seed, ready_probability=lambda clock: 0.5)
    await tb.start(params)
    tb.send(events)
    await tb.drain()
    tb.check()
    sb = tb.scoreboard
    dut._log.info("seed=%d: %d decisions, coverage %s", seed, sb.decisions, sb.coverage.counts)
    assert sb.decisions > 100
    assert sb.coverage.counts["same_pair_back_to_back"] > 500


@cocotb.test(timeout_time=TIMEOUT_MS, timeout_unit="ms")
async def test_weight_change_mid_stream(dut) -> None:
    """New weights apply to the votes already on the board from the next signal on, after the
    refresh stall (``refresh_clocks()``); a write that keeps the weights costs only the drain."""
    seed = _seed("weights")
    buy_heavy = FusionParams(weights=(CONF_ONE, 0x1000, 0x1000, 0, 0, 0, 0, 0), cooldown_us=0,
                             quorum=0, min_confidence=0, consensus_threshold=CONF_ONE // 2)
    sell_heavy = FusionParams(weights=(0x1000, CONF_ONE, CONF_ONE, 0, 0, 0, 0, 0),
                              cooldown_us=0, quorum=0, min_confidence=0,
                              consensus_threshold=CONF_ONE // 2)
    same_weights = FusionParams(weights=sell_heavy.weights, cooldown_us=7, quorum=0,
                                min_confidence=0, consensus_threshold=CONF_ONE // 2)
    votes = [Signal(10, 0, 4, 0, CONF_ONE, 20),   # source 0 buys
             Signal(11, 1, 4, 1, CONF_ONE, 30),   # sources 1, 2 sell
             Signal(12, 2, 4, 1, CONF_ONE, 30)]
    probe = Signal(13, 3, 4, 0, CONF_ONE, 5)      # weight 0 either way: only re-evaluates
    tb = FusionTB(dut, pair_slots=PAIR_SLOTS, seed=seed)
    await tb.start(buy_heavy)
    tb.send([(0, s) for s in votes] + [(0, probe), sell_heavy, (0, probe._replace(ts_us=14)),
                                       same_weights, (0, probe._replace(ts_us=15))])
    await tb.drain()
    tb.check()
    sb = tb.scoreboard
    # The probe re-evaluates the same votes: buy under the old weights, sell under the new.
    probe_sides = [d.side for d in sb.emitted if d.ts_us in (13, 14, 15)]
    assert probe_sides == [0, 1], f"seed={seed}: probe decisions {sb.emitted}"
    refresh_stall = sb.accept_clocks[4] - sb.config_clocks[0]
    plain_stall = sb.accept_clocks[5] - sb.config_clocks[1]
    dut._log.info("seed=%d: refresh stall %d clocks (refresh_clocks() = %d), write without a "
                  "weight change %d clocks", seed, refresh_stall, refresh_clocks(), plain_stall)
    assert refresh_clocks() <= refresh_stall <= refresh_clocks() + 2, refresh_stall
    assert plain_stall <= 2, plain_stall
