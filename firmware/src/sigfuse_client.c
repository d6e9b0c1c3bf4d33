/* sigfuse client: a board over a serial port or TCP (the virtual board), on the codec.
 *
 * One command at a time: send it, then read board frames until its terminal reply, collecting
 * the RESULTS frames that carry its prefix.  docs/link.md allows two commands in flight; one
 * keeps this code simple and costs throughput only on a real UART (see firmware/README.md). */
#define _DEFAULT_SOURCE 1     /* glibc: the B1000000.. baud rates and cfmakeraw */
#define _POSIX_C_SOURCE 200809L

#include "sigfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct sigfuse_client {
    int fd;
    int timeout_ms;
    uint8_t next_seq;
    int have_board_seq;
    uint8_t board_seq;
    uint32_t frames_bad, frames_lost;
    struct sigfuse_deframer rx;
    uint8_t rx_buf[4096];
    size_t rx_len, rx_pos;
    char error[256];
};

static int fail(sigfuse_client *c, int status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, args);
    va_end(args);
    return status;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* --- opening ---------------------------------------------------------------------------- */

static speed_t baud_constant(unsigned baud)
{
    switch (baud) {
    case 9600: return B9600;
    case 19200: return B19200;
    case 38400: return B38400;
    case 57600: return B57600;
    case 115200: return B115200;
    case 230400: return B230400;
#ifdef B460800
    case 460800: return B460800;
#endif
#ifdef B921600
    case 921600: return B921600;
#endif
#ifdef B1000000
    case 1000000: return B1000000;
#endif
#ifdef B2000000
    case 2000000: return B2000000;
#endif
#ifdef B3000000
    case 3000000: return B3000000;
#endif
    default: return 0;
    }
}

static int open_serial(const char *path, unsigned baud, char *err, size_t err_len)
{
    struct termios tio;
    speed_t speed = baud_constant(baud);
    int fd;
    if (speed == 0) {
        snprintf(err, err_len, "unsupported baud rate %u", baud);
        return -1;
    }
    fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (tcgetattr(fd, &tio) != 0) {
        snprintf(err, err_len, "%s: not a serial port (%s)", path, strerror(errno));
        close(fd);
        return -1;
    }
    cfmakeraw(&tio);                       /* 8 data bits, no parity, no echo, no translation */
    tio.c_cflag &= ~(tcflag_t)CSTOPB;      /* one stop bit */
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cc[VMIN] = 0;                    /* reads never block: poll() waits */
    tio.c_cc[VTIME] = 0;
    if (cfsetispeed(&tio, speed) != 0 || cfsetospeed(&tio, speed) != 0 ||
        tcsetattr(fd, TCSANOW, &tio) != 0) {
        snprintf(err, err_len, "%s: cannot set %u baud 8N1 (%s)", path, baud, strerror(errno));
        close(fd);
        return -1;
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}

static int open_socket(const char *hostport, char *err, size_t err_len)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    struct addrinfo hints, *list = NULL, *ai;
    int fd = -1, rc, one = 1;
    size_t host_len;
    if (colon == NULL || colon == hostport || colon[1] == '\0') {
        snprintf(err, err_len, "socket://%s: expected socket://HOST:PORT", hostport);
        return -1;
    }
    host_len = (size_t)(colon - hostport);
    if (hostport[0] == '[' && host_len >= 2 && hostport[host_len - 1] == ']') {
        hostport++;               /* [IPv6]:PORT */
        host_len -= 2;
    }
    if (host_len >= sizeof host) {
        snprintf(err, err_len, "socket://%s: host name too long", hostport);
        return -1;
    }
    memcpy(host, hostport, host_len);
    host[host_len] = '\0';
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, colon + 1, &hints, &list);
    if (rc != 0) {
        snprintf(err, err_len, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        snprintf(err, err_len, "%s:%s: %s", host, colon + 1, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(list);
    if (fd < 0)
        return -1;
    /* Commands are small and answered one at a time: Nagle would add a delay to each. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

sigfuse_client *sigfuse_open(const char *url, unsigned baud, int timeout_ms, char *err,
                             size_t err_len)
{
    static const char prefix[] = "socket://";
    sigfuse_client *c;
    char scratch[256];
    int fd;
    if (err == NULL) {
        err = scratch;
        err_len = sizeof scratch;
    }
    if (strncmp(url, prefix, sizeof prefix - 1) == 0)
        fd = open_socket(url + sizeof prefix - 1, err, err_len);
    else
        fd = open_serial(url, baud, err, err_len);
    if (fd < 0)
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, err_len, "out of memory");
        close(fd);
        return NULL;
    }
    c->fd = fd;
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
    sigfuse_deframer_init(&c->rx);
    /* A session starts with a PING: whatever its seq, it resets the board's duplicate check. */
    if (sigfuse_ping(c) != SIGFUSE_OK) {
        snprintf(err, err_len, "%s: no answer to PING (%s)", url, c->error);
        sigfuse_close(c);
        return NULL;
    }
    return c;
}

void sigfuse_close(sigfuse_client *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    free(c);
}

const char *sigfuse_last_error(const sigfuse_client *c) { return c->error; }
uint32_t sigfuse_frames_bad(const sigfuse_client *c) { return c->frames_bad; }
uint32_t sigfuse_frames_lost(const sigfuse_client *c) { return c->frames_lost; }

/* --- frames on the wire ----------------------------------------------------------------- */

static int write_all(sigfuse_client *c, const uint8_t *data, size_t len)
{
    while (len) {
        ssize_t n = write(c->fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail(c, SIGFUSE_E_IO, "write: %s", n < 0 ? strerror(errno) : "nothing written");
        data += n;
        len -= (size_t)n;
    }
    return SIGFUSE_OK;
}

/* The next good board frame before the deadline. */
static int read_frame(sigfuse_client *c, struct sigfuse_frame *frame, long long deadline)
{
    for (;;) {
        struct pollfd pfd;
        long long left;
        ssize_t n;
        int rc;
        while (c->rx_pos < c->rx_len) {
            int verdict;
            c->rx_pos += sigfuse_deframer_feed(&c->rx, c->rx_buf + c->rx_pos, c->rx_len - c->rx_pos,
                                               &verdict, frame, NULL);
            if (verdict == SIGFUSE_LINK_OK)
                return SIGFUSE_OK;
            if (verdict != SIGFUSE_LINK_MORE)
                c->frames_bad++;
        }
        c->rx_pos = c->rx_len = 0;
        left = deadline - now_ms();
        if (left <= 0)
            return fail(c, SIGFUSE_E_TIMEOUT, "no reply within %d ms", c->timeout_ms);
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return fail(c, SIGFUSE_E_IO, "poll: %s", strerror(errno));
        if (rc == 0)
            continue;
        n = read(c->fd, c->rx_buf, sizeof c->rx_buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return fail(c, SIGFUSE_E_IO, "read: %s", strerror(errno));
        if (n == 0)
            return fail(c, SIGFUSE_E_IO, "the device closed the link");
        c->rx_len = (size_t)n;
    }
}

struct result_sink {
    struct sigfuse_result *results;
    size_t max, count;
};

/* Send one command and wait for its terminal reply; RESULTS go to sink. */
static int command(sigfuse_client *c, uint8_t type, const uint8_t *body, size_t body_len,
                   struct sigfuse_reply *reply, struct result_sink *sink)
{
    uint8_t wire[1 + SIGFUSE_MAX_WIRE];
    struct sigfuse_frame frame;
    uint8_t seq = c->next_seq++;
    long long deadline;
    size_t n;
    int rc, i;
    /* A leading delimiter ends whatever a lost byte left half-received on the board. */
    wire[0] = SIGFUSE_DELIMITER;
    n = sigfuse_frame_encode(type, seq, body, body_len, wire + 1);
    if (n == 0)
        return fail(c, SIGFUSE_E_ARG, "body of %u bytes is too long", (unsigned)body_len);
    rc = write_all(c, wire, n + 1);
    if (rc != SIGFUSE_OK)
        return rc;
    deadline = now_ms() + c->timeout_ms;
    for (;;) {
        rc = read_frame(c, &frame, deadline);
        if (rc != SIGFUSE_OK)
            return rc;
        if (sigfuse_parse_reply(&frame, reply) != 0) {
            c->frames_bad++;
            continue;
        }
        /* The board numbers every frame it sends: a gap is a lost board frame. */
        if (c->have_board_seq && reply->seq != (uint8_t)(c->board_seq + 1))
            c->frames_lost += (uint8_t)(reply->seq - c->board_seq - 1);
        c->have_board_seq = 1;
        c->board_seq = reply->seq;
        if (reply->cmd_type != type || reply->cmd_seq != seq)
            continue;  /* the late answer of an earlier command */
        if (!sigfuse_reply_is_terminal(reply)) {
            for (i = 0; i < reply->n_results; i++) {
                if (sink != NULL && sink->count < sink->max)
                    sink->results[sink->count] = reply->results[i];
                if (sink != NULL)
                    sink->count++;
            }
            continue;
        }
        if (reply->kind == SIGFUSE_FRAME_ERROR)
            return fail(c, SIGFUSE_E_REPLY, "board refused command 0x%02x: error %u, detail %u",
                        type, reply->error, reply->detail);
        if (reply->kind != (uint8_t)(type | 0x80u))
            return fail(c, SIGFUSE_E_REPLY, "reply 0x%02x to command 0x%02x", reply->kind, type);
        if ((reply->kind == SIGFUSE_FRAME_REG_WRITE_ACK || reply->kind == SIGFUSE_FRAME_PUSH_ACK ||
             reply->kind == SIGFUSE_FRAME_POP_ACK) && reply->status == SIGFUSE_ACK_DUPLICATE)
            return fail(c, SIGFUSE_E_DUPLICATE, "command 0x%02x seq %u was a duplicate", type, seq);
        return SIGFUSE_OK;
    }
}

/* --- commands --------------------------------------------------------------------------- */

int sigfuse_ping(sigfuse_client *c)
{
    static const uint8_t probe[] = {'s', 'i', 'g', 'f', 'u', 's', 'e'};
    struct sigfuse_reply reply;
    int rc = command(c, SIGFUSE_FRAME_PING, probe, sizeof probe, &reply, NULL);
    if (rc == SIGFUSE_OK && (reply.data_len != sizeof probe || memcmp(reply.data, probe, sizeof probe)))
        return fail(c, SIGFUSE_E_REPLY, "PONG with other bytes than the PING's");
    return rc;
}

int sigfuse_read_reg(sigfuse_client *c, uint16_t addr, uint32_t *value)
{
    uint8_t body[SIGFUSE_MAX_BODY];
    struct sigfuse_reply reply;
    size_t n = sigfuse_body_reg_read(&addr, 1, body);
    int rc = command(c, SIGFUSE_FRAME_REG_READ, body, n, &reply, NULL);
    if (rc != SIGFUSE_OK)
        return rc;
    if (reply.n_registers != 1 || reply.reg_addr[0] != addr)
        return fail(c, SIGFUSE_E_REPLY, "REG_READ_REPLY does not answer address 0x%04x", addr);
    *value = reply.reg_value[0];
    return SIGFUSE_OK;
}

int sigfuse_write_reg(sigfuse_client *c, uint16_t addr, uint32_t value)
{
    uint8_t body[SIGFUSE_MAX_BODY];
    struct sigfuse_reply reply;
    size_t n = sigfuse_body_reg_write(&addr, &value, 1, body);
    return command(c, SIGFUSE_FRAME_REG_WRITE, body, n, &reply, NULL);
}

int sigfuse_read_reg_by_name(sigfuse_client *c, const char *name, uint32_t *value)
{
    const struct sigfuse_reg_info *reg = sigfuse_reg_by_name(name);
    if (reg == NULL)
        return fail(c, SIGFUSE_E_ARG, "no register named %s", name);
    if (reg->access == SIGFUSE_ACCESS_WO)
        return fail(c, SIGFUSE_E_ARG, "register %s is write-only", name);
    return sigfuse_read_reg(c, reg->addr, value);
}

int sigfuse_write_reg_by_name(sigfuse_client *c, const char *name, uint32_t value)
{
    const struct sigfuse_reg_info *reg = sigfuse_reg_by_name(name);
    if (reg == NULL)
        return fail(c, SIGFUSE_E_ARG, "no register named %s", name);
    if (reg->access == SIGFUSE_ACCESS_RO)
        return fail(c, SIGFUSE_E_ARG, "register %s is read-only", name);
    if (value > reg->max)
        return fail(c, SIGFUSE_E_ARG, "%u is above the maximum %u of %s", value, reg->max, name);
    return sigfuse_write_reg(c, reg->addr, value);
}

int sigfuse_push(sigfuse_client *c, const struct sigfuse_signal *signals, size_t n,
                 struct sigfuse_result *results, size_t max_results, size_t *n_results)
{
    struct result_sink sink;
    struct sigfuse_reply reply;
    uint8_t body[SIGFUSE_MAX_BODY];
    size_t done = 0;
    int rc = SIGFUSE_OK;
    sink.results = results;
    sink.max = results ? max_results : 0;
    sink.count = 0;
    while (done < n && rc == SIGFUSE_OK) {
        size_t batch = n - done < SIGFUSE_MAX_SIGNALS ? n - done : SIGFUSE_MAX_SIGNALS;
        size_t len = sigfuse_body_push_signals(signals + done, batch, body);
        if (len == 0) {
            rc = fail(c, SIGFUSE_E_ARG, "a signal in %u..%u has a field out of range",
                      (unsigned)done, (unsigned)(done + batch - 1));
            break;
        }
        rc = command(c, SIGFUSE_FRAME_PUSH_SIGNALS, body, len, &reply, &sink);
        done += batch;
    }
    if (n_results)
        *n_results = sink.count;
    return rc;
}

int sigfuse_pop(sigfuse_client *c, size_t count, struct sigfuse_result *results,
                size_t max_results, size_t *n_results)
{
    struct result_sink sink;
    struct sigfuse_reply reply;
    int rc = SIGFUSE_OK;
    sink.results = results;
    sink.max = results ? max_results : 0;
    sink.count = 0;
    while (count && rc == SIGFUSE_OK) {
        uint8_t batch = (uint8_t)(count < 255 ? count : 255);
        rc = command(c, SIGFUSE_FRAME_POP, &batch, 1, &reply, &sink);
        count -= batch;
    }
    if (n_results)
        *n_results = sink.count;
    return rc;
}
