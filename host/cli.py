"""The ``sigfuse`` command.

Errors a user can fix (a bad configuration, a malformed trace line) print one line per problem
and exit 2, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import IO, Iterator, Sequence

from . import __version__

EXIT_USAGE = 2


class UserError(Exception):
    """An error to report as ``sigfuse <command>: message`` with exit status 2."""


@contextlib.contextmanager
def _open_in(path: str) -> Iterator[IO[bytes]]:
    # Binary: the trace reader decodes each line itself, so invalid UTF-8 is an error that
    # names its line instead of an exception from deep inside the file object.
    if path == "-":
        yield getattr(sys.stdin, "buffer", sys.stdin)  # a StringIO stand-in has no buffer
        return
    try:
        f = open(path, "rb")
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror}") from None
    with f:
        yield f


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    try:
        f = open(path, "w", encoding="utf-8", newline="\n")
    except OSError as error:
        raise UserError(f"cannot write {path}: {error.strerror}") from None
    with f:
        yield f


def _load_config(path: str | None):
    """Load the configuration and set up logging from its ``logging`` section."""
    from .config import load_config
    from .log import setup_from_config
    cfg = load_config(path)
    setup_from_config(cfg.logging)
    return cfg


# --- commands ---------------------------------------------------------------------------------

def cmd_trace(args: argparse.Namespace) -> int:
    from .engine import open_backend
    from .log import get_logger
    from .trace import run_trace
    cfg = _load_config(args.config)
    options = {}
    if args.url:
        options["url"] = args.url
    elif args.backend == "board" and cfg.link.url:
        options["url"] = cfg.link.url
    pairs = cfg.fusion.pair_table()
    try:
        backend = open_backend(args.backend, cfg.fusion.params(), capacity=cfg.queue.capacity,
                               pair_slots=cfg.fusion.pair_slots, **options)
    except (ValueError, RuntimeError, ConnectionError) as error:
        # ValueError: a bad backend name or build parameter; RuntimeError: a simulator that
        # could not be built or started (VerilatorBuildError and the like); ConnectionError: a
        # board that is missing or answers wrongly (sigfuse.link.LinkError).
        raise UserError(str(error)) from None
    log = get_logger("trace")
    log.debug("trace_start", backend=args.backend, input=args.input)
    with backend, _open_in(args.input) as source, _open_out(args.output) as sink:
        try:
            summary = run_trace(backend, source, sink, pairs, batch_size=args.batch)
        except (RuntimeError, ConnectionError) as error:
            # A board that failed mid-trace (LinkError) or a stream it cannot run.
            raise UserError(str(error)) from None
    log.debug("trace_done", events=summary.events, results=summary.results)
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    sys.stdout.write(cfg.to_yaml())
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    _load_config(args.file)
    print(f"{args.file}: ok")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import report, run_checks
    return report(run_checks(), sys.stdout)


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    return bench_main(args)


def cmd_version(args: argparse.Namespace) -> int:
    print(f"sigfuse {__version__}")
    return 0


# --- parser -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sigfuse",
        description="FPGA-accelerated signal fusion and execution orchestration for trading.")
    parser.add_argument("--version", action="version", version=f"sigfuse {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    trace = commands.add_parser(
        "trace", help="run a JSONL event stream through a fusion backend",
        description="Read JSONL events (signal, pop), write JSONL results (decision, pop, drop) "
                    "in processing order.  Every backend gives byte-identical output.")
    trace.add_argument("--backend", default="reference",
                       help="reference (default); amaranth, verilator, board when available")
    trace.add_argument("--config", metavar="FILE", help="YAML configuration (fusion, queue sections)")
    trace.add_argument("--in", dest="input", default="-", metavar="FILE", help="input JSONL, - for stdin")
    trace.add_argument("--out", dest="output", default="-", metavar="FILE", help="output JSONL, - for stdout")
    trace.add_argument("--url", help="board URL for --backend board")
    trace.add_argument("--batch", type=int, default=4096, help=argparse.SUPPRESS)
    trace.set_defaults(func=cmd_trace)

    config = commands.add_parser("config", help="show or validate configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser("show", help="print the effective configuration (secrets redacted)")
    show.add_argument("--config", metavar="FILE", help="YAML configuration file")
    show.set_defaults(func=cmd_config_show)
    validate = config_commands.add_parser("validate", help="check a configuration file")
    validate.add_argument("file", help="YAML configuration file")
    validate.set_defaults(func=cmd_config_validate)

    doctor = commands.add_parser("doctor", help="check the toolchain and say how to fix what is missing")
    doctor.set_defaults(func=cmd_doctor)

    from .bench import build_parser as bench_options
    bench = commands.add_parser("bench", parents=[bench_options(add_help=False)],
                                help="run the benchmarks (reference engine, queue)")
    bench.set_defaults(func=cmd_bench)

    from .regexport import add_regs_command
    add_regs_command(commands)
    from .build import add_build_command
    from .flash import add_flash_command
    add_build_command(commands)
    add_flash_command(commands)
    from .sim.cli import add_sim_command
    add_sim_command(commands)
    from .link.cli import add_board_command
    add_board_command(commands)

    from .execution.cli import add_journal_command, add_paper_command
    add_journal_command(commands)
    add_paper_command(commands)
    from .orchestrator.cli import add_demo_command, add_run_command
    add_run_command(commands)
    add_demo_command(commands)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError
    from .trace import TraceInputError
    args = build_parser().parse_args(argv)
    prog = f"sigfuse {args.command}"
    try:
        return args.func(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"{prog}: {error.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except TraceInputError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `sigfuse trace | head`: the reader left; that is not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
