"""Pin harnesses for placing a block alone on an iCE40 (nextpnr-ice40 has no out-of-context
mode, and a block's ports outnumber a package's pins)."""

from amaranth.hdl import Module, Signal, Value

__all__ = ["xor_fold"]


def xor_fold(m: Module, value: Value) -> Value:
    """Fold ``value`` to one bit, four bits per LUT4 per clock through registered levels, so
    that every bit stays observable (nothing is optimized away) and the harness never limits
    Fmax.  Returns the last level (one bit, a register unless ``value`` is one bit)."""
    level = value
    while len(level) > 1:
        folded = Signal((len(level) + 3) // 4)
        m.d.sync += [folded[i].eq(level[4 * i:4 * i + 4].xor()) for i in range(len(folded))]
        level = folded
    return level
