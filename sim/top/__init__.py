"""cocotb benches of the product core (:class:`sigfuse.gateware.core.SigfuseCore`), the whole top
as a board runs it: link, register file, fusion pipeline and priority queue.

Two tops, each built once by :func:`sigfuse.sim.runner.build` and shared by every test:

* **byte level** (``uart_divisor=0``): the core's byte streams inside :data:`STIMULUS_HARNESS`,
  a Verilog harness that makes its own clock, plays a stimulus file into ``rx_bytes`` (on
  ready: no loss) and writes every ``tx_bytes`` byte to a file, so no Python runs per clock.
  The cocotb test (:func:`sigfuse.sim.top.tests.play_stimulus`) only waits for ``done``.  Any
  design with the byte-stream ports of :class:`~sigfuse.gateware.link.LinkCore` fits in it
  (the link tests' stub datapath does too).
* **bit level** (a small ``uart_divisor``): the core's ``uart_rx``/``uart_tx`` pins, driven and
  decoded by :class:`sigfuse.sim.top.tb.UartHost` -- one await per line transition or sampled
  bit, none per clock.

What the replies must be is the tests' business (``tests/link/model.py`` with the reference
engine): the benches take bytes in and give bytes back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from amaranth.back import verilog

from ...gateware.core import CoreParameters, SigfuseCore
from ..runner import build_and_test

__all__ = ["BARRIER", "BARRIER_CLOCKS", "DUT", "HARNESS", "STIMULUS_HARNESS", "TESTS",
           "HARNESS_BUILD_ARGS", "core_verilog", "public_ports_vlt", "run_stimulus",
           "stimulus_hex"]

#: The cocotb test module of both tops.
TESTS = "sigfuse.sim.top.tests"
#: Module name the byte-level design must have inside the harness, and the harness's name.
DUT = "stim_dut"
HARNESS = "stimulus_top"
#: A stimulus entry that is not a byte: wait until the link has been quiet for
#: :data:`BARRIER_CLOCKS` (every command before it answered), e.g. before a STATS, whose
#: counters are only exact when no frame is arriving.
BARRIER = 0x100
BARRIER_CLOCKS = 4000

#: cocotb's Verilator build makes every signal public (``--public-flat-rw``), which keeps
#: Verilator from optimizing across them; the harness only needs its three outputs seen.
HARNESS_BUILD_ARGS = ("--no-public-flat-rw",)

STIMULUS_HARNESS = f"""\
// Plays a stimulus file into a byte-level link and records every byte the link sends, with no
// Python on the per-clock path (the clock is generated here, the simulator runs with
// --timing; cocotb only waits for `done`).
//
// Stimulus (+STIM=<hex file> +STIM_LEN=<entries>): one 9-bit entry per line.  0x000-0x0ff is a
// byte for rx_bytes (sent as soon as the link is ready: backpressure, no loss); 0x100 is a
// barrier: wait until the link has sent nothing for BARRIER_CLOCKS clocks (far longer than any
// command takes to answer).  Every byte of tx_bytes (always ready) is written to +OUT=<file>,
// one hex byte per line.  When the stimulus is played and the link has been quiet for
// BARRIER_CLOCKS clocks, `done` rises.
`timescale 1ns/1ps
module {HARNESS}(done, played, clocks);
    // Only these are visible to cocotb (the build turns --public-flat-rw off for the rest).
    output reg done /*verilator public_flat_rw*/;
    output reg [31:0] played /*verilator public_flat_rw*/;
    output reg [63:0] clocks /*verilator public_flat_rw*/;
    localparam STIM_MAX = 1 << 22;
    localparam BARRIER_CLOCKS = {BARRIER_CLOCKS};

    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg rst = 1'b1;

    reg [8:0] stim [0:STIM_MAX - 1];
    reg [1023:0] stim_path, out_path;
    integer stim_len, fd;
    reg [31:0] pos;
    reg [31:0] quiet;
    reg waiting;

    wire [8:0] entry = stim[pos[21:0]];
    wire rx_valid = !rst && !waiting && pos < stim_len && !entry[8];
    wire rx_ready;
    wire tx_valid;
    wire [7:0] tx_data;

    {DUT} dut (
        .clk(clk), .rst(rst),
        .rx_bytes__valid(rx_valid), .rx_bytes__ready(rx_ready), .rx_bytes__payload(entry[7:0]),
        .tx_bytes__valid(tx_valid), .tx_bytes__ready(1'b1), .tx_bytes__payload(tx_data),
        .link_error()
    );

    initial begin
        done = 1'b0; played = 0; clocks = 0; pos = 0; quiet = 0; waiting = 1'b0;
        if (!$value$plusargs("STIM=%s", stim_path)) $fatal(1, "no +STIM");
        if (!$value$plusargs("STIM_LEN=%d", stim_len)) $fatal(1, "no +STIM_LEN");
        if (!$value$plusargs("OUT=%s", out_path)) $fatal(1, "no +OUT");
        if (stim_len > STIM_MAX) $fatal(1, "stimulus longer than STIM_MAX");
        $readmemh(stim_path, stim, 0, stim_len - 1);
        fd = $fopen(out_path, "w");
        repeat (4) @(posedge clk);
        rst <= 1'b0;
    end

    always @(posedge clk) begin
        clocks <= clocks + 1;
        if (!rst && !done) begin
            // quiet: clocks since the link last took or sent a byte (or since a barrier began).
            if (tx_valid) $fwrite(fd, "%02x\\n", tx_data);
            if (tx_valid || (rx_valid && rx_ready) || (!waiting && pos < stim_len && entry[8]))
                quiet <= 0;
            else
                quiet <= quiet + 1;
            if (waiting) begin
                if (quiet >= BARRIER_CLOCKS) begin
                    waiting <= 1'b0;
                    pos <= pos + 1;
                end
            end else if (pos < stim_len) begin
                if (entry[8]) begin
                    waiting <= 1'b1;
                end else if (rx_ready) begin
                    pos <= pos + 1;
                    played <= played + 1;
                end
            end else if (quiet >= BARRIER_CLOCKS) begin
                $fclose(fd);
                done <= 1'b1;
            end
        end
    end
endmodule
"""


def stimulus_hex(entries) -> str:
    """The ``+STIM`` file's text for a list of entries (bytes and :data:`BARRIER`)."""
    return "".join(f"{e:03x}\n" for e in entries)


def run_stimulus(verilog_source_fn: Callable[[], str], entries: Sequence[int], run_dir: Path, *,
                 seed: int, budget_clocks: int | None = None) -> tuple[bytes, list[str]]:
    """Play ``entries`` (bytes and :data:`BARRIER`) into the design of ``verilog_source_fn``
    (module :data:`DUT`, byte-stream ports) inside :data:`STIMULUS_HARNESS` on Verilator.

    Returns every byte the design sent and the run's log lines about the stimulus.  Fails
    (:class:`~sigfuse.sim.runner.TestFailure`) when the design stops taking bytes or does not go
    quiet within ``budget_clocks`` (default: generous for any command mix).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    stim, out = run_dir / "stim.hex", run_dir / "out.hex"
    stim.write_text(stimulus_hex(entries))
    barriers = sum(1 for e in entries if e == BARRIER)
    if budget_clocks is None:
        budget_clocks = 64 * len(entries) + 2 * BARRIER_CLOCKS * (barriers + 2) + 100_000
    build_and_test(DUT, verilog_source_fn, TESTS, testcase="play_stimulus", seed=seed,
                   run_dir=run_dir, plusargs=[f"+STIM={stim}", f"+STIM_LEN={len(entries)}",
                                              f"+OUT={out}"],
                   extra_env={"SIGFUSE_STIM_BUDGET_NS": str(budget_clocks * 10),
                              "SIGFUSE_STIM_BYTES": str(len(entries) - barriers)},
                   extra_sources={f"{HARNESS}.v": STIMULUS_HARNESS}, hdl_toplevel=HARNESS,
                   timing=True, optimize=True, waves_on_failure=False,
                   build_args=HARNESS_BUILD_ARGS)
    log = run_dir / "sim.log"
    lines = [line for line in log.read_text().splitlines() if "stimulus:" in line] \
        if log.exists() else []
    return bytes(int(line, 16) for line in out.read_text().split()), lines


def public_ports_vlt(module: str) -> str:
    """A Verilator configuration file that makes the signals of ``module`` (the top: its
    ports) visible to cocotb, for a build with :data:`HARNESS_BUILD_ARGS`."""
    return f'`verilator_config\npublic_flat_rw -module "{module}" -var "*"\n'


def core_verilog(parameters: CoreParameters, name: str) -> tuple[str, int]:
    """Verilog of the product core with ``parameters`` as module ``name``, and the build ID it
    reports.  The two come from one elaboration: the ID hashes the gateware sources, so one
    computed separately could differ when a source changes in between."""
    core = SigfuseCore(parameters)
    return verilog.convert(core, name=name, emit_src=False), core.build_id
