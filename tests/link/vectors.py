"""Shared link test vectors, ``tests/vectors/link/``: generated here, committed, reused by every
codec (the Python one, the gateware deframer/framer, the C codec of ``firmware/``).

``python -m link.vectors`` (from ``tests/``) rewrites them; ``test_vectors_link.py`` fails when
the committed files differ from what this module generates.  The inputs are fixed (hand-picked
cases plus a seeded random set), so the files only change when the protocol does.  The format
is described in ``tests/vectors/link/README.md``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from cobs import cobs

from sigfuse import protocol as p
from sigfuse.contract import Decision, Signal
from sigfuse.protocol import AckStatus, ErrorCode, Frame, FrameType, Reply, Result, ResultKind

__all__ = ["VECTOR_DIR", "generate", "write", "load"]

VECTOR_DIR = Path(__file__).resolve().parents[1] / "vectors" / "link"
SEED = 4242


def _frame_entry(name: str, frame: Frame) -> dict:
    return {"name": name, "type": frame.type, "seq": frame.seq, "body": frame.body.hex(),
            "payload": frame.payload().hex(), "wire": frame.encode().hex()}


def _signals(rng: random.Random, n: int) -> list[Signal]:
    return [Signal(rng.randrange(1 << 64), rng.randrange(8), rng.randrange(256), rng.randrange(2),
                   rng.randrange(32769), rng.randrange(-32768, 32768)) for _ in range(n)]


def _decision(rng: random.Random) -> Decision:
    return Decision(rng.randrange(1 << 64), rng.randrange(256), rng.randrange(2),
                    rng.randrange(32769), rng.randrange(-32768, 32768), rng.randrange(65536),
                    rng.randrange(1 << 32))


def _results(rng: random.Random, n: int) -> list[Result]:
    out = []
    for _ in range(n):
        kind = ResultKind(rng.randrange(len(ResultKind)))
        record = (None if kind == ResultKind.POPPED_EMPTY else
                  _signals(rng, 1)[0] if kind == ResultKind.STALE else _decision(rng))
        out.append(Result(kind, record))
    return out


def _frames(rng: random.Random) -> list[dict]:
    extremes = [Signal(0, 0, 0, 0, 0, -32768), Signal((1 << 64) - 1, 7, 255, 1, 32768, 32767)]
    frames = [
        ("ping_empty", p.ping(0)),
        ("ping_zeros", p.ping(1, bytes(10))),
        ("ping_max_body_no_zeros", Frame(FrameType.PING, 2, bytes(range(1, p.MAX_BODY + 1)))),
        ("ping_max_body_zeros", Frame(FrameType.PING, 3, bytes(p.MAX_BODY))),
        ("reg_read_identity", p.reg_read(4, list(range(8)))),
        ("reg_read_max", p.reg_read(5, [0x20 + i % 32 for i in range(p.MAX_REGS)])),
        ("reg_write_params", p.reg_write(6, [(0x20, 11469), (0x2A, 19661), (0x2B, 500000)])),
        ("reg_write_max", p.reg_write(7, [(0x10, 0xFFFFFFFF)] * p.MAX_REGS)),
        ("push_extremes", p.push_signals(8, extremes)),
        ("push_max", p.push_signals(9, _signals(rng, p.MAX_SIGNALS))),
        ("pop_one", p.pop(10, 1)),
        ("pop_max", p.pop(11, 255)),
        ("stats", p.stats_snapshot(12)),
        ("seq_255", p.ping(255, b"\x00\xff")),
        ("unknown_type", Frame(0x42, 13, b"\x01\x02")),
        ("pong", p.reply_frame(Reply(FrameType.PONG, 0, FrameType.PING, 1, data=b"\x00hi"))),
        ("reg_read_reply", p.reply_frame(Reply(FrameType.REG_READ_REPLY, 1, FrameType.REG_READ, 4,
                                               registers=((0, 0x53464753), (1, 0x01000000))))),
        ("write_ack", p.reply_frame(Reply(FrameType.REG_WRITE_ACK, 2, FrameType.REG_WRITE, 6,
                                          status=AckStatus.DONE))),
        ("push_ack_duplicate", p.reply_frame(Reply(FrameType.PUSH_ACK, 3, FrameType.PUSH_SIGNALS, 8,
                                                   status=AckStatus.DUPLICATE))),
        ("results_max", p.reply_frame(Reply(FrameType.RESULTS, 4, FrameType.PUSH_SIGNALS, 9,
                                            results=tuple(_results(rng, p.MAX_RESULTS))))),
        ("error_bad_address", p.reply_frame(Reply(FrameType.ERROR, 5, FrameType.REG_READ, 5,
                                                  error=ErrorCode.BAD_ADDRESS, detail=0x1234))),
    ]
    entries = [_frame_entry(name, frame) for name, frame in frames]
    for i in range(40):
        t = rng.choice(list(FrameType))
        body = bytes(rng.choice([0, rng.randrange(256)]) for _ in range(rng.randrange(p.MAX_BODY + 1)))
        entries.append(_frame_entry(f"random_{i}", Frame(t, rng.randrange(256), body)))
    return entries


def _zero_free_payload() -> bytes:
    """A maximal frame (254 bytes) with no zero byte, CRC included."""
    for seq in range(1, 256):
        payload = Frame(FrameType.PING, seq, bytes([1] * p.MAX_BODY)).payload()
        if 0 not in payload:
            return payload
    raise AssertionError("no zero-free payload")  # pragma: no cover


def _stream_entry(name: str, wire: bytes) -> dict:
    """A byte stream and what a receiver must make of it (the Deframer's verdict)."""
    d = p.Deframer()
    frames = d.feed(wire)
    return {"name": name, "wire": wire.hex(),
            "frames": [{"type": f.type, "seq": f.seq, "body": f.body.hex()} for f in frames],
            "errors": [type(e).__name__ for e in d.errors], "counters": d.counters}


def _streams(rng: random.Random) -> list[dict]:
    good = p.ping(7, b"ok").encode()
    payload = p.ping(8, b"crc").payload()
    bad_crc = cobs.encode(payload[:-1] + bytes([payload[-1] ^ 1])) + b"\x00"
    streams = [
        ("idle_delimiters", b"\x00\x00\x00" + good + b"\x00\x00"),
        ("garbage_then_frame", b"\x13\x37\xff" + b"\x00" + good),
        ("no_leading_delimiter_garbage_merges", b"\x13\x37" + good + good),
        ("bad_crc", bad_crc + good),
        ("bad_cobs_block_cut_short", b"\x05\x01\x02\x00" + good),
        ("truncated_3_bytes", cobs.encode(b"\x01\x02\x03") + b"\x00" + good),
        ("truncated_empty_block", b"\x01\x00" + good),
        ("oversize_256", bytes([0x11] * 256) + b"\x00" + good),
        ("max_encoded_255_ok", Frame(FrameType.PING, 9, bytes(range(1, p.MAX_BODY + 1))).encode()),
        ("frame_cut_by_delimiter", good[:5] + b"\x00" + good),
        ("unterminated_tail", good + good[:-1]),
        # COBS allows a final empty block after a full one (FF + 254 bytes + 01); it decodes,
        # but it is 256 bytes between delimiters: oversize by the protocol's rule.
        ("noncanonical_trailing_01_is_oversize", cobs.encode(_zero_free_payload()) + b"\x01\x00" + good),
    ]
    entries = [_stream_entry(name, wire) for name, wire in streams]
    for i in range(30):
        parts = []
        for _ in range(rng.randrange(1, 6)):
            roll = rng.random()
            if roll < 0.4:
                parts.append(p.Frame(rng.randrange(256), rng.randrange(256),
                                     rng.randbytes(rng.randrange(30))).encode())
            elif roll < 0.7:
                wire = bytearray(p.ping(rng.randrange(256), rng.randbytes(rng.randrange(1, 30))).encode())
                wire[rng.randrange(len(wire) - 1)] ^= 1 << rng.randrange(8)
                parts.append(bytes(wire))
            else:
                parts.append(rng.randbytes(rng.randrange(1, 40)) + b"\x00")
        entries.append(_stream_entry(f"random_{i}", b"".join(parts)))
    return entries


def _records(rng: random.Random) -> list[dict]:
    entries = []
    for s in [Signal(0, 0, 0, 0, 0, 0), Signal((1 << 64) - 1, 7, 255, 1, 32768, -1),
              *_signals(rng, 10)]:
        entries.append({"record": "signal", "fields": s._asdict(), "hex": p.pack_signal(s).hex()})
    for r in _results(rng, 12):
        fields = None if r.record is None else r.record._asdict()
        entries.append({"record": "result", "kind": r.kind.name.lower(), "fields": fields,
                        "hex": p.pack_result(r).hex()})
    return entries


def _crc(rng: random.Random) -> list[dict]:
    data = [b"", b"123456789", bytes(8), bytes([0xFF] * 8)]
    data += [rng.randbytes(rng.randrange(1, 64)) for _ in range(8)]
    return [{"data": d.hex(), "crc": p.crc16(d)} for d in data]


def generate() -> dict[str, str]:
    rng = random.Random(SEED)
    files = {"frames.jsonl": _frames(rng), "streams.jsonl": _streams(rng),
             "records.jsonl": _records(rng), "crc.jsonl": _crc(rng)}
    return {name: "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in entries)
            for name, entries in files.items()}


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (VECTOR_DIR / name).read_text().splitlines()]


def write() -> None:
    VECTOR_DIR.mkdir(parents=True, exist_ok=True)
    for name, text in generate().items():
        (VECTOR_DIR / name).write_text(text)


if __name__ == "__main__":
    write()
