#!/usr/bin/env python3
"""Orchestrator benchmark: the loop at 100 Hz (p50/p99 cycle jitter, target p99 <= 2 ms), host RSS
during the demo (target <= 100 MB), end-to-end signal -> order latency p50/p99.

    .venv/bin/python benchmarks/orchestrator.py --json benchmarks/results/orchestrator.json

Prints a Markdown table; see ``sigfuse.orchestrator.bench`` for what each row measures.
"""

import sys

from sigfuse.orchestrator.bench import main

if __name__ == "__main__":
    sys.exit(main())
