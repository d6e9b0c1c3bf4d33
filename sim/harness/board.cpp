// Verilator harness of the virtual board: sigfuse.gateware.core.SigfuseCore with a byte-stream
// link (uart_divisor 0) in the `sigfuse_board` wrapper of sigfuse.sim.board (reset tied off:
// registers start at their reset values), its clock driven here and its byte streams bridged to one TCP client
// on loopback -- the pattern of LiteX's serial2tcp.  No Python runs per clock.
//
//   board [--listen HOST:PORT] [--allow-remote] [--poll-clocks N] [--idle-clocks N]
//         [--baud B --clk-hz F]
//
// After listening it prints exactly one line, `socket://HOST:PORT`, to stdout (port 0 picks a
// free port).  One client at a time: further connections wait in the listen backlog until the
// current client goes, and the board keeps its state across clients, like a real board whose
// host reconnects.  Bytes received from the client enter `rx_bytes` whenever it is ready (the
// core's own backpressure, then TCP's, pace the sender: nothing is ever lost here); `tx_bytes`
// is always ready and its bytes go to the client (or nowhere, like a UART with no listener).
//
// Pacing (--baud B with --clk-hz F, the core's clock): the link runs at the line rate of an
// 8N1 UART at B baud *in simulated time* -- a byte enters `rx_bytes` at most once per
// F * 10 / B clocks, and `tx_bytes` is ready at most once per F * 10 / B clocks (a UART
// transmitter busy with the previous byte), both directions independently.  The host still
// sends as fast as TCP lets it; the harness holds its bytes back.  Link benchmarks measure in
// simulated clocks (uptime_clocks, or the summary), since the simulation runs at roughly real
// time at best.  A byte the core is not ready for when its slot comes is kept (never lost
// here); one it leaves waiting for a whole byte time or more counts as `held` in the summary:
// a real UART would have overrun.
//
// The socket is polled without blocking every --poll-clocks clocks while input is waiting,
// every 64 clocks otherwise, and as soon as a reply has left the core (its transmitter quiet
// for 16 clocks), so a round trip costs clocks, not slices.  When the board is idle --
// nothing waiting to enter it and nothing came out for --idle-clocks clocks -- it sleeps in
// ppoll() until the socket has something, instead of spinning, so an idle virtual board costs
// no CPU.  Simulated time therefore stops while idle:
// `uptime_clocks` counts simulated clocks, not wall time at clk_hz.
//
// SIGINT/SIGTERM: close the sockets, print a one-line summary to stderr (clocks, bytes in and
// out, simulated clocks per second while running, the pacing), exit 0.
//
// (Verilator escapes the double underscore of Amaranth's port names as ___05F.)
#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <string>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include "verilated.h"
#include "Vsigfuse_board.h"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

[[noreturn]] void fail(const std::string &message) {
    std::fprintf(stderr, "sigfuse board: %s\n", message.c_str());
    std::exit(2);
}

struct Options {
    std::string host = "127.0.0.1";
    std::string port = "0";
    bool allow_remote = false;
    // A slice of clocks between two looks at the socket: a poll() costs about as much as a
    // few dozen clocks, so a slice of a few hundred keeps it under a few percent, while a
    // command's first byte still waits at most one slice.
    uint64_t poll_clocks = 512;
    // With a client but no input waiting, slices are this short: a command that arrives while
    // the board waits (not yet idle) is seen within this many clocks, not a whole slice.
    uint64_t quiet_poll_clocks = 64;
    // A slice ends once bytes came out of the core and its transmitter then stayed quiet this
    // long (a reply is complete): the host gets it at once, not at the end of the slice.
    uint64_t flush_quiet_clocks = 16;
    // Silence (in clocks) after which the board counts as idle.  Far longer than anything the
    // core does unprompted (a stats pass is ~65 clocks, a mask-table refresh ~3000).
    uint64_t idle_clocks = 20000;
    // An idle board sleeps in ppoll() until the socket has something (or a signal comes);
    // the timeout only bounds the sleep, it runs no clocks.
    int idle_timeout_ms = 1000;
    // Line-rate pacing: 0 = none (bytes enter whenever the core is ready).
    uint64_t baud = 0;
    uint64_t clk_hz = 0;
};

Options parse_options(int argc, char **argv) {
    Options options;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) fail("option " + arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--listen") {
            std::string listen = value();
            size_t colon = listen.rfind(':');
            if (colon == std::string::npos) fail("--listen wants HOST:PORT, not " + listen);
            options.host = listen.substr(0, colon);
            options.port = listen.substr(colon + 1);
            if (options.host.size() >= 2 && options.host.front() == '[' && options.host.back() == ']')
                options.host = options.host.substr(1, options.host.size() - 2);
            const std::string &port = options.port;
            if (port.empty() || port.size() > 5 ||
                port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
                fail("--listen wants a port number 0..65535, not " + port);
        } else if (arg == "--allow-remote") {
            options.allow_remote = true;
        } else if (arg == "--poll-clocks") {
            options.poll_clocks = std::max<uint64_t>(1, std::strtoull(value().c_str(), nullptr, 10));
        } else if (arg == "--idle-clocks") {
            options.idle_clocks = std::strtoull(value().c_str(), nullptr, 10);
        } else if (arg == "--baud") {
            options.baud = std::strtoull(value().c_str(), nullptr, 10);
        } else if (arg == "--clk-hz") {
            options.clk_hz = std::strtoull(value().c_str(), nullptr, 10);
        } else if (arg.rfind("+verilator+", 0) == 0) {
            // Verilator's own runtime options.
        } else {
            fail("unknown option " + arg);
        }
    }
    if (options.baud && !options.clk_hz) fail("--baud needs --clk-hz (the core's clock)");
    if (options.baud && options.clk_hz * 10 < options.baud)
        fail("--baud above a tenth of --clk-hz: less than one clock per bit");
    return options;
}

bool is_loopback(const sockaddr *address) {
    if (address->sa_family == AF_INET) {
        auto *in = reinterpret_cast<const sockaddr_in *>(address);
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (address->sa_family == AF_INET6) {
        auto *in6 = reinterpret_cast<const sockaddr_in6 *>(address);
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

// Listen on host:port; returns the socket and writes the URL to `url`.
int open_listener(const Options &options, std::string &url) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo *found = nullptr;
    int status = getaddrinfo(options.host.c_str(), options.port.c_str(), &hints, &found);
    if (status != 0) fail("cannot resolve " + options.host + ": " + gai_strerror(status));
    std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(found, freeaddrinfo);
    if (!options.allow_remote && !is_loopback(found->ai_addr))
        fail("refusing to listen on " + options.host +
             ": not a loopback address (the link has no authentication; --allow-remote to insist)");
    int fd = socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    found->ai_protocol);
    if (fd < 0) fail(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, found->ai_addr, found->ai_addrlen) != 0)
        fail("cannot listen on " + options.host + ":" + options.port + ": " + std::strerror(errno));
    if (listen(fd, 4) != 0) fail(std::string("listen: ") + std::strerror(errno));
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr *>(&bound), &length);
    char text[INET6_ADDRSTRLEN] = {0};
    unsigned port = 0;
    if (bound.ss_family == AF_INET6) {
        auto *in6 = reinterpret_cast<sockaddr_in6 *>(&bound);
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
        port = ntohs(in6->sin6_port);
        url = std::string("socket://[") + text + "]:" + std::to_string(port);
    } else {
        auto *in = reinterpret_cast<sockaddr_in *>(&bound);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
        port = ntohs(in->sin_port);
        url = std::string("socket://") + text + ":" + std::to_string(port);
    }
    return fd;
}

// CPU time of this process: on a shared machine, clocks per CPU second say what the model
// costs, while clocks per wall second also say how much of a core it got.
double cpu_seconds() {
    timespec now{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
    return double(now.tv_sec) + double(now.tv_nsec) * 1e-9;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char **argv) {
    // Taken before anything else: a host killed just after reading the URL would otherwise
    // have reparented us already, and we would watch the wrong parent forever.
    const pid_t parent = getppid();
    Options options = parse_options(argc, argv);

    struct sigaction action{};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART: a blocking poll() returns EINTR at once
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
    // SIGINT/SIGTERM are blocked except inside ppoll(), which unblocks them atomically: a stop
    // request can neither be missed just before a long sleep nor interrupt a clock.
    sigset_t stop_signals, poll_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop_signals, &poll_mask);
    sigdelset(&poll_mask, SIGINT);
    sigdelset(&poll_mask, SIGTERM);
    std::signal(SIGPIPE, SIG_IGN);  // a vanished client is an EPIPE, handled below

    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vsigfuse_board>(context.get());

    uint64_t clocks = 0;
    // A rising edge, then clk back low without an eval: the next eval (after the inputs for
    // the next clock are set) settles both, so a clock costs two evals, not three.
    auto edge = [&]() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        ++clocks;
    };

    // No reset sequence: the model's reset is tied off and every register starts at its
    // reset value (see sigfuse.sim.board).
    top->clk = 0;
    top->rx_bytes___05Fvalid = 0;
    top->tx_bytes___05Fready = 1;
    top->eval();

    std::string url;
    int listener = open_listener(options, url);
    std::printf("%s\n", url.c_str());
    std::fflush(stdout);

    int client = -1;
    // Bytes from the client not yet taken by the core.  Bounded, so that TCP's window, not
    // this buffer, holds a sender that runs ahead of the core.
    constexpr size_t rx_limit = 64 * 1024;
    // Bytes for the client not yet sent.  A client that stops reading stops the clock once
    // this much is pending (the core never sees backpressure, as with a real UART).
    constexpr size_t tx_limit = 1024 * 1024;
    std::vector<uint8_t> rx(rx_limit), tx;
    size_t rx_head = 0, rx_tail = 0, tx_head = 0;
    tx.reserve(64 * 1024);
    uint64_t bytes_in = 0, bytes_out = 0, bytes_unsent = 0, link_errors = 0, connections = 0;
    uint64_t last_activity = clocks;
    double running_seconds = 0;

    // Pacing, in units of 1/baud clock so that a byte time of clk_hz * 10 / baud clocks needs
    // no rounding: a slot is open at clock c when c * baud >= next.  A byte that goes at the
    // first clock of its slot keeps the exact (fractional) cadence; one that goes later (no
    // byte waiting, or the core not ready) starts its byte time there.
    using wide = unsigned __int128;
    const bool paced = options.baud != 0;
    const wide byte_time = wide(options.clk_hz) * 10;
    wide next_rx = 0, next_tx = 0;
    auto slot_open = [&](wide next) { return !paced || wide(clocks) * options.baud >= next; };
    auto advance = [&](wide next) {
        const wide now = wide(clocks) * options.baud;
        return (now < next + options.baud ? next : now) + byte_time;
    };
    // Paced: rx bytes the core left waiting for a byte time or more (a real UART: overrun).
    uint64_t bytes_held = 0, held_since = 0;
    bool holding = false;
    const auto started = std::chrono::steady_clock::now();

    auto drop_client = [&]() {
        if (client >= 0) close(client);
        client = -1;
        bytes_unsent += tx.size() - tx_head;
        tx.clear();
        tx_head = 0;
    };

    // Move bytes between the socket and the buffers without blocking.
    auto service = [&](int timeout_ms) {
        pollfd fds[2];
        nfds_t count = 0;
        const bool want_rx = client >= 0 && rx_tail - rx_head < rx_limit;
        const bool want_tx = client >= 0 && tx_head < tx.size();
        if (client >= 0) {
            fds[count++] = {client, short((want_rx ? POLLIN : 0) | (want_tx ? POLLOUT : 0)), 0};
        } else {
            fds[count++] = {listener, POLLIN, 0};
        }
        timespec timeout{timeout_ms / 1000, (timeout_ms % 1000) * 1000000L};
        if (ppoll(fds, count, &timeout, &poll_mask) <= 0) return;
        if (client < 0) {
            if (fds[0].revents & POLLIN) {
                int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    client = fd;
                    ++connections;
                }
            }
            return;
        }
        const short events = fds[0].revents;
        if (want_rx && (events & (POLLIN | POLLHUP | POLLERR))) {
            if (rx_head > 0) {  // keep the pending bytes at the front: one recv fills the rest
                std::memmove(rx.data(), rx.data() + rx_head, rx_tail - rx_head);
                rx_tail -= rx_head;
                rx_head = 0;
            }
            ssize_t got = recv(client, rx.data() + rx_tail, rx_limit - rx_tail, 0);
            if (got > 0) {
                rx_tail += size_t(got);
                bytes_in += uint64_t(got);
            } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
                drop_client();  // the host went away; its bytes already received still count
                return;
            }
        }
        if (want_tx && (events & (POLLOUT | POLLERR))) {
            ssize_t sent = send(client, tx.data() + tx_head, tx.size() - tx_head, MSG_NOSIGNAL);
            if (sent > 0) {
                tx_head += size_t(sent);
                bytes_out += uint64_t(sent);
                if (tx_head == tx.size()) {
                    tx.clear();
                    tx_head = 0;
                }
            } else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                drop_client();
                return;
            }
        } else if (!want_rx && (events & (POLLHUP | POLLERR))) {
            drop_client();
        }
    };

    // A virtual board outlives nobody: when the process that started it is gone (it was
    // reparented), it stops as on SIGTERM -- no idle boards left behind by a crashed host.
    // Checked while idle, so it costs nothing per clock.  (Not PR_SET_PDEATHSIG: that fires
    // when the starting *thread* ends, and hosts start boards from worker threads.)  `parent`
    // is read at the top of main().

    while (!stop_requested) {
        const bool input_pending = rx_head < rx_tail;
        const bool idle = !input_pending && clocks - last_activity >= options.idle_clocks;
        const bool tx_full = tx.size() - tx_head >= tx_limit;
        if (idle || tx_full) {
            // Nothing to do, or a client that does not read: sleep until the socket has
            // something.  No clock runs meanwhile: after idle_clocks of silence with no input
            // the core has nothing left to do, and simulated time simply stops.
            if (getppid() != parent) break;
            service(options.idle_timeout_ms);
            continue;
        }
        const auto slice_start = std::chrono::steady_clock::now();
        const uint64_t slice = input_pending || client < 0
                                   ? options.poll_clocks
                                   : std::min(options.poll_clocks, options.quiet_poll_clocks);
        bool sent_some = false;
        uint64_t tx_quiet = 0;
        for (uint64_t i = 0; i < slice; ++i) {
            const bool offer = rx_head < rx_tail && slot_open(next_rx);
            const bool tx_ready = slot_open(next_tx);
            top->rx_bytes___05Fvalid = offer;
            if (offer) top->rx_bytes___05Fpayload = rx[rx_head];
            top->tx_bytes___05Fready = tx_ready;
            top->eval();
            // Handshakes are decided by the values just before the rising edge.
            const bool accepted = offer && top->rx_bytes___05Fready;
            if (top->tx_bytes___05Fvalid) {
                // A byte waiting for its transmit slot is activity too: not idle yet.
                last_activity = clocks;
                tx_quiet = 0;
                if (tx_ready) {
                    sent_some = true;
                    if (client >= 0) tx.push_back(uint8_t(top->tx_bytes___05Fpayload));
                    else ++bytes_unsent;
                    if (paced) next_tx = advance(next_tx);
                }
            } else {
                ++tx_quiet;
            }
            if (paced && offer && !accepted && !holding) {
                holding = true;
                held_since = clocks;
            }
            link_errors += top->link_error;
            if (accepted && paced) {
                next_rx = advance(next_rx);
                // A UART receiver holds one byte while the next arrives: refused for a whole
                // byte time, it would have been overwritten.
                if (holding && wide(clocks - held_since) * options.baud >= byte_time) ++bytes_held;
                holding = false;
            }
            edge();
            if (accepted) {
                ++rx_head;
                last_activity = clocks;
            }
            if (sent_some && tx_quiet >= options.flush_quiet_clocks) break;
        }
        running_seconds += seconds_since(slice_start);
        service(0);
    }

    drop_client();
    close(listener);
    top->final();
    const double wall = seconds_since(started);
    std::string pacing = "unpaced";
    if (paced) {
        char text[160];
        std::snprintf(text, sizeof(text), "paced at %llu baud (%.2f clocks per byte, %llu bytes held)",
                      (unsigned long long)options.baud,
                      double(options.clk_hz) * 10.0 / double(options.baud),
                      (unsigned long long)bytes_held);
        pacing = text;
    }
    const double cpu = cpu_seconds();
    std::fprintf(stderr,
                 "sigfuse board: stopped after %llu clocks, %llu bytes in, %llu bytes out"
                 " (%llu unsent), %llu link errors, %llu connections, %.0f clocks/s simulated"
                 " while running (%.3f s of %.3f s), %.0f clocks per CPU second, %s\n",
                 (unsigned long long)clocks, (unsigned long long)bytes_in,
                 (unsigned long long)bytes_out, (unsigned long long)bytes_unsent,
                 (unsigned long long)link_errors, (unsigned long long)connections,
                 running_seconds > 0 ? double(clocks) / running_seconds : 0.0, running_seconds,
                 wall, cpu > 0 ? double(clocks) / cpu : 0.0, pacing.c_str());
    return 0;
}
