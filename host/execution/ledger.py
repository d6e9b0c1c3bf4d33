"""Positions, P&L and the live execution figures.

P&L per pair uses average cost: a fill that grows a position moves its average price, a fill
that shrinks it realizes ``closed x (price - average)``.  Fees are kept apart, so net P&L is
``realized + unrealized - fees``.

Attribution works on a simple identity: for marks ``m``, total P&L equals
``Σ_fills s·q·(m - p) - fees`` (``s`` = +1 buy, -1 sell), since the ``m`` terms of a flat
position cancel.  Each fill's term therefore belongs to one order, and through the order to the
sources that voted for its decision.  A source's P&L is the sum of its share -- 1/n of each
order n sources voted for -- so the per-source figures add up to the total; orders without
attribution (a board backend that exposes no votes) go to ``unattributed``.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import numpy as np

from ..contract import Source
from .orders import Fill, Order, OrderState, side_sign

__all__ = ["Position", "PositionBook", "SourceLedger", "ExecutionStats", "UNATTRIBUTED"]

UNATTRIBUTED = "unattributed"


@dataclass
class Position:
    """Net position of one pair: signed quantity, average price, realized P&L, fees paid."""
    qty: float = 0.0
    avg_price: float = 0.0
    realized: float = 0.0
    fees: float = 0.0

    def apply(self, side: int, qty: float, price: float, fee: float) -> float:
        """Account for one fill; returns the P&L it realized (before fees)."""
        signed = side_sign(side) * qty
        self.fees += fee
        if self.qty == 0.0 or (self.qty > 0) == (signed > 0):
            total = abs(self.qty) + qty
            self.avg_price = (abs(self.qty) * self.avg_price + qty * price) / total
            self.qty += signed
            return 0.0
        closed = min(abs(self.qty), qty)
        realized = closed * (price - self.avg_price) * (1.0 if self.qty > 0 else -1.0)
        self.realized += realized
        self.qty += signed
        if abs(self.qty) < 1e-12 * max(1.0, qty):
            self.qty = 0.0
            self.avg_price = 0.0
        elif (self.qty > 0) == (signed > 0):
            # The fill flipped the position; the remainder was opened at this price.
            self.avg_price = price
        return realized

    def unrealized(self, mark: float | None) -> float:
        return 0.0 if mark is None or self.qty == 0.0 else self.qty * (mark - self.avg_price)


class PositionBook:
    """Positions of every pair, built from fills."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}

    def apply(self, fill: Fill) -> float:
        return self.positions.setdefault(fill.pair, Position()).apply(fill.side, fill.qty, fill.price, fill.fee)

    def qty(self, pair: str) -> float:
        position = self.positions.get(pair)
        return position.qty if position else 0.0

    def net_quantities(self) -> dict[str, float]:
        return {pair: p.qty for pair, p in self.positions.items()}

    def per_pair(self, marks: Mapping[str, float | None]) -> dict[str, dict[str, float]]:
        """qty, avg_price, realized, unrealized, fees and net P&L per pair."""
        out = {}
        for pair, p in sorted(self.positions.items()):
            unrealized = p.unrealized(marks.get(pair))
            out[pair] = {"qty": p.qty, "avg_price": p.avg_price, "realized": p.realized,
                         "unrealized": unrealized, "fees": p.fees,
                         "net": p.realized + unrealized - p.fees}
        return out

    def total_pnl(self, marks: Mapping[str, float | None]) -> float:
        return sum(p.realized + p.unrealized(marks.get(pair)) - p.fees
                   for pair, p in self.positions.items())

    def gross_exposure(self, marks: Mapping[str, float | None]) -> float:
        return sum(abs(p.qty) * (marks.get(pair) or p.avg_price) for pair, p in self.positions.items())


def _source_name(slot: int) -> str:
    try:
        return Source(slot).wire_name
    except ValueError:
        return f"source{slot}"


class SourceLedger:
    """P&L attributed to the sources that voted for each order (see the module docstring)."""

    def __init__(self) -> None:
        # (source name, pair) -> [signed qty, signed cost]; source name -> fees, orders, fills.
        self._legs: dict[tuple[str, str], list[float]] = {}
        self._fees: dict[str, float] = {}
        self.orders: dict[str, int] = {}

    @staticmethod
    def _names(sources: Iterable[int]) -> list[str]:
        names = [_source_name(s) for s in sources]
        return names or [UNATTRIBUTED]

    def add_order(self, sources: Iterable[int]) -> None:
        for name in self._names(sources):
            self.orders[name] = self.orders.get(name, 0) + 1

    def add_fill(self, sources: Iterable[int], fill: Fill) -> None:
        names = self._names(sources)
        share = 1.0 / len(names)
        signed = side_sign(fill.side) * fill.qty * share
        for name in names:
            leg = self._legs.setdefault((name, fill.pair), [0.0, 0.0])
            leg[0] += signed
            leg[1] += signed * fill.price
            self._fees[name] = self._fees.get(name, 0.0) + fill.fee * share

    def pnl(self, marks: Mapping[str, float | None]) -> dict[str, float]:
        """Net P&L per source name at the given marks."""
        out: dict[str, float] = {name: -fees for name, fees in self._fees.items()}
        for (name, pair), (qty, cost) in self._legs.items():
            mark = marks.get(pair)
            if mark is None:
                mark = cost / qty if qty else 0.0
            out[name] = out.get(name, 0.0) + qty * mark - cost
        for name in self.orders:
            out.setdefault(name, 0.0)
        return dict(sorted(out.items()))


@dataclass
class ExecutionStats:
    """Live counters and figures of the coordinator."""
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys((
        "decisions", "requests_expired", "orders", "risk_rejected", "venue_rejected", "filled",
        "partially_filled_then_closed", "cancelled", "expired", "fills", "submit_timeouts",
        "submit_retries", "duplicate_fills_ignored", "unknown_reports"), 0))
    rejections: dict[str, int] = field(default_factory=dict)
    ordered_notional: float = 0.0
    filled_notional: float = 0.0
    #: Σ notional x slippage (bps) over fills, for the notional-weighted mean.
    slippage_weighted: float = 0.0
    fees: float = 0.0
    latency_ns: array = field(default_factory=lambda: array("q"))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def reject(self, reason: str) -> None:
        self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def on_fill(self, order: Order, fill: Fill) -> None:
        self.count("fills")
        notional = fill.qty * fill.price
        self.filled_notional += notional
        self.fees += fill.fee
        if order.arrival_price > 0:
            # Positive = worse than the arrival mid (paid up on a buy, sold down on a sell).
            slip = side_sign(fill.side) * (fill.price - order.arrival_price) / order.arrival_price * 1e4
            self.slippage_weighted += notional * slip

    def on_closed(self, order: Order) -> None:
        state = order.state
        if state is OrderState.FILLED:
            self.count("filled")
        elif state is OrderState.CANCELLED:
            self.count("cancelled")
        elif state is OrderState.EXPIRED:
            self.count("expired")
        elif state is OrderState.REJECTED:
            self.count("venue_rejected")
        if state is not OrderState.FILLED and order.filled_qty > 0:
            self.count("partially_filled_then_closed")

    #: Latency samples kept: the most recent ones, between this and twice this many.
    latency_window: int = 100_000

    def record_latency(self, ns: int) -> None:
        samples = self.latency_ns
        samples.append(ns)
        if len(samples) >= 2 * self.latency_window:
            del samples[:self.latency_window]

    def latency_percentiles(self) -> dict[str, float]:
        """Decision-to-order latency in µs: p50, p99, max (empty when nothing was sent)."""
        if not self.latency_ns:
            return {}
        samples = np.frombuffer(self.latency_ns, dtype=np.int64) / 1e3
        p50, p99 = np.percentile(samples, (50, 99))
        return {"p50_us": float(p50), "p99_us": float(p99), "max_us": float(samples.max()),
                "samples": int(samples.size)}

    def snapshot(self) -> dict[str, object]:
        c = self.counters
        closed = c["filled"] + c["cancelled"] + c["expired"] + c["venue_rejected"]
        return {
            "counters": dict(c),
            "risk_rejections": dict(self.rejections),
            "success_rate": c["filled"] / closed if closed else None,
            "fill_ratio": self.filled_notional / self.ordered_notional if self.ordered_notional else None,
            "slippage_bps": self.slippage_weighted / self.filled_notional if self.filled_notional else None,
            "fees": self.fees,
            "decision_to_order_latency": self.latency_percentiles(),
        }
