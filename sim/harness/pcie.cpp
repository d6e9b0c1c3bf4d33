// The pcie-sim:// model: sigfuse.gateware.pcie.PcieCore under Verilator, with this harness
// playing the part of the PCIe core around it -- the MMIO window (BAR0) and the DMA engines.
//
//   pcie_model PATH [SPIN_US]
//
// PATH is a file laid out as sigfuse_bar.h says: the 4 KiB register window, then the host
// memory the rings live in (DMA address A at SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET + A).  Both
// sides map it shared.  Every word of the window has one writer; this process polls the host's
// words (control, mailbox, doorbells), moves signal ring entries into `commands`, writes
// `results` into the result ring, and publishes its own words with release stores after the
// data they describe (res_head after the entries, sig_done after res_head).  The clock runs
// here, in C++, only while there is work: no Python per clock.
//
// Idle polling spins for SPIN_US microseconds after the last activity (default 200), then sleeps
// in short naps, so an idle model costs little CPU on a shared machine.
//
// SIGTERM/SIGINT: the model marks the window gone (status GONE, bar_magic all ones, like a
// removed device) and exits 0.  It gets SIGTERM too when the process that started it ends.
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sched.h>
#include <unistd.h>

#include "verilated.h"
#include "Vsigfuse_pcie.h"
#include "sigfuse_bar.h"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

uint64_t now_ns() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

struct Model {
    std::unique_ptr<VerilatedContext> context;
    std::unique_ptr<Vsigfuse_pcie> top;
    uint8_t *file = nullptr;
    size_t file_size = 0;
    uint64_t clocks = 0;

    // --- the window (one writer per word) ----------------------------------------------------
    uint32_t *word(uint32_t offset) { return reinterpret_cast<uint32_t *>(file + offset); }
    uint32_t load(uint32_t offset) { return __atomic_load_n(word(offset), __ATOMIC_ACQUIRE); }
    void store(uint32_t offset, uint32_t value) {
        __atomic_store_n(word(offset), value, __ATOMIC_RELEASE);
    }

    // --- ring state --------------------------------------------------------------------------
    bool enabled = false;
    uint32_t status = 0;
    uint64_t sig_base = 0, res_base = 0;   // file offsets
    uint32_t sig_entries = 0, res_entries = 0;
    uint32_t sig_head = 0, sig_tail = 0, sig_done = 0;
    uint32_t res_head = 0, res_tail = 0;
    uint32_t entry_errors = 0;
    bool command_loaded = false;
    uint32_t served_ticket = 0;

    // A rising edge, then clk back low without an eval: the caller's next eval settles both.
    void edge() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        ++clocks;
    }
    void tick() {
        edge();
        top->eval();
    }

    void publish_clocks() {
        store(SIGFUSE_BAR_CLOCKS_LO, uint32_t(clocks));
        store(SIGFUSE_BAR_CLOCKS_HI, uint32_t(clocks >> 32));
    }

    bool ring_fits(uint64_t base, uint64_t bytes) {
        const uint64_t offset = SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET + base;
        return base % SIGFUSE_BAR_RING_ALIGN == 0 && offset + bytes <= file_size && offset >= base;
    }

    static bool entries_ok(uint32_t n) {
        return n >= SIGFUSE_BAR_RING_ENTRIES_MIN && n <= SIGFUSE_BAR_RING_ENTRIES_MAX &&
               (n & (n - 1)) == 0;
    }

    // Control: ENABLE 0 -> 1 latches both rings' configuration; 1 -> 0 stops them.
    void poll_control() {
        const uint32_t control = load(SIGFUSE_BAR_CONTROL);
        const bool want = control & SIGFUSE_BAR_CONTROL_ENABLE;
        if (want && !enabled && !(status & SIGFUSE_BAR_STATUS_RING_ERROR)) {
            const uint64_t sb = uint64_t(load(SIGFUSE_BAR_SIG_BASE_HI)) << 32 | load(SIGFUSE_BAR_SIG_BASE_LO);
            const uint64_t rb = uint64_t(load(SIGFUSE_BAR_RES_BASE_HI)) << 32 | load(SIGFUSE_BAR_RES_BASE_LO);
            const uint32_t sn = load(SIGFUSE_BAR_SIG_ENTRIES), rn = load(SIGFUSE_BAR_RES_ENTRIES);
            if (entries_ok(sn) && entries_ok(rn) &&
                ring_fits(sb, uint64_t(sn) * SIGFUSE_BAR_SIGNAL_ENTRY_BYTES) &&
                ring_fits(rb, uint64_t(rn) * SIGFUSE_BAR_RESULT_ENTRY_BYTES)) {
                sig_base = SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET + sb;
                res_base = SIGFUSE_BAR_SIM_HOST_MEMORY_OFFSET + rb;
                sig_entries = sn;
                res_entries = rn;
                sig_head = sig_tail = sig_done = res_head = res_tail = 0;
                command_loaded = false;
                store(SIGFUSE_BAR_SIG_TAIL, 0);
                store(SIGFUSE_BAR_SIG_DONE, 0);
                store(SIGFUSE_BAR_RES_HEAD, 0);
                enabled = true;
                status |= SIGFUSE_BAR_STATUS_ENABLED;
            } else {
                status |= SIGFUSE_BAR_STATUS_RING_ERROR;
            }
            store(SIGFUSE_BAR_STATUS, status);
        } else if (!want && (enabled || (status & SIGFUSE_BAR_STATUS_RING_ERROR))) {
            // Let what was fetched finish (its results may still be written), then stop.
            if (enabled) drain();
            enabled = false;
            command_loaded = false;
            top->commands___05Fvalid = 0;
            status &= ~(SIGFUSE_BAR_STATUS_ENABLED | SIGFUSE_BAR_STATUS_RING_ERROR);
            store(SIGFUSE_BAR_STATUS, status);
        }
    }

    // The mailbox: a reg_ctrl whose ticket differs from the one last served is a request.
    bool poll_mailbox() {
        const uint32_t ctrl = load(SIGFUSE_BAR_REG_CTRL);
        const uint32_t ticket = (ctrl >> SIGFUSE_BAR_REG_TICKET_SHIFT) & SIGFUSE_BAR_REG_TICKET_MASK;
        if (ticket == served_ticket) return false;
        const uint32_t op = ctrl & SIGFUSE_BAR_REG_OP_MASK;
        const uint32_t addr = load(SIGFUSE_BAR_REG_ADDR);
        const uint32_t wdata = load(SIGFUSE_BAR_REG_WDATA);
        uint32_t code = SIGFUSE_BAR_REG_STATUS_OK, rdata = 0;
        // The register file takes no access while busy (a snapshot pass, the reset pass), and
        // no write while a parameter set is on its way to the pipeline.
        top->eval();
        while (top->regs___05Fbusy || (op == SIGFUSE_BAR_REG_OP_WRITE && top->regs___05Fparams_pending)) {
            step_rings(false);
        }
        top->regs___05Faddr = addr & 0xFFFF;
        top->regs___05Fw_data = wdata;
        top->eval();
        const bool exists = top->regs___05Fexists && addr <= 0xFFFF;
        if (addr > 0xFFFF) {
            // Beyond the 16-bit register address space: never on the bus (truncated, it
            // would name another register).
            code = SIGFUSE_BAR_REG_STATUS_BAD_ADDRESS;
        } else if (op == SIGFUSE_BAR_REG_OP_READ) {
            if (!exists) code = SIGFUSE_BAR_REG_STATUS_BAD_ADDRESS;
            top->regs___05Fr_stb = 1;   // refused accesses are still strobed: the core counts them
            step_rings(false);
            top->regs___05Fr_stb = 0;
            top->eval();
            rdata = exists ? top->regs___05Fr_data : 0;
        } else if (op == SIGFUSE_BAR_REG_OP_WRITE) {
            if (!exists) code = SIGFUSE_BAR_REG_STATUS_BAD_ADDRESS;
            else if (!top->regs___05Fwritable) code = SIGFUSE_BAR_REG_STATUS_READ_ONLY;
            else if (!top->regs___05Fvalue_ok) code = SIGFUSE_BAR_REG_STATUS_BAD_VALUE;
            top->regs___05Fw_stb = 1;
            step_rings(false);
            top->regs___05Fw_stb = 0;
            top->eval();
            if (ctrl & SIGFUSE_BAR_REG_COMMIT) {
                top->regs___05Fcommit = 1;
                step_rings(false);
                top->regs___05Fcommit = 0;
                top->eval();
            }
        } else {
            code = SIGFUSE_BAR_REG_STATUS_BAD_OP;
        }
        served_ticket = ticket;
        store(SIGFUSE_BAR_REG_RDATA, rdata);
        store(SIGFUSE_BAR_REG_STATUS, code | ticket << SIGFUSE_BAR_REG_TICKET_SHIFT);
        publish_clocks();
        return true;
    }

    // One clock of the DMA engines: present the next signal ring entry (if any and if
    // `fetch`), write a result into the result ring if there is room.  Returns whether a
    // transfer happened.
    bool step_rings(bool fetch) {
        bool moved = false;
        if (enabled && fetch && !command_loaded && sig_tail != sig_head) {
            const uint8_t *entry = file + sig_base +
                size_t(sig_tail & (sig_entries - 1)) * SIGFUSE_BAR_SIGNAL_ENTRY_BYTES;
            std::memcpy(&top->commands___05Fpayload[0], entry, SIGFUSE_BAR_SIGNAL_ENTRY_BYTES);
            command_loaded = true;
        }
        top->commands___05Fvalid = command_loaded;
        bool room = enabled && res_head - res_tail < res_entries;
        if (enabled && !room) {
            res_tail = load(SIGFUSE_BAR_RES_TAIL);
            room = res_head - res_tail < res_entries;
        }
        top->results___05Fready = room;
        top->eval();
        // Handshakes are decided by the values just before the rising edge.
        const bool accepted = top->commands___05Fvalid && top->commands___05Fready;
        if (top->entry_error) ++entry_errors;
        if (top->results___05Fvalid && room) {
            uint8_t *entry = file + res_base +
                size_t(res_head & (res_entries - 1)) * SIGFUSE_BAR_RESULT_ENTRY_BYTES;
            std::memcpy(entry, &top->results___05Fpayload[0], SIGFUSE_BAR_RESULT_ENTRY_BYTES);
            ++res_head;
            moved = true;
        }
        edge();
        if (accepted) {
            ++sig_tail;
            command_loaded = false;
            moved = true;
        }
        return moved;
    }

    void publish_rings() {
        store(SIGFUSE_BAR_RES_HEAD, res_head);   // after the entries it covers
        store(SIGFUSE_BAR_SIG_TAIL, sig_tail);
        store(SIGFUSE_BAR_ENTRY_ERRORS, entry_errors);
        if (entry_errors) status |= SIGFUSE_BAR_STATUS_ENTRY_ERROR;
        if (top->fault) status |= SIGFUSE_BAR_STATUS_FAULT;
        store(SIGFUSE_BAR_STATUS, status);
    }

    // Run the clock while there is work: entries to fetch, or anything in flight.  Stops when
    // everything fetched is done, or when the result ring is full (the device stalls until the
    // host frees slots), or after a slice of clocks (to look at the mailbox again).
    bool run_rings() {
        if (!enabled) return false;
        bool any = false;
        uint32_t since_publish = 0;
        for (int slice = 0; slice < 8192; ++slice) {
            if (!command_loaded && sig_tail == sig_head) sig_head = load(SIGFUSE_BAR_SIG_HEAD);
            const bool more = command_loaded || sig_tail != sig_head;
            top->eval();
            if (!more && top->idle && !top->results___05Fvalid) break;
            const bool moved = step_rings(true);
            any |= moved;
            if (moved) ++since_publish;
            if (since_publish >= 64) {
                publish_rings();
                since_publish = 0;
            }
            if (!moved && top->results___05Fvalid && res_head - res_tail >= res_entries) break;
        }
        publish_rings();
        top->commands___05Fvalid = command_loaded;
        top->eval();
        if (!command_loaded && top->idle && !top->results___05Fvalid && sig_done != sig_tail) {
            sig_done = sig_tail;
            store(SIGFUSE_BAR_SIG_DONE, sig_done);   // after res_head
            any = true;
        }
        if (any) publish_clocks();
        return any;
    }

    // Finish what was fetched (results ring permitting, for a bounded time).
    void drain() {
        for (int i = 0; i < 1000000; ++i) {
            top->commands___05Fvalid = command_loaded;
            top->eval();
            if (top->idle && !top->results___05Fvalid) break;
            const bool moved = step_rings(false);
            if (!moved && top->results___05Fvalid && res_head - res_tail >= res_entries) break;
        }
        publish_rings();
    }
};

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s PATH [SPIN_US]\n", argv[0]);
        return 2;
    }
    const uint64_t spin_ns = (argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 200) * 1000u;
    Model model;
    const int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        std::fprintf(stderr, "pcie model: cannot open %s: %s\n", argv[1], std::strerror(errno));
        return 2;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || size_t(st.st_size) < SIGFUSE_BAR_SIZE) {
        std::fprintf(stderr, "pcie model: %s is smaller than the window\n", argv[1]);
        return 2;
    }
    model.file_size = size_t(st.st_size);
    void *mapped = mmap(nullptr, model.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (mapped == MAP_FAILED) {
        std::fprintf(stderr, "pcie model: mmap failed: %s\n", std::strerror(errno));
        return 2;
    }
    close(fd);
    model.file = static_cast<uint8_t *>(mapped);
    std::signal(SIGTERM, on_signal);
    std::signal(SIGINT, on_signal);
    // A model outlives nobody: when the process (thread) that started it ends, it is told to
    // stop, like a SIGTERM (no idle models left behind by a crashed test run).
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    model.context = std::make_unique<VerilatedContext>();
    model.top = std::make_unique<Vsigfuse_pcie>(model.context.get());
    auto &top = model.top;
    top->clk = 0;
    top->rst = 1;
    top->commands___05Fvalid = 0;
    top->results___05Fready = 0;
    top->regs___05Fr_stb = 0;
    top->regs___05Fw_stb = 0;
    top->regs___05Fcommit = 0;
    top->regs___05Fsnapshot = 0;
    top->eval();
    for (int i = 0; i < 4; ++i) model.tick();
    top->rst = 0;
    top->eval();
    // The register file's reset pass.
    while (!top->idle) model.tick();

    // Device words: start from a clean window (the host may have left its own words).
    model.served_ticket = (model.load(SIGFUSE_BAR_REG_CTRL) >> SIGFUSE_BAR_REG_TICKET_SHIFT) &
                          SIGFUSE_BAR_REG_TICKET_MASK;
    model.store(SIGFUSE_BAR_REG_STATUS, model.served_ticket << SIGFUSE_BAR_REG_TICKET_SHIFT);
    model.store(SIGFUSE_BAR_STATUS, 0);
    model.store(SIGFUSE_BAR_SIG_TAIL, 0);
    model.store(SIGFUSE_BAR_SIG_DONE, 0);
    model.store(SIGFUSE_BAR_RES_HEAD, 0);
    model.store(SIGFUSE_BAR_ENTRY_ERRORS, 0);
    model.publish_clocks();
    model.store(SIGFUSE_BAR_MODEL_PID, uint32_t(getpid()));
    model.store(SIGFUSE_BAR_BAR_VERSION, SIGFUSE_BAR_VERSION);
    model.store(SIGFUSE_BAR_BAR_MAGIC, SIGFUSE_BAR_MAGIC);   // last: the window is up

    uint32_t heartbeat = 0;
    uint64_t last_activity = now_ns();
    while (!stop_requested) {
        model.store(SIGFUSE_BAR_HEARTBEAT, ++heartbeat);
        model.poll_control();
        bool active = model.poll_mailbox();
        active |= model.run_rings();
        if (active) {
            last_activity = now_ns();
            continue;
        }
        const uint64_t idle_ns = now_ns() - last_activity;
        if (idle_ns < spin_ns) {
            sched_yield();   // a shared machine: let the host (or anyone) run on this core
        } else {
            // Naps grow with the idle time: 20 us while recently active, 1 ms after a second.
            timespec nap{0, idle_ns > 1000000000u ? 1000000 : 20000};
            nanosleep(&nap, nullptr);
        }
    }
    model.store(SIGFUSE_BAR_STATUS, model.status | SIGFUSE_BAR_STATUS_GONE);
    model.store(SIGFUSE_BAR_BAR_MAGIC, 0xFFFFFFFFu);
    msync(model.file, SIGFUSE_BAR_SIZE, MS_SYNC);
    top->final();
    munmap(model.file, model.file_size);
    return 0;
}
