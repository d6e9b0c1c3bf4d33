"""cocotb tests of the gateware priority queue (run by ``tests/gateware/test_queue_cocotb.py``
through :func:`sigfuse.sim.runner.build_and_test`).

Every test logs its seed; ``SIGFUSE_SEED`` (set by the runner, default 1) reproduces a run.
The queue's capacity comes from ``SIGFUSE_QUEUE_CAPACITY``.
"""

from __future__ import annotations

import os
import random
import zlib

import cocotb
from cocotb.triggers import ClockCycles

from ...contract import PRIORITY_MAX
from .model import DecisionSource
from .tb import QueueTB

CAPACITY = int(os.environ.get("SIGFUSE_QUEUE_CAPACITY", "32"))


def _seed(name: str) -> int:
    """The run's seed mixed with the test's name: each test gets its own stream."""
    return int(os.environ.get("SIGFUSE_SEED", "1")) * 1_000_003 + zlib.crc32(name.encode())


def _gaps(rng: random.Random, count: int, rate: float) -> list[int]:
    """Idle clocks before each of ``count`` events arriving at ``rate`` per clock."""
    gaps = []
    for _ in range(count):
        gap = 0
        while rng.random() > rate:
            gap += 1
        gaps.append(gap)
    return gaps


#: (push rate, pop rate, priority levels) per traffic kind.
TRAFFIC = {
    "mixed": [(0.6, 0.6, 16), (0.9, 0.3, 4), (0.3, 0.9, PRIORITY_MAX + 1)],
    "overflow": [(1.0, 0.1, 2), (0.9, 0.2, 16), (0.5, 1.0, 4)],
    "ties": [(0.8, 0.5, 1), (0.7, 0.7, 2), (0.2, 1.0, 1)],
}


@cocotb.test()
@cocotb.parametrize(traffic=list(TRAFFIC), backpressure=[0.0, 0.6])
async def test_random_traffic(dut, traffic: str, backpressure: float) -> None:
    """Constrained-random pushes and pops -- bursts into overflow, drains past empty, ties --
    with the popped stream's consumer pausing ``backpressure`` of the time."""
    seed = _seed(f"random/{traffic}/{backpressure}")
    tb = QueueTB(dut, capacity=CAPACITY, seed=seed, pop_pause=backpressure)
    await tb.start()
    rng = random.Random(seed)
    source = DecisionSource(rng)
    per_phase = 6 * CAPACITY
    pop_plan: list[int] = []
    for push_rate, pop_rate, levels in TRAFFIC[traffic]:
        for gap in _gaps(rng, per_phase, push_rate):
            tb.push(source.next(levels), gap)
        pop_plan += _gaps(rng, int(per_phase * min(1.0, pop_rate / push_rate)), pop_rate)
    pop_plan += [0] * (CAPACITY + 4)   # drain past empty at the end

    async def pops() -> None:
        for gap in pop_plan:
            if gap:
                await ClockCycles(dut.clk, gap)
            tb.pop()
            while tb._pop_requests > 2:   # keep requests paced, not all queued at once
                await ClockCycles(dut.clk, 1)

    pop_task = cocotb.start_soon(pops())
    await pop_task
    await tb.drain()
    tb.check()
    counts = tb.scoreboard.counts
    dut._log.info("seed=%d %s", seed, counts)
    assert counts["evicted"] + counts["rejected"] > 0, f"seed={seed}: never overflowed {counts}"
    assert counts["empty_pops"] > 0, f"seed={seed}: never popped an empty queue {counts}"
    assert counts["pops"] == len(pop_plan)


@cocotb.test()
async def test_back_to_back_pops(dut) -> None:
    """With a ready consumer, pops are accepted every clock and answered every clock, in
    priority order, then with empty records."""
    seed = _seed("back_to_back")
    tb = QueueTB(dut, capacity=CAPACITY, seed=seed)
    await tb.start()
    source = DecisionSource(random.Random(seed))
    for _ in range(CAPACITY):
        tb.push(source.next(8))
    await ClockCycles(dut.clk, CAPACITY + 4)
    tb.pop(CAPACITY + 3)
    await tb.drain()
    tb.check()
    assert tb.pop_waits == 0, f"seed={seed}: pop requests waited {tb.pop_waits} clocks"
    assert tb.scoreboard.counts["empty_pops"] == 3


@cocotb.test()
async def test_push_every_clock_into_full_queue(dut) -> None:
    """Pushes every clock into a full queue: each one evicts or is rejected, reported one per
    clock, and the survivors pop out in order."""
    seed = _seed("full_queue")
    tb = QueueTB(dut, capacity=CAPACITY, seed=seed)
    await tb.start()
    source = DecisionSource(random.Random(seed))
    extra = 3 * CAPACITY
    for _ in range(CAPACITY + extra):
        tb.push(source.next(64))
    await ClockCycles(dut.clk, CAPACITY + extra + 4)
    tb.pop(CAPACITY)
    await tb.drain()
    tb.check()
    counts = tb.scoreboard.counts
    assert counts["evicted"] + counts["rejected"] == extra, f"seed={seed}: {counts}"
    assert counts["evicted"] > 0 and counts["rejected"] > 0, f"seed={seed}: {counts}"
