"""cocotb side of the fault campaign: run the harness until ``done`` or the clock budget.

The stimulus and the checks live in ``test_campaign.py``; this only proves that the link
neither hangs nor stops taking bytes (``played`` must reach the stimulus length).
"""

import os
import time

import cocotb
from cocotb.triggers import RisingEdge, Timer, with_timeout


@cocotb.test()
async def campaign(dut):
    budget_ns = int(os.environ["CAMPAIGN_BUDGET_NS"])
    expected_bytes = int(os.environ["CAMPAIGN_BYTES"])
    started = time.time()
    await with_timeout(RisingEdge(dut.done), budget_ns, "ns")
    await Timer(1, "ns")
    clocks = int(dut.clocks.value)
    elapsed = time.time() - started
    dut._log.info(f"campaign: {clocks} clocks in {elapsed:.2f} s ({clocks / elapsed / 1e6:.2f} M clocks/s)")
    played = int(dut.played.value)
    assert played == expected_bytes, f"the link took {played} of {expected_bytes} bytes"
