"""The native (C, ``firmware/src``) and pure-Python link codecs agree: shared vectors, a
differential fuzz test (valid frames and garbage: same frames, same errors, same order), records,
replies, registers; plus codec selection (``SIGFUSE_CODEC``), ``sigfuse doctor`` and a
warnings-clean C build."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cobs import cobs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigfuse import codec
from sigfuse import protocol as p
from sigfuse.contract import Decision, Signal
from sigfuse.protocol import BodyError, Frame, FrameError, FrameType, Reply, Result, ResultKind
from sigfuse.regmap import REGISTERS

from .vectors import load

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

needs_native = pytest.mark.skipif(not codec.native_available(),
                                  reason="native codec not built (no C compiler at install time)")


@pytest.fixture(params=["python", pytest.param("native", marks=needs_native)])
def backend(request):
    previous = codec.active()
    codec.use(request.param)
    yield request.param
    codec.use(previous)


def _both(fn):
    """fn run under each codec: {name: result or ('raises', type name, message)}."""
    previous = codec.active()
    out = {}
    try:
        for name in ("python", "native"):
            codec.use(name)
            try:
                out[name] = fn()
            except (FrameError, BodyError, ValueError) as error:
                out[name] = ("raises", type(error).__name__, str(error))
    finally:
        codec.use(previous)
    return out


def _events(data: bytes):
    return [("frame", e.type, e.seq, e.body) if isinstance(e, Frame) else (type(e).__name__, str(e))
            for e in codec.decode_events(data)]


# --- shared vectors -------------------------------------------------------------------------

def test_frame_vectors(backend):
    for v in load("frames.jsonl"):
        body = bytes.fromhex(v["body"])
        wire = codec.encode_frame(v["type"], v["seq"], body)
        assert wire.hex() == v["wire"], v["name"]
        assert codec.decode_frame(wire[:-1]) == Frame(v["type"], v["seq"], body), v["name"]
    vectors = load("frames.jsonl")
    batch = codec.encode_frames((v["type"], v["seq"], bytes.fromhex(v["body"])) for v in vectors)
    assert batch.hex() == "".join(v["wire"] for v in vectors)


def test_stream_vectors(backend):
    for v in load("streams.jsonl"):
        d = codec.Deframer()
        frames = d.feed(bytes.fromhex(v["wire"]))
        assert [{"type": f.type, "seq": f.seq, "body": f.body.hex()} for f in frames] == v["frames"], v["name"]
        assert [type(e).__name__ for e in d.errors] == v["errors"], v["name"]
        assert d.counters == v["counters"], v["name"]


def test_crc_vectors(backend):
    for v in load("crc.jsonl"):
        assert codec.crc16(bytes.fromhex(v["data"])) == v["crc"]
    assert codec.crc16(b"123456789") == p.CRC_CHECK


def test_record_vectors(backend):
    for v in load("records.jsonl"):
        data = bytes.fromhex(v["hex"])
        if v["record"] == "signal":
            assert codec.pack_signals([Signal(**v["fields"])]) == data
        else:
            (result,) = codec.unpack_results(data)
            assert result.kind.name.lower() == v["kind"]
            assert (None if result.record is None else result.record._asdict()) == v["fields"]


# --- differential: random frames and garbage -------------------------------------------------

frames = st.builds(Frame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=p.MAX_BODY))


@st.composite
def streams(draw):
    """Valid frames, corrupted frames, random bytes (zeros included) and long runs."""
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 5))
        if kind == 0:
            parts.append(draw(frames).encode())
        elif kind == 1:  # a bit flipped in a valid frame
            wire = bytearray(draw(frames).encode())
            bit = draw(st.integers(0, len(wire) * 8 - 1))
            wire[bit // 8] ^= 1 << (bit % 8)
            parts.append(bytes(wire))
        elif kind == 2:  # a valid frame cut short
            wire = draw(frames).encode()
            parts.append(wire[:draw(st.integers(0, len(wire) - 1))])
        elif kind == 3:
            parts.append(draw(st.binary(max_size=80)))
        elif kind == 4:  # around the oversize limit, no delimiter inside
            parts.append(bytes([draw(st.integers(1, 255))]) * draw(st.integers(250, 600)))
        else:
            parts.append(b"\x00" * draw(st.integers(1, 3)))
    return b"".join(parts)


@needs_native
@FAST
@given(st.lists(frames, max_size=6))
def test_differential_valid_frames(batch):
    wires = _both(lambda: [codec.encode_frame(f.type, f.seq, f.body) for f in batch])
    assert wires["python"] == wires["native"]
    joined = b"".join(wires["python"])
    assert _both(lambda: codec.encode_frames(batch)) == {"python": joined, "native": joined}
    got = _both(lambda: _events(joined))
    assert got["python"] == got["native"] == [("frame", f.type, f.seq, f.body) for f in batch]


@needs_native
@FAST
@given(streams())
def test_differential_garbage_streams(data):
    got = _both(lambda: _events(data))
    assert got["native"] == got["python"]
    counters = _both(lambda: (lambda d: (d.feed(data), d.counters)[1])(codec.Deframer()))
    assert counters["native"] == counters["python"]


def _batch_view(b):
    return (b.verdicts, b.types, b.seqs, list(b.offsets), list(b.lengths), b.bodies,
            [(type(e).__name__, str(e)) for e in b.errors], b.frames())


@needs_native
@FAST
@given(streams(), st.lists(frames, max_size=6))
def test_differential_batch_api(data, batch):
    got = _both(lambda: _batch_view(codec.decode_batch(data)))
    assert got["native"] == got["python"]
    assert got["python"][-1] == codec.Deframer().feed(data)
    types, seqs = bytes(f.type for f in batch), bytes(f.seq for f in batch)
    lengths, bodies = [len(f.body) for f in batch], b"".join(f.body for f in batch)
    wire = b"".join(f.encode() for f in batch)
    assert _both(lambda: codec.encode_packed(types, seqs, lengths, bodies)) == {"python": wire, "native": wire}


@needs_native
@FAST
@given(streams(), st.integers(1, 300))
def test_differential_chunked_feed(data, chunk):
    """The native deframer keeps its state across feeds exactly like the Python one."""
    def run():
        d = codec.Deframer()
        got = []
        for i in range(0, len(data), chunk):
            got += d.feed(data[i:i + chunk])
        return got, [(type(e).__name__, str(e)) for e in d.errors], d.counters
    got = _both(run)
    assert got["native"] == got["python"]


@needs_native
@FAST
@given(st.one_of(st.binary(max_size=300), st.binary(min_size=1, max_size=300).map(lambda b: b.replace(b"\x00", b"")),
                 frames.map(lambda f: f.encode()[:-1])))
def test_differential_decode_frame(segment):
    got = _both(lambda: codec.decode_frame(segment))
    assert got["native"] == got["python"]


# --- records and replies ----------------------------------------------------------------------

signals = st.builds(Signal, st.integers(0, (1 << 64) - 1), st.integers(0, 7), st.integers(0, 255),
                    st.integers(0, 1), st.integers(0, 32768), st.integers(-32768, 32767))
decisions = st.builds(Decision, st.integers(0, (1 << 64) - 1), st.integers(0, 255), st.integers(0, 1),
                      st.integers(0, 32768), st.integers(-32768, 32767), st.integers(0, 65535),
                      st.integers(0, (1 << 32) - 1))
results = st.one_of(
    st.builds(Result, st.sampled_from([ResultKind.DECISION, ResultKind.POPPED, ResultKind.EVICTED,
                                       ResultKind.REJECTED]), decisions),
    st.builds(Result, st.just(ResultKind.STALE), signals),
    st.just(Result(ResultKind.POPPED_EMPTY, None)))


@needs_native
@FAST
@given(st.lists(signals, max_size=p.MAX_SIGNALS), st.lists(results, max_size=p.MAX_RESULTS),
       st.binary(min_size=20, max_size=20))
def test_differential_records(batch, result_batch, garbage_record):
    assert _both(lambda: codec.pack_signals(batch)) == dict.fromkeys(("python", "native"), p.pack_signals(batch))
    packed = p.pack_results(result_batch)
    assert _both(lambda: codec.unpack_results(packed)) == dict.fromkeys(("python", "native"), result_batch)
    got = _both(lambda: codec.unpack_results(garbage_record))
    assert got["native"] == got["python"]


def test_pack_signals_checks_widths(backend):
    with pytest.raises(ValueError):
        codec.pack_signals([Signal(0, 8, 0, 0, 0, 0)])


def _c_parse(lib, ffi, frame: Frame):
    f = ffi.new("struct sigfuse_frame *")
    f.type, f.seq, f.body_len = frame.type, frame.seq, len(frame.body)
    ffi.memmove(f.body, frame.body, len(frame.body))
    r = ffi.new("struct sigfuse_reply *")
    if lib.sigfuse_parse_reply(f, r) != 0:
        return None
    return r


@needs_native
@FAST
@given(st.sampled_from([*FrameType, 0x00, 0x7F, 0x80, 0x87, 0xFE]), st.integers(0, 255),
       st.one_of(st.binary(max_size=p.MAX_BODY),
                 st.lists(results, min_size=1, max_size=p.MAX_RESULTS).map(lambda r: b"\x04\x07" + p.pack_results(r))))
def test_c_reply_parser_agrees(kind, seq, body):
    """sigfuse_parse_reply accepts what parse_reply accepts, with the same contents."""
    from sigfuse._linkcodec import ffi, lib
    frame = Frame(int(kind), seq, body)
    try:
        reply = p.parse_reply(frame)
    except BodyError:
        reply = None
    r = _c_parse(lib, ffi, frame)
    assert (r is None) == (reply is None)
    if reply is None:
        return
    assert (r.kind, r.seq, r.cmd_type, r.cmd_seq) == (reply.kind, reply.seq, reply.cmd_type, reply.cmd_seq)
    assert bool(lib.sigfuse_reply_is_terminal(r)) == reply.terminal
    if reply.status is not None:
        assert r.status == reply.status
    if reply.kind == FrameType.PONG:
        assert bytes(ffi.buffer(r.data, r.data_len)) == reply.data
    assert [(r.reg_addr[i], r.reg_value[i]) for i in range(r.n_registers)] == list(reply.registers)
    assert r.n_results == len(reply.results)
    if reply.error is not None:
        assert (r.error, r.detail) == (int(reply.error), reply.detail)


@needs_native
def test_c_register_table_matches_regmap():
    from sigfuse._linkcodec import ffi, lib
    assert lib.SIGFUSE_REG_COUNT == len(REGISTERS)
    for i, reg in enumerate(REGISTERS):
        by_name = lib.sigfuse_reg_by_name(reg.name.encode())
        by_addr = lib.sigfuse_reg_by_addr(reg.addr)
        assert by_name != ffi.NULL and by_addr == by_name == lib.sigfuse_reg_at(i)
        assert ffi.string(by_name.name).decode() == reg.name
        assert (by_name.addr, by_name.width, by_name.max) == (reg.addr, reg.width, reg.max_value)
    assert lib.sigfuse_reg_by_name(b"no_such_register") == ffi.NULL
    assert lib.sigfuse_reg_by_addr(0xFFFF) == ffi.NULL
    assert lib.sigfuse_reg_at(len(REGISTERS)) == ffi.NULL


@needs_native
def test_c_command_bodies_match_python():
    from sigfuse._linkcodec import ffi, lib
    rng = random.Random(5)
    body = ffi.new("uint8_t[]", p.MAX_BODY)
    addrs = [rng.randrange(1 << 16) for _ in range(p.MAX_REGS)]
    values = [rng.randrange(1 << 32) for _ in range(p.MAX_REGS)]
    n = lib.sigfuse_body_reg_read(addrs, len(addrs), body)
    assert bytes(ffi.buffer(body, n)) == p.reg_read(0, addrs).body
    n = lib.sigfuse_body_reg_write(addrs, values, len(addrs), body)
    assert bytes(ffi.buffer(body, n)) == p.reg_write(0, list(zip(addrs, values))).body
    assert lib.sigfuse_body_reg_read(addrs, 0, body) == 0
    assert lib.sigfuse_body_reg_read(addrs * 2, p.MAX_REGS + 1, body) == 0
    sigs = [Signal(rng.randrange(1 << 64), rng.randrange(8), rng.randrange(256), rng.randrange(2),
                   rng.randrange(32769), rng.randrange(-32768, 32768)) for _ in range(p.MAX_SIGNALS)]
    c_sigs = ffi.new("struct sigfuse_signal[]", len(sigs))
    for c, s in zip(c_sigs, sigs):
        c.ts_us, c.source, c.pair, c.side, c.confidence, c.edge_bps = s
    n = lib.sigfuse_body_push_signals(c_sigs, len(sigs), body)
    assert bytes(ffi.buffer(body, n)) == p.push_signals(0, sigs).body
    c_sigs[3].source = 8
    assert lib.sigfuse_body_push_signals(c_sigs, len(sigs), body) == 0


def test_noncanonical_cobs_is_oversize(backend):
    payload = next(q for q in (p.Frame(p.FrameType.PING, s, bytes([1] * p.MAX_BODY)).payload() for s in range(256)) if 0 not in q)
    segment = cobs.encode(payload) + b"\x01"
    assert len(segment) == p.MAX_ENCODED + 1
    with pytest.raises(p.Oversize):
        codec.decode_frame(segment)


# --- selection, doctor, build -----------------------------------------------------------------

def _codec_in_subprocess(value: str | None):
    env = {k: v for k, v in os.environ.items() if k != codec.ENV}
    if value is not None:
        env[codec.ENV] = value
    return subprocess.run([sys.executable, "-c", "from sigfuse import codec; print(codec.active())"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_env_forces_python():
    run = _codec_in_subprocess("python")
    assert run.returncode == 0 and run.stdout.strip() == "python"


@needs_native
def test_env_native_and_default():
    assert _codec_in_subprocess("native").stdout.strip() == "native"
    assert _codec_in_subprocess(None).stdout.strip() == "native"


def test_env_bad_value_is_a_clear_error():
    run = _codec_in_subprocess("fortran")
    assert run.returncode != 0 and "SIGFUSE_CODEC must be" in run.stderr


def test_forcing_native_without_it_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(codec, "_native", None)
    monkeypatch.setattr(codec, "_native_error", "sigfuse._linkcodec is not built (test)")
    previous = codec.active()
    try:
        with pytest.raises(codec.CodecUnavailable, match="native codec is unavailable"):
            codec.use("native")
        assert codec.use("auto") == "python"
        assert "not built" in codec.reason()
    finally:
        monkeypatch.undo()
        codec.use(previous)


def test_doctor_reports_the_codec():
    from sigfuse.doctor import run_checks
    (check,) = [c for c in run_checks() if c.name == "link codec"]
    assert f"{codec.active()} active" in check.detail
    assert check.found == codec.native_available()


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_sources_are_warnings_clean(tmp_path):
    sources = sorted(str(s) for s in (ROOT / "firmware" / "src").glob("*.c"))
    examples = sorted(str(s) for s in (ROOT / "firmware" / "examples").glob("*.c"))
    for src in sources + examples:
        run = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                              "-I", str(ROOT / "firmware" / "include"), "-c", src,
                              "-o", str(tmp_path / (Path(src).stem + ".o"))],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr


@needs_native
@FAST
@given(st.one_of(st.binary(max_size=800),
                 st.lists(st.sampled_from([0, 1, 0xFF]), max_size=600).map(bytes),
                 st.integers(250, 800).map(lambda n: bytes([7]) * n)))
def test_c_cobs_is_the_cobs_package(data):
    """The C COBS functions on any length (frames stop at 254 bytes; the library does not)."""
    from sigfuse._linkcodec import ffi, lib
    out = ffi.new("uint8_t[]", len(data) + len(data) // 254 + 2)
    n = lib.sigfuse_cobs_encode(data, len(data), out)
    encoded = bytes(ffi.buffer(out, n))
    assert encoded == cobs.encode(data)
    n = lib.sigfuse_cobs_decode(encoded, len(encoded), out)
    assert bytes(ffi.buffer(out, n)) == data
    try:  # garbage: the same verdict as the package
        expected = cobs.decode(data)
    except cobs.DecodeError:
        expected = None
    n = lib.sigfuse_cobs_decode(data, len(data), out)
    assert (None if n < 0 else bytes(ffi.buffer(out, n))) == expected


@needs_native
def test_c_cobs_and_crc_at_every_frame_length():
    """Every length a frame's COBS can have (0..254, the C codec's 16-byte vector path and its
    partial last chunk), at zero densities from none to all: the C encoder, decoder and CRC
    (tables below 48 bytes, carry-less folding from 48, four blocks side by side from 128)
    agree with the cobs package and binascii.  (Hypothesis draws lengths; this visits each.)"""
    from sigfuse._linkcodec import ffi, lib
    rng = random.Random(254)
    out = ffi.new("uint8_t[]", 300)
    back = ffi.new("uint8_t[]", 300)
    for length in range(255):
        for zeros in (0.0, 0.05, 0.3, 0.7, 1.0):
            data = bytes(0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(length))
            n = lib.sigfuse_cobs_encode(data, length, out)
            encoded = bytes(ffi.buffer(out, n))
            assert encoded == cobs.encode(data), (length, zeros, data.hex())
            assert lib.sigfuse_cobs_decode(encoded, n, back) == length
            assert bytes(ffi.buffer(back, length)) == data
            assert lib.sigfuse_crc16(data, length) == p.crc16(data), (length, zeros)
            cut = rng.randrange(length + 1)  # a running CRC carried on (the folding path too)
            head = lib.sigfuse_crc16(data[:cut], cut)
            assert lib.sigfuse_crc16_update(head, data[cut:], length - cut) == p.crc16(data), (length, cut)


@needs_native
@pytest.mark.parametrize("lengths, bodies, message", [
    ([3, 4], bytes(6), "bodies hold 6 bytes, lengths say 7"),       # the C must not read past
    ([3, 4], bytes(8), "bodies hold 8 bytes, lengths say 7"),
    ([], b"x", "bodies hold 1 bytes, lengths say 0"),
    ([251, 1], bytes(252), f"body of 251 bytes exceeds {p.MAX_BODY}"),
    ([0, 70000], bytes(70000), f"body of 70000 bytes exceeds {p.MAX_BODY}"),
    ([2], bytes(2), "types, seqs and lengths differ in length"),   # three types, one length
])
def test_encode_packed_rejects_bad_columns_alike(lengths, bodies, message):
    types = bytes(3) if len(lengths) == 1 else bytes(len(lengths))
    got = _both(lambda: codec.encode_packed(types, types, lengths, bodies))
    assert got == {"python": ("raises", "ValueError", message), "native": ("raises", "ValueError", message)}


@needs_native
@FAST
@given(st.binary(max_size=100), st.integers(0, 40), st.integers(0, 300))
def test_native_deframer_counts_delimiters_exactly(chunk, repeat, zeros):
    """The native Deframer sizes its event buffers by the zero bytes of the input (its C
    count, 16 bytes a step, must be exact), and decodes inputs with more events than its
    least buffer (64) as the Python one does."""
    from sigfuse._linkcodec import lib
    data = chunk * repeat + bytes(zeros)
    assert lib.sf_count_delimiters(data, len(data)) == data.count(0)
    many = b"\x01\x00" * (64 + zeros)  # truncated frames, one verdict each
    got = _both(lambda: _batch_view(codec.decode_batch(many)))
    assert got["native"] == got["python"]


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
@pytest.mark.parametrize("paths, flags", [
    ("vector", []),
    # Forced off: what a compiler without SSE2 (or a CPU without PCLMULQDQ) runs.
    ("portable", ["-U__SSE2__", "-DSIGFUSE_NO_CLMUL"]),
], ids=["vector", "portable"])
def test_c_cobs_and_crc_paths_on_this_machine(tmp_path, paths, flags):
    """The C COBS encoder and CRC built with their vector paths and with the portable
    fallbacks (the 8-byte zero mask, the slicing-by-16 tables): both give the cobs package's
    encoding and binascii's CRC at every frame length and beyond (to 600 bytes)."""
    exe = tmp_path / f"cobs_crc_{paths}"
    build = subprocess.run(["cc", "-std=c99", "-O2", *flags, "-I", str(ROOT / "firmware" / "include"),
                            str(Path(__file__).parent / "c" / "cobs_crc_filter.c"),
                            str(ROOT / "firmware" / "src" / "sigfuse_codec.c"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    rng = random.Random(600)
    inputs = [bytes(0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(length))
              for length in range(601) for zeros in (0.0, 0.2, 0.6, 1.0)]
    run = subprocess.run([str(exe)], input=b"".join(len(d).to_bytes(2, "little") + d for d in inputs),
                         capture_output=True, timeout=120)
    assert run.returncode == 0
    out, at = run.stdout, 0
    for data in inputs:
        n = int.from_bytes(out[at:at + 2], "little")
        encoded, crc, decoded = (out[at + 2:at + 2 + n], int.from_bytes(out[at + 2 + n:at + 4 + n], "little"),
                                 int.from_bytes(out[at + 4 + n:at + 6 + n], "little"))
        at += 6 + n
        assert (encoded, crc, decoded) == (cobs.encode(data), p.crc16(data), len(data)), len(data)
    assert at == len(out)
