"""What the signal sources read: quotes, a trade tape, a sentiment score and news events.

:class:`MarketData` is the one place the sources look.  It holds the
:class:`~sigfuse.execution.marketdata.QuoteBook` and two ring buffers (trades, news) that each
source reads through its own cursor, so a source polled at 5 Hz still sees every print of a loop
running at 100 Hz.

The quotes come from :class:`~sigfuse.execution.marketdata.SyntheticMarket` (or a CSV replay).
The other three feeds have no real counterpart in this repository, so the demo generates them:
:class:`SyntheticTradeTape`, :class:`SyntheticSentimentFeed` and :class:`SyntheticNewsFeed`.
They are **synthetic** -- labelled so in their names, in ``MarketData.synthetic_feeds``, in the
logs and on the dashboard -- and seeded.  The sources' computations do not depend on where the
data came from; a real feed only has to call :meth:`MarketData.add_trade`,
:meth:`MarketData.set_sentiment` and :meth:`MarketData.add_news`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import NamedTuple, Sequence

from ..execution.marketdata import QuoteBook
from .settings import NewsParams, SentimentParams, WhaleParams

__all__ = ["Trade", "NewsEvent", "MarketData", "SyntheticTradeTape", "SyntheticSentimentFeed",
           "SyntheticNewsFeed", "SyntheticFeeds"]


class Trade(NamedTuple):
    """One print on the tape.  ``side`` is the aggressor's: 0 = buyer lifted the ask, 1 = seller hit the bid."""
    ts_us: int
    venue: str
    pair: str
    price: float
    qty: float
    side: int

    @property
    def notional(self) -> float:
        return self.price * self.qty


class NewsEvent(NamedTuple):
    """A news item about one pair: ``polarity`` +1 good, -1 bad; ``magnitude`` its initial impact."""
    ts_us: int
    pair: str
    polarity: int
    magnitude: float
    headline: str


class MarketData:
    """Quotes, trades, sentiment and news, as the sources see them (see the module docstring)."""

    def __init__(self, book: QuoteBook | None = None, *, trade_capacity: int = 8192,
                 news_capacity: int = 1024) -> None:
        self.book = book or QuoteBook()
        self._trades: deque[Trade] = deque(maxlen=trade_capacity)
        self._news: deque[NewsEvent] = deque(maxlen=news_capacity)
        self.trades_seen = 0
        self.news_seen = 0
        #: Latest raw sentiment score per pair, in [-1, 1].
        self.sentiment: dict[str, float] = {}
        #: Names of the feeds that are generated, not observed (shown wherever they are used).
        self.synthetic_feeds: set[str] = set()

    def add_trade(self, trade: Trade) -> None:
        self._trades.append(trade)
        self.trades_seen += 1

    def add_news(self, event: NewsEvent) -> None:
        self._news.append(event)
        self.news_seen += 1

    def set_sentiment(self, pair: str, score: float) -> None:
        self.sentiment[pair] = max(-1.0, min(1.0, score))

    def trades_after(self, cursor: int) -> tuple[list[Trade], int]:
        """Trades added since ``cursor`` (a previous return value; 0 at first) and the new cursor.

        A reader that fell more than the buffer's capacity behind loses the oldest prints.
        """
        new = min(self.trades_seen - cursor, len(self._trades))
        return (list(self._trades)[-new:] if new > 0 else []), self.trades_seen

    def news_after(self, cursor: int) -> tuple[list[NewsEvent], int]:
        new = min(self.news_seen - cursor, len(self._news))
        return (list(self._news)[-new:] if new > 0 else []), self.news_seen


class SyntheticTradeTape:
    """SYNTHETIC prints: Poisson arrivals per pair at the best venue's touch, lognormal sizes
    around a tenth of the top-of-book notional, and now and then a whale (15-60 times that)."""

    def __init__(self, params: WhaleParams, *, seed: int, typical_notional: float = 600.0) -> None:
        self.params = params
        self.typical_notional = typical_notional
        self._rng = random.Random(f"tape:{seed}")

    def step(self, ts_us: int, dt_us: int, book: QuoteBook, pairs: Sequence[str]) -> list[Trade]:
        rate = self.params.trades_per_second * dt_us * 1e-6
        if rate <= 0:
            return []
        rng = self._rng
        out: list[Trade] = []
        for pair in pairs:
            count = _poisson(rng, rate)
            for _ in range(count):
                side = 0 if rng.random() < 0.5 else 1
                quote = book.best_ask(pair) if side == 0 else book.best_bid(pair)
                if quote is None:
                    continue
                price = quote.ask if side == 0 else quote.bid
                notional = self.typical_notional * math.exp(rng.gauss(0.0, 0.6))
                if rng.random() < self.params.whale_probability:
                    notional *= rng.uniform(15.0, 60.0)
                out.append(Trade(ts_us, quote.venue, pair, price, notional / price, side))
        return out


class SyntheticSentimentFeed:
    """SYNTHETIC crowd sentiment per pair: an Ornstein-Uhlenbeck score in [-1, 1] that chases the
    price (a move of ``feed_follow_bps`` pulls it by 1) -- the crowd follows the tape."""

    def __init__(self, params: SentimentParams, *, seed: int) -> None:
        self.params = params
        self._rng = random.Random(f"sentiment:{seed}")
        self._score: dict[str, float] = {}
        self._last_mid: dict[str, float] = {}

    def step(self, dt_us: int, mids: dict[str, float]) -> dict[str, float]:
        p = self.params
        dt = dt_us * 1e-6
        rng = self._rng
        for pair, mid in mids.items():
            score = self._score.get(pair, 0.0)
            last = self._last_mid.get(pair, mid)
            follow = (mid / last - 1.0) * 1e4 / p.feed_follow_bps if last > 0 else 0.0
            score += -p.feed_kappa * score * dt + p.feed_noise * math.sqrt(dt) * rng.gauss(0.0, 1.0) + follow
            self._score[pair] = max(-1.0, min(1.0, score))
            self._last_mid[pair] = mid
        return self._score


class SyntheticNewsFeed:
    """SYNTHETIC headlines: Poisson arrivals per pair, random polarity, exponential magnitudes."""

    def __init__(self, params: NewsParams, *, seed: int) -> None:
        self.params = params
        self._rng = random.Random(f"news:{seed}")

    def step(self, ts_us: int, dt_us: int, pairs: Sequence[str]) -> list[NewsEvent]:
        rate = self.params.events_per_minute / 60.0 * dt_us * 1e-6
        if rate <= 0:
            return []
        rng = self._rng
        out = []
        for pair in pairs:
            if rng.random() < rate:
                polarity = 1 if rng.random() < 0.5 else -1
                magnitude = rng.expovariate(1.0 / self.params.magnitude_mean)
                mood = "positive" if polarity > 0 else "negative"
                out.append(NewsEvent(ts_us, pair, polarity, magnitude, f"[synthetic] {mood} news on {pair}"))
        return out


class SyntheticFeeds:
    """The three synthetic feeds, stepped together with the quotes into one :class:`MarketData`."""

    def __init__(self, data: MarketData, pairs: Sequence[str], *, whale: WhaleParams,
                 sentiment: SentimentParams, news: NewsParams, seed: int) -> None:
        self.data = data
        self.pairs = list(pairs)
        self.tape = SyntheticTradeTape(whale, seed=seed)
        self.sentiment = SyntheticSentimentFeed(sentiment, seed=seed)
        self.news = SyntheticNewsFeed(news, seed=seed)
        data.synthetic_feeds.update({"trades", "sentiment", "news"})

    def step(self, ts_us: int, dt_us: int) -> None:
        data = self.data
        for trade in self.tape.step(ts_us, dt_us, data.book, self.pairs):
            data.add_trade(trade)
        for pair, score in self.sentiment.step(dt_us, data.book.mids).items():
            data.set_sentiment(pair, score)
        for event in self.news.step(ts_us, dt_us, self.pairs):
            data.add_news(event)


def _poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw for small ``lam`` (Knuth; the loop's steps make lam well below 1)."""
    threshold = math.exp(-lam)
    k, product = 0, rng.random()
    while product > threshold:
        k += 1
        product *= rng.random()
    return k
