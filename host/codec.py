"""The link codec the host uses: the C codec of ``firmware/`` when it is built, else Python.

The protocol is defined in :mod:`sigfuse.protocol`, which is also the pure-Python codec.  The
native codec is ``firmware/src/sigfuse_codec.c`` compiled into ``sigfuse._linkcodec`` by cffi
at install time (``host/_native_build.py``, ``setup.py``); when it is missing -- no compiler at
install time -- everything here falls back to :mod:`sigfuse.protocol`, with identical results
(``tests/link/test_codec.py`` runs the shared vectors and a differential fuzz test through
both).  ``SIGFUSE_CODEC=python`` or ``native`` forces one; forcing ``native`` when it is not
built raises :class:`CodecUnavailable`.

The native entry points are batch-oriented: :func:`encode_frames` and :func:`decode_stream` /
:meth:`Deframer.feed` take or return a whole buffer in one C call, because a cffi call costs
about as much as encoding one small frame in C.

Errors are :mod:`sigfuse.protocol`'s classes (``BadCobs``, ``Oversize``, ``Truncated``,
``BadCrc``) with the same messages, whichever codec made them.
"""

from __future__ import annotations

import os
import re
import threading
from array import array
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from . import protocol as p
from .contract import Decision, Signal
from .protocol import BadCobs, BadCrc, BodyError, Frame, FrameError, Oversize, Result, ResultKind, Truncated

__all__ = ["CodecUnavailable", "active", "reason", "native_available", "use", "crc16",
           "encode_frame", "encode_frames", "decode_frame", "decode_stream", "decode_events",
           "Deframer", "FrameBatch", "encode_packed", "decode_batch", "pack_signals",
           "unpack_results", "parse_reply", "ENV"]

ENV = "SIGFUSE_CODEC"

FrameLike = Union[Frame, Sequence]  # a Frame or (type, seq, body)


class CodecUnavailable(RuntimeError):
    """The native codec was asked for but is not built (or does not match this host)."""


# --- the native extension -----------------------------------------------------------------

try:
    from . import _linkcodec as _native  # type: ignore[attr-defined]
except ImportError as error:  # pragma: no cover - depends on the install
    _native = None
    _native_error = f"sigfuse._linkcodec is not built ({error}); install with a C compiler present"
else:
    _native_error = ""
    if _native.lib.sigfuse_codec_api() != _native.lib.SIGFUSE_CODEC_API:  # pragma: no cover
        _native_error = "sigfuse._linkcodec was built from other sources; reinstall sigfuse"
        _native = None


#: Output buffers are written before they are read: no need to zero them.
_native_alloc = _native.ffi.new_allocator(should_clear_after_alloc=False) if _native else None
#: Per-thread scratch buffers of the one-shot calls (cffi releases the GIL during a C call, so
#: threads must not share them).  Reusing them spares a page fault per 4 KiB on every call.
_scratch = threading.local()


def _out_buffer(size: int):
    buffer = getattr(_scratch, "out", None)
    if buffer is None or len(buffer) < size:
        buffer = _scratch.out = _native_alloc("char[]", max(size, 1 << 16))
    return buffer


def native_available() -> bool:
    return _native is not None


_VERDICT_OK = 0


def _drop(verdict: int, decoded_len: int, crc_got: int, crc_computed: int, *, deframer: bool,
          segment_len: int = 0) -> FrameError:
    """The protocol's error for a native verdict, with the message sigfuse.protocol gives."""
    if verdict == 1:
        if deframer:
            return Oversize(f"more than {p.MAX_ENCODED} bytes between delimiters")
        return Oversize(f"{segment_len} bytes between delimiters, more than {p.MAX_ENCODED}")
    if verdict == 2:
        return BadCobs("not enough input bytes for length code")
    if verdict == 3:
        return Truncated(f"{decoded_len} bytes decoded, fewer than {p.MIN_FRAME}")
    return BadCrc(f"CRC mismatch: got 0x{crc_got:04x}, computed 0x{crc_computed:04x}")


def _bytes(data) -> bytes:
    return data if type(data) is bytes else bytes(data)


def _check_columns(types: bytes, seqs: bytes, lengths) -> None:
    if not len(types) == len(seqs) == len(lengths):
        raise ValueError("types, seqs and lengths differ in length")


def _check_lengths(lengths, bodies: bytes) -> None:
    """encode_packed's column checks, in the order both codecs apply them."""
    if sum(lengths) != len(bodies):
        raise ValueError(f"bodies hold {len(bodies)} bytes, lengths say {sum(lengths)}")
    for n in lengths:
        if n > p.MAX_BODY:
            raise ValueError(f"body of {n} bytes exceeds {p.MAX_BODY}")


def _new_frame(type_: int, seq: int, body: bytes) -> Frame:
    # Frame's checks hold by construction here (bytes, body <= MAX_BODY); skipping
    # __init__/__post_init__ halves the cost of a frame object.
    frame = object.__new__(Frame)
    object.__setattr__(frame, "type", type_)
    object.__setattr__(frame, "seq", seq)
    object.__setattr__(frame, "body", body)
    return frame


_DROPS = re.compile(b"[^\x00]")
_VERDICT_NAMES = {1: "Oversize", 2: "BadCobs", 3: "Truncated", 4: "BadCrc"}


@dataclass(frozen=True)
class FrameBatch:
    """The verdicts of a byte stream in columns, one entry per frame or drop, in order.

    ``verdicts[i]`` is 0 for a frame (``types[i]``, ``seqs[i]``, body
    ``bodies[offsets[i]:offsets[i] + lengths[i]]``) or 1 oversize, 2 bad COBS, 3 truncated,
    4 bad CRC; ``errors`` holds the drops' :class:`FrameError` objects in order.  The native
    codec fills it in one C call, without a Python object per frame.
    """
    verdicts: bytes
    types: bytes
    seqs: bytes
    offsets: array
    lengths: array
    bodies: bytes
    errors: list

    def __len__(self) -> int:
        return len(self.verdicts)

    @property
    def frame_count(self) -> int:
        return len(self.verdicts) - len(self.errors)

    def body(self, i: int) -> bytes:
        start = self.offsets[i]
        return self.bodies[start:start + self.lengths[i]]

    def frames(self) -> list[Frame]:
        """The frames as :class:`Frame` objects."""
        return [_new_frame(self.types[i], self.seqs[i], self.body(i))
                for i in range(len(self.verdicts)) if not self.verdicts[i]]


class _NativeDeframer:
    """:class:`sigfuse.protocol.Deframer` on the C deframer."""

    COUNTERS = p.Deframer.COUNTERS

    def __init__(self) -> None:
        ffi, lib = _native.ffi, _native.lib
        self._d = ffi.new("struct sigfuse_deframer *")
        lib.sigfuse_deframer_init(self._d)
        self._consumed = ffi.new("size_t *")
        self._capacity = self._max_events = 0
        self._columns = None
        self.errors: list[FrameError] = []
        #: Frames and errors interleaved, in order (only kept when ``keep_events`` is set).
        self.keep_events = False
        self.events: list[Frame | FrameError] = []

    def reset(self) -> None:
        """Back to the state of a new deframer, keeping the buffers."""
        _native.lib.sigfuse_deframer_init(self._d)
        self.errors, self.events, self.keep_events = [], [], False

    @property
    def counters(self) -> dict[str, int]:
        d = self._d
        return {"frames_ok": d.frames_ok, "frames_bad_crc": d.frames_bad_crc,
                "frames_bad_cobs": d.frames_bad_cobs, "frames_oversize": d.frames_oversize,
                "frames_truncated": d.frames_truncated}

    def _buffers(self, data: bytes) -> None:
        # Every verdict ends at a delimiter, so the zero bytes bound the events; a body may
        # have begun in an earlier feed, hence MAX_ENCODED more bytes.
        events, size = max(_native.lib.sf_count_delimiters(data, len(data)), 1), len(data) + p.MAX_ENCODED
        if events > self._max_events:
            self._max_events = max(events, 64)
            self._events = _native_alloc("struct sigfuse_event[]", self._max_events)
            self._columns = None
        if size > self._capacity:
            self._capacity = max(size, 4096)
            self._bodies = _native_alloc("char[]", self._capacity)

    def feed_batch(self, data) -> FrameBatch:
        """Consume ``data``; its verdicts as a :class:`FrameBatch` (``errors`` also grows)."""
        data = _bytes(data)
        n = len(data)
        ffi, lib = _native.ffi, _native.lib
        self._buffers(data)
        m = self._max_events
        if self._columns is None:
            self._columns = (_native_alloc("char[]", m), _native_alloc("char[]", m),
                             _native_alloc("char[]", m), _native_alloc("uint32_t[]", m),
                             _native_alloc("uint16_t[]", m))
        verdicts, types, seqs, offsets, lengths = self._columns
        count = lib.sf_feed_columns(self._d, data, n, self._events, m, self._bodies, self._consumed,
                                    verdicts, types, seqs, offsets, lengths)
        assert self._consumed[0] == n
        v = ffi.unpack(verdicts, count)
        off, lens = array("I"), array("H")
        off.frombytes(ffi.buffer(offsets, 4 * count))
        lens.frombytes(ffi.buffer(lengths, 2 * count))
        end = off[-1] + lens[-1] if count else 0
        errors = []
        for match in _DROPS.finditer(v):  # drops are rare: visit only them
            i = match.start()
            d = self._events[i].detail
            errors.append(_drop(v[i], d.decoded_len, d.crc_got, d.crc_computed, deframer=True))
        self.errors += errors
        return FrameBatch(v, ffi.unpack(types, count), ffi.unpack(seqs, count), off, lens,
                          ffi.unpack(self._bodies, end), errors)

    def feed(self, data) -> list[Frame]:
        data = _bytes(data)
        n = len(data)
        if not n:
            return []
        self._buffers(data)
        ffi, lib = _native.ffi, _native.lib
        count = lib.sf_feed_batch(self._d, data, n, self._events, self._max_events, self._bodies,
                                  self._consumed)
        # The buffers are sized so that one call always consumes everything.
        assert self._consumed[0] == n
        frames: list[Frame] = []
        if not count:
            return frames
        events = self._events
        last = events[count - 1]
        bodies = ffi.unpack(self._bodies, last.body_offset + last.body_len)
        keep = self.keep_events
        for i in range(count):
            e = events[i]
            if e.verdict == _VERDICT_OK:
                start = e.body_offset
                frame = _new_frame(e.type, e.seq, bodies[start:start + e.body_len])
                frames.append(frame)
                if keep:
                    self.events.append(frame)
            else:
                detail = e.detail
                error = _drop(e.verdict, detail.decoded_len, detail.crc_got, detail.crc_computed,
                              deframer=True)
                self.errors.append(error)
                if keep:
                    self.events.append(error)
        return frames


class _PythonDeframer(p.Deframer):
    """:class:`sigfuse.protocol.Deframer`, plus the interleaved ``events`` of the native one."""

    def __init__(self) -> None:
        super().__init__()
        self.keep_events = False
        self.events: list[Frame | FrameError] = []

    def reset(self) -> None:
        self.__init__()

    def feed_batch(self, data) -> FrameBatch:
        keep, events = self.keep_events, self.events
        self.keep_events, self.events = True, []
        try:
            self.feed(data)
            got = self.events
        finally:
            self.keep_events, self.events = keep, events
        if keep:
            events += got
        verdicts, types, seqs, offsets, lengths, bodies, errors = (
            bytearray(), bytearray(), bytearray(), array("I"), array("H"), bytearray(), [])
        codes = {v: k for k, v in _VERDICT_NAMES.items()}
        for e in got:
            offsets.append(len(bodies))
            if isinstance(e, Frame):
                verdicts.append(0); types.append(e.type); seqs.append(e.seq)
                lengths.append(len(e.body)); bodies += e.body
            else:
                verdicts.append(codes[type(e).__name__]); types.append(0); seqs.append(0)
                lengths.append(0); errors.append(e)
        return FrameBatch(bytes(verdicts), bytes(types), bytes(seqs), offsets, lengths, bytes(bodies), errors)

    def feed(self, data) -> list[Frame]:
        data = _bytes(data)
        if not self.keep_events:
            return super().feed(data)
        # Feed up to each delimiter so that frames and errors interleave in order.
        frames: list[Frame] = []
        start = 0
        while start < len(data):
            end = data.find(b"\x00", start)
            end = len(data) if end < 0 else end + 1
            before = len(self.errors)
            got = super().feed(data[start:end])
            self.events += self.errors[before:]
            self.events += got
            frames += got
            start = end
        return frames


# --- the two codecs -------------------------------------------------------------------------

class _PythonCodec:
    name = "python"

    @staticmethod
    def one_shot_deframer():
        return _PythonDeframer()

    crc16 = staticmethod(p.crc16)
    Deframer = _PythonDeframer

    @staticmethod
    def encode_frame(type: int, seq: int, body: bytes = b"") -> bytes:
        return p.encode_frame(type, seq, body)

    @staticmethod
    def encode_frames(frames: Iterable[FrameLike]) -> bytes:
        return b"".join((f if isinstance(f, Frame) else Frame(f[0], f[1], bytes(f[2]))).encode()
                        for f in frames)

    @staticmethod
    def decode_frame(segment: bytes) -> Frame:
        return p.decode_frame(_bytes(segment))

    @staticmethod
    def encode_packed(types: bytes, seqs: bytes, lengths, bodies: bytes) -> bytes:
        _check_columns(types, seqs, lengths)
        _check_lengths(lengths, bodies)
        out, start = [], 0
        for t, s, n in zip(types, seqs, lengths):
            out.append(p.encode_frame(t, s, bodies[start:start + n]))
            start += n
        return b"".join(out)

    @staticmethod
    def pack_signals(signals: Iterable[Signal]) -> bytes:
        return p.pack_signals(signals)

    @staticmethod
    def unpack_results(data: bytes) -> list[Result]:
        return p.unpack_results(_bytes(data))


class _NativeCodec:
    name = "native"
    Deframer = _NativeDeframer

    @staticmethod
    def one_shot_deframer() -> _NativeDeframer:
        """A reset deframer of this thread, its buffers reused from call to call."""
        d = getattr(_scratch, "deframer", None)
        if d is None:
            d = _scratch.deframer = _NativeDeframer()
        d.reset()
        return d

    def __init__(self) -> None:
        ffi = _native.ffi
        self._out = ffi.new("char[]", p.MAX_ENCODED + 1)
        self._frame = ffi.new("struct sigfuse_frame *")
        self._detail = ffi.new("struct sigfuse_drop_detail *")
        self._signal = ffi.new("struct sigfuse_signal *")
        self._record = ffi.new("uint8_t[]", p.RESULT_RECORD_BYTES)
        self._result = ffi.new("struct sigfuse_result *")

    @staticmethod
    def crc16(data: bytes) -> int:
        data = _bytes(data)
        return _native.lib.sf_crc16(data, len(data))

    def encode_frame(self, type: int, seq: int, body: bytes = b"") -> bytes:
        body = _bytes(body)
        if not (0 <= type <= 0xFF and 0 <= seq <= 0xFF):
            raise ValueError(f"type and seq are bytes, not {type}, {seq}")
        if len(body) > p.MAX_BODY:
            raise ValueError(f"body of {len(body)} bytes exceeds {p.MAX_BODY}")
        n = _native.lib.sf_frame_encode(type, seq, body, len(body), self._out)
        return _native.ffi.unpack(self._out, n)

    @staticmethod
    def encode_frames(frames: Iterable[FrameLike]) -> bytes:
        types, seqs, lens, bodies = bytearray(), bytearray(), array("H"), []
        for f in frames:
            if isinstance(f, Frame):
                t, s, b = f.type, f.seq, f.body
            else:
                t, s, b = f[0], f[1], _bytes(f[2])
                if len(b) > p.MAX_BODY:
                    raise ValueError(f"body of {len(b)} bytes exceeds {p.MAX_BODY}")
            types.append(t)  # raises ValueError outside 0..255, as Frame does
            seqs.append(s)
            lens.append(len(b))
            bodies.append(b)
        n = len(types)
        if not n:
            return b""
        ffi, lib = _native.ffi, _native.lib
        out = _out_buffer(n * (p.MAX_ENCODED + 1))
        joined = b"".join(bodies)
        written = lib.sf_encode_frames(n, bytes(types), bytes(seqs), joined, len(joined),
                                       ffi.from_buffer("uint16_t[]", lens), out)
        return ffi.unpack(out, written)

    @staticmethod
    def encode_packed(types: bytes, seqs: bytes, lengths, bodies: bytes) -> bytes:
        ffi, lib = _native.ffi, _native.lib
        if not (isinstance(lengths, array) and lengths.typecode == "H"):
            try:
                lengths = array("H", lengths)
            except OverflowError:  # a length past 65535: the Python checks say which
                _check_columns(types, seqs, lengths)
                _check_lengths(lengths, bodies)
                raise
        n = len(types)
        _check_columns(types, seqs, lengths)
        bodies = _bytes(bodies)
        if not n:
            _check_lengths(lengths, bodies)
            return b""
        out = _out_buffer(n * (p.MAX_ENCODED + 1))
        # The C wrapper checks the lengths (sum, then maximum) in one pass of its own; the
        # errors are _check_lengths's.
        written = lib.sf_encode_frames(n, _bytes(types), _bytes(seqs), bodies, len(bodies),
                                       ffi.from_buffer("uint16_t[]", lengths), out)
        if written in (lib.SF_BODIES_MISMATCH, lib.SF_BODY_TOO_LONG):
            _check_lengths(lengths, bodies)
        return ffi.unpack(out, written)

    def decode_frame(self, segment: bytes) -> Frame:
        segment = _bytes(segment)
        verdict = _native.lib.sf_frame_decode(segment, len(segment), self._frame, self._detail)
        if verdict == _VERDICT_OK:
            f = self._frame
            return _new_frame(f.type, f.seq, _native.ffi.buffer(f.body, f.body_len)[:])
        if verdict == 2 and b"\x00" in segment:
            raise BadCobs("a delimiter inside the frame")
        d = self._detail
        raise _drop(verdict, d.decoded_len, d.crc_got, d.crc_computed, deframer=False,
                    segment_len=len(segment))

    def pack_signals(self, signals: Iterable[Signal]) -> bytes:
        # Width checks as pack_fields (a C struct field would silently truncate).
        return p.pack_signals(signals) if _needs_checks(signals) else self._pack_signals(signals)

    def _pack_signals(self, signals) -> bytes:
        ffi, lib = _native.ffi, _native.lib
        s, out, parts = self._signal, ffi.new("uint8_t[]", p.SIGNAL_RECORD_BYTES), []
        for sig in signals:
            s.ts_us, s.source, s.pair, s.side, s.confidence, s.edge_bps = sig  # Signal's order
            lib.sigfuse_pack_signal(s, out)
            parts.append(ffi.unpack(ffi.cast("char *", out), p.SIGNAL_RECORD_BYTES))
        return b"".join(parts)

    def unpack_results(self, data: bytes) -> list[Result]:
        data = _bytes(data)
        size = p.RESULT_RECORD_BYTES
        if len(data) % size:
            raise BodyError(f"results of {len(data)} bytes are not a multiple of {size}")
        ffi, lib = _native.ffi, _native.lib
        r, out = self._result, []
        for i in range(0, len(data), size):
            if lib.sigfuse_unpack_result(data[i:i + size], r) != 0:
                out.append(p.unpack_result(data[i:i + size]))  # raises the protocol's BodyError
                continue
            kind = ResultKind(r.kind)
            if kind == ResultKind.POPPED_EMPTY:
                out.append(Result(kind, None))
            elif kind == ResultKind.STALE:
                s = r.signal
                out.append(Result(kind, Signal(s.ts_us, s.source, s.pair, s.side, s.confidence, s.edge_bps)))
            else:
                d = r.decision
                out.append(Result(kind, Decision(d.ts_us, d.pair, d.side, d.confidence, d.edge_bps,
                                                 d.priority, d.seq)))
        return out


def _needs_checks(signals) -> bool:
    """Signals with a field outside its width go through the Python packer for its error."""
    if not isinstance(signals, (list, tuple)):
        return True
    for s in signals:
        ts, source, pair, side, confidence, edge = s
        if not (0 <= ts < 1 << 64 and 0 <= pair < 256 and 0 <= source < 8 and 0 <= side < 2
                and 0 <= confidence < 65536 and -32768 <= edge < 32768):
            return True
    return False


# --- selection ------------------------------------------------------------------------------

_active: _PythonCodec | _NativeCodec
_reason = ""


def use(name: str | None = None) -> str:
    """Select the codec: ``"native"``, ``"python"`` or ``None``/``"auto"`` (native when built).

    Returns the name of the codec now active.  Raises :class:`CodecUnavailable` for
    ``"native"`` when it is not built, ``ValueError`` for another name.
    """
    global _active, _reason
    choice = (name or "auto").strip().lower()
    if choice == "native":
        if _native is None:
            raise CodecUnavailable(f"{ENV}=native but the native codec is unavailable: {_native_error}")
        _active, _reason = _NativeCodec(), "forced (native)"
    elif choice == "python":
        _active, _reason = _PythonCodec(), "forced (python)"
    elif choice == "auto":
        if _native is not None:
            _active, _reason = _NativeCodec(), "sigfuse._linkcodec is built"
        else:
            _active, _reason = _PythonCodec(), _native_error
    else:
        raise ValueError(f"{ENV} must be 'native', 'python' or 'auto', not {name!r}")
    return _active.name


def active() -> str:
    """``"native"`` or ``"python"``."""
    return _active.name


def reason() -> str:
    """Why the active codec was chosen."""
    return _reason


use(os.environ.get(ENV))


# --- the operations -------------------------------------------------------------------------

def crc16(data: bytes) -> int:
    """CRC-16/IBM-3740 of ``data`` (:func:`sigfuse.protocol.crc16`)."""
    return _active.crc16(data)


def encode_frame(type: int, seq: int, body: bytes = b"") -> bytes:
    """One frame on the wire, delimiter included (:func:`sigfuse.protocol.encode_frame`)."""
    return _active.encode_frame(type, seq, body)


def encode_frames(frames: Iterable[FrameLike]) -> bytes:
    """Many frames (:class:`Frame` or ``(type, seq, body)``) back to back, in one call."""
    return _active.encode_frames(frames)


def decode_frame(segment: bytes) -> Frame:
    """:func:`sigfuse.protocol.decode_frame`: the frame, or its :class:`FrameError`."""
    return _active.decode_frame(segment)


def Deframer():  # noqa: N802 - a factory that stands for the class
    """A streaming receiver of the active codec, the interface of :class:`sigfuse.protocol.Deframer`
    (``feed``, ``counters``, ``errors``; plus ``events`` when ``keep_events`` is set)."""
    return _active.Deframer()


def decode_stream(data: bytes) -> tuple[list[Frame], list[FrameError]]:
    """The frames and the errors of a byte stream, each in order (an unterminated tail is
    not a frame yet)."""
    d = _active.one_shot_deframer()
    frames = d.feed(data)
    return frames, d.errors


def encode_packed(types: bytes, seqs: bytes, lengths, bodies: bytes) -> bytes:
    """Frames given in columns -- ``types[i]``, ``seqs[i]``, and body i the next ``lengths[i]``
    bytes of ``bodies`` -- encoded back to back in one call (the native batch encoder)."""
    return _active.encode_packed(types, seqs, lengths, bodies)


def decode_batch(data: bytes) -> FrameBatch:
    """The verdicts of a complete byte stream as a :class:`FrameBatch` (the native batch
    decoder: no Python object per frame)."""
    return _active.one_shot_deframer().feed_batch(data)


def decode_events(data: bytes) -> list[Frame | FrameError]:
    """Frames and errors of a byte stream interleaved, in the order a receiver decides them."""
    d = _active.one_shot_deframer()
    d.keep_events = True
    d.feed(data)
    return d.events


def pack_signals(signals: Iterable[Signal]) -> bytes:
    """:func:`sigfuse.protocol.pack_signals`."""
    return _active.pack_signals(signals)


def unpack_results(data: bytes) -> list[Result]:
    """:func:`sigfuse.protocol.unpack_results`."""
    return _active.unpack_results(data)


#: Reply parsing stays in Python: its cost is the Python objects it builds, not the bytes.
parse_reply = p.parse_reply
