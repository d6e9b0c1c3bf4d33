"""Health monitor: scores from error rate, latency and staleness; status alerts; consecutive
failures; restarts with backoff; trend prediction ahead of a threshold; a real webhook POST."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading

import pytest

from sigfuse.config import HealthConfig
from sigfuse.orchestrator.health import HealthMonitor, WebhookSink, linear_forecast


def monitor(clock, **overrides) -> HealthMonitor:
    return HealthMonitor(HealthConfig(**overrides), clock=clock)


def test_score_falls_with_errors_latency_and_staleness(clock) -> None:
    m = monitor(clock, heartbeat_timeout_s=4.0)
    m.register("fusion", latency_budget_ms=10.0)
    for _ in range(10):
        m.success("fusion", 5.0)
    m.evaluate()
    assert m.components["fusion"].score == pytest.approx(1.0)
    # 20 % errors (error_rate_critical 0.5): error score 0.6 -> 0.6 x 0.6 + 0.4 = 0.76.
    for _ in range(2):
        m.failure("fusion", "boom")
        m.success("fusion", 5.0)  # not consecutive
    m.components["fusion"].outcomes = type(m.components["fusion"].outcomes)(
        [True] * 8 + [False] * 2, maxlen=50)
    m.evaluate()
    assert m.components["fusion"].score == pytest.approx(0.76)
    # Latency at twice the budget: latency score 1 - 10/30.
    for _ in range(10):
        m.success("fusion", 20.0)
    m.components["fusion"].outcomes.clear()
    m.evaluate()
    assert m.components["fusion"].score == pytest.approx(0.6 + 0.4 * (1 - 10 / 30))
    # Staleness: three quarters of the timeout without a heartbeat halves the score.
    clock.advance(3.0)
    m.evaluate()
    assert m.components["fusion"].score == pytest.approx(0.5 * (0.6 + 0.4 * (1 - 10 / 30)))
    clock.advance(1.0)
    m.evaluate()
    assert m.components["fusion"].score == 0.0 and m.components["fusion"].status == "failed"


def test_status_changes_are_alerts(clock) -> None:
    m = monitor(clock)
    m.register("journal", latency_budget_ms=1.0)
    seen = []
    m.on_alert(seen.append)
    m.evaluate()
    assert seen == []
    for _ in range(10):
        m.success("journal", 3.5)  # latency score 1 - 2.5/3 -> 0.6 + 0.4/6 = 0.67: degraded
    m.evaluate()
    assert [(a.kind, a.fields["status"]) for a in seen] == [("status", "degraded")]
    assert seen[0].level == "warning"


def test_consecutive_failures_fail_and_restart_with_backoff(clock) -> None:
    restarts = []
    attempts = {"n": 0}

    def restart() -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise OSError("still unplugged")
        restarts.append(clock())

    m = monitor(clock, max_consecutive_failures=3, restart_backoff_s=[0.5, 2.0])
    m.register("link", restart=restart)
    for _ in range(2):
        m.failure("link", "timeout")
    m.evaluate()
    assert m.components["link"].status != "failed"
    m.failure("link", "timeout")
    alerts = m.evaluate()
    c = m.components["link"]
    assert c.status == "failed" and c.consecutive_failures == 3
    assert any(a.kind == "status" and a.level == "error" for a in alerts)
    assert asyncio.run(m.restart_due()) == []          # backoff 0.5 s not over
    clock.advance(0.5)
    assert asyncio.run(m.restart_due()) == []          # first attempt raised
    assert c.restart_attempt == 1 and c.next_restart_at == pytest.approx(clock() + 2.0)
    clock.advance(1.0)
    assert asyncio.run(m.restart_due()) == []          # the second backoff is 2 s
    clock.advance(1.0)
    assert asyncio.run(m.restart_due()) == ["link"]
    assert c.restarts == 1 and c.consecutive_failures == 0 and restarts == [clock()]
    m.evaluate()
    assert c.status == "ok"
    kinds = [a.kind for a in m.alerts]
    assert "restart_failed" in kinds and "restart" in kinds


def test_async_restart_functions_are_awaited(clock) -> None:
    done = []

    async def restart() -> None:
        await asyncio.sleep(0)
        done.append(True)

    m = monitor(clock, restart_backoff_s=[0.0])
    m.register("coordinator", restart=restart)
    m.mark_failed("coordinator", "task ended")
    m.evaluate()
    assert asyncio.run(m.restart_due()) == ["coordinator"] and done == [True]


def test_prediction_raises_before_the_threshold(clock) -> None:
    """Latency climbing 1 ms/s towards a 50 ms budget: the trend alert comes while latency is still
    well below 50, names the horizon, and estimates the time to the crossing."""
    m = monitor(clock, prediction_horizon_s=30.0, prediction_samples=10)
    m.register("venue.alpha", latency_budget_ms=50.0)
    latency = 10.0
    raised = None
    for step in range(60):
        for _ in range(10):
            m.success("venue.alpha", latency)
        alerts = [a for a in m.evaluate() if a.kind == "predicted_breach"]
        if alerts:
            raised = (latency, alerts[0])
            break
        clock.advance(1.0)
        latency += 1.0
    assert raised is not None
    value, alert = raised
    assert value < 50.0 and alert.fields["current"] < alert.fields["threshold"] == 50.0
    assert alert.fields["projected"] >= 50.0 and alert.fields["horizon_s"] == 30.0
    assert alert.fields["eta_s"] == pytest.approx(50.0 - value, abs=2.0)
    assert "horizon 30 s" in alert.message
    # One alert per episode, not one per reading.
    for _ in range(10):
        m.success("venue.alpha", latency + 1)
    clock.advance(1.0)
    assert not [a for a in m.evaluate() if a.kind == "predicted_breach"]


def test_prediction_of_the_error_rate(clock) -> None:
    from collections import deque
    m = monitor(clock, prediction_horizon_s=20.0, prediction_samples=8, window=100, error_rate_warn=0.2)
    c = m.register("source.whale")
    raised = []
    for step in range(1, 11):
        # Error rate rising 2 points per second towards 20 %.
        c.outcomes = deque([False] * (2 * step) + [True] * (100 - 2 * step), maxlen=100)
        raised += [a for a in m.evaluate() if a.kind == "predicted_breach"]
        if raised:
            break
        clock.advance(1.0)
    assert raised and raised[0].fields["metric"] == "error_rate"
    assert raised[0].fields["current"] < 0.2 <= raised[0].fields["projected"]
    assert raised[0].fields["eta_s"] == pytest.approx((0.2 - raised[0].fields["current"]) / 0.02, abs=0.5)


def test_linear_forecast() -> None:
    fitted, slope, projected = linear_forecast([(0, 1.0), (1, 3.0), (2, 5.0)], 10)
    assert (fitted, slope, projected) == pytest.approx((5.0, 2.0, 21.0))


class _Collector(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_alerts_are_posted_to_the_webhook(clock) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Collector.received = []
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"

        async def scenario() -> HealthMonitor:
            m = HealthMonitor(HealthConfig(webhook_url=url, max_consecutive_failures=1), clock=clock)
            m.register("journal")
            m.failure("journal", "disk full")
            m.evaluate()
            await m.close()
            return m

        m = asyncio.run(scenario())
        assert m.webhook is not None and m.webhook.sent == 1 and m.webhook.failed == 0
        (content_type, body), = _Collector.received
        assert content_type == "application/json"
        assert body["component"] == "journal" and body["kind"] == "status"
        assert body["fields"]["status"] == "failed" and body["fields"]["last_error"] == "disk full"
    finally:
        server.shutdown()
        server.server_close()


def test_a_dead_webhook_is_counted_not_raised() -> None:
    sink = WebhookSink("http://127.0.0.1:9/nowhere", timeout_s=0.5)
    from sigfuse.orchestrator.health import Alert
    assert asyncio.run(sink.send(Alert(0.0, "x", "status", "error", "m"))) is False
    assert sink.failed == 1
