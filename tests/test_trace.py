"""The JSONL trace: output formatting, an end-to-end run, and malformed input.

Malformed input must exit 2 with one message naming the line and the field, no traceback; the
results of the lines before the bad one are written, nothing after it is processed.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sigfuse import cli
from sigfuse.contract import (CONF_ONE, Decision, DecisionEmitted, DropReason, Dropped,
                              PairTable, Pop, Popped, Signal)
from sigfuse.trace import TraceInputError, format_result, parse_event, read_events


@pytest.fixture(autouse=True)
def _no_config_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIGFUSE_"):
            monkeypatch.delenv(name)


def signal_line(ts: int = 1000, source: str = "arbitrage", pair: str = "BTC/USDT",
                side: str = "buy", confidence: object = 0.9, edge: object = 10, **extra: object) -> str:
    obj = {"op": "signal", "ts_us": ts, "source": source, "pair": pair, "side": side,
           "confidence": confidence, "edge_bps": edge, **extra}
    return json.dumps(obj)


# --- formatting -----------------------------------------------------------------------------------

def pairs_ab() -> PairTable:
    return PairTable(4, ["BTC/USDT", 'odd "pair"'])


def test_format_decision() -> None:
    d = Decision(1000, 0, 0, 26214, 10, 127, 0)
    assert format_result(DecisionEmitted(d), pairs_ab()) == (
        '{"event":"decision","ts_us":1000,"pair":"BTC/USDT","side":"buy","confidence":0.799988,'
        '"edge_bps":10,"priority":127,"seq":0}')


def test_format_pops() -> None:
    d = Decision(5, 1, 1, CONF_ONE, -3, 0, 4294967295)
    assert format_result(Popped(None), pairs_ab()) == '{"event":"pop","decision":null}'
    assert format_result(Popped(d), pairs_ab()) == (
        '{"event":"pop","decision":{"ts_us":5,"pair":"odd \\"pair\\"","side":"sell",'
        '"confidence":1.000000,"edge_bps":-3,"priority":0,"seq":4294967295}}')


def test_format_drops() -> None:
    s = Signal(999, 5, 0, 1, 0, -32768)
    assert format_result(Dropped(DropReason.STALE, s), pairs_ab()) == (
        '{"event":"drop","reason":"stale","signal":{"ts_us":999,"source":"news",'
        '"pair":"BTC/USDT","side":"sell","confidence":0.000000,"edge_bps":-32768}}')
    d = Decision(7, 0, 0, 256, 1, 0, 2)
    for reason in (DropReason.EVICTED, DropReason.REJECTED):
        line = format_result(Dropped(reason, d), pairs_ab())
        assert line == (
            f'{{"event":"drop","reason":"{reason.name.lower()}","decision":{{"ts_us":7,'
            '"pair":"BTC/USDT","side":"buy","confidence":0.007813,"edge_bps":1,"priority":0,'
            '"seq":2}}')
        assert json.loads(line)["decision"]["seq"] == 2


def test_format_rejects_other_objects() -> None:
    with pytest.raises(TypeError):
        format_result(Pop(1), pairs_ab())  # type: ignore[arg-type]


# --- parsing ------------------------------------------------------------------------------------

def test_parse_signal_and_pop() -> None:
    pairs = PairTable(4)
    event = parse_event(signal_line(source="mean_reversion", side="sell", confidence=0.8,
                                    edge=-7.0), 1, pairs)
    assert event == Signal(1000, 2, 0, 1, 26214, -7)
    assert parse_event('{"op":"pop","ts_us":12}', 2, pairs) == Pop(12)
    assert parse_event("   \n", 3, pairs) is None
    assert pairs.names == ("BTC/USDT",)


def test_read_events_counts_blank_lines() -> None:
    lines = ['{"op":"pop","ts_us":1}\n', "\n", '{"op":"pop","ts_us":2}\n', '{"op":"pop"}\n']
    events = read_events(lines, PairTable(1))
    assert next(events) == Pop(1)
    assert next(events) == Pop(2)
    with pytest.raises(TraceInputError) as info:
        next(events)
    assert (info.value.line_no, info.value.field) == (4, "ts_us")
    assert str(info.value) == "line 4, field 'ts_us': missing field"


# --- end to end ---------------------------------------------------------------------------------

CONFIG = """\
fusion:
  weights: {arbitrage: 0.5, momentum: 0.25, mean_reversion: 0, volatility: 0, sentiment: 0,
            news: 0, whale: 0}
"""


def test_trace_end_to_end(tmp_path: Path) -> None:
    (tmp_path / "cfg.yaml").write_text(CONFIG)
    lines = [
        signal_line(1000, "momentum", confidence=1, edge=40),       # 0.25 < quorum: nothing
        signal_line(1000, "arbitrage", confidence=0.75, edge=10),
        '{"op":"pop","ts_us":1001}',
        signal_line(999, "news", confidence=0.3, edge=-2, side="sell"),
        "",
        '{"op":"pop","ts_us":1002}',
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    # B = 8192 + (16384 * 24576 >> 15) = 20480, W_A = 24576, mantissa ceil(2**31/24576) = 87382:
    #   C = 20480 * 2**15 * 87382 >> 31 = 27306 (exact 27306.67), boost 1.0 for n = 2
    #   E = (8192*40 + 16384*10) * 87382 >> 31 = 20 (exact 20)
    #   priority = 27306 * 20 >> 11 = 266; confidence 27306/2**15 = 0.8333129... -> 0.833313
    # The stale signal echoes confidence 0.3 = 9830/2**15 = 0.29998779... -> 0.299988.
    decision = ('{"ts_us":1000,"pair":"BTC/USDT","side":"buy","confidence":0.833313,'
                '"edge_bps":20,"priority":266,"seq":0}')
    expected = [
        '{"event":"decision",' + decision[1:],
        '{"event":"pop","decision":' + decision + "}",
        '{"event":"drop","reason":"stale","signal":{"ts_us":999,"source":"news",'
        '"pair":"BTC/USDT","side":"sell","confidence":0.299988,"edge_bps":-2}}',
        '{"event":"pop","decision":null}',
    ]
    for batch in ("1", "2", "4096"):
        out = tmp_path / f"out{batch}.jsonl"
        assert cli.main(["trace", "--config", str(tmp_path / "cfg.yaml"), "--in",
                         str(tmp_path / "in.jsonl"), "--out", str(out), "--batch", batch]) == 0
        assert out.read_bytes() == ("\n".join(expected) + "\n").encode()


def test_trace_stdin_to_stdout(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"op":"pop","ts_us":1}\n'))
    assert cli.main(["trace"]) == 0
    assert capsys.readouterr().out == '{"event":"pop","decision":null}\n'


# --- malformed input ------------------------------------------------------------------------------

#: Three good lines: arbitrage (0.35) + momentum (0.25) reach the quorum and emit; a pop takes it.
GOOD = [signal_line(1000, "arbitrage"), signal_line(1001, "momentum"), '{"op":"pop","ts_us":1002}']
#: A line after the bad one that would produce a result if it were processed.
AFTER = '{"op":"pop","ts_us":1003}'

BAD_LINES = [
    # (bad line, field named in the message or None, text in the message)
    pytest.param('{"op":"signal","ts_us":', None, "bad JSON", id="bad-json"),
    pytest.param("[1, 2]", None, "JSON object", id="not-an-object"),
    pytest.param('{"op":"cancel","ts_us":5}', "op", "cancel", id="unknown-op"),
    pytest.param('{"ts_us":5}', "op", "missing", id="missing-op"),
    pytest.param(signal_line(source="oracle"), "source", "unknown source 'oracle'", id="unknown-source"),
    pytest.param(signal_line(source=3), "source", "string", id="source-not-a-string"),
    pytest.param(signal_line(side="hold"), "side", "hold", id="bad-side"),
    pytest.param(signal_line(confidence=1.5), "confidence", "1.5", id="confidence-above-1"),
    pytest.param(signal_line(confidence=-0.1), "confidence", "-0.1", id="confidence-below-0"),
    pytest.param(signal_line(confidence="0.5"), "confidence", "[0, 1]", id="confidence-string"),
    pytest.param(signal_line(confidence=10**400), "confidence", "[0, 1]", id="confidence-huge-int"),
    pytest.param(signal_line().replace('"confidence": 0.9', '"confidence": NaN'), "confidence",
                 "NaN", id="confidence-nan"),
    pytest.param(json.dumps({"op": "signal", "ts_us": 1, "source": "news", "pair": "X",
                             "side": "buy", "confidence": 0.5}), "edge_bps", "missing field",
                 id="missing-field"),
    pytest.param(signal_line(venue="binance"), "venue", "unknown field", id="unknown-field"),
    pytest.param('{"op":"pop","ts_us":5,"pair":"X"}', "pair", "unknown field", id="unknown-field-pop"),
    pytest.param(signal_line(ts=1000.5), "ts_us", "integer", id="ts-not-integer"),
    pytest.param(signal_line(ts="1000"), "ts_us", "integer", id="ts-string"),
    pytest.param(signal_line(ts=-1), "ts_us", "outside", id="ts-negative"),
    pytest.param(signal_line(ts=2**64), "ts_us", "outside", id="ts-beyond-64-bits"),
    pytest.param(signal_line(edge=2.5), "edge_bps", "integer", id="edge-not-integer"),
    pytest.param(signal_line(edge=32768), "edge_bps", "outside [-32768, 32767]", id="edge-above-int16"),
    pytest.param(signal_line(edge=-32769), "edge_bps", "outside", id="edge-below-int16"),
    pytest.param(signal_line(ts=True), "ts_us", "true", id="ts-bool"),
    pytest.param(signal_line(edge=False), "edge_bps", "false", id="edge-bool"),
    pytest.param(signal_line(confidence=True), "confidence", "true", id="confidence-bool"),
    pytest.param(signal_line(pair=""), "pair", "non-empty", id="pair-empty"),
    # json.loads raises a plain ValueError (not JSONDecodeError) past 4300 digits.
    pytest.param('{"op":"pop","ts_us":1' + "0" * 5000 + "}", None, "line 4", id="number-too-long"),
]


def run_cli(tmp_path: Path, lines: list[str], capsys: pytest.CaptureFixture[str],
            *extra: str) -> tuple[int, str, str]:
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = cli.main(["trace", "--in", str(tmp_path / "in.jsonl"), "--out", str(out), *extra])
    return code, out.read_text(encoding="utf-8"), capsys.readouterr().err


def good_prefix_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    sub = tmp_path / "good"
    sub.mkdir(exist_ok=True)
    code, out, _ = run_cli(sub, GOOD, capsys, *extra)
    assert code == 0
    return out


@pytest.mark.parametrize("bad, field, text", BAD_LINES)
def test_malformed_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str,
                        field: str | None, text: str) -> None:
    code, out, err = run_cli(tmp_path, [*GOOD, bad, AFTER], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert err.count("\n") == 1
    assert err.startswith("sigfuse trace: line 4")
    if field is not None:
        assert f"field {field!r}" in err
    assert text in err
    # The three lines before were processed and written; the pop after was not.
    assert out.splitlines()[0].startswith('{"event":"decision"')
    assert out == good_prefix_output(tmp_path, capsys)
    assert len(out.splitlines()) == 2


@pytest.mark.parametrize("batch", ["1", "2", "3"])
def test_malformed_line_at_every_batch_boundary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                batch: str) -> None:
    code, out, err = run_cli(tmp_path, [*GOOD, signal_line(edge=1e9), AFTER], capsys,
                             "--batch", batch)
    assert code == 2
    assert "line 4, field 'edge_bps'" in err
    assert out == good_prefix_output(tmp_path, capsys)


def test_pair_table_full(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cfg.yaml").write_text("fusion:\n  pair_slots: 1\n")
    code, out, err = run_cli(tmp_path, [*GOOD, signal_line(pair="ETH/USDT"), AFTER], capsys,
                             "--config", str(tmp_path / "cfg.yaml"))
    assert code == 2
    assert err.startswith("sigfuse trace: line 4, field 'pair': ")
    assert "'ETH/USDT'" in err and "all 1" in err
    assert "Traceback" not in err
    assert out == good_prefix_output(tmp_path, capsys)


def test_invalid_utf8_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in.jsonl").write_bytes(
        ("\n".join(GOOD) + "\n").encode() + b'{"op":"pop","ts_us":1003,"x":"\xff"}\n')
    try:
        code = cli.main(["trace", "--in", str(tmp_path / "in.jsonl"), "--out",
                         str(tmp_path / "out.jsonl")])
    except UnicodeDecodeError as error:
        pytest.fail(f"bug: a non-UTF-8 trace line escapes as a traceback ({error}); "
                    "expected exit 2 naming line 4")
    assert code == 2
    assert "line 4" in capsys.readouterr().err


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trace", "--in", str(tmp_path / "nope.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "nope.jsonl" in err


def test_unknown_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["trace", "--backend", "quantum", "--in", "-"]) == 2
    assert "unknown backend 'quantum'" in capsys.readouterr().err


def test_malformed_line_in_a_subprocess(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text("\n".join([*GOOD, signal_line(source="oracle"), AFTER]) + "\n")
    proc = subprocess.run([sys.executable, "-m", "sigfuse.cli", "trace", "--in",
                           str(tmp_path / "in.jsonl")], capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("SIGFUSE_")})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("sigfuse trace: line 4, field 'source'")
    assert [json.loads(line)["event"] for line in proc.stdout.splitlines()] == ["decision", "pop"]
