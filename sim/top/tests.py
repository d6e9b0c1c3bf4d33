"""cocotb tests of the product core (run by ``sigfuse.sim.runner``; see :mod:`sigfuse.sim.top`).

Both take their work from files the pytest side writes and leave the core's output in a file
for the pytest side to check against the model, so the expected replies are computed once, in
the test process:

* ``play_stimulus`` (byte-level harness): plusargs ``+STIM +STIM_LEN +OUT``; environment
  ``SIGFUSE_STIM_BUDGET_NS`` (simulated-time limit: nothing may hang) and
  ``SIGFUSE_STIM_BYTES`` (bytes the link must take).
* ``uart_session`` (the core with its UART pins): environment ``SIGFUSE_UART_SESSION`` (a JSON
  file: ``divisor`` and ``commands``, each ``wire`` hex, ``replies``, ``bad_stop`` indexes,
  ``sync``) and
  ``SIGFUSE_UART_OUT`` (where the decoded TX bytes go, hex).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb

from .tb import UartCommand, UartSession, await_stimulus


@cocotb.test()
async def play_stimulus(dut):
    figures = await await_stimulus(dut, budget_ns=int(os.environ["SIGFUSE_STIM_BUDGET_NS"]),
                                   expected_bytes=int(os.environ["SIGFUSE_STIM_BYTES"]))
    dut._log.info("stimulus: %d clocks in %.2f s (%.2f M clocks/s)", figures["clocks"],
                  figures["seconds"], figures["mclocks_per_s"])


@cocotb.test()
async def uart_session(dut):
    spec = json.loads(Path(os.environ["SIGFUSE_UART_SESSION"]).read_text())
    commands = [UartCommand(bytes.fromhex(c["wire"]), c["replies"], frozenset(c.get("bad_stop", ())),
                            bool(c.get("sync")))
                for c in spec["commands"]]
    session = UartSession(dut, spec["divisor"])
    started = time.time()
    await session.start()
    try:
        await session.play(commands)
    finally:
        Path(os.environ["SIGFUSE_UART_OUT"]).write_text(session.host.received.hex())
    host = session.host
    dut._log.info("uart: %d commands, %d bytes in, %d bytes / %d frames out in %.2f s",
                  len(commands), sum(len(c.wire) for c in commands), len(host.received),
                  host.frames, time.time() - started)
    assert host.tx_framing_errors == 0, f"{host.tx_framing_errors} bytes from the core had a bad stop bit"
