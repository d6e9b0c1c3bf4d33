"""``sigfuse board info|stats|regs``: a board at the terminal (the litex_cli of this project).

The URL comes from ``--url``, else ``link.url`` of the configuration (``--config``, or the
environment override ``SIGFUSE_LINK__URL``), else ``SIGFUSE_BOARD_URL``.  A missing device or a
device that answers wrongly is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_board_command"]

EXIT_USAGE = 2


class _Failure(Exception):
    pass


def _url(args: argparse.Namespace) -> tuple[str, dict]:
    from ..config import ConfigError, load_config
    options: dict = {}
    url = args.url
    try:
        cfg = load_config(args.config)
    except ConfigError as error:
        raise _Failure("; ".join(f"{error.source}: {p}" for p in error.problems)) from None
    url = url or cfg.link.url or os.environ.get("SIGFUSE_BOARD_URL")
    if not url:
        raise _Failure("no board URL: give --url URL, set link.url in the configuration, or "
                       "SIGFUSE_BOARD_URL")
    options.update(timeout=args.timeout if args.timeout is not None else cfg.link.timeout_s,
                   retries=cfg.link.retries)
    if "://" not in url or url.startswith(("socket://", "loop://", "ftdi://", "rfc2217://")):
        options["baudrate"] = cfg.link.baudrate
    return url, options


def _open(args: argparse.Namespace):
    from .board import Board
    url, options = _url(args)
    if url.startswith(("pcie://", "pcie-sim://")):
        options = {k: v for k, v in options.items() if k == "timeout"}
    return Board.open(url, expected_build_id=args.expect_build_id, **options)


def _print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def _console():
    from rich.console import Console
    # Not a terminal (a pipe, a file): wide enough that no table is cut.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def _info(board, args) -> None:
    import time
    identity = board.identity
    start = time.perf_counter()
    board.transport.ping(b"sigfuse")
    rtt_us = (time.perf_counter() - start) * 1e6
    counters = board.counters
    health = {"round_trip_us": round(rtt_us, 1), "commands": counters.commands,
              "retries": counters.retries, "timeouts": counters.timeouts,
              "frames_lost": counters.frames_lost, "frames_bad": counters.frames_bad,
              "bytes_out": counters.bytes_out, "bytes_in": counters.bytes_in}
    stats = board.stats()
    board_side = {k: stats[k] for k in ("frames_ok", "frames_bad_crc", "frames_bad_cobs",
                                        "frames_oversize", "frames_truncated", "frames_seq_gap",
                                        "frames_duplicate", "uart_rx_errors", "uart_rx_overrun")}
    from .board import source_build
    built_from = source_build(identity)
    if args.json:
        _print_json({"url": board.url, "identity": identity.as_dict(),
                     "built_from_these_sources": built_from, "link": health,
                     "board_link": board_side, "uptime_clocks": stats["uptime_clocks"]})
        return
    from rich.table import Table
    table = Table(title=f"sigfuse board at {board.url}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("magic", f"0x{identity.magic:08x} (SGFS)")
    table.add_row("protocol", "%d.%d (register map revision %d)" % (*identity.protocol,
                                                                    identity.regmap_revision))
    table.add_row("build ID", f"0x{identity.build_id:08x} " + (
        f"(the {built_from} product core of this host's gateware sources)" if built_from else
        "(not built from this host's gateware sources: an older or newer bitstream, or another "
        "core; `sigfuse build` and `sigfuse flash` put this host's on the board)"))
    table.add_row("clock", f"{identity.clk_hz / 1e6:g} MHz")
    table.add_row("pair slots", str(identity.pair_slots))
    table.add_row("queue capacity", str(identity.queue_capacity))
    table.add_row("link", f"UART, divisor {identity.uart_divisor} = {identity.baudrate:,} baud"
                  if identity.uart_divisor else "byte stream (no UART)")
    table.add_row("uptime", f"{stats['uptime_clocks']:,} clocks")
    table.add_row("round trip", f"{rtt_us:,.0f} µs (PING)")
    errors = sum(v for k, v in board_side.items() if k != "frames_ok")
    table.add_row("host side", f"{counters.commands} commands, {counters.retries} retries, "
                  f"{counters.timeouts} timeouts, {counters.frames_lost} frames lost, "
                  f"{counters.frames_bad} bad")
    table.add_row("board side", f"{board_side['frames_ok']:,} frames ok, {errors} errors, "
                  f"{board_side['frames_seq_gap']} seq gaps, "
                  f"{board_side['frames_duplicate']} duplicates")
    _console().print(table)


def _stats(board, args) -> None:
    from ..regmap import stats_registers
    stats = board.stats()
    if args.json:
        _print_json(stats)
        return
    from rich.table import Table
    docs = {r.name: r.doc for r in stats_registers()}
    docs["uptime_clocks"] = "clocks since reset (64 bits)"
    table = Table(title=f"stats of {board.url} (one snapshot)", title_justify="left")
    table.add_column("counter", style="bold")
    table.add_column("value", justify="right")
    table.add_column("meaning", style="dim")
    for name, value in stats.items():
        table.add_row(name, f"{value:,}", docs.get(name, ""))
    _console().print(table)


def _parse_write(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep:
        raise _Failure(f"--write wants NAME=VALUE, not {text!r}")
    try:
        return name.strip(), int(value.strip(), 0)
    except ValueError:
        raise _Failure(f"--write {name}: {value!r} is not an integer") from None


def _regs(board, args) -> None:
    from ..regmap import REGISTERS, register
    if args.write:
        writes = dict(_parse_write(w) for w in args.write)
        try:
            for name in writes:
                register(name)
            board.write_many(writes)
        except (KeyError, ValueError) as error:
            raise _Failure(str(error).strip("'\"")) from None
    values = board.read_all()
    if args.json:
        _print_json(values)
        return
    from rich.table import Table
    table = Table(title=f"registers of {board.url}", title_justify="left")
    for column, justify in (("addr", "right"), ("register", "left"), ("access", "left"),
                            ("value", "right"), ("hex", "right")):
        table.add_column(column, justify=justify)
    group = None
    for r in REGISTERS:
        if r.group != group:
            if group is not None:
                table.add_section()
            group = r.group
        v = values[r.name]
        table.add_row(f"0x{r.addr:04x}", r.name, r.access.value, f"{v:,}", f"0x{v:0{(r.width + 3) // 4}x}")
    _console().print(table)


def cmd_board(args: argparse.Namespace) -> int:
    from .transport import LinkError
    action = {"info": _info, "stats": _stats, "regs": _regs}[args.board_command]
    prog = f"sigfuse board {args.board_command}"
    try:
        with _open(args) as board:
            action(board, args)
    except _Failure as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LinkError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # a bad URL
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _build_id(text: str) -> int:
    return int(text, 0)


def add_board_command(commands) -> None:
    """Register ``sigfuse board`` on the top-level subparsers."""
    board = commands.add_parser("board", help="talk to a board: identity, stats, registers",
                                description=__doc__.split("\n\n")[0])
    actions = board.add_subparsers(dest="board_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="board URL: /dev/ttyUSB1, socket://HOST:PORT, ftdi://..., "
                                     "amaranth-sim://icebreaker, pcie://BDF")
        p.add_argument("--config", metavar="FILE", help="YAML configuration (link section)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--timeout", type=float, help="seconds per reply (default: link.timeout_s)")
        p.add_argument("--expect-build-id", type=_build_id, metavar="ID",
                       help="refuse a board with another build ID")
        p.set_defaults(func=cmd_board)

    common(actions.add_parser("info", help="identity and link health"))
    common(actions.add_parser("stats", help="every counter, from one snapshot"))
    regs = actions.add_parser("regs", help="every register by name (and --write NAME=VALUE)")
    common(regs)
    regs.add_argument("--write", action="append", metavar="NAME=VALUE", default=[],
                      help="write a register first (repeatable; written in one command)")
