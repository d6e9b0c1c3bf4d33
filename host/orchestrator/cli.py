"""``sigfuse run`` and ``sigfuse demo``.

``add_run_command(subparsers)`` and ``add_demo_command(subparsers)`` register them on the main
``sigfuse`` parser; ``python -m sigfuse.orchestrator.cli run|demo ...`` runs them stand-alone.

Exit status: 0 after a clean stop (SIGINT and SIGTERM are clean stops), 2 for a problem the user
can fix (configuration, an unavailable backend), 3 when the journal and the venues disagree
(see ``sigfuse paper``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any, Sequence

# The same tuple as sigfuse.orchestrator.backend.BACKEND_CHOICES (a test checks), spelled out so
# that building the `sigfuse` parser does not import the engine.
BACKEND_CHOICES = ("auto", "software", "sim", "board")

__all__ = ["add_run_command", "add_demo_command", "cmd_run", "cmd_demo", "main", "demo_main"]

EXIT_USAGE = 2
EXIT_UNRECONCILED = 3


def _load(path: str | None, log_level: str | None, *, console: str | None = None):
    from ..config import load_config
    from ..log import setup_from_config
    config = load_config(path)
    logging_cfg = config.logging.model_copy()
    if log_level:
        logging_cfg.level = log_level
    if console:
        logging_cfg.console = console
    setup_from_config(logging_cfg)
    return config


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return EXIT_USAGE


# --- sigfuse run ------------------------------------------------------------------------------

def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto",
                        help="fusion backend: auto (the virtual board when available, else software), "
                             "software, sim (virtual board), board")
    parser.add_argument("--url", help="board URL for --backend board (default: link.url)")
    parser.add_argument("--journal", metavar="FILE", help="SQLite journal (default: execution.journal_path)")
    parser.add_argument("--venue-store", metavar="FILE", default="paper-venues.sqlite",
                        help="the paper venues' own book (SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="stop after this long (default: run until SIGINT/SIGTERM)")
    parser.add_argument("--metrics-port", type=int, default=None,
                        help="Prometheus endpoint port (default: metrics.port; 0 picks a free one)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default=None)


def cmd_run(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from ..execution.coordinator import Unreconciled
    from .backend import BackendUnavailable, choose_backend
    from .loop import Orchestrator
    prog = "sigfuse run"
    try:
        config = _load(args.config, args.log_level)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {error.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    if args.metrics_port is not None:
        config.metrics.port = args.metrics_port
    try:
        kind, why = choose_backend(args.backend, board=config.board.name,
                                   progress=lambda message: print(f"run: {message}", file=sys.stderr, flush=True))
    except BackendUnavailable as error:
        return _fail(prog, str(error))
    journal = args.journal or str(config.execution.journal_path)
    print(f"run: backend {kind} -- {why}", file=sys.stderr, flush=True)

    async def main() -> dict[str, Any]:
        orchestrator = Orchestrator(config, journal_path=journal, venue_store=args.venue_store, backend=kind,
                                    url=args.url, seed=args.seed, pairs=args.pairs)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, orchestrator.request_stop, signal.Signals(signum).name)
        try:
            await orchestrator.start()
            where = (f"http://{config.metrics.host}:{orchestrator.metrics_port}/metrics"
                     if orchestrator.metrics_port else "off")
            print(f"run: started; journal {journal}; metrics {where}; stop with Ctrl-C or SIGTERM",
                  file=sys.stderr, flush=True)
            await orchestrator.run_loop(args.duration)
        finally:
            await orchestrator.shutdown()
        return orchestrator.summary()

    try:
        summary = asyncio.run(main())
    except Unreconciled as error:
        print(f"{prog}: refusing to trade until reconciled:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_UNRECONCILED
    except BackendUnavailable as error:
        return _fail(prog, str(error))
    print(f"run: stopped ({summary['stop_reason']}); journal flushed and closed", file=sys.stderr, flush=True)
    json.dump(summary, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    return 0


def add_run_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``run``: the orchestrator, live until stopped."""
    run = subparsers.add_parser(
        "run", help="run the orchestrator (sources -> fusion -> execution) until stopped",
        description="The autonomous loop on the synthetic market and paper venues: signal sources, the "
                    "fusion backend (with failover to software), the coordinator, health monitor, optimizer "
                    "and Prometheus metrics.  SIGINT/SIGTERM drain, flush the journal and exit 0; the "
                    "figures are printed as JSON.")
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)
    return run


# --- sigfuse demo -----------------------------------------------------------------------------

def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                        help="how long to run (default: demo.duration_s, 60)")
    parser.add_argument("--frequency", type=float, default=None, metavar="HZ",
                        help="evaluations per source per second (default: demo.frequency_hz, 5.0)")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default=None,
                        help="auto (default: the virtual board when available, else software), software, sim, board")
    parser.add_argument("--url", help="board URL for --backend board")
    parser.add_argument("--pairs", type=int, default=None, help="pairs traded (default: demo.pairs, 10)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", metavar="DIR", default=None, help="output directory (default: runs/<timestamp>)")
    parser.add_argument("--config", metavar="FILE", help="YAML configuration")
    parser.add_argument("--dashboard", choices=("auto", "live", "plain"), default=None,
                        help="live dashboard (rich) or plain status lines; auto: live on a terminal")
    parser.add_argument("--no-metrics", action="store_true", help="do not open the Prometheus endpoint")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning")


def cmd_demo(args: argparse.Namespace) -> int:
    from ..config import ConfigError
    from .backend import BackendUnavailable
    from .demo import run_demo
    prog = "sigfuse demo"
    try:
        config = _load(args.config, args.log_level)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {error.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    d = config.demo
    pairs = args.pairs if args.pairs is not None else d.pairs
    if pairs < 1:
        return _fail(prog, "--pairs must be at least 1")
    try:
        asyncio.run(run_demo(
            config, duration_s=args.duration if args.duration is not None else d.duration_s,
            frequency_hz=args.frequency if args.frequency is not None else d.frequency_hz,
            backend=args.backend or d.backend, url=args.url or config.link.url, pairs=pairs,
            seed=args.seed if args.seed is not None else d.seed,
            out_dir=args.out or (str(d.out_dir) if d.out_dir else None),
            dashboard=args.dashboard or d.dashboard, serve_metrics=False if args.no_metrics else None))
    except BackendUnavailable as error:
        return _fail(prog, str(error))
    except OSError as error:
        return _fail(prog, f"{error.strerror or error} ({getattr(error, 'filename', '') or ''})")
    return 0


def add_demo_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``demo``: the whole system for a fixed time, with dashboard, summary and report."""
    demo = subparsers.add_parser(
        "demo", help="run the whole system on the synthetic market with a live dashboard and a report",
        description="All seven signal kinds on 10 pairs through fusion and the coordinator to paper venues; "
                    "a live dashboard on a terminal (plain lines otherwise); summary.json, the journal and "
                    "report.html in --out.")
    add_demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)
    return demo


def demo_main(argv: Sequence[str] | None = None, prog: str = "sigfuse demo") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=add_demo_command.__doc__)
    add_demo_arguments(parser)
    args = parser.parse_args(argv)
    return cmd_demo(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m sigfuse.orchestrator.cli run|demo ...``"""
    parser = argparse.ArgumentParser(prog="sigfuse")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_run_command(commands)
    add_demo_command(commands)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
