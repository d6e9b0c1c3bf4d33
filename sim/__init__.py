"""Simulation: cocotb testbenches and the Verilator virtual-board harness."""
