"""The fusion backend the orchestrator feeds, and failover from a board to software.

:class:`FailoverBackend` is a :class:`~sigfuse.engine.FusionBackend` in front of two others:

* the **primary** -- a board (``board``, by URL) or the virtual board (``sim``,
  :mod:`.simboard`), or in tests the stand-in :class:`ProcessEngine`; absent when the user asked
  for software;
* the **fallback** -- the software :class:`~sigfuse.engine.ReferenceEngine`, kept as a *hot
  standby*: every batch the primary acknowledges (answers) is also run through the fallback,
  and the two answers are compared.  The contract makes them bit-identical, so the fallback's
  fusion state and queue always equal the board's as of its last answer; a difference is a
  fault of the board or the link (``mirror_mismatches``).  The standby costs the host a few
  microseconds per event, which at the orchestrator's rates is noise; it also gives vote
  attribution (which sources voted for a decision) for a board that does not report it.

**Failover.**  When the primary raises (link down, device gone, no answer within
``failover.response_timeout_s``) the batch it did not acknowledge -- signals and pops -- is
replayed into the fallback, which becomes active.  Since the fallback's state equals the board's
before that batch, the replay produces exactly the decisions the board would have produced, and
the board's queue content is still in the fallback's queue: no signal and no decision is lost.

**Failback.**  :meth:`restart_primary` opens a new primary (the health monitor calls it, with
backoff).  After ``failback_after_probes`` good probes, at the next batch boundary, the state is
reloaded: the new primary and a fresh fallback both receive the signals of the last
``vote_ttl_us + cooldown_us`` (the window that fully determines the live votes) and are drained
of the decisions that warm-up produced; the decisions still queued in software are carried over
and answered first.  Primary and fallback are then identical again, so mirroring resumes.  The
live votes are exact after the warm-up; the cooldown memory of a pair whose last emission was
more than a window ago may differ from the software's (it can let one decision through that the
software would have held back for at most ``cooldown_us``).

Both switches are logged (``failover``, ``failback``), counted, and timed (``switches``).

A restarted board must be fresh from reset (the ``board`` backend refuses one whose counters
show earlier traffic, and the board cannot load vote memory): a restarted virtual board is; a
board that kept running while its link was down is refused at each restart attempt, and the
orchestrator stays on software until the board is reset.

Which primary: :func:`open_primary_factory` looks the name up in the backend registry of
:mod:`sigfuse.engine`: :class:`~sigfuse.link.backend.BoardBackend` as ``board`` (``url=``) and
:class:`~.simboard.VirtualBoardBackend` as ``sim`` (it starts the virtual board and talks to it
through the ``board`` backend).  Queue capacity and pair slots are the board's
(:func:`~.simboard.geometry`), and the software standby is sized the same.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal as signals
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Callable, Literal, Sequence

from ..contract import Decision, DecisionEmitted, Event, FusionParams, Pop, Popped, Result, Signal
from ..engine import BACKENDS, FusionBackend, ReferenceEngine, _load_optional_backends
from ..execution.sources import VoteAttribution
from ..log import get_logger
from .settings import FailoverConfig

__all__ = ["FailoverBackend", "ProcessEngine", "LinkDown", "BackendUnavailable", "Switch",
           "BACKEND_CHOICES", "HARDWARE_BACKENDS", "choose_backend", "open_primary_factory",
           "build_backend", "link_options"]

#: What ``--backend`` accepts.  ``auto`` = the virtual board when available, else software.
BACKEND_CHOICES = ("auto", "software", "sim", "board")
#: Orchestrator backend name -> name in sigfuse.engine's registry.
HARDWARE_BACKENDS = {"sim": "sim", "board": "board"}

#: What a dead or silent primary raises, whatever the transport.
_LINK_ERRORS = (ConnectionError, TimeoutError, EOFError, OSError)


class LinkDown(ConnectionError):
    """The primary backend stopped answering (link closed, device gone, or timed out)."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot be opened on this installation."""


@dataclass(frozen=True)
class Switch:
    """One failover or failback, as logged."""
    kind: Literal["failover", "failback"]
    wall_time: float
    #: From the start of the failed call to the exception (failover), or 0.
    detect_s: float
    #: From the decision to switch until the new active backend had answered.
    switch_s: float
    #: Signals replayed (failover: the unacknowledged ones) or warmed up (failback).
    signals: int
    #: Pops replayed (failover) or decisions carried over (failback).
    decisions: int
    reason: str


class FailoverBackend(FusionBackend):
    """A primary backend with the software engine as hot standby (see the module docstring).

    ``primary_factory`` opens a new primary for :meth:`restart_primary`; ``on_switch`` is called
    after every failover and failback (the orchestrator reports it to the health monitor).
    """

    name = "failover"

    def __init__(self, fallback: ReferenceEngine, primary: FusionBackend | None = None, *,
                 primary_factory: Callable[[], FusionBackend] | None = None,
                 config: FailoverConfig | None = None,
                 on_switch: Callable[[Switch], None] | None = None) -> None:
        super().__init__(fallback.params, capacity=fallback.capacity, pair_slots=fallback.pair_slots)
        self.config = config or FailoverConfig()
        self.fallback = fallback
        self.primary = primary
        self.primary_factory = primary_factory
        self.primary_name = getattr(primary, "name", None) if primary is not None else None
        self.on_switch = on_switch
        self.attribution = VoteAttribution(fallback.fusion)
        self._candidate: FusionBackend | None = None
        self._good_probes = 0
        self._carry: deque[Decision] = deque()
        self._recent: deque[Signal] = deque(maxlen=self.config.replay_log_events)
        self._down_since: float | None = None
        #: Fail back after the first good probe (the optimizer's performance mode sets it).
        self.prefer_primary = False
        self._switch_lock = threading.Lock()
        self.switches: list[Switch] = []
        self.counters = {
            "batches": 0, "signals": 0, "signals_primary": 0, "signals_software": 0,
            "replayed_signals": 0, "replayed_pops": 0, "failovers": 0, "failbacks": 0,
            "failback_aborts": 0, "restarts": 0, "restart_failures": 0, "probes": 0,
            "probe_failures": 0, "mirror_mismatches": 0, "carried_decisions": 0, "warmup_signals": 0,
        }
        self._log = get_logger("fusion.failover")

    # --- state ---------------------------------------------------------------------------------

    @property
    def active(self) -> str:
        """``primary`` or ``software``."""
        return "primary" if self.primary is not None else "software"

    @property
    def active_name(self) -> str:
        return self.primary_name or "primary" if self.primary is not None else "software"

    @property
    def has_primary(self) -> bool:
        """Whether this backend was built with a primary at all (it may be down now)."""
        return self.primary_factory is not None or self.primary_name is not None

    @property
    def blocking_io(self) -> bool:
        """Whether a call may block on I/O for long (the orchestrator then runs it in a thread)."""
        return self.primary is not None and bool(getattr(self.primary, "blocking_io", False))

    def queue_depth(self) -> int:
        """Decisions waiting: the standby mirrors the primary's queue, so this holds for both."""
        return len(self.fallback.queue) + len(self._carry)

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self.fallback.set_params(params)
        if self.primary is not None:
            try:
                self.primary.set_params(params)
            except _LINK_ERRORS as error:
                self._fail_over(error, (), time.perf_counter())
        if self._candidate is not None:
            self._candidate.set_params(params)

    # --- processing ----------------------------------------------------------------------------

    def process(self, events: Sequence[Event]) -> list[Result]:
        if self._candidate is not None and self._good_probes >= (
                1 if self.prefer_primary else self.config.failback_after_probes):
            # A blocking primary's batches run in a worker thread while probes run on the event
            # loop: the candidate changes hands under the lock.
            with self._switch_lock:
                if self._candidate is not None:
                    self._fail_back()
        self.counters["batches"] += 1
        carried, events = self._answer_from_carry(events)
        signal_count = 0
        recent = self._recent
        for event in events:
            if type(event) is Signal:
                signal_count += 1
                recent.append(event)
        self.counters["signals"] += signal_count
        self._prune_recent()
        primary = self.primary
        if primary is None:
            self.counters["signals_software"] += signal_count
            return carried + self._run_fallback(events)
        started = time.perf_counter()
        try:
            results = primary.process(events)
        except _LINK_ERRORS as error:
            results = self._fail_over(error, events, started)
            return carried + results
        self.counters["signals_primary"] += signal_count
        mirrored = self._run_fallback(events)
        if mirrored != results:
            self.counters["mirror_mismatches"] += 1
            self._log.error("mirror_mismatch", backend=self.primary_name, events=len(events),
                            primary_results=len(results), software_results=len(mirrored))
        return carried + results

    def _run_fallback(self, events: Sequence[Event]) -> list[Result]:
        # One event at a time, so each decision's voters are read the moment it is emitted
        # (see sigfuse.execution.sources.process_with_attribution).
        process = self.fallback.process
        record = self.attribution.record_results
        results: list[Result] = []
        for event in events:
            batch = process((event,))
            if type(event) is Signal and batch:
                record(batch)
            results.extend(batch)
        return results

    def _answer_from_carry(self, events: Sequence[Event]) -> tuple[list[Result], Sequence[Event]]:
        if not self._carry:
            return [], events
        carried: list[Result] = []
        rest: list[Event] = []
        for event in events:
            if type(event) is Pop and self._carry:
                carried.append(Popped(self._carry.popleft()))
            else:
                rest.append(event)
        return carried, rest

    def _warmup_window_us(self) -> int:
        window = self.config.warmup_window_us
        return self.params.vote_ttl_us + self.params.cooldown_us if window is None else window

    def _prune_recent(self) -> None:
        recent = self._recent
        if recent:
            horizon = recent[-1].ts_us - self._warmup_window_us()
            while recent and recent[0].ts_us < horizon:
                recent.popleft()

    # --- failover ------------------------------------------------------------------------------

    def _fail_over(self, error: BaseException, events: Sequence[Event], started: float) -> list[Result]:
        detected = time.perf_counter()
        dead, self.primary = self.primary, None
        self._down_since = time.monotonic()
        self._close_quietly(dead)
        replayed_signals = sum(1 for e in events if type(e) is Signal)
        replayed_pops = sum(1 for e in events if type(e) is Pop)
        results = self._run_fallback(events)
        done = time.perf_counter()
        self.counters["failovers"] += 1
        self.counters["replayed_signals"] += replayed_signals
        self.counters["replayed_pops"] += replayed_pops
        self.counters["signals_software"] += replayed_signals
        switch = Switch("failover", time.time(), detected - started, done - detected, replayed_signals,
                        replayed_pops, f"{type(error).__name__}: {error}")
        self.switches.append(switch)
        self._log.warning("failover", backend=self.primary_name, to="software", reason=switch.reason,
                          replayed_signals=replayed_signals, replayed_pops=replayed_pops,
                          detect_ms=round(switch.detect_s * 1e3, 3), switch_ms=round(switch.switch_s * 1e3, 3))
        if self.on_switch is not None:
            self.on_switch(switch)
        return results

    def kill_primary_for_test(self) -> None:  # pragma: no cover - convenience for demos
        """Kill the primary's process (SIGKILL; the stand-in or a virtual board): what a pulled
        cable or a crashed board looks like."""
        kill = getattr(self.primary, "kill", None)
        if kill is not None:
            kill()

    # --- restart and failback ------------------------------------------------------------------

    def restart_primary(self) -> None:
        """Open a new primary (raises when it cannot be opened; the caller backs off).

        The new primary takes over only after ``failback_after_probes`` good :meth:`probe` calls.
        """
        if self.primary is not None:
            return
        if self.primary_factory is None:
            raise BackendUnavailable("no primary to restart")
        with self._switch_lock:
            old, self._candidate = self._candidate, None
        self._close_quietly(old)
        try:
            candidate = self.primary_factory()
            candidate.set_params(self.params)
        except Exception:
            self.counters["restart_failures"] += 1
            raise
        self.counters["restarts"] += 1
        with self._switch_lock:
            self._candidate = candidate
            self._good_probes = 0
        self._log.info("primary_restarted", backend=self.primary_name)

    def probe(self) -> bool:
        """One round trip to the restarted primary (an empty batch).  False when it fails (the
        candidate is dropped and must be restarted again)."""
        with self._switch_lock:
            return self._probe()

    def _probe(self) -> bool:
        candidate = self._candidate
        if candidate is None:
            return False
        self.counters["probes"] += 1
        try:
            ping = getattr(candidate, "ping", None)
            if ping is not None:
                ping()
            else:
                candidate.process(())
        except _LINK_ERRORS as error:
            self.counters["probe_failures"] += 1
            self._log.warning("probe_failed", backend=self.primary_name, reason=f"{type(error).__name__}: {error}")
            self._close_quietly(candidate)
            self._candidate = None
            self._good_probes = 0
            return False
        self._good_probes += 1
        return True

    @property
    def failback_pending(self) -> bool:
        return self._candidate is not None

    def _fail_back(self) -> None:
        candidate = self._candidate
        assert candidate is not None
        started = time.perf_counter()
        old = self.fallback
        warm = list(self._recent)
        fresh = ReferenceEngine(self.params, capacity=self.capacity, pair_slots=self.pair_slots)
        try:
            _warm_up(candidate, warm)
        except _LINK_ERRORS as error:
            self.counters["failback_aborts"] += 1
            self._log.warning("failback_aborted", backend=self.primary_name,
                              reason=f"{type(error).__name__}: {error}")
            self._close_quietly(candidate)
            self._candidate = None
            self._good_probes = 0
            return
        _warm_up(fresh, warm)
        carried = 0
        while (decision := old.pop()) is not None:
            self._carry.append(decision)
            carried += 1
        self.fallback = fresh
        self.attribution.fusion = fresh.fusion
        self.primary, self._candidate = candidate, None
        self._good_probes = 0
        done = time.perf_counter()
        outage_s = time.monotonic() - self._down_since if self._down_since is not None else 0.0
        self._down_since = None
        self.counters["failbacks"] += 1
        self.counters["warmup_signals"] += len(warm)
        self.counters["carried_decisions"] += carried
        switch = Switch("failback", time.time(), 0.0, done - started, len(warm), carried,
                        f"primary healthy after {outage_s:.3f} s")
        self.switches.append(switch)
        self._log.info("failback", backend=self.primary_name, warmup_signals=len(warm),
                       carried_decisions=carried, switch_ms=round(switch.switch_s * 1e3, 3),
                       outage_s=round(outage_s, 3))
        if self.on_switch is not None:
            self.on_switch(switch)

    # --- lifetime ------------------------------------------------------------------------------

    @staticmethod
    def _close_quietly(backend: FusionBackend | None) -> None:
        if backend is None:
            return
        try:
            backend.close()
        except Exception:  # noqa: BLE001 -- a dead link may fail to close in any way
            pass

    def close(self) -> None:
        self._close_quietly(self.primary)
        self._close_quietly(self._candidate)
        self.primary = self._candidate = None
        self.fallback.close()

    def pop(self) -> Decision | None:
        """One pop through :meth:`process` (a :class:`~sigfuse.execution.sources.DecisionSource`)."""
        for result in self.process((Pop(self.fallback.fusion.last_ts),)):
            if type(result) is Popped:
                return result.decision
        return None


def _warm_up(backend: FusionBackend, signals_: Sequence[Signal]) -> None:
    """Feed ``signals_`` and pop every decision they produced (so none of them is executed twice)."""
    if not signals_:
        return
    results = backend.process(list(signals_))
    ts = signals_[-1].ts_us
    emitted = sum(1 for r in results if type(r) is DecisionEmitted)
    while emitted > 0:
        batch = backend.process([Pop(ts)] * min(emitted, 256))
        got = sum(1 for r in batch if type(r) is Popped and r.decision is not None)
        emitted -= len(batch)
        if got < len(batch):
            break


# --- the stand-in primary ---------------------------------------------------------------------

class ProcessEngine(FusionBackend):
    """A stand-in for a board: the reference engine in a child process, reached over two pipes.

    It is a real :class:`FusionBackend` with a board's failure modes -- another process, a byte
    stream, a peer that can vanish (:meth:`kill` sends SIGKILL) or stop answering -- and none of
    a board's speed.  Tests and benchmarks use it to exercise failover cheaply (the virtual board
    is the real thing: :mod:`.simboard`); the demo never offers it as a backend.
    """

    name = "standin"
    blocking_io = False

    def __init__(self, params: FusionParams | None = None, *, capacity: int = 256, pair_slots: int = 256,
                 response_timeout_s: float = 0.5, start_timeout_s: float = 30.0) -> None:
        params = params or FusionParams()
        super().__init__(params, capacity=capacity, pair_slots=pair_slots)
        self.response_timeout_s = response_timeout_s
        self.child = subprocess.Popen(
            [sys.executable, "-m", "sigfuse.orchestrator.backend", str(capacity), str(pair_slots)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        assert self.child.stdin is not None and self.child.stdout is not None
        self._tx = Connection(os.dup(self.child.stdin.fileno()), readable=False)
        self._rx = Connection(os.dup(self.child.stdout.fileno()), writable=False)
        self.child.stdin.close()
        self.child.stdout.close()
        self._call(("params", params), timeout_s=start_timeout_s)

    @property
    def pid(self) -> int:
        return self.child.pid

    def _call(self, message: tuple[Any, ...], *, timeout_s: float | None = None) -> Any:
        try:
            self._tx.send(message)
            if not self._rx.poll(self.response_timeout_s if timeout_s is None else timeout_s):
                raise LinkDown(f"no answer from the stand-in (pid {self.pid}) within "
                               f"{self.response_timeout_s if timeout_s is None else timeout_s} s")
            kind, payload = self._rx.recv()
        except (EOFError, OSError) as error:
            raise LinkDown(f"stand-in (pid {self.pid}) is gone: {type(error).__name__}") from error
        if kind == "error":
            raise LinkDown(f"stand-in failed: {payload}")
        return payload

    def process(self, events: Sequence[Event]) -> list[Result]:
        return self._call(("process", list(events)))

    def ping(self) -> None:
        self._call(("ping", None))

    def set_params(self, params: FusionParams) -> None:
        super().set_params(params)
        self._call(("params", params))

    def kill(self) -> None:
        """SIGKILL the child: the link dies the way a pulled cable or a crashed board does."""
        if self.child.poll() is None:
            os.kill(self.child.pid, signals.SIGKILL)
        self.child.wait()

    def close(self) -> None:
        if self.child.poll() is None:
            try:
                self._tx.send(("close", None))
                self.child.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                self.child.kill()
                self.child.wait()
        for conn in (self._tx, self._rx):
            try:
                conn.close()
            except OSError:
                pass


def _serve(capacity: int, pair_slots: int) -> int:
    """The stand-in's child side: requests on stdin, answers on stdout (pickled, length-prefixed)."""
    # Keep the protocol stream to ourselves: anything printed goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    rx = Connection(os.dup(0), writable=False)
    tx = Connection(out_fd, readable=False)
    engine = ReferenceEngine(capacity=capacity, pair_slots=pair_slots)
    while True:
        try:
            kind, payload = rx.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return 0
        try:
            if kind == "process":
                tx.send(("ok", engine.process(payload)))
            elif kind == "params":
                engine.set_params(payload)
                tx.send(("ok", None))
            elif kind == "ping":
                tx.send(("ok", None))
            elif kind == "close":
                return 0
            else:
                tx.send(("error", f"unknown request {kind!r}"))
        except Exception as error:  # noqa: BLE001 -- reported to the host, which fails over
            tx.send(("error", repr(error)))


# --- choosing and opening backends ------------------------------------------------------------

def hardware_available(kind: str) -> bool:
    """Whether a backend named ``kind`` (``sim``/``board``) is registered in sigfuse.engine
    (``sim`` also needs the Verilator toolchain)."""
    from . import simboard  # noqa: F401 -- registers ``sim``
    name = HARDWARE_BACKENDS[kind]
    if name not in BACKENDS:
        _load_optional_backends()
    if name not in BACKENDS:
        return False
    return kind != "sim" or simboard.toolchain_problem() is None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def choose_backend(requested: str, *, board: str = "icebreaker",
                   progress: Callable[[str], None] | None = None) -> tuple[str, str]:
    """Resolve ``--backend``: returns ``(kind, why)`` with kind ``software``, ``sim`` or ``board``.

    ``auto`` is the virtual ``board`` when the Verilator toolchain is present and the model
    builds (it is built here, cached; ``progress`` hears about a long build), software
    otherwise.  ``sim`` raises :class:`BackendUnavailable` where ``auto`` would fall back.
    """
    if requested == "software":
        return "software", "software reference engine (requested)"
    if requested == "board":
        return "board", "board (requested)"
    if requested not in ("sim", "auto"):
        raise BackendUnavailable(f"unknown backend {requested!r}; choose from {', '.join(BACKEND_CHOICES)}")
    from .simboard import prepare_virtual_board, toolchain_problem
    problem = toolchain_problem()
    if problem is None:
        try:
            prepare_virtual_board(board, progress=progress)
        except Exception as error:  # noqa: BLE001 -- any build failure means "not here"
            problem = f"the virtual {board} did not build ({_first_line(error)})"
    if requested == "sim":
        if problem is not None:
            raise BackendUnavailable(f"--backend sim: the virtual board is not available: {problem}")
        return "sim", f"the virtual {board} (requested; the product core in Verilator)"
    if problem is not None:
        return "software", f"auto: software reference engine -- the virtual board is not available: {problem}"
    return "sim", f"auto: the virtual {board} (the Verilator toolchain is present)"


def link_options(config: FailoverConfig) -> dict[str, object]:
    """How the orchestrator opens a board's link: a batch without an answer within
    ``response_timeout_s`` (after one retransmission when that is safe) is a dead link."""
    return {"timeout": config.response_timeout_s, "retries": 1}


def open_primary_factory(kind: str, params: FusionParams, *, capacity: int, pair_slots: int,
                         url: str | None = None, response_timeout_s: float = 0.5,
                         board: str = "icebreaker") -> Callable[[], FusionBackend]:
    """A function that opens the primary backend ``kind`` (``sim``, ``board``, or ``standin``).

    ``capacity`` and ``pair_slots`` must be the board's (:func:`~.simboard.geometry`).  For
    ``sim`` every call starts a new virtual board -- fresh from reset, as the failback needs --
    on the port of the previous one when that port is free again.
    """
    if kind == "standin":
        return lambda: ProcessEngine(params, capacity=capacity, pair_slots=pair_slots,
                                     response_timeout_s=response_timeout_s)
    if kind not in HARDWARE_BACKENDS:
        raise BackendUnavailable(f"unknown backend {kind!r}")
    from ..engine import open_backend
    from . import simboard  # noqa: F401 -- registers ``sim``
    options: dict[str, object] = link_options(FailoverConfig(response_timeout_s=response_timeout_s))
    if kind == "board":
        if url:
            options["url"] = url
        return lambda: open_backend("board", params, capacity=capacity, pair_slots=pair_slots, **options)
    last_port = [0]

    def open_sim() -> FusionBackend:
        from ..sim.board import VirtualBoardError
        try:
            backend = open_backend("sim", params, capacity=capacity, pair_slots=pair_slots, board=board,
                                   port=last_port[0], **options)
        except VirtualBoardError:
            if not last_port[0]:
                raise
            # The old port is taken (TIME_WAIT, another process): any free one will do.
            backend = open_backend("sim", params, capacity=capacity, pair_slots=pair_slots, board=board,
                                   port=0, **options)
        last_port[0] = getattr(backend, "port", 0)
        return backend

    return open_sim


def build_backend(kind: str, params: FusionParams, *, capacity: int, pair_slots: int,
                  url: str | None = None, config: FailoverConfig | None = None,
                  on_switch: Callable[[Switch], None] | None = None,
                  board: str = "icebreaker") -> FailoverBackend:
    """The orchestrator's backend for ``kind`` (``software``, ``sim``, ``board`` or ``standin``).

    For ``sim`` and ``board`` the queue capacity and pair slots are the board's, whatever
    ``capacity`` and ``pair_slots`` say (they are build parameters of the board): the software
    standby is sized the same, so mirroring stays bit-identical.  Raises
    :class:`BackendUnavailable` when the board cannot be reached or started.
    """
    config = config or FailoverConfig()
    if kind in HARDWARE_BACKENDS:
        from .simboard import geometry
        try:
            geom = geometry(kind, board=board, url=url, link_options=link_options(config))
        except (ValueError, ConnectionError, OSError, RuntimeError) as error:
            raise BackendUnavailable(f"--backend {kind}: {error}") from error
        if (geom.queue_capacity, geom.pair_slots) != (capacity, pair_slots):
            get_logger("fusion.failover").info(
                "board_geometry", backend=kind, board=geom.source, queue_capacity=geom.queue_capacity,
                pair_slots=geom.pair_slots, configured_capacity=capacity, configured_pair_slots=pair_slots)
        capacity, pair_slots = geom.queue_capacity, geom.pair_slots
    fallback = ReferenceEngine(params, capacity=capacity, pair_slots=pair_slots)
    if kind == "software":
        return FailoverBackend(fallback, config=config, on_switch=on_switch)
    factory = open_primary_factory(kind, params, capacity=capacity, pair_slots=pair_slots, url=url,
                                   response_timeout_s=config.response_timeout_s, board=board)
    try:
        primary = factory()
    except BackendUnavailable:
        raise
    except (ValueError, ConnectionError, OSError, RuntimeError) as error:
        raise BackendUnavailable(f"--backend {kind}: {error}") from error
    backend = FailoverBackend(fallback, primary, primary_factory=factory, config=config, on_switch=on_switch)
    backend.primary_name = kind
    return backend


async def process_async(backend: FailoverBackend, events: Sequence[Event]) -> list[Result]:
    """Run a batch, in a worker thread when the active primary may block on I/O."""
    if backend.blocking_io:
        return await asyncio.to_thread(backend.process, events)
    return backend.process(events)


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1]), int(sys.argv[2])))
