"""Synthetic market and CSV replay."""

from __future__ import annotations

import numpy as np
import pytest

from sigfuse.execution.marketdata import (MarketModel, Quote, QuoteBook, SyntheticMarket, replay_csv,
                                          sample_bars_path, write_ticks_csv)


def test_same_seed_same_quotes(seed: int) -> None:
    a = list(SyntheticMarket(10, seed=seed).run(50))
    b = list(SyntheticMarket(10, seed=seed).run(50))
    c = list(SyntheticMarket(10, seed=seed + 1).run(50))
    assert a == b
    assert a != c
    assert len(a) == 50 * 10 * 2


def test_quotes_are_sane(seed: int) -> None:
    market = SyntheticMarket(10, seed=seed)
    assert len(market.pairs) == 10 and market.venues == ("alpha", "beta")
    for quote in market.run(200):
        assert 0 < quote.bid < quote.ask
        assert quote.bid_size > 0 and quote.ask_size > 0


def test_pairs_are_correlated(seed: int) -> None:
    market = SyntheticMarket(10, seed=seed, model=MarketModel(jump_rate=0.0))
    mids = []
    for _ in range(3000):
        market.step(100_000)
        mids.append(list(market.mids.values()))
    returns = np.diff(np.log(np.array(mids)), axis=0)
    corr = np.corrcoef(returns.T)
    off_diagonal = corr[~np.eye(10, dtype=bool)]
    # The model's common factor explains 60 % of each pair's variance.
    assert 0.4 < off_diagonal.mean() < 0.8


def test_volatility_regimes_and_jumps_happen(seed: int) -> None:
    market = SyntheticMarket(10, seed=seed, model=MarketModel(to_stressed_rate=0.5, jump_rate=0.5))
    stressed_seen = False
    for _ in range(2000):
        market.step(100_000)
        stressed_seen |= bool(market._stressed.any())
    assert stressed_seen


def test_cross_venue_spread_opens_and_closes(seed: int) -> None:
    market = SyntheticMarket(10, seed=seed, model=MarketModel(dislocation_rate=0.5))
    book = QuoteBook()
    opened = closed_after_open = 0
    was_open: dict[str, bool] = {}
    for _ in range(3000):
        for quote in market.step(20_000):
            book.update(quote)
        for pair in market.pairs:
            edge = book.cross_venue_edge_bps(pair)
            assert edge is not None
            now_open = edge > 0
            if now_open and not was_open.get(pair):
                opened += 1
            if was_open.get(pair) and not now_open:
                closed_after_open += 1
            was_open[pair] = now_open
    assert opened >= 5 and closed_after_open >= 5


def test_quote_book() -> None:
    book = QuoteBook()
    book.update(Quote(1, "alpha", "X", 99.0, 101.0, 1, 1))
    assert book.cross_venue_edge_bps("X") is None
    book.update(Quote(1, "beta", "X", 101.5, 102.0, 1, 1))
    assert book.best_ask("X").venue == "alpha" and book.best_bid("X").venue == "beta"
    assert book.mid("X") == pytest.approx((100.0 + 101.75) / 2)
    # Buy on alpha at 101, sell on beta at 101.5.
    assert book.cross_venue_edge_bps("X") == pytest.approx(0.5 / book.mid("X") * 1e4)


def test_replay_shipped_real_bars() -> None:
    path = sample_bars_path()
    assert path.is_file()
    quotes = list(replay_csv(path, venue="nasdaq", half_spread_bps=1.0))
    rows = path.read_text().splitlines()
    assert rows[0].startswith("Date,Open,High,Low,Close,Volume")
    assert len(quotes) == 4 * (len(rows) - 1)
    assert {q.pair for q in quotes} == {"MSFT"}
    assert all(q.ts_us < r.ts_us for q, r in zip(quotes, quotes[1:]))
    first = rows[1].split(",")
    low, high = float(first[3]), float(first[2])
    for q in quotes[:4]:
        assert low * (1 - 2e-4) <= q.mid <= high * (1 + 2e-4)
    assert quotes[0].mid == pytest.approx(float(first[1]))
    assert quotes[3].mid == pytest.approx(float(first[4]))


def test_ticks_round_trip(tmp_path, seed: int) -> None:
    quotes = list(SyntheticMarket(3, seed=seed).run(20))
    path = tmp_path / "ticks.csv"
    assert write_ticks_csv(quotes, path) == len(quotes)
    assert list(replay_csv(path)) == quotes


def test_bars_with_symbol_column(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("ts,symbol,open,high,low,close,volume\n"
                    "2024-01-02T00:00:00Z,ETH/USDT,100,110,90,95,1000\n"
                    "2024-01-02T00:01:00Z,ETH/USDT,95,96,94,96,1000\n")
    quotes = list(replay_csv(path))
    assert [round(q.mid, 6) for q in quotes[:4]] == [100, 110, 90, 95]  # down bar: O H L C
    assert quotes[4].ts_us - quotes[0].ts_us == 60_000_000
    assert quotes[1].ts_us - quotes[0].ts_us == 15_000_000


def test_unknown_layout_is_an_error(tmp_path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="neither ticks"):
        list(replay_csv(path))
    path.write_text("ts_us,venue,pair,bid,ask,bid_size,ask_size\n1,v,p,notanumber,2,3,4\n")
    with pytest.raises(ValueError, match=":2: bad tick row"):
        list(replay_csv(path))
