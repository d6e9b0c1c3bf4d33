"""Venues: the interface the coordinator trades through, and a paper venue behind it.

The coordinator only knows :class:`Venue`.  A live exchange adapter implements the same six
coroutines and the report subscription; nothing in the coordinator changes.

The paper venue fills against the market data it is fed (:meth:`PaperVenue.on_quote`) with a
configurable :class:`FillModel`: lognormal message latency, slippage that grows with size as an
order walks a synthetic book under the quote, partial fills (only part of the displayed size is
ours each time the quote refreshes), taker fees, random rejects and lost acks (timeouts).

Its state lives in a :class:`VenueStore` (SQLite), committed before anything is acknowledged or
reported.  A store on disk outlives the process that trades against it, as an exchange outlives
a crashed client: that is what the restart-reconciliation test relies on.
"""

from __future__ import annotations

import abc
import asyncio
import math
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Final

from ..log import get_logger
from .marketdata import Quote
from .orders import (QTY_EPSILON, ExecutionReport, Fill, OrderRequest, OrderState, ReportKind,
                     SubmitAck, VenueOrder, side_sign)

__all__ = ["Venue", "VenueTimeout", "ReportHandler", "FillModel", "VenueStore", "PaperVenue",
           "wall_clock_us"]

ReportHandler = Callable[[ExecutionReport], None]


def wall_clock_us() -> int:
    return time.time_ns() // 1000


class VenueTimeout(Exception):
    """No answer in time.  The venue may or may not have the order: resubmit with the same
    client order id (idempotent) or ask :meth:`Venue.order_status`."""


class Venue(abc.ABC):
    """One trading venue as the coordinator sees it.

    Fills, cancels, expiries and late rejects arrive as :class:`ExecutionReport` through the
    handlers registered with :meth:`subscribe`; ``submit`` answers only accepted or rejected.
    Re-submitting a known client order id must return the existing order's ack
    (``duplicate=True``) and never create a second order.
    """

    name: str

    def __init__(self) -> None:
        self._handlers: list[ReportHandler] = []

    def subscribe(self, handler: ReportHandler) -> None:
        """Call ``handler`` with every execution report from now on."""
        self._handlers.append(handler)

    def _report(self, report: ExecutionReport) -> None:
        for handler in self._handlers:
            handler(report)

    @abc.abstractmethod
    async def submit(self, request: OrderRequest) -> SubmitAck:
        """Send a new order; raises :class:`VenueTimeout` when no ack comes back."""

    @abc.abstractmethod
    async def cancel(self, client_order_id: str) -> bool:
        """Cancel an open order; False when it is unknown or already done."""

    @abc.abstractmethod
    async def order_status(self, client_order_id: str) -> VenueOrder | None:
        """The venue's record of one order with all its fills, or None if it never arrived."""

    @abc.abstractmethod
    async def open_orders(self) -> list[VenueOrder]:
        """Every order the venue holds open for this account."""

    @abc.abstractmethod
    async def positions(self) -> dict[str, float]:
        """Net position per pair (base units) from the venue's own fills."""

    async def close(self) -> None:
        """Release connections."""


@dataclass(frozen=True)
class FillModel:
    """How the paper venue behaves."""
    #: One-way message latency: lognormal with this median (µs) and log-sigma; 0 = no delay.
    latency_median_us: float = 300.0
    latency_sigma: float = 0.5
    #: Probability that a submission is rejected by the venue.
    reject_probability: float = 0.01
    #: Probability that a submission's ack is lost (the caller sees a timeout); in half of those
    #: cases the venue did take the order.
    timeout_probability: float = 0.005
    #: Taker fee, bps of the filled notional.
    fee_bps: float = 7.5
    #: Synthetic depth below the quote: levels, each ``level_step_bps`` worse than the last and
    #: as large as the top of book.  Larger orders walk deeper, so slippage grows with size.
    depth_levels: int = 3
    level_step_bps: float = 1.0
    #: Share of each level's displayed size that is ours per quote update (the rest goes to
    #: other traders), which is what makes large orders fill in parts.
    participation: float = 0.5

    def __post_init__(self) -> None:
        for name in ("reject_probability", "timeout_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if not 0.0 < self.participation <= 1.0:
            raise ValueError("participation must be within (0, 1]")
        if self.depth_levels < 1:
            raise ValueError("depth_levels must be at least 1")


_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS venue_orders (
    venue TEXT NOT NULL, client_order_id TEXT NOT NULL, pair TEXT NOT NULL, side INTEGER NOT NULL,
    qty REAL NOT NULL, limit_price REAL NOT NULL, expire_at_us INTEGER NOT NULL,
    state TEXT NOT NULL, filled_qty REAL NOT NULL DEFAULT 0, created_us INTEGER NOT NULL,
    PRIMARY KEY (venue, client_order_id));
CREATE TABLE IF NOT EXISTS venue_fills (
    venue TEXT NOT NULL, fill_id TEXT NOT NULL, client_order_id TEXT NOT NULL, pair TEXT NOT NULL,
    side INTEGER NOT NULL, qty REAL NOT NULL, price REAL NOT NULL, fee REAL NOT NULL,
    ts_us INTEGER NOT NULL, PRIMARY KEY (venue, fill_id));
CREATE INDEX IF NOT EXISTS venue_fills_by_order ON venue_fills (venue, client_order_id);
"""


class VenueStore:
    """The paper venues' own durable book (SQLite, WAL); several venues may share one."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()


@dataclass
class _Resting:
    request: OrderRequest
    state: OrderState
    filled_qty: float
    fills: list[Fill]


class PaperVenue(Venue):
    """A simulated venue filling against the quotes it is fed (see the module docstring).

    ``seed`` drives latency, rejects and timeouts; it is logged at construction.
    """

    def __init__(self, name: str, *, model: FillModel | None = None, seed: int = 1,
                 store: VenueStore | None = None, clock: Callable[[], int] = wall_clock_us) -> None:
        super().__init__()
        self.name = name
        self.model = model or FillModel()
        self.seed = seed
        self.clock = clock
        self.store = store or VenueStore()
        self._rng = random.Random(f"{name}:{seed}")
        self._quotes: dict[str, Quote] = {}
        # Liquidity already taken from the current quote, per pair and side; reset on refresh.
        self._taken: dict[tuple[str, int], float] = {}
        self._orders: dict[str, _Resting] = {}
        self._open_by_pair: dict[str, list[str]] = {}
        self._fill_count = 0
        self.counters = {"submitted": 0, "duplicates": 0, "rejected": 0, "timeouts": 0,
                         "fills": 0, "cancelled": 0, "expired": 0}
        self._log = get_logger("execution.venue")
        self._load()
        self._log.info("venue_start", venue=name, seed=seed, orders=len(self._orders),
                       open=sum(len(v) for v in self._open_by_pair.values()))

    # --- persistence ---------------------------------------------------------------------------

    def _load(self) -> None:
        db = self.store.db
        fills: dict[str, list[Fill]] = {}
        for row in db.execute("SELECT venue, fill_id, client_order_id, pair, side, qty, price, fee, "
                              "ts_us FROM venue_fills WHERE venue = ? ORDER BY rowid", (self.name,)):
            fills.setdefault(row[2], []).append(Fill(*row))
            self._fill_count += 1
        for coid, pair, side, qty, limit, expire, state, filled in db.execute(
                "SELECT client_order_id, pair, side, qty, limit_price, expire_at_us, state, filled_qty "
                "FROM venue_orders WHERE venue = ? ORDER BY rowid", (self.name,)):
            resting = _Resting(OrderRequest(coid, pair, side, qty, limit, expire), OrderState(state),
                               filled, fills.get(coid, []))
            self._orders[coid] = resting
            if resting.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
                self._open_by_pair.setdefault(pair, []).append(coid)

    def _store_state(self, coid: str, resting: _Resting) -> None:
        self.store.db.execute("UPDATE venue_orders SET state = ?, filled_qty = ? WHERE venue = ? AND "
                              "client_order_id = ?", (resting.state.value, resting.filled_qty,
                                                      self.name, coid))

    # --- market data ---------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> None:
        """Feed one quote; quotes of other venues are ignored.  Resting orders on the pair are
        matched against it and expired ones are closed."""
        if quote.venue != self.name:
            return
        self._quotes[quote.pair] = quote
        self._taken[(quote.pair, 0)] = 0.0
        self._taken[(quote.pair, 1)] = 0.0
        resting = self._open_by_pair.get(quote.pair)
        if resting:
            now = self.clock()
            for coid in list(resting):
                if self._orders[coid].request.expire_at_us <= now:
                    self._close(coid, OrderState.EXPIRED, ReportKind.EXPIRED, "expired", now)
                else:
                    self._match(coid, now)

    def expire_due(self) -> int:
        """Expire every resting order past its time (for pairs with no fresh quotes)."""
        now = self.clock()
        due = [c for coids in self._open_by_pair.values() for c in coids
               if self._orders[c].request.expire_at_us <= now]
        for coid in due:
            self._close(coid, OrderState.EXPIRED, ReportKind.EXPIRED, "expired", now)
        return len(due)

    # --- the interface -------------------------------------------------------------------------

    async def _latency(self) -> None:
        m = self.model
        if m.latency_median_us > 0:
            delay = m.latency_median_us * math.exp(m.latency_sigma * self._rng.gauss(0.0, 1.0))
            await asyncio.sleep(delay * 1e-6)

    async def submit(self, request: OrderRequest) -> SubmitAck:
        await self._latency()
        existing = self._orders.get(request.client_order_id)
        if existing is not None:
            self.counters["duplicates"] += 1
            accepted = existing.state is not OrderState.REJECTED
            return SubmitAck(request.client_order_id, accepted, "" if accepted else "rejected",
                             duplicate=True)
        m = self.model
        lost_ack = self._rng.random() < m.timeout_probability
        if lost_ack and self._rng.random() < 0.5:
            # The order never reached the venue.
            self.counters["timeouts"] += 1
            raise VenueTimeout(f"{self.name}: no ack for {request.client_order_id}")
        reason = ""
        if request.qty <= 0 or not math.isfinite(request.qty):
            reason = "bad_quantity"
        elif request.pair not in self._quotes:
            reason = "no_market"
        elif self._rng.random() < m.reject_probability:
            reason = "venue_reject"
        now = self.clock()
        state = OrderState.REJECTED if reason else OrderState.SUBMITTED
        resting = _Resting(request, state, 0.0, [])
        self.store.db.execute(
            "INSERT INTO venue_orders (venue, client_order_id, pair, side, qty, limit_price, "
            "expire_at_us, state, filled_qty, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (self.name, request.client_order_id, request.pair, request.side, request.qty,
             request.limit_price, request.expire_at_us, state.value, now))
        self._orders[request.client_order_id] = resting
        if reason:
            self.counters["rejected"] += 1
        else:
            self.counters["submitted"] += 1
            self._open_by_pair.setdefault(request.pair, []).append(request.client_order_id)
            # Match after the ack is delivered, as a venue acks before it reports fills.
            asyncio.get_running_loop().call_soon(self._match_if_open, request.client_order_id)
        if lost_ack:
            self.counters["timeouts"] += 1
            raise VenueTimeout(f"{self.name}: ack for {request.client_order_id} lost")
        return SubmitAck(request.client_order_id, not reason, reason)

    async def cancel(self, client_order_id: str) -> bool:
        await self._latency()
        resting = self._orders.get(client_order_id)
        if resting is None or resting.state not in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
            return False
        self._close(client_order_id, OrderState.CANCELLED, ReportKind.CANCELLED, "cancel requested",
                    self.clock())
        return True

    async def order_status(self, client_order_id: str) -> VenueOrder | None:
        resting = self._orders.get(client_order_id)
        return None if resting is None else self._view(resting)

    async def open_orders(self) -> list[VenueOrder]:
        return [self._view(self._orders[c]) for coids in self._open_by_pair.values() for c in coids]

    async def positions(self) -> dict[str, float]:
        net: dict[str, float] = {}
        for resting in self._orders.values():
            for fill in resting.fills:
                net[fill.pair] = net.get(fill.pair, 0.0) + side_sign(fill.side) * fill.qty
        return net

    async def close(self) -> None:
        if self.store.path != ":memory:":
            self.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    # --- matching ------------------------------------------------------------------------------

    def _view(self, resting: _Resting) -> VenueOrder:
        r = resting.request
        return VenueOrder(self.name, r.client_order_id, r.pair, r.side, r.qty, r.limit_price,
                          resting.state, resting.filled_qty, tuple(resting.fills))

    def _match_if_open(self, coid: str) -> None:
        resting = self._orders.get(coid)
        if resting is not None and resting.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
            self._match(coid, self.clock())

    def _match(self, coid: str, now: int) -> None:
        resting = self._orders[coid]
        request = resting.request
        quote = self._quotes.get(request.pair)
        if quote is None:
            return
        m = self.model
        buy = request.side == 0
        top = quote.ask if buy else quote.bid
        displayed = quote.ask_size if buy else quote.bid_size
        key = (request.pair, request.side)
        # Walk the synthetic book: level k is k x step worse than the top, each as deep as the
        # top; liquidity other orders took from this quote is gone for this one.
        step = m.level_step_bps * 1e-4
        skip = self._taken.get(key, 0.0)
        want = request.qty - resting.filled_qty
        qty = notional = 0.0
        for level in range(m.depth_levels):
            price = top * (1.0 + step * level) if buy else top * (1.0 - step * level)
            if (buy and price > request.limit_price) or (not buy and price < request.limit_price):
                break
            size = displayed * m.participation
            if skip >= size:
                skip -= size
                continue
            take = min(size - skip, want - qty)
            skip = 0.0
            qty += take
            notional += take * price
            if want - qty <= QTY_EPSILON * max(1.0, request.qty):
                break
        if qty <= 0.0:
            return
        self._taken[key] = self._taken.get(key, 0.0) + qty
        price = notional / qty
        self._fill_count += 1
        fill = Fill(self.name, f"{self.name}-{self._fill_count:09d}", coid, request.pair,
                    request.side, qty, price, notional * m.fee_bps * 1e-4, now)
        resting.filled_qty += qty
        resting.fills.append(fill)
        done = request.qty - resting.filled_qty <= QTY_EPSILON * max(1.0, request.qty)
        resting.state = OrderState.FILLED if done else OrderState.PARTIALLY_FILLED
        db = self.store.db
        db.execute("BEGIN")
        db.execute("INSERT INTO venue_fills (venue, fill_id, client_order_id, pair, side, qty, price, "
                   "fee, ts_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", fill)
        self._store_state(coid, resting)
        db.execute("COMMIT")
        if done:
            self._open_by_pair[request.pair].remove(coid)
        self.counters["fills"] += 1
        self._report(ExecutionReport(ReportKind.FILL, self.name, coid, now, fill))

    def _close(self, coid: str, state: OrderState, kind: ReportKind, reason: str, now: int) -> None:
        resting = self._orders[coid]
        resting.state = state
        self._store_state(coid, resting)
        self._open_by_pair[resting.request.pair].remove(coid)
        self.counters["cancelled" if state is OrderState.CANCELLED else "expired"] += 1
        self._report(ExecutionReport(kind, self.name, coid, now, reason=reason))
