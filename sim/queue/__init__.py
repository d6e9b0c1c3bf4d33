"""Verification of the gateware priority queue: the clock-level reference model and stimulus
(shared by the Amaranth and cocotb testbenches) and the cocotb testbench itself."""
