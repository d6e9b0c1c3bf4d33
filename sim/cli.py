"""``sigfuse sim board``: run a virtual board until stopped.

Builds the board model (cached), starts the harness, prints the URL to give a host
(``socket://127.0.0.1:PORT``) on stdout, and runs until SIGINT or SIGTERM, which it forwards
to the harness; the harness closes its sockets and prints its summary on stderr.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

__all__ = ["add_sim_command", "cmd_sim_board"]


def _listen_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def cmd_sim_board(args: argparse.Namespace) -> int:
    from ..cli import UserError
    from .board import VirtualBoard, build_board
    from .verilator import VerilatorBuildError

    host, port = args.listen
    print(f"sigfuse sim board: building the virtual {args.board} (Verilator; cached after the "
          "first build, which takes a minute or two)...", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        build = build_board(args.board)
    except VerilatorBuildError as error:
        raise UserError(str(error)) from None
    p = build.parameters
    print(f"sigfuse sim board: {'built' if build.model.built else 'cached'} in "
          f"{time.monotonic() - started:.1f} s: build_id 0x{build.build_id:08x}, "
          f"{p.pair_slots} pair slots, {p.queue_capacity}-entry queue, clk_hz {p.clk_hz}",
          file=sys.stderr, flush=True)

    board = VirtualBoard(args.board, host, port, allow_remote=args.allow_remote,
                         baud=args.baud or None)
    # The harness writes its summary straight to our stderr when it stops.
    board.build = build
    stop = {"signal": None}

    def forward(signum, frame) -> None:
        stop["signal"] = signum
        if board.alive:
            board._process.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            process = subprocess.Popen(board.command(), stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=None)
        except OSError as error:
            raise UserError(f"cannot start the virtual board: {error}") from None
        board._process = process
        url = process.stdout.readline().decode(errors="replace").strip()
        if not url.startswith("socket://"):
            status = process.wait()
            raise UserError(f"the virtual {args.board} did not start (status {status})")
        print(url, flush=True)
        print(f"sigfuse sim board: virtual {args.board} listening at {url}; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        while True:
            try:
                status = process.wait()
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries wait() itself
                continue
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if status != 0:
        raise UserError(f"the virtual {args.board} exited with status {status}")
    return 0


def add_sim_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sigfuse sim`` (``sim board``) to the ``sigfuse`` command's subparsers."""
    from ..boards.common import BOARD_NAMES
    parser = subparsers.add_parser("sim", help="simulated hardware (the virtual board)")
    actions = parser.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    board = actions.add_parser(
        "board", help="run a virtual board (Verilator) behind a TCP socket",
        description="Build (cached) the product core of a board with Verilator and a C++ harness "
                    "that drives the clock itself and bridges the link to TCP; print the URL to "
                    "give a host (socket://HOST:PORT) and run until SIGINT/SIGTERM.  Simulated "
                    "time stops while the board is idle, so uptime counts simulated clocks.")
    board.add_argument("--board", default="icebreaker", choices=BOARD_NAMES,
                       help="the board whose product build to simulate (default icebreaker)")
    board.add_argument("--listen", type=_listen_address, default=("127.0.0.1", 0),
                       metavar="HOST:PORT",
                       help="where to listen (default 127.0.0.1:0, a free port)")
    board.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback listen address (the link has no authentication)")
    board.add_argument("--baud", type=int, default=0, metavar="BAUD",
                       help="pace the link at this UART baud (8N1) in simulated time, both "
                            "directions (default: unpaced, bytes go in whenever the core is ready)")
    board.set_defaults(func=cmd_sim_board)
    return parser
