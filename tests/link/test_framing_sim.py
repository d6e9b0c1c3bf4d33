"""Deframer and framer in Amaranth's simulator against the host codec (``sigfuse.protocol``) and
the shared vectors in ``tests/vectors/link/``."""

from __future__ import annotations

import random

import pytest

from sigfuse import protocol as p
from sigfuse.gateware.framing import DeframerEventsLayout, Deframer, Framer, RegisterSlice

from .simhelp import rng_for, run_sim, seeds
from .vectors import load


def _run_framer(frames: list[p.Frame], rng: random.Random) -> list[bytes]:
    dut = Framer()
    got = []

    async def producer(ctx):
        for frame in frames:
            for b in bytes((frame.type, frame.seq)) + frame.body:
                ctx.set(dut.frames.valid, 1)
                ctx.set(dut.frames.payload, {"data": b, "end": 0})
                await ctx.tick().until(dut.frames.ready)
            ctx.set(dut.frames.payload, {"data": 0, "end": 1})
            await ctx.tick().until(dut.frames.ready)
            ctx.set(dut.frames.valid, 0)
            await ctx.tick().repeat(rng.randrange(1, 4))

    async def consumer(ctx):
        buffer = bytearray()
        while len(got) < len(frames):
            ready = rng.random() < 0.8
            ctx.set(dut.bytes_out.ready, ready)
            _, _, valid, b = await ctx.tick().sample(dut.bytes_out.valid, dut.bytes_out.payload)
            if ready and valid:
                buffer.append(b)
                if b == 0:
                    got.append(bytes(buffer))
                    buffer.clear()

    run_sim(dut, producer, consumer)
    return got


def test_framer_vectors():
    vectors = load("frames.jsonl")
    frames = [p.Frame(v["type"], v["seq"], bytes.fromhex(v["body"])) for v in vectors]
    for v, wire in zip(vectors, _run_framer(frames, random.Random(1))):
        assert wire.hex() == v["wire"], v["name"]


class _DeframerRun:
    """Feed a byte stream into the deframer; read frames like the dispatcher does."""

    def __init__(self, wire: bytes, expected_frames: int, rng: random.Random, *, slow_reader: bool):
        self.dut = Deframer()
        self.frames: list[p.Frame] = []
        self.events = dict.fromkeys(DeframerEventsLayout.members, 0)
        self.stalls = 0
        dut = self.dut

        async def producer(ctx):
            for b in wire:
                ctx.set(dut.bytes_in.valid, 1)
                ctx.set(dut.bytes_in.payload, b)
                while True:
                    _, _, ready = await ctx.tick().sample(dut.bytes_in.ready)
                    if ready:
                        break
                    self.stalls += 1
            ctx.set(dut.bytes_in.valid, 0)
            await ctx.tick().repeat(8)

        async def reader(ctx):
            for _ in range(expected_frames):
                await ctx.tick().until(dut.frame.valid)
                if slow_reader:
                    await ctx.tick().repeat(rng.randrange(1, 400))
                length = ctx.get(dut.frame.length)
                data = {}
                for offset in rng.sample(range(length), length):   # any order: random access
                    ctx.set(dut.frame.offset, offset)
                    await ctx.tick()
                    data[offset] = ctx.get(dut.frame.data)
                raw = bytes(data[i] for i in range(length))
                self.frames.append(p.Frame(raw[0], raw[1], raw[2:]))
                ctx.set(dut.frame.release, 1)
                await ctx.tick()
                ctx.set(dut.frame.release, 0)

        async def monitor(ctx):
            while True:
                sampled = await ctx.tick().sample(*(getattr(dut.events, n) for n in self.events))
                for name, value in zip(self.events, sampled[2:]):
                    self.events[name] += value

        run_sim(dut, producer, reader, processes=[monitor])


def _check_stream(wire: bytes, rng: random.Random, *, slow_reader: bool = False) -> _DeframerRun:
    reference = p.Deframer()
    expected = reference.feed(wire)
    run = _DeframerRun(wire, len(expected), rng, slow_reader=slow_reader)
    assert run.frames == expected
    assert run.events == reference.counters
    return run


def test_deframer_vectors():
    rng = random.Random(2)
    for v in load("streams.jsonl"):
        run = _check_stream(bytes.fromhex(v["wire"]), rng)
        assert run.events == v["counters"], v["name"]


@pytest.mark.parametrize("seed", seeds((8,)))
def test_deframer_random_streams_with_a_slow_reader(seed):
    """Valid frames, corrupted frames and garbage back to back; the reader is slow, so the ring
    fills and the deframer must hold its input instead of losing bytes."""
    rng = rng_for(seed, "deframer")
    parts = []
    for _ in range(40):
        frame = p.Frame(rng.randrange(256), rng.randrange(256),
                        rng.randbytes(rng.choice([0, 5, 60, p.MAX_BODY])))
        wire = bytearray(frame.encode())
        roll = rng.random()
        if roll < 0.2:
            wire[rng.randrange(len(wire) - 1)] ^= 1 << rng.randrange(8)
        elif roll < 0.3:
            wire = bytearray(rng.randbytes(rng.randrange(1, 300))) + b"\x00"
        parts.append(bytes(wire))
    run = _check_stream(b"".join(parts), rng, slow_reader=True)
    assert run.events["frames_ok"] >= 20
    assert run.stalls > 0, "the ring never filled: the test did not exercise backpressure"


@pytest.mark.parametrize("seed", seeds((1, 2, 3)))
def test_register_slice_passes_every_item_once_in_order(seed):
    """Random valid and ready on both sides: every item comes out once, in order; the slice
    runs one item per clock when the output is always ready; ``o.ready`` does not reach
    ``i.ready`` within a clock."""
    rng = rng_for(seed, "slice")
    dut = RegisterSlice(8)
    items = [rng.randrange(256) for _ in range(600)]
    got: list[int] = []
    # The first 100 items go in and out with both sides always willing: one per clock.
    steady = 100

    async def producer(ctx):
        for index, item in enumerate(items):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, item)
            await ctx.tick().until(dut.i.ready)
            if index >= steady and rng.random() < 0.3:
                ctx.set(dut.i.valid, 0)
                await ctx.tick().repeat(rng.randrange(1, 4))
        ctx.set(dut.i.valid, 0)

    steady_clocks = []

    async def consumer(ctx):
        clocks = 0
        while len(got) < len(items) and clocks < 20 * len(items):
            ready = len(got) < steady or rng.random() < 0.6
            before = ctx.get(dut.i.ready), ctx.get(dut.o.valid)
            ctx.set(dut.o.ready, ready)
            # Registered: the output's ready does not reach the input's within the clock.
            assert (ctx.get(dut.i.ready), ctx.get(dut.o.valid)) == before
            _, _, valid, item = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            clocks += 1
            if ready and valid:
                got.append(item)
                if len(got) == steady:
                    steady_clocks.append(clocks)

    run_sim(dut, producer, consumer)
    assert got == items
    # One clock to fill the output register, then one item per clock.
    assert steady_clocks == [steady + 1]


def test_register_slice_without_payload_passes_every_request_once():
    """A payload-less slice (the core's pop requests) keeps no payload registers and still
    passes each transfer exactly once, under random valid and ready."""
    rng = rng_for(1, "slice0")
    dut = RegisterSlice(0)
    requests = 300
    received = []

    async def producer(ctx):
        for _ in range(requests):
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            if rng.random() < 0.5:
                await ctx.tick().repeat(rng.randrange(1, 3))

    async def consumer(ctx):
        clock = 0
        while len(received) < requests and clock < 20 * requests:
            ready = rng.random() < 0.5
            ctx.set(dut.o.ready, ready)
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            clock += 1
            if ready and valid:
                received.append(clock)
        # Nothing more comes out after the last request.
        ctx.set(dut.o.ready, 1)
        for _ in range(10):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid

    run_sim(dut, producer, consumer)
    assert len(received) == requests
