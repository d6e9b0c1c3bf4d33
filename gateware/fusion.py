"""The fusion pipeline in gateware, bit-exact to :class:`sigfuse.fusion.FusionEngine`.

One signal per clock, sustained (back-to-back signals for the same pair included), and a fixed
latency of :data:`LATENCY` clocks from the accepting edge of a signal to the edge that can
transfer its decision.  ``docs/fusion-pipeline.md`` has the stage diagram, the resource notes
and the proofs of the width choices; the rule numbers are those of ``host/fusion.py``.

Stages (S0 is the clock in which ``signals`` transfers; S1..S5 are one register each):

=====  ======================================================================================
S0     rule 1 (stale test against the last accepted ``ts_us``), TTL horizon ``ts - ttl``;
       read the pair's vote row; compare pairs with S1 (forwarding)
S1     rule 2: insert the vote into the row (read, or forwarded from S1's previous output)
       and write it back; per vote: liveness ``ts_vote >= ts - ttl`` and the products
       ``w*c >> 15`` and ``w*e`` (16 multipliers)
S2     rule 3: masked sums B, S, T = B + S, X_buy, X_sell; the agreeing masks of both sides
       address the mask table (W_A, reciprocal, n)
S3     rule 4: winner and tie; rule 5: ``θ·T``, quorum test, ``M·mantissa`` and
       ``X·mantissa`` for both sides (the winner is picked after the multipliers)
S4     rule 5: consensus ``M·2^15 >= θ·T``, average and fused edge (shift by s), boost
       multiply; read the pair's emission state; compare pairs with S5 (forwarding)
S5     rule 5: clamp; rule 6: quality, side and cooldown against the emission state (read,
       or forwarded from S5's previous output); rule 7: priority and ``seq``; the decision
       enters the output FIFO, readable one clock later
=====  ======================================================================================

Hazards: the vote row of a pair is read in S0 and written in S1, so only the signal in S1 can
have a write the read missed; S0 compares pairs and S1 takes that row from the ``row_out``
register instead.  The emission state is read in S4 and written in S5, with the same forwarding
one stage later.  No other state is carried between signals, so there are no stalls.

Parameters are registers loaded from the ``config`` stream.  A write waits for the pipeline to
drain (``signals.ready`` is low from the moment ``config.valid`` is high), so every signal
sees exactly one parameter set, like :meth:`FusionEngine.set_params` between two ``fuse``
calls.  When the weights change, :class:`MaskTableRefresh` recomputes the 256-entry mask table
(:meth:`FusionParams.mask_table`); ``signals.ready`` stays low meanwhile (``refreshing`` is
high; :func:`refresh_clocks` gives the length of the stall).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..contract import (BOOST_FRAC_BITS, CONF_FRAC_BITS, CONF_ONE, PRIORITY_FRAC_BITS,
                        PRIORITY_MAX, RECIP_BITS, SOURCE_SLOTS, TS_BITS, FusionParams)
from .fusion_params import (PARAM_BITS, RECIP_MANTISSA_BITS, RECIP_SHIFT_BITS, WEIGHT_SUM_BITS,
                            FusionConfigLayout, MaskLayout, config_const, mask_entries)
from .layouts import DecisionLayout, SignalLayout

__all__ = ["LATENCY", "STALE_LATENCY", "VoteLayout", "RowLayout", "EmitStateLayout",
           "FusionStatsLayout", "MaskTableRefresh", "FusionPipeline", "fusion_signature",
           "refresh_clocks", "verilog_ports", "verilog_source"]

#: Clock edges from the edge that accepts a signal to the first edge at which its decision can
#: be transferred on ``decisions`` (S1..S5 plus the output FIFO's write-to-read cycle).
LATENCY = 6
#: Clock edges from accepting a stale signal to the edge that transfers its ``stale`` report.
STALE_LATENCY = 1

_CONF_SHAPE = SignalLayout["confidence"].shape
_EDGE_SHAPE = SignalLayout["edge_bps"].shape

#: One vote of the board.  Full 64-bit timestamps: liveness is then the contract's own compare
#: (see docs/fusion-pipeline.md for the 32-bit rebased alternative the iCE40 would need).
VoteLayout = data.StructLayout({
    "valid": 1,
    "ts_us": unsigned(TS_BITS),
    "side": 1,
    "confidence": _CONF_SHAPE,
    "edge_bps": _EDGE_SHAPE,
})

#: A pair slot's row of the vote board: one vote per source slot, read and written whole.
RowLayout = data.ArrayLayout(VoteLayout, SOURCE_SLOTS)

#: What a pair last emitted (rule 6).  ``has_side = 0`` is the contract's ``Side.NONE``, so the
#: memory's all-zero initial value is the reference's initial PairState.
EmitStateLayout = data.StructLayout({
    "has_side": 1,
    "side": 1,
    "last_emit_ts": unsigned(TS_BITS),
})

STATS_COUNTER_BITS = 32

#: Counters for the stats block (32 bits, wrapping, like every counter of the board).
FusionStatsLayout = data.StructLayout({
    "signals_in": unsigned(STATS_COUNTER_BITS),
    "stale_drops": unsigned(STATS_COUNTER_BITS),
    "decisions_out": unsigned(STATS_COUNTER_BITS),
})

_WEIGHT_BITS = PARAM_BITS["weights"]
#: M/W_A in UQ1.15 before the boost: at most 2**16 (see S4).
_AVERAGE_BITS = _CONF_SHAPE.width + 1
#: The divider works on the normalized divisor N = W_A << (WEIGHT_SUM_BITS - s): the quotients
#: 2**(s + RECIP_BITS) / W_A and 2**(WEIGHT_SUM_BITS + RECIP_BITS) / N are the same rational for
#: every s, so one fixed-size division serves every mask and the ceilings agree.
_QUOTIENT_BITS = RECIP_MANTISSA_BITS


def _tree_sum(values):
    """Balanced adder tree (log2 depth instead of a ripple of adders)."""
    values = list(values)
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


def fusion_signature() -> wiring.Signature:
    """The ports of a fusion engine (:class:`FusionPipeline`, and
    :class:`~.fusion_serial.SerialFusion`, which the product core can put in its place)."""
    return wiring.Signature({
        "signals": In(stream.Signature(SignalLayout)),
        "decisions": Out(stream.Signature(DecisionLayout)),
        "stale": Out(stream.Signature(SignalLayout, always_ready=True)),
        "config": In(stream.Signature(FusionConfigLayout)),
        "params": Out(FusionConfigLayout),
        "refreshing": Out(1),
        "stats": Out(FusionStatsLayout),
    })


def refresh_clocks(steps_per_clock: int = 2) -> int:
    """Clocks the mask table refresh holds ``signals.ready`` low after a weight change."""
    return (1 << SOURCE_SLOTS) * (3 + _QUOTIENT_BITS // steps_per_clock) + 1


class MaskTableRefresh(wiring.Component):
    """Recomputes the 256-entry mask table after a weight change, one mask at a time.

    Per mask: sum the masked weights and count those that are not zero (1 clock), normalize
    (1 clock), a restoring division of ``2**35`` by the normalized divisor producing
    ``steps_per_clock`` quotient bits per clock (18 bits), write the entry rounded up (1 clock).
    Every entry equals :meth:`FusionParams.mask_table`; masks whose weights sum to zero get a
    zero reciprocal.  ``busy`` rises the clock after ``start`` and stays high until the last
    write.
    """

    def __init__(self, steps_per_clock: int = 2) -> None:
        if _QUOTIENT_BITS % steps_per_clock:
            raise ValueError(f"steps_per_clock must divide {_QUOTIENT_BITS}, not {steps_per_clock}")
        self.steps_per_clock = steps_per_clock
        super().__init__({
            "weights": In(data.ArrayLayout(unsigned(_WEIGHT_BITS), SOURCE_SLOTS)),
            "start": In(1),
            "busy": Out(1),
            "write_addr": Out(SOURCE_SLOTS),
            "write_data": Out(MaskLayout),
            "write_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        mask = Signal(SOURCE_SLOTS)
        weight_sum = Signal(WEIGHT_SUM_BITS)
        shift = Signal(RECIP_SHIFT_BITS)
        divisor = Signal(WEIGHT_SUM_BITS)
        remainder = Signal(WEIGHT_SUM_BITS + 1)
        quotient = Signal(_QUOTIENT_BITS)
        count = Signal(MaskLayout["n"].shape)
        iterations = _QUOTIENT_BITS // self.steps_per_clock
        step = Signal(range(iterations))

        masked = [Mux(mask[i], self.weights[i], 0) for i in range(SOURCE_SLOTS)]
        bit_length = Signal(RECIP_SHIFT_BITS)
        for i in range(WEIGHT_SUM_BITS):
            with m.If(weight_sum[i]):
                m.d.comb += bit_length.eq(i + 1)

        m.d.comb += [
            self.write_addr.eq(mask),
            self.write_data.weight_sum.eq(weight_sum),
            # ceil(2**35 / N): floor plus one unless the division came out exact.
            self.write_data.mantissa.eq(Mux(weight_sum == 0, 0, quotient + (remainder != 0))),
            self.write_data.shift.eq(Mux(weight_sum == 0, 0, shift)),
            self.write_data.n.eq(count),
        ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += mask.eq(0)
                    m.next = "SUM"
            with m.State("SUM"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    weight_sum.eq(_tree_sum(masked)),
                    # n counts only sources that carry weight: a zero weight switches one off.
                    count.eq(_tree_sum(mask[i] & (self.weights[i] != 0)
                                       for i in range(SOURCE_SLOTS))),
                ]
                m.next = "NORMALIZE"
            with m.State("NORMALIZE"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += [
                    shift.eq(bit_length),
                    divisor.eq(weight_sum << (WEIGHT_SUM_BITS - bit_length).as_unsigned()),
                    # 2**35 / N: the leading dividend bits 2**17 are below N >= 2**18, so the
                    # division starts with that partial remainder and 18 quotient bits remain.
                    remainder.eq(1 << (_QUOTIENT_BITS - 1)),
                    quotient.eq(0),
                    step.eq(0),
                ]
                m.next = "DIVIDE"
            with m.State("DIVIDE"):
                m.d.comb += self.busy.eq(1)
                r, q = remainder, quotient
                for _ in range(self.steps_per_clock):
                    doubled = Cat(Const(0, 1), r)
                    fits = doubled >= divisor
                    r = Mux(fits, doubled - divisor, doubled)[:WEIGHT_SUM_BITS + 1]
                    q = Cat(fits, q)[:_QUOTIENT_BITS]
                m.d.sync += [remainder.eq(r), quotient.eq(q), step.eq(step + 1)]
                with m.If(step == iterations - 1):
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.busy.eq(1), self.write_en.eq(1)]
                m.d.sync += mask.eq(mask + 1)
                with m.If(mask == (1 << SOURCE_SLOTS) - 1):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "SUM"
        return m


class FusionPipeline(wiring.Component):
    """Weighted-consensus fusion of a signal stream into a decision stream (rules 1-7).

    :param pair_slots: rows of the vote board (16 on iCE40UP5K, >= 64 on ECP5-85F).  A
        signal's ``pair`` must be below it.
    :param params: reset value of the parameter registers (and of the mask table).
    :param output_depth: entries of the decision FIFO; ``signals.ready`` is low when the
        decisions already queued plus those that may still come out of S1..S5 would fill it.
        At least ``LATENCY + 1`` keeps one signal per clock when ``decisions`` is always ready.
    :param divider_steps: quotient bits per clock of the mask table refresh (1, 2, 3, 6, 9).
    :param ram_style: ``"distributed"`` maps the three memories to LUT RAM (the faster choice on
        the ECP5, whose block RAM clock-to-out takes most of a cycle), ``"block"`` or ``None``
        leaves it to Yosys.  The cycle behaviour is the same.

    Ports: ``signals`` (in), ``decisions`` (out, with backpressure), ``stale`` (a report of
    each stale signal, :data:`STALE_LATENCY` clocks after it was accepted; no backpressure),
    ``config`` (a whole parameter set, accepted once the pipeline is empty), ``params`` (the
    registers in force), ``refreshing`` (mask table being recomputed) and ``stats``.
    """

    def __init__(self, pair_slots: int = 64, *, params: FusionParams | None = None,
                 output_depth: int = 8, divider_steps: int = 2,
                 ram_style: str | None = None) -> None:
        if ram_style not in (None, "block", "distributed"):
            raise ValueError(f"ram_style must be 'block' or 'distributed', not {ram_style!r}")
        if not 1 <= pair_slots <= 1 << SignalLayout["pair"].shape.width:
            raise ValueError(f"pair_slots must be within [1, 256], not {pair_slots}")
        if output_depth < LATENCY + 1:
            raise ValueError(f"output_depth must be at least {LATENCY + 1} for one signal per "
                             f"clock, not {output_depth}")
        self.pair_slots = pair_slots
        self.reset_params = params or FusionParams()
        self.output_depth = output_depth
        self.divider_steps = divider_steps
        self.ram_style = ram_style
        super().__init__(fusion_signature())

    def elaborate(self, platform):
        m = Module()
        addr_bits = max(1, ceil_log2(self.pair_slots))

        params = Signal(FusionConfigLayout, init=config_const(self.reset_params))
        m.d.comb += self.params.eq(params)
        weights = params.weights

        # The same synchronous-read behaviour either way; "distributed" asks Yosys for LUT RAM
        # plus output registers instead of block RAM (whose clock-to-out is most of a cycle).
        attrs = {"ram_style": self.ram_style} if self.ram_style else None
        m.submodules.votes = votes = Memory(shape=RowLayout, depth=self.pair_slots, init=[],
                                            attrs=attrs)
        vote_rd = votes.read_port()
        vote_wr = votes.write_port()
        m.submodules.emit_state = emit_state = Memory(shape=EmitStateLayout,
                                                      depth=self.pair_slots, init=[], attrs=attrs)
        emit_rd = emit_state.read_port()
        emit_wr = emit_state.write_port()
        m.submodules.mask_table = mask_table = Memory(shape=MaskLayout, depth=1 << SOURCE_SLOTS,
                                                      init=mask_entries(self.reset_params),
                                                      attrs=attrs)
        mask_buy = mask_table.read_port()
        mask_sell = mask_table.read_port()
        mask_wr = mask_table.write_port()
        m.submodules.refresh = refresh = MaskTableRefresh(self.divider_steps)
        m.d.comb += [
            refresh.weights.eq(weights),
            mask_wr.addr.eq(refresh.write_addr),
            mask_wr.data.eq(refresh.write_data),
            mask_wr.en.eq(refresh.write_en),
        ]
        m.submodules.out_fifo = out_fifo = SyncFIFO(width=DecisionLayout.size,
                                                    depth=self.output_depth)

        # --- stage registers -----------------------------------------------------------------
        s1_valid, s1_stale, s1_fwd = Signal(), Signal(), Signal()
        s1 = Signal(SignalLayout)
        s1_horizon, s1_horizon_neg = Signal(TS_BITS), Signal()
        row_out = Signal(RowLayout)  # the row S1 wrote last clock: forwarded to the next S1

        s2_valid = Signal()
        s2 = Signal(SignalLayout)
        s2_live, s2_side = Signal(SOURCE_SLOTS), Signal(SOURCE_SLOTS)
        product_c = (unsigned(_WEIGHT_BITS + _CONF_SHAPE.width - CONF_FRAC_BITS))
        product_e = (signed(_WEIGHT_BITS + 1 + _EDGE_SHAPE.width))
        s2_wc = [Signal(product_c, name=f"s2_wc{i}") for i in range(SOURCE_SLOTS)]
        s2_we = [Signal(product_e, name=f"s2_we{i}") for i in range(SOURCE_SLOTS)]

        sum_c = unsigned(product_c.width + ceil_log2(SOURCE_SLOTS))
        sum_e = signed(product_e.width + ceil_log2(SOURCE_SLOTS))
        s3_valid = Signal()
        s3 = Signal(SignalLayout)
        s3_buy, s3_sell, s3_total = Signal(sum_c), Signal(sum_c), Signal(sum_c)
        s3_buy_x, s3_sell_x = Signal(sum_e), Signal(sum_e)

        s4_valid = Signal()
        s4 = Signal(SignalLayout)
        s4_side, s4_tie, s4_quorum_ok = Signal(), Signal(), Signal()
        s4_m = Signal(sum_c)
        s4_n = Signal(range(SOURCE_SLOTS + 1))
        # s + 1 and s + 16, added in S3 so that S4 starts its barrel shifts from registers.
        s4_average_shift = Signal(RECIP_SHIFT_BITS + 1)
        s4_edge_shift = Signal(RECIP_SHIFT_BITS + 1)
        s4_theta_total = Signal(PARAM_BITS["consensus_threshold"] + s3_total.shape().width)
        s4_pm_buy = Signal(sum_c.width + RECIP_MANTISSA_BITS)
        s4_pm_sell = Signal(sum_c.width + RECIP_MANTISSA_BITS)
        s4_px_buy = Signal(signed(sum_e.width + RECIP_MANTISSA_BITS + 1))
        s4_px_sell = Signal(signed(sum_e.width + RECIP_MANTISSA_BITS + 1))
        s4_cool_neg, s4_cool_horizon = Signal(), Signal(TS_BITS)

        s5_valid = Signal()
        s5 = Signal(SignalLayout)
        s5_side, s5_reset_side, s5_fwd = Signal(), Signal(), Signal()
        s5_boosted = Signal(_AVERAGE_BITS + PARAM_BITS["boost"] - BOOST_FRAC_BITS)
        s5_edge_positive = Signal()
        s5_edge = Signal(signed(_EDGE_SHAPE.width + 1))
        s5_cool_neg, s5_cool_horizon = Signal(), Signal(TS_BITS)
        state_out = Signal(EmitStateLayout)  # what S5 wrote last clock: forwarded to the next S5
        seq = Signal(DecisionLayout["seq"].shape)

        # --- flow control --------------------------------------------------------------------
        last_ts = Signal(TS_BITS)
        in_flight = (s1_valid & ~s1_stale) + s2_valid + s3_valid + s4_valid + s5_valid
        pipeline_empty = ~(s1_valid | s2_valid | s3_valid | s4_valid | s5_valid)
        # Every signal in S1..S5 may still write one decision, at most one per clock; reads only
        # free space, so this bound keeps the FIFO from overflowing.
        fifo_room = (out_fifo.level + in_flight) < self.output_depth
        # --- re-initialization after a reset ----------------------------------------------
        # Memories keep their contents through ``rst``; only configuration loads their initial
        # values.  A reset after the first one (a board's PLL losing lock, a reset from the
        # host) would otherwise leave live votes, cooldown state and a mask table computed for
        # weights no longer in force.  ``ran`` and ``reinit`` are reset-less so they see the
        # reset: once the domain has run, a reset sets ``reinit``, and after its release the
        # pipeline clears both boards row by row, then recomputes the mask table from the
        # reset weights, before it takes a signal or a parameter set -- the state of a freshly
        # configured FPGA.  The reset that ends configuration clears nothing (``ran`` is low).
        ran = Signal(reset_less=True)
        reinit = Signal(reset_less=True)
        clear_addr = Signal(range(self.pair_slots))
        m.d.sync += ran.eq(ran | ~ResetSignal())
        with m.If(ResetSignal() & ran):
            m.d.sync += reinit.eq(1)
        with m.Elif(reinit):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == self.pair_slots - 1):
                m.d.sync += reinit.eq(0)
        clearing = reinit & ~ResetSignal()

        m.d.comb += [
            self.refreshing.eq(refresh.busy | reinit),
            self.signals.ready.eq(fifo_room & ~self.config.valid & ~refresh.busy & ~reinit),
            self.config.ready.eq(pipeline_empty & ~refresh.busy & ~reinit),
        ]
        accept = self.signals.valid & self.signals.ready

        with m.If(self.config.valid & self.config.ready):
            m.d.sync += params.eq(self.config.payload)
            # The engine leaves IDLE at the same edge as the registers load, so its first sum
            # already sees the new weights; unchanged weights need no refresh.
            new_weights = self.config.payload.weights.as_value()
            m.d.comb += refresh.start.eq(new_weights != weights.as_value())
        with m.If(clearing & (clear_addr == self.pair_slots - 1)):
            m.d.comb += refresh.start.eq(1)

        # --- S0: rule 1, horizon, row read ---------------------------------------------------
        incoming = self.signals.payload
        stale_now = incoming.ts_us < last_ts
        horizon = incoming.ts_us - params.vote_ttl_us
        m.d.comb += vote_rd.addr.eq(incoming.pair[:addr_bits])
        m.d.sync += s1_valid.eq(accept)
        with m.If(accept):
            m.d.sync += [
                s1.eq(incoming),
                s1_stale.eq(stale_now),
                s1_fwd.eq(s1_valid & ~s1_stale &
                          (s1.pair[:addr_bits] == incoming.pair[:addr_bits])),
                s1_horizon.eq(horizon[:TS_BITS]),
                s1_horizon_neg.eq(horizon < 0),
            ]
            with m.If(~stale_now):
                m.d.sync += last_ts.eq(incoming.ts_us)

        # --- S1: rule 2 (vote row update), liveness, weighted products ------------------------
        old_row = Signal(RowLayout)
        new_row = Signal(RowLayout)
        m.d.comb += old_row.eq(Mux(s1_fwd, row_out, vote_rd.data))
        new_vote = Signal(VoteLayout)
        m.d.comb += [
            new_vote.valid.eq(1),
            new_vote.ts_us.eq(s1.ts_us),
            new_vote.side.eq(s1.side),
            new_vote.confidence.eq(s1.confidence),
            new_vote.edge_bps.eq(s1.edge_bps),
        ]
        for i in range(SOURCE_SLOTS):
            m.d.comb += new_row[i].eq(Mux(s1.source == i, new_vote, old_row[i]))
        s1_write = s1_valid & ~s1_stale
        m.d.comb += [
            vote_wr.addr.eq(Mux(clearing, clear_addr, s1.pair[:addr_bits])),
            vote_wr.data.eq(Mux(clearing, 0, new_row.as_value())),
            vote_wr.en.eq(s1_write | clearing),
            self.stale.valid.eq(s1_valid & s1_stale),
            self.stale.payload.eq(s1),
        ]
        m.d.sync += s2_valid.eq(s1_write)
        with m.If(s1_write):
            m.d.sync += [row_out.eq(new_row), s2.eq(s1)]
        for i in range(SOURCE_SLOTS):
            vote = new_row[i]
            # Rule 3's "t - vote.ts <= ttl" as "vote.ts >= t - ttl": one compare per vote, and
            # a negative horizon (t < ttl) keeps every vote.
            live = vote.valid & (s1_horizon_neg | (vote.ts_us >= s1_horizon))
            m.d.sync += [
                s2_live[i].eq(live),
                s2_side[i].eq(vote.side),
                s2_wc[i].eq((weights[i] * vote.confidence) >> CONF_FRAC_BITS),
                s2_we[i].eq(weights[i] * vote.edge_bps),
            ]

        # --- S2: rule 3 sums; the agreeing masks address the mask table ------------------------
        buy_mask = s2_live & ~s2_side
        sell_mask = s2_live & s2_side
        m.d.comb += [mask_buy.addr.eq(buy_mask), mask_sell.addr.eq(sell_mask)]
        m.d.sync += [
            s3_valid.eq(s2_valid),
            s3.eq(s2),
            s3_buy.eq(_tree_sum(Mux(buy_mask[i], s2_wc[i], 0) for i in range(SOURCE_SLOTS))),
            s3_sell.eq(_tree_sum(Mux(sell_mask[i], s2_wc[i], 0) for i in range(SOURCE_SLOTS))),
            s3_total.eq(_tree_sum(Mux(s2_live[i], s2_wc[i], 0) for i in range(SOURCE_SLOTS))),
            s3_buy_x.eq(_tree_sum(Mux(buy_mask[i], s2_we[i], 0) for i in range(SOURCE_SLOTS))),
            s3_sell_x.eq(_tree_sum(Mux(sell_mask[i], s2_we[i], 0) for i in range(SOURCE_SLOTS))),
        ]

        # --- S3: rule 4 (winner), rule 5 products --------------------------------------------
        sell_wins = s3_sell > s3_buy
        winner = Signal(MaskLayout)
        m.d.comb += winner.eq(Mux(sell_wins, mask_sell.data, mask_buy.data))
        m.d.sync += [
            s4_valid.eq(s3_valid),
            s4.eq(s3),
            s4_side.eq(sell_wins),
            s4_tie.eq(s3_buy == s3_sell),
            s4_m.eq(Mux(sell_wins, s3_sell, s3_buy)),
            s4_n.eq(winner.n),
            s4_average_shift.eq(winner.shift + (RECIP_BITS - CONF_FRAC_BITS)),
            s4_edge_shift.eq(winner.shift + RECIP_BITS),
            s4_quorum_ok.eq(winner.weight_sum >= params.quorum),
            s4_theta_total.eq(params.consensus_threshold * s3_total),
            s4_pm_buy.eq(s3_buy * mask_buy.data.mantissa),
            s4_pm_sell.eq(s3_sell * mask_sell.data.mantissa),
            s4_px_buy.eq(s3_buy_x * mask_buy.data.mantissa),
            s4_px_sell.eq(s3_sell_x * mask_sell.data.mantissa),
        ]
        cool_horizon = s3.ts_us - params.cooldown_us
        m.d.sync += [s4_cool_horizon.eq(cool_horizon[:TS_BITS]), s4_cool_neg.eq(cool_horizon < 0)]

        # --- S4: rule 5 (consensus, division by W_A), boost, clamp ---------------------------
        pm = Mux(s4_side, s4_pm_sell, s4_pm_buy)
        px = Mux(s4_side, s4_px_sell, s4_px_buy).as_signed()
        consensus = (s4_m << CONF_FRAC_BITS) >= s4_theta_total
        # Exact slices (mantissa <= 2**(s+16)/W_A + 1 and W_A < 2**s): M < 2*W_A (confidences
        # are below 2.0) gives average <= 2**16, and X in [-2**15*W_A, (2**15-1)*W_A] gives an
        # edge in [-2**15 - 1, 2**15 - 1] -- one bit wider than int16 on the negative side,
        # kept so that "E > 0" cannot see a wrapped value.
        average = (pm >> s4_average_shift)[:_AVERAGE_BITS]
        edge = (px >> s4_edge_shift)[:_EDGE_SHAPE.width + 1].as_signed()
        boost = params.boost[(s4_n - 1)[:ceil_log2(SOURCE_SLOTS)]]
        m.d.comb += emit_rd.addr.eq(s4.pair[:addr_bits])
        m.d.sync += [
            s5_valid.eq(s4_valid),
            s5.eq(s4),
            s5_side.eq(s4_side),
            s5_reset_side.eq(s4_tie | ~consensus | ~s4_quorum_ok),
            # Clamped in S5: this stage already holds the shift and a multiplier.
            s5_boosted.eq((average * boost) >> BOOST_FRAC_BITS),
            s5_edge.eq(edge),
            s5_edge_positive.eq(edge > 0),
            s5_fwd.eq(s5_valid & (s5.pair[:addr_bits] == s4.pair[:addr_bits])),
            s5_cool_neg.eq(s4_cool_neg),
            s5_cool_horizon.eq(s4_cool_horizon),
        ]

        # --- S5: rule 6 (side, cooldown), rule 7 (priority, seq) -----------------------------
        state_in = Signal(EmitStateLayout)
        new_state = Signal(EmitStateLayout)
        m.d.comb += state_in.eq(Mux(s5_fwd, state_out, emit_rd.data))
        # "t - last_emit < cooldown" as "last_emit > t - cooldown" (always, when t < cooldown).
        cooling = (state_in.has_side & (state_in.side == s5_side) &
                   (s5_cool_neg | (state_in.last_emit_ts > s5_cool_horizon)))
        clamped = s5_boosted > CONF_ONE
        confidence = Mux(clamped, CONF_ONE, s5_boosted[:_CONF_SHAPE.width])
        quality = (Mux(clamped, CONF_ONE >= params.min_confidence,
                       s5_boosted >= params.min_confidence) & s5_edge_positive)
        emit = s5_valid & ~s5_reset_side & quality & ~cooling
        m.d.comb += new_state.eq(state_in)
        with m.If(s5_reset_side):
            m.d.comb += new_state.has_side.eq(0)
        with m.Elif(emit):
            m.d.comb += [
                new_state.has_side.eq(1),
                new_state.side.eq(s5_side),
                new_state.last_emit_ts.eq(s5.ts_us),
            ]
        m.d.comb += [
            emit_wr.addr.eq(Mux(clearing, clear_addr, s5.pair[:addr_bits])),
            emit_wr.data.eq(Mux(clearing, 0, new_state.as_value())),
            emit_wr.en.eq(s5_valid | clearing),
        ]
        with m.If(s5_valid):
            m.d.sync += state_out.eq(new_state)
        # Only an emitted decision's priority matters, and its edge is then in [1, 2**15 - 1].
        # The multiplier takes the unclamped confidence straight from its register; a clamped
        # confidence (1.0 = 2**15) makes the product a shift instead.
        edge_magnitude = s5_edge.as_unsigned()[:_EDGE_SHAPE.width - 1]
        priority_shift = CONF_FRAC_BITS - PRIORITY_FRAC_BITS
        priority = Mux(clamped, edge_magnitude << (CONF_FRAC_BITS - priority_shift),
                       (s5_boosted[:_CONF_SHAPE.width] * edge_magnitude) >> priority_shift)
        decision = Signal(DecisionLayout)
        m.d.comb += [
            decision.ts_us.eq(s5.ts_us),
            decision.pair.eq(s5.pair),
            decision.side.eq(s5_side),
            decision.confidence.eq(confidence),
            decision.edge_bps.eq(s5_edge[:_EDGE_SHAPE.width]),
            decision.priority.eq(Mux(priority > PRIORITY_MAX, PRIORITY_MAX, priority)),
            decision.seq.eq(seq),
            out_fifo.w_data.eq(decision),
            out_fifo.w_en.eq(emit),
        ]
        with m.If(emit):
            m.d.sync += seq.eq(seq + 1)

        # --- output and stats ----------------------------------------------------------------
        m.d.comb += [
            self.decisions.valid.eq(out_fifo.r_rdy),
            self.decisions.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.decisions.ready),
        ]
        stats = self.stats
        m.d.sync += [
            stats.signals_in.eq(stats.signals_in + accept),
            stats.stale_drops.eq(stats.stale_drops + (s1_valid & s1_stale)),
            stats.decisions_out.eq(stats.decisions_out +
                                   (self.decisions.valid & self.decisions.ready)),
        ]
        return m


def verilog_ports(component: wiring.Component) -> list[Signal]:
    """Port signals for ``verilog.convert``: an always-ready stream's constant ``ready`` is not a
    port."""
    return [value for _path, _member, value in
            ((p, mb, Value.cast(v)) for p, mb, v in component.signature.flatten(component))
            if isinstance(value, Signal) and len(value) > 0]


def verilog_source(pair_slots: int = 64, name: str = "fusion_pipeline", **kwargs) -> str:
    """Verilog of a :class:`FusionPipeline` (for Verilator, cocotb and the synthesis report)."""
    from amaranth.back import verilog
    fusion = FusionPipeline(pair_slots, **kwargs)
    return verilog.convert(fusion, name=name, ports=verilog_ports(fusion), emit_src=False)
