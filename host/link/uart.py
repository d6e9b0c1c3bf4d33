"""The link protocol over a byte link: any pyserial port (``serial_for_url``).

:class:`UartTransport` speaks :mod:`sigfuse.protocol` over a port object with pyserial's
interface (``read``, ``write``, ``timeout``), so every URL pyserial knows works:
``/dev/ttyUSB1``, ``socket://127.0.0.1:PORT`` (the virtual board), ``loop://`` and, with
pyftdi installed, ``ftdi://ftdi:2232h/2``.  The in-process simulation (:mod:`.sim`) is such a
port too.

Session and pipelining
    A session starts with a PING (it resets the board's duplicate comparison and tells the host
    the board's next frame number).  Every new command takes the next ``seq``.  At most
    ``max_outstanding`` commands (the protocol's limit, 2) are without their terminal reply:
    while the board executes one, the next one is already on the wire.

Loss detection
    The board numbers every frame it sends.  A gap in those numbers is a lost board frame
    (``counters.frames_lost``); a frame that fails COBS/CRC is counted in
    ``counters.frames_bad`` and then shows up as a gap as well.

Timeouts, retries and what can be recovered
    A command without a terminal reply after ``timeout`` seconds is retransmitted *with the same
    seq* (and a leading 0x00 to resynchronize the board's deframer), up to ``retries`` times.
    The board executes a side-effect command (REG_WRITE, PUSH_SIGNALS, POP) whose seq repeats
    the previous frame's only once and answers the repeat DUPLICATE, so a retransmission never
    runs a command twice.  Retransmission is only safe for the newest command the board may
    have seen, so only a command that is alone in flight is retransmitted.  The cases:

    * the command frame was lost: the retransmission executes it (DONE): fully recovered;
    * the replies were only late: they arrive, then the DUPLICATE of the retransmission, which
      is ignored: fully recovered;
    * only the terminal reply was lost (exactly one board frame missing, and for a POP every
      result present): the DUPLICATE confirms the execution and the results are complete:
      recovered;
    * RESULTS frames were lost (more board frames missing than the terminal reply, or a gap
      before a DONE): the board executed the command once, but the protocol cannot ask it for
      those results again.  For a push, the decisions are in the board's queue (they will pop),
      but their reports (and any drop reports) are gone; for a pop, the popped decisions are
      gone.  This raises :class:`ResultsLost` with the results that did arrive -- never a silent
      loss;
    * with two commands in flight, the older one without its reply: while nothing of the newer
      one's answer has arrived either, the board may only be slow, and the host waits up to
      ``retries`` more timeouts.  Once the newer one's answer arrives (or the wait ran out) the
      older one is lost: if its frame was lost, the board has executed the newer one out of
      order; if its replies were lost, they cannot be fetched again.  Both raise
      :class:`ResultsLost` (``max_outstanding=1`` makes every command retransmittable, at the
      cost of throughput).

Device loss
    A port or socket that fails (unplugged adapter, closed socket, killed virtual board) raises
    :class:`~.transport.DeviceGone`.
"""

from __future__ import annotations

import logging
import select
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import serial

from .. import codec
from .. import protocol as p
from ..contract import Pop, Signal
from ..log import get_logger
from ..protocol import AckStatus, Deframer, Frame, FrameType, Reply, Result
from ..regmap import stats_registers
from .transport import DeviceGone, LinkCounters, LinkError, LinkTimeout, Transport

__all__ = ["UartTransport", "CommandError", "ResultsLost", "open_serial_port",
           "DEFAULT_BAUDRATE", "MAX_OUTSTANDING"]

log = get_logger("link")

DEFAULT_BAUDRATE = 3_000_000
#: docs/link.md, flow control: "A host keeps at most two commands without their terminal reply."
MAX_OUTSTANDING = 2
_READ_CHUNK = 65536
_BAD_FRAME_COUNTERS = tuple(c for c in Deframer.COUNTERS if c != "frames_ok")


def _push_frame(signals: Sequence[Signal]) -> Frame:
    """A PUSH_SIGNALS frame (seq 0: :meth:`UartTransport._transact` numbers it), packed by the
    active codec."""
    if not 1 <= len(signals) <= p.MAX_SIGNALS:
        raise ValueError(f"push 1..{p.MAX_SIGNALS} signals per frame, not {len(signals)}")
    return Frame(FrameType.PUSH_SIGNALS, 0, codec.pack_signals(signals))


class CommandError(LinkError):
    """The board refused a command (ERROR reply): ``code`` (:class:`~sigfuse.protocol.ErrorCode`)
    and ``detail`` (address, record index or length)."""

    def __init__(self, command: str, code, detail: int) -> None:
        self.command, self.code, self.detail = command, code, detail
        name = getattr(code, "name", str(code))
        super().__init__(f"the board refused {command}: {name} (detail {detail})")


class ResultsLost(LinkError):
    """The board executed a command but some of its result frames never arrived.

    ``results`` are those that did arrive (in order, possibly with gaps), ``frames_lost`` how
    many board frames were missing.
    """

    def __init__(self, message: str, *, command: str, frames_lost: int,
                 results: Sequence[Result] = ()) -> None:
        super().__init__(message)
        self.command = command
        self.frames_lost = frames_lost
        self.results = list(results)


@dataclass
class _Command:
    frame: Frame
    wire: bytes
    #: POP: how many results must come back (None: unknown, a push).
    expected_results: int | None = None
    results: list[Result] = field(default_factory=list)
    reply: Reply | None = None
    #: Board frames found missing while this command was the oldest without a reply.
    frames_lost: int = 0
    retransmissions: int = 0
    #: Timeouts waited out with a newer command in flight (no retransmission possible).
    waits: int = 0

    def describe(self) -> str:
        return f"{FrameType(self.frame.type).name} seq {self.frame.seq}"


def open_serial_port(url: str, *, baudrate: int = DEFAULT_BAUDRATE):
    """A pyserial port for ``url`` (device path or URL), opened, non-blocking reads."""
    if url.startswith("ftdi://"):
        try:
            import pyftdi.serialext  # noqa: F401 - registers the ftdi:// URL handler
        except ImportError as error:  # pragma: no cover - pyftdi is a dependency
            raise LinkError(f"{url}: ftdi:// needs pyftdi ({error})") from None
    try:
        return serial.serial_for_url(url, baudrate=baudrate, timeout=0, write_timeout=5)
    except Exception as error:  # pyserial, OS and pyftdi (USB backend, device) errors alike
        raise DeviceGone(f"cannot open {url}: {error}") from None


class UartTransport(Transport):
    """:class:`~.transport.Transport` over a byte link (see the module docstring).

    :param port: an open pyserial-like port; it is switched to non-blocking reads.
    :param timeout: seconds to wait for a command's terminal reply before retransmitting.
    :param retries: retransmissions of one command before :class:`LinkTimeout`.
    :param max_outstanding: commands in flight (1 or 2).
    :param start_session: send the session's PING now.
    """

    def __init__(self, port, *, url: str | None = None, timeout: float = 0.5, retries: int = 3,
                 max_outstanding: int = MAX_OUTSTANDING, start_session: bool = True) -> None:
        if not 1 <= max_outstanding <= MAX_OUTSTANDING:
            raise ValueError(f"max_outstanding must be 1 or {MAX_OUTSTANDING}, not {max_outstanding}")
        self.port = port
        self.url = url or getattr(port, "port", None) or repr(port)
        self.timeout = timeout
        self.retries = retries
        self.max_outstanding = max_outstanding
        self.counters = LinkCounters()
        # The active codec (the C one of firmware/ when built, else sigfuse.protocol).
        self._deframer = codec.Deframer()
        self._seq = 0
        self._board_seq: int | None = None
        self._inflight: deque[_Command] = deque()
        self._closed = False
        self._syncing = False
        try:
            self._fileno = port.fileno()
        except Exception:  # loop://, ftdi://, the simulation: no descriptor to select on
            self._fileno = None
        try:
            port.timeout = 0
        except (AttributeError, ValueError, serial.SerialException):
            pass
        if start_session:
            self.start_session()

    @classmethod
    def open_url(cls, url: str, *, baudrate: int = DEFAULT_BAUDRATE, timeout: float = 0.5,
                 retries: int = 3, **options) -> "UartTransport":
        """Open ``url`` with ``serial_for_url`` and start a session."""
        port = open_serial_port(url, baudrate=baudrate)
        try:
            return cls(port, url=url, timeout=timeout, retries=retries, **options)
        except BaseException:
            port.close()
            raise

    # --- bytes --------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._closed:
            raise DeviceGone(f"{self.url}: the transport is closed")
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as error:
            raise DeviceGone(f"{self.url}: write failed: {error}") from None
        self.counters.bytes_out += len(data)
        if log.isEnabledFor(logging.DEBUG):
            log.hexdump("link_tx", data, url=self.url)

    def _read_some(self, timeout: float) -> bytes:
        """Whatever bytes arrive within ``timeout`` seconds (returns as soon as some did)."""
        if self._closed:
            raise DeviceGone(f"{self.url}: the transport is closed")
        try:
            if self._fileno is not None:
                ready, _, _ = select.select([self._fileno], [], [], max(0.0, timeout))
                data = self.port.read(_READ_CHUNK) if ready else b""
            else:
                data = self.port.read(_READ_CHUNK)
                if not data and timeout > 0:
                    time.sleep(min(timeout, 0.0005))
                    data = self.port.read(_READ_CHUNK)
        except (serial.SerialException, OSError, ValueError) as error:
            raise DeviceGone(f"{self.url}: read failed: {error}") from None
        if data:
            self.counters.bytes_in += len(data)
            if log.isEnabledFor(logging.DEBUG):
                log.hexdump("link_rx", data, url=self.url)
        return bytes(data)

    def _receive(self, timeout: float) -> None:
        """Read for up to ``timeout`` seconds (less once something arrived) and handle every
        complete board frame."""
        data = self._read_some(timeout)
        if not data:
            return
        before = sum(self._deframer.counters[c] for c in _BAD_FRAME_COUNTERS)
        frames = self._deframer.feed(data)
        after = sum(self._deframer.counters[c] for c in _BAD_FRAME_COUNTERS)
        self.counters.frames_bad += after - before
        self._deframer.errors.clear()
        for frame in frames:
            self._handle(frame)

    def _bump(self, name: str) -> None:
        self.counters.extra[name] = self.counters.extra.get(name, 0) + 1

    def _handle(self, frame: Frame) -> None:
        if self._syncing:
            # Until the session's PONG, frames may be leftovers of an earlier session.
            self._board_seq = None
        if self._board_seq is not None and frame.seq != self._board_seq:
            lost = (frame.seq - self._board_seq) % 256
            self.counters.frames_lost += lost
            # The frames missing lie before this one: they belong to the oldest command still
            # without its terminal reply (replies come in command order).
            for command in self._inflight:
                if command.reply is None:
                    command.frames_lost += lost
                    break
            log.warning("board_frames_lost", url=self.url, expected_seq=self._board_seq,
                        got_seq=frame.seq, lost=lost)
        self._board_seq = (frame.seq + 1) % 256
        if frame.type == FrameType.RESULTS and self._fast_results(frame):
            return
        try:
            reply = p.parse_reply(frame)
        except p.BodyError as error:
            self._bump("replies_malformed")
            log.warning("board_frame_malformed", url=self.url, frame=repr(frame), error=str(error))
            return
        command = None
        for candidate in self._inflight:
            if candidate.frame.seq == reply.cmd_seq and candidate.frame.type == reply.cmd_type:
                command = candidate
                break
        if command is None or command.reply is not None:
            # A late reply to a command already answered (typically the DUPLICATE answer to a
            # retransmission whose original reply came after all), or from an earlier session.
            self._bump("replies_stray")
            return
        if reply.kind == FrameType.RESULTS:
            command.results.extend(reply.results)
        else:
            command.reply = reply

    def _fast_results(self, frame: Frame) -> bool:
        """A RESULTS frame for a command in flight, decoded by the active codec (most of the
        traffic: a Reply object per frame would cost more than the records)."""
        body = frame.body
        if len(body) < 2 + p.RESULT_RECORD_BYTES:
            return False
        for command in self._inflight:
            if command.frame.seq == body[1] and command.frame.type == body[0]:
                if command.reply is not None:
                    return False
                try:
                    command.results.extend(codec.unpack_results(body[2:]))
                except p.BodyError:
                    return False  # parse_reply counts it as malformed
                return True
        return False

    # --- commands -----------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _send(self, frame: Frame, expected_results: int | None = None) -> _Command:
        command = _Command(frame, codec.encode_frame(frame.type, frame.seq, frame.body),
                           expected_results)
        self._inflight.append(command)
        self.counters.commands += 1
        self._write(command.wire)
        return command

    def _await(self, command: _Command) -> None:
        """Wait for the terminal reply of ``command`` (the oldest in flight), retransmitting it
        when that is safe; raises when it is not or retries ran out."""
        deadline = time.monotonic() + self.timeout
        while command.reply is None:
            now = time.monotonic()
            if now < deadline:
                self._receive(deadline - now)
                continue
            self.counters.timeouts += 1
            if len(self._inflight) > 1:
                # A newer command is in flight: retransmitting this one could run it twice (the
                # board compares with the previous frame only) or after the newer one.  While
                # nothing of the newer one's answer has come either, the board may just be slow
                # (a loaded host running the virtual board): wait, ``retries`` more timeouts.
                newer = self._inflight[-1]
                answered = newer.reply is not None or newer.results
                if not answered and command.waits < self.retries:
                    command.waits += 1
                    self._bump("waits")
                    deadline = time.monotonic() + self.timeout
                    continue
                self._settle(newer)
                if not answered and newer.reply is None:
                    raise LinkTimeout(
                        f"{self.url}: no reply to {command.describe()} nor to "
                        f"{newer.describe()} within {(command.waits + 1) * self.timeout:g} s "
                        f"(whether the board executed them is unknown)")
                why = f"{newer.describe()} was answered first"
                raise ResultsLost(
                    f"{self.url}: no reply to {command.describe()} ({why}): its results cannot "
                    f"be recovered (board frames lost: {command.frames_lost})",
                    command=command.describe(),
                    frames_lost=command.frames_lost, results=command.results)
            if command.retransmissions >= self.retries:
                self._inflight.clear()
                raise LinkTimeout(f"{self.url}: no reply to {command.describe()} after "
                                  f"{self.retries} retransmissions ({self.timeout:g} s each)")
            command.retransmissions += 1
            self.counters.retries += 1
            log.warning("link_retransmit", url=self.url, command=command.describe(),
                        attempt=command.retransmissions)
            self._write(b"\x00" + command.wire)
            deadline = time.monotonic() + self.timeout

    def _settle(self, command: _Command) -> None:
        """Give ``command`` one timeout to answer, then forget everything in flight (the session
        goes on with new seqs; the caller raises)."""
        deadline = time.monotonic() + self.timeout
        while command.reply is None and time.monotonic() < deadline:
            self._receive(deadline - time.monotonic())
        self._inflight.clear()

    def _finish(self, command: _Command) -> _Command:
        """Check a command whose terminal reply arrived."""
        reply = command.reply
        assert reply is not None
        if reply.kind == FrameType.ERROR:
            raise CommandError(command.describe(), reply.error, reply.detail)
        if reply.kind != p.REPLY_TYPES[FrameType(command.frame.type)]:
            raise LinkError(f"{self.url}: {command.describe()} answered by {reply.kind.name}")
        if command.frame.type not in p.SIDE_EFFECT_COMMANDS:
            return command
        # Frames the board sent for this command that never arrived.  A DUPLICATE answers a
        # retransmission whose original terminal reply was lost: that one frame is accounted for.
        lost = command.frames_lost
        if reply.status == AckStatus.DUPLICATE:
            if not command.retransmissions:
                raise LinkError(f"{self.url}: {command.describe()} answered DUPLICATE but was "
                                f"never retransmitted (another host on the link?)")
            lost -= 1
            self._bump("duplicates")
        complete = lost <= 0
        if command.expected_results is not None:
            complete = len(command.results) == command.expected_results
        if not complete:
            missing = ("" if command.expected_results is None else
                       f", {command.expected_results - len(command.results)} of "
                       f"{command.expected_results} pop results missing")
            what = ("the decisions are in the board's queue but their reports are lost"
                    if command.frame.type == FrameType.PUSH_SIGNALS else
                    "the popped decisions are lost" if command.frame.type == FrameType.POP
                    else "")
            raise ResultsLost(f"{self.url}: {command.describe()} was executed but "
                              f"{max(lost, 1)} result frame(s) never arrived{missing}; {what}",
                              command=command.describe(), frames_lost=max(lost, 1),
                              results=command.results)
        return command

    def _transact(self, frames: Iterable[tuple[Frame | None, int | None]]) -> Iterator[_Command]:
        """Send commands (``(frame, expected_results)``; a frame built with seq 0 is renumbered)
        keeping up to ``max_outstanding`` in flight; yield each, checked, in order."""
        source = iter(frames)
        exhausted = False
        try:
            while True:
                while not exhausted and len(self._inflight) < self.max_outstanding:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    frame, expected = item
                    self._send(Frame(frame.type, self._next_seq(), frame.body), expected)
                if not self._inflight:
                    return
                command = self._inflight[0]
                self._await(command)
                self._inflight.popleft()
                yield self._finish(command)
        except BaseException:
            # Whatever is still in flight will answer into the void: its replies are strays.
            self._inflight.clear()
            raise

    def start_session(self) -> None:
        """PING with a fresh seq; drop everything received before its PONG."""
        self._inflight.clear()
        try:
            self.port.reset_input_buffer()
        except Exception:
            pass
        token = time.monotonic_ns().to_bytes(8, "little")
        self._board_seq = None
        self._syncing = True
        try:
            self._write(b"\x00")
            pong = self._exchange_ping(token)
        finally:
            self._syncing = False
        if pong != token:
            raise LinkError(f"{self.url}: the board answered the session PING with other data")

    def _exchange_ping(self, data: bytes) -> bytes:
        frame = p.ping(0, data)
        (command,) = list(self._transact([(frame, None)]))
        return command.reply.data

    # --- Transport ----------------------------------------------------------------------------

    def ping(self, data: bytes = b"") -> bytes:
        return self._exchange_ping(bytes(data))

    def read_registers(self, addrs: Sequence[int]) -> list[int]:
        addrs = list(addrs)
        chunks = [addrs[i:i + p.MAX_REGS] for i in range(0, len(addrs), p.MAX_REGS)]
        values: list[int] = []
        for chunk, command in zip(chunks, self._transact((p.reg_read(0, c), None) for c in chunks)):
            got = command.reply.registers
            if [a for a, _ in got] != chunk:
                raise LinkError(f"{self.url}: REG_READ answered other addresses")
            values.extend(v for _, v in got)
        return values

    def write_registers(self, writes: Sequence[tuple[int, int]]) -> None:
        writes = list(writes)
        chunks = [writes[i:i + p.MAX_REGS] for i in range(0, len(writes), p.MAX_REGS)]
        for _ in self._transact((p.reg_write(0, c), None) for c in chunks):
            pass

    def push_signals(self, signals: Sequence[Signal]) -> list[Result]:
        results: list[Result] = []
        n = p.MAX_SIGNALS
        frames = ((_push_frame(signals[i:i + n]), None) for i in range(0, len(signals), n))
        for command in self._transact(frames):
            results.extend(command.results)
        return results

    def pop(self, count: int = 1) -> list[Result]:
        results: list[Result] = []
        counts = [min(255, count - i) for i in range(0, count, 255)]
        for command in self._transact((p.pop(0, c), c) for c in counts):
            results.extend(command.results)
        return results

    def execute(self, events: Sequence[Signal | Pop]) -> list[Result]:
        """Signals and pops in order, as full frames, pipelined across both kinds."""
        results: list[Result] = []
        for command in self._transact(self._event_frames(events)):
            results.extend(command.results)
        return results

    @staticmethod
    def _event_frames(events: Sequence[Signal | Pop]) -> Iterator[tuple[Frame, int | None]]:
        batch: list[Signal] = []
        pops = 0
        for event in events:
            if type(event) is Signal:
                if pops:
                    yield p.pop(0, pops), pops
                    pops = 0
                batch.append(event)
                if len(batch) == p.MAX_SIGNALS:
                    yield _push_frame(batch), None
                    batch = []
            elif type(event) is Pop:
                if batch:
                    yield _push_frame(batch), None
                    batch = []
                pops += 1
                if pops == 255:
                    yield p.pop(0, pops), pops
                    pops = 0
            else:
                raise TypeError(f"not an event: {event!r}")
        if batch:
            yield _push_frame(batch), None
        if pops:
            yield p.pop(0, pops), pops

    def stats(self) -> dict[int, int]:
        (command,) = list(self._transact([(p.stats_snapshot(0), None)]))
        values = dict(command.reply.registers)
        missing = {r.addr for r in stats_registers()} - values.keys()
        if missing:
            raise LinkError(f"{self.url}: STATS reply without registers {sorted(missing)}")
        return values

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inflight.clear()
        try:
            self.port.close()
        except Exception:
            pass
