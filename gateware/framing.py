"""Frames on the link: the deframer (wire bytes -> checked frames) and the framer (the reverse).

The frame format is :mod:`sigfuse.protocol`'s: ``COBS(type | seq | body | CRC-16) 0x00`` with
CRC-16/IBM-3740 sent MSB first, so the CRC register over a whole good frame ends at the residue
0 (``amaranth.lib.crc``'s ``match_detected``).

**Deframer.**  COBS decoder -> CRC check -> a receive ring of 512 bytes (one iCE40 block RAM).
A frame is written into the ring as it arrives and only *committed* when its end marker shows
a good CRC; a bad frame is rolled back, so nothing downstream ever sees it -- store and forward
is required anyway, since a frame's CRC is known only at its end, and a command must never be
half executed.  The ring holds one frame being processed plus at least one more arriving
(frames are at most 254 bytes).  When it is full the deframer stops taking bytes (the UART in
front of it then loses bytes and counts ``uart_rx_overrun``; the host avoids this by keeping at
most two commands unacknowledged).

Each frame is classified once, in this order (exactly as :func:`sigfuse.protocol.decode_frame`):
oversize (more than 255 bytes between delimiters), bad COBS, truncated (fewer than 4 bytes
decoded), bad CRC, else ok -- one strobe on ``events`` per frame.  Empty frames (delimiters in a
row) are idle line, not frames.

The committed frames are read through :data:`FrameReadSignature`, a random-access port rather
than a stream: the dispatcher validates a whole command before executing any of it, which takes
two passes over the body.

**Framer.**  Packet byte stream (type, seq, body, end marker) -> CRC appended -> COBS encoder
-> wire bytes with the 0x00 delimiter.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..protocol import CRC_BYTES, CRC_INIT, CRC_POLYNOMIAL, MAX_FRAME, MIN_FRAME
from .cobs import CobsDecoder, CobsEncoder, CobsError, PacketByteLayout

__all__ = ["crc_parameters", "FrameReadSignature", "DeframerEventsLayout", "Deframer",
           "CrcAppender", "RegisterSlice", "Framer", "RING_BYTES"]

#: Receive ring size: two maximal frames with their length bytes fit.
RING_BYTES = 512
_FRAME_LENGTH_BITS = 8  # header + body of a frame: at most MAX_FRAME - CRC_BYTES = 252


def crc_parameters():
    """The link's CRC as ``amaranth.lib.crc`` parameters (8-bit data words)."""
    params = catalog.CRC16_IBM_3740(8)
    assert params.algorithm.polynomial == CRC_POLYNOMIAL and params.algorithm.initial_crc == CRC_INIT
    return params


#: The deframer's frame port, seen from the deframer.  While ``valid``, a committed frame of
#: ``length`` bytes (type, seq, body; the CRC is gone) can be read: ``data`` is byte
#: ``offset`` of the frame one clock after ``offset`` is set (``offset`` may change every
#: clock; hold it to hold ``data``).  ``release`` drops the frame (and ``valid`` falls).
FrameReadSignature = wiring.Signature({
    "valid": Out(1),
    "length": Out(_FRAME_LENGTH_BITS),
    "offset": In(_FRAME_LENGTH_BITS),
    "data": Out(8),
    "release": In(1),
})

#: One strobe per frame received (names are the stats counters of ``host/regmap.py``).
DeframerEventsLayout = data.StructLayout({
    "frames_ok": 1,
    "frames_bad_crc": 1,
    "frames_bad_cobs": 1,
    "frames_oversize": 1,
    "frames_truncated": 1,
})


class Deframer(wiring.Component):
    """Wire bytes in (``bytes_in``, with backpressure), checked frames out (``frame``)."""

    def __init__(self) -> None:
        super().__init__({
            "bytes_in": In(stream.Signature(8)),
            "frame": Out(FrameReadSignature),
            "events": Out(DeframerEventsLayout),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.decoder = decoder = CobsDecoder(MAX_FRAME)
        wiring.connect(m, wiring.flipped(self.bytes_in), decoder.i)
        m.submodules.crc = crc = crc_parameters().create()
        m.submodules.ring = ring = Memory(shape=8, depth=RING_BYTES, init=[])
        wr = ring.write_port()
        rd = ring.read_port()

        ptr_bits = RING_BYTES.bit_length()  # one more bit than the address: tells full from empty
        read_ptr = Signal(ptr_bits)          # the length byte of the frame being read
        committed = Signal(ptr_bits)         # end of the committed frames = start of the next
        count = Signal(range(MAX_FRAME + 1))  # bytes of the arriving frame decoded so far

        item = decoder.o.payload
        write_ptr = Signal(ptr_bits)
        m.d.comb += write_ptr.eq(committed + 1 + count)
        room = Signal()
        m.d.comb += room.eq((write_ptr - read_ptr)[:ptr_bits] < RING_BYTES)

        with m.If(decoder.o.valid & ~item.end):
            m.d.comb += decoder.o.ready.eq(room)
            with m.If(room):
                m.d.comb += [wr.addr.eq(write_ptr), wr.data.eq(item.data), wr.en.eq(1),
                             crc.data.eq(item.data), crc.valid.eq(1), crc.start.eq(count == 0)]
                m.d.sync += count.eq(count + 1)
        with m.If(decoder.o.valid & item.end):
            m.d.comb += decoder.o.ready.eq(1)
            m.d.sync += count.eq(0)
            with m.If(item.error == CobsError.OVERSIZE):
                m.d.comb += self.events.frames_oversize.eq(1)
            with m.Elif(item.error == CobsError.BAD_COBS):
                m.d.comb += self.events.frames_bad_cobs.eq(1)
            with m.Elif(count < MIN_FRAME):
                m.d.comb += self.events.frames_truncated.eq(1)
            with m.Elif(~crc.match_detected):
                m.d.comb += self.events.frames_bad_crc.eq(1)
            with m.Else():
                # Commit: the length byte goes in front, and the CRC bytes are given back.
                m.d.comb += [self.events.frames_ok.eq(1), wr.addr.eq(committed),
                             wr.data.eq(count - CRC_BYTES), wr.en.eq(1)]
                m.d.sync += committed.eq(committed + 1 + count - CRC_BYTES)

        # Reader: fetch the length byte of the oldest committed frame, then serve reads.
        with m.FSM():
            with m.State("wait"):
                m.d.comb += rd.addr.eq(read_ptr)
                with m.If(committed != read_ptr):
                    m.next = "length"
            with m.State("length"):
                m.d.sync += self.frame.length.eq(rd.data)
                m.d.comb += rd.addr.eq(read_ptr + 1 + self.frame.offset)
                m.next = "ready"
            with m.State("ready"):
                m.d.comb += [self.frame.valid.eq(1),
                             rd.addr.eq(read_ptr + 1 + self.frame.offset)]
                with m.If(self.frame.release):
                    m.d.sync += read_ptr.eq(read_ptr + 1 + self.frame.length)
                    m.next = "wait"
        m.d.comb += self.frame.data.eq(rd.data)
        return m


class CrcAppender(wiring.Component):
    """Packet byte stream in, the same with the CRC-16 (MSB first) before each end marker."""

    def __init__(self) -> None:
        super().__init__({
            "i": In(stream.Signature(PacketByteLayout)),
            "o": Out(stream.Signature(PacketByteLayout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.crc = crc = crc_parameters().create()
        first = Signal(init=1)
        crc_value = Signal(16)

        with m.FSM():
            with m.State("pass"):
                with m.If(self.i.valid & self.i.payload.end):
                    m.d.comb += self.i.ready.eq(1)
                    m.d.sync += [crc_value.eq(crc.crc), first.eq(1)]
                    m.next = "crc_hi"
                with m.Else():
                    m.d.comb += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload),
                                 self.i.ready.eq(self.o.ready)]
                    with m.If(self.i.valid & self.o.ready):
                        m.d.comb += [crc.data.eq(self.i.payload.data), crc.valid.eq(1),
                                     crc.start.eq(first)]
                        m.d.sync += first.eq(0)
            with m.State("crc_hi"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(crc_value[8:])]
                with m.If(self.o.ready):
                    m.next = "crc_lo"
            with m.State("crc_lo"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(crc_value[:8])]
                with m.If(self.o.ready):
                    m.next = "end"
            with m.State("end"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.end.eq(1)]
                with m.If(self.o.ready):
                    m.next = "pass"
        return m


class RegisterSlice(wiring.Component):
    """A stream register that cuts both directions: ``o.valid``/``o.payload`` come from
    flip-flops, and so does ``i.ready`` (a skid register catches the one transfer accepted while
    the output stalls).  Full throughput, one clock of latency.

    Between the dispatcher and the framer it keeps the dispatcher's result selection and the
    framer's CRC / COBS / UART-ready chain out of one clock: together they were the product
    core's critical path on the ECP5 (21.7 ns, 18 of it routing).
    """

    def __init__(self, shape) -> None:
        super().__init__({
            "i": In(stream.Signature(shape)),
            "o": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        # A payload-less stream (a pop request) gets no payload registers: zero-width flip-flops
        # are legal Amaranth but crash Yosys's ABC9 pass when the design is synthesized.
        has_payload = len(Value.cast(self.i.payload)) > 0
        skid = Signal.like(self.o.payload)
        skid_valid = Signal()
        m.d.comb += self.i.ready.eq(~skid_valid)
        with m.If(~self.o.valid | self.o.ready):
            # The output register is free (or being emptied): refill it, skid first.
            with m.If(skid_valid):
                m.d.sync += [self.o.valid.eq(1), skid_valid.eq(0)]
                if has_payload:
                    m.d.sync += self.o.payload.eq(skid)
            with m.Else():
                m.d.sync += self.o.valid.eq(self.i.valid)
                if has_payload:
                    m.d.sync += self.o.payload.eq(self.i.payload)
        with m.Elif(self.i.valid & ~skid_valid):
            # The output stalls and a transfer was accepted: hold it.
            m.d.sync += skid_valid.eq(1)
            if has_payload:
                m.d.sync += skid.eq(self.i.payload)
        return m


class Framer(wiring.Component):
    """Frames in (``frames``: type, seq, body as a packet byte stream; at least the header),
    wire bytes out (``bytes_out``).  A :class:`RegisterSlice` at the input adds one clock."""

    def __init__(self) -> None:
        super().__init__({
            "frames": In(stream.Signature(PacketByteLayout)),
            "bytes_out": Out(stream.Signature(8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.slice = input_slice = RegisterSlice(PacketByteLayout)
        m.submodules.crc = appender = CrcAppender()
        m.submodules.encoder = encoder = CobsEncoder()
        wiring.connect(m, wiring.flipped(self.frames), input_slice.i)
        wiring.connect(m, input_slice.o, appender.i)
        wiring.connect(m, appender.o, encoder.i)
        wiring.connect(m, encoder.o, wiring.flipped(self.bytes_out))
        return m
