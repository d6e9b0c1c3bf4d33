"""Each signal source on constructed market data: a known input gives the expected side, edge and
confidence; plug-in sources load through the ``sigfuse.sources`` entry point group."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest

from sigfuse.contract import CONF_ONE, PairTable, Source
from sigfuse.execution.marketdata import Quote
from sigfuse.orchestrator.feeds import MarketData, NewsEvent, Trade
from sigfuse.orchestrator.settings import (ArbitrageParams, MeanReversionParams, MomentumParams, NewsParams,
                                           SentimentParams, SourcesConfig, VolatilityParams, WhaleParams)
from sigfuse.orchestrator.sources import (BUILTIN_SOURCES, ArbitrageSource, MeanReversionSource, MomentumSource,
                                          NewsSource, SentimentSource, SignalSource, VolatilitySource, WhaleSource,
                                          available_sources, build_sources, confidence_q15)

PAIR = "BTC/USDT"
BUY, SELL = 0, 1


@pytest.fixture
def pairs() -> PairTable:
    return PairTable(8, [PAIR, "ETH/USDT"])


def quote(ts: int, venue: str, bid: float, ask: float, pair: str = PAIR) -> Quote:
    return Quote(ts, venue, pair, bid, ask, 1.0, 1.0)


def mid_market(ts: int, mid: float, pair: str = PAIR) -> MarketData:
    data = MarketData()
    data.book.update(quote(ts, "alpha", mid * (1 - 1e-4), mid * (1 + 1e-4), pair))
    return data


def feed_mids(source: SignalSource, mids: list[float], *, step_us: int = 200_000, start_us: int = 1_000_000):
    """Evaluate ``source`` once per mid; returns the signals of every evaluation."""
    out = []
    data = MarketData()
    for i, mid in enumerate(mids):
        ts = start_us + i * step_us
        data.book.update(quote(ts, "alpha", mid * (1 - 1e-4), mid * (1 + 1e-4)))
        out.append(source.poll(data, ts))
    return out


# --- arbitrage --------------------------------------------------------------------------------

def arbitrage_book(ts: int, alpha: tuple[float, float], beta: tuple[float, float]) -> MarketData:
    data = MarketData()
    data.book.update(quote(ts, "alpha", *alpha))
    data.book.update(quote(ts, "beta", *beta))
    return data


def test_arbitrage_fires_on_the_dislocated_venue_with_the_net_edge(pairs: PairTable) -> None:
    source = ArbitrageSource(ArbitrageParams(), pairs)
    # Fair value settles at 100 with both venues in line.
    for i in range(10):
        assert source.poll(arbitrage_book(i * 100_000, (99.99, 100.01), (99.99, 100.01)), i * 100_000) == []
    # alpha's price drops 40 bps: buy alpha's ask 99.61, sell beta's bid 99.99.
    ts = 1_000_000
    data = arbitrage_book(ts, (99.59, 99.61), (99.99, 100.01))
    signals = source.poll(data, ts)
    assert len(signals) == 1
    mid = data.book.mid(PAIR)
    net = (99.99 - 99.61) / mid * 1e4 - 7.5 - 7.5
    s = signals[0]
    assert s.source == Source.ARBITRAGE and s.pair == pairs.slot(PAIR) and s.side == BUY and s.ts_us == ts
    assert s.edge_bps == round(net)
    assert s.confidence == confidence_q15(0.70 + 0.02 * net)


def test_arbitrage_sells_when_the_rich_venue_is_the_dislocated_one(pairs: PairTable) -> None:
    source = ArbitrageSource(ArbitrageParams(), pairs)
    for i in range(10):
        source.poll(arbitrage_book(i * 100_000, (99.99, 100.01), (99.99, 100.01)), i * 100_000)
    signals = source.poll(arbitrage_book(1_000_000, (99.99, 100.01), (100.39, 100.41)), 1_000_000)
    assert [s.side for s in signals] == [SELL]


def test_arbitrage_nets_out_fees(pairs: PairTable) -> None:
    # A 12 bp gross spread is no opportunity at 7.5 bp per leg, but is at 2 bp per leg.
    book = arbitrage_book(0, (99.87, 99.88), (100.0, 100.01))
    assert ArbitrageSource(ArbitrageParams(), pairs).poll(book, 0) == []
    cheap = ArbitrageSource(ArbitrageParams(fee_bps={"alpha": 2.0, "beta": 2.0}), pairs).poll(book, 0)
    assert len(cheap) == 1
    gross = (100.0 - 99.88) / book.book.mid(PAIR) * 1e4
    assert cheap[0].edge_bps == round(gross - 4.0)


def test_arbitrage_ignores_stale_quotes(pairs: PairTable) -> None:
    book = arbitrage_book(0, (99.59, 99.61), (99.99, 100.01))
    assert ArbitrageSource(ArbitrageParams(), pairs).poll(book, 5_000_000) == []


# --- momentum ---------------------------------------------------------------------------------

def test_momentum_buys_an_uptrend_and_sells_a_downtrend(pairs: PairTable) -> None:
    up = feed_mids(MomentumSource(MomentumParams(), pairs), [100 * (1 + 5e-4 * i) for i in range(60)])
    assert up[-1] and {s.side for s in up[-1]} == {BUY}
    assert up[-1][0].source == Source.MOMENTUM and up[-1][0].edge_bps >= 1
    down = feed_mids(MomentumSource(MomentumParams(), pairs), [100 * (1 - 5e-4 * i) for i in range(60)])
    assert down[-1] and {s.side for s in down[-1]} == {SELL}


def test_momentum_is_quiet_in_a_flat_market(pairs: PairTable) -> None:
    flat = feed_mids(MomentumSource(MomentumParams(), pairs), [100.0] * 60)
    assert all(not s for s in flat)


def test_momentum_breakout_adds_confidence(pairs: PairTable) -> None:
    # The same EMA gap, with and without a new high: the breakout adds breakout_bonus.
    params = MomentumParams(breakout_window=5, confidence_per_bps=0.0)
    rising = feed_mids(MomentumSource(params, pairs), [100 * (1 + 5e-4 * i) for i in range(40)])[-1][0]
    gap_only = MomentumSource(params.model_copy(update={"breakout_bonus": 0.0}), pairs)
    plain = feed_mids(gap_only, [100 * (1 + 5e-4 * i) for i in range(40)])[-1][0]
    assert rising.confidence - plain.confidence == pytest.approx(0.10 * CONF_ONE, abs=2)


# --- mean reversion ---------------------------------------------------------------------------

def test_mean_reversion_sells_a_spike_and_buys_a_dip(pairs: PairTable) -> None:
    base = [100 * (1 + 2e-4 * math.sin(i)) for i in range(40)]
    spike = feed_mids(MeanReversionSource(MeanReversionParams(), pairs), base + [100.5])
    assert [s.side for s in spike[-1]] == [SELL]
    assert spike[-1][0].source == Source.MEAN_REVERSION
    # Edge: half the distance to the mean, in bps (about 50 bps away).
    assert 20 <= spike[-1][0].edge_bps <= 30
    dip = feed_mids(MeanReversionSource(MeanReversionParams(), pairs), base + [99.5])
    assert [s.side for s in dip[-1]] == [BUY]
    assert all(not s for s in spike[:-1])


# --- volatility -------------------------------------------------------------------------------

def test_volatility_expansion_votes_with_the_move(pairs: PairTable, seed: int) -> None:
    import random
    rng = random.Random(seed)
    mids = [100.0]
    for _ in range(60):
        mids.append(mids[-1] * math.exp(rng.gauss(0, 1e-4)))
    calm = feed_mids(VolatilitySource(VolatilityParams(), pairs), mids)
    assert sum(len(s) for s in calm) == 0
    source = VolatilitySource(VolatilityParams(), pairs)
    burst = mids + [mids[-1] * math.exp(2e-3 * (i + 1)) for i in range(6)]
    out = feed_mids(source, burst)
    assert out[-1] and out[-1][0].side == BUY and out[-1][0].source == Source.VOLATILITY
    assert source.expanded[PAIR]


# --- sentiment and news -----------------------------------------------------------------------

@pytest.mark.parametrize(("score", "side"), [(0.8, BUY), (-0.8, SELL), (0.1, None)])
def test_sentiment_threshold_and_side(pairs: PairTable, score: float, side: int | None) -> None:
    source = SentimentSource(SentimentParams(), pairs)
    data = MarketData()
    data.set_sentiment(PAIR, score)
    signals = source.poll(data, 1_000_000)
    if side is None:
        assert signals == []
    else:
        assert [(s.side, s.source) for s in signals] == [(side, Source.SENTIMENT)]
        assert signals[0].edge_bps == round(12.0 * abs(score))


def test_news_event_hits_then_decays(pairs: PairTable) -> None:
    source = NewsSource(NewsParams(half_life_s=3.0), pairs)
    data = MarketData()
    data.add_news(NewsEvent(1_000_000, PAIR, +1, 0.8, "[synthetic] positive news"))
    now = source.poll(data, 1_000_000)
    assert [(s.side, s.source) for s in now] == [(BUY, Source.NEWS)]
    assert now[0].edge_bps == round(20.0 * 0.8)
    assert source.impact(PAIR, 4_000_000) == pytest.approx(0.4)
    assert source.poll(data, 4_000_000)[0].edge_bps == round(20.0 * 0.4)
    assert source.poll(data, 13_000_000) == []  # 0.8 / 16 < threshold
    data.add_news(NewsEvent(14_000_000, PAIR, -1, 1.0, "[synthetic] negative news"))
    assert [s.side for s in source.poll(data, 14_000_000)] == [SELL]


# --- whale ------------------------------------------------------------------------------------

def test_whale_detects_a_large_print_and_follows_its_aggressor(pairs: PairTable) -> None:
    source = WhaleSource(WhaleParams(), pairs)
    data = MarketData()
    for i in range(30):
        data.add_trade(Trade(i, "alpha", PAIR, 100.0, 10.0 + (i % 5), i % 2))  # ~1 200 notional
    assert source.poll(data, 100) == []
    data.add_trade(Trade(200, "beta", PAIR, 100.0, 400.0, SELL))  # 40 000: ~33x the median
    signals = source.poll(data, 300)
    assert [(s.side, s.source) for s in signals] == [(SELL, Source.WHALE)]
    multiple = 40_000 / 1_200
    assert signals[0].edge_bps == round(min(40.0, 0.5 * multiple))


def test_whale_needs_history_and_the_minimum_notional(pairs: PairTable) -> None:
    data = MarketData()
    for i in range(5):
        data.add_trade(Trade(i, "alpha", PAIR, 100.0, 10.0, BUY))
    data.add_trade(Trade(9, "alpha", PAIR, 100.0, 500.0, BUY))
    assert WhaleSource(WhaleParams(), pairs).poll(data, 10) == []  # only 5 prints of history
    source = WhaleSource(WhaleParams(min_notional=100_000), pairs)
    data = MarketData()
    for i in range(30):
        data.add_trade(Trade(i, "alpha", PAIR, 100.0, 10.0, BUY))
    data.add_trade(Trade(40, "alpha", PAIR, 100.0, 500.0, BUY))  # 50x the median, below 100 000
    assert source.poll(data, 50) == []


# --- configuration and plug-ins ---------------------------------------------------------------

def test_all_seven_kinds_are_built_from_the_configuration(pairs: PairTable) -> None:
    built = build_sources(SourcesConfig(), pairs, registry=BUILTIN_SOURCES)
    assert sorted(s.slot for s in built) == list(range(7))
    config = SourcesConfig.model_validate({"whale": {"enabled": False}, "momentum": {"crossover_bps": 5}})
    names = [s.name for s in build_sources(config, pairs, registry=BUILTIN_SOURCES)]
    assert "whale" not in names and len(names) == 6
    assert next(s for s in build_sources(config, pairs, registry=BUILTIN_SOURCES)
                if s.name == "momentum").params.crossover_bps == 5


def test_source_settings_errors_name_the_key() -> None:
    from pydantic import ValidationError
    with pytest.raises(ValidationError) as info:
        SourcesConfig.model_validate({"momentum": {"fast_tau_s": 10, "slow_tau_s": 5}})
    assert "momentum" in str(info.value)
    with pytest.raises(ValidationError) as info:
        SourcesConfig.model_validate({"arbitrage": {"fee": 1}})
    assert "arbitrage.fee" in str(info.value).replace("\n", ".")


PLUGIN = textwrap.dedent('''
    from sigfuse.contract import Source
    from sigfuse.orchestrator.settings import SourceSettings
    from sigfuse.orchestrator.sources import SignalSource

    class SpreadParams(SourceSettings):
        min_bps: float = 1.0

    class SpreadSource(SignalSource):
        """Votes buy on every pair whose quoted spread is wider than min_bps (a toy)."""
        name = "spread"
        slot = Source.CUSTOM
        params_model = SpreadParams

        def evaluate(self, market, ts_us):
            out = []
            for pair in self.pairs.names:
                q = market.book.quote("alpha", pair)
                if q and (q.ask - q.bid) / q.mid * 1e4 > self.params.min_bps:
                    out.append(self._signal(ts_us, pair, 0, 0.9, 3))
            return out

    class NotASource:
        pass
''')


def test_entry_point_plugins_load_and_read_their_settings(tmp_path, monkeypatch, pairs: PairTable) -> None:
    (tmp_path / "sigfuse_spread_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "sigfuse_spread_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sigfuse-spread-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[sigfuse.sources]\nspread = sigfuse_spread_plugin:SpreadSource\n"
        "bogus = sigfuse_spread_plugin:NotASource\nmomentum = sigfuse_spread_plugin:SpreadSource\n"
        "missing = sigfuse_spread_plugin_nowhere:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    found = available_sources()
    assert "spread" in found and "bogus" not in found and "missing" not in found
    assert found["momentum"] is MomentumSource  # a plug-in cannot replace a built-in
    config = SourcesConfig.model_validate({"plugins": {"spread": {"min_bps": 0.5}}})
    spread = next(s for s in build_sources(config, pairs) if s.name == "spread")
    assert spread.params.min_bps == 0.5
    signals = spread.poll(mid_market(0, 100.0), 0)
    assert [(s.source, s.side, s.edge_bps) for s in signals] == [(Source.CUSTOM, BUY, 3)]
    with pytest.raises(ValueError, match="sources.plugins.spread"):
        build_sources(SourcesConfig.model_validate({"plugins": {"spread": {"nope": 1}}}), pairs)
    sys.modules.pop("sigfuse_spread_plugin", None)


def test_sources_section_in_the_configuration_file(tmp_path) -> None:
    from sigfuse.config import SigfuseConfig, load_config
    if "sources" not in SigfuseConfig.model_fields:
        pytest.skip("the sources/orchestrator sections are not wired into sigfuse.config yet")
    path = tmp_path / "c.yaml"
    path.write_text("sources:\n  arbitrage:\n    min_net_bps: 3\norchestrator:\n  frequency_hz: 50\n")
    config = load_config(path, environ={})
    assert config.sources.arbitrage.min_net_bps == 3
    assert config.orchestrator.frequency_hz == 50
