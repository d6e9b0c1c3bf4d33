"""Seeded synthetic event streams, for benchmarks, differential tests and the example trace.

The stream is shaped like the real load: ``pairs`` pairs, the seven sources voting on each,
each pair drifting between buy and sell regimes so that consensus forms, breaks and flips;
timestamps advance by a few microseconds to a few milliseconds so TTL and cooldown boundaries
are crossed all the time; pops are interleaved at a chosen rate.
"""

from __future__ import annotations

import json
import random
from typing import Iterator

from .contract import CONF_ONE, Pop, Signal, Source

__all__ = ["synthetic_events", "events_to_jsonl", "PAIR_NAMES"]

PAIR_NAMES = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT",
              "DOGE/USDT", "AVAX/USDT", "DOT/USDT", "LINK/USDT", "MATIC/USDT", "LTC/USDT",
              "ATOM/USDT", "UNI/USDT", "ETC/USDT", "XLM/USDT")

_ACTIVE_SOURCES = tuple(int(s) for s in Source if s is not Source.CUSTOM)


def synthetic_events(count: int, *, pairs: int = 10, seed: int = 1, pop_ratio: float = 0.0,
                     mean_gap_us: int = 2_000, start_us: int = 1_000_000) -> Iterator[Signal | Pop]:
    """``count`` events (signals and, with ``pop_ratio`` > 0, pops) in contract units.

    Pair slots are 0..pairs-1 (names from :data:`PAIR_NAMES`, or ``PAIRnn`` beyond them).
    """
    rng = random.Random(seed)
    regime = [rng.choice((0, 1)) for _ in range(pairs)]
    ts = start_us
    for _ in range(count):
        if pop_ratio and rng.random() < pop_ratio:
            yield Pop(ts)
            continue
        # Mostly small steps, sometimes a gap past the TTL, sometimes back-to-back (same µs).
        r = rng.random()
        if r < 0.2:
            step = 0
        elif r < 0.97:
            step = rng.randint(1, 2 * mean_gap_us)
        else:
            step = rng.randint(100_000, 1_200_000)
        ts += step
        pair = rng.randrange(pairs)
        if rng.random() < 0.02:
            regime[pair] ^= 1
        source = rng.choice(_ACTIVE_SOURCES)
        side = regime[pair] if rng.random() < 0.8 else regime[pair] ^ 1
        confidence = rng.randint(CONF_ONE // 3, CONF_ONE)
        edge = rng.randint(-5, 40) if side == regime[pair] else rng.randint(-20, 10)
        yield Signal(ts, source, pair, side, confidence, edge)


def pair_name(slot: int) -> str:
    return PAIR_NAMES[slot] if slot < len(PAIR_NAMES) else f"PAIR{slot:02d}/USDT"


def events_to_jsonl(events: Iterator[Signal | Pop]) -> Iterator[str]:
    """Render events as trace input lines (confidence printed exactly: raw / 2**15)."""
    for event in events:
        if type(event) is Pop:
            yield json.dumps({"op": "pop", "ts_us": event.ts_us}, separators=(",", ":"))
        else:
            yield json.dumps({"op": "signal", "ts_us": event.ts_us,
                              "source": Source(event.source).wire_name,
                              "pair": pair_name(event.pair),
                              "side": "sell" if event.side else "buy",
                              "confidence": event.confidence / CONF_ONE,
                              "edge_bps": event.edge_bps}, separators=(",", ":"))
