"""Rules 1-7 of the fusion contract, one hand-computed case (or boundary pair) at a time.

Expected decisions are derived in the test from exact ``Fraction`` arithmetic plus the
documented roundings: products w*c truncated to UQ1.15, divisions by W_A through the
reciprocal mantissa ``ceil(2**(s+16) / W_A)`` (s = bit length of W_A), boost and priority
truncated, C clamped to 1.0, priority saturated at 0xFFFF; n counts the agreeing sources that
carry weight.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from sigfuse.contract import (CONF_ONE, PRIORITY_MAX, Decision, DecisionEmitted, DropReason,
                              Dropped, FusionParams, Pop, Popped, Side, Signal)
from sigfuse.engine import ReferenceEngine

BUY, SELL = int(Side.BUY), int(Side.SELL)
#: Power-of-two weights keep most divisions by W_A exact: 0.5, 0.25, 0.125, 0.125, then zero.
WEIGHTS = (16384, 8192, 4096, 4096, 0, 0, 0, 0)
#: UQ2.14 boosts for n = 1..8: 1.00 1.00 1.05 1.10 1.15 1.20 1.25 1.30.
BOOST = (16384, 16384, 17203, 18022, 18842, 19661, 20480, 21299)
THETA = 24576          # 0.75
QUORUM = 16384         # 0.5
MIN_CONF = 19661       # 0.6 rounded half to even from 19660.8
TTL = 1000
COOLDOWN = 100


def params(**overrides: object) -> FusionParams:
    values: dict[str, object] = dict(weights=WEIGHTS, consensus_threshold=THETA, quorum=QUORUM,
                                     min_confidence=MIN_CONF, vote_ttl_us=TTL,
                                     cooldown_us=COOLDOWN, boost=BOOST)
    values.update(overrides)
    return FusionParams(**values)  # type: ignore[arg-type]


def engine(**overrides: object) -> ReferenceEngine:
    return ReferenceEngine(params(**overrides), capacity=16, pair_slots=4)


def sig(ts: int, source: int, side: int, conf: int, edge: int, pair: int = 0) -> Signal:
    return Signal(ts, source, pair, side, conf, edge)


def contract_quotient(x: int, w_a: int) -> int:
    """x / W_A as the contract defines it; checked against the exact quotient."""
    shift = w_a.bit_length()
    mantissa = -(-(1 << (shift + 16)) // w_a)           # rounded up
    quotient = (x * mantissa) >> (shift + 16)
    exact = Fraction(x, w_a)
    if x >= 0:
        assert math.floor(exact) <= quotient < exact + Fraction(1, 2)
    else:
        assert math.floor(exact) - 1 <= quotient < 0
    return quotient


def fused(m: int, x: int, w_a: int, boost: int) -> tuple[int, int, int]:
    """(C, E, priority) from M, X = sum of w*e over A, W_A and the boost for n."""
    average = contract_quotient(m << 15, w_a)
    confidence = min(CONF_ONE, math.floor(Fraction(average * boost, 2**14)))
    edge = contract_quotient(x, w_a)
    priority = min(PRIORITY_MAX, math.floor(Fraction(confidence * edge, 2**11)))
    return confidence, edge, priority


def decisions(results: list) -> list[Decision]:
    return [r.decision for r in results if type(r) is DecisionEmitted]


# --- a first complete case -------------------------------------------------------------------------

def test_single_vote_meeting_quorum_emits_the_hand_computed_decision() -> None:
    conf = 26214                                   # to_q15(0.8)
    product = math.floor(Fraction(16384 * conf, 2**15))
    assert product == 13107
    # W_A = 16384 = 2**14: M / W_A is exact, 13107/16384 in UQ1.15 is 26214.
    c = math.floor(Fraction(product, 16384) * 2**15 * Fraction(BOOST[0], 2**14))
    e = math.floor(Fraction(16384 * 10, 16384))
    prio = math.floor(Fraction(c * e, 2**11))
    assert (c, e, prio) == (26214, 10, 127) == fused(product, 16384 * 10, 16384, BOOST[0])
    results = engine().process([sig(1000, 0, BUY, conf, 10)])
    assert results == [DecisionEmitted(Decision(1000, 0, BUY, c, e, prio, 0))]


# --- rule 1: stale signals ----------------------------------------------------------------------

def test_stale_signal_is_dropped_and_changes_nothing() -> None:
    eng = engine()
    assert eng.process([sig(1000, 1, BUY, CONF_ONE, 10)]) == []   # 0.25 < quorum
    stale = sig(999, 0, BUY, CONF_ONE, 10)                          # would emit if accepted
    assert eng.process([stale]) == [Dropped(DropReason.STALE, stale)]
    state = eng.fusion.pair_state(0)
    assert state.votes[0] is None
    assert state.last_side == Side.NONE
    assert eng.fusion.last_ts == 1000
    assert eng.fusion.stale_drops == 1
    assert len(eng.queue) == 0
    # An equal timestamp is not stale.
    later = eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    control = engine()
    control.process([sig(1000, 1, BUY, CONF_ONE, 10)])
    assert later == control.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert len(decisions(later)) == 1


def test_staleness_is_judged_against_the_last_accepted_signal_only() -> None:
    eng = engine()
    s900, s950 = sig(900, 1, BUY, CONF_ONE, 1), sig(950, 1, BUY, CONF_ONE, 1)
    results = eng.process([sig(1000, 1, BUY, CONF_ONE, 1), Pop(5000), s900, s950,
                           sig(1001, 1, BUY, CONF_ONE, 1)])
    # A pop does not move time; a stale signal does not either (950 is stale against 1000).
    assert results == [Popped(None), Dropped(DropReason.STALE, s900),
                       Dropped(DropReason.STALE, s950)]
    assert eng.fusion.last_ts == 1001


# --- rule 2: one vote per (pair, source), live while t - ts <= TTL ---------------------------------

def test_a_newer_signal_replaces_the_sources_vote() -> None:
    eng = engine()
    first = decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, 10)]))
    # If the buy vote still counted, B = S and nothing would be emitted.  Only the sell counts:
    # C = 16384/16384 = 1.0, E = 10, priority = 32768*10 >> 11 = 160; a side change ignores the
    # cooldown.
    second = decisions(eng.process([sig(1001, 0, SELL, CONF_ONE, 10)]))
    c, e, prio = fused(16384, 16384 * 10, 16384, BOOST[0])
    assert (c, e, prio) == (32768, 10, 160)
    assert first == [Decision(1000, 0, BUY, c, e, prio, 0)]
    assert second == [Decision(1001, 0, SELL, c, e, prio, 1)]


def test_vote_is_live_at_exactly_ttl_and_expired_one_microsecond_later() -> None:
    # quorum 0.75: only src0 (0.5) + src1 (0.25) together reach it.
    live = engine(quorum=24576)
    assert live.process([sig(10_000, 1, BUY, CONF_ONE, 10)]) == []
    got = decisions(live.process([sig(10_000 + TTL, 0, BUY, CONF_ONE, 30)]))
    # M = 16384 + 8192 = W_A = 24576 (not a power of two, but the whole quotient stays exact):
    # C = 1.0; E = (8192*10 + 16384*30) / 24576 = 23.33 -> 23; priority 32768*23 >> 11 = 368.
    c, e, prio = fused(24576, 8192 * 10 + 16384 * 30, 24576, BOOST[1])
    assert (c, e, prio) == (32768, 23, 368)
    assert got == [Decision(10_000 + TTL, 0, BUY, c, e, prio, 0)]

    expired = engine(quorum=24576)
    expired.process([sig(10_000, 1, BUY, CONF_ONE, 10)])
    assert expired.process([sig(10_000 + TTL + 1, 0, BUY, CONF_ONE, 30)]) == []


def test_ttl_zero_keeps_only_same_microsecond_votes() -> None:
    eng = engine(quorum=24576, vote_ttl_us=0)
    assert eng.process([sig(500, 1, BUY, CONF_ONE, 10)]) == []
    assert len(decisions(eng.process([sig(500, 0, BUY, CONF_ONE, 30)]))) == 1
    other = engine(quorum=24576, vote_ttl_us=0)
    assert other.process([sig(500, 1, BUY, CONF_ONE, 10), sig(501, 0, BUY, CONF_ONE, 30)]) == []


# --- rule 3: B = S means no side ----------------------------------------------------------------

def test_equal_sums_reset_the_last_side() -> None:
    half = (16384, 16384, 0, 0, 0, 0, 0, 0)
    # Control: same side again inside the cooldown is suppressed.
    control = engine(weights=half)
    control.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert control.process([sig(1020, 1, BUY, CONF_ONE, 20)]) == []

    eng = engine(weights=half)
    assert len(decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, 10)]))) == 1
    assert eng.process([sig(1010, 1, SELL, CONF_ONE, 10)]) == []     # B = S = 16384
    assert eng.fusion.pair_state(0).last_side == Side.NONE
    got = decisions(eng.process([sig(1020, 1, BUY, CONF_ONE, 20)]))
    # W_A = 32768 = 2**15: C = 1.0, E = (16384*10 + 16384*20) / 32768 = 15.
    c, e, prio = fused(32768, 16384 * 10 + 16384 * 20, 32768, BOOST[1])
    assert (c, e, prio) == (32768, 15, 240)
    assert got == [Decision(1020, 0, BUY, c, e, prio, 1)]


def test_all_products_zero_is_equal_sums() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert eng.fusion.pair_state(0).last_side == Side.BUY
    # Confidence 0: B = S = 0 -> last side none, so the same side re-emits inside the cooldown.
    assert eng.process([sig(1010, 0, BUY, 0, 10)]) == []
    assert eng.fusion.pair_state(0).last_side == Side.NONE
    assert len(decisions(eng.process([sig(1020, 0, BUY, CONF_ONE, 10)]))) == 1


# --- rules 4 and 5: consensus, quorum, C and E -----------------------------------------------------

def test_consensus_threshold_is_inclusive() -> None:
    # S = 8192*16384 >> 15 = 4096; B = 16384*24576 >> 15 = 12288 = 0.75 * (12288 + 4096).
    eng = engine()
    assert eng.process([sig(1000, 1, SELL, 16384, 10)]) == []
    got = decisions(eng.process([sig(1001, 0, BUY, 24576, 10)]))
    assert Fraction(12288, 12288 + 4096) == Fraction(THETA, 2**15)
    # W_A = 16384 equals the quorum exactly: also inclusive.
    c, e, prio = fused(12288, 16384 * 10, 16384, BOOST[0])
    assert (c, e, prio) == (24576, 10, 120)
    assert got == [Decision(1001, 0, BUY, c, e, prio, 0)]

    # One unit less: B = floor(16384*24575 / 2**15) = 12287 < 0.75 * 16383.
    below = engine()
    below.process([sig(1000, 1, SELL, 16384, 10)])
    assert below.process([sig(1001, 0, BUY, 24575, 10)]) == []


def test_below_quorum_is_no_consensus_even_when_unanimous() -> None:
    eng = engine()
    # src1 + src2 = 0.375 < 0.5, M = T.
    assert eng.process([sig(1000, 1, BUY, CONF_ONE, 10), sig(1001, 2, BUY, CONF_ONE, 10)]) == []
    assert eng.fusion.pair_state(0).last_side == Side.NONE
    # src3 lifts W_A to exactly 0.5.
    assert len(decisions(eng.process([sig(1002, 3, BUY, CONF_ONE, 10)]))) == 1


def test_no_consensus_resets_the_last_side() -> None:
    control = engine()
    control.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert control.process([sig(1020, 1, BUY, CONF_ONE, 10)]) == []   # cooldown

    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    # B = 16384, S = 8192: 2/3 < 0.75.
    assert eng.process([sig(1010, 1, SELL, CONF_ONE, 10)]) == []
    assert eng.fusion.pair_state(0).last_side == Side.NONE
    got = decisions(eng.process([sig(1020, 1, BUY, CONF_ONE, 10)]))
    assert [(d.ts_us, d.side, d.seq) for d in got] == [(1020, BUY, 1)]


def test_boost_follows_the_number_of_agreeing_sources() -> None:
    eng = engine()
    conf = 24576                                   # 0.75: products 6144, 3072, 3072
    assert eng.process([sig(1000, 1, BUY, conf, 10), sig(1001, 2, BUY, conf, 20)]) == []
    got = decisions(eng.process([sig(1002, 3, BUY, conf, 31)]))
    # n = 3 -> boost 1.05 (17203): C = floor(24576 * 17203 / 2**14) = floor(25804.5);
    # E = (8192*10 + 4096*20 + 4096*31) / 16384 = 17.75 -> 17.
    c, e, prio = fused(6144 + 3072 + 3072, 8192 * 10 + 4096 * 20 + 4096 * 31, 16384, BOOST[2])
    assert (c, e, prio) == (25804, 17, 214)
    assert got == [Decision(1002, 0, BUY, c, e, prio, 0)]


def test_zero_weight_votes_count_nowhere() -> None:
    # A weight-0 source (src7) on the winning side adds nothing to B, W_A or X, and does not
    # raise n: n = 3 -> boost 1.05, as without it.
    conf = 24576
    eng = engine()
    eng.process([sig(1000, 7, BUY, conf, 10_000), sig(1001, 1, BUY, conf, 10),
                 sig(1002, 2, BUY, conf, 20)])
    got = decisions(eng.process([sig(1003, 3, BUY, conf, 31)]))
    c, e, prio = fused(12288, 8192 * 10 + 4096 * 20 + 4096 * 31, 16384, BOOST[2])
    assert (c, e, prio) == (25804, 17, 214)
    assert got == [Decision(1003, 0, BUY, c, e, prio, 0)]


def test_a_lone_zero_weight_vote_is_a_tie() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    # src0 at confidence 0 and a sell from src7 (weight 0): B = S = 0, a tie.
    assert eng.process([sig(1010, 0, BUY, 0, 10), sig(1011, 7, SELL, CONF_ONE, 50)]) == []
    assert eng.fusion.pair_state(0).last_side == Side.NONE


def test_confidence_is_clamped_to_one() -> None:
    boost = BOOST[:2] + (32768,) + BOOST[3:]        # 2.0 for n = 3
    eng = engine(boost=boost)
    got = decisions(eng.process([sig(1000, 1, BUY, CONF_ONE, 8), sig(1001, 2, BUY, CONF_ONE, 8),
                                 sig(1002, 3, BUY, CONF_ONE, 8)]))
    assert [d.confidence for d in got] == [CONF_ONE]


def test_edge_is_the_weighted_mean_over_the_agreeing_side_only() -> None:
    eng = engine()
    # A sell vote with a huge edge must not leak into the buy side's E.
    eng.process([sig(1000, 3, SELL, CONF_ONE, 30_000)])
    got = decisions(eng.process([sig(1001, 0, BUY, CONF_ONE, 12), sig(1002, 1, BUY, CONF_ONE, 4)]))
    # First: B = 16384, S = 4096, 0.8 >= 0.75; E = 12.  Second: inside the cooldown, same side.
    assert [(d.side, d.edge_bps) for d in got] == [(BUY, 12)]


# --- rule 6: minimum confidence, positive edge, cooldown -------------------------------------------

def test_min_confidence_is_inclusive_and_does_not_reset_the_side() -> None:
    conf = 16384                                    # 0.5: C = 0.5 * 1.05 = 17203
    low = engine()
    low.process([sig(1000, 1, BUY, conf, 10), sig(1001, 2, BUY, conf, 10)])
    assert low.process([sig(1002, 3, BUY, conf, 10)]) == []

    exact = engine(min_confidence=17203)
    exact.process([sig(1000, 1, BUY, conf, 10), sig(1001, 2, BUY, conf, 10)])
    assert [d.confidence for d in decisions(exact.process([sig(1002, 3, BUY, conf, 10)]))] == [17203]

    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert eng.process([sig(1010, 0, BUY, 16384, 10)]) == []          # C = 0.5 < 0.6
    assert eng.fusion.pair_state(0).last_side == Side.BUY
    assert eng.process([sig(1020, 0, BUY, CONF_ONE, 10)]) == []       # still in cooldown


@pytest.mark.parametrize("edge, emitted", [(-5, False), (0, False), (1, True)])
def test_fused_edge_must_be_positive(edge: int, emitted: bool) -> None:
    eng = engine()
    assert len(decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, edge)]))) == int(emitted)


def test_non_positive_edge_does_not_reset_the_side() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert eng.process([sig(1010, 0, BUY, CONF_ONE, -3)]) == []
    assert eng.fusion.pair_state(0).last_side == Side.BUY
    assert eng.process([sig(1020, 0, BUY, CONF_ONE, 10)]) == []


def test_whole_quotients_stay_exact() -> None:
    # src0 + src1 at c = 1.0, edge 1: W_A = 24576 is not a power of two, yet M / W_A = 1 and
    # X / W_A = 1 exactly: C = 1.0, E = 1, priority 32768 >> 11 = 16.
    assert contract_quotient(24576 * 1, 24576) == 1
    stream = [sig(1000, 1, BUY, CONF_ONE, 1), sig(1000, 0, BUY, CONF_ONE, 1)]
    assert decisions(engine().process(stream)) == [Decision(1000, 0, BUY, CONF_ONE, 1, 16, 0)]


def test_default_params_non_power_of_two_weight_sum() -> None:
    # Default weights: arbitrage 11469 + momentum 8192 = W_A = 19661.
    eng = ReferenceEngine(FusionParams(), capacity=4, pair_slots=2)
    got = decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, 10), sig(1000, 1, BUY, CONF_ONE, 20)]))
    c, e, prio = fused(19661, 11469 * 10 + 8192 * 20, 19661, 16384)
    assert Fraction(278530, 19661) == Fraction(11469 * 10 + 8192 * 20, 19661)   # 14.17
    assert (c, e, prio) == (CONF_ONE, 14, 224)
    assert got == [Decision(1000, 0, BUY, c, e, prio, 0)]


def test_cooldown_boundary() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    assert eng.process([sig(1000 + COOLDOWN - 1, 0, BUY, CONF_ONE, 10)]) == []
    got = decisions(eng.process([sig(1000 + COOLDOWN, 0, BUY, CONF_ONE, 10)]))
    assert [(d.ts_us, d.seq) for d in got] == [(1000 + COOLDOWN, 1)]
    # The cooldown runs from the last emission, not from the suppressed signal.
    assert eng.fusion.pair_state(0).last_emit_ts == 1000 + COOLDOWN


def test_side_change_ignores_the_cooldown() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    got = decisions(eng.process([sig(1001, 0, SELL, CONF_ONE, 10)]))
    assert [(d.side, d.seq) for d in got] == [(SELL, 1)]


def test_pairs_are_independent() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10, pair=0)])
    # In pair 1, src1 is alone (0.25 < quorum): pair 0's src0 vote does not count there.
    assert eng.process([sig(1001, 1, BUY, CONF_ONE, 10, pair=1)]) == []
    # Pair 0's emission 2 us ago puts no cooldown on pair 1.
    got = decisions(eng.process([sig(1002, 0, BUY, CONF_ONE, 10, pair=1)]))
    assert [(d.pair, d.side, d.seq) for d in got] == [(1, BUY, 1)]


# --- rule 7: priority and seq ------------------------------------------------------------------

@pytest.mark.parametrize("edge, expected", [
    (4095, 65520),            # 32768 * 4095 >> 11
    (4096, PRIORITY_MAX),     # 65536 saturates
    (32767, PRIORITY_MAX),
])
def test_priority_saturates(edge: int, expected: int) -> None:
    eng = engine(weights=(CONF_ONE,) + (0,) * 7)
    got = decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, edge)]))
    assert min(PRIORITY_MAX, CONF_ONE * edge >> 11) == expected
    assert [(d.confidence, d.edge_bps, d.priority) for d in got] == [(CONF_ONE, edge, expected)]


def test_seq_counts_decisions_across_pairs_and_wraps() -> None:
    eng = engine()
    eng.fusion.decisions = 2**32 - 2
    got = decisions(eng.process([sig(1000, 0, BUY, CONF_ONE, 10, pair=p) for p in range(3)]))
    assert [(d.pair, d.seq) for d in got] == [(0, 2**32 - 2), (1, 2**32 - 1), (2, 0)]


# --- parameter changes mid-stream -------------------------------------------------------------

def test_new_weights_apply_to_live_votes() -> None:
    stream_a = [sig(1000, 0, BUY, CONF_ONE, 10), sig(1001, 1, SELL, CONF_ONE, 10)]
    stream_b = [sig(1002, 0, BUY, CONF_ONE, 10)]
    control = engine()
    control.process(stream_a)
    assert control.process(stream_b) == []          # B = 16384, S = 8192: no consensus

    eng = engine()
    eng.process(stream_a)
    eng.set_params(params(weights=(16384, 0, 4096, 4096, 0, 0, 0, 0)))
    # The live sell vote from src1 now weighs 0: B = 16384, S = 0.
    got = decisions(eng.process(stream_b))
    assert got == [Decision(1002, 0, BUY, CONF_ONE, 10, 160, 1)]
    assert eng.params.weights[1] == 0


def test_new_weight_of_a_voting_source_applies_to_its_old_vote() -> None:
    eng = engine()
    assert eng.process([sig(1000, 1, BUY, CONF_ONE, 40)]) == []            # 0.25 < quorum
    eng.set_params(params(weights=(16384, 16384, 4096, 4096, 0, 0, 0, 0)))
    got = decisions(eng.process([sig(1001, 2, BUY, CONF_ONE, 8)]))
    # src1 now weighs 0.5: W_A = 16384 + 4096 = 20480; E = (16384*40 + 4096*8) / 20480 = 33.6.
    c, e, prio = fused(20480, 16384 * 40 + 4096 * 8, 20480, BOOST[1])
    assert got == [Decision(1001, 0, BUY, c, e, prio, 0)]
    assert e in (33, 34)


def test_new_ttl_applies_to_live_votes() -> None:
    eng = engine(quorum=24576)
    eng.process([sig(1000, 1, BUY, CONF_ONE, 10)])
    eng.set_params(params(quorum=24576, vote_ttl_us=50))
    assert eng.process([sig(1051, 0, BUY, CONF_ONE, 30)]) == []   # src1's vote is now expired


def test_set_params_example_with_default_weights() -> None:
    eng = ReferenceEngine(FusionParams(), capacity=4, pair_slots=2)
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10), sig(1000, 1, BUY, CONF_ONE, 20)])
    eng.set_params(FusionParams.from_real(weights=(0.25, 0.25, 0.20, 0.10, 0.05, 0.03, 0.02, 0.5)))
    # sentiment (1638) joins the old votes, now 8192 each: B = W_A = 18022, n = 3 (boost 1.05).
    c, e, prio = fused(18022, 8192 * 10 + 8192 * 20 + 1638 * 10, 18022, 17203)
    assert c == CONF_ONE
    assert eng.process([sig(2000, 4, BUY, CONF_ONE, 10)]) == []        # cooldown kept
    got = decisions(eng.process([sig(101_000, 4, BUY, CONF_ONE, 10)]))
    assert got == [Decision(101_000, 0, BUY, c, e, prio, 1)]


def test_set_params_keeps_the_pair_state() -> None:
    eng = engine()
    eng.process([sig(1000, 0, BUY, CONF_ONE, 10)])
    eng.set_params(params())
    assert eng.process([sig(1050, 0, BUY, CONF_ONE, 10)]) == []   # cooldown still in force
    eng.set_params(params(cooldown_us=50))
    assert len(decisions(eng.process([sig(1051, 0, BUY, CONF_ONE, 10)]))) == 1


# --- the engine around fusion: queue results and reset ------------------------------------------

def test_engine_reports_evictions_rejections_and_pops_in_order() -> None:
    eng = ReferenceEngine(params(weights=(CONF_ONE,) + (0,) * 7), capacity=1, pair_slots=4)
    d0 = Decision(1000, 0, BUY, CONF_ONE, 10, 160, 0)
    d1 = Decision(1001, 1, BUY, CONF_ONE, 20, 320, 1)
    d2 = Decision(1002, 2, BUY, CONF_ONE, 5, 80, 2)
    results = eng.process([sig(1000, 0, BUY, CONF_ONE, 10, pair=0),
                           sig(1001, 0, BUY, CONF_ONE, 20, pair=1),
                           sig(1002, 0, BUY, CONF_ONE, 5, pair=2),
                           Pop(1003), Pop(1004)])
    assert results == [DecisionEmitted(d0),
                       DecisionEmitted(d1), Dropped(DropReason.EVICTED, d0),
                       DecisionEmitted(d2), Dropped(DropReason.REJECTED, d2),
                       Popped(d1), Popped(None)]
    assert eng.pop() is None


def test_process_rejects_what_is_not_an_event() -> None:
    with pytest.raises(TypeError):
        engine().process([("signal", 1)])  # type: ignore[list-item]


def test_reset_forgets_votes_and_history_but_keeps_params() -> None:
    eng = engine(cooldown_us=10**6)
    eng.process([sig(5000, 0, BUY, CONF_ONE, 10)])
    eng.fusion.reset()
    assert eng.fusion.last_ts == 0
    assert eng.fusion.pair_state(0).votes == [None] * 8
    got = decisions(eng.process([sig(10, 0, BUY, CONF_ONE, 10)]))
    assert [(d.ts_us, d.seq) for d in got] == [(10, 0)]
    assert eng.fusion.params.cooldown_us == 10**6
