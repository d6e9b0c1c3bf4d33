"""The PCIe BAR layout, defined once: a register window, a signal ring and a result ring.

A PCIe board exposes one 4 KiB memory window (BAR0) of 32-bit words, and reads and writes two
rings that live in **host memory** (DMA):

* the **register window**: identification and status words, a *mailbox* that reaches every
  register of :mod:`sigfuse.regmap` (write ``reg_addr``/``reg_wdata``, then ``reg_ctrl`` with an
  operation and a new ticket; the device answers in ``reg_rdata``/``reg_status`` with the same
  ticket), and the rings' configuration and doorbells;
* the **signal ring** (host -> device): :data:`SIGNAL_ENTRY_BYTES`-byte entries, each a signal
  record (:data:`sigfuse.protocol.SIGNAL_RECORD_LAYOUT`) or a pop command;
* the **result ring** (device -> host): :data:`RESULT_ENTRY_BYTES`-byte entries, each a result
  record in the link's format (:data:`sigfuse.protocol.RESULT_RECORD_LAYOUT`) and its sequence
  number.

Ring indices are free-running 32-bit counters (slot = index mod entries, entries a power of
two): a ring is empty when head == tail and full when head - tail == entries.  Every word of the
window has exactly **one writer** (:class:`Writer`), so the same protocol works over real MMIO
(a write is an event the device sees) and over a polled shared-memory model (``pcie-sim://``,
where the device polls the host's words for changes): the mailbox's ticket makes a repeated
request distinguishable from an unchanged word.

Everything else derives from here: ``firmware/include/sigfuse_bar.h`` (:func:`render_c_header`),
the gateware (``gateware/pcie.py``), the Verilator model (``sim/harness/pcie.cpp``, which
includes the header) and the host transport (``host/link/pcie.py``).  ``docs/pcie.md`` explains
it.  Nothing here imports Amaranth.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Mapping, Sequence

from .contract import Field
from .protocol import (RESULT_RECORD_BYTES, RESULT_RECORD_LAYOUT, SIGNAL_RECORD_BYTES,
                       SIGNAL_RECORD_LAYOUT, record_bytes)

__all__ = [
    "BAR_MAGIC", "BAR_VERSION", "BAR_SIZE", "SIM_HOST_MEMORY_OFFSET", "Writer", "BarRegister",
    "BAR_REGISTERS", "BAR", "STATUS_ENABLED", "STATUS_FAULT", "STATUS_RING_ERROR",
    "STATUS_ENTRY_ERROR", "STATUS_GONE", "CONTROL_ENABLE", "RegOp", "REG_OP_MASK",
    "REG_COMMIT", "REG_TICKET_SHIFT", "REG_TICKET_MASK", "RegStatus", "REG_STATUS_CODE_MASK",
    "EntryOp", "SIGNAL_ENTRY_LAYOUT", "RESULT_ENTRY_LAYOUT", "SIGNAL_ENTRY_BYTES",
    "RESULT_ENTRY_BYTES", "RING_ENTRIES_MIN", "RING_ENTRIES_MAX", "RING_ALIGN", "RingLayout",
    "ring_layout", "check_ring_entries", "HEADER_PATH", "render_c_header", "write_c_header",
    "check_c_header",
]

#: b"SFPB" as a little-endian word: this window is a sigfuse PCIe board.
BAR_MAGIC: Final = int.from_bytes(b"SFPB", "little")
#: Layout major << 16 | minor.  A host talks to a window of its own major.
BAR_VERSION: Final = 1 << 16 | 0
#: Size of the register window in bytes (BAR0).
BAR_SIZE: Final = 0x1000
#: In a ``pcie-sim://`` file the window comes first; the host memory the rings live in follows
#: it, and DMA address ``A`` is at file offset ``SIM_HOST_MEMORY_OFFSET + A``.
SIM_HOST_MEMORY_OFFSET: Final = BAR_SIZE


class Writer(str, enum.Enum):
    """Who writes a word of the window (the other side only reads it)."""
    HOST = "host"
    DEVICE = "device"


@dataclass(frozen=True)
class BarRegister:
    name: str
    #: Byte offset in the window (a multiple of 4).
    offset: int
    writer: Writer
    doc: str


_W = Writer
#: Every word of the window, by offset.  Words not listed read 0; the host writes nothing else.
BAR_REGISTERS: Final[tuple[BarRegister, ...]] = (
    BarRegister("bar_magic", 0x00, _W.DEVICE, 'b"SFPB" as a little-endian word (all ones: the device is gone)'),
    BarRegister("bar_version", 0x04, _W.DEVICE, "layout major << 16 | minor"),
    BarRegister("status", 0x08, _W.DEVICE, "STATUS_* bits"),
    BarRegister("control", 0x0C, _W.HOST, "CONTROL_* bits; set ENABLE after configuring both rings"),
    BarRegister("heartbeat", 0x10, _W.DEVICE, "changes while the device runs (the model: every poll)"),
    BarRegister("model_pid", 0x14, _W.DEVICE, "pcie-sim only: process ID of the model (0 on hardware)"),
    BarRegister("clocks_lo", 0x18, _W.DEVICE, "datapath clocks so far, low word (the model: simulated clocks)"),
    BarRegister("clocks_hi", 0x1C, _W.DEVICE, "datapath clocks so far, high word"),
    BarRegister("reg_addr", 0x20, _W.HOST, "mailbox: register address (sigfuse.regmap word index)"),
    BarRegister("reg_wdata", 0x24, _W.HOST, "mailbox: value to write"),
    BarRegister("reg_ctrl", 0x28, _W.HOST, "mailbox: RegOp | REG_COMMIT | ticket << REG_TICKET_SHIFT; "
                "a write with a ticket other than reg_status's is a request"),
    BarRegister("reg_rdata", 0x2C, _W.DEVICE, "mailbox: value read (valid when reg_status shows the request's ticket)"),
    BarRegister("reg_status", 0x30, _W.DEVICE, "mailbox: RegStatus | ticket << REG_TICKET_SHIFT of the last request served"),
    BarRegister("sig_base_lo", 0x40, _W.HOST, "signal ring: DMA address, low word (RING_ALIGN-aligned)"),
    BarRegister("sig_base_hi", 0x44, _W.HOST, "signal ring: DMA address, high word"),
    BarRegister("sig_entries", 0x48, _W.HOST, "signal ring: entries, a power of two"),
    BarRegister("sig_head", 0x4C, _W.HOST, "signal ring doorbell: entries written by the host (free-running)"),
    BarRegister("sig_tail", 0x50, _W.DEVICE, "signal ring: entries fetched by the device; their slots are free"),
    BarRegister("sig_done", 0x54, _W.DEVICE, "signal ring: entries whose results are all in the result ring "
                "(published after res_head)"),
    BarRegister("entry_errors", 0x58, _W.DEVICE, "signal ring entries refused (bad op, reserved bits, pair slot) and skipped"),
    BarRegister("res_base_lo", 0x60, _W.HOST, "result ring: DMA address, low word (RING_ALIGN-aligned)"),
    BarRegister("res_base_hi", 0x64, _W.HOST, "result ring: DMA address, high word"),
    BarRegister("res_entries", 0x68, _W.HOST, "result ring: entries, a power of two"),
    BarRegister("res_head", 0x6C, _W.DEVICE, "result ring: entries written by the device (free-running)"),
    BarRegister("res_tail", 0x70, _W.HOST, "result ring doorbell: entries consumed by the host; their slots are free"),
)
#: Byte offset of every word, by name.
BAR: Final[Mapping[str, int]] = {r.name: r.offset for r in BAR_REGISTERS}

# status bits
STATUS_ENABLED: Final = 1 << 0       # the rings run (control ENABLE applied)
STATUS_FAULT: Final = 1 << 1         # the datapath raised its fault flag (sticky)
STATUS_RING_ERROR: Final = 1 << 2    # ENABLE refused: bad entries or base (rings stay off)
STATUS_ENTRY_ERROR: Final = 1 << 3   # a ring entry was refused (sticky; see entry_errors)
STATUS_GONE: Final = 1 << 31         # the model stopped (it also writes all ones to bar_magic)
# control bits
CONTROL_ENABLE: Final = 1 << 0       # 0 -> 1: latch both rings' configuration, indices to 0


class RegOp(enum.IntEnum):
    """Mailbox operation (``reg_ctrl`` bits 0-1)."""
    NONE = 0
    READ = 1
    WRITE = 2


REG_OP_MASK: Final = 0x3
#: With WRITE: after the write, the fusion registers written since the last commit take effect
#: together (the end of a REG_WRITE frame on the UART link).
REG_COMMIT: Final = 1 << 2
REG_TICKET_SHIFT: Final = 8
REG_TICKET_MASK: Final = 0xFF_FFFF


class RegStatus(enum.IntEnum):
    """Mailbox answer (``reg_status`` bits 0-3), the link's ERROR codes for register access."""
    OK = 0
    BAD_ADDRESS = 1
    READ_ONLY = 2
    BAD_VALUE = 3
    BAD_OP = 4


REG_STATUS_CODE_MASK: Final = 0xF


class EntryOp(enum.IntEnum):
    """``op`` of a signal ring entry."""
    SIGNAL = 0
    POP = 1


#: A signal ring entry, 16 bytes (the record first, so a DMA reader's 128-bit word is one entry).
SIGNAL_ENTRY_LAYOUT: Final = (
    Field("record", SIGNAL_RECORD_BYTES * 8, doc="SIGNAL_RECORD_LAYOUT (ignored for POP)"),
    Field("op", 8, doc="EntryOp"),
    Field("reserved", 8, doc="zero"),
)
#: A result ring entry, 32 bytes.
RESULT_ENTRY_LAYOUT: Final = (
    Field("record", RESULT_RECORD_BYTES * 8, doc="RESULT_RECORD_LAYOUT"),
    Field("seq", 32, doc="index of this result (mod 2**32) = its ring index"),
    Field("reserved", 64, doc="zero"),
)
SIGNAL_ENTRY_BYTES: Final = record_bytes(SIGNAL_ENTRY_LAYOUT)
RESULT_ENTRY_BYTES: Final = record_bytes(RESULT_ENTRY_LAYOUT)
assert SIGNAL_ENTRY_BYTES == 16 and RESULT_ENTRY_BYTES == 32
assert sum(f.width for f in SIGNAL_RECORD_LAYOUT) == SIGNAL_RECORD_BYTES * 8
assert sum(f.width for f in RESULT_RECORD_LAYOUT) == RESULT_RECORD_BYTES * 8

RING_ENTRIES_MIN: Final = 2
RING_ENTRIES_MAX: Final = 1 << 16
#: Ring bases are page-aligned (a DMA buffer from a driver is; the model checks it).
RING_ALIGN: Final = 4096


def check_ring_entries(entries: int, what: str = "ring") -> None:
    if not (RING_ENTRIES_MIN <= entries <= RING_ENTRIES_MAX and entries & (entries - 1) == 0):
        raise ValueError(f"{what}: entries must be a power of two within "
                         f"[{RING_ENTRIES_MIN}, {RING_ENTRIES_MAX}], not {entries}")


@dataclass(frozen=True)
class RingLayout:
    """Where the two rings lie in one host DMA buffer."""
    sig_entries: int
    res_entries: int
    sig_base: int
    res_base: int
    #: Bytes of host memory both rings need.
    size: int

    @property
    def sim_file_size(self) -> int:
        """Size of a ``pcie-sim://`` file holding the window and this host memory."""
        return SIM_HOST_MEMORY_OFFSET + self.size


def _align(value: int) -> int:
    return -(-value // RING_ALIGN) * RING_ALIGN


def ring_layout(sig_entries: int = 1024, res_entries: int = 2048) -> RingLayout:
    """The signal ring at address 0 of the buffer, the result ring after it, both aligned."""
    check_ring_entries(sig_entries, "signal ring")
    check_ring_entries(res_entries, "result ring")
    res_base = _align(sig_entries * SIGNAL_ENTRY_BYTES)
    size = _align(res_base + res_entries * RESULT_ENTRY_BYTES)
    return RingLayout(sig_entries, res_entries, 0, res_base, size)


# --- C header ---------------------------------------------------------------------------------

HEADER_PATH: Final = Path(__file__).resolve().parent.parent / "firmware" / "include" / "sigfuse_bar.h"


def _macro(name: str) -> str:
    return name.upper()


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def _fields(prefix: str, layout: Sequence[Field]) -> list[str]:
    lines, offset = [], 0
    for f in layout:
        name = f"{prefix}_{_macro(f.name)}"
        doc = f"  /* {_comment(f.doc)} */" if f.doc else ""
        lines.append(f"#define {name}_OFFSET {offset}u")
        lines.append(f"#define {name}_WIDTH {f.width}u{doc}")
        offset += f.width
    return lines


def render_c_header() -> str:
    """``firmware/include/sigfuse_bar.h``: the window, the bits and the ring entry layouts."""
    lines = [
        "/* Generated from host/bar.py (sigfuse.bar.write_c_header); do not edit. */",
        "#ifndef SIGFUSE_BAR_H",
        "#define SIGFUSE_BAR_H",
        "",
        "/* The PCIe BAR layout: a 4 KiB register window of 32-bit words (byte offsets below) and",
        " * two rings in host memory.  Ring indices are free-running 32-bit counters. */",
        f"#define SIGFUSE_BAR_MAGIC 0x{BAR_MAGIC:08x}u  /* \"SFPB\" as a little-endian word */",
        f"#define SIGFUSE_BAR_VERSION 0x{BAR_VERSION:08x}u  /* major << 16 | minor */",
        f"#define SIGFUSE_BAR_SIZE 0x{BAR_SIZE:x}u",
        f"#define SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET 0x{SIM_HOST_MEMORY_OFFSET:x}u"
        "  /* pcie-sim files: DMA address A is at this offset + A */",
        "",
        "/* window words: byte offset, (writer) */",
    ]
    for r in BAR_REGISTERS:
        lines.append(f"#define SIGFUSE_BAR_{_macro(r.name)} 0x{r.offset:03x}u  "
                     f"/* ({r.writer.value}) {_comment(r.doc)} */")
    lines += [
        "",
        f"#define SIGFUSE_BAR_STATUS_ENABLED 0x{STATUS_ENABLED:x}u",
        f"#define SIGFUSE_BAR_STATUS_FAULT 0x{STATUS_FAULT:x}u",
        f"#define SIGFUSE_BAR_STATUS_RING_ERROR 0x{STATUS_RING_ERROR:x}u",
        f"#define SIGFUSE_BAR_STATUS_ENTRY_ERROR 0x{STATUS_ENTRY_ERROR:x}u",
        f"#define SIGFUSE_BAR_STATUS_GONE 0x{STATUS_GONE:x}u",
        f"#define SIGFUSE_BAR_CONTROL_ENABLE 0x{CONTROL_ENABLE:x}u",
        "",
        "/* mailbox */",
    ]
    lines += [f"#define SIGFUSE_BAR_REG_OP_{op.name} {int(op)}u" for op in RegOp]
    lines += [
        f"#define SIGFUSE_BAR_REG_OP_MASK 0x{REG_OP_MASK:x}u",
        f"#define SIGFUSE_BAR_REG_COMMIT 0x{REG_COMMIT:x}u",
        f"#define SIGFUSE_BAR_REG_TICKET_SHIFT {REG_TICKET_SHIFT}u",
        f"#define SIGFUSE_BAR_REG_TICKET_MASK 0x{REG_TICKET_MASK:x}u",
        f"#define SIGFUSE_BAR_REG_STATUS_CODE_MASK 0x{REG_STATUS_CODE_MASK:x}u",
    ]
    lines += [f"#define SIGFUSE_BAR_REG_STATUS_{s.name} {int(s)}u" for s in RegStatus]
    lines += ["", "/* rings */"]
    lines += [f"#define SIGFUSE_BAR_ENTRY_OP_{op.name} {int(op)}u" for op in EntryOp]
    lines += [
        f"#define SIGFUSE_BAR_SIGNAL_ENTRY_BYTES {SIGNAL_ENTRY_BYTES}u",
        f"#define SIGFUSE_BAR_RESULT_ENTRY_BYTES {RESULT_ENTRY_BYTES}u",
        f"#define SIGFUSE_BAR_RING_ENTRIES_MIN {RING_ENTRIES_MIN}u",
        f"#define SIGFUSE_BAR_RING_ENTRIES_MAX {RING_ENTRIES_MAX}u",
        f"#define SIGFUSE_BAR_RING_ALIGN {RING_ALIGN}u",
        "",
        "/* entry fields: bit offset (LSB first; bit 0 is bit 0 of the entry's first byte) and width */",
        *_fields("SIGFUSE_BAR_SIGNAL_ENTRY", SIGNAL_ENTRY_LAYOUT),
        *_fields("SIGFUSE_BAR_RESULT_ENTRY", RESULT_ENTRY_LAYOUT),
        "",
        "#endif /* SIGFUSE_BAR_H */",
        "",
    ]
    return "\n".join(lines)


def write_c_header(path: Path | str = HEADER_PATH) -> bool:
    """Write the header if it differs; True when the file changed."""
    path = Path(path)
    text = render_c_header()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def check_c_header(path: Path | str = HEADER_PATH) -> bool:
    """True when the header on disk is exactly what :func:`render_c_header` gives."""
    path = Path(path)
    return path.exists() and path.read_text() == render_c_header()
