/* push_decisions: push a few signals to a sigfuse board and print what it decides.
 *
 *     push_decisions URL [BAUD]
 *
 * URL is a serial device (/dev/ttyUSB1, opened raw 8N1 at BAUD, default 3000000) or
 * socket://HOST:PORT (the virtual board: `sigfuse sim board`).  Prints the board's identity,
 * every signal pushed and every result, one line each, in the board's order:
 *
 *     signal ts_us=1000 source=0 pair=0 side=buy confidence=29491 edge_bps=12
 *     decision ts_us=1100 pair=0 side=buy confidence=28808 edge_bps=11 priority=154 seq=0
 *     popped ... / popped_empty / stale ... / evicted ... / rejected ...
 *
 * Exit status 0 on success, 1 on a link or board error (message on stderr), 2 on bad usage. */
#include "sigfuse.h"

#include <stdio.h>
#include <stdlib.h>

#define Q15(x) ((uint16_t)((x) * 32768.0 + 0.5))

static const char *side_name(unsigned side) { return side ? "sell" : "buy"; }

static void print_signal(const char *what, const struct sigfuse_signal *s)
{
    printf("%s ts_us=%llu source=%u pair=%u side=%s confidence=%u edge_bps=%d\n", what,
           (unsigned long long)s->ts_us, s->source, s->pair, side_name(s->side), s->confidence,
           s->edge_bps);
}

static void print_result(const struct sigfuse_result *r)
{
    static const char *const kinds[] = {"decision", "popped", "popped_empty", "stale", "evicted",
                                        "rejected"};
    const struct sigfuse_decision *d = &r->decision;
    if (r->kind == SIGFUSE_RESULT_POPPED_EMPTY) {
        printf("popped_empty\n");
    } else if (r->kind == SIGFUSE_RESULT_STALE) {
        print_signal("stale", &r->signal);
    } else {
        printf("%s ts_us=%llu pair=%u side=%s confidence=%u edge_bps=%d priority=%u seq=%lu\n",
               kinds[r->kind], (unsigned long long)d->ts_us, d->pair, side_name(d->side),
               d->confidence, d->edge_bps, d->priority, (unsigned long)d->seq);
    }
}

static int check(sigfuse_client *c, int rc, const char *what)
{
    if (rc != SIGFUSE_OK) {
        fprintf(stderr, "push_decisions: %s: %s\n", what, sigfuse_last_error(c));
        sigfuse_close(c);
        exit(1);
    }
    return rc;
}

int main(int argc, char **argv)
{
    /* Two pairs: three sources agree on buying pair 0, two on selling pair 1, then a signal
     * older than the last one of its source and pair (stale). */
    const struct sigfuse_signal signals[] = {
        {1000, 0, 0, 0, Q15(0.90), 12},   /* ts_us, pair, source, side, confidence, edge_bps */
        {1100, 0, 1, 0, Q15(0.85), 10},
        {1200, 0, 2, 0, Q15(0.80), 9},
        {2000, 1, 0, 1, Q15(0.95), 15},
        {2100, 1, 1, 1, Q15(0.90), 11},
        {2200, 1, 3, 1, Q15(0.70), 6},
        {1500, 0, 0, 0, Q15(0.90), 12},
    };
    const size_t n_signals = sizeof signals / sizeof signals[0];
    struct sigfuse_result results[64];
    size_t n_results = 0, i;
    unsigned baud = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 3000000u;
    uint32_t magic = 0, version = 0, pair_slots = 0, capacity = 0, build_id = 0;
    char err[256];
    sigfuse_client *c;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s URL [BAUD]   (URL: /dev/ttyUSB1 or socket://HOST:PORT)\n", argv[0]);
        return 2;
    }
    c = sigfuse_open(argv[1], baud, 2000, err, sizeof err);
    if (c == NULL) {
        fprintf(stderr, "push_decisions: %s\n", err);
        return 1;
    }
    check(c, sigfuse_read_reg_by_name(c, "magic", &magic), "read magic");
    if (magic != SIGFUSE_REGS_MAGIC) {
        fprintf(stderr, "push_decisions: %s is not a sigfuse board (magic 0x%08lx)\n", argv[1],
                (unsigned long)magic);
        sigfuse_close(c);
        return 1;
    }
    check(c, sigfuse_read_reg_by_name(c, "version", &version), "read version");
    if (version >> 24 != SIGFUSE_PROTOCOL_MAJOR) {
        fprintf(stderr, "push_decisions: board speaks protocol %lu, this program %u\n",
                (unsigned long)(version >> 24), SIGFUSE_PROTOCOL_MAJOR);
        sigfuse_close(c);
        return 1;
    }
    check(c, sigfuse_read_reg_by_name(c, "build_id", &build_id), "read build_id");
    check(c, sigfuse_read_reg_by_name(c, "pair_slots", &pair_slots), "read pair_slots");
    check(c, sigfuse_read_reg_by_name(c, "queue_capacity", &capacity), "read queue_capacity");
    printf("board version=0x%08lx build_id=0x%08lx pair_slots=%lu queue_capacity=%lu\n",
           (unsigned long)version, (unsigned long)build_id, (unsigned long)pair_slots,
           (unsigned long)capacity);

    for (i = 0; i < n_signals; i++)
        print_signal("signal", &signals[i]);
    check(c, sigfuse_push(c, signals, n_signals, results, 64, &n_results), "push");
    for (i = 0; i < n_results && i < 64; i++)
        print_result(&results[i]);
    printf("pop 3\n");
    check(c, sigfuse_pop(c, 3, results, 64, &n_results), "pop");
    for (i = 0; i < n_results && i < 64; i++)
        print_result(&results[i]);
    if (sigfuse_frames_bad(c) || sigfuse_frames_lost(c))
        fprintf(stderr, "push_decisions: %lu bad and %lu lost board frames\n",
                (unsigned long)sigfuse_frames_bad(c), (unsigned long)sigfuse_frames_lost(c));
    sigfuse_close(c);
    return 0;
}
