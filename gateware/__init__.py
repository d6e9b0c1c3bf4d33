"""Amaranth gateware of sigfuse: the fusion pipeline and the priority queue."""
