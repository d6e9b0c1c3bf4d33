"""``sigfuse demo``: the whole system on the synthetic market for a fixed time, with a dashboard,
a summary and a report.

All seven signal kinds on ``--pairs`` pairs (10), each source evaluated ``--frequency`` times per
second (5.0), the loop at ``orchestrator.frequency_hz`` (100 Hz).  On a terminal a live
dashboard (rich) shows signals/min, decisions, orders, fills, success rate, P&L, health per
component, loop latency, CPU and memory; without one (a pipe, CI) a plain status line is printed
every ``demo.status_interval_s``.  At the end the summary is printed and written to
``--out DIR`` (default ``runs/<timestamp>/``):

* ``summary.json`` -- signals, decisions, orders, fills, success rate, P&L, health, loop jitter,
  backend used, failover and optimizer activity;
* ``journal.sqlite`` -- the run's audit journal (``sigfuse journal summary`` reads it), and
  ``venues.sqlite``, the paper venues' book;
* ``report.html`` -- P&L curve, latency histograms, health timeline (inline SVG, no external
  assets).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from ..config import SigfuseConfig
from ..log import get_logger
from .backend import choose_backend
from .loop import Orchestrator
from .report import write_report

__all__ = ["run_demo", "render_dashboard", "status_line", "format_summary", "default_out_dir"]


def default_out_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


def status_line(f: dict[str, Any]) -> str:
    """One plain status line (no TTY)."""
    jitter = f["jitter_us"]
    health = f["health"]
    worst = min(health.items(), key=lambda kv: kv[1][0]) if health else ("-", (1.0, "ok"))
    return (f"[{f['elapsed_s']:6.1f}s] backend={f['backend']} signals={f['signals']} "
            f"({f['signals_per_minute']:.0f}/min) decisions={f['decisions']} orders={f['orders']} "
            f"fills={f['fills']} success={f['success_rate'] or 0:.0%} pnl={f['pnl']['net']:+,.2f} "
            f"jitter_p99={jitter.get('p99', 0) / 1e3:.2f}ms cpu={f['cpu_percent']:.0f}% "
            f"rss={f['rss_bytes'] / 2**20:.0f}MiB health_min={worst[0]}:{worst[1][0]:.2f}"
            + (f" optimizer={','.join(f['optimizer'])}" if f["optimizer"] else ""))


def render_dashboard(f: dict[str, Any], *, duration_s: float) -> Any:
    """The live dashboard (a rich renderable)."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table

    top = Table.grid(padding=(0, 2))
    for _ in range(4):
        top.add_column()
    pnl = f["pnl"]
    jitter, cycle = f["jitter_us"], f["cycle_us"]
    top.add_row("backend", f"[bold]{f['backend']}[/]", "elapsed", f"{f['elapsed_s']:.1f} / {duration_s:.0f} s")
    top.add_row("signals", f"{f['signals']} ({f['signals_per_minute']:.0f}/min)", "decisions", str(f["decisions"]))
    top.add_row("orders", str(f["orders"]), "fills", str(f["fills"]))
    top.add_row("success rate", f"{f['success_rate'] or 0:.1%}", "open orders", str(f["open_orders"]))
    colour = "green" if pnl["net"] >= 0 else "red"
    top.add_row("P&L net", f"[{colour}]{pnl['net']:+,.2f}[/]", "realized / fees",
                f"{pnl['realized']:+,.2f} / {pnl['fees']:,.2f}")
    top.add_row("loop jitter p50/p99", f"{jitter.get('p50', 0) / 1e3:.2f} / {jitter.get('p99', 0) / 1e3:.2f} ms",
                "cycle p99", f"{cycle.get('p99', 0) / 1e3:.2f} ms")
    top.add_row("CPU", f"{f['cpu_percent']:.0f} % of a core", "memory (RSS)", f"{f['rss_bytes'] / 2**20:.0f} MiB")
    top.add_row("failovers / failbacks", f"{f['failovers']} / {f['failbacks']}", "optimizer",
                ", ".join(f["optimizer"]) or "idle")
    health = Table(title="health", expand=False)
    health.add_column("component")
    health.add_column("score", justify="right")
    health.add_column("status")
    for name, (score, status) in f["health"].items():
        style = {"ok": "green", "degraded": "yellow"}.get(status, "red")
        health.add_row(name, f"{score:.2f}", f"[{style}]{status}[/]")
    sources = Table(title="signals by source", expand=False)
    sources.add_column("source")
    sources.add_column("signals", justify="right")
    for name, count in f["signals_by_source"].items():
        sources.add_row(name + (" (synthetic feed)" if name in ("sentiment", "news", "whale") else ""), str(count))
    below = Table.grid(padding=(0, 3))
    below.add_row(health, sources)
    return Panel(Group(top, below), title="sigfuse demo", border_style="blue")


def format_summary(summary: dict[str, Any]) -> str:
    loop = summary["loop"]
    jitter = loop["jitter_us"]
    s2o = summary["signal_to_order_us"]
    lines = [
        "sigfuse demo: summary",
        f"  backend            {summary['backend']} ({summary.get('backend_reason', '')}); queue "
        f"{summary.get('queue_capacity', '?')} entries, {summary.get('pair_slots', '?')} pair slots",
        f"  duration           {summary['duration_s']:.1f} s, {loop['cycles']} cycles at "
        f"{summary['loop_frequency_hz']:g} Hz, {loop['overruns']} overruns",
        f"  signals            {summary['signals']} ({summary['signals_per_minute']:.0f}/min): "
        + ", ".join(f"{k} {v}" for k, v in summary["signals_by_source"].items()),
        f"  decisions          {summary['decisions']} (executed {summary['decisions_executed']}, "
        f"left in queue at stop {summary['decisions_left_unexecuted']})",
        f"  orders / fills     {summary['orders']} / {summary['fills']}, success rate "
        f"{summary['success_rate'] or 0:.1%}",
        f"  P&L                net {summary['pnl']['net']:+,.2f} (realized {summary['pnl']['realized']:+,.2f}, "
        f"unrealized {summary['pnl']['unrealized']:+,.2f}, fees {summary['pnl']['fees']:,.2f})",
        f"  loop jitter        p50 {jitter.get('p50', 0):,.0f} µs, p99 {jitter.get('p99', 0):,.0f} µs, "
        f"max {jitter.get('max', 0):,.0f} µs",
        f"  signal -> order    p50 {s2o.get('p50', 0):,.0f} µs, p99 {s2o.get('p99', 0):,.0f} µs "
        f"({s2o.get('samples', 0)} orders)",
        f"  health             " + ", ".join(f"{n} {h['score']:.2f}" for n, h in summary["health"].items()),
        f"  failover           {summary['failover']['failovers']} failovers, {summary['failover']['failbacks']} failbacks",
        f"  optimizer          " + (", ".join(f"{k} x{v}" for k, v in summary["optimizer"]["actions"].items()) or "no action"),
        f"  peak RSS           {summary['resources']['peak_rss_bytes'] / 2**20:.1f} MiB"
        + (f" (the virtual board's own process: {summary['resources']['peak_board_rss_bytes'] / 2**20:.1f} MiB)"
           if summary["resources"].get("peak_board_rss_bytes") else ""),
        f"  synthetic feeds    {', '.join(summary['synthetic_feeds'])} (generated, not observed)",
    ]
    if summary.get("out_dir"):
        lines.append(f"  written to         {summary['out_dir']}/ (summary.json, journal.sqlite, report.html)")
    return "\n".join(lines)


async def run_demo(config: SigfuseConfig, *, duration_s: float, frequency_hz: float, backend: str = "auto",
                   url: str | None = None, pairs: int = 10, seed: int = 1, out_dir: str | Path | None = None,
                   dashboard: str = "auto", out: TextIO | None = None,
                   serve_metrics: bool | None = None) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the summary.  Raises
    :class:`~.backend.BackendUnavailable` for a backend that cannot be used here."""
    out = out or sys.stdout
    log = get_logger("demo")
    kind, why = choose_backend(backend, board=config.board.name,
                               progress=lambda message: print(f"demo: {message}", file=out, flush=True))
    print(f"demo: backend {kind} -- {why}", file=out, flush=True)
    directory = Path(out_dir) if out_dir else default_out_dir()
    directory.mkdir(parents=True, exist_ok=True)
    journal = directory / "journal.sqlite"
    for stale in (journal, directory / "venues.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(str(stale) + suffix).unlink(missing_ok=True)
    orchestrator = Orchestrator(config, journal_path=journal, venue_store=directory / "venues.sqlite",
                                backend=kind, url=url, seed=seed, pairs=pairs, source_poll_hz=frequency_hz,
                                serve_metrics=serve_metrics)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, orchestrator.request_stop, signal.Signals(signum).name)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not the main thread: the caller handles signals
    live = dashboard == "live" or (dashboard == "auto" and out.isatty())
    interval = config.demo.status_interval_s
    print(f"demo: {pairs} pairs, {len(orchestrator.sources)} sources at {frequency_hz:g} Hz each, loop at "
          f"{orchestrator.frequency_hz:g} Hz, {duration_s:g} s; synthetic feeds: "
          f"{', '.join(sorted(orchestrator.data.synthetic_feeds))}; output in {directory}/", file=out, flush=True)

    async def show() -> None:
        if live:
            from rich.console import Console
            from rich.live import Live
            console = Console(file=out)
            with Live(console=console, refresh_per_second=2, transient=False) as view:
                while True:
                    await asyncio.sleep(0.5)
                    view.update(render_dashboard(orchestrator.live_figures(), duration_s=duration_s))
        else:
            while True:
                await asyncio.sleep(interval)
                print(status_line(orchestrator.live_figures()), file=out, flush=True)

    viewer: asyncio.Task[None] | None = None
    try:
        await orchestrator.start()
        viewer = loop.create_task(show())
        if orchestrator.metrics_port:
            print(f"demo: metrics at http://{config.metrics.host}:{orchestrator.metrics_port}/metrics",
                  file=out, flush=True)
        await orchestrator.run_loop(duration_s)
    finally:
        if viewer is not None:
            viewer.cancel()
            await asyncio.gather(viewer, return_exceptions=True)
        await orchestrator.shutdown()
    summary = orchestrator.summary()
    summary["backend_reason"] = why
    summary["requested_backend"] = backend
    summary["out_dir"] = str(directory)
    summary["seed"] = seed
    (directory / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    write_report(directory / "report.html", summary, orchestrator.recorder.series,
                 signal_to_order_us=list(orchestrator.signal_to_order_us),
                 jitter_us=list(orchestrator.recorder.jitter_us), health_timeline=orchestrator.health_timeline)
    print(("\n" if live else "") + format_summary(summary), file=out, flush=True)
    log.info("demo_done", out_dir=str(directory), signals=summary["signals"], orders=summary["orders"])
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m sigfuse.orchestrator.demo`` (same options as ``sigfuse demo``)."""
    from .cli import demo_main
    return demo_main(argv)


if __name__ == "__main__":
    sys.exit(main())
