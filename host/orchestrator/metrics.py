"""Prometheus metrics of the orchestrator (prometheus-client), served on 127.0.0.1 by default.

Every metric lives in the :class:`OrchestratorMetrics` instance's own registry, so several
orchestrators (tests) do not collide.  Names:

=======================================  =========  ================================================
metric                                   type       labels / meaning
=======================================  =========  ================================================
sigfuse_stage_seconds                    histogram  ``stage``: time of each loop stage per cycle
sigfuse_cycle_seconds                    histogram  loop cycle time (start to start)
sigfuse_cycle_jitter_seconds             histogram  |cycle start - its scheduled time|
sigfuse_signal_to_order_seconds          histogram  signal created -> order sent to the venue
sigfuse_queue_depth                      gauge      decisions waiting in the fusion backend's queue
sigfuse_handoff_depth                    gauge      decisions popped, waiting for the coordinator
sigfuse_signals_total                    counter    ``source``
sigfuse_decisions_total                  counter    decisions emitted by fusion
sigfuse_drops_total                      counter    ``reason``: stale, evicted, rejected
sigfuse_orders_total / _fills_total      counter
sigfuse_pnl                              gauge      ``kind``: realized, unrealized, fees, net
sigfuse_health_score                     gauge      ``component``, in [0, 1]
sigfuse_alerts_total                     counter    ``kind``
sigfuse_link_events_total                counter    ``event``: failover, failback, replayed_signals,
                                                    replayed_pops, mirror_mismatches, restarts, ...
sigfuse_backend_active                   gauge      ``backend``: 1 for the one answering now
sigfuse_optimizer_actions_total          counter    ``strategy``, ``action`` (apply, revert)
sigfuse_optimizer_active                 gauge      ``strategy``: 1 while applied
sigfuse_process_cpu_percent, _rss_bytes  gauge      this process
=======================================  =========  ================================================
"""

from __future__ import annotations

import threading
from typing import Any, Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["OrchestratorMetrics", "STAGE_BUCKETS"]

#: Stage times run from tens of microseconds to a cycle (10 ms) and beyond when something stalls.
STAGE_BUCKETS = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 0.5)
_JITTER_BUCKETS = (50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 100e-3)
_LATENCY_BUCKETS = (100e-6, 250e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 0.5, 2.0)


class OrchestratorMetrics:
    """The metric objects and, after :meth:`serve`, the HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.stage_seconds = Histogram("sigfuse_stage_seconds", "Loop stage time per cycle", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.cycle_seconds = Histogram("sigfuse_cycle_seconds", "Loop cycle time (start to start)",
                                       buckets=STAGE_BUCKETS, registry=r)
        self.jitter_seconds = Histogram("sigfuse_cycle_jitter_seconds", "Cycle start minus its schedule",
                                        buckets=_JITTER_BUCKETS, registry=r)
        self.signal_to_order = Histogram("sigfuse_signal_to_order_seconds", "Signal created to order sent",
                                         buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("sigfuse_queue_depth", "Decisions waiting in the fusion queue", registry=r)
        self.handoff_depth = Gauge("sigfuse_handoff_depth", "Decisions waiting for the coordinator", registry=r)
        self.signals = Counter("sigfuse_signals", "Signals generated", ["source"], registry=r)
        self.decisions = Counter("sigfuse_decisions", "Decisions emitted by fusion", registry=r)
        self.drops = Counter("sigfuse_drops", "Results dropped by fusion or the queue", ["reason"], registry=r)
        self.orders = Counter("sigfuse_orders", "Orders sent", registry=r)
        self.fills = Counter("sigfuse_fills", "Fills received", registry=r)
        self.pnl = Gauge("sigfuse_pnl", "Profit and loss, quote currency", ["kind"], registry=r)
        self.health = Gauge("sigfuse_health_score", "Component health score", ["component"], registry=r)
        self.alerts = Counter("sigfuse_alerts", "Health alerts", ["kind"], registry=r)
        self.link = Counter("sigfuse_link_events", "Failover and link events", ["event"], registry=r)
        self.backend_active = Gauge("sigfuse_backend_active", "1 for the backend answering now", ["backend"],
                                    registry=r)
        self.optimizer_actions = Counter("sigfuse_optimizer_actions", "Optimizer actions",
                                         ["strategy", "action"], registry=r)
        self.optimizer_active = Gauge("sigfuse_optimizer_active", "1 while a strategy is applied", ["strategy"],
                                      registry=r)
        self.cpu = Gauge("sigfuse_process_cpu_percent", "Process CPU, percent of one core", registry=r)
        self.rss = Gauge("sigfuse_process_rss_bytes", "Process resident memory", registry=r)
        self._seen: dict[tuple[str, str], float] = {}
        self.server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # Counters kept elsewhere (coordinator, backend) are mirrored by adding what changed.
    def advance(self, counter: Counter, value: float, *labels: str) -> None:
        key = (counter._name, "\x00".join(labels))  # noqa: SLF001 -- a stable per-metric key
        delta = value - self._seen.get(key, 0.0)
        if delta > 0:
            (counter.labels(*labels) if labels else counter).inc(delta)
            self._seen[key] = value

    def update_link(self, counters: Mapping[str, int]) -> None:
        for event in ("failovers", "failbacks", "replayed_signals", "replayed_pops", "mirror_mismatches",
                      "restarts", "restart_failures", "probes", "probe_failures", "carried_decisions"):
            self.advance(self.link, counters.get(event, 0), event)

    def set_backend(self, active: str, names: tuple[str, ...]) -> None:
        for name in names:
            self.backend_active.labels(name).set(1.0 if name == active else 0.0)

    def set_pnl(self, pnl: Mapping[str, Any]) -> None:
        for kind in ("realized", "unrealized", "fees", "net"):
            self.pnl.labels(kind).set(float(pnl.get(kind, 0.0)))

    # --- the endpoint -------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> int:
        """Start the HTTP endpoint (a daemon thread); returns the port (``port=0`` picks one)."""
        self.server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        return int(self.server.server_port)

    @property
    def port(self) -> int | None:
        return int(self.server.server_port) if self.server is not None else None

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
