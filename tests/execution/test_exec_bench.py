"""The execution benchmark runs end to end (tiny sizes; speed is not asserted here)."""

from __future__ import annotations

import argparse

from sigfuse.execution.bench import markdown_table, run_all
from sigfuse.execution.cli import add_paper_command


def test_benchmark_smoke(seed: int) -> None:
    results = run_all(orders=150, paced_orders=60, paced_per_s=2_000, journal_writes=400, seed=seed,
                      contention_s=0.05)
    assert results["burst"]["filled"] == 150
    assert results["paced"]["filled"] == 60
    assert results["burst"]["latency_us"]["samples"] == 150
    assert results["journal"]["events"] == 400
    table = markdown_table(results)
    assert table.startswith("| measurement | result |") and "Journal writes/s" in table
    assert 0.0 <= results["contention"]["lost_share"] <= 1.0


def test_paper_command_parses() -> None:
    parser = argparse.ArgumentParser(prog="sigfuse")
    add_paper_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["paper", "--journal", "j.sqlite", "--seed", "7", "--duration", "0.5"])
    assert (args.journal, args.seed, args.duration) == ("j.sqlite", 7, 0.5)
    assert callable(args.func)
