"""The ``pcie-sim://`` model: :class:`~sigfuse.gateware.pcie.PcieCore` under Verilator, with
``sim/harness/pcie.cpp`` playing the PCIe core's MMIO and DMA over a shared file.

::

    with PcieSimModel("/tmp/board.bar", pair_slots=16, capacity=16) as model:
        with open_pcie(model.url) as transport:
            ...

The file holds the register window and the host memory the rings live in
(:data:`sigfuse.bar.SIM_HOST_MEMORY_OFFSET`); :meth:`PcieSimModel.start` creates it zeroed, so
a file left by an earlier model is never mistaken for a live one (the model's process ID is in
the window).  The build is cached (:func:`sigfuse.sim.verilator.build_verilated`).
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import threading
import time
from pathlib import Path

from ..bar import BAR, BAR_MAGIC, HEADER_PATH, SIM_HOST_MEMORY_OFFSET, ring_layout

__all__ = ["PcieSimModel", "build_pcie_model", "HARNESS", "DEFAULT_HOST_MEMORY"]

HARNESS = Path(__file__).resolve().parent / "harness" / "pcie.cpp"
#: Host memory of a model file: room for the transport's default rings.
DEFAULT_HOST_MEMORY = ring_layout().size

_VERILOG_LOCK = threading.Lock()


def _pcie_verilog(pair_slots: int, capacity: int) -> str:
    """Verilog of the PCIe core, cached on disk by a digest of the gateware and contract sources
    (converting takes seconds)."""
    import amaranth

    from .. import bar, contract, protocol, regmap
    from ..gateware import pcie
    from .verilator import build_dir

    gateware = Path(pcie.__file__).resolve().parent
    digest = hashlib.sha256(f"{amaranth.__version__} {pair_slots} {capacity}".encode())
    for path in sorted(gateware.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for module in (bar, contract, protocol, regmap):
        digest.update(Path(module.__file__).read_bytes())
    path = build_dir() / "verilog" / f"sigfuse_pcie-{pair_slots}-{capacity}-{digest.hexdigest()[:16]}.v"
    with _VERILOG_LOCK:
        if path.exists():
            return path.read_text()
        verilog = pcie.verilog_source(pair_slots, capacity)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        partial.write_text(verilog)
        partial.replace(path)
        return verilog


def build_pcie_model(pair_slots: int, capacity: int):
    """The Verilated PCIe core with its harness (cached)."""
    from ..gateware.datapath import check_build_parameters
    from .verilator import build_verilated

    check_build_parameters(pair_slots, capacity)
    header = HEADER_PATH.read_bytes()
    return build_verilated(
        f"sigfuse_pcie-{pair_slots}-{capacity}", _pcie_verilog(pair_slots, capacity),
        "sigfuse_pcie", [HARNESS],
        # The header is not a harness file: its digest in the options rebuilds on any change.
        args=["-MAKEFLAGS", "OPT_FAST=-O2", "-CFLAGS", f"-I{HEADER_PATH.parent}",
              "-CFLAGS", f"-DSIGFUSE_BAR_H_DIGEST=0x{hashlib.sha256(header).hexdigest()[:8]}"])


class PcieSimModel:
    """A running ``pcie-sim://`` model (a context manager: build, start, stop).

    :param path: the shared file (created, zeroed, sized for the window and ``host_memory``).
    :param pair_slots, capacity: build parameters of the core.
    :param host_memory: bytes of host memory after the window (where the rings go).
    :param spin_us: how long the model polls without sleeping after activity.
    """

    def __init__(self, path: str | os.PathLike, *, pair_slots: int = 64, capacity: int = 256,
                 host_memory: int = DEFAULT_HOST_MEMORY, spin_us: int = 200) -> None:
        self.path = Path(path)
        self.pair_slots = pair_slots
        self.capacity = capacity
        self.host_memory = host_memory
        self.spin_us = spin_us
        self.process: subprocess.Popen | None = None
        self.model = None

    @property
    def url(self) -> str:
        return f"pcie-sim://{self.path}"

    def build(self):
        if self.model is None:
            self.model = build_pcie_model(self.pair_slots, self.capacity)
        return self.model

    def start(self, timeout: float = 60.0) -> "PcieSimModel":
        if self.running:
            raise RuntimeError(f"the pcie-sim model on {self.path} is already running")
        model = self.build()
        if self.path.exists():
            self.path.unlink()
        with open(self.path, "wb") as f:
            f.truncate(SIM_HOST_MEMORY_OFFSET + self.host_memory)
        self.process = subprocess.Popen([str(model.executable), str(self.path), str(self.spin_us)],
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        fd = os.open(self.path, os.O_RDONLY)
        try:
            while True:
                window = os.pread(fd, BAR["model_pid"] + 4, 0)
                magic = struct.unpack_from("<I", window, BAR["bar_magic"])[0]
                pid = struct.unpack_from("<I", window, BAR["model_pid"])[0]
                if magic == BAR_MAGIC and pid == self.process.pid:
                    return self
                if self.process.poll() is not None:
                    raise RuntimeError(f"pcie-sim model exited with status {self.process.returncode}"
                                       " before its window came up")
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError("pcie-sim model did not bring its window up")
                time.sleep(0.005)
        finally:
            os.close(fd)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (the model marks its window gone), then wait; SIGKILL if it hangs."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int | None:
        """SIGKILL: the model dies without a word (a device that vanished)."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.kill()
        return process.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "PcieSimModel":
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
