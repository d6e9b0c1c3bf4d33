/* sigfuse link codec and client: the C side of the host-board link (docs/link.md).
 *
 * C99, no dependencies beyond libc.  The protocol constants come from the generated headers
 * sigfuse_link.h and sigfuse_regs.h (`sigfuse regs export`); this header is hand-written.
 *
 * Codec (sigfuse_codec.c): CRC-16/IBM-3740, COBS, frame encode/decode, a streaming deframer
 * that classifies bad frames exactly like sigfuse.protocol.Deframer, signal/result record
 * packing, reply parsing, register lookup by name and by address.  No allocation, no I/O.
 *
 * Client (sigfuse_client.c): open a board by serial device path or socket://HOST:PORT, run
 * commands with sequence numbers and a timeout, push signals, pop decisions, registers by name.
 */
#ifndef SIGFUSE_H
#define SIGFUSE_H

#include <stddef.h>
#include <stdint.h>

#include "sigfuse_link.h"
#include "sigfuse_regs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a declaration below changes; the Python binding checks it. */
#define SIGFUSE_CODEC_API 1
int sigfuse_codec_api(void);

/* --- CRC and COBS --------------------------------------------------------------------- */

/* CRC-16/IBM-3740 of data, starting from crc (SIGFUSE_CRC_INIT for a fresh CRC). */
uint16_t sigfuse_crc16_update(uint16_t crc, const uint8_t *data, size_t len);
uint16_t sigfuse_crc16(const uint8_t *data, size_t len);

/* COBS-encode len bytes into out (room for len + len / 254 + 1 bytes); returns the length.
 * No delimiter is appended. */
size_t sigfuse_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* Decode a COBS segment (no delimiter) into out (room for len bytes).  Returns the decoded
 * length, or -1 when the last block ends before its code byte said or a 0x00 is inside.
 * Same rules as the Python `cobs` package. */
long sigfuse_cobs_decode(const uint8_t *in, size_t len, uint8_t *out);

/* --- frames ----------------------------------------------------------------------------- */

/* Verdict on the bytes between two delimiters, in the order a receiver decides. */
enum sigfuse_link_verdict {
    SIGFUSE_LINK_MORE = -1,       /* deframer: no verdict yet, feed more bytes */
    SIGFUSE_LINK_OK = 0,
    SIGFUSE_LINK_OVERSIZE = 1,    /* more than SIGFUSE_MAX_ENCODED bytes: frames_oversize */
    SIGFUSE_LINK_BAD_COBS = 2,    /* a block cut short: frames_bad_cobs */
    SIGFUSE_LINK_TRUNCATED = 3,   /* fewer than SIGFUSE_MIN_FRAME bytes decoded: frames_truncated */
    SIGFUSE_LINK_BAD_CRC = 4      /* CRC residue not 0: frames_bad_crc */
};

struct sigfuse_frame {
    uint8_t type;
    uint8_t seq;
    uint8_t body_len;             /* 0 .. SIGFUSE_MAX_BODY */
    uint8_t body[SIGFUSE_MAX_BODY];
};

/* Why a segment was dropped, for messages (what sigfuse.protocol puts in its errors). */
struct sigfuse_drop_detail {
    uint16_t decoded_len;         /* TRUNCATED, BAD_CRC: bytes decoded */
    uint16_t crc_got;             /* BAD_CRC: the last two decoded bytes, MSB first */
    uint16_t crc_computed;        /* BAD_CRC: the CRC of the bytes before them */
};

/* Largest frame on the wire, delimiter included. */
#define SIGFUSE_MAX_WIRE (SIGFUSE_MAX_ENCODED + 1u)

/* Encode one frame, delimiter included, into out (room for SIGFUSE_MAX_WIRE bytes).  Returns
 * the number of bytes written, or 0 when body_len > SIGFUSE_MAX_BODY. */
size_t sigfuse_frame_encode(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                            uint8_t *out);

/* Classify and decode the bytes between two delimiters (not including them).  Returns a
 * verdict; frame is filled on SIGFUSE_LINK_OK, detail (may be NULL) on a drop. */
int sigfuse_frame_decode(const uint8_t *segment, size_t len, struct sigfuse_frame *frame,
                         struct sigfuse_drop_detail *detail);

/* Streaming receiver, the model of sigfuse.protocol.Deframer: bytes before the first
 * delimiter are a segment too; delimiters in a row are idle; a segment longer than
 * SIGFUSE_MAX_ENCODED is oversize (its bytes are not kept).  In sync again at every 0x00. */
struct sigfuse_deframer {
    uint8_t pending[SIGFUSE_MAX_ENCODED];
    uint16_t pending_len;
    uint8_t overflowed;
    uint32_t frames_ok, frames_bad_crc, frames_bad_cobs, frames_oversize, frames_truncated;
};

void sigfuse_deframer_init(struct sigfuse_deframer *d);

/* Consume bytes of data up to and including the first delimiter that ends a (non-idle)
 * segment; return how many were consumed.  *verdict is SIGFUSE_LINK_MORE when all of data was
 * consumed without a verdict, else the segment's verdict (frame / detail filled as for
 * sigfuse_frame_decode).  Counters are updated. */
size_t sigfuse_deframer_feed(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                             int *verdict, struct sigfuse_frame *frame,
                             struct sigfuse_drop_detail *detail);

/* One verdict of a batch decode. */
struct sigfuse_event {
    int16_t verdict;              /* SIGFUSE_LINK_OK or a drop */
    uint8_t type, seq;            /* OK */
    uint32_t body_offset;         /* OK: into the bodies buffer */
    uint16_t body_len;            /* OK */
    struct sigfuse_drop_detail detail;
};

/* Batch decode (one call for a whole receive buffer): feed data, write up to max_events
 * verdicts to events and the frames' bodies back to back into bodies (room for
 * len + SIGFUSE_MAX_ENCODED bytes always suffices: a frame may have begun in an earlier feed).  Returns the number of events; *consumed says how much of data was used
 * (less than len only when events filled up: call again with the rest). */
size_t sigfuse_deframer_feed_batch(struct sigfuse_deframer *d, const uint8_t *data, size_t len,
                                   struct sigfuse_event *events, size_t max_events,
                                   uint8_t *bodies, size_t *consumed);

/* Batch encode n frames: types[i], seqs[i], body i = the next body_lens[i] bytes of bodies.
 * Writes them back to back (delimiters included) into out (room for n * SIGFUSE_MAX_WIRE
 * bytes suffices).  Returns the bytes written, or 0 when a body is longer than
 * SIGFUSE_MAX_BODY. */
size_t sigfuse_encode_frames(size_t n, const uint8_t *types, const uint8_t *seqs,
                             const uint8_t *bodies, const uint16_t *body_lens, uint8_t *out);

/* --- records ---------------------------------------------------------------------------- */

/* The contract's records (docs/fusion.md).  confidence is UQ1.15 (0 .. 32768). */
struct sigfuse_signal {
    uint64_t ts_us;
    uint8_t pair;
    uint8_t source;               /* 0 .. 7 */
    uint8_t side;                 /* 0 buy, 1 sell */
    uint16_t confidence;
    int16_t edge_bps;
};

struct sigfuse_decision {
    uint64_t ts_us;
    uint8_t pair;
    uint8_t side;
    uint16_t confidence;
    int16_t edge_bps;
    uint16_t priority;
    uint32_t seq;
};

/* kind is enum sigfuse_result_kind; DECISION/POPPED/EVICTED/REJECTED carry decision, STALE
 * carries signal, POPPED_EMPTY neither. */
struct sigfuse_result {
    uint8_t kind;
    struct sigfuse_decision decision;
    struct sigfuse_signal signal;
};

/* Pack into SIGFUSE_SIGNAL_RECORD_BYTES / SIGFUSE_RESULT_RECORD_BYTES; return -1 when a field
 * does not fit its width (source > 7, side > 1, unknown kind), else 0. */
int sigfuse_pack_signal(const struct sigfuse_signal *s, uint8_t *out);
int sigfuse_unpack_signal(const uint8_t *in, struct sigfuse_signal *s); /* -1: reserved bits */
int sigfuse_pack_result(const struct sigfuse_result *r, uint8_t *out);
/* -1 as sigfuse.protocol.unpack_result raises BodyError: reserved bits, unknown kind, an empty
 * pop with a record, a stale record wider than a signal. */
int sigfuse_unpack_result(const uint8_t *in, struct sigfuse_result *r);

/* --- commands and replies --------------------------------------------------------------- */

/* Command bodies into body (room for SIGFUSE_MAX_BODY); return the length, 0 on a bad count
 * or value (counts as in sigfuse.protocol: 1..MAX_REGS, 1..MAX_SIGNALS). */
size_t sigfuse_body_reg_read(const uint16_t *addrs, size_t n, uint8_t *body);
size_t sigfuse_body_reg_write(const uint16_t *addrs, const uint32_t *values, size_t n,
                              uint8_t *body);
size_t sigfuse_body_push_signals(const struct sigfuse_signal *signals, size_t n, uint8_t *body);

/* A parsed board frame (sigfuse.protocol.Reply). */
struct sigfuse_reply {
    uint8_t kind;                 /* enum sigfuse_frame_type */
    uint8_t seq;
    uint8_t cmd_type, cmd_seq;    /* the command answered */
    uint8_t status;               /* acks: enum sigfuse_ack_status */
    uint8_t error;                /* ERROR: code */
    uint16_t detail;              /* ERROR: detail */
    uint8_t data_len;             /* PONG */
    uint8_t data[SIGFUSE_MAX_BODY];
    uint8_t n_registers;          /* REG_READ_REPLY, STATS_REPLY */
    uint16_t reg_addr[SIGFUSE_MAX_REGS];
    uint32_t reg_value[SIGFUSE_MAX_REGS];
    uint8_t n_results;            /* RESULTS */
    struct sigfuse_result results[SIGFUSE_MAX_RESULTS];
};

/* 0, or -1 where sigfuse.protocol.parse_reply raises BodyError. */
int sigfuse_parse_reply(const struct sigfuse_frame *frame, struct sigfuse_reply *reply);
/* 1 for a terminal reply (anything but RESULTS). */
int sigfuse_reply_is_terminal(const struct sigfuse_reply *reply);

/* --- registers -------------------------------------------------------------------------- */

const struct sigfuse_reg_info *sigfuse_reg_by_name(const char *name);
const struct sigfuse_reg_info *sigfuse_reg_by_addr(uint16_t addr);
const struct sigfuse_reg_info *sigfuse_reg_at(size_t index); /* NULL past SIGFUSE_REG_COUNT */

/* --- client (sigfuse_client.c) ---------------------------------------------------------- */

typedef struct sigfuse_client sigfuse_client;

enum sigfuse_client_status {
    SIGFUSE_OK = 0,
    SIGFUSE_E_IO = -1,            /* open/read/write failed, or the device went away */
    SIGFUSE_E_TIMEOUT = -2,       /* no terminal reply in time */
    SIGFUSE_E_REPLY = -3,         /* ERROR reply or a malformed one (see sigfuse_last_error) */
    SIGFUSE_E_ARG = -4,           /* bad argument: unknown register, count out of range */
    SIGFUSE_E_DUPLICATE = -5      /* the board answered DUPLICATE: the command was a repeat */
};

/* url: a serial device path ("/dev/ttyUSB1") opened raw 8N1 at baud, or
 * "socket://HOST:PORT" (TCP; baud ignored).  timeout_ms bounds the wait for each terminal
 * reply.  Starts the session with a PING.  NULL on failure, with a message in err. */
sigfuse_client *sigfuse_open(const char *url, unsigned baud, int timeout_ms,
                             char *err, size_t err_len);
void sigfuse_close(sigfuse_client *c);
/* The message of the last failure on c. */
const char *sigfuse_last_error(const sigfuse_client *c);
/* Board frames the client could not decode, and gaps in the board's seq. */
uint32_t sigfuse_frames_bad(const sigfuse_client *c);
uint32_t sigfuse_frames_lost(const sigfuse_client *c);

int sigfuse_ping(sigfuse_client *c);
int sigfuse_read_reg(sigfuse_client *c, uint16_t addr, uint32_t *value);
int sigfuse_write_reg(sigfuse_client *c, uint16_t addr, uint32_t value);
int sigfuse_read_reg_by_name(sigfuse_client *c, const char *name, uint32_t *value);
int sigfuse_write_reg_by_name(sigfuse_client *c, const char *name, uint32_t value);
/* Push n signals (split into frames of at most SIGFUSE_MAX_SIGNALS); the results they caused
 * go to results (up to max_results; *n_results is the count, which may exceed max_results:
 * the excess is dropped). */
int sigfuse_push(sigfuse_client *c, const struct sigfuse_signal *signals, size_t n,
                 struct sigfuse_result *results, size_t max_results, size_t *n_results);
/* count pops (any number; 255 per frame); results as for sigfuse_push. */
int sigfuse_pop(sigfuse_client *c, size_t count, struct sigfuse_result *results,
                size_t max_results, size_t *n_results);

#ifdef __cplusplus
}
#endif

#endif /* SIGFUSE_H */
