#!/usr/bin/env python3
"""Reference engine and queue benchmarks: the code behind ``sigfuse bench``, with its extra knobs
(``--repeats``, ``--latency-sample``, ``--pop-every``).  See benchmarks/README.md.

    .venv/bin/python benchmarks/run_reference.py --signals 1000000 --json benchmarks/results/reference.json
"""

import sys

from sigfuse.bench import build_parser, main
from sigfuse.cli import UserError

if __name__ == "__main__":
    try:
        sys.exit(main(build_parser().parse_args()))
    except UserError as error:
        print(f"run_reference.py: {error}", file=sys.stderr)
        sys.exit(2)
