"""The signal sources: seven computations on market data that vote into fusion.

Each source is a :class:`SignalSource`: it reads :class:`~.feeds.MarketData` when polled and
returns contract :class:`~sigfuse.contract.Signal` records (pair slot, side, confidence in UQ1.15,
edge in bps) for its source slot.  Parameters come from the ``sources.<name>`` configuration
section (:mod:`.settings`).

=================  ======================================================================
source             computation
=================  ======================================================================
arbitrage          best cross-venue spread (bid on one venue - ask on another) net of both
                   venues' taker fees; the vote is for the leg on the dislocated venue
                   (the one further from a slow fair-value EMA)
momentum           fast/slow EMA crossover of the mid, confirmed by a Donchian breakout
mean_reversion     z-score of the log mid against its rolling mean; votes for the way back
volatility         realized volatility over a short window against a long one; in an
                   expansion it votes with the short window's move
sentiment          smoothed score of a sentiment feed (synthetic in the demo)
news               news impacts summed with exponential decay (synthetic in the demo)
whale              trades many times the pair's median print; votes with the aggressor
=================  ======================================================================

New sources plug in through the entry point group ``sigfuse.sources``: the entry point names a
:class:`SignalSource` subclass; its settings are read from ``sources.plugins.<name>`` and
validated by its ``params_model``.  See ``docs/orchestrator.md``.
"""

from __future__ import annotations

import abc
import math
import statistics
from collections import deque
from importlib.metadata import entry_points
from typing import Any, ClassVar, Iterable, Mapping

from pydantic import BaseModel

from ..contract import CONF_ONE, EDGE_MAX, PairTable, Signal, Source
from ..log import get_logger
from .feeds import MarketData
from .settings import (ArbitrageParams, MeanReversionParams, MomentumParams, NewsParams,
                       SentimentParams, SourceSettings, SourcesConfig, VolatilityParams, WhaleParams)

__all__ = ["SignalSource", "ArbitrageSource", "MomentumSource", "MeanReversionSource",
           "VolatilitySource", "SentimentSource", "NewsSource", "WhaleSource", "BUILTIN_SOURCES",
           "ENTRY_POINT_GROUP", "available_sources", "build_sources", "confidence_q15", "edge_bps"]

ENTRY_POINT_GROUP = "sigfuse.sources"
_BUY, _SELL = 0, 1


def confidence_q15(value: float) -> int:
    """A confidence in [0, 1] (clamped) as UQ1.15."""
    return max(0, min(CONF_ONE, round(value * CONF_ONE)))


def edge_bps(value: float) -> int:
    """A positive edge in whole bps, at least 1 (fusion ignores a zero edge), at most EDGE_MAX."""
    return max(1, min(EDGE_MAX, round(value)))


class SignalSource(abc.ABC):
    """One kind of signal.  Subclasses set ``name``, ``slot``, ``params_model`` and implement
    :meth:`evaluate`."""

    #: Configuration key (``sources.<name>``) and label in logs and metrics.
    name: ClassVar[str]
    #: The contract source slot the votes go to (its weight is ``fusion.weights.<slot name>``).
    slot: ClassVar[Source]
    params_model: ClassVar[type[SourceSettings]] = SourceSettings
    #: Names of synthetic feeds this source reads (labelled on the dashboard and in the summary).
    synthetic_inputs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: SourceSettings, pairs: PairTable, *, seed: int = 1) -> None:
        self.params = params
        self.pairs = pairs
        self.seed = seed
        self.evaluations = 0
        self.signals_emitted = 0
        self.log = get_logger(f"source.{self.name}")

    def poll(self, market: MarketData, ts_us: int) -> list[Signal]:
        """Evaluate once (counted)."""
        self.evaluations += 1
        out = self.evaluate(market, ts_us)
        self.signals_emitted += len(out)
        return out

    @abc.abstractmethod
    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        """The signals of this evaluation, timestamped ``ts_us``."""

    def _signal(self, ts_us: int, pair: str, side: int, confidence: float, edge: float) -> Signal:
        return Signal(ts_us, int(self.slot), self.pairs.slot(pair), side, confidence_q15(confidence),
                      edge_bps(edge))

    # Caches: the optimizer trims them under memory pressure and restores them afterwards.
    def trim_caches(self) -> int:
        """Drop what the source can rebuild; returns the number of entries freed."""
        return 0

    def restore_caches(self) -> None:
        """Undo :meth:`trim_caches` (capacities only: dropped history is rebuilt by new data)."""


def _resize(store: dict[str, deque[float]], maxlen: int) -> int:
    freed = 0
    for key, old in store.items():
        if old.maxlen != maxlen:
            freed += max(0, len(old) - maxlen)
            store[key] = deque(old, maxlen=maxlen)
    return freed


# --- arbitrage --------------------------------------------------------------------------------

class ArbitrageSource(SignalSource):
    """Cross-venue spread net of fees (see the module docstring)."""

    name = "arbitrage"
    slot = Source.ARBITRAGE
    params_model = ArbitrageParams
    params: ArbitrageParams

    def __init__(self, params: ArbitrageParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._fair: dict[str, tuple[float, int]] = {}

    def fee_bps(self, venue: str) -> float:
        return self.params.fee_bps.get(venue, self.params.default_fee_bps)

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        book = market.book
        max_age_us = p.max_quote_age_ms * 1000
        out = []
        for pair in self.pairs.names:
            quotes = [q for q in book.venues_for(pair).values() if ts_us - q.ts_us <= max_age_us]
            mid = book.mid(pair)
            if mid is None or not quotes:
                continue
            fair = self._update_fair(pair, mid, ts_us)
            if len(quotes) < 2:
                continue
            best = None
            for buy in quotes:
                for sell in quotes:
                    if buy is sell:
                        continue
                    gross = (sell.bid - buy.ask) / mid * 1e4
                    net = gross - self.fee_bps(buy.venue) - self.fee_bps(sell.venue)
                    if best is None or net > best[0]:
                        best = (net, buy, sell)
            assert best is not None
            net, buy, sell = best
            if net < p.min_net_bps:
                continue
            # Which leg to vote for: the venue further from fair value is the dislocated one,
            # and its price is the one expected to come back.
            side = _BUY if abs(buy.mid - fair) >= abs(sell.mid - fair) else _SELL
            out.append(self._signal(ts_us, pair, side, p.confidence_base + p.confidence_per_bps * net, net))
        return out

    def _update_fair(self, pair: str, mid: float, ts_us: int) -> float:
        last = self._fair.get(pair)
        if last is None:
            fair = mid
        else:
            alpha = 1.0 - math.exp(-max(0, ts_us - last[1]) * 1e-6 / self.params.fair_tau_s)
            fair = last[0] + alpha * (mid - last[0])
        self._fair[pair] = (fair, ts_us)
        return fair


# --- momentum ---------------------------------------------------------------------------------

class MomentumSource(SignalSource):
    """EMA crossover, confirmed (or, alone, triggered) by a Donchian breakout."""

    name = "momentum"
    slot = Source.MOMENTUM
    params_model = MomentumParams
    params: MomentumParams

    def __init__(self, params: MomentumParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._ema: dict[str, tuple[float, float, int]] = {}
        self._window: dict[str, deque[float]] = {}
        self._window_len = params.breakout_window

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        out = []
        for pair in self.pairs.names:
            mid = market.book.mid(pair)
            if mid is None:
                continue
            state = self._ema.get(pair)
            if state is None:
                fast = slow = mid
            else:
                dt = max(0, ts_us - state[2]) * 1e-6
                fast = state[0] + (1.0 - math.exp(-dt / p.fast_tau_s)) * (mid - state[0])
                slow = state[1] + (1.0 - math.exp(-dt / p.slow_tau_s)) * (mid - state[1])
            self._ema[pair] = (fast, slow, ts_us)
            window = self._window.setdefault(pair, deque(maxlen=self._window_len))
            breakout = 0
            if len(window) == window.maxlen:
                if mid > max(window):
                    breakout = 1
                elif mid < min(window):
                    breakout = -1
            window.append(mid)
            gap = (fast / slow - 1.0) * 1e4
            cross = (1 if gap > 0 else -1) if abs(gap) >= p.crossover_bps else 0
            if cross and breakout and cross != breakout:
                continue
            direction = cross or breakout
            if not direction:
                continue
            confidence = p.confidence_base + p.confidence_per_bps * abs(gap)
            if breakout:
                confidence += p.breakout_bonus
            move = abs(gap) if cross else abs(mid / window[0] - 1.0) * 1e4
            out.append(self._signal(ts_us, pair, _BUY if direction > 0 else _SELL, confidence,
                                    p.edge_fraction * move))
        return out

    def trim_caches(self) -> int:
        self._window_len = max(2, self.params.breakout_window // 2)
        return _resize(self._window, self._window_len)

    def restore_caches(self) -> None:
        self._window_len = self.params.breakout_window
        _resize(self._window, self._window_len)


# --- mean reversion ---------------------------------------------------------------------------

class MeanReversionSource(SignalSource):
    """Z-score of the log mid against the rolling mean of the previous ``window`` evaluations."""

    name = "mean_reversion"
    slot = Source.MEAN_REVERSION
    params_model = MeanReversionParams
    params: MeanReversionParams

    def __init__(self, params: MeanReversionParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._history: dict[str, deque[float]] = {}
        self._window_len = params.window

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        out = []
        for pair in self.pairs.names:
            mid = market.book.mid(pair)
            if mid is None or mid <= 0:
                continue
            x = math.log(mid)
            history = self._history.setdefault(pair, deque(maxlen=self._window_len))
            full = len(history) >= min(history.maxlen or 0, p.window)
            if full:
                mean = statistics.fmean(history)
                std = statistics.pstdev(history, mean)
                if std > 0:
                    z = (x - mean) / std
                    deviation = abs(math.expm1(x - mean)) * 1e4
                    if abs(z) >= p.z_entry and deviation >= p.min_deviation_bps:
                        out.append(self._signal(ts_us, pair, _SELL if z > 0 else _BUY,
                                                p.confidence_base + p.confidence_per_z * (abs(z) - p.z_entry),
                                                p.edge_fraction * deviation))
            history.append(x)
        return out

    def trim_caches(self) -> int:
        self._window_len = max(5, self.params.window // 2)
        return _resize(self._history, self._window_len)

    def restore_caches(self) -> None:
        self._window_len = self.params.window
        _resize(self._history, self._window_len)


# --- volatility -------------------------------------------------------------------------------

class VolatilitySource(SignalSource):
    """Realized-volatility regime: short-window against long-window volatility of log returns,
    each return scaled by 1/sqrt(its interval) so a change of polling rate does not look like a
    change of volatility."""

    name = "volatility"
    slot = Source.VOLATILITY
    params_model = VolatilityParams
    params: VolatilityParams

    def __init__(self, params: VolatilityParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._last: dict[str, tuple[float, int]] = {}
        self._returns: dict[str, deque[float]] = {}
        self._moves: dict[str, deque[float]] = {}
        self.expanded: dict[str, bool] = {}

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        out = []
        for pair in self.pairs.names:
            mid = market.book.mid(pair)
            if mid is None or mid <= 0:
                continue
            x = math.log(mid)
            last = self._last.get(pair)
            self._last[pair] = (x, ts_us)
            if last is None or ts_us <= last[1]:
                continue
            move = x - last[0]
            returns = self._returns.setdefault(pair, deque(maxlen=p.long_window))
            moves = self._moves.setdefault(pair, deque(maxlen=p.short_window))
            returns.append(move / math.sqrt((ts_us - last[1]) * 1e-6))
            moves.append(move)
            if len(returns) < p.long_window:
                continue
            long_vol = _rms(returns)
            if long_vol <= 0:
                continue
            recent = list(returns)[-p.short_window:]
            ratio = _rms(recent) / long_vol
            expanded = ratio >= p.expand_ratio
            if expanded != self.expanded.get(pair, False):
                self.expanded[pair] = expanded
                self.log.info("volatility_regime", pair=pair, regime="expanded" if expanded else "normal",
                              ratio=round(ratio, 3))
            if not expanded:
                continue
            short_move = sum(moves)
            if short_move == 0:
                continue
            out.append(self._signal(ts_us, pair, _BUY if short_move > 0 else _SELL,
                                    p.confidence_base + p.confidence_per_ratio * (ratio - 1.0),
                                    p.edge_fraction * abs(math.expm1(short_move)) * 1e4))
        return out


def _rms(values: Iterable[float]) -> float:
    # Root mean square, not the standard deviation: at these horizons the drift is noise, and
    # subtracting a noisy mean would understate a one-way move's volatility.
    values = list(values)
    return math.sqrt(sum(v * v for v in values) / len(values)) if values else 0.0


# --- sentiment --------------------------------------------------------------------------------

class SentimentSource(SignalSource):
    """Smoothed sentiment score (EMA), voting its sign above a threshold."""

    name = "sentiment"
    slot = Source.SENTIMENT
    params_model = SentimentParams
    synthetic_inputs = ("sentiment",)
    params: SentimentParams

    def __init__(self, params: SentimentParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._smoothed: dict[str, tuple[float, int]] = {}

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        out = []
        for pair in self.pairs.names:
            score = market.sentiment.get(pair)
            if score is None:
                continue
            last = self._smoothed.get(pair)
            if last is None:
                smoothed = score
            else:
                alpha = 1.0 - math.exp(-max(0, ts_us - last[1]) * 1e-6 / p.smoothing_tau_s)
                smoothed = last[0] + alpha * (score - last[0])
            self._smoothed[pair] = (smoothed, ts_us)
            if abs(smoothed) >= p.threshold:
                out.append(self._signal(ts_us, pair, _BUY if smoothed > 0 else _SELL,
                                        p.confidence_base + p.confidence_per_score * abs(smoothed),
                                        p.edge_bps_at_full * abs(smoothed)))
        return out


# --- news -------------------------------------------------------------------------------------

class NewsSource(SignalSource):
    """News impacts summed with exponential decay (half-life ``half_life_s``)."""

    name = "news"
    slot = Source.NEWS
    params_model = NewsParams
    synthetic_inputs = ("news",)
    params: NewsParams

    def __init__(self, params: NewsParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._cursor = 0
        self._live: dict[str, list[tuple[int, float]]] = {}

    def impact(self, pair: str, ts_us: int) -> float:
        """The summed live impact on ``pair`` at ``ts_us`` (positive is good news)."""
        decay = math.log(2.0) / self.params.half_life_s
        return sum(m * math.exp(-decay * max(0, ts_us - t) * 1e-6) for t, m in self._live.get(pair, ()))

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        events, self._cursor = market.news_after(self._cursor)
        for event in events:
            if event.pair in self.pairs.names:
                self._live.setdefault(event.pair, []).append((event.ts_us, event.polarity * event.magnitude))
        out = []
        # An impact below 1 % of the threshold can no longer matter: forget the event.
        floor_age_s = math.log(100.0 * max(1.0, 4.0 / p.threshold)) / (math.log(2.0) / p.half_life_s)
        for pair, live in self._live.items():
            live[:] = [(t, m) for t, m in live if (ts_us - t) * 1e-6 < floor_age_s]
            if not live:
                continue
            impact = self.impact(pair, ts_us)
            if abs(impact) >= p.threshold:
                out.append(self._signal(ts_us, pair, _BUY if impact > 0 else _SELL,
                                        p.confidence_base + p.confidence_per_impact * abs(impact),
                                        p.edge_bps_per_impact * abs(impact)))
        return out


# --- whale ------------------------------------------------------------------------------------

class WhaleSource(SignalSource):
    """Large-trade detection: a print of at least ``size_multiple`` times the pair's median
    notional (and ``min_notional``) is a whale; the source votes with its aggressor."""

    name = "whale"
    slot = Source.WHALE
    params_model = WhaleParams
    synthetic_inputs = ("trades",)
    params: WhaleParams

    def __init__(self, params: WhaleParams, pairs: PairTable, *, seed: int = 1) -> None:
        super().__init__(params, pairs, seed=seed)
        self._cursor = 0
        self._sizes: dict[str, deque[float]] = {}
        self._window_len = params.window

    def evaluate(self, market: MarketData, ts_us: int) -> list[Signal]:
        p = self.params
        trades, self._cursor = market.trades_after(self._cursor)
        biggest: dict[str, tuple[float, int]] = {}
        for trade in trades:
            if trade.pair not in self.pairs.names:
                continue
            sizes = self._sizes.setdefault(trade.pair, deque(maxlen=self._window_len))
            notional = trade.notional
            if len(sizes) >= p.min_history:
                multiple = notional / statistics.median(sizes)
                if (notional >= p.min_notional and multiple >= p.size_multiple
                        and multiple > biggest.get(trade.pair, (0.0, 0))[0]):
                    biggest[trade.pair] = (multiple, trade.side)
            sizes.append(notional)
        out = []
        for pair, (multiple, side) in biggest.items():
            out.append(self._signal(ts_us, pair, side, p.confidence_base + p.confidence_per_multiple * multiple,
                                    min(p.max_edge_bps, p.edge_bps_per_multiple * multiple)))
            self.log.info("whale", pair=pair, side="buy" if side == _BUY else "sell", multiple=round(multiple, 1))
        return out

    def trim_caches(self) -> int:
        self._window_len = max(self.params.min_history, self.params.window // 2)
        return _resize(self._sizes, self._window_len)

    def restore_caches(self) -> None:
        self._window_len = self.params.window
        _resize(self._sizes, self._window_len)


# --- registry ---------------------------------------------------------------------------------

BUILTIN_SOURCES: dict[str, type[SignalSource]] = {cls.name: cls for cls in (
    ArbitrageSource, MomentumSource, MeanReversionSource, VolatilitySource, SentimentSource,
    NewsSource, WhaleSource)}


def available_sources() -> dict[str, type[SignalSource]]:
    """The built-in sources plus those installed under the ``sigfuse.sources`` entry point group.

    A plug-in that fails to load, is not a :class:`SignalSource`, or reuses a built-in name is
    skipped with an error in the log: a broken plug-in must not stop the trading loop.
    """
    found = dict(BUILTIN_SOURCES)
    log = get_logger("sources")
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name in BUILTIN_SOURCES:
            log.error("plugin_skipped", name=point.name, reason="name of a built-in source")
            continue
        try:
            cls = point.load()
        except Exception as error:  # noqa: BLE001 -- any import error of third-party code
            log.error("plugin_skipped", name=point.name, reason=f"cannot load: {error!r}")
            continue
        if not (isinstance(cls, type) and issubclass(cls, SignalSource)):
            log.error("plugin_skipped", name=point.name, reason="not a SignalSource subclass")
            continue
        found[point.name] = cls
    return found


def build_sources(config: SourcesConfig, pairs: PairTable, *, seed: int = 1,
                  only: Iterable[str] | None = None,
                  registry: Mapping[str, type[SignalSource]] | None = None) -> list[SignalSource]:
    """Instantiate every enabled source with its settings from ``config``.

    Raises ``ValueError`` naming the key path when a plug-in's settings do not validate.
    """
    registry = available_sources() if registry is None else registry
    wanted = set(only) if only is not None else None
    built = []
    for name, cls in registry.items():
        if wanted is not None and name not in wanted:
            continue
        settings: Any = config.for_source(name)
        if not isinstance(settings, BaseModel):
            try:
                settings = cls.params_model.model_validate(settings)
            except Exception as error:
                raise ValueError(f"sources.plugins.{name}: {error}") from None
        if settings.enabled:
            built.append(cls(settings, pairs, seed=seed))
    return built
