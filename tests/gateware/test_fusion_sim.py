"""The gateware fusion pipeline in Amaranth's simulator, differential against the reference
:class:`sigfuse.fusion.FusionEngine`.

Every decision and every stale report leaving the pipeline is compared, in order, with what the
reference engine gives for the same events (signals and parameter writes); clock counts check
the throughput (one signal per clock) and the fixed latency.  Random tests print their seed;
``SIGFUSE_SEED=<n>`` reruns one seed.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import pytest
from amaranth.sim import DomainReset, Simulator

from sigfuse.contract import (CONF_ONE, DECISION_LAYOUT, DURATION_MAX, EDGE_MAX,
                              EDGE_MIN, SIGNAL_LAYOUT, SOURCE_SLOTS, TS_MAX, Decision,
                              FusionParams, Signal)
from sigfuse.fusion import FusionEngine
from sigfuse.gateware.fusion import (LATENCY, STALE_LATENCY, FusionPipeline, MaskTableRefresh,
                                     refresh_clocks)
from sigfuse.gateware.fusion_params import config_const, mask_entries
from sigfuse.gateware.layouts import pack, unpack
# The parameter generators are the cocotb bench's (sim/fusion/model.py): one definition of
# "parameters that put the edges within reach" for both simulators.
from sigfuse.sim.fusion.model import boundary_params, random_params

SEEDS = [int(os.environ["SIGFUSE_SEED"])] if "SIGFUSE_SEED" in os.environ else [1, 2, 3]
#: The iCE40UP5K size: small enough that random pairs collide (forwarding) all the time.
PAIR_SLOTS = 16


# --- stimulus ---------------------------------------------------------------------------------

@dataclass
class Stimulus:
    """Events in order: ``Signal`` (with idle clocks before it) or ``FusionParams`` writes."""
    initial: FusionParams
    events: list[tuple[int, Signal] | FusionParams] = field(default_factory=list)

    def signals(self) -> list[Signal]:
        return [e[1] for e in self.events if not isinstance(e, FusionParams)]


@dataclass
class Expected:
    #: (index of the signal in stream order, decision)
    decisions: list[tuple[int, Decision]]
    #: (index of the signal in stream order, the stale signal)
    stale: list[tuple[int, Signal]]


def reference(stim: Stimulus, pair_slots: int = PAIR_SLOTS) -> Expected:
    engine = FusionEngine(stim.initial, pair_slots=pair_slots)
    decisions, stale, index = [], [], 0
    for event in stim.events:
        if isinstance(event, FusionParams):
            engine.set_params(event)
            continue
        result = engine.fuse(event[1])
        if result is False:
            stale.append((index, event[1]))
        elif result is not None:
            decisions.append((index, result))
        index += 1
    return Expected(decisions, stale)


def coverage(stim: Stimulus, pair_slots: int = PAIR_SLOTS) -> dict[str, int]:
    """How often the stream hit the cases the random tests are meant to reach, judged on the
    reference engine's own state just before and after each signal."""
    engine = FusionEngine(stim.initial, pair_slots=pair_slots)
    cov = dict.fromkeys(("same_pair_back_to_back", "vote_age_eq_ttl", "vote_age_ttl_plus_1",
                         "cooldown_edge", "tie", "threshold_eq", "quorum_eq", "long_gap",
                         "stale", "param_writes"), 0)
    previous: Signal | None = None
    for event in stim.events:
        if isinstance(event, FusionParams):
            engine.set_params(event)
            cov["param_writes"] += 1
            previous = None
            continue
        idle, sig = event
        p = engine.params
        if sig.ts_us < engine.last_ts:
            cov["stale"] += 1
            engine.fuse(sig)
            continue
        if previous is not None and idle == 0 and previous.pair == sig.pair:
            cov["same_pair_back_to_back"] += 1
        if sig.ts_us - engine.last_ts >= 1 << 32:
            cov["long_gap"] += 1
        state = engine.pair_state(sig.pair)
        for source, vote in enumerate(state.votes):
            if vote is not None and source != sig.source:
                age = sig.ts_us - vote[0]
                cov["vote_age_eq_ttl"] += age == p.vote_ttl_us
                cov["vote_age_ttl_plus_1"] += age == p.vote_ttl_us + 1
        if state.last_side == sig.side and sig.ts_us - state.last_emit_ts in (p.cooldown_us - 1,
                                                                            p.cooldown_us):
            cov["cooldown_edge"] += 1
        engine.fuse(sig)
        live = [v for v in state.votes if v is not None and v[0] >= sig.ts_us - p.vote_ttl_us]
        buy = sum(v[2] for v in live if not v[1])
        sell = sum(v[2] for v in live if v[1])
        if live and buy == sell:
            cov["tie"] += 1
        elif live:
            m = max(buy, sell)
            cov["threshold_eq"] += (m << 15) == p.consensus_threshold * (buy + sell)
            mask = 0
            for source, v in enumerate(state.votes):
                if v in live and v[1] == (sell > buy):
                    mask |= 1 << source
            cov["quorum_eq"] += p.mask_table()[mask].weight_sum == p.quorum
        previous = sig
    return cov


def random_stimulus(rng: random.Random, signals: int, *, phases: int = 4,
                    pair_slots: int = PAIR_SLOTS) -> Stimulus:
    """Phases of constrained-random signals with a parameter write between phases.

    Within a phase: a few hot pairs (back-to-back same-pair signals are common), steps of 0 µs,
    small steps, steps landing exactly on an earlier vote's TTL or cooldown boundary (and one
    past it), long gaps beyond 2**32 µs, stale signals, idle gaps on the input, extreme
    confidences and edges.
    """
    stim = Stimulus(random_params(rng))
    params = stim.initial
    ts = rng.choice((0, 3, rng.randint(0, 1 << 40)))
    recent: list[int] = [ts]
    per_phase = max(1, signals // phases)
    boundary_phase = rng.randrange(phases)
    for phase in range(phases):
        if phase:
            params = boundary_params(rng) if phase == boundary_phase else random_params(rng)
            stim.events.append(params)
        elif phase == boundary_phase:
            params = stim.initial = boundary_params(rng)
        sources = range(4) if phase == boundary_phase else range(SOURCE_SLOTS)
        hot = rng.sample(range(pair_slots), 1 if phase == boundary_phase
                         else rng.choice((1, 2, 3, pair_slots)))
        regime = {pair: rng.randrange(2) for pair in hot}
        confidences = (0, 1, CONF_ONE // 2, CONF_ONE - 1, CONF_ONE, 0xFFFF)
        for _ in range(per_phase):
            r = rng.random()
            if r < 0.30:
                step = 0
            elif r < 0.70:
                step = rng.randint(1, max(1, min(params.vote_ttl_us, params.cooldown_us, 50) + 2))
            elif r < 0.90:
                # Land on (or one past) an earlier signal's TTL or cooldown boundary.
                base = rng.choice(recent)
                target = (base + rng.choice((params.vote_ttl_us, params.cooldown_us))
                          + rng.choice((0, 1, -1)))
                step = max(0, target - ts)
            elif r < 0.93:
                step = rng.choice(((1 << 32) - 1, 1 << 32, (1 << 32) + 1,
                                   rng.randint(1 << 32, 1 << 36)))
            else:
                step = rng.randint(0, 5000)
            if ts + step > TS_MAX - (1 << 40):
                step = 0
            ts += step
            stale = rng.random() < 0.03 and ts > 0
            sig_ts = ts - rng.randint(1, min(ts, 10)) if stale else ts
            pair = rng.choice(hot)
            if rng.random() < 0.05:
                regime[pair] ^= 1
            side = regime[pair] if rng.random() < 0.75 else regime[pair] ^ 1
            if phase == boundary_phase:
                conf = CONF_ONE if rng.random() < 0.9 else rng.randint(0, CONF_ONE)
            elif rng.random() < 0.3:
                conf = rng.choice(confidences)
            else:
                conf = rng.randint(CONF_ONE // 3, CONF_ONE)
            edge = (rng.choice((EDGE_MIN, EDGE_MAX, 0, 1, -1)) if rng.random() < 0.1
                    else rng.randint(-20, 60))
            idle = 0 if rng.random() < 0.85 else rng.randint(1, 4)
            stim.events.append((idle, Signal(sig_ts, rng.choice(sources), pair, side, conf, edge)))
            if not stale:
                recent.append(ts)
                del recent[:-8]
    return stim


# --- testbench --------------------------------------------------------------------------------

class Mismatch(AssertionError):
    pass


@dataclass
class Observed:
    accepted: list[int] = field(default_factory=list)      # clock of each accepted signal
    decisions: list[tuple[int, Decision]] = field(default_factory=list)  # (clock, decision)
    stale: list[tuple[int, Signal]] = field(default_factory=list)
    config_written: list[int] = field(default_factory=list)
    clocks: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def _decision(raw: int) -> Decision:
    return Decision(**unpack(DECISION_LAYOUT, raw))


def _signal(raw: int) -> Signal:
    return Signal(**unpack(SIGNAL_LAYOUT, raw))


def run_pipeline(stim: Stimulus, *, label: str, ready_probability=lambda clock: 1.0,
                 seed: int = 0, pair_slots: int = PAIR_SLOTS, max_clocks: int | None = None,
                 factory=FusionPipeline, latency: int = LATENCY,
                 **build) -> tuple[Observed, Expected]:
    """Drive ``stim`` into a fresh pipeline and compare every output with the reference as it
    comes out.  ``ready_probability(clock)`` shapes the backpressure on ``decisions``.

    ``factory(pair_slots, params=..., **build)`` builds the engine under test (any component
    with the pipeline's ports); ``latency`` is its bound from a signal to its output, used to
    check that nothing comes out after the last expected output."""
    expected = reference(stim, pair_slots)
    dut = factory(pair_slots, params=stim.initial, **build)
    obs = Observed()
    rng = random.Random(seed ^ 0x5EED)
    n_signals = len(stim.signals())
    refreshes = sum(1 for e in stim.events if isinstance(e, FusionParams))
    if max_clocks is None:
        max_clocks = 50 * n_signals + refreshes * (refresh_clocks() + 50) + 1000

    async def driver(ctx):
        for event in stim.events:
            if isinstance(event, FusionParams):
                ctx.set(dut.signals.valid, 0)
                ctx.set(dut.config.payload, config_const(event))
                ctx.set(dut.config.valid, 1)
                await ctx.tick().until(dut.config.ready)
                ctx.set(dut.config.valid, 0)
                continue
            idle, signal = event
            if idle:
                ctx.set(dut.signals.valid, 0)
                await ctx.tick().repeat(idle)
            ctx.set(dut.signals.payload.as_value(), pack(SIGNAL_LAYOUT, signal))
            ctx.set(dut.signals.valid, 1)
            await ctx.tick().until(dut.signals.ready)
        ctx.set(dut.signals.valid, 0)

    def fail(what: str) -> None:
        raise Mismatch(f"[{label}, seed {seed}] {what}")

    async def monitor(ctx):
        want_decisions = len(expected.decisions)
        want_stale = len(expected.stale)
        clock = 0
        while (len(obs.decisions) < want_decisions or len(obs.stale) < want_stale
               or len(obs.accepted) < n_signals):
            if clock > max_clocks:
                fail(f"timeout after {clock} clocks: {len(obs.accepted)}/{n_signals} signals "
                     f"accepted, {len(obs.decisions)}/{want_decisions} decisions, "
                     f"{len(obs.stale)}/{want_stale} stale reports")
            ready = rng.random() < ready_probability(clock)
            ctx.set(dut.decisions.ready, ready)
            # A bare tick() yields (clk, rst) before the sampled values.
            (_, _, s_valid, s_ready, d_valid, d_payload, st_valid, st_payload,
             c_valid, c_ready) = await ctx.tick().sample(
                dut.signals.valid, dut.signals.ready,
                dut.decisions.valid, dut.decisions.payload.as_value(),
                dut.stale.valid, dut.stale.payload.as_value(),
                dut.config.valid, dut.config.ready)
            if s_valid and s_ready:
                obs.accepted.append(clock)
            if c_valid and c_ready:
                obs.config_written.append(clock)
            if d_valid and ready:
                got = _decision(d_payload)
                k = len(obs.decisions)
                if k >= want_decisions:
                    fail(f"unexpected decision #{k}: {got}")
                index, want = expected.decisions[k]
                if got != want:
                    fail(f"decision #{k} (signal #{index}): expected {want}, got {got}")
                obs.decisions.append((clock, got))
            if st_valid:
                got = _signal(st_payload)
                k = len(obs.stale)
                if k >= want_stale:
                    fail(f"unexpected stale report #{k}: {got}")
                index, want = expected.stale[k]
                if got != want:
                    fail(f"stale report #{k} (signal #{index}): expected {want}, got {got}")
                obs.stale.append((clock, got))
            clock += 1
        # A few more clocks: nothing else may come out.
        for _ in range(latency + 2):
            ctx.set(dut.decisions.ready, 1)
            _, _, d_valid, st_valid = await ctx.tick().sample(dut.decisions.valid, dut.stale.valid)
            if d_valid or st_valid:
                fail("output after the last expected one")
            clock += 1
        obs.clocks = clock
        obs.stats = {name: ctx.get(getattr(dut.stats, name))
                     for name in ("signals_in", "stale_drops", "decisions_out")}

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    try:
        sim.run()
    except Mismatch as error:
        # The message says it all (label, seed, index, expected and got); pytest's source
        # excerpt of the simulator's frames would only bury it.
        pytest.fail(str(error), pytrace=False)
    assert obs.stats == {"signals_in": n_signals, "stale_drops": len(expected.stale),
                         "decisions_out": len(expected.decisions)}, obs.stats
    return obs, expected


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_random_streams_match_reference(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    stim = random_stimulus(rng, 2000, phases=4)

    def backpressure(clock: int) -> float:
        # Blocks of always-ready, mostly-ready and mostly-stalled output.
        return (1.0, 0.8, 0.3, 0.05)[(clock // 97 + seed) % 4]

    cov = coverage(stim)
    print(cov)
    obs, expected = run_pipeline(stim, label="random", ready_probability=backpressure, seed=seed)
    print(f"{len(obs.accepted)} signals, {len(obs.decisions)} decisions, {len(obs.stale)} stale, "
          f"{obs.clocks} clocks")
    # The stream must have exercised what it is meant to.
    assert len(expected.decisions) > 50, len(expected.decisions)
    assert len(obs.config_written) == 3
    missing = [name for name, count in cov.items() if not count]
    assert not missing, f"seed {seed}: the stream never hit {missing}"


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_hot_pair_stream_with_backpressure(seed: int) -> None:
    """One pair, eight sources, timestamps mostly equal: every signal forwards the previous
    row and emission state, with the output stalled half of the time."""
    print(f"seed {seed}")
    rng = random.Random(seed)
    params = FusionParams(cooldown_us=3, vote_ttl_us=5, min_confidence=0, quorum=CONF_ONE // 4)
    stim = Stimulus(params)
    ts = 10
    for _ in range(1200):
        ts += rng.choice((0, 0, 0, 1, 2, 6))
        stim.events.append((0, Signal(ts, rng.randrange(SOURCE_SLOTS), 5, rng.randrange(2),
                                      rng.randint(0, CONF_ONE), rng.randint(-5, 40))))
    obs, expected = run_pipeline(stim, label="hot pair", seed=seed,
                                 ready_probability=lambda clock: 0.5)
    assert len(expected.decisions) > 100


@pytest.mark.parametrize("ram_style", [None, "distributed"])
def test_back_to_back_same_pair_is_one_signal_per_clock_at_fixed_latency(ram_style) -> None:
    """A back-to-back stream for one pair, output always ready: the pipeline accepts one signal
    every clock, and every decision comes out exactly LATENCY clocks after its signal (with
    block or LUT RAM: the choice changes the netlist, not the timing)."""
    params = FusionParams(cooldown_us=0, min_confidence=0, quorum=0, consensus_threshold=0,
                          weights=(CONF_ONE,) * SOURCE_SLOTS)
    stim = Stimulus(params)
    rng = random.Random(7)
    n = 400
    for i in range(n):
        stim.events.append((0, Signal(1000 + i // 3, i % SOURCE_SLOTS, 2, rng.randrange(2),
                                      rng.randint(1, CONF_ONE), rng.randint(1, 50))))
    obs, expected = run_pipeline(stim, label="back-to-back", ram_style=ram_style)
    first, last = obs.accepted[0], obs.accepted[-1]
    assert last - first + 1 == n, f"{n} signals took {last - first + 1} clocks"
    assert len(expected.decisions) > n // 4
    latencies = {clock - obs.accepted[index]
                 for (clock, _), (index, _) in zip(obs.decisions, expected.decisions)}
    assert latencies == {LATENCY}, latencies
    print(f"{n} signals in {last - first + 1} clocks; {len(obs.decisions)} decisions, "
          f"latency {LATENCY} clocks")


def test_stale_report_latency_and_stats() -> None:
    params = FusionParams(cooldown_us=0, min_confidence=0)
    stim = Stimulus(params, [(0, Signal(100, 0, 1, 0, CONF_ONE, 10)),
                             (0, Signal(99, 1, 1, 0, CONF_ONE, 10)),    # stale
                             (0, Signal(100, 1, 1, 1, CONF_ONE, 10)),
                             (0, Signal(50, 2, 3, 0, CONF_ONE, 10)),    # stale
                             (0, Signal(100, 2, 1, 0, CONF_ONE, 10))])
    obs, expected = run_pipeline(stim, label="stale")
    assert [index for index, _ in expected.stale] == [1, 3]
    assert [clock for clock, _ in obs.stale] == [obs.accepted[1] + STALE_LATENCY,
                                                 obs.accepted[3] + STALE_LATENCY]


def test_weight_change_applies_to_live_votes() -> None:
    """New weights apply to the votes already on the board from the next signal on (the votes
    keep their raw confidence and edge), after the documented refresh stall."""
    buy_heavy = FusionParams(weights=(CONF_ONE, 0x1000, 0x1000, 0, 0, 0, 0, 0), cooldown_us=0,
                             quorum=0, min_confidence=0, consensus_threshold=CONF_ONE // 2)
    sell_heavy = FusionParams(weights=(0x1000, CONF_ONE, CONF_ONE, 0, 0, 0, 0, 0), cooldown_us=0,
                              quorum=0, min_confidence=0, consensus_threshold=CONF_ONE // 2)
    votes = [Signal(10, 0, 4, 0, CONF_ONE, 20),   # source 0 buys
             Signal(11, 1, 4, 1, CONF_ONE, 30),   # sources 1, 2 sell
             Signal(12, 2, 4, 1, CONF_ONE, 30)]
    probe = Signal(13, 3, 4, 0, CONF_ONE, 5)      # weight 0 either way: only re-evaluates
    stim = Stimulus(buy_heavy, [(0, s) for s in votes] + [sell_heavy, (0, probe)])
    obs, expected = run_pipeline(stim, label="weights")
    # With the old weights the probe re-evaluates to "buy"; with the new ones to "sell".
    old = FusionEngine(buy_heavy, pair_slots=PAIR_SLOTS)
    for s in votes:
        old.fuse(s)
    assert old.fuse(probe).side == 0
    index, decision = expected.decisions[-1]
    assert index == 3 and decision.side == 1
    # The refresh holds signals.ready low: the probe enters refresh_clocks() after the write.
    stall = obs.accepted[3] - obs.config_written[0]
    assert refresh_clocks() <= stall <= refresh_clocks() + 2, stall


def test_long_gaps_and_extreme_durations() -> None:
    """Gaps beyond 2**32 µs, TTL and cooldown at their 32-bit maximum, timestamps near 2**64."""
    params = FusionParams(vote_ttl_us=DURATION_MAX, cooldown_us=DURATION_MAX, min_confidence=0,
                          quorum=0, weights=(CONF_ONE,) * SOURCE_SLOTS)
    t0 = 5
    events = [
        Signal(t0, 0, 0, 0, CONF_ONE, 10),
        Signal(t0 + DURATION_MAX, 1, 0, 0, CONF_ONE, 10),       # first vote live at exactly ttl
        Signal(t0 + DURATION_MAX + 1, 2, 0, 1, CONF_ONE, 10),   # first vote expired
        Signal(t0 + (1 << 33), 3, 0, 1, CONF_ONE, 10),
        Signal(TS_MAX - DURATION_MAX - 7, 4, 0, 0, CONF_ONE, 10),
        Signal(TS_MAX - 7, 5, 0, 0, CONF_ONE, 10),
        Signal(TS_MAX, 6, 0, 1, CONF_ONE, 10),
        Signal(TS_MAX, 7, 0, 1, CONF_ONE, 10),
        Signal(3, 0, 0, 0, CONF_ONE, 10),                        # stale
    ]
    short = FusionParams(vote_ttl_us=0, cooldown_us=0, min_confidence=0, quorum=0)
    stim = Stimulus(params, [(0, s) for s in events]
                    + [short, (0, Signal(TS_MAX, 0, 0, 0, CONF_ONE, 9))])
    obs, expected = run_pipeline(stim, label="long gaps")
    assert len(expected.decisions) >= 3 and len(expected.stale) == 1


def test_mask_table_refresh_matches_contract() -> None:
    """The refresh engine writes exactly FusionParams.mask_table()."""
    rng = random.Random(11)
    weight_sets = [FusionParams().weights, (CONF_ONE,) * SOURCE_SLOTS, (0,) * SOURCE_SLOTS,
                   (1, 2, 3, 4, 5, 6, 7, 8),
                   tuple(rng.randint(0, CONF_ONE) for _ in range(SOURCE_SLOTS))]
    for steps in (1, 2):
        dut = MaskTableRefresh(steps)
        for weights in weight_sets:
            want = mask_entries(FusionParams(weights=weights))
            written: dict[int, dict[str, int]] = {}
            clocks = [0]

            async def tb(ctx, weights=weights, written=written, clocks=clocks):
                ctx.set(dut.weights, list(weights))
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                while True:
                    _, _, busy, en, addr, data = await ctx.tick().sample(
                        dut.busy, dut.write_en, dut.write_addr, dut.write_data)
                    clocks[0] += 1
                    if en:
                        written[addr] = {"weight_sum": data.weight_sum, "mantissa": data.mantissa,
                                         "shift": data.shift, "n": data.n}
                    if not busy:
                        break

            sim = Simulator(dut)
            sim.add_clock(1e-8)
            sim.add_testbench(tb)
            sim.run()
            assert [written[mask] for mask in range(256)] == want, (steps, weights)
            assert clocks[0] == refresh_clocks(steps), (clocks[0], refresh_clocks(steps))


def test_reset_after_running_restores_the_power_on_state() -> None:
    """A reset after the pipeline has run (a board's PLL losing lock) clears the vote board and
    the emission state and recomputes the mask table from the reset weights: afterwards the
    pipeline answers a stream exactly like a freshly configured one, and ``refreshing`` covers
    the whole re-initialization.  The reset that ends configuration re-initializes nothing."""
    rng = random.Random(7)
    initial = FusionParams()
    other = FusionParams(weights=(0x1000, CONF_ONE, CONF_ONE, 0x2000, 0x800, 0, 0, 0),
                         quorum=0, min_confidence=0, cooldown_us=0)
    before = random_stimulus(rng, 300, phases=1)
    after = random_stimulus(random.Random(8), 300, phases=1)
    dut = FusionPipeline(PAIR_SLOTS, params=initial)
    outputs: dict[str, list] = {"before": [], "after": []}
    reinit_clocks: list[int] = []

    async def run_stream(ctx, events, sink) -> None:
        ctx.set(dut.decisions.ready, 1)
        pending = [e[1] for e in events if not isinstance(e, FusionParams)]
        for signal in pending:
            ctx.set(dut.signals.payload.as_value(), pack(SIGNAL_LAYOUT, signal))
            ctx.set(dut.signals.valid, 1)
            while True:
                _, _, ready, d_valid, d_payload = await ctx.tick().sample(
                    dut.signals.ready, dut.decisions.valid, dut.decisions.payload.as_value())
                if d_valid:
                    sink.append(_decision(d_payload))
                if ready:
                    break
        ctx.set(dut.signals.valid, 0)
        for _ in range(LATENCY + 4):
            _, _, d_valid, d_payload = await ctx.tick().sample(
                dut.decisions.valid, dut.decisions.payload.as_value())
            if d_valid:
                sink.append(_decision(d_payload))

    async def bench(ctx) -> None:
        # Out of the configuration-time state: nothing to re-initialize.
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.refreshing)
        await run_stream(ctx, before.events, outputs["before"])
        # Change the weights (mask table refresh), then reset.
        ctx.set(dut.config.payload, config_const(other))
        ctx.set(dut.config.valid, 1)
        await ctx.tick().until(dut.config.ready)
        ctx.set(dut.config.valid, 0)
        await ctx.tick().until(~dut.refreshing)
        ctx.set(reset, 1)
        for _ in range(3):
            try:
                await ctx.tick()
            except DomainReset:     # a tick of a domain in reset says so
                pass
        ctx.set(reset, 0)
        clocks = 0
        while True:
            _, _, refreshing, ready = await ctx.tick().sample(dut.refreshing, dut.signals.ready)
            clocks += 1
            assert not (refreshing and ready)
            if not refreshing:
                break
        reinit_clocks.append(clocks)
        assert ctx.get(dut.params.as_value()) == config_const(initial).as_value().value
        await run_stream(ctx, after.events, outputs["after"])

    from amaranth.hdl import ClockDomain, Module
    top = Module()
    top.domains.sync = domain = ClockDomain()
    top.submodules.dut = dut
    reset = domain.rst
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    fresh_before = FusionEngine(initial, pair_slots=PAIR_SLOTS)
    want_before = [d for d in (fresh_before.fuse(s) for s in before.signals()) if isinstance(d, Decision)]
    fresh = FusionEngine(initial, pair_slots=PAIR_SLOTS)
    want_after = [d for d in (fresh.fuse(s) for s in after.signals()) if isinstance(d, Decision)]
    assert outputs["before"] == want_before
    assert want_after, "the stream after the reset must produce decisions"
    assert outputs["after"] == want_after
    # Clearing PAIR_SLOTS rows, then the mask table refresh from the reset weights.
    assert PAIR_SLOTS + refresh_clocks() <= reinit_clocks[0] <= PAIR_SLOTS + refresh_clocks() + 4
