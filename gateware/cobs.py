"""COBS (consistent overhead byte stuffing) decoder and encoder, as stream components.

Frames are delimited by 0x00 on the wire; COBS guarantees no 0x00 inside a frame.  A frame is
carried inside the chip as a *packet byte stream* (:data:`PacketByteLayout`): data items, then
one item with ``end = 1`` that carries no data.  The end marker is a separate item because the
decoder only knows that the last data byte was the last when the delimiter arrives.

The encoding is the one of the ``cobs`` Python package (and of Cheshire and Baker's paper): a
code byte ``c`` is followed by ``c - 1`` data bytes and stands for a zero after them, except
after ``c = 0xFF`` and after the last block.  A frame ending exactly on a full 0xFF block gets
no trailing ``0x01`` (the decoder accepts both forms).

Sizes: a payload of ``n <= 254`` bytes encodes to exactly ``n + 1`` bytes, so ``max_size``
(decoded bytes) maps to ``max_size + 1`` encoded bytes, and the decoder calls a frame
*oversize* as soon as more encoded bytes than that arrive, without decoding them further.
"""

from __future__ import annotations



from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PacketByteLayout", "CobsError", "DecodedByteLayout", "CobsDecoder", "CobsEncoder",
           "COBS_MAX_BLOCK"]

#: Longest run of data bytes one code byte covers.
COBS_MAX_BLOCK = 254

#: A frame inside the chip: data bytes, then an item with ``end = 1`` (its ``data`` is ignored).
PacketByteLayout = data.StructLayout({"data": 8, "end": 1})


class CobsError(enum.Enum, shape=2):
    NONE = 0
    #: The delimiter came before the bytes the last code byte announced.
    BAD_COBS = 1
    #: More than ``max_size + 1`` bytes between delimiters.
    OVERSIZE = 2


#: Decoder output: a packet byte stream whose end marker says whether the frame was well formed.
DecodedByteLayout = data.StructLayout({"data": 8, "end": 1, "error": CobsError})


def _check_max_size(max_size: int) -> None:
    if not 1 <= max_size <= COBS_MAX_BLOCK:
        raise ValueError(f"max_size must be within [1, {COBS_MAX_BLOCK}], not {max_size}")


class CobsDecoder(wiring.Component):
    """Wire bytes in (0x00 = delimiter), decoded frames out.

    One output item per input byte at most, so the decoder runs at one byte per clock and
    passes backpressure straight through.  Consecutive delimiters (an empty frame) produce
    nothing; any other frame ends with exactly one end marker, whose ``error`` is
    :attr:`CobsError.OVERSIZE` (then no data was emitted past ``max_size`` bytes),
    :attr:`CobsError.BAD_COBS`, or :attr:`CobsError.NONE`.

    :param max_size: largest decoded frame, in bytes (1..254).
    """

    def __init__(self, max_size: int = 254) -> None:
        _check_max_size(max_size)
        self.max_size = max_size
        super().__init__({
            "i": In(stream.Signature(8)),
            "o": Out(stream.Signature(DecodedByteLayout)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        max_encoded = self.max_size + 1
        byte = self.i.payload
        remaining = Signal(8)       # data bytes left in the current block
        zero_due = Signal()         # the current block stands for a zero after it
        in_frame = Signal()         # a non-delimiter byte arrived since the last delimiter
        count = Signal(range(max_encoded + 1))
        oversize = Signal()
        transfer_in = self.i.valid & self.i.ready

        with m.If(self.i.valid):
            with m.If(byte == 0):
                with m.If(in_frame):
                    m.d.comb += [
                        self.o.valid.eq(1),
                        self.o.payload.end.eq(1),
                        self.o.payload.error.eq(Mux(oversize, CobsError.OVERSIZE,
                                                    Mux(remaining != 0, CobsError.BAD_COBS,
                                                        CobsError.NONE))),
                        self.i.ready.eq(self.o.ready),
                    ]
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                with m.If(transfer_in):
                    m.d.sync += [remaining.eq(0), zero_due.eq(0), in_frame.eq(0), count.eq(0),
                                 oversize.eq(0)]
            with m.Elif(oversize | (count == max_encoded)):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += [oversize.eq(1), in_frame.eq(1)]
            with m.Elif(remaining == 0):
                # A code byte: emits the previous block's zero, if it stands for one.
                m.d.comb += [self.o.valid.eq(zero_due), self.o.payload.data.eq(0),
                             self.i.ready.eq(~zero_due | self.o.ready)]
                with m.If(transfer_in):
                    m.d.sync += [remaining.eq(byte - 1), zero_due.eq(byte != 0xFF),
                                 in_frame.eq(1), count.eq(count + 1)]
            with m.Else():
                m.d.comb += [self.o.valid.eq(1), self.o.payload.data.eq(byte),
                             self.i.ready.eq(self.o.ready)]
                with m.If(transfer_in):
                    m.d.sync += [remaining.eq(remaining - 1), count.eq(count + 1)]
        return m


class CobsEncoder(wiring.Component):
    """Frames in (a packet byte stream), wire bytes out, each frame followed by 0x00.

    A block is collected in a 254-byte buffer (one block RAM) until a zero, the 254th non-zero
    byte or the end of the frame, then sent as its code byte and the buffered bytes; input
    waits meanwhile.  On a UART the line is the bottleneck, not this alternation.  A frame must
    hold at least one byte (an empty frame would encode as ``01 00``, which is what you get).
    """

    def __init__(self) -> None:
        super().__init__({
            "i": In(stream.Signature(PacketByteLayout)),
            "o": Out(stream.Signature(8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.block = block = Memory(shape=8, depth=COBS_MAX_BLOCK, init=[])
        wr = block.write_port()
        rd = block.read_port()

        filled = Signal(range(COBS_MAX_BLOCK + 1))
        after_full = Signal()       # the last block sent was a full 0xFF block, nothing since
        code = Signal(8)
        index = Signal(range(COBS_MAX_BLOCK + 1))
        delimit = Signal()          # the block being sent ends the frame
        item = self.i.payload

        m.d.comb += rd.addr.eq(index)
        with m.FSM():
            with m.State("fill"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    with m.If(item.end):
                        m.d.sync += [code.eq(filled + 1), delimit.eq(1), index.eq(0)]
                        # A frame that ends right after a full block needs no empty block.
                        with m.If(after_full & (filled == 0)):
                            m.next = "delimiter"
                        with m.Else():
                            m.next = "code"
                    with m.Elif(item.data == 0):
                        m.d.sync += [code.eq(filled + 1), delimit.eq(0), index.eq(0)]
                        m.next = "code"
                    with m.Else():
                        m.d.comb += [wr.addr.eq(filled), wr.data.eq(item.data), wr.en.eq(1)]
                        m.d.sync += [filled.eq(filled + 1), after_full.eq(0)]
                        with m.If(filled == COBS_MAX_BLOCK - 1):
                            m.d.sync += [code.eq(0xFF), delimit.eq(0), index.eq(0)]
                            m.next = "code"
            with m.State("code"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(code)]
                with m.If(self.o.ready):
                    with m.If(filled == 0):
                        m.d.sync += after_full.eq(0)  # an empty block is never full
                        with m.If(delimit):
                            m.next = "delimiter"
                        with m.Else():
                            m.next = "fill"
                    with m.Else():
                        m.next = "data"
            with m.State("data"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(rd.data)]
                with m.If(self.o.ready):
                    m.d.comb += rd.addr.eq(index + 1)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == filled - 1):
                        m.d.sync += [filled.eq(0), after_full.eq(code == 0xFF)]
                        with m.If(delimit):
                            m.next = "delimiter"
                        with m.Else():
                            m.next = "fill"
            with m.State("delimiter"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(0)]
                with m.If(self.o.ready):
                    m.d.sync += [filled.eq(0), after_full.eq(0), delimit.eq(0)]
                    m.next = "fill"
        return m
