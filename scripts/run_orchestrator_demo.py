#!/usr/bin/env python3
"""Run the sigfuse demo (the same as ``sigfuse demo``):

    python scripts/run_orchestrator_demo.py --duration=60 --frequency=5.0

Options: --backend auto|software|sim|board, --url URL, --pairs N, --seed N, --out DIR,
--dashboard auto|live|plain, --config FILE, --no-metrics.
"""

import sys

try:
    from sigfuse.orchestrator.cli import demo_main
except ImportError:  # pragma: no cover - run outside the project's environment
    sys.exit("sigfuse is not installed in this Python: run `make venv` and use .venv/bin/python "
             "(or `pip install -e .`)")

if __name__ == "__main__":
    sys.exit(demo_main(sys.argv[1:], prog="run_orchestrator_demo.py"))
