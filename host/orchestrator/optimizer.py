"""The performance optimizer: five reversible strategies under CPU, memory and latency pressure.

Every ``optimizer.interval_s`` the orchestrator takes a :class:`Measurements` reading -- CPU and
memory (psutil), the loop's latency (p99 of how late each cycle finished against its schedule)
and the mean time of each stage of the cycle -- and hands it to :meth:`Optimizer.evaluate`.

==========================  ===================================  ==============================
strategy                    fires when                           does (and undoes)
==========================  ===================================  ==============================
``task_reduction``          CPU >= ``cpu_warn_percent``          orders in flight x
                                                                 ``reduced_concurrency_fraction``
``polling_adjustment``      CPU >= warn, or loop latency >=      source polling rates x
                            warn with ``sources`` the slowest    ``reduced_poll_fraction``
                            stage
``cache_trimming``          memory >= ``memory_warn_percent``    sources and recorders trim their
                                                                 histories, ``gc.collect()``
``journal_batching``        loop latency >= warn with            journal group-commit window
                            ``execution`` the slowest stage      1 ms -> ``batched_journal_window_ms``
``performance_mode``        loop latency >= warn with            coalesce ``performance_batch_cycles``
                            ``fusion`` the slowest stage         cycles into one fusion batch (one
                                                                 round trip to a board), and fail
                                                                 back to a restarted board at once
==========================  ===================================  ==============================

Hysteresis: a strategy acts after ``hysteresis_cycles`` consecutive readings under pressure and
reverts after as many consecutive readings below ``release_fraction`` x the warn level; readings
in between (the dead band) reset both counts, so a value hovering at the threshold moves
nothing.  Each action is logged (``optimizer_action`` with the reading that caused it) and
counted; :attr:`Optimizer.active` and :attr:`Optimizer.actions` are what the metrics show.

The strategies act on :class:`Knob` objects (a get and a set), so each one is reversible by
construction: the value found when it acted is the value it restores.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import psutil

from ..config import OptimizerConfig
from ..log import get_logger

__all__ = ["Measurements", "Knob", "Trimmable", "Strategy", "Optimizer", "ResourceSampler", "ResourceSample",
           "STRATEGIES"]

STRATEGIES = ("task_reduction", "polling_adjustment", "cache_trimming", "journal_batching", "performance_mode")


@dataclass(frozen=True)
class Measurements:
    """One reading.  ``stage_ms``: mean time per cycle of each loop stage."""
    cpu_percent: float
    memory_percent: float
    loop_latency_ms: float
    stage_ms: dict[str, float] = field(default_factory=dict)

    @property
    def bottleneck(self) -> str | None:
        return max(self.stage_ms, key=self.stage_ms.__getitem__) if self.stage_ms else None


class Knob:
    """A setting a strategy may change: ``get()`` and ``set(value)``."""

    def __init__(self, name: str, get: Callable[[], Any], set: Callable[[Any], None]) -> None:
        self.name = name
        self.get = get
        self.set = set


class Trimmable(Protocol):
    def trim_caches(self) -> int: ...
    def restore_caches(self) -> None: ...


class Strategy:
    """One strategy: when it is under pressure, when relieved, what it applies and reverts."""

    def __init__(self, name: str, *, pressure: Callable[[Measurements], bool],
                 relieved: Callable[[Measurements], bool], apply: Callable[[], dict[str, Any]],
                 revert: Callable[[], dict[str, Any]]) -> None:
        self.name = name
        self.pressure = pressure
        self.relieved = relieved
        self._apply = apply
        self._revert = revert
        self.active = False
        self.pressure_count = 0
        self.relief_count = 0
        self.applied = 0
        self.reverted = 0
        self.since: float | None = None

    def apply(self) -> dict[str, Any]:
        detail = self._apply()
        self.active = True
        self.applied += 1
        self.since = time.monotonic()
        return detail

    def revert(self) -> dict[str, Any]:
        detail = self._revert()
        self.active = False
        self.reverted += 1
        self.since = None
        return detail


class _Scaled:
    """Apply/revert a knob to ``fraction`` x its value (ints rounded, never below ``floor``)."""

    def __init__(self, knob: Knob, fraction: float, *, floor: float = 1) -> None:
        self.knob = knob
        self.fraction = fraction
        self.floor = floor
        self.saved: Any = None

    def apply(self) -> dict[str, Any]:
        self.saved = value = self.knob.get()
        new = value * self.fraction
        new = max(self.floor, round(new)) if isinstance(value, int) else max(self.floor, new)
        self.knob.set(new)
        return {self.knob.name: new, "was": value}

    def revert(self) -> dict[str, Any]:
        now = self.knob.get()
        self.knob.set(self.saved)
        return {self.knob.name: self.saved, "was": now}


class _SetTo:
    """Apply/revert a knob to a fixed value."""

    def __init__(self, knob: Knob, value: Any) -> None:
        self.knob = knob
        self.value = value
        self.saved: Any = None

    def apply(self) -> dict[str, Any]:
        self.saved = self.knob.get()
        self.knob.set(self.value)
        return {self.knob.name: self.value, "was": self.saved}

    def revert(self) -> dict[str, Any]:
        now = self.knob.get()
        self.knob.set(self.saved)
        return {self.knob.name: self.saved, "was": now}


class Optimizer:
    """The five strategies over the given knobs (see the module docstring).

    ``knobs`` maps ``max_in_flight``, ``poll_scale``, ``journal_window_s`` and
    ``fusion_batch_cycles`` to :class:`Knob` objects; a missing knob disables its strategy.
    ``trimmables`` are the objects with caches.
    """

    def __init__(self, config: OptimizerConfig | None = None, *, knobs: dict[str, Knob],
                 trimmables: Iterable[Trimmable] = (),
                 on_action: Callable[[str, str, dict[str, Any]], None] | None = None) -> None:
        self.config = cfg = config or OptimizerConfig()
        self.trimmables = list(trimmables)
        self.on_action = on_action
        self.actions: dict[tuple[str, str], int] = {}
        self.history: list[dict[str, Any]] = []
        self.last: Measurements | None = None
        self._log = get_logger("optimizer")
        release = cfg.release_fraction
        self.strategies: dict[str, Strategy] = {}

        cpu_hot = lambda m: m.cpu_percent >= cfg.cpu_warn_percent
        cpu_cool = lambda m: m.cpu_percent < cfg.cpu_warn_percent * release
        slow = lambda m: m.loop_latency_ms >= cfg.latency_warn_ms
        fast = lambda m: m.loop_latency_ms < cfg.latency_warn_ms * release

        if "max_in_flight" in knobs:
            action = _Scaled(knobs["max_in_flight"], cfg.reduced_concurrency_fraction)
            self._add("task_reduction", cpu_hot, cpu_cool, action.apply, action.revert)
        if "poll_scale" in knobs:
            action = _Scaled(knobs["poll_scale"], cfg.reduced_poll_fraction, floor=0.05)
            self._add("polling_adjustment",
                      lambda m: cpu_hot(m) or (slow(m) and m.bottleneck == "sources"),
                      lambda m: cpu_cool(m) and (fast(m) or m.bottleneck != "sources"),
                      action.apply, action.revert)
        if self.trimmables:
            self._add("cache_trimming", lambda m: m.memory_percent >= cfg.memory_warn_percent,
                      lambda m: m.memory_percent < cfg.memory_warn_percent * release,
                      self._trim, self._untrim)
        if "journal_window_s" in knobs:
            action = _SetTo(knobs["journal_window_s"], cfg.batched_journal_window_ms / 1000)
            self._add("journal_batching", lambda m: slow(m) and m.bottleneck == "execution",
                      lambda m: fast(m), action.apply, action.revert)
        if "fusion_batch_cycles" in knobs:
            action = _SetTo(knobs["fusion_batch_cycles"], cfg.performance_batch_cycles)
            self._add("performance_mode", lambda m: slow(m) and m.bottleneck == "fusion",
                      lambda m: fast(m), action.apply, action.revert)

    def _add(self, name: str, pressure: Callable[[Measurements], bool], relieved: Callable[[Measurements], bool],
             apply: Callable[[], dict[str, Any]], revert: Callable[[], dict[str, Any]]) -> None:
        self.strategies[name] = Strategy(name, pressure=pressure, relieved=relieved, apply=apply, revert=revert)

    def _trim(self) -> dict[str, Any]:
        freed = sum(t.trim_caches() for t in self.trimmables)
        collected = gc.collect()
        return {"entries_freed": freed, "gc_collected": collected}

    def _untrim(self) -> dict[str, Any]:
        for t in self.trimmables:
            t.restore_caches()
        return {"caches": "restored"}

    @property
    def active(self) -> dict[str, bool]:
        return {name: s.active for name, s in self.strategies.items()}

    def evaluate(self, m: Measurements) -> list[tuple[str, str]]:
        """Apply the hysteresis to one reading; returns the actions taken as (strategy, apply|revert)."""
        self.last = m
        hold = self.config.hysteresis_cycles
        taken = []
        for s in self.strategies.values():
            if s.pressure(m):
                s.pressure_count += 1
                s.relief_count = 0
            elif s.relieved(m):
                s.relief_count += 1
                s.pressure_count = 0
            else:
                s.pressure_count = s.relief_count = 0
            if not s.active and s.pressure_count >= hold:
                taken.append(self._act(s, "apply", m))
            elif s.active and s.relief_count >= hold:
                taken.append(self._act(s, "revert", m))
        return taken

    def _act(self, s: Strategy, action: str, m: Measurements) -> tuple[str, str]:
        detail = s.apply() if action == "apply" else s.revert()
        s.pressure_count = s.relief_count = 0
        key = (s.name, action)
        self.actions[key] = self.actions.get(key, 0) + 1
        reading = {"cpu_percent": round(m.cpu_percent, 1), "memory_percent": round(m.memory_percent, 1),
                   "loop_latency_ms": round(m.loop_latency_ms, 3), "bottleneck": m.bottleneck}
        entry = {"ts": time.time(), "strategy": s.name, "action": action, **detail, **reading}
        self.history.append(entry)
        self._log.info("optimizer_action", strategy=s.name, action=action, **detail, **reading)
        if self.on_action is not None:
            self.on_action(s.name, action, detail)
        return key

    def revert_all(self) -> None:
        """Undo every active strategy (on shutdown, so settings are left as configured)."""
        for s in self.strategies.values():
            if s.active:
                self._act(s, "revert", self.last or Measurements(0.0, 0.0, 0.0))


@dataclass(frozen=True)
class ResourceSample:
    cpu_percent: float          # what the optimizer compares with cpu_warn_percent
    memory_percent: float       # what it compares with memory_warn_percent
    process_cpu_percent: float  # this process, in percent of one core (as top shows it)
    system_cpu_percent: float
    rss_bytes: int


class ResourceSampler:
    """CPU and memory readings through psutil, each CPU figure over the time since the previous
    :meth:`sample`.

    ``scope="system"``: machine-wide CPU and memory in use; ``scope="process"``: this process's
    CPU as a share of all cores, and its RSS as a share of the machine's memory.
    """

    def __init__(self, scope: str = "system") -> None:
        self.scope = scope
        self.process = psutil.Process()
        self.cores = psutil.cpu_count() or 1
        self.total_memory = psutil.virtual_memory().total
        psutil.cpu_percent(interval=None)
        self.process.cpu_percent(interval=None)

    def sample(self) -> ResourceSample:
        own = self.process.cpu_percent(interval=None)
        system = psutil.cpu_percent(interval=None)
        rss = self.process.memory_info().rss
        if self.scope == "process":
            return ResourceSample(own / self.cores, rss / self.total_memory * 100.0, own, system, rss)
        return ResourceSample(system, psutil.virtual_memory().percent, own, system, rss)
