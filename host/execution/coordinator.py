"""The execution coordinator: decisions in, orders out, under concurrency and risk limits.

One loop pops execution requests by priority from a :class:`~.sources.DecisionSource` (the
reference engine, a bare queue, or a board) and turns each into at most one order:

1. a request older than ``order_ttl_ms`` is dropped and counted;
2. the venue is the one quoting the best price for the side among those with order-rate budget
   left (a token bucket of ``venue_orders_per_second`` per venue); with none left the request
   waits for the next token, its TTL still running;
3. the size is the notional of the confidence tier, cut to the room left under
   ``max_position_per_pair``; the limit price is the arrival quote ± ``max_slippage_bps``;
4. the risk engine checks it; a rejection is journaled and logged with its reason;
5. the order is journaled as ``new`` -- before it is sent -- and submitted in its own task, with
   resubmissions under the same client order id after a timeout.

At most ``max_concurrent`` orders are open at once; the loop stops popping while the limit is
reached, so the queue keeps ranking what waits.  Venue reports (fills, cancels, expiries) drive
the order state machine; every transition is journaled.  On start the coordinator reconciles
the journal with the venues (:mod:`.recovery`) and refuses to trade until that succeeds.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from typing import Any, Callable, Mapping, Sequence

from ..config import ExecutionConfig, RiskConfig
from ..contract import CONF_ONE, Decision, PairTable
from ..log import get_logger
from .journal import Journal
from .ledger import ExecutionStats, PositionBook, SourceLedger
from .marketdata import QuoteBook
from .orders import (ExecutionReport, InvalidTransition, Order, OrderState, ReportKind, Transition,
                     side_sign)
from .recovery import ReconcileReport, reconcile
from .risk import DAY_US, RiskEngine, RiskState
from .sources import AsyncDecisionSource, Attribution, DecisionSource
from .venue import Venue, VenueTimeout, wall_clock_us

__all__ = ["Coordinator", "Unreconciled", "TokenBucket", "ORDER_ID_PREFIX", "confidence_tier"]

#: Every client order id starts with this (then the session number and a counter).
ORDER_ID_PREFIX = "sf"


class Unreconciled(RuntimeError):
    """The coordinator will not trade: the journal and the venues disagree (see ``problems``)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("refusing to trade until reconciled: " + "; ".join(self.problems))


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self.tokens = self.burst
        self._at = time.monotonic()

    def _refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now

    def available(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0

    def wait_s(self, now: float) -> float:
        self._refill(now)
        return max(0.0, (1.0 - self.tokens) / self.rate)


def confidence_tier(confidence: int, thresholds: Mapping[str, float]) -> str:
    """The tier of a UQ1.15 confidence: the highest whose threshold it reaches, else ``low``.

    Thresholds are compared in UQ1.15 (rounded as the contract rounds), so a decision at
    exactly 0.90 -- which fusion can only produce as the nearest raw value -- is in the 0.90 tier.
    """
    tier, best = "low", -math.inf
    for name, start in thresholds.items():
        if confidence >= round(start * CONF_ONE) and start > best:
            tier, best = name, start
    return tier


class Coordinator:
    """Turns decisions into orders on venues; see the module docstring.

    ``clock_us`` must run on the same time base as the decisions' ``ts_us`` (the order TTL
    compares them).
    """

    def __init__(self, source: DecisionSource | AsyncDecisionSource, venues: Sequence[Venue],
                 book: QuoteBook, journal: Journal, *, pairs: PairTable,
                 execution: ExecutionConfig | None = None, risk: RiskConfig | None = None,
                 attribution: Attribution | None = None, clock_us: Callable[[], int] = wall_clock_us,
                 idle_wait_s: float = 0.002, mark_interval_s: float = 0.05) -> None:
        if not venues:
            raise ValueError("the coordinator needs at least one venue")
        self.source = source
        self._pop_async = getattr(source, "pop_async", None)
        self.venues: dict[str, Venue] = {v.name: v for v in venues}
        self.book = book
        self.journal = journal
        self.pairs = pairs
        self.config = execution or ExecutionConfig()
        self.attribution = attribution
        self.clock_us = clock_us
        self.idle_wait_s = idle_wait_s
        self.mark_interval_s = mark_interval_s
        self.risk = RiskEngine(risk or RiskConfig(), on_state_change=self._on_risk_state)
        self.stats = ExecutionStats()
        self.positions = PositionBook()
        self.attributed = SourceLedger()
        #: Open orders by client order id.
        self.orders: dict[str, Order] = {}
        self._open_qty: dict[str, float] = {}
        self._buckets = {name: TokenBucket(self.config.venue_orders_per_second) for name in self.venues}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = False
        self._pending: tuple[Decision, tuple[int, ...] | None, int] | None = None
        self._order_count = 0
        self._pnl_check_scheduled = False
        self.session: int | None = None
        self.reconciled = False
        self.problems: list[str] = []
        self._log = get_logger("execution")
        for venue in venues:
            venue.subscribe(self._on_report)

    # --- start and reconciliation --------------------------------------------------------------

    async def start(self, **session_info: Any) -> ReconcileReport:
        """Open a journal session, reload state and reconcile with the venues.

        Raises :class:`Unreconciled` (after logging why) when the venues and the journal
        disagree; the coordinator then refuses to trade.
        """
        now = self.clock_us()
        self.session = self.journal.start_session(now, venues=sorted(self.venues), **session_info)
        report = await reconcile(self.journal, self.venues, now_us=self.clock_us,
                                 order_prefix=ORDER_ID_PREFIX)
        self._reload()
        self._restore_risk(now)
        self.journal.flush()
        self.problems = list(report.problems)
        self.reconciled = report.ok
        if not report.ok:
            self._log.error("refusing_to_trade", problems=report.problems)
            raise Unreconciled(report.problems)
        self._log.info("trading_enabled", session=self.session, open_orders=len(self.orders),
                       positions=self.positions.net_quantities(), risk_state=self.risk.state.value)
        return report

    def _reload(self) -> None:
        self.positions = PositionBook()
        self.attributed = SourceLedger()
        self.orders.clear()
        self._open_qty.clear()
        sources_of: dict[str, tuple[int, ...]] = {}
        for order in self.journal.orders():
            sources_of[order.client_order_id] = order.sources
            self.attributed.add_order(order.sources)
            if order.is_open:
                self.orders[order.client_order_id] = order
                self._add_open(order.pair, side_sign(order.side) * order.remaining)
        for fill in self.journal.fills():
            self.positions.apply(fill)
            self.attributed.add_fill(sources_of.get(fill.client_order_id, ()), fill)

    def _restore_risk(self, now: int) -> None:
        state = RiskState.ACTIVE
        last = self.journal.meta("risk_state")
        day = self.journal.meta("risk_day")
        today = now // DAY_US
        same_day = day is not None and day.get("day") == today
        if last is not None:
            state = RiskState(last["to_state"])
            # The kill switch holds until an operator resets it; REDUCING ends with the day.
            if state is RiskState.REDUCING and not same_day:
                state = RiskState.ACTIVE
        anchor = float(day["anchor_pnl"]) if same_day and day is not None else 0.0
        self.risk.restore(state=state, day=today if same_day else None, anchor_pnl=anchor)

    # --- the main loop -------------------------------------------------------------------------

    def wake(self) -> None:
        """Tell the loop there may be new decisions (saves waiting out the idle poll)."""
        self._wake.set()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _sleep(self, timeout_s: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def run(self, *, max_orders: int | None = None) -> None:
        """Trade until :meth:`request_stop` (or until ``max_orders`` orders were created)."""
        if not self.reconciled:
            raise Unreconciled(self.problems or ["start() has not reconciled the journal with the venues"])
        self._stopping = False
        marker = asyncio.get_running_loop().create_task(self._mark_loop())
        limit = self.config.max_concurrent
        pop_async = self._pop_async
        try:
            while not self._stopping:
                if max_orders is not None and self._order_count >= max_orders:
                    break
                if len(self.orders) >= limit:
                    await self._sleep(self.idle_wait_s)
                    continue
                if self._pending is not None:
                    decision, sources, t0 = self._pending
                    self._pending = None
                else:
                    popped = await pop_async() if pop_async is not None else self.source.pop()
                    if popped is None:
                        await self._sleep(self.idle_wait_s)
                        continue
                    t0 = time.perf_counter_ns()
                    decision = popped
                    sources = self.attribution.sources(decision) if self.attribution is not None else None
                    self._first_sight(decision, sources)
                wait = self._handle(decision, sources, t0)
                if wait > 0:
                    self._pending = (decision, sources, t0)
                    await self._sleep(wait)
                else:
                    # Let the new order's submit task reach the venue before the next pop: in a
                    # burst, creating 50 orders first would put 50 journal writes in front of
                    # the first submission.
                    await asyncio.sleep(0)
        finally:
            marker.cancel()

    def _first_sight(self, decision: Decision, sources: tuple[int, ...] | None) -> None:
        self.stats.count("decisions")
        try:
            pair = self.pairs.name(decision.pair)
        except IndexError:
            pair = f"slot{decision.pair}"
        self.journal.record_decision(self.clock_us(), decision, pair, sources)

    def _reject(self, now: int, decision: Decision, pair: str, reason: str, detail: str) -> None:
        self.stats.count("risk_rejected")
        self.stats.reject(reason)
        self.journal.record(now, "rejection", pair=pair, reason=reason, detail=detail,
                            decision_ts_us=decision.ts_us, decision_seq=decision.seq)
        self._log.info("order_rejected", pair=pair, reason=reason, detail=detail, seq=decision.seq)

    def _handle(self, decision: Decision, sources: tuple[int, ...] | None, t0: int) -> float:
        """Turn one decision into an order, a rejection or a drop.  Returns seconds to wait before
        trying the same decision again (no venue has order-rate budget), else 0."""
        cfg = self.config
        now = self.clock_us()
        try:
            pair = self.pairs.name(decision.pair)
        except IndexError:
            self._reject(now, decision, f"slot{decision.pair}", "unknown_pair", "no pair in that slot")
            return 0.0
        age_us = now - decision.ts_us
        if age_us > cfg.order_ttl_ms * 1000:
            self.stats.count("requests_expired")
            self.journal.record(now, "request_expired", pair=pair, age_us=age_us,
                                decision_ts_us=decision.ts_us, decision_seq=decision.seq)
            return 0.0
        if self.risk.state is RiskState.HALTED:
            self._reject(now, decision, pair, "halted", "kill switch engaged")
            return 0.0
        quotes = [q for name, q in self.book.venues_for(pair).items() if name in self.venues]
        if not quotes:
            self._reject(now, decision, pair, "no_market", "no venue quotes the pair")
            return 0.0
        buy = decision.side == 0
        quotes.sort(key=(lambda q: q.ask) if buy else (lambda q: -q.bid))
        mono = time.monotonic()
        quote = next((q for q in quotes if self._buckets[q.venue].available(mono)), None)
        if quote is None:
            # Wait for the first token, but no longer than the request has left to live.
            token_s = min(self._buckets[q.venue].wait_s(mono) for q in quotes)
            ttl_left_s = (cfg.order_ttl_ms * 1000 - age_us) / 1e6
            return min(token_s, ttl_left_s) + 1e-4

        price = quote.ask if buy else quote.bid
        mid = self.book.mid(pair) or quote.mid
        position = self.positions.qty(pair)
        open_qty = self._open_qty.get(pair, 0.0)
        exposure = position + open_qty
        sign = side_sign(decision.side)
        notional = cfg.notional_per_tier.get(confidence_tier(decision.confidence, cfg.tier_thresholds), 0.0)
        # Room under the per-pair limit in the order's direction; an order against the current
        # exposure may go through flat and out the other side up to the limit.
        room = self.risk.config.max_position_per_pair - sign * exposure * price
        if 0.0 < room < notional:
            notional = room
        qty = notional / price
        if self.risk.state is RiskState.REDUCING and sign * exposure < 0:
            qty = min(qty, abs(exposure))
        verdict = self.risk.check(pair=pair, side=decision.side, qty=qty, price=price, position=position,
                                  open_qty=open_qty, gross_exposure=self._gross_exposure(),
                                  now_us=now)
        if not verdict.ok:
            self._reject(now, decision, pair, verdict.reason, verdict.detail)
            return 0.0
        self._buckets[quote.venue].take()
        slip = cfg.max_slippage_bps * 1e-4
        self._order_count += 1
        order = Order(
            client_order_id=f"{ORDER_ID_PREFIX}{self.session:04d}-{self._order_count:07d}",
            pair=pair, side=decision.side, qty=qty,
            limit_price=price * (1.0 + slip) if buy else price * (1.0 - slip),
            venue=quote.venue, created_us=now, decision_ts_us=decision.ts_us,
            decision_seq=decision.seq, confidence=decision.confidence, edge_bps=decision.edge_bps,
            arrival_price=mid, expire_at_us=now + cfg.order_expiry_ms * 1000,
            sources=tuple(sources or ()))
        self.journal.record_order(order)
        self.orders[order.client_order_id] = order
        self._add_open(pair, sign * qty)
        self.attributed.add_order(order.sources)
        self.stats.count("orders")
        self.stats.ordered_notional += qty * mid
        task = asyncio.get_running_loop().create_task(self._submit(order, t0))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return 0.0

    def _add_open(self, pair: str, signed_qty: float) -> None:
        self._open_qty[pair] = self._open_qty.get(pair, 0.0) + signed_qty

    def _gross_exposure(self) -> float:
        total = 0.0
        pairs = set(self.positions.positions) | set(self._open_qty)
        for pair in pairs:
            mark = self.book.mid(pair)
            if mark is None:
                position = self.positions.positions.get(pair)
                mark = position.avg_price if position else 0.0
            total += abs(self.positions.qty(pair)) * mark + abs(self._open_qty.get(pair, 0.0)) * mark
        return total

    # --- submission ----------------------------------------------------------------------------

    def _transition(self, order: Order, state: OrderState, reason: str) -> None:
        change = order.transition(state, self.clock_us(), reason)
        self.journal.record_transition(order, change)
        if state.terminal:
            self._closed(order)

    async def _submit(self, order: Order, t0: int) -> None:
        venue = self.venues[order.venue]
        request = order.request()
        cfg = self.config
        timeout_s = cfg.submit_timeout_ms / 1000
        # Write-ahead: the order is durable in the journal before any venue can have it.
        self.journal.flush()
        self.stats.record_latency(time.perf_counter_ns() - t0)
        ack = None
        for attempt in range(cfg.submit_retries + 1):
            if attempt:
                self.stats.count("submit_retries")
            try:
                async with asyncio.timeout(timeout_s):
                    ack = await venue.submit(request)
                break
            except (VenueTimeout, TimeoutError):
                self.stats.count("submit_timeouts")
                self.journal.record(self.clock_us(), "submit_timeout", client_order_id=order.client_order_id,
                                    pair=order.pair, attempt=attempt)
        if order.state is not OrderState.NEW:
            return  # a report overtook the ack
        if ack is None:
            try:
                async with asyncio.timeout(timeout_s):
                    status = await venue.order_status(order.client_order_id)
            except (VenueTimeout, TimeoutError):
                # Left NEW: the next start's reconciliation settles it.
                self._log.error("order_unknown", client_order_id=order.client_order_id, venue=order.venue)
                return
            if order.state is not OrderState.NEW:
                return
            if status is None:
                self._transition(order, OrderState.REJECTED,
                                 f"no ack after {cfg.submit_retries + 1} attempts; not at the venue")
                return
            ack_accepted, reason = status.state is not OrderState.REJECTED, "rejected"
        else:
            ack_accepted, reason = ack.accepted, ack.reason
        if ack_accepted:
            self._transition(order, OrderState.SUBMITTED, "duplicate ack" if ack and ack.duplicate else "")
            if self._stopping or self.risk.state is RiskState.HALTED:
                await self._cancel(order)
        else:
            self._transition(order, OrderState.REJECTED, reason)

    async def _cancel(self, order: Order) -> bool:
        try:
            return await self.venues[order.venue].cancel(order.client_order_id)
        except VenueTimeout:
            return False

    async def cancel_open(self, reason: str) -> int:
        """Ask the venues to cancel every acknowledged open order; returns how many they took."""
        targets = [o for o in self.orders.values()
                   if o.state in (OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED)]
        if targets:
            self._log.warning("cancel_open_orders", reason=reason, orders=len(targets))
        results = await asyncio.gather(*(self._cancel(o) for o in targets))
        return sum(results)

    # --- venue reports -------------------------------------------------------------------------

    def _order_for(self, client_order_id: str) -> Order | None:
        """The open order a report is about: in memory, or -- for a report that arrives while
        reconciliation runs, before open orders are reloaded -- open in the journal."""
        order = self.orders.get(client_order_id)
        if order is None:
            order = self.journal.order(client_order_id)
            if order is None or not order.is_open:
                return None
            self.orders[client_order_id] = order
            self._add_open(order.pair, side_sign(order.side) * order.remaining)
        return order

    def _on_report(self, report: ExecutionReport) -> None:
        order = self._order_for(report.client_order_id)
        if report.kind is ReportKind.FILL:
            self._on_fill(order, report)
            return
        if order is None:
            self.stats.count("unknown_reports")
            self.journal.record(report.ts_us, "report_unknown", client_order_id=report.client_order_id,
                                kind=report.kind.value, venue=report.venue, reason=report.reason)
            return
        target = {ReportKind.CANCELLED: OrderState.CANCELLED, ReportKind.EXPIRED: OrderState.EXPIRED,
                  ReportKind.REJECTED: OrderState.REJECTED}[report.kind]
        if order.state is OrderState.NEW and target is not OrderState.REJECTED:
            self._transition(order, OrderState.SUBMITTED, "report before ack")
        self._transition(order, target, report.reason)

    def _on_fill(self, order: Order | None, report: ExecutionReport) -> None:
        fill = report.fill
        assert fill is not None
        if self.journal.has_fill(fill.venue, fill.fill_id):
            self.stats.count("duplicate_fills_ignored")
            return
        changes: list[Transition] = []
        if order is not None:
            try:
                changes = order.apply_fill(fill)
            except InvalidTransition as error:
                self._log.error("fill_out_of_order", error=str(error))
        else:
            self.stats.count("unknown_reports")
            self._log.warning("fill_for_closed_order", client_order_id=fill.client_order_id)
        self.journal.record_fill(order, fill, changes)
        self.positions.apply(fill)
        known = order or self.journal.order(fill.client_order_id)
        self.attributed.add_fill(known.sources if known else (), fill)
        if order is not None:
            self.stats.on_fill(order, fill)
            self._add_open(order.pair, -side_sign(order.side) * fill.qty)
            if order.state.terminal:
                self._closed(order)
        try:
            self._check_pnl_soon()
        except RuntimeError:  # no running loop (reconciliation driven synchronously)
            self._check_pnl()

    def _closed(self, order: Order) -> None:
        if self.orders.pop(order.client_order_id, None) is None:
            return
        self._add_open(order.pair, -side_sign(order.side) * order.remaining)
        self.stats.on_closed(order)
        self._wake.set()

    # --- P&L and risk state --------------------------------------------------------------------

    def marks(self) -> dict[str, float | None]:
        return self.book.mids  # type: ignore[return-value]

    def _check_pnl_soon(self) -> None:
        # Once per loop iteration however many fills arrived in it.
        if not self._pnl_check_scheduled:
            self._pnl_check_scheduled = True
            asyncio.get_running_loop().call_soon(self._check_pnl)

    def _check_pnl(self) -> None:
        self._pnl_check_scheduled = False
        now = self.clock_us()
        if self.risk.update_pnl(self.positions.total_pnl(self.marks()), now):
            day = {"day": self.risk.day, "anchor_pnl": self.risk.day_anchor_pnl}
            self.journal.record(now, "risk_day", **day)
            self.journal.set_meta("risk_day", day)

    async def _mark_loop(self) -> None:
        while True:
            self._check_pnl()
            await asyncio.sleep(self.mark_interval_s)

    def _on_risk_state(self, old: RiskState, new: RiskState, reason: str) -> None:
        change = {"from_state": old.value, "to_state": new.value, "reason": reason}
        self.journal.record(self.clock_us(), "risk_state", **change)
        self.journal.set_meta("risk_state", change)
        self.journal.flush()
        if new is RiskState.HALTED:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = loop.create_task(self.cancel_open("kill switch: " + reason))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def reset_kill_switch(self, reason: str = "operator reset") -> None:
        """Leave HALTED (journaled)."""
        self.risk.reset(reason)

    # --- shutdown and figures ------------------------------------------------------------------

    async def shutdown(self, *, cancel_open: bool = True, timeout_s: float = 5.0) -> None:
        """Stop taking decisions, cancel open orders (when asked) and wait for them to close.

        Orders still open after ``timeout_s`` stay open in the journal; the next start
        reconciles them.
        """
        self.request_stop()
        deadline = time.monotonic() + timeout_s
        if cancel_open:
            await self.cancel_open("shutdown")
        while self.orders and time.monotonic() < deadline:
            if cancel_open:
                await self.cancel_open("shutdown")
            await self._sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=max(0.0, deadline - time.monotonic()))
        self._log.info("stopped", open_orders=len(self.orders), **self.stats.counters)

    def snapshot(self) -> dict[str, Any]:
        """The live figures: counters, rates, latency, positions and P&L, attribution."""
        marks = self.marks()
        per_pair = self.positions.per_pair(marks)
        return {
            **self.stats.snapshot(),
            "session": self.session,
            "open_orders": len(self.orders),
            "risk_state": self.risk.state.value,
            "daily_pnl": self.risk.daily_pnl,
            "pnl": {"realized": sum(p["realized"] for p in per_pair.values()),
                    "unrealized": sum(p["unrealized"] for p in per_pair.values()),
                    "fees": sum(p["fees"] for p in per_pair.values()),
                    "net": sum(p["net"] for p in per_pair.values())},
            "positions": per_pair,
            "source_pnl": self.attributed.pnl(marks),
            "source_orders": dict(sorted(self.attributed.orders.items())),
            "pid": os.getpid(),
        }
