"""What every sigfuse board has: the core interface, the board top, and the stand-in core.

A board is a :class:`BoardSpec`: an ``amaranth-boards`` platform plus what sigfuse adds to it
(the datapath clock from a PLL, the UART, an LED heartbeat and an LED for link errors).
:class:`BoardTop` owns everything board-specific -- clocking, power-on reset, pin buffers, LED
policy -- and hands the *core* three plain signals in one ``sync`` domain::

    uart_rx     In(1)   UART line from the host, idle high, already synchronized to ``sync``
    uart_tx     Out(1)  UART line to the host, idle high
    link_error  Out(1)  one-clock pulse per link error (bad frame, overflow, ...); the top
                        stretches it into a visible blink on the link-error LED

The core comes from a factory called with a :class:`CoreContext` (board name, the *achieved*
``sync`` frequency, the UART baud rate), so the same core elaborates for any board.  The product
core (link + register file + fusion + queue) plugs in the same way as :class:`UartEchoCore`, the
stand-in that validates the flow: a real 8N1 UART that echoes every byte and flags framing errors
and overflows.
"""

import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol

from amaranth.build import Platform
from amaranth.hdl import (C, Cat, ClockDomain, ClockSignal, Elaboratable, Module, ResetSignal,
                          Signal)
from amaranth.lib import fifo, io, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = [
    "CORE_SIGNATURE", "CoreContext", "CoreFactory", "ClockGenerator", "BoardSpec", "BoardTop",
    "BOARD_NAMES", "get_board", "PowerOnReset", "StatusLeds", "UartReceiver", "UartTransmitter",
    "UartEchoCore", "uart_divisor",
]

#: The ports every core exposes to the board top (see the module docstring).
CORE_SIGNATURE = wiring.Signature({
    "uart_rx": In(1, init=1),
    "uart_tx": Out(1, init=1),
    "link_error": Out(1),
})


@dataclass(frozen=True)
class CoreContext:
    """What a core factory is told about the board it is elaborated for."""
    board: str
    #: The ``sync`` frequency the PLL actually produces (it can differ from the request by a few
    #: ppm): baud divisors and uptime counters must use this number.
    clock_hz: int
    uart_baud: int


CoreFactory = Callable[[CoreContext], wiring.Component]


class ClockGenerator(Protocol):
    """Drives the ``sync`` domain's clock and reset (the board top defines the domain): a PLL
    from the board oscillator, held in reset until locked."""
    frequency: int

    def elaborate(self, platform: Platform) -> Module: ...


@dataclass(frozen=True)
class BoardSpec:
    """One board sigfuse builds for."""
    name: str
    description: str
    #: Makes the ``amaranth-boards`` platform, with sigfuse's resources added.
    platform: Callable[[], Platform]
    #: The clock generator for a requested ``sync`` frequency in Hz.
    clock_generator: Callable[[int], ClockGenerator]
    #: The ``sync`` frequency the datapath is built for (its timing constraint).
    sync_hz: int
    uart_baud: int
    heartbeat_led: tuple[str, int]
    link_error_led: tuple[str, int]
    #: Bitstream file the toolchain produces (``.bin`` for iCE40, ``.bit`` for ECP5).
    bitstream_suffix: str
    #: Extra board wiring (e.g. strapping pins that would otherwise reset the FPGA).
    fixups: Callable[[Platform, Module], None] | None = field(default=None, compare=False)
    #: Extra nextpnr options for this board's builds (part of the cache key, like every
    #: command line of the plan).
    nextpnr_opts: str = ""
    #: Extra options of Yosys's ``synth_<family>`` for this board's builds (cache key too).
    synth_opts: str = ""
    #: The core ``sigfuse build`` puts on this board unless told otherwise (a name of
    #: :data:`sigfuse.build.CORES`): the product where it fits, else the UART-echo stand-in.
    default_core: str = "product"
    #: Why the default is not the product core (said when the default is built).
    default_core_note: str = ""


BOARD_NAMES = ("icebreaker", "ulx3s")


def get_board(name: str) -> BoardSpec:
    """The :class:`BoardSpec` named ``name`` (``icebreaker`` or ``ulx3s``)."""
    if name not in BOARD_NAMES:
        raise KeyError(f"unknown board {name!r}; known boards: {', '.join(BOARD_NAMES)}")
    return importlib.import_module(f"{__package__}.{name}").BOARD


def uart_divisor(clock_hz: int, baud: int) -> int:
    """Clocks per UART bit; refuses a rate the receiver at the far end would not tolerate."""
    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise ValueError(f"{baud} baud needs at least 4 clocks per bit; {clock_hz} Hz gives {divisor}")
    # 8N1 samples the stop bit 9.5 bits after the start edge: 2 % keeps that inside the bit even
    # when the host's UART is off by as much again.
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"{clock_hz} Hz cannot make {baud} baud: the nearest divisor {divisor} is "
                         f"{error:.1%} off")
    return divisor


class PowerOnReset(Elaboratable):
    """Drive ``sync`` from ``clock`` and hold it in reset until ``locked`` has been high for
    ``delay`` clocks.

    The counter lives in a reset-less domain on the same clock, so the reset it makes releases
    synchronously.  On iCE40 the delay also covers the ~3 us after configuration during which
    block RAMs read as zero (Amaranth's own iCE40 reset does the same); losing lock re-asserts
    reset.
    """

    def __init__(self, clock: Signal, locked: Signal, *, delay: int) -> None:
        self.clock = clock
        self.locked = locked
        self.delay = delay

    def elaborate(self, platform) -> Module:
        m = Module()
        # ``sync`` itself is defined by the board top (Amaranth 0.6 wants domains defined at or
        # above every user); this module only drives its clock and reset.
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += [ClockSignal("sync").eq(self.clock), ClockSignal("por").eq(self.clock)]
        locked = Signal()
        m.submodules.lock_sync = FFSynchronizer(self.locked, locked, o_domain="por")
        timer = Signal(range(self.delay + 1))
        ready = Signal()
        with m.If(~locked):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == self.delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)
        m.d.comb += ResetSignal("sync").eq(~ready)
        return m


class BoardTop(Elaboratable):
    """The top of a board build: clocking, reset, UART pins, LEDs, and the core.

    :param board: the board this top is built for.
    :param core_factory: makes the core for this board (see :data:`CORE_SIGNATURE`).
    :param sync_hz: the ``sync`` frequency to ask the PLL for (default ``board.sync_hz``).
    """

    def __init__(self, board: BoardSpec, core_factory: CoreFactory, *,
                 sync_hz: int | None = None) -> None:
        self.board = board
        self.clocking = board.clock_generator(sync_hz or board.sync_hz)
        self.context = CoreContext(board=board.name, clock_hz=self.clocking.frequency,
                                   uart_baud=board.uart_baud)
        try:
            self.core = core_factory(self.context)
            _check_core(self.core)
        except Exception:
            # A top that is never built must not also warn that it was never elaborated.
            for unused in (self, self.clocking, getattr(self, "core", None)):
                if isinstance(unused, Elaboratable):
                    unused._MustUse__silence = True
            raise

    def elaborate(self, platform: Platform) -> Module:
        m = Module()
        m.domains.sync = ClockDomain("sync")
        m.submodules.clocking = self.clocking
        m.submodules.core = core = self.core

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        # The pin is asynchronous to ``sync``; the core's receiver may filter further.
        m.submodules.uart_rx_sync = FFSynchronizer(uart_rx.i, core.uart_rx, init=1)
        # Not an I/O-cell register: it would reset to 0 and send the host a break while the
        # PLL locks; the core's transmitter drives the pin from a flip-flop that resets to 1.
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += uart_tx.o.eq(core.uart_tx)

        m.submodules.status_leds = leds = StatusLeds(self.context.clock_hz)
        m.d.comb += leds.link_error.eq(core.link_error)
        for name, resource, level in (("heartbeat_led", self.board.heartbeat_led, leds.heartbeat),
                                      ("link_error_led", self.board.link_error_led, leds.error)):
            m.submodules[name] = led = io.Buffer("o", platform.request(*resource, dir="-"))
            m.d.comb += led.o.eq(level)

        if self.board.fixups is not None:
            self.board.fixups(platform, m)
        return m


class StatusLeds(wiring.Component):
    """The board's two status LEDs: a ~1 Hz heartbeat (the PLL locked and reset released) and
    a link-error LED held for 100 ms after the last error pulse (one clock is invisible).

    Everything counts milliseconds from one prescaler, so no counter is wider than 16 bits: a
    23-bit "hold for 100 ms" counter fragments into carry chains that miss 48 MHz on iCE40.
    """
    link_error: In(1)
    heartbeat: Out(1)
    error: Out(1)

    def __init__(self, clock_hz: int) -> None:
        self.clock_hz = clock_hz
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        per_ms = self.clock_hz // 1000
        prescaler = Signal(range(per_ms), init=per_ms - 1)
        millisecond = Signal()
        m.d.sync += millisecond.eq(prescaler == 0)
        with m.If(prescaler == 0):
            m.d.sync += prescaler.eq(per_ms - 1)
        with m.Else():
            m.d.sync += prescaler.eq(prescaler - 1)

        half_second = Signal(range(500), init=499)
        with m.If(millisecond):
            with m.If(half_second == 0):
                m.d.sync += [half_second.eq(499), self.heartbeat.eq(~self.heartbeat)]
            with m.Else():
                m.d.sync += half_second.eq(half_second - 1)

        hold = Signal(range(101))
        with m.If(self.link_error):
            m.d.sync += [hold.eq(100), self.error.eq(1)]
        with m.Elif(millisecond):
            with m.If(hold == 0):
                m.d.sync += self.error.eq(0)
            with m.Else():
                m.d.sync += hold.eq(hold - 1)
        return m


def _check_core(core: object) -> None:
    if not isinstance(core, wiring.Component):
        raise TypeError(f"the core factory must return a wiring.Component, not {core!r}")
    members = core.signature.members
    problems = []
    for name, member in CORE_SIGNATURE.members.items():
        if name not in members:
            problems.append(f"missing port {name!r}")
        elif members[name].flow != member.flow or members[name].shape != member.shape:
            problems.append(f"port {name!r} is {members[name]!r}, the board wires {member!r}")
    for name in members:
        if name not in CORE_SIGNATURE.members:
            problems.append(f"port {name!r} is not wired by the board top")
    if problems:
        raise TypeError(f"core {type(core).__name__} does not fit the board: " + "; ".join(problems))


# --- the stand-in core ---------------------------------------------------------------------------

class UartReceiver(wiring.Component):
    """8N1 receiver: samples each bit at its middle, re-checks the start bit there (a glitch
    shorter than half a bit is ignored) and reports a low stop bit as a framing error.

    ``data`` is a strobe (no backpressure): a byte is valid for one clock.
    """
    rx: In(1, init=1)
    data: Out(stream.Signature(8, always_ready=True))
    framing_error: Out(1)

    def __init__(self, divisor: int) -> None:
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        timer = Signal(range(self.divisor))
        bit = Signal(range(8))
        shift = Signal(8)
        m.d.sync += [self.data.valid.eq(0), self.framing_error.eq(0)]
        m.d.comb += self.data.payload.eq(shift)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("idle"):
                with m.If(~self.rx):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "start"
            with m.State("start"):
                with m.If(timer == 0):
                    with m.If(~self.rx):
                        m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                        m.next = "data"
                    with m.Else():
                        m.next = "idle"
            with m.State("data"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], self.rx)), timer.eq(self.divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "stop"
            with m.State("stop"):
                with m.If(timer == 0):
                    with m.If(self.rx):
                        m.d.sync += self.data.valid.eq(1)
                        m.next = "idle"
                    with m.Else():
                        m.d.sync += self.framing_error.eq(1)
                        m.next = "break"
            with m.State("break"):
                # A break or a baud mismatch: wait for the line to idle before hunting again.
                with m.If(self.rx):
                    m.next = "idle"
        return m


class UartTransmitter(wiring.Component):
    """8N1 transmitter; ``tx`` comes straight from a flip-flop, so it never glitches."""
    data: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor: int) -> None:
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        shift = Signal(10, init=0x3FF)
        bits_left = Signal(range(11))
        timer = Signal(range(self.divisor))
        m.d.comb += self.tx.eq(shift[0])
        with m.If(bits_left == 0):
            m.d.comb += self.data.ready.eq(1)
            with m.If(self.data.valid):
                m.d.sync += [shift.eq(Cat(C(0, 1), self.data.payload, C(1, 1))), bits_left.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [shift.eq(Cat(shift[1:], C(1, 1))), bits_left.eq(bits_left - 1),
                         timer.eq(self.divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m


class UartEchoCore(wiring.Component):
    """The stand-in core: echoes every byte it receives.

    A FIFO sits between receiver and transmitter so a host whose clock runs slightly fast
    can stream bytes back to back without losing any; a byte arriving to a full FIFO is dropped
    and, like a framing error, pulses ``link_error``.
    """
    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    link_error: Out(1)

    def __init__(self, context: CoreContext, *, fifo_depth: int = 16) -> None:
        self.context = context
        self.divisor = uart_divisor(context.clock_hz, context.uart_baud)
        self.fifo_depth = fifo_depth
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.rx = rx = UartReceiver(self.divisor)
        m.submodules.tx = tx = UartTransmitter(self.divisor)
        m.submodules.fifo = buffer = fifo.SyncFIFOBuffered(width=8, depth=self.fifo_depth)
        m.d.comb += [
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            buffer.w_data.eq(rx.data.payload),
            buffer.w_en.eq(rx.data.valid),
            tx.data.payload.eq(buffer.r_data),
            tx.data.valid.eq(buffer.r_rdy),
            buffer.r_en.eq(tx.data.ready),
        ]
        overflow = rx.data.valid & ~buffer.w_rdy
        m.d.sync += self.link_error.eq(rx.framing_error | overflow)
        return m
