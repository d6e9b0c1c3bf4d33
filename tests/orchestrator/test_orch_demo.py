"""The demo end to end (non-interactive) on every backend available here -- software, the virtual
board (sim), a board by URL -- the CLI around it, and ``sigfuse run`` stopped by SIGINT/SIGTERM
in a subprocess."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigfuse.config import SigfuseConfig
from sigfuse.orchestrator import cli
from sigfuse.orchestrator.demo import run_demo

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_writes_summary_journal_and_report(tmp_path, seed: int) -> None:
    out = io.StringIO()
    config = SigfuseConfig.model_validate({"demo": {"status_interval_s": 0.5}})
    summary = asyncio.run(run_demo(config, duration_s=2.0, frequency_hz=10.0, backend="software", pairs=10,
                                   seed=seed, out_dir=tmp_path / "run", out=out, serve_metrics=False))
    text = out.getvalue()
    assert "demo: backend software" in text
    assert "] backend=software signals=" in text               # plain status lines, no TTY
    assert "sigfuse demo: summary" in text
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ("signals", "decisions", "orders", "fills", "success_rate", "pnl", "health", "loop", "backend"):
        assert key in written, key
    assert written["backend"] == "software" and written["signals"] == summary["signals"] > 0
    assert set(written["signals_by_source"]) == {"arbitrage", "momentum", "mean_reversion", "volatility",
                                                 "sentiment", "news", "whale"}
    assert written["loop"]["cycles"] > 100 and "p99" in written["loop"]["jitter_us"]
    assert set(written["synthetic_feeds"]) == {"news", "sentiment", "trades"}
    report = (tmp_path / "run" / "report.html").read_text()
    assert report.count("<svg") >= 3 and "http" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")
    db = sqlite3.connect(tmp_path / "run" / "journal.sqlite")
    kinds = dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
    db.close()
    assert kinds["session_start"] == 1 and kinds["orchestrator_stop"] == 1
    assert kinds.get("order", 0) == written["orders"]


def _no_virtual_board() -> str | None:
    from sigfuse.orchestrator.simboard import toolchain_problem
    return toolchain_problem()


needs_verilator = pytest.mark.skipif(_no_virtual_board() is not None,
                                     reason=f"no virtual board here: {_no_virtual_board()}")


@needs_verilator
@pytest.mark.parametrize("backend", ["auto", "sim", "board"])
def test_demo_runs_on_the_virtual_board(tmp_path, backend: str, seed: int) -> None:
    """The demo end to end on every hardware backend available here: the default (auto), the
    virtual board it starts (sim), and a board by URL (a virtual board the test runs)."""
    from sigfuse.sim.board import VirtualBoard
    out = io.StringIO()
    config = SigfuseConfig.model_validate({"demo": {"status_interval_s": 0.5}})
    board = VirtualBoard("icebreaker").start() if backend == "board" else None
    try:
        summary = asyncio.run(run_demo(config, duration_s=2.0, frequency_hz=10.0, backend=backend, pairs=10,
                                       url=board.url if board else None, seed=seed, out_dir=tmp_path / "run",
                                       out=out, serve_metrics=False))
    finally:
        if board is not None:
            board.stop()
    text = out.getvalue()
    used = "board" if backend == "board" else "sim"
    assert f"demo: backend {used} -- " in text and "sigfuse demo: summary" in text
    if backend == "auto":
        assert "auto: the virtual icebreaker" in text
    assert f"] backend={used} signals=" in text
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["backend"] == written["backend_at_start"] == used
    assert (written["queue_capacity"], written["pair_slots"]) == (32, 16)
    assert written["signals"] == summary["signals"] > 0
    f = written["failover"]
    assert f["signals_primary"] == written["signals"] and f["mirror_mismatches"] == 0 and f["failovers"] == 0
    assert (tmp_path / "run" / "report.html").exists()


@pytest.mark.parametrize("argv, message", [
    (["--backend", "board"], "needs the board's URL"),
    (["--backend", "board", "--url", "socket://127.0.0.1:9"], "--backend board: "),
])
def test_demo_refuses_a_board_it_cannot_reach(tmp_path, argv, message, capsys, monkeypatch) -> None:
    monkeypatch.delenv("SIGFUSE_BOARD_URL", raising=False)
    assert cli.demo_main([*argv, "--duration", "1", "--out", str(tmp_path), "--no-metrics"]) == 2
    assert message in capsys.readouterr().err


def _start_run(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "SIGFUSE_METRICS__PORT": "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "sigfuse.orchestrator.cli", "run", "--journal", str(tmp_path / "j.sqlite"),
         "--venue-store", str(tmp_path / "v.sqlite"), "--log-level", "warning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)


def _wait_started(process: subprocess.Popen) -> list[str]:
    lines = []
    deadline = time.monotonic() + 30
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("run: started"):
            return lines
    process.kill()
    raise AssertionError("sigfuse run did not start:\n" + "".join(lines))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_cleanly_on_a_signal(tmp_path, signum: int) -> None:
    process = _start_run(tmp_path)
    try:
        lines = _wait_started(process)
        # The default backend: the virtual board when the toolchain is present.
        expected = "backend software" if _no_virtual_board() else "backend sim -- auto: the virtual icebreaker"
        assert any(expected in line for line in lines), lines
        time.sleep(1.0)
        process.send_signal(signum)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "journal flushed and closed" in err
    summary = json.loads(out)
    assert summary["stop_reason"] == signal.Signals(signum).name
    db = sqlite3.connect(tmp_path / "j.sqlite")
    try:
        stop = db.execute("SELECT data FROM events WHERE kind = 'orchestrator_stop'").fetchall()
        open_orders = db.execute("SELECT COUNT(*) FROM orders WHERE state IN ('new', 'submitted', "
                                 "'partially_filled')").fetchone()[0]
        sessions = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    finally:
        db.close()
    assert len(stop) == 1 and json.loads(stop[0][0])["reason"] == signal.Signals(signum).name
    assert open_orders == 0 and sessions == 1
    assert json.loads(stop[0][0])["signals"] == summary["signals"]
    assert not (tmp_path / "j.sqlite-wal").exists() or (tmp_path / "j.sqlite-wal").stat().st_size == 0


def test_run_refuses_an_unavailable_backend(capsys, monkeypatch) -> None:
    monkeypatch.delenv("SIGFUSE_BOARD_URL", raising=False)
    assert cli.main(["run", "--backend", "board", "--duration", "1"]) == 2
    assert "--backend board needs the board's URL" in capsys.readouterr().err


def test_the_script_runs_the_demo(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "run_orchestrator_demo.py"), "--duration=1", "--frequency=5.0",
         f"--out={tmp_path / 'run'}", "--no-metrics"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "report.html").exists()


def test_cli_backend_choices_match_the_backend_module() -> None:
    from sigfuse.orchestrator.backend import BACKEND_CHOICES
    assert cli.BACKEND_CHOICES == BACKEND_CHOICES
