"""COBS encoder and decoder in Amaranth's simulator against the ``cobs`` package, with random
backpressure on both sides."""

from __future__ import annotations

import random

import pytest
from cobs import cobs

from sigfuse import protocol as p
from sigfuse.gateware.cobs import CobsDecoder, CobsEncoder, CobsError

from .simhelp import rng_for, run_sim, seeds


def _payloads(rng: random.Random) -> list[bytes]:
    runs = [bytes(range(1, 255)),                       # one full block
            bytes(range(1, 255)) + b"\x00",             # full block, then a zero
            b"\x00" + bytes(range(1, 255)),
            bytes([0x11] * 255),                        # 254 + 1: a second block
            bytes([0x22] * 253),
            bytes([0x33] * 508),                        # two full blocks exactly
            b"\x00", b"\x00\x00", b"\x00" * 254, b"\x01", b"\xff" * 3]
    randoms = []
    for _ in range(24):
        n = rng.choice([1, 2, rng.randrange(1, 64), rng.randrange(200, 255)])
        density = rng.choice([0.0, 0.02, 0.3, 0.9])
        randoms.append(bytes(0 if rng.random() < density else rng.randrange(1, 256) for _ in range(n)))
    return runs + randoms


async def _pausing_take(ctx, stream, rng, count_until):
    """Take items with random backpressure until ``count_until(item)`` says stop; returns them."""
    items = []
    while True:
        ready = rng.random() < 0.7
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            items.append(payload)
            if count_until(payload):
                ctx.set(stream.ready, 0)
                return items


async def _pausing_put(ctx, stream, rng, payload):
    while rng.random() < 0.3:
        ctx.set(stream.valid, 0)
        await ctx.tick()
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


@pytest.mark.parametrize("seed", seeds((5,)))
def test_encoder_matches_cobs_package(seed):
    rng = rng_for(seed, "cobs encoder")
    payloads = _payloads(rng)
    dut = CobsEncoder()
    got = []

    async def producer(ctx):
        for payload in payloads:
            for b in payload:
                await _pausing_put(ctx, dut.i, rng, {"data": b, "end": 0})
            await _pausing_put(ctx, dut.i, rng, {"data": rng.randrange(256), "end": 1})

    async def consumer(ctx):
        for _ in payloads:
            got.append(bytes(await _pausing_take(ctx, dut.o, rng, lambda b: b == 0)))

    run_sim(dut, producer, consumer)
    for payload, wire in zip(payloads, got):
        assert wire == cobs.encode(payload) + b"\x00", payload.hex()


@pytest.mark.parametrize("seed", seeds((6,)))
def test_decoder_matches_cobs_package(seed):
    rng = rng_for(seed, "cobs decoder")
    # Valid encodings (incl. the non-canonical empty last block after a full one), and garbage.
    segments = [cobs.encode(payload) for payload in _payloads(rng) if len(payload) <= p.MAX_FRAME]
    segments.append(b"\xff" + bytes(range(1, 255)) + b"\x01")
    segments.append(b"\xff" + bytes(range(1, 254)) + b"\x01")   # 255 bytes, non-canonical
    for _ in range(40):
        segments.append(bytes(rng.randrange(1, 256) for _ in range(rng.choice(
            [1, 2, 3, rng.randrange(1, 40), rng.randrange(250, 300)]))))
    dut = CobsDecoder(max_size=p.MAX_FRAME)
    got = []

    async def producer(ctx):
        for segment in segments:
            # Idle delimiters between frames are not frames.
            for b in segment + b"\x00" * rng.choice([1, 1, 2, 3]):
                await _pausing_put(ctx, dut.i, rng, b)

    async def consumer(ctx):
        for _ in segments:
            items = await _pausing_take(ctx, dut.o, rng, lambda item: item.end)
            got.append((bytes(i.data for i in items[:-1]), items[-1].error))

    run_sim(dut, producer, consumer)
    kinds = {CobsError.NONE: 0, CobsError.BAD_COBS: 0, CobsError.OVERSIZE: 0}
    for segment, (data, error) in zip(segments, got):
        kinds[error] += 1
        if len(segment) > p.MAX_ENCODED:
            assert error == CobsError.OVERSIZE and len(data) <= p.MAX_FRAME, segment.hex()
            continue
        try:
            expected = cobs.decode(segment)
        except cobs.DecodeError:
            assert error == CobsError.BAD_COBS, segment.hex()
        else:
            assert error == CobsError.NONE and data == expected, segment.hex()
    assert all(kinds.values()), kinds
