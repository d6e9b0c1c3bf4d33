#!/usr/bin/env python3
"""Execution benchmark: orders/s through coordinator + paper venue, decision-to-order latency
p50/p99 (target p99 <= 1 ms), journal writes/s.

    .venv/bin/python benchmarks/execution.py --json benchmarks/results/execution.json

Prints a Markdown table (the one in README.md); see ``sigfuse.execution.bench`` for what each
row measures.
"""

import sys

from sigfuse.execution.bench import main

if __name__ == "__main__":
    sys.exit(main())
