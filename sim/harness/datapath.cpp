// Verilator harness of sigfuse.gateware.datapath.FusionDatapath for the `verilator` trace backend.
//
// The clock is driven here, in C++: Python sends whole batches of commands and reads whole
// batches of results, so no Python runs per clock.  Protocol on stdin/stdout (little-endian):
//
//   hello (harness -> host, once):  u32 magic 'SFDP', u32 command bytes, u32 result bytes,
//                                   u32 config bytes
//   'B' u32 n, n x command          run the commands; the batch ends when every command was
//                                   accepted and everything is drained (idle, result FIFO empty)
//   'C' config                      write one parameter set through the config stream and wait
//                                   for it to take effect (mask table refresh included)
//   'Q' (or end of input)           exit
//
// Every 'B' and 'C' is answered by: u32 count, u32 fault, u64 clocks (total so far),
// then count x result record.  Records are the packed Amaranth layouts, padded to 32-bit words
// exactly as Verilator stores a wide port, so they are copied, never re-encoded.  (Verilator
// escapes the double underscore of Amaranth's port names as ___05F.)
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "verilated.h"
#include "Vfusion_datapath.h"

namespace {

bool read_exact(void *buffer, size_t size) {
    return fread(buffer, 1, size, stdin) == size;
}

void write_exact(const void *buffer, size_t size) {
    if (size && fwrite(buffer, 1, size, stdout) != size) {
        std::exit(3);
    }
}

template <typename T>
void put(const T &value) { write_exact(&value, sizeof(value)); }

}  // namespace

int main(int argc, char **argv) {
    auto context = std::make_unique<VerilatedContext>();
    context->commandArgs(argc, argv);
    auto top = std::make_unique<Vfusion_datapath>(context.get());

    const uint32_t command_bytes = sizeof(top->commands___05Fpayload);
    const uint32_t result_bytes = sizeof(top->results___05Fpayload);
    const uint32_t config_bytes = sizeof(top->config___05Fpayload);
    uint64_t clocks = 0;

    // A rising edge, then clk back low without an eval: the caller's next eval (after it has
    // set the inputs for the next clock) settles both, so a clock costs two evals, not three.
    auto edge = [&]() {
        top->clk = 1;
        top->eval();
        top->clk = 0;
        ++clocks;
    };

    top->clk = 0;
    top->rst = 1;
    top->commands___05Fvalid = 0;
    top->config___05Fvalid = 0;
    top->results___05Fready = 1;
    top->eval();
    for (int i = 0; i < 4; ++i) {
        edge();
        top->eval();
    }
    top->rst = 0;
    top->eval();

    put(uint32_t{0x50444653});  // "SFDP"
    put(command_bytes);
    put(result_bytes);
    put(config_bytes);
    fflush(stdout);

    std::vector<uint8_t> commands;
    std::vector<uint8_t> results;
    for (;;) {
        int op = fgetc(stdin);
        if (op == EOF || op == 'Q') break;
        results.clear();
        if (op == 'B') {
            uint32_t n = 0;
            if (!read_exact(&n, sizeof(n))) return 2;
            commands.resize(size_t(n) * command_bytes);
            if (!read_exact(commands.data(), commands.size())) return 2;
            size_t next = 0;
            bool loaded = false;
            for (;;) {
                if (next < n && !loaded) {
                    std::memcpy(&top->commands___05Fpayload[0], &commands[next * command_bytes],
                                command_bytes);
                    top->commands___05Fvalid = 1;
                    loaded = true;
                } else if (next >= n) {
                    top->commands___05Fvalid = 0;
                }
                top->eval();
                // Handshakes are decided by the values just before the rising edge.
                const bool accepted = top->commands___05Fvalid && top->commands___05Fready;
                if (top->results___05Fvalid) {
                    const uint8_t *record =
                        reinterpret_cast<const uint8_t *>(&top->results___05Fpayload[0]);
                    results.insert(results.end(), record, record + result_bytes);
                } else if (next >= n && top->idle) {
                    break;
                }
                edge();
                if (accepted) {
                    ++next;
                    loaded = false;
                }
            }
        } else if (op == 'C') {
            if (!read_exact(&top->config___05Fpayload[0], config_bytes)) return 2;
            top->config___05Fvalid = 1;
            top->eval();
            while (!top->config___05Fready) {
                edge();
                top->eval();
            }
            edge();
            top->config___05Fvalid = 0;
            top->eval();
            while (top->refreshing) {
                edge();
                top->eval();
            }
        } else {
            std::fprintf(stderr, "datapath harness: unknown request %d\n", op);
            return 2;
        }
        put(uint32_t(results.size() / result_bytes));
        put(uint32_t(top->fault));
        put(clocks);
        write_exact(results.data(), results.size());
        fflush(stdout);
    }
    top->final();
    return 0;
}
