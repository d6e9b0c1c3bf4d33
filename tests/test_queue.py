"""The bounded priority queue: ordering, FIFO ties, eviction and rejection, counters."""

from __future__ import annotations

import pytest

from sigfuse.contract import Decision
from sigfuse.queue import DecisionQueue, PushOutcome


def decision(priority: int, seq: int) -> Decision:
    return Decision(ts_us=1000 + seq, pair=0, side=0, confidence=20000, edge_bps=5,
                    priority=priority, seq=seq)


def drain(queue: DecisionQueue) -> list[int]:
    seqs = []
    while (d := queue.pop()) is not None:
        seqs.append(d.seq)
    return seqs


def test_pops_highest_priority_first() -> None:
    queue = DecisionQueue(8)
    for seq, priority in enumerate([5, 1, 9, 3, 7]):
        assert queue.push(decision(priority, seq)) == (PushOutcome.ACCEPTED, None)
    assert [d.priority for d in queue.snapshot()] == [9, 7, 5, 3, 1]
    assert queue.peek() == decision(9, 2)
    assert drain(queue) == [2, 4, 0, 3, 1]


def test_equal_priorities_leave_in_push_order() -> None:
    queue = DecisionQueue(8)
    for seq, priority in enumerate([4, 4, 6, 4, 6, 0, 0]):
        queue.push(decision(priority, seq))
    assert drain(queue) == [2, 4, 0, 1, 3, 5, 6]


def test_fifo_follows_push_order_not_seq() -> None:
    queue = DecisionQueue(4)
    queue.push(decision(3, 9))
    queue.push(decision(3, 1))
    assert drain(queue) == [9, 1]


def test_pop_empty_returns_none_and_changes_nothing() -> None:
    queue = DecisionQueue(2)
    assert queue.pop() is None
    assert queue.peek() is None
    assert len(queue) == 0
    queue.push(decision(1, 0))
    assert queue.pop() == decision(1, 0)
    assert queue.pop() is None
    assert (queue.high_water, queue.evicted, queue.rejected) == (1, 0, 0)


def test_full_queue_evicts_lowest_for_strictly_higher_priority() -> None:
    queue = DecisionQueue(2)
    queue.push(decision(5, 0))
    queue.push(decision(3, 1))
    outcome, dropped = queue.push(decision(4, 2))
    assert outcome is PushOutcome.EVICTED
    assert dropped == decision(3, 1)
    assert len(queue) == 2
    assert queue.evicted == 1
    assert drain(queue) == [0, 2]


def test_full_queue_rejects_equal_priority() -> None:
    queue = DecisionQueue(2)
    queue.push(decision(5, 0))
    queue.push(decision(4, 1))
    new = decision(4, 2)
    assert queue.push(new) == (PushOutcome.REJECTED, new)
    assert queue.rejected == 1
    assert queue.evicted == 0
    assert drain(queue) == [0, 1]


def test_full_queue_rejects_lower_priority() -> None:
    queue = DecisionQueue(1)
    queue.push(decision(5, 0))
    new = decision(2, 1)
    assert queue.push(new) == (PushOutcome.REJECTED, new)
    assert drain(queue) == [0]


def test_eviction_takes_the_newest_among_equal_lowest() -> None:
    queue = DecisionQueue(4)
    queue.push(decision(2, 0))   # oldest of the lowest
    queue.push(decision(2, 1))
    queue.push(decision(7, 2))
    queue.push(decision(2, 3))   # newest of the lowest
    assert queue.push(decision(5, 4)) == (PushOutcome.EVICTED, decision(2, 3))
    assert queue.push(decision(6, 5)) == (PushOutcome.EVICTED, decision(2, 1))
    assert queue.push(decision(3, 6)) == (PushOutcome.EVICTED, decision(2, 0))
    # Now the lowest is 3 (seq 6); equal priority is rejected, higher evicts it.
    assert queue.push(decision(3, 7))[0] is PushOutcome.REJECTED
    assert queue.push(decision(4, 8)) == (PushOutcome.EVICTED, decision(3, 6))
    assert drain(queue) == [2, 5, 4, 8]
    assert (queue.evicted, queue.rejected) == (4, 1)


def test_eviction_of_an_entry_with_the_same_priority_as_the_top() -> None:
    # Everything equal: the new entry is never strictly greater, so it is rejected.
    queue = DecisionQueue(3)
    for seq in range(3):
        queue.push(decision(9, seq))
    assert queue.push(decision(9, 3))[0] is PushOutcome.REJECTED
    assert drain(queue) == [0, 1, 2]


def test_high_water_is_the_most_ever_held() -> None:
    queue = DecisionQueue(5)
    for seq in range(3):
        queue.push(decision(seq, seq))
    queue.pop()
    queue.pop()
    queue.push(decision(1, 3))
    assert len(queue) == 2
    assert queue.high_water == 3
    for seq in range(4, 10):
        queue.push(decision(seq, seq))
    assert len(queue) == 5
    assert queue.high_water == 5


def test_snapshot_does_not_change_the_queue_and_clear_empties_it() -> None:
    queue = DecisionQueue(4)
    for seq, priority in enumerate([1, 3, 2]):
        queue.push(decision(priority, seq))
    assert [d.seq for d in queue.snapshot()] == [1, 2, 0]
    assert len(queue) == 3
    queue.clear()
    assert len(queue) == 0
    assert queue.pop() is None


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        DecisionQueue(capacity)
