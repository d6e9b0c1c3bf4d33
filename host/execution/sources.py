"""Where the coordinator gets its work: decision sources and vote attribution.

The coordinator pops execution requests through :class:`DecisionSource` (``pop()``) or
:class:`AsyncDecisionSource` (``await pop_async()``), whatever implements the queue: the
reference engine (``ReferenceEngine.pop``), a bare :class:`~sigfuse.queue.DecisionQueue`, or a
board backend whose pop is a round trip over the link.

A decision does not say which sources voted for it.  :class:`VoteAttribution` takes that from
the fusion engine's pair state *when the decision is emitted* (later the votes may have moved
on) and hands it to the coordinator when the decision is popped.  A vote counts for a decision
when it is live at the decision's time (``decision.ts_us - vote_ttl_us <= vote.ts <=
decision.ts_us``) and on the decision's side -- the same rule fusion applied.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable, Protocol, Sequence, runtime_checkable

from ..contract import Decision, DecisionEmitted, Event, Result, Signal
from ..fusion import FusionEngine

__all__ = ["DecisionSource", "AsyncDecisionSource", "Attribution", "VoteAttribution",
           "process_with_attribution"]


@runtime_checkable
class DecisionSource(Protocol):
    """A queue of execution requests popped without waiting."""

    def pop(self) -> Decision | None:
        """The highest-priority decision, or None when the queue is empty."""


@runtime_checkable
class AsyncDecisionSource(Protocol):
    """A queue of execution requests behind I/O (a board)."""

    async def pop_async(self) -> Decision | None:
        """The highest-priority decision, or None when the queue is empty."""


class Attribution(Protocol):
    """Says which source slots voted for a decision (None: not known)."""

    def sources(self, decision: Decision) -> tuple[int, ...] | None: ...


# Vote tuple fields used here (see sigfuse.fusion.PairState.votes): ts, side.
_VOTE_TS = 0
_VOTE_SIDE = 1


class VoteAttribution:
    """Snapshots of the voting sources of emitted decisions, taken from a :class:`FusionEngine`.

    Call :meth:`record` for each emitted decision right after fusion emitted it (or use
    :func:`process_with_attribution`); the coordinator calls :meth:`sources` when it pops the
    decision.  At most ``capacity`` snapshots are held: decisions evicted from the queue never
    get popped, and the oldest snapshots are dropped first.
    """

    def __init__(self, fusion: FusionEngine, *, vote_ttl_us: int | None = None,
                 capacity: int = 65_536) -> None:
        self.fusion = fusion
        self.vote_ttl_us = fusion.params.vote_ttl_us if vote_ttl_us is None else vote_ttl_us
        self.capacity = capacity
        self._held: OrderedDict[tuple[int, int], tuple[int, ...]] = OrderedDict()

    def voters(self, decision: Decision) -> tuple[int, ...]:
        """The source slots whose current votes are live and on the decision's side."""
        horizon = decision.ts_us - self.vote_ttl_us
        votes = self.fusion.pair_state(decision.pair).votes
        return tuple(slot for slot, vote in enumerate(votes)
                     if vote is not None and horizon <= vote[_VOTE_TS] <= decision.ts_us
                     and vote[_VOTE_SIDE] == decision.side)

    def record(self, decision: Decision) -> tuple[int, ...]:
        voters = self.voters(decision)
        held = self._held
        held[(decision.ts_us, decision.seq)] = voters
        if len(held) > self.capacity:
            held.popitem(last=False)
        return voters

    def record_results(self, results: Iterable[Result]) -> None:
        """Record every decision emitted in a batch of results.

        Exact only if no signal after the decision in the same batch replaced a voter's vote;
        :func:`process_with_attribution` avoids that by processing signals one at a time.
        """
        for result in results:
            if type(result) is DecisionEmitted:
                self.record(result.decision)

    def sources(self, decision: Decision) -> tuple[int, ...] | None:
        return self._held.pop((decision.ts_us, decision.seq), None)


def process_with_attribution(engine: "SupportsProcess", attribution: VoteAttribution,
                             events: Sequence[Event]) -> list[Result]:
    """Run events through ``engine`` one signal at a time, recording each emitted decision's
    voters the moment it is emitted."""
    results: list[Result] = []
    for event in events:
        batch = engine.process((event,))
        if type(event) is Signal:
            attribution.record_results(batch)
        results.extend(batch)
    return results


class SupportsProcess(Protocol):
    def process(self, events: Sequence[Event]) -> list[Result]: ...
