"""Helpers for the link's Amaranth testbenches: seeds, running a simulation, a stream driver."""

from __future__ import annotations

import os
import random

from amaranth.sim import Simulator

__all__ = ["seeds", "rng_for", "run_sim", "stream_put"]


def seeds(default: tuple[int, ...] = (1,)) -> list[int]:
    """``SIGFUSE_SEED=<n>`` reruns one seed; otherwise the defaults."""
    if "SIGFUSE_SEED" in os.environ:
        return [int(os.environ["SIGFUSE_SEED"])]
    return list(default)


def rng_for(seed: int, label: str) -> random.Random:
    print(f"{label}: seed {seed} (rerun with SIGFUSE_SEED={seed})")
    return random.Random(seed)


def run_sim(dut, *testbenches, processes=()) -> None:
    """Run until every testbench returns (``processes`` run in the background)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for p in processes:
        sim.add_process(p)
    sim.run()


async def stream_put(ctx, stream, payload) -> None:
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)
