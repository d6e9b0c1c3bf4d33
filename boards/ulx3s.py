"""ULX3S (ECP5 LFE5U-85F, CABGA381): 25 MHz oscillator, FT231X USB UART, 8 LEDs.

* ``sync`` runs at 30 MHz from EHXPLLL: 3 Mbaud (the FT231X maximum) is exactly 10 clocks per
  bit.  The product core's Fmax on the −6 part moves with every change of the design: between
  33.6 and 53.3 MHz over five builds, decided by where the placer puts the long nets (the
  reset, the queue's pop and insert controls) across a half-full chip.  30 MHz is the fastest
  exact-divisor clock below the worst of those, so an unrelated change does not break the
  build; the link needs only a few clocks per byte.  (The 150 MHz of issue 3 needs a deeper
  pipeline than the 6-clock latency allows, docs/fusion-pipeline.md.)
  ``sigfuse build --sync-mhz`` asks for another.
* UART: the ``uart`` resource of ``amaranth-boards`` (FT231X, pins M1/L4).
* LEDs: ``led`` 0 is the heartbeat, ``led`` 1 the link-error blink.
* The ESP32's GPIO0 is held high, as the ULX3S reference designs do "to keep the board from
  rebooting" (the ESP32 shares the board's reset/boot strapping with the FPGA).
* Flashing: openFPGALoader (``sigfuse flash --board ulx3s``).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.build import Attrs, Pins, Platform, Resource
from amaranth.hdl import Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .common import BoardSpec, PowerOnReset

__all__ = ["ECP5PLLParams", "ecp5_pll_params", "ECP5Clocking", "SigfuseULX3SPlatform", "BOARD",
           "OSCILLATOR_HZ"]

OSCILLATOR_HZ = 25_000_000


@dataclass(frozen=True)
class ECP5PLLParams:
    """EHXPLLL settings, feedback from CLKOP: f_out = f_in / CLKI_DIV * CLKFB_DIV."""
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: int
    f_out: float

    @property
    def f_vco(self) -> float:
        return self.f_out * self.clkop_div


def ecp5_pll_params(f_in: int, f_out: int) -> ECP5PLLParams:
    """The EHXPLLL settings closest to ``f_out`` (PFD 3.125..400 MHz, VCO 400..800 MHz, as
    ``ecppll``; output 3.125..400 MHz); among exact ones, the VCO nearest 600 MHz, mid-range,
    for the least jitter."""
    if not 3.125e6 <= f_out <= 400e6:
        raise ValueError(f"the ECP5 PLL cannot make {f_out / 1e6:.3f} MHz: CLKOP's range is "
                         f"3.125..400 MHz")
    best: ECP5PLLParams | None = None

    def score(p: ECP5PLLParams) -> tuple[float, float]:
        return abs(p.f_out - f_out), abs(p.f_vco - 600e6)

    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            achieved = f_pfd * clkfb_div
            for clkop_div in range(1, 129):
                if not 400e6 <= achieved * clkop_div <= 800e6:
                    continue
                candidate = ECP5PLLParams(clki_div, clkfb_div, clkop_div, f_in, achieved)
                if best is None or score(candidate) < score(best):
                    best = candidate
    if best is None or abs(best.f_out - f_out) / f_out > 0.01:
        nearest = f"; nearest is {best.f_out / 1e6:.3f} MHz" if best else ""
        raise ValueError(f"the ECP5 PLL cannot make {f_out / 1e6:.3f} MHz from "
                         f"{f_in / 1e6:.3f} MHz{nearest}")
    return best


class ECP5Clocking(Elaboratable):
    """``sync`` from EHXPLLL fed by the 25 MHz oscillator."""

    def __init__(self, frequency: int) -> None:
        self.params = ecp5_pll_params(OSCILLATOR_HZ, frequency)
        self.frequency = round(self.params.f_out)

    def elaborate(self, platform) -> Module:
        m = Module()
        pad = platform.request("clk25", 0, dir="-")
        m.submodules.clk25 = clk25 = io.Buffer("i", pad)
        clock = Signal()
        locked = Signal()
        p = self.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            # nextpnr and Diamond read these to time the PLL and size its loop filter.
            a_FREQUENCY_PIN_CLKI=f"{OSCILLATOR_HZ / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.f_out / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div, p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=p.clkop_div,
            # Zero phase: the coarse phase counter is one less than the divider.
            p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0,
            i_CLKI=clk25.i, i_CLKFB=clock, o_CLKOP=clock, o_LOCK=locked,
            i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
            i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
        )
        m.submodules.por = PowerOnReset(clock, locked, delay=int(15e-6 * self.frequency))
        return m


class SigfuseULX3SPlatform(ULX3S_85F_Platform):
    """The amaranth-boards ULX3S-85F; sigfuse uses its ``uart`` and ``led`` 0/1, plus the
    ESP32's GPIO0 alone (amaranth-boards only has the whole ESP32 bundle)."""
    resources = ULX3S_85F_Platform.resources + [
        Resource("esp32_gpio0", 0, Pins("L2", dir="o"), Attrs(IO_TYPE="LVCMOS33", PULLMODE="UP")),
    ]


def _hold_esp32_gpio0(platform: Platform, m: Module) -> None:
    m.submodules.esp32_gpio0 = gpio0 = io.Buffer("o", platform.request("esp32_gpio0", 0, dir="-"))
    m.d.comb += gpio0.o.eq(1)


BOARD = BoardSpec(
    name="ulx3s",
    description="ULX3S (ECP5 LFE5U-85F, FT231X)",
    platform=SigfuseULX3SPlatform,
    clock_generator=ECP5Clocking,
    sync_hz=30_000_000,
    uart_baud=3_000_000,
    heartbeat_led=("led", 0),
    link_error_led=("led", 1),
    bitstream_suffix=".bit",
    fixups=_hold_esp32_gpio0,
    # router2 routes the product core in about a quarter of router1's time (4 min against 16 on
    # this machine), which keeps its build inside `make test`'s budget.
    nextpnr_opts="--router router2",
)
