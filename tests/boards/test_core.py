"""The product core: its build ID names exactly the sources it is made of."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

from amaranth.hdl import Fragment

from sigfuse.gateware.core import DESIGN_SOURCES, SigfuseCore, build_id, core_parameters


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
    assert base.engine == "serial"
    ids = {build_id(base)}
    for changed in (replace(base, pair_slots=32), replace(base, queue_capacity=64),
                    replace(base, clk_hz=50_000_000), replace(base, uart_divisor=16),
                    replace(base, ram_style="distributed"), replace(base, engine="pipeline")):
        ids.add(build_id(changed))
    assert len(ids) == 7
    assert build_id(base) == build_id(core_parameters("icebreaker", 48_000_000, None))


def test_core_elaborates_with_byte_streams_and_with_a_uart():
    for baud in (None, 3_000_000):
        core = SigfuseCore(core_parameters("icebreaker", 48_000_000, baud))
        members = set(core.signature.members)
        assert ("rx_bytes" in members) == (baud is None)
        assert ("uart_rx" in members) == (baud is not None)
        assert core.parameters.uart_divisor == (16 if baud else 0)
        Fragment.get(core, None)


def test_engine_is_checked_and_chosen_per_board():
    import pytest

    from sigfuse.gateware.core import BOARD_PARAMETERS, CoreParameters
    from sigfuse.gateware.fusion import FusionPipeline
    from sigfuse.gateware.fusion_serial import SerialFusion
    from sigfuse.link.sim import parse_sim_url

    with pytest.raises(ValueError, match="engine must be one of pipeline, serial"):
        CoreParameters(16, 32, 48_000_000, 0, engine="systolic")
    assert BOARD_PARAMETERS["icebreaker"].engine == "serial"
    assert BOARD_PARAMETERS["ulx3s"].engine == "pipeline"
    assert parse_sim_url("amaranth-sim://icebreaker").engine == "serial"
    assert parse_sim_url("amaranth-sim://icebreaker?engine=pipeline").engine == "pipeline"
    with pytest.raises(ValueError, match="engine must be one of"):
        parse_sim_url("amaranth-sim://icebreaker?engine=heap")
    for parameters, engine in ((core_parameters("icebreaker", 48_000_000, None), SerialFusion),
                               (core_parameters("ulx3s", 30_000_000, None), FusionPipeline)):
        fragment = Fragment.get(SigfuseCore(parameters), None)
        fusion = [sub for sub, name, _ in fragment.subfragments if name == "fusion"]
        assert len(fusion) == 1 and any(isinstance(o, engine) for o in fusion[0].origins)
