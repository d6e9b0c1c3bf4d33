"""The whole datapath: fusion pipeline and priority queue behind one ordered command stream and
one ordered result stream, in exactly the reference engine's result order.

:class:`FusionDatapath` takes ``commands`` (a signal, or a pop request) and produces ``results``,
one record per reference result group:

=============  ===============================================================================
``DECISION``   fusion emitted ``decision`` and pushed it; ``drop`` is 0, or EVICTED/REJECTED
               with the ``dropped`` decision (the reference's DecisionEmitted, then Dropped)
``STALE``      ``signal`` was stale (Dropped(STALE, signal))
``POPPED``     the answer to a pop: ``decision``, or ``empty`` (Popped(None))
=============  ===============================================================================

Ordering argument (clock numbers relative to the edge at which a command is accepted, ``a``):

* ``decisions.ready`` of the pipeline is tied high.  That is only safe because the result FIFO
  can never overflow: a command is accepted only while ``level + in_flight < depth``, where
  ``in_flight`` counts every accepted signal whose record slot has not yet passed and every
  issued pop whose popped record has not yet been written -- each yields at most one record and
  reads only free space.  With ``decisions.ready`` high the pipeline's decision for a signal is
  on ``decisions`` exactly :data:`~sigfuse.gateware.fusion.LATENCY` clocks after ``a``, and
  goes straight into the queue's ``push`` (always ready).
* The queue reports the eviction or rejection caused by a push :data:`DROP_LATENCY` clocks
  after it, so the decision is delayed by that much and meets its own drop report: one record,
  written at ``a + RECORD_LATENCY``.
* A stale signal is reported by the pipeline ``STALE_LATENCY`` clocks after ``a``; a shift
  register delays the report to the same ``a + RECORD_LATENCY``.
* Signals are accepted at most one per clock, so their record slots are distinct clocks in
  acceptance order, and a signal that yields nothing simply leaves its slot empty.
* A pop waits at the input until no signal is in flight but, at most, the one whose record
  is being written in this clock (accepted ``RECORD_LATENCY`` clocks ago).  The last push then
  happened at least ``RECORD_LATENCY - LATENCY = 2`` clocks before the pop is issued; the
  queue sees every push made two clocks or more before a pop (a pop meeting an insert acts
  first), so the pop sees every earlier decision, evictions included.  A signal accepted after the pop
  pushes ``LATENCY`` clocks later, long after the pop took effect.  The popped record is written
  the clock after the pop is issued; every earlier signal's record was written before, every
  later signal's record is written ``RECORD_LATENCY`` clocks after its acceptance, which comes
  after the pop.  So no two records ever meet in one clock, and the FIFO holds them in the
  reference's order.

Signals never wait for pops beyond that, and pops never wait for each other: a pop costs at
most ``RECORD_LATENCY - 1`` idle clocks (only when it follows a signal).  ``config`` is the
pipeline's parameter stream, passed through (it waits for the pipeline to drain and, on a weight
change, for the mask table refresh; signals wait meanwhile, pops do not).

``fault`` is a sticky flag raised if two records ever meet in one clock or a drop report
arrives without its decision -- the argument above says it cannot; the trace backends check it.
"""

from __future__ import annotations



from amaranth.hdl import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..contract import PAIR_SLOTS_MAX, FusionParams
from .fusion import LATENCY, STALE_LATENCY, FusionPipeline
from .fusion_params import FusionConfigLayout
from .layouts import DecisionLayout, SignalLayout
from .queue import PriorityQueue

__all__ = ["CommandKind", "ResultKind", "CommandLayout", "ResultLayout", "DatapathStatsLayout",
           "DROP_LATENCY", "RECORD_LATENCY", "FusionDatapath", "check_build_parameters",
           "verilog_ports", "verilog_source"]

#: Clocks from a push into the queue to its drop report on ``drop``.
DROP_LATENCY = 2
#: Clocks from accepting a signal to the edge that writes its record into the result FIFO.
RECORD_LATENCY = LATENCY + DROP_LATENCY

STATS_COUNTER_BITS = 32
#: Queue capacity is a build parameter; the gateware queue needs two cells at least.
CAPACITY_MIN = 2
#: Ceiling chosen for the simulators (a shift-register queue of this size already takes minutes
#: to compile); a board's limit is its resources.
CAPACITY_MAX = 4096


class CommandKind(enum.IntEnum, shape=1):
    SIGNAL = 0
    POP = 1


class ResultKind(enum.IntEnum, shape=2):
    DECISION = 0
    STALE = 1
    POPPED = 2


#: One command: a signal for fusion, or a pop request (``signal`` is then ignored).
CommandLayout = data.StructLayout({
    "kind": CommandKind,
    "signal": SignalLayout,
})

#: One result record (see the module docstring for which fields each kind uses).
ResultLayout = data.StructLayout({
    "kind": ResultKind,
    #: 0 = nothing dropped, else :class:`sigfuse.contract.DropReason` EVICTED or REJECTED.
    "drop": 2,
    "empty": 1,
    "decision": DecisionLayout,
    "dropped": DecisionLayout,
    "signal": SignalLayout,
})

DatapathStatsLayout = data.StructLayout({
    "signals_in": unsigned(STATS_COUNTER_BITS),
    "stale_drops": unsigned(STATS_COUNTER_BITS),
    "decisions_out": unsigned(STATS_COUNTER_BITS),
    "pops": unsigned(STATS_COUNTER_BITS),
    "evicted": unsigned(STATS_COUNTER_BITS),
    "rejected": unsigned(STATS_COUNTER_BITS),
    "occupancy": unsigned(CAPACITY_MAX.bit_length()),
    "high_water": unsigned(CAPACITY_MAX.bit_length()),
})


def check_build_parameters(pair_slots: int, capacity: int) -> None:
    """Raise ``ValueError`` naming the configuration key when the gateware cannot be built so."""
    if not 1 <= pair_slots <= PAIR_SLOTS_MAX:
        raise ValueError(f"fusion.pair_slots: the gateware supports 1..{PAIR_SLOTS_MAX} pair "
                         f"slots, not {pair_slots}")
    if not CAPACITY_MIN <= capacity <= CAPACITY_MAX:
        raise ValueError(f"queue.capacity: the gateware queue supports {CAPACITY_MIN}.."
                         f"{CAPACITY_MAX} entries, not {capacity}")


class FusionDatapath(wiring.Component):
    """Fusion pipeline + priority queue with one ordered command stream and one ordered result
    stream (see the module docstring for the ordering argument).

    :param pair_slots: pair slots of the fusion pipeline's vote board.
    :param capacity: entries of the priority queue.
    :param params: reset value of the parameter registers.
    :param result_depth: entries of the result FIFO; ``RECORD_LATENCY + 2`` or more keeps one
        command per clock when ``results`` is always ready.
    :param ram_style: the fusion pipeline's vote-board RAM (see
        :class:`~sigfuse.gateware.fusion.FusionPipeline`).
    """

    def __init__(self, pair_slots: int = 64, capacity: int = 256, *,
                 params: FusionParams | None = None, result_depth: int = 16,
                 ram_style: str | None = None) -> None:
        check_build_parameters(pair_slots, capacity)
        if result_depth < 2:
            raise ValueError(f"result_depth must be at least 2, not {result_depth}")
        self.pair_slots = pair_slots
        self.capacity = capacity
        self.params = params or FusionParams()
        self.result_depth = result_depth
        self.ram_style = ram_style
        super().__init__({
            "commands": In(stream.Signature(CommandLayout)),
            "results": Out(stream.Signature(ResultLayout)),
            "config": In(stream.Signature(FusionConfigLayout)),
            "refreshing": Out(1),
            #: nothing accepted is still on its way to the result FIFO.
            "idle": Out(1),
            "fault": Out(1),
            "stats": Out(DatapathStatsLayout),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.fusion = fusion = FusionPipeline(self.pair_slots, params=self.params,
                                                        ram_style=self.ram_style)
        m.submodules.queue = queue = PriorityQueue(self.capacity)
        m.submodules.result_fifo = fifo = SyncFIFO(width=ResultLayout.size,
                                                    depth=self.result_depth)
        wiring.connect(m, wiring.flipped(self.config), fusion.config)
        m.d.comb += self.refreshing.eq(fusion.refreshing)

        # --- admission ---------------------------------------------------------------------
        # tracker[k] is high k + 1 clocks after a signal was accepted; its last bit marks the
        # clock in which the signal's record (if any) is written.
        tracker = Signal(RECORD_LATENCY)
        signals_in_flight = Signal(range(RECORD_LATENCY + 1))
        pop_outstanding = Signal()
        in_flight = signals_in_flight + pop_outstanding
        room = (fifo.level + in_flight) < self.result_depth
        signals_idle = signals_in_flight == 0
        # A pop may go in the clock in which the last signal's record is written (only the last
        # tracker bit set): its popped record is written one clock later.
        pop_may_go = tracker[:-1] == 0

        command = self.commands.payload
        is_pop = command.kind == CommandKind.POP
        m.d.comb += [
            fusion.signals.valid.eq(self.commands.valid & ~is_pop & room),
            fusion.signals.payload.eq(command.signal),
            queue.pop.valid.eq(self.commands.valid & is_pop & room & pop_may_go),
            self.commands.ready.eq(Mux(is_pop, queue.pop.ready & room & pop_may_go,
                                       fusion.signals.ready & room)),
            self.idle.eq(signals_idle & ~pop_outstanding),
        ]
        accept = fusion.signals.valid & fusion.signals.ready
        pop_issued = queue.pop.valid & queue.pop.ready
        m.d.sync += [
            tracker.eq(Cat(accept, tracker[:-1])),
            signals_in_flight.eq(signals_in_flight + accept - tracker[-1]),
            pop_outstanding.eq(pop_issued),
        ]

        # --- fusion -> queue, at fixed latency -----------------------------------------------
        m.d.comb += [
            fusion.decisions.ready.eq(1),
            queue.push.valid.eq(fusion.decisions.valid),
            queue.push.payload.eq(fusion.decisions.payload),
            queue.popped.ready.eq(1),
        ]
        decision_valid = [Signal(name=f"decision_d{i + 1}_valid") for i in range(DROP_LATENCY)]
        decision = [Signal(DecisionLayout, name=f"decision_d{i + 1}") for i in range(DROP_LATENCY)]
        m.d.sync += [decision_valid[0].eq(fusion.decisions.valid),
                     decision[0].eq(fusion.decisions.payload)]
        for i in range(1, DROP_LATENCY):
            m.d.sync += [decision_valid[i].eq(decision_valid[i - 1]), decision[i].eq(decision[i - 1])]

        stale_delay = RECORD_LATENCY - STALE_LATENCY
        stale_valid = [Signal(name=f"stale_d{i + 1}_valid") for i in range(stale_delay)]
        stale = [Signal(SignalLayout, name=f"stale_d{i + 1}") for i in range(stale_delay)]
        m.d.sync += [stale_valid[0].eq(fusion.stale.valid), stale[0].eq(fusion.stale.payload)]
        for i in range(1, stale_delay):
            m.d.sync += [stale_valid[i].eq(stale_valid[i - 1]), stale[i].eq(stale[i - 1])]

        # --- one record per clock at most -----------------------------------------------------
        record = Signal(ResultLayout)
        decision_now, stale_now = decision_valid[-1], stale_valid[-1]
        popped_now = queue.popped.valid
        with m.If(popped_now):
            m.d.comb += [
                record.kind.eq(ResultKind.POPPED),
                record.empty.eq(queue.popped.payload.empty),
                record.decision.eq(queue.popped.payload.decision),
            ]
        with m.Elif(decision_now):
            m.d.comb += [
                record.kind.eq(ResultKind.DECISION),
                record.decision.eq(decision[-1]),
                record.drop.eq(Mux(queue.drop.valid, queue.drop.payload.reason, 0)),
                record.dropped.eq(queue.drop.payload.decision),
            ]
        with m.Else():
            m.d.comb += [
                record.kind.eq(ResultKind.STALE),
                record.signal.eq(stale[-1]),
            ]
        m.d.comb += [
            fifo.w_data.eq(record),
            fifo.w_en.eq(popped_now | decision_now | stale_now),
            self.results.valid.eq(fifo.r_rdy),
            self.results.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.results.ready),
        ]
        collision = ((popped_now + decision_now + stale_now) > 1) | \
            (queue.drop.valid & ~decision_now) | (fifo.w_en & ~fifo.w_rdy)
        with m.If(collision):
            m.d.sync += self.fault.eq(1)

        # --- stats ---------------------------------------------------------------------------
        stats = self.stats
        m.d.comb += [
            stats.signals_in.eq(fusion.stats.signals_in),
            stats.stale_drops.eq(fusion.stats.stale_drops),
            stats.decisions_out.eq(fusion.stats.decisions_out),
            stats.evicted.eq(queue.evicted),
            stats.rejected.eq(queue.rejected),
            stats.occupancy.eq(queue.occupancy),
            stats.high_water.eq(queue.high_water),
        ]
        m.d.sync += stats.pops.eq(stats.pops + pop_issued)
        return m


def verilog_ports(component: wiring.Component) -> list[Signal]:
    """Port signals for ``verilog.convert`` (constant and zero-width members are not ports)."""
    return [value for _path, _member, value in
            ((p, mb, Value.cast(v)) for p, mb, v in component.signature.flatten(component))
            if isinstance(value, Signal) and len(value) > 0]


def verilog_source(pair_slots: int = 64, capacity: int = 256, name: str = "fusion_datapath",
                   **kwargs) -> str:
    """Verilog of a :class:`FusionDatapath` (for the Verilator trace backend)."""
    from amaranth.back import verilog
    datapath = FusionDatapath(pair_slots, capacity, **kwargs)
    return verilog.convert(datapath, name=name, ports=verilog_ports(datapath), emit_src=False)
