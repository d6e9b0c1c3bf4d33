"""UART PHY in Amaranth's simulator: loopback at several divisors with glitches on the line, rate
mismatch, framing errors, overrun."""

from __future__ import annotations

import pytest
from amaranth.hdl import Fragment, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sigfuse.gateware.uart import UARTPhy, UARTReceiver, UARTTransmitter, divisor_for

from .simhelp import rng_for, run_sim, seeds, stream_put


GLITCH_P = 0.3


class Loopback(wiring.Component):
    """Transmitter -> line (XOR ``glitch``) -> receiver."""

    def __init__(self, divisor: int) -> None:
        self.divisor = divisor
        super().__init__({
            "data_in": In(stream.Signature(8)),
            "data_out": Out(stream.Signature(8)),
            "glitch": In(1),
            "clean_line": Out(1),
            "error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = tx = UARTTransmitter(self.divisor)
        m.submodules.rx = rx = UARTReceiver(self.divisor)
        wiring.connect(m, wiring.flipped(self.data_in), tx.data)
        wiring.connect(m, rx.data, wiring.flipped(self.data_out))
        m.d.comb += [rx.rx.eq(tx.tx ^ self.glitch), self.clean_line.eq(tx.tx),
                     self.error.eq(rx.error), self.overrun.eq(rx.overrun)]
        return m


@pytest.mark.parametrize("seed", seeds((3,)))
@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_loopback_with_glitches(divisor, seed):
    rng = rng_for(seed, f"uart loopback /{divisor}")
    dut = Loopback(divisor)
    glitch_max = max(1, divisor // 4)
    data = bytes([0x00, 0xFF, 0x55, 0xAA]) + rng.randbytes(60)
    received, stats = [], {"glitches": 0, "errors": 0}

    async def producer(ctx):
        for b in data:
            await stream_put(ctx, dut.data_in, b)

    async def consumer(ctx):
        ctx.set(dut.data_out.ready, 1)
        while len(received) < len(data):
            _, _, valid, payload, error = await ctx.tick().sample(
                dut.data_out.valid, dut.data_out.payload, dut.error)
            stats["errors"] += error
            if valid:
                received.append(payload)

    async def glitcher(ctx):
        # Glitches of up to glitch_clocks clocks while a byte is on the line (a bit boundary is a
        # multiple of `divisor` clocks after the start edge), at least one clean clock before
        # the next boundary and glitch_clocks + 1 clean clocks after the last: a pulse touching
        # an edge is a slow edge, and one right after an edge delays the filtered edge (the
        # filter needs glitch_clocks + 1 equal samples) -- see gateware/uart.py.
        # One loop turn per clock; `position` is the clock's place in its bit during the clock
        # after the tick.
        position, busy_for, last, glitch_left, clean = 0, 0, 1, 0, 0
        while True:
            _, _, line = await ctx.tick().sample(dut.clean_line)
            if last == 1 and line == 0 and busy_for == 0:
                position, busy_for = 0, 10 * divisor   # the start bit began a clock ago
            last = line
            position = (position + 1) % divisor
            busy_for = max(0, busy_for - 1)
            if glitch_left == 0 and clean >= 1:
                width = rng.randrange(1, glitch_max + 1)
                if busy_for > divisor and glitch_max + 1 <= position and position + width <= divisor - 1 \
                        and rng.random() < GLITCH_P:
                    stats["glitches"] += 1
                    glitch_left = width
            ctx.set(dut.glitch, 1 if glitch_left else 0)
            if glitch_left:
                glitch_left -= 1
                clean = 0
            else:
                clean += 1

    run_sim(dut, producer, consumer, processes=[glitcher])
    assert bytes(received) == data
    assert stats["errors"] == 0
    assert stats["glitches"] > len(data) // 2, "the glitcher hardly ran"


def _bits(byte: int, *, stop: int = 1) -> list[int]:
    return [0] + [byte >> i & 1 for i in range(8)] + [stop]


async def _bitbang(ctx, pin, frames, period: float, gap: float):
    """Drive ``pin`` with 8N1 frames at ``period`` clocks per bit (fractional: a mismatched
    sender); line idle high for ``gap`` clocks before each frame."""
    t = 0.0
    clock = 0
    schedule = []
    for bits in frames:
        t += gap
        for bit in bits:
            schedule.append((t, bit))
            t += period
        schedule.append((t, 1))
    for start, level in schedule:
        while clock < start:
            await ctx.tick()
            clock += 1
        ctx.set(pin, level)
    await ctx.tick().repeat(int(3 * period))


@pytest.mark.parametrize("divisor,mismatch", [(4, -0.02), (4, 0.02), (16, -0.03), (16, 0.03)])
def test_receiver_tolerates_rate_mismatch(divisor, mismatch):
    dut = UARTReceiver(divisor)
    data = bytes([0x00, 0xFF, 0x80, 0x01, 0x7E, 0xA5, 0x5A, 0x3C])
    got = []

    async def drive(ctx):
        await _bitbang(ctx, dut.rx, [_bits(b) for b in data], divisor * (1 + mismatch), 0.3 * divisor)

    async def take(ctx):
        ctx.set(dut.data.ready, 1)
        while True:
            _, _, valid, payload, error = await ctx.tick().sample(dut.data.valid, dut.data.payload, dut.error)
            assert not error
            if valid:
                got.append(payload)

    run_sim(dut, drive, processes=[take])
    assert bytes(got) == data


def test_receiver_framing_error_break_and_false_start():
    divisor = 8
    dut = UARTReceiver(divisor)
    events = {"errors": 0, "bytes": []}

    async def drive(ctx):
        await _bitbang(ctx, dut.rx, [_bits(0x42, stop=0)], divisor, divisor)   # bad stop bit
        await _bitbang(ctx, dut.rx, [_bits(0x43)], divisor, divisor)
        ctx.set(dut.rx, 0)                                                      # a break:
        await ctx.tick().repeat(40 * divisor)                                   # one error only
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        ctx.set(dut.rx, 0)                                                      # passes the glitch
        await ctx.tick().repeat(3)                                              # filter, too short
        ctx.set(dut.rx, 1)                                                      # for a start bit
        await ctx.tick().repeat(2 * divisor)
        await _bitbang(ctx, dut.rx, [_bits(0x44)], divisor, divisor)

    async def take(ctx):
        ctx.set(dut.data.ready, 1)
        while True:
            _, _, valid, payload, error = await ctx.tick().sample(dut.data.valid, dut.data.payload, dut.error)
            events["errors"] += error
            if valid:
                events["bytes"].append(payload)

    run_sim(dut, drive, processes=[take])
    assert events["bytes"] == [0x43, 0x44]
    assert events["errors"] == 2


def test_receiver_overrun_keeps_the_first_byte():
    divisor = 4
    dut = UARTReceiver(divisor)
    overruns = []

    async def drive(ctx):
        await _bitbang(ctx, dut.rx, [_bits(0x11), _bits(0x22), _bits(0x33)], divisor, 2)
        assert ctx.get(dut.data.valid) and ctx.get(dut.data.payload) == 0x11
        ctx.set(dut.data.ready, 1)
        await ctx.tick()
        ctx.set(dut.data.ready, 0)
        assert not ctx.get(dut.data.valid)
        await _bitbang(ctx, dut.rx, [_bits(0x44)], divisor, 2)
        assert ctx.get(dut.data.valid) and ctx.get(dut.data.payload) == 0x44

    async def watch(ctx):
        while True:
            _, _, overrun = await ctx.tick().sample(dut.overrun)
            if overrun:
                overruns.append(1)

    run_sim(dut, drive, processes=[watch])
    assert len(overruns) == 2


@pytest.mark.filterwarnings("ignore:.*created but never used")  # the refused receiver
def test_phy_and_divisor_choice():
    assert divisor_for(12_000_000, 3_000_000) == 4
    assert divisor_for(48_000_000, 3_000_000) == 16
    with pytest.raises(ValueError, match="multiple of the baud rate"):
        divisor_for(25_000_000, 3_000_000)      # 8.33: 4 % off
    with pytest.raises(ValueError, match="too slow"):
        divisor_for(6_000_000, 3_000_000)
    with pytest.raises(ValueError):
        UARTReceiver(8, glitch_clocks=4)
    phy = UARTPhy(4)
    Fragment.get(phy, None)
    assert phy.divisor == 4 and {"rx", "tx", "tx_data", "rx_data", "rx_error", "rx_overrun"} <= set(phy.signature.members)
