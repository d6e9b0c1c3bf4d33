"""The contract's fixed-point conversions, reciprocal, parameters, records and pair slots.

Expected values come from exact ``Fraction`` arithmetic plus the documented rounding, never
from the code under test.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigfuse.contract import (BOOST_MAX, BOOST_ONE, CONF_ONE, DECISION_LAYOUT, RECIP_BITS,
                              SIGNAL_LAYOUT, SOURCE_SLOTS, FusionParams, MaskEntry, PairTable, PairTableFull,
                              Side, Source, format_confidence, from_boost, from_q15, layout_width,
                              reciprocal, to_boost, to_q15)


def half_up_micro(raw: int) -> int:
    """raw / 2**15 in millionths, rounded half up, by exact rational arithmetic."""
    exact = Fraction(raw * 10**6, 2**15)
    return math.floor(exact + Fraction(1, 2))


# --- to_q15 / to_boost: round half to even -----------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (0.0, 0),
    (1.0, CONF_ONE),
    (0.5, 16384),
    (1 / 65536, 0),        # 0.5 ulp -> even 0
    (3 / 65536, 2),        # 1.5 -> 2
    (5 / 65536, 2),        # 2.5 -> 2 (half to even, not half up)
    (7 / 65536, 4),        # 3.5 -> 4
    (0.8, 26214),          # 26214.4
    (0.6, 19661),          # 19660.8
    (0.35, 11469),         # 11468.8
])
def test_to_q15_rounds_half_to_even(value: float, expected: int) -> None:
    assert to_q15(value) == expected
    assert to_q15(value) == round(Fraction(value) * 2**15)


@given(st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
@settings(max_examples=300)
def test_to_q15_matches_exact_half_even(value: float) -> None:
    # round() of a Fraction is exact and rounds half to even.
    assert to_q15(value) == round(Fraction(value) * 2**15)


@pytest.mark.parametrize("value", [-1e-9, 1.0000001, math.nan, math.inf, -math.inf])
def test_to_q15_rejects_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match="within \\[0, 1\\]"):
        to_q15(value, name="quorum")


def test_to_q15_error_names_the_quantity() -> None:
    with pytest.raises(ValueError, match="^quorum "):
        to_q15(2.0, name="quorum")


def test_from_q15_inverts_exactly() -> None:
    for raw in (0, 1, 12345, CONF_ONE):
        assert to_q15(from_q15(raw)) == raw
        assert Fraction(from_q15(raw)) == Fraction(raw, 2**15)


@pytest.mark.parametrize("value, expected", [
    (0.0, 0),
    (1.0, BOOST_ONE),
    (1.05, 17203),         # 17203.2
    (1.10, 18022),         # 18022.4
    (1.30, 21299),         # 21299.2
    (1 / 32768, 0),        # 0.5 -> 0
    (3 / 32768, 2),        # 1.5 -> 2
    (5 / 32768, 2),        # 2.5 -> 2
    (BOOST_MAX / BOOST_ONE, BOOST_MAX),
])
def test_to_boost_rounds_half_to_even(value: float, expected: int) -> None:
    assert to_boost(value) == expected
    assert to_boost(value) == round(Fraction(value) * 2**14)


@pytest.mark.parametrize("value", [-0.01, 4.0, 65535.6 / 16384])
def test_to_boost_rejects_out_of_range(value: float) -> None:
    with pytest.raises(ValueError, match="boost"):
        to_boost(value)


def test_from_boost() -> None:
    assert from_boost(BOOST_ONE) == 1.0
    assert Fraction(from_boost(17203)) == Fraction(17203, 2**14)


# --- format_confidence: six places, half up ------------------------------------------------------

@pytest.mark.parametrize("raw, text", [
    (0, "0.000000"),
    (CONF_ONE, "1.000000"),
    (1, "0.000031"),           # 30.517578125 millionths
    (256, "0.007813"),         # 7812.5 exactly: half up, not half even (would be 0.007812)
    (16384, "0.500000"),
    (26214, "0.799988"),       # 799987.79...
    (CONF_ONE - 1, "0.999969"),  # 999969.48...
])
def test_format_confidence_examples(raw: int, text: str) -> None:
    assert format_confidence(raw) == text


def test_format_confidence_half_up_for_every_raw_value() -> None:
    ties = 0
    for raw in range(CONF_ONE + 1):
        micro = half_up_micro(raw)
        assert format_confidence(raw) == f"{micro // 10**6}.{micro % 10**6:06d}", raw
        ties += Fraction(raw * 10**6, 2**15).denominator == 2
    # The exhaustive sweep covers exact ties (where half up and half even differ).
    assert ties > 0


# --- reciprocal ---------------------------------------------------------------------------------

def contract_quotient(x: int, divisor: int) -> int:
    mantissa, shift = reciprocal(divisor)
    return (x * mantissa) >> (shift + RECIP_BITS)


def test_reciprocal_definition_and_bounds_for_every_weight_sum() -> None:
    # W_A is a sum of at most eight UQ1.15 weights: 1 .. 8 * 2**15.
    for divisor in range(1, SOURCE_SLOTS * CONF_ONE + 1):
        mantissa, shift = reciprocal(divisor)
        assert shift == divisor.bit_length()
        # Rounded up: the smallest m with m * divisor >= 2**(shift + 16).
        assert mantissa * divisor >= 2 ** (shift + RECIP_BITS) > (mantissa - 1) * divisor
        assert 2**16 < mantissa <= 2**17, divisor


def test_reciprocal_exact_for_powers_of_two() -> None:
    for k in range(0, 19):
        assert reciprocal(1 << k) == (1 << 17, k + 1)


@pytest.mark.parametrize("divisor", [0, -1])
def test_reciprocal_rejects_non_positive(divisor: int) -> None:
    with pytest.raises(ValueError):
        reciprocal(divisor)


@st.composite
def _quotients(draw: st.DrawFn) -> tuple[int, int]:
    """(x, W_A) in the ranges the contract divides: M * 2**15 with M <= W_A (the average), and
    0 <= sum w*e <= W_A * 2**15 (a positive edge)."""
    divisor = draw(st.one_of(st.integers(1, SOURCE_SLOTS * CONF_ONE),
                             st.sampled_from([1, 3, 19661, 24576, 26215, 3 * CONF_ONE,
                                              2**17 - 1, 2**18 - 1, SOURCE_SLOTS * CONF_ONE])))
    x = draw(st.one_of(st.integers(0, divisor * CONF_ONE),
                       st.sampled_from([0, divisor * CONF_ONE, divisor * CONF_ONE - 1]),
                       st.integers(0, CONF_ONE).map(lambda k: k * divisor)))
    return x, divisor


@given(_quotients())
@settings(max_examples=500)
def test_reciprocal_quotient_bounds(case: tuple[int, int]) -> None:
    x, divisor = case
    quotient = contract_quotient(x, divisor)
    exact = Fraction(x, divisor)
    # Never below the exact floor, less than half a unit above the exact quotient...
    assert math.floor(exact) <= quotient < exact + Fraction(1, 2)
    # ...so whole quotients are exact.
    if x % divisor == 0:
        assert quotient == x // divisor


@given(st.integers(1, SOURCE_SLOTS * CONF_ONE), st.integers(-CONF_ONE, -1))
@settings(max_examples=300)
def test_reciprocal_quotient_of_a_negative_edge_sum_stays_negative(divisor: int, edge: int) -> None:
    # X = W_A * e for a unanimous negative edge e: the floor shift may give e - 1, never >= 0.
    quotient = contract_quotient(divisor * edge, divisor)
    assert edge - 1 <= quotient <= edge < 0


def test_fused_edge_can_fall_below_int16_before_the_sign_test() -> None:
    # Unanimous edge -32768 with the default arbitrage + momentum weights (W_A = 19661): the
    # quotient is -32769, outside int16.  It never leaves the engine (E <= 0 is suppressed), but
    # an implementation must hold E in 17 bits -- or test the sign of X -- before rule 6.
    assert contract_quotient(19661 * -32768, 19661) == -32769


def test_whole_quotients_are_exact_where_a_floor_reciprocal_undershoots() -> None:
    # 24576 / 24576 = 1: floor(2**31 / 24576) = 87381 would give 32767; ceil gives 87382.
    assert reciprocal(24576) == (87382, 15)
    assert contract_quotient(24576 * 2**15, 24576) == 2**15
    # A unanimous 10 bps edge over the default arbitrage + momentum weights stays 10.
    assert contract_quotient(19661 * 10, 19661) == 10


def test_reciprocal_exhaustive_for_small_weight_sums() -> None:
    # Every average M / W_A for W_A < 512, in integers: x // d <= q and q < x/d + 1/2.
    for divisor in range(1, 512):
        for m in range(0, divisor + 1):
            x = m * CONF_ONE
            quotient = contract_quotient(x, divisor)
            assert x // divisor <= quotient and 2 * quotient * divisor < 2 * x + divisor, (m, divisor)


# --- parameters ---------------------------------------------------------------------------------

def test_default_params_are_the_seed_numbers() -> None:
    params = FusionParams()
    assert params.weights == tuple(round(Fraction(w) * 2**15) for w in
                                   (0.35, 0.25, 0.20, 0.10, 0.05, 0.03, 0.02, 0.0))
    assert params.weights == (11469, 8192, 6554, 3277, 1638, 983, 655, 0)
    assert params.consensus_threshold == 24576
    assert params.quorum == 16384
    assert params.min_confidence == 19661
    assert params.vote_ttl_us == 500_000
    assert params.cooldown_us == 100_000
    assert params.boost == (16384, 16384, 17203, 18022, 18842, 19661, 20480, 21299)
    assert FusionParams.from_real() == params


def test_from_real_pads_weights_with_zero() -> None:
    params = FusionParams.from_real(weights=[1.0, 0.5])
    assert params.weights == (CONF_ONE, 16384, 0, 0, 0, 0, 0, 0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(weights=(0,) * 7), "weights: need 8"),
    (dict(boost=(BOOST_ONE,) * 9), "boost: need 8"),
    (dict(weights=(CONF_ONE + 1,) + (0,) * 7), r"weights\[0\]"),
    (dict(weights=(0, -1) + (0,) * 6), r"weights\[1\]"),
    (dict(consensus_threshold=CONF_ONE + 1), "consensus_threshold"),
    (dict(quorum=True), "quorum"),
    (dict(min_confidence=0.5), "min_confidence"),
    (dict(vote_ttl_us=-1), "vote_ttl_us"),
    (dict(cooldown_us=2**32), "cooldown_us"),
    (dict(boost=(BOOST_MAX + 1,) + (0,) * 7), r"boost\[0\]"),
])
def test_params_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FusionParams(**kwargs)


def test_from_real_error_names_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"weights\[2\]"):
        FusionParams.from_real(weights=[0.1, 0.1, 1.5])
    with pytest.raises(ValueError, match=r"boost\[7\]"):
        FusionParams.from_real(boost=[1.0] * 7 + [4.5])


def test_reciprocal_and_mask_tables() -> None:
    weights = (16384, 8192, 0, 3, 0, 0, 0, 1)
    params = FusionParams(weights=weights)
    table = params.reciprocal_table()
    assert len(table) == 256
    assert table[0] == (0, 0)
    assert table[0b100] == (0, 0)                    # only a zero weight
    assert table[0b1] == (1 << 17, 15)               # 16384 = 2**14
    assert table[0b11] == (-(-2**31 // 24576), 15)
    assert table[0b10001011] == reciprocal(16384 + 8192 + 3 + 1)
    masks = params.mask_table()
    assert masks[0b10001011] == MaskEntry(16384 + 8192 + 3 + 1, *table[0b10001011], 4)
    # n counts only agreeing sources that carry weight: slot 2 weighs 0.
    assert masks[0b111] == MaskEntry(24576, *table[0b11], 2)
    assert masks[0b100] == MaskEntry(0, 0, 0, 0)
    assert all(masks[mask].n == sum(1 for i in range(8) if mask >> i & 1 and weights[i])
               for mask in range(256))


# --- records and names --------------------------------------------------------------------------

def test_layout_widths() -> None:
    assert layout_width(SIGNAL_LAYOUT) == 64 + 8 + 3 + 1 + 16 + 16
    assert layout_width(DECISION_LAYOUT) == 64 + 8 + 1 + 16 + 16 + 16 + 32
    assert [f.name for f in SIGNAL_LAYOUT if f.signed] == ["edge_bps"]


def test_source_and_side_wire_names() -> None:
    assert [s.wire_name for s in Source] == ["arbitrage", "momentum", "mean_reversion",
                                             "volatility", "sentiment", "news", "whale", "custom"]
    assert Source.from_wire("mean_reversion") is Source.MEAN_REVERSION
    with pytest.raises(ValueError, match="unknown source 'oracle'"):
        Source.from_wire("oracle")
    for name in ("Momentum", "NEWS", "whale ", "arb\u0131trage", "\u017fentiment"):
        with pytest.raises(ValueError, match="unknown source"):
            Source.from_wire(name)
    assert Side.from_wire("buy") is Side.BUY
    assert Side.from_wire("sell") is Side.SELL
    with pytest.raises(ValueError):
        Side.from_wire("none")


# --- pair table ---------------------------------------------------------------------------------

def test_pair_table_assigns_slots_in_order_of_first_sight() -> None:
    pairs = PairTable(3)
    assert pairs.slot("BTC/USDT") == 0
    assert pairs.slot("ETH/USDT") == 1
    assert pairs.slot("BTC/USDT") == 0
    assert pairs.names == ("BTC/USDT", "ETH/USDT")
    assert pairs.name(1) == "ETH/USDT"
    assert len(pairs) == 2


def test_pair_table_full() -> None:
    pairs = PairTable(2, ["A", "B"])
    assert pairs.slot("B") == 1
    with pytest.raises(PairTableFull, match="'C'.*all 2"):
        pairs.slot("C")
    # A failed assignment takes nothing.
    assert pairs.names == ("A", "B")
    assert isinstance(PairTableFull("x"), ValueError)


@pytest.mark.parametrize("slots", [0, 257])
def test_pair_table_slot_count_bounds(slots: int) -> None:
    with pytest.raises(ValueError, match="pair slots"):
        PairTable(slots)
    assert len(PairTable(256)) == 0
