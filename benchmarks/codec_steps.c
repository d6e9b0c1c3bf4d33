/* The C link codec's steps, timed on their own: benchmarks/codec.py --c-steps builds and runs
 * this on its full-frame workload.  Reads records (body length: 2 bytes LE, type, seq, body)
 * from the file named by argv[1]; prints one "step ns_per_frame" line per step, best of
 * argv[2] rounds (each round goes over every frame). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigfuse.h"

static double seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define MAX_FRAMES 100000

static uint8_t types[MAX_FRAMES], seqs[MAX_FRAMES];
static uint16_t body_lens[MAX_FRAMES];
static uint8_t bodies[MAX_FRAMES * SIGFUSE_MAX_BODY];
static uint8_t payloads[MAX_FRAMES][SIGFUSE_MAX_FRAME];
static size_t payload_lens[MAX_FRAMES];
static uint8_t encoded[MAX_FRAMES][SIGFUSE_MAX_ENCODED + 1];
static size_t encoded_lens[MAX_FRAMES];
static uint8_t wire[MAX_FRAMES * SIGFUSE_MAX_WIRE];
static struct sigfuse_event events[MAX_FRAMES];
static uint8_t decoded_bodies[MAX_FRAMES * SIGFUSE_MAX_BODY];

int main(int argc, char **argv)
{
    FILE *f;
    size_t n = 0, body_at = 0, wire_len = 0, i;
    int rounds, r, step;
    uint8_t header[4], scratch[SIGFUSE_MAX_ENCODED + 1];
    volatile unsigned long sink = 0;
    static const char *names[] = {"crc", "cobs_encode", "cobs_decode", "encode_frames", "deframer_batch"};
    if (argc != 3 || (f = fopen(argv[1], "rb")) == NULL)
        return 2;
    rounds = atoi(argv[2]);
    while (n < MAX_FRAMES && fread(header, 1, 4, f) == 4) {
        size_t len = (size_t)header[0] | (size_t)header[1] << 8;
        if (len > SIGFUSE_MAX_BODY || fread(bodies + body_at, 1, len, f) != len)
            return 2;
        types[n] = header[2];
        seqs[n] = header[3];
        body_lens[n] = (uint16_t)len;
        payloads[n][0] = header[2];
        payloads[n][1] = header[3];
        memcpy(payloads[n] + 2, bodies + body_at, len);
        payload_lens[n] = len + 2;
        encoded_lens[n] = sigfuse_cobs_encode(payloads[n], payload_lens[n], encoded[n]);
        body_at += len;
        n++;
    }
    fclose(f);
    wire_len = sigfuse_encode_frames(n, types, seqs, bodies, body_lens, wire);
    for (step = 0; step < 5; step++) {
        double best = 1e30;
        for (r = 0; r < rounds; r++) {
            double start = seconds(), took;
            struct sigfuse_deframer d;
            size_t consumed;
            switch (step) {
            case 0:
                for (i = 0; i < n; i++)
                    sink += sigfuse_crc16(payloads[i], payload_lens[i]);
                break;
            case 1:
                for (i = 0; i < n; i++)
                    sink += sigfuse_cobs_encode(payloads[i], payload_lens[i], scratch);
                break;
            case 2:
                for (i = 0; i < n; i++)
                    sink += (unsigned long)sigfuse_cobs_decode(encoded[i], encoded_lens[i], scratch);
                break;
            case 3:
                sink += sigfuse_encode_frames(n, types, seqs, bodies, body_lens, wire);
                break;
            default:
                sigfuse_deframer_init(&d);
                sink += sigfuse_deframer_feed_batch(&d, wire, wire_len, events, MAX_FRAMES,
                                                    decoded_bodies, &consumed);
                break;
            }
            took = seconds() - start;
            best = took < best ? took : best;
        }
        printf("%s %.1f\n", names[step], best / (double)n * 1e9);
    }
    return sink == 0;  /* never: keeps the loops from being optimized away */
}
