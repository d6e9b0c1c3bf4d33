"""sigfuse: FPGA-accelerated signal fusion and execution orchestration for trading.

The host package.  The contract (:mod:`sigfuse.contract`) defines records and fixed point; the
reference engine (:mod:`sigfuse.engine`) implements it in software; the gateware
(:mod:`sigfuse.gateware`) implements it in Amaranth.
"""

__version__ = "0.1.0"
