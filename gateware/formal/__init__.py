"""Formal verification harnesses (SymbiYosys) for the gateware."""
