"""The vote-serial fusion engine in Amaranth's simulator, differential against the reference
:class:`sigfuse.fusion.FusionEngine`.

Same stimulus, scoreboard and coverage as the pipeline's tests (``test_fusion_sim``): every
decision and stale report is compared, in order, with the reference.  Clock counts check the
engine's cadence (:data:`CLOCKS_PER_SIGNAL`) and that a signal transfers with its results (the
stale report, or its decision), which the product core's dispatcher relies on.  Random tests print their seed; ``SIGFUSE_SEED=<n>``
reruns one seed.
"""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import ClockDomain, Module, Signal as HDLSignal
from amaranth.lib import wiring
from amaranth.sim import DomainReset, Simulator

from sigfuse.contract import (CONF_ONE, DURATION_MAX, SIGNAL_LAYOUT, SOURCE_SLOTS, TS_MAX,
                              Decision, FusionParams, Signal)
from sigfuse.fusion import FusionEngine
from sigfuse.gateware.fusion import fusion_signature
from sigfuse.gateware.fusion_params import FusionConfigLayout, array_index, config_const
from sigfuse.gateware.fusion_serial import (CLOCKS_PER_SIGNAL, LATENCY, STALE_LATENCY,
                                            SerialFusion)
from sigfuse.gateware.layouts import pack

from .test_fusion_sim import (PAIR_SLOTS, SEEDS, Stimulus, _decision, coverage, random_stimulus,
                              run_pipeline)


class HeldParameters(wiring.Component):
    """SerialFusion(config_held=True, param_port=True) behind a parameter source that behaves
    like the product core's register file: it keeps the set taken from ``config`` in registers,
    which the engine reads directly, and answers ``param_read`` (weights and boosts) in the
    clock after the index, as a block RAM does.  Ports as the pipeline's."""

    def __init__(self, pair_slots: int, *, params: FusionParams) -> None:
        self.engine = SerialFusion(pair_slots, config_held=True, param_port=True)
        self.initial = params
        super().__init__(fusion_signature())

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self.engine
        held = HDLSignal(FusionConfigLayout, init=config_const(self.initial))
        m.d.comb += [engine.config.valid.eq(self.config.valid),
                     self.config.ready.eq(engine.config.ready), engine.config.payload.eq(held)]
        with m.If(self.config.valid & self.config.ready):
            m.d.sync += held.eq(self.config.payload)
        # Word i of the port is field[slot] with i = array_index(field, slot).
        words = {array_index(field, slot): getattr(held, field)[slot]
                 for field in ("weights", "boost") for slot in range(SOURCE_SLOTS)}
        assert all(len(word) == len(engine.param_read.data) for word in words.values())
        with m.Switch(engine.param_read.index):
            for i, word in words.items():
                with m.Case(i):
                    m.d.sync += engine.param_read.data.eq(word)
        wiring.connect(m, wiring.flipped(self.signals), engine.signals)
        for name in ("decisions", "stale"):
            wiring.connect(m, getattr(engine, name), wiring.flipped(getattr(self, name)))
        m.d.comb += [self.params.eq(engine.params), self.refreshing.eq(engine.refreshing),
                     self.stats.eq(engine.stats)]
        return m


def run_serial(stim: Stimulus, *, factory=SerialFusion, **kwargs):
    """``run_pipeline`` with the serial engine; the timeout allows for its cadence and for the
    time the stalled output holds a decision."""
    n = len(stim.signals())
    writes = sum(1 for e in stim.events if isinstance(e, FusionParams))
    kwargs.setdefault("max_clocks", 4 * CLOCKS_PER_SIGNAL * n + writes * 50
                      + 1000)
    return run_pipeline(stim, factory=factory, latency=LATENCY, **kwargs)


def assert_results_come_with_their_signal(obs, expected) -> None:
    """Every decision and stale report comes out in the clock its signal transfers in: the
    engine holds a signal (``signals.ready`` low) until it is done with it."""
    late = [(index, clock, obs.accepted[index])
            for outputs, wanted in ((obs.decisions, expected.decisions),
                                    (obs.stale, expected.stale))
            for (clock, _), (index, _) in zip(outputs, wanted) if clock != obs.accepted[index]]
    assert not late, f"(signal, result clock, transfer clock): {late[:5]}"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_streams_match_reference(seed: int) -> None:
    print(f"seed {seed}")
    rng = random.Random(seed)
    stim = random_stimulus(rng, 1200, phases=4)

    def backpressure(clock: int) -> float:
        # Blocks of always-ready, mostly-ready and mostly-stalled output (blocks span a few
        # signals at this engine's cadence).
        return (1.0, 0.8, 0.3, 0.05)[(clock // 397 + seed) % 4]

    cov = coverage(stim)
    print(cov)
    obs, expected = run_serial(stim, label="serial random", ready_probability=backpressure,
                               seed=seed)
    print(f"{len(obs.accepted)} signals, {len(obs.decisions)} decisions, {len(obs.stale)} stale, "
          f"{obs.clocks} clocks")
    assert len(expected.decisions) > 30, len(expected.decisions)
    assert len(obs.config_written) == 3
    missing = [name for name, count in cov.items() if not count]
    assert not missing, f"seed {seed}: the stream never hit {missing}"
    assert_results_come_with_their_signal(obs, expected)


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_hot_pair_stream_with_backpressure(seed: int) -> None:
    """One pair, eight sources, timestamps mostly equal, the output stalled half of the time."""
    print(f"seed {seed}")
    rng = random.Random(seed)
    params = FusionParams(cooldown_us=3, vote_ttl_us=5, min_confidence=0, quorum=CONF_ONE // 4)
    stim = Stimulus(params)
    ts = 10
    for _ in range(500):
        ts += rng.choice((0, 0, 0, 1, 2, 6))
        stim.events.append((0, Signal(ts, rng.randrange(SOURCE_SLOTS), 5, rng.randrange(2),
                                      rng.randint(0, CONF_ONE), rng.randint(-5, 40))))
    obs, expected = run_serial(stim, label="serial hot pair", seed=seed,
                               ready_probability=lambda clock: 0.5)
    assert len(expected.decisions) > 50
    assert_results_come_with_their_signal(obs, expected)


def test_cadence_and_latency() -> None:
    """Back-to-back signals for one pair, output always ready: each signal starts in the clock
    after the last one's transfer and transfers LATENCY clocks later (CLOCKS_PER_SIGNAL apart),
    a stale one STALE_LATENCY clocks later, with its results."""
    params = FusionParams(cooldown_us=0, min_confidence=0, quorum=0, consensus_threshold=0,
                          weights=(CONF_ONE,) * SOURCE_SLOTS)
    stim = Stimulus(params)
    rng = random.Random(7)
    n = 120
    for i in range(n):
        stale = i % 17 == 16
        stim.events.append((0, Signal(1000 + i // 3 - 5 * stale, i % SOURCE_SLOTS, 2,
                                      rng.randrange(2), rng.randint(1, CONF_ONE),
                                      rng.randint(1, 50))))
    obs, expected = run_serial(stim, label="serial cadence")
    assert len(expected.decisions) > n // 4 and expected.stale
    stale_indices = {index for index, _ in expected.stale}
    # The gap before signal i is its own time: it starts in the clock after i - 1 transfers.
    gaps = {obs.accepted[i] - obs.accepted[i - 1] for i in range(1, n) if i not in stale_indices}
    stale_gaps = {obs.accepted[i] - obs.accepted[i - 1] for i in stale_indices}
    assert gaps == {CLOCKS_PER_SIGNAL} and CLOCKS_PER_SIGNAL == LATENCY + 1, gaps
    assert stale_gaps == {STALE_LATENCY + 1}, stale_gaps
    assert_results_come_with_their_signal(obs, expected)
    print(f"cadence {CLOCKS_PER_SIGNAL} clocks, LATENCY {LATENCY}, STALE_LATENCY {STALE_LATENCY}")


def test_weight_change_applies_to_live_votes() -> None:
    """New weights apply to the votes already on the board from the next signal on
    (:meth:`FusionEngine.set_params`), with no stall: there is no table to recompute, and
    ``refreshing`` never rises."""
    buy_heavy = FusionParams(weights=(CONF_ONE, 0x1000, 0x1000, 0, 0, 0, 0, 0), cooldown_us=0,
                             quorum=0, min_confidence=0, consensus_threshold=CONF_ONE // 2)
    sell_heavy = FusionParams(weights=(0x1000, CONF_ONE, CONF_ONE, 0, 0, 0, 0, 0), cooldown_us=0,
                              quorum=0, min_confidence=0, consensus_threshold=CONF_ONE // 2)
    votes = [Signal(10, 0, 4, 0, CONF_ONE, 20), Signal(11, 1, 4, 1, CONF_ONE, 30),
             Signal(12, 2, 4, 1, CONF_ONE, 30)]
    probe = Signal(13, 3, 4, 0, CONF_ONE, 5)
    stim = Stimulus(buy_heavy, [(0, s) for s in votes] + [sell_heavy, (0, probe)])
    obs, expected = run_serial(stim, label="serial weights")
    old = FusionEngine(buy_heavy, pair_slots=PAIR_SLOTS)
    for s in votes:
        old.fuse(s)
    assert old.fuse(probe).side == 0
    index, decision = expected.decisions[-1]
    assert index == 3 and decision.side == 1
    # The driver offers the probe the clock after the write: it starts right away and
    # transfers LATENCY clocks later.
    stall = obs.accepted[3] - obs.config_written[0]
    assert stall == 1 + LATENCY, stall


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_held_parameters_and_the_array_port(seed: int) -> None:
    """The product core's configuration: the engine keeps no copy of the parameters and reads
    weights and boosts through ``param_read``.  The random streams (with their three parameter
    changes, boosts included) and the weight-change case give the same results."""
    print(f"seed {seed}")
    stim = random_stimulus(random.Random(seed), 600, phases=4)
    boosts = {tuple(e.boost) for e in stim.events if isinstance(e, FusionParams)}
    assert len(boosts | {stim.initial.boost}) > 1, "the stream never changes the boosts"
    obs, expected = run_serial(stim, label="serial held", seed=seed, factory=HeldParameters)
    assert len(obs.config_written) == 3 and len(expected.decisions) > 15


def test_long_gaps_and_extreme_durations() -> None:
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
    obs, expected = run_serial(stim, label="serial long gaps")
    assert len(expected.decisions) >= 3 and len(expected.stale) == 1


def test_durations_compared_by_halves() -> None:
    """The engine compares an age with the TTL and the cooldown by 16-bit halves: ages whose
    upper half is above the bound's and lower half below it (and the other mixes) must come out
    as the whole comparison does.  The expected decisions below differ if either bound is
    taken for the lower half's comparison alone."""
    bound = 0x0001_8000
    params = FusionParams(vote_ttl_us=bound, cooldown_us=0, min_confidence=0, quorum=0,
                          weights=(CONF_ONE,) * SOURCE_SLOTS)
    t0 = 1000
    t2 = t0 + 0x0002_0000
    vote_phase = [
        Signal(t0, 0, 0, 0, CONF_ONE, 10),             # buy
        Signal(t2, 1, 0, 1, CONF_ONE, 10),             # buy vote 0x20000 old: expired; sell
        Signal(t2 + bound, 2, 0, 1, CONF_ONE, 10),     # sell vote exactly ttl old: live
        Signal(t2 + bound + 1, 3, 0, 0, CONF_ONE, 10),  # first sell vote ttl + 1 old: expired
    ]
    cooling = FusionParams(vote_ttl_us=DURATION_MAX, cooldown_us=bound, min_confidence=0,
                           quorum=0, weights=(CONF_ONE,) * SOURCE_SLOTS)
    t3 = t2 + (1 << 20)
    cooldown_phase = [
        Signal(t3, 0, 1, 1, CONF_ONE, 10),             # sell on pair 1: emitted
        Signal(t3 + 0x0002_0000, 1, 1, 1, CONF_ONE, 10),   # 0x20000 after: not cooling
        Signal(t3 + 0x0002_0000 + bound - 1, 2, 1, 1, CONF_ONE, 10),   # cooling
        Signal(t3 + 0x0002_0000 + bound, 3, 1, 1, CONF_ONE, 10),       # exactly: not cooling
    ]
    stim = Stimulus(params, [(0, s) for s in vote_phase] + [cooling]
                    + [(0, s) for s in cooldown_phase])
    obs, expected = run_serial(stim, label="serial duration halves")
    sides = [(d.ts_us, int(d.side)) for _, d in expected.decisions]
    assert sides == [(t0, 0), (t2, 1), (t2 + bound, 1),
                     (t3, 1), (t3 + 0x0002_0000, 1), (t3 + 0x0002_0000 + bound, 1)], sides


def test_reset_after_running_restores_the_power_on_state() -> None:
    """A reset after the engine has run clears the board (votes, emission states, last_ts) and
    restores the reset parameters: afterwards it answers a stream like a fresh engine."""
    initial = FusionParams()
    other = FusionParams(weights=(0x1000, CONF_ONE, CONF_ONE, 0x2000, 0x800, 0, 0, 0),
                         quorum=0, min_confidence=0, cooldown_us=0)
    before = random_stimulus(random.Random(7), 150, phases=1)
    after = random_stimulus(random.Random(8), 150, phases=1)
    dut = SerialFusion(PAIR_SLOTS, params=initial)
    outputs: dict[str, list] = {"before": [], "after": []}
    reinit_clocks: list[int] = []

    async def run_stream(ctx, events, sink) -> None:
        ctx.set(dut.decisions.ready, 1)
        for signal in [e[1] for e in events if not isinstance(e, FusionParams)]:
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
        await ctx.tick().repeat(3)
        assert not ctx.get(dut.refreshing)
        await run_stream(ctx, before.events, outputs["before"])
        ctx.set(dut.config.payload, config_const(other))
        ctx.set(dut.config.valid, 1)
        await ctx.tick().until(dut.config.ready)
        ctx.set(dut.config.valid, 0)
        ctx.set(reset, 1)
        for _ in range(3):
            try:
                await ctx.tick()
            except DomainReset:
                pass
        ctx.set(reset, 0)
        clocks = 0
        while True:
            _, _, refreshing, ready = await ctx.tick().sample(dut.refreshing, dut.config.ready)
            clocks += 1
            assert not refreshing
            if ready:
                break
        reinit_clocks.append(clocks)
        assert ctx.get(dut.params.as_value()) == config_const(initial).as_value().value
        for name in ("signals_in", "stale_drops", "decisions_out"):
            assert ctx.get(getattr(dut.stats, name)) == 0, name
        await run_stream(ctx, after.events, outputs["after"])

    top = Module()
    top.domains.sync = domain = ClockDomain()
    top.submodules.dut = dut
    reset = domain.rst
    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

    def fresh(stim):
        engine = FusionEngine(initial, pair_slots=PAIR_SLOTS)
        return [d for d in map(engine.fuse, stim.signals()) if isinstance(d, Decision)]

    assert outputs["before"] == fresh(before)
    want_after = fresh(after)
    assert want_after, "the stream after the reset must produce decisions"
    assert outputs["after"] == want_after
    # Clearing 16 board words per pair, nothing else.
    words = PAIR_SLOTS * 16
    assert words <= reinit_clocks[0] <= words + 4, reinit_clocks
