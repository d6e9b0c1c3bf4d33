"""What a PCIe core attaches to: the register file's bus and the datapath's streams, in the ring
entry formats of :mod:`sigfuse.bar`.

:class:`PcieCore` holds the register file (:class:`~.regfile.RegisterFile`) and the whole
datapath (:class:`~.datapath.FusionDatapath`: fusion pipeline + priority queue behind one
ordered command stream).  A PCIe core provides the rest (``docs/pcie.md``):

* its **DMA reader** fetches signal ring entries from host memory and hands them, one 128-bit
  word per entry, to ``commands``;
* its **DMA writer** takes ``results`` (one 256-bit word per result ring entry) to host memory;
* its **MMIO** (BAR0) serves the window of :data:`sigfuse.bar.BAR_REGISTERS`: the mailbox drives
  ``regs``, the ring doorbells drive the DMA engines, and ``idle`` tells it when every fetched
  entry's results are written (``sig_done``).

``sim/harness/pcie.cpp`` plays exactly that part for the ``pcie-sim://`` model.

Entries are checked here, not trusted: an entry with an unknown ``op``, set reserved bits or a
pair slot not below ``pair_slots`` is consumed, skipped, counted (``frames_bad_value``) and
signalled on ``entry_error``.  Register accesses on ``regs`` that the map refuses (no such
register, read-only, value above the maximum) never reach the register file and count in
``reg_bad_address`` / ``frames_bad_value``; the initiator sees why from ``exists``,
``writable`` and ``value_ok`` in the same clock.

Each datapath record becomes one or two result entries in the link's record format
(:data:`sigfuse.protocol.RESULT_RECORD_LAYOUT`): a decision, then the decision its push evicted
or the queue rejected; a stale signal; a popped decision or an empty pop -- the order of
``sigfuse trace``.  ``seq`` numbers the entries from 0 since reset.
"""

# No `from __future__ import annotations`: the signature is read from real annotations.
import hashlib

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..bar import RESULT_ENTRY_LAYOUT, SIGNAL_ENTRY_LAYOUT, EntryOp
from ..contract import DropReason, FusionParams
from ..protocol import RESULT_RECORD_LAYOUT, SIGNAL_RECORD_LAYOUT
from ..protocol import ResultKind as LinkResultKind
from .datapath import CommandKind, FusionDatapath, ResultKind, check_build_parameters
from .layouts import struct_layout
from .regfile import RegBusSignature, RegisterFile

__all__ = ["SignalEntryLayout", "ResultEntryLayout", "PcieCore", "pcie_build_id",
           "verilog_source", "PCIE_CLK_HZ"]

#: A signal ring entry (:data:`sigfuse.bar.SIGNAL_ENTRY_LAYOUT`), 128 bits.
SignalEntryLayout = data.StructLayout({
    "record": struct_layout(SIGNAL_RECORD_LAYOUT),
    "op": 8,
    "reserved": 8,
})
#: A result ring entry (:data:`sigfuse.bar.RESULT_ENTRY_LAYOUT`), 256 bits.
ResultEntryLayout = data.StructLayout({
    "record": struct_layout(RESULT_RECORD_LAYOUT),
    "seq": 32,
    "reserved": 64,
})
assert [f.width for f in SIGNAL_ENTRY_LAYOUT] == [Shape.cast(SignalEntryLayout[n].shape).width
                                                  for n in ("record", "op", "reserved")]
assert [f.width for f in RESULT_ENTRY_LAYOUT] == [Shape.cast(ResultEntryLayout[n].shape).width
                                                  for n in ("record", "seq", "reserved")]

#: Datapath clock of a typical LitePCIe design on an Artix-7 (the 125 MHz user clock of a Gen2
#: x1..x4 core); the identity register of the model reports it.
PCIE_CLK_HZ = 125_000_000


def pcie_build_id(pair_slots: int, capacity: int, clk_hz: int = PCIE_CLK_HZ) -> int:
    """The 32-bit build ID of a :class:`PcieCore` with these parameters built from these sources
    (the product core's source digest, and ``pcie`` with the parameters)."""
    from .core import source_digest
    digest = hashlib.sha256(source_digest(("pcie", "datapath")))
    digest.update(repr(("pcie", pair_slots, capacity, clk_hz)).encode())
    return int.from_bytes(digest.digest()[:4], "little")


class PcieCore(wiring.Component):
    """Register file + datapath with a PCIe core's ports (see the module docstring).

    :param pair_slots, capacity: the datapath's build parameters (and identity registers).
    :param params: reset values of the fusion registers.
    :param clk_hz: the ``clk_hz`` identity register.
    :param build_id: the ``build_id`` identity register (default: :func:`pcie_build_id`).
    """

    #: Register accesses from the MMIO mailbox (this component is the target).
    regs: In(RegBusSignature)
    #: Signal ring entries, from the DMA reader, in ring order.
    commands: In(stream.Signature(SignalEntryLayout))
    #: Result ring entries, to the DMA writer, in processing order.
    results: Out(stream.Signature(ResultEntryLayout))
    #: Nothing in progress: every accepted entry's results have left on ``results``, no
    #: parameter set is on its way, the register file is not busy.
    idle: Out(1)
    #: The datapath's sticky fault flag (two records met: cannot happen, see datapath.py).
    fault: Out(1)
    #: One clock per refused ring entry.
    entry_error: Out(1)

    def __init__(self, pair_slots: int = 64, capacity: int = 256, *,
                 params: FusionParams | None = None, clk_hz: int = PCIE_CLK_HZ,
                 build_id: int | None = None) -> None:
        check_build_parameters(pair_slots, capacity)
        self.pair_slots = pair_slots
        self.capacity = capacity
        self.reset_params = params or FusionParams()
        self.clk_hz = clk_hz
        self.build_id = pcie_build_id(pair_slots, capacity, clk_hz) if build_id is None else build_id
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.regfile = regfile = RegisterFile(
            params=self.reset_params, build_id=self.build_id, clk_hz=self.clk_hz,
            pair_slots=self.pair_slots, queue_capacity=self.capacity, uart_divisor=0)
        m.submodules.datapath = datapath = FusionDatapath(self.pair_slots, self.capacity,
                                                          params=self.reset_params)
        wiring.connect(m, regfile.config, datapath.config)

        # --- register bus: refused accesses never reach the register file ---------------------
        bus, target = self.regs, regfile.bus
        write_ok = bus.w_stb & target.exists & target.writable & target.value_ok
        read_ok = bus.r_stb & target.exists
        bad_address = (bus.w_stb & ~(target.exists & target.writable)) | (bus.r_stb & ~target.exists)
        bad_value = bus.w_stb & target.exists & target.writable & ~target.value_ok
        m.d.comb += [
            target.addr.eq(bus.addr), target.w_data.eq(bus.w_data),
            target.w_stb.eq(write_ok), target.r_stb.eq(read_ok),
            target.commit.eq(bus.commit), target.snapshot.eq(bus.snapshot),
            bus.r_data.eq(target.r_data), bus.exists.eq(target.exists),
            bus.writable.eq(target.writable), bus.value_ok.eq(target.value_ok),
            bus.params_pending.eq(target.params_pending), bus.busy.eq(target.busy),
        ]

        # --- signal ring entries -> datapath commands ------------------------------------------
        entry = self.commands.payload
        is_pop = entry.op == EntryOp.POP
        is_signal = entry.op == EntryOp.SIGNAL
        entry_ok = (entry.reserved == 0) & (
            is_pop | (is_signal & (entry.record.reserved == 0) & (entry.record.pair < self.pair_slots)))
        command = datapath.commands
        m.d.comb += [
            command.valid.eq(self.commands.valid & entry_ok),
            command.payload.kind.eq(Mux(is_pop, CommandKind.POP, CommandKind.SIGNAL)),
            self.commands.ready.eq(command.ready | ~entry_ok),
            self.entry_error.eq(self.commands.valid & ~entry_ok),
        ]
        for name in command.payload.signal.shape().members:
            m.d.comb += getattr(command.payload.signal, name).eq(getattr(entry.record, name))

        # --- datapath records -> result entries (one or two each) -----------------------------
        record = datapath.results.payload
        second = Signal()          # the drop entry of a DECISION record is next
        has_drop = (record.kind == ResultKind.DECISION) & (record.drop != 0)
        out = self.results.payload.record
        seq = Signal(32)
        with m.If(second):
            m.d.comb += [
                out.kind.eq(Mux(record.drop == DropReason.EVICTED, LinkResultKind.EVICTED,
                                LinkResultKind.REJECTED)),
                out.record.eq(record.dropped),
            ]
        with m.Elif(record.kind == ResultKind.DECISION):
            m.d.comb += [out.kind.eq(LinkResultKind.DECISION), out.record.eq(record.decision)]
        with m.Elif(record.kind == ResultKind.STALE):
            m.d.comb += [out.kind.eq(LinkResultKind.STALE), out.record.eq(record.signal)]
        with m.Elif(record.empty):
            m.d.comb += out.kind.eq(LinkResultKind.POPPED_EMPTY)
        with m.Else():
            m.d.comb += [out.kind.eq(LinkResultKind.POPPED), out.record.eq(record.decision)]
        m.d.comb += [
            self.results.payload.seq.eq(seq),
            self.results.valid.eq(datapath.results.valid),
            datapath.results.ready.eq(self.results.ready & (second | ~has_drop)),
        ]
        with m.If(self.results.valid & self.results.ready):
            m.d.sync += [seq.eq(seq + 1), second.eq(has_drop & ~second)]

        m.d.comb += [
            self.idle.eq(datapath.idle & ~datapath.results.valid & ~regfile.config.valid
                         & ~datapath.refreshing & ~target.busy),
            self.fault.eq(datapath.fault),
        ]

        # --- stats: strobes from the datapath's counters (each moves by one per clock at most,
        # so its low bit toggles exactly when it counts) ------------------------------------------
        events = regfile.events
        stats = datapath.stats
        toggles = {"signals_in": stats.signals_in, "stale_drops": stats.stale_drops,
                   "decisions_out": stats.decisions_out, "queue_pushes": stats.decisions_out,
                   "queue_pops": stats.pops, "queue_evicted": stats.evicted,
                   "queue_rejected": stats.rejected}
        for name, counter in toggles.items():
            last = Signal(name=f"last_{name}")
            m.d.sync += last.eq(counter[0])
            m.d.comb += getattr(events, name).eq(counter[0] ^ last)
        m.d.comb += [
            events.reg_bad_address.eq(bad_address),
            events.frames_bad_value.eq(bad_value | self.entry_error),
            regfile.gauges.queue_occupancy.eq(stats.occupancy),
            regfile.gauges.queue_high_water.eq(stats.high_water),
        ]
        return m


def verilog_source(pair_slots: int, capacity: int, *, name: str = "sigfuse_pcie",
                   **kwargs) -> str:
    """Verilog of a :class:`PcieCore` (for the ``pcie-sim://`` model)."""
    from amaranth.back import verilog

    from .datapath import verilog_ports
    core = PcieCore(pair_slots, capacity, **kwargs)
    return verilog.convert(core, name=name, ports=verilog_ports(core), emit_src=False)
