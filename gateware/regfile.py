"""The register file, generated from :data:`sigfuse.regmap.REGISTERS`.

Nothing about a register is written here: addresses, widths, access, reset values and maxima
come from the map, so the gateware cannot drift from ``regs.json`` or ``sigfuse_regs.h``.

Ports:

* ``bus`` (:data:`RegBusSignature`, driven by the dispatcher): ``addr`` and ``w_data`` are
  decoded into ``exists``, ``writable`` and ``value_ok`` (so a whole command can be validated
  before any of it runs; with ``bus_stage`` they are registered, valid a clock later);
  ``w_stb`` writes, ``r_stb`` reads (``r_data`` is valid two clocks after ``r_stb``, and
  without ``bus_stage`` already one); ``commit`` ends a REG_WRITE frame; ``snapshot`` takes a
  stats snapshot.  While ``busy`` the initiator issues none of
  ``r_stb``, ``w_stb``, ``snapshot``.
* ``config`` (a stream of :data:`FusionConfigLayout`, to the fusion pipeline's ``config``):
  after a ``commit`` that follows a write to any fusion register, ``valid`` rises with the whole
  parameter set and stays until the pipeline takes it -- so the writes of one frame take effect
  together, between two signals.  ``params_pending`` tells the dispatcher not to write the
  registers while a set is on its way.  ``params`` always shows the registers.
* ``events`` (strobes, one per counter of the map) and ``gauges`` (values sampled at a snapshot).
* ``param_read`` (only with ``array_port``, :data:`~.fusion_params.ParamReadSignature`): the
  weights and boosts live in a block RAM instead of flip-flops (256 of them, each an iCE40 logic
  cell, since nothing but the bus feeds them), read by index; ``params`` and ``config`` then
  carry zeros for them.  For the serial fusion engine, which reads one word per clock anyway.

Storage (what keeps this small on an iCE40, where a 50-way 32-bit read multiplexer and 20
32-bit counters with their snapshot copies would cost ~1800 LUTs): one 256 x 32 memory (two
block RAMs, whose upper half is the reset image) holds every readable value -- the identity
constants (memory initial values), the writable registers (written through; the fusion
registers also live in flip-flops, which feed the pipeline), the stats registers -- and, above
the map, the live counters.  Each counter event goes into an 8-bit *pre-counter* in flip-flops.

The counters are kept in **rounds**.  A round starts by moving every pre-counter at once into
a chain of 8-bit registers (the pre-counters go on counting from 0); then, counter by counter,
it reads the live counter, writes back ``live + chain[0]`` and shifts the chain down (a chain
flip-flop needs one LUT, load or shift, and shares its logic cell with it, where indexing the
pre-counters took a 20:1 multiplexer).  A round starts when a pre-counter reaches
:data:`FLUSH_AT`, and takes 2 x 20 + 1 clocks: none can overflow.  The bus is busy meanwhile.

A **snapshot** starts a round at once (the bus only writes while no round runs): its start is
the snapshot's instant.  That round also copies the gauges and the 64-bit uptime in that clock,
and writes ``live + chain[0]`` into each counter's stats register as well, then the gauges and
the uptime: the values are those of that one clock, so a host reads a coherent set however long
its reads take.  A **clear** makes the round write 0 into the live counters instead; snapshot
and clear in one write lose nothing.  Events in the snapshot's clock count after it.

After a reset a pass restores the memory from the reset image (writable registers to their
reset values, counters and stats to 0).
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract import SOURCE_SLOTS, FusionParams
from ..regmap import (ADDR_WIDTH, IDENTITY_NAMES, REG_WIDTH, REGISTERS, STATS_CONTROL_CLEAR,
                      STATS_CONTROL_SNAPSHOT, Access, Register, StatKind, param_registers,
                      stats_registers)
from .fusion_params import ARRAY_FIELDS, ARRAY_WORDS, ParamReadSignature, array_index

__all__ = ["RegBusSignature", "FusionConfigLayout", "StatsEventsLayout", "GaugesLayout",
           "RegisterFile", "config_value", "PRE_COUNTER_BITS", "FLUSH_AT"]

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

#: Width of the pre-counters: events a counter may take between the starts of two rounds.
PRE_COUNTER_BITS = 8
_DEPTH = 128
#: Live counters live above the register map, one word each.
_LIVE_BASE = 0x60
#: The restore pass rewrites everything above the identity registers.
_RESTORE_FROM = 0x10
assert all(r.addr < _RESTORE_FROM for r in REGISTERS if r.group == "identity")
assert all(r.addr >= _RESTORE_FROM for r in REGISTERS if r.group != "identity")
_N = len(_COUNTERS)
#: A round starts once a pre-counter holds this many events: with a round's 3 x 20 + 5 clocks
#: until it has moved every pre-counter, none can reach 2 ** PRE_COUNTER_BITS.
FLUSH_AT = 1 << (PRE_COUNTER_BITS - 2)
assert FLUSH_AT + 3 * _N + 5 < 1 << PRE_COUNTER_BITS
assert max(r.addr for r in REGISTERS) < _LIVE_BASE and _LIVE_BASE + _N <= _DEPTH
# A snapshot round writes counter i to the i-th stats register: counters come first, in order.
assert [r.addr for r in _COUNTERS] == list(range(_COUNTERS[0].addr, _COUNTERS[0].addr + _N))


def config_value(params: FusionParams) -> dict:
    """``params`` as a value of :data:`FusionConfigLayout` (for ``ctx.set`` and comparisons)."""
    return {f.name: list(getattr(params, f.name)) if isinstance(getattr(params, f.name), tuple)
            else getattr(params, f.name) for f in dataclasses.fields(FusionParams)}


class RegisterFile(wiring.Component):
    """Registers of :data:`sigfuse.regmap.REGISTERS` (see the module docstring).

    :param params: reset values of the fusion registers (default: the contract defaults).
    :param build_id, clk_hz, pair_slots, queue_capacity, uart_divisor: the identity registers.
    :param array_port: keep the weights and boosts in a block RAM read through ``param_read``
        (see the module docstring).
    :param bus_stage: take the bus's strobes into registers and carry them out a clock later,
        so that no path runs from the initiator's state through the decoding into the
        registers, the memory and the counters (the iCE40's critical path otherwise).  The
        initiator must then hold ``addr`` and ``w_data`` through the clock after a strobe;
        ``exists``, ``writable`` and ``value_ok`` are registered too (valid in the clock after
        ``addr`` and ``w_data``), and ``r_data`` is valid two clocks after ``r_stb``.
    """

    def __init__(self, *, params: FusionParams | None = None, build_id: int = 0, clk_hz: int = 0,
                 pair_slots: int = 0, queue_capacity: int = 0, uart_divisor: int = 0,
                 array_port: bool = False, bus_stage: bool = False) -> None:
        self.reset_params = params or FusionParams()
        self.array_port = array_port
        self.bus_stage = bus_stage
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
        extra = {"param_read": In(ParamReadSignature)} if array_port else {}
        super().__init__({
            **extra,
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
        # The upper half holds the reset image the restore pass copies from: a block RAM is
        # 256 words deep anyway, and a multiplexer of the reset values cost ~80 LUTs.
        init = [0] * (2 * _DEPTH)
        for r in REGISTERS:
            init[r.addr] = self._reset_value(r)
            if r.addr >= _RESTORE_FROM:
                init[_DEPTH + r.addr] = self._reset_value(r)
        m.submodules.storage = storage = Memory(shape=REG_WIDTH, depth=2 * _DEPTH, init=init)
        rd = storage.read_port()
        wr = storage.write_port()
        # A read port's `en` is 1 unless driven: reads happen only where asked for, so that
        # rd.data holds a value until the next read (the passes rely on it).
        m.d.comb += [rd.en.eq(0), bus.r_data.eq(rd.data)]

        # --- decode and the fusion registers (flip-flops, loaded from the bus) ---------------
        # With `array_port`, the arrays are in `arrays` instead (index: array_index).
        in_arrays = {r.name: array_index(*r.param) for r in param_registers()
                     if self.array_port and r.param[0] in ARRAY_FIELDS}
        params = {r.name: Signal(r.width, name=f"reg_{r.name}", init=self._reset_value(r))
                  for r in param_registers() if r.name not in in_arrays}
        for r in param_registers():
            if r.name in params:
                field, index = r.param
                target = getattr(self.params, field)
                m.d.comb += (target if index is None else target[index]).eq(params[r.name])
        m.d.comb += self.config.payload.eq(self.params)
        if self.array_port:
            array_init = [0] * ARRAY_WORDS
            for r in param_registers():
                if r.name in in_arrays:
                    array_init[in_arrays[r.name]] = self._reset_value(r)
            # Sixteen words: Yosys would make flip-flops of them unless told otherwise.
            m.submodules.arrays = arrays = Memory(shape=len(self.param_read.data), depth=ARRAY_WORDS,
                                                  init=array_init, attrs={"ram_style": "block"})
            arrays_rd = arrays.read_port()
            arrays_wr = arrays.write_port()
            m.d.comb += [arrays_rd.addr.eq(self.param_read.index),
                         self.param_read.data.eq(arrays_rd.data)]

        # The checks: combinational, or (`bus_stage`) registered, valid a clock after addr and
        # w_data, so that the initiator's decisions start from flip-flops.
        exists, writable, value_ok = Signal(), Signal(), Signal()
        with m.Switch(bus.addr):
            for r in REGISTERS:
                with m.Case(r.addr):
                    m.d.comb += [exists.eq(1), writable.eq(int(r.writable)),
                                 value_ok.eq(bus.w_data <= r.max_value)]
        checks = m.d.sync if self.bus_stage else m.d.comb
        checks += [bus.exists.eq(exists), bus.writable.eq(writable), bus.value_ok.eq(value_ok)]
        # The accesses: as they come, or (`bus_stage`) a clock later from registers.  The
        # initiator checked the access (exists, writable, value_ok) before it strobes; the
        # register file checks again, since a refused write must change nothing.
        write_ok = bus.w_stb & value_ok & writable
        addr, w_data = bus.addr, bus.w_data
        if self.bus_stage:
            # The initiator holds addr and w_data through the clock after a strobe.
            staged = [Signal(name=f"staged_{name}") for name in ("write", "read", "snapshot", "commit")]
            m.d.sync += Cat(*staged).eq(Cat(write_ok, bus.r_stb, bus.snapshot, bus.commit))
            write_ok, r_stb, snapshot, commit = staged
        else:
            r_stb, snapshot, commit = bus.r_stb, bus.snapshot, bus.commit
        bus_write = Signal()          # a bus write to the memory in this clock
        take_snapshot, take_clear = Signal(), Signal()
        dirty = Signal()
        with m.If(write_ok):
            with m.Switch(addr):
                for r in REGISTERS:
                    with m.Case(r.addr):
                        if r.access == Access.RW:
                            m.d.comb += bus_write.eq(1)
                        if r.name in params:
                            m.d.sync += [params[r.name].eq(w_data), dirty.eq(1)]
                        if r.name in in_arrays:
                            m.d.comb += [arrays_wr.addr.eq(in_arrays[r.name]),
                                         arrays_wr.data.eq(w_data), arrays_wr.en.eq(1)]
                            m.d.sync += dirty.eq(1)
                        if r.name == "stats_control":
                            m.d.comb += [take_snapshot.eq((w_data & STATS_CONTROL_SNAPSHOT).any()),
                                         take_clear.eq((w_data & STATS_CONTROL_CLEAR).any())]
        with m.If(snapshot):
            m.d.comb += take_snapshot.eq(1)
        take = take_snapshot | take_clear

        with m.If(self.config.ready):
            m.d.sync += self.config.valid.eq(0)
        with m.If(commit & dirty):
            m.d.sync += [self.config.valid.eq(1), dirty.eq(0)]
        m.d.comb += bus.params_pending.eq(self.config.valid)

        # --- counters: pre-counters and the round's chain -----------------------------------
        # pre[i] counts counter i's events since the current round began; at the start of a
        # round every pre-counter moves into the chain at once, and the round adds chain[0]
        # into live counter 0, 1, ... shifting the chain down after each: each chain flip-flop
        # takes one LUT (load or shift) and shares its logic cell with it, where indexing the
        # pre-counters and their snapshot copies took two 20:1 multiplexers and 160 cells.
        events = [getattr(self.events, r.name) for r in _COUNTERS]
        pre = [Signal(PRE_COUNTER_BITS, name=f"pre_{r.name}") for r in _COUNTERS]
        chain = [Signal(PRE_COUNTER_BITS, name=f"chain_{r.name}") for r in _COUNTERS]
        start_round, shift = Signal(), Signal()
        for i, (p, e) in enumerate(zip(pre, events)):
            with m.If(start_round):
                m.d.sync += [p.eq(e), chain[i].eq(p)]
            with m.Else():
                m.d.sync += p.eq(p + e)
                with m.If(shift):
                    m.d.sync += chain[i].eq(chain[i + 1] if i + 1 < _N else 0)
        uptime = Signal(2 * REG_WIDTH)
        m.d.sync += uptime.eq(uptime + 1)
        uptime_copy = Signal(2 * REG_WIDTH)
        gauge_copy = [Signal(REG_WIDTH, name=f"copy_{r.name}") for r in _GAUGES]

        # A round starts when a pre-counter has reached FLUSH_AT, or at a snapshot or clear:
        # its start is then the snapshot's instant, and the round also writes the stats
        # registers (or zeros).  The bus is busy during a round.
        do_snapshot, do_clear = Signal(), Signal()
        index = Signal(range(_N))
        extra = Signal(range(len(_GAUGES) + len(_UPTIME) + 1))
        extra_values = [*gauge_copy, uptime_copy[:REG_WIDTH], uptime_copy[REG_WIDTH:]]
        extra_addrs = [r.addr for r in (*_GAUGES, *sorted(_UPTIME, key=lambda r: r.part))]
        restore_addr = Signal(range(_DEPTH + 1), init=_RESTORE_FROM)
        restore_read = Signal()     # rd.data holds the reset image of restore_addr
        # One adder serves the restore pass (chain[0] is 0 until the first round), the rounds
        # and the snapshot: the word read last plus the chain's head.
        total = rd.data + chain[0]
        full = Cat(p[FLUSH_AT.bit_length() - 1:] for p in pre).any()

        # --- memory ports: the bus's while idle, the rounds' (and the restore's) while busy ---
        with m.If(bus_write):
            m.d.comb += [wr.addr.eq(addr), wr.data.eq(w_data), wr.en.eq(1)]
        with m.If(r_stb):
            m.d.comb += [rd.addr.eq(addr), rd.en.eq(1)]

        m.d.comb += bus.busy.eq(1)
        with m.FSM(init="restore"):
            with m.State("restore"):
                # After a reset: writable registers to their reset values, the rest of the map
                # above the identity group and every counter to 0 (identity: memory init).  A
                # word takes two clocks: read its reset image, write it.
                with m.If(~restore_read):
                    m.d.comb += [rd.addr.eq(_DEPTH + restore_addr), rd.en.eq(1)]
                    m.d.sync += restore_read.eq(1)
                with m.Else():
                    m.d.comb += [wr.addr.eq(restore_addr), wr.data.eq(total), wr.en.eq(1)]
                    for r in REGISTERS:
                        if r.name in in_arrays:
                            with m.If(restore_addr == r.addr):
                                m.d.comb += [arrays_wr.addr.eq(in_arrays[r.name]),
                                             arrays_wr.data.eq(total), arrays_wr.en.eq(1)]
                    m.d.sync += [restore_addr.eq(restore_addr + 1), restore_read.eq(0)]
                    with m.If(restore_addr == _DEPTH - 1):
                        m.next = "idle"
            with m.State("idle"):
                # Busy as a round is about to start, so that the initiator's read is never
                # overwritten by the round's before it has taken it (two clocks after r_stb).
                # With `bus_stage`, also while a staged snapshot or clear starts one; without,
                # `take` comes straight from the bus, whose strobes depend on busy.
                m.d.comb += bus.busy.eq(full | (take if self.bus_stage else 0))
                m.d.sync += index.eq(0)
                with m.If(take):
                    m.d.comb += start_round.eq(1)
                    m.d.sync += [do_snapshot.eq(take_snapshot), do_clear.eq(take_clear)]
                    with m.If(take_snapshot):
                        m.d.sync += uptime_copy.eq(uptime)
                        m.d.sync += [c.eq(getattr(self.gauges, r.name))
                                     for c, r in zip(gauge_copy, _GAUGES)]
                    m.next = "read"
                with m.Elif(full):
                    m.d.comb += start_round.eq(1)
                    m.next = "read"
            with m.State("read"):
                m.d.comb += [rd.addr.eq(_LIVE_BASE + index), rd.en.eq(1)]
                m.next = "write_live"
            with m.State("write_live"):
                m.d.comb += [wr.addr.eq(_LIVE_BASE + index), wr.en.eq(1)]
                with m.If(~do_clear):
                    m.d.comb += wr.data.eq(total)
                with m.If(do_snapshot):
                    m.next = "write_stats"
                with m.Else():
                    m.d.comb += shift.eq(1)
                    m.d.sync += index.eq(index + 1)
                    m.next = "read"
                    with m.If(index == _N - 1):
                        m.d.sync += do_clear.eq(0)
                        m.next = "idle"
            with m.State("write_stats"):
                m.d.comb += [wr.addr.eq(_COUNTERS[0].addr + index), wr.data.eq(total),
                             wr.en.eq(1), shift.eq(1)]
                m.d.sync += index.eq(index + 1)
                m.next = "read"
                with m.If(index == _N - 1):
                    m.d.sync += [do_clear.eq(0), extra.eq(0)]
                    m.next = "write_extra"
            with m.State("write_extra"):
                with m.Switch(extra):
                    for i, (value, addr) in enumerate(zip(extra_values, extra_addrs)):
                        with m.Case(i):
                            m.d.comb += [wr.addr.eq(addr), wr.data.eq(value), wr.en.eq(1)]
                m.d.sync += extra.eq(extra + 1)
                with m.If(extra == len(extra_values) - 1):
                    m.d.sync += do_snapshot.eq(0)
                    m.next = "idle"
        return m
