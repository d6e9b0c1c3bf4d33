"""Restart reconciliation: make the journal agree with the venues before trading again.

For every order the journal holds open the venue is asked for its record:

* the venue has it: fills the journal missed are journaled (fill ids make this idempotent), and
  the order takes the venue's state;
* the venue never got it and the journal says ``new``: the process died between writing the
  order and sending it; the order is closed as cancelled ("never reached the venue");
* the venue does not know an order the journal says it acknowledged: a *problem*.

Then the venues' open orders must all be known to the journal, and the net position of every
pair must equal the signed sum of journaled fills.  Any problem leaves the report not ``ok``:
the coordinator refuses to trade and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from ..log import get_logger
from .journal import Journal
from .orders import Order, OrderState
from .venue import Venue, VenueTimeout

__all__ = ["ReconcileReport", "reconcile", "POSITION_TOLERANCE"]

#: Relative tolerance when comparing positions (float sums in a different order).
POSITION_TOLERANCE = 1e-9


@dataclass
class ReconcileReport:
    """What reconciliation found and did."""
    problems: list[str] = field(default_factory=list)
    checked_orders: int = 0
    adopted_fills: int = 0
    state_updates: int = 0
    closed_unsent: int = 0
    open_orders: int = 0
    positions: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "problems": list(self.problems), "checked_orders": self.checked_orders,
                "adopted_fills": self.adopted_fills, "state_updates": self.state_updates,
                "closed_unsent": self.closed_unsent, "open_orders": self.open_orders,
                "positions": dict(self.positions)}


_TERMINAL_FROM_VENUE = (OrderState.FILLED, OrderState.CANCELLED, OrderState.EXPIRED, OrderState.REJECTED)


async def reconcile(journal: Journal, venues: Mapping[str, Venue], *, now_us: Callable[[], int],
                    order_prefix: str = "") -> ReconcileReport:
    """Reconcile the journal with ``venues`` (by name); see the module docstring."""
    log = get_logger("execution.recovery")
    report = ReconcileReport()
    for listed in journal.open_orders():
        report.checked_orders += 1
        venue = venues.get(listed.venue)
        if venue is None:
            report.problems.append(f"order {listed.client_order_id} is open at venue {listed.venue!r}, "
                                   f"which is not configured")
            continue
        try:
            status = await venue.order_status(listed.client_order_id)
        except VenueTimeout:
            report.problems.append(f"venue {listed.venue} did not answer about order {listed.client_order_id}")
            continue
        # Reports handled while we waited may have moved the order on: work on the journal's
        # current record, with no await between reading it and writing to it.
        order = journal.order(listed.client_order_id)
        if order is None or not order.is_open:
            continue
        if status is None:
            if order.state is OrderState.NEW:
                change = order.transition(OrderState.CANCELLED, now_us(), "never reached the venue (restart)")
                journal.record_transition(order, change)
                report.closed_unsent += 1
            else:
                report.problems.append(f"journal has order {order.client_order_id} {order.state.value} at "
                                       f"{order.venue}, but the venue does not know it")
            continue
        _adopt(journal, order, status, report, now_us)
    for name, venue in venues.items():
        try:
            held = await venue.open_orders()
        except VenueTimeout:
            report.problems.append(f"venue {name} did not list its open orders")
            continue
        for venue_order in held:
            if not venue_order.client_order_id.startswith(order_prefix):
                continue
            known = journal.order(venue_order.client_order_id)
            if known is None:
                report.problems.append(f"venue {name} holds open order {venue_order.client_order_id} "
                                       f"that the journal does not know")
            elif not known.is_open:
                report.problems.append(f"venue {name} holds order {venue_order.client_order_id} open; "
                                       f"the journal has it {known.state.value}")
            else:
                report.open_orders += 1
    journaled = journal.positions()
    at_venues: dict[str, float] = {}
    for name, venue in venues.items():
        try:
            for pair, qty in (await venue.positions()).items():
                at_venues[pair] = at_venues.get(pair, 0.0) + qty
        except VenueTimeout:
            report.problems.append(f"venue {name} did not report positions")
    for pair in sorted(set(journaled) | set(at_venues)):
        ours, theirs = journaled.get(pair, 0.0), at_venues.get(pair, 0.0)
        if abs(ours - theirs) > POSITION_TOLERANCE * max(1.0, abs(ours), abs(theirs)):
            report.problems.append(f"position {pair}: journal {ours:+.10g}, venues {theirs:+.10g}")
    report.positions = journaled
    journal.record(now_us(), "reconcile", **report.as_dict())
    if report.ok:
        log.info("reconciled", **{k: v for k, v in report.as_dict().items() if k != "positions"})
    else:
        log.error("unreconciled", problems=report.problems)
    return report


def _adopt(journal: Journal, order: Order, status, report: ReconcileReport, now_us: Callable[[], int]) -> None:
    for fill in status.fills:
        if journal.has_fill(fill.venue, fill.fill_id):
            continue
        changes = order.apply_fill(fill)
        journal.record_fill(order, fill, changes)
        report.adopted_fills += 1
    # The journal may be ahead of a status snapshot (a fill reported after it), never behind.
    if status.filled_qty - order.filled_qty > POSITION_TOLERANCE * max(1.0, order.qty):
        report.problems.append(f"order {order.client_order_id}: journal filled {order.filled_qty:.10g}, "
                               f"venue filled {status.filled_qty:.10g}")
        return
    target = status.state
    if target is order.state:
        return
    if target in _TERMINAL_FROM_VENUE and target is not OrderState.FILLED:
        if order.state is OrderState.NEW and target is not OrderState.REJECTED:
            journal.record_transition(order, order.transition(OrderState.SUBMITTED, now_us(), "found at venue"))
        journal.record_transition(order, order.transition(target, now_us(), "venue state at restart"))
        report.state_updates += 1
    elif target is OrderState.SUBMITTED and order.state is OrderState.NEW:
        journal.record_transition(order, order.transition(OrderState.SUBMITTED, now_us(), "found at venue"))
        report.state_updates += 1
    elif target is not order.state:
        report.problems.append(f"order {order.client_order_id}: journal {order.state.value}, "
                               f"venue {target.value}")
