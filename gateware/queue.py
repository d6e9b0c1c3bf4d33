"""The execution-request priority queue in gateware, bit-exact to :class:`sigfuse.queue.DecisionQueue`.

Architecture (``docs/queue.md`` has the measurements and the comparison with a register tree
and a pipelined heap): a *shift-register sorted array* of ``capacity`` cells holding only
``(valid, priority, slot)``, from the next entry to pop (cell 0) to the next entry to evict
(cell n-1); the 153-bit decisions live in a ``lib.memory.Memory`` of n + 2 rows indexed by
slot.  There is no free list: the cells always hold n distinct slots -- empty cells at the tail
carry free ones -- and with the slot being inserted and a spare slot that makes n + 2:

* an insert shifts the cells below the new entry down; the tail cell falls off, and its slot --
  free, or the victim's when the queue was full -- becomes the spare;
* a pop shifts the cells up and cell 0's slot goes to the tail as an empty cell, or straight to
  the spare when an insert meets the pop;
* the decision pushed in a clock is written to the spare slot, which nobody reads in that clock;
  the memory is read once per clock at most: the popped, the evicted or the rejected decision.

A push is compared with every cell in the clock it is accepted and inserted in the next, so the
carry chains never sit in front of the cells' load enables (see ``elaborate``).

Ordering rules (the contract, plus what a clock adds):

* highest priority first; among equal priorities, push order (the new entry goes after every
  cell whose priority is >= its own);
* an insert into a full queue evicts cell n-1 (lowest priority, newest among equal lowest) when
  the new priority is strictly greater, else the new entry is rejected;
* **a push accepted in clock t is inserted in clock t+1; a pop acts in the clock it is
  accepted; a pop and an insert in the same clock act as ``pop()`` then ``push()``** on the
  reference model: the pop never returns the entry being inserted, and that insert is never
  dropped (the pop made room).  A pop sees every push accepted two clocks or more before it.

Interface timing:

* ``push`` is always ready (the fusion pipeline never stalls on the queue).
* Every accepted ``pop`` request yields exactly one ``popped`` record, in order, the next clock
  (later only while the consumer stalls); ``popped.payload.empty`` is 1 when the queue was empty
  (the trace prints ``"decision":null``) and ``decision`` is then undefined.  ``pop.ready`` is
  ``~popped.valid | popped.ready``, so back-to-back pops run at one per clock when the consumer
  is ready; a stalled popped record is held in a register while inserts go on.
* ``drop`` reports an evicted or rejected decision two clocks after its push was accepted (one
  after the insert), with :class:`sigfuse.contract.DropReason`.  It has no backpressure (a
  strobe): there is at most one drop per clock, and the counters count them regardless.
* ``occupancy``, ``high_water``, ``evicted`` and ``rejected`` are registers for the stats block
  (drop counters are 32 bits and wrap).  They trail the queue: after the clock edge ending clock
  k they describe the queue after clock k-1's operations.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..contract import PRIORITY_BITS, DropReason
from .layouts import DecisionLayout

__all__ = ["PoppedLayout", "DropLayout", "STATS_COUNTER_BITS", "queue_signature", "PriorityQueue",
           "verilog_ports", "verilog_source"]

#: Width of the evicted/rejected counters (they wrap, like every stats counter of the board).
STATS_COUNTER_BITS = 32

#: What a pop request returns: a decision, or ``empty=1`` when the queue held nothing.
PoppedLayout = data.StructLayout({
    "decision": DecisionLayout,
    "empty": 1,
})

#: A dropped decision and why (EVICTED or REJECTED; STALE drops belong to the fusion pipeline).
DropLayout = data.StructLayout({
    "reason": DropReason,
    "decision": DecisionLayout,
})


def queue_signature(capacity: int) -> wiring.Signature:
    """The ports of a queue of ``capacity`` entries (:class:`PriorityQueue`, and
    :class:`~.queue_serial.SerialQueue`, which the product core can put in its place)."""
    return wiring.Signature({
        "push": In(stream.Signature(DecisionLayout)),
        "pop": In(stream.Signature(0)),
        "popped": Out(stream.Signature(PoppedLayout)),
        "drop": Out(stream.Signature(DropLayout, always_ready=True)),
        "occupancy": Out(range(capacity + 1)),
        "high_water": Out(range(capacity + 1)),
        "evicted": Out(STATS_COUNTER_BITS),
        "rejected": Out(STATS_COUNTER_BITS),
    })


class PriorityQueue(wiring.Component):
    """Bounded priority queue of decisions: one push and one pop per clock.

    :param capacity: number of entries (>= 32 on iCE40UP5K, >= 256 on ECP5-85F).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"queue capacity must be at least 2, not {capacity}")
        self.capacity = capacity
        self.state = _QueueState(capacity)
        super().__init__(queue_signature(capacity))

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.capacity
        st = self.state
        valid, prio_n, slot = st.valid, st.prio_n, st.slot
        slot_shape = range(n + 2)

        # The queue never reads a slot in the clock it writes it, so the read-during-write
        # behaviour is irrelevant.  Amaranth's synchronous read port always asks for read-old,
        # which Yosys emulates on iCE40 with a comparator, a 153-bit register and muxes; an
        # asynchronous port followed by a plain register is merged into the block RAM instead,
        # and `no_rw_check` lets that merge leave the collision case undefined.
        m.submodules.payloads = payloads = Memory(shape=DecisionLayout, depth=n + 2, init=[],
                                                attrs={"no_rw_check": 1})
        write = payloads.write_port()
        read_async = payloads.read_port(domain="comb")
        read_addr = Signal(slot_shape)
        read_data = Signal(DecisionLayout, reset_less=True)
        m.d.comb += read_async.addr.eq(read_addr)
        m.d.sync += read_data.eq(read_async.data)

        # A push is accepted in one clock (stage 1: compare) and inserted in the next (stage 2),
        # together with the pop accepted in that clock, pop first.
        m.d.comb += self.push.ready.eq(1)
        insert, insert_prio_n = st.insert, st.insert_prio_n
        m.d.sync += [
            insert.eq(self.push.valid),
            insert_prio_n.eq(~self.push.payload.priority),
        ]

        # pop_fire reaches every cell and has no time to spare, so it is one LUT of its own
        # inputs: `output_busy` is a private copy of popped.valid (same next-state function,
        # its own feedback, so Yosys keeps it apart), and no other logic shares its LUT --
        # computed from pop.ready or from held/pending flags, ABC would put it behind a LUT
        # that also drives them, and the placer far away next to their other loads.
        pop_fire, output_busy = st.pop_fire, st.output_busy
        m.d.comb += [
            self.pop.ready.eq(~self.popped.valid | self.popped.ready),
            pop_fire.eq(self.pop.valid & (~output_busy | self.popped.ready)),
        ]
        m.d.sync += output_busy.eq((output_busy & ~self.popped.ready) | pop_fire)

        # after[i]: the entry being inserted belongs in front of cell i -- the cell is empty or
        # of strictly lower priority; an equal priority stays ahead, FIFO among equals.
        # Monotone along the array.  It is prepared in stage 1, while the entry is still on the
        # push input, against the cells as they will be after this clock: each cell keeps its
        # entry or takes a neighbour's or the one inserted now, so comparing the push with
        # every current cell and with the inserted entry, then selecting the way each cell
        # loads, gives the comparison with its next content.  The selection is split over the
        # clock edge -- one LUT level after the carry chains in stage 1 (two registered terms),
        # their OR in stage 2 where it merges into the load logic -- so that neither the carry
        # chains nor a selection tree sit in front of the cells' load enables.
        #
        # An empty cell holds prio_n = 0, so its sum never carries; adding ~valid at bit 16
        # makes bit 16 of the sum "carry or empty" -- computed by the LUT that already takes
        # the carry out of the chain, not by one more LUT level.
        def goes_before(cell_valid, cell_priority_n, name):
            total = Signal(PRIORITY_BITS + 1, name=f"{name}_compare")
            m.d.comb += total.eq(self.push.payload.priority + cell_priority_n
                                 + Cat(Const(0, PRIORITY_BITS), ~cell_valid))
            return total[PRIORITY_BITS]

        compare = [goes_before(valid[i], prio_n[i], f"cell{i}") for i in range(n)]
        compare_inserted = goes_before(Const(1), insert_prio_n, "inserted")
        kept_or_new, shifted, after = st.kept_or_new, st.shifted, st.after
        for i in range(n):
            m.d.comb += after[i].eq(kept_or_new[i] | shifted[i])

        full = valid[n - 1]
        evict, reject, pop_hit = st.evict, st.reject, st.pop_hit
        m.d.comb += [
            evict.eq(insert & ~pop_fire & full & after[n - 1]),
            reject.eq(insert & ~pop_fire & full & ~after[n - 1]),
            pop_hit.eq(pop_fire & valid[0]),
        ]

        # Slot bookkeeping: n + 2 slots, n in the cells (empty cells hold free ones), the one
        # being inserted (`insert_slot`, written last clock) and `spare`, into which a decision
        # pushed in this clock is written.  The slot leaving the array -- the popped one when a
        # pop and an insert meet, else the tail's (free, or the victim's) when an insert pushes
        # it out, else the unused or rejected insert slot -- becomes the next spare.
        spare, insert_slot = st.spare, st.insert_slot
        # pop_fire is the latest signal here (it depends on the consumer's ready): select by it
        # last.
        leaving_if_pop = Mux(insert, slot[0], insert_slot)
        tail_leaves = insert & (~full | after[n - 1])
        leaving_if_no_pop = Mux(tail_leaves, slot[n - 1], insert_slot)
        m.d.sync += [
            insert_slot.eq(spare),
            spare.eq(Mux(pop_fire, leaving_if_pop, leaving_if_no_pop)),
        ]

        # One read per clock: the popped, the evicted or the rejected decision (a pop makes
        # room, so it never comes with an eviction or rejection).  The write goes to a slot
        # nobody reads in this clock.
        m.d.comb += [
            read_addr.eq(Mux(pop_fire, slot[0], Mux(after[n - 1], slot[n - 1], insert_slot))),
            write.addr.eq(spare),
            write.data.eq(self.push.payload),
            write.en.eq(self.push.valid),
        ]

        # Each cell loads from one of three sources or keeps its value (the flip-flop enable):
        # the new entry, the cell above (insert shifts down) or the cell below (pop shifts up).
        # Written out as enable + two 2:1 muxes so that it maps to two LUT4s per bit.
        #   pop and insert: cell 0 leaves; cells below the new entry keep, the one just above
        #                   it takes it, the ones further up take their lower neighbour;
        #   pop alone:      every cell takes its lower neighbour; the last takes (empty, slot 0);
        #   insert alone:   cells below the new entry take their upper neighbour (the last one
        #                   falls off: it was free or is the victim), the first of them takes it.
        #
        # Enables, selects and loads are statements under conditions (If/Elif), not Mux()
        # expressions.  Synthesis makes logic of the same size of both (2117 LUT4s on iCE40 for
        # 32 entries, against 2116), but Verilator turns conditions into branches while it
        # evaluates every operand of a Mux in every clock: in a clock that neither pops nor
        # inserts -- nearly all of them -- a cell now costs a few instructions.  That made the
        # virtual ULX3S board (256 cells) about 4x faster (benchmarks/README.md).
        new = (Const(1), insert_prio_n, insert_slot)
        for i in range(n):
            above_after = after[i - 1] if i > 0 else Const(0)
            below_after = after[i + 1] if i < n - 1 else Const(1)
            enable = Signal(name=f"cell{i}_load")
            load_new = Signal(name=f"cell{i}_load_new")
            # One condition tree for both: two trees cost the simulator 15 % and gain ~2 MHz on
            # the iCE40 queue alone (docs/queue.md).
            with m.If(pop_fire):
                with m.If(insert):
                    m.d.comb += [enable.eq(~after[i] if i > 0 else 1), load_new.eq(below_after)]
                with m.Else():
                    m.d.comb += enable.eq(1)
            with m.Elif(insert):
                m.d.comb += [enable.eq(after[i]), load_new.eq(~above_after)]
            if i < n - 1:
                below = (valid[i + 1], prio_n[i + 1], slot[i + 1])
            else:
                below = (Const(0), Const(0, PRIORITY_BITS), slot[0])  # the popped slot, now free
            above = (valid[i - 1], prio_n[i - 1], slot[i - 1]) if i > 0 else below
            cell = (valid[i], prio_n[i], slot[i])
            with m.If(enable):
                with m.If(load_new):
                    m.d.sync += [target.eq(source) for target, source in zip(cell, new)]
                with m.Elif(pop_fire):
                    m.d.sync += [target.eq(source) for target, source in zip(cell, below)]
                with m.Else():
                    m.d.sync += [target.eq(source) for target, source in zip(cell, above)]

            # The same choice applied to the comparisons.  The selects are ready long before
            # the carry chains' outputs, so each term is one LUT4 of (two selects, two
            # comparisons) after the chains.
            from_below = compare[i + 1] if i < n - 1 else Const(1)   # the empty tail
            from_above = compare[i - 1] if i > 0 else Const(0)       # cell 0 never takes it
            # They only matter in the clock after a push, so they load only while one is on the
            # input (a flip-flop enable; for a simulator, one branch for the whole array).
            with m.If(self.push.valid):
                with m.If(enable):
                    with m.If(load_new):
                        m.d.sync += [kept_or_new[i].eq(compare_inserted), shifted[i].eq(0)]
                    with m.Elif(pop_fire):
                        m.d.sync += [kept_or_new[i].eq(0), shifted[i].eq(from_below)]
                    with m.Else():
                        m.d.sync += [kept_or_new[i].eq(0), shifted[i].eq(from_above)]
                with m.Else():
                    m.d.sync += [kept_or_new[i].eq(compare[i]), shifted[i].eq(0)]

        # Popped record: straight from the read port the clock after the pop, or from the hold
        # register while the consumer stalls (inserts may evict meanwhile and reuse the port).
        pop_pending, show_held = st.pop_pending, st.show_held
        pop_pending_empty = Signal()
        held = Signal(PoppedLayout)
        fresh = Signal(PoppedLayout)
        m.d.comb += [
            fresh.decision.eq(read_data),
            fresh.empty.eq(pop_pending_empty),
            self.popped.payload.eq(Mux(show_held, held, fresh)),
        ]
        m.d.sync += [
            pop_pending.eq(pop_fire),
            pop_pending_empty.eq(~valid[0]),
            show_held.eq(self.popped.valid & ~self.popped.ready),
            # valid next clock: a response still waiting, or the pop accepted now.
            self.popped.valid.eq((self.popped.valid & ~self.popped.ready) | pop_fire),
        ]
        with m.If(pop_pending & ~self.popped.ready):
            m.d.sync += held.eq(fresh)

        # Drop report, the clock after the insert: the victim or the rejected entry comes out
        # of the read port.
        evict_pending = Signal()
        reject_pending = Signal()
        m.d.sync += [
            evict_pending.eq(evict),
            reject_pending.eq(reject),
        ]
        m.d.comb += [
            self.drop.valid.eq(evict_pending | reject_pending),
            self.drop.payload.decision.eq(read_data),
            self.drop.payload.reason.eq(Mux(evict_pending, DropReason.EVICTED,
                                            DropReason.REJECTED)),
        ]

        # Stats, from the registered insert/pop outcomes: off the cells' critical path, so they
        # trail the insert by two clocks (the drop counters move one clock after the report).
        grew = Signal()
        shrank = Signal()
        m.d.sync += [
            grew.eq(insert & ~reject & ~evict),
            shrank.eq(pop_hit),
        ]
        m.d.sync += self.occupancy.eq(self.occupancy + grew - shrank)
        # Occupancy moves by one at most, so the high-water mark rises exactly when occupancy
        # grows from it: no adder-then-comparator chain.
        with m.If(grew & ~shrank & (self.occupancy == self.high_water)):
            m.d.sync += self.high_water.eq(self.high_water + 1)
        with m.If(evict_pending):
            m.d.sync += self.evicted.eq(self.evicted + 1)
        with m.If(reject_pending):
            m.d.sync += self.rejected.eq(self.rejected + 1)

        return m


class _QueueState:
    """The queue's registers and key internal signals, created with the component so that a
    formal harness can state invariants over them (see ``sigfuse.gateware.formal``)."""

    def __init__(self, n: int) -> None:
        slot_shape = range(n + 2)
        # The sorted array, cell 0 first.  Cells are separate signals, not a Memory: every
        # cell is compared and shifted in every clock.  A cell keeps its priority inverted
        # (`priority_n`), so that "push priority > cell priority" is the carry out of push +
        # priority_n: one carry chain fed straight from flip-flops and the push input, no LUT
        # per bit on iCE40 (a plain ``>`` costs ~30 LUT4s per cell).  An empty cell holds 0:
        # every flip-flop of the array powers up and resets to 0 (iCE40 flip-flops power up at
        # 0; any other initial value costs an inverter LUT per bit).
        #
        # Each cell is one signal (a struct) with its two registered comparison terms: the
        # hardware is the same flip-flops, but a simulator keeps and copies one word per cell
        # instead of five, which is most of what Verilator does with an idle array.
        self.cell_layout = data.StructLayout({
            "valid": 1,
            "priority_n": PRIORITY_BITS,
            "slot": slot_shape,
            # after = after_kept_or_new | after_shifted: the inserted entry goes in front.
            "after_kept_or_new": 1,
            "after_shifted": 1,
        })
        self.cells = [Signal(self.cell_layout, name=f"cell{i}", init={"slot": i})
                      for i in range(n)]
        self.valid = [cell.valid for cell in self.cells]
        self.prio_n = [cell.priority_n for cell in self.cells]
        self.slot = [cell.slot for cell in self.cells]
        # The entry accepted last clock, inserted in this one, and its payload slot.
        self.insert = Signal()
        self.insert_prio_n = Signal(PRIORITY_BITS)
        self.insert_slot = Signal(slot_shape, init=n)
        # The free slot the payload pushed in this clock is written to.
        self.spare = Signal(slot_shape, init=n + 1)
        self.kept_or_new = [cell.after_kept_or_new for cell in self.cells]
        self.shifted = [cell.after_shifted for cell in self.cells]
        self.after = [Signal(name=f"cell{i}_after_insert") for i in range(n)]
        # This clock's outcomes.
        self.pop_fire = Signal()
        self.pop_hit = Signal()
        self.evict = Signal()
        self.reject = Signal()
        # Output bookkeeping.
        self.output_busy = Signal()
        self.pop_pending = Signal()
        self.show_held = Signal()


def verilog_ports(component: wiring.Component) -> list[Signal]:
    """The component's port signals for ``verilog.convert``: constant members (an always-ready
    stream's ``ready``) and zero-width payloads (the pop request) are not ports."""
    ports = []
    for _path, _member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if isinstance(value, Signal) and len(value) > 0:
            ports.append(value)
    return ports


def verilog_source(capacity: int, name: str = "priority_queue") -> str:
    """Verilog of a :class:`PriorityQueue` of ``capacity`` entries (for Verilator and cocotb)."""
    from amaranth.back import verilog
    queue = PriorityQueue(capacity)
    return verilog.convert(queue, name=name, ports=verilog_ports(queue), emit_src=False)
