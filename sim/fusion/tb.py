"""cocotb testbench of the gateware fusion pipeline: a signal/config source, a decision sink
with random backpressure, a stale-report monitor and a scoreboard on the reference engine.

Timing discipline (as in :mod:`sigfuse.sim.queue.tb`): inputs change only just after a rising
clock edge, everything is sampled at the falling edge in the middle of a clock.  A transfer
sampled in clock ``k`` happens at the rising edge that ends clock ``k``; clock numbers are
simulation time since :meth:`FusionTB.start` divided by the period.  Components await edges
only while they have something to do: an idle source waits on an event, a source held off by
``signals.ready`` (parameter write, mask table refresh, full output FIFO) on ``ready`` rising,
idle monitors on their ``valid`` rising -- so the 3073-clock refresh after a weight change
costs no Python at all.

The scoreboard feeds :class:`sigfuse.fusion.FusionEngine` in acceptance order (a parameter
write is taken only by an empty pipeline, so the engine's ``set_params`` between two ``fuse``
calls is exact) and checks, in order, every decision (and that it comes no earlier than
:data:`LATENCY` clocks after its signal) and every stale report (exactly
:data:`STALE_LATENCY` clocks after its signal), then the stats counters and the parameter
read-back.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from amaranth.hdl import Const

from ...contract import DECISION_LAYOUT, SIGNAL_LAYOUT, Decision, FusionParams, Signal
from ...fusion import FusionEngine
from ...gateware.fusion import LATENCY, STALE_LATENCY
from ...gateware.fusion_params import MaskLayout, config_const, mask_entries
from ...gateware.layouts import pack, unpack
from .model import Coverage, Event as StimulusEvent

__all__ = ["CLOCK_NS", "FusionTB", "Scoreboard", "ReadyBursts"]

CLOCK_NS = 10
_COUNTER_MASK = (1 << 32) - 1


class ReadyBursts:
    """Bursty backpressure: runs of 1..``burst`` clocks, each run ready with probability
    ``probability(clock)``."""

    def __init__(self, rng: random.Random, probability: Callable[[int], float],
                 burst: int = 8) -> None:
        self.rng = rng
        self.probability = probability
        self.burst = burst
        self._left = 0
        self._ready = True

    def next(self, clock: int) -> bool:
        if self._left == 0:
            self._ready = self.rng.random() < self.probability(clock)
            self._left = self.rng.randint(1, self.burst)
        self._left -= 1
        return self._ready


def _config_value(params: FusionParams) -> int:
    return Const.cast(config_const(params)).value


class Scoreboard:
    """The reference engine in acceptance order, and the in-order checks of both outputs."""

    def __init__(self, params: FusionParams, pair_slots: int, log) -> None:
        self.engine = FusionEngine(params, pair_slots=pair_slots)
        self.log = log
        self.coverage = Coverage()
        self.accepted = 0
        self.accept_clocks: list[int] = []
        self.config_clocks: list[int] = []
        #: (accept clock, signal index, decision) still to come out
        self.expected_decisions: deque[tuple[int, int, Decision]] = deque()
        #: (accept clock, signal index, signal) still to be reported
        self.expected_stale: deque[tuple[int, int, Signal]] = deque()
        self.decisions = 0
        self.emitted: list[Decision] = []
        self.stale = 0
        self.latencies: dict[int, int] = {}     # clocks from accept to transfer -> count
        self.errors: list[str] = []

    def _error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.log.error(text)
        self.errors.append(text)

    # -- inputs ----------------------------------------------------------------------------

    def config_accepted(self, clock: int, params: FusionParams, *, initial: bool = False) -> None:
        if not initial:
            self.coverage.param_write(self.engine.params, params)
            self.config_clocks.append(clock)
        self.engine.set_params(params)

    def signal_accepted(self, clock: int, sig: Signal) -> None:
        index = self.accepted
        self.accepted += 1
        self.accept_clocks.append(clock)
        self.coverage.before(self.engine, clock, sig)
        result = self.engine.fuse(sig)
        if result is False:
            self.expected_stale.append((clock, index, sig))
            return
        self.coverage.after(self.engine, sig)
        if result is not None:
            self.expected_decisions.append((clock, index, result))

    # -- outputs ---------------------------------------------------------------------------

    def decision_out(self, clock: int, decision: Decision) -> None:
        k = self.decisions
        self.decisions += 1
        if not self.expected_decisions:
            self._error(f"clock {clock}: decision #{k} {decision}, the reference emitted none")
            return
        accepted, index, want = self.expected_decisions.popleft()
        self.emitted.append(decision)
        latency = clock - accepted   # accepting edge -> transferring edge (both end their clock)
        self.latencies[latency] = self.latencies.get(latency, 0) + 1
        if decision != want:
            self._error(f"clock {clock}: decision #{k} (signal #{index}, accepted in clock "
                        f"{accepted}) is {decision}, reference {want}")
        elif latency < LATENCY:
            self._error(f"clock {clock}: decision #{k} (signal #{index}) after {latency} clocks, "
                        f"less than LATENCY = {LATENCY}")

    def stale_out(self, clock: int, sig: Signal) -> None:
        k = self.stale
        self.stale += 1
        if not self.expected_stale:
            self._error(f"clock {clock}: stale report #{k} {sig}, the reference dropped none")
            return
        accepted, index, want = self.expected_stale.popleft()
        if sig != want:
            self._error(f"clock {clock}: stale report #{k} (signal #{index}) is {sig}, "
                        f"reference {want}")
        elif clock - accepted != STALE_LATENCY:
            self._error(f"clock {clock}: stale report #{k} (signal #{index}) after "
                        f"{clock - accepted} clocks, not STALE_LATENCY = {STALE_LATENCY}")

    def finish(self, stats: dict[str, int], params_readback: int) -> None:
        """At quiescence: nothing outstanding, counters and registers equal to the reference."""
        if self.expected_decisions:
            self._error(f"{len(self.expected_decisions)} decisions never came out, first "
                        f"{self.expected_decisions[0]}")
        if self.expected_stale:
            self._error(f"{len(self.expected_stale)} stale reports never came, first "
                        f"{self.expected_stale[0]}")
        want = {"signals_in": self.accepted & _COUNTER_MASK,
                "stale_drops": self.engine.stale_drops & _COUNTER_MASK,
                "decisions_out": self.engine.decisions & _COUNTER_MASK}
        if stats != want:
            self._error(f"stats counters {stats}, reference {want}")
        if params_readback != _config_value(self.engine.params):
            self._error(f"params read-back {params_readback:#x} is not the last write "
                        f"{self.engine.params}")


class FusionTB:
    """The pipeline DUT with its source, sink, monitor and scoreboard.  ``seed`` seeds every
    random choice the TB makes; ``ready_probability(clock)`` shapes the sink's backpressure."""

    def __init__(self, dut, *, pair_slots: int, seed: int,
                 ready_probability: Callable[[int], float] = lambda clock: 1.0,
                 build_params: FusionParams | None = None) -> None:
        self.dut = dut
        self.pair_slots = pair_slots
        self.seed = seed
        self.log = dut._log
        self.build_params = build_params or FusionParams()
        self.scoreboard: Scoreboard | None = None
        self._events: deque[StimulusEvent] = deque()
        self._events_ready = Event()
        self._ready = ReadyBursts(random.Random(seed ^ 0x5A5A), ready_probability)
        self._busy = False
        self.stalled_clocks = 0        # decisions.valid high, decisions.ready low
        self.throttled_clocks = 0      # a signal offered, not ready, no write or refresh
        self.log.info("FusionTB seed=%d pair_slots=%d", seed, pair_slots)

    # -- start -----------------------------------------------------------------------------

    def _power_on_state(self) -> None:
        """The memories as after configuration: empty vote board and emission state, the mask
        table of the build parameters.  A reset does not touch memories, so without this a test
        would inherit the board (and the last weights' mask table) of the test before it."""
        dut = self.dut
        for pair in range(self.pair_slots):
            dut.votes[pair].value = 0
            dut.emit_state[pair].value = 0
        for mask, entry in enumerate(mask_entries(self.build_params)):
            dut.mask_table[mask].value = Const.cast(MaskLayout.const(entry)).value

    async def start(self, params: FusionParams) -> None:
        """Clock, reset, power-on memories, then ``params`` through the ``config`` stream (the
        refresh of the mask table, if its weights differ from the build's, included)."""
        dut = self.dut
        dut.signals__valid.value = 0
        dut.config__valid.value = 0
        dut.decisions__ready.value = 1
        self._t0 = get_sim_time("ns")
        cocotb.start_soon(Clock(dut.clk, CLOCK_NS, unit="ns").start(start_high=True))
        dut.rst.value = 1
        await ClockCycles(dut.clk, 2)
        self._power_on_state()
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        self.scoreboard = Scoreboard(self.build_params, self.pair_slots, self.log)
        await self._write_config(params, initial=True)
        cocotb.start_soon(self._source())
        cocotb.start_soon(self._decision_sink())
        cocotb.start_soon(self._stale_monitor())

    def _clock_now(self) -> int:
        return int(get_sim_time("ns") - self._t0) // CLOCK_NS

    # -- stimulus --------------------------------------------------------------------------

    def send(self, events) -> None:
        """Queue signals ``(idle clocks before it, Signal)`` and parameter writes."""
        self._events.extend(events)
        self._events_ready.set()

    @property
    def idle(self) -> bool:
        return not self._events and not self._busy

    async def _write_config(self, params: FusionParams, *, initial: bool = False) -> None:
        dut = self.dut
        dut.signals__valid.value = 0
        dut.config__payload.value = _config_value(params)
        dut.config__valid.value = 1
        while True:
            await FallingEdge(dut.clk)
            if dut.config__ready.value:
                break
            await RisingEdge(dut.config__ready)
        self.scoreboard.config_accepted(self._clock_now(), params, initial=initial)
        await RisingEdge(dut.clk)
        dut.config__valid.value = 0

    async def _source(self) -> None:
        dut = self.dut
        scoreboard = self.scoreboard
        while True:
            if not self._events:
                dut.signals__valid.value = 0
                self._busy = False
                self._events_ready.clear()
                await self._events_ready.wait()
                await RisingEdge(dut.clk)
            self._busy = True
            event = self._events.popleft()
            if isinstance(event, FusionParams):
                await self._write_config(event)
                continue
            idle, sig = event
            if idle:
                dut.signals__valid.value = 0
                await ClockCycles(dut.clk, idle)
            dut.signals__payload.value = pack(SIGNAL_LAYOUT, sig)
            dut.signals__valid.value = 1
            while True:
                await FallingEdge(dut.clk)
                if dut.signals__ready.value:
                    break
                if not dut.refreshing.value:
                    self.throttled_clocks += 1
                    await RisingEdge(dut.clk)     # the FIFO may drain any clock: look again
                else:
                    await RisingEdge(dut.signals__ready)
            scoreboard.signal_accepted(self._clock_now(), sig)
            await RisingEdge(dut.clk)

    # -- observation -----------------------------------------------------------------------

    async def _decision_sink(self) -> None:
        dut = self.dut
        scoreboard = self.scoreboard
        while True:
            await FallingEdge(dut.clk)
            if not dut.decisions__valid.value:
                await RisingEdge(dut.decisions__valid)
                continue
            if dut.decisions__ready.value:
                raw = int(dut.decisions__payload.value)
                scoreboard.decision_out(self._clock_now(),
                                        Decision(**unpack(DECISION_LAYOUT, raw)))
            else:
                self.stalled_clocks += 1
            await RisingEdge(dut.clk)
            dut.decisions__ready.value = 1 if self._ready.next(self._clock_now()) else 0

    async def _stale_monitor(self) -> None:
        dut = self.dut
        scoreboard = self.scoreboard
        while True:
            await FallingEdge(dut.clk)
            if not dut.stale__valid.value:
                await RisingEdge(dut.stale__valid)
                continue
            raw = int(dut.stale__payload.value)
            scoreboard.stale_out(self._clock_now(), Signal(**unpack(SIGNAL_LAYOUT, raw)))

    # -- end of test -----------------------------------------------------------------------

    async def drain(self, timeout_clocks: int = 1_000_000) -> None:
        """Wait for the stimulus to go in, open the output, let everything come out, then
        check the counters and the parameter read-back."""
        dut = self.dut
        waited = 0
        while not self.idle:
            if waited > timeout_clocks:
                raise AssertionError(f"seed={self.seed}: stimulus did not drain "
                                     f"({len(self._events)} events left)")
            await ClockCycles(dut.clk, 64)
            waited += 64
        self._ready = ReadyBursts(random.Random(0), lambda clock: 1.0)
        dut.decisions__ready.value = 1
        await ClockCycles(dut.clk, LATENCY + 16)   # pipeline plus a full output FIFO
        await FallingEdge(dut.clk)
        stats_raw = int(dut.stats.value)
        stats = {"signals_in": stats_raw & _COUNTER_MASK,
                 "stale_drops": stats_raw >> 32 & _COUNTER_MASK,
                 "decisions_out": stats_raw >> 64 & _COUNTER_MASK}
        self.scoreboard.finish(stats, int(dut.params.value))

    def check(self) -> None:
        errors = self.scoreboard.errors
        assert not errors, (f"seed={self.seed}: {len(errors)} mismatches against the reference, "
                            f"first: {errors[0]}")
