"""cffi build script of ``sigfuse._linkcodec``: the C link codec of ``firmware/`` for the host.

API mode: cffi writes a C extension that compiles ``firmware/src/sigfuse_codec.c`` against the
generated headers, so the binding is checked by the C compiler, not by guesses about struct
layouts.  ``setup.py`` builds it at install time when a compiler is present (and goes on
without it when not); :mod:`sigfuse.codec` uses it when it imports.  By hand, from the
repository root: ``python host/_native_build.py`` (writes the extension into ``host/``).
"""

from __future__ import annotations

from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
#: Paths relative to the repository root: setuptools wants relative source paths.
SOURCES = ["firmware/src/sigfuse_codec.c"]
INCLUDE_DIRS = ["firmware/include"]
MODULE = "sigfuse._linkcodec"

CDEF = """
#define SIGFUSE_CODEC_API ...
#define SIGFUSE_MAX_BODY ...
#define SIGFUSE_MAX_ENCODED ...
#define SIGFUSE_MAX_WIRE ...
#define SIGFUSE_MAX_REGS ...
#define SIGFUSE_MAX_RESULTS ...
#define SIGFUSE_SIGNAL_RECORD_BYTES ...
#define SIGFUSE_RESULT_RECORD_BYTES ...
#define SIGFUSE_REG_COUNT ...

int sigfuse_codec_api(void);
uint16_t sigfuse_crc16_update(uint16_t crc, const uint8_t *data, size_t len);
uint16_t sigfuse_crc16(const uint8_t *data, size_t len);
size_t sigfuse_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
long sigfuse_cobs_decode(const uint8_t *in, size_t len, uint8_t *out);

struct sigfuse_frame { uint8_t type; uint8_t seq; uint8_t body_len; uint8_t body[...]; ...; };
struct sigfuse_drop_detail { uint16_t decoded_len; uint16_t crc_got; uint16_t crc_computed; ...; };
struct sigfuse_deframer {
    uint16_t pending_len; uint8_t overflowed;
    uint32_t frames_ok, frames_bad_crc, frames_bad_cobs, frames_oversize, frames_truncated;
    ...;
};
struct sigfuse_event {
    int16_t verdict; uint8_t type, seq; uint32_t body_offset; uint16_t body_len;
    struct sigfuse_drop_detail detail; ...;
};

size_t sigfuse_frame_encode(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len, uint8_t *out);
int sigfuse_frame_decode(const uint8_t *segment, size_t len, struct sigfuse_frame *frame,
                         struct sigfuse_drop_detail *detail);
void sigfuse_deframer_init(struct sigfuse_deframer *d);
size_t sigfuse_deframer_feed_batch(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                                   struct sigfuse_event *events, size_t max_events,
                                   uint8_t *bodies, size_t *consumed);
size_t sigfuse_encode_frames(size_t n, const uint8_t *types, const uint8_t *seqs,
                             const uint8_t *bodies, const uint16_t *body_lens, uint8_t *out);

struct sigfuse_signal { uint64_t ts_us; uint8_t pair; uint8_t source; uint8_t side;
                        uint16_t confidence; int16_t edge_bps; ...; };
struct sigfuse_decision { uint64_t ts_us; uint8_t pair; uint8_t side; uint16_t confidence;
                          int16_t edge_bps; uint16_t priority; uint32_t seq; ...; };
struct sigfuse_result { uint8_t kind; struct sigfuse_decision decision; struct sigfuse_signal signal; ...; };
int sigfuse_pack_signal(const struct sigfuse_signal *s, uint8_t *out);
int sigfuse_unpack_signal(const uint8_t *in, struct sigfuse_signal *s);
int sigfuse_pack_result(const struct sigfuse_result *r, uint8_t *out);
int sigfuse_unpack_result(const uint8_t *in, struct sigfuse_result *r);

size_t sigfuse_body_reg_read(const uint16_t *addrs, size_t n, uint8_t *body);
size_t sigfuse_body_reg_write(const uint16_t *addrs, const uint32_t *values, size_t n, uint8_t *body);
size_t sigfuse_body_push_signals(const struct sigfuse_signal *signals, size_t n, uint8_t *body);

struct sigfuse_reply {
    uint8_t kind; uint8_t seq; uint8_t cmd_type, cmd_seq; uint8_t status; uint8_t error;
    uint16_t detail; uint8_t data_len; uint8_t data[...]; uint8_t n_registers;
    uint16_t reg_addr[...]; uint32_t reg_value[...]; uint8_t n_results;
    struct sigfuse_result results[...]; ...;
};
int sigfuse_parse_reply(const struct sigfuse_frame *frame, struct sigfuse_reply *reply);
int sigfuse_reply_is_terminal(const struct sigfuse_reply *reply);

struct sigfuse_reg_info { const char *name; uint16_t addr; uint8_t width; uint8_t access;
                          uint32_t reset; uint32_t max; ...; };
const struct sigfuse_reg_info *sigfuse_reg_by_name(const char *name);
const struct sigfuse_reg_info *sigfuse_reg_by_addr(uint16_t addr);
const struct sigfuse_reg_info *sigfuse_reg_at(size_t index);

/* char-typed entry points (PREAMBLE): cffi passes a Python bytes object to a char pointer
   without copying it, where a uint8_t pointer would need ffi.from_buffer per call. */
size_t sf_frame_encode(uint8_t type, uint8_t seq, const char *body, size_t body_len, char *out);
int sf_frame_decode(const char *segment, size_t len, struct sigfuse_frame *frame,
                    struct sigfuse_drop_detail *detail);
size_t sf_feed_batch(struct sigfuse_deframer *d, const char *data, size_t len,
                     struct sigfuse_event *events, size_t max_events, char *bodies, size_t *consumed);
#define SF_BODIES_MISMATCH ...
#define SF_BODY_TOO_LONG ...
size_t sf_encode_frames(size_t n, const char *types, const char *seqs, const char *bodies,
                        size_t bodies_len, const uint16_t *body_lens, char *out);
uint16_t sf_crc16(const char *data, size_t len);
size_t sf_count_delimiters(const char *data, size_t len);
size_t sf_feed_columns(struct sigfuse_deframer *d, const char *data, size_t len,
                       struct sigfuse_event *events, size_t max_events, char *bodies, size_t *consumed,
                       char *verdicts, char *types, char *seqs, uint32_t *offsets, uint16_t *lengths);
"""

PREAMBLE = """
#include "sigfuse.h"
static size_t sf_frame_encode(uint8_t type, uint8_t seq, const char *body, size_t body_len, char *out)
{ return sigfuse_frame_encode(type, seq, (const uint8_t *)body, body_len, (uint8_t *)out); }
static int sf_frame_decode(const char *segment, size_t len, struct sigfuse_frame *frame,
                           struct sigfuse_drop_detail *detail)
{ return sigfuse_frame_decode((const uint8_t *)segment, len, frame, detail); }
static size_t sf_feed_batch(struct sigfuse_deframer *d, const char *data, size_t len,
                            struct sigfuse_event *events, size_t max_events, char *bodies, size_t *consumed)
{ return sigfuse_deframer_feed_batch(d, (const uint8_t *)data, len, events, max_events, (uint8_t *)bodies, consumed); }
/* The caller's checks in one pass over the lengths (in Python, sum() and max() took an eighth
   of the time of encoding full frames): the bodies must hold exactly what the lengths say, or
   the encoder would read past them. */
#define SF_BODIES_MISMATCH ((size_t)-1)
#define SF_BODY_TOO_LONG ((size_t)-2)
static size_t sf_encode_frames(size_t n, const char *types, const char *seqs, const char *bodies,
                               size_t bodies_len, const uint16_t *body_lens, char *out)
{
    size_t i, total = 0;
    unsigned longest = 0;
    for (i = 0; i < n; i++) {
        total += body_lens[i];
        longest = body_lens[i] > longest ? body_lens[i] : longest;
    }
    if (total != bodies_len)
        return SF_BODIES_MISMATCH;
    if (longest > SIGFUSE_MAX_BODY)
        return SF_BODY_TOO_LONG;
    return sigfuse_encode_frames(n, (const uint8_t *)types, (const uint8_t *)seqs, (const uint8_t *)bodies, body_lens, (uint8_t *)out);
}
static uint16_t sf_crc16(const char *data, size_t len)
{ return sigfuse_crc16((const uint8_t *)data, len); }
/* The zero bytes of data: a bound of the verdicts a feed can give, to size its buffers.
   (bytes.count(0) took a quarter of the time of batch-decoding full frames.) */
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
static size_t sf_count_delimiters(const char *data, size_t len)
{
    size_t i = 0, count = 0;
#if defined(__SSE2__) && defined(__GNUC__)
    for (; i + 16 <= len; i += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(data + i));
        count += (size_t)__builtin_popcount((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_setzero_si128())));
    }
#endif
    for (; i < len; i++)
        count += data[i] == 0;
    return count;
}
/* Batch decode into columns (one bytes object or array per field): Python then needs a
   constant number of calls per buffer, not a few per frame. */
static size_t sf_feed_columns(struct sigfuse_deframer *d, const char *data, size_t len,
                              struct sigfuse_event *events, size_t max_events, char *bodies, size_t *consumed,
                              char *verdicts, char *types, char *seqs, uint32_t *offsets, uint16_t *lengths)
{
    size_t i, n = sigfuse_deframer_feed_batch(d, (const uint8_t *)data, len, events, max_events,
                                              (uint8_t *)bodies, consumed);
    for (i = 0; i < n; i++) {
        verdicts[i] = (char)events[i].verdict;
        types[i] = (char)events[i].type;
        seqs[i] = (char)events[i].seq;
        offsets[i] = events[i].body_offset;
        lengths[i] = events[i].body_len;
    }
    return n;
}
"""


def make_ffibuilder(root: Path | None = None) -> FFI:
    """The builder; ``root`` makes source paths absolute (for building outside setup.py)."""
    base = (lambda p: str(root / p)) if root is not None else (lambda p: p)
    ffibuilder = FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.set_source(
        MODULE, PREAMBLE,
        sources=[base(s) for s in SOURCES], include_dirs=[base(d) for d in INCLUDE_DIRS],
        extra_compile_args=["-std=c99", "-O2"])
    return ffibuilder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    import os
    from importlib.machinery import EXTENSION_SUFFIXES
    os.chdir(ROOT)
    # Writes host/_linkcodec.cpython-3XX-....so (the package folder of the editable install)
    # under the name the import looks for first: cffi's "_linkcodec.*" would give a plain
    # .so, which an install's tagged one shadows.
    target = ROOT / "host" / ("_linkcodec" + EXTENSION_SUFFIXES[0])
    make_ffibuilder(ROOT).compile(tmpdir=str(ROOT / "build" / "cffi"), target=str(target), verbose=True)
