"""The sigfuse contract: record layouts, fixed-point formats and parameters, defined once.

Every implementation of fusion and queueing -- the Python reference engine, the Amaranth
gateware, the C link library -- derives its layouts and constants from this module, and
``docs/fusion.md`` explains the rules in prose.  Nothing here imports Amaranth, so the host can
use it on a machine without the HDL toolchain; ``sigfuse.gateware.layouts`` turns the field
lists below into ``lib.data.Struct`` layouts.

Fixed-point formats (all unsigned unless stated):

=================  ========  ===========================================================
quantity           format    notes
=================  ========  ===========================================================
weight             UQ1.15    16 bits, 1.0 = 0x8000, valid range [0, 1]
confidence         UQ1.15    16 bits, 1.0 = 0x8000, valid range [0, 1]
threshold, quorum  UQ1.15    θ and quorum; min_confidence too
boost              UQ2.14    16 bits, 1.0 = 0x4000, valid range [0, 4)
edge_bps           SQ16.0    signed 16-bit basis points
priority           UQ12.4    16 bits, saturating: 1/16 of a (confidence x bps)
ts_us              U64       microseconds; 64 bits never wrap (584 000 years)
seq                U32       decision number, wraps modulo 2**32
=================  ========  ===========================================================

Conversions from real numbers round half to even, exactly (``round(x * 2**15)`` on the IEEE
double, which is exact because the scale is a power of two).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Sequence

__all__ = [
    "CONF_FRAC_BITS", "CONF_ONE", "WEIGHT_ONE", "BOOST_FRAC_BITS", "BOOST_ONE",
    "PRIORITY_FRAC_BITS", "PRIORITY_MAX", "EDGE_MIN", "EDGE_MAX", "TS_MAX", "SEQ_MODULUS",
    "SOURCE_SLOTS", "Source", "Side", "DropReason", "Field", "SIGNAL_LAYOUT", "DECISION_LAYOUT",
    "FusionParams", "Signal", "Decision", "to_q15", "from_q15", "to_boost", "from_boost",
    "format_confidence", "reciprocal", "MaskEntry", "PairTable", "PairTableFull", "Pop", "DecisionEmitted",
    "Popped", "Dropped", "Event", "Result",
]

#: Fraction bits of weights, confidences, θ, quorum and min_confidence (UQ1.15).
CONF_FRAC_BITS: Final = 15
CONF_ONE: Final = 1 << CONF_FRAC_BITS
WEIGHT_ONE: Final = CONF_ONE
#: Fraction bits of the boost multipliers (UQ2.14): boosts above 1.0 must be representable.
BOOST_FRAC_BITS: Final = 14
BOOST_ONE: Final = 1 << BOOST_FRAC_BITS
BOOST_MAX: Final = (1 << 16) - 1
#: Priority = confidence x edge in UQ12.4, so ties between near-equal requests stay rare
#: while the queue comparators stay 16 bits wide.
PRIORITY_FRAC_BITS: Final = 4
PRIORITY_BITS: Final = 16
PRIORITY_MAX: Final = (1 << PRIORITY_BITS) - 1
EDGE_BITS: Final = 16
EDGE_MIN: Final = -(1 << (EDGE_BITS - 1))
EDGE_MAX: Final = (1 << (EDGE_BITS - 1)) - 1
#: Timestamps are 64-bit microsecond counters: wide enough that no wraparound can happen in any
#: run, so every time comparison in the contract is a plain unsigned comparison.
TS_BITS: Final = 64
TS_MAX: Final = (1 << TS_BITS) - 1
#: vote_ttl_us and cooldown_us are 32-bit registers (up to 71 minutes).
DURATION_BITS: Final = 32
DURATION_MAX: Final = (1 << DURATION_BITS) - 1
SEQ_BITS: Final = 32
SEQ_MODULUS: Final = 1 << SEQ_BITS
#: Reciprocal mantissa precision used for the two divisions by W_A (see :func:`reciprocal`).
RECIP_BITS: Final = 16

SOURCE_SLOTS: Final = 8
PAIR_SLOT_BITS: Final = 8
#: Hardware ceiling on pair slots (the slot number is an 8-bit field).
PAIR_SLOTS_MAX: Final = 1 << PAIR_SLOT_BITS


class Source(enum.IntEnum):
    """Signal sources.  The value is the source slot (and the index into the weight table)."""
    ARBITRAGE = 0
    MOMENTUM = 1
    MEAN_REVERSION = 2
    VOLATILITY = 3
    SENTIMENT = 4
    NEWS = 5
    WHALE = 6
    #: Slot 7 is free for a site-specific source; its default weight is 0.
    CUSTOM = 7

    @property
    def wire_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_wire(cls, name: str) -> "Source":
        # Compare with the printed names, never through str.upper(): it maps 'ı' to 'I' and
        # 'ſ' to 'S', which would let look-alike names through.
        for source in cls:
            if source.wire_name == name:
                return source
        raise ValueError(f"unknown source {name!r}; expected one of "
                         f"{', '.join(s.wire_name for s in cls)}")


class Side(enum.IntEnum):
    """Trade direction.  NONE only appears as a pair's 'last emitted side'."""
    BUY = 0
    SELL = 1
    NONE = 2

    @property
    def wire_name(self) -> str:
        return self.name.lower()

    @classmethod
    def from_wire(cls, name: str) -> "Side":
        if name == "buy":
            return cls.BUY
        if name == "sell":
            return cls.SELL
        raise ValueError(f"side must be 'buy' or 'sell', not {name!r}")


class DropReason(enum.IntEnum):
    STALE = 0
    EVICTED = 1
    REJECTED = 2

    @property
    def wire_name(self) -> str:
        return self.name.lower()


# --- record layouts ---------------------------------------------------------------------------

class Field(NamedTuple):
    """One field of a record layout: name, width in bits, and whether it is two's complement."""
    name: str
    width: int
    signed: bool = False
    doc: str = ""


#: A signal as it enters the fusion engine (host -> board).  Field order is LSB first.
SIGNAL_LAYOUT: Final[tuple[Field, ...]] = (
    Field("ts_us", TS_BITS, doc="microseconds, non-decreasing within a stream"),
    Field("pair", PAIR_SLOT_BITS, doc="pair slot"),
    Field("source", 3, doc="source slot (Source)"),
    Field("side", 1, doc="0 = buy, 1 = sell"),
    Field("confidence", 16, doc="UQ1.15"),
    Field("edge_bps", EDGE_BITS, signed=True, doc="signed basis points"),
)

#: A fused decision / execution request (board -> host, and the queue's payload).
DECISION_LAYOUT: Final[tuple[Field, ...]] = (
    Field("ts_us", TS_BITS, doc="timestamp of the signal that produced it"),
    Field("pair", PAIR_SLOT_BITS, doc="pair slot"),
    Field("side", 1, doc="0 = buy, 1 = sell"),
    Field("confidence", 16, doc="fused confidence C, UQ1.15"),
    Field("edge_bps", EDGE_BITS, signed=True, doc="fused edge E, signed bps"),
    Field("priority", PRIORITY_BITS, doc="C x E, UQ12.4, saturating"),
    Field("seq", SEQ_BITS, doc="decision number modulo 2**32"),
)


def layout_width(layout: Sequence[Field]) -> int:
    return sum(f.width for f in layout)


# --- fixed-point conversions ------------------------------------------------------------------

def to_q15(value: float, *, name: str = "value") -> int:
    """Convert a real number in [0, 1] to UQ1.15, rounding half to even."""
    if not (0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be within [0, 1], not {value!r}")
    return round(value * CONF_ONE)


def from_q15(raw: int) -> float:
    return raw / CONF_ONE


def to_boost(value: float, *, name: str = "boost") -> int:
    """Convert a boost multiplier to UQ2.14, rounding half to even."""
    raw = round(value * BOOST_ONE) if value >= 0 else -1
    if not (0 <= raw <= BOOST_MAX):
        raise ValueError(f"{name} must be within [0, {BOOST_MAX / BOOST_ONE:.5f}], not {value!r}")
    return raw


def from_boost(raw: int) -> float:
    return raw / BOOST_ONE


def format_confidence(raw: int) -> str:
    """A UQ1.15 confidence as a decimal with exactly six places, rounded half up.

    Done in integers (raw x 10**6 / 2**15 = raw x 15625 / 2**9) so that every language prints
    the same digits.
    """
    micro = (raw * 15625 + 256) >> 9
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"


def reciprocal(divisor: int) -> tuple[int, int]:
    """Normalized reciprocal of a positive W_A, as the gateware's table holds it.

    Returns ``(mantissa, shift)`` with ``shift = divisor.bit_length()`` and
    ``mantissa = ceil(2**(shift + RECIP_BITS) / divisor)``, so ``2**RECIP_BITS <= mantissa <=
    2**(RECIP_BITS + 1)`` (18 bits, or 17 when stored as ``mantissa - 2**RECIP_BITS``).

    ``x / divisor`` is then defined as ``(x * mantissa) >> (shift + RECIP_BITS)``; that is how the
    contract computes both divisions by W_A, in every backend.  Rounding the mantissa *up* makes
    the quotient exact whenever the true quotient is a whole number (two votes at confidence
    1.0 fuse to exactly 1.0), and for 0 <= x <= 2**15 * divisor it is never below the exact
    floor and less than half a unit above the exact quotient.  For negative x the shift floors,
    so the result may be one below; it only feeds the ``E > 0`` test, where that cannot matter.
    """
    if divisor <= 0:
        raise ValueError("reciprocal of a non-positive weight sum")
    shift = divisor.bit_length()
    return -(-(1 << (shift + RECIP_BITS)) // divisor), shift


class MaskEntry(NamedTuple):
    """What fusion needs to know about a set A of agreeing sources (a bit mask of slots)."""
    #: W_A, the sum of the sources' weights (UQ.15).
    weight_sum: int
    #: Reciprocal of W_A (see :func:`reciprocal`); (0, 0) when W_A = 0.
    mantissa: int
    shift: int
    #: n, the number of agreeing sources that carry weight -- the boost table's index (1..8).
    #: A source whose weight is 0 is switched off: its votes are kept but count nowhere.
    n: int


# --- parameters -------------------------------------------------------------------------------

DEFAULT_WEIGHTS: Final = (0.35, 0.25, 0.20, 0.10, 0.05, 0.03, 0.02, 0.0)
DEFAULT_BOOST: Final = (1.00, 1.00, 1.05, 1.10, 1.15, 1.20, 1.25, 1.30)


@dataclass(frozen=True)
class FusionParams:
    """The runtime parameters of fusion, in fixed point -- exactly what the registers hold.

    Build one from real numbers with :meth:`from_real`; the configuration layer does that.
    """
    weights: tuple[int, ...] = field(default_factory=lambda: tuple(to_q15(w) for w in DEFAULT_WEIGHTS))
    consensus_threshold: int = to_q15(0.75)
    quorum: int = to_q15(0.50)
    min_confidence: int = to_q15(0.60)
    vote_ttl_us: int = 500_000
    cooldown_us: int = 100_000
    boost: tuple[int, ...] = field(default_factory=lambda: tuple(to_boost(b) for b in DEFAULT_BOOST))

    def __post_init__(self) -> None:
        if len(self.weights) != SOURCE_SLOTS:
            raise ValueError(f"weights: need {SOURCE_SLOTS} entries, got {len(self.weights)}")
        if len(self.boost) != SOURCE_SLOTS:
            raise ValueError(f"boost: need {SOURCE_SLOTS} entries (n = 1..8), got {len(self.boost)}")
        for i, w in enumerate(self.weights):
            _check_range(f"weights[{i}]", w, 0, WEIGHT_ONE)
        for name in ("consensus_threshold", "quorum", "min_confidence"):
            _check_range(name, getattr(self, name), 0, CONF_ONE)
        for name in ("vote_ttl_us", "cooldown_us"):
            _check_range(name, getattr(self, name), 0, DURATION_MAX)
        for i, b in enumerate(self.boost):
            _check_range(f"boost[{i}]", b, 0, BOOST_MAX)

    @classmethod
    def from_real(cls, *, weights: Sequence[float] = DEFAULT_WEIGHTS,
                  consensus_threshold: float = 0.75, quorum: float = 0.50,
                  min_confidence: float = 0.60, vote_ttl_us: int = 500_000,
                  cooldown_us: int = 100_000,
                  boost: Sequence[float] = DEFAULT_BOOST) -> "FusionParams":
        weights = tuple(weights) + (0.0,) * (SOURCE_SLOTS - len(weights))
        return cls(
            weights=tuple(to_q15(w, name=f"weights[{i}]") for i, w in enumerate(weights)),
            consensus_threshold=to_q15(consensus_threshold, name="consensus_threshold"),
            quorum=to_q15(quorum, name="quorum"),
            min_confidence=to_q15(min_confidence, name="min_confidence"),
            vote_ttl_us=vote_ttl_us, cooldown_us=cooldown_us,
            boost=tuple(to_boost(b, name=f"boost[{i}]") for i, b in enumerate(boost)),
        )

    def mask_table(self) -> tuple[MaskEntry, ...]:
        """:class:`MaskEntry` for each of the 256 agreeing-source masks (index = mask).

        This is the table the gateware refreshes whenever a weight changes.  Masks whose
        weights sum to zero are never used by the rules -- a side with a positive weighted sum
        has a positive W_A -- and hold a zero reciprocal.
        """
        table = []
        for mask in range(1 << SOURCE_SLOTS):
            members = [w for i, w in enumerate(self.weights) if mask >> i & 1]
            total = sum(members)
            mantissa, shift = reciprocal(total) if total else (0, 0)
            table.append(MaskEntry(total, mantissa, shift, sum(1 for w in members if w)))
        return tuple(table)

    def reciprocal_table(self) -> tuple[tuple[int, int], ...]:
        """``(mantissa, shift)`` of 1/W_A for each of the 256 agreeing-source masks."""
        return tuple((e.mantissa, e.shift) for e in self.mask_table())


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not (lo <= value <= hi):
        raise ValueError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")


# --- records ----------------------------------------------------------------------------------

class Signal(NamedTuple):
    """One strategy signal, in contract units (pair is the slot number)."""
    ts_us: int
    source: int
    pair: int
    side: int
    confidence: int
    edge_bps: int


class Decision(NamedTuple):
    """One fused decision / execution request."""
    ts_us: int
    pair: int
    side: int
    confidence: int
    edge_bps: int
    priority: int
    seq: int


class Pop(NamedTuple):
    """A request to pop the highest-priority decision from the queue."""
    ts_us: int


class DecisionEmitted(NamedTuple):
    """Result: fusion emitted a decision (it has been pushed into the queue)."""
    decision: Decision


class Popped(NamedTuple):
    """Result of a :class:`Pop`: the decision taken from the queue, or None when empty."""
    decision: Decision | None


class Dropped(NamedTuple):
    """Result: something was dropped.  ``record`` is the stale :class:`Signal`, or the evicted or
    rejected :class:`Decision`."""
    reason: DropReason
    record: Signal | Decision


Event = Signal | Pop
Result = DecisionEmitted | Popped | Dropped


# --- pair slots -------------------------------------------------------------------------------

class PairTableFull(ValueError):
    pass


class PairTable:
    """Maps pair names to slots, in order of first appearance (or as configured up front).

    The board has a fixed number of pair slots, so the mapping is part of a run's state: every
    backend fed the same stream assigns the same slots.
    """

    def __init__(self, slots: int = 64, names: Sequence[str] = ()) -> None:
        if not 1 <= slots <= PAIR_SLOTS_MAX:
            raise ValueError(f"pair slots must be within [1, {PAIR_SLOTS_MAX}], not {slots}")
        self.slots = slots
        self._slot_of: dict[str, int] = {}
        self._names: list[str] = []
        for name in names:
            self.slot(name)

    def slot(self, name: str) -> int:
        """The slot of ``name``, assigning the next free one on first sight."""
        slot = self._slot_of.get(name)
        if slot is None:
            if len(self._names) >= self.slots:
                raise PairTableFull(f"pair {name!r} needs a slot but all {self.slots} are taken")
            slot = len(self._names)
            self._slot_of[name] = slot
            self._names.append(name)
        return slot

    def name(self, slot: int) -> str:
        return self._names[slot]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._names)

    def __len__(self) -> int:
        return len(self._names)
