"""The link as the tests expect it to behave: bytes in, reply frames and counters out.

Frame classification is :class:`sigfuse.protocol.Deframer`'s; command semantics follow
``docs/link.md``; the datapath is :class:`stub.StubModel` (the link tests' stand-in) or
:class:`ReferenceDatapath` (the reference engine, for the product core
:class:`sigfuse.gateware.core.SigfuseCore`).  The uptime counter is the only stat the model
cannot know (it counts clocks): comparisons skip it.
"""

from __future__ import annotations

from typing import Protocol

from sigfuse import protocol as p
from sigfuse.contract import DecisionEmitted, DropReason, Dropped, FusionParams, Signal
from sigfuse.engine import ReferenceEngine
from sigfuse.gateware.link import DatapathEventsLayout
from sigfuse.protocol import AckStatus, ErrorCode, Frame, FrameType, Reply, Result, ResultKind
from sigfuse.regmap import (BY_ADDR, REGISTERS, STATS_CONTROL_CLEAR, STATS_CONTROL_SNAPSHOT,
                            Access, StatKind, params_from_values, stats_registers)

from .stub import CAPACITY, PAIR_SLOTS, StubModel

__all__ = ["Datapath", "LinkModel", "ReferenceDatapath", "UPTIME"]

UPTIME = frozenset(r.addr for r in stats_registers() if r.stat == StatKind.UPTIME)
_SIZES = {FrameType.REG_READ: (2, p.MAX_REGS), FrameType.REG_WRITE: (6, p.MAX_REGS),
          FrameType.PUSH_SIGNALS: (p.SIGNAL_RECORD_BYTES, p.MAX_SIGNALS), FrameType.POP: (1, 1)}


class Datapath(Protocol):
    """What :class:`LinkModel` needs of a datapath model."""
    #: Live counts of the datapath's events (the members of ``DatapathEventsLayout``).
    stats: dict[str, int]

    def signal(self, s: Signal) -> list[Result]: ...
    def pop(self) -> Result: ...
    def gauges(self) -> dict[str, int]: ...
    def configure(self, params: FusionParams) -> None: ...


_DROP_KINDS = {DropReason.STALE: ResultKind.STALE, DropReason.EVICTED: ResultKind.EVICTED,
               DropReason.REJECTED: ResultKind.REJECTED}


class ReferenceDatapath:
    """The product core's datapath as the reference engine computes it, with the counters and
    gauges the core's stats wiring (``gateware/core.py``) derives from the pipeline and queue
    handshakes.  Note ``queue_pushes``: the queue's push is always ready, so every decision is
    a push, a rejected one included (the stub counts only decisions that stayed)."""

    def __init__(self, params: FusionParams | None = None, *, pair_slots: int,
                 capacity: int) -> None:
        self.engine = ReferenceEngine(params or FusionParams(), capacity=capacity,
                                      pair_slots=pair_slots)
        self.stats = dict.fromkeys(DatapathEventsLayout.members, 0)

    def configure(self, params: FusionParams) -> None:
        self.engine.set_params(params)

    def signal(self, s: Signal) -> list[Result]:
        stats = self.stats
        stats["signals_in"] += 1
        out = []
        for r in self.engine.process((s,)):
            if type(r) is DecisionEmitted:
                stats["decisions_out"] += 1
                stats["queue_pushes"] += 1
                out.append(Result(ResultKind.DECISION, r.decision))
            else:
                assert type(r) is Dropped, r
                stats[{DropReason.STALE: "stale_drops", DropReason.EVICTED: "queue_evicted",
                       DropReason.REJECTED: "queue_rejected"}[r.reason]] += 1
                out.append(Result(_DROP_KINDS[r.reason], r.record))
        return out

    def pop(self) -> Result:
        self.stats["queue_pops"] += 1
        decision = self.engine.pop()
        if decision is None:
            return Result(ResultKind.POPPED_EMPTY, None)
        return Result(ResultKind.POPPED, decision)

    def gauges(self) -> dict[str, int]:
        queue = self.engine.queue
        return {"queue_occupancy": len(queue), "queue_high_water": queue.high_water}


class LinkModel:
    """The link and a datapath model (default: the stub of :class:`stub.LinkHarness`; pass a
    :class:`ReferenceDatapath` and the core's identity for :class:`SigfuseCore`)."""

    def __init__(self, *, build_id: int = 0x5EED0001, clk_hz: int = 12_000_000,
                 uart_divisor: int = 0, datapath: Datapath | None = None,
                 pair_slots: int = PAIR_SLOTS, queue_capacity: int = CAPACITY) -> None:
        self.deframer = p.Deframer()
        self.datapath: Datapath = datapath if datapath is not None else StubModel()
        self.pair_slots = pair_slots
        identity = dict(build_id=build_id, clk_hz=clk_hz, pair_slots=pair_slots,
                        queue_capacity=queue_capacity, uart_divisor=uart_divisor)
        defaults = FusionParams()
        self.values: dict[int, int] = {}
        for r in REGISTERS:
            if r.group == "identity":
                self.values[r.addr] = identity.get(r.name, r.reset)
            elif r.param is not None:
                field, index = r.param
                v = getattr(defaults, field)
                self.values[r.addr] = v if index is None else v[index]
            else:
                self.values[r.addr] = 0
        self.live = {r.name: 0 for r in stats_registers() if r.stat == StatKind.COUNTER}
        self.last_seq: int | None = None
        self.tx_seq = 0
        #: Counts taken away by stats clears, so that :meth:`totals` covers the whole run.
        self.cleared: dict[str, int] = {}

    @property
    def stub(self) -> Datapath:
        """The datapath model (the name from when it could only be the stub)."""
        return self.datapath

    # --- counters ---------------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Live counter values (deframer + command layer + stub)."""
        out = dict(self.live)
        out.update({k: v for k, v in self.deframer.counters.items()})
        out.update(self.datapath.stats)
        return out

    def totals(self) -> dict[str, int]:
        """Every counter's count since reset, clears notwithstanding."""
        return {k: v + self.cleared.get(k, 0) for k, v in self.counters().items()}

    def _snapshot(self) -> None:
        counters = self.counters()
        gauges = self.datapath.gauges()
        for r in stats_registers():
            if r.stat == StatKind.COUNTER:
                self.values[r.addr] = counters[r.name] % (1 << 32)
            elif r.stat == StatKind.GAUGE:
                self.values[r.addr] = gauges[r.name]

    def _clear(self) -> None:
        for name, value in self.counters().items():
            self.cleared[name] = self.cleared.get(name, 0) + value
        for name in self.live:
            self.live[name] = 0
        for name in self.deframer.counters:
            self.deframer.counters[name] = 0
        for name in self.datapath.stats:
            self.datapath.stats[name] = 0

    # --- frames -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[Frame]:
        replies = []
        for frame in self.deframer.feed(data):
            replies += self.command(frame)
        return replies

    def _frame(self, kind: FrameType, cmd: Frame, **fields) -> Frame:
        frame = p.reply_frame(Reply(kind, self.tx_seq, cmd.type, cmd.seq, **fields))
        self.tx_seq = (self.tx_seq + 1) % 256
        return frame

    def _error(self, cmd: Frame, code: ErrorCode, detail: int, counter: str) -> list[Frame]:
        self.live[counter] += 1
        return [self._frame(FrameType.ERROR, cmd, error=code, detail=detail)]

    def command(self, cmd: Frame) -> list[Frame]:
        last = self.last_seq
        if last is not None and cmd.seq not in ((last + 1) % 256, last):
            self.live["frames_seq_gap"] += 1
        duplicate = last is not None and cmd.seq == last
        self.last_seq = cmd.seq
        body = cmd.body
        if cmd.type == FrameType.PING:
            if len(body) > p.MAX_PING_DATA:
                return self._error(cmd, ErrorCode.BAD_LENGTH, len(body), "frames_bad_length")
            return [self._frame(FrameType.PONG, cmd, data=body)]
        if cmd.type == FrameType.STATS:
            if body:
                return self._error(cmd, ErrorCode.BAD_LENGTH, len(body), "frames_bad_length")
            self._snapshot()
            return [self._frame(FrameType.STATS_REPLY, cmd, registers=tuple(
                (r.addr, self.values[r.addr]) for r in stats_registers()))]
        if cmd.type not in _SIZES:
            return self._error(cmd, ErrorCode.UNKNOWN_TYPE, 0, "frames_unknown_type")
        size, most = _SIZES[FrameType(cmd.type)]
        n, rest = divmod(len(body), size)
        if rest or not 1 <= n <= most:
            return self._error(cmd, ErrorCode.BAD_LENGTH, len(body), "frames_bad_length")
        items = [body[i * size:(i + 1) * size] for i in range(n)]
        error = self._validate(cmd, items)
        if error:
            return error
        if duplicate and cmd.type in p.SIDE_EFFECT_COMMANDS:
            self.live["frames_duplicate"] += 1
            return [self._frame(p.REPLY_TYPES[FrameType(cmd.type)], cmd, status=AckStatus.DUPLICATE)]
        return self._execute(cmd, items)

    def _validate(self, cmd: Frame, items: list[bytes]) -> list[Frame]:
        for i, item in enumerate(items):
            if cmd.type == FrameType.PUSH_SIGNALS:
                fields = p.unpack_fields(p.SIGNAL_RECORD_LAYOUT, int.from_bytes(item, "little"))
                if fields["pair"] >= self.pair_slots or fields["reserved"]:
                    return self._error(cmd, ErrorCode.BAD_VALUE, i, "frames_bad_value")
            elif cmd.type == FrameType.POP:
                if item[0] == 0:
                    return self._error(cmd, ErrorCode.BAD_VALUE, 0, "frames_bad_value")
            else:
                addr = int.from_bytes(item[:2], "little")
                reg = BY_ADDR.get(addr)
                if reg is None:
                    return self._error(cmd, ErrorCode.BAD_ADDRESS, addr, "reg_bad_address")
                if cmd.type == FrameType.REG_WRITE:
                    value = int.from_bytes(item[2:], "little")
                    if not reg.writable:
                        return self._error(cmd, ErrorCode.READ_ONLY, addr, "reg_bad_address")
                    if value > reg.max_value:
                        return self._error(cmd, ErrorCode.BAD_VALUE, addr, "frames_bad_value")
        return []

    def _execute(self, cmd: Frame, items: list[bytes]) -> list[Frame]:
        if cmd.type == FrameType.REG_READ:
            regs = []
            for item in items:
                addr = int.from_bytes(item, "little")
                regs.append((addr, 0 if BY_ADDR[addr].access == Access.WO else self.values[addr]))
            return [self._frame(FrameType.REG_READ_REPLY, cmd, registers=tuple(regs))]
        if cmd.type == FrameType.REG_WRITE:
            params_written = False
            for item in items:
                addr = int.from_bytes(item[:2], "little")
                value = int.from_bytes(item[2:], "little")
                reg = BY_ADDR[addr]
                if reg.name == "stats_control":
                    if value & STATS_CONTROL_SNAPSHOT:
                        self._snapshot()
                    if value & STATS_CONTROL_CLEAR:
                        self._clear()
                else:
                    self.values[addr] = value
                    params_written |= reg.param is not None
            if params_written:
                self.datapath.configure(params_from_values(self.values))
            return [self._frame(FrameType.REG_WRITE_ACK, cmd, status=AckStatus.DONE)]
        results = []
        if cmd.type == FrameType.PUSH_SIGNALS:
            for item in items:
                results += self.datapath.signal(p.unpack_signal(item))
        else:
            for _ in range(items[0][0]):
                results.append(self.datapath.pop())
        frames = [self._frame(FrameType.RESULTS, cmd, results=tuple(results[i:i + p.MAX_RESULTS]))
                  for i in range(0, len(results), p.MAX_RESULTS)]
        return frames + [self._frame(p.REPLY_TYPES[FrameType(cmd.type)], cmd, status=AckStatus.DONE)]
