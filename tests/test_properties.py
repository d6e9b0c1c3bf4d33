"""Properties of the reference engine and queue, checked on random streams.

The most valuable one is the differential test: :class:`NaiveModel` below recomputes every
signal's outcome from scratch from the contract rules, slowly and obviously, and must agree with
:class:`~sigfuse.engine.ReferenceEngine` result for result, with random parameters changed
mid-stream.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass, field
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigfuse.contract import (BOOST_MAX, CONF_ONE, EDGE_MAX, EDGE_MIN, PRIORITY_MAX, SEQ_MODULUS,
                              Decision, DecisionEmitted, DropReason, Dropped, FusionParams,
                              PairTable, Pop, Popped, Signal, Source)
from sigfuse.engine import ReferenceEngine
from sigfuse.queue import DecisionQueue, PushOutcome
from sigfuse.synthetic import synthetic_events
from sigfuse.trace import run_trace

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: For the properties whose every example runs two or three engines.
LIGHT = settings(SETTINGS, max_examples=150)
PAIRS = 3
BUY, SELL, NONE = 0, 1, 2


# --- the naive model ---------------------------------------------------------------------------

def contract_divide(x: int, w_a: int) -> int:
    """x / W_A as the contract defines it: times ceil(2**(s+16) / W_A), shifted right by s+16
    (s = bit length of W_A); the shift floors, for negative x as well."""
    s = w_a.bit_length()
    mantissa = -(-(1 << (s + 16)) // w_a)
    return (x * mantissa) >> (s + 16)


@dataclass
class QueueEntry:
    decision: Decision
    push_no: int


@dataclass
class NaiveModel:
    """Rules 1-7 and the queue, recomputed from the raw votes on every signal."""
    params: FusionParams
    capacity: int
    votes: dict[tuple[int, int], Signal] = field(default_factory=dict)
    last_side: dict[int, int] = field(default_factory=dict)
    last_emit: dict[int, int] = field(default_factory=dict)
    last_ts: int = 0
    emitted: int = 0
    queue: list[QueueEntry] = field(default_factory=list)
    pushes: int = 0

    def run(self, events: list) -> list:
        out: list = []
        for event in events:
            if isinstance(event, Pop):
                out.append(Popped(self.pop()))
            else:
                out.extend(self.signal(event))
        return out

    def signal(self, s: Signal) -> list:
        p = self.params
        if s.ts_us < self.last_ts:                                  # rule 1
            return [Dropped(DropReason.STALE, s)]
        self.last_ts = s.ts_us
        self.votes[(s.pair, s.source)] = s                          # rule 2
        live = [v for (pair, _), v in self.votes.items()
                if pair == s.pair and s.ts_us - v.ts_us <= p.vote_ttl_us]

        def product(v: Signal) -> int:                              # w*c, truncated to UQ1.15
            return p.weights[v.source] * v.confidence // CONF_ONE

        b = sum(product(v) for v in live if v.side == BUY)         # rule 3
        s_ = sum(product(v) for v in live if v.side == SELL)
        if b == s_:
            self.last_side[s.pair] = NONE
            return []
        side = BUY if b > s_ else SELL                              # rule 4
        m, t = max(b, s_), b + s_
        agreeing = [v for v in live if v.side == side]
        w_a = sum(p.weights[v.source] for v in agreeing)
        n = sum(1 for v in agreeing if p.weights[v.source])      # weight-0 sources count nowhere
        consensus = (Fraction(m) >= Fraction(p.consensus_threshold, CONF_ONE) * t
                     and w_a >= p.quorum)                           # rule 5
        if not consensus:
            self.last_side[s.pair] = NONE                           # rule 6
            return []
        average = contract_divide(m * CONF_ONE, w_a)
        c = min(CONF_ONE, average * p.boost[n - 1] // (1 << 14))
        e = contract_divide(sum(p.weights[v.source] * v.edge_bps for v in agreeing), w_a)
        if c < p.min_confidence or e <= 0:
            return []
        if (side == self.last_side.get(s.pair, NONE)
                and s.ts_us - self.last_emit.get(s.pair, 0) < p.cooldown_us):
            return []
        self.last_side[s.pair] = side
        self.last_emit[s.pair] = s.ts_us
        priority = min(PRIORITY_MAX, c * e // (1 << 11))            # rule 7
        decision = Decision(s.ts_us, s.pair, side, c, e, priority, self.emitted % SEQ_MODULUS)
        self.emitted += 1
        return [DecisionEmitted(decision), *self.push(decision)]

    def push(self, decision: Decision) -> list:
        entry = QueueEntry(decision, self.pushes)
        self.pushes += 1
        if len(self.queue) < self.capacity:
            self.queue.append(entry)
            return []
        # Lowest priority; among equals the newest (largest push number).
        lowest = sorted(self.queue, key=lambda q: (q.decision.priority, -q.push_no))[0]
        if decision.priority > lowest.decision.priority:
            self.queue.remove(lowest)
            self.queue.append(entry)
            return [Dropped(DropReason.EVICTED, lowest.decision)]
        return [Dropped(DropReason.REJECTED, decision)]

    def pop(self) -> Decision | None:
        if not self.queue:
            return None
        best = sorted(self.queue, key=lambda q: (-q.decision.priority, q.push_no))[0]
        self.queue.remove(best)
        return best.decision


# --- strategies --------------------------------------------------------------------------------

q15 = st.one_of(st.sampled_from([0, 1, CONF_ONE // 2, CONF_ONE - 1, CONF_ONE]),
                st.integers(0, CONF_ONE))
durations = st.one_of(st.sampled_from([0, 1, 2, 3, 5, 8, 20]), st.integers(0, 60))


@st.composite
def fusion_params(draw: st.DrawFn) -> FusionParams:
    return FusionParams(
        weights=tuple(draw(st.lists(q15, min_size=8, max_size=8))),
        consensus_threshold=draw(q15),
        quorum=draw(q15),
        min_confidence=draw(st.one_of(q15, st.integers(0, CONF_ONE // 2))),
        vote_ttl_us=draw(durations),
        cooldown_us=draw(durations),
        boost=tuple(draw(st.lists(st.one_of(st.integers(0, BOOST_MAX),
                                            st.sampled_from([1 << 14, BOOST_MAX])),
                                  min_size=8, max_size=8))),
    )


edges = st.one_of(st.sampled_from([EDGE_MIN, -1, 0, 1, 2, EDGE_MAX]), st.integers(-40, 200),
                  st.integers(EDGE_MIN, EDGE_MAX))


@st.composite
def streams(draw: st.DrawFn, *, with_params: bool = False, max_size: int = 60) -> list:
    """Events (and, optionally, ('params', FusionParams) markers) with mostly rising time."""
    now = draw(st.integers(0, 30))
    out: list = []
    for _ in range(draw(st.integers(0, max_size))):
        kind = draw(st.sampled_from(["signal"] * 6 + ["pop", "stale"]
                                    + (["params"] if with_params else [])))
        if kind == "pop":
            out.append(Pop(now))
        elif kind == "params":
            out.append(("params", draw(fusion_params())))
        else:
            if kind == "stale":
                ts = max(0, now - draw(st.integers(1, 5)))
            else:
                now += draw(st.sampled_from([0, 0, 1, 1, 2, 3, 5, 8, 13, 21, 40]))
                ts = now
            out.append(Signal(ts, draw(st.integers(0, 7)), draw(st.integers(0, PAIRS - 1)),
                              draw(st.integers(0, 1)), draw(q15), draw(edges)))
    return out


def run_engine(engine: ReferenceEngine, stream: list) -> list:
    """Process a stream with ('params', p) markers as set_params calls between batches."""
    results: list = []
    batch: list = []
    for item in stream:
        if isinstance(item, tuple) and item and item[0] == "params":
            results += engine.process(batch)
            batch = []
            engine.set_params(item[1])
        else:
            batch.append(item)
    return results + engine.process(batch)


def run_model(model: NaiveModel, stream: list) -> list:
    results: list = []
    for item in stream:
        if isinstance(item, tuple) and item and item[0] == "params":
            model.params = item[1]
        else:
            results += model.run([item])
    return results


# --- differential: engine == naive model ---------------------------------------------------------

@SETTINGS
@given(params=fusion_params(), stream=streams(with_params=True), capacity=st.integers(1, 4))
def test_engine_matches_naive_model(params: FusionParams, stream: list, capacity: int) -> None:
    engine = ReferenceEngine(params, capacity=capacity, pair_slots=PAIRS)
    model = NaiveModel(params, capacity)
    assert run_engine(engine, stream) == run_model(model, stream)
    assert [d for d in engine.queue.snapshot()] == [
        q.decision for q in sorted(model.queue, key=lambda q: (-q.decision.priority, q.push_no))]


def _random_params(rng: random.Random) -> FusionParams:
    return FusionParams(
        weights=tuple(rng.choice([0, CONF_ONE, rng.randint(0, CONF_ONE)]) for _ in range(8)),
        consensus_threshold=rng.randint(CONF_ONE // 2, CONF_ONE),
        quorum=rng.randint(0, CONF_ONE),
        min_confidence=rng.randint(0, CONF_ONE * 3 // 4),
        vote_ttl_us=rng.choice([0, 1, rng.randint(0, 5000), 500_000]),
        cooldown_us=rng.choice([0, 1, rng.randint(0, 5000), 100_000]),
        boost=tuple(rng.randint(1 << 14, BOOST_MAX) for _ in range(8)),
    )


@pytest.mark.parametrize("seed", [1, 2, 3, 20240601])
def test_engine_matches_naive_model_on_long_seeded_streams(seed: int) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    events = list(synthetic_events(6000, pairs=4, seed=seed, pop_ratio=0.25, mean_gap_us=300))
    # Sprinkle stale signals and parameter changes into the synthetic stream.
    stream: list = []
    for event in events:
        if isinstance(event, Signal) and rng.random() < 0.02:
            stream.append(event._replace(ts_us=max(0, event.ts_us - rng.randint(1, 500))))
        if rng.random() < 0.002:
            stream.append(("params", _random_params(rng)))
        stream.append(event)
    params = FusionParams() if seed % 2 else _random_params(rng)
    engine = ReferenceEngine(params, capacity=6, pair_slots=4)
    expected = run_model(NaiveModel(params, 6), stream)
    assert run_engine(engine, stream) == expected
    kinds = {(type(r).__name__, getattr(r, "reason", None)) for r in expected}
    # The stream exercised emission, stale drops, eviction or rejection, and pops.
    assert ("DecisionEmitted", None) in kinds
    assert ("Dropped", DropReason.STALE) in kinds
    assert kinds & {("Dropped", DropReason.EVICTED), ("Dropped", DropReason.REJECTED)}
    assert ("Popped", None) in kinds


# --- TTL: an expired vote never counts ----------------------------------------------------------

@LIGHT
@given(params=fusion_params(), stream=streams(), data=st.data())
def test_expired_vote_never_counts(params: FusionParams, stream: list, data: st.DataObject) -> None:
    signals = [e for e in stream if isinstance(e, Signal)]
    start = min((e.ts_us for e in stream), default=0)
    # An old vote with a non-positive edge: on its own it cannot emit and leaves the pair's
    # last side at none, so its only possible effect is as a vote -- and it is expired before
    # the first event of the stream.
    gap = params.vote_ttl_us + data.draw(st.integers(1, 3))
    old = Signal(0, data.draw(st.integers(0, 7)),
                 data.draw(st.sampled_from([s.pair for s in signals] or [0])),
                 data.draw(st.integers(0, 1)), data.draw(q15), data.draw(st.integers(EDGE_MIN, 0)))
    shifted = [e._replace(ts_us=e.ts_us + gap - start) for e in stream]
    with_old = ReferenceEngine(params, capacity=3, pair_slots=PAIRS)
    without = ReferenceEngine(params, capacity=3, pair_slots=PAIRS)
    assert with_old.process([old]) == []
    assert with_old.process(shifted) == without.process(shifted)


# --- batching: results do not depend on how a stream is split -------------------------------------

@LIGHT
@given(params=fusion_params(), stream=streams(max_size=80), data=st.data())
def test_results_independent_of_batch_split(params: FusionParams, stream: list,
                                            data: st.DataObject) -> None:
    whole = ReferenceEngine(params, capacity=3, pair_slots=PAIRS).process(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    split = ReferenceEngine(params, capacity=3, pair_slots=PAIRS)
    results: list = []
    for lo, hi in zip([0, *cuts], [*cuts, len(stream)]):
        results += split.process(stream[lo:hi])
    assert results == whole


def _to_jsonl(stream: list) -> list[str]:
    lines = []
    for event in stream:
        if isinstance(event, Pop):
            lines.append(json.dumps({"op": "pop", "ts_us": event.ts_us}) + "\n")
        else:
            lines.append(json.dumps({
                "op": "signal", "ts_us": event.ts_us, "source": Source(event.source).wire_name,
                "pair": f"PAIR-{event.pair}", "side": ("buy", "sell")[event.side],
                "confidence": event.confidence / CONF_ONE, "edge_bps": event.edge_bps}) + "\n")
        if len(lines) % 7 == 3:
            lines.append("\n")          # blank lines are skipped
    return lines


@LIGHT
@given(params=fusion_params(), stream=streams(max_size=80), batch=st.integers(1, 40))
def test_run_trace_output_independent_of_batch_size(params: FusionParams, stream: list,
                                                    batch: int) -> None:
    lines = _to_jsonl(stream)
    outputs = []
    for size in (batch, 4096):
        out = io.StringIO()
        run_trace(ReferenceEngine(params, capacity=3, pair_slots=PAIRS), lines, out,
                  PairTable(PAIRS), batch_size=size)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    assert outputs[0].count("\n") == len(
        ReferenceEngine(params, capacity=3, pair_slots=PAIRS).process(stream))


# --- the queue against a sorted-list model ---------------------------------------------------------

queue_ops = st.lists(st.one_of(st.tuples(st.just("push"), st.integers(0, 6)),
                               st.just(("pop", None))), max_size=120)


@SETTINGS
@given(capacity=st.integers(1, 6), ops=queue_ops)
def test_queue_matches_sorted_model_and_stays_bounded(capacity: int, ops: list) -> None:
    queue = DecisionQueue(capacity)
    model: list[tuple[int, int, Decision]] = []        # (priority, push number, decision)
    most = 0
    for n, (op, priority) in enumerate(ops):
        if op == "pop":
            expected = None
            if model:
                # pop order: highest priority, oldest push first -- the head of this sort.
                expected = sorted(model, key=lambda e: (-e[0], e[1]))[0]
                model.remove(expected)
            assert queue.pop() == (expected[2] if expected else None)
        else:
            d = Decision(n, 0, 0, CONF_ONE, 1, priority, n)
            outcome = queue.push(d)
            if len(model) < capacity:
                model.append((priority, n, d))
                assert outcome == (PushOutcome.ACCEPTED, None)
            else:
                victim = sorted(model, key=lambda e: (e[0], -e[1]))[0]
                if priority > victim[0]:
                    model.remove(victim)
                    model.append((priority, n, d))
                    assert outcome == (PushOutcome.EVICTED, victim[2])
                else:
                    assert outcome == (PushOutcome.REJECTED, d)
        assert len(queue) == len(model) <= capacity
        most = max(most, len(model))
        assert queue.high_water == most
        assert queue.snapshot() == [e[2] for e in sorted(model, key=lambda e: (-e[0], e[1]))]
    assert [d.seq for d in iter(queue.pop, None)] == [
        e[1] for e in sorted(model, key=lambda e: (-e[0], e[1]))]
