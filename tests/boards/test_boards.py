"""Board definitions: PLL settings, the board top's contract with its core, and the stand-in
UART echo core in Amaranth's simulator."""

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sigfuse.boards.common import (BOARD_NAMES, CORE_SIGNATURE, BoardTop, CoreContext,
                                   StatusLeds, UartEchoCore, get_board, uart_divisor)
from sigfuse.boards.icebreaker import ice40_pll_params
from sigfuse.boards.ulx3s import ecp5_pll_params


def test_ice40_pll_matches_icepll() -> None:
    # icepll -i 12 -o 48: DIVR=0 DIVF=63 DIVQ=4 FILTER_RANGE=1
    p = ice40_pll_params(12_000_000, 48_000_000)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (0, 63, 4, 1)
    assert p.f_out == 48e6 and 533e6 <= p.f_vco <= 1066e6
    assert ice40_pll_params(12_000_000, 36_000_000).f_out == 36e6
    with pytest.raises(ValueError, match="cannot make"):
        ice40_pll_params(12_000_000, 400_000_000)


def test_ecp5_pll() -> None:
    p = ecp5_pll_params(25_000_000, 150_000_000)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == (1, 6, 4) and p.f_out == 150e6
    assert p.f_vco == 600e6
    assert ecp5_pll_params(25_000_000, 100_000_000).f_out == 100e6
    with pytest.raises(ValueError, match="cannot make"):
        ecp5_pll_params(25_000_000, 1_000_000_000)


def test_uart_divisor() -> None:
    assert uart_divisor(48_000_000, 3_000_000) == 16
    assert uart_divisor(150_000_000, 3_000_000) == 50
    with pytest.raises(ValueError, match="at least 4 clocks"):
        uart_divisor(10_000_000, 3_000_000)
    with pytest.raises(ValueError, match="off"):
        uart_divisor(10_000_000, 1_800_000)


@pytest.mark.parametrize("name", BOARD_NAMES)
def test_board_plan(name: str) -> None:
    """The plan instantiates the PLL on the oscillator and places the UART and both LEDs."""
    board = get_board(name)
    top = BoardTop(board, UartEchoCore)
    assert top.context == CoreContext(name, board.sync_hz, 3_000_000)
    plan = board.platform().prepare(top, "sigfuse", emit_src=False)
    rtlil = plan.files["sigfuse.il"]
    constraints = plan.files["sigfuse.pcf" if name == "icebreaker" else "sigfuse.lpf"]
    if name == "icebreaker":
        assert "SB_PLL40_PAD" in rtlil and "set_io clk12_0__io 35" in constraints
        for line in ("set_io uart_0__rx__io 6", "set_io uart_0__tx__io 9",
                     "set_io led_g_0__io 37", "set_io led_r_0__io 11"):
            assert line in constraints
    else:
        assert "EHXPLLL" in rtlil
        for site in ('"clk25_0__io" SITE "G2"', '"uart_0__rx__io" SITE "M1"',
                     '"uart_0__tx__io" SITE "L4"', '"led_0__io" SITE "B2"', '"led_1__io" SITE "C2"',
                     '"esp32_gpio0_0__io" SITE "L2"'):
            assert f"LOCATE COMP {site}" in constraints


class _MissingPort(wiring.Component):
    uart_rx: In(1)
    uart_tx: Out(1)

    def __init__(self, context: CoreContext) -> None:
        super().__init__()

    def elaborate(self, platform) -> Module:
        return Module()


class _ExtraPort(wiring.Component):
    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    link_error: Out(1)
    debug: Out(8)

    def __init__(self, context: CoreContext) -> None:
        super().__init__()

    def elaborate(self, platform) -> Module:
        return Module()


def test_board_top_checks_the_core() -> None:
    board = get_board("icebreaker")
    with pytest.raises(TypeError, match="missing port 'link_error'"):
        BoardTop(board, _MissingPort)
    with pytest.raises(TypeError, match="port 'debug' is not wired"):
        BoardTop(board, _ExtraPort)
    with pytest.raises(TypeError, match="must return a wiring.Component"):
        BoardTop(board, lambda context: Signal())
    with pytest.raises(KeyError, match="unknown board 'arty'"):
        get_board("arty")
    assert set(CORE_SIGNATURE.members) == {"uart_rx", "uart_tx", "link_error"}


# --- the echo core in simulation -----------------------------------------------------------------

DIVISOR = 8


def _frame(byte: int, stop: int = 1) -> list[int]:
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def _decode(samples: list[int]) -> list[int]:
    received, i = [], 0
    while i < len(samples) - 10 * DIVISOR:
        if samples[i] == 0:
            middle = i + DIVISOR // 2
            bits = [samples[middle + DIVISOR * k] for k in range(10)]
            assert bits[0] == 0 and bits[9] == 1, f"bad frame at sample {i}: {bits}"
            received.append(sum(b << k for k, b in enumerate(bits[1:9])))
            i = middle + 9 * DIVISOR
        else:
            i += 1
    return received


def _run_echo(frames: list[list[int]], glitch: bool = False) -> tuple[list[int], int]:
    """Drive ``frames`` (lists of line levels, one per bit) into the core; the bytes it sent
    back and the number of link-error pulses."""
    dut = UartEchoCore(CoreContext("sim", DIVISOR * 1_000_000, 1_000_000))
    samples: list[int] = []
    errors = 0

    async def drive(ctx) -> None:
        ctx.set(dut.uart_rx, 1)
        await ctx.tick().repeat(20)
        if glitch:
            # Shorter than half a bit: the receiver re-checks the start bit and ignores it.
            ctx.set(dut.uart_rx, 0)
            await ctx.tick().repeat(DIVISOR // 2 - 2)
            ctx.set(dut.uart_rx, 1)
            await ctx.tick().repeat(3 * DIVISOR)
        for bits in frames:
            for bit in bits:
                ctx.set(dut.uart_rx, bit)
                await ctx.tick().repeat(DIVISOR)
        ctx.set(dut.uart_rx, 1)
        await ctx.tick().repeat(12 * DIVISOR * (len(frames) + 2))

    async def record(ctx) -> None:
        nonlocal errors
        async for _, _, tx, error in ctx.tick().sample(dut.uart_tx, dut.link_error):
            samples.append(tx)
            errors += error

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(drive)
    sim.add_testbench(record, background=True)
    sim.run()
    return _decode(samples), errors


def test_echo_core_echoes_back_to_back_bytes() -> None:
    payload = [0x55, 0x00, 0xFF, 0xA5, 0x7E, 0x00, 0x13, 0x80]
    received, errors = _run_echo([_frame(b) for b in payload], glitch=True)
    assert received == payload and errors == 0


def test_echo_core_flags_a_framing_error_and_recovers() -> None:
    # After a framing error the receiver waits for the line to idle before hunting again.
    idle = [1] * 12
    received, errors = _run_echo([_frame(0x41), _frame(0x42, stop=0), idle, _frame(0x43)])
    assert received == [0x41, 0x43] and errors == 1


def test_status_leds() -> None:
    per_ms = 4
    dut = StatusLeds(clock_hz=1000 * per_ms)
    heartbeat: list[int] = []
    error: list[int] = []

    async def bench(ctx) -> None:
        await ctx.tick().repeat(10)
        for pulse_at in (200 * per_ms, 230 * per_ms):  # a second error restarts the 100 ms
            while len(heartbeat) < pulse_at:
                await ctx.tick()
            ctx.set(dut.link_error, 1)
            await ctx.tick()
            ctx.set(dut.link_error, 0)
        while len(heartbeat) < 1600 * per_ms:
            await ctx.tick()

    async def record(ctx) -> None:
        async for _, _, beat, lit in ctx.tick().sample(dut.heartbeat, dut.error):
            heartbeat.append(beat)
            error.append(lit)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(record, background=True)
    sim.run()
    toggles = [i for i in range(1, len(heartbeat)) if heartbeat[i] != heartbeat[i - 1]]
    assert [round(t / per_ms) for t in toggles] == [500, 1000, 1500]
    lit = [i for i, level in enumerate(error) if level]
    assert error[:200 * per_ms] == [0] * (200 * per_ms)
    assert lit == list(range(lit[0], lit[-1] + 1))              # one continuous blink
    assert round(lit[0] / per_ms) == 200 and round((lit[-1] - 230 * per_ms) / per_ms) == 101
