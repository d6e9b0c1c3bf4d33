"""iCEBreaker (iCE40UP5K-SG48): 12 MHz oscillator, FT2232H (channel A: SPI flash, channel B: UART).

* ``sync`` runs at 21 MHz from the PLL: 3 Mbaud -- the FT2232H's fastest rate the host
  drivers offer without fractional dividers -- is then exactly 7 clocks per bit.  The product
  core fills ~91 % of the UP5K's logic cells and places and routes at ~25 MHz; 21 MHz is the
  fastest multiple of 3 Mbaud below that with a margin (docs/boards.md).
* UART: the ``uart`` resource of ``amaranth-boards`` (pins 6/9, FT2232H channel B).
* LEDs: green (``led_g``) is the heartbeat, red (``led_r``) the link-error blink.
* Flashing: ``sigfuse flash`` drives channel A (see :mod:`sigfuse.flash`).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Elaboratable, Instance, Module, Signal
from amaranth_boards.icebreaker import ICEBreakerPlatform

from .common import BoardSpec, PowerOnReset

__all__ = ["ICE40PLLParams", "ice40_pll_params", "ICE40Clocking", "SigfuseICEBreakerPlatform",
           "BOARD", "OSCILLATOR_HZ"]

OSCILLATOR_HZ = 12_000_000


@dataclass(frozen=True)
class ICE40PLLParams:
    """SB_PLL40 settings, simple feedback: f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)."""
    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in: int
    f_out: float

    @property
    def f_pfd(self) -> float:
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self) -> float:
        return self.f_pfd * (self.divf + 1)


def ice40_pll_params(f_in: int, f_out: int) -> ICE40PLLParams:
    """The SB_PLL40 settings closest to ``f_out``, searched as ``icepll`` does (PFD 10..133 MHz,
    VCO 533..1066 MHz, DIVQ 1..6, output 16..275 MHz)."""
    if not 16e6 <= f_out <= 275e6:
        raise ValueError(f"the iCE40 PLL cannot make {f_out / 1e6:.3f} MHz: its output range is "
                         f"16..275 MHz")
    best: ICE40PLLParams | None = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                achieved = f_vco / 2 ** divq
                if best is None or abs(achieved - f_out) < abs(best.f_out - f_out):
                    mhz = f_pfd / 1e6
                    # icepll's loop filter table, by PFD frequency.
                    filter_range = (1 if mhz < 17 else 2 if mhz < 26 else 3 if mhz < 44 else
                                    4 if mhz < 66 else 5 if mhz < 101 else 6)
                    best = ICE40PLLParams(divr, divf, divq, filter_range, f_in, achieved)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting makes {f_out} Hz from {f_in} Hz")
    if abs(best.f_out - f_out) / f_out > 0.01:
        raise ValueError(f"the iCE40 PLL cannot make {f_out / 1e6:.3f} MHz from {f_in / 1e6:.3f} MHz; "
                         f"nearest is {best.f_out / 1e6:.3f} MHz")
    return best


class ICE40Clocking(Elaboratable):
    """``sync`` from SB_PLL40_PAD on the 12 MHz pin (35, the PLL's dedicated input pad).

    The pad primitive takes the pin directly, so the 12 MHz clock never enters the fabric; the
    power-on reset therefore counts in the PLL's clock.
    """

    def __init__(self, frequency: int) -> None:
        self.params = ice40_pll_params(OSCILLATOR_HZ, frequency)
        self.frequency = round(self.params.f_out)

    def elaborate(self, platform) -> Module:
        m = Module()
        pad = platform.request("clk12", 0, dir="-")
        clock = Signal()
        locked = Signal()
        p = self.params
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq, p_FILTER_RANGE=p.filter_range,
            i_PACKAGEPIN=pad.io,
            i_RESETB=1, i_BYPASS=0,
            o_PLLOUTGLOBAL=clock, o_LOCK=locked,
        )
        # 15 us, as Amaranth's iCE40 reset: BRAMs read zero for ~3 us after configuration.
        m.submodules.por = PowerOnReset(clock, locked, delay=int(15e-6 * self.frequency))
        return m


class SigfuseICEBreakerPlatform(ICEBreakerPlatform):
    """The amaranth-boards iCEBreaker; sigfuse uses its ``uart``, ``led_g`` and ``led_r``."""


BOARD = BoardSpec(
    name="icebreaker",
    description="iCEBreaker (iCE40UP5K-SG48, FT2232H)",
    platform=SigfuseICEBreakerPlatform,
    clock_generator=ICE40Clocking,
    sync_hz=21_000_000,
    uart_baud=3_000_000,
    heartbeat_led=("led_g", 0),
    link_error_led=("led_r", 0),
    bitstream_suffix=".bin",
    # The fusion engine's multipliers go into the UP5K's SB_MAC16 blocks instead of ~2,000
    # logic cells.
    synth_opts="-dsp",
)
