"""Failover from a primary backend to the software engine and back, with the stand-in primary
(:class:`ProcessEngine`: the reference engine in a child process behind pipes, killed with
SIGKILL), and how the backend is chosen.  Every signal is counted: acknowledged by the primary,
or processed -- replayed or new -- by the software engine.  The same on the virtual board:
``test_orch_virtual_board.py``."""

from __future__ import annotations

import asyncio

import pytest

from sigfuse.config import SigfuseConfig
from sigfuse.contract import DecisionEmitted, Pop, Popped, Signal
from sigfuse.engine import ReferenceEngine
from sigfuse.orchestrator.backend import (BackendUnavailable, FailoverBackend, LinkDown, ProcessEngine,
                                          build_backend, choose_backend)
from sigfuse.orchestrator.loop import Orchestrator
from sigfuse.orchestrator.settings import FailoverConfig
from sigfuse.synthetic import synthetic_events

SLOTS = 16


def events(seed: int, count: int = 12_000) -> list:
    return list(synthetic_events(count, pairs=10, seed=seed, pop_ratio=0.1))


def standin() -> ProcessEngine:
    return ProcessEngine(capacity=64, pair_slots=SLOTS)


def test_standin_is_a_faithful_backend(seed: int) -> None:
    stream = events(seed, 3000)
    expected = ReferenceEngine(capacity=64, pair_slots=SLOTS).process(stream)
    with standin() as engine:
        got = []
        for i in range(0, len(stream), 97):
            got += engine.process(stream[i:i + 97])
        assert got == expected
        engine.kill()
        with pytest.raises(LinkDown):
            engine.process(stream[:1])


def test_kill_mid_run_fails_over_counts_every_signal_and_fails_back(seed: int) -> None:
    stream = events(seed)
    reference = ReferenceEngine(capacity=64, pair_slots=SLOTS).process(stream)
    switches = []
    primary = standin()
    backend = FailoverBackend(ReferenceEngine(capacity=64, pair_slots=SLOTS), primary,
                              primary_factory=standin, config=FailoverConfig(failback_after_probes=3),
                              on_switch=switches.append)
    batch, kill_at, restart_at = 50, 4000, 8000
    results: list = []
    failback_index = None
    try:
        for i in range(0, len(stream), batch):
            if i == kill_at:
                primary.kill()
            if i == restart_at:
                backend.restart_primary()
                assert backend.active == "software" and backend.failback_pending
                assert all(backend.probe() for _ in range(3))
                failback_index = len(results)
            results += backend.process(stream[i:i + batch])
            if i < kill_at:
                assert backend.active == "primary"
            elif i < restart_at:
                assert backend.active == "software"
        assert backend.active == "primary"
        c = backend.counters
        signals = sum(1 for e in stream if type(e) is Signal)
        # Every signal accounted for: acknowledged by the primary or processed in software.
        assert c["signals"] == signals == c["signals_primary"] + c["signals_software"]
        # The batch in flight when the primary died was replayed, all of it.
        killed_batch = stream[kill_at:kill_at + batch]
        assert c["replayed_signals"] == sum(1 for e in killed_batch if type(e) is Signal)
        assert c["replayed_pops"] == sum(1 for e in killed_batch if type(e) is Pop)
        assert c["failovers"] == 1 and c["failbacks"] == 1 and c["mirror_mismatches"] == 0
        # Up to the failback, the results are exactly those of the reference engine alone: the
        # hot standby held the board's state, so no decision was lost or invented.
        assert results[:failback_index] == reference[:failback_index]
        decisions_before = sum(1 for r in results[:failback_index] if type(r) is DecisionEmitted)
        assert decisions_before == sum(1 for r in reference[:failback_index] if type(r) is DecisionEmitted)
        # Both switches were logged, counted and timed.
        assert [s.kind for s in switches] == ["failover", "failback"]
        assert switches[0].signals == c["replayed_signals"] and switches[0].switch_s >= 0
        assert "LinkDown" in switches[0].reason
        # After the failback the primary and the standby agree again (mirroring resumed).
        more = list(synthetic_events(2000, pairs=10, seed=seed + 1, pop_ratio=0.1,
                                     start_us=stream[-1].ts_us + 1))
        backend.process(more)
        assert backend.counters["mirror_mismatches"] == 0
    finally:
        backend.close()


def test_failback_carries_queued_decisions_over(seed: int) -> None:
    # Decisions left in the software queue at failback are answered first, none lost.
    stream = [e for e in events(seed, 4000) if type(e) is Signal]
    primary = standin()
    backend = FailoverBackend(ReferenceEngine(capacity=64, pair_slots=SLOTS), primary, primary_factory=standin,
                              config=FailoverConfig(failback_after_probes=1))
    try:
        primary.kill()
        emitted = sum(1 for r in backend.process(stream) if type(r) is DecisionEmitted)
        queued = backend.queue_depth()
        assert emitted > 0 and queued > 0
        backend.restart_primary()
        assert backend.probe()
        popped = [r.decision for r in backend.process([Pop(stream[-1].ts_us)] * (queued + 5))
                  if type(r) is Popped and r.decision is not None]
        assert backend.active == "primary"
        assert len(popped) == queued == backend.counters["carried_decisions"]
    finally:
        backend.close()


def test_a_failed_probe_drops_the_candidate() -> None:
    primary = standin()
    backend = FailoverBackend(ReferenceEngine(capacity=64, pair_slots=SLOTS), primary, primary_factory=standin)
    try:
        primary.kill()
        backend.process([Pop(0)])
        backend.restart_primary()
        backend._candidate.kill()  # dies again before the failback
        assert not backend.probe() and not backend.failback_pending
        assert backend.counters["probe_failures"] == 1 and backend.active == "software"
    finally:
        backend.close()


def test_auto_says_which_backend_and_why(monkeypatch) -> None:
    from sigfuse.orchestrator import simboard
    # No Verilator: auto falls back to software and says why; sim refuses with the same reason.
    monkeypatch.setattr(simboard, "toolchain_problem", lambda: "no Verilator >= 5.036 (test)")
    kind, why = choose_backend("auto")
    assert kind == "software" and "software reference engine" in why and "no Verilator" in why
    with pytest.raises(BackendUnavailable, match="--backend sim: the virtual board is not available: no Verilator"):
        choose_backend("sim")
    # Verilator present but the build fails: the same, with the build's error.
    monkeypatch.setattr(simboard, "toolchain_problem", lambda: None)

    def broken(board, *, progress=None):
        raise RuntimeError("verilator exited with status 1\nmore lines")
    monkeypatch.setattr(simboard, "prepare_virtual_board", broken)
    kind, why = choose_backend("auto")
    assert kind == "software" and "did not build (RuntimeError: verilator exited with status 1)" in why
    # Toolchain and build fine: the virtual board.
    monkeypatch.setattr(simboard, "prepare_virtual_board", lambda board, *, progress=None: None)
    kind, why = choose_backend("auto", board="ulx3s")
    assert kind == "sim" and "virtual ulx3s" in why
    assert choose_backend("board")[0] == "board" and choose_backend("software")[0] == "software"
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        choose_backend("fpga")


def test_board_backend_needs_a_reachable_board(monkeypatch) -> None:
    monkeypatch.delenv("SIGFUSE_BOARD_URL", raising=False)
    params = SigfuseConfig().fusion.params()
    with pytest.raises(BackendUnavailable, match="needs the board's URL"):
        build_backend("board", params, capacity=64, pair_slots=SLOTS)
    with pytest.raises(BackendUnavailable, match="--backend board: .*127.0.0.1:9"):
        build_backend("board", params, capacity=64, pair_slots=SLOTS, url="socket://127.0.0.1:9")


def test_a_long_build_is_announced(monkeypatch) -> None:
    import time as _time

    import sigfuse.sim.board as board_module
    from sigfuse.orchestrator import simboard
    heard: list[str] = []
    monkeypatch.setattr(board_module, "build_board", lambda board: _time.sleep(0.3) or "built")
    assert simboard.prepare_virtual_board("icebreaker", progress=heard.append, quiet_s=0.05) == "built"
    assert len(heard) == 2 and "building the virtual icebreaker with Verilator" in heard[0]
    assert "built in" in heard[1]
    # A cached build says nothing.
    heard.clear()
    monkeypatch.setattr(board_module, "build_board", lambda board: "cached")
    assert simboard.prepare_virtual_board("icebreaker", progress=heard.append) == "cached" and not heard


def test_orchestrator_fails_over_restarts_and_fails_back(tmp_path, seed: int) -> None:
    """The whole loop on the stand-in: kill it, the health monitor restarts it with backoff, the
    prober fails back; every signal the sources made reached a fusion engine."""
    config = SigfuseConfig.model_validate({
        "health": {"interval_s": 0.1, "restart_backoff_s": [0.2, 0.4]},
        "metrics": {"enabled": False}})
    backend = build_backend("standin", config.fusion.params(), capacity=config.queue.capacity,
                            pair_slots=config.fusion.pair_slots,
                            config=FailoverConfig(probe_interval_s=0.1, failback_after_probes=2))
    orchestrator = Orchestrator(config, journal_path=tmp_path / "j.sqlite", backend=backend, seed=seed,
                                source_poll_hz=20.0)

    async def scenario() -> dict:
        await orchestrator.start()
        loop = asyncio.get_running_loop()
        runner = loop.create_task(orchestrator.run_loop())
        await asyncio.sleep(0.6)
        killed = backend.primary
        assert isinstance(killed, ProcessEngine)
        killed.kill()
        for _ in range(100):
            await asyncio.sleep(0.05)
            if backend.counters["failbacks"]:
                break
        await asyncio.sleep(0.3)
        orchestrator.request_stop("test")
        await runner
        await orchestrator.shutdown()
        return orchestrator.summary()

    summary = asyncio.run(scenario())
    c = summary["failover"]
    assert c["failovers"] == 1 and c["failbacks"] == 1, c
    assert summary["backend"] == "standin"
    assert summary["signals"] == c["signals"] == c["signals_primary"] + c["signals_software"]
    assert c["mirror_mismatches"] == 0
    assert summary["health"]["link"]["restarts"] >= 1
    assert [s["kind"] for s in summary["switches"]] == ["failover", "failback"]
