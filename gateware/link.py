"""The board's link, assembled: UART PHY, deframer, dispatcher, register file, framer.

:class:`LinkCore` is what a board top instantiates next to the fusion pipeline and the queue.
Its datapath ports are the dispatcher's (see :mod:`.dispatcher` for the contract); the product
core, :class:`~.core.SigfuseCore`, makes the connections -- the pipeline's and the queue's
streams, the ``config`` stream, the result taps and the stats strobes -- and is the one place
they are written down.

``settle_clocks`` must be at least the pipeline's ``LATENCY`` + 2 (the default 16 is).
``tests/link/test_link_sim.py`` elaborates the product core, so ``wiring.connect`` checks them.

With ``divisor=None`` the UART is left out and the link has byte streams (``rx_bytes``,
``tx_bytes``) instead of pins: for simulation at byte level and for other PHYs.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import FusionParams
from .dispatcher import DispatcherEventsLayout, Dispatcher, DropLayout, PoppedLayout
from .framing import DeframerEventsLayout, Deframer, Framer
from .fusion_params import ParamReadSignature
from .layouts import DecisionLayout, SignalLayout
from .regfile import FusionConfigLayout, GaugesLayout, RegisterFile, StatsEventsLayout
from .uart import UARTPhy

__all__ = ["DatapathEventsLayout", "LinkCore"]

#: Strobes the top derives from the datapath's stream handshakes (one per event).
DatapathEventsLayout = data.StructLayout({
    "signals_in": 1,      # fusion.signals transfers
    "stale_drops": 1,     # fusion.stale.valid
    "decisions_out": 1,   # fusion.decisions transfers
    "queue_pushes": 1,    # queue.push transfers
    "queue_pops": 1,      # queue.pop transfers
    "queue_evicted": 1,   # queue.drop.valid with reason EVICTED
    "queue_rejected": 1,  # queue.drop.valid with reason REJECTED
})


class LinkCore(wiring.Component):
    """Link, register file and stats of a board.

    :param divisor: UART clocks per bit (None: byte streams instead of the UART).
    :param pair_slots, queue_capacity, clk_hz, build_id: identity registers (``pair_slots`` also
        bounds the accepted signals).
    :param params: reset values of the fusion registers.
    :param settle_clocks, settle_on_idle: see :class:`~.dispatcher.Dispatcher`
        (``settle_on_idle`` adds the input ``datapath_busy``).
    :param array_port: see :class:`~.regfile.RegisterFile` (adds the port ``param_read``).
    """

    def __init__(self, *, divisor: int | None, pair_slots: int, queue_capacity: int,
                 clk_hz: int = 0, build_id: int = 0, params: FusionParams | None = None,
                 settle_clocks: int = 16, settle_on_idle: bool = False,
                 glitch_clocks: int | None = None, array_port: bool = False) -> None:
        self.divisor = divisor
        self.array_port = array_port
        self.pair_slots = pair_slots
        self.queue_capacity = queue_capacity
        self.clk_hz = clk_hz
        self.build_id = build_id
        self.reset_params = params or FusionParams()
        self.settle_clocks = settle_clocks
        self.settle_on_idle = settle_on_idle
        self.glitch_clocks = glitch_clocks
        members = {
            "signals": Out(stream.Signature(SignalLayout)),
            "pop": Out(stream.Signature(0)),
            "decisions": In(stream.Signature(DecisionLayout, always_ready=True)),
            "drops": In(stream.Signature(DropLayout, always_ready=True)),
            "stale": In(stream.Signature(SignalLayout, always_ready=True)),
            "popped": In(stream.Signature(PoppedLayout)),
            "config": Out(stream.Signature(FusionConfigLayout)),
            "params": Out(FusionConfigLayout),
            "datapath_events": In(DatapathEventsLayout),
            "gauges": In(GaugesLayout),
            "link_error": Out(1),
        }
        if settle_on_idle:
            members["datapath_busy"] = In(1)
        if array_port:
            members["param_read"] = In(ParamReadSignature)
        if divisor is None:
            members["rx_bytes"] = In(stream.Signature(8))
            members["tx_bytes"] = Out(stream.Signature(8))
        else:
            members["rx"] = In(1, init=1)
            members["tx"] = Out(1, init=1)
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.deframer = deframer = Deframer()
        m.submodules.dispatcher = dispatcher = Dispatcher(pair_slots=self.pair_slots,
                                                          settle_clocks=self.settle_clocks,
                                                          settle_on_idle=self.settle_on_idle)
        m.submodules.regfile = regfile = RegisterFile(
            params=self.reset_params, build_id=self.build_id, clk_hz=self.clk_hz,
            pair_slots=self.pair_slots, queue_capacity=self.queue_capacity,
            uart_divisor=self.divisor or 0, array_port=self.array_port, bus_stage=True)
        m.submodules.framer = framer = Framer()

        wiring.connect(m, deframer.frame, dispatcher.frame)
        wiring.connect(m, dispatcher.tx, framer.frames)
        wiring.connect(m, dispatcher.bus, regfile.bus)
        for name in ("signals", "pop", "config"):
            source = dispatcher if name != "config" else regfile
            wiring.connect(m, getattr(source, name), wiring.flipped(getattr(self, name)))
        for name in ("decisions", "drops", "stale", "popped"):
            wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(dispatcher, name))
        m.d.comb += [regfile.gauges.eq(self.gauges), self.params.eq(regfile.params)]
        if self.settle_on_idle:
            m.d.comb += dispatcher.datapath_busy.eq(self.datapath_busy)
        if self.array_port:
            wiring.connect(m, wiring.flipped(self.param_read), regfile.param_read)

        events = regfile.events
        for layout, source in ((DeframerEventsLayout, deframer.events),
                               (DispatcherEventsLayout, dispatcher.events),
                               (DatapathEventsLayout, self.datapath_events)):
            for name in layout.members:
                m.d.comb += getattr(events, name).eq(getattr(source, name))

        if self.divisor is None:
            wiring.connect(m, wiring.flipped(self.rx_bytes), deframer.bytes_in)
            wiring.connect(m, framer.bytes_out, wiring.flipped(self.tx_bytes))
        else:
            m.submodules.uart = uart = UARTPhy(self.divisor, glitch_clocks=self.glitch_clocks)
            m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx),
                         events.uart_rx_errors.eq(uart.rx_error),
                         events.uart_rx_overrun.eq(uart.rx_overrun)]
            wiring.connect(m, uart.rx_data, deframer.bytes_in)
            wiring.connect(m, framer.bytes_out, uart.tx_data)

        errors = [getattr(deframer.events, n) for n in DeframerEventsLayout.members if n != "frames_ok"]
        errors += [getattr(dispatcher.events, n) for n in DispatcherEventsLayout.members]
        errors += [events.uart_rx_errors, events.uart_rx_overrun]
        m.d.comb += self.link_error.eq(Cat(*errors).any())
        return m


def _check_layouts() -> None:
    names = set(StatsEventsLayout.members)
    mine = set(DeframerEventsLayout.members) | set(DispatcherEventsLayout.members) | \
        set(DatapathEventsLayout.members) | {"uart_rx_errors", "uart_rx_overrun"}
    if names != mine:
        raise AssertionError(f"stats events without a source: {sorted(names ^ mine)}")


_check_layouts()
