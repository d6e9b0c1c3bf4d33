"""In-process simulation: the product core in Amaranth's simulator behind a pyserial-like port.

:class:`AmaranthSimPort` is the other end of a byte link whose far side is
:class:`~sigfuse.gateware.core.SigfuseCore` built with a byte-stream link (``uart_divisor=0``):
``write`` queues bytes for the core's ``rx_bytes`` stream, ``read`` runs the simulation until
the core has sent something on ``tx_bytes`` (or has been quiet for ``idle_clocks``).  So
:class:`~.uart.UartTransport` runs over it unchanged -- the same code path as a real UART or the
virtual board, only much slower (Python simulates every clock): for small tests and debugging.

URL: ``amaranth-sim://BOARD[?pair_slots=N&capacity=N&clk_hz=N&engine=E]``, e.g.
``amaranth-sim://icebreaker`` (the iCEBreaker product build: 16 pair slots, 32 entries, the
serial engine); ``engine=pipeline`` or ``serial`` overrides the board's engine.
"""

from __future__ import annotations

from collections import deque
from urllib.parse import parse_qs, urlsplit

__all__ = ["AmaranthSimPort", "parse_sim_url", "open_sim_transport", "SCHEME"]

SCHEME = "amaranth-sim"


def parse_sim_url(url: str):
    """The :class:`~sigfuse.gateware.core.CoreParameters` an ``amaranth-sim://`` URL names."""
    from ..gateware.core import BOARD_PARAMETERS, ENGINES, CoreParameters
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        raise ValueError(f"not an {SCHEME}:// URL: {url!r}")
    board = parts.netloc or "icebreaker"
    if board not in BOARD_PARAMETERS:
        raise ValueError(f"{url}: unknown board {board!r}; known: {', '.join(BOARD_PARAMETERS)}")
    build = BOARD_PARAMETERS[board]
    pair_slots, capacity, engine = build.pair_slots, build.queue_capacity, build.engine
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"pair_slots", "capacity", "clk_hz", "engine"}
    if unknown:
        raise ValueError(f"{url}: unknown parameter(s) {', '.join(sorted(unknown))}")
    try:
        pair_slots = int(query.get("pair_slots", pair_slots))
        capacity = int(query.get("capacity", capacity))
        clk_hz = int(query.get("clk_hz", 12_000_000))
    except ValueError as error:
        raise ValueError(f"{url}: {error}") from None
    engine = query.get("engine", engine)
    if engine not in ENGINES:
        raise ValueError(f"{url}: engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    return CoreParameters(pair_slots=pair_slots, queue_capacity=capacity, clk_hz=clk_hz,
                          uart_divisor=0, engine=engine)


class AmaranthSimPort:
    """A pyserial-like port whose far end is a simulated :class:`SigfuseCore`.

    :param parameters: the core's build parameters (``uart_divisor`` must be 0).
    :param idle_clocks: a ``read`` that finds nothing gives up after this many quiet clocks
        (the simulated equivalent of a serial timeout).
    """

    def __init__(self, parameters, *, idle_clocks: int = 4000, url: str | None = None) -> None:
        from amaranth.sim import Simulator

        from ..gateware.core import SigfuseCore
        if parameters.uart_divisor:
            raise ValueError("the simulation port drives the byte-stream core (uart_divisor=0)")
        self.port = url or f"{SCHEME}://"
        self.parameters = parameters
        self.core = SigfuseCore(parameters)
        self.build_id = self.core.build_id
        self.idle_clocks = idle_clocks
        self.timeout = 0
        self.is_open = True
        self.clocks = 0
        self._rx: deque[int] = deque()
        self._tx = bytearray()
        self._budget = 0
        self._quiet = 0
        self._sim = Simulator(self.core)
        self._sim.add_clock(1 / parameters.clk_hz)
        self._sim.add_testbench(self._testbench, background=True)

    async def _testbench(self, ctx) -> None:
        core = self.core
        ctx.set(core.tx_bytes.ready, 1)
        # Every clock samples tx_bytes (the stream is always ready): a clock without a look
        # would lose a byte.  The simulation only advances inside _run.
        while True:
            sending = bool(self._rx)
            if sending:
                ctx.set(core.rx_bytes.payload, self._rx[0])
            ctx.set(core.rx_bytes.valid, sending)
            _clk, _rst, rx_ready, tx_valid, tx_byte = await ctx.tick().sample(
                core.rx_bytes.ready, core.tx_bytes.valid, core.tx_bytes.payload)
            self.clocks += 1
            self._budget -= 1
            if sending and rx_ready:
                self._rx.popleft()
            if tx_valid:
                self._tx.append(tx_byte)
                self._quiet = 0
            else:
                self._quiet += 1

    def _run(self, clocks: int) -> None:
        self._budget = clocks
        while self._budget > 0:
            self._sim.advance()

    # --- the pyserial interface UartTransport uses ---------------------------------------------

    def write(self, data: bytes) -> int:
        if not self.is_open:
            raise OSError("simulation port closed")
        self._rx.extend(data)
        return len(data)

    @property
    def in_waiting(self) -> int:
        return len(self._tx)

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; runs the simulation until the core sent a whole frame (a
        delimiter) and then stayed quiet a little, or until ``idle_clocks`` quiet clocks."""
        if not self.is_open:
            raise OSError("simulation port closed")
        self._quiet = 0
        while True:
            if self._tx and self._tx[-1] == 0 and self._quiet >= 64 and not self._rx:
                break
            if self._quiet >= self.idle_clocks:
                break
            self._run(256)
        data = bytes(self._tx[:size])
        del self._tx[:size]
        return data

    def reset_input_buffer(self) -> None:
        self._tx.clear()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.is_open = False


def open_sim_transport(url: str, *, timeout: float = 60.0, retries: int = 0, **options):
    """A :class:`~.uart.UartTransport` over a fresh simulated core named by ``url``."""
    from .uart import UartTransport
    port = AmaranthSimPort(parse_sim_url(url), url=url)
    transport = UartTransport(port, url=url, timeout=timeout, retries=retries, **options)
    transport.sim_port = port
    return transport
