"""Component health: heartbeats, scores, alerts, trend prediction and restarts with backoff.

Components (each source, the fusion backend, the link, the coordinator, each venue, the
journal) register with :class:`HealthMonitor` and report heartbeats, successes with their
latency, and failures.  :meth:`HealthMonitor.evaluate` (the orchestrator calls it every
``health.interval_s``) turns that into:

**A score in [0, 1]** per component::

    score = freshness x (0.6 x error_score + 0.4 x latency_score)

* ``error_score = max(0, 1 - error_rate / error_rate_critical)`` over the last
  ``health.window`` outcomes;
* ``latency_score`` is 1 up to the component's latency budget and falls linearly to 0 at four
  times the budget (mean of the last ten latencies);
* ``freshness`` is 1 while the last heartbeat is younger than half of
  ``heartbeat_timeout_s``, then falls linearly to 0 at the timeout.

**A status**: ``ok`` (score >= ``warn_score``), ``degraded``, ``critical`` (score <
``critical_score``), or ``failed`` (``max_consecutive_failures`` failures in a row, or no
heartbeat for ``heartbeat_timeout_s``).  Every change of status is an alert.

**Prediction**: the last ``prediction_samples`` readings of latency and error rate are fitted
with a straight line (least squares); when the line crosses the threshold (the latency budget,
``error_rate_warn``) within ``prediction_horizon_s`` while the current value is still below it,
a ``predicted_breach`` alert says which metric, the current and projected values, the
threshold, the estimated time to the crossing and the horizon.  It is re-armed once the
projection falls back below.

**Restarts**: a failed component with a restart function is restarted after
``restart_backoff_s[attempt]`` (the last entry repeats); a restart that raises counts as the
next attempt.  Successes reset the attempt counter.

Alerts go to the log (warning, or error for ``critical``/``failed``) and, when
``health.webhook_url`` is set, are POSTed there as JSON (in a worker thread; a failing webhook
is logged and counted, never raised).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Awaitable, Callable, Literal

from ..config import HealthConfig
from ..log import get_logger

__all__ = ["HealthMonitor", "ComponentHealth", "Alert", "WebhookSink", "Status", "linear_forecast"]

Status = Literal["ok", "degraded", "critical", "failed"]
_RANK = {"ok": 0, "degraded": 1, "critical": 2, "failed": 3}
RestartFn = Callable[[], "None | Awaitable[None]"]


@dataclass(frozen=True)
class Alert:
    """One alert, as logged and POSTed."""
    ts: float
    component: str
    kind: str           # status | predicted_breach | restart | restart_failed
    level: str          # info | warning | error
    message: str
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ComponentHealth:
    """What the monitor knows about one component."""
    name: str
    kind: str
    latency_budget_ms: float
    heartbeat_timeout_s: float
    restart: RestartFn | None
    window: int
    last_heartbeat: float = 0.0
    outcomes: deque[bool] = field(default_factory=deque)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10))
    consecutive_failures: int = 0
    failures: int = 0
    successes: int = 0
    last_error: str = ""
    score: float = 1.0
    status: Status = "ok"
    restarts: int = 0
    restart_attempt: int = 0
    next_restart_at: float | None = None
    restarting: bool = False
    readings: deque[tuple[float, float, float]] = field(default_factory=deque)
    predicted: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.outcomes = deque(self.outcomes, maxlen=self.window)

    @property
    def error_rate(self) -> float:
        return self.outcomes.count(False) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def latency_ms(self) -> float:
        return sum(self.latencies_ms) / len(self.latencies_ms) if self.latencies_ms else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "score": round(self.score, 4), "status": self.status,
                "error_rate": round(self.error_rate, 4), "latency_ms": round(self.latency_ms, 4),
                "consecutive_failures": self.consecutive_failures, "failures": self.failures,
                "restarts": self.restarts, "last_error": self.last_error}


def linear_forecast(points: list[tuple[float, float]], at: float) -> tuple[float, float, float]:
    """Least-squares line through ``(t, value)`` points: ``(fitted value at the last t, slope,
    value projected at t = at)``."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / var if var > 0 else 0.0
    last_t = points[-1][0]
    return mean_v + slope * (last_t - mean_t), slope, mean_v + slope * (at - mean_t)


class WebhookSink:
    """POSTs alerts as JSON to one URL (a worker thread per POST; failures are counted)."""

    def __init__(self, url: str, *, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.sent = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._log = get_logger("health.webhook")

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "sigfuse-health"})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()

    async def send(self, alert: Alert) -> bool:
        body = json.dumps({"source": "sigfuse", **alert.as_dict()}, default=str).encode()
        try:
            await asyncio.to_thread(self._post, body)
        except (urllib.error.URLError, OSError, ValueError) as error:
            self.failed += 1
            self._log.warning("webhook_failed", error=str(error), component=alert.component)
            return False
        self.sent += 1
        return True

    def submit(self, alert: Alert) -> None:
        """Send in the background (inside a running loop); :meth:`drain` waits for the sends."""
        task = asyncio.get_running_loop().create_task(self.send(alert))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 5.0) -> None:
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)


class HealthMonitor:
    """Registry of components and their health (see the module docstring)."""

    def __init__(self, config: HealthConfig | None = None, *, clock: Callable[[], float] = time.monotonic,
                 webhook: WebhookSink | None = None) -> None:
        self.config = config or HealthConfig()
        self.clock = clock
        url = self.config.webhook_url.get_secret_value() if self.config.webhook_url else None
        self.webhook = webhook or (WebhookSink(url) if url else None)
        self.components: dict[str, ComponentHealth] = {}
        self.alerts: deque[Alert] = deque(maxlen=1000)
        self.alert_count = 0
        self._listeners: list[Callable[[Alert], None]] = []
        self._log = get_logger("health")

    # --- registration and reports -----------------------------------------------------------

    def register(self, name: str, *, kind: str = "component", latency_budget_ms: float | None = None,
                 heartbeat_timeout_s: float | None = None, restart: RestartFn | None = None) -> ComponentHealth:
        cfg = self.config
        component = ComponentHealth(
            name=name, kind=kind,
            latency_budget_ms=cfg.latency_budget_ms if latency_budget_ms is None else latency_budget_ms,
            heartbeat_timeout_s=cfg.heartbeat_timeout_s if heartbeat_timeout_s is None else heartbeat_timeout_s,
            restart=restart, window=cfg.window, last_heartbeat=self.clock())
        component.readings = deque(maxlen=cfg.prediction_samples)
        self.components[name] = component
        return component

    def on_alert(self, listener: Callable[[Alert], None]) -> None:
        self._listeners.append(listener)

    def heartbeat(self, name: str) -> None:
        self.components[name].last_heartbeat = self.clock()

    def success(self, name: str, latency_ms: float | None = None) -> None:
        c = self.components[name]
        c.last_heartbeat = self.clock()
        c.outcomes.append(True)
        c.successes += 1
        c.consecutive_failures = 0
        c.restart_attempt = 0
        if latency_ms is not None:
            c.latencies_ms.append(latency_ms)

    def failure(self, name: str, error: str | BaseException = "") -> None:
        c = self.components[name]
        c.last_heartbeat = self.clock()
        c.outcomes.append(False)
        c.failures += 1
        c.consecutive_failures += 1
        c.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"

    def mark_failed(self, name: str, reason: str) -> None:
        """A component is known dead (a link that dropped): failed at the next evaluation."""
        c = self.components[name]
        c.consecutive_failures = max(c.consecutive_failures, self.config.max_consecutive_failures)
        c.failures += 1
        c.outcomes.append(False)
        c.last_error = reason

    def mark_recovered(self, name: str) -> None:
        """A component is known good again (a restarted link that took over)."""
        c = self.components[name]
        c.consecutive_failures = 0
        c.restart_attempt = 0
        c.next_restart_at = None
        c.last_heartbeat = self.clock()
        c.outcomes.clear()

    # --- evaluation ---------------------------------------------------------------------------

    def _score(self, c: ComponentHealth, now: float) -> tuple[float, Status]:
        cfg = self.config
        error_score = max(0.0, 1.0 - c.error_rate / cfg.error_rate_critical)
        latency = c.latency_ms
        budget = c.latency_budget_ms
        latency_score = 1.0 if latency <= budget else max(0.0, 1.0 - (latency - budget) / (3.0 * budget))
        age = now - c.last_heartbeat
        half = c.heartbeat_timeout_s / 2
        freshness = 1.0 if age <= half else max(0.0, 1.0 - (age - half) / half)
        score = freshness * (0.6 * error_score + 0.4 * latency_score)
        if c.consecutive_failures >= cfg.max_consecutive_failures or age >= c.heartbeat_timeout_s:
            status: Status = "failed"
        elif score < cfg.critical_score:
            status = "critical"
        elif score < cfg.warn_score:
            status = "degraded"
        else:
            status = "ok"
        return score, status

    def evaluate(self) -> list[Alert]:
        """Score every component, raise alerts, schedule restarts.  Returns the new alerts."""
        now = self.clock()
        new: list[Alert] = []
        for c in self.components.values():
            score, status = self._score(c, now)
            c.score = score
            if status != c.status:
                level = "error" if status in ("critical", "failed") else "warning" if status == "degraded" else "info"
                new.append(self._alert(c, "status", level, f"{c.name}: {c.status} -> {status}",
                                       previous=c.status, status=status, score=round(score, 3),
                                       error_rate=round(c.error_rate, 3), latency_ms=round(c.latency_ms, 3),
                                       consecutive_failures=c.consecutive_failures, last_error=c.last_error))
                if status == "failed" and c.restart is not None and c.next_restart_at is None:
                    c.next_restart_at = now + self._backoff(c.restart_attempt)
                c.status = status
            c.readings.append((now, c.latency_ms, c.error_rate))
            new.extend(self._predict(c, now))
        return new

    def _backoff(self, attempt: int) -> float:
        steps = self.config.restart_backoff_s
        return steps[min(attempt, len(steps) - 1)] if steps else 0.0

    def _predict(self, c: ComponentHealth, now: float) -> list[Alert]:
        cfg = self.config
        if len(c.readings) < max(3, cfg.prediction_samples // 2):
            return []
        horizon = cfg.prediction_horizon_s
        out = []
        for metric, index, threshold in (("latency_ms", 1, c.latency_budget_ms),
                                         ("error_rate", 2, cfg.error_rate_warn)):
            points = [(r[0], r[index]) for r in c.readings]
            fitted, slope, projected = linear_forecast(points, now + horizon)
            current = points[-1][1]
            if slope > 0 and current < threshold <= projected:
                if metric not in c.predicted:
                    c.predicted.add(metric)
                    eta = max(0.0, (threshold - fitted) / slope)
                    out.append(self._alert(
                        c, "predicted_breach", "warning",
                        f"{c.name}: {metric} projected to reach {threshold:g} in {eta:.1f} s "
                        f"(horizon {horizon:g} s)",
                        metric=metric, current=round(current, 4), projected=round(projected, 4),
                        threshold=threshold, eta_s=round(eta, 2), horizon_s=horizon,
                        slope_per_s=round(slope, 6)))
            elif projected < threshold:
                c.predicted.discard(metric)
        return out

    def _alert(self, c: ComponentHealth, kind: str, level: str, message: str, **fields: Any) -> Alert:
        alert = Alert(time.time(), c.name, kind, level, message, fields)
        self.alerts.append(alert)
        self.alert_count += 1
        getattr(self._log, level)("alert", component=c.name, kind=kind, message=message, **fields)
        for listener in self._listeners:
            listener(alert)
        if self.webhook is not None:
            try:
                self.webhook.submit(alert)
            except RuntimeError:  # no running loop: evaluated synchronously (tests, tools)
                pass
        return alert

    # --- restarts -----------------------------------------------------------------------------

    async def restart_due(self) -> list[str]:
        """Run the restarts whose backoff has elapsed; returns the components restarted."""
        now = self.clock()
        restarted = []
        for c in self.components.values():
            if c.restart is None or c.next_restart_at is None or now < c.next_restart_at or c.restarting:
                continue
            c.restarting = True
            attempt = c.restart_attempt
            try:
                outcome = c.restart()
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as error:  # noqa: BLE001 -- any failure is the next attempt
                c.restart_attempt += 1
                backoff = self._backoff(c.restart_attempt)
                c.next_restart_at = self.clock() + backoff
                self._alert(c, "restart_failed", "error", f"{c.name}: restart failed, next in {backoff:g} s",
                            attempt=attempt + 1, error=f"{type(error).__name__}: {error}", backoff_s=backoff)
            else:
                c.restarts += 1
                c.restart_attempt += 1
                c.next_restart_at = None
                c.consecutive_failures = 0
                c.outcomes.clear()
                c.last_heartbeat = self.clock()
                restarted.append(c.name)
                self._alert(c, "restart", "info", f"{c.name}: restarted (attempt {attempt + 1})",
                            attempt=attempt + 1, backoff_s=self._backoff(attempt))
            finally:
                c.restarting = False
        return restarted

    async def tick(self) -> list[Alert]:
        """One evaluation plus due restarts (what the orchestrator runs every interval)."""
        alerts = self.evaluate()
        await self.restart_due()
        return alerts

    def scores(self) -> dict[str, float]:
        return {name: c.score for name, c in self.components.items()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: c.as_dict() for name, c in self.components.items()}

    async def close(self) -> None:
        if self.webhook is not None:
            await self.webhook.drain()
