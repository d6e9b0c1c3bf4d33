"""The Prometheus endpoint: served on 127.0.0.1, scraped over HTTP."""

from __future__ import annotations

import asyncio
import urllib.request

from sigfuse.config import SigfuseConfig
from sigfuse.orchestrator.loop import Orchestrator
from sigfuse.orchestrator.metrics import OrchestratorMetrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        return response.read().decode()


def test_endpoint_serves_on_loopback() -> None:
    metrics = OrchestratorMetrics()
    port = metrics.serve("127.0.0.1", 0)
    try:
        assert metrics.server is not None and metrics.server.server_address[0] == "127.0.0.1"
        metrics.signals.labels("arbitrage").inc(3)
        metrics.update_link({"failovers": 2, "replayed_signals": 17})
        metrics.update_link({"failovers": 2, "replayed_signals": 20})
        text = scrape(port)
        assert 'sigfuse_signals_total{source="arbitrage"} 3.0' in text
        assert 'sigfuse_link_events_total{event="failovers"} 2.0' in text
        assert 'sigfuse_link_events_total{event="replayed_signals"} 20.0' in text
    finally:
        metrics.close()


def test_a_running_orchestrator_exports_its_figures(tmp_path, seed: int) -> None:
    config = SigfuseConfig.model_validate({"metrics": {"port": 0}, "health": {"interval_s": 0.2}})
    orchestrator = Orchestrator(config, journal_path=tmp_path / "j.sqlite", seed=seed, source_poll_hz=20.0,
                                series_interval_s=0.2)

    async def scenario() -> str:
        await orchestrator.start()
        runner = asyncio.get_running_loop().create_task(orchestrator.run_loop(1.2))
        await asyncio.sleep(1.0)
        text = await asyncio.to_thread(scrape, orchestrator.metrics_port)
        await runner
        await orchestrator.shutdown()
        return text

    text = asyncio.run(scenario())
    for stage in ("market", "sources", "fusion", "dispatch", "execution"):
        assert f'sigfuse_stage_seconds_count{{stage="{stage}"}}' in text
    for name in ("sigfuse_cycle_seconds_bucket", "sigfuse_cycle_jitter_seconds_count", "sigfuse_queue_depth",
                 "sigfuse_signals_total", 'sigfuse_health_score{component="fusion"}',
                 'sigfuse_pnl{kind="net"}', 'sigfuse_backend_active{backend="software"} 1.0',
                 "sigfuse_process_rss_bytes", "sigfuse_decisions_total", "sigfuse_orders_total"):
        assert name in text, name
