"""The orchestrator on the virtual board (the product core in Verilator behind a TCP link), and
failover on the real thing: SIGKILL the board mid-run, every signal is accounted for and no
decision is lost or duplicated (against a pure reference run of the same events), restart the
board, probes, fail back.

Skipped without the Verilator toolchain (``sigfuse doctor``).  The model is built once and
cached; each virtual board starts in well under a second after that.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from sigfuse.config import SigfuseConfig
from sigfuse.contract import DecisionEmitted, Dropped, Pop, Popped, Signal
from sigfuse.engine import ReferenceEngine
from sigfuse.orchestrator.backend import BackendUnavailable, FailoverBackend, build_backend
from sigfuse.orchestrator.loop import Orchestrator
from sigfuse.orchestrator.settings import FailoverConfig
from sigfuse.orchestrator.simboard import VirtualBoardBackend, toolchain_problem
from sigfuse.synthetic import synthetic_events

_PROBLEM = toolchain_problem()
pytestmark = pytest.mark.skipif(_PROBLEM is not None, reason=f"no virtual board here: {_PROBLEM}")

# The iCEBreaker product build: what the virtual board reports and the orchestrator must adopt.
CAPACITY, SLOTS = 32, 16


@pytest.fixture(scope="module")
def virtual_board_built() -> None:
    from sigfuse.sim.board import build_board
    build_board("icebreaker")


def _decisions(results, kind):
    if kind is DecisionEmitted:
        return [r.decision for r in results if type(r) is DecisionEmitted]
    if kind is Popped:
        return [r.decision for r in results if type(r) is Popped and r.decision is not None]
    return [r.record for r in results if type(r) is Dropped and r.reason.wire_name in ("evicted", "rejected")]


def _content(decision):
    """A decision without its sequence number (a board restarted from reset numbers from 0)."""
    return decision._replace(seq=0)


@pytest.mark.parametrize("kind", ["sim", "board"])
def test_sigkill_the_virtual_board_mid_run_fails_over_and_back(kind: str, seed: int, virtual_board_built) -> None:
    """FailoverBackend over a virtual board, batch by batch (as the loop feeds it).

    ``sim``: the backend starts the board; its restart starts a new one.  ``board``: the test
    owns the board and restarts it on the same port; the backend reconnects to the URL.
    """
    from sigfuse.sim.board import VirtualBoard
    stream = list(synthetic_events(9000, pairs=10, seed=seed, pop_ratio=0.1))
    reference = ReferenceEngine(capacity=CAPACITY, pair_slots=SLOTS).process(stream)
    switches = []
    own_board = None
    params = SigfuseConfig().fusion.params()
    if kind == "board":
        own_board = VirtualBoard("icebreaker").start()
    # The configuration's queue (256) and pair slots (64) are not the board's: the backend adopts
    # the board's, for the standby too.
    backend = build_backend(kind, params, capacity=256, pair_slots=64, url=own_board.url if own_board else None,
                            config=FailoverConfig(failback_after_probes=3), on_switch=switches.append)
    batch, kill_at, restart_at = 50, 3000, 6000
    results: list = []
    failback_index = None
    try:
        assert (backend.capacity, backend.pair_slots) == (CAPACITY, SLOTS)
        assert (backend.fallback.capacity, backend.fallback.pair_slots) == (CAPACITY, SLOTS)
        for i in range(0, len(stream), batch):
            if i == kill_at:
                # SIGKILL: the board vanishes mid-run without a word.
                (backend.primary if kind == "sim" else own_board).kill()
            if i == restart_at:
                if kind == "board":
                    own_board = VirtualBoard("icebreaker", port=int(own_board.url.rsplit(":", 1)[1]))
                    own_board.start()
                backend.restart_primary()
                assert backend.active == "software" and backend.failback_pending
                assert all(backend.probe() for _ in range(3))
                failback_index = len(results)
            results += backend.process(stream[i:i + batch])
            if i < kill_at:
                assert backend.active == "primary", i
            elif i < restart_at:
                assert backend.active == "software", i
        assert backend.active == "primary"
        # Drain both queues at the end: what is left is accounted for too.
        end_ts = stream[-1].ts_us
        tail = backend.process([Pop(end_ts)] * (CAPACITY + backend.queue_depth() + 1))
        expected_tail = ReferenceEngine(capacity=CAPACITY, pair_slots=SLOTS)
        expected_tail.process(stream)
        reference_tail = expected_tail.process([Pop(end_ts)] * (CAPACITY + 1))

        c = backend.counters
        signals = sum(1 for e in stream if type(e) is Signal)
        # Every signal accounted for: acknowledged by the board, or processed (replayed or new)
        # by the software engine.
        assert c["signals"] == signals == c["signals_primary"] + c["signals_software"]
        killed = stream[kill_at:kill_at + batch]
        assert c["replayed_signals"] == sum(1 for e in killed if type(e) is Signal) > 0
        assert c["replayed_pops"] == sum(1 for e in killed if type(e) is Pop)
        assert c["signals_primary"] == sum(1 for e in stream[:kill_at] + stream[restart_at:] if type(e) is Signal)
        assert c["failovers"] == 1 and c["failbacks"] == 1 and c["mirror_mismatches"] == 0
        # Up to the failback the results are exactly the reference's, decision numbers included:
        # the batch the board never answered was replayed, nothing lost, nothing invented.
        assert results[:failback_index] == reference[:failback_index]
        # Over the whole run, no decision lost or duplicated: each decision emitted is popped,
        # dropped from the queue, or still queued at the end -- exactly once.
        everything = results + tail
        emitted = Counter(_decisions(everything, DecisionEmitted))
        gone = Counter(_decisions(everything, Popped)) + Counter(_decisions(everything, Dropped))
        assert emitted == gone and sum(emitted.values()) > 100
        # And they are the reference run's decisions (content; a board restarted from reset
        # numbers its decisions from 0).
        got = Counter(map(_content, _decisions(everything, DecisionEmitted)))
        want = Counter(map(_content, _decisions(reference + reference_tail, DecisionEmitted)))
        assert got == want
        # Both switches logged, counted and timed.
        assert [s.kind for s in backend.switches] == [s.kind for s in switches] == ["failover", "failback"]
        failover, failback = switches
        assert failover.signals == c["replayed_signals"] and failover.detect_s >= 0 and failover.switch_s > 0
        assert "DeviceGone" in failover.reason or "LinkTimeout" in failover.reason, failover.reason
        assert failback.switch_s > 0 and failback.signals == c["warmup_signals"]
        assert c["restarts"] == 1 and c["probes"] >= 3
    finally:
        backend.close()
        if own_board is not None and own_board.alive:
            own_board.stop()
    if kind == "sim":
        # Closing the backend stopped its virtual board.
        assert backend.primary is None


def test_a_board_that_kept_running_is_not_failed_back_to(virtual_board_built) -> None:
    """Only the link died (the board kept its votes, queue and decision numbers): the board
    backend refuses it on reconnection, so the orchestrator stays on software until the board is
    reset -- never a failback onto state the software does not have."""
    from sigfuse.sim.board import VirtualBoard
    params = SigfuseConfig().fusion.params()
    stream = list(synthetic_events(600, pairs=10, seed=3, pop_ratio=0.1))
    with VirtualBoard("icebreaker") as board:
        backend = build_backend("board", params, capacity=CAPACITY, pair_slots=SLOTS, url=board.url)
        try:
            backend.process(stream[:300])
            backend.primary.board.close()            # the link drops; the board lives on
            backend.process(stream[300:])
            assert backend.active == "software" and backend.counters["failovers"] == 1
            with pytest.raises(ValueError, match="not fresh from reset"):
                backend.restart_primary()
            assert not backend.failback_pending and backend.counters["restart_failures"] == 1
        finally:
            backend.close()


def test_the_orchestrator_takes_the_boards_geometry(tmp_path, virtual_board_built) -> None:
    config = SigfuseConfig.model_validate({"metrics": {"enabled": False}})
    assert (config.queue.capacity, config.fusion.pair_slots) == (256, 64)
    orchestrator = Orchestrator(config, journal_path=tmp_path / "j.sqlite", backend="sim")
    try:
        assert orchestrator.queue_capacity == CAPACITY and orchestrator.pairs.slots == SLOTS
        assert isinstance(orchestrator.backend.primary, VirtualBoardBackend)
        assert orchestrator.backend.fallback.capacity == CAPACITY
    finally:
        asyncio.run(orchestrator.shutdown())
    assert not orchestrator.backend.primary
    with pytest.raises(BackendUnavailable, match="20 pairs do not fit in the board's 16 pair slots"):
        Orchestrator(config, journal_path=tmp_path / "k.sqlite", backend="sim", pairs=20)


def test_the_loop_on_the_virtual_board_fails_over_restarts_and_fails_back(tmp_path, seed: int,
                                                                          virtual_board_built) -> None:
    """The whole orchestrator on ``sim``: SIGKILL the virtual board mid-run; the health monitor
    restarts it (a new virtual board) with backoff, the prober fails back; every signal the
    sources made reached a fusion engine, and every decision is accounted for."""
    config = SigfuseConfig.model_validate({
        "health": {"interval_s": 0.1, "restart_backoff_s": [0.2, 0.4]},
        "metrics": {"enabled": False},
        "orchestrator": {"failover": {"probe_interval_s": 0.1, "failback_after_probes": 2}}})
    orchestrator = Orchestrator(config, journal_path=tmp_path / "j.sqlite", backend="sim", seed=seed,
                                source_poll_hz=20.0)
    backend: FailoverBackend = orchestrator.backend

    async def scenario() -> dict:
        await orchestrator.start()
        runner = asyncio.get_running_loop().create_task(orchestrator.run_loop())
        await asyncio.sleep(1.5)
        killed = backend.primary
        assert isinstance(killed, VirtualBoardBackend)
        first_pid = killed.virtual.pid
        killed.kill()
        for _ in range(200):
            await asyncio.sleep(0.05)
            if backend.counters["failbacks"]:
                break
        assert backend.counters["failbacks"] == 1, backend.counters
        assert backend.primary.virtual.pid != first_pid
        await asyncio.sleep(1.0)
        orchestrator.request_stop("test")
        await runner
        await orchestrator.shutdown()
        return orchestrator.summary()

    summary = asyncio.run(scenario())
    c = summary["failover"]
    assert c["failovers"] == 1 and c["failbacks"] == 1, c
    assert summary["backend"] == "sim" and summary["queue_capacity"] == CAPACITY and summary["pair_slots"] == SLOTS
    assert summary["signals"] == c["signals"] == c["signals_primary"] + c["signals_software"] > 0
    assert c["signals_primary"] > 0 and c["signals_software"] > 0
    assert c["mirror_mismatches"] == 0
    assert summary["health"]["link"]["restarts"] >= 1
    assert [s["kind"] for s in summary["switches"]] == ["failover", "failback"]
    assert all(s["switch_s"] > 0 for s in summary["switches"])
    # Every decision emitted was executed, dropped from the queue, or left unexecuted at stop.
    drops = summary["drops"].get("evicted", 0) + summary["drops"].get("rejected", 0)
    assert summary["decisions"] == summary["decisions_executed"] + drops + summary["decisions_left_unexecuted"]
