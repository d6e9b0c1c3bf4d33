"""The transport abstraction: what every way of reaching a board provides.

A transport carries the link protocol's commands (:mod:`sigfuse.protocol`) to one board and
returns their answers, already checked: register values, the :class:`~sigfuse.protocol.Result`
records a push or pop caused, in the board's order.  How the bytes (or memory writes) get there
is the implementation's business -- frames over a UART, rings and registers in a PCIe BAR, an
in-process simulation.  :class:`~sigfuse.link.board.Board` builds everything else (names,
identity checks, batching) on these few operations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Sequence

from ..contract import Pop, Signal
from ..protocol import Result

__all__ = ["LinkError", "LinkTimeout", "DeviceGone", "LinkCounters", "Transport"]


class LinkError(ConnectionError):
    """The board did not answer as the protocol says it must (after any retries).

    A ``ConnectionError``, so code that guards a primary backend against a dead link (the
    orchestrator's failover) catches every transport's failures the same way."""


class LinkTimeout(LinkError, TimeoutError):
    """No terminal answer within the timeout, after every retry."""


class DeviceGone(LinkError):
    """The device disappeared (port closed, socket reset, BAR unmapped)."""


@dataclass
class LinkCounters:
    """What the host side saw on the link (the board counts its own side in stats registers)."""
    commands: int = 0
    retries: int = 0
    timeouts: int = 0
    #: Board frames lost, from gaps in the board's sequence numbers.
    frames_lost: int = 0
    #: Board frames the host could not decode (bad CRC/COBS, truncated) and dropped.
    frames_bad: int = 0
    bytes_out: int = 0
    bytes_in: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Transport(ABC):
    """Command-level access to one board.

    Every method blocks until the board's terminal answer arrived (or raises
    :class:`LinkError`).  Register addresses and values are those of :mod:`sigfuse.regmap`.
    """

    #: The URL this transport was opened with (for messages).
    url: str
    counters: LinkCounters

    @abstractmethod
    def ping(self, data: bytes = b"") -> bytes:
        """Round-trip ``data`` (resynchronizes a session); returns what came back."""

    @abstractmethod
    def read_registers(self, addrs: Sequence[int]) -> list[int]:
        """Values of the registers at ``addrs``, in order (any number; split as needed)."""

    @abstractmethod
    def write_registers(self, writes: Sequence[tuple[int, int]]) -> None:
        """Write ``(addr, value)`` pairs.  Fusion parameters written together take effect
        together when they fit in one command."""

    @abstractmethod
    def push_signals(self, signals: Sequence[Signal]) -> list[Result]:
        """Push signals (any number; batched as the link allows); the results they caused, in
        order (decisions, and the drops and stale reports that follow them)."""

    @abstractmethod
    def pop(self, count: int = 1) -> list[Result]:
        """Pop ``count`` decisions; one POPPED or POPPED_EMPTY result per pop, in order."""

    def execute(self, events: Sequence[Signal | Pop]) -> list[Result]:
        """Run signals and pops in their order; every result, in order.

        The default splits ``events`` into runs of signals and runs of pops; a transport that
        can keep commands of both kinds in flight together (the UART one) overrides it.
        """
        results: list[Result] = []
        start = 0
        while start < len(events):
            kind = type(events[start])
            end = start
            while end < len(events) and type(events[end]) is kind:
                end += 1
            if kind is Signal:
                results.extend(self.push_signals(events[start:end]))
            elif kind is Pop:
                results.extend(self.pop(end - start))
            else:
                raise TypeError(f"not an event: {events[start]!r}")
            start = end
        return results

    @abstractmethod
    def stats(self) -> dict[int, int]:
        """A coherent snapshot of every stats counter: address -> value."""

    @abstractmethod
    def close(self) -> None:
        """Release the device (idempotent)."""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
