"""A paper-trading session: synthetic market → signals → reference engine → coordinator → paper
venues, with the journal on disk.

This is what ``sigfuse paper`` and ``python -m sigfuse.execution.runner`` run, and what the
crash test kills with SIGKILL and restarts.  The signals come from the market itself (see
:class:`QuoteSignals`), so the arbitrage source votes when the venues' prices part and the
attribution figures mean something.

The paper venues keep their book in their own SQLite file (``--venue-store``), which survives
the session the way an exchange survives a crashed client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

from ..config import SigfuseConfig, load_config
from ..contract import CONF_ONE, PairTable, Signal, Source
from ..engine import ReferenceEngine
from ..log import get_logger, setup_logging
from .coordinator import Coordinator, Unreconciled
from .journal import Journal
from .marketdata import MarketModel, QuoteBook, SyntheticMarket
from .sources import VoteAttribution, process_with_attribution
from .venue import FillModel, PaperVenue, VenueStore

__all__ = ["QuoteSignals", "MonotonicClock", "PaperSession", "LIVELY_MARKET", "main"]

#: A busier market than the default model, so a few seconds of paper trading see dislocations,
#: trends and a few dozen decisions per second.
LIVELY_MARKET = MarketModel(volatility=1e-3, dislocation_rate=0.5)


class MonotonicClock:
    """Wall-clock microseconds that never run backwards within a process (fusion needs
    non-decreasing timestamps; the wall clock may step)."""

    def __init__(self) -> None:
        self._offset = time.time_ns() // 1000 - time.perf_counter_ns() // 1000

    def __call__(self) -> int:
        return self._offset + time.perf_counter_ns() // 1000


def _q15(x: float) -> int:
    return max(0, min(CONF_ONE, round(x * CONF_ONE)))


class QuoteSignals:
    """Strategy signals derived from quotes, one evaluation per pair per call.

    * arbitrage: a venue's ask below the consolidated mid (buy) or its bid above it (sell) by
      more than ``arb_bps``;
    * momentum: the mid's move over the last ``lookback`` evaluations;
    * mean reversion: the mid against its exponential average, voting for the way back;
    * volatility, sentiment, news, whale: seeded noise votes, leaning with momentum.
    """

    def __init__(self, pairs: PairTable, *, seed: int = 1, lookback: int = 20, arb_bps: float = 1.5,
                 noise_rate: float = 0.05) -> None:
        self.pairs = pairs
        self.lookback = lookback
        self.arb_bps = arb_bps
        self.noise_rate = noise_rate
        self._rng = random.Random(seed)
        self._mids: dict[str, deque[float]] = {}
        self._ema: dict[str, float] = {}

    def signals(self, book: QuoteBook, ts_us: int) -> list[Signal]:
        out: list[Signal] = []
        rng = self._rng
        for pair in self.pairs.names:
            mid = book.mid(pair)
            if mid is None:
                continue
            slot = self.pairs.slot(pair)
            history = self._mids.setdefault(pair, deque(maxlen=self.lookback))
            history.append(mid)
            ema = self._ema.get(pair, mid)
            self._ema[pair] = ema = 0.95 * ema + 0.05 * mid
            ask, bid = book.best_ask(pair), book.best_bid(pair)
            if ask is not None and bid is not None:
                cheap = (mid - ask.ask) / mid * 1e4
                rich = (bid.bid - mid) / mid * 1e4
                if max(cheap, rich) > self.arb_bps:
                    edge = max(cheap, rich)
                    out.append(Signal(ts_us, Source.ARBITRAGE, slot, 0 if cheap >= rich else 1,
                                      _q15(min(1.0, 0.7 + edge / 30)), min(500, int(edge) + 1)))
            trend = 0
            if len(history) == history.maxlen:
                move = (mid / history[0] - 1.0) * 1e4
                if abs(move) > 2.0:
                    trend = 1 if move > 0 else -1
                    out.append(Signal(ts_us, Source.MOMENTUM, slot, 0 if move > 0 else 1,
                                      _q15(min(1.0, 0.6 + abs(move) / 40)), min(500, int(abs(move) / 2) + 1)))
            deviation = (mid / ema - 1.0) * 1e4
            if abs(deviation) > 3.0:
                out.append(Signal(ts_us, Source.MEAN_REVERSION, slot, 1 if deviation > 0 else 0,
                                  _q15(min(1.0, 0.6 + abs(deviation) / 40)), min(500, int(abs(deviation) / 2) + 1)))
            for source in (Source.VOLATILITY, Source.SENTIMENT, Source.NEWS, Source.WHALE):
                if rng.random() < self.noise_rate:
                    lean = 0.7 if trend > 0 else 0.3 if trend < 0 else 0.5
                    out.append(Signal(ts_us, source, slot, 0 if rng.random() < lean else 1,
                                      _q15(rng.uniform(0.5, 0.95)), rng.randint(1, 12)))
        return out


class PaperSession:
    """Everything wired together for one run (see the module docstring)."""

    def __init__(self, config: SigfuseConfig, *, journal_path: str | Path, venue_store: str | Path,
                 seed: int = 1, pairs: int = 10, venues: Sequence[str] = ("alpha", "beta"),
                 fill_model: FillModel | None = None, market_model: MarketModel | None = None,
                 tick_s: float = 0.005) -> None:
        self.config = config
        self.seed = seed
        self.tick_s = tick_s
        self.clock = MonotonicClock()
        self.market = SyntheticMarket(pairs, venues=venues, seed=seed, model=market_model or LIVELY_MARKET,
                                      start_us=self.clock())
        self.pairs = PairTable(max(config.fusion.pair_slots, len(self.market.pairs)), self.market.pairs)
        self.book = QuoteBook()
        self.store = VenueStore(venue_store)
        self.venues = [PaperVenue(name, model=fill_model, seed=seed + i, store=self.store, clock=self.clock)
                       for i, name in enumerate(venues)]
        self.engine = ReferenceEngine(config.fusion.params(), capacity=config.queue.capacity,
                                      pair_slots=self.pairs.slots)
        self.attribution = VoteAttribution(self.engine.fusion)
        self.signals = QuoteSignals(self.pairs, seed=seed)
        self.journal = Journal(journal_path, synchronous=config.execution.journal_synchronous)
        self.coordinator = Coordinator(self.engine, self.venues, self.book, self.journal, pairs=self.pairs,
                                       execution=config.execution, risk=config.risk,
                                       attribution=self.attribution, clock_us=self.clock)
        self._feeding = True
        self.log = get_logger("execution.paper")

    def _tick(self) -> None:
        now = self.clock()
        for quote in self.market.step(now - self.market.ts_us):
            self.book.update(quote)
            for venue in self.venues:
                venue.on_quote(quote)
        events = self.signals.signals(self.book, now)
        if events:
            process_with_attribution(self.engine, self.attribution, events)
            self.coordinator.wake()

    async def _feed(self) -> None:
        while self._feeding:
            self._tick()
            await asyncio.sleep(self.tick_s)

    async def run(self, *, duration_s: float, max_orders: int | None = None,
                  reset_kill_switch: bool = False) -> dict[str, Any]:
        """Start (reconcile), trade for ``duration_s`` or ``max_orders`` orders, shut down
        cleanly (open orders cancelled), and return the figures."""
        self.log.info("paper_start", seed=self.seed, journal=self.journal.path, venue_store=self.store.path)
        # Reconcile before the market moves, so the venues' books are as the last run left them.
        report = await self.coordinator.start(seed=self.seed, mode="paper")
        feeder = asyncio.get_running_loop().create_task(self._feed())
        try:
            if reset_kill_switch:
                self.coordinator.reset_kill_switch("--reset-kill-switch")
            trading = asyncio.get_running_loop().create_task(self.coordinator.run(max_orders=max_orders))
            try:
                async with asyncio.timeout(duration_s):
                    await asyncio.shield(trading)
            except TimeoutError:
                pass
            self.coordinator.request_stop()
            await trading
            await self.coordinator.shutdown(cancel_open=True, timeout_s=5.0)
            result = {"reconcile": report.as_dict(), **self.coordinator.snapshot(),
                      "venues": {v.name: dict(v.counters) for v in self.venues}}
        finally:
            self._feeding = False
            await feeder
            for venue in self.venues:
                await venue.close()
        return result

    def close(self) -> None:
        self.journal.close()
        self.store.close()


def run_from_args(args: argparse.Namespace) -> int:
    """Run a paper session; prints the figures as one JSON document.  Exit 3 if unreconciled."""
    setup_logging(args.log_level, console="json")
    config = load_config(args.config)
    journal = args.journal or str(config.execution.journal_path)
    print(f"paper: seed={args.seed} journal={journal} venue_store={args.venue_store}", file=sys.stderr)
    overrides = {name: value for name, value in (("latency_median_us", args.latency_us),
                                                 ("participation", args.participation),
                                                 ("timeout_probability", args.timeout_probability))
                 if value is not None}
    session = PaperSession(config, journal_path=journal, venue_store=args.venue_store, seed=args.seed,
                           pairs=args.pairs, fill_model=FillModel(**overrides))
    try:
        result = asyncio.run(session.run(duration_s=args.duration, max_orders=args.max_orders,
                                         reset_kill_switch=args.reset_kill_switch))
    except Unreconciled as error:
        print("paper: refusing to trade until reconciled:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 3
    finally:
        session.close()
    json.dump(result, sys.stdout, indent=1, default=str, allow_nan=True)
    sys.stdout.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .cli import add_paper_arguments
    parser = argparse.ArgumentParser(prog="python -m sigfuse.execution.runner",
                                     description="Run a paper-trading session against the synthetic market.")
    add_paper_arguments(parser)
    args = parser.parse_args(argv)
    # SIGTERM: stop like Ctrl-C would (SIGKILL, of course, gives no such chance).
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        return run_from_args(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
