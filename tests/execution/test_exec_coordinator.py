"""The coordinator: sizing, priority, concurrency, TTL, rate limits, risk, kill switch,
attribution, retries and restart reconciliation."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest

from sigfuse.config import ExecutionConfig, RiskConfig
from sigfuse.contract import CONF_ONE, Decision, FusionParams, PairTable, Signal, Source
from sigfuse.engine import ReferenceEngine
from sigfuse.execution.coordinator import Coordinator, Unreconciled, confidence_tier
from sigfuse.execution.journal import Journal
from sigfuse.execution.marketdata import Quote, QuoteBook
from sigfuse.execution.orders import Fill, Order, OrderRequest, OrderState
from sigfuse.execution.runner import MonotonicClock
from sigfuse.execution.sources import AsyncDecisionSource, DecisionSource, VoteAttribution, process_with_attribution
from sigfuse.execution.venue import FillModel, PaperVenue, VenueStore
from sigfuse.queue import DecisionQueue

FAST = FillModel(latency_median_us=0, reject_probability=0, timeout_probability=0, fee_bps=7.5)
PAIRS = ("BTC/USDT", "ETH/USDT")


class Harness:
    def __init__(self, tmp_path, seed: int, *, model: FillModel = FAST, size: float = 10.0,
                 execution: dict[str, Any] | None = None, risk: dict[str, Any] | None = None,
                 source: Any = None, attribution: Any = None, store: VenueStore | None = None) -> None:
        self.clock = MonotonicClock()
        self.book = QuoteBook()
        self.pairs = PairTable(16, PAIRS)
        self.store = store or VenueStore(tmp_path / "venues.sqlite")
        self.venues = [PaperVenue(name, model=model, seed=seed + i, store=self.store, clock=self.clock)
                       for i, name in enumerate(("alpha", "beta"))]
        self.size = size
        self.quote()
        self.queue = DecisionQueue(64)
        self.journal = Journal(tmp_path / "journal.sqlite")
        self.coordinator = Coordinator(source if source is not None else self.queue, self.venues, self.book,
                                       self.journal, pairs=self.pairs,
                                       execution=ExecutionConfig(**(execution or {})),
                                       risk=RiskConfig(**(risk or {})), attribution=attribution,
                                       clock_us=self.clock, idle_wait_s=0.001)
        self.seq = 0

    def quote(self) -> None:
        now = self.clock()
        for q in (Quote(now, "alpha", "BTC/USDT", 59_990.0, 60_000.0, self.size, self.size),
                  Quote(now, "beta", "BTC/USDT", 59_995.0, 60_010.0, self.size, self.size),
                  Quote(now, "alpha", "ETH/USDT", 2_999.0, 3_000.0, self.size * 20, self.size * 20),
                  Quote(now, "beta", "ETH/USDT", 2_998.0, 3_001.0, self.size * 20, self.size * 20)):
            self.book.update(q)
            for venue in self.venues:
                venue.on_quote(q)

    def decision(self, *, pair: int = 0, side: int = 0, confidence: float = 0.8, priority: int = 100,
                 age_us: int = 0) -> Decision:
        self.seq += 1
        return Decision(self.clock() - age_us, pair, side, round(confidence * CONF_ONE), 10, priority, self.seq)

    def push(self, *decisions: Decision) -> None:
        for d in decisions:
            self.queue.push(d)
        self.coordinator.wake()

    async def until(self, condition: Callable[[], bool], limit_s: float = 10.0) -> None:
        """Wait for ``condition`` (the limit only guards against a hang; it asserts no timing)."""
        for _ in range(int(limit_s / 0.002)):
            if condition():
                return
            await asyncio.sleep(0.002)
        raise AssertionError("condition not reached")

    async def session(self, body: Callable[["Harness"], Awaitable[None]], *, shutdown: bool = True) -> None:
        await self.coordinator.start(test=True)
        task = asyncio.get_running_loop().create_task(self.coordinator.run())
        try:
            await body(self)
        finally:
            self.coordinator.request_stop()
            await task
            if shutdown:
                await self.coordinator.shutdown(timeout_s=2.0)

    def orders(self) -> list[Order]:
        return self.journal.orders()

    def events(self, kind: str) -> list[dict]:
        return list(self.journal.events(kind))


def run(coro: Awaitable[None]) -> None:
    asyncio.run(coro)


def test_confidence_tiers() -> None:
    thresholds = {"medium": 0.75, "high": 0.90}
    assert confidence_tier(CONF_ONE, thresholds) == "high"
    assert confidence_tier(round(0.9 * CONF_ONE), thresholds) == "high"
    assert confidence_tier(round(0.8 * CONF_ONE), thresholds) == "medium"
    assert confidence_tier(round(0.5 * CONF_ONE), thresholds) == "low"


def test_reference_engine_and_queue_are_decision_sources() -> None:
    assert isinstance(ReferenceEngine(), DecisionSource)
    assert isinstance(DecisionQueue(4), DecisionSource)


def test_size_by_tier_best_venue_and_fills(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed)

    async def body(h: Harness) -> None:
        h.push(h.decision(confidence=0.95, priority=300), h.decision(confidence=0.8, side=1, priority=200),
               h.decision(pair=1, confidence=0.5, priority=100))
        await h.until(lambda: h.coordinator.stats.counters["filled"] == 3)

    run(h.session(body))
    orders = h.orders()
    # Popped by priority: 300, 200, 100.
    assert [o.decision_seq for o in orders] == [1, 2, 3]
    high, medium, low = orders
    assert (high.venue, high.side) == ("alpha", 0) and high.qty * 60_000 == pytest.approx(5_000)
    assert (medium.venue, medium.side) == ("beta", 1) and medium.qty * 59_995 == pytest.approx(2_500)
    assert low.pair == "ETH/USDT" and low.qty * 3_000 == pytest.approx(1_000)
    assert high.limit_price == pytest.approx(60_000 * 1.0025)
    assert all(o.state is OrderState.FILLED for o in orders)
    snapshot = h.coordinator.snapshot()
    assert snapshot["success_rate"] == 1.0
    assert snapshot["fill_ratio"] == pytest.approx(1.0, rel=1e-3)
    assert snapshot["fees"] == pytest.approx(8_500 * 7.5e-4, rel=1e-3)
    assert snapshot["slippage_bps"] > 0  # crossed half the spread
    assert snapshot["decision_to_order_latency"]["samples"] == 3
    transitions = [(e["client_order_id"], e["data"]["to"]) for e in h.events("transition")]
    assert transitions.count((high.client_order_id, "filled")) == 1
    assert len(h.events("decision")) == 3 and len(h.events("order")) == 3


def test_at_most_max_concurrent_in_flight(tmp_path, seed: int) -> None:
    # Thin books: every order rests partially filled, so none leaves the in-flight set.
    h = Harness(tmp_path, seed, size=1e-6, execution={"max_concurrent": 3})
    peak = 0

    async def body(h: Harness) -> None:
        nonlocal peak
        h.push(*(h.decision(pair=i % 2, priority=100 + i) for i in range(10)))
        await h.until(lambda: len(h.coordinator.orders) == 3
                      and all(o.state is not OrderState.NEW for o in h.coordinator.orders.values()))
        for _ in range(20):
            h.quote()
            peak = max(peak, len(h.coordinator.orders))
            await asyncio.sleep(0.002)

    run(h.session(body))
    assert peak == 3
    assert h.coordinator.stats.counters["orders"] == 3
    assert len(h.queue) == 7
    # Shutdown cancelled the resting orders.
    assert {o.state for o in h.orders()} == {OrderState.CANCELLED}


def test_stale_requests_are_dropped_and_counted(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, execution={"order_ttl_ms": 100})

    async def body(h: Harness) -> None:
        h.push(h.decision(age_us=500_000), h.decision(priority=50))
        await h.until(lambda: h.coordinator.stats.counters["orders"] == 1
                      and h.coordinator.stats.counters["requests_expired"] == 1)

    run(h.session(body))
    assert len(h.events("request_expired")) == 1
    assert len(h.orders()) == 1


def test_per_venue_rate_limit(tmp_path, seed: int) -> None:
    # One token per venue: the first order goes to the best venue, the second to the other one,
    # the third waits for a token until its TTL runs out.
    h = Harness(tmp_path, seed, execution={"venue_orders_per_second": 0.001, "order_ttl_ms": 50})

    async def body(h: Harness) -> None:
        h.push(h.decision(priority=3), h.decision(priority=2), h.decision(priority=1))
        await h.until(lambda: h.coordinator.stats.counters["requests_expired"] == 1)

    run(h.session(body))
    assert [o.venue for o in h.orders()] == ["alpha", "beta"]


def test_risk_rejections_are_journaled_with_reasons(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, risk={"max_order_notional": 2_000})

    async def body(h: Harness) -> None:
        h.push(h.decision(confidence=0.95), h.decision(confidence=0.5))
        await h.until(lambda: h.coordinator.stats.counters["decisions"] == 2
                      and h.coordinator.stats.counters["filled"] == 1)

    run(h.session(body))
    rejections = h.events("rejection")
    assert [r["data"]["reason"] for r in rejections] == ["max_order_notional"]
    assert h.coordinator.stats.rejections == {"max_order_notional": 1}
    assert h.journal.summary()["rejections"] == {"max_order_notional": 1}


def test_position_limit_cuts_size_then_rejects(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, risk={"max_position_per_pair": 7_000})

    async def body(h: Harness) -> None:
        for _ in range(3):
            h.push(h.decision(confidence=0.95))
            await h.until(lambda: h.coordinator.stats.counters["decisions"] == h.seq and not h.coordinator.orders)

    run(h.session(body))
    notionals = [o.qty * 60_000 for o in h.orders()]
    assert notionals[0] == pytest.approx(5_000)
    assert notionals[1] == pytest.approx(2_000, rel=1e-3)  # cut to the room left
    assert [r["data"]["reason"] for r in h.events("rejection")] == ["max_position_per_pair"]


def test_kill_switch_halts_and_cancels_open_orders(tmp_path, seed: int) -> None:
    # The fee of the first fill alone breaches a 1.0 daily loss limit.
    h = Harness(tmp_path, seed, risk={"daily_loss_limit": 1.0})
    thin = Quote(h.clock(), "alpha", "ETH/USDT", 2_999.0, 3_000.0, 1e-6, 1e-6)

    async def body(h: Harness) -> None:
        for venue in h.venues:
            venue.on_quote(thin)
        h.book.update(thin)
        h.push(h.decision(pair=1, priority=500))  # rests on the thin ETH book
        await h.until(lambda: any(o.state is OrderState.PARTIALLY_FILLED for o in h.coordinator.orders.values()))
        h.push(h.decision(pair=0, confidence=0.95))
        await h.until(lambda: h.coordinator.risk.state.value == "halted")
        await h.until(lambda: not h.coordinator.orders)
        h.push(h.decision(pair=0))
        await h.until(lambda: h.coordinator.stats.rejections.get("halted") == 1)

    run(h.session(body))
    states = {o.pair: o.state for o in h.orders()}
    assert states == {"ETH/USDT": OrderState.CANCELLED, "BTC/USDT": OrderState.FILLED}
    changes = [e["data"] for e in h.events("risk_state")]
    assert changes[-1]["to_state"] == "halted"
    assert any(e["data"]["reason"] == "halted" for e in h.events("rejection"))


def test_attribution_from_fusion_votes(tmp_path, seed: int) -> None:
    engine = ReferenceEngine(FusionParams.from_real(min_confidence=0.5), capacity=16, pair_slots=16)
    attribution = VoteAttribution(engine.fusion)
    h = Harness(tmp_path, seed, source=engine, attribution=attribution)
    now = h.clock()
    one = CONF_ONE

    def signal(dt: int, source: Source, side: int) -> Signal:
        return Signal(now + dt, int(source), 0, side, one, 20)

    events = [signal(0, Source.WHALE, 1), signal(1, Source.ARBITRAGE, 0), signal(2, Source.MOMENTUM, 0),
              signal(3, Source.MEAN_REVERSION, 0)]

    async def body(h: Harness) -> None:
        results = process_with_attribution(engine, attribution, events)
        assert results, "fusion emitted nothing"
        h.coordinator.wake()
        await h.until(lambda: h.coordinator.stats.counters["filled"] >= 1)

    run(h.session(body))
    first = h.orders()[0]
    # The whale voted the other way; it gets no credit.
    assert set(first.sources) <= {Source.ARBITRAGE, Source.MOMENTUM, Source.MEAN_REVERSION}
    assert Source.ARBITRAGE in first.sources and Source.MOMENTUM in first.sources
    snapshot = h.coordinator.snapshot()
    assert "whale" not in snapshot["source_pnl"]
    assert sum(snapshot["source_pnl"].values()) == pytest.approx(snapshot["pnl"]["net"], abs=1e-9)


def test_async_decision_source(tmp_path, seed: int) -> None:
    class Board:
        """Stands in for a board: pop is a round trip."""

        def __init__(self) -> None:
            self.queue = DecisionQueue(8)

        async def pop_async(self) -> Decision | None:
            await asyncio.sleep(0)
            return self.queue.pop()

    board = Board()
    assert isinstance(board, AsyncDecisionSource)
    h = Harness(tmp_path, seed, source=board)

    async def body(h: Harness) -> None:
        board.queue.push(h.decision())
        await h.until(lambda: h.coordinator.stats.counters["filled"] == 1)

    run(h.session(body))


def test_lost_acks_are_retried_without_double_fills(tmp_path, seed: int) -> None:
    lossy = FillModel(latency_median_us=100, reject_probability=0.05, timeout_probability=0.4)
    h = Harness(tmp_path, seed, model=lossy, execution={"venue_orders_per_second": 10_000})

    async def body(h: Harness) -> None:
        for i in range(40):
            h.push(h.decision(pair=i % 2, side=(i // 2) % 2))
        await h.until(lambda: h.coordinator.stats.counters["decisions"] == 40 and not h.coordinator.orders)

    run(h.session(body))
    counters = h.coordinator.stats.counters
    assert counters["submit_timeouts"] > 0 and counters["submit_retries"] > 0

    async def venue_view() -> tuple[dict, dict]:
        positions: dict[str, float] = {}
        fills: dict[str, float] = {}
        for venue in h.venues:
            for pair, qty in (await venue.positions()).items():
                positions[pair] = positions.get(pair, 0.0) + qty
            for order in h.orders():
                status = await venue.order_status(order.client_order_id)
                if status is not None:
                    fills[order.client_order_id] = sum(f.qty for f in status.fills)
        return positions, fills

    positions, venue_fills = asyncio.run(venue_view())
    for order in h.orders():
        assert order.state.terminal
        assert venue_fills.get(order.client_order_id, 0.0) == pytest.approx(order.filled_qty)
        assert order.filled_qty <= order.qty * (1 + 1e-9)
    assert h.journal.positions() == pytest.approx(positions)


# --- restart reconciliation -------------------------------------------------------------------

def journal_order(h: Harness, n: int, state: OrderState = OrderState.NEW, qty: float = 0.01) -> Order:
    if h.journal.session is None:
        h.journal.start_session(h.clock(), note="the run that died")
    order = Order(client_order_id=f"sf0001-{n:07d}", pair="BTC/USDT", side=0, qty=qty, limit_price=60_200.0,
                  venue="alpha", created_us=h.clock(), decision_ts_us=n, decision_seq=n, arrival_price=60_000.0,
                  expire_at_us=2**62)
    h.journal.record_order(order)
    if state is not OrderState.NEW:
        h.journal.record_transition(order, order.transition(state, h.clock()))
    return order


def test_unsent_order_is_closed_on_restart(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed)
    journal_order(h, 1)
    report = asyncio.run(h.coordinator.start())
    assert report.ok and report.closed_unsent == 1
    assert h.journal.order("sf0001-0000001").state is OrderState.CANCELLED
    assert h.coordinator.session == 2


def test_fills_missed_while_down_are_adopted(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, size=0.005)
    order = journal_order(h, 1)  # written, sent, and then the process died

    async def main() -> None:
        # The venue went on without us: nobody is subscribed to this incarnation's reports.
        ghost = PaperVenue("alpha", model=FAST, store=h.store, clock=h.clock)
        quote = h.book.quote("alpha", "BTC/USDT")
        ghost.on_quote(quote)
        await ghost.submit(OrderRequest(order.client_order_id, "BTC/USDT", 0, 0.01, 60_200.0, 2**62))
        await asyncio.sleep(0)
        ghost.on_quote(quote)
        assert (await ghost.order_status(order.client_order_id)).state is OrderState.FILLED
        h.journal.close()
        restarted = Harness(tmp_path, seed, size=0.005, store=h.store)
        report = await restarted.coordinator.start()
        assert report.ok, report.problems
        assert report.adopted_fills == 2
        assert restarted.journal.order(order.client_order_id).state is OrderState.FILLED
        assert restarted.journal.positions() == pytest.approx(await ghost.positions())
        assert restarted.coordinator.positions.qty("BTC/USDT") == pytest.approx(0.01)
        transitions = [e["data"]["to"] for e in restarted.journal.events("transition")]
        assert transitions == ["submitted", "partially_filled", "filled"]
    asyncio.run(main())


def test_reports_during_reconciliation_are_not_lost(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, size=1e-6)
    order = journal_order(h, 1)

    async def main() -> None:
        await h.venues[0].submit(OrderRequest(order.client_order_id, "BTC/USDT", 0, 0.01, 60_200.0, 2**62))
        await asyncio.sleep(0)
        h.quote()  # partial fills reach a coordinator that has not started yet
        report = await h.coordinator.start()
        assert report.ok, report.problems
        assert h.coordinator.orders[order.client_order_id].state is OrderState.PARTIALLY_FILLED
        await h.venues[0].cancel(order.client_order_id)
        assert not h.coordinator.orders
        assert h.journal.order(order.client_order_id).state is OrderState.CANCELLED
        assert h.journal.positions() == pytest.approx(await h.venues[0].positions())
    asyncio.run(main())


def test_refuses_to_trade_when_venue_lost_an_acknowledged_order(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed)
    journal_order(h, 7, OrderState.SUBMITTED)
    with pytest.raises(Unreconciled, match="sf0001-0000007.*does not know it"):
        asyncio.run(h.coordinator.start())
    assert not h.coordinator.reconciled
    with pytest.raises(Unreconciled, match="does not know it"):
        asyncio.run(h.coordinator.run())
    assert h.journal.last_event("reconcile")[1]["ok"] is False


def test_refuses_to_trade_on_unknown_venue_order_and_position_mismatch(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed)

    async def main() -> None:
        await h.venues[1].submit(OrderRequest("sf0009-0000001", "BTC/USDT", 0, 1.0, 1.0, 2**62))
        h.journal.record_fill(None, Fill("alpha", "alpha-x", "sf0001-0000099", "ETH/USDT", 0, 1.0, 3_000.0, 0.1, 1))
        with pytest.raises(Unreconciled) as error:
            await h.coordinator.start()
        text = "\n".join(error.value.problems)
        assert "holds open order sf0009-0000001 that the journal does not know" in text
        assert "position ETH/USDT: journal +1, venues +0" in text
    asyncio.run(main())


def test_kill_switch_survives_a_restart_until_reset(tmp_path, seed: int) -> None:
    h = Harness(tmp_path, seed, risk={"daily_loss_limit": 1.0})

    async def body(h: Harness) -> None:
        h.push(h.decision(confidence=0.95))
        await h.until(lambda: h.coordinator.risk.state.value == "halted")

    run(h.session(body))
    h.journal.close()
    restarted = Harness(tmp_path, seed, store=h.store, risk={"daily_loss_limit": 1.0})

    async def main() -> None:
        await restarted.coordinator.start()
        assert restarted.coordinator.risk.state.value == "halted"
        restarted.coordinator.reset_kill_switch("test")
        assert restarted.journal.meta("risk_state")["to_state"] == "active"
        # The day's anchor was kept: the loss that tripped the switch still counts today.
        restarted.coordinator._check_pnl()
        assert restarted.coordinator.risk.state.value == "halted"
    asyncio.run(main())
