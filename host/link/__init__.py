"""How the host talks to a board, real or simulated, without caring which.

:class:`~.transport.Transport` is the one abstraction: command-level operations (ping, register
reads and writes, signal pushes, pops, a stats snapshot) with implementations over a UART link
(pyserial URLs: ``/dev/ttyUSB1``, ``socket://`` to the virtual board, ``loop://``,
``ftdi://``), over PCIe (``pcie://``, and ``pcie-sim://`` for the shared-memory BAR model) and
in-process Amaranth simulation.  :class:`~.board.Board` is the API a user holds.
"""

import logging

from .transport import LinkCounters, LinkError, LinkTimeout, DeviceGone, Transport

__all__ = ["LinkCounters", "LinkError", "LinkTimeout", "DeviceGone", "Transport"]

# Library practice: warnings about retransmissions and lost frames go wherever the application
# sends its logs (sigfuse.log), never to stderr by default.
logging.getLogger(__name__).addHandler(logging.NullHandler())
