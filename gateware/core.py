"""The product core: link + register file + fusion engine + priority queue.

:class:`SigfuseCore` is what a board (or the virtual board) runs.  It makes exactly the
connections documented in :mod:`.link` between :class:`~.link.LinkCore`, the fusion engine and
the queue: :class:`~.fusion.FusionPipeline` and :class:`~.queue.PriorityQueue` (one signal, one
push and one pop per clock; the ULX3S), or :class:`~.fusion_serial.SerialFusion` and
:class:`~.queue_serial.SerialQueue` (tens of clocks each, small enough for the iCE40UP5K; the
iCEBreaker).  Both pairs have the same ports and the same results; the dispatcher's wait after
each signal (:func:`settle_clocks`) is what differs.

With ``divisor`` set, the core has the board interface of :data:`sigfuse.boards.common.CORE_SIGNATURE`
(``uart_rx``, ``uart_tx``, ``link_error``); with ``divisor=None`` the UART PHY is left out and
the core exposes byte streams ``rx_bytes`` / ``tx_bytes`` instead -- the virtual board bridges
those to a TCP socket, the way LiteX's ``serial2tcp`` bridges its simulated serial PHY.

:func:`build_id` names a design: a 32-bit hash of the gateware and contract sources and the
build parameters, computed before elaboration so it can be a register of the design it names.
The host computes the same number for the board it expects (:func:`expected_build_id`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import NamedTuple

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..contract import DropReason, FusionParams
from .framing import RegisterSlice
from .fusion import LATENCY as FUSION_LATENCY, FusionPipeline
from .fusion_serial import SerialFusion
from .link import LinkCore
from .queue import PriorityQueue
from .queue_serial import SerialQueue, op_clocks_max

__all__ = ["ENGINES", "CoreParameters", "BoardBuild", "BOARD_PARAMETERS", "DESIGN_SOURCES",
           "source_digest", "SigfuseCore", "build_id", "core_parameters", "product_core",
           "SETTLE_CLOCKS", "settle_clocks"]

#: The dispatcher's wait after each signal before it sends that signal's results (the bound its
#: docstring gives, LATENCY + 2: the decision enters the queue LATENCY clocks after the signal's
#: transfer, the drop it causes one clock later, and each is captured a clock after that).  The
#: wait runs while the next signal's record is read (15 clocks), so it costs nothing; the
#: virtual-board traces fail with LATENCY - 3 and pass with LATENCY - 1 (two clocks of margin).
SETTLE_CLOCKS = FUSION_LATENCY + 2

#: The two implementations of fusion and queue behind the same ports: ``"pipeline"`` is one
#: signal and one push and pop per clock (:class:`~.fusion.FusionPipeline`,
#: :class:`~.queue.PriorityQueue`); ``"serial"`` takes several clocks per signal and per queue
#: operation and is small enough for the iCE40UP5K (:class:`~.fusion_serial.SerialFusion`,
#: :class:`~.queue_serial.SerialQueue`).  A UART brings a signal every few hundred clocks, so on
#: a board the serial engine costs no throughput.
ENGINES = ("pipeline", "serial")


@dataclass(frozen=True)
class CoreParameters:
    """The build parameters of a product core (everything the build ID covers besides sources)."""
    pair_slots: int
    queue_capacity: int
    clk_hz: int
    #: Clocks per UART bit; 0 for a byte-stream link (virtual board, other PHYs).
    uart_divisor: int
    ram_style: str | None = None
    #: One of :data:`ENGINES`.
    engine: str = "pipeline"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")


class BoardBuild(NamedTuple):
    """What a board's product core is built with (besides its clock and link)."""
    pair_slots: int
    queue_capacity: int
    #: The vote board's RAM style (LUT RAM on the ECP5: a DP16KD's clock-to-out is most of a
    #: cycle, docs/fusion-pipeline.md).
    ram_style: str | None
    engine: str


#: Per-board product builds: pair slots and queue capacity are issue 3's build parameters.  The
#: iCE40UP5K cannot hold the one-signal-per-clock engine (docs/fusion-pipeline.md), so the
#: iCEBreaker builds the serial one.
BOARD_PARAMETERS: dict[str, BoardBuild] = {
    "icebreaker": BoardBuild(16, 32, None, "serial"),
    "ulx3s": BoardBuild(64, 256, "distributed", "pipeline"),
}


#: The sources the product core is made of: its gateware modules and the contract modules they
#: derive from.  Only these name the design -- a new, unrelated gateware module (or a test) does
#: not change any board's build ID.  ``tests/boards`` checks that the list covers every module
#: the core imports.
DESIGN_SOURCES: tuple[tuple[str, str], ...] = tuple(
    [(__package__, f"{name}.py") for name in (
        "core", "link", "uart", "cobs", "framing", "dispatcher", "regfile", "fusion",
        "fusion_params", "queue", "fusion_serial", "queue_serial", "layouts")]
    + [("sigfuse", f"{name}.py") for name in ("contract", "protocol", "regmap")])


def source_digest(extra: tuple[str, ...] = ()) -> bytes:
    """SHA-256 over the sources that define the design's behaviour (:data:`DESIGN_SOURCES`,
    plus the gateware modules named in ``extra`` for another top, e.g. the PCIe core)."""
    digest = hashlib.sha256()
    for package, name in DESIGN_SOURCES + tuple((__package__, f"{n}.py") for n in extra):
        digest.update(name.encode() + b"\0" + (resources.files(package) / name).read_bytes() + b"\0")
    return digest.digest()


def build_id(parameters: CoreParameters) -> int:
    """The 32-bit build ID of a product core with ``parameters`` built from these sources."""
    digest = hashlib.sha256(source_digest())
    digest.update(repr((parameters.pair_slots, parameters.queue_capacity, parameters.clk_hz,
                        parameters.uart_divisor, parameters.ram_style,
                        parameters.engine)).encode())
    return int.from_bytes(digest.digest()[:4], "little")


def settle_clocks(parameters: CoreParameters) -> int:
    """The dispatcher's wait after each signal before it sends that signal's results: the
    longest time from a signal's transfer to its last result (decision into the queue, then the
    drop it causes), plus the clock that captures it.  The serial engine's signal transfers
    with its decision, so only the queue's push remains."""
    if parameters.engine == "pipeline":
        return SETTLE_CLOCKS
    return op_clocks_max(parameters.queue_capacity) + 2


class SigfuseCore(wiring.Component):
    """Link, register file, fusion pipeline and priority queue, connected.

    :param parameters: see :class:`CoreParameters`; ``uart_divisor == 0`` means byte streams.
    :param params: reset values of the fusion registers.
    """

    def __init__(self, parameters: CoreParameters, *, params: FusionParams | None = None) -> None:
        self.parameters = parameters
        self.reset_params = params or FusionParams()
        self.build_id = build_id(parameters)
        members: dict = {"link_error": Out(1)}
        if parameters.uart_divisor:
            members["uart_rx"] = In(1, init=1)
            members["uart_tx"] = Out(1, init=1)
        else:
            members["rx_bytes"] = In(stream.Signature(8))
            members["tx_bytes"] = Out(stream.Signature(8))
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        p = self.parameters
        m = Module()
        m.submodules.link = link = LinkCore(
            divisor=p.uart_divisor or None, pair_slots=p.pair_slots,
            queue_capacity=p.queue_capacity, clk_hz=p.clk_hz, build_id=self.build_id,
            params=self.reset_params, settle_clocks=settle_clocks(p),
            settle_on_idle=p.engine == "serial", array_port=p.engine == "serial")
        if p.engine == "serial":
            # The register file holds the parameters on `config` and the dispatcher writes
            # them only between signals (a frame runs after the last one's results are out).
            pipeline = SerialFusion(p.pair_slots, params=self.reset_params, config_held=True,
                                    param_port=True)
            q = SerialQueue(p.queue_capacity)
        else:
            pipeline = FusionPipeline(p.pair_slots, params=self.reset_params,
                                      ram_style=p.ram_style)
            q = PriorityQueue(p.queue_capacity)
        m.submodules.fusion = pipeline
        m.submodules.queue = q

        wiring.connect(m, link.signals, pipeline.signals)
        wiring.connect(m, link.config, pipeline.config)
        if p.engine == "serial":
            wiring.connect(m, pipeline.param_read, link.param_read)
        # PriorityQueue's push is always ready.  SerialQueue's is not, but the dispatcher's
        # settle wait (settle_clocks) covers the push's worst case, and nothing else reaches
        # the queue meanwhile: pops are sent only after a signal's results.
        wiring.connect(m, pipeline.decisions, q.push)
        if p.engine == "serial":
            # The serial queue registers its output already; a slice would cost 160 logic cells
            # of the UP5K's 5,280.
            wiring.connect(m, link.pop, q.pop)
            wiring.connect(m, q.popped, link.popped)
            # A push's time varies (it shifts as many entries as it passes): the dispatcher
            # stops waiting once the queue is idle, instead of always waiting settle_clocks.
            # The engine is done with a signal when it transfers (with its decision, into the
            # queue), and the queue is busy from the clock after it sees that push until the
            # drop report, if any.
            m.d.comb += link.datapath_busy.eq(q.busy)
        else:
            # Pops go through register slices both ways: the queue's pop logic drives all of
            # its cells, and without them the dispatcher's state decoding sat in front of that
            # fan-out (the ULX3S's critical path).  A pop then takes two clocks more, which
            # nothing waits on.
            m.submodules.pop_slice = pop_slice = RegisterSlice(0)
            m.submodules.popped_slice = popped_slice = RegisterSlice(q.popped.payload.shape())
            wiring.connect(m, link.pop, pop_slice.i)
            wiring.connect(m, pop_slice.o, q.pop)
            wiring.connect(m, q.popped, popped_slice.i)
            wiring.connect(m, popped_slice.o, link.popped)
        events = link.datapath_events
        m.d.comb += [
            link.decisions.valid.eq(pipeline.decisions.valid & q.push.ready),
            link.decisions.payload.eq(pipeline.decisions.payload),
            link.stale.valid.eq(pipeline.stale.valid),
            link.stale.payload.eq(pipeline.stale.payload),
            link.drops.valid.eq(q.drop.valid),
            link.drops.payload.eq(q.drop.payload),
            link.gauges.queue_occupancy.eq(q.occupancy),
            link.gauges.queue_high_water.eq(q.high_water),
            events.signals_in.eq(pipeline.signals.valid & pipeline.signals.ready),
            events.stale_drops.eq(pipeline.stale.valid),
            events.decisions_out.eq(pipeline.decisions.valid & pipeline.decisions.ready),
            events.queue_pushes.eq(q.push.valid & q.push.ready),
            events.queue_pops.eq(q.pop.valid & q.pop.ready),
            events.queue_evicted.eq(q.drop.valid & (q.drop.payload.reason == DropReason.EVICTED)),
            events.queue_rejected.eq(q.drop.valid & (q.drop.payload.reason == DropReason.REJECTED)),
            self.link_error.eq(link.link_error),
        ]
        if p.uart_divisor:
            m.d.comb += [link.rx.eq(self.uart_rx), self.uart_tx.eq(link.tx)]
        else:
            wiring.connect(m, wiring.flipped(self.rx_bytes), link.rx_bytes)
            wiring.connect(m, link.tx_bytes, wiring.flipped(self.tx_bytes))
        return m


def core_parameters(board: str, clock_hz: int, uart_baud: int | None) -> CoreParameters:
    """The product core's parameters for ``board`` (``uart_baud=None``: byte-stream link)."""
    from ..boards.common import uart_divisor
    build = BOARD_PARAMETERS[board]
    divisor = uart_divisor(clock_hz, uart_baud) if uart_baud else 0
    return CoreParameters(pair_slots=build.pair_slots, queue_capacity=build.queue_capacity,
                          clk_hz=clock_hz, uart_divisor=divisor, ram_style=build.ram_style,
                          engine=build.engine)


def product_core(context) -> SigfuseCore:
    """Core factory for :class:`sigfuse.boards.common.BoardTop` (``sigfuse build --top``)."""
    return SigfuseCore(core_parameters(context.board, context.clock_hz, context.uart_baud))
