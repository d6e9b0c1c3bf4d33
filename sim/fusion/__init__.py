"""Verification of the gateware fusion pipeline: constrained-random stimulus and coverage
(``model``), the cocotb testbench (``tb``) and its tests (``tests``), checked against the
reference :class:`sigfuse.fusion.FusionEngine`."""
