"""The byte-level link (deframer, dispatcher, register file, framer) with the stub datapath in
Amaranth's simulator: every reply compared byte for byte with the model, and the semantics
asserted directly.  Also the register file's snapshot coherence and the port agreements with
the fusion pipeline and the queue."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import ClockDomain, Fragment, Module
from amaranth.sim import DomainReset, Simulator

from sigfuse import protocol as p
from sigfuse.contract import DropReason, FusionParams, Signal
from sigfuse.protocol import AckStatus, ErrorCode, Frame, FrameType, ResultKind
from sigfuse.regmap import (BY_NAME, MAGIC, REGISTERS, STATS_CONTROL_CLEAR, STATS_CONTROL_SNAPSHOT,
                            VERSION, Access, StatKind, stats_registers)
from sigfuse.gateware.regfile import (PRE_COUNTER_BITS, FusionConfigLayout, GaugesLayout,
                                      RegisterFile, StatsEventsLayout, config_value)

from .model import UPTIME, LinkModel
from .simhelp import rng_for, seeds
from .stub import CAPACITY, PAIR_SLOTS, LinkHarness, UartLinkHarness

A = {r.name: r.addr for r in REGISTERS}
#: No scenario here needs more: a hang fails instead of running forever.
DEADLINE_CLOCKS = 40_000


def run_link(steps: list[bytes], *, model: LinkModel | None = None) -> tuple[list[list[Frame]], dict]:
    """Send each step's bytes, wait for the replies the model expects, compare them all
    (uptime aside).  Returns the replies per step and run facts."""
    model = model or LinkModel()
    expected = [model.feed(step) for step in steps]
    total = sum(len(e) for e in expected)
    dut = LinkHarness()
    got: list[Frame] = []
    facts = {"link_errors": 0, "clocks": 0}

    async def sender(ctx):
        wanted = 0
        for step, replies in zip(steps, expected):
            for b in step:
                ctx.set(dut.rx_bytes.valid, 1)
                ctx.set(dut.rx_bytes.payload, b)
                await ctx.tick().until(dut.rx_bytes.ready)
            ctx.set(dut.rx_bytes.valid, 0)
            wanted += len(replies)
            for _ in range(20_000):
                if len(got) >= wanted:
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no reply: {len(got)} of {wanted} frames after {step[:16].hex()}")
        await ctx.tick().repeat(50)   # nothing more may come
        facts["done"] = True

    async def receiver(ctx):
        buffer = bytearray()
        ctx.set(dut.tx_bytes.ready, 1)
        while True:
            _, _, valid, b, error = await ctx.tick().sample(dut.tx_bytes.valid, dut.tx_bytes.payload,
                                                            dut.link_error)
            facts["clocks"] += 1
            facts["link_errors"] += error
            if valid:
                if b == 0:
                    got.append(p.decode_frame(bytes(buffer)))
                    buffer.clear()
                else:
                    buffer.append(b)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(sender)
    sim.add_process(receiver)
    sim.run_until(DEADLINE_CLOCKS * 1e-6)
    assert facts.get("done"), f"the link hung: {len(got)} of {total} reply frames"
    assert len(got) == total, f"{len(got)} reply frames, the model expects {total} (hung?)"
    flat = [f for e in expected for f in e]
    for i, (g, e) in enumerate(zip(got, flat)):
        if g.type in (FrameType.STATS_REPLY, FrameType.REG_READ_REPLY):
            g, e = (p.reply_frame(p.Reply(**{**vars(p.parse_reply(f)), "registers": tuple(
                (a, 0 if a in UPTIME else v) for a, v in p.parse_reply(f).registers)}))
                    for f in (g, e))
        assert g == e, f"reply {i}: got {g}, the model says {e}"
    out, i = [], 0
    for e in expected:
        out.append(got[i:i + len(e)])
        i += len(e)
    return out, facts


def replies(frames: list[Frame]) -> list[p.Reply]:
    return [p.parse_reply(f) for f in frames]


# --- registers --------------------------------------------------------------------------------

def test_registers_identity_write_read_back_and_refusals():
    rng = random.Random(21)
    writable = [r for r in REGISTERS if r.access == Access.RW]
    values = {r.addr: rng.randrange(r.max_value + 1) for r in writable}
    steps = [
        p.reg_read(1, [A[n] for n in ("magic", "version", "build_id", "clk_hz", "pair_slots",
                                       "queue_capacity", "uart_divisor", "max_frame")]).encode(),
        p.reg_write(2, list(values.items())[:p.MAX_REGS]).encode(),
        p.reg_read(3, list(values)).encode(),
        p.reg_read(4, [A["stats_control"]]).encode(),
        # One bad entry refuses the whole frame: scratch keeps its value.
        p.reg_write(5, [(A["scratch"], 0x1234), (0x0008, 1)]).encode(),
        p.reg_write(6, [(A["scratch"], 0x1234), (A["magic"], 1)]).encode(),
        p.reg_write(7, [(A["scratch"], 0x1234), (A["quorum"], 32769)]).encode(),
        p.reg_read(8, [A["scratch"], 0xFFFF]).encode(),
        p.reg_read(9, [A["scratch"]]).encode(),
    ]
    out, facts = run_link(steps)
    identity = dict(replies(out[0])[0].registers)
    assert identity == {A["magic"]: MAGIC, A["version"]: VERSION, A["build_id"]: 0x5EED0001,
                        A["clk_hz"]: 12_000_000, A["pair_slots"]: PAIR_SLOTS,
                        A["queue_capacity"]: CAPACITY, A["uart_divisor"]: 0,
                        A["max_frame"]: p.MAX_FRAME}
    assert replies(out[1])[0].status == AckStatus.DONE
    assert dict(replies(out[2])[0].registers) == values
    assert replies(out[3])[0].registers == ((A["stats_control"], 0),)
    errors = [replies(out[i])[0] for i in (4, 5, 6, 7)]
    assert [(e.kind, e.error, e.detail) for e in errors] == [
        (FrameType.ERROR, ErrorCode.BAD_ADDRESS, 0x0008),
        (FrameType.ERROR, ErrorCode.READ_ONLY, A["magic"]),
        (FrameType.ERROR, ErrorCode.BAD_VALUE, A["quorum"]),
        (FrameType.ERROR, ErrorCode.BAD_ADDRESS, 0xFFFF)]
    assert [(e.cmd_type, e.cmd_seq) for e in errors] == [(3, 5), (3, 6), (3, 7), (2, 8)]
    assert replies(out[8])[0].registers == ((A["scratch"], values[A["scratch"]]),)
    assert facts["link_errors"] == 4


def test_parameter_writes_reach_the_datapath_at_the_end_of_the_frame():
    # The stub emits only when confidence >= min_confidence (a register).
    signal = Signal(1000, 1, 3, 0, 10_000, 5)
    steps = [
        p.push_signals(1, [signal]).encode(),                       # 10 000 < 19 661: nothing
        p.reg_write(2, [(A["min_confidence"], 10_000), (A["scratch"], 7)]).encode(),
        p.push_signals(3, [signal._replace(ts_us=1001)]).encode(),  # now it emits
    ]
    out, _ = run_link(steps)
    assert [r.kind for r in replies(out[0])] == [FrameType.PUSH_ACK]
    first, ack = replies(out[2])
    assert first.kind == FrameType.RESULTS and first.results[0].kind == ResultKind.DECISION
    assert first.results[0].record.confidence == 10_000 and ack.kind == FrameType.PUSH_ACK


# --- commands ---------------------------------------------------------------------------------

def test_bad_types_lengths_values_and_duplicates():
    good = [Signal(2000 + i, i % 8, i, 0, 30_000, 10) for i in range(3)]
    bad_pair = good[:1] + [Signal(2005, 1, PAIR_SLOTS, 0, 30_000, 10)] + good[1:]
    steps = [
        p.ping(1, b"\x00\x01\x00" + bytes(range(1, 200))).encode(),
        Frame(0x42, 2, b"??").encode(),
        Frame(FrameType.REG_READ, 3, b"\x00").encode(),
        Frame(FrameType.PUSH_SIGNALS, 4, bytes(15)).encode(),
        Frame(FrameType.POP, 5, b"").encode(),
        Frame(FrameType.STATS, 6, b"x").encode(),
        Frame(FrameType.REG_READ, 7, bytes(2 * (p.MAX_REGS + 1))).encode(),
        p.push_signals(8, bad_pair).encode(),
        Frame(FrameType.POP, 9, b"\x00").encode(),
        p.push_signals(10, good).encode(),
        p.push_signals(10, good).encode(),                # retransmission: not executed again
        p.reg_read(11, [A["scratch"]]).encode(),
        p.reg_read(11, [A["scratch"]]).encode(),          # reads run again
        p.ping(200, b"").encode(),                        # a seq gap
        p.stats_snapshot(201).encode(),
    ]
    out, facts = run_link(steps)
    r = [replies(o) for o in out]
    assert r[0][0].kind == FrameType.PONG and r[0][0].data == b"\x00\x01\x00" + bytes(range(1, 200))
    assert [(x[0].error, x[0].detail) for x in r[1:9]] == [
        (ErrorCode.UNKNOWN_TYPE, 0), (ErrorCode.BAD_LENGTH, 1), (ErrorCode.BAD_LENGTH, 15),
        (ErrorCode.BAD_LENGTH, 0), (ErrorCode.BAD_LENGTH, 1), (ErrorCode.BAD_LENGTH, 84),
        (ErrorCode.BAD_VALUE, 1), (ErrorCode.BAD_VALUE, 0)]
    assert [x.kind for x in r[9]] == [FrameType.RESULTS, FrameType.PUSH_ACK]
    assert [x.kind for x in r[10]] == [FrameType.PUSH_ACK] and r[10][0].status == AckStatus.DUPLICATE
    assert r[11][0].registers == r[12][0].registers
    stats = dict(r[14][0].registers)
    assert stats[A["frames_unknown_type"]] == 1 and stats[A["frames_bad_length"]] == 5
    assert stats[A["frames_bad_value"]] == 2 and stats[A["frames_duplicate"]] == 1
    assert stats[A["frames_seq_gap"]] == 1
    assert stats[A["signals_in"]] == 3, "the refused batch and the retransmission ran nothing"
    assert stats[A["frames_ok"]] == len(steps)
    # The error LED strobe: 8 refusals, the retransmission and the seq gap.
    assert facts["link_errors"] == 10


def test_results_in_order_across_frames_and_pops():
    # 17 signals that all emit into a queue of 4: decisions, then evictions (odd sources) and
    # rejections (even ones); one stale signal; then pops beyond empty.
    signals = [Signal(5000 + i, i % 8, i % PAIR_SLOTS, i & 1, 20_000 + i, 7) for i in range(p.MAX_SIGNALS)]
    signals[9] = signals[9]._replace(ts_us=1)                              # stale
    steps = [p.push_signals(1, signals).encode(), p.pop(2, CAPACITY + 2).encode()]
    out, _ = run_link(steps)
    push = replies(out[0])
    assert [x.kind for x in push] == [FrameType.RESULTS] * 3 + [FrameType.PUSH_ACK]
    results = [res for x in push[:-1] for res in x.results]
    assert [len(x.results) for x in push[:-1]] == [12, 12, len(results) - 24]
    kinds = [res.kind for res in results]
    assert kinds[:4] == [ResultKind.DECISION] * 4
    assert ResultKind.STALE in kinds and ResultKind.EVICTED in kinds and ResultKind.REJECTED in kinds
    stale = results[kinds.index(ResultKind.STALE)]
    assert stale.record == signals[9]
    for i, kind in enumerate(kinds):
        if kind in (ResultKind.EVICTED, ResultKind.REJECTED):
            assert kinds[i - 1] == ResultKind.DECISION, "a drop follows the decision that caused it"
    seqs = [x.seq for o in out for x in replies(o)]
    assert seqs == list(range(len(seqs))), "the board numbers its frames"
    pops = replies(out[1])
    popped = [res.kind for res in pops[0].results]
    assert popped == [ResultKind.POPPED] * CAPACITY + [ResultKind.POPPED_EMPTY] * 2
    assert pops[-1].kind == FrameType.POP_ACK


def test_garbage_is_counted_and_the_link_resynchronizes():
    good = p.ping(1, b"ok").encode()
    payload = p.ping(2, b"crc").payload()
    steps = [
        b"\x13\x37" + b"\x00" + good,                                    # bad COBS, then a frame
        b"\x11" * 300 + b"\x00" + p.ping(3, b"").encode(),                # oversize
        b"\x01\x00" + bytes([3]) + b"\x01\x02" + b"\x00" + p.ping(4).encode(),   # truncated x2
        bytes([len(payload) + 1]) + payload[:-1] + bytes([payload[-1] ^ 4]) + b"\x00"
        + p.stats_snapshot(5).encode(),                                   # bad CRC
    ]
    out, facts = run_link(steps)
    stats = dict(replies(out[3])[0].registers)
    assert (stats[A["frames_bad_cobs"]], stats[A["frames_oversize"]], stats[A["frames_truncated"]],
            stats[A["frames_bad_crc"]], stats[A["frames_ok"]]) == (1, 1, 2, 1, 4)
    assert stats[A["frames_seq_gap"]] == 1     # seq 2 was the frame with the bad CRC
    assert facts["link_errors"] == 5 + 1


def test_stats_snapshot_and_clear_through_the_link():
    steps = [
        p.push_signals(1, [Signal(100, 1, 1, 0, 30_000, 3)]).encode(),
        p.reg_write(2, [(A["stats_control"], STATS_CONTROL_SNAPSHOT | STATS_CONTROL_CLEAR)]).encode(),
        p.reg_read(3, [A["frames_ok"], A["signals_in"], A["decisions_out"], A["uptime_clocks_lo"]]).encode(),
        p.stats_snapshot(4).encode(),
    ]
    out, _ = run_link(steps)
    before = dict(replies(out[2])[0].registers)
    assert before[A["frames_ok"]] == 2 and before[A["signals_in"]] == 1 and before[A["decisions_out"]] == 1
    after = dict(replies(out[3])[0].registers)
    # Since the clear: the REG_READ and the STATS frames; the datapath counters restarted.
    assert after[A["frames_ok"]] == 2 and after[A["signals_in"]] == 0
    assert after[A["queue_occupancy"]] == 1 and after[A["queue_high_water"]] == 1
    assert after[A["uptime_clocks_lo"]] > before[A["uptime_clocks_lo"]] > 0


def test_through_the_uart_pins():
    """Commands at 3 Mbaud from 12 MHz (divisor 4) through LinkCore's own UART; a line break in
    between is one framing error, counted, and the link carries on."""
    dut = UartLinkHarness(4)
    signal = Signal(10, 2, 5, 1, 30_000, 12)
    frames = [p.ping(1, b"\x00uart\x00"), p.push_signals(2, [signal]), p.stats_snapshot(3)]
    got: list[Frame] = []

    async def host(ctx):
        for i, frame in enumerate(frames):
            if i == 2:
                ctx.set(dut.line_break, 1)
                await ctx.tick().repeat(12 * 4)
                ctx.set(dut.line_break, 0)
                await ctx.tick().repeat(4 * 4)
            for b in b"\x00" + frame.encode():
                ctx.set(dut.host_tx.valid, 1)
                ctx.set(dut.host_tx.payload, b)
                await ctx.tick().until(dut.host_tx.ready)
            ctx.set(dut.host_tx.valid, 0)
            wanted = {0: 1, 1: 3, 2: 4}[i]
            for _ in range(40_000):
                if len(got) >= wanted:
                    break
                await ctx.tick()
            else:
                raise AssertionError(f"no reply to {frame}")

    async def receiver(ctx):
        buffer = bytearray()
        ctx.set(dut.host_rx.ready, 1)
        while True:
            # No .until() in a background process: it cannot be closed cleanly at the end.
            _, _, valid, b = await ctx.tick().sample(dut.host_rx.valid, dut.host_rx.payload)
            if not valid:
                continue
            if b == 0:
                got.append(p.decode_frame(bytes(buffer)))
                buffer.clear()
            else:
                buffer.append(b)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_process(receiver)
    sim.run()
    r = replies(got)
    assert r[0].kind == FrameType.PONG and r[0].data == b"\x00uart\x00"
    assert r[1].kind == FrameType.RESULTS and r[1].results[0].record.pair == 5
    assert r[2].kind == FrameType.PUSH_ACK
    stats = dict(r[3].registers)
    assert stats[A["uart_rx_errors"]] == 1 and stats[A["uart_rx_overrun"]] == 0
    assert stats[A["frames_ok"]] == 3 and stats[A["signals_in"]] == 1
    assert sum(stats[A[n]] for n in ("frames_bad_crc", "frames_bad_cobs", "frames_truncated",
                                     "frames_oversize")) == 0


# --- register file alone ----------------------------------------------------------------------

@pytest.mark.parametrize("bus_stage", (False, True))
@pytest.mark.parametrize("seed", seeds((31,)))
def test_snapshot_is_coherent_and_clear_loses_nothing(seed, bus_stage):
    """Events on random counters and new gauge values every clock; snapshots (half of them with
    clear) at random clocks, then every stats register read, while events go on (and the
    register file runs its rounds, busy).  The uptime registers name the snapshot's clock; the
    counters read exactly the events of the clocks before it (since the last clear), the gauges
    their values in it (with ``bus_stage``, the clock after the request: its accesses run a
    clock late).  So nothing is counted twice or lost across clears."""
    rng = rng_for(seed, "regfile snapshot")
    dut = RegisterFile(bus_stage=bus_stage)
    counters = [r for r in stats_registers() if r.stat == StatKind.COUNTER]
    gauges = [r for r in stats_registers() if r.stat == StatKind.GAUGE]
    uptime = sorted((r for r in stats_registers() if r.stat == StatKind.UPTIME), key=lambda r: r.part)
    control = BY_NAME["stats_control"].addr
    checked = []                  # snapshots whose every register was compared

    async def bench(ctx):
        history = []              # per clock: (events, gauges) driven in it
        clock = 0

        def drive():
            events = {r.name: int(rng.random() < 0.4) for r in counters}
            values = {r.name: rng.randrange(1 << 32) for r in gauges}
            for name, hit in events.items():
                ctx.set(getattr(dut.events, name), hit)
            for name, value in values.items():
                ctx.set(getattr(dut.gauges, name), value)
            history.append((events, values))

        async def tick():
            nonlocal clock
            drive()
            await ctx.tick()
            clock += 1

        async def read(addr: int) -> int:
            while ctx.get(dut.bus.busy):
                await tick()
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.r_stb, 1)
            await tick()
            ctx.set(dut.bus.r_stb, 0)
            await tick()                          # r_data: two clocks after r_stb
            return ctx.get(dut.bus.r_data)

        def counted(first: int, last: int) -> dict[str, int]:
            return {r.name: sum(history[c][0][r.name] for c in range(first, last))
                    for r in counters}

        while ctx.get(dut.bus.busy):              # the memory is restored after reset
            await tick()
        since = 0                                 # the last clear's instant
        most = 0                                  # the largest count a snapshot read
        for round_ in range(8):
            # The first gap alone holds more events per counter than a pre-counter can.
            for _ in range(800 if round_ == 0 else rng.randrange(1, 60)):
                await tick()
            while ctx.get(dut.bus.busy):
                await tick()
            clear = round_ < 7 and rng.random() < 0.5
            ctx.set(dut.bus.addr, control)
            ctx.set(dut.bus.w_data, STATS_CONTROL_SNAPSHOT | (STATS_CONTROL_CLEAR if clear else 0))
            ctx.set(dut.bus.w_stb, 1)
            request = clock
            await tick()
            ctx.set(dut.bus.w_stb, 0)
            assert ctx.get(dut.bus.busy), "busy from the request on"
            while ctx.get(dut.bus.busy):
                await tick()
            values = {r.name: await read(r.addr) for r in stats_registers()}
            instant = values[uptime[0].name] | values[uptime[1].name] << 32
            assert instant == request + bus_stage
            want = counted(since, instant)
            for r in counters:
                assert values[r.name] == want[r.name], (r.name, values[r.name], want[r.name])
            most = max(most, *want.values())
            for r in gauges:
                assert values[r.name] == history[instant][1][r.name], r.name
            checked.append(instant)
            if clear:
                since = instant
        assert most >= 1 << PRE_COUNTER_BITS

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) == 8


def test_clear_alone_zeroes_the_counters_and_keeps_later_events():
    """STATS_CONTROL_CLEAR without SNAPSHOT: the counters restart from its instant; the stats
    registers keep the last snapshot."""
    dut = RegisterFile()
    control = BY_NAME["stats_control"].addr
    ok = BY_NAME["frames_ok"]

    async def bench(ctx):
        async def command(value):
            await ctx.tick().until(~dut.bus.busy)
            ctx.set(dut.bus.addr, control)
            ctx.set(dut.bus.w_data, value)
            ctx.set(dut.bus.w_stb, 1)
            await ctx.tick()
            ctx.set(dut.bus.w_stb, 0)
            await ctx.tick().until(~dut.bus.busy)

        async def read(addr):
            ctx.set(dut.bus.addr, addr)
            ctx.set(dut.bus.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.bus.r_stb, 0)
            return ctx.get(dut.bus.r_data)

        await ctx.tick().until(~dut.bus.busy)
        ctx.set(dut.events.frames_ok, 1)
        await ctx.tick().repeat(100)
        ctx.set(dut.events.frames_ok, 0)
        await command(STATS_CONTROL_SNAPSHOT)
        assert await read(ok.addr) == 100
        await command(STATS_CONTROL_CLEAR)
        assert await read(ok.addr) == 100, "a clear alone leaves the stats registers"
        ctx.set(dut.events.frames_ok, 1)
        await ctx.tick().repeat(7)
        ctx.set(dut.events.frames_ok, 0)
        await command(STATS_CONTROL_SNAPSHOT)
        assert await read(ok.addr) == 7

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_array_port_serves_weights_and_boosts_and_a_reset_restores_them():
    """RegisterFile(array_port=True): ``param_read`` gives the word of the index of the clock
    before; a bus write changes it (and the register reads back); after a reset the restore
    pass puts the reset values back, as it does for the memory's copy."""
    params = FusionParams.from_real(weights=(0.1, 0.2, 0.3, 0.05, 0.05, 0.1, 0.1, 0.1),
                                    boost=(1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7))
    dut = RegisterFile(params=params, array_port=True)
    words = list(params.weights) + list(params.boost)
    top = Module()
    top.submodules.dut = dut
    top.domains.sync = domain = ClockDomain()

    async def bench(ctx):
        async def arrays() -> list[int]:
            got = []
            for index in range(len(words)):
                ctx.set(dut.param_read.index, index)
                await ctx.tick()
                got.append(ctx.get(dut.param_read.data))
            return got

        async def write(name, value):
            await ctx.tick().until(~dut.bus.busy)
            ctx.set(dut.bus.addr, BY_NAME[name].addr)
            ctx.set(dut.bus.w_data, value)
            ctx.set(dut.bus.w_stb, 1)
            await ctx.tick()
            ctx.set(dut.bus.w_stb, 0)

        async def read(name):
            await ctx.tick().until(~dut.bus.busy)
            ctx.set(dut.bus.addr, BY_NAME[name].addr)
            ctx.set(dut.bus.r_stb, 1)
            await ctx.tick()
            ctx.set(dut.bus.r_stb, 0)
            return ctx.get(dut.bus.r_data)

        assert await arrays() == words
        await write("weight_news", 1234)
        await write("boost_8", 4321)
        changed = list(words)
        changed[5], changed[15] = 1234, 4321
        assert await arrays() == changed
        assert await read("weight_news") == 1234 and await read("boost_8") == 4321
        ctx.set(domain.rst, 1)
        for _ in range(2):
            try:
                await ctx.tick()
            except DomainReset:
                pass
        ctx.set(domain.rst, 0)
        await ctx.tick().until(~dut.bus.busy)
        assert await arrays() == words
        assert await read("weight_news") == params.weights[5]

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_parameter_set_is_offered_once_per_frame():
    params = FusionParams()
    dut = RegisterFile(params=params)
    quorum, ttl = BY_NAME["quorum"], BY_NAME["vote_ttl_us"]

    async def bench(ctx):
        assert ctx.get(dut.config.payload) == FusionConfigLayout.const(config_value(params))
        assert not ctx.get(dut.config.valid)
        for reg, value in ((quorum, 1234), (ttl, 77)):
            ctx.set(dut.bus.addr, reg.addr)
            ctx.set(dut.bus.w_data, value)
            ctx.set(dut.bus.w_stb, 1)
            await ctx.tick()
            assert not ctx.get(dut.config.valid), "nothing is offered before the frame ends"
        ctx.set(dut.bus.w_stb, 0)
        ctx.set(dut.bus.commit, 1)
        await ctx.tick()
        ctx.set(dut.bus.commit, 0)
        assert ctx.get(dut.config.valid) and ctx.get(dut.bus.params_pending)
        assert ctx.get(dut.config.payload.quorum) == 1234 and ctx.get(dut.config.payload.vote_ttl_us) == 77
        assert ctx.get(dut.config.payload.weights[2]) == params.weights[2]
        await ctx.tick().repeat(3)
        assert ctx.get(dut.config.valid), "held until the pipeline takes it"
        ctx.set(dut.config.ready, 1)
        await ctx.tick()
        ctx.set(dut.config.ready, 0)
        assert not ctx.get(dut.config.valid)
        ctx.set(dut.bus.commit, 1)                # a frame that wrote no parameter
        await ctx.tick()
        assert not ctx.get(dut.config.valid)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


# --- agreement with the datapath ports --------------------------------------------------------

def test_ports_agree_with_the_fusion_pipeline_and_the_queue():
    """The product core makes the link's connections with ``wiring.connect`` (which checks every
    member's direction and shape) against the real pipeline and queue; elaborate it."""
    from sigfuse.gateware import fusion, fusion_params, queue
    from sigfuse.gateware.core import CoreParameters, SigfuseCore
    from sigfuse.gateware.dispatcher import DropLayout, PoppedLayout
    from sigfuse.gateware.link import LinkCore

    assert FusionConfigLayout == fusion_params.FusionConfigLayout
    assert PoppedLayout == queue.PoppedLayout and DropLayout == queue.DropLayout
    link = LinkCore(divisor=4, pair_slots=16, queue_capacity=32)
    pipeline = fusion.FusionPipeline(16)
    q = queue.PriorityQueue(32)
    assert link.settle_clocks >= fusion.LATENCY + 2
    assert link.stale.payload.shape() == pipeline.stale.payload.shape()
    assert link.drops.payload.shape() == q.drop.payload.shape()
    assert link.decisions.payload.shape() == pipeline.decisions.payload.shape()
    for unused in (link, pipeline, q):
        unused._MustUse__silence = True
    Fragment.get(SigfuseCore(CoreParameters(pair_slots=16, queue_capacity=32, clk_hz=0,
                                            uart_divisor=4)), None)
    assert set(StatsEventsLayout.members) >= {"signals_in", "queue_pushes"}
    assert set(GaugesLayout.members) == {"queue_occupancy", "queue_high_water"}
