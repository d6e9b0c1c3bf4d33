"""The Board API: what a user holds, whatever the transport.

>>> with Board.open("socket://127.0.0.1:4321") as board:      # doctest: +SKIP
...     print(board.identify())
...     board.write("scratch", 0x1234)
...     results = board.push(signals)
...     popped = board.pop(4)
...     print(board.stats()["signals_in"])

:meth:`Board.open` picks the transport from the URL: ``pcie://`` and ``pcie-sim://``
(:mod:`sigfuse.link.pcie`), ``amaranth-sim://`` (:mod:`.sim`), anything else a pyserial URL or
device path (:mod:`.uart`).  Registers are reached by name from :mod:`sigfuse.regmap`, with the
map's range checks done on the host before anything is sent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from ..contract import FusionParams, Signal
from ..protocol import PROTOCOL_VERSION, Result
from ..regmap import (MAGIC, REGISTERS, STATS_CONTROL_SNAPSHOT, Register,
                      params_from_values, params_to_writes, param_registers, register,
                      stats_registers)
from .transport import LinkCounters, LinkError, Transport

__all__ = ["Board", "BoardIdentity", "IdentityMismatch", "open_transport", "source_build"]


class IdentityMismatch(LinkError):
    """The device is not the board the host expects (magic, protocol major or build ID)."""


@dataclass(frozen=True)
class BoardIdentity:
    """What the identity registers say."""
    magic: int
    version: int
    build_id: int
    clk_hz: int
    pair_slots: int
    queue_capacity: int
    uart_divisor: int
    max_frame: int

    @property
    def protocol(self) -> tuple[int, int]:
        return self.version >> 24, (self.version >> 16) & 0xFF

    @property
    def regmap_revision(self) -> int:
        return self.version & 0xFFFF

    @property
    def baudrate(self) -> int | None:
        return self.clk_hz // self.uart_divisor if self.uart_divisor else None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["protocol"] = "%d.%d" % self.protocol
        out["regmap_revision"] = self.regmap_revision
        out["baudrate"] = self.baudrate
        return out


_IDENTITY = ("magic", "version", "build_id", "clk_hz", "pair_slots", "queue_capacity",
             "uart_divisor", "max_frame")


def source_build(identity: BoardIdentity) -> str | None:
    """The board (``icebreaker``, ``ulx3s``; ``pcie`` for the PCIe core) whose product core,
    built from the gateware sources installed with this host at the clock, link, pair slots and
    queue capacity ``identity`` reports, has its build ID -- None when the device runs other
    gateware (an older or newer bitstream, another core).  The build ID hashes the sources and
    those parameters (:func:`sigfuse.gateware.core.build_id`,
    :func:`sigfuse.gateware.pcie.pcie_build_id`), so the host can tell without a record of what
    was flashed."""
    from ..gateware.core import BOARD_PARAMETERS, CoreParameters, build_id
    from ..gateware.pcie import pcie_build_id
    if pcie_build_id(identity.pair_slots, identity.queue_capacity,
                     identity.clk_hz) == identity.build_id:
        return "pcie"
    for board, build in BOARD_PARAMETERS.items():
        if (build.pair_slots, build.queue_capacity) != (identity.pair_slots,
                                                        identity.queue_capacity):
            continue
        parameters = CoreParameters(pair_slots=build.pair_slots,
                                    queue_capacity=build.queue_capacity, clk_hz=identity.clk_hz,
                                    uart_divisor=identity.uart_divisor,
                                    ram_style=build.ram_style, engine=build.engine)
        if build_id(parameters) == identity.build_id:
            return board
    return None


def open_transport(url: str, **options) -> Transport:
    """The transport for ``url`` (options: ``timeout``, ``retries``, ``baudrate``, ...)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme in ("pcie", "pcie-sim"):
        try:
            from . import pcie
        except ImportError as error:
            raise LinkError(f"{url}: the PCIe transport is not available ({error})") from None
        opener = getattr(pcie, "open_url", None) or getattr(pcie, "PcieTransport").open_url
        return opener(url, **{k: v for k, v in options.items() if k in ("timeout",)})
    if scheme == "amaranth-sim":
        from .sim import open_sim_transport
        options.pop("baudrate", None)
        options.setdefault("timeout", 120.0)
        return open_sim_transport(url, **options)
    from .uart import UartTransport
    return UartTransport.open_url(url, **options)


class Board:
    """One board behind a :class:`~.transport.Transport`.

    :param expected_build_id: when given, :meth:`identify` (run by :meth:`open`) refuses a
        board whose build ID differs.
    """

    def __init__(self, transport: Transport, *, expected_build_id: int | None = None) -> None:
        self.transport = transport
        self.expected_build_id = expected_build_id
        self._identity: BoardIdentity | None = None

    @classmethod
    def open(cls, url: str, *, expected_build_id: int | None = None, identify: bool = True,
             **options) -> "Board":
        """Open ``url`` and (by default) check that it is a sigfuse board of this protocol."""
        board = cls(open_transport(url, **options), expected_build_id=expected_build_id)
        if identify:
            try:
                board.identify()
            except BaseException:
                board.close()
                raise
        return board

    @property
    def url(self) -> str:
        return self.transport.url

    @property
    def counters(self) -> LinkCounters:
        """What the host saw on the link (the board's own counters: :meth:`stats`)."""
        return self.transport.counters

    # --- identity -----------------------------------------------------------------------------

    def identify(self) -> BoardIdentity:
        """Read and check the identity registers."""
        values = self.transport.read_registers([register(n).addr for n in _IDENTITY])
        identity = BoardIdentity(*values)
        if identity.magic != MAGIC:
            raise IdentityMismatch(f"{self.url}: not a sigfuse board (magic 0x{identity.magic:08x}, "
                                   f"expected 0x{MAGIC:08x})")
        if identity.protocol[0] != PROTOCOL_VERSION[0]:
            raise IdentityMismatch(
                f"{self.url}: the board speaks protocol {identity.protocol[0]}.{identity.protocol[1]}, "
                f"this host {PROTOCOL_VERSION[0]}.{PROTOCOL_VERSION[1]} (majors must match)")
        if self.expected_build_id is not None and identity.build_id != self.expected_build_id:
            raise IdentityMismatch(f"{self.url}: build ID 0x{identity.build_id:08x} on the board, "
                                   f"0x{self.expected_build_id:08x} expected")
        self._identity = identity
        return identity

    @property
    def identity(self) -> BoardIdentity:
        return self._identity or self.identify()

    # --- registers ----------------------------------------------------------------------------

    def read(self, name: str) -> int:
        """The value of the register ``name`` (a write-only register reads 0)."""
        return self.transport.read_registers([register(name).addr])[0]

    def read_many(self, names: Sequence[str]) -> dict[str, int]:
        regs = [register(n) for n in names]
        return dict(zip(names, self.transport.read_registers([r.addr for r in regs])))

    def read_all(self) -> dict[str, int]:
        """Every register by name, in address order."""
        values = self.transport.read_registers([r.addr for r in REGISTERS])
        return {r.name: v for r, v in zip(REGISTERS, values)}

    @staticmethod
    def _check_write(reg: Register, value: int) -> tuple[int, int]:
        if not reg.writable:
            raise ValueError(f"register {reg.name} is read-only")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= reg.max_value:
            raise ValueError(f"register {reg.name} takes 0..{reg.max_value}, not {value!r}")
        return reg.addr, value

    def write(self, name: str, value: int) -> None:
        """Write ``value`` to the register ``name`` (range-checked against the map first)."""
        self.transport.write_registers([self._check_write(register(name), value)])

    def write_many(self, values: dict[str, int]) -> None:
        """Several registers in one command when they fit (fusion registers take effect
        together)."""
        self.transport.write_registers([self._check_write(register(n), v) for n, v in values.items()])

    def set_params(self, params: FusionParams) -> None:
        """Every fusion register in one REG_WRITE: the new set takes effect at once, between
        two signals."""
        self.transport.write_registers(params_to_writes(params))

    def params(self) -> FusionParams:
        regs = param_registers()
        values = self.transport.read_registers([r.addr for r in regs])
        return params_from_values({r.addr: v for r, v in zip(regs, values)})

    # --- datapath -----------------------------------------------------------------------------

    def push(self, signals: Sequence[Signal]) -> list[Result]:
        """Push signals (batched into full frames, pipelined); their results in order."""
        slots = self.identity.pair_slots
        for i, s in enumerate(signals):
            if not 0 <= s.pair < slots:
                raise ValueError(f"signal {i}: pair slot {s.pair} is not below the board's "
                                 f"{slots} pair slots")
        return self.transport.push_signals(signals)

    def pop(self, count: int = 1) -> list[Result]:
        """Pop ``count`` decisions: one POPPED or POPPED_EMPTY result each."""
        if count < 0:
            raise ValueError(f"cannot pop {count} decisions")
        return self.transport.pop(count) if count else []

    # --- stats --------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """A coherent snapshot of every counter, by name (``uptime_clocks`` joined to 64 bits)."""
        values = self.transport.stats()
        out = {}
        for r in stats_registers():
            out[r.name] = values[r.addr]
        out["uptime_clocks"] = out.pop("uptime_clocks_hi") << 32 | out.pop("uptime_clocks_lo")
        return out

    def snapshot(self, *, clear: bool = False) -> None:
        """Snapshot (and optionally clear, losslessly) the counters into the stats registers."""
        from ..regmap import STATS_CONTROL_CLEAR
        self.write("stats_control", STATS_CONTROL_SNAPSHOT | (STATS_CONTROL_CLEAR if clear else 0))

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Board({self.url!r})"

