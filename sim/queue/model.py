"""The reference queue as the gateware sees it in one clock, and random stimulus for it.

:class:`ClockedQueueModel` drives :class:`sigfuse.queue.DecisionQueue` with the clock rule of
:class:`sigfuse.gateware.queue.PriorityQueue`: a push takes effect the clock after it is
accepted, a pop in the clock it is accepted, and in one clock the pop goes first.  Both the
Amaranth-simulator test and the cocotb scoreboard use it, so the two testbenches cannot disagree
on what "correct" means.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from ...contract import (DECISION_LAYOUT, EDGE_MAX, EDGE_MIN, PRIORITY_MAX, SEQ_MODULUS,
                         Decision, DropReason)
from ...queue import DecisionQueue, PushOutcome

__all__ = ["ClockedQueueModel", "ExpectedDrop", "QueueStats", "DecisionSource", "TrafficPhase",
           "random_phases", "clock_schedule", "decision_from_fields"]


class ExpectedDrop(NamedTuple):
    reason: DropReason
    decision: Decision


class QueueStats(NamedTuple):
    occupancy: int
    high_water: int
    evicted: int
    rejected: int


class ClockedQueueModel:
    """One clock of the gateware queue on the reference model."""

    def __init__(self, capacity: int) -> None:
        self.reference = DecisionQueue(capacity)
        self._accepted: Decision | None = None   # pushed last clock, inserted this clock

    def clock(self, *, pop: bool, push: Decision | None) -> tuple[list[Decision | None],
                                                                    list[ExpectedDrop]]:
        """One clock with the given accepted transfers: the pop, then the insert of the push
        accepted in the previous clock.  Returns the popped response and drop reports that
        clock's operations cause (each appears on the gateware's outputs one clock later)."""
        popped: list[Decision | None] = []
        drops: list[ExpectedDrop] = []
        if pop:
            popped.append(self.reference.pop())
        insert, self._accepted = self._accepted, push
        if insert is not None:
            outcome, dropped = self.reference.push(insert)
            if outcome is PushOutcome.EVICTED:
                drops.append(ExpectedDrop(DropReason.EVICTED, dropped))
            elif outcome is PushOutcome.REJECTED:
                drops.append(ExpectedDrop(DropReason.REJECTED, dropped))
        return popped, drops

    @property
    def stats(self) -> QueueStats:
        q = self.reference
        mask = (1 << 32) - 1
        return QueueStats(len(q), q.high_water, q.evicted & mask, q.rejected & mask)


def decision_from_fields(fields: dict[str, int]) -> Decision:
    return Decision(**{f.name: fields[f.name] for f in DECISION_LAYOUT})


@dataclass(frozen=True)
class TrafficPhase:
    """A stretch of traffic: per-clock probabilities of a push, a pop request and of the popped
    stream's consumer being ready, and how many distinct priorities the pushes use (few
    priorities -> many ties)."""
    clocks: int
    push_rate: float
    pop_rate: float
    ready_rate: float
    priority_levels: int


def random_phases(rng: random.Random, clocks: int) -> list[TrafficPhase]:
    """Bursts that fill the queue to overflow, drain it past empty, and mixed stretches."""
    phases, left = [], clocks
    while left > 0:
        length = min(left, rng.randint(20, 200))
        kind = rng.choice(("fill", "drain", "mixed", "mixed", "idle_pops"))
        push_rate, pop_rate = {
            "fill": (rng.uniform(0.7, 1.0), rng.uniform(0.0, 0.3)),
            "drain": (rng.uniform(0.0, 0.3), rng.uniform(0.7, 1.0)),
            "mixed": (rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)),
            "idle_pops": (0.0, rng.uniform(0.5, 1.0)),
        }[kind]
        ready_rate = rng.choice((1.0, 1.0, rng.uniform(0.2, 0.9)))
        phases.append(TrafficPhase(length, push_rate, pop_rate, ready_rate,
                                   rng.choice((1, 2, 4, 16, PRIORITY_MAX + 1))))
        left -= length
    return phases


class DecisionSource:
    """Decisions with consecutive ``seq`` numbers (as the fusion pipeline numbers them) and
    random fields; priorities drawn from ``levels`` values spread over the full range, and the
    extremes 0 and PRIORITY_MAX appear often."""

    def __init__(self, rng: random.Random, first_seq: int = 0) -> None:
        self.rng = rng
        self.seq = first_seq

    def priority(self, levels: int) -> int:
        rng = self.rng
        if levels > PRIORITY_MAX:
            return rng.choice((0, PRIORITY_MAX, rng.randint(0, PRIORITY_MAX)))
        step = (PRIORITY_MAX + 1) // levels
        return min(PRIORITY_MAX, rng.randrange(levels) * step + (step - 1 if levels > 1 else 0))

    def next(self, levels: int) -> Decision:
        rng = self.rng
        decision = Decision(
            ts_us=rng.getrandbits(64), pair=rng.getrandbits(8), side=rng.getrandbits(1),
            confidence=rng.getrandbits(16), edge_bps=rng.randint(EDGE_MIN, EDGE_MAX),
            priority=self.priority(levels), seq=self.seq % SEQ_MODULUS)
        self.seq += 1
        return decision


def clock_schedule(rng: random.Random, phases: list[TrafficPhase],
                   source: DecisionSource) -> Iterator[tuple[Decision | None, bool, bool]]:
    """Per clock: (decision to push or None, pop request?, popped consumer ready?)."""
    for phase in phases:
        for _ in range(phase.clocks):
            push = source.next(phase.priority_levels) if rng.random() < phase.push_rate else None
            yield push, rng.random() < phase.pop_rate, rng.random() < phase.ready_rate
