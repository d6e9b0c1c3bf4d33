"""The multi-clock queue (:class:`sigfuse.gateware.queue_serial.SerialQueue`) in Amaranth's
simulator, operation by operation against the reference :class:`sigfuse.queue.DecisionQueue`.

The queue does one operation at a time, in the order it accepts them, so the reference is
driven at the transaction level: ``push()`` when a push is accepted, ``pop()`` when a pop is.
Every popped record and drop report is compared, in order, and the stats are compared whenever
an operation is accepted or ends.  Each operation is also timed against ``op_clocks_max``.

Random tests print their seed on failure; ``SIGFUSE_SEED=<n>`` reruns one seed.
"""

from __future__ import annotations

import os
import random
from collections import Counter, deque

import pytest
from amaranth.sim import Simulator

from sigfuse.contract import DECISION_LAYOUT, PRIORITY_MAX, Decision, DropReason
from sigfuse.gateware.layouts import pack
from sigfuse.gateware.queue_serial import BEATS, SerialQueue, op_clocks_max
from sigfuse.queue import DecisionQueue, PushOutcome
from sigfuse.sim.queue.model import (DecisionSource, ExpectedDrop, QueueStats, TrafficPhase,
                                     random_phases)

SEEDS = [int(os.environ["SIGFUSE_SEED"])] if "SIGFUSE_SEED" in os.environ else [1, 2, 3]

# The output readers are PriorityQueue's: the two queues have the same ports.
from .test_queue_sim import _drop, _popped, _stats  # noqa: E402


def _reference_stats(q: DecisionQueue) -> QueueStats:
    mask = (1 << 32) - 1
    return QueueStats(len(q), q.high_water, q.evicted & mask, q.rejected & mask)


def _simulate(dut, testbench) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


class Mismatch(AssertionError):
    pass


class Scoreboard:
    """Offers pushes and pops to the queue, applies each accepted one to the reference, and
    checks responses, stats and the clocks every operation takes."""

    def __init__(self, dut: SerialQueue, label: str) -> None:
        self.dut = dut
        self.label = label
        self.reference = DecisionQueue(dut.capacity)
        self.bound = op_clocks_max(dut.capacity)
        self.pushes: deque[Decision] = deque()   # offered in order, the first one on the port
        self.pops = 0                             # pop requests not accepted yet
        self.expected_popped: deque[Decision | None] = deque()
        self.expected_drops: deque[ExpectedDrop] = deque()
        self.clock = 0
        self.op_started: int | None = None        # clock in which the running operation began
        self.op_kind = ""
        self.longest = Counter()                  # kind -> most clocks an operation took
        self.counts = Counter()

    def fail(self, message: str) -> None:
        raise Mismatch(f"{self.label}, clock {self.clock}: {message}")

    def check_stats(self, when: str) -> None:
        got, want = _stats(self.ctx, self.dut), _reference_stats(self.reference)
        if got != want:
            self.fail(f"{when}: stats {got}, reference {want}")

    async def clock_once(self, ctx, ready: bool) -> None:
        """Drive one clock: the pending offers, ``popped.ready`` = ``ready``; check what the
        queue shows in it."""
        self.ctx = ctx
        dut = self.dut
        ctx.set(dut.push.valid, bool(self.pushes))
        if self.pushes:
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, self.pushes[0]))
        ctx.set(dut.pop.valid, self.pops > 0)
        ctx.set(dut.popped.ready, ready)

        busy = ctx.get(dut.busy)
        popped_valid = ctx.get(dut.popped.valid)
        # The end of the running operation: the first clock the queue is idle again (an empty
        # pop never leaves the idle state: it ends in the next clock).
        ended_now = False
        if self.op_started is not None and not busy and self.clock > self.op_started:
            ended_now = True
            took = self.clock - self.op_started
            if took > self.bound:
                self.fail(f"{self.op_kind} started in clock {self.op_started} took {took} "
                          f"clocks, op_clocks_max is {self.bound}")
            self.longest[self.op_kind] = max(self.longest[self.op_kind], took)
            self.check_stats(f"end of {self.op_kind}")
            self.op_started = None
        if ctx.get(dut.drop.valid) and not ended_now:
            self.fail("a drop report outside the clock its push ended")
        # An operation starts: the idle queue sees a request and its output register is free.
        free = not popped_valid or ready
        if not busy and free and (self.pops or self.pushes):
            if self.op_started is not None:
                self.fail("a new operation before the last one ended")
            self.op_started = self.clock
            self.op_kind = "pop" if self.pops else "push"
            if self.pops and self.pushes:
                self.counts["pop_and_push_offered"] += 1

        if popped_valid:
            if not ready:
                self.counts["stalls"] += 1
            else:
                got = _popped(ctx, dut)
                if not self.expected_popped:
                    self.fail(f"popped {got} without a pop request")
                want = self.expected_popped.popleft()
                if got != want:
                    self.fail(f"popped {got}, reference says {want}")
        if ctx.get(dut.drop.valid):
            got = _drop(ctx, dut)
            if not self.expected_drops:
                self.fail(f"dropped {got} but the reference dropped nothing")
            want = self.expected_drops.popleft()
            if got != want:
                self.fail(f"dropped {got}, reference says {want}")

        if self.pops and ctx.get(dut.pop.ready):
            if self.op_kind != "pop" or self.op_started != self.clock:
                self.fail("a pop accepted outside the clock its operation started")
            self.check_stats("pop accepted")
            q = self.reference
            if len(q) >= 2 and q.snapshot()[0].priority == q.snapshot()[1].priority:
                self.counts["tie_pops"] += 1
            popped = q.pop()
            self.counts["empty_pops" if popped is None else "pops"] += 1
            self.expected_popped.append(popped)
            self.pops -= 1
        elif self.pushes and ctx.get(dut.push.ready):
            if self.op_kind != "push" or self.op_started is None:
                self.fail("a push accepted outside a push operation")
            self.check_stats("push accepted")
            q = self.reference
            held = q.snapshot()
            decision = self.pushes.popleft()
            if held and any(d.priority == decision.priority for d in held):
                self.counts["tie_pushes"] += 1
            outcome, dropped = q.push(decision)
            if outcome is PushOutcome.EVICTED:
                self.expected_drops.append(ExpectedDrop(DropReason.EVICTED, dropped))
                self.counts["evicted"] += 1
                if held[-1].priority == held[-2].priority:
                    self.counts["tie_evictions"] += 1
            elif outcome is PushOutcome.REJECTED:
                self.expected_drops.append(ExpectedDrop(DropReason.REJECTED, dropped))
                self.counts["rejected"] += 1
        await ctx.tick()
        self.clock += 1

    async def drain(self, ctx, ready_rate: float, rng: random.Random) -> None:
        """Clock until every offer is accepted and every response has come."""
        for _ in range((len(self.pushes) + self.pops + 2) * (self.bound + 1) + 1000):
            if not (self.pushes or self.pops or self.expected_popped or self.expected_drops
                    or self.op_started is not None):
                return
            await self.clock_once(ctx, rng.random() < ready_rate or ready_rate >= 1)
        self.fail(f"stuck: {len(self.pushes)} pushes and {self.pops} pops waiting, responses "
                  f"due {list(self.expected_popped)} {list(self.expected_drops)}")


async def _run_random(ctx, dut, rng: random.Random, phases: list[TrafficPhase],
                      label: str) -> Scoreboard:
    """Requests as the phases say (a push and/or a pop per step), a few clocks between steps
    -- often fewer than an operation takes, so requests meet a busy queue and each other."""
    board = Scoreboard(dut, label)
    source = DecisionSource(rng)
    for phase in phases:
        for _ in range(phase.clocks):
            if rng.random() < phase.push_rate:
                board.pushes.append(source.next(phase.priority_levels))
            if rng.random() < phase.pop_rate:
                board.pops += 1
            gap = rng.choice((0, 1, 2, 3, rng.randint(0, board.bound + 4)))
            for _ in range(gap):
                await board.clock_once(ctx, rng.random() < phase.ready_rate)
            # Keep at most a couple of requests of each kind waiting, like a real producer.
            while len(board.pushes) > 2 or board.pops > 2:
                await board.clock_once(ctx, rng.random() < phase.ready_rate)
    await board.drain(ctx, 1.0, rng)
    board.check_stats("at the end")
    return board


@pytest.mark.parametrize("capacity,steps", [(4, 1000), (7, 1000), (32, 2500)])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_traffic_matches_reference(capacity: int, steps: int, seed: int) -> None:
    rng = random.Random(seed * 1000 + capacity)
    # The random phases, then an overflow burst that always evicts and rejects (few levels:
    # ties at the tail), then a drain past empty.
    phases = [*random_phases(rng, steps), TrafficPhase(4 * capacity, 1.0, 0.1, 0.7, 4),
              TrafficPhase(2 * capacity, 0.0, 1.0, 0.7, 4)]
    dut = SerialQueue(capacity)
    boards = []

    async def testbench(ctx):
        boards.append(await _run_random(ctx, dut, rng, phases,
                                        f"seed={seed} capacity={capacity}"))

    try:
        _simulate(dut, testbench)
    except Mismatch as error:
        raise AssertionError(f"{error}\n(rerun: SIGFUSE_SEED={seed} pytest {__file__})") from None
    board, = boards
    counts = board.counts
    print(f"seed={seed} capacity={capacity}: {board.clock} clocks, {dict(counts)}, "
          f"longest operations {dict(board.longest)} of {board.bound}")
    for case in ("pops", "empty_pops", "evicted", "rejected", "stalls", "tie_pops",
                 "tie_pushes", "tie_evictions", "pop_and_push_offered"):
        assert counts[case] > 0, f"seed={seed}: no {case} in {steps} steps: {dict(counts)}"


def _decision(priority: int, seq: int) -> Decision:
    return Decision(ts_us=1_000 + seq, pair=seq % 7, side=seq & 1, confidence=0x4000 + seq,
                    edge_bps=-seq, priority=priority, seq=seq)


@pytest.mark.parametrize("capacity", [2, 4, 7, 32])
def test_operation_clocks_within_bound(capacity: int) -> None:
    """The worst case of each kind of operation, timed from the clock the idle queue sees the
    request to the clock its result is valid: op_clocks_max is reached (evicting push whose
    entry goes to the head of a full queue) and never exceeded."""
    dut = SerialQueue(capacity)
    bound = op_clocks_max(capacity)
    took: dict[str, int] = {}

    async def timed(ctx, name: str, push: Decision | None = None, pop: bool = False) -> None:
        assert not ctx.get(dut.busy)
        if push is not None:
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, push))
        ctx.set(dut.push.valid, push is not None)
        ctx.set(dut.pop.valid, pop)
        clocks = 0
        while True:
            pushed = ctx.get(dut.push.valid) and ctx.get(dut.push.ready)
            popped = ctx.get(dut.pop.valid) and ctx.get(dut.pop.ready)
            await ctx.tick()
            clocks += 1
            if pushed:
                ctx.set(dut.push.valid, 0)
            if popped:
                ctx.set(dut.pop.valid, 0)
            done = (ctx.get(dut.drop.valid) or ctx.get(dut.popped.valid)
                    or (not ctx.get(dut.busy) and not ctx.get(dut.push.valid)
                        and not ctx.get(dut.pop.valid)))
            if done:
                break
            assert clocks <= bound, f"{name}: more than {bound} clocks"
        took[name] = clocks
        await ctx.tick()

    async def testbench(ctx):
        ctx.set(dut.popped.ready, 1)
        await timed(ctx, "pop empty", pop=True)
        for seq in range(capacity - 1):
            await timed(ctx, f"fill {seq}", _decision(1, seq))
        await timed(ctx, "push to head, longest shift", _decision(5, 100))
        await timed(ctx, "push rejected", _decision(1, 101))
        await timed(ctx, "push evicting, longest shift", _decision(PRIORITY_MAX, 102))
        await timed(ctx, "pop", pop=True)

    _simulate(dut, testbench)
    assert max(took.values()) <= bound
    assert took["push evicting, longest shift"] == bound, took
    # The module docstring's table: 9 + m clocks, m = capacity - 1 entries shifted.
    assert took["push to head, longest shift"] == capacity + 8, took
    assert took["push rejected"] == 2 * BEATS + 2, took
    assert took["pop"] == BEATS + 2 and took["pop empty"] == 1, took


def test_directed_contract_cases() -> None:
    """Ties leave in push order, the newest equal-lowest is evicted, an equal priority is
    rejected, a pop offered with a push goes first, pop on empty says so; a push offered while
    the queue is busy waits, and a push withdrawn before its transfer changes nothing."""
    dut = SerialQueue(4)
    log: list[tuple] = []

    def record(ctx) -> None:
        if ctx.get(dut.drop.valid):
            log.append(("drop",) + _drop(ctx, dut))
        if ctx.get(dut.popped.valid):
            log.append(("pop", _popped(ctx, dut)))

    async def op(ctx, push: Decision | None = None, pop: bool = False) -> None:
        """Offer the transfers until each is accepted, then clock until the queue is idle,
        logging every response."""
        if push is not None:
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, push))
        ctx.set(dut.push.valid, push is not None)
        ctx.set(dut.pop.valid, pop)
        for _ in range(4 * op_clocks_max(4)):
            pushed = ctx.get(dut.push.valid) and ctx.get(dut.push.ready)
            popped = ctx.get(dut.pop.valid) and ctx.get(dut.pop.ready)
            await ctx.tick()
            if pushed:
                ctx.set(dut.push.valid, 0)
            if popped:
                ctx.set(dut.pop.valid, 0)
            record(ctx)
            if not (ctx.get(dut.busy) or ctx.get(dut.push.valid) or ctx.get(dut.pop.valid)):
                break
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

        # A push withdrawn before its transfer: nothing changes.
        ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, _decision(9, 50)))
        ctx.set(dut.push.valid, 1)
        for _ in range(BEATS - 1):
            assert not ctx.get(dut.push.ready)
            await ctx.tick()
        ctx.set(dut.push.valid, 0)
        for _ in range(3):
            await ctx.tick()
        assert not ctx.get(dut.busy) and ctx.get(dut.occupancy) == 0

        # A push offered while a pop runs waits for it (and is not seen by it).
        await op(ctx, _decision(3, 8))
        ctx.set(dut.pop.valid, 1)
        assert ctx.get(dut.pop.ready)
        await ctx.tick()                                     # the pop is accepted
        ctx.set(dut.pop.valid, 0)
        assert ctx.get(dut.busy)
        await op(ctx, _decision(3, 9))
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
        ("pop", d(3, 8)),
        ("pop", d(3, 9)),
    ], log


def test_stalled_popped_record_is_held() -> None:
    """A popped record the consumer does not take stays unchanged, and no operation starts
    until it is taken (the output register also carries drop reports)."""
    dut = SerialQueue(2)

    async def testbench(ctx):
        ctx.set(dut.popped.ready, 1)
        for seq, priority in enumerate((10, 20)):
            ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, _decision(priority, seq)))
            ctx.set(dut.push.valid, 1)
            await ctx.tick().until(dut.push.ready)
            ctx.set(dut.push.valid, 0)
            await ctx.tick().until(~dut.busy)
        ctx.set(dut.popped.ready, 0)
        ctx.set(dut.pop.valid, 1)
        await ctx.tick().until(dut.pop.ready)
        ctx.set(dut.pop.valid, 0)
        await ctx.tick().until(dut.popped.valid)
        # Offer a push that would evict, and another pop: both wait.
        ctx.set(dut.push.payload.as_value(), pack(DECISION_LAYOUT, _decision(30, 2)))
        ctx.set(dut.push.valid, 1)
        ctx.set(dut.pop.valid, 1)
        for _ in range(3 * op_clocks_max(2)):
            assert _popped(ctx, dut) == _decision(20, 1), "held record changed under a stall"
            assert not (ctx.get(dut.pop.ready) or ctx.get(dut.push.ready) or ctx.get(dut.busy))
            assert not ctx.get(dut.drop.valid)
            await ctx.tick()
        ctx.set(dut.popped.ready, 1)
        # The held record leaves; the waiting pop is accepted in the next clock (pop first).
        assert ctx.get(dut.popped.valid) and not ctx.get(dut.pop.ready)
        await ctx.tick()
        assert not ctx.get(dut.popped.valid) and ctx.get(dut.pop.ready)
        assert not ctx.get(dut.push.ready)
        await ctx.tick()
        ctx.set(dut.pop.valid, 0)
        await ctx.tick().until(dut.popped.valid)
        assert _popped(ctx, dut) == _decision(10, 0)
        await ctx.tick().until(dut.push.ready)
        ctx.set(dut.push.valid, 0)
        await ctx.tick().until(~dut.busy)
        assert ctx.get(dut.occupancy) == 1 and not ctx.get(dut.drop.valid)

    _simulate(dut, testbench)
