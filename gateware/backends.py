"""Trace backends that run the gateware: ``amaranth`` (Amaranth's Python simulator) and
``verilator`` (the datapath compiled by Verilator, driven by a C++ harness).

Both run :class:`~sigfuse.gateware.datapath.FusionDatapath`, feed it one command per event in
order, and decode its result records into the contract's results, so ``sigfuse trace`` prints
byte for byte what ``--backend reference`` prints.  ``pair_slots`` and ``capacity`` are the
gateware's build parameters; ``set_params`` writes the ``config`` stream, as a board's
registers would be written.

Importing this module registers both backends (``open_backend`` imports it on demand).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Callable, Sequence

from amaranth.hdl import Shape

from ..contract import (DECISION_LAYOUT, SIGNAL_LAYOUT, Decision, DecisionEmitted, DropReason,
                        Dropped, Event, FusionParams, Pop, Popped, Result, Signal)
from ..engine import FusionBackend, register_backend
from .datapath import (CommandKind, CommandLayout, FusionDatapath, ResultKind, ResultLayout,
                       check_build_parameters)
from .fusion_params import FusionConfigLayout, config_const

__all__ = ["AmaranthBackend", "VerilatorBackend", "GatewareFault", "encode_command",
           "decode_record", "HARNESS"]

#: The C++ harness of the Verilator backend.
HARNESS = Path(__file__).resolve().parent.parent / "sim" / "harness" / "datapath.cpp"


class GatewareFault(RuntimeError):
    """The datapath raised its ``fault`` flag (two result records met in one clock)."""


# --- command and record codecs ----------------------------------------------------------------

_KIND_OFFSET = CommandLayout["kind"].offset
_SIGNAL_OFFSET = CommandLayout["signal"].offset
_POP_COMMAND = int(CommandKind.POP) << _KIND_OFFSET


def _signal_encoder() -> Callable[[Signal], int]:
    """A packer of a signal into a :data:`CommandLayout` record, offsets precomputed from the
    contract's layout (``layouts.pack`` is generic and three times slower: it runs once per
    event of a long trace)."""
    offsets, offset = {}, _SIGNAL_OFFSET
    for f in SIGNAL_LAYOUT:
        offsets[f.name] = (offset, (1 << f.width) - 1)
        offset += f.width
    (ts, _), (src, _), (pair, _), (side, _), (conf, _), (edge, edge_mask) = (
        offsets[name] for name in Signal._fields)
    kind = int(CommandKind.SIGNAL) << _KIND_OFFSET

    def encode(s: Signal) -> int:
        return (kind | (s[0] << ts) | (s[1] << src) | (s[2] << pair) | (s[3] << side)
                | (s[4] << conf) | ((s[5] & edge_mask) << edge))
    return encode


_encode_signal = _signal_encoder()


def encode_command(event: Event) -> int:
    """The integer value of ``event`` as a :data:`CommandLayout` record."""
    if type(event) is Signal:
        return _encode_signal(event)
    if type(event) is Pop:
        return _POP_COMMAND
    raise TypeError(f"not an event: {event!r}")


def _field_decoder(fields, cls) -> Callable[[int], tuple]:
    """A decoder of a packed contract record into ``cls`` (offsets, masks and sign bits
    precomputed: it runs once per result on traces of a million events)."""
    by_name = {}
    offset = 0
    for f in fields:
        by_name[f.name] = (offset, (1 << f.width) - 1, (1 << (f.width - 1)) if f.signed else 0)
        offset += f.width
    # In the tuple's field order, which need not be the layout's (Signal has source before
    # pair, the wire layout pair before source).
    plan = [by_name[name] for name in cls._fields]

    def decode(value: int) -> tuple:
        out = []
        for shift, mask, sign in plan:
            raw = (value >> shift) & mask
            if sign and raw & sign:
                raw -= sign << 1
            out.append(raw)
        return cls(*out)
    return decode


_decode_decision = _field_decoder(DECISION_LAYOUT, Decision)
_decode_signal = _field_decoder(SIGNAL_LAYOUT, Signal)


def _result_field(name: str) -> tuple[int, int]:
    """Offset and mask of one field of :data:`ResultLayout`."""
    field = ResultLayout[name]
    return field.offset, (1 << Shape.cast(field.shape).width) - 1


_R_KIND = _result_field("kind")
_R_DROP = _result_field("drop")
_R_EMPTY = ResultLayout["empty"].offset
_R_DECISION = ResultLayout["decision"].offset
_R_DROPPED = ResultLayout["dropped"].offset
_R_SIGNAL = ResultLayout["signal"].offset
_DECISION_MASK = _result_field("decision")[1]
_SIGNAL_MASK = _result_field("signal")[1]
_DROP_REASONS = {int(DropReason.EVICTED): DropReason.EVICTED,
                 int(DropReason.REJECTED): DropReason.REJECTED}


def decode_record(value: int, out: list[Result]) -> None:
    """Append the results of one :data:`ResultLayout` record to ``out``, as the reference
    engine orders them (a decision, then what its push dropped)."""
    kind = (value >> _R_KIND[0]) & _R_KIND[1]
    if kind == ResultKind.DECISION:
        out.append(DecisionEmitted(_decode_decision((value >> _R_DECISION) & _DECISION_MASK)))
        drop = (value >> _R_DROP[0]) & _R_DROP[1]
        if drop:
            out.append(Dropped(_DROP_REASONS[drop],
                               _decode_decision((value >> _R_DROPPED) & _DECISION_MASK)))
    elif kind == ResultKind.STALE:
        out.append(Dropped(DropReason.STALE, _decode_signal((value >> _R_SIGNAL) & _SIGNAL_MASK)))
    elif kind == ResultKind.POPPED:
        if (value >> _R_EMPTY) & 1:
            out.append(Popped(None))
        else:
            out.append(Popped(_decode_decision((value >> _R_DECISION) & _DECISION_MASK)))
    else:
        raise GatewareFault(f"result record of unknown kind {kind}")


# --- Amaranth simulator -----------------------------------------------------------------------

@register_backend
class AmaranthBackend(FusionBackend):
    """The datapath in Amaranth's Python simulator.

    One simulation lives as long as the backend: a testbench takes the commands of each batch,
    and :meth:`process` advances the simulation until the batch has drained.  Slow (about 400
    clocks, 250 events per second with a 256-entry queue; 1000 events per second with 2
    entries): meant for short traces and for debugging.
    """

    name = "amaranth"

    def __init__(self, params: FusionParams | None = None, *, capacity: int = 256,
                 pair_slots: int = 64) -> None:
        from amaranth.sim import Simulator

        params = params or FusionParams()
        check_build_parameters(pair_slots, capacity)
        super().__init__(params, capacity=capacity, pair_slots=pair_slots)
        self.dut = FusionDatapath(pair_slots, capacity, params=params)
        self._commands: list[int] = []
        self._config = None
        self._records: list[int] = []
        self._done = True
        self.clocks = 0
        self._sim = Simulator(self.dut)
        self._sim.add_clock(1e-8)
        self._sim.add_testbench(self._testbench, background=True)

    async def _testbench(self, ctx) -> None:
        dut = self.dut
        commands_payload = dut.commands.payload.as_value()
        results_payload = dut.results.payload.as_value()
        ctx.set(dut.results.ready, 1)
        next_command = 0
        while True:
            if self._done:
                await ctx.tick()
                continue
            config_pending = self._config is not None
            if config_pending:
                ctx.set(dut.config.payload, self._config)
                ctx.set(dut.config.valid, 1)
            have_command = next_command < len(self._commands)
            if have_command:
                ctx.set(commands_payload, self._commands[next_command])
            ctx.set(dut.commands.valid, have_command)
            (_clk, _rst, command_ready, result_valid, result, idle, refreshing, config_ready,
             fault) = await ctx.tick().sample(
                dut.commands.ready, dut.results.valid, results_payload, dut.idle,
                dut.refreshing, dut.config.ready, dut.fault)
            self.clocks += 1
            if fault:
                raise GatewareFault("the datapath raised its fault flag")
            if have_command and command_ready:
                next_command += 1
            if config_pending and config_ready:
                self._config = None
                ctx.set(dut.config.valid, 0)
            if result_valid:
                self._records.append(result)
            # Drained: every command was accepted before this clock (a command accepted at
            # this edge is not yet counted by `idle`), nothing in flight, nothing to read.
            elif (not have_command and idle and not config_pending and not refreshing):
                self._commands = []
                next_command = 0
                self._done = True

    def _run(self) -> None:
        self._done = False
        while not self._done:
            self._sim.advance()

    def process(self, events: Sequence[Event]) -> list[Result]:
        self._commands = [encode_command(e) for e in events]
        self._records = []
        self._run()
        results: list[Result] = []
        for record in self._records:
            decode_record(record, results)
        return results

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self._config = config_const(params)
        self._commands = []
        self._records = []
        self._run()


# --- Verilator --------------------------------------------------------------------------------

_VERILOG_MEMO: dict[tuple[int, int], str] = {}
_GATEWARE_SOURCES = ("datapath.py", "fusion.py", "fusion_params.py", "queue.py", "layouts.py")


def _datapath_verilog(pair_slots: int, capacity: int) -> str:
    """Verilog of the datapath, cached on disk by a digest of the gateware sources and the
    Amaranth version: converting it takes seconds, and every ``sigfuse trace`` would pay."""
    key = (pair_slots, capacity)
    if key in _VERILOG_MEMO:
        return _VERILOG_MEMO[key]
    import amaranth

    from .. import contract
    from ..sim.verilator import build_dir
    from .datapath import verilog_source

    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    digest.update(f"{amaranth.__version__} {pair_slots} {capacity}".encode())
    for name in _GATEWARE_SOURCES:
        digest.update((here / name).read_bytes())
    digest.update(Path(contract.__file__).read_bytes())
    path = build_dir() / "verilog" / f"fusion_datapath-{pair_slots}-{capacity}-{digest.hexdigest()[:16]}.v"
    if path.exists():
        verilog = path.read_text()
    else:
        verilog = verilog_source(pair_slots, capacity)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(verilog)
        partial.replace(path)
    _VERILOG_MEMO[key] = verilog
    return verilog


def build_datapath_model(pair_slots: int, capacity: int):
    """The Verilated datapath with its harness (cached; see :func:`sigfuse.sim.verilator.build_verilated`)."""
    from ..sim.verilator import build_verilated
    check_build_parameters(pair_slots, capacity)
    return build_verilated(
        f"fusion_datapath-{pair_slots}-{capacity}", _datapath_verilog(pair_slots, capacity),
        "fusion_datapath", [HARNESS],
        # -O2 instead of the default -Os: measurably faster here; -O3 was no faster than -O2.
        # (The wheel's verilated.mk is repaired by sigfuse.toolchain.simulator_env.)
        args=["-MAKEFLAGS", "OPT_FAST=-O2"])


_MAGIC = 0x50444653


def _words_bytes(bits: int) -> int:
    return (bits + 31) // 32 * 4


#: Pair slots of the shared Verilator build used for every configuration with no more slots.
_SHARED_BUILD_PAIR_SLOTS = 64


@register_backend
class VerilatorBackend(FusionBackend):
    """The datapath compiled by Verilator; the clock runs in the C++ harness
    (``sim/harness/datapath.cpp``), one process per backend, batches over pipes."""

    name = "verilator"

    def __init__(self, params: FusionParams | None = None, *, capacity: int = 256,
                 pair_slots: int = 64) -> None:
        params = params or FusionParams()
        check_build_parameters(pair_slots, capacity)
        super().__init__(params, capacity=capacity, pair_slots=pair_slots)
        # Spare pair slots change nothing (the host's pair table enforces the configured count),
        # so small slot counts share the default build instead of paying for a model of their own.
        self.model = build_datapath_model(max(pair_slots, _SHARED_BUILD_PAIR_SLOTS), capacity)
        self.clocks = 0
        self._process = subprocess.Popen([str(self.model.executable)], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        hello = self._read(16)
        magic, self._command_bytes, self._result_bytes, self._config_bytes = (
            int.from_bytes(hello[i:i + 4], "little") for i in range(0, 16, 4))
        expected = (_MAGIC, _words_bytes(CommandLayout.size), _words_bytes(ResultLayout.size),
                    _words_bytes(FusionConfigLayout.size))
        if (magic, self._command_bytes, self._result_bytes, self._config_bytes) != expected:
            self.close()
            raise GatewareFault(f"datapath harness speaks another protocol: {hello.hex()}")
        # The Verilog is built with the default parameters (one build serves every parameter
        # set); anything else is written through the config stream, like a board's registers.
        if params != FusionParams():
            self._write_config(params)

    def _read(self, size: int) -> bytes:
        data = self._process.stdout.read(size)
        if len(data) != size:
            status = self._process.poll()
            raise GatewareFault(f"datapath harness ended early (status {status})")
        return data

    def _exchange(self, request: bytes) -> list[int]:
        self._process.stdin.write(request)
        self._process.stdin.flush()
        return self._receive()

    def _receive(self) -> list[int]:
        """The answer to one request: its result records (raises on a fault)."""
        header = self._read(16)
        count = int.from_bytes(header[0:4], "little")
        fault = int.from_bytes(header[4:8], "little")
        self.clocks = int.from_bytes(header[8:16], "little")
        if fault:
            raise GatewareFault("the datapath raised its fault flag")
        size = self._result_bytes
        body = self._read(count * size)
        return [int.from_bytes(body[i:i + size], "little") for i in range(0, len(body), size)]

    def _write_config(self, params: FusionParams) -> None:
        raw = config_const(params).as_value().value
        self._exchange(b"C" + raw.to_bytes(self._config_bytes, "little"))

    #: Events per request to the harness.  A batch is cut into chunks that a thread encodes and
    #: sends while this one decodes the results of the previous chunk: Python and the model's
    #: clock loop then run side by side on two cores.
    chunk_events = 1024

    def process(self, events: Sequence[Event]) -> list[Result]:
        if not events:
            return []
        size = self._command_bytes
        chunks = [events[i:i + self.chunk_events] for i in range(0, len(events), self.chunk_events)]
        failure: list[BaseException] = []

        def send() -> None:
            try:
                for chunk in chunks:
                    payload = b"".join(encode_command(e).to_bytes(size, "little") for e in chunk)
                    self._process.stdin.write(b"B" + len(chunk).to_bytes(4, "little") + payload)
                    self._process.stdin.flush()
            except BaseException as error:  # reported by the reader below
                failure.append(error)

        sender = threading.Thread(target=send, name="verilator-backend-send", daemon=True)
        sender.start()
        results: list[Result] = []
        try:
            for _ in chunks:
                for record in self._receive():
                    decode_record(record, results)
        finally:
            sender.join()
        if failure:
            raise failure[0]
        return results

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self._write_config(params)

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is None or process.poll() is not None:
            return
        try:
            process.stdin.write(b"Q")
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
