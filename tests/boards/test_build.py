"""``sigfuse build``: real bitstreams for both boards through :func:`sigfuse.build.build`.

One build per board and core per session (``board_build``): each board's default core (the
product core: the pipeline engine on the ULX3S, the serial engine on the iCEBreaker), and the
UART-echo stand-in for the cache mechanics, which a rebuild exercises.  Whether a tool ran
is read from :data:`sigfuse.build.STATS`, never from timing.
"""

import argparse
import json
import shutil
from pathlib import Path

import pytest
from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from sigfuse import build as building
from sigfuse.boards.common import BOARD_NAMES, CoreContext, get_board
from sigfuse.build import (CORES, STATS, BuildError, TimingError, _entry_problem, add_build_command,
                           build)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_report(board: str, board_build) -> None:
    result = board_build(board)
    report = json.loads(result.report_path.read_text())
    assert result.report_path == result.bitstream.parent / "report.json"
    assert report["board"] == board and report["timing_met"] is True
    assert report["core"] == get_board(board).default_core
    sync = [c for c in report["clocks"] if c["domain"] == "sync"]
    assert len(sync) == 1
    assert sync[0]["constraint_mhz"] == pytest.approx(get_board(board).sync_hz / 1e6, rel=1e-3)
    for clock in report["clocks"]:
        assert clock["fmax_mhz"] >= clock["constraint_mhz"] and clock["met"]
    for resource in ("lut", "ff", "bram", "dsp"):
        usage = report["utilization"][resource]
        assert set(usage) == {"used", "available", "percent"}
        assert 0 <= usage["used"] <= usage["available"]
    assert report["utilization"]["lut"]["used"] > 50 and report["utilization"]["ff"]["used"] > 50
    assert report["utilization"]["pll"]["used"] == 1
    if get_board(board).default_core == "product":
        # The whole datapath is there: the fusion engine's multipliers, the queue's payload
        # RAM and the link's buffers (the serial engine on the iCE40 is ~4,900 logic cells, the
        # pipeline on the ECP5 ~20,000 LUTs; the stand-in a few hundred).
        assert report["utilization"]["dsp"]["used"] > 0 and report["utilization"]["bram"]["used"] > 0
        assert report["utilization"]["lut"]["used"] > 4_000
    data = result.bitstream.read_bytes()
    assert report["bitstream"]["bytes"] == len(data) and result.bitstream.suffix == get_board(board).bitstream_suffix
    assert set(report["toolchain"]) >= {"yosys", "amaranth"}
    assert report["cache_key"] == result.cache_key


def test_icebreaker_bitstream_boots_the_simulated_board(board_build, fake_time) -> None:
    from sigfuse.flash import program_icebreaker
    from sigfuse.spiflash_model import SimulatedSpiController, parse_ice40_bitstream
    image = board_build("icebreaker").bitstream.read_bytes()
    assert parse_ice40_bitstream(image).crc_ok
    board = SimulatedSpiController()
    assert program_icebreaker(image, controller_factory=lambda: board, progress=False).cdone


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_second_build_is_a_cache_hit(board: str, board_build, tmp_path: Path) -> None:
    first = board_build(board, "echo")
    runs, hits = STATS.toolchain_runs, STATS.cache_hits
    again = build(board, core="echo", out_dir=tmp_path, progress=False)
    assert again.cached and again.cache_key == first.cache_key
    assert STATS.toolchain_runs == runs and STATS.cache_hits == hits + 1
    assert again.bitstream.read_bytes() == first.bitstream.read_bytes()
    assert json.loads(again.report_path.read_text())["cached"] is True


@pytest.mark.parametrize("board", BOARD_NAMES)
def test_corrupt_cache_entry_is_rebuilt(board: str, board_build, tmp_path: Path) -> None:
    first = board_build(board, "echo")
    cache = tmp_path / "cache"
    entry = cache / board / first.cache_key
    shutil.copytree(first.cache_entry, entry)
    bitstream = entry / first.bitstream.name
    data = bytearray(bitstream.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bitstream.write_bytes(bytes(data))

    runs, events = STATS.toolchain_runs, len(STATS.events)
    rebuilt = build(board, core="echo", cache_dir=cache, out_dir=tmp_path / "out", progress=False)
    assert not rebuilt.cached and STATS.toolchain_runs == runs + 1
    assert STATS.events[events:] == [(board, "cache_corrupt", first.cache_key),
                                     (board, "built", first.cache_key)]
    # The flow is deterministic: the rebuild is the same bitstream, and the entry is sound again.
    assert rebuilt.bitstream.read_bytes() == first.bitstream.read_bytes()
    assert _entry_problem(entry, first.cache_key, first.bitstream.suffix) is None
    assert build(board, core="echo", cache_dir=cache, out_dir=tmp_path / "again",
                 progress=False).cached


def test_concurrent_builds_of_one_design_run_the_tools_once(tmp_path: Path) -> None:
    """Two builds of the same design into an empty cache: the second waits on the key's lock
    and takes the first one's entry (one toolchain run, one cache hit)."""
    import threading
    cache = tmp_path / "cache"
    events = len(STATS.events)
    results: dict[int, object] = {}

    def run(index: int) -> None:
        try:
            results[index] = build("icebreaker", core="echo", cache_dir=cache,
                                   out_dir=tmp_path / f"out{index}", progress=False)
        except BaseException as error:  # reported below, in the test's thread
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, second = results[0], results[1]
    assert not isinstance(first, BaseException), first
    assert not isinstance(second, BaseException), second
    assert sorted([first.cached, second.cached]) == [False, True]
    assert first.cache_key == second.cache_key
    assert first.bitstream.read_bytes() == second.bitstream.read_bytes()
    mine = [kind for board, kind, key in STATS.events[events:] if key == first.cache_key]
    assert sorted(mine) == ["built", "cache_hit"]


def test_every_kind_of_damaged_entry_is_detected(board_build, tmp_path: Path) -> None:
    first = board_build("icebreaker", "echo")
    suffix = first.bitstream.suffix

    def damaged(name: str, change) -> str | None:
        entry = tmp_path / name
        shutil.copytree(first.cache_entry, entry)
        change(entry)
        return _entry_problem(entry, first.cache_key, suffix)

    assert damaged("sound", lambda e: None) is None
    assert "missing" in damaged("no-hash", lambda e: (e / f"sigfuse{suffix}.sha256").unlink())
    assert "missing" in damaged("no-bitstream", lambda e: (e / f"sigfuse{suffix}").unlink())
    assert "does not match" in damaged("truncated", lambda e: (e / f"sigfuse{suffix}").write_bytes(b"\xff"))
    assert "unreadable" in damaged("bad-report", lambda e: (e / "report.json").write_text("{"))
    assert "does not belong" in damaged(
        "other-report", lambda e: (e / "report.json").write_text('{"cache_key": "x"}'))


class _SlowCore(wiring.Component):
    """Sixteen dependent 16-bit add/xor stages between two registers: far below 48 MHz on an
    iCE40 (and Yosys cannot rebalance an add/xor alternation into a tree)."""
    uart_rx: In(1, init=1)
    uart_tx: Out(1, init=1)
    link_error: Out(1)

    def __init__(self, context: CoreContext) -> None:
        super().__init__()

    def elaborate(self, platform) -> Module:
        m = Module()
        words = [Signal(16, name=f"word{i}") for i in range(17)]
        m.d.sync += Cat(*words).eq(Cat(self.uart_rx, Cat(*words)[:-1]))
        value = words[0]
        for index, word in enumerate(words[1:]):
            value = (value + word)[:16] if index % 2 == 0 else value ^ word.rotate_left(index)
        result = Signal(16)
        m.d.sync += [result.eq(value), self.uart_tx.eq(result.xor())]
        return m


def test_failing_timing_is_an_error_with_the_numbers(tmp_path: Path) -> None:
    runs = STATS.toolchain_runs
    with pytest.raises(TimingError) as caught:
        build("icebreaker", core=_SlowCore, cache_dir=tmp_path / "cache", out_dir=tmp_path / "out",
              progress=False, sync_hz=48_000_000)
    assert STATS.toolchain_runs == runs + 1
    error = caught.value
    (failing,) = error.failing
    assert failing["fmax_mhz"] < failing["constraint_mhz"] == pytest.approx(48.0, rel=1e-3)
    assert str(error).startswith(f"icebreaker: timing failed: sync: Fmax {failing['fmax_mhz']:.2f} "
                                 f"MHz < 48.00 MHz required")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["timing_met"] is False and report["clocks"][0]["fmax_mhz"] == failing["fmax_mhz"]
    assert report["core"] == f"{__name__}:_SlowCore"
    assert report["bitstream"]["file"] == "work/sigfuse.bin"
    assert not (tmp_path / "out" / "sigfuse.bin").exists()     # nothing for `sigfuse flash`
    assert not (tmp_path / "cache" / "icebreaker").exists() or not any(
        p for p in (tmp_path / "cache" / "icebreaker").iterdir() if not p.name.startswith("."))


def _build_cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sigfuse")
    add_build_command(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli(board_build, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    product, echo = board_build("icebreaker"), board_build("icebreaker", "echo")
    args = _build_cli(["build", "--board", "icebreaker", "--out", str(tmp_path)])
    assert args.top is None and CORES["echo"] == "sigfuse.boards.common:UartEchoCore"
    assert args.func(args) == 0
    output = capsys.readouterr()
    # The default is the product core (from the session's cache), at the board's clock.
    assert output.out.strip() == str(tmp_path / "sigfuse.bin")
    assert f"Fmax sync {product.report['clocks'][0]['fmax_mhz']:.1f}/" \
           f"{get_board('icebreaker').sync_hz / 1e6:.1f} MHz" in output.err
    assert (tmp_path / "sigfuse.bin").read_bytes() == product.bitstream.read_bytes()
    named = _build_cli(["build", "--board", "icebreaker", "--top", "echo", "--out", str(tmp_path)])
    assert named.func(named) == 0
    assert (tmp_path / "sigfuse.bin").read_bytes() == echo.bitstream.read_bytes()
    assert product.bitstream.read_bytes() != echo.bitstream.read_bytes()
    bad = _build_cli(["build", "--board", "icebreaker", "--top", "sigfuse.boards.common:Nope"])
    with pytest.raises(BuildError, match="has no Nope"):
        bad.func(bad)
    with pytest.raises(SystemExit):
        _build_cli(["build", "--board", "arty"])


def test_progress_lines_without_a_terminal(board_build, tmp_path: Path) -> None:
    import io

    from rich.console import Console
    board_build("ulx3s", "echo")
    out = io.StringIO()
    build("ulx3s", core="echo", out_dir=tmp_path,
          console=Console(file=out, force_terminal=False, width=300))
    (line,) = out.getvalue().splitlines()
    assert line.startswith("sigfuse build: ulx3s: cached bitstream ") and "Fmax sync " in line


def test_system_toolchain_that_is_not_installed(tmp_path: Path) -> None:
    env = {"SIGFUSE_TOOLCHAIN": "system", "PATH": str(tmp_path)}
    runs = STATS.toolchain_runs
    with pytest.raises(BuildError, match=r"yosys \(yosys\) not found: install yosys, or unset "
                                         r"SIGFUSE_TOOLCHAIN"):
        build("ulx3s", core="echo", env=env, cache_dir=tmp_path / "cache",
              out_dir=tmp_path / "out", progress=False)
    assert STATS.toolchain_runs == runs


def test_system_toolchain_versions_key_the_cache(tmp_path: Path) -> None:
    """A system tool is identified by its --version output (or its hash): a different tool is a
    different cache key."""
    from sigfuse.build import toolchain_versions
    tool = tmp_path / "yosys"
    tool.write_text("#!/bin/sh\necho 'Yosys 0.99 (test)'\n")
    tool.chmod(0o755)
    env = {"SIGFUSE_TOOLCHAIN": "system", "PATH": str(tmp_path), "YOSYS": "yosys"}
    assert toolchain_versions([["yosys"]], env)["yosys"] == "Yosys 0.99 (test)"
    tool.write_text("#!/bin/sh\nexit 1\n")
    assert toolchain_versions([["yosys"]], env)["yosys"].startswith(f"{tool} sha256:")
