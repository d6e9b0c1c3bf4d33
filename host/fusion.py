"""Reference model of the fusion pipeline: weighted consensus per pair, in contract fixed point.

This is the golden model every other backend (Amaranth simulation, Verilator, a board) is
compared with, bit for bit.  The rules are numbered as in ``docs/fusion.md``.

The per-signal path is written for speed (it is the reference engine's hot loop): votes are
tuples in a per-pair list, and the weighted products ``w*c`` and ``w*e`` are cached in the vote
and recomputed for every vote when the weights change, which keeps the semantics "weights in
force at evaluation time" without a multiply per vote per signal.
"""

from __future__ import annotations

from typing import Final

from .contract import (BOOST_FRAC_BITS, CONF_FRAC_BITS, CONF_ONE, PRIORITY_FRAC_BITS, PRIORITY_MAX,
                       RECIP_BITS, SEQ_MODULUS, SOURCE_SLOTS, Decision, FusionParams, Side, Signal)

__all__ = ["FusionEngine", "PairState"]

_NONE: Final = int(Side.NONE)
# The products w*c are truncated back to UQ1.15 before summing, which keeps B, S and T within
# 19 bits -- the width the gateware's threshold multiplier is built for.
_PRODUCT_SHIFT: Final = CONF_FRAC_BITS
_PRIORITY_SHIFT: Final = CONF_FRAC_BITS - PRIORITY_FRAC_BITS
# (M*mantissa) >> (shift + RECIP_BITS - 15) is M/W_A in UQ1.15; (X*mantissa) >> (shift +
# RECIP_BITS) is X/W_A in bps (X carries the weight's 15 fraction bits).
_AVG_SHIFT: Final = RECIP_BITS - CONF_FRAC_BITS
_EDGE_SHIFT: Final = RECIP_BITS

# Vote tuple fields.
_TS, _SIDE, _V, _X, _BIT, _CONF, _EDGE = range(7)


class PairState:
    """Fusion state of one pair slot: its votes and what it last emitted."""

    __slots__ = ("votes", "last_side", "last_emit_ts")

    def __init__(self) -> None:
        #: One entry per source slot: None, or (ts, side, w*c>>15, w*e, 1<<source, c, e).
        self.votes: list[tuple[int, int, int, int, int, int, int] | None] = [None] * SOURCE_SLOTS
        self.last_side: int = _NONE
        self.last_emit_ts: int = 0


class FusionEngine:
    """Weighted-consensus fusion of signals into decisions (rules 1-7 of the contract)."""

    def __init__(self, params: FusionParams | None = None, pair_slots: int = 256) -> None:
        self.pair_slots = pair_slots
        self._pairs = [PairState() for _ in range(pair_slots)]
        #: Timestamp of the last accepted signal; rule 1 compares against it.
        self.last_ts: int = 0
        #: Running decision number (unbounded here; the record carries it modulo 2**32).
        self.decisions: int = 0
        self.stale_drops: int = 0
        self.set_params(params or FusionParams())

    @property
    def params(self) -> FusionParams:
        return self._params

    def set_params(self, params: FusionParams) -> None:
        """Change parameters between two signals.

        The new weights apply to every vote on the board from the next signal on (votes keep
        their raw confidence and edge; their weighted products are recomputed here).  Pair
        state -- votes, last side, cooldown -- is kept.
        """
        self._params = params
        self._weights = params.weights
        self._theta = params.consensus_threshold
        self._quorum = params.quorum
        self._min_conf = params.min_confidence
        self._ttl = params.vote_ttl_us
        self._cooldown = params.cooldown_us
        self._boost = params.boost
        # Per agreeing-source mask: (W_A, reciprocal mantissa, shift, n).
        self._mask_info = [tuple(entry) for entry in params.mask_table()]
        weights = self._weights
        for state in self._pairs:
            votes = state.votes
            for source, vote in enumerate(votes):
                if vote is not None:
                    ts, side, _, _, bit, conf, edge = vote
                    w = weights[source]
                    votes[source] = (ts, side, (w * conf) >> _PRODUCT_SHIFT, w * edge, bit, conf, edge)

    def pair_state(self, pair: int) -> PairState:
        return self._pairs[pair]

    def reset(self) -> None:
        """Forget all votes and emission history (parameters are kept)."""
        self._pairs = [PairState() for _ in range(self.pair_slots)]
        self.last_ts = 0
        self.decisions = 0
        self.stale_drops = 0

    def fuse(self, signal: Signal) -> Decision | None | bool:
        """Apply one signal.

        Returns the emitted :class:`Decision`, ``None`` when nothing is emitted, or ``False``
        when the signal is stale (rule 1) and was dropped without effect.
        """
        ts, source, pair, side, conf, edge = signal
        # Rule 1: time never runs backwards within a stream.
        if ts < self.last_ts:
            self.stale_drops += 1
            return False
        self.last_ts = ts
        state = self._pairs[pair]
        votes = state.votes
        # Rule 2: the (pair, source) vote becomes this signal.
        w = self._weights[source]
        votes[source] = (ts, side, (w * conf) >> _PRODUCT_SHIFT, w * edge, 1 << source, conf, edge)

        # Rule 3: weighted sums over live votes (t - vote.ts <= ttl).
        horizon = ts - self._ttl
        buy = sell = buy_x = sell_x = buy_mask = sell_mask = 0
        for vote in votes:
            if vote is None or vote[0] < horizon:
                continue
            if vote[1]:
                sell += vote[2]
                sell_x += vote[3]
                sell_mask |= vote[4]
            else:
                buy += vote[2]
                buy_x += vote[3]
                buy_mask |= vote[4]
        if buy == sell:
            state.last_side = _NONE
            return None

        # Rule 4: the winning side and its agreeing set A.
        if buy > sell:
            side_star, m, x, mask = 0, buy, buy_x, buy_mask
        else:
            side_star, m, x, mask = 1, sell, sell_x, sell_mask
        total = buy + sell
        weight_sum, mantissa, shift, n = self._mask_info[mask]

        # Rule 5: consensus is M/T >= θ, compared without dividing, and W_A >= quorum.
        if (m << CONF_FRAC_BITS) < self._theta * total or weight_sum < self._quorum:
            # Rule 6, no consensus.
            state.last_side = _NONE
            return None
        average = (m * mantissa) >> (shift + _AVG_SHIFT)
        confidence = (average * self._boost[n - 1]) >> BOOST_FRAC_BITS
        if confidence > CONF_ONE:
            confidence = CONF_ONE
        edge_fused = (x * mantissa) >> (shift + _EDGE_SHIFT)

        # Rule 6, consensus: emit on a side change or once the cooldown has passed.
        if confidence < self._min_conf or edge_fused <= 0:
            return None
        if side_star == state.last_side and ts - state.last_emit_ts < self._cooldown:
            return None
        state.last_side = side_star
        state.last_emit_ts = ts

        # Rule 7.
        priority = (confidence * edge_fused) >> _PRIORITY_SHIFT
        if priority > PRIORITY_MAX:
            priority = PRIORITY_MAX
        seq = self.decisions % SEQ_MODULUS
        self.decisions += 1
        return Decision(ts, pair, side_star, confidence, edge_fused, priority, seq)
