// Fault-campaign harness: plays a stimulus file into the byte-level link and records every
// byte the link sends, with no Python on the per-clock path (the clock is generated here,
// the simulator runs with --timing; cocotb only waits for `done`).
//
// Stimulus (+STIM=<hex file> +STIM_LEN=<entries>): one 9-bit entry per line.  0x000-0x0ff is a
// byte for rx_bytes (sent as soon as the link is ready: backpressure, no loss); 0x100 is a
// barrier: wait until the link has sent nothing for BARRIER_CLOCKS clocks (far longer than any
// command takes to answer).  Every byte of
// tx_bytes (always ready) is written to +OUT=<file>, one hex byte per line.  When the stimulus
// is played and the link has been quiet for BARRIER_CLOCKS clocks, `done` rises.
`timescale 1ns/1ps
module campaign_top(output reg done, output reg [31:0] played, output reg [63:0] clocks);
    localparam STIM_MAX = 1 << 21;
    localparam BARRIER_CLOCKS = 4000;

    reg clk = 1'b0;
    always #5 clk = ~clk;
    reg rst = 1'b1;

    reg [8:0] stim [0:STIM_MAX - 1];
    reg [1023:0] stim_path, out_path;
    integer stim_len, fd;
    reg [31:0] pos;
    reg [31:0] quiet;
    reg waiting;

    wire [8:0] entry = stim[pos[20:0]];
    wire rx_valid = !rst && !waiting && pos < stim_len && !entry[8];
    wire rx_ready;
    wire tx_valid;
    wire [7:0] tx_data;

    link_harness dut (
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
        $readmemh(stim_path, stim, 0, stim_len - 1);
        fd = $fopen(out_path, "w");
        repeat (4) @(posedge clk);
        rst <= 1'b0;
    end

    always @(posedge clk) begin
        clocks <= clocks + 1;
        if (!rst && !done) begin
            // quiet: clocks since the link last took or sent a byte (or since a barrier began).
            if (tx_valid) $fwrite(fd, "%02x\n", tx_data);
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
