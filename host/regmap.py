"""The board's register map, defined once.

The gateware register file (``gateware/regfile.py``), the generated ``firmware/regs.json``,
``firmware/regs.csv`` and ``firmware/include/sigfuse_regs.h`` (:mod:`sigfuse.regexport`), the
table in ``docs/link.md`` and the host's register access by name all derive from
:data:`REGISTERS`.  Nothing here imports Amaranth.

Registers are 32-bit words addressed by a 16-bit word index (the ``addr`` of REG_READ and
REG_WRITE, see :mod:`sigfuse.protocol`); a register narrower than 32 bits reads zero-extended,
and a write above its ``maximum`` is refused (``BAD_VALUE``) without changing anything.

=========  ==========  ======================================================================
group      addresses   contents
=========  ==========  ======================================================================
identity   0x00-0x0F   read-only facts about the build: magic, version, build ID, clock,
                       pair slots, queue capacity, UART divisor, largest frame
control    0x10-0x1F   scratch word, stats snapshot/clear
fusion     0x20-0x3F   every :class:`~sigfuse.contract.FusionParams` field, reset to the
                       contract defaults.  The writes of one REG_WRITE frame take effect
                       together, between two signals, when the frame ends.
stats      0x40-0x5F   read-only: the counters as of the last snapshot (STATS frame, or
                       ``stats_control.snapshot``).  32-bit counters wrap; ``uptime_clocks``
                       is 64 bits in two words.
=========  ==========  ======================================================================
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Final, Mapping

from .contract import BOOST_MAX, CONF_ONE, DURATION_MAX, SOURCE_SLOTS, FusionParams, Source
from .protocol import MAX_FRAME, PROTOCOL_VERSION

__all__ = ["Access", "StatKind", "Register", "REGISTERS", "BY_NAME", "BY_ADDR", "GROUPS",
           "MAGIC", "VERSION", "STATS_CONTROL_SNAPSHOT", "STATS_CONTROL_CLEAR", "REG_WIDTH",
           "ADDR_WIDTH", "register", "param_registers", "stats_registers", "params_to_writes",
           "params_from_values", "IDENTITY_NAMES"]

#: Every register is a 32-bit word.
REG_WIDTH: Final = 32
ADDR_WIDTH: Final = 16
#: b"SGFS" read as a little-endian word.
MAGIC: Final = int.from_bytes(b"SGFS", "little")
#: Protocol major/minor in the upper half, register map revision in the lower.
REGMAP_REVISION: Final = 0
VERSION: Final = PROTOCOL_VERSION[0] << 24 | PROTOCOL_VERSION[1] << 16 | REGMAP_REVISION

#: ``stats_control`` bits (write 1 to act; reads 0).  Both in one write: the snapshot takes the
#: values the clear discards, in the same clock (a lossless read-and-clear).
STATS_CONTROL_SNAPSHOT: Final = 1 << 0
STATS_CONTROL_CLEAR: Final = 1 << 1


class Access(str, enum.Enum):
    RO = "ro"
    RW = "rw"
    #: Write-only action bits; reads return 0.
    WO = "wo"


class StatKind(str, enum.Enum):
    #: Counts a strobe (one per clock at most), 32 bits, wraps.
    COUNTER = "counter"
    #: Samples an input value at the snapshot.
    GAUGE = "gauge"
    #: Half of the 64-bit clock counter (``part`` 0 = low word, 1 = high word).
    UPTIME = "uptime"


@dataclass(frozen=True)
class Register:
    name: str
    addr: int
    access: Access
    doc: str
    group: str
    width: int = REG_WIDTH
    reset: int = 0
    #: Largest value a write may store (None: any value of ``width`` bits).
    maximum: int | None = None
    #: For a fusion register: the FusionParams field and the index into it (None for scalars).
    param: tuple[str, int | None] | None = None
    #: For a stats register: how it is fed.
    stat: StatKind | None = None
    #: For the uptime words: 0 low, 1 high.
    part: int = 0

    @property
    def writable(self) -> bool:
        return self.access in (Access.RW, Access.WO)

    @property
    def readable(self) -> bool:
        return True

    @property
    def max_value(self) -> int:
        return (1 << self.width) - 1 if self.maximum is None else self.maximum


#: (name, base address, size in words, doc)
GROUPS: Final = (
    ("identity", 0x00, 0x10, "read-only facts about the build"),
    ("control", 0x10, 0x10, "scratch and stats control"),
    ("fusion", 0x20, 0x20, "fusion runtime parameters (FusionParams)"),
    ("stats", 0x40, 0x20, "stats counters as of the last snapshot"),
)
_BASE = {name: base for name, base, _, _ in GROUPS}

#: Identity registers whose value depends on the build (constructor parameters of the register
#: file); ``magic`` and ``version`` are constants.
IDENTITY_NAMES: Final = ("build_id", "clk_hz", "pair_slots", "queue_capacity", "uart_divisor")


def _identity() -> list[Register]:
    g = "identity"
    return [
        Register("magic", 0x00, Access.RO, 'b"SGFS" as a little-endian word: this is a sigfuse board',
                 g, reset=MAGIC),
        Register("version", 0x01, Access.RO, "protocol major << 24 | minor << 16 | register map "
                 "revision; a host talks to boards of its own major", g, reset=VERSION),
        Register("build_id", 0x02, Access.RO, "hash of the design (build parameters and sources)", g),
        Register("clk_hz", 0x03, Access.RO, "frequency of the datapath clock, Hz", g),
        Register("pair_slots", 0x04, Access.RO, "pair slots of the fusion engine; a signal's pair "
                 "must be below it", g, width=9),
        Register("queue_capacity", 0x05, Access.RO, "decision queue capacity", g),
        Register("uart_divisor", 0x06, Access.RO, "clocks per UART bit (0 when the link is not a "
                 "UART); baud = clk_hz / uart_divisor", g),
        Register("max_frame", 0x07, Access.RO, "largest decoded frame in bytes (header, body, CRC)",
                 g, width=8, reset=MAX_FRAME),
    ]


def _control() -> list[Register]:
    g, base = "control", _BASE["control"]
    return [
        Register("scratch", base + 0, Access.RW, "free for the host: link and register tests", g),
        Register("stats_control", base + 1, Access.WO, "bit 0 snapshot: copy every stats counter "
                 "into the stats registers in one clock; bit 1 clear: zero the counters (with "
                 "bit 0, in the same clock: read-and-clear loses nothing)", g, width=2),
    ]


_Q15_MAX = CONF_ONE


def _fusion() -> list[Register]:
    g, base = "fusion", _BASE["fusion"]
    defaults = FusionParams()
    regs = []
    for i, source in enumerate(Source):
        regs.append(Register(f"weight_{source.wire_name}", base + i, Access.RW,
                             f"weight of source slot {i} ({source.wire_name}), UQ1.15", g, width=16,
                             reset=defaults.weights[i], maximum=_Q15_MAX, param=("weights", i)))
    scalars = (
        ("consensus_threshold", 16, _Q15_MAX, "θ: consensus when M ≥ θ·T, UQ1.15"),
        ("quorum", 16, _Q15_MAX, "minimum W_A of the agreeing sources, UQ1.15"),
        ("min_confidence", 16, _Q15_MAX, "minimum fused confidence to emit, UQ1.15"),
        ("vote_ttl_us", 32, DURATION_MAX, "a vote is live while t − vote.ts ≤ vote_ttl_us, µs"),
        ("cooldown_us", 32, DURATION_MAX, "re-emission of the same side after this long, µs"),
    )
    for j, (name, width, maximum, doc) in enumerate(scalars):
        regs.append(Register(name, base + SOURCE_SLOTS + j, Access.RW, doc, g, width=width,
                             reset=getattr(defaults, name), maximum=maximum, param=(name, None)))
    for n in range(SOURCE_SLOTS):
        regs.append(Register(f"boost_{n + 1}", base + 0x10 + n, Access.RW,
                             f"boost multiplier for {n + 1} agreeing source{'s' if n else ''}, UQ2.14",
                             g, width=16, reset=defaults.boost[n], maximum=BOOST_MAX,
                             param=("boost", n)))
    return regs


#: (name, kind, doc) in address order.
_STATS: Final = (
    ("frames_ok", StatKind.COUNTER, "frames received with a good CRC (whatever their type)"),
    ("frames_bad_crc", StatKind.COUNTER, "frames dropped: CRC mismatch"),
    ("frames_bad_cobs", StatKind.COUNTER, "frames dropped: COBS block cut short by a delimiter"),
    ("frames_oversize", StatKind.COUNTER, "frames dropped: more than 255 bytes between delimiters"),
    ("frames_truncated", StatKind.COUNTER, "frames dropped: fewer than 4 bytes decoded"),
    ("frames_unknown_type", StatKind.COUNTER, "valid frames of no command type (ERROR UNKNOWN_TYPE)"),
    ("frames_bad_length", StatKind.COUNTER, "commands refused: body length (ERROR BAD_LENGTH)"),
    ("frames_bad_value", StatKind.COUNTER, "commands refused: value out of range (ERROR BAD_VALUE)"),
    ("reg_bad_address", StatKind.COUNTER, "register accesses refused: no such address, or a "
     "write to a read-only register (ERROR BAD_ADDRESS, READ_ONLY)"),
    ("frames_duplicate", StatKind.COUNTER, "commands not executed: the previous frame's seq again"),
    ("frames_seq_gap", StatKind.COUNTER, "valid frames whose seq is not the previous one's + 1 "
     "(host -> board frames lost, or a new host session)"),
    ("uart_rx_errors", StatKind.COUNTER, "UART bytes with a bad stop bit (dropped)"),
    ("uart_rx_overrun", StatKind.COUNTER, "UART bytes lost: the receive buffer was full"),
    ("signals_in", StatKind.COUNTER, "signals accepted by the fusion pipeline"),
    ("stale_drops", StatKind.COUNTER, "signals dropped as stale"),
    ("decisions_out", StatKind.COUNTER, "decisions emitted by the fusion pipeline"),
    ("queue_pushes", StatKind.COUNTER, "decisions pushed into the queue (a push into a full "
     "queue counts too: it evicts or is rejected)"),
    ("queue_pops", StatKind.COUNTER, "pop requests served (empty pops included)"),
    ("queue_evicted", StatKind.COUNTER, "decisions evicted from the full queue"),
    ("queue_rejected", StatKind.COUNTER, "decisions rejected by the full queue"),
    ("queue_occupancy", StatKind.GAUGE, "decisions in the queue"),
    ("queue_high_water", StatKind.GAUGE, "most decisions the queue has held"),
    ("uptime_clocks_lo", StatKind.UPTIME, "clocks since reset, low word"),
    ("uptime_clocks_hi", StatKind.UPTIME, "clocks since reset, high word"),
)


def _stats() -> list[Register]:
    g, base = "stats", _BASE["stats"]
    return [Register(name, base + i, Access.RO, doc, g, stat=kind,
                     part=1 if name.endswith("_hi") else 0)
            for i, (name, kind, doc) in enumerate(_STATS)]


def _build() -> tuple[Register, ...]:
    regs = (*_identity(), *_control(), *_fusion(), *_stats())
    names, addrs = set(), set()
    for r in regs:
        if r.name in names or r.addr in addrs:
            raise AssertionError(f"register {r.name} at 0x{r.addr:04x} is not unique")
        names.add(r.name)
        addrs.add(r.addr)
        base, size = next((b, s) for n, b, s, _ in GROUPS if n == r.group)
        if not base <= r.addr < base + size:
            raise AssertionError(f"register {r.name} lies outside its group {r.group}")
        if not 0 <= r.reset <= r.max_value or r.width > REG_WIDTH:
            raise AssertionError(f"register {r.name}: bad width or reset")
    return tuple(sorted(regs, key=lambda r: r.addr))


#: Every register, by address.
REGISTERS: Final[tuple[Register, ...]] = _build()
BY_NAME: Final[Mapping[str, Register]] = {r.name: r for r in REGISTERS}
BY_ADDR: Final[Mapping[int, Register]] = {r.addr: r for r in REGISTERS}


def register(name: str) -> Register:
    """The register called ``name``; KeyError naming the close matches otherwise."""
    try:
        return BY_NAME[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, BY_NAME, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no register {name!r}{hint}") from None


def param_registers() -> tuple[Register, ...]:
    return tuple(r for r in REGISTERS if r.param is not None)


def stats_registers() -> tuple[Register, ...]:
    return tuple(r for r in REGISTERS if r.stat is not None)


def params_to_writes(params: FusionParams) -> list[tuple[int, int]]:
    """``(addr, value)`` for every fusion register: one REG_WRITE frame sets ``params``."""
    writes = []
    for r in param_registers():
        field, index = r.param
        value = getattr(params, field)
        writes.append((r.addr, value if index is None else value[index]))
    return writes


def params_from_values(values: Mapping[int, int]) -> FusionParams:
    """A FusionParams from register values by address (e.g. a REG_READ_REPLY)."""
    fields: dict[str, object] = {}
    arrays: dict[str, list[int]] = {}
    for r in param_registers():
        field, index = r.param
        if index is None:
            fields[field] = values[r.addr]
        else:
            arrays.setdefault(field, [0] * SOURCE_SLOTS)[index] = values[r.addr]
    fields.update({k: tuple(v) for k, v in arrays.items()})
    return FusionParams(**fields)


def _check_covers_params() -> None:
    covered = {r.param[0] for r in param_registers()}
    missing = {f.name for f in dataclasses.fields(FusionParams)} - covered
    if missing:
        raise AssertionError(f"FusionParams fields without registers: {sorted(missing)}")


_check_covers_params()
