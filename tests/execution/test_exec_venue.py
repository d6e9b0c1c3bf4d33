"""The paper venue: fills, slippage, partial fills, fees, rejects, timeouts, idempotency,
expiry, cancel and persistence."""

from __future__ import annotations

import asyncio

import pytest

from sigfuse.execution.marketdata import Quote
from sigfuse.execution.orders import ExecutionReport, OrderRequest, OrderState, ReportKind
from sigfuse.execution.venue import FillModel, PaperVenue, VenueStore, VenueTimeout

QUIET = FillModel(latency_median_us=0, reject_probability=0, timeout_probability=0, fee_bps=10.0,
                  depth_levels=3, level_step_bps=1.0, participation=1.0)


class Clock:
    def __init__(self, now: int = 1_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def quote(bid: float = 99.0, ask: float = 100.0, size: float = 10.0, venue: str = "alpha") -> Quote:
    return Quote(0, venue, "X", bid, ask, size, size)


def request(coid: str, qty: float, side: int = 0, limit: float = 101.0, expire: int = 2**62) -> OrderRequest:
    return OrderRequest(coid, "X", side, qty, limit, expire)


def venue_with_reports(model: FillModel = QUIET, **kw) -> tuple[PaperVenue, list[ExecutionReport]]:
    venue = PaperVenue("alpha", model=model, **kw)
    reports: list[ExecutionReport] = []
    venue.subscribe(reports.append)
    venue.on_quote(quote())
    return venue, reports


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_small_order_fills_at_the_quote_with_fees() -> None:
    async def main() -> None:
        venue, reports = venue_with_reports()
        ack = await venue.submit(request("a", 5.0))
        assert ack.accepted and not reports  # fills come after the ack
        await settle()
        assert [r.kind for r in reports] == [ReportKind.FILL]
        fill = reports[0].fill
        assert fill.qty == 5.0 and fill.price == 100.0
        assert fill.fee == pytest.approx(5.0 * 100.0 * 10e-4)
        assert (await venue.order_status("a")).state is OrderState.FILLED
        assert await venue.positions() == {"X": 5.0}
    asyncio.run(main())


def test_slippage_grows_with_size() -> None:
    async def main() -> None:
        prices = []
        for qty in (5.0, 15.0, 25.0):
            venue, reports = venue_with_reports()
            await venue.submit(request("a", qty, limit=1000.0))
            await settle()
            prices.append(reports[0].fill.price)
        assert prices[0] == 100.0 < prices[1] < prices[2]
        # 10 @ 100, 10 @ 100.01, 5 @ 100.02
        assert prices[2] == pytest.approx((1000 + 1000.1 + 500.1) / 25)
    asyncio.run(main())


def test_sell_walks_down_the_bids() -> None:
    async def main() -> None:
        venue, reports = venue_with_reports()
        await venue.submit(request("s", 15.0, side=1, limit=0.0))
        await settle()
        assert reports[0].fill.price == pytest.approx((990 + 5 * 99 * (1 - 1e-4)) / 15)
        assert await venue.positions() == {"X": -15.0}
    asyncio.run(main())


def test_partial_fills_then_rest_until_the_quote_refreshes() -> None:
    async def main() -> None:
        model = FillModel(latency_median_us=0, reject_probability=0, timeout_probability=0,
                          depth_levels=1, participation=0.5)
        venue, reports = venue_with_reports(model)
        await venue.submit(request("p", 12.0))
        await settle()
        assert (await venue.order_status("p")).state is OrderState.PARTIALLY_FILLED
        assert reports[-1].fill.qty == 5.0
        # A second order on the same quote finds the displayed size already taken.
        await venue.submit(request("q", 1.0))
        await settle()
        assert len(reports) == 1
        venue.on_quote(quote())
        venue.on_quote(quote())
        status = await venue.order_status("p")
        assert status.state is OrderState.FILLED and status.filled_qty == pytest.approx(12.0)
        assert [f.qty for f in status.fills] == [5.0, 5.0, 2.0]
    asyncio.run(main())


def test_limit_price_caps_the_walk() -> None:
    async def main() -> None:
        venue, reports = venue_with_reports()
        await venue.submit(request("l", 25.0, limit=100.005))
        await settle()
        assert reports[0].fill.qty == 10.0 and reports[0].fill.price == 100.0
        assert (await venue.order_status("l")).state is OrderState.PARTIALLY_FILLED
    asyncio.run(main())


def test_rejects(seed: int) -> None:
    async def main() -> None:
        venue, _ = venue_with_reports(FillModel(latency_median_us=0, reject_probability=1.0,
                                                timeout_probability=0), seed=seed)
        ack = await venue.submit(request("r", 1.0))
        assert not ack.accepted and ack.reason == "venue_reject"
        no_market = PaperVenue("alpha", model=QUIET)
        ack = await no_market.submit(request("n", 1.0))
        assert not ack.accepted and ack.reason == "no_market"
        # Resubmitting a rejected id does not create an order either.
        again = await venue.submit(request("r", 1.0))
        assert again.duplicate and not again.accepted
    asyncio.run(main())


def test_resubmission_after_timeouts_never_double_fills(seed: int) -> None:
    async def main() -> None:
        lossy = FillModel(latency_median_us=50, reject_probability=0, timeout_probability=1.0)
        venue, reports = venue_with_reports(lossy, seed=seed)
        received = 0
        for i in range(40):
            coid = f"t{i}"
            with pytest.raises(VenueTimeout):
                await venue.submit(request(coid, 1.0))
            received += (await venue.order_status(coid)) is not None
        assert 0 < received < 40  # some acks were lost after the order arrived, some before
        venue.model = QUIET
        for i in range(40):
            for _ in range(3):  # retries with the same client order id
                ack = await venue.submit(request(f"t{i}", 1.0))
                assert ack.accepted
        await settle()
        venue.on_quote(quote())
        filled: dict[str, float] = {}
        for r in reports:
            filled[r.client_order_id] = filled.get(r.client_order_id, 0.0) + r.fill.qty
        assert filled == {f"t{i}": 1.0 for i in range(40)}
        assert venue.counters["duplicates"] == 40 * 3 - (40 - received)
        assert await venue.positions() == {"X": 40.0}
    asyncio.run(main())


def test_expiry_and_cancel() -> None:
    async def main() -> None:
        clock = Clock()
        venue, reports = venue_with_reports(clock=clock)
        await venue.submit(request("e", 1.0, limit=50.0, expire=clock.now + 1000))
        await venue.submit(request("c", 1.0, limit=50.0))
        await settle()
        assert not reports  # not marketable: both rest
        assert {o.client_order_id for o in await venue.open_orders()} == {"e", "c"}
        clock.now += 2000
        venue.on_quote(quote())
        assert [(r.kind, r.client_order_id) for r in reports] == [(ReportKind.EXPIRED, "e")]
        assert await venue.cancel("c") is True
        assert await venue.cancel("c") is False
        assert reports[-1].kind is ReportKind.CANCELLED
        assert await venue.open_orders() == []
    asyncio.run(main())


def test_state_survives_in_the_store(tmp_path) -> None:
    async def main() -> None:
        store = VenueStore(tmp_path / "venue.sqlite")
        venue, _ = venue_with_reports(store=store)
        await venue.submit(request("a", 15.0, limit=1000.0))
        await venue.submit(request("b", 1.0, limit=50.0))
        await settle()
        store.close()
        reopened = PaperVenue("alpha", model=QUIET, store=VenueStore(tmp_path / "venue.sqlite"))
        status = await reopened.order_status("a")
        assert status.state is OrderState.FILLED and len(status.fills) == 1
        assert [o.client_order_id for o in await reopened.open_orders()] == ["b"]
        assert await reopened.positions() == {"X": 15.0}
        ack = await reopened.submit(request("a", 15.0))
        assert ack.duplicate
        # Fill ids continue where the previous process stopped.
        reports: list[ExecutionReport] = []
        reopened.subscribe(reports.append)
        reopened.on_quote(quote(bid=40.0, ask=45.0))
        assert reports[0].fill.fill_id == "alpha-000000002"
    asyncio.run(main())


def test_paper_venue_fills_against_replayed_real_bars() -> None:
    from sigfuse.execution.marketdata import replay_csv, sample_bars_path

    async def main() -> None:
        venue = PaperVenue("nasdaq", model=QUIET)
        reports: list[ExecutionReport] = []
        venue.subscribe(reports.append)
        quotes = list(replay_csv(sample_bars_path(), venue="nasdaq", half_spread_bps=1.0))
        for q in quotes[:4]:
            venue.on_quote(q)
        last = quotes[3]
        await venue.submit(OrderRequest("m1", "MSFT", 0, 100.0, last.ask * 1.01, 2**62))
        await settle()
        fill = reports[0].fill
        assert fill.price == pytest.approx(last.ask)  # 100 shares is well inside the top level
        for q in quotes[4:40]:
            venue.on_quote(q)
        assert await venue.positions() == {"MSFT": 100.0}
    asyncio.run(main())
