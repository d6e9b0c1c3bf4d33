"""The serial engine's per-signal reciprocal (:class:`ReciprocalDivider`) against the contract's
mask table: every one of the 256 masks, for several weight sets, in one simulation each.

The engine never stores the table; it recomputes the winner's entry for every signal, so a
rounding slip would only show in the fusion tests when a particular mask wins.  Here each entry
is checked directly: the mantissa (``ceil(2**(s + 16) / W_A)``) and the number of normalizing
shifts (``19 - s``, which the engine applies to M and X), at the advertised latency.
"""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sigfuse.contract import CONF_ONE, SOURCE_SLOTS, FusionParams
from sigfuse.gateware.fusion_params import WEIGHT_SUM_BITS
from sigfuse.gateware.fusion_serial import RECIPROCAL_CLOCKS, ReciprocalDivider


def _weight_sets() -> list[tuple[int, ...]]:
    rng = random.Random(2024)
    sets = [
        FusionParams().weights,                                  # the defaults (one is 0)
        (CONF_ONE,) * SOURCE_SLOTS,                              # powers of two: exact quotients
        tuple(1 << i for i in range(SOURCE_SLOTS)),              # every bit length 1..16
        (1, 1, 1, 1, 1, 1, 1, 1),                                # s = 1..4
        (3, 5, 7, 11, 13, 17, 19, 23),
    ]
    sets += [tuple(rng.randint(0, CONF_ONE) for _ in range(SOURCE_SLOTS)) for _ in range(4)]
    sets += [tuple(rng.choice((0, 1, CONF_ONE, CONF_ONE - 1, rng.randint(1, CONF_ONE)))
                   for _ in range(SOURCE_SLOTS)) for _ in range(3)]
    return sets


@pytest.mark.parametrize("weights", _weight_sets())
def test_every_mask_matches_the_contract_table(weights: tuple[int, ...]) -> None:
    params = FusionParams(weights=weights)
    table = params.mask_table()
    dut = ReciprocalDivider()
    checked: list[int] = []

    async def bench(ctx) -> None:
        for mask, entry in enumerate(table):
            ctx.set(dut.weight_sum, entry.weight_sum)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(dut.weight_sum, 0)              # the divider must have taken its copy
            shifts = 0
            for _ in range(RECIPROCAL_CLOCKS - 1):
                assert ctx.get(dut.busy), mask
                shifts += ctx.get(dut.normalizing)
                await ctx.tick()
            assert not ctx.get(dut.busy), mask
            if entry.weight_sum == 0:
                continue                             # never used by the rules (see the class)
            assert (ctx.get(dut.mantissa), WEIGHT_SUM_BITS - shifts) == \
                (entry.mantissa, entry.shift), f"mask {mask:#04x}, W_A {entry.weight_sum}"
            checked.append(mask)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == sum(1 for e in table if e.weight_sum)
