"""The fault campaign's stimulus: valid commands interleaved with corruptions, and what the
link must answer (from :class:`model.LinkModel`).

Every valid command is sent after a 0x00 (the host's way of making sure a frame follows a
delimiter), so whatever garbage came before, it must be processed.  Corruptions:

=============  =============================================================================
bitflip        1-3 bits flipped in a valid encoded frame
drop           1-3 bytes removed from a valid encoded frame
insert         1-3 random bytes inserted into a valid encoded frame
garbage        a run of 1-64 random bytes (zeros included: several segments)
oversize       257-600 non-zero bytes, or frames glued together without delimiters
truncated      a well-formed COBS frame of 0-3 bytes
bad_crc        a well-formed COBS frame whose CRC is wrong
bad_type       a valid frame of no command type
bad_length     a valid command whose body length does not fit
bad_value      a valid command with a bad register address, read-only register, value above
               its maximum, pair slot out of range, reserved bits set, or a pop count of 0
=============  =============================================================================

Counters depend on timing only where a snapshot is taken, so STATS commands and stats clears
are only sent between two *barriers* (the harness waits until the link is quiet), where the
counts are exact.

The same campaign runs against the stub datapath (:class:`stub.LinkHarness`, the default
model) and against the product core (pass a :class:`model.LinkModel` over a
:class:`model.ReferenceDatapath`).  Signals follow a per-pair trend on a few hot pairs, so
that sources agree often enough for the fusion engine to decide, fill the queue and evict.
"""

from __future__ import annotations

import functools
import random
from collections import Counter

from amaranth.back import verilog
from cobs import cobs

from sigfuse import protocol as p
from sigfuse.boards.common import get_board
from sigfuse.contract import SOURCE_SLOTS, Signal
from sigfuse.gateware.core import core_parameters
from sigfuse.protocol import Frame, FrameType
from sigfuse.regmap import (BY_NAME, REGISTERS, STATS_CONTROL_CLEAR, STATS_CONTROL_SNAPSHOT,
                            Access)
from sigfuse.sim.top import BARRIER, DUT, core_verilog, stimulus_hex

from .model import UPTIME, LinkModel, ReferenceDatapath
from .stub import LinkHarness

__all__ = ["BARRIER", "CORE", "Campaign", "check_replies", "mask_uptime", "product_core_model",
           "product_core_verilog", "stub_verilog"]

# The uptime words count clocks, which the model cannot know: the campaign does not read them
# (the STATS replies still carry them; the comparison skips them there).
_READABLE = [r.addr for r in REGISTERS if r.addr not in UPTIME]
_WRITABLE = [r for r in REGISTERS if r.access == Access.RW]
_READ_ONLY = [r.addr for r in REGISTERS if r.access == Access.RO]
_COMMANDS = {int(t) for t in FrameType if t < 0x80}
_STATS_CONTROL = BY_NAME["stats_control"].addr


class Campaign:
    """Stimulus and expected replies; ``model`` is the link's model (default: the stub's)."""

    def __init__(self, seed: int, model: LinkModel | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.model = model if model is not None else LinkModel()
        self.pair_slots = self.model.pair_slots
        self.hot_pairs = self.rng.sample(range(self.pair_slots), min(4, self.pair_slots))
        self.trend = [self.rng.randrange(2) for _ in range(self.pair_slots)]
        self.stim: list[int] = []
        self.expected: list[Frame] = []
        self.injected: Counter[str] = Counter()
        self.valid_sent = 0
        self.seq = 0
        self.ts = 1000

    # --- plumbing -------------------------------------------------------------------------------

    def _play(self, data: bytes) -> None:
        self.stim += data
        self.expected += self.model.feed(data)

    def barrier(self) -> None:
        self.stim.append(BARRIER)

    def send(self, frame: Frame) -> None:
        self.valid_sent += 1
        self._play(b"\x00" + frame.encode())

    def next_seq(self) -> int:
        roll = self.rng.random()
        if roll < 0.03:
            pass                                               # a retransmission
        elif roll < 0.05:
            self.seq = (self.seq + self.rng.randrange(2, 200)) % 256  # frames lost
        else:
            self.seq = (self.seq + 1) % 256
        return self.seq

    # --- valid commands -------------------------------------------------------------------------

    def signal(self, *, bad_pair: bool = False) -> Signal:
        rng = self.rng
        if rng.random() < 0.1:
            ts = max(0, self.ts - rng.randrange(1, 500))    # stale
        else:
            self.ts += rng.randrange(0, 300)
            ts = self.ts
        if bad_pair:
            pair = rng.randrange(self.pair_slots, 256)
        elif rng.random() < 0.7:
            pair = rng.choice(self.hot_pairs)
        else:
            pair = rng.randrange(self.pair_slots)
        trend = pair % self.pair_slots
        if rng.random() < 0.02:
            self.trend[trend] ^= 1
        side = self.trend[trend] if rng.random() < 0.85 else rng.randrange(2)
        confidence = rng.randrange(16384, 32769) if rng.random() < 0.8 else rng.randrange(0, 32769)
        return Signal(ts, rng.randrange(SOURCE_SLOTS), pair, side, confidence,
                      rng.randrange(-100, 400))

    def write_value(self, reg) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.4 and reg.param is not None:
            return reg.reset             # back to the default: fusion keeps deciding
        return rng.choice([0, reg.max_value, rng.randrange(reg.max_value + 1)])

    def command(self) -> Frame:
        """A random valid, executable command."""
        rng, seq = self.rng, self.next_seq()
        kind = rng.choices(["ping", "read", "write", "push", "pop"], [1, 2, 2, 4, 2])[0]
        if kind == "ping":
            return p.ping(seq, rng.randbytes(rng.randrange(0, 48)))
        if kind == "read":
            return p.reg_read(seq, [rng.choice(_READABLE) for _ in range(rng.randrange(1, 9))])
        if kind == "write":
            regs = [rng.choice(_WRITABLE) for _ in range(rng.randrange(1, 5))]
            return p.reg_write(seq, [(r.addr, self.write_value(r)) for r in regs])
        if kind == "push":
            n = rng.choice([1, 2, 5, p.MAX_SIGNALS]) if rng.random() < 0.5 else rng.randrange(1, p.MAX_SIGNALS + 1)
            return p.push_signals(seq, [self.signal() for _ in range(n)])
        return p.pop(seq, rng.randrange(1, 7))

    def refused_command(self, kind: str) -> Frame:
        """A valid frame that the dispatcher must refuse (and count)."""
        rng, seq = self.rng, self.next_seq()
        if kind == "bad_type":
            t = rng.choice([t for t in range(256) if t not in _COMMANDS])
            return Frame(t, seq, rng.randbytes(rng.randrange(0, 20)))
        if kind == "bad_length":
            choice = rng.randrange(5)
            if choice == 0:
                return Frame(FrameType.REG_READ, seq, rng.randbytes(rng.choice([0, 1, 3, 5, 84])))
            if choice == 1:
                return Frame(FrameType.REG_WRITE, seq, rng.randbytes(rng.choice([0, 5, 7, 11, 248])))
            if choice == 2:
                return Frame(FrameType.PUSH_SIGNALS, seq, rng.randbytes(rng.choice([0, 13, 15, 27])))
            if choice == 3:
                return Frame(FrameType.POP, seq, rng.randbytes(rng.choice([0, 2, 3])))
            return Frame(FrameType.STATS, seq, rng.randbytes(rng.randrange(1, 5)))
        # bad_value
        choice = rng.randrange(6)
        if choice == 0:
            addrs = [rng.choice(_READABLE) for _ in range(3)]
            addrs.insert(rng.randrange(4), rng.choice([0x0008, 0x0012, 0x003F, 0x0060, 0xFFFF]))
            return p.reg_read(seq, addrs)
        if choice == 1:
            writes = [(r.addr, self.write_value(r)) for r in rng.sample(_WRITABLE, 2)]
            writes.insert(rng.randrange(3), (rng.choice(_READ_ONLY), rng.randrange(1 << 32)))
            return p.reg_write(seq, writes)
        if choice == 2:
            reg = rng.choice([r for r in _WRITABLE if r.max_value < (1 << 32) - 1])
            return p.reg_write(seq, [(reg.addr, rng.randrange(reg.max_value + 1, 1 << 32))])
        if choice == 3:
            n = rng.randrange(1, p.MAX_SIGNALS + 1)
            signals = [self.signal() for _ in range(n)]
            signals[rng.randrange(n)] = self.signal(bad_pair=True)
            return p.push_signals(seq, signals)
        if choice == 4:
            body = bytearray(p.pack_signals([self.signal() for _ in range(2)]))
            body[13 + p.SIGNAL_RECORD_BYTES * rng.randrange(2)] |= 0x10 << rng.randrange(4)
            return Frame(FrameType.PUSH_SIGNALS, seq, bytes(body))
        return Frame(FrameType.POP, seq, b"\x00")

    # --- corruptions ----------------------------------------------------------------------------

    def corruption(self) -> None:
        rng = self.rng
        kind = rng.choices(["bitflip", "drop", "insert", "garbage", "oversize", "truncated",
                            "bad_crc", "bad_type", "bad_length", "bad_value"],
                           [20, 12, 12, 12, 4, 6, 8, 8, 8, 10])[0]
        self.injected[kind] += 1
        if kind in ("bad_type", "bad_length", "bad_value"):
            self.send(self.refused_command(kind))
            self.valid_sent -= 1
            return
        wire = bytearray(self.command().encode()[:-1])  # without its delimiter
        if kind == "bitflip":
            for _ in range(rng.randrange(1, 4)):
                wire[rng.randrange(len(wire))] ^= 1 << rng.randrange(8)
        elif kind == "drop":
            for _ in range(min(rng.randrange(1, 4), len(wire) - 1)):
                del wire[rng.randrange(len(wire))]
        elif kind == "insert":
            for _ in range(rng.randrange(1, 4)):
                wire.insert(rng.randrange(len(wire) + 1), rng.randrange(256))
        elif kind == "garbage":
            wire = bytearray(rng.randbytes(rng.randrange(1, 65)))
        elif kind == "oversize":
            if rng.random() < 0.5:
                wire = bytearray(rng.randrange(1, 256) for _ in range(rng.randrange(p.MAX_ENCODED + 1, 600)))
            else:
                while len(wire) <= p.MAX_ENCODED:
                    wire += self.command().encode()[:-1]
        elif kind == "truncated":
            wire = bytearray(cobs.encode(rng.randbytes(rng.randrange(0, p.MIN_FRAME))))
        elif kind == "bad_crc":
            payload = bytearray(self.command().payload())
            payload[-rng.randrange(1, 3)] ^= rng.randrange(1, 256)
            wire = bytearray(cobs.encode(bytes(payload)))
        self._play(bytes(wire) + b"\x00")

    # --- the whole campaign ---------------------------------------------------------------------

    def stats_barrier(self, *, clear: bool = False) -> None:
        self.barrier()
        if clear:
            self.send(p.reg_write(self.next_seq(),
                                  [(_STATS_CONTROL, STATS_CONTROL_SNAPSHOT | STATS_CONTROL_CLEAR)]))
            self.send(p.reg_read(self.next_seq(), [r.addr for r in REGISTERS
                                                  if r.group == "stats" and r.addr not in UPTIME]))
            self.barrier()
        self.send(p.stats_snapshot(self.next_seq()))
        self.barrier()

    def build(self, corruptions: int, *, stats_every: int = 1000) -> None:
        steps = 0
        while sum(self.injected.values()) < corruptions:
            for _ in range(self.rng.choice([0, 1, 1, 2, 2, 3, 4])):
                self.corruption()
            self.send(self.command())
            steps += 1
            if steps % stats_every == 0:
                self.stats_barrier(clear=steps // stats_every == 3)
        self.stats_barrier()

    def stimulus_hex(self) -> str:
        return stimulus_hex(self.stim)

    @property
    def byte_count(self) -> int:
        return sum(1 for e in self.stim if e != BARRIER)


# --- the two tops and the check of their replies ------------------------------------------------

#: The product core of the iCEBreaker build (16 pair slots, 32 queue entries) with its byte
#: streams in place of the UART, as the virtual board runs it.
CORE = core_parameters("icebreaker", get_board("icebreaker").sync_hz, None)


@functools.cache
def stub_verilog() -> str:
    return verilog.convert(LinkHarness(), name=DUT, emit_src=False)


@functools.cache
def _product_core() -> tuple[str, int]:
    return core_verilog(CORE, DUT)


def product_core_verilog() -> str:
    return _product_core()[0]


def product_core_model() -> LinkModel:
    """The model of the core :func:`product_core_verilog` gives (with its build ID)."""
    return LinkModel(build_id=_product_core()[1], clk_hz=CORE.clk_hz, uart_divisor=0,
                     datapath=ReferenceDatapath(pair_slots=CORE.pair_slots,
                                                capacity=CORE.queue_capacity),
                     pair_slots=CORE.pair_slots, queue_capacity=CORE.queue_capacity)


def mask_uptime(frame: p.Frame) -> p.Frame:
    """``frame`` with the uptime words of a STATS reply zeroed (the model cannot know them)."""
    if frame.type != FrameType.STATS_REPLY:
        return frame
    reply = p.parse_reply(frame)
    regs = tuple((a, 0 if a in UPTIME else v) for a, v in reply.registers)
    return p.reply_frame(p.Reply(reply.kind, reply.seq, reply.cmd_type, reply.cmd_seq, registers=regs))


def check_replies(wire: bytes, expected: list[p.Frame], seed: int) -> list[p.Frame]:
    """Every byte the link sent forms well-formed frames equal to ``expected``, in order."""
    receiver = p.Deframer()
    got = receiver.feed(wire)
    assert receiver.errors == [], f"the link sent malformed frames: {receiver.errors[:3]} (seed {seed})"
    for i, (g, e) in enumerate(zip(got, expected)):
        assert mask_uptime(g) == mask_uptime(e), \
            f"reply {i} (seed {seed}, rerun with SIGFUSE_SEED={seed}):\n got      {g}\n expected {e}"
    assert len(got) == len(expected), \
        f"{len(got)} reply frames, expected {len(expected)} (seed {seed})"
    uptimes = [dict(p.parse_reply(f).registers)[min(UPTIME)] for f in got
               if f.type == FrameType.STATS_REPLY]
    assert uptimes == sorted(uptimes) and (not uptimes or uptimes[0] > 0)
    return got
