"""The product core: its build ID names exactly the sources it is made of."""

from __future__ import annotations

import subprocess
import sys

from amaranth.hdl import Fragment

from sigfuse.gateware.core import (DESIGN_SOURCES, CoreParameters, SigfuseCore, build_id,
                                   core_parameters)


def test_design_sources_cover_every_module_the_core_imports():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, sigfuse.gateware.core; "
         "print('\\n'.join(m for m in sys.modules if m.startswith('sigfuse.')))"],
        capture_output=True, text=True, check=True).stdout.split()
    listed = {f"{package}.{name[:-3]}" for package, name in DESIGN_SOURCES}
    imported = {m for m in loaded if m.startswith("sigfuse.gateware.")
                or m in ("sigfuse.contract", "sigfuse.protocol", "sigfuse.regmap")}
    imported -= {"sigfuse.gateware"}
    assert imported <= listed, f"not in DESIGN_SOURCES: {sorted(imported - listed)}"


def test_build_id_depends_on_every_build_parameter():
    base = core_parameters("icebreaker", 48_000_000, None)
    ids = {build_id(base)}
    for changed in (CoreParameters(32, 32, 48_000_000, 0), CoreParameters(16, 64, 48_000_000, 0),
                    CoreParameters(16, 32, 50_000_000, 0), CoreParameters(16, 32, 48_000_000, 16),
                    CoreParameters(16, 32, 48_000_000, 0, ram_style="distributed")):
        ids.add(build_id(changed))
    assert len(ids) == 6
    assert build_id(base) == build_id(core_parameters("icebreaker", 48_000_000, None))


def test_core_elaborates_with_byte_streams_and_with_a_uart():
    for baud in (None, 3_000_000):
        core = SigfuseCore(core_parameters("icebreaker", 48_000_000, baud))
        members = set(core.signature.members)
        assert ("rx_bytes" in members) == (baud is None)
        assert ("uart_rx" in members) == (baud is not None)
        assert core.parameters.uart_divisor == (16 if baud else 0)
        Fragment.get(core, None)
