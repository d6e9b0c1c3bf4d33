/* A filter over the C codec's COBS and CRC, for tests/link/test_codec.py: reads records of
 * (length: 2 bytes LE, bytes) from stdin until EOF and writes, for each, (encoded length: 2
 * bytes LE, COBS encoding, CRC-16: 2 bytes LE, COBS-decoded length of the encoding: 2 bytes
 * LE).  The test builds it with the vector paths and with the portable fallbacks forced, so
 * both are checked against the cobs package and binascii on any machine. */
#include <stdio.h>

#include "sigfuse.h"

int main(void)
{
    unsigned char header[2], in[1024], out[1100], back[1100];
    while (fread(header, 1, 2, stdin) == 2) {
        size_t len = (size_t)header[0] | (size_t)header[1] << 8, n;
        uint16_t crc;
        long decoded;
        unsigned char trailer[4];
        if (len > sizeof in || fread(in, 1, len, stdin) != len)
            return 2;
        n = sigfuse_cobs_encode(in, len, out);
        crc = sigfuse_crc16(in, len);
        decoded = sigfuse_cobs_decode(out, n, back);
        header[0] = (unsigned char)n;
        header[1] = (unsigned char)(n >> 8);
        trailer[0] = (unsigned char)crc;
        trailer[1] = (unsigned char)(crc >> 8);
        trailer[2] = (unsigned char)decoded;
        trailer[3] = (unsigned char)(decoded >> 8);
        fwrite(header, 1, 2, stdout);
        fwrite(out, 1, n, stdout);
        fwrite(trailer, 1, 4, stdout);
    }
    return 0;
}
