"""The ``board`` trace backend: the JSONL contract through a real or virtual board.

``sigfuse trace --backend board --url URL`` opens the board (:class:`~.board.Board`), writes the
trace's fusion parameters to its registers, and sends the events as PUSH_SIGNALS and POP
frames, pipelined; the result records come back in processing order and are turned into the
contract's results, so the output is byte for byte that of ``--backend reference``.

What must hold for that:

* the queue capacity is a build parameter of the board: the configured ``queue.capacity`` must
  equal the board's ``queue_capacity`` (otherwise evictions differ) -- a clear error if not;
* pairs map to slots in order of first appearance (the trace's pair table); the board's
  ``pair_slots`` bounds them: a stream with more pairs than the board has slots is an error;
* decisions are numbered from the board's reset, and votes and cooldowns live on the board, so
  the board must be fresh: the backend refuses a board whose counters show earlier signals,
  decisions or pops (a board whose counters were cleared after use cannot be told apart).
"""

from __future__ import annotations

import os
from typing import Sequence

from ..contract import (DecisionEmitted, DropReason, Dropped, Event, FusionParams, Popped, Result,
                        Signal)
from ..engine import FusionBackend, register_backend
from ..protocol import ResultKind
from .board import Board
from .transport import LinkError

__all__ = ["BoardBackend", "to_contract_results", "URL_ENVIRONMENT"]

#: Where the URL comes from when neither ``--url`` nor ``link.url`` is given.
URL_ENVIRONMENT = "SIGFUSE_BOARD_URL"

_STALE, _EVICTED, _REJECTED = DropReason.STALE, DropReason.EVICTED, DropReason.REJECTED


def to_contract_results(results) -> list[Result]:
    """Link result records (:class:`sigfuse.protocol.Result`) as the contract's results."""
    out: list[Result] = []
    append = out.append
    for kind, record in results:
        if kind == ResultKind.DECISION:
            append(DecisionEmitted(record))
        elif kind == ResultKind.POPPED:
            append(Popped(record))
        elif kind == ResultKind.POPPED_EMPTY:
            append(Popped(None))
        elif kind == ResultKind.STALE:
            append(Dropped(_STALE, record))
        elif kind == ResultKind.EVICTED:
            append(Dropped(_EVICTED, record))
        elif kind == ResultKind.REJECTED:
            append(Dropped(_REJECTED, record))
        else:  # pragma: no cover - unpack_result only knows these kinds
            raise LinkError(f"result of unknown kind {kind}")
    return out


class PairSlotsExceeded(LinkError):
    """The stream has more pairs than the board has pair slots."""


@register_backend
class BoardBackend(FusionBackend):
    """Fusion and queue on a board (see the module docstring)."""

    name = "board"
    #: A batch is a round trip on a link: the orchestrator runs it in a worker thread.
    blocking_io = True

    def __init__(self, params: FusionParams | None = None, *, capacity: int, pair_slots: int,
                 url: str | None = None, expected_build_id: int | None = None,
                 require_fresh: bool = True, **link_options) -> None:
        params = params or FusionParams()
        url = url or os.environ.get(URL_ENVIRONMENT)
        if not url:
            raise ValueError("--backend board needs the board's URL: --url URL, link.url in the "
                             f"configuration, or {URL_ENVIRONMENT}")
        super().__init__(params, capacity=capacity, pair_slots=pair_slots)
        # A trace would rather wait than fail: a virtual board on a loaded machine can take
        # longer than the interactive default of 0.5 s to answer.
        if not url.startswith(("pcie://", "pcie-sim://", "amaranth-sim://")):
            link_options.setdefault("timeout", 2.0)
        self.board = Board.open(url, expected_build_id=expected_build_id, **link_options)
        try:
            identity = self.board.identity
            if identity.queue_capacity != capacity:
                raise ValueError(
                    f"{url}: the board's queue holds {identity.queue_capacity} decisions, the "
                    f"configuration says {capacity} (queue.capacity): results would differ; set "
                    f"queue.capacity to {identity.queue_capacity}")
            self.board_pair_slots = identity.pair_slots
            if require_fresh:
                self._check_fresh()
            self.board.set_params(params)
        except BaseException:
            self.board.close()
            raise

    def _check_fresh(self) -> None:
        stats = self.board.stats()
        used = {k: stats[k] for k in ("signals_in", "decisions_out", "queue_pops", "queue_high_water")
                if stats[k]}
        if used:
            said = ", ".join(f"{k} = {v}" for k, v in used.items())
            raise ValueError(f"{self.board.url}: the board is not fresh from reset ({said}): its "
                             f"votes, queue and decision numbers would not match a new trace; "
                             f"reset it (restart the virtual board)")

    def process(self, events: Sequence[Event]) -> list[Result]:
        if not events:
            return []
        slots = self.board_pair_slots
        for event in events:
            if type(event) is Signal and event.pair >= slots:
                raise PairSlotsExceeded(
                    f"the stream has more pairs than the board's {slots} pair slots")
        return to_contract_results(self.board.transport.execute(events))

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self.board.set_params(params)

    def ping(self) -> None:
        """One PING round trip (no side effect): the orchestrator's failback probe."""
        self.board.transport.ping()

    def close(self) -> None:
        board = getattr(self, "board", None)
        if board is not None:
            board.close()

