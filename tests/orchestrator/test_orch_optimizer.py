"""Each optimizer strategy fires under synthetic (injected) pressure and reverts when the pressure
is gone; hysteresis keeps a value at the threshold from moving anything."""

from __future__ import annotations

import pytest

from sigfuse.config import OptimizerConfig, SigfuseConfig
from sigfuse.orchestrator.optimizer import STRATEGIES, Knob, Measurements, Optimizer

CALM = Measurements(cpu_percent=20.0, memory_percent=30.0, loop_latency_ms=2.0,
                    stage_ms={"market": 0.2, "sources": 0.05, "fusion": 0.1, "execution": 0.1})


class Caches:
    def __init__(self) -> None:
        self.trimmed = 0
        self.restored = 0

    def trim_caches(self) -> int:
        self.trimmed += 1
        return 10

    def restore_caches(self) -> None:
        self.restored += 1


@pytest.fixture
def setup():
    state = {"max_in_flight": 50, "poll_scale": 1.0, "journal_window_s": 0.001, "fusion_batch_cycles": 1}
    knobs = {name: Knob(name, (lambda n=name: state[n]), (lambda v, n=name: state.__setitem__(n, v)))
             for name in state}
    caches = Caches()
    actions = []
    optimizer = Optimizer(OptimizerConfig(hysteresis_cycles=3), knobs=knobs, trimmables=[caches],
                          on_action=lambda s, a, d: actions.append((s, a)))
    return optimizer, state, caches, actions


def pressure(**changes) -> Measurements:
    fields = {"cpu_percent": CALM.cpu_percent, "memory_percent": CALM.memory_percent,
              "loop_latency_ms": CALM.loop_latency_ms, "stage_ms": dict(CALM.stage_ms)}
    stage = changes.pop("bottleneck", None)
    fields.update(changes)
    if stage:
        fields["stage_ms"][stage] = 150.0
    return Measurements(**fields)


def run(optimizer: Optimizer, reading: Measurements, times: int) -> None:
    for _ in range(times):
        optimizer.evaluate(reading)


@pytest.mark.parametrize(("strategy", "reading", "knob", "applied"), [
    ("task_reduction", pressure(cpu_percent=95.0), "max_in_flight", 25),
    ("polling_adjustment", pressure(cpu_percent=95.0), "poll_scale", 0.5),
    ("polling_adjustment", pressure(loop_latency_ms=150.0, bottleneck="sources"), "poll_scale", 0.5),
    ("journal_batching", pressure(loop_latency_ms=150.0, bottleneck="execution"), "journal_window_s", 0.010),
    ("performance_mode", pressure(loop_latency_ms=150.0, bottleneck="fusion"), "fusion_batch_cycles", 4),
    ("cache_trimming", pressure(memory_percent=90.0), None, None),
])
def test_strategy_fires_under_pressure_and_reverts(setup, strategy, reading, knob, applied) -> None:
    optimizer, state, caches, actions = setup
    before = dict(state)
    run(optimizer, reading, 2)
    assert not optimizer.active[strategy]          # hysteresis: not yet
    optimizer.evaluate(reading)
    assert optimizer.active[strategy]
    assert (strategy, "apply") in actions
    if knob is not None:
        assert state[knob] == pytest.approx(applied)
    else:
        assert caches.trimmed == 1
    run(optimizer, CALM, 2)
    assert optimizer.active[strategy]              # hysteresis on the way back too
    optimizer.evaluate(CALM)
    assert not optimizer.active[strategy]
    assert (strategy, "revert") in actions
    assert state == before
    if knob is None:
        assert caches.restored == 1
    assert optimizer.actions[(strategy, "apply")] == optimizer.actions[(strategy, "revert")] == 1
    entry = next(h for h in optimizer.history if h["strategy"] == strategy and h["action"] == "apply")
    assert "cpu_percent" in entry and "bottleneck" in entry


def test_the_dead_band_prevents_oscillation(setup) -> None:
    optimizer, state, _, actions = setup
    # CPU alternating around the warn level (70 %) and hovering in the dead band (59.5-70 %)
    # never acts; nor does a release after fewer than hysteresis_cycles calm readings.
    for cpu in [72, 65, 72, 65, 72, 65, 69, 69, 69, 69]:
        optimizer.evaluate(pressure(cpu_percent=cpu))
    assert actions == []
    run(optimizer, pressure(cpu_percent=80.0), 3)
    assert state["max_in_flight"] == 25
    for cpu in [50, 65, 50, 65, 50, 65]:
        optimizer.evaluate(pressure(cpu_percent=cpu))
    assert state["max_in_flight"] == 25            # never 3 calm readings in a row
    run(optimizer, pressure(cpu_percent=50.0), 3)
    assert state["max_in_flight"] == 50


def test_latency_without_the_matching_bottleneck_leaves_other_strategies_alone(setup) -> None:
    optimizer, state, _, _ = setup
    run(optimizer, pressure(loop_latency_ms=150.0, bottleneck="market"), 5)
    assert not any(optimizer.active.values())


def test_revert_all_restores_every_knob(setup) -> None:
    optimizer, state, caches, _ = setup
    before = dict(state)
    run(optimizer, pressure(cpu_percent=95.0, memory_percent=95.0), 3)
    assert sum(optimizer.active.values()) == 3
    optimizer.revert_all()
    assert state == before and not any(optimizer.active.values()) and caches.restored == 1


def test_the_orchestrator_knobs_are_real(tmp_path) -> None:
    """The strategies act on the running system's settings: in-flight limit, source rates, the
    journal's commit window, fusion batching (and failback preference), caches -- and show in
    the metrics."""
    from sigfuse.orchestrator.loop import Orchestrator
    config = SigfuseConfig.model_validate({"metrics": {"enabled": False}})
    o = Orchestrator(config, journal_path=tmp_path / "j.sqlite")
    try:
        assert set(o.optimizer.strategies) == set(STRATEGIES)
        hot = pressure(cpu_percent=99.0, memory_percent=99.0)
        run(o.optimizer, hot, 3)
        assert o.max_in_flight == 25 and o.poll_scale == 0.5
        assert o.sources[1]._window_len < o.sources[1].params.breakout_window  # momentum trimmed
        run(o.optimizer, pressure(loop_latency_ms=500.0, bottleneck="fusion"), 3)
        assert o.fusion_batch_cycles == 4 and o.backend.prefer_primary
        run(o.optimizer, pressure(loop_latency_ms=500.0, bottleneck="execution"), 3)
        assert o.journal.group_window_s == pytest.approx(0.010)
        text = _exposition(o)
        assert 'sigfuse_optimizer_actions_total{action="apply",strategy="task_reduction"} 1.0' in text
        assert 'sigfuse_optimizer_active{strategy="performance_mode"} 1.0' in text
        run(o.optimizer, CALM, 3)
        assert (o.max_in_flight, o.poll_scale, o.fusion_batch_cycles) == (50, 1.0, 1)
        assert o.journal.group_window_s == pytest.approx(0.001) and not o.backend.prefer_primary
        assert o.sources[1]._window_len == o.sources[1].params.breakout_window
        assert 'sigfuse_optimizer_active{strategy="performance_mode"} 0.0' in _exposition(o)
    finally:
        o.journal.close()
        o.store.close()
        o.backend.close()


def _exposition(o) -> str:
    from prometheus_client import generate_latest
    return generate_latest(o.metrics.registry).decode()
