"""Market data: a seeded synthetic multi-venue generator, CSV replay, and a book of latest quotes.

The synthetic market is shaped like the load the coordinator and the paper venue must handle:

* ``pairs`` pairs whose mid prices follow correlated random walks (one common factor plus an
  idiosyncratic part), with Poisson jumps and a two-state volatility regime (calm / stressed)
  that switches as a Markov chain;
* quotes on two venues whose prices differ by a per-venue *basis* that mean-reverts (an
  Ornstein-Uhlenbeck process) and is now and then knocked open by a dislocation, so the
  cross-venue spread opens and closes and an arbitrage source has something real to find;
* top-of-book sizes that thin out when the market is stressed.

Everything is drawn from one ``numpy.random.Generator`` seeded at construction: the same seed
and the same sequence of ``step`` calls give the same quotes.

CSV replay reads two documented layouts (see :func:`replay_csv`).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from ..synthetic import pair_name

__all__ = ["Quote", "QuoteBook", "MarketModel", "SyntheticMarket", "replay_csv", "sample_bars_path",
           "write_ticks_csv", "BASE_PRICES", "TICK_COLUMNS", "BAR_COLUMNS"]


class Quote(NamedTuple):
    """Top of book on one venue.  Sizes are in base units; prices in quote currency."""
    ts_us: int
    venue: str
    pair: str
    bid: float
    ask: float
    bid_size: float
    ask_size: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) * 0.5


#: Starting mid prices of the synthetic pairs (late-2024 levels, rounded).
BASE_PRICES: dict[str, float] = {
    "BTC/USDT": 60_000.0, "ETH/USDT": 3_000.0, "SOL/USDT": 150.0, "BNB/USDT": 550.0,
    "XRP/USDT": 0.55, "ADA/USDT": 0.45, "DOGE/USDT": 0.12, "AVAX/USDT": 30.0,
    "DOT/USDT": 6.0, "LINK/USDT": 14.0, "MATIC/USDT": 0.5, "LTC/USDT": 80.0,
    "ATOM/USDT": 7.0, "UNI/USDT": 8.0, "ETC/USDT": 22.0, "XLM/USDT": 0.1,
}


class QuoteBook:
    """The latest quote per (venue, pair)."""

    def __init__(self) -> None:
        self._quotes: dict[tuple[str, str], Quote] = {}
        self._by_pair: dict[str, dict[str, Quote]] = {}
        # Kept up to date on every quote: marks are read far more often than quotes arrive.
        self._mids: dict[str, float] = {}

    def update(self, quote: Quote) -> None:
        self._quotes[(quote.venue, quote.pair)] = quote
        venues = self._by_pair.setdefault(quote.pair, {})
        venues[quote.venue] = quote
        self._mids[quote.pair] = sum(q.bid + q.ask for q in venues.values()) * 0.5 / len(venues)

    def quote(self, venue: str, pair: str) -> Quote | None:
        return self._quotes.get((venue, pair))

    def venues_for(self, pair: str) -> dict[str, Quote]:
        return self._by_pair.get(pair, {})

    def mid(self, pair: str) -> float | None:
        """Mean of the venues' mid prices, or None before the first quote."""
        return self._mids.get(pair)

    @property
    def mids(self) -> dict[str, float]:
        """Mid price of every pair quoted so far (a live view; do not modify)."""
        return self._mids

    def best_bid(self, pair: str) -> Quote | None:
        quotes = self._by_pair.get(pair)
        return max(quotes.values(), key=lambda q: q.bid) if quotes else None

    def best_ask(self, pair: str) -> Quote | None:
        quotes = self._by_pair.get(pair)
        return min(quotes.values(), key=lambda q: q.ask) if quotes else None

    def cross_venue_edge_bps(self, pair: str) -> float | None:
        """Best bid on one venue minus best ask on another, in bps of the mid.

        Positive means buying on one venue and selling on the other makes money before fees.
        None with fewer than two venues quoting.
        """
        quotes = self._by_pair.get(pair)
        if not quotes or len(quotes) < 2:
            return None
        best = -math.inf
        for buy in quotes.values():
            for sell in quotes.values():
                if buy is not sell:
                    best = max(best, sell.bid - buy.ask)
        mid = self.mid(pair)
        return best / mid * 1e4 if mid else None

    @property
    def pairs(self) -> list[str]:
        return list(self._by_pair)


@dataclass(frozen=True)
class MarketModel:
    """Parameters of the synthetic market (per-second units)."""
    #: Volatility of log mid per sqrt(second) in the calm regime.
    volatility: float = 3e-4
    #: Multiplier on volatility in the stressed regime.
    stressed_multiplier: float = 3.0
    #: Regime switching rates, per second (calm -> stressed, stressed -> calm).
    to_stressed_rate: float = 0.02
    to_calm_rate: float = 0.1
    #: Share of each pair's variance explained by the common factor (pairwise correlation).
    correlation: float = 0.6
    #: Jumps: rate per pair per second and standard deviation of the log jump.
    jump_rate: float = 0.02
    jump_sigma: float = 0.004
    #: Venue basis: mean reversion speed (per second), noise per sqrt(second), and dislocations
    #: that knock it open by ``dislocation_bps`` (uniform in ±[½, 1] of it) at the given rate.
    basis_kappa: float = 1.0
    basis_noise: float = 2e-5
    dislocation_rate: float = 0.05
    dislocation_bps: float = 30.0
    #: Half spread per venue in bps (calm); doubled when stressed.
    half_spread_bps: tuple[float, ...] = (1.0, 2.0)
    #: Top-of-book size as quote notional (calm); halved when stressed.
    top_notional: float = 6_000.0


class SyntheticMarket:
    """Seeded multi-venue quote generator (see the module docstring)."""

    def __init__(self, pairs: int | Sequence[str] = 10, *, venues: Sequence[str] = ("alpha", "beta"),
                 seed: int = 1, model: MarketModel | None = None, start_us: int = 0) -> None:
        names = [pair_name(i) for i in range(pairs)] if isinstance(pairs, int) else list(pairs)
        if not names:
            raise ValueError("the synthetic market needs at least one pair")
        if len(venues) < 1:
            raise ValueError("the synthetic market needs at least one venue")
        self.pairs = names
        self.venues = tuple(venues)
        self.seed = seed
        self.model = model or MarketModel()
        self.ts_us = start_us
        self._rng = np.random.default_rng(seed)
        self._log_mid = np.log(np.array([BASE_PRICES.get(p, 10.0) for p in names]))
        self._basis = np.zeros((len(self.venues), len(names)))
        self._stressed = np.zeros(len(names), dtype=bool)
        spreads = list(self.model.half_spread_bps)
        spreads += [spreads[-1]] * (len(self.venues) - len(spreads))
        self._half_spread = np.array(spreads[:len(self.venues)])[:, None] * 1e-4

    @property
    def mids(self) -> dict[str, float]:
        """Fair mid price per pair (before venue basis)."""
        return dict(zip(self.pairs, np.exp(self._log_mid).tolist()))

    def step(self, dt_us: int) -> list[Quote]:
        """Advance by ``dt_us`` microseconds; return one fresh quote per (venue, pair)."""
        m = self.model
        rng = self._rng
        n = len(self.pairs)
        dt = max(dt_us, 0) * 1e-6
        self.ts_us += max(dt_us, 0)
        # Regimes: a Markov chain sampled per step (rate x dt is the switch probability).
        u = rng.random(n)
        self._stressed = np.where(self._stressed, u >= m.to_calm_rate * dt, u < m.to_stressed_rate * dt)
        vol = m.volatility * np.where(self._stressed, m.stressed_multiplier, 1.0)
        common = rng.standard_normal()
        own = rng.standard_normal(n)
        shock = math.sqrt(m.correlation) * common + math.sqrt(1.0 - m.correlation) * own
        self._log_mid += vol * math.sqrt(dt) * shock - 0.5 * vol * vol * dt
        jumps = rng.random(n) < m.jump_rate * dt
        if jumps.any():
            self._log_mid += np.where(jumps, rng.normal(0.0, m.jump_sigma, n), 0.0)
        # Venue basis: OU decay plus noise; dislocations knock one venue's basis open.
        decay = math.exp(-m.basis_kappa * dt)
        self._basis = self._basis * decay + m.basis_noise * math.sqrt(dt) * rng.standard_normal(self._basis.shape)
        if len(self.venues) > 1:
            hit = rng.random(n) < m.dislocation_rate * dt
            if hit.any():
                venue = rng.integers(0, len(self.venues), n)
                size = rng.uniform(0.5, 1.0, n) * m.dislocation_bps * 1e-4 * rng.choice((-1.0, 1.0), n)
                for i in np.flatnonzero(hit):
                    self._basis[venue[i], i] += size[i]
        mid = np.exp(self._log_mid)
        venue_mid = mid[None, :] * (1.0 + self._basis)
        half = self._half_spread * np.where(self._stressed, 2.0, 1.0)[None, :]
        bid = venue_mid * (1.0 - half)
        ask = venue_mid * (1.0 + half)
        depth = m.top_notional * np.where(self._stressed, 0.5, 1.0) / mid
        sizes = depth[None, :] * rng.uniform(0.5, 1.5, (2, len(self.venues), n))
        ts = self.ts_us
        quotes = []
        for v, venue in enumerate(self.venues):
            for i, pair in enumerate(self.pairs):
                quotes.append(Quote(ts, venue, pair, float(bid[v, i]), float(ask[v, i]),
                                    float(sizes[0, v, i]), float(sizes[1, v, i])))
        return quotes

    def run(self, steps: int, dt_us: int = 10_000) -> Iterator[Quote]:
        """``steps`` steps of ``dt_us`` each, flattened into one quote stream."""
        for _ in range(steps):
            yield from self.step(dt_us)


# --- CSV replay -------------------------------------------------------------------------------

#: Columns of a tick file (one quote per row).
TICK_COLUMNS = ("ts_us", "venue", "pair", "bid", "ask", "bid_size", "ask_size")
#: Columns of a bar file; ``date`` may be spelled ``ts``/``time``/``timestamp``, and ``pair``
#: ``symbol`` (optional: the ``pair`` argument names a single-instrument file).
BAR_COLUMNS = ("date", "open", "high", "low", "close", "volume")
_TIME_NAMES = ("date", "ts", "time", "timestamp", "ts_us")
_PAIR_NAMES = ("pair", "symbol")


def sample_bars_path() -> Path:
    """The real daily bars shipped with sigfuse (see ``host/data/README.md``)."""
    return Path(str(resources.files("sigfuse").joinpath("data/msft_daily_2017.csv")))


def _parse_time_us(text: str) -> int:
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def replay_csv(path: str | Path, *, venue: str = "replay", pair: str | None = None,
               half_spread_bps: float = 2.0, size_fraction: float = 1e-3,
               bar_us: int | None = None) -> Iterator[Quote]:
    """Quotes from a recorded CSV file, in file order.

    Two layouts are read, told apart by the header (names are case-insensitive, extra columns
    are ignored):

    ticks
        ``ts_us, venue, pair, bid, ask, bid_size, ask_size`` -- one quote per row, used as is.
    bars
        ``date, open, high, low, close, volume`` (``date`` an ISO date/time or integer µs;
        optional ``pair``/``symbol``).  Each bar becomes four quotes spaced ``bar_us / 4``
        apart (default: the gap to the next bar, or one day) along open → low → high → close
        for an up bar and open → high → low → close for a down bar, with a synthetic spread of
        ``half_spread_bps`` around each price and top-of-book sizes of ``volume x
        size_fraction / 4``.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration:
            return
        rows = [r for r in reader if r and any(c.strip() for c in r)]
    col = {name: i for i, name in enumerate(header)}
    if all(c in col for c in TICK_COLUMNS):
        for n, row in enumerate(rows, start=2):
            try:
                yield Quote(int(row[col["ts_us"]]), row[col["venue"]], row[col["pair"]],
                            float(row[col["bid"]]), float(row[col["ask"]]),
                            float(row[col["bid_size"]]), float(row[col["ask_size"]]))
            except (ValueError, IndexError) as error:
                raise ValueError(f"{path}:{n}: bad tick row: {error}") from None
        return
    time_col = next((col[t] for t in _TIME_NAMES if t in col), None)
    missing = [c for c in ("open", "high", "low", "close") if c not in col]
    if time_col is None or missing:
        raise ValueError(f"{path}: header is neither ticks ({', '.join(TICK_COLUMNS)}) nor bars "
                         f"({', '.join(BAR_COLUMNS)}); got {', '.join(header)}")
    pair_col = next((col[p] for p in _PAIR_NAMES if p in col), None)
    default_pair = pair or path.stem.split("_")[0].upper()
    parsed = []
    for n, row in enumerate(rows, start=2):
        try:
            parsed.append((_parse_time_us(row[time_col]), row[pair_col] if pair_col is not None else default_pair,
                           float(row[col["open"]]), float(row[col["high"]]), float(row[col["low"]]),
                           float(row[col["close"]]),
                           float(row[col["volume"]]) if "volume" in col else 0.0))
        except (ValueError, IndexError) as error:
            raise ValueError(f"{path}:{n}: bad bar row: {error}") from None
    half = half_spread_bps * 1e-4
    for i, (ts, name, o, h, l, c, volume) in enumerate(parsed):
        span = bar_us or (parsed[i + 1][0] - ts if i + 1 < len(parsed) else 86_400_000_000)
        path_prices = (o, l, h, c) if c >= o else (o, h, l, c)
        size = max(volume * size_fraction / 4.0, 1.0)
        for k, price in enumerate(path_prices):
            yield Quote(ts + k * max(span, 4) // 4, venue, name, price * (1.0 - half),
                        price * (1.0 + half), size, size)


def write_ticks_csv(quotes: Iterable[Quote], path: str | Path) -> int:
    """Record quotes as a tick CSV that :func:`replay_csv` reads back; returns the row count."""
    count = 0
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(TICK_COLUMNS)
        for q in quotes:
            writer.writerow((q.ts_us, q.venue, q.pair, repr(q.bid), repr(q.ask), repr(q.bid_size),
                             repr(q.ask_size)))
            count += 1
    return count
