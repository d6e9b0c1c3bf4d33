"""Fusion backends: the interface every implementation of fusion + queue offers, and the
software reference engine behind it.

A backend takes a batch of events (:class:`~sigfuse.contract.Signal` and
:class:`~sigfuse.contract.Pop`) and returns the results in processing order.  Results depend
only on the events and their order, never on how they were split into batches: that is what
lets the same JSONL trace run byte-identically on the reference, the Amaranth simulation, the
Verilator model and a board.
"""

from __future__ import annotations

import abc
from typing import ClassVar, Iterable, Sequence

from .contract import (Decision, DecisionEmitted, DropReason, Dropped, Event, FusionParams, Pop,
                       Popped, Result, Signal)
from .fusion import FusionEngine
from .queue import DecisionQueue, PushOutcome

__all__ = ["FusionBackend", "ReferenceEngine", "BACKENDS", "register_backend", "open_backend"]


class FusionBackend(abc.ABC):
    """One implementation of the contract's fusion engine and priority queue."""

    #: Name used by ``sigfuse trace --backend``.
    name: ClassVar[str]

    def __init__(self, params: FusionParams, *, capacity: int, pair_slots: int) -> None:
        self.params = params
        self.capacity = capacity
        self.pair_slots = pair_slots

    @abc.abstractmethod
    def process(self, events: Sequence[Event]) -> list[Result]:
        """Run a batch of events; return their results in processing order."""

    def set_params(self, params: FusionParams) -> None:
        """Change fusion parameters between two batches (registers on a board)."""
        self.params = params

    def close(self) -> None:
        """Release whatever the backend holds (a simulator, a link)."""

    def __enter__(self) -> "FusionBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


BACKENDS: dict[str, type[FusionBackend]] = {}


def register_backend(cls: type[FusionBackend]) -> type[FusionBackend]:
    BACKENDS[cls.name] = cls
    return cls


def open_backend(name: str, params: FusionParams, *, capacity: int, pair_slots: int,
                 **options: object) -> FusionBackend:
    """Instantiate a registered backend by name (backends in other modules register on import)."""
    if name not in BACKENDS:
        _load_optional_backends()
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(sorted(BACKENDS))}") from None
    return cls(params, capacity=capacity, pair_slots=pair_slots, **options)


def _load_optional_backends() -> None:
    """Import the modules of backends that need extra toolchains, if they are present."""
    import importlib
    for module in ("sigfuse.gateware.backends", "sigfuse.link.backend"):
        try:
            importlib.import_module(module)
        except ImportError:
            pass


@register_backend
class ReferenceEngine(FusionBackend):
    """The software reference: :class:`FusionEngine` feeding a :class:`DecisionQueue`."""

    name = "reference"

    def __init__(self, params: FusionParams | None = None, *, capacity: int = 256,
                 pair_slots: int = 256) -> None:
        params = params or FusionParams()
        super().__init__(params, capacity=capacity, pair_slots=pair_slots)
        self.fusion = FusionEngine(params, pair_slots=pair_slots)
        self.queue = DecisionQueue(capacity)

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self.fusion.set_params(params)

    def process(self, events: Iterable[Event]) -> list[Result]:
        results: list[Result] = []
        append = results.append
        fuse = self.fusion.fuse
        push = self.queue.push
        for event in events:
            if type(event) is Signal:
                outcome = fuse(event)
                if outcome is None:
                    continue
                if outcome is False:
                    append(Dropped(DropReason.STALE, event))
                    continue
                append(DecisionEmitted(outcome))
                pushed, dropped = push(outcome)
                if pushed is PushOutcome.EVICTED:
                    append(Dropped(DropReason.EVICTED, dropped))
                elif pushed is PushOutcome.REJECTED:
                    append(Dropped(DropReason.REJECTED, dropped))
            elif type(event) is Pop:
                append(Popped(self.queue.pop()))
            else:
                raise TypeError(f"not an event: {event!r}")
        return results

    def pop(self) -> Decision | None:
        return self.queue.pop()
