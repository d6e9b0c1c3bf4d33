"""The gateware priority queue in Amaranth's simulator, clock by clock against the reference
queue (:class:`sigfuse.sim.queue.model.ClockedQueueModel`).

Random tests print their seed on failure; ``SIGFUSE_SEED=<n>`` reruns one seed.
"""

from __future__ import annotations

import os
import random
from collections import deque

import pytest
from amaranth.sim import Simulator

from sigfuse.contract import DECISION_LAYOUT, PRIORITY_MAX, Decision, DropReason
from sigfuse.gateware.layouts import pack, unpack
from sigfuse.gateware.queue import PriorityQueue
from sigfuse.sim.queue.model import (ClockedQueueModel, DecisionSource, ExpectedDrop,
                                     QueueStats, TrafficPhase, clock_schedule,
                                     decision_from_fields, random_phases)

SEEDS = [int(os.environ["SIGFUSE_SEED"])] if "SIGFUSE_SEED" in os.environ else [1, 2, 3]


def _popped(ctx, dut) -> Decision | None:
    raw = ctx.get(dut.popped.payload.as_value())
    fields = unpack(DECISION_LAYOUT, raw)
    empty = raw >> sum(f.width for f in DECISION_LAYOUT) & 1
    return None if empty else decision_from_fields(fields)


def _drop(ctx, dut) -> ExpectedDrop:
    return ExpectedDrop(DropReason(ctx.get(dut.drop.payload.reason)),
                        decision_from_fields(unpack(DECISION_LAYOUT,
                                                    ctx.get(dut.drop.payload.decision.as_value()))))


def _stats(ctx, dut) -> QueueStats:
    return QueueStats(ctx.get(dut.occupancy), ctx.get(dut.high_water), ctx.get(dut.evicted),
                      ctx.get(dut.rejected))


class Mismatch(AssertionError):
    pass


async def _run_schedule(ctx, dut, capacity: int, schedule, label: str) -> dict[str, int]:
    """Drive ``schedule`` (see :func:`clock_schedule`) and compare every output and the stats
    every clock.  Returns event counts so the caller can check the stream exercised what it
    meant to."""
    model = ClockedQueueModel(capacity)
    expected_popped: deque[Decision | None] = deque()
    expected_drops: deque[ExpectedDrop] = deque()
    counts = dict(pops=0, empty_pops=0, evicted=0, rejected=0, stalls=0, both=0)
    pop_held = False  # a pop request stays valid until accepted (stream rule)
    # Idle clocks at the end let the last insert, responses and stats through.
    for clock, (push, pop_wanted, ready) in enumerate([*schedule, *[(None, False, True)] * 3]):
        pop_valid = pop_held or pop_wanted
        ctx.set(dut.push.valid, push is not None)
        if push is not None:
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, push))
        ctx.set(dut.pop.valid, pop_valid)
        ctx.set(dut.popped.ready, ready)

        where = f"{label}, clock {clock}"
        if ctx.get(dut.popped.valid):
            if not ready:
                counts["stalls"] += 1
            else:
                got = _popped(ctx, dut)
                if not expected_popped:
                    raise Mismatch(f"{where}: popped {got} without a pop request")
                want = expected_popped.popleft()
                if got != want:
                    raise Mismatch(f"{where}: popped {got}, reference says {want}")
        if ctx.get(dut.drop.valid):
            got = _drop(ctx, dut)
            if not expected_drops:
                raise Mismatch(f"{where}: dropped {got} but the reference dropped nothing")
            want = expected_drops.popleft()
            if got != want:
                raise Mismatch(f"{where}: dropped {got}, reference says {want}")
        elif expected_drops:
            raise Mismatch(f"{where}: expected drop {expected_drops[0]} one clock after its push")

        pop_fire = pop_valid and bool(ctx.get(dut.pop.ready))
        pop_held = pop_valid and not pop_fire
        # The stats registers trail the queue by two clocks: after the clock edge that ends
        # clock k they show the reference after clock k-1.
        stats_due = model.stats
        popped, drops = model.clock(pop=pop_fire, push=push)
        expected_popped.extend(popped)
        expected_drops.extend(drops)
        counts["pops"] += pop_fire
        counts["empty_pops"] += sum(p is None for p in popped)
        counts["both"] += pop_fire and push is not None
        for drop in drops:
            counts[drop.reason.wire_name] += 1

        await ctx.tick()
        if _stats(ctx, dut) != stats_due:
            raise Mismatch(f"{where}: stats {_stats(ctx, dut)}, reference {stats_due} "
                           "(one clock earlier)")

    if _stats(ctx, dut) != model.stats:
        raise Mismatch(f"{label}, at the end: stats {_stats(ctx, dut)}, reference {model.stats}")
    if expected_popped or expected_drops:
        raise Mismatch(f"{label}: responses never came: {list(expected_popped)} "
                       f"{list(expected_drops)}")
    return counts


def _simulate(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("capacity,clocks", [(4, 1500), (7, 1500), (32, 4000)])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_traffic_matches_reference(capacity: int, clocks: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + capacity)
    schedule = list(clock_schedule(rng, random_phases(rng, clocks), DecisionSource(rng)))
    dut = PriorityQueue(capacity)
    result = {}

    async def testbench(ctx):
        result.update(await _run_schedule(ctx, dut, capacity, schedule,
                                          f"seed={seed} capacity={capacity}"))

    try:
        _simulate(dut, testbench)
    except Mismatch as error:
        raise AssertionError(f"{error}\n(rerun: SIGFUSE_SEED={seed} pytest {__file__})") from None
    # The stream must have exercised every case the contract distinguishes.
    for case in ("pops", "empty_pops", "evicted", "rejected", "stalls", "both"):
        assert result[case] > 0, f"seed={seed}: no {case} in {clocks} clocks: {result}"


def test_ecp5_capacity_overflows_like_reference() -> None:
    """The ULX3S build (256 entries): fill past capacity with ties, overflow, then drain."""
    capacity, seed = 256, SEEDS[0]
    rng = random.Random(seed)
    phases = [TrafficPhase(400, 0.95, 0.15, 1.0, 16), TrafficPhase(200, 0.9, 0.5, 0.5, 4),
              TrafficPhase(500, 0.1, 1.0, 0.8, 16)]
    schedule = list(clock_schedule(rng, phases, DecisionSource(rng)))
    dut = PriorityQueue(capacity)
    result = {}

    async def testbench(ctx):
        result.update(await _run_schedule(ctx, dut, capacity, schedule, f"seed={seed}"))

    try:
        _simulate(dut, testbench)
    except Mismatch as error:
        raise AssertionError(f"{error}\n(rerun: SIGFUSE_SEED={seed} pytest {__file__})") from None
    for case in ("evicted", "rejected", "empty_pops", "stalls"):
        assert result[case] > 0, f"seed={seed}: no {case}: {result}"


def _decision(priority: int, seq: int) -> Decision:
    return Decision(ts_us=1_000 + seq, pair=seq % 7, side=seq & 1, confidence=0x4000 + seq,
                    edge_bps=-seq, priority=priority, seq=seq)


def test_directed_contract_cases() -> None:
    """Ties leave in push order, the newest equal-lowest is evicted, an equal priority is rejected,
    a pop with a push in one clock goes first, pop on empty says so, and a push is seen by pops
    from the second clock after it is accepted."""
    dut = PriorityQueue(4)
    log: list[tuple] = []

    def record(ctx) -> None:
        if ctx.get(dut.drop.valid):
            log.append(("drop",) + _drop(ctx, dut))
        if ctx.get(dut.popped.valid):
            log.append(("pop", _popped(ctx, dut)))

    async def op(ctx, push: Decision | None = None, pop: bool = False, settle: int = 2) -> None:
        """One clock with the given transfers (push is always ready; the consumer is always
        ready, so pop.ready is 1), then ``settle`` idle clocks, logging every response."""
        if push is not None:
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, push))
        ctx.set(dut.push.valid, push is not None)
        ctx.set(dut.pop.valid, pop)
        assert ctx.get(dut.pop.ready)
        await ctx.tick()
        ctx.set(dut.push.valid, 0)
        ctx.set(dut.pop.valid, 0)
        record(ctx)
        for _ in range(settle):
            await ctx.tick()
            record(ctx)

    async def testbench(ctx):
        ctx.set(dut.popped.ready, 1)
        await op(ctx, pop=True)                              # empty
        for seq, priority in enumerate((5, 9, 5, 9)):        # 9(1) 9(3) 5(0) 5(2)
            await op(ctx, _decision(priority, seq))
        assert ctx.get(dut.occupancy) == 4
        await op(ctx, _decision(5, 4))                       # rejected: not strictly greater
        await op(ctx, _decision(7, 5))                       # evicts the newest lowest: seq 2
        await op(ctx, _decision(PRIORITY_MAX, 6), pop=True)  # pops seq 1, then inserts 6
        for _ in range(5):
            await op(ctx, pop=True)
        await op(ctx, _decision(3, 7), pop=True)             # pop on empty, then insert 7
        await op(ctx, pop=True)
        await op(ctx, _decision(3, 8), settle=0)             # inserted the next clock ...
        await op(ctx, pop=True)                              # ... after this pop
        await op(ctx, pop=True)
        assert ctx.get(dut.occupancy) == 0
        assert ctx.get(dut.high_water) == 4
        assert (ctx.get(dut.evicted), ctx.get(dut.rejected)) == (1, 1)

    _simulate(dut, testbench)
    d = _decision
    assert log == [
        ("pop", None),
        ("drop", DropReason.REJECTED, d(5, 4)),
        ("drop", DropReason.EVICTED, d(5, 2)),
        ("pop", d(9, 1)),
        ("pop", d(PRIORITY_MAX, 6)),
        ("pop", d(9, 3)),
        ("pop", d(7, 5)),
        ("pop", d(5, 0)),
        ("pop", None),
        ("pop", None),
        ("pop", d(3, 7)),
        ("pop", None),
        ("pop", d(3, 8)),
    ]


def test_stalled_pop_survives_evictions() -> None:
    """A popped record the consumer does not take is held while pushes keep evicting through the
    shared memory read port, and no further pop is accepted meanwhile."""
    dut = PriorityQueue(2)

    async def testbench(ctx):
        ctx.set(dut.popped.ready, 0)
        for seq, priority in enumerate((10, 20)):
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, _decision(priority, seq)))
            ctx.set(dut.push.valid, 1)
            await ctx.tick()
        ctx.set(dut.push.valid, 0)
        await ctx.tick()                                     # the last push is inserted
        ctx.set(dut.pop.valid, 1)
        await ctx.tick().until(dut.pop.ready)                # accepted at once
        ctx.set(dut.pop.valid, 1)                            # a second request waits
        assert ctx.get(dut.popped.valid) and not ctx.get(dut.pop.ready)
        drops = []
        for seq, priority in ((2, 30), (3, 40), (4, 50)):
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, _decision(priority, seq)))
            ctx.set(dut.push.valid, 1)
            await ctx.tick()
            assert _popped(ctx, dut) == _decision(20, 1), "held record changed under a stall"
            assert not ctx.get(dut.pop.ready)
            if ctx.get(dut.drop.valid):
                drops.append(_drop(ctx, dut))
        ctx.set(dut.push.valid, 0)
        for _ in range(2):
            await ctx.tick()
            assert _popped(ctx, dut) == _decision(20, 1) and not ctx.get(dut.pop.ready)
            if ctx.get(dut.drop.valid):
                drops.append(_drop(ctx, dut))
        # After pop(20), pushing 30, 40, 50 into capacity 2 keeps 50, 40 and evicts 10, then 30.
        assert drops == [ExpectedDrop(DropReason.EVICTED, _decision(10, 0)),
                         ExpectedDrop(DropReason.EVICTED, _decision(30, 2))]
        ctx.set(dut.popped.ready, 1)
        # The held record leaves, the waiting request is accepted in the same clock.
        _, _, held, accepted = await ctx.tick().sample(dut.popped.payload.as_value(), dut.pop.ready)
        assert accepted
        ctx.set(dut.pop.valid, 0)
        assert _popped(ctx, dut) == _decision(50, 4)

    _simulate(dut, testbench)
