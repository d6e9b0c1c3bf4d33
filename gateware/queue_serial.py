"""A small, multi-clock priority queue for the iCE40UP5K, exact to :class:`sigfuse.queue.DecisionQueue`.

:class:`~.queue.PriorityQueue` does a push and a pop in every clock and takes 2,117 LUT4s at 32
entries -- 40 % of the UP5K.  On a board a push or a pop arrives at most every few hundred
clocks (one per UART frame), so :class:`SerialQueue` spends clocks instead of logic: an
operation takes up to ``capacity + 14`` clocks (:func:`op_clocks_max`) and the queue fits in
four block RAMs and a few hundred LUT4s.

Architecture
------------
*A sorted ring in block RAM, payloads by slot.*

* ``order``: a ``lib.memory.Memory`` of ``ring`` entries ``(priority_n, slot)`` -- ``ring`` is
  the capacity rounded up to a power of two (at least 8) so that ring positions wrap for free.
  The ``occupancy`` entries from ``head`` on are the queue in pop order (highest priority first,
  push order among equals); the ring's other positions hold free payload slots.  Priorities are
  stored inverted, so "new priority > entry priority" is the carry out of ``new + entry_n``: a
  bare carry chain from the RAM's output register, no LUT per bit.
* ``payloads``: a ``Memory`` of 32-bit words, a decision being five words (beats) at rows
  ``beat * ring + slot``.  153-bit rows would take ten SB_RAM40_4K (16 bits wide each); 32-bit
  rows take two, and 8 * ring rows are exactly their 256 at 32 entries.
* There are ``ring + 1`` slots: the ring's ``ring`` plus ``spare``, a register naming the one
  free slot outside the ring (slot ``ring``, initially, whose five rows sit in the unused
  ``beat = 5`` rows).  A push always writes its decision into ``spare``, even into a full queue,
  so an eviction reads the victim and a rejection reads the pushed decision back from the same
  RAM, and the output is one register filled from the RAM's read port only.

Operations (each one alone; a new one starts only when the last has finished):

* **pop**: read the head entry's slot, read its five words into the output register, ``head``
  advances.  The popped slot stays where it was, which is now the last ring position: the free
  region's end.  No write.
* **push**: write the decision's five words into ``spare`` while reading the free slot at ring
  position ``occupancy`` (it is overwritten below, so it becomes the next ``spare``) and the
  tail entry (lowest priority, newest among equal lowest).  Then, if the queue is full, either
  *evict* (new priority strictly greater than the tail's: read the victim's words out, its slot
  becomes the next spare, its position the hole) or *reject* (read the pushed words back; the
  ring is untouched).  Otherwise, or after an eviction, *shift*: from the tail upwards, one
  entry per clock, an entry of strictly lower priority moves down one position into the hole
  (read position i, write i + 1); the first entry of greater or equal priority -- or the head --
  stops the shift and the new entry ``(priority, spare)`` takes the hole.  FIFO among equal
  priorities is the "strictly" in both rules, the same as in the reference.

A linear scan of an unsorted array was the alternative: its pop needs a scan too (priority, then
age), so it compares twice as wide and is slow in both directions; the ring pops in O(1) and
compares one 16-bit priority per clock.

Clocks per operation
--------------------
Counted from clock 0, the clock in which the idle queue sees the request (``pop.valid``, or
``push.valid`` with no pop offered), to the clock in which its result is valid:

=========================  =====================  ===============================
operation                  accepted in clock      result valid in clock
=========================  =====================  ===============================
pop, queue empty           0                      1 (``popped``, ``empty=1``)
pop                        0                      7 (``popped``)
push, not full             5                      9 + m, m <= capacity - 1 entries shifted
                                                  (queue idle again, stats updated)
push, rejected             5                      12 (``drop``, REJECTED)
push, evicting             5                      15 + m, m <= capacity - 1 (``drop``, EVICTED)
=========================  =====================  ===============================

(a push: 1 request clock, 5 writing its words, [6 reading the victim's or the rejected words],
1 comparing the first entry, m + 1 shifting and inserting (each clock writes what the one
before compared), 1 booking the insert; a pop: 1, then 6 reading the words), so
:func:`op_clocks_max` = ``capacity + 14`` bounds every operation from the clock it is seen
(and so from its acceptance), when the queue was idle and ``popped`` not stalled then.  A
request that finds the queue busy waits for the operation in progress (at most
``op_clocks_max`` more) and, for a push, for a pop offered at the same time.  The stats
(``occupancy``, ``high_water``, ``evicted``, ``rejected``) change in the clock the result
appears (a push that drops nothing: the clock the queue is idle again) and never show an
operation half done.

Interface and ordering rules (the same ports as :class:`~.queue.PriorityQueue`)
------------------------------------------------------------------------------
* ``push.ready`` and ``pop.ready`` are low while an operation is in progress and while a popped
  record is valid, up to the clock it transfers (the output register serves ``popped`` and
  ``drop``): the next operation is accepted from the clock after.
* A push is accepted (``push.ready`` high) in the last of the five clocks that write its
  decision into the RAM; until then the queue reads ``push.payload`` as it stands, which the
  stream rules keep stable while ``valid`` is high and ``ready`` low.  A source that drops
  ``valid`` before the transfer withdraws the push: nothing changes.
* When a push and a pop are both offered to the idle queue, **the pop goes first** (as in
  ``PriorityQueue``: ``pop()`` then ``push()`` on the reference): it never returns the entry
  offered with it, and frees a place for it.  Pops offered back to back starve a push; on the
  board the dispatcher pops once per few hundred clocks.
* Every accepted pop yields exactly one ``popped`` record, held until ``popped.ready``;
  ``empty=1`` when the queue was empty (``decision`` is then undefined).
* A push's drop report (EVICTED: the victim, or REJECTED: the pushed decision) is a one-clock
  strobe when its operation ends; ``drop`` has no backpressure, as in ``PriorityQueue``.
* Reset: the ring's slot permutation lives in RAM and ``spare`` is not reset, so a reset
  between operations empties the queue consistently; a reset during a shift can lose a slot.
  The board resets only at configuration.

Resources
---------
iCE40UP5K, capacity 32, the queue alone (``synth_ice40``, YoWASP Yosys 0.69) and placed
inside ``benchmarks/synth_queue.py``'s pin harness (nextpnr, target 48 MHz), 2026-11-25::

    .venv/bin/python benchmarks/synth_queue.py ice40 --serial [--seed N]

=====================================  ===========================================================
queue alone (``synth_ice40``)          384 SB_LUT4, 97 SB_CARRY, 315 FF, 4 SB_RAM40_4K
placed with the harness (nextpnr)      885 of 5280 LCs (the harness adds ~180 FF and a ~130-LUT
                                       XOR tree); 153 of the FFs are the output register, fed by
                                       the RAM with no LUT, so they take an LC each
Fmax (nextpnr seeds 1 / 2 / 3)         47.6 / 44.1 / 47.6 MHz
=====================================  ===========================================================

(:class:`~.queue.PriorityQueue` at 32 entries: 2,117 SB_LUT4, 10 SB_RAM40_4K, ~47 MHz.)  The
shift's comparison a clock before its write, the first free position and emptiness in
registers, and acceptance kept out of the RAM's address and the beat counter took it from
42.1-43.0 MHz (391 SB_LUT4, 280 FF, Yosys 0.70); the critical paths are now the state logic,
mostly routing.  Where the LUTs go: ~63 the five-way word select of the pushed
decision, ~64 the two 32-bit drop counters, the rest addressing and control.  ECP5-85F at
256 entries, Yosys only (``synth_ecp5``): 402 LUT4 (+101 PFUMX, 37 L6MUX21), 67 CCU2C,
297 FF, 5 DP16KD; op_clocks_max = 269 clocks.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from ..contract import PRIORITY_BITS, DropReason
from .layouts import DecisionLayout
from .queue import queue_signature

__all__ = ["BEAT_BITS", "BEATS", "SerialQueue", "op_clocks_max", "ring_size"]

#: Width of a payload RAM word: two SB_RAM40_4K side by side (256 x 16 each).
BEAT_BITS = 32
#: Words per decision.
BEATS = -(-DecisionLayout.size // BEAT_BITS)
# Slot `ring` (the initial spare) lives in the unused rows of beat field 5, one word per row.
_SPARE_BEAT_FIELD = BEATS
assert BEATS <= 5, "the spare slot's rows need beat field values above the payload's beats"


def ring_size(capacity: int) -> int:
    """Ring positions for ``capacity`` entries: a power of two (free wrap-around), at least 8
    (the spare slot's five words are addressed by the beat in the ring-position bits)."""
    return max(8, 1 << (capacity - 1).bit_length())


def op_clocks_max(capacity: int) -> int:
    """Worst case, in clocks, from the clock in which an idle queue sees a request to the clock
    in which its result is valid: the drop report, the popped record, or for a push that drops
    nothing the queue idle again with its stats updated.  The evicting push into a full queue
    whose new entry goes to the head: the request clock, ``BEATS`` clocks writing its words,
    ``BEATS + 1`` reading the victim's, the first comparison, ``capacity - 1`` shifts, the
    insert and the clock that books it."""
    return 1 + BEATS + (BEATS + 1) + 1 + capacity + 1


class SerialQueue(wiring.Component):
    """Bounded priority queue of decisions in block RAM, one operation at a time (see the
    module docstring for timing and ordering).

    :param capacity: number of entries (>= 2).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError(f"queue capacity must be at least 2, not {capacity}")
        self.capacity = capacity
        self.ring = ring_size(capacity)
        #: High while an operation is in progress (not a port: the product core reads it for the
        #: dispatcher's settle_on_idle, and testbenches do).
        self.busy = Signal()
        super().__init__(queue_signature(capacity))

    def elaborate(self, platform) -> Module:
        m = Module()
        n, ring = self.capacity, self.ring
        position_bits = ring.bit_length() - 1
        slot_bits = position_bits + 1            # ring + 1 slots

        # Both memories are read through an asynchronous port followed by a plain register:
        # Yosys merges that into the block RAM's read port, where Amaranth's synchronous port
        # would ask for read-old behaviour and get a comparator, a bypass register and muxes
        # (see queue.py).  No clock here reads a row written in the same clock, so `no_rw_check`
        # may leave the collision undefined.
        entry_layout = data.StructLayout({"priority_n": PRIORITY_BITS, "slot": slot_bits})
        m.submodules.order = order = Memory(
            shape=entry_layout, depth=ring, attrs={"no_rw_check": 1},
            init=[{"priority_n": 0, "slot": i} for i in range(ring)])
        order_write = order.write_port()
        order_read = order.read_port(domain="comb")
        # read_pos_next is the RAM address; `entry` then holds order[read_pos].
        read_pos = Signal(position_bits)
        read_pos_next = Signal(position_bits)
        entry = Signal(entry_layout, reset_less=True)
        m.d.comb += [read_pos_next.eq(read_pos), order_read.addr.eq(read_pos_next)]
        m.d.sync += [read_pos.eq(read_pos_next), entry.eq(order_read.data)]

        m.submodules.payloads = payloads = Memory(shape=BEAT_BITS, depth=8 * ring, init=[],
                                                  attrs={"no_rw_check": 1})
        payload_write = payloads.write_port()
        payload_read = payloads.read_port(domain="comb")
        word = Signal(BEAT_BITS, reset_less=True)
        m.d.sync += word.eq(payload_read.data)
        beat = Signal(range(BEATS + 1))

        def row(slot):
            # Slots below `ring`: row beat * ring + slot.  Slot `ring`: row 5 * ring + beat.
            outside = slot[position_bits]
            return Cat(Mux(outside, beat, slot[:position_bits]),
                       Mux(outside, _SPARE_BEAT_FIELD, beat))

        count = self.occupancy
        head = Signal(position_bits)
        # head + count, the first free position, kept rather than added in front of the RAM's
        # address (21 ns): a pop moves head up and count down, so only an insert changes it.
        first_free = Signal(position_bits)
        # count == 0, kept for the same reason (the acceptance's path).
        empty = Signal(init=1)
        # Not reset: the ring's slots live in RAM, and after a reset the spare must still be
        # the one slot they lack.
        spare = Signal(slot_bits, init=ring, reset_less=True)
        next_spare = Signal(slot_bits, reset_less=True)
        new_priority = Signal(PRIORITY_BITS)
        evicting = Signal()

        # new_priority > entry's priority: the carry out of new + ~entry.
        total = Signal(PRIORITY_BITS + 1)
        m.d.comb += total.eq(new_priority + entry.priority_n)
        greater = total[PRIORITY_BITS]
        full = count == n
        hole = Signal(position_bits)             # the free position below read_pos
        m.d.comb += hole.eq(read_pos + 1)

        # The output register: five words filled from the read port one by one (a flip-flop
        # enable per word, no mux), shared by popped and drop.
        words = [Signal(BEAT_BITS, name=f"out_word{k}", reset_less=True) for k in range(BEATS)]
        out_decision = Cat(*words)[:DecisionLayout.size]
        popped_empty = Signal()
        drop_reason = Signal(DropReason)
        m.d.comb += [
            self.popped.payload.decision.eq(out_decision),
            self.popped.payload.empty.eq(popped_empty),
            self.drop.payload.decision.eq(out_decision),
            self.drop.payload.reason.eq(drop_reason),
        ]
        reading = Signal()                       # word k of a read arrives at beat k + 1
        for k in range(BEATS):
            with m.If(reading & (beat == k + 1)):
                m.d.sync += words[k].eq(word)

        # A new operation waits until the last popped record has gone, not for the clock it
        # goes in: ``popped.ready`` then reaches no state logic (it was 7 LUT levels into the
        # state register, 43 MHz), and a pop costs one clock more only when its consumer
        # answers the previous one in the clock it asks.
        output_free = ~self.popped.valid
        with m.If(self.popped.ready):
            m.d.sync += self.popped.valid.eq(0)
        m.d.sync += self.drop.valid.eq(0)

        pushed_words = Cat(self.push.payload.as_value(),
                           Const(0, BEATS * BEAT_BITS - DecisionLayout.size))
        m.d.comb += payload_write.addr.eq(row(spare))

        with m.Switch(beat):
            for k in range(BEATS):
                with m.Case(k):
                    m.d.comb += payload_write.data.eq(pushed_words[k * BEAT_BITS:(k + 1) * BEAT_BITS])

        # The shift is two stages: a clock compares the entry read (into `move`), the next
        # writes it or the new entry, while the clock's own comparison goes on with the
        # entry below.  Comparing and writing in one clock put the RAM's output, the carry
        # chain, the multiplexer and the state logic in one path (44 MHz).
        move = Signal()
        moving_entry = Signal(entry_layout, reset_less=True)
        write_pos = Signal(position_bits, reset_less=True)
        # PUSH_WRITE's evict-or-reject choice too: the tail is in `entry` from its beat 1.
        tail_greater = Signal()
        m.d.sync += [
            tail_greater.eq(greater),
            # entry = order[read_pos], unless the hole has reached the head.  An entry of
            # strictly lower priority moves into the hole; anything else stops the shift
            # and the new entry takes the hole (after every equal priority: FIFO).
            move.eq((hole != head) & greater),
            moving_entry.eq(entry),
            write_pos.eq(hole),
        ]

        with m.FSM():
            with m.State("IDLE"):
                # Read what a pop or else a push would read first, whether or not one starts:
                # the acceptance (popped.ready, the occupancy) stays out of the RAM's address.
                m.d.comb += [self.pop.ready.eq(output_free),
                             read_pos_next.eq(Mux(self.pop.valid, head, first_free))]
                # Every operation starts at beat 0: cleared whether or not one starts, so the
                # acceptance drives no enable.
                m.d.sync += beat.eq(0)
                with m.If(self.pop.valid & output_free):
                    with m.If(empty):
                        m.d.sync += [self.popped.valid.eq(1), popped_empty.eq(1)]
                    with m.Else():
                        m.next = "POP_READ"
                with m.Elif(self.push.valid & output_free):
                    m.d.sync += new_priority.eq(self.push.payload.priority)
                    m.next = "PUSH_WRITE"

            with m.State("POP_READ"):
                m.d.comb += [self.busy.eq(1), reading.eq(1),
                             payload_read.addr.eq(row(entry.slot))]
                m.d.sync += beat.eq(beat + 1)
                with m.If(beat == BEATS):
                    m.d.sync += [self.popped.valid.eq(1), popped_empty.eq(0),
                                 head.eq(head + 1), count.eq(count - 1),
                                 empty.eq(count == 1)]
                    m.next = "IDLE"

            with m.State("PUSH_WRITE"):
                m.d.comb += [self.busy.eq(1), payload_write.en.eq(1),
                             self.push.ready.eq(beat == BEATS - 1)]
                m.d.sync += beat.eq(beat + 1)
                with m.If(~self.push.valid):
                    m.next = "IDLE"                  # withdrawn: the ring is untouched
                with m.Elif(beat == 0):
                    # entry = the first free position's: overwritten by the shift, so it
                    # becomes the next spare.  Then read the tail.
                    m.d.comb += read_pos_next.eq(read_pos - 1)
                    m.d.sync += next_spare.eq(entry.slot)
                with m.Elif(beat == BEATS - 1):
                    m.d.sync += beat.eq(0)
                    with m.If(~full):
                        m.next = "SHIFT_FIRST"
                    with m.Elif(tail_greater):
                        m.next = "EVICT_READ"
                    with m.Else():
                        m.next = "REJECT_READ"

            with m.State("EVICT_READ"):
                # entry = the tail, the victim: its words go out, its slot is the next spare,
                # its position the hole.
                m.d.comb += [self.busy.eq(1), reading.eq(1),
                             payload_read.addr.eq(row(entry.slot))]
                m.d.sync += [beat.eq(beat + 1), next_spare.eq(entry.slot)]
                with m.If(beat == BEATS):
                    m.d.comb += read_pos_next.eq(read_pos - 1)
                    m.d.sync += evicting.eq(1)
                    m.next = "SHIFT_FIRST"

            with m.State("REJECT_READ"):
                m.d.comb += [self.busy.eq(1), reading.eq(1), payload_read.addr.eq(row(spare))]
                m.d.sync += beat.eq(beat + 1)
                with m.If(beat == BEATS):
                    m.d.sync += [self.drop.valid.eq(1), drop_reason.eq(DropReason.REJECTED),
                                 self.rejected.eq(self.rejected + 1)]
                    m.next = "IDLE"

            with m.State("SHIFT_FIRST"):
                m.d.comb += [self.busy.eq(1), read_pos_next.eq(read_pos - 1)]
                m.next = "SHIFT"

            with m.State("SHIFT"):
                new_entry = Cat(~new_priority, spare)
                m.d.comb += [
                    self.busy.eq(1),
                    order_write.addr.eq(write_pos),
                    order_write.en.eq(1),
                    order_write.data.eq(Mux(move, moving_entry.as_value(), new_entry)),
                ]
                # The next entry is read whether or not this one moves: the comparison stays out
                # of the RAM's address path (after the insert the read is not used).
                m.d.comb += read_pos_next.eq(read_pos - 1)
                with m.If(~move):
                    m.next = "FINISH"

            with m.State("FINISH"):
                # The insert's bookkeeping a clock after it: the comparison then drives only
                # the RAM's write data and the state, not the counters' enables.
                m.d.comb += self.busy.eq(1)
                m.d.sync += [spare.eq(next_spare), evicting.eq(0)]
                with m.If(evicting):
                    m.d.sync += [self.drop.valid.eq(1), drop_reason.eq(DropReason.EVICTED),
                                 self.evicted.eq(self.evicted + 1)]
                with m.Else():
                    m.d.sync += [count.eq(count + 1), first_free.eq(first_free + 1),
                                 empty.eq(0)]
                    # Occupancy grows by one at most: the mark rises when it grows from it.
                    with m.If(count == self.high_water):
                        m.d.sync += self.high_water.eq(count + 1)
                m.next = "IDLE"

        return m
