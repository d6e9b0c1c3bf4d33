"""Amaranth ``lib.data`` layouts derived from the contract's field lists, never retyped.

``SignalLayout`` and ``DecisionLayout`` are built from :data:`sigfuse.contract.SIGNAL_LAYOUT`
and :data:`sigfuse.contract.DECISION_LAYOUT`; :func:`pack` / :func:`unpack` convert between the
contract's NamedTuples and the integer a layout-shaped signal holds, for testbenches.
"""

from __future__ import annotations

from typing import Sequence

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ..contract import DECISION_LAYOUT, SIGNAL_LAYOUT, Decision, Field, Signal

__all__ = ["struct_layout", "SignalLayout", "DecisionLayout", "pack", "unpack"]


def struct_layout(fields: Sequence[Field]) -> data.StructLayout:
    """A ``StructLayout`` with the contract's fields, in order (first field at bit 0)."""
    return data.StructLayout({f.name: (signed(f.width) if f.signed else unsigned(f.width))
                              for f in fields})


SignalLayout = struct_layout(SIGNAL_LAYOUT)
DecisionLayout = struct_layout(DECISION_LAYOUT)


def pack(fields: Sequence[Field], record: Signal | Decision | tuple) -> int:
    """The integer value of ``record`` laid out as ``fields`` (named access on the tuple)."""
    value, offset = 0, 0
    for f in fields:
        raw = getattr(record, f.name) & ((1 << f.width) - 1)
        value |= raw << offset
        offset += f.width
    return value


def unpack(fields: Sequence[Field], value: int) -> dict[str, int]:
    """Field values of a packed record (signed fields sign-extended)."""
    out, offset = {}, 0
    for f in fields:
        raw = (value >> offset) & ((1 << f.width) - 1)
        if f.signed and raw >> (f.width - 1):
            raw -= 1 << f.width
        out[f.name] = raw
        offset += f.width
    return out
