"""Stimulus, reference and coverage for the gateware fusion pipeline's cocotb testbench.

The reference is :class:`sigfuse.fusion.FusionEngine` itself: the pipeline takes a parameter
write only once it is empty, so every signal sees exactly one parameter set and the engine's
``fuse`` / ``set_params`` in acceptance order *is* the clock-level model.  What this module adds:

* :func:`random_stimulus`, a constrained-random stream of signals and parameter writes (the
  same constraints as ``tests/gateware/test_fusion_sim.py``: hot pairs, back-to-back same-pair
  signals, steps landing exactly on a vote's TTL or cooldown boundary and one past it, long
  gaps, stale signals, idle gaps, extreme values, a "boundary" phase where θ and the quorum are
  met with equality; plus steps aimed at the cooldown of a pair's last emission), with weight
  changes among the writes;
* :class:`Coverage`, which judges each signal on the reference engine's own state just before
  and after it, so a count means the case really happened (not just that it was aimed at).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ...contract import (BOOST_MAX, CONF_FRAC_BITS, CONF_ONE, DURATION_MAX, EDGE_MAX, EDGE_MIN,
                         SOURCE_SLOTS, TS_MAX, FusionParams, Side, Signal)
from ...fusion import FusionEngine

__all__ = ["Event", "Stimulus", "Coverage", "COVERAGE_POINTS", "random_params",
           "boundary_params", "random_stimulus"]

#: A signal with the idle clocks the driver leaves before it, or a parameter write.
Event = tuple[int, Signal] | FusionParams


@dataclass
class Stimulus:
    """Events in order, after ``initial`` is written through the ``config`` stream."""
    initial: FusionParams
    events: list[Event] = field(default_factory=list)

    def signals(self) -> list[Signal]:
        return [e[1] for e in self.events if not isinstance(e, FusionParams)]


#: What the random streams must reach.  Reference-state cases: a tie (B == S with live votes),
#: M·2^15 == θ·T, W_A == quorum, a vote exactly ttl old (still live) and ttl + 1 old (dead),
#: a same-side signal exactly ``cooldown`` after the last emission (may emit) and one before
#: (may not), a step of 2^32 µs or more, a stale signal.  Timing cases (from the clocks the
#: signals were accepted in): same pair in consecutive clocks (the vote row and the emission
#: state are forwarded), a burst of 8+ signals in consecutive clocks, parameter writes, writes
#: that change the weights (the mask table refresh).
COVERAGE_POINTS = ("tie", "threshold_eq", "quorum_eq", "vote_age_eq_ttl", "vote_age_ttl_plus_1",
                   "cooldown_eq", "cooldown_minus_1", "long_gap", "stale",
                   "same_pair_back_to_back", "burst", "param_writes", "weight_changes")


class Coverage:
    """Counts of :data:`COVERAGE_POINTS` (and a few more), fed by the scoreboard."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = dict.fromkeys(COVERAGE_POINTS, 0)
        self._last_accept: tuple[int, int] | None = None   # (clock, pair) of the last live signal
        self._run = 0

    def missing(self, points=COVERAGE_POINTS) -> list[str]:
        return [name for name in points if not self.counts.get(name)]

    def param_write(self, old: FusionParams, new: FusionParams) -> None:
        self.counts["param_writes"] += 1
        self.counts["weight_changes"] += old.weights != new.weights
        self._last_accept = None
        self._run = 0

    def before(self, engine: FusionEngine, clock: int, sig: Signal) -> None:
        """The signal ``sig`` accepted in ``clock``, judged on the engine before ``fuse``."""
        c = self.counts
        p = engine.params
        if sig.ts_us < engine.last_ts:
            c["stale"] += 1
            self._run = 0
            self._last_accept = None   # a stale signal leaves at S1: nothing to forward
            return
        last = self._last_accept
        if last is not None and last[0] == clock - 1:
            self._run += 1
            c["same_pair_back_to_back"] += last[1] == sig.pair
        else:
            self._run = 1
        c["burst"] += self._run == 8
        self._last_accept = (clock, sig.pair)
        if sig.ts_us - engine.last_ts >= 1 << 32:
            c["long_gap"] += 1
        state = engine.pair_state(sig.pair)
        for source, vote in enumerate(state.votes):
            if vote is not None and source != sig.source:
                age = sig.ts_us - vote[0]
                c["vote_age_eq_ttl"] += age == p.vote_ttl_us
                c["vote_age_ttl_plus_1"] += age == p.vote_ttl_us + 1
        if state.last_side == sig.side:
            since = sig.ts_us - state.last_emit_ts
            c["cooldown_eq"] += since == p.cooldown_us
            c["cooldown_minus_1"] += since == p.cooldown_us - 1

    def after(self, engine: FusionEngine, sig: Signal) -> None:
        """The same signal, on the engine after ``fuse`` (its vote is on the board)."""
        c = self.counts
        p = engine.params
        state = engine.pair_state(sig.pair)
        horizon = sig.ts_us - p.vote_ttl_us
        live = [(source, v) for source, v in enumerate(state.votes)
                if v is not None and v[0] >= horizon]
        if not live:
            return
        buy = sum(v[2] for _, v in live if not v[1])
        sell = sum(v[2] for _, v in live if v[1])
        if buy == sell:
            c["tie"] += 1
            return
        winner = int(sell > buy)
        m = max(buy, sell)
        c["threshold_eq"] += (m << CONF_FRAC_BITS) == p.consensus_threshold * (buy + sell)
        mask = sum(1 << source for source, v in live if v[1] == winner)
        c["quorum_eq"] += p.mask_table()[mask].weight_sum == p.quorum


# --- stimulus -------------------------------------------------------------------------------

def random_params(rng: random.Random) -> FusionParams:
    """Parameters that put threshold, quorum, TTL and cooldown edges within reach."""
    style = rng.randrange(4)
    if style == 0:      # power-of-two and equal weights: exact ties and exact divisions
        weights = [rng.choice((0, 1 << 12, 1 << 13, 1 << 14, 1 << 15)) for _ in range(SOURCE_SLOTS)]
    elif style == 1:    # all equal
        weights = [rng.choice((1, 0x1000, 0x2AAB, CONF_ONE))] * SOURCE_SLOTS
    else:
        weights = [rng.choice((0, rng.randint(0, CONF_ONE), rng.randint(1, 64)))
                   for _ in range(SOURCE_SLOTS)]
    ttl = rng.choice((0, 1, rng.randint(2, 40), rng.randint(40, 400), DURATION_MAX,
                      rng.randint(1 << 20, DURATION_MAX)))
    cooldown = rng.choice((0, 1, rng.randint(2, 60), rng.randint(60, 600), DURATION_MAX))

    def q15() -> int:
        return rng.choice((0, 1, CONF_ONE // 2, CONF_ONE - 1, CONF_ONE,
                           rng.randint(0, CONF_ONE), rng.randint(0, CONF_ONE)))

    # M/T lands exactly on θ = 1, 3/4, 1/2 with equal products (unanimity, 3 of 4, ...).
    theta = rng.choice((CONF_ONE, CONF_ONE * 3 // 4, CONF_ONE // 2, q15(), q15()))
    # W_A lands exactly on the quorum when it is the sum of some weights.
    subset = sum(w for w in weights if rng.random() < 0.4)
    quorum = rng.choice((subset if subset <= CONF_ONE else q15(), q15()))
    boost = [rng.choice((rng.randint(0, BOOST_MAX), 1 << 14, BOOST_MAX,
                         rng.randint(1 << 14, 1 << 15))) for _ in range(SOURCE_SLOTS)]
    return FusionParams(weights=tuple(weights), consensus_threshold=theta, quorum=quorum,
                        min_confidence=rng.choice((0, rng.randint(0, CONF_ONE), CONF_ONE // 2)),
                        vote_ttl_us=ttl, cooldown_us=cooldown, boost=tuple(boost))


def boundary_params(rng: random.Random) -> FusionParams:
    """Four equal power-of-two weights: with full confidences M/T is k/4 and W_A is k/4 of the
    total, so the threshold (3/4 or 1) and the quorum are met with equality all the time, and
    two against two is a tie."""
    return FusionParams(weights=(1 << 13,) * 4 + (0,) * 4,
                        consensus_threshold=rng.choice((CONF_ONE * 3 // 4, CONF_ONE)),
                        quorum=rng.choice((1 << 13, 1 << 14, 3 << 13)), min_confidence=0,
                        vote_ttl_us=rng.randint(10, 40), cooldown_us=rng.randint(0, 20))


def random_stimulus(rng: random.Random, signals: int, *, pair_slots: int, phases: int = 4,
                    idle_rate: float = 0.15) -> Stimulus:
    """Phases of constrained-random signals with a parameter write between phases (every write
    but the one into the boundary phase changes the weights).

    Within a phase: a few hot pairs (back-to-back same-pair signals are common), steps of 0 µs,
    small steps, steps landing exactly on an earlier vote's TTL or cooldown boundary (and one
    past it), same-side signals exactly at the cooldown since the pair's last emission (and
    1 µs before), gaps of 2^32 µs and more, stale signals, idle clocks on the input
    (``idle_rate`` of the signals follow 1-4 idle clocks), extreme confidences and edges.
    """
    stim = Stimulus(random_params(rng))
    params = stim.initial
    # The engine runs alongside only to aim at cooldown edges: it knows when a pair last emitted.
    engine: FusionEngine | None = None
    ts = rng.choice((0, 3, rng.randint(0, 1 << 40)))
    recent: list[int] = [ts]
    per_phase = max(1, signals // phases)
    boundary_phase = rng.randrange(phases)
    for phase in range(phases):
        if phase:
            new = boundary_params(rng) if phase == boundary_phase else random_params(rng)
            while new.weights == params.weights and phase != boundary_phase:
                new = random_params(rng)
            params = new
            stim.events.append(params)
        elif phase == boundary_phase:
            params = stim.initial = boundary_params(rng)
        if engine is None:
            engine = FusionEngine(params, pair_slots=pair_slots)
        else:
            engine.set_params(params)
        sources = range(4) if phase == boundary_phase else range(SOURCE_SLOTS)
        hot = rng.sample(range(pair_slots), 1 if phase == boundary_phase
                         else rng.choice((1, 2, 3, pair_slots)))
        regime = {pair: rng.randrange(2) for pair in hot}
        confidences = (0, 1, CONF_ONE // 2, CONF_ONE - 1, CONF_ONE, 0xFFFF)
        recent_by_pair: dict[int, list[int]] = {pair: [] for pair in hot}
        for _ in range(per_phase):
            # The pair first: TTL and cooldown are per pair, so boundaries are aimed at its
            # own recent signals as often as at the stream's.
            pair = rng.choice(hot)
            emitted = engine.pair_state(pair)
            aim_cooldown = False
            r = rng.random()
            if r < 0.30:
                step = 0
            elif r < 0.70:
                step = rng.randint(1, max(1, min(params.vote_ttl_us, params.cooldown_us, 50) + 2))
            elif r < 0.78 and emitted.last_side != Side.NONE:
                # Same side, exactly at the cooldown since the pair's last emission or 1 µs before.
                aim_cooldown = True
                step = max(0, emitted.last_emit_ts + params.cooldown_us - rng.randrange(2) - ts)
            elif r < 0.90:
                # Land on (or one either side of) an earlier signal's TTL or cooldown boundary.
                base = rng.choice(recent_by_pair[pair] if recent_by_pair[pair]
                                  and rng.random() < 0.5 else recent)
                target = (base + rng.choice((params.vote_ttl_us, params.cooldown_us))
                          + rng.choice((0, 1, -1)))
                step = max(0, target - ts)
            elif r < 0.93:
                step = rng.choice(((1 << 32) - 1, 1 << 32, (1 << 32) + 1,
                                   rng.randint(1 << 32, 1 << 36)))
            else:
                step = rng.randint(0, 5000)
            if ts + step > TS_MAX - (1 << 40):
                step = 0
            ts += step
            stale = rng.random() < 0.03 and ts > 0
            sig_ts = ts - rng.randint(1, min(ts, 10)) if stale else ts
            if rng.random() < 0.05:
                regime[pair] ^= 1
            side = regime[pair] if rng.random() < 0.75 else regime[pair] ^ 1
            if aim_cooldown:
                side = emitted.last_side
            if phase == boundary_phase:
                conf = CONF_ONE if rng.random() < 0.9 else rng.randint(0, CONF_ONE)
            elif rng.random() < 0.3:
                conf = rng.choice(confidences)
            else:
                conf = rng.randint(CONF_ONE // 3, CONF_ONE)
            edge = (rng.choice((EDGE_MIN, EDGE_MAX, 0, 1, -1)) if rng.random() < 0.1
                    else rng.randint(-20, 60))
            idle = rng.randint(1, 4) if rng.random() < idle_rate else 0
            sig = Signal(sig_ts, rng.choice(sources), pair, side, conf, edge)
            engine.fuse(sig)
            stim.events.append((idle, sig))
            if not stale:
                recent.append(ts)
                del recent[:-8]
                recent_by_pair[pair].append(ts)
                del recent_by_pair[pair][:-4]
    return stim
