"""Structured logging: JSON lines with ts, level, component, event and fields."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

from sigfuse.log import get_logger, setup_from_config, setup_logging

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _restore_sigfuse_logger() -> Iterator[None]:
    root = logging.getLogger("sigfuse")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        if handler not in saved[0]:
            handler.close()
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    root.propagate = saved[2]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_json_line_has_the_standard_keys_and_the_fields() -> None:
    stream = io.StringIO()
    setup_logging("info", console="json", stream=stream)
    get_logger("link").info("frame_dropped", reason="bad_crc", seq=41, raw=b"\x01\xff",
                            where=Path("/dev/ttyUSB1"))
    [entry] = json_lines(stream.getvalue())
    assert list(entry)[:4] == ["ts", "level", "component", "event"]
    assert TS.match(entry["ts"]), entry["ts"]
    assert entry == {"ts": entry["ts"], "level": "info", "component": "link",
                     "event": "frame_dropped", "reason": "bad_crc", "seq": 41,
                     "raw": "01ff", "where": "/dev/ttyUSB1"}


def test_levels_filter_and_are_lower_case() -> None:
    stream = io.StringIO()
    setup_logging("warning", console="json", stream=stream)
    log = get_logger("fusion")
    log.debug("hidden")
    log.info("hidden_too")
    log.warning("queue_high_water", depth=250)
    log.error("link_lost")
    entries = json_lines(stream.getvalue())
    assert [(e["level"], e["event"]) for e in entries] == [("warning", "queue_high_water"),
                                                           ("error", "link_lost")]
    assert not log.isEnabledFor(logging.INFO)


def test_hexdump_at_debug_level() -> None:
    stream = io.StringIO()
    setup_logging("debug", console="json", stream=stream)
    get_logger("link").hexdump("frame_out", b"\x00\x10\xab", port="loop://")
    [entry] = json_lines(stream.getvalue())
    assert (entry["level"], entry["event"], entry["bytes"], entry["length"], entry["port"]) == (
        "debug", "frame_out", "00 10 ab", 3, "loop://")
    quiet = io.StringIO()
    setup_logging("info", console="json", stream=quiet)
    get_logger("link").hexdump("frame_out", b"\x00")
    assert quiet.getvalue() == ""


def test_exceptions_are_included() -> None:
    stream = io.StringIO()
    setup_logging("info", console="json", stream=stream)
    try:
        raise RuntimeError("board gone")
    except RuntimeError:
        logging.getLogger("sigfuse.link").exception("link_failed")
    [entry] = json_lines(stream.getvalue())
    assert entry["component"] == "link"
    assert entry["event"] == "link_failed"
    assert "RuntimeError: board gone" in entry["exception"]


def test_rotating_file_handler_writes_json(tmp_path: Path) -> None:
    path = tmp_path / "sigfuse.log"
    setup_logging("info", file=str(path), max_bytes=400, backups=2, console="off")
    log = get_logger("orchestrator")
    for n in range(40):
        log.info("tick", n=n, padding="x" * 20)
    logging.getLogger("sigfuse").handlers[0].flush()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["sigfuse.log", "sigfuse.log.1", "sigfuse.log.2"]
    entries = [e for f in files for e in json_lines(f.read_text(encoding="utf-8"))]
    assert all(e["component"] == "orchestrator" and e["event"] == "tick" for e in entries)
    assert all(f.stat().st_size <= 400 for f in files)
    # The newest records are in the live file; older ones rotated out (backups = 2).
    assert json_lines(path.read_text())[-1]["n"] == 39
    assert len(entries) < 40


def test_console_text_when_forced() -> None:
    stream = io.StringIO()                     # not a terminal: "auto" would pick JSON
    setup_logging("info", console="text", stream=stream)
    get_logger("link").info("frame_dropped", reason="bad_crc", seq=41)
    line = stream.getvalue()
    assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} info    link         frame_dropped "
                        r"reason=bad_crc seq=41\n", line), line


def test_console_auto_is_json_off_a_terminal() -> None:
    stream = io.StringIO()
    setup_logging("info", console="auto", stream=stream)
    get_logger("x").info("started")
    assert json_lines(stream.getvalue())[0]["event"] == "started"


def test_setup_is_idempotent_and_does_not_propagate() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("info", console="json", stream=first)
    setup_logging("info", console="json", stream=second)
    get_logger("x").info("once")
    assert first.getvalue() == ""
    assert len(json_lines(second.getvalue())) == 1
    assert logging.getLogger("sigfuse").propagate is False


def test_console_off_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", console="off")
    get_logger("x").error("silent")
    err = capsys.readouterr().err
    assert err == "", (f"bug: console='off' without a file still prints {err!r} to stderr "
                       "(logging's last-resort handler; the sigfuse logger has no handler)")


def test_setup_from_config(tmp_path: Path) -> None:
    cfg = SimpleNamespace(level="debug", file=tmp_path / "a.log", max_bytes=10_000, backups=1,
                          console="off")
    setup_from_config(cfg)
    get_logger("health").debug("probe", ok=True)
    logging.getLogger("sigfuse").handlers[0].flush()
    [entry] = json_lines((tmp_path / "a.log").read_text())
    assert (entry["level"], entry["component"], entry["event"], entry["ok"]) == (
        "debug", "health", "probe", True)
