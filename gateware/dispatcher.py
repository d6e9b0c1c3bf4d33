"""Command dispatcher and output arbiter: checked frames in, register accesses, datapath traffic
and reply frames out.

It reads each committed frame from the deframer (:data:`~.framing.FrameReadSignature`), checks
it completely -- type, body length, every register address and value, every signal's pair slot
-- and only then executes it, so a refused command changes nothing.  Every valid frame gets
exactly one terminal reply, after the ``RESULTS`` frames it caused (:mod:`sigfuse.protocol`).

Port contract (what the board top connects; all in the sync domain)
=====================================================================

``signals`` -- Out, ``stream.Signature(SignalLayout)``
    To the fusion pipeline's ``signals``.  One signal at a time: after each transfer the
    dispatcher waits ``settle_clocks`` clocks before it emits that signal's results and then
    loads the next, so results come out in the contract's order (decision, then the drop it
    caused; or the stale report) without any reordering logic.  ``settle_clocks`` must exceed the
    longest delay from a signal's transfer to its last result (fusion ``LATENCY`` + 1 for the
    queue's drop report, + 1).  At 3 Mbaud a signal takes 14 byte times = 140 bit times on the
    wire, far more than the settling, so serializing costs no link throughput.  With
    ``settle_on_idle`` the wait also ends two clocks after the input ``datapath_busy`` falls
    (the serial engine: its worst case is long, its usual case short).

``pop`` -- Out, ``stream.Signature(0)``
    Pop requests, to the queue's ``pop``; one at a time, each waits for its ``popped``.

``decisions`` -- In, ``stream.Signature(DecisionLayout, always_ready=True)``
    A *tap* of every decision the fusion pipeline hands to the queue: ``valid`` for one clock
    in each clock a decision is transferred into the queue (``fusion.decisions.valid &
    queue.push.ready``), ``payload`` the decision.

``drops`` -- In, ``stream.Signature(DropLayout, always_ready=True)``
    The queue's ``drop`` reports (EVICTED or REJECTED with the dropped decision).

``stale`` -- In, ``stream.Signature(SignalLayout, always_ready=True)``
    The fusion pipeline's ``stale`` reports.  Only ``valid`` is used: a stale signal is the one
    last sent, whose record the dispatcher still holds (it loads the next only after the
    results), so it sends the report from there.

``popped`` -- In, ``stream.Signature(PoppedLayout)``
    The queue's ``popped`` (a decision, or ``empty = 1``); taken with backpressure.

Results are captured whenever they arrive, one register per source (decision, drop; a stale
report is sent from the signal's record); the serialization above guarantees that each holds
at most one pending result.  A popped record stays on ``popped`` (ready low) until it has been
sent.

The register port (``bus``) goes to :class:`~.regfile.RegisterFile`, ``tx`` to the
:class:`~.framing.Framer`, and ``events`` to the stats counters.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import DropReason
from ..protocol import (HEADER_BYTES, MAX_PING_DATA, MAX_REGS, MAX_RESULTS, MAX_SIGNALS,
                        RESULT_RECORD_BYTES, RESULT_RECORD_LAYOUT, SIGNAL_RECORD_BYTES, AckStatus,
                        ErrorCode, FrameType, ResultKind)
from ..regmap import stats_registers
from .cobs import PacketByteLayout
from .framing import FrameReadSignature
from .layouts import DecisionLayout, SignalLayout, struct_layout
from .regfile import RegBusSignature

__all__ = ["PoppedLayout", "DropLayout", "ResultRecordLayout", "DispatcherEventsLayout",
           "Dispatcher"]

#: What a pop returns (the queue's ``popped`` payload).
PoppedLayout = data.StructLayout({"decision": DecisionLayout, "empty": 1})
#: A dropped decision and why (the queue's ``drop`` payload).
DropLayout = data.StructLayout({"reason": DropReason, "decision": DecisionLayout})
#: A result record on the wire (:data:`sigfuse.protocol.RESULT_RECORD_LAYOUT`).
ResultRecordLayout = struct_layout(RESULT_RECORD_LAYOUT)

#: Strobes for the stats counters of the command layer.
DispatcherEventsLayout = data.StructLayout({
    "frames_unknown_type": 1,
    "frames_bad_length": 1,
    "frames_bad_value": 1,
    "reg_bad_address": 1,
    "frames_duplicate": 1,
    "frames_seq_gap": 1,
})

_STATS = stats_registers()
_STATS_BASE = _STATS[0].addr
assert [r.addr for r in _STATS] == list(range(_STATS_BASE, _STATS_BASE + len(_STATS)))
#: Where ``kind`` starts within the last byte of a result record.
_KIND_BIT = ResultRecordLayout["kind"].offset - 8 * (RESULT_RECORD_BYTES - 1)
assert 0 <= _KIND_BIT and _KIND_BIT + ResultRecordLayout["kind"].shape.width <= 8
_SIGNAL_BITS = SIGNAL_RECORD_BYTES * 8
# Validating a signal needs only its pair and the reserved bits above the record: the bytes from
# the pair's up to the end are loaded, not the whole record.
assert SignalLayout["pair"].offset % 8 == 0
_SIGNAL_CHECK_FROM = SignalLayout["pair"].offset // 8
_SIGNAL_CHECK_BYTES = SIGNAL_RECORD_BYTES - _SIGNAL_CHECK_FROM


class _Source(enum.Enum, shape=2):
    """Which capture register a result record is sent from."""
    DECISION = 0
    DROP = 1
    STALE = 2
    POPPED = 3


class _Cont(enum.Enum, shape=3):
    """Where a body load continues."""
    VALIDATE = 0
    READ = 1
    WRITE = 2
    PUSH = 3


class Dispatcher(wiring.Component):
    """Executes link commands against the register file and the abstract datapath ports.

    :param pair_slots: the fusion pipeline's pair slots; signals with ``pair >= pair_slots``
        are refused (BAD_VALUE) before anything of their frame runs.
    :param settle_clocks: clocks to wait after each signal for its results (see the module
        docstring).
    :param settle_on_idle: adds an input ``datapath_busy``; the wait after a signal also ends
        once it has been low for two clocks in a row (the results, which arrive while it is high
        or in the clock it falls, have been captured by then).  For a datapath whose time per
        signal varies, like the serial engine, whose worst case ``settle_clocks`` must cover
        but which mostly finishes far sooner.
    """

    def __init__(self, *, pair_slots: int, settle_clocks: int = 16,
                 settle_on_idle: bool = False) -> None:
        if not 1 <= pair_slots <= 256:
            raise ValueError(f"pair_slots must be within [1, 256], not {pair_slots}")
        if settle_clocks < 2:
            raise ValueError("settle_clocks must be at least 2")
        self.pair_slots = pair_slots
        self.settle_clocks = settle_clocks
        self.settle_on_idle = settle_on_idle
        extra = {"datapath_busy": In(1)} if settle_on_idle else {}
        super().__init__({
            **extra,
            "frame": In(FrameReadSignature),
            "tx": Out(stream.Signature(PacketByteLayout)),
            "bus": Out(RegBusSignature),
            "events": Out(DispatcherEventsLayout),
            "signals": Out(stream.Signature(SignalLayout)),
            "pop": Out(stream.Signature(0)),
            "decisions": In(stream.Signature(DecisionLayout, always_ready=True)),
            "drops": In(stream.Signature(DropLayout, always_ready=True)),
            "stale": In(stream.Signature(SignalLayout, always_ready=True)),
            "popped": In(stream.Signature(PoppedLayout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        frame, tx, bus = self.frame, self.tx, self.bus

        # --- command state -------------------------------------------------------------------
        cmd_type, cmd_seq = Signal(8), Signal(8)
        # The command types the states below branch on, decoded once as the type byte arrives:
        # one flip-flop each, instead of an 8-bit comparison in every branch (those sat on the
        # iCE40's longest paths).
        is_type = {t: Signal(name=f"is_{t.name.lower()}") for t in (
            FrameType.REG_READ, FrameType.REG_WRITE, FrameType.PUSH_SIGNALS, FrameType.POP,
            FrameType.STATS)}
        body_len = Signal(8)
        last_seq, last_valid = Signal(8), Signal()
        duplicate = Signal()
        tx_seq = Signal(8)
        reply_type = Signal(8)
        status = Signal(8)
        err_code, err_detail = Signal(8), Signal(16)

        item_size, item_max = Signal(4), Signal(6)
        items, item = Signal(8), Signal(8)
        remaining = Signal(8)
        pos = Signal(8)                  # body offset of the current item
        cont = Signal(_Cont)
        shreg = Signal(_SIGNAL_BITS)     # loaded bytes, the last one at the top
        load_n, loaded = Signal(4), Signal(4)
        skip = Signal(4)                 # bytes of the item not loaded, before the first one
        primed = Signal()
        k = Signal(range(max(RESULT_RECORD_BYTES, 256) + 1))
        reg_addr, reg_value = Signal(16), Signal(32)
        settle = Signal(range(self.settle_clocks + 1))   # clocks until the last push's results
        unreported = Signal()   # a pushed signal whose results have not been sent yet
        pops_left = Signal(8)

        # --- results: one capture register per source --------------------------------------
        # Each register loads from exactly one source and is sent from its low byte, shifting
        # down a byte per byte sent: one LUT per flip-flop (load or shift), where a byte
        # multiplexer over whole records cost ~170 LUTs per source and left the capture
        # flip-flops unpaired (each its own iCE40 logic cell).  A popped record is loaded into
        # the drop register (pops and drops never overlap), and `popped` is held (ready low)
        # until its record has been sent.  The serial queue drives both payloads from one
        # register, so there the load costs nothing.  A stale report needs no register: the
        # stale signal's record is still in shreg, which shifts down the same way.
        dec_r, dec_p = Signal(DecisionLayout.size), Signal()
        drop_r, drop_reason, drop_p = Signal(DecisionLayout.size), Signal(DropReason), Signal()
        stale_p = Signal()
        popping = Signal()            # a popped record is waiting on `popped`
        source = Signal(_Source)      # the record being sent
        res_kind = Signal(ResultKind)
        res_open = Signal()
        res_count = Signal(range(MAX_RESULTS + 1))
        byte_sent = Signal()          # a byte of the record from `source` is taken

        popped_load = Signal()        # the popped record goes into drop_r
        for register, pending, stream_in, payload, sources in (
                (dec_r, dec_p, self.decisions, self.decisions.payload, (_Source.DECISION,)),
                (drop_r, drop_p, self.drops, self.drops.payload.decision,
                 (_Source.DROP, _Source.POPPED))):
            with m.If(stream_in.valid):
                m.d.sync += [register.eq(payload), pending.eq(1)]
            if register is drop_r:
                with m.Elif(popped_load):
                    m.d.sync += register.eq(self.popped.payload.decision)
            with m.Elif(byte_sent & Cat(source == src for src in sources).any()):
                m.d.sync += register.eq(register[8:])
        with m.If(self.drops.valid):
            m.d.sync += drop_reason.eq(self.drops.payload.reason)
        with m.If(self.stale.valid):
            m.d.sync += stale_p.eq(1)
        # shreg shifts down a byte as a byte of an item is loaded at its top, and as a byte of
        # the stale record is sent from its bottom (zeros come in: the result record is longer).
        shreg_in = Signal(8)
        shreg_shift = Signal()
        with m.If(shreg_shift | (byte_sent & (source == _Source.STALE))):
            m.d.sync += shreg.eq(Cat(shreg[8:], shreg_in))

        record_byte = Signal(8)
        with m.Switch(source):
            for src, value in {
                    _Source.DECISION: dec_r[:8],
                    _Source.DROP: drop_r[:8],
                    _Source.STALE: shreg[:8],
                    _Source.POPPED: drop_r[:8]}.items():
                with m.Case(src):
                    m.d.comb += record_byte.eq(value)
        # An empty pop's record is 0; the last byte carries the kind above the record's top bits.
        data_byte = Mux((source == _Source.POPPED) & self.popped.payload.empty, 0, record_byte)
        result_byte = Signal(8)
        m.d.comb += result_byte.eq(data_byte)
        with m.If(k == RESULT_RECORD_BYTES - 1):
            m.d.comb += result_byte.eq(Cat(data_byte[:_KIND_BIT], res_kind))

        # --- defaults ------------------------------------------------------------------------
        m.d.comb += [
            frame.offset.eq(0),
            bus.addr.eq(reg_addr),
            bus.w_data.eq(reg_value),
            self.signals.payload.eq(shreg[:SignalLayout.size]),
        ]

        def emit(value, *, end=False):
            """Drive one tx item; returns the 'taken' condition."""
            m.d.comb += [tx.valid.eq(1), tx.payload.data.eq(value), tx.payload.end.eq(int(end))]
            return tx.ready

        def fail(code: ErrorCode, detail, event: str):
            m.d.sync += [err_code.eq(code), err_detail.eq(detail), reply_type.eq(FrameType.ERROR),
                         k.eq(0)]
            m.d.comb += getattr(self.events, event).eq(1)
            m.next = "header"

        def reply(kind, ack_status=None):
            m.d.sync += [reply_type.eq(kind), k.eq(0)]
            if ack_status is not None:
                m.d.sync += status.eq(ack_status)
            m.next = "header"

        def load(n, then: _Cont, *, skip_bytes=0):
            m.d.sync += [load_n.eq(n), loaded.eq(0), primed.eq(0), cont.eq(then),
                         skip.eq(skip_bytes)]
            m.next = "load"

        # The settle count runs by itself (the wait for a signal's results).
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)
        if self.settle_on_idle:
            # Clocks in a row with the datapath idle since the last signal's transfer: the
            # transfer edge itself clears it (the datapath is busy from the next clock on).
            quiet = Signal(2)
            with m.If(self.signals.valid & self.signals.ready):
                m.d.sync += quiet.eq(0)
            with m.Elif(self.datapath_busy):
                m.d.sync += quiet.eq(0)
            with m.Elif(quiet != 2):
                m.d.sync += quiet.eq(quiet + 1)
            with m.If((quiet == 2) & (settle != 0)):
                m.d.sync += settle.eq(0)

        with m.FSM():
            # --- a frame: header ---------------------------------------------------------------
            with m.State("idle"):
                with m.If(frame.valid):
                    m.next = "read_type"
            with m.State("read_type"):
                m.d.comb += frame.offset.eq(1)
                m.d.sync += cmd_type.eq(frame.data)
                m.d.sync += [flag.eq(frame.data == t) for t, flag in is_type.items()]
                m.next = "read_seq"
            with m.State("read_seq"):
                m.d.sync += [cmd_seq.eq(frame.data), body_len.eq(frame.length - HEADER_BYTES)]
                m.next = "decode"
            with m.State("decode"):
                m.d.sync += [last_seq.eq(cmd_seq), last_valid.eq(1),
                             duplicate.eq(last_valid & (cmd_seq == last_seq)),
                             remaining.eq(body_len), items.eq(0), item.eq(0), pos.eq(0)]
                m.d.comb += self.events.frames_seq_gap.eq(
                    last_valid & (cmd_seq != (last_seq + 1)[:8]) & (cmd_seq != last_seq))
                with m.Switch(cmd_type):
                    with m.Case(FrameType.PING):
                        # The PONG repeats the data after the reply prefix: it must fit too.
                        with m.If(body_len <= MAX_PING_DATA):
                            reply(FrameType.PONG)
                        with m.Else():
                            fail(ErrorCode.BAD_LENGTH, body_len, "frames_bad_length")
                    with m.Case(FrameType.STATS):
                        with m.If(body_len == 0):
                            m.next = "stats_snapshot"
                        with m.Else():
                            fail(ErrorCode.BAD_LENGTH, body_len, "frames_bad_length")
                    for kind, size, most in ((FrameType.REG_READ, 2, MAX_REGS),
                                             (FrameType.REG_WRITE, 6, MAX_REGS),
                                             (FrameType.PUSH_SIGNALS, SIGNAL_RECORD_BYTES, MAX_SIGNALS),
                                             (FrameType.POP, 1, 1)):
                        with m.Case(kind):
                            m.d.sync += [item_size.eq(size), item_max.eq(most)]
                            m.next = "length"
                    with m.Default():
                        fail(ErrorCode.UNKNOWN_TYPE, 0, "frames_unknown_type")

            with m.State("stats_snapshot"):
                with m.If(~bus.busy):
                    m.d.comb += bus.snapshot.eq(1)
                    reply(FrameType.STATS_REPLY)

            # --- checks ------------------------------------------------------------------------
            with m.State("length"):
                with m.If(remaining == 0):
                    with m.If((items == 0) | (items > item_max)):
                        fail(ErrorCode.BAD_LENGTH, body_len, "frames_bad_length")
                    with m.Else():
                        m.next = "validate"
                with m.Elif(remaining < item_size):
                    fail(ErrorCode.BAD_LENGTH, body_len, "frames_bad_length")
                with m.Else():
                    m.d.sync += [remaining.eq(remaining - item_size), items.eq(items + 1)]
            with m.State("validate"):
                with m.If(item == items):
                    m.d.sync += [item.eq(0), pos.eq(0)]
                    with m.If(duplicate & ~is_type[FrameType.REG_READ]):
                        m.d.comb += self.events.frames_duplicate.eq(1)
                        reply(cmd_type | 0x80, AckStatus.DUPLICATE)
                    with m.Else():
                        m.next = "execute"
                with m.Elif(is_type[FrameType.PUSH_SIGNALS]):
                    load(_SIGNAL_CHECK_BYTES, _Cont.VALIDATE, skip_bytes=_SIGNAL_CHECK_FROM)
                with m.Else():
                    load(item_size, _Cont.VALIDATE)
            with m.State("check"):
                # shreg holds the item, its last byte at the top.
                m.d.sync += [item.eq(item + 1), pos.eq(pos + item_size)]
                m.next = "validate"
                with m.If(is_type[FrameType.PUSH_SIGNALS]):
                    # shreg's top holds the record from its pair byte on.
                    tail = shreg[-8 * _SIGNAL_CHECK_BYTES:]
                    pair = tail[:8]
                    reserved = tail[SignalLayout.size - 8 * _SIGNAL_CHECK_FROM:]
                    with m.If((pair >= self.pair_slots) | reserved.any()):
                        fail(ErrorCode.BAD_VALUE, item, "frames_bad_value")
                with m.Elif(is_type[FrameType.POP]):
                    with m.If(shreg[-8:] == 0):
                        fail(ErrorCode.BAD_VALUE, 0, "frames_bad_value")
                with m.Elif(is_type[FrameType.REG_READ]):
                    m.d.sync += reg_addr.eq(shreg[-16:])
                    m.next = "check_wait"
                with m.Elif(is_type[FrameType.REG_WRITE]):
                    m.d.sync += [reg_addr.eq(shreg[-48:-32]), reg_value.eq(shreg[-32:])]
                    m.next = "check_wait"
            with m.State("check_wait"):
                # The register file's checks are registered: valid a clock after reg_addr.
                m.next = "check_reg"
            with m.State("check_reg"):
                m.next = "validate"
                with m.If(~bus.exists):
                    fail(ErrorCode.BAD_ADDRESS, reg_addr, "reg_bad_address")
                with m.Elif(is_type[FrameType.REG_WRITE] & ~bus.writable):
                    fail(ErrorCode.READ_ONLY, reg_addr, "reg_bad_address")
                with m.Elif(is_type[FrameType.REG_WRITE] & ~bus.value_ok):
                    fail(ErrorCode.BAD_VALUE, reg_addr, "frames_bad_value")

            # --- loading an item from the body -------------------------------------------------
            with m.State("load"):
                # Pipelined: while byte n arrives, byte n + 1 is requested.
                m.d.comb += frame.offset.eq(HEADER_BYTES + pos + skip + loaded + primed)
                m.d.sync += primed.eq(1)
                with m.If(primed):
                    m.d.comb += [shreg_shift.eq(1), shreg_in.eq(frame.data)]
                    m.d.sync += loaded.eq(loaded + 1)
                    with m.If(loaded + 1 == load_n):
                        m.d.sync += primed.eq(0)
                        with m.Switch(cont):
                            with m.Case(_Cont.VALIDATE):
                                m.next = "check"
                            with m.Case(_Cont.READ):
                                m.next = "read_address"
                            with m.Case(_Cont.WRITE):
                                m.next = "write_address"
                            with m.Case(_Cont.PUSH):
                                m.next = "push_signal"

            # --- execution ---------------------------------------------------------------------
            with m.State("execute"):
                with m.If(is_type[FrameType.REG_READ]):
                    reply(FrameType.REG_READ_REPLY)
                with m.Elif(is_type[FrameType.REG_WRITE]):
                    with m.If(~bus.params_pending):
                        m.next = "next_item"
                with m.Elif(is_type[FrameType.PUSH_SIGNALS]):
                    m.next = "next_item"
                with m.Elif(is_type[FrameType.POP]):
                    m.d.sync += pops_left.eq(shreg[-8:])
                    m.next = "next_item"
            with m.State("next_item"):
                with m.If(is_type[FrameType.REG_READ]):
                    with m.If(item == items):
                        m.next = "end"
                    with m.Else():
                        load(2, _Cont.READ)
                with m.Elif(is_type[FrameType.STATS]):
                    with m.If(item == len(_STATS)):
                        m.next = "end"
                    with m.Else():
                        m.d.sync += reg_addr.eq(_STATS_BASE + item)
                        m.next = "read_strobe"
                with m.Elif(is_type[FrameType.REG_WRITE]):
                    with m.If(item == items):
                        m.d.comb += bus.commit.eq(1)
                        reply(FrameType.REG_WRITE_ACK, AckStatus.DONE)
                    with m.Else():
                        load(6, _Cont.WRITE)
                with m.Elif(is_type[FrameType.PUSH_SIGNALS]):
                    # Signal i's results go out before signal i + 1 is loaded (the contract's
                    # order; a stale report is sent from the record itself).
                    with m.If(unreported):
                        with m.If(settle == 0):
                            m.next = "results"
                    with m.Elif(item != items):
                        load(SIGNAL_RECORD_BYTES, _Cont.PUSH)
                    with m.Else():
                        m.next = "finish"
                with m.Elif(is_type[FrameType.POP]):
                    with m.If(pops_left == 0):
                        m.next = "finish"
                    with m.Else():
                        m.next = "pop_request"

            # The bus's address and data come straight from reg_addr and reg_value, never from
            # a multiplexer on the state: the register file decodes them, and the paths from
            # this state machine through that decoding were the iCE40's longest.
            with m.State("read_address"):
                m.d.sync += reg_addr.eq(shreg[-16:])
                m.next = "read_strobe"
            with m.State("read_strobe"):
                with m.If(~bus.busy):
                    m.d.comb += bus.r_stb.eq(1)
                    m.next = "read_wait"
            with m.State("read_wait"):
                # r_data is valid two clocks after r_stb (the register file's bus stage).
                m.next = "read_latch"
            with m.State("read_latch"):
                m.d.sync += [reg_value.eq(bus.r_data), k.eq(0)]
                m.next = "emit_register"
            with m.State("emit_register"):
                with m.If(emit(Cat(reg_addr, reg_value).word_select(k[:3], 8))):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 5):
                        m.d.sync += [item.eq(item + 1), pos.eq(pos + 2)]
                        m.next = "next_item"

            with m.State("write_address"):
                m.d.sync += [reg_addr.eq(shreg[-48:-32]), reg_value.eq(shreg[-32:])]
                m.next = "write_strobe"
            with m.State("write_strobe"):
                with m.If(~bus.busy):
                    m.d.comb += bus.w_stb.eq(1)
                    m.d.sync += [item.eq(item + 1), pos.eq(pos + 6)]
                    m.next = "next_item"

            with m.State("push_signal"):
                m.d.comb += self.signals.valid.eq(1)
                with m.If(self.signals.ready):
                    m.d.sync += [item.eq(item + 1), pos.eq(pos + SIGNAL_RECORD_BYTES),
                                 settle.eq(self.settle_clocks), unreported.eq(1)]
                    m.next = "next_item"

            with m.State("pop_request"):
                m.d.comb += self.pop.valid.eq(1)
                with m.If(self.pop.ready):
                    m.next = "pop_wait"
            with m.State("pop_wait"):
                with m.If(self.popped.valid):
                    m.d.comb += popped_load.eq(1)
                    m.d.sync += [pops_left.eq(pops_left - 1), popping.eq(1)]
                    m.next = "results"

            # --- results frames ----------------------------------------------------------------
            with m.State("results"):
                pending = stale_p | dec_p | drop_p | popping
                with m.If(~pending):
                    m.d.sync += unreported.eq(0)
                    m.next = "next_item"
                with m.Elif(~res_open):
                    m.d.sync += [res_open.eq(1), res_count.eq(0)]
                    reply(FrameType.RESULTS)
                with m.Else():
                    # The contract's order: a stale echo, or a decision then the drop it caused.
                    m.d.sync += k.eq(0)
                    with m.If(stale_p):
                        m.d.sync += [source.eq(_Source.STALE), res_kind.eq(ResultKind.STALE)]
                    with m.Elif(dec_p):
                        m.d.sync += [source.eq(_Source.DECISION), res_kind.eq(ResultKind.DECISION)]
                    with m.Elif(drop_p):
                        m.d.sync += [source.eq(_Source.DROP), res_kind.eq(ResultKind.REJECTED)]
                        with m.If(drop_reason == DropReason.EVICTED):
                            m.d.sync += res_kind.eq(ResultKind.EVICTED)
                    with m.Else():
                        m.d.sync += [source.eq(_Source.POPPED), res_kind.eq(ResultKind.POPPED)]
                        with m.If(self.popped.payload.empty):
                            m.d.sync += res_kind.eq(ResultKind.POPPED_EMPTY)
                    m.next = "emit_result"
            with m.State("emit_result"):
                with m.If(emit(result_byte)):
                    m.d.comb += byte_sent.eq(1)
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == RESULT_RECORD_BYTES - 1):
                        with m.Switch(source):
                            with m.Case(_Source.STALE):
                                m.d.sync += stale_p.eq(0)
                            with m.Case(_Source.DECISION):
                                m.d.sync += dec_p.eq(0)
                            with m.Case(_Source.DROP):
                                m.d.sync += drop_p.eq(0)
                            with m.Case(_Source.POPPED):
                                m.d.comb += self.popped.ready.eq(1)
                                m.d.sync += popping.eq(0)
                        m.d.sync += res_count.eq(res_count + 1)
                        with m.If(res_count == MAX_RESULTS - 1):
                            m.next = "end"
                        with m.Else():
                            m.next = "results"
            with m.State("finish"):
                with m.If(res_open):
                    m.next = "end"
                with m.Else():
                    reply(cmd_type | 0x80, AckStatus.DONE)

            # --- reply frames ------------------------------------------------------------------
            with m.State("header"):
                byte = Cat(reply_type, tx_seq, cmd_type, cmd_seq).word_select(k[:2], 8)
                with m.If(emit(byte)):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 3):
                        m.d.sync += [k.eq(0), primed.eq(0)]
                        with m.Switch(reply_type):
                            with m.Case(FrameType.RESULTS):
                                m.next = "results"
                            with m.Case(FrameType.PONG):
                                m.next = "echo"
                            with m.Case(FrameType.REG_READ_REPLY, FrameType.STATS_REPLY):
                                m.d.sync += [item.eq(0), pos.eq(0)]
                                m.next = "next_item"
                            with m.Case(FrameType.ERROR):
                                m.next = "emit_error"
                            with m.Default():
                                m.next = "emit_status"
            with m.State("emit_status"):
                with m.If(emit(status)):
                    m.next = "end"
            with m.State("emit_error"):
                with m.If(emit(Cat(err_code, err_detail).word_select(k[:2], 8))):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 2):
                        m.next = "end"
            with m.State("echo"):
                m.d.comb += frame.offset.eq(HEADER_BYTES + k)
                with m.If(k == body_len):
                    m.next = "end"
                with m.Elif(primed):
                    with m.If(emit(frame.data)):
                        m.d.sync += [k.eq(k + 1), primed.eq(0)]
                with m.Else():
                    m.d.sync += primed.eq(1)
            with m.State("end"):
                with m.If(emit(0, end=True)):
                    m.d.sync += tx_seq.eq(tx_seq + 1)
                    with m.If(reply_type == FrameType.RESULTS):
                        m.d.sync += res_open.eq(0)
                        m.next = "results"
                    with m.Else():
                        m.next = "release"
            with m.State("release"):
                m.d.comb += frame.release.eq(1)
                m.next = "idle"
        return m
