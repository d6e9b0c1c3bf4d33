"""Reference model of the execution-request priority queue.

Contract: bounded by ``capacity``; pop returns the highest priority, equal priorities leave in
the order they were pushed (seq order); pushing into a full queue evicts the lowest-priority
entry -- the newest among equal lowest -- when the new priority is strictly greater, and rejects
the new entry otherwise.

The entries live in one ascending list of integer keys ``priority << 64 | (2**64-1 - n)``
(n counts pushes), so the entry to pop is the last one and the entry to evict is the first:
``bisect.insort`` into a list of a few hundred ints is a memmove, faster in CPython than any
tree or pair of heaps, and both ends are O(1) to reach.
"""

from __future__ import annotations

import enum
from bisect import insort
from typing import Final

from .contract import Decision, PRIORITY_BITS

__all__ = ["DecisionQueue", "PushOutcome"]

_ORDER_BITS: Final = 64
_ORDER_MASK: Final = (1 << _ORDER_BITS) - 1


class PushOutcome(enum.IntEnum):
    """What a push did (the second element of :meth:`DecisionQueue.push`'s result says what was
    dropped: the evicted entry, or the rejected new one)."""
    ACCEPTED = 0
    EVICTED = 1
    REJECTED = 2


class DecisionQueue:
    """Bounded priority queue of :class:`Decision` (highest priority first, FIFO among equals)."""

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"queue capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._keys: list[int] = []
        self._entries: dict[int, Decision] = {}
        self._pushes = 0
        self.high_water = 0
        self.evicted = 0
        self.rejected = 0

    def __len__(self) -> int:
        return len(self._keys)

    def push(self, decision: Decision) -> tuple[int, Decision | None]:
        """Push a decision; returns ``(PushOutcome.*, dropped decision or None)``."""
        key = (decision.priority << _ORDER_BITS) | (_ORDER_MASK - self._pushes)
        self._pushes += 1
        keys = self._keys
        if len(keys) >= self.capacity:
            lowest = keys[0]
            if decision.priority > lowest >> _ORDER_BITS:
                del keys[0]
                victim = self._entries.pop(lowest)
                insort(keys, key)
                self._entries[key] = decision
                self.evicted += 1
                return PushOutcome.EVICTED, victim
            self.rejected += 1
            return PushOutcome.REJECTED, decision
        insort(keys, key)
        self._entries[key] = decision
        if len(keys) > self.high_water:
            self.high_water = len(keys)
        return PushOutcome.ACCEPTED, None

    def pop(self) -> Decision | None:
        """Take the highest-priority (oldest among equals) decision, or None when empty."""
        if not self._keys:
            return None
        return self._entries.pop(self._keys.pop())

    def peek(self) -> Decision | None:
        return self._entries[self._keys[-1]] if self._keys else None

    def snapshot(self) -> list[Decision]:
        """The held decisions in pop order (does not change the queue)."""
        return [self._entries[k] for k in reversed(self._keys)]

    def clear(self) -> None:
        self._keys.clear()
        self._entries.clear()


assert PRIORITY_BITS < _ORDER_BITS
