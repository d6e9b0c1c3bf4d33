"""The fusion pipeline's runtime registers and reciprocal table, as ``lib.data`` layouts.

``FusionConfigLayout`` has one field per :class:`sigfuse.contract.FusionParams` field, in the
dataclass's order and under the same names, so a parameter set crosses the host/gateware
boundary without being retyped: :func:`config_const` turns a ``FusionParams`` into the value the
``config`` stream of :class:`sigfuse.gateware.fusion.FusionPipeline` carries.

``MaskLayout`` is one entry of the per-mask table the pipeline indexes by the agreeing-source
mask: the fields of :class:`sigfuse.contract.MaskEntry` (W_A, the reciprocal of W_A as mantissa
and shift, and n), as :meth:`sigfuse.contract.FusionParams.mask_table` computes them.
"""

from __future__ import annotations

import dataclasses

from amaranth.hdl import unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..contract import (BOOST_MAX, CONF_FRAC_BITS, DURATION_BITS, RECIP_BITS, SOURCE_SLOTS,
                        FusionParams, MaskEntry)

__all__ = ["PARAM_BITS", "WEIGHT_SUM_BITS", "RECIP_MANTISSA_BITS", "RECIP_SHIFT_BITS",
           "FusionConfigLayout", "MaskLayout", "config_const", "mask_entries", "ARRAY_FIELDS",
           "ARRAY_WORDS", "array_index", "ParamReadSignature"]

#: UQ1.15 quantities need 16 bits (1.0 = 0x8000 is representable); boosts are UQ2.14 in 16 bits.
_Q15_BITS = CONF_FRAC_BITS + 1
_BOOST_BITS = BOOST_MAX.bit_length()

#: Register width of each FusionParams field (tuple fields are arrays over the source slots).
PARAM_BITS: dict[str, int] = {
    "weights": _Q15_BITS,
    "consensus_threshold": _Q15_BITS,
    "quorum": _Q15_BITS,
    "min_confidence": _Q15_BITS,
    "vote_ttl_us": DURATION_BITS,
    "cooldown_us": DURATION_BITS,
    "boost": _BOOST_BITS,
}

#: The parameters that are arrays over the source slots, in the order of :func:`array_index`.
ARRAY_FIELDS = ("weights", "boost")
#: Words of the arrays, one per (field, source slot).
ARRAY_WORDS = len(ARRAY_FIELDS) * SOURCE_SLOTS
_ARRAY_BITS = max(PARAM_BITS[name] for name in ARRAY_FIELDS)


def array_index(field: str, slot: int) -> int:
    """Where ``field[slot]`` is in an array memory read through :data:`ParamReadSignature`."""
    return ARRAY_FIELDS.index(field) * SOURCE_SLOTS + slot


#: A read port on the array parameters (weights and boost), seen from the reader: ``data`` is
#: the word at the ``index`` of the clock before (a block RAM's synchronous read).  The product
#: core's register file keeps the arrays in a block RAM behind such a port instead of in 256
#: flip-flops, for the serial fusion engine, which needs one word per clock anyway.
ParamReadSignature = wiring.Signature({
    "index": Out(range(ARRAY_WORDS)),
    "data": In(_ARRAY_BITS),
})

#: W_A of 8 weights of 16 bits (kept exact even for weights above the contract's 1.0).
WEIGHT_SUM_BITS = (SOURCE_SLOTS * ((1 << _Q15_BITS) - 1)).bit_length()
#: mantissa = ceil(2**(s + RECIP_BITS) / W_A) lies in [2**16, 2**17]: 18 bits.
RECIP_MANTISSA_BITS = RECIP_BITS + 2
#: s = bit length of W_A, at most WEIGHT_SUM_BITS.
RECIP_SHIFT_BITS = WEIGHT_SUM_BITS.bit_length()


def _config_layout() -> data.StructLayout:
    fields = {}
    for f in dataclasses.fields(FusionParams):
        if f.name not in PARAM_BITS:
            raise TypeError(f"FusionParams.{f.name} has no register width in PARAM_BITS")
        shape = unsigned(PARAM_BITS[f.name])
        fields[f.name] = data.ArrayLayout(shape, SOURCE_SLOTS) if f.name in ARRAY_FIELDS else shape
    return data.StructLayout(fields)


#: Every contract parameter, as the pipeline's registers hold it.
FusionConfigLayout = _config_layout()

_MASK_FIELD_SHAPES = {
    "weight_sum": unsigned(WEIGHT_SUM_BITS),
    "mantissa": unsigned(RECIP_MANTISSA_BITS),
    "shift": unsigned(RECIP_SHIFT_BITS),
    "n": unsigned(SOURCE_SLOTS.bit_length()),
}
#: One entry of the per-mask table, field for field a :class:`sigfuse.contract.MaskEntry`.
MaskLayout = data.StructLayout({name: _MASK_FIELD_SHAPES[name] for name in MaskEntry._fields})


def config_const(params: FusionParams) -> data.Const:
    """``params`` as a constant of :data:`FusionConfigLayout` (for ``ctx.set`` and reset values)."""
    return FusionConfigLayout.const({f.name: list(getattr(params, f.name))
                                     if f.name in ARRAY_FIELDS else getattr(params, f.name)
                                     for f in dataclasses.fields(FusionParams)})


def mask_entries(params: FusionParams) -> list[dict[str, int]]:
    """The 256 entries of the per-mask table for ``params.weights``, exactly what the refresh
    engine writes: :meth:`FusionParams.mask_table` as dicts for :data:`MaskLayout`."""
    return [entry._asdict() for entry in params.mask_table()]
