"""UART PHY: 8N1, baud set by an integer clock divisor, oversampled receiver with a glitch filter.

The receiver samples the line every clock (the oversampling ratio is the divisor itself), after a
two-flip-flop synchronizer.  A *glitch filter* follows: the filtered line only takes a new level
once ``glitch_clocks + 1`` consecutive samples agree, so any pulse of up to ``glitch_clocks``
clocks disappears, and every real edge is delayed by the same ``glitch_clocks`` clocks (bit
widths are kept).  A falling edge of the filtered line starts a byte; the start bit is checked
again at its middle (a pulse that got through the filter but is too short to be a start bit is a
false start and ignored), then each data bit and the stop bit are sampled at their middle,
``divisor`` clocks apart.  A pulse that starts less than ``glitch_clocks + 1`` clocks after an
edge is not removed but delays that edge (the filter has not seen the new level long enough);
at divisor 4 the sampling point has one clock of margin, so prefer 8 or more clocks per bit
where a PLL allows.  A byte whose stop bit is 0 is dropped and reported on ``rx_error``; a
line held low (a break) reports once, since the next start needs a falling edge.

A UART cannot wait: a received byte is held on ``rx`` until taken, and if the next byte is
complete before that, the new byte is dropped and ``rx_overrun`` pulses.

Tolerance: with the start edge found to within a clock, the sample of bit ``k`` (stop bit
``k = 9``) lands ``(divisor - 1) // 2`` clocks into the bit, plus the drift of ``9.5 ×`` the
rate mismatch; at divisor 4 (3 Mbaud from 12 MHz) a sender within ±2 % is sampled inside its
bit.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTransmitter", "UARTReceiver", "UARTPhy", "divisor_for"]


def divisor_for(clk_hz: int, baud: int, *, tolerance: float = 0.01) -> int:
    """The integer divisor for ``baud`` from ``clk_hz``; ValueError when the rate error would
    exceed ``tolerance`` (choose a clock that is a multiple of the baud rate)."""
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"{clk_hz} Hz is too slow for {baud} baud: the divisor must be >= 4")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"{clk_hz} Hz / {divisor} = {clk_hz / divisor:.0f} baud is {error:.1%} "
                         f"off {baud}; use a clock that is a multiple of the baud rate")
    return divisor


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an integer >= 4, not {divisor!r}")


class UARTTransmitter(wiring.Component):
    """8N1 transmitter: one start bit, eight data bits LSB first, one stop bit.

    ``data`` is ready whenever the shifter is idle; ``tx`` idles high.
    """

    def __init__(self, divisor: int) -> None:
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        shift = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))

        m.d.comb += [self.tx.eq(shift[0]), self.data.ready.eq(bits_left == 0)]
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [shift.eq(Cat(Const(0, 1), self.data.payload, Const(1, 1))),
                         bits_left.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(bits_left != 0):
            with m.If(timer == 0):
                m.d.sync += [shift.eq(Cat(shift[1:], Const(1, 1))), bits_left.eq(bits_left - 1),
                             timer.eq(self.divisor - 1)]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTReceiver(wiring.Component):
    """8N1 receiver (see the module docstring for sampling and filtering).

    :param glitch_clocks: longest pulse the filter removes; default ``divisor // 4`` (at least
        1).  Must be below ``divisor // 2``.
    """

    def __init__(self, divisor: int, *, glitch_clocks: int | None = None) -> None:
        _check_divisor(divisor)
        if glitch_clocks is None:
            glitch_clocks = max(1, divisor // 4)
        if not 0 <= glitch_clocks < divisor // 2:
            raise ValueError(f"glitch_clocks must be within [0, {divisor // 2 - 1}] at divisor "
                             f"{divisor}, not {glitch_clocks}")
        self.divisor = divisor
        self.glitch_clocks = glitch_clocks
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        # Glitch filter: take a new level after glitch_clocks + 1 equal samples.
        filtered = Signal(init=1)
        if self.glitch_clocks:
            history = Signal(self.glitch_clocks, init=(1 << self.glitch_clocks) - 1)
            m.d.sync += history.eq(Cat(line, history[:-1]))
            with m.If((history == 0) & ~line):
                m.d.sync += filtered.eq(0)
            with m.Elif((history == (1 << self.glitch_clocks) - 1) & line):
                m.d.sync += filtered.eq(1)
        else:
            m.d.sync += filtered.eq(line)
        previous = Signal(init=1)
        m.d.sync += previous.eq(filtered)

        timer = Signal(range(self.divisor))
        bit = Signal(range(10))
        shift = Signal(8)
        held = Signal(8)
        held_valid = Signal()

        m.d.comb += [self.data.payload.eq(held), self.data.valid.eq(held_valid)]
        with m.If(self.data.ready):
            m.d.sync += held_valid.eq(0)

        with m.FSM():
            with m.State("idle"):
                with m.If(previous & ~filtered):
                    # The falling edge was one clock ago: the middle of the start bit is
                    # (divisor - 1) // 2 clocks after the edge.
                    m.d.sync += timer.eq((self.divisor - 1) // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(filtered):
                    m.next = "idle"  # too short for a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "bits"
            with m.State("bits"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], filtered)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(~filtered):
                        m.d.comb += self.error.eq(1)
                    with m.Elif(held_valid & ~self.data.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [held.eq(shift), held_valid.eq(1)]
                    m.next = "idle"
        return m


class UARTPhy(wiring.Component):
    """Transmitter and receiver at one divisor: ``tx_data`` in, ``rx_data`` out, pins
    ``rx``/``tx``, strobes ``rx_error`` (bad stop bit) and ``rx_overrun`` (byte lost)."""

    def __init__(self, divisor: int, *, glitch_clocks: int | None = None) -> None:
        self.divisor = divisor
        self._glitch_clocks = glitch_clocks
        _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "tx_data": In(stream.Signature(8)),
            "rx_data": Out(stream.Signature(8)),
            "rx_error": Out(1),
            "rx_overrun": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.transmitter = tx = UARTTransmitter(self.divisor)
        m.submodules.receiver = rx = UARTReceiver(self.divisor, glitch_clocks=self._glitch_clocks)
        wiring.connect(m, wiring.flipped(self.tx_data), tx.data)
        wiring.connect(m, rx.data, wiring.flipped(self.rx_data))
        m.d.comb += [self.tx.eq(tx.tx), rx.rx.eq(self.rx), self.rx_error.eq(rx.error),
                     self.rx_overrun.eq(rx.overrun)]
        return m
