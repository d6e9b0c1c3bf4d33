"""cocotb benches of the product core: the byte-level stimulus player and a bit-level UART host.

:class:`UartHost` is the host end of the board's serial line: it sends bytes as 8N1 bit streams
on ``uart_rx`` (optionally with a bad stop bit) and decodes ``uart_tx`` back into bytes.  Python
runs once per line transition it drives and once per bit it samples, never per clock (the clock
is cocotb's C++ clock).  :class:`UartSession` plays a list of commands through it the way a
host must (docs/link.md, flow control): at most two commands without their replies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import (ClockCycles, Event, FallingEdge, First, RisingEdge, Timer,
                             with_timeout)
from cocotb.utils import get_sim_time

__all__ = ["CLOCK_PS", "UartCommand", "UartHost", "UartSession", "await_stimulus"]

CLOCK_PS = 10_000


async def await_stimulus(dut, *, budget_ns: int, expected_bytes: int) -> dict[str, float]:
    """Wait for the stimulus harness's ``done`` (within ``budget_ns`` of simulated time); check
    that the link took every byte (it never stopped taking input).  Returns run figures."""
    started = time.time()
    await with_timeout(RisingEdge(dut.done), budget_ns, "ns")
    await Timer(1, "ns")
    clocks = int(dut.clocks.value)
    elapsed = time.time() - started
    played = int(dut.played.value)
    assert played == expected_bytes, f"the link took {played} of {expected_bytes} bytes"
    return {"clocks": clocks, "seconds": elapsed, "mclocks_per_s": clocks / max(elapsed, 1e-9) / 1e6}


class UartHost:
    """8N1 on the core's ``uart_rx`` (driven) and ``uart_tx`` (decoded), ``divisor`` clocks per
    bit.  Received bytes collect in :attr:`received`; :attr:`frames` counts frame ends (a 0x00
    after a non-zero byte)."""

    def __init__(self, dut, divisor: int) -> None:
        self.dut = dut
        self.bit_ps = divisor * CLOCK_PS
        self.received = bytearray()
        self.frames = 0
        self.tx_framing_errors = 0
        self._frame_event = Event()
        self._previous = 0

    async def send(self, data: bytes, *, bad_stop: frozenset[int] = frozenset()) -> None:
        """Send ``data`` back to back; bytes whose index is in ``bad_stop`` get a stop bit of 0
        (then one bit of idle line, so that the next start bit is a falling edge again)."""
        dut, bit = self.dut, self.bit_ps
        for i, value in enumerate(data):
            stop = 0 if i in bad_stop else 1
            bits = (0, *((value >> k) & 1 for k in range(8)), stop)
            k = 0
            while k < 10:
                level, run = bits[k], 1
                while k + run < 10 and bits[k + run] == level:
                    run += 1
                dut.uart_rx.value = level
                await Timer(run * bit, "ps")
                k += run
            dut.uart_rx.value = 1
            if not stop:
                await Timer(bit, "ps")

    async def monitor(self) -> None:
        """Decode ``uart_tx`` forever.  A falling edge starts a byte; the line's transitions up
        to the middle of the stop bit are collected (one await per transition, not per bit)
        and each bit is the level in its middle, a quarter clock off the clock edges where the
        line changes."""
        dut, bit = self.dut, self.bit_ps
        tx = dut.uart_tx
        while True:
            await FallingEdge(tx)
            start = get_sim_time("ps")
            end = start + 9 * bit + bit // 2 + CLOCK_PS // 4
            changes = [(start, 0)]
            while True:
                left = end - get_sim_time("ps")
                if left <= 0:
                    break
                timer = Timer(left, "ps")
                if await First(tx.value_change, timer) is timer:
                    break
                changes.append((get_sim_time("ps"), int(tx.value)))
            levels = []
            for k in range(10):
                when = start + k * bit + bit // 2 + CLOCK_PS // 4
                levels.append(next(level for at, level in reversed(changes) if at <= when))
            if levels[0] != 0:
                continue                                   # not a start bit
            if levels[9] != 1:
                self.tx_framing_errors += 1
            value = sum(level << k for k, level in enumerate(levels[1:9]))
            self.received.append(value)
            if value == 0 and self._previous != 0:
                self.frames += 1
                self._frame_event.set()
            self._previous = value
            if int(tx.value) == 0:
                # The line is already low (a bad stop bit, or a break): the next byte needs a
                # falling edge, as in the core's receiver.
                await RisingEdge(tx)

    async def wait_frames(self, count: int, timeout_ps: int) -> None:
        """Until :attr:`frames` reaches ``count``; a timeout says how many came."""
        deadline = get_sim_time("ps") + timeout_ps
        while self.frames < count:
            left = deadline - get_sim_time("ps")
            if left <= 0:
                raise AssertionError(f"{self.frames} reply frames after the timeout, expected {count}")
            self._frame_event.clear()
            try:
                await with_timeout(self._frame_event.wait(), left, "ps")
            except cocotb.triggers.SimTimeoutError:
                raise AssertionError(
                    f"{self.frames} reply frames after the timeout, expected {count}") from None


@dataclass(frozen=True)
class UartCommand:
    """Bytes a host sends at once (a 0x00 and a frame, usually), the number of reply frames
    they must produce, and which of the bytes get a bad stop bit.  A ``sync`` command is sent
    alone: after every earlier reply, and nothing follows it before its own replies (a STATS,
    whose counters are only exact when no frame is arriving)."""
    wire: bytes
    replies: int
    bad_stop: frozenset[int] = field(default_factory=frozenset)
    sync: bool = False


class UartSession:
    """The core with its clock and reset, a :class:`UartHost`, and a list of commands played
    with at most two of them without their replies."""

    def __init__(self, dut, divisor: int) -> None:
        self.dut = dut
        self.divisor = divisor
        self.host = UartHost(dut, divisor)

    async def start(self) -> None:
        dut = self.dut
        dut.uart_rx.value = 1
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, CLOCK_PS, unit="ps", impl="gpi").start(start_high=False))
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        await ClockCycles(dut.clk, 2)
        # Drive the line half a clock off the clock edges (every bit lasts whole clocks, so
        # every later transition keeps that offset).
        await Timer(CLOCK_PS // 2, "ps")
        cocotb.start_soon(self.host.monitor())

    def _timeout_ps(self, command: UartCommand) -> int:
        # A reply frame is at most 255 bytes of 10 bits, plus a generous allowance for the
        # datapath: far beyond what a live link may take.
        return (len(command.wire) + 4 * 256) * 10 * self.host.bit_ps + 200_000 * CLOCK_PS

    async def play(self, commands: Sequence[UartCommand]) -> None:
        host = self.host
        answered_before: list[int] = []    # reply frames of commands 0 .. k-1
        total = 0
        for command in commands:
            answered_before.append(total)
            total += command.replies
        for k, command in enumerate(commands):
            if k >= 1 and (command.sync or commands[k - 1].sync):
                await host.wait_frames(answered_before[k], self._timeout_ps(commands[k - 1]))
            elif k >= 2:
                await host.wait_frames(answered_before[k - 1], self._timeout_ps(commands[k - 2]))
            await host.send(command.wire, bad_stop=command.bad_stop)
        await host.wait_frames(total, self._timeout_ps(commands[-1]) * 4)
        # Anything after the last expected frame is an error the caller sees in the bytes.
        await Timer(300 * 10 * host.bit_ps, "ps")
