"""The ``tongbao`` command line.

Subcommands register themselves in :data:`COMMANDS`; each is a function that adds its parser
and sets ``handler``, a function of the parsed arguments that returns the exit status.

>>> parser = build_parser()
>>> args = parser.parse_args(["simulate", "--wallets", "100", "--seed", "7"])
>>> args.command, args.wallets, args.seed, args.transactions
('simulate', 100, 7, 200000)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

import tongbao as tb
from tongbao import simulate
from tongbao.errors import InvalidArgument, TongbaoError
from tongbao.operator_cli import add_report, add_wallets

#: Exit statuses.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


# -- simulate --------------------------------------------------------------------------------

#: The ``simulate`` options that map one to one onto :class:`SimulationConfig` fields (the flag
#: without dashes, dashes as underscores): flag, parser, metavar, help.
_SIMULATE_OPTIONS: list[tuple[str, Callable[[str], object], str, str]] = [
    ("--seed", _int_at_least(0), "N", "random seed"),
    ("--wallets", _int_at_least(1), "N", "personal wallets"),
    ("--merchants", _int_at_least(1), "N", "merchant wallets"),
    ("--operators", _int_at_least(1), "N", "operator banks"),
    (
        "--transactions",
        _int_at_least(0),
        "N",
        "payments to request after funding; a payer short of funds is skipped",
    ),
    ("--batch-size", _int_at_least(1), "N", "payments per settled batch"),
    ("--threads", _int_at_least(0), "N", "engine and signing threads, 0 for one per core"),
    ("--sm2-share", _share, "F", "share of personal wallets with SM2 keys, the rest Ed25519"),
    ("--p2p-share", _share, "F", "share of payments to another person instead of a merchant"),
    (
        "--resubmit-share",
        _share,
        "F",
        "resubmissions of settled transactions mixed in, per payment: ALREADY_SETTLED",
    ),
    (
        "--double-spend-share",
        _share,
        "F",
        "double spends of settled inputs mixed in, per payment: INPUT_SPENT",
    ),
]


def add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    defaults = simulate.SimulationConfig()
    p = subparsers.add_parser(
        "simulate",
        help="run a deterministic retail-payments simulation and print a summary",
        description=(
            "Simulate a retail CBDC pilot on an embedded ledger: the central bank issues to "
            "operator banks, operators fund personal wallets, then a stream of random payments "
            "(persons to merchants, some person to person) is built, signed and settled in "
            "batches, with a few deliberately bad transactions (resubmissions, double spends) "
            "mixed in. Prints wallets, transactions by status, value moved, a supply check, "
            "the state digest and engine throughput. Same --seed, same result (whatever the "
            "thread count). Exit status 0 on success, 1 if the supply check fails."
        ),
    )
    for flag, parse, metavar, text in _SIMULATE_OPTIONS:
        field = flag.removeprefix("--").replace("-", "_")
        p.add_argument(
            flag,
            type=parse,
            default=getattr(defaults, field),
            metavar=metavar,
            help=f"{text} (default: %(default)s)",
        )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the summary as JSON")
    p.add_argument(
        "--ledger",
        type=Path,
        metavar="DIR",
        help="settle into a durable ledger in DIR (new or empty): write-ahead log, fsync per "
        "batch, auditable with `tongbao verify-log DIR`; default: in memory",
    )
    p.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not verify signatures in the engine (benchmarking only)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary (errors only)"
    )
    p.set_defaults(handler=run_simulate)


def config_from_args(args: argparse.Namespace) -> simulate.SimulationConfig:
    """The :class:`tongbao.simulate.SimulationConfig` the ``simulate`` arguments ask for.
    Raises :class:`tongbao.InvalidArgument` for an inconsistent combination."""
    fields = {flag.removeprefix("--").replace("-", "_") for flag, *_ in _SIMULATE_OPTIONS}
    values = {name: getattr(args, name) for name in fields}
    ledger_path = None if args.ledger is None else str(args.ledger)
    config = simulate.SimulationConfig(
        **values, verify_signatures=args.verify, ledger_path=ledger_path
    )
    config.validate()
    return config


def run_simulate(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao simulate``: the simulation, the summary, the JSON file. Returns 0, or 1
    when the supply check fails."""
    config = config_from_args(args)
    if args.json is not None and not args.json.parent.is_dir():
        raise InvalidArgument(f"--json: no such directory: {args.json.parent}")
    show_progress = not args.quiet and console.is_terminal
    with Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not show_progress,
    ) as progress:
        tasks: dict[str, TaskID] = {
            "funding": progress.add_task("funding", total=config.wallets),
            "payments": progress.add_task("payments", total=config.transactions),
        }

        def on_progress(phase: str, done: int) -> None:
            progress.advance(tasks[phase], done)

        if not show_progress and not args.quiet:
            console.print(
                f"simulating {config.wallets:,} wallets, {config.transactions:,} payments "
                f"(seed {config.seed})..."
            )
        result = simulate.run(config, on_progress)
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    if not args.quiet:
        simulate.render_summary(result, console)
    if not result.supply_ok:
        reason = result.invariant_error or "issued - redeemed, outstanding and balances disagree"
        print(f"tongbao simulate: supply check FAILED: {reason}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- verify-log ------------------------------------------------------------------------------


def add_verify_log(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``verify-log`` subcommand."""
    p = subparsers.add_parser(
        "verify-log",
        help="audit a ledger directory: replay its whole log with every check",
        description=(
            "Replay the write-ahead log of a durable ledger directory offline and read-only, "
            "from its first record: verify every signature, every logged status, the receipt "
            "hash chain and the supply invariant (issued - redeemed = outstanding = sum of "
            "unspent tokens). Prints a summary. Exit status 0 if everything checks out, 1 with "
            "the file and byte offset of the first problem otherwise."
        ),
    )
    p.add_argument("path", type=Path, metavar="DIR", help="the ledger directory")
    p.add_argument(
        "--threads", type=_int_at_least(0), default=0, help="verification threads, 0 for all"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_verify_log)


def run_verify_log(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao verify-log``: audit the directory and print what was checked."""
    if not args.path.is_dir():
        raise InvalidArgument(f"{args.path} is not a directory")
    report = tb.verify_log(args.path, threads=args.threads)
    summary = {
        "path": str(args.path),
        "segments": report.segments,
        "records": report.records,
        "wallets": report.wallets,
        "batches": report.batches,
        "batches_without_outcome": report.batches_without_outcome,
        "transactions": report.transactions,
        "transactions_ok": report.transactions_ok,
        "issued_fen": report.issued_fen,
        "redeemed_fen": report.redeemed_fen,
        "outstanding_fen": report.outstanding_fen,
        "last_receipt_hash": report.last_receipt_hash.hex(),
        "torn_tail_bytes": report.torn_tail_bytes,
    }
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    table = Table(title=f"verify-log {args.path}: OK", show_header=False)
    for key, value in summary.items():
        if key.endswith("_fen") and isinstance(value, int):
            shown = simulate.format_yuan(value) + " yuan"
        else:
            shown = str(value)
        table.add_row(key.removesuffix("_fen"), shown)
    console.print(table)
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------

#: Functions that add one subcommand each; ``tongbao`` gets them in this order.
COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_simulate,
    add_verify_log,
    add_wallets,
    add_report,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``tongbao`` argument parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="tongbao",
        description="tongbao (通宝): transaction-processing core for retail CBDC.",
    )
    parser.add_argument("--version", action="version", version=f"tongbao {tb.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tongbao`` command line with ``argv`` (default: ``sys.argv[1:]``) and return the
    exit status: 0 success, 1 failure, 2 bad usage (the message goes to stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    console = Console()
    try:
        code: int = args.handler(args, console)
    except InvalidArgument as exc:
        print(f"tongbao {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"tongbao {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except TongbaoError as exc:
        print(f"tongbao {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"tongbao {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
