"""The sigfuse link protocol: frames between the host and a board, defined once.

Everything on the wire is specified here, as constants and :class:`~sigfuse.contract.Field`
lists (LSB first, like the contract's record layouts).  The gateware (``gateware/framing.py``,
``gateware/dispatcher.py``), the generated C header (``firmware/include/sigfuse_link.h``, from
:mod:`sigfuse.regexport`) and the host codecs derive from this module; ``docs/link.md`` explains
it and the vectors in ``tests/vectors/link/`` prove that they agree.  Nothing here imports
Amaranth.

A frame on the wire::

    COBS( type | seq | body ... | crc_hi | crc_lo )  0x00

* ``type`` (1 byte, :class:`FrameType`) and ``seq`` (1 byte, modulo 256) form the header; the
  host numbers its commands, the board numbers its own frames (one counter per direction).
* ``body``: 0 .. :data:`MAX_BODY` bytes, laid out per type (below).  Multi-byte integers are
  little-endian; records are the contract's layouts, LSB first, padded to whole bytes.
* CRC-16/IBM-3740 (a.k.a. CRC-16/CCITT-FALSE: polynomial 0x1021, init 0xFFFF, no reflection,
  no final XOR; check value 0x29B1) over ``type | seq | body``, sent most significant byte
  first -- so the CRC computed over the whole decoded frame, CRC included, is 0 (the residue the
  gateware checks).
* COBS (consistent overhead byte stuffing) removes every 0x00 from the frame, so 0x00 only ever
  delimits frames: a receiver resynchronizes on the next 0x00 whatever came before it.  The
  decoded frame is at most :data:`MAX_FRAME` = 254 bytes, so COBS adds exactly one byte and the
  encoded frame is at most :data:`MAX_ENCODED` = 255 bytes (plus the delimiter).

Command frames (host -> board) and replies (board -> host).  Every board frame's body starts
with the :data:`REPLY_PREFIX` (the type and seq of the command it answers); each valid command
gets exactly one *terminal* reply (the command type with bit 7 set, or ``ERROR``), after the
``RESULTS`` frames it caused, if any.
"""

from __future__ import annotations

import binascii
import enum
from dataclasses import dataclass
from typing import Final, Iterable, NamedTuple, Sequence

from cobs import cobs

from .contract import DECISION_LAYOUT, SIGNAL_LAYOUT, Decision, DropReason, Field, Signal

__all__ = [
    "PROTOCOL_VERSION", "DELIMITER", "HEADER_BYTES", "CRC_BYTES", "MAX_FRAME", "MAX_BODY",
    "MAX_ENCODED", "MIN_FRAME", "CRC_NAME", "CRC_POLYNOMIAL", "CRC_INIT", "CRC_CHECK", "crc16",
    "FrameType", "ErrorCode", "AckStatus", "ResultKind", "REPLY_TYPES", "HEADER_LAYOUT",
    "REPLY_PREFIX", "REG_ADDR_LAYOUT", "REG_ACCESS_LAYOUT", "SIGNAL_RECORD_LAYOUT",
    "RESULT_RECORD_LAYOUT", "ERROR_LAYOUT", "ACK_LAYOUT", "POP_LAYOUT", "SIGNAL_RECORD_BYTES",
    "RESULT_RECORD_BYTES", "MAX_SIGNALS", "MAX_RESULTS", "MAX_REGS", "MAX_PING_DATA", "record_bytes",
    "pack_fields", "unpack_fields", "ProtocolError", "FrameError", "BadCobs", "Oversize",
    "Truncated", "BadCrc", "BodyError", "Frame", "encode_frame", "decode_frame", "split_frames",
    "Deframer", "pack_signal", "unpack_signal", "pack_signals", "unpack_signals", "Result",
    "pack_result", "unpack_result", "pack_results", "unpack_results", "ping", "reg_read",
    "reg_write", "push_signals", "pop", "stats_snapshot", "Reply", "parse_reply",
    "reply_frame", "SIDE_EFFECT_COMMANDS",
]

#: (major, minor).  A host talks to a board whose major version equals its own.
PROTOCOL_VERSION: Final = (1, 0)

DELIMITER: Final = 0x00
HEADER_BYTES: Final = 2
CRC_BYTES: Final = 2
#: Largest decoded frame (header + body + CRC).  254 keeps the COBS overhead at one byte and
#: the receive buffer of the iCE40 at one 512-byte block RAM for two frames.
MAX_FRAME: Final = 254
MAX_BODY: Final = MAX_FRAME - HEADER_BYTES - CRC_BYTES
#: Largest encoded frame (without its delimiter).  A longer run of non-zero bytes is "oversize".
MAX_ENCODED: Final = MAX_FRAME + 1
#: Smallest decoded frame (header + CRC, empty body).  A shorter one is "truncated".
MIN_FRAME: Final = HEADER_BYTES + CRC_BYTES

CRC_NAME: Final = "CRC-16/IBM-3740"
CRC_POLYNOMIAL: Final = 0x1021
CRC_INIT: Final = 0xFFFF
CRC_CHECK: Final = 0x29B1  # of b"123456789"


def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 of ``data``.

    ``binascii.crc_hqx`` is exactly this CRC (polynomial 0x1021, MSB first, no final XOR) when
    started at 0xFFFF, and it is C code in the standard library; ``amaranth.lib.crc``'s software
    model computes the same value bit by bit in Python (the tests check that they agree), two
    orders of magnitude slower.
    """
    return binascii.crc_hqx(data, CRC_INIT)


class FrameType(enum.IntEnum):
    """The ``type`` byte.  Commands are 0x01..0x7F; a command's reply is ``command | 0x80``."""
    #: Echo the body back (link test, round-trip time, flushing the reply queue).
    PING = 0x01
    #: Body: addresses (:data:`REG_ADDR_LAYOUT`, up to :data:`MAX_REGS`).
    REG_READ = 0x02
    #: Body: address/value pairs (:data:`REG_ACCESS_LAYOUT`, up to :data:`MAX_REGS`); all or
    #: nothing, fusion parameters take effect together at the end of the frame.
    REG_WRITE = 0x03
    #: Body: 1 .. :data:`MAX_SIGNALS` signal records (:data:`SIGNAL_RECORD_LAYOUT`).
    PUSH_SIGNALS = 0x04
    #: Body: :data:`POP_LAYOUT` (how many pops, 1..255).
    POP = 0x05
    #: Body: empty.  Snapshots every stats counter in one clock and returns them all.
    STATS = 0x06

    PONG = 0x81
    REG_READ_REPLY = 0x82
    REG_WRITE_ACK = 0x83
    PUSH_ACK = 0x84
    POP_ACK = 0x85
    STATS_REPLY = 0x86
    #: Results of a PUSH_SIGNALS or POP, in processing order (:data:`RESULT_RECORD_LAYOUT`).
    #: Not terminal: zero or more precede the command's terminal reply.
    RESULTS = 0x90
    #: Terminal reply to a valid frame that could not be executed (:data:`ERROR_LAYOUT`).
    ERROR = 0xFF


#: Command type -> its terminal success reply.
REPLY_TYPES: Final = {FrameType.PING: FrameType.PONG, FrameType.REG_READ: FrameType.REG_READ_REPLY,
                      FrameType.REG_WRITE: FrameType.REG_WRITE_ACK,
                      FrameType.PUSH_SIGNALS: FrameType.PUSH_ACK, FrameType.POP: FrameType.POP_ACK,
                      FrameType.STATS: FrameType.STATS_REPLY}
#: Commands that change state: a repeat of the previous frame's seq is not executed again.
SIDE_EFFECT_COMMANDS: Final = frozenset({FrameType.REG_WRITE, FrameType.PUSH_SIGNALS, FrameType.POP})


class ErrorCode(enum.IntEnum):
    """``code`` of an ERROR reply; ``detail`` says where."""
    #: The type byte is not a command.  detail = 0.
    UNKNOWN_TYPE = 1
    #: The body length does not fit the command.  detail = the body length.
    BAD_LENGTH = 2
    #: A register address that does not exist.  detail = the address.
    BAD_ADDRESS = 3
    #: A write to a read-only register.  detail = the address.
    READ_ONLY = 4
    #: A value out of range: a register value above its maximum (detail = the address), a
    #: signal whose pair slot is not below the board's pair-slot count or whose reserved bits
    #: are set (detail = the record's index), a POP count of 0 (detail = 0).
    BAD_VALUE = 5


class AckStatus(enum.IntEnum):
    """``status`` of a REG_WRITE_ACK, PUSH_ACK or POP_ACK."""
    DONE = 0
    #: The frame repeated the previous frame's seq: not executed again (a retransmission).
    DUPLICATE = 1


class ResultKind(enum.IntEnum):
    """``kind`` of a result record: what its ``record`` field holds."""
    DECISION = 0       # a decision pushed into the queue (DECISION_LAYOUT)
    POPPED = 1         # a popped decision (DECISION_LAYOUT)
    POPPED_EMPTY = 2   # a pop on an empty queue (record = 0)
    STALE = 3          # a stale signal, echoed (SIGNAL_LAYOUT, zero-extended)
    EVICTED = 4        # a decision evicted from the full queue (DECISION_LAYOUT)
    REJECTED = 5       # a decision the full queue rejected (DECISION_LAYOUT)


_DROP_KINDS: Final = {ResultKind.STALE: DropReason.STALE, ResultKind.EVICTED: DropReason.EVICTED,
                      ResultKind.REJECTED: DropReason.REJECTED}

# --- layouts ----------------------------------------------------------------------------------

HEADER_LAYOUT: Final = (Field("type", 8, doc="FrameType"), Field("seq", 8, doc="frame number mod 256"))
#: Start of every board -> host body.
REPLY_PREFIX: Final = (Field("cmd_type", 8, doc="type of the command answered"),
                       Field("cmd_seq", 8, doc="seq of the command answered"))
REG_ADDR_LAYOUT: Final = (Field("addr", 16, doc="register address (word index)"),)
REG_ACCESS_LAYOUT: Final = (Field("addr", 16, doc="register address (word index)"),
                            Field("value", 32, doc="register value, zero-extended"))
_SIGNAL_BITS = sum(f.width for f in SIGNAL_LAYOUT)
_DECISION_BITS = sum(f.width for f in DECISION_LAYOUT)
#: A signal on the wire: the contract's 108-bit record padded with zeros to 14 bytes.
SIGNAL_RECORD_LAYOUT: Final = (*SIGNAL_LAYOUT,
                               Field("reserved", -_SIGNAL_BITS % 8, doc="zero"))
#: A result on the wire, 20 bytes.  ``record`` holds a DECISION_LAYOUT record, or for STALE a
#: SIGNAL_LAYOUT record zero-extended.
RESULT_RECORD_LAYOUT: Final = (Field("record", _DECISION_BITS, doc="decision or signal"),
                               Field("kind", 3, doc="ResultKind"),
                               Field("reserved", -(_DECISION_BITS + 3) % 8, doc="zero"))
ERROR_LAYOUT: Final = (Field("code", 8, doc="ErrorCode"), Field("detail", 16, doc="address, index or length"))
ACK_LAYOUT: Final = (Field("status", 8, doc="AckStatus"),)
POP_LAYOUT: Final = (Field("count", 8, doc="number of pops, 1..255"),)


def record_bytes(layout: Sequence[Field]) -> int:
    width = sum(f.width for f in layout)
    if width % 8:
        raise ValueError(f"layout of {width} bits is not a whole number of bytes")
    return width // 8


SIGNAL_RECORD_BYTES: Final = record_bytes(SIGNAL_RECORD_LAYOUT)
RESULT_RECORD_BYTES: Final = record_bytes(RESULT_RECORD_LAYOUT)
_PREFIX_BYTES = record_bytes(REPLY_PREFIX)
_REG_ACCESS_BYTES = record_bytes(REG_ACCESS_LAYOUT)
MAX_SIGNALS: Final = MAX_BODY // SIGNAL_RECORD_BYTES
MAX_RESULTS: Final = (MAX_BODY - _PREFIX_BYTES) // RESULT_RECORD_BYTES
#: Registers per REG_READ or REG_WRITE (a read reply carries address and value of each).
MAX_REGS: Final = (MAX_BODY - _PREFIX_BYTES) // _REG_ACCESS_BYTES
#: Data bytes of a PING: its PONG carries the reply prefix and the same bytes, and must fit in
#: a frame too.  A longer PING is a valid frame that the board answers ERROR BAD_LENGTH.
MAX_PING_DATA: Final = MAX_BODY - _PREFIX_BYTES


def pack_fields(layout: Sequence[Field], values) -> int:
    """The integer of ``values`` (a mapping or an object with the fields as attributes) laid out
    as ``layout``, first field at bit 0; a field not given is 0."""
    get = values.get if isinstance(values, dict) else (lambda name, default: getattr(values, name, default))
    packed, offset = 0, 0
    for f in layout:
        raw = get(f.name, 0)
        lo, hi = (-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed else (0, (1 << f.width) - 1)
        if not lo <= raw <= hi:
            raise ValueError(f"field {f.name!r} = {raw} does not fit {f.width} bits")
        packed |= (raw & ((1 << f.width) - 1)) << offset
        offset += f.width
    return packed


def unpack_fields(layout: Sequence[Field], packed: int) -> dict[str, int]:
    """Field values of a packed record (signed fields sign-extended)."""
    out, offset = {}, 0
    for f in layout:
        raw = (packed >> offset) & ((1 << f.width) - 1)
        if f.signed and raw >> (f.width - 1):
            raw -= 1 << f.width
        out[f.name] = raw
        offset += f.width
    return out


# --- errors -----------------------------------------------------------------------------------

class ProtocolError(Exception):
    """Base of every error the codec raises on bad input."""


class FrameError(ProtocolError):
    """A frame that the receiver drops and counts (the name of its stats counter: ``counter``)."""
    counter = ""


class BadCobs(FrameError):
    """The COBS structure is broken: the last block ends before its code byte said."""
    counter = "frames_bad_cobs"


class Oversize(FrameError):
    """More than :data:`MAX_ENCODED` bytes between two delimiters."""
    counter = "frames_oversize"


class Truncated(FrameError):
    """Decodes to fewer than :data:`MIN_FRAME` bytes (no room for header and CRC)."""
    counter = "frames_truncated"


class BadCrc(FrameError):
    """The CRC does not match."""
    counter = "frames_bad_crc"


class BodyError(ProtocolError):
    """A valid frame whose body does not fit its type (wrong length, reserved bits set, ...)."""


# --- frames -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    """A decoded frame.  ``type`` is an int (a :class:`FrameType` when known)."""
    type: int
    seq: int
    body: bytes = b""

    def __post_init__(self) -> None:
        if not (0 <= self.type <= 0xFF and 0 <= self.seq <= 0xFF):
            raise ValueError(f"type and seq are bytes, not {self.type}, {self.seq}")
        if len(self.body) > MAX_BODY:
            raise ValueError(f"body of {len(self.body)} bytes exceeds {MAX_BODY}")

    def payload(self) -> bytes:
        """Header, body and CRC: the frame before COBS."""
        data = bytes((self.type, self.seq)) + self.body
        return data + crc16(data).to_bytes(CRC_BYTES, "big")

    def encode(self) -> bytes:
        """The frame on the wire, delimiter included."""
        return cobs.encode(self.payload()) + b"\x00"

    def __repr__(self) -> str:
        try:
            name = FrameType(self.type).name
        except ValueError:
            name = f"0x{self.type:02x}"
        return f"Frame({name}, seq={self.seq}, body={self.body.hex()})"


def encode_frame(type: int, seq: int, body: bytes = b"") -> bytes:
    """``Frame(type, seq, body).encode()``."""
    return Frame(type, seq, bytes(body)).encode()


def decode_frame(segment: bytes) -> Frame:
    """Decode the bytes between two delimiters (without them) into a :class:`Frame`.

    Raises :class:`Oversize`, :class:`BadCobs`, :class:`Truncated` or :class:`BadCrc`, checked in
    that order -- the order in which the gateware deframer decides.  An empty segment (two
    delimiters in a row) is not a frame; it raises :class:`Truncated` here, and
    :class:`Deframer` skips it without counting.
    """
    if DELIMITER in segment:
        raise BadCobs("a delimiter inside the frame")
    if len(segment) > MAX_ENCODED:
        raise Oversize(f"{len(segment)} bytes between delimiters, more than {MAX_ENCODED}")
    try:
        payload = cobs.decode(segment)
    except cobs.DecodeError as error:
        raise BadCobs(str(error)) from None
    if len(payload) < MIN_FRAME:
        raise Truncated(f"{len(payload)} bytes decoded, fewer than {MIN_FRAME}")
    # The residue of a CRC without final XOR over data + CRC (MSB first) is 0.
    if crc16(payload) != 0:
        raise BadCrc(f"CRC mismatch: got 0x{payload[-2] << 8 | payload[-1]:04x}, "
                     f"computed 0x{crc16(payload[:-CRC_BYTES]):04x}")
    return Frame(payload[0], payload[1], payload[HEADER_BYTES:-CRC_BYTES])


def split_frames(data: bytes) -> list[bytes]:
    """The non-empty segments between delimiters of a complete byte stream (ends on 0x00)."""
    return [s for s in data.split(b"\x00")[:-1] if s]


class Deframer:
    """Streaming receiver: bytes in, frames out; bad frames dropped and counted.

    The host's model of the gateware deframer: same decisions, same counters.  Bytes before
    the first delimiter are a frame too (a receiver that starts mid-frame counts one bad frame,
    then is in sync).

    >>> d = Deframer()
    >>> d.feed(b"garbage\\x00" + encode_frame(FrameType.PING, 7, b"hi"))
    [Frame(PING, seq=7, body=6869)]
    >>> d.counters["frames_bad_cobs"] + d.counters["frames_bad_crc"]
    1
    """

    COUNTERS: Final = ("frames_ok", "frames_bad_crc", "frames_bad_cobs", "frames_oversize",
                       "frames_truncated")

    def __init__(self) -> None:
        self._pending = bytearray()
        self._overflowed = False
        self.counters = dict.fromkeys(self.COUNTERS, 0)
        #: The errors of the frames dropped, in order (cleared by the caller at will).
        self.errors: list[FrameError] = []

    def feed(self, data: bytes) -> list[Frame]:
        """Consume ``data``; return the frames it completed, in order."""
        frames = []
        start = 0
        while True:
            end = data.find(b"\x00", start)
            chunk = data[start:] if end < 0 else data[start:end]
            # Keep at most MAX_ENCODED + 1 bytes of an unfinished frame: garbage without
            # delimiters cannot make the buffer grow.
            if not self._overflowed:
                self._pending += chunk
                if len(self._pending) > MAX_ENCODED:
                    self._overflowed = True
                    self._pending.clear()
            if end < 0:
                return frames
            frame = self._segment(bytes(self._pending), self._overflowed)
            if frame is not None:
                frames.append(frame)
            self._pending.clear()
            self._overflowed = False
            start = end + 1

    def _segment(self, segment: bytes, overflowed: bool) -> Frame | None:
        if not segment and not overflowed:
            return None  # two delimiters in a row: idle, not a frame
        try:
            if overflowed:
                raise Oversize(f"more than {MAX_ENCODED} bytes between delimiters")
            frame = decode_frame(segment)
        except FrameError as error:
            self.counters[error.counter] += 1
            self.errors.append(error)
            return None
        self.counters["frames_ok"] += 1
        return frame


# --- records ----------------------------------------------------------------------------------

def pack_signal(signal: Signal) -> bytes:
    return pack_fields(SIGNAL_RECORD_LAYOUT, signal).to_bytes(SIGNAL_RECORD_BYTES, "little")


def unpack_signal(data: bytes) -> Signal:
    fields = unpack_fields(SIGNAL_RECORD_LAYOUT, int.from_bytes(data, "little"))
    if fields.pop("reserved"):
        raise BodyError("signal record with reserved bits set")
    return Signal(**fields)


def pack_signals(signals: Iterable[Signal]) -> bytes:
    return b"".join(pack_signal(s) for s in signals)


def unpack_signals(body: bytes) -> list[Signal]:
    if len(body) % SIGNAL_RECORD_BYTES:
        raise BodyError(f"signal batch of {len(body)} bytes is not a multiple of {SIGNAL_RECORD_BYTES}")
    return [unpack_signal(body[i:i + SIGNAL_RECORD_BYTES])
            for i in range(0, len(body), SIGNAL_RECORD_BYTES)]


class Result(NamedTuple):
    """One result record: its kind and the decision or signal it carries (None for an empty pop)."""
    kind: ResultKind
    record: Decision | Signal | None

    @property
    def drop_reason(self) -> DropReason | None:
        return _DROP_KINDS.get(self.kind)


def pack_result(result: Result) -> bytes:
    if result.kind == ResultKind.POPPED_EMPTY:
        record = 0
    elif result.kind == ResultKind.STALE:
        record = pack_fields(SIGNAL_LAYOUT, result.record)
    else:
        record = pack_fields(DECISION_LAYOUT, result.record)
    return pack_fields(RESULT_RECORD_LAYOUT, {"record": record, "kind": int(result.kind)}
                       ).to_bytes(RESULT_RECORD_BYTES, "little")


def unpack_result(data: bytes) -> Result:
    fields = unpack_fields(RESULT_RECORD_LAYOUT, int.from_bytes(data, "little"))
    if fields["reserved"]:
        raise BodyError("result record with reserved bits set")
    try:
        kind = ResultKind(fields["kind"])
    except ValueError:
        raise BodyError(f"unknown result kind {fields['kind']}") from None
    record = fields["record"]
    if kind == ResultKind.POPPED_EMPTY:
        if record:
            raise BodyError("empty pop with a non-zero record")
        return Result(kind, None)
    if kind == ResultKind.STALE:
        if record >> _SIGNAL_BITS:
            raise BodyError("stale signal record wider than a signal")
        return Result(kind, Signal(**unpack_fields(SIGNAL_LAYOUT, record)))
    return Result(kind, Decision(**unpack_fields(DECISION_LAYOUT, record)))


def pack_results(results: Iterable[Result]) -> bytes:
    return b"".join(pack_result(r) for r in results)


def unpack_results(data: bytes) -> list[Result]:
    if len(data) % RESULT_RECORD_BYTES:
        raise BodyError(f"results of {len(data)} bytes are not a multiple of {RESULT_RECORD_BYTES}")
    return [unpack_result(data[i:i + RESULT_RECORD_BYTES])
            for i in range(0, len(data), RESULT_RECORD_BYTES)]


# --- commands (host -> board) -----------------------------------------------------------------

def ping(seq: int, data: bytes = b"") -> Frame:
    if len(data) > MAX_PING_DATA:
        raise ValueError(f"ping with at most {MAX_PING_DATA} data bytes (its PONG must fit in a "
                         f"frame), not {len(data)}")
    return Frame(FrameType.PING, seq, bytes(data))


def reg_read(seq: int, addrs: Sequence[int]) -> Frame:
    if not 1 <= len(addrs) <= MAX_REGS:
        raise ValueError(f"read 1..{MAX_REGS} registers per frame, not {len(addrs)}")
    return Frame(FrameType.REG_READ, seq, b"".join(a.to_bytes(2, "little") for a in addrs))


def reg_write(seq: int, writes: Sequence[tuple[int, int]]) -> Frame:
    if not 1 <= len(writes) <= MAX_REGS:
        raise ValueError(f"write 1..{MAX_REGS} registers per frame, not {len(writes)}")
    return Frame(FrameType.REG_WRITE, seq, b"".join(
        pack_fields(REG_ACCESS_LAYOUT, {"addr": a, "value": v}).to_bytes(_REG_ACCESS_BYTES, "little")
        for a, v in writes))


def push_signals(seq: int, signals: Sequence[Signal]) -> Frame:
    if not 1 <= len(signals) <= MAX_SIGNALS:
        raise ValueError(f"push 1..{MAX_SIGNALS} signals per frame, not {len(signals)}")
    return Frame(FrameType.PUSH_SIGNALS, seq, pack_signals(signals))


def pop(seq: int, count: int = 1) -> Frame:
    if not 1 <= count <= 255:
        raise ValueError(f"pop 1..255 decisions per frame, not {count}")
    return Frame(FrameType.POP, seq, bytes((count,)))


def stats_snapshot(seq: int) -> Frame:
    return Frame(FrameType.STATS, seq)


# --- replies (board -> host) ------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """A parsed board frame.

    ``kind`` is the frame type; ``cmd_type``/``cmd_seq`` name the command it answers.  Exactly
    one of the payload attributes is meaningful for a kind: ``status`` (acks), ``data`` (PONG),
    ``registers`` (REG_READ_REPLY, STATS_REPLY: ``(addr, value)`` in order), ``results``
    (RESULTS), ``error`` and ``detail`` (ERROR).
    """
    kind: FrameType
    seq: int
    cmd_type: int
    cmd_seq: int
    status: AckStatus | None = None
    data: bytes = b""
    registers: tuple[tuple[int, int], ...] = ()
    results: tuple[Result, ...] = ()
    error: ErrorCode | int | None = None
    detail: int = 0

    @property
    def terminal(self) -> bool:
        return self.kind != FrameType.RESULTS


def parse_reply(frame: Frame) -> Reply:
    """Parse a board frame; :class:`BodyError` for an unknown type or a malformed body."""
    try:
        kind = FrameType(frame.type)
    except ValueError:
        raise BodyError(f"unknown reply type 0x{frame.type:02x}") from None
    if kind < 0x80:
        raise BodyError(f"{kind.name} is a command, not a reply")
    if len(frame.body) < _PREFIX_BYTES:
        raise BodyError(f"{kind.name} without its reply prefix")
    base = dict(kind=kind, seq=frame.seq, cmd_type=frame.body[0], cmd_seq=frame.body[1])
    rest = frame.body[_PREFIX_BYTES:]
    if kind in (FrameType.REG_WRITE_ACK, FrameType.PUSH_ACK, FrameType.POP_ACK):
        if len(rest) != 1:
            raise BodyError(f"{kind.name} body of {len(rest)} bytes, expected 1")
        try:
            return Reply(**base, status=AckStatus(rest[0]))
        except ValueError:
            raise BodyError(f"unknown ack status {rest[0]}") from None
    if kind == FrameType.PONG:
        return Reply(**base, data=rest)
    if kind in (FrameType.REG_READ_REPLY, FrameType.STATS_REPLY):
        if len(rest) % _REG_ACCESS_BYTES:
            raise BodyError(f"{kind.name} of {len(rest)} bytes is not a list of address/value pairs")
        pairs = []
        for i in range(0, len(rest), _REG_ACCESS_BYTES):
            f = unpack_fields(REG_ACCESS_LAYOUT, int.from_bytes(rest[i:i + _REG_ACCESS_BYTES], "little"))
            pairs.append((f["addr"], f["value"]))
        return Reply(**base, registers=tuple(pairs))
    if kind == FrameType.RESULTS:
        if not rest:
            raise BodyError("RESULTS frame without records")
        return Reply(**base, results=tuple(unpack_results(rest)))
    if kind == FrameType.ERROR:
        if len(rest) != record_bytes(ERROR_LAYOUT):
            raise BodyError(f"ERROR body of {len(rest)} bytes, expected {record_bytes(ERROR_LAYOUT)}")
        f = unpack_fields(ERROR_LAYOUT, int.from_bytes(rest, "little"))
        try:
            code: ErrorCode | int = ErrorCode(f["code"])
        except ValueError:
            code = f["code"]
        return Reply(**base, error=code, detail=f["detail"])
    raise BodyError(f"no reply format for {kind.name}")  # pragma: no cover - every kind is above


def reply_frame(reply: Reply) -> Frame:
    """The frame of a :class:`Reply` (the board side, for models and test vectors)."""
    prefix = bytes((reply.cmd_type, reply.cmd_seq))
    kind = reply.kind
    if kind in (FrameType.REG_WRITE_ACK, FrameType.PUSH_ACK, FrameType.POP_ACK):
        rest = bytes((int(reply.status),))
    elif kind == FrameType.PONG:
        rest = reply.data
    elif kind in (FrameType.REG_READ_REPLY, FrameType.STATS_REPLY):
        rest = b"".join(pack_fields(REG_ACCESS_LAYOUT, {"addr": a, "value": v}).to_bytes(
            _REG_ACCESS_BYTES, "little") for a, v in reply.registers)
    elif kind == FrameType.RESULTS:
        rest = pack_results(reply.results)
    elif kind == FrameType.ERROR:
        rest = pack_fields(ERROR_LAYOUT, {"code": int(reply.error), "detail": reply.detail}
                           ).to_bytes(record_bytes(ERROR_LAYOUT), "little")
    else:
        raise ValueError(f"{kind!r} is not a reply")
    return Frame(kind, reply.seq, prefix + rest)
