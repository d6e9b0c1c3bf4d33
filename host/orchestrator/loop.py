"""The orchestrator: the asyncio loop that runs sources, fusion and execution at a fixed rate.

One cycle every ``1 / orchestrator.frequency_hz`` (10 ms by default), on an absolute schedule
(cycle k is due at ``start + k x period``; a cycle that starts more than a period late skips the
cycles it missed and counts them as ``overruns``).  Each cycle runs these stages, each timed:

``market``     step the market (quotes to the book and the paper venues, which fill resting
               orders against them) and the synthetic feeds
``sources``    poll the sources that are due (each at ``source_poll_hz`` x the optimizer's scale)
``fusion``     one batch to the fusion backend: the new signals, then as many pops as the
               coordinator has room for (orders in flight below the limit) and the queue can
               hold (its depth plus one per new signal); no batch when there is nothing to do.
               A board's batch (``blocking_io``) goes to a worker thread and the cycle does
               not wait: its results are dispatched when it returns, one batch in flight at a
               time, so the link's latency never delays the schedule
``dispatch``   popped decisions to the coordinator's hand-off queue; results counted
``execution``  the loop yields once so the coordinator turns the decisions into orders

Beside the loop, at their own rates: the health monitor (``health.interval_s``), the optimizer
(``optimizer.interval_s``), the link prober (``orchestrator.failover.probe_interval_s``, when a
board is configured), a resource sampler and the time series the report draws.

Measured every cycle: the cycle time (start to start), the jitter (``|start - scheduled
start|``), and every stage's time.

Shutdown (:meth:`Orchestrator.request_stop`, which ``sigfuse run`` wires to SIGINT and
SIGTERM): sources stop, the signals already generated go through fusion (drain), the
coordinator stops taking decisions and cancels open orders (waiting up to
``shutdown_timeout_s`` for them to close), the journal gets an ``orchestrator_stop`` event and
is flushed and closed, the link (backend) is closed, the metrics endpoint is stopped.
"""

from __future__ import annotations

import asyncio
import math
import os
import sqlite3
import time
from array import array
from collections import deque
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..config import SigfuseConfig
from ..contract import DecisionEmitted, Dropped, PairTable, Pop, Popped, Signal
from ..execution.coordinator import Coordinator
from ..execution.journal import Journal
from ..execution.marketdata import MarketModel, SyntheticMarket
from ..execution.orders import OrderRequest, SubmitAck
from ..execution.runner import LIVELY_MARKET, MonotonicClock
from ..execution.venue import FillModel, PaperVenue, VenueStore, VenueTimeout
from ..log import get_logger
from .backend import BackendUnavailable, FailoverBackend, Switch, build_backend, process_async
from .feeds import MarketData, SyntheticFeeds
from .health import HealthMonitor
from .metrics import OrchestratorMetrics
from .optimizer import Knob, Measurements, Optimizer, ResourceSampler
from .settings import orchestrator_section, sources_section
from .sources import SignalSource, build_sources

__all__ = ["Orchestrator", "Handoff", "StageRecorder", "OrchestratedVenue", "STAGES", "percentiles"]

STAGES = ("market", "sources", "fusion", "dispatch", "execution")


def percentiles(samples: Sequence[float] | array, points: Sequence[float] = (50, 99)) -> dict[str, float]:
    """``{"p50": .., "p99": .., "max": .., "samples": n}`` (empty dict without samples)."""
    if len(samples) == 0:
        return {}
    values = np.asarray(samples, dtype=np.float64)
    out = {f"p{p:g}": float(v) for p, v in zip(points, np.percentile(values, points))}
    out["max"] = float(values.max())
    out["mean"] = float(values.mean())
    out["samples"] = int(values.size)
    return out


class Handoff:
    """Decisions popped from the fusion queue (already ranked), waiting for the coordinator.
    It is the coordinator's :class:`~sigfuse.execution.sources.DecisionSource`."""

    def __init__(self) -> None:
        self._items: deque = deque()

    def append(self, decision: Any) -> None:
        self._items.append(decision)

    def pop(self) -> Any:
        return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> int:
        n = len(self._items)
        self._items.clear()
        return n


class StageRecorder:
    """Rolling windows of cycle time, jitter and stage times (µs), plus time series for the report."""

    def __init__(self, window: int = 120_000) -> None:
        self.window = self._window = window
        self.cycle_us = array("d")
        self.jitter_us = array("d")
        self.stage_us: dict[str, array] = {stage: array("d") for stage in STAGES}
        self.series: list[dict[str, Any]] = []
        self._series_step = 1
        self._series_count = 0

    def _keep(self, samples: array) -> None:
        if len(samples) >= 2 * self._window:
            del samples[:len(samples) - self._window]

    def cycle(self, cycle_us: float | None, jitter_us: float) -> None:
        if cycle_us is not None:
            self.cycle_us.append(cycle_us)
            self._keep(self.cycle_us)
        self.jitter_us.append(jitter_us)
        self._keep(self.jitter_us)

    def stage(self, name: str, us: float) -> None:
        samples = self.stage_us[name]
        samples.append(us)
        self._keep(samples)

    def sample(self, point: dict[str, Any]) -> None:
        self._series_count += 1
        if self._series_count % self._series_step == 0:
            self.series.append(point)

    def trim_caches(self) -> int:
        """Halve the windows and thin the time series to every other point from now on."""
        freed = 0
        self._window = max(1000, self.window // 4)
        for samples in (self.cycle_us, self.jitter_us, *self.stage_us.values()):
            if len(samples) > self._window:
                freed += len(samples) - self._window
                del samples[:len(samples) - self._window]
        before = len(self.series)
        self.series = self.series[::2] if before > 2 else self.series
        freed += before - len(self.series)
        self._series_step = 2
        return freed

    def restore_caches(self) -> None:
        self._window = self.window
        self._series_step = 1


class _StatsTrim:
    """Cache trimming for the coordinator's latency samples and the attribution snapshots."""

    def __init__(self, coordinator: Coordinator, backend: FailoverBackend, queue_capacity: int) -> None:
        self.coordinator = coordinator
        self.backend = backend
        self.queue_capacity = queue_capacity
        self._saved: tuple[int, int] | None = None

    def trim_caches(self) -> int:
        stats = self.coordinator.stats
        attribution = self.backend.attribution
        if self._saved is None:
            self._saved = (stats.latency_window, attribution.capacity)
        stats.latency_window = 10_000
        freed = max(0, len(stats.latency_ns) - stats.latency_window)
        if freed:
            del stats.latency_ns[:freed]
        # Snapshots beyond what the queue (and the hand-off) can hold belong to decisions that
        # were evicted and will never be popped.
        attribution.capacity = max(4 * self.queue_capacity, 1024)
        return freed

    def restore_caches(self) -> None:
        if self._saved is not None:
            self.coordinator.stats.latency_window, self.backend.attribution.capacity = self._saved
            self._saved = None


class OrchestratedVenue(PaperVenue):
    """The paper venue, reporting each submission to the health monitor and the first submission
    of each order to the signal-to-order latency recorder."""

    on_first_submit: Callable[[str], None] | None = None
    on_result: Callable[[str, bool, float, str], None] | None = None

    async def submit(self, request: OrderRequest) -> SubmitAck:
        if self.on_first_submit is not None and request.client_order_id not in self._orders:
            self.on_first_submit(request.client_order_id)
        started = time.perf_counter()
        try:
            ack = await super().submit(request)
        except VenueTimeout as error:
            if self.on_result is not None:
                self.on_result(self.name, False, (time.perf_counter() - started) * 1e3, str(error) or "timeout")
            raise
        if self.on_result is not None:
            self.on_result(self.name, True, (time.perf_counter() - started) * 1e3, "")
        return ack


class Orchestrator:
    """Everything wired together: market, sources, fusion backend, coordinator, venues, journal,
    health, optimizer, metrics (see the module docstring)."""

    def __init__(self, config: SigfuseConfig, *, journal_path: str | Path, venue_store: str | Path = ":memory:",
                 backend: str | FailoverBackend = "software", url: str | None = None, seed: int = 1,
                 pairs: int = 10, frequency_hz: float | None = None, source_poll_hz: float | None = None,
                 market_model: MarketModel | None = None, fill_model: FillModel | None = None,
                 metrics: OrchestratorMetrics | None = None, serve_metrics: bool | None = None,
                 sources: Sequence[SignalSource] | None = None, series_interval_s: float = 0.5,
                 venues: Sequence[str] = ("alpha", "beta")) -> None:
        self.config = config
        self.settings = orchestrator_section(config)
        self.sources_config = sources_section(config)
        self.seed = seed
        self.frequency_hz = frequency_hz or self.settings.frequency_hz
        self.source_poll_hz = source_poll_hz or self.settings.source_poll_hz
        self.series_interval_s = series_interval_s
        self.log = get_logger("orchestrator")
        self.clock = MonotonicClock()

        # Market and feeds.
        self.market = SyntheticMarket(pairs, venues=venues, seed=seed, model=market_model or LIVELY_MARKET,
                                      start_us=self.clock())
        slots = max(config.fusion.pair_slots, len(self.market.pairs))

        # Fusion backend (software, or a board with the software engine as hot standby).  With a
        # board, queue capacity and pair slots are the board's (build parameters): the backend
        # reads them from the board and sizes the standby the same.
        if isinstance(backend, FailoverBackend):
            self.backend = backend
            backend.on_switch = self._on_switch
        else:
            self.backend = build_backend(backend, config.fusion.params(), capacity=config.queue.capacity,
                                         pair_slots=slots, url=url or config.link.url,
                                         config=self.settings.failover, on_switch=self._on_switch,
                                         board=config.board.name)
        if self.backend.has_primary:
            slots = self.backend.pair_slots
            if len(self.market.pairs) > slots:
                self.backend.close()
                raise BackendUnavailable(
                    f"{len(self.market.pairs)} pairs do not fit in the board's {slots} pair slots "
                    f"(--pairs {slots} at most on this board)")
        self.queue_capacity = self.backend.capacity
        self.pairs = PairTable(slots, self.market.pairs)
        self.data = MarketData()
        sc = self.sources_config
        self.feeds = SyntheticFeeds(self.data, self.market.pairs, whale=sc.whale, sentiment=sc.sentiment,
                                    news=sc.news, seed=seed)
        self.backend_names = ("software",) + ((self.backend.primary_name,) if self.backend.primary_name else ())

        # Execution.
        self.store = VenueStore(venue_store)
        self.venues = [OrchestratedVenue(name, model=fill_model, seed=seed + i, store=self.store, clock=self.clock)
                       for i, name in enumerate(venues)]
        self.journal = Journal(journal_path, synchronous=config.execution.journal_synchronous)
        self.handoff = Handoff()
        self.coordinator = Coordinator(self.handoff, self.venues, self.data.book, self.journal, pairs=self.pairs,
                                       execution=config.execution, risk=config.risk,
                                       attribution=self.backend.attribution, clock_us=self.clock)
        for venue in self.venues:
            venue.on_first_submit = self._on_first_submit
            venue.on_result = self._on_venue_result

        # Sources.
        self.sources: list[SignalSource] = list(sources) if sources is not None else build_sources(
            self.sources_config, self.pairs, seed=seed)
        self._next_due: dict[str, float] = {}
        self.signals_by_source: dict[str, int] = {s.name: 0 for s in self.sources}

        # Health, optimizer, metrics.
        self.health = HealthMonitor(config.health)
        self.sampler = ResourceSampler(config.optimizer.cpu_scope)
        self.metrics = metrics or OrchestratorMetrics()
        self.serve_metrics = config.metrics.enabled if serve_metrics is None else serve_metrics
        self.metrics_port: int | None = None
        self.max_in_flight = config.execution.max_concurrent
        self.poll_scale = 1.0
        self.fusion_batch_cycles = 1
        self.recorder = StageRecorder()
        self.optimizer = Optimizer(
            config.optimizer,
            knobs={
                "max_in_flight": Knob("max_in_flight", lambda: self.max_in_flight, self._set_max_in_flight),
                "poll_scale": Knob("poll_scale", lambda: self.poll_scale, self._set_poll_scale),
                "journal_window_s": Knob("journal_window_s", lambda: self.journal.group_window_s,
                                         lambda v: setattr(self.journal, "group_window_s", v)),
                "fusion_batch_cycles": Knob("fusion_batch_cycles", lambda: self.fusion_batch_cycles,
                                            self._set_performance_mode),
            },
            trimmables=[*self.sources, self.recorder,
                        _StatsTrim(self.coordinator, self.backend, self.queue_capacity)],
            on_action=self._on_optimizer_action)
        self._register_health()

        # Run state.
        self._stop = asyncio.Event() if _loop_running() else None
        self._stopping = False
        self._pending: list[Signal] = []
        #: A board's batch in flight (its results are dispatched when it returns).
        self._batch: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._coordinator_task: asyncio.Task[None] | None = None
        self.cycles = 0
        self.overruns = 0
        self.decisions_emitted = 0
        self.drops: dict[str, int] = {}
        self.signal_to_order_us = array("d")
        self.late_finish_us: deque[float] = deque(maxlen=4096)
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.stop_reason = ""
        self.left_unexecuted = 0
        self.backend_at_stop: str | None = None
        self._latency_seen = 0
        self.last_resources = None
        self.peak_rss = 0
        #: Peak RSS of the virtual board's process (a separate process: not in ``peak_rss``).
        self.peak_board_rss = 0
        self.health_timeline: list[dict[str, Any]] = []
        self._closed = False

    # --- wiring helpers ------------------------------------------------------------------------

    def _register_health(self) -> None:
        h = self.health
        for source in self.sources:
            h.register(f"source.{source.name}", kind="source", latency_budget_ms=5.0,
                       restart=self._restart_source(source.name))
        h.register("market", kind="market", latency_budget_ms=5.0)
        h.register("fusion", kind="fusion", latency_budget_ms=5.0)
        if self.backend.has_primary:
            h.register("link", kind="link", latency_budget_ms=5.0, restart=self._restart_link)
        h.register("coordinator", kind="coordinator", latency_budget_ms=10.0, restart=self._restart_coordinator)
        for venue in self.venues:
            h.register(f"venue.{venue.name}", kind="venue", latency_budget_ms=50.0, heartbeat_timeout_s=3600.0)
        h.register("journal", kind="journal", latency_budget_ms=20.0)
        h.on_alert(lambda alert: self.metrics.alerts.labels(alert.kind).inc())

    def _restart_source(self, name: str) -> Callable[[], None]:
        def restart() -> None:
            for i, source in enumerate(self.sources):
                if source.name == name:
                    fresh = type(source)(source.params, self.pairs, seed=self.seed)
                    self.sources[i] = fresh
                    self.log.info("source_restarted", source=name)
        return restart

    async def _restart_link(self) -> None:
        # Opening a link (spawning the stand-in, or a serial port) must not stall the loop.
        await asyncio.to_thread(self.backend.restart_primary)

    def _restart_coordinator(self) -> None:
        if self._coordinator_task is not None and self._coordinator_task.done() and not self._stopping:
            self._coordinator_task = asyncio.get_running_loop().create_task(self.coordinator.run())

    def _set_max_in_flight(self, value: int) -> None:
        self.max_in_flight = max(1, int(value))

    def _set_poll_scale(self, value: float) -> None:
        self.poll_scale = float(value)

    def _set_performance_mode(self, batch_cycles: int) -> None:
        # Performance mode: fewer, larger batches (one round trip per batch on a board), and a
        # restarted board takes over after its first good probe instead of several.
        self.fusion_batch_cycles = max(1, int(batch_cycles))
        self.backend.prefer_primary = self.fusion_batch_cycles > 1

    def _on_switch(self, switch: Switch) -> None:
        if "link" in self.health.components:
            if switch.kind == "failover":
                self.health.mark_failed("link", switch.reason)
            else:
                self.health.mark_recovered("link")
        self.metrics.update_link(self.backend.counters)

    def _on_optimizer_action(self, strategy: str, action: str, detail: dict[str, Any]) -> None:
        self.metrics.optimizer_actions.labels(strategy, action).inc()
        self.metrics.optimizer_active.labels(strategy).set(1.0 if action == "apply" else 0.0)

    def _on_first_submit(self, client_order_id: str) -> None:
        order = self.coordinator.orders.get(client_order_id)
        if order is None:
            return
        latency_us = self.clock() - order.decision_ts_us
        self.signal_to_order_us.append(latency_us)
        if len(self.signal_to_order_us) >= 200_000:
            del self.signal_to_order_us[:100_000]
        self.metrics.signal_to_order.observe(latency_us * 1e-6)

    def _on_venue_result(self, venue: str, ok: bool, latency_ms: float, error: str) -> None:
        name = f"venue.{venue}"
        if ok:
            self.health.success(name, latency_ms)
        else:
            self.health.failure(name, error)

    # --- start, run, stop ---------------------------------------------------------------------

    def request_stop(self, reason: str = "requested") -> None:
        """Stop after the current cycle (safe to call from a signal handler via the loop)."""
        if not self.stop_reason:
            self.stop_reason = reason
        if self._stop is not None:
            self._stop.set()

    async def start(self) -> None:
        """Open the metrics endpoint, reconcile the journal with the venues, start the coordinator
        and the side tasks.  Raises :class:`~sigfuse.execution.coordinator.Unreconciled`."""
        if self._stop is None:
            self._stop = asyncio.Event()
        if self.settings.realtime:
            self._go_realtime()
        if self.serve_metrics:
            self.metrics_port = self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
        await self.coordinator.start(seed=self.seed, mode="orchestrator", backend=self.backend.active_name)
        loop = asyncio.get_running_loop()
        self._coordinator_task = loop.create_task(self.coordinator.run())
        self._tasks = [loop.create_task(self._every(self.config.health.interval_s, self._health_tick)),
                       loop.create_task(self._every(self.config.optimizer.interval_s, self._optimizer_tick)),
                       loop.create_task(self._every(self.series_interval_s, self._sample_tick))]
        if self.backend.has_primary:
            self._tasks.append(loop.create_task(self._every(self.settings.failover.probe_interval_s,
                                                            self._probe_tick)))
        self.started_at = time.time()
        self.metrics.set_backend(self.backend.active_name, self.backend_names)
        self.log.info("orchestrator_start", backend=self.backend.active_name, queue_capacity=self.queue_capacity,
                      pair_slots=self.pairs.slots, frequency_hz=self.frequency_hz,
                      source_poll_hz=self.source_poll_hz, sources=[s.name for s in self.sources],
                      pairs=len(self.market.pairs), metrics_port=self.metrics_port,
                      synthetic_feeds=sorted(self.data.synthetic_feeds))

    def _go_realtime(self) -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            self.log.info("realtime", policy="SCHED_FIFO", priority=10)
        except (AttributeError, PermissionError, OSError) as error:
            self.log.warning("realtime_unavailable", error=str(error))

    async def run(self, duration_s: float | None = None) -> dict[str, Any]:
        """Start, run until ``duration_s`` passes or :meth:`request_stop`, shut down cleanly;
        returns :meth:`summary`."""
        try:
            await self.start()
            await self.run_loop(duration_s)
        finally:
            await self.shutdown()
        return self.summary()

    async def _sleep_until(self, deadline: float) -> None:
        precise = self.settings.precise_wake_us * 1e-6
        coarse = deadline - time.perf_counter() - precise
        if coarse > 0:
            await asyncio.sleep(coarse)
        remaining = deadline - time.perf_counter()
        if remaining > 0:
            # The event loop's timer wakes up to a millisecond late (epoll's resolution); the last
            # stretch is slept with nanosleep, which is accurate to tens of microseconds.
            time.sleep(remaining)

    async def run_loop(self, duration_s: float | None = None) -> None:
        """The cycles (see the module docstring), until stopped."""
        assert self._stop is not None
        period = 1.0 / self.frequency_hz
        perf = time.perf_counter
        start = perf() + period
        end = start + duration_s if duration_s is not None else math.inf
        k = 0
        previous: float | None = None
        for source in self.sources:
            self._schedule_first(source, start)
        while not self._stop.is_set():
            deadline = start + k * period
            if deadline >= end:
                self.request_stop("duration reached")
                break
            await self._sleep_until(deadline)
            if self._stop.is_set():
                break
            began = perf()
            late = began - deadline
            self.recorder.cycle((began - previous) * 1e6 if previous is not None else None, abs(late) * 1e6)
            self.metrics.jitter_seconds.observe(abs(late))
            if previous is not None:
                self.metrics.cycle_seconds.observe(began - previous)
            previous = began
            if late >= period:
                # Woke a whole period late or more (a stall): skip the slots that passed rather
                # than run them back to back.
                missed = int(late / period)
                self.overruns += missed
                k += missed
                deadline += missed * period
            await self._cycle(began)
            finished = perf()
            self.late_finish_us.append((finished - deadline) * 1e6)
            self.cycles += 1
            k += 1

    def _schedule_first(self, source: SignalSource, start: float) -> None:
        # Spread the sources over the polling period so they do not all run in one cycle.
        index = [s.name for s in self.sources].index(source.name)
        self._next_due[source.name] = start + index * self._period_of(source) / max(1, len(self.sources))

    def _period_of(self, source: SignalSource) -> float:
        hz = source.params.poll_hz or self.source_poll_hz
        return 1.0 / (hz * self.poll_scale)

    async def _cycle(self, began: float) -> None:
        perf = time.perf_counter
        stage = self.recorder.stage
        observe = self.metrics.stage_seconds
        health = self.health

        # market
        t0 = perf()
        now_us = self.clock()
        dt_us = now_us - self.market.ts_us
        book_update = self.data.book.update
        venues = self.venues
        for quote in self.market.step(dt_us):
            book_update(quote)
            for venue in venues:
                venue.on_quote(quote)
        self.feeds.step(now_us, dt_us)
        health.heartbeat("market")
        t1 = perf()

        # sources
        if not self._stopping:
            for source in self.sources:
                due = self._next_due.get(source.name, 0.0)
                if began < due:
                    continue
                period = self._period_of(source)
                self._next_due[source.name] = due + period if due + period > began else began + period
                s0 = perf()
                try:
                    produced = source.poll(self.data, self.clock())
                except Exception as error:  # noqa: BLE001 -- a faulty source must not stop the loop
                    health.failure(f"source.{source.name}", error)
                    self.log.error("source_failed", source=source.name, error=f"{type(error).__name__}: {error}")
                    continue
                health.success(f"source.{source.name}", (perf() - s0) * 1e3)
                if produced:
                    self._pending.extend(produced)
                    self.signals_by_source[source.name] = self.signals_by_source.get(source.name, 0) + len(produced)
                    self.metrics.signals.labels(source.name).inc(len(produced))
        t2 = perf()

        # fusion
        results: list[Any] = []
        handed_off = False
        batch = self._batch
        if batch is not None and batch.done():
            # The previous batch came back from the board (and was dispatched then); a failure
            # of the software engine itself is fatal here as in the synchronous path.
            self._batch = None
            batch.result()
            batch = None
        if batch is None and (self.cycles % self.fusion_batch_cycles == 0 or self._stopping):
            room = self.max_in_flight - len(self.coordinator.orders) - len(self.handoff)
            # No more pops than the queue can hold after this batch: what it holds now (the
            # standby mirrors the board's queue exactly) plus one per new signal.  A pop of an
            # empty queue changes nothing but costs a board a result record on the link.
            waiting = self.backend.queue_depth() + len(self._pending)
            pops = 0 if self._stopping else max(0, min(self.settings.max_pops_per_cycle, room, waiting))
            if self._pending or pops:
                events: list[Any] = self._pending
                self._pending = []
                if pops:
                    events.extend([Pop(now_us)] * pops)
                if self.backend.blocking_io and not self._stopping:
                    # A board: the round trip runs in a worker thread and the cycle does not wait
                    # for it -- its results are dispatched the moment they arrive, and the next
                    # batch leaves once this one is back (signals wait in _pending meanwhile).
                    # The link's latency then never delays the schedule.
                    self._batch = asyncio.get_running_loop().create_task(self._board_batch(events))
                    handed_off = True
                else:
                    f0 = perf()
                    try:
                        results = await process_async(self.backend, events)
                    except Exception as error:  # noqa: BLE001 -- the software engine itself failed
                        health.failure("fusion", error)
                        self.log.error("fusion_failed", error=f"{type(error).__name__}: {error}")
                        raise
                    health.success("fusion", (perf() - f0) * 1e3)
        t3 = perf()

        # dispatch
        handed = self._dispatch(results)
        t4 = perf()

        # execution
        if handed:
            self.coordinator.wake()
            await asyncio.sleep(0)
        t5 = perf()

        for name, a, b in (("market", t0, t1), ("sources", t1, t2), ("fusion", t2, t3),
                           ("dispatch", t3, t4), ("execution", t4, t5)):
            if name == "fusion" and (handed_off or self._batch is not None):
                continue  # a board's batch: its round trip is recorded when it comes back
            stage(name, (b - a) * 1e6)
            observe.labels(name).observe(b - a)

    def _dispatch(self, results: Sequence[Any]) -> int:
        """Popped decisions to the hand-off, emissions and drops counted; returns how many
        decisions were handed off."""
        handed = 0
        for result in results:
            kind = type(result)
            if kind is Popped:
                if result.decision is not None:
                    self.handoff.append(result.decision)
                    handed += 1
            elif kind is DecisionEmitted:
                self.decisions_emitted += 1
            elif kind is Dropped:
                reason = result.reason.wire_name
                self.drops[reason] = self.drops.get(reason, 0) + 1
                self.metrics.drops.labels(reason).inc()
        return handed

    async def _board_batch(self, events: list[Any]) -> None:
        """One batch through a board, off the cycle (see the fusion stage of :meth:`_cycle`)."""
        f0 = time.perf_counter()
        try:
            results = await asyncio.to_thread(self.backend.process, events)
        except Exception as error:  # noqa: BLE001 -- the software engine itself failed
            self.health.failure("fusion", error)
            self.log.error("fusion_failed", error=f"{type(error).__name__}: {error}")
            raise
        elapsed = time.perf_counter() - f0
        self.health.success("fusion", elapsed * 1e3)
        self.recorder.stage("fusion", elapsed * 1e6)
        self.metrics.stage_seconds.labels("fusion").observe(elapsed)
        if self._dispatch(results):
            self.coordinator.wake()

    async def _every(self, interval_s: float, tick: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await tick()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 -- a side task must not die silently
                self.log.error("side_task_failed", task=getattr(tick, "__name__", "?"),
                               error=f"{type(error).__name__}: {error}")

    async def _health_tick(self) -> None:
        h = self.health
        if self._coordinator_task is not None:
            if self._coordinator_task.done() and not self._stopping:
                error = self._coordinator_task.exception() if not self._coordinator_task.cancelled() else None
                h.failure("coordinator", error or "coordinator task ended")
            else:
                # Decision-to-order latency: the mean of the orders since the last tick.
                samples = self.coordinator.stats.latency_ns
                fresh = samples[self._latency_seen:] if self._latency_seen <= len(samples) else samples
                self._latency_seen = len(samples)
                h.success("coordinator", sum(fresh) / len(fresh) / 1e6 if fresh else None)
        j0 = time.perf_counter()
        try:
            self.journal.flush()
        except sqlite3.Error as error:
            h.failure("journal", error)
        else:
            h.success("journal", (time.perf_counter() - j0) * 1e3)
        await h.tick()
        for name, score in h.scores().items():
            self.metrics.health.labels(name).set(score)
        self.health_timeline.append({"t": time.time(), **{n: round(c.score, 4) for n, c in h.components.items()}})

    async def _probe_tick(self) -> None:
        if self.backend.failback_pending:
            if self.backend.probe():
                self.health.success("link")
            else:
                self.health.mark_failed("link", "probe failed")
        elif self.backend.primary is not None:
            self.health.heartbeat("link")
        self.metrics.update_link(self.backend.counters)
        self.metrics.set_backend(self.backend.active_name, self.backend_names)

    def measurements(self) -> Measurements:
        """The optimizer's reading now: CPU and memory, loop latency, mean stage times."""
        sample = self.last_resources = self.sampler.sample()
        late = list(self.late_finish_us)
        loop_latency_ms = float(np.percentile(late, 99)) / 1e3 if late else 0.0
        self.late_finish_us.clear()
        stage_ms = {}
        for name, samples in self.recorder.stage_us.items():
            recent = samples[-200:]
            stage_ms[name] = (sum(recent) / len(recent) / 1e3) if len(recent) else 0.0
        return Measurements(sample.cpu_percent, sample.memory_percent, loop_latency_ms, stage_ms)

    async def _optimizer_tick(self) -> None:
        self.optimizer.evaluate(self.measurements())

    async def _sample_tick(self) -> None:
        snap = self.coordinator.snapshot()
        sample = self.sampler.sample() if self.last_resources is None else self.last_resources
        self.last_resources = None
        rss = self.sampler.process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        self._sample_board_rss()
        counters = snap["counters"]
        self.recorder.sample({
            "t": time.time(), "pnl_net": snap["pnl"]["net"], "signals": sum(self.signals_by_source.values()),
            "decisions": self.decisions_emitted, "orders": counters["orders"], "fills": counters["fills"],
            "cpu_percent": sample.process_cpu_percent, "rss_bytes": rss, "backend": self.backend.active_name,
            "queue_depth": self.backend.queue_depth()})
        m = self.metrics
        m.queue_depth.set(self.backend.queue_depth())
        m.handoff_depth.set(len(self.handoff))
        m.advance(m.decisions, self.decisions_emitted)
        m.advance(m.orders, counters["orders"])
        m.advance(m.fills, counters["fills"])
        m.set_pnl(snap["pnl"])
        m.cpu.set(sample.process_cpu_percent)
        m.rss.set(rss)
        m.update_link(self.backend.counters)
        m.set_backend(self.backend.active_name, self.backend_names)

    def _sample_board_rss(self) -> None:
        pid = getattr(getattr(self.backend.primary, "virtual", None), "pid", None)
        if pid is None:
            return
        try:
            import psutil
            self.peak_board_rss = max(self.peak_board_rss, psutil.Process(pid).memory_info().rss)
        except Exception:  # noqa: BLE001 -- the board may be gone (killed, restarting)
            pass

    async def shutdown(self) -> None:
        """Drain, stop the coordinator (open orders cancelled), flush and close everything."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self.request_stop(self.stop_reason or "shutdown")
        self.log.info("orchestrator_stopping", reason=self.stop_reason, pending_signals=len(self._pending))
        try:
            # Drain: the board's batch in flight comes back first; signals already generated
            # still go through fusion, so the journal and the counters see every one; what they
            # decide is not executed any more.
            if self._batch is not None:
                await asyncio.gather(self._batch, return_exceptions=True)
                self._batch = None
            if self._pending:
                events, self._pending = self._pending, []
                for result in await process_async(self.backend, events):
                    if type(result) is DecisionEmitted:
                        self.decisions_emitted += 1
            self.left_unexecuted = self.backend.queue_depth() + self.handoff.clear()
            self.coordinator.request_stop()
            if self._coordinator_task is not None:
                try:
                    await self._coordinator_task
                except Exception as error:  # noqa: BLE001 -- reported, the shutdown goes on
                    self.log.error("coordinator_failed", error=f"{type(error).__name__}: {error}")
            if self.coordinator.reconciled:
                await self.coordinator.shutdown(cancel_open=True, timeout_s=self.settings.shutdown_timeout_s)
            self.optimizer.revert_all()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            await self._sample_tick()
            self.stopped_at = time.time()
            if self.coordinator.session is not None:
                self.journal.record(self.clock(), "orchestrator_stop", reason=self.stop_reason,
                                    cycles=self.cycles, signals=sum(self.signals_by_source.values()),
                                    decisions=self.decisions_emitted, left_unexecuted=self.left_unexecuted,
                                    open_orders=len(self.coordinator.orders), backend=self.backend.active_name,
                                    failovers=self.backend.counters["failovers"],
                                    failbacks=self.backend.counters["failbacks"])
            self.journal.flush()
            await self.health.close()
        finally:
            self.backend_at_stop = self.backend.active_name
            self.backend.close()
            for venue in self.venues:
                await venue.close()
            self.metrics.close()
            self.journal.close()
            self.store.close()
            self.log.info("orchestrator_stopped", reason=self.stop_reason, cycles=self.cycles,
                          left_unexecuted=self.left_unexecuted)

    # --- figures ------------------------------------------------------------------------------

    def live_figures(self) -> dict[str, Any]:
        """What the dashboard shows, now (cheap enough for a few refreshes per second)."""
        snap = self.coordinator.snapshot()
        counters = snap["counters"]
        elapsed = time.time() - self.started_at if self.started_at else 0.0
        signals = sum(self.signals_by_source.values())
        jitter = self.recorder.jitter_us[-1000:]
        cycle = self.recorder.cycle_us[-1000:]
        last = self.recorder.series[-1] if self.recorder.series else None
        return {
            "elapsed_s": elapsed, "backend": self.backend.active_name, "signals": signals,
            "signals_per_minute": signals / elapsed * 60 if elapsed > 0 else 0.0,
            "signals_by_source": dict(self.signals_by_source), "decisions": self.decisions_emitted,
            "orders": counters["orders"], "fills": counters["fills"], "success_rate": snap["success_rate"],
            "pnl": snap["pnl"], "open_orders": snap["open_orders"], "risk_state": snap["risk_state"],
            "jitter_us": percentiles(jitter), "cycle_us": percentiles(cycle), "cycles": self.cycles,
            "overruns": self.overruns, "health": {n: (c.score, c.status) for n, c in self.health.components.items()},
            "cpu_percent": last["cpu_percent"] if last else 0.0,
            "rss_bytes": last["rss_bytes"] if last else 0,
            "optimizer": [name for name, on in self.optimizer.active.items() if on],
            "failovers": self.backend.counters["failovers"], "failbacks": self.backend.counters["failbacks"],
            "queue_depth": self.backend.queue_depth(),
        }

    def summary(self) -> dict[str, Any]:
        """Everything the demo prints and writes to ``summary.json``."""
        snap = self.coordinator.snapshot()
        counters = snap["counters"]
        rec = self.recorder
        jitter = percentiles(rec.jitter_us)
        duration = ((self.stopped_at or time.time()) - self.started_at) if self.started_at else 0.0
        signals = sum(self.signals_by_source.values())
        return {
            "backend": self.backend_at_stop or self.backend.active_name,
            "backend_at_start": self.backend_names[-1],
            "duration_s": round(duration, 3),
            "loop_frequency_hz": self.frequency_hz,
            "source_poll_hz": self.source_poll_hz,
            "pairs": len(self.market.pairs),
            "pair_slots": self.pairs.slots,
            "queue_capacity": self.queue_capacity,
            "signals": signals,
            "signals_by_source": dict(self.signals_by_source),
            "signals_per_minute": round(signals / duration * 60, 1) if duration else 0.0,
            "synthetic_feeds": sorted(self.data.synthetic_feeds),
            "decisions": self.decisions_emitted,
            "decisions_executed": counters["decisions"],
            "decisions_left_unexecuted": self.left_unexecuted,
            "drops": dict(self.drops),
            "orders": counters["orders"],
            "fills": counters["fills"],
            "filled_orders": counters["filled"],
            "success_rate": snap["success_rate"],
            "fill_ratio": snap["fill_ratio"],
            "risk_rejections": snap["risk_rejections"],
            "pnl": snap["pnl"],
            "source_pnl": snap["source_pnl"],
            "risk_state": snap["risk_state"],
            "loop": {
                "cycles": self.cycles, "overruns": self.overruns,
                "jitter_us": jitter,
                "cycle_us": percentiles(rec.cycle_us),
                "stages_us": {name: percentiles(samples) for name, samples in rec.stage_us.items()},
            },
            "signal_to_order_us": percentiles(self.signal_to_order_us),
            "decision_to_order_us": snap["decision_to_order_latency"],
            "health": self.health.snapshot(),
            "alerts": self.health.alert_count,
            "failover": dict(self.backend.counters),
            "switches": [s.__dict__ for s in self.backend.switches],
            "optimizer": {"actions": {f"{k[0]}.{k[1]}": v for k, v in self.optimizer.actions.items()},
                          "active": self.optimizer.active, "history": self.optimizer.history},
            "resources": {"peak_rss_bytes": self.peak_rss, "peak_board_rss_bytes": self.peak_board_rss},
            "metrics_port": self.metrics_port,
            "stop_reason": self.stop_reason,
            "journal": self.journal.path,
        }


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
