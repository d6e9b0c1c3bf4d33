"""UartTransport without hardware: over ``loop://`` and over a Python model of the board.

``ModelPort`` is a pyserial-like port whose far end is :class:`~link.model.LinkModel` (the
link's behaviour per docs/link.md, with the stub datapath), with hooks that lose, corrupt or
delay chosen frames in either direction.  That makes every recovery case of
:mod:`sigfuse.link.uart` deterministic and fast: lost command, lost terminal reply (DUPLICATE),
lost or corrupted RESULTS, late replies, loss with two commands in flight, a vanishing device.
"""

from __future__ import annotations

import random

import pytest
import serial

from sigfuse import protocol as p
from sigfuse.contract import Pop, Signal
from sigfuse.link import DeviceGone, LinkError, LinkTimeout
from sigfuse.link.board import Board
from sigfuse.link.uart import MAX_OUTSTANDING, CommandError, ResultsLost, UartTransport
from sigfuse.protocol import FrameType, ResultKind
from sigfuse.regmap import BY_NAME

from .model import LinkModel
from .stub import StubModel

TIMEOUT = 0.05


class ModelPort:
    """The host's end of a byte link to a :class:`LinkModel`.

    Commands written are executed when the host next reads (so ``max_inbox`` is how many
    commands the host had in flight).  ``command_action(frame, index)`` and
    ``board_action(frame, index)`` return ``"pass"``, ``"drop"``, ``"corrupt"`` or ``"hold"``
    (held board frames are delivered after the next command arrives).
    """

    def __init__(self, *, command_action=None, board_action=None) -> None:
        self.model = LinkModel()
        self.command_action = command_action or (lambda frame, index: "pass")
        self.board_action = board_action or (lambda frame, index: "pass")
        self.deframer = p.Deframer()
        self.inbox: list[p.Frame] = []
        self.max_inbox = 0
        self.out = bytearray()
        self.held: list[bytes] = []
        self.commands = 0
        self.board_frames = 0
        self.timeout = None
        self.fail_reads = False

    def write(self, data: bytes) -> int:
        for frame in self.deframer.feed(bytes(data)):
            action = self.command_action(frame, self.commands)
            self.commands += 1
            if action == "drop":
                continue
            if self.held:
                self.out += b"".join(self.held)
                self.held.clear()
            self.inbox.append(frame)
            self.max_inbox = max(self.max_inbox, len(self.inbox))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if self.fail_reads:
            raise serial.SerialException("device reports readiness to read but returned no data")
        for frame in self.inbox:
            for reply in self.model.feed(frame.encode()):
                action = self.board_action(reply, self.board_frames)
                self.board_frames += 1
                wire = reply.encode()
                if action == "drop":
                    continue
                if action == "corrupt":
                    wire = bytes([wire[0], wire[1] ^ 0x40]) + wire[2:]
                if action == "hold":
                    self.held.append(wire)
                    continue
                self.out += wire
        self.inbox.clear()
        data = bytes(self.out[:size])
        del self.out[:size]
        return data

    def reset_input_buffer(self) -> None:
        self.out.clear()

    def close(self) -> None:
        pass


def _signals(count: int, seed: int = 1) -> list[Signal]:
    """Signals that make the stub emit decisions, stale drops, evictions and rejections."""
    rng = random.Random(seed)
    out, ts = [], 1000
    for _ in range(count):
        ts += rng.randrange(0, 50)
        stale = rng.random() < 0.1
        out.append(Signal(ts - 500 if stale else ts, rng.randrange(8), rng.randrange(16),
                          rng.randrange(2), rng.randrange(0, 32769), rng.randrange(-5, 100)))
    return out


def _expected(signals, pops_every: int = 0):
    stub = StubModel()
    events, results = [], []
    for i, s in enumerate(signals):
        events.append(s)
        results += stub.signal(s)
        if pops_every and i % pops_every == pops_every - 1:
            events.append(Pop(s.ts_us))
            results.append(stub.pop())
    return events, results


def _transport(port, **options) -> UartTransport:
    options.setdefault("timeout", TIMEOUT)
    return UartTransport(port, url="model://", **options)


def _kind_of(frame: p.Frame) -> FrameType:
    return FrameType(frame.type)


# --- loop:// ----------------------------------------------------------------------------------

def test_loop_url_opens_and_times_out_with_retransmissions():
    """loop:// echoes the host's own commands: never a reply, so the PING is retransmitted
    ``retries`` times and then LinkTimeout; the echoed commands count as malformed replies."""
    transport = UartTransport.open_url("loop://", timeout=TIMEOUT, retries=2, start_session=False)
    try:
        with pytest.raises(LinkTimeout, match="after 2 retransmissions"):
            transport.ping(b"x")
        c = transport.counters
        assert (c.retries, c.timeouts, c.commands) == (2, 3, 1)
        assert c.extra["replies_malformed"] == 3
        assert c.bytes_out == c.bytes_in > 0
    finally:
        transport.close()
    with pytest.raises(DeviceGone):
        transport.ping()


def test_loop_url_board_open_is_a_link_error():
    with pytest.raises(LinkError):
        Board.open("loop://", timeout=TIMEOUT, retries=0)


def test_unopenable_url_is_device_gone():
    with pytest.raises(DeviceGone, match="cannot open"):
        UartTransport.open_url("/dev/does-not-exist-sigfuse")
    with pytest.raises(DeviceGone):
        UartTransport.open_url("socket://127.0.0.1:1", timeout=TIMEOUT)


# --- over the model ---------------------------------------------------------------------------

def test_session_registers_and_errors():
    port = ModelPort()
    transport = _transport(port)
    assert port.model.last_seq is not None  # the session PING
    scratch = BY_NAME["scratch"].addr
    transport.write_registers([(scratch, 0x12345678)])
    assert transport.read_registers([scratch, BY_NAME["magic"].addr]) == [0x12345678, 0x53464753]
    all_addrs = [r.addr for r in BY_NAME.values()]
    assert len(transport.read_registers(all_addrs)) == len(all_addrs)  # split over frames
    with pytest.raises(CommandError, match="READ_ONLY"):
        transport.write_registers([(BY_NAME["magic"].addr, 1)])
    assert transport.ping(b"again") == b"again"
    stats = transport.stats()
    assert stats[BY_NAME["frames_bad_value"].addr] == 0


def test_push_and_pop_pipelined_match_the_model():
    events, want = _expected(_signals(300), pops_every=7)
    port = ModelPort()
    transport = _transport(port)
    assert transport.execute(events) == want
    assert port.max_inbox == MAX_OUTSTANDING
    signals = _signals(100, seed=2)
    port2 = ModelPort()
    t2 = _transport(port2, max_outstanding=1)
    _, want2 = _expected(signals)
    assert t2.push_signals(signals) == want2
    assert port2.max_inbox == 1
    queued = len(port2.model.stub.queue)
    kinds = [r.kind for r in t2.pop(300)]
    assert kinds == [ResultKind.POPPED] * queued + [ResultKind.POPPED_EMPTY] * (300 - queued)
    assert queued > 0 and port2.model.stub.stats["queue_pops"] == 300  # 255 + 45


def test_lost_command_is_retransmitted_and_executed_once():
    signals = _signals(40)
    _, want = _expected(signals)
    # Command 0 is the session PING; drop the first PUSH_SIGNALS once.
    port = ModelPort(command_action=lambda f, i: "drop" if i == 1 else "pass")
    transport = _transport(port, max_outstanding=1)
    assert transport.push_signals(signals) == want
    assert (transport.counters.retries, transport.counters.frames_lost) == (1, 0)
    assert port.model.live["frames_duplicate"] == 0


def _terminal_of_push(index_wanted: int):
    """A board_action that drops the terminal reply of the n-th PUSH_SIGNALS."""
    seen = []

    def action(frame, index):
        if frame.type == FrameType.PUSH_ACK:
            seen.append(index)
            if len(seen) == index_wanted + 1:
                return "drop"
        return "pass"
    return action


def test_lost_terminal_reply_duplicate_recovers_complete_results():
    signals = _signals(60)
    _, want = _expected(signals)
    port = ModelPort(board_action=_terminal_of_push(1))
    transport = _transport(port, max_outstanding=1)
    assert transport.push_signals(signals) == want
    c = transport.counters
    assert (c.retries, c.frames_lost, c.extra["duplicates"]) == (1, 1, 1)
    assert port.model.live["frames_duplicate"] == 1
    # The model executed every signal exactly once.
    assert port.model.stub.stats["signals_in"] == len(signals)


def test_lost_results_frame_raises_results_lost():
    signals = _signals(60)
    lost = []

    def action(frame, index):
        if frame.type == FrameType.RESULTS and not lost:
            lost.append(index)
            return "drop"
        return "pass"
    transport = _transport(ModelPort(board_action=action), max_outstanding=1)
    with pytest.raises(ResultsLost, match="never arrived") as info:
        transport.push_signals(signals)
    assert info.value.frames_lost == 1
    assert transport.counters.frames_lost == 1
    # The session goes on.
    assert transport.ping(b"ok") == b"ok"


def test_corrupted_results_frame_is_counted_and_raises():
    def action(frame, index):
        return "corrupt" if frame.type == FrameType.RESULTS and index == 3 else "pass"
    transport = _transport(ModelPort(board_action=action), max_outstanding=1)
    with pytest.raises(ResultsLost):
        transport.push_signals(_signals(60))
    assert transport.counters.frames_bad == 1
    assert transport.counters.frames_lost == 1


def test_lost_results_and_terminal_duplicate_raises_results_lost():
    dropped = []

    def action(frame, index):
        # Every frame of the second push's execution: its results and its ack (DONE).
        if (frame.body[:2] == bytes([FrameType.PUSH_SIGNALS, 2])
                and not (frame.type == FrameType.PUSH_ACK and frame.body[2] == p.AckStatus.DUPLICATE)):
            dropped.append(frame)
            return "drop"
        return "pass"
    transport = _transport(ModelPort(board_action=action), max_outstanding=1)
    with pytest.raises(ResultsLost, match="executed"):
        transport.push_signals(_signals(60))
    assert len(dropped) >= 2
    assert transport.counters.extra["duplicates"] == 1


def test_pop_whose_ack_was_lost_is_complete_when_every_result_came():
    acks = []

    def action(frame, index):
        if frame.type == FrameType.POP_ACK:
            acks.append(index)
            return "drop" if len(acks) == 1 else "pass"
        return "pass"
    port = ModelPort(board_action=action)
    transport = _transport(port, max_outstanding=1, retries=1)
    results = transport.pop(5)
    assert [r.kind for r in results] == [ResultKind.POPPED_EMPTY] * 5
    assert transport.counters.extra["duplicates"] == 1


def test_late_replies_then_duplicate_is_ignored():
    signals = _signals(40)
    _, want = _expected(signals)
    state = {"held": False}

    def action(frame, index):
        # Hold the frames of the first push until the retransmission arrives.
        if frame.body[1:2] == b"\x01" and frame.body[:1] == bytes([FrameType.PUSH_SIGNALS]):
            state["held"] = True
            return "hold"
        return "pass"
    port = ModelPort(board_action=action)
    transport = _transport(port, max_outstanding=1)
    assert transport.push_signals(signals) == want
    assert state["held"] and transport.counters.retries == 1
    assert transport.counters.extra["replies_stray"] == 1  # the DUPLICATE answer
    assert transport.counters.frames_lost == 0


def test_loss_with_two_in_flight_is_never_silent():
    events, _ = _expected(_signals(60), pops_every=5)
    port = ModelPort(command_action=lambda f, i: "drop" if i == 3 else "pass")
    transport = _transport(port)
    with pytest.raises(ResultsLost, match="answered first"):
        transport.execute(events)
    # The board ran the later command although the earlier one never arrived: a seq gap.
    assert port.model.live["frames_seq_gap"] == 1


def test_device_gone_on_read_failure():
    port = ModelPort()
    transport = _transport(port)
    port.fail_reads = True
    with pytest.raises(DeviceGone, match="read failed"):
        transport.ping()


def test_ftdi_urls_reach_pyftdi():
    """``ftdi://`` is pyftdi's URL handler (registered on demand): without the adapter it is a
    DeviceGone from pyftdi, not pyserial's "protocol not known"."""
    with pytest.raises(DeviceGone) as info:
        UartTransport.open_url("ftdi://ftdi:2232h/2", timeout=TIMEOUT)
    assert "not known" not in str(info.value)


def test_board_open_dispatches_by_scheme(tmp_path):
    with pytest.raises(LinkError, match="no model file"):
        Board.open(f"pcie-sim://{tmp_path}/missing")
    with pytest.raises(ValueError, match="unknown board"):
        Board.open("amaranth-sim://nosuchboard")


def test_loss_is_charged_to_the_right_command_when_pipelined():
    """Two pushes answered in one read; a RESULTS frame of the second is lost: the first
    completes, the second raises."""
    def action(frame, index):
        return "drop" if frame.type == FrameType.RESULTS and frame.body[1] == 3 else "pass"
    signals = _signals(17 * 6, seed=4)
    port = ModelPort(board_action=action)
    transport = _transport(port)
    with pytest.raises(ResultsLost) as info:
        transport.push_signals(signals)
    assert info.value.command == "PUSH_SIGNALS seq 3"
    assert port.max_inbox == 2


def test_silent_board_with_two_in_flight_times_out():
    """A board that stops answering: the host waits ``retries`` timeouts, never retransmits the
    older command (that could run it twice), and raises LinkTimeout."""
    port = ModelPort(board_action=lambda f, i: "drop" if i > 0 else "pass")
    transport = _transport(port, retries=2)
    with pytest.raises(LinkTimeout, match="nor to"):
        transport.push_signals(_signals(40))
    assert transport.counters.retries == 0
    assert transport.counters.extra["waits"] == 2
