"""The virtual board: the product core compiled by Verilator, its link bridged to TCP.

:class:`VirtualBoard` runs :class:`~sigfuse.gateware.core.SigfuseCore` -- with the pair slots,
queue capacity and clock of a real board, and a byte-stream link instead of a UART -- in the
C++ harness ``sim/harness/board.cpp``.  The harness drives the clock itself and bridges the
core's byte streams to one TCP client on loopback (LiteX's ``serial2tcp`` pattern), so any
host that can open ``socket://127.0.0.1:PORT`` (pyserial's URL handler, a plain socket) talks
to it exactly as to a board on a serial port::

    with VirtualBoard("icebreaker") as board:
        link = serial.serial_for_url(board.url)
        ...

Simulated time stops while the board is idle (the harness blocks instead of spinning), so
``uptime_clocks`` counts simulated clocks, not wall time at ``clk_hz``.

Unpaced (the default), a byte enters the core whenever it is ready -- about 2.7 clocks a byte, far
faster than a UART.  ``VirtualBoard(..., baud=3_000_000)`` paces both directions at the line
rate of an 8N1 UART at that baud in *simulated* time (one byte per ``clk_hz * 10 / baud``
clocks each way), so what a host measures in simulated clocks (``uptime_clocks``, or
:attr:`BoardSummary.clocks`) is what it would see on the real board at that baud
(``benchmarks/link.py``).

A model is built once per board and cached (:func:`sigfuse.sim.verilator.build_verilated`);
:func:`build_board` builds without running, for ``make test`` and the CLI.
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..gateware.core import CoreParameters, SigfuseCore, build_id as core_build_id, core_parameters
from .verilator import VerilatedModel, build_dir, build_verilated

__all__ = ["HARNESS", "TOP", "BoardBuild", "BoardSummary", "VirtualBoard", "VirtualBoardError",
           "board_parameters", "build_board", "parse_summary"]

#: The C++ harness of the virtual board.
HARNESS = Path(__file__).resolve().parent / "harness" / "board.cpp"
#: The Verilog module of the board model (the harness includes ``V<TOP>.h``) and of the core.
TOP = "sigfuse_board"
CORE = "sigfuse_core"

# The board model is the core with its reset tied off.  Amaranth gives every register and
# memory its reset value as an initial value too, so the model starts exactly as from a reset
# (as an FPGA does after configuration) -- and with ``rst`` a constant, Verilator folds the
# reset multiplexer out of every register's next-state logic, which otherwise depends on a
# top-level input and is evaluated again on every eval: with the tie-off a clock of the
# iCEBreaker core went from about 0.55 M to 1.6 M clocks per CPU second.
_WRAPPER = """
module sigfuse_board(clk, rx_bytes__valid, rx_bytes__payload, rx_bytes__ready,
                     tx_bytes__valid, tx_bytes__payload, tx_bytes__ready, link_error);
  input clk;
  input rx_bytes__valid;
  input [7:0] rx_bytes__payload;
  output rx_bytes__ready;
  output tx_bytes__valid;
  output [7:0] tx_bytes__payload;
  input tx_bytes__ready;
  output link_error;
  sigfuse_core core(.clk(clk), .rst(1'b0),
    .rx_bytes__valid(rx_bytes__valid), .rx_bytes__payload(rx_bytes__payload),
    .rx_bytes__ready(rx_bytes__ready), .tx_bytes__valid(tx_bytes__valid),
    .tx_bytes__payload(tx_bytes__payload), .tx_bytes__ready(tx_bytes__ready),
    .link_error(link_error));
endmodule
"""


class VirtualBoardError(RuntimeError):
    """The virtual board could not be built or started, or stopped badly."""


def board_parameters(board: str) -> CoreParameters:
    """The product core's parameters for ``board`` with a byte-stream link, at the board's
    datapath clock (what the real board reports, ``uart_divisor`` aside)."""
    from ..boards.common import get_board
    return core_parameters(board, get_board(board).sync_hz, None)


@dataclass(frozen=True)
class BoardBuild:
    """A built virtual board: the executable and what the board will report."""
    board: str
    parameters: CoreParameters
    build_id: int
    model: VerilatedModel

    @property
    def executable(self) -> Path:
        return self.model.executable


_VERILOG_MEMO: dict[CoreParameters, str] = {}


def _core_verilog(parameters: CoreParameters) -> str:
    """Verilog of the core, cached on disk by its build ID (which hashes the gateware, contract,
    protocol and register-map sources and the parameters) and the Amaranth version:
    converting it takes seconds that every start would pay."""
    if parameters in _VERILOG_MEMO:
        return _VERILOG_MEMO[parameters]
    import amaranth
    from amaranth.back import verilog as back_verilog

    key = hashlib.sha256(f"{amaranth.__version__} {core_build_id(parameters):08x} "
                         f"{parameters!r}".encode()).hexdigest()[:16]
    path = build_dir() / "verilog" / f"{CORE}-{key}.v"
    if path.exists():
        text = path.read_text()
    else:
        text = back_verilog.convert(SigfuseCore(parameters), name=CORE, emit_src=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(text)
        partial.replace(path)
    _VERILOG_MEMO[parameters] = text
    return text


#: Extra Verilator options of the board model.  The project's defaults (``-O3 --x-assign fast
#: --x-initial fast``) apply; the C++ is compiled with -O2 like the datapath model.  -Os, -O1,
#: -O3, -march=native and --inline-mult made no difference beyond noise, nor did --threads 2
#: (slower: the threads meet every clock).  What sets the speed is how much of the design's
#: logic Verilator evaluates in a clock: it evaluates every operand of every Mux() and
#: operator, but only the taken branch of an If.  The queue's cells are written for that
#: (``gateware/queue.py``), which made the ULX3S model about 4x faster.  Running Yosys's
#: ``opt`` over the netlist first (DFF enables) helped the Mux()-written queue 2x but slowed
#: the rest of the core by a third (its processes became multiplexer trees), so the model is
#: Amaranth's Verilog as it comes.
VERILATOR_ARGS: tuple[str, ...] = ("-MAKEFLAGS", "OPT_FAST=-O2")


def build_board(board: str = "icebreaker") -> BoardBuild:
    """Build (or find in the cache) the virtual ``board``."""
    parameters = board_parameters(board)
    model = build_verilated(f"sigfuse_board-{board}", _core_verilog(parameters) + _WRAPPER, TOP,
                            [HARNESS],
                            args=VERILATOR_ARGS)
    return BoardBuild(board, parameters, core_build_id(parameters), model)


@dataclass(frozen=True)
class BoardSummary:
    """The harness's last words (its one-line summary on stderr)."""
    line: str
    clocks: int
    bytes_in: int
    bytes_out: int
    link_errors: int
    connections: int
    clocks_per_second: float
    running_seconds: float
    wall_seconds: float
    #: Clocks per second of the harness's CPU time (on a loaded machine, what a free core gives).
    clocks_per_cpu_second: float
    #: Line-rate pacing of the link (0: unpaced).
    baud: int = 0
    #: Paced: received bytes the core left waiting a whole byte time (a real UART: overruns).
    bytes_held: int = 0


_SUMMARY = re.compile(
    r"stopped after (\d+) clocks, (\d+) bytes in, (\d+) bytes out \(\d+ unsent\), (\d+) link errors,"
    r" (\d+) connections, (\d+) clocks/s simulated while running \(([\d.]+) s of ([\d.]+) s\),"
    r" (\d+) clocks per CPU second(?:, paced at (\d+) baud \([\d.]+ clocks per byte, (\d+) bytes held\))?")


def parse_summary(text: str) -> BoardSummary | None:
    """The summary in the harness's stderr ``text``, or None when it has none."""
    for line in reversed(text.splitlines()):
        match = _SUMMARY.search(line)
        if match:
            g = match.groups()
            return BoardSummary(line.strip(), int(g[0]), int(g[1]), int(g[2]), int(g[3]), int(g[4]),
                                float(g[5]), float(g[6]), float(g[7]), float(g[8]),
                                int(g[9] or 0), int(g[10] or 0))
    return None


class VirtualBoard:
    """One running virtual board.

    :param board: ``icebreaker`` or ``ulx3s`` (pair slots, queue capacity and clock of that
        board's product build).
    :param host: address to listen on; loopback only unless ``allow_remote``.
    :param port: TCP port, 0 for a free one (see :attr:`url`).
    :param harness_args: extra harness options (``--poll-clocks N``, ``--idle-clocks N``).
    :param baud: pace the link at this baud (8N1) in simulated time, at the board's ``clk_hz``;
        None: unpaced.
    """

    def __init__(self, board: str = "icebreaker", host: str = "127.0.0.1", port: int = 0, *,
                 allow_remote: bool = False, harness_args: Sequence[str] = (),
                 start_timeout: float = 30.0, baud: int | None = None) -> None:
        if baud is not None and baud <= 0:
            raise ValueError(f"baud must be positive, not {baud}")
        self.board = board
        self.host = host
        self.port = port
        self.allow_remote = allow_remote
        self.harness_args = tuple(harness_args)
        self.start_timeout = start_timeout
        self.baud = baud
        self.build: BoardBuild | None = None
        self.url: str | None = None
        self.summary: BoardSummary | None = None
        self._process: subprocess.Popen | None = None
        self._stderr = b""

    # -- facts of the build ---------------------------------------------------------------------

    @property
    def parameters(self) -> CoreParameters:
        return self.build.parameters if self.build else board_parameters(self.board)

    @property
    def build_id(self) -> int:
        return self.build.build_id if self.build else core_build_id(self.parameters)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life cycle -----------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The harness command line (after :func:`build_board`)."""
        assert self.build is not None
        listen = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        pacing = (["--baud", str(self.baud), "--clk-hz", str(self.build.parameters.clk_hz)]
                  if self.baud else [])
        return [str(self.build.executable), "--listen", listen,
                *(["--allow-remote"] if self.allow_remote else []), *pacing, *self.harness_args]

    def start(self) -> "VirtualBoard":
        """Build (cached) and launch the board; returns once it listens (:attr:`url` is set)."""
        if self.alive:
            raise VirtualBoardError("the virtual board is already running")
        self.build = build_board(self.board)
        self.summary = None
        self._stderr = b""
        # A session of its own: a Ctrl-C at the terminal goes to the host, which drains its work
        # and then stops the board, instead of reaching the board first.  The harness stops by
        # itself when its parent is gone.
        self._process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         start_new_session=True)
        try:
            self.url = self._read_url()
        except BaseException:
            self.kill()
            raise
        return self

    def _read_url(self) -> str:
        process = self._process
        deadline = time.monotonic() + self.start_timeout
        line = b""
        fd = process.stdout.fileno()
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise VirtualBoardError(
                    f"the virtual {self.board} printed no URL within {self.start_timeout:g} s"
                    f"{self._stderr_note()}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 256)
            if not chunk:
                status = process.wait()
                self._stderr = process.stderr.read()
                raise VirtualBoardError(
                    f"the virtual {self.board} exited with status {status} before listening"
                    f"{self._stderr_note()}")
            line += chunk
        url = line.decode(errors="replace").strip()
        if not url.startswith("socket://"):
            self.kill()
            raise VirtualBoardError(f"the virtual {self.board} printed {url!r}, not a URL"
                                    f"{self._stderr_note()}")
        return url

    def _stderr_note(self) -> str:
        text = self._stderr.decode(errors="replace").strip()
        return f"; its stderr:\n{text}" if text else " (nothing on its stderr)"

    def _finish(self, timeout: float | None) -> int:
        process = self._process
        try:
            _, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate()
        self._stderr += err or b""
        self.summary = parse_summary(self._stderr.decode(errors="replace"))
        return process.returncode

    def stop(self, timeout: float = 30.0) -> BoardSummary | None:
        """SIGTERM, wait, and return the harness's summary (None if it left none)."""
        if self._process is None:
            return self.summary
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
        status = self._finish(timeout)
        if status != 0:
            raise VirtualBoardError(f"the virtual {self.board} exited with status {status}"
                                    f"{self._stderr_note()}")
        return self.summary

    def kill(self) -> None:
        """SIGKILL: the board vanishes without a word (for failover tests)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._finish(None)

    @property
    def stderr(self) -> str:
        """What the harness wrote to stderr (complete once it stopped)."""
        return self._stderr.decode(errors="replace")

    def __enter__(self) -> "VirtualBoard":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive:
            self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.alive else "stopped"
        return f"<VirtualBoard {self.board} {state}>"
