"""Golden trace vectors: hand-derived scenarios that every backend must reproduce byte for byte.

A vector is a group of files in this folder sharing a name (each one derived in
``docs/fusion.md``, "Worked examples"):

=====================  ==========================================================================
``NAME.in.jsonl``      input events (required)
``NAME.out.jsonl``     expected output, byte for byte (required)
``NAME.yaml``          configuration passed as ``--config`` (optional)
``NAME.err``           expected stderr (optional); such a vector ends on a malformed input line,
                       so ``sigfuse trace`` must exit with status 2 after writing the output of
                       the events before it
=====================  ==========================================================================

A backend's tests reuse the list and the runners, changing only ``backend=``::

    from vectors import VECTORS

    @pytest.mark.parametrize("vector", VECTORS, ids=str)
    def test_amaranth_vectors(vector, tmp_path):
        vector.check(vector.run_in_process(tmp_path, backend="amaranth"))

Runs never see the caller's ``SIGFUSE_*`` environment overrides: a vector's configuration is
its ``.yaml`` and the defaults, nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

__all__ = ["VECTOR_DIR", "Vector", "TraceRun", "iter_vectors", "VECTORS", "EXIT_INPUT_ERROR",
           "vector_file_names", "sigfuse_command", "clean_environ"]

VECTOR_DIR = Path(__file__).resolve().parent

#: Exit status of ``sigfuse trace`` on a malformed input line.
EXIT_INPUT_ERROR = 2

_ENV_PREFIX = "SIGFUSE_"
_SUFFIXES = (".in.jsonl", ".out.jsonl", ".yaml", ".err")


@dataclass(frozen=True)
class TraceRun:
    """What one ``sigfuse trace`` run produced."""
    status: int
    output: bytes
    stderr: str


@dataclass(frozen=True)
class Vector:
    """One test vector: its input, its expected results, and how to run it."""
    name: str
    input_path: Path
    expected_path: Path
    config_path: Path | None = None
    error_path: Path | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def expected_output(self) -> bytes:
        return self.expected_path.read_bytes()

    @property
    def expected_stderr(self) -> str:
        return self.error_path.read_text(encoding="utf-8") if self.error_path else ""

    @property
    def expected_status(self) -> int:
        return EXIT_INPUT_ERROR if self.error_path else 0

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.input_path, self.expected_path, self.config_path,
                                 self.error_path) if p is not None)

    def trace_args(self, *, backend: str = "reference", in_path: str | None = None,
                   out_path: str = "-", extra: Sequence[str] = ()) -> list[str]:
        """Arguments after ``sigfuse``: ``trace --backend B [--config Y] --in I --out O ...``
        (``--in`` defaults to the vector's input file)."""
        args = ["trace", "--backend", backend]
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        in_path = str(self.input_path) if in_path is None else in_path
        return [*args, "--in", in_path, "--out", out_path, *extra]

    def run_in_process(self, out_dir: Path, *, backend: str = "reference",
                       extra: Sequence[str] = ()) -> TraceRun:
        """Run through ``sigfuse.cli.main`` in this interpreter, output to a file in ``out_dir``."""
        from sigfuse.cli import main
        out_path = Path(out_dir) / f"{self.name}.{backend}.out.jsonl"
        stderr = io.StringIO()
        with _without_overrides(), contextlib.redirect_stderr(stderr):
            status = main(self.trace_args(backend=backend, out_path=str(out_path), extra=extra))
        output = out_path.read_bytes() if out_path.exists() else b""
        return TraceRun(status, output, stderr.getvalue())

    def start_subprocess(self, *, backend: str = "reference", command: Sequence[str] | None = None,
                         extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """Start ``sigfuse trace`` as a real process reading the input on stdin, writing stdout.

        Collect the result with :meth:`finish_subprocess`; starting several before finishing any
        runs them in parallel.
        """
        argv = [*(command or sigfuse_command()),
                *self.trace_args(backend=backend, in_path="-", out_path="-", extra=extra)]
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean_environ())

    def finish_subprocess(self, process: subprocess.Popen[bytes], timeout: float = 60) -> TraceRun:
        stdout, stderr = process.communicate(self.input_path.read_bytes(), timeout=timeout)
        return TraceRun(process.returncode, stdout, stderr.decode("utf-8"))

    def check(self, run: TraceRun) -> None:
        """Assert that ``run`` is exactly what this vector expects (status, output, stderr)."""
        expected = self.expected_output
        if run.output != expected:
            raise AssertionError(f"vector {self.name}: output differs from "
                                 f"{self.expected_path.name}\n{_first_difference(expected, run.output)}")
        if run.stderr != self.expected_stderr:
            raise AssertionError(f"vector {self.name}: stderr {run.stderr!r}, "
                                 f"expected {self.expected_stderr!r}")
        if run.status != self.expected_status:
            raise AssertionError(f"vector {self.name}: exit status {run.status}, "
                                 f"expected {self.expected_status}")


def iter_vectors(directory: Path = VECTOR_DIR) -> Iterator[Vector]:
    """Every vector in ``directory``, by name."""
    for input_path in sorted(directory.glob("*.in.jsonl")):
        name = input_path.name[: -len(".in.jsonl")]
        config = directory / f"{name}.yaml"
        error = directory / f"{name}.err"
        yield Vector(name, input_path, directory / f"{name}.out.jsonl",
                     config if config.exists() else None, error if error.exists() else None)


#: The vectors, loaded once (parametrize with ``ids=str``).
VECTORS: tuple[Vector, ...] = tuple(iter_vectors())


def vector_file_names(directory: Path = VECTOR_DIR) -> set[str]:
    """Names of the files in ``directory`` that belong to vectors (by suffix)."""
    return {p.name for p in directory.iterdir() if p.name.endswith(_SUFFIXES)}


def sigfuse_command() -> list[str]:
    """The installed ``sigfuse`` console script of this interpreter's environment, or
    ``python -m sigfuse.cli`` when there is none."""
    script = Path(sys.executable).parent / ("sigfuse.exe" if os.name == "nt" else "sigfuse")
    return [str(script)] if script.exists() else [sys.executable, "-m", "sigfuse.cli"]


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default ``os.environ``) without ``SIGFUSE_*`` configuration overrides."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if not k.startswith(_ENV_PREFIX)}


@contextlib.contextmanager
def _without_overrides() -> Iterator[None]:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(_ENV_PREFIX)}
    try:
        yield
    finally:
        os.environ.update(saved)


def _first_difference(expected: bytes, actual: bytes) -> str:
    want, got = expected.decode("utf-8", "replace").splitlines(), actual.decode("utf-8", "replace").splitlines()
    for number, (a, b) in enumerate(zip(want, got), 1):
        if a != b:
            return f"line {number}:\n  expected {a}\n  actual   {b}"
    if len(want) != len(got):
        return f"expected {len(want)} lines, got {len(got)}"
    return "same lines, different bytes (line endings or final newline)"
