"""``sigfuse journal`` (summarize / export the audit journal) and ``sigfuse paper`` (a
paper-trading session).  ``sigfuse.cli`` registers them with :func:`add_journal_command` and
:func:`add_paper_command`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .journal import JOURNAL_TABLES, Journal

__all__ = ["add_journal_command", "add_paper_command", "add_paper_arguments", "cmd_journal_summary",
           "cmd_journal_export", "cmd_paper", "render_summary"]

EXIT_USAGE = 2


def _open_journal(path: str) -> Journal:
    if not Path(path).is_file():
        raise SystemExit(_fail(f"no journal at {path}"))
    return Journal(path)


def _fail(message: str) -> int:
    print(f"sigfuse journal: {message}", file=sys.stderr)
    return EXIT_USAGE


def render_summary(summary: dict[str, Any]) -> str:
    """A journal summary as plain text."""
    lines = [f"journal   {summary['journal']}",
             f"sessions  {summary['sessions']}",
             "events    " + ", ".join(f"{k} {v}" for k, v in summary["events"].items()),
             "orders    " + ", ".join(f"{k} {v}" for k, v in summary["orders"].items()),
             f"fills     {summary['fills']}   fees {summary['fees']:.2f}"]
    if summary["rejections"]:
        lines.append("rejected  " + ", ".join(f"{k} {v}" for k, v in summary["rejections"].items()))
    for change in summary["risk_state_changes"]:
        lines.append(f"risk      {change.get('from_state')} -> {change.get('to_state')}: {change.get('reason')}")
    if summary["positions"]:
        lines.append("")
        lines.append(f"{'pair':12} {'position':>16} {'avg price':>14} {'realized':>12} {'unrealized':>12} "
                     f"{'fees':>10} {'net':>12}")
        for pair, p in summary["positions"].items():
            lines.append(f"{pair:12} {p['qty']:>16.6f} {p['avg_price']:>14.6f} {p['realized']:>12.2f} "
                         f"{p['unrealized']:>12.2f} {p['fees']:>10.2f} {p['net']:>12.2f}")
    if summary["source_pnl"]:
        lines.append("")
        lines.append(f"{'source':16} {'orders':>8} {'P&L':>12}")
        for source, pnl in summary["source_pnl"].items():
            lines.append(f"{source:16} {summary['source_orders'].get(source, 0):>8} {pnl:>12.2f}")
    lines.append("")
    lines.append("(unrealized P&L marked at each pair's last fill price)")
    return "\n".join(lines) + "\n"


def cmd_journal_summary(args: argparse.Namespace) -> int:
    journal = _open_journal(args.journal)
    with journal:
        summary = journal.summary()
    if args.json:
        json.dump(summary, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_summary(summary))
    return 0


def cmd_journal_export(args: argparse.Namespace) -> int:
    tables = list(JOURNAL_TABLES) if args.table == "all" else [args.table]
    if args.format == "csv" and len(tables) > 1:
        return _fail("CSV export takes one table (--table events|orders|fills|sessions)")
    journal = _open_journal(args.journal)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8", newline="")
    try:
        with journal:
            if args.format == "csv":
                count = journal.export_csv(tables[0], out)
            else:
                count = journal.export_json(tables, out)
    finally:
        if out is not sys.stdout:
            out.close()
    if args.out != "-":
        print(f"{args.out}: {count} rows", file=sys.stderr)
    return 0


def add_journal_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``journal summary`` and ``journal export`` under ``subparsers``."""
    journal = subparsers.add_parser(
        "journal", help="summarize or export the execution audit journal",
        description="Read the SQLite audit journal the execution coordinator writes.")
    actions = journal.add_subparsers(dest="journal_command", metavar="ACTION", required=True)
    summary = actions.add_parser("summary", aliases=["summarize"],
                                 help="counts, order states, rejections, positions, P&L by pair and by source")
    summary.add_argument("journal", help="journal file (SQLite)")
    summary.add_argument("--json", action="store_true", help="print the summary as JSON")
    summary.set_defaults(func=cmd_journal_summary)
    export = actions.add_parser("export", help="export journal tables as CSV or JSON")
    export.add_argument("journal", help="journal file (SQLite)")
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.add_argument("--table", choices=(*JOURNAL_TABLES, "all"), default="events",
                        help="table to export (JSON may take 'all')")
    export.add_argument("--out", default="-", metavar="FILE", help="output file, - for stdout")
    export.set_defaults(func=cmd_journal_export)
    return journal


def add_paper_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a paper session (shared by ``sigfuse paper`` and the runner module)."""
    parser.add_argument("--config", metavar="FILE", help="YAML configuration (execution, risk, fusion sections)")
    parser.add_argument("--journal", metavar="FILE", help="SQLite journal (default: execution.journal_path)")
    parser.add_argument("--venue-store", metavar="FILE", default="paper-venues.sqlite",
                        help="the paper venues' own book (SQLite)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0, metavar="SECONDS")
    parser.add_argument("--max-orders", type=int, default=None)
    parser.add_argument("--latency-us", type=float, default=None,
                        help="paper venue median one-way latency (default: the fill model's)")
    parser.add_argument("--participation", type=float, default=None,
                        help="share of displayed size the paper venue gives us per quote (partial fills)")
    parser.add_argument("--timeout-probability", type=float, default=None,
                        help="paper venue probability of a lost ack")
    parser.add_argument("--reset-kill-switch", action="store_true",
                        help="leave HALTED (an operator's decision after a loss-limit halt)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"))


def cmd_paper(args: argparse.Namespace) -> int:
    # Imported here: the session pulls in numpy and the engine, which `sigfuse journal` and
    # every other command do not need.
    from .runner import run_from_args
    return run_from_args(args)


def add_paper_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``paper``: a paper-trading session on the synthetic market."""
    paper = subparsers.add_parser(
        "paper", help="paper-trade the synthetic market through the coordinator and paper venues",
        description="Synthetic market -> signals -> reference engine -> coordinator -> paper venues, "
                    "journaled; prints the figures as JSON.  Restarting on the same journal and venue "
                    "store reconciles first (exit 3 when it cannot).")
    add_paper_arguments(paper)
    paper.set_defaults(func=cmd_paper)
    return paper


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m sigfuse.execution.cli journal ...``)."""
    parser = argparse.ArgumentParser(prog="sigfuse")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_journal_command(commands)
    add_paper_command(commands)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
