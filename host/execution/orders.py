"""Orders and their state machine, and the messages exchanged with venues.

::

    NEW ──► SUBMITTED ──► PARTIALLY_FILLED ──► FILLED
     │          │  │            │   ▲  │
     │          │  │            │   └──┘ (more fills)
     │          │  └────────────┴──────► CANCELLED / EXPIRED
     │          └──────────────────────► REJECTED
     └─────────────────────────────────► REJECTED / CANCELLED (never reached the venue)

Every transition is kept on the order (``history``) and handed to the journal by the
coordinator, so the audit trail holds each one with its time and reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = ["OrderState", "TERMINAL_STATES", "OPEN_STATES", "InvalidTransition", "Transition", "Order",
           "OrderRequest", "SubmitAck", "Fill", "ReportKind", "ExecutionReport", "VenueOrder",
           "side_sign", "QTY_EPSILON"]

#: Quantities are floats in base units; below this a remainder counts as nothing left.
QTY_EPSILON: Final = 1e-12


class OrderState(str, enum.Enum):
    """Where an order is in its life.  The value is the journal's spelling."""
    NEW = "new"
    SUBMITTED = "submitted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES: Final = frozenset({OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED,
                                    OrderState.EXPIRED})
OPEN_STATES: Final = frozenset({OrderState.NEW, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED})

_ALLOWED: Final[dict[OrderState, frozenset[OrderState]]] = {
    OrderState.NEW: frozenset({OrderState.SUBMITTED, OrderState.REJECTED, OrderState.CANCELLED}),
    OrderState.SUBMITTED: frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED,
                                     OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED}),
    OrderState.PARTIALLY_FILLED: frozenset({OrderState.PARTIALLY_FILLED, OrderState.FILLED,
                                            OrderState.CANCELLED, OrderState.EXPIRED}),
    OrderState.FILLED: frozenset(),
    OrderState.CANCELLED: frozenset(),
    OrderState.REJECTED: frozenset(),
    OrderState.EXPIRED: frozenset(),
}


class InvalidTransition(ValueError):
    """A transition the state machine does not allow (a bug, or a venue report out of order)."""


def side_sign(side: int) -> int:
    """+1 for a buy (side 0), -1 for a sell (side 1)."""
    return -1 if side else 1


class Transition(NamedTuple):
    """One recorded state change of an order."""
    ts_us: int
    from_state: OrderState
    to_state: OrderState
    reason: str


class OrderRequest(NamedTuple):
    """What a venue is asked to do: a limit order, good till ``expire_at_us``."""
    client_order_id: str
    pair: str
    side: int
    qty: float
    limit_price: float
    expire_at_us: int


class SubmitAck(NamedTuple):
    """A venue's answer to a submission.  ``duplicate`` is True when the client order id was
    already known: the venue returned the existing order instead of creating another."""
    client_order_id: str
    accepted: bool
    reason: str = ""
    duplicate: bool = False


class Fill(NamedTuple):
    """One execution.  ``fill_id`` is unique per venue; ``fee`` is in quote currency."""
    venue: str
    fill_id: str
    client_order_id: str
    pair: str
    side: int
    qty: float
    price: float
    fee: float
    ts_us: int


class ReportKind(str, enum.Enum):
    FILL = "fill"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"


class ExecutionReport(NamedTuple):
    """An unsolicited message from a venue about one order."""
    kind: ReportKind
    venue: str
    client_order_id: str
    ts_us: int
    fill: Fill | None = None
    reason: str = ""


class VenueOrder(NamedTuple):
    """A venue's view of one order, for reconciliation."""
    venue: str
    client_order_id: str
    pair: str
    side: int
    qty: float
    limit_price: float
    state: OrderState
    filled_qty: float
    fills: tuple[Fill, ...]


@dataclass
class Order:
    """One order as the coordinator tracks it."""
    client_order_id: str
    pair: str
    side: int
    qty: float
    limit_price: float
    venue: str
    created_us: int
    #: The decision it came from: (ts_us, seq), and the fused confidence and edge.
    decision_ts_us: int = 0
    decision_seq: int = 0
    confidence: int = 0
    edge_bps: int = 0
    #: Mid price when the order was created; slippage is measured against it.
    arrival_price: float = 0.0
    expire_at_us: int = 0
    #: Source slots that voted for the decision (attribution).
    sources: tuple[int, ...] = ()
    state: OrderState = OrderState.NEW
    filled_qty: float = 0.0
    filled_notional: float = 0.0
    fees: float = 0.0
    history: list[Transition] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        left = self.qty - self.filled_qty
        return left if left > QTY_EPSILON * max(1.0, self.qty) else 0.0

    @property
    def avg_price(self) -> float:
        return self.filled_notional / self.filled_qty if self.filled_qty else 0.0

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def request(self) -> OrderRequest:
        return OrderRequest(self.client_order_id, self.pair, self.side, self.qty, self.limit_price,
                            self.expire_at_us)

    def transition(self, to_state: OrderState, ts_us: int, reason: str = "") -> Transition:
        """Move to ``to_state``, recording the change; raises :class:`InvalidTransition`."""
        if to_state not in _ALLOWED[self.state]:
            raise InvalidTransition(f"order {self.client_order_id}: {self.state.value} -> "
                                    f"{to_state.value} is not allowed")
        change = Transition(ts_us, self.state, to_state, reason)
        self.state = to_state
        self.history.append(change)
        return change

    def apply_fill(self, fill: Fill) -> list[Transition]:
        """Account for a fill and move to PARTIALLY_FILLED or FILLED.

        A fill can overtake the submission ack (a fast venue, or a fill found while
        reconciling); the order then passes through SUBMITTED first, so the recorded path stays
        one the state machine allows.
        """
        changes = []
        if self.state is OrderState.NEW:
            changes.append(self.transition(OrderState.SUBMITTED, fill.ts_us, "fill before ack"))
        self.filled_qty += fill.qty
        self.filled_notional += fill.qty * fill.price
        self.fees += fill.fee
        done = self.remaining == 0.0
        changes.append(self.transition(OrderState.FILLED if done else OrderState.PARTIALLY_FILLED,
                                       fill.ts_us, fill.fill_id))
        return changes
