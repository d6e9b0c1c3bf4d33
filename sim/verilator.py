"""Build Verilator models with their own C++ harness, cached by content.

A harness drives the clock from C++, so a long trace or the virtual board never runs Python
per clock.  A build is keyed by a digest of the Verilog, the harness sources, the Verilator
version and the options; a finished build is reused (within a run and across runs), a
half-written one is never trusted, and concurrent builders of the same model (pytest-xdist
workers) wait for each other on a file lock instead of building twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..toolchain import find_verilator, simulator_env

__all__ = ["VerilatedModel", "build_dir", "build_verilated", "VerilatorBuildError"]


class VerilatorBuildError(RuntimeError):
    pass


def build_dir() -> Path:
    """Where builds go: ``$SIGFUSE_BUILD_DIR``, else the user cache directory."""
    configured = os.environ.get("SIGFUSE_BUILD_DIR")
    if configured:
        return Path(configured)
    import platformdirs
    return Path(platformdirs.user_cache_dir("sigfuse"))


@dataclass(frozen=True)
class VerilatedModel:
    executable: Path
    digest: str
    #: True when this call compiled the model, False when it came from the cache.
    built: bool


def _digest(parts: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.hexdigest()


def build_verilated(name: str, verilog: str, top: str, harness: Sequence[Path], *,
                    args: Sequence[str] = (), jobs: int = 2) -> VerilatedModel:
    """Compile ``verilog`` (module ``top``) with the C++ ``harness`` into an executable.

    Returns the cached executable when an identical build exists.
    """
    verilator = find_verilator()
    if verilator is None:
        raise VerilatorBuildError("no Verilator >= 5.036 found; run `sigfuse doctor`")
    options = ["--cc", "--exe", "--build", "-O3", "--x-assign", "fast", "--x-initial", "fast",
               "-Wno-fatal", "-Wno-lint", "-Wno-style", "--top-module", top, *args]
    digest = _digest([verilog.encode(), *(Path(h).read_bytes() for h in harness),
                      verilator.version_text.encode(), "\0".join(options).encode()])
    root = build_dir() / "verilator"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{name}-{digest[:16]}"
    executable = final / name
    stamp = final / "digest"

    def cached() -> bool:
        return executable.exists() and stamp.exists() and stamp.read_text() == digest

    if cached():
        return VerilatedModel(executable, digest, built=False)
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cached():
            return VerilatedModel(executable, digest, built=False)
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
        try:
            source = work / f"{top}.v"
            source.write_text(verilog)
            copied = []
            for h in harness:
                target = work / Path(h).name
                shutil.copyfile(h, target)
                copied.append(str(target))
            command = [str(verilator.executable), *options, "-j", str(jobs), "--Mdir", str(work / "obj"),
                       "-o", name, str(source), *copied]
            result = subprocess.run(command, cwd=work, env=simulator_env(), capture_output=True,
                                    text=True)
            if result.returncode != 0:
                log = work / "build.log"
                log.write_text(result.stdout + result.stderr)
                tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
                raise VerilatorBuildError(f"Verilator build of {name} failed (log: {log}):\n{tail}")
            shutil.move(str(work / "obj" / name), str(work / name))
            shutil.rmtree(work / "obj", ignore_errors=True)
            (work / "digest").write_text(digest)
            if final.exists():
                shutil.rmtree(final)
            os.replace(work, final)
        except VerilatorBuildError:
            raise  # keep the work folder: its build.log is what the message points at
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return VerilatedModel(executable, digest, built=True)
