"""The JSONL trace format: events in, results out, byte-identical on every backend.

Input, one JSON object per line (blank lines are skipped)::

    {"op":"signal","ts_us":1000,"source":"momentum","pair":"BTC/USDT","side":"buy","confidence":0.8,"edge_bps":12}
    {"op":"pop","ts_us":1001}

Output, one line per result in processing order, compact, keys in a fixed order::

    {"event":"decision","ts_us":1000,"pair":"BTC/USDT","side":"buy","confidence":0.799988,"edge_bps":12,"priority":153,"seq":0}
    {"event":"pop","decision":{...}}            {"event":"pop","decision":null}
    {"event":"drop","reason":"stale","signal":{...}}
    {"event":"drop","reason":"evicted"|"rejected","decision":{...}}

Confidences are printed with exactly six decimals (:func:`~sigfuse.contract.format_confidence`),
everything else as integers or strings.  The formatting is done here, once, for every backend.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from .contract import (EDGE_MAX, EDGE_MIN, TS_MAX, Decision, DecisionEmitted, Dropped, Event,
                       PairTable, PairTableFull, Pop, Popped, Result, Side, Signal, Source,
                       format_confidence, to_q15)
from .engine import FusionBackend

__all__ = ["TraceInputError", "parse_event", "read_events", "format_result", "run_trace"]

_SIGNAL_FIELDS = ("op", "ts_us", "source", "pair", "side", "confidence", "edge_bps")
_POP_FIELDS = ("op", "ts_us")
_SIDE_NAMES = {int(Side.BUY): "buy", int(Side.SELL): "sell"}
_SOURCE_NAMES = {int(s): s.wire_name for s in Source}


class TraceInputError(ValueError):
    """A malformed input line.  ``str()`` names the line number and the field."""

    def __init__(self, line_no: int, field: str | None, message: str) -> None:
        self.line_no = line_no
        self.field = field
        where = f"line {line_no}" + (f", field {field!r}" if field else "")
        super().__init__(f"{where}: {message}")


def _integer(obj: dict, key: str, line_no: int, lo: int, hi: int) -> int:
    value = obj[key]
    # JSON has one number type; accept 12.0 for 12 but never 12.5, and never true/false.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TraceInputError(line_no, key, f"must be an integer, not {json.dumps(value)}")
    if isinstance(value, float):
        if not value.is_integer():
            raise TraceInputError(line_no, key, f"must be an integer, not {value!r}")
        value = int(value)
    if not lo <= value <= hi:
        raise TraceInputError(line_no, key, f"{value} is outside [{lo}, {hi}]")
    return value


def parse_event(line: str | bytes, line_no: int, pairs: PairTable) -> Event | None:
    """Parse one input line (text, or UTF-8 bytes) into an event (None for a blank line)."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise TraceInputError(line_no, None, f"not valid UTF-8 (byte {error.start + 1})") from None
    if not line.strip():
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as error:
        raise TraceInputError(line_no, None, f"bad JSON: {error.msg} at column {error.colno}") from None
    except (ValueError, RecursionError) as error:
        # e.g. an integer literal longer than Python's int conversion limit, or deep nesting.
        raise TraceInputError(line_no, None, f"bad JSON: {error}") from None
    if not isinstance(obj, dict):
        raise TraceInputError(line_no, None, "expected a JSON object")
    op = obj.get("op")
    if op == "signal":
        expected = _SIGNAL_FIELDS
    elif op == "pop":
        expected = _POP_FIELDS
    elif "op" not in obj:
        raise TraceInputError(line_no, "op", "missing field")
    else:
        raise TraceInputError(line_no, "op", f"must be 'signal' or 'pop', not {json.dumps(op)}")
    for key in expected:
        if key not in obj:
            raise TraceInputError(line_no, key, "missing field")
    for key in obj:
        if key not in expected:
            raise TraceInputError(line_no, key, f"unknown field for op {op!r}")
    ts_us = _integer(obj, "ts_us", line_no, 0, TS_MAX)
    if op == "pop":
        return Pop(ts_us)

    source = obj["source"]
    if not isinstance(source, str):
        raise TraceInputError(line_no, "source", f"must be a string, not {json.dumps(source)}")
    try:
        source_slot = int(Source.from_wire(source))
    except ValueError as error:
        raise TraceInputError(line_no, "source", str(error)) from None
    side = obj["side"]
    if side not in ("buy", "sell"):
        raise TraceInputError(line_no, "side", f"must be 'buy' or 'sell', not {json.dumps(side)}")
    confidence = obj["confidence"]
    # The range test also rejects NaN and infinities, and never converts a huge int to float.
    if (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
            or not 0 <= confidence <= 1):
        raise TraceInputError(line_no, "confidence", f"must be a number within [0, 1], not {json.dumps(confidence)}")
    edge = _integer(obj, "edge_bps", line_no, EDGE_MIN, EDGE_MAX)
    pair = obj["pair"]
    if not isinstance(pair, str) or not pair:
        raise TraceInputError(line_no, "pair", f"must be a non-empty string, not {json.dumps(pair)}")
    try:
        pair_slot = pairs.slot(pair)
    except PairTableFull as error:
        raise TraceInputError(line_no, "pair", str(error)) from None
    return Signal(ts_us, source_slot, pair_slot, 0 if side == "buy" else 1,
                  to_q15(float(confidence)), edge)


def read_events(lines: Iterable[str | bytes], pairs: PairTable) -> Iterator[Event]:
    """Parse lines lazily; raises :class:`TraceInputError` at the first malformed one."""
    for line_no, line in enumerate(lines, 1):
        event = parse_event(line, line_no, pairs)
        if event is not None:
            yield event


def _decision_json(d: Decision, pairs: PairTable) -> str:
    return (f'{{"ts_us":{d.ts_us},"pair":{json.dumps(pairs.name(d.pair))},'
            f'"side":"{_SIDE_NAMES[d.side]}","confidence":{format_confidence(d.confidence)},'
            f'"edge_bps":{d.edge_bps},"priority":{d.priority},"seq":{d.seq}}}')


def _signal_json(s: Signal, pairs: PairTable) -> str:
    return (f'{{"ts_us":{s.ts_us},"source":"{_SOURCE_NAMES[s.source]}",'
            f'"pair":{json.dumps(pairs.name(s.pair))},"side":"{_SIDE_NAMES[s.side]}",'
            f'"confidence":{format_confidence(s.confidence)},"edge_bps":{s.edge_bps}}}')


def format_result(result: Result, pairs: PairTable) -> str:
    """One result as its output line (without the newline)."""
    if type(result) is DecisionEmitted:
        return '{"event":"decision",' + _decision_json(result.decision, pairs)[1:]
    if type(result) is Popped:
        body = "null" if result.decision is None else _decision_json(result.decision, pairs)
        return f'{{"event":"pop","decision":{body}}}'
    if type(result) is Dropped:
        if type(result.record) is Signal:
            return (f'{{"event":"drop","reason":"{result.reason.wire_name}",'
                    f'"signal":{_signal_json(result.record, pairs)}}}')
        return (f'{{"event":"drop","reason":"{result.reason.wire_name}",'
                f'"decision":{_decision_json(result.record, pairs)}}}')
    raise TypeError(f"not a result: {result!r}")


@dataclass
class TraceSummary:
    events: int = 0
    results: int = 0


def run_trace(backend: FusionBackend, lines: Iterable[str | bytes], out: IO[str], pairs: PairTable, *,
              batch_size: int = 4096) -> TraceSummary:
    """Feed input lines through ``backend`` in batches and write one output line per result.

    On a malformed line the events before it are still processed and written, then the
    :class:`TraceInputError` propagates: nothing after it is processed.
    """
    summary = TraceSummary()
    batch: list[Event] = []

    def flush() -> None:
        # Take the batch before processing it: if the backend fails, the `finally` below must
        # not feed the same events again.
        events = batch[:]
        batch.clear()
        results = backend.process(events)
        summary.events += len(events)
        summary.results += len(results)
        if results:
            out.write("\n".join(format_result(r, pairs) for r in results))
            out.write("\n")

    try:
        for event in read_events(lines, pairs):
            batch.append(event)
            if len(batch) >= batch_size:
                flush()
    finally:
        if batch:
            flush()
        out.flush()
    return summary
