"""The register file, generated from :data:`sigfuse.regmap.REGISTERS`.

Nothing about a register is written here: addresses, widths, access, reset values and maxima
come from the map, so the gateware cannot drift from ``regs.json`` or ``sigfuse_regs.h``.

Ports:

* ``bus`` (:data:`RegBusSignature`, driven by the dispatcher): ``addr`` and ``w_data`` are
  decoded combinationally into ``exists``, ``writable`` and ``value_ok`` (so a whole command can
  be validated before any of it runs); ``w_stb`` writes, ``r_stb`` reads (``r_data`` is valid in
  the clock after ``r_stb``); ``commit`` ends a REG_WRITE frame; ``snapshot`` takes a stats
  snapshot.  While ``busy`` the initiator issues none of ``r_stb``, ``w_stb``, ``snapshot``.
* ``config`` (a stream of :data:`FusionConfigLayout`, to the fusion pipeline's ``config``):
  after a ``commit`` that follows a write to any fusion register, ``valid`` rises with the whole
  parameter set and stays until the pipeline takes it -- so the writes of one frame take effect
  together, between two signals.  ``params_pending`` tells the dispatcher not to write the
  registers while a set is on its way.  ``params`` always shows the registers.
* ``events`` (strobes, one per counter of the map) and ``gauges`` (values sampled at a snapshot).

Storage (what keeps this small on an iCE40, where a 50-way 32-bit read multiplexer and 20
32-bit counters with their snapshot copies would cost ~1800 LUTs): one 128 x 32 memory (two
block RAMs) holds every readable value -- the identity constants (memory initial values), the
writable registers (written through; the fusion registers also live in flip-flops, which feed
the pipeline), the stats registers -- and, above the map, the live counters.  Each counter
event goes into an 8-bit *pre-counter* in flip-flops; a flusher adds one pre-counter at a time
into its live counter in the memory (a read and a write, every 2 x 20 clocks per counter, far
below 255 events).

A **snapshot** moves every pre-counter, and copies both gauges and the 64-bit uptime, into
flip-flops in one clock; then a pass (busy, ~65 clocks) writes ``live + pre`` of each counter
into its stats register and back into its live counter: the values are those of that one clock,
so a host reads a coherent set however long its reads take.  A **clear** in the same clock
writes 0 into the live counters instead, so snapshot and clear in one write lose nothing.
Events in the snapshot clock itself count after it.  After a reset a pass restores the memory
(writable registers to their reset values, counters and stats to 0).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract import SOURCE_SLOTS, FusionParams
from ..regmap import (ADDR_WIDTH, IDENTITY_NAMES, REG_WIDTH, REGISTERS, STATS_CONTROL_CLEAR,
                      STATS_CONTROL_SNAPSHOT, Access, Register, StatKind, param_registers,
                      stats_registers)

__all__ = ["RegBusSignature", "FusionConfigLayout", "StatsEventsLayout", "GaugesLayout",
           "RegisterFile", "config_value", "PRE_COUNTER_BITS"]

#: The register port, seen from the dispatcher (the initiator).
RegBusSignature = wiring.Signature({
    "addr": Out(ADDR_WIDTH),
    "w_data": Out(REG_WIDTH),
    "w_stb": Out(1),
    "r_stb": Out(1),
    "r_data": In(REG_WIDTH),
    "exists": In(1),
    "writable": In(1),
    "value_ok": In(1),
    "commit": Out(1),
    "snapshot": Out(1),
    "params_pending": In(1),
    "busy": In(1),
})


def _config_layout() -> data.StructLayout:
    """One field per FusionParams field (arrays over the source slots), widths from the map."""
    fields: dict[str, object] = {}
    regs = param_registers()
    for f in dataclasses.fields(FusionParams):
        mine = [r for r in regs if r.param[0] == f.name]
        width = mine[0].width
        if mine[0].param[1] is None:
            fields[f.name] = unsigned(width)
        else:
            assert len(mine) == SOURCE_SLOTS
            fields[f.name] = data.ArrayLayout(unsigned(width), SOURCE_SLOTS)
    return data.StructLayout(fields)


#: The fusion parameters as the register file presents them (field for field the pipeline's
#: ``FusionConfigLayout``; a test checks they are equal).
FusionConfigLayout = _config_layout()

_COUNTERS = tuple(r for r in stats_registers() if r.stat == StatKind.COUNTER)
_GAUGES = tuple(r for r in stats_registers() if r.stat == StatKind.GAUGE)
_UPTIME = tuple(r for r in stats_registers() if r.stat == StatKind.UPTIME)

#: One strobe per counter of the stats group.
StatsEventsLayout = data.StructLayout({r.name: 1 for r in _COUNTERS})
#: One value per gauge of the stats group.
GaugesLayout = data.StructLayout({r.name: REG_WIDTH for r in _GAUGES})

#: Width of the pre-counters: events a counter may take between two of its flushes.
PRE_COUNTER_BITS = 8
_DEPTH = 128
#: Live counters live above the register map, one word each.
_LIVE_BASE = 0x60
_N = len(_COUNTERS)
assert max(r.addr for r in REGISTERS) < _LIVE_BASE and _LIVE_BASE + _N <= _DEPTH
# The snapshot pass writes counter i to the i-th stats register: counters come first, in order.
assert [r.addr for r in _COUNTERS] == list(range(_COUNTERS[0].addr, _COUNTERS[0].addr + _N))


def config_value(params: FusionParams) -> dict:
    """``params`` as a value of :data:`FusionConfigLayout` (for ``ctx.set`` and comparisons)."""
    return {f.name: list(getattr(params, f.name)) if isinstance(getattr(params, f.name), tuple)
            else getattr(params, f.name) for f in dataclasses.fields(FusionParams)}


class RegisterFile(wiring.Component):
    """Registers of :data:`sigfuse.regmap.REGISTERS` (see the module docstring).

    :param params: reset values of the fusion registers (default: the contract defaults).
    :param build_id, clk_hz, pair_slots, queue_capacity, uart_divisor: the identity registers.
    """

    def __init__(self, *, params: FusionParams | None = None, build_id: int = 0, clk_hz: int = 0,
                 pair_slots: int = 0, queue_capacity: int = 0, uart_divisor: int = 0) -> None:
        self.reset_params = params or FusionParams()
        identity = dict(build_id=build_id, clk_hz=clk_hz, pair_slots=pair_slots,
                        queue_capacity=queue_capacity, uart_divisor=uart_divisor)
        assert set(identity) == set(IDENTITY_NAMES)
        self.identity = {}
        for r in REGISTERS:
            if r.group != "identity":
                continue
            value = identity.get(r.name, r.reset)
            if not 0 <= value <= r.max_value:
                raise ValueError(f"{r.name} = {value} does not fit its {r.width}-bit register")
            self.identity[r.name] = value
        super().__init__({
            "bus": In(RegBusSignature),
            "config": Out(stream.Signature(FusionConfigLayout)),
            "params": Out(FusionConfigLayout),
            "events": In(StatsEventsLayout),
            "gauges": In(GaugesLayout),
        })

    def _reset_value(self, r: Register) -> int:
        if r.group == "identity":
            return self.identity[r.name]
        if r.param is None:
            return r.reset if r.access == Access.RW else 0
        field, index = r.param
        value = getattr(self.reset_params, field)
        return value if index is None else value[index]

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.bus
        init = [0] * _DEPTH
        for r in REGISTERS:
            init[r.addr] = self._reset_value(r)
        m.submodules.storage = storage = Memory(shape=REG_WIDTH, depth=_DEPTH, init=init)
        rd = storage.read_port()
        wr = storage.write_port()
        # A read port's `en` is 1 unless driven: reads happen only where asked for, so that
        # rd.data holds a value until the next read (the passes rely on it).
        m.d.comb += [rd.en.eq(0), bus.r_data.eq(rd.data)]

        # --- decode and the fusion registers (flip-flops, loaded from the bus) ---------------
        params = {r.name: Signal(r.width, name=f"reg_{r.name}", init=self._reset_value(r))
                  for r in param_registers()}
        for r in param_registers():
            field, index = r.param
            target = getattr(self.params, field)
            m.d.comb += (target if index is None else target[index]).eq(params[r.name])
        m.d.comb += self.config.payload.eq(self.params)

        write_ok = bus.w_stb & bus.value_ok & bus.writable
        bus_write = Signal()          # a bus write to the memory in this clock
        take_snapshot, take_clear = Signal(), Signal()
        dirty = Signal()
        with m.Switch(bus.addr):
            for r in REGISTERS:
                with m.Case(r.addr):
                    m.d.comb += [bus.exists.eq(1), bus.writable.eq(int(r.writable)),
                                 bus.value_ok.eq(bus.w_data <= r.max_value)]
                    with m.If(write_ok):
                        if r.access == Access.RW:
                            m.d.comb += bus_write.eq(1)
                        if r.name in params:
                            m.d.sync += [params[r.name].eq(bus.w_data), dirty.eq(1)]
                        if r.name == "stats_control":
                            m.d.comb += [take_snapshot.eq((bus.w_data & STATS_CONTROL_SNAPSHOT).any()),
                                         take_clear.eq((bus.w_data & STATS_CONTROL_CLEAR).any())]
        with m.If(bus.snapshot):
            m.d.comb += take_snapshot.eq(1)
        take = take_snapshot | take_clear

        with m.If(self.config.ready):
            m.d.sync += self.config.valid.eq(0)
        with m.If(bus.commit & dirty):
            m.d.sync += [self.config.valid.eq(1), dirty.eq(0)]
        m.d.comb += bus.params_pending.eq(self.config.valid)

        # --- counters: pre-counters in flip-flops ---------------------------------------------
        events = [getattr(self.events, r.name) for r in _COUNTERS]
        pre = [Signal(PRE_COUNTER_BITS, name=f"pre_{r.name}") for r in _COUNTERS]
        pre_copy = [Signal(PRE_COUNTER_BITS, name=f"copy_{r.name}") for r in _COUNTERS]
        index = Signal(range(_N))
        flush_take = Signal()         # pre[index] moves into the flusher in this clock
        for i, (p, e) in enumerate(zip(pre, events)):
            # A snapshot moves every pre-counter out (into pre_copy) at once, a flush one.
            with m.If(take | (flush_take & (index == i))):
                m.d.sync += p.eq(e)
            with m.Else():
                m.d.sync += p.eq(p + e)
        uptime = Signal(2 * REG_WIDTH)
        m.d.sync += uptime.eq(uptime + 1)
        uptime_copy = Signal(2 * REG_WIDTH)
        gauge_copy = [Signal(REG_WIDTH, name=f"copy_{r.name}") for r in _GAUGES]
        with m.If(take):
            m.d.sync += [c.eq(p) for c, p in zip(pre_copy, pre)]
            m.d.sync += uptime_copy.eq(uptime)
            m.d.sync += [c.eq(getattr(self.gauges, r.name)) for c, r in zip(gauge_copy, _GAUGES)]

        pre_at = Signal(PRE_COUNTER_BITS)
        copy_at = Signal(PRE_COUNTER_BITS)
        with m.Switch(index):
            for i in range(_N):
                with m.Case(i):
                    m.d.comb += [pre_at.eq(pre[i]), copy_at.eq(pre_copy[i])]

        # --- memory ports: bus first; the flusher and the passes take the free clocks --------
        with m.If(bus_write):
            m.d.comb += [wr.addr.eq(bus.addr), wr.data.eq(bus.w_data), wr.en.eq(1)]
        with m.If(bus.r_stb):
            m.d.comb += [rd.addr.eq(bus.addr), rd.en.eq(1)]

        flushed = Signal(PRE_COUNTER_BITS)     # the pre-counter being added
        pending_write = Signal()              # a flush sum blocked by a bus write
        pending_data = Signal(REG_WIDTH)
        pending_index = Signal(range(_N))
        do_snapshot, do_clear = Signal(), Signal()
        extra = Signal(range(len(_GAUGES) + len(_UPTIME) + 1))
        extra_values = [*gauge_copy, uptime_copy[:REG_WIDTH], uptime_copy[REG_WIDTH:]]
        extra_addrs = [r.addr for r in (*_GAUGES, *sorted(_UPTIME, key=lambda r: r.part))]
        restore_addr = Signal(range(_DEPTH + 1), init=0x10)

        m.d.comb += bus.busy.eq(1)
        with m.FSM(init="restore"):
            with m.State("restore"):
                # After a reset: writable registers to their reset values, the rest of the map
                # above the identity group and every counter to 0 (identity: memory init).
                with m.If(~bus_write):
                    m.d.comb += [wr.addr.eq(restore_addr), wr.en.eq(1)]
                    with m.Switch(restore_addr):
                        for r in REGISTERS:
                            if r.group != "identity" and init[r.addr]:
                                with m.Case(r.addr):
                                    m.d.comb += wr.data.eq(init[r.addr])
                    m.d.sync += restore_addr.eq(restore_addr + 1)
                    with m.If(restore_addr == _DEPTH - 1):
                        m.next = "flush_read"
            with m.State("flush_read"):
                m.d.comb += bus.busy.eq(0)  # never from take: the bus strobes depend on busy
                with m.If(take):
                    m.d.sync += [do_snapshot.eq(take_snapshot), do_clear.eq(take_clear)]
                    with m.If(pending_write):
                        m.next = "drain"
                    with m.Else():
                        m.d.sync += index.eq(0)
                        m.next = "pass_read"
                with m.Elif(pending_write):
                    with m.If(~bus_write):
                        m.d.comb += [wr.addr.eq(_LIVE_BASE + pending_index), wr.data.eq(pending_data),
                                     wr.en.eq(1)]
                        m.d.sync += pending_write.eq(0)
                with m.Elif(~bus.r_stb):
                    m.d.comb += [rd.addr.eq(_LIVE_BASE + index), rd.en.eq(1), flush_take.eq(1)]
                    m.d.sync += flushed.eq(pre_at)
                    m.next = "flush_write"
            with m.State("flush_write"):
                m.d.comb += bus.busy.eq(0)  # never from take: the bus strobes depend on busy
                total = rd.data + flushed
                with m.If(bus_write):
                    m.d.sync += [pending_write.eq(1), pending_data.eq(total), pending_index.eq(index)]
                with m.Else():
                    m.d.comb += [wr.addr.eq(_LIVE_BASE + index), wr.data.eq(total), wr.en.eq(1)]
                with m.If(index == _N - 1):
                    m.d.sync += index.eq(0)
                with m.Else():
                    m.d.sync += index.eq(index + 1)
                with m.If(take):
                    # This flush took its pre-counter the clock before the snapshot: its sum
                    # is written now (or pending), before the pass reads the counter.
                    m.d.sync += [do_snapshot.eq(take_snapshot), do_clear.eq(take_clear)]
                    m.next = "drain"
                with m.Else():
                    m.next = "flush_read"
            with m.State("drain"):
                with m.If(pending_write):
                    with m.If(~bus_write):
                        m.d.comb += [wr.addr.eq(_LIVE_BASE + pending_index), wr.data.eq(pending_data),
                                     wr.en.eq(1)]
                        m.d.sync += pending_write.eq(0)
                with m.Else():
                    m.d.sync += index.eq(0)
                    m.next = "pass_read"
            # The pass owns the memory: the initiator waits while busy.
            with m.State("pass_read"):
                m.d.comb += [rd.addr.eq(_LIVE_BASE + index), rd.en.eq(1)]
                m.next = "pass_snapshot"
            with m.State("pass_snapshot"):
                with m.If(do_snapshot):
                    m.d.comb += [wr.addr.eq(_COUNTERS[0].addr + index), wr.data.eq(rd.data + copy_at),
                                 wr.en.eq(1)]
                m.next = "pass_clear"
            with m.State("pass_clear"):
                # The pass is also a flush of every counter (the pre-counters were moved out).
                m.d.comb += [wr.addr.eq(_LIVE_BASE + index), wr.en.eq(1)]
                with m.If(~do_clear):
                    m.d.comb += wr.data.eq(rd.data + copy_at)
                with m.If(index == _N - 1):
                    m.d.sync += [index.eq(0), extra.eq(0)]
                    m.next = "pass_extra"
                with m.Else():
                    m.d.sync += index.eq(index + 1)
                    m.next = "pass_read"
            with m.State("pass_extra"):
                with m.Switch(extra):
                    for i, (value, addr) in enumerate(zip(extra_values, extra_addrs)):
                        with m.Case(i):
                            m.d.comb += [wr.addr.eq(addr), wr.data.eq(value), wr.en.eq(do_snapshot)]
                m.d.sync += extra.eq(extra + 1)
                with m.If(extra == len(extra_values) - 1):
                    m.next = "flush_read"
        return m
