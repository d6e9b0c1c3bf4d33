"""A stand-in datapath for the link tests, in gateware and as a Python model.

The link's tests must not depend on the fusion pipeline and the queue (they have their own
tests, and the full top is tested by the board tests), but they need results of every kind
with real timing.  The stub:

* takes a signal (one at a time); one clock later reports it **stale** if its ``ts_us`` is below
  the last accepted one; otherwise accepts it and, when ``edge_bps > 0`` and ``confidence >=
  min_confidence`` (a register, so parameter writes are visible), emits a **decision** three
  clocks after the signal (priority = confidence >> 4, seq counting decisions);
* pushes each decision into a FIFO of :data:`CAPACITY`; when full, a signal from an odd source
  **evicts** the oldest entry, one from an even source has its decision **rejected**; the drop
  is reported one clock after the decision;
* pops the oldest entry (or reports **empty**) one clock after a pop request.

:class:`StubModel` computes the same results.  :class:`LinkHarness` is the byte-level top:
``LinkCore(divisor=None)`` plus the stub.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sigfuse.contract import Decision, DropReason, FusionParams, Signal as SignalRecord
from sigfuse.gateware.dispatcher import DropLayout, PoppedLayout
from sigfuse.gateware.layouts import DecisionLayout, SignalLayout
from sigfuse.gateware.link import DatapathEventsLayout, LinkCore
from sigfuse.gateware.regfile import FusionConfigLayout, GaugesLayout
from sigfuse.protocol import Result, ResultKind

__all__ = ["CAPACITY", "PAIR_SLOTS", "StubDatapath", "StubModel", "LinkHarness", "SETTLE_CLOCKS"]

CAPACITY = 4
PAIR_SLOTS = 16
#: Decision at +3, drop at +4 after the signal: 6 leaves margin.
SETTLE_CLOCKS = 6


class StubDatapath(wiring.Component):
    def __init__(self, params: FusionParams | None = None) -> None:
        self.reset_params = params or FusionParams()
        super().__init__({
            "signals": In(stream.Signature(SignalLayout)),
            "pop": In(stream.Signature(0)),
            "config": In(stream.Signature(FusionConfigLayout)),
            "decisions": Out(stream.Signature(DecisionLayout)),
            "drops": Out(stream.Signature(DropLayout)),
            "stale": Out(stream.Signature(SignalLayout)),
            "popped": Out(stream.Signature(PoppedLayout)),
            "events": Out(DatapathEventsLayout),
            "gauges": Out(GaugesLayout),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        min_confidence = Signal(16, init=self.reset_params.min_confidence)
        m.d.comb += self.config.ready.eq(1)
        with m.If(self.config.valid):
            m.d.sync += min_confidence.eq(self.config.payload.min_confidence)

        queue = [Signal(DecisionLayout, name=f"q{i}") for i in range(CAPACITY)]
        count = Signal(range(CAPACITY + 1))
        high_water = Signal(range(CAPACITY + 1))
        last_ts = Signal(64)
        seq = Signal(32)
        sig = Signal(SignalLayout)
        dec = Signal(DecisionLayout)
        drop = Signal(DropLayout)
        popped = Signal(PoppedLayout)
        popped_valid = Signal()

        m.d.comb += [self.gauges.queue_occupancy.eq(count), self.gauges.queue_high_water.eq(high_water),
                     self.decisions.payload.eq(dec), self.drops.payload.eq(drop),
                     self.stale.payload.eq(sig), self.popped.payload.eq(popped),
                     self.popped.valid.eq(popped_valid)]
        with m.If(count > high_water):
            m.d.sync += high_water.eq(count)
        with m.If(self.popped.ready):
            m.d.sync += popped_valid.eq(0)

        def shift_out():
            for i in range(CAPACITY - 1):
                m.d.sync += queue[i].eq(queue[i + 1])

        with m.FSM():
            with m.State("idle"):
                m.d.comb += [self.signals.ready.eq(1), self.pop.ready.eq(~popped_valid)]
                with m.If(self.signals.valid):
                    m.d.comb += self.events.signals_in.eq(1)
                    m.d.sync += sig.eq(self.signals.payload)
                    m.next = "fuse"
                with m.Elif(self.pop.valid & ~popped_valid):
                    m.d.comb += self.events.queue_pops.eq(1)
                    m.d.sync += [popped.decision.eq(queue[0]), popped.empty.eq(count == 0),
                                 popped_valid.eq(1)]
                    with m.If(count != 0):
                        shift_out()
                        m.d.sync += count.eq(count - 1)
            with m.State("fuse"):
                with m.If(sig.ts_us < last_ts):
                    m.d.comb += [self.stale.valid.eq(1), self.events.stale_drops.eq(1)]
                    m.next = "idle"
                with m.Else():
                    m.d.sync += last_ts.eq(sig.ts_us)
                    with m.If((sig.edge_bps > 0) & (sig.confidence >= min_confidence)):
                        m.d.sync += [dec.ts_us.eq(sig.ts_us), dec.pair.eq(sig.pair), dec.side.eq(sig.side),
                                     dec.confidence.eq(sig.confidence), dec.edge_bps.eq(sig.edge_bps),
                                     dec.priority.eq(sig.confidence >> 4), dec.seq.eq(seq),
                                     seq.eq(seq + 1)]
                        m.next = "delay"
                    with m.Else():
                        m.next = "idle"
            with m.State("delay"):
                m.next = "push"
            with m.State("push"):
                m.d.comb += [self.decisions.valid.eq(1), self.events.decisions_out.eq(1)]
                with m.If(count < CAPACITY):
                    m.d.comb += self.events.queue_pushes.eq(1)
                    for i in range(CAPACITY):
                        with m.If(count == i):
                            m.d.sync += queue[i].eq(dec)
                    m.d.sync += count.eq(count + 1)
                    m.next = "idle"
                with m.Elif(sig.source[0]):
                    m.d.comb += self.events.queue_pushes.eq(1)
                    m.d.sync += [drop.reason.eq(DropReason.EVICTED), drop.decision.eq(queue[0])]
                    shift_out()
                    m.d.sync += queue[CAPACITY - 1].eq(dec)
                    m.next = "report_drop"
                with m.Else():
                    m.d.sync += [drop.reason.eq(DropReason.REJECTED), drop.decision.eq(dec)]
                    m.next = "report_drop"
            with m.State("report_drop"):
                m.d.comb += self.drops.valid.eq(1)
                with m.If(drop.reason == DropReason.EVICTED):
                    m.d.comb += self.events.queue_evicted.eq(1)
                with m.Else():
                    m.d.comb += self.events.queue_rejected.eq(1)
                m.next = "idle"
        return m


class StubModel:
    """What :class:`StubDatapath` produces, event by event, plus its stats counters."""

    def __init__(self, params: FusionParams | None = None) -> None:
        self.min_confidence = (params or FusionParams()).min_confidence
        self.queue: list[Decision] = []
        self.last_ts = 0
        self.seq = 0
        self.high_water = 0
        self.stats = dict.fromkeys(DatapathEventsLayout.members, 0)

    def signal(self, s: SignalRecord) -> list[Result]:
        self.stats["signals_in"] += 1
        if s.ts_us < self.last_ts:
            self.stats["stale_drops"] += 1
            return [Result(ResultKind.STALE, s)]
        self.last_ts = s.ts_us
        if not (s.edge_bps > 0 and s.confidence >= self.min_confidence):
            return []
        d = Decision(s.ts_us, s.pair, s.side, s.confidence, s.edge_bps, s.confidence >> 4,
                     self.seq % (1 << 32))
        self.seq += 1
        self.stats["decisions_out"] += 1
        out = [Result(ResultKind.DECISION, d)]
        if len(self.queue) < CAPACITY:
            self.stats["queue_pushes"] += 1
            self.queue.append(d)
        elif s.source & 1:
            self.stats["queue_pushes"] += 1
            self.stats["queue_evicted"] += 1
            out.append(Result(ResultKind.EVICTED, self.queue.pop(0)))
            self.queue.append(d)
        else:
            self.stats["queue_rejected"] += 1
            out.append(Result(ResultKind.REJECTED, d))
        self.high_water = max(self.high_water, len(self.queue))
        return out

    def configure(self, params: FusionParams) -> None:
        """New fusion registers (the stub only uses ``min_confidence``)."""
        self.min_confidence = params.min_confidence

    def pop(self) -> Result:
        self.stats["queue_pops"] += 1
        if not self.queue:
            return Result(ResultKind.POPPED_EMPTY, None)
        return Result(ResultKind.POPPED, self.queue.pop(0))

    def gauges(self) -> dict[str, int]:
        return {"queue_occupancy": len(self.queue), "queue_high_water": self.high_water}


class LinkHarness(wiring.Component):
    """Byte-level link (no UART) with the stub datapath: ``rx_bytes`` in, ``tx_bytes`` out."""

    def __init__(self, *, build_id: int = 0x5EED0001, clk_hz: int = 12_000_000) -> None:
        self.build_id = build_id
        self.clk_hz = clk_hz
        super().__init__({
            "rx_bytes": In(stream.Signature(8)),
            "tx_bytes": Out(stream.Signature(8)),
            "link_error": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.link = link = LinkCore(divisor=None, pair_slots=PAIR_SLOTS,
                                            queue_capacity=CAPACITY, clk_hz=self.clk_hz,
                                            build_id=self.build_id, settle_clocks=SETTLE_CLOCKS)
        m.submodules.stub = stub = StubDatapath()
        wiring.connect(m, wiring.flipped(self.rx_bytes), link.rx_bytes)
        wiring.connect(m, link.tx_bytes, wiring.flipped(self.tx_bytes))
        wiring.connect(m, link.signals, stub.signals)
        wiring.connect(m, link.pop, stub.pop)
        wiring.connect(m, link.config, stub.config)
        wiring.connect(m, stub.popped, link.popped)
        for name in ("decisions", "drops", "stale"):
            src, dst = getattr(stub, name), getattr(link, name)
            m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload)]
        m.d.comb += [link.datapath_events.eq(stub.events), link.gauges.eq(stub.gauges),
                     self.link_error.eq(link.link_error)]
        return m


class UartLinkHarness(wiring.Component):
    """``LinkCore`` with its UART, the stub datapath, and a host-side UART: bytes in
    (``host_tx``), bytes out (``host_rx``), and ``line_break`` to hold the board's RX line low."""

    def __init__(self, divisor: int = 4) -> None:
        self.divisor = divisor
        super().__init__({
            "host_tx": In(stream.Signature(8)),
            "host_rx": Out(stream.Signature(8)),
            "line_break": In(1),
        })

    def elaborate(self, platform) -> Module:
        from sigfuse.gateware.uart import UARTReceiver, UARTTransmitter
        m = Module()
        m.submodules.link = link = LinkCore(divisor=self.divisor, pair_slots=PAIR_SLOTS,
                                            queue_capacity=CAPACITY, settle_clocks=SETTLE_CLOCKS)
        m.submodules.stub = stub = StubDatapath()
        m.submodules.host_tx = host_tx = UARTTransmitter(self.divisor)
        m.submodules.host_rx = host_rx = UARTReceiver(self.divisor)
        wiring.connect(m, wiring.flipped(self.host_tx), host_tx.data)
        wiring.connect(m, host_rx.data, wiring.flipped(self.host_rx))
        m.d.comb += [link.rx.eq(host_tx.tx & ~self.line_break), host_rx.rx.eq(link.tx)]
        wiring.connect(m, link.signals, stub.signals)
        wiring.connect(m, link.pop, stub.pop)
        wiring.connect(m, link.config, stub.config)
        wiring.connect(m, stub.popped, link.popped)
        for name in ("decisions", "drops", "stale"):
            src, dst = getattr(stub, name), getattr(link, name)
            m.d.comb += [dst.valid.eq(src.valid), dst.payload.eq(src.payload)]
        m.d.comb += [link.datapath_events.eq(stub.events), link.gauges.eq(stub.gauges)]
        return m
