"""cocotb testbench of the gateware priority queue: sources, sinks, monitors and a scoreboard.

Timing discipline (the same for every component): inputs change only just after a rising clock
edge, everything is sampled at the falling edge in the middle of a clock.  A transfer sampled in
clock ``k`` (valid and ready both high) happens at the rising edge that ends clock ``k``; clock
numbers are simulation time divided by the period.  Components await edges only while they
have something to do -- an idle source waits on an event, an idle monitor on its valid signal
rising -- so Python stays off the clocks where nothing happens.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from ...contract import DECISION_LAYOUT, Decision, DropReason
from ...gateware.layouts import pack, unpack
from .model import ClockedQueueModel, ExpectedDrop, QueueStats, decision_from_fields

__all__ = ["CLOCK_NS", "QueueTB", "Scoreboard", "pause_generator"]

CLOCK_NS = 10
_DECISION_BITS = sum(f.width for f in DECISION_LAYOUT)


def pause_generator(rng: random.Random, pause_rate: float, burst: int = 8) -> Iterator[bool]:
    """Bursty backpressure: runs of ready and of paused clocks, ``pause_rate`` of them paused."""
    while True:
        paused = rng.random() < pause_rate
        for _ in range(rng.randint(1, burst)):
            yield paused


def _decision(raw: int) -> Decision:
    return decision_from_fields(unpack(DECISION_LAYOUT, raw))


@dataclass
class _Clocked:
    pops: set[int] = field(default_factory=set)
    pushes: dict[int, Decision] = field(default_factory=dict)


class Scoreboard:
    """Feeds the sampled transfers, clock by clock, to :class:`ClockedQueueModel` and checks
    every popped record and drop report against it, in order."""

    def __init__(self, capacity: int, log) -> None:
        self.model = ClockedQueueModel(capacity)
        self.log = log
        self._transfers = _Clocked()
        self._next_clock = 0
        self.expected_popped: deque[Decision | None] = deque()
        self.expected_drops: deque[ExpectedDrop] = deque()
        self.errors: list[str] = []
        self.counts = dict(pushes=0, pops=0, empty_pops=0, evicted=0, rejected=0)

    def pushed(self, clock: int, decision: Decision) -> None:
        self._transfers.pushes[clock] = decision
        self.counts["pushes"] += 1

    def pop_accepted(self, clock: int) -> None:
        self._transfers.pops.add(clock)
        self.counts["pops"] += 1

    def settle(self, through: int) -> None:
        """Run the model over every clock up to and including ``through``."""
        pops, pushes = self._transfers.pops, self._transfers.pushes
        while self._next_clock <= through:
            clock = self._next_clock
            popped, drops = self.model.clock(pop=clock in pops, push=pushes.pop(clock, None))
            pops.discard(clock)
            self.expected_popped.extend(popped)
            self.expected_drops.extend(drops)
            self._next_clock += 1

    def _error(self, text: str) -> None:
        self.log.error(text)
        self.errors.append(text)

    def popped(self, clock: int, decision: Decision | None) -> None:
        # A response seen in clock k answers a pop of clock k-1 or earlier.
        self.settle(clock - 1)
        if not self.expected_popped:
            self._error(f"clock {clock}: popped {decision} with no pop outstanding")
            return
        want = self.expected_popped.popleft()
        if decision is None:
            self.counts["empty_pops"] += 1
        if decision != want:
            self._error(f"clock {clock}: popped {decision}, reference {want}")

    def dropped(self, clock: int, drop: ExpectedDrop) -> None:
        # A drop seen in clock k comes from the insert of clock k-1 (push of clock k-2).
        self.settle(clock - 1)
        if not self.expected_drops:
            self._error(f"clock {clock}: dropped {drop}, the reference dropped nothing")
            return
        want = self.expected_drops.popleft()
        self.counts[drop.reason.wire_name] += 1
        if drop != want:
            self._error(f"clock {clock}: dropped {drop}, reference {want}")
        elif self.expected_drops:
            self._error(f"clock {clock}: drop {self.expected_drops[0]} was not reported in time")

    def finish(self, clock: int, stats: QueueStats) -> None:
        """At quiescence: nothing outstanding, stats registers equal to the model's."""
        self.settle(clock)
        if self.expected_popped:
            self._error(f"{len(self.expected_popped)} popped responses never came: "
                        f"{list(self.expected_popped)[:3]}")
        if self.expected_drops:
            self._error(f"{len(self.expected_drops)} drops never reported: "
                        f"{list(self.expected_drops)[:3]}")
        if stats != self.model.stats:
            self._error(f"stats registers {stats}, reference {self.model.stats}")


class QueueTB:
    """The queue DUT with a push source, a pop requester, a popped sink, a drop monitor and a
    scoreboard.  ``seed`` seeds every random choice the TB makes."""

    def __init__(self, dut, *, capacity: int, seed: int, pop_pause: float = 0.0) -> None:
        self.dut = dut
        self.capacity = capacity
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = dut._log
        self.scoreboard = Scoreboard(capacity, self.log)
        self._push_queue: deque[tuple[int, Decision]] = deque()
        self._push_ready = Event()
        self._pop_requests = 0
        self._pop_ready = Event()
        self._pause = pause_generator(random.Random(seed ^ 0x5A5A), pop_pause)
        self.pop_waits = 0             # clocks a pop request waited for pop.ready
        self.log.info("QueueTB seed=%d capacity=%d pop_pause=%.2f", seed, capacity, pop_pause)

    async def start(self) -> None:
        dut = self.dut
        dut.push__valid.value = 0
        dut.pop__valid.value = 0
        dut.popped__ready.value = 1
        # Clock k starts at the k-th rising edge after this one (tests in one simulator run
        # share the time line, so count from here).
        self._t0 = get_sim_time("ns")
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=True))
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        cocotb.start_soon(self._push_source())
        cocotb.start_soon(self._pop_source())
        cocotb.start_soon(self._popped_sink())
        cocotb.start_soon(self._drop_monitor())

    def _clock_now(self) -> int:
        return int(get_sim_time("ns") - self._t0) // CLOCK_NS

    # -- stimulus --------------------------------------------------------------------------

    def push(self, decision: Decision, gap: int = 0) -> None:
        """Queue a push, ``gap`` idle clocks after the previous one."""
        self._push_queue.append((gap, decision))
        self._push_ready.set()

    def pop(self, count: int = 1) -> None:
        self._pop_requests += count
        self._pop_ready.set()

    @property
    def idle(self) -> bool:
        return not self._push_queue and self._pop_requests == 0

    async def _push_source(self) -> None:
        dut = self.dut
        while True:
            if not self._push_queue:
                dut.push__valid.value = 0
                self._push_ready.clear()
                await self._push_ready.wait()
                await RisingEdge(dut.clk)
            gap, decision = self._push_queue.popleft()
            if gap:
                dut.push__valid.value = 0
                await ClockCycles(dut.clk, gap)
            dut.push__payload.value = pack(DECISION_LAYOUT, decision)
            dut.push__valid.value = 1
            # push is always ready: the transfer happens at the end of this clock.
            self.scoreboard.pushed(self._clock_now(), decision)
            await RisingEdge(dut.clk)

    async def _pop_source(self) -> None:
        dut = self.dut
        while True:
            if self._pop_requests == 0:
                dut.pop__valid.value = 0
                self._pop_ready.clear()
                await self._pop_ready.wait()
                await RisingEdge(dut.clk)
            dut.pop__valid.value = 1
            await FallingEdge(dut.clk)
            if dut.pop__ready.value:
                self.scoreboard.pop_accepted(self._clock_now())
                self._pop_requests -= 1
            else:
                self.pop_waits += 1
            await RisingEdge(dut.clk)

    # -- observation -----------------------------------------------------------------------

    async def _popped_sink(self) -> None:
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if not dut.popped__valid.value:
                await RisingEdge(dut.popped__valid)
                continue
            if dut.popped__ready.value:
                raw = int(dut.popped__payload.value)
                empty = raw >> _DECISION_BITS & 1
                self.scoreboard.popped(self._clock_now(), None if empty else _decision(raw))
            await RisingEdge(dut.clk)
            dut.popped__ready.value = 0 if next(self._pause) else 1

    async def _drop_monitor(self) -> None:
        dut = self.dut
        while True:
            await FallingEdge(dut.clk)
            if not dut.drop__valid.value:
                await RisingEdge(dut.drop__valid)
                continue
            raw = int(dut.drop__payload.value)
            reason = DropReason(raw & 0b11)
            self.scoreboard.dropped(self._clock_now(), ExpectedDrop(reason, _decision(raw >> 2)))

    # -- end of test -----------------------------------------------------------------------

    async def drain(self, timeout_clocks: int = 10_000) -> None:
        """Wait for every queued push and pop to go through, let the responses and the stats
        registers settle, then check the stats against the reference."""
        dut = self.dut
        for _ in range(timeout_clocks):
            if self.idle:
                break
            await ClockCycles(dut.clk, 16)
        else:
            raise AssertionError(f"seed={self.seed}: stimulus did not drain")
        dut.popped__ready.value = 1
        self._pause = iter(lambda: False, True)
        await ClockCycles(dut.clk, 6)
        await FallingEdge(dut.clk)
        stats = QueueStats(int(dut.occupancy.value), int(dut.high_water.value),
                           int(dut.evicted.value), int(dut.rejected.value))
        self.scoreboard.finish(self._clock_now(), stats)

    def check(self) -> None:
        errors = self.scoreboard.errors
        assert not errors, (f"seed={self.seed}: {len(errors)} mismatches against the reference, "
                            f"first: {errors[0]}")
