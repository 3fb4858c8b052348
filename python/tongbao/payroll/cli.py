"""``tongbao payroll``: run, status and generate.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="tongbao")
>>> add_payroll(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["payroll", "run", "nov.xml", "--employer", "500000", "--partial"])
>>> args.action, args.employer, args.partial, str(args.ledger)
('run', 500000, True, 'tongbao-ledger')
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import tongbao as tb
from tongbao.cluster import Cluster
from tongbao.errors import InvalidArgument
from tongbao.payroll import generate as gen
from tongbao.payroll.distributed import ClusterPayrollLedger
from tongbao.payroll.inputs import parse_file
from tongbao.payroll.run import (
    BATCH_CHUNKS,
    CHUNK_OUTPUTS,
    PayrollLedger,
    read_status,
    run_payroll,
    runs_dir,
)

DEFAULT_LEDGER = Path("tongbao-ledger")
#: Where ``payroll run --redis`` keeps its runs unless ``--runs`` says otherwise.
DEFAULT_CLUSTER_RUNS = Path("tongbao-payroll")


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_payroll(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``payroll`` subcommand with its actions ``run``, ``status`` and ``generate``."""
    p = subparsers.add_parser(
        "payroll",
        help="salary batch payouts: CSV or pain.001 in, pain.002 out, exactly once",
        description="Pay a payroll file from an employer wallet, exactly once (docs/payroll.md).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    r = actions.add_parser(
        "run",
        help="pay a payroll file (re-run the same file to resume after a crash)",
        description=(
            "Validate FILE (CSV with a header, or ISO 20022 pain.001.001.09), decide every "
            "payee (AC01 unknown, AC06 frozen/closed, AM02 over a limit, AM04 insufficient "
            "funds, AM05 duplicate), plan signed chunk transactions of up to 1,000 payees, "
            "record the plan durably, settle it and write report.csv, pain.002.xml and "
            "summary.json into LEDGER/payroll/RUN_ID/. Running the same file again resumes "
            "or repeats the report: nobody is paid twice. Exit 0 when every payee was paid, "
            "1 when some were rejected (see the report) or on error, 2 on bad usage."
        ),
    )
    r.add_argument("file", type=Path, metavar="FILE")
    r.add_argument("--employer", type=_positive, required=True, metavar="WALLET")
    r.add_argument(
        "--ledger",
        type=Path,
        default=DEFAULT_LEDGER,
        metavar="DIR",
        help="durable ledger directory (default: %(default)s)",
    )
    r.add_argument(
        "--redis",
        metavar="URL",
        help="settle on the cluster behind this Redis (workers must be running) instead of "
        "the embedded --ledger; the run's plan, progress and reports go to --runs",
    )
    r.add_argument(
        "--runs",
        type=Path,
        metavar="DIR",
        help="where runs keep their plan, progress and reports (default: LEDGER/payroll; "
        f"with --redis: {DEFAULT_CLUSTER_RUNS})",
    )
    r.add_argument(
        "--timeout-s",
        type=float,
        default=60.0,
        metavar="S",
        help="with --redis: how long to wait for one batch's answers (default: %(default)s)",
    )
    r.add_argument(
        "--partial",
        action="store_true",
        help="if funds do not cover everyone, pay in file order until they run out "
        "(default: pay nobody)",
    )
    r.add_argument(
        "--key-seed",
        default="tongbao",
        metavar="TEXT",
        help="derive the employer's signing key from this seed (test worlds made "
        "by `payroll generate`; default: %(default)s)",
    )
    r.add_argument(
        "--key-file",
        type=Path,
        metavar="PATH",
        help="the employer's secret key, hex, instead of --key-seed",
    )
    r.add_argument(
        "--timestamp-ms",
        type=_positive,
        metavar="MS",
        help="timestamp of the plan's transactions (default: now)",
    )
    r.add_argument(
        "--chunk-size",
        type=_positive,
        default=CHUNK_OUTPUTS,
        metavar="N",
        help="payees per transaction (default: %(default)s)",
    )
    r.add_argument(
        "--batch-chunks",
        type=_positive,
        default=BATCH_CHUNKS,
        metavar="N",
        help="transactions per settled batch (default: %(default)s)",
    )
    r.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not verify signatures in the engine (benchmarking only)",
    )
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    r.set_defaults(handler=run_payroll_cli)

    s = actions.add_parser(
        "status",
        help="what is known about a run",
        description="Print a run's summary, or its progress if unfinished.",
    )
    s.add_argument("run_id", metavar="RUN_ID")
    s.add_argument("--ledger", type=Path, default=DEFAULT_LEDGER, metavar="DIR")
    s.add_argument(
        "--runs",
        type=Path,
        metavar="DIR",
        help="the runs directory (default: LEDGER/payroll); for runs made with --redis",
    )
    s.set_defaults(handler=status_cli)

    g = actions.add_parser(
        "generate",
        help="write a seeded payroll file (and optionally a ledger world to pay it in)",
        description=(
            "Write a payroll of N payees (wallets 10000000 + i, amounts ¥3,000 to ¥30,000 "
            "drawn from --seed) as CSV or pain.001.001.09. With --ledger DIR (new), also "
            "register the central bank (1), an operator (1000), the employer and every payee, "
            "and fund the employer with the total plus --margin-yuan."
        ),
    )
    g.add_argument("out", type=Path, metavar="OUT")
    g.add_argument("--payees", type=_positive, default=1_000, metavar="N")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--format", choices=("csv", "pain001"), default="pain001")
    g.add_argument("--unit", choices=("yuan", "fen"), default="yuan", help="CSV amount unit")
    g.add_argument("--employer", type=_positive, default=gen.EMPLOYER_ID, metavar="WALLET")
    g.add_argument(
        "--ledger",
        type=Path,
        metavar="DIR",
        help="also set up a ledger world in DIR (must be new or empty)",
    )
    g.add_argument(
        "--redis",
        metavar="URL",
        help="also set up the same world on the cluster behind this Redis (workers running)",
    )
    g.add_argument(
        "--margin-yuan",
        type=int,
        default=100_000,
        help="fund the employer with this much more than the total (may be "
        "negative to provoke insufficient funds)",
    )
    g.set_defaults(handler=generate_cli)


def _keyring(args: argparse.Namespace, ledger: PayrollLedger) -> tb.Keyring:
    info = ledger.wallet(args.employer)
    if info is None:
        raise InvalidArgument(f"--employer: wallet {args.employer} is not in the ledger")
    keys = tb.Keyring()
    if args.key_file is not None:
        secret = bytes.fromhex(args.key_file.read_text().strip())
        keys.add(args.employer, int(info.scheme), secret)
    else:
        keys.generate([args.employer], int(info.scheme), args.key_seed.encode())
    return keys


def run_payroll_cli(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao payroll run``: embedded on ``--ledger``, or on the cluster with
    ``--redis``."""
    if not args.file.is_file():
        raise InvalidArgument(f"no such file: {args.file}")
    if args.redis is None and not args.ledger.is_dir():
        raise InvalidArgument(f"--ledger: no such ledger directory: {args.ledger}")
    payroll = parse_file(args.file)
    show = not args.quiet and console.is_terminal
    with contextlib.ExitStack() as stack:
        ledger: PayrollLedger
        if args.redis is not None:
            client = stack.enter_context(Cluster(args.redis, timeout_s=args.timeout_s))
            ledger = ClusterPayrollLedger(client, args.employer)
            root = args.runs or DEFAULT_CLUSTER_RUNS
        else:
            ledger = stack.enter_context(tb.Ledger.open(args.ledger, verify_signatures=args.verify))
            root = args.runs or runs_dir(args.ledger)
        keys = _keyring(args, ledger)
        with Progress(
            TextColumn("[bold]paying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not show,
        ) as bar:
            task = bar.add_task("pay", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            result = run_payroll(
                ledger,
                keys,
                payroll,
                args.employer,
                root,
                partial=args.partial,
                timestamp_ms=args.timestamp_ms,
                chunk_outputs=args.chunk_size,
                batch_chunks=args.batch_chunks,
                on_progress=on_progress,
            )
    summary = result.summary()
    summary["reports"] = str(result.directory)
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    elif not args.quiet:
        table = Table(title=f"payroll {result.run_id}: {result.group_status}", show_header=False)
        for key, value in summary.items():
            table.add_row(key, str(value))
        console.print(table)
    return 0 if result.group_status == "ACSC" else 1


def status_cli(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao payroll status``."""
    root = args.runs or runs_dir(args.ledger)
    sys.stdout.write(json.dumps(read_status(root, args.run_id), indent=2) + "\n")
    return 0


def generate_cli(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao payroll generate``."""
    spec = gen.PayrollSpec(
        payees=args.payees,
        seed=args.seed,
        employer=args.employer,
        margin_fen=args.margin_yuan * 100,
    )
    if args.format == "csv":
        gen.write_csv(spec, args.out, unit=args.unit)
    else:
        gen.write_pain001(spec, args.out)
    if args.ledger is not None:
        if args.ledger.exists() and any(args.ledger.iterdir()):
            raise InvalidArgument(f"--ledger: {args.ledger} is not empty")
        if spec.total_fen() + spec.margin_fen <= 0:
            raise InvalidArgument("--margin-yuan leaves nothing to fund the employer with")
        with tb.Ledger.open(args.ledger) as ledger:
            gen.setup_world(ledger, tb.Keyring(), spec)
    if args.redis is not None:
        if spec.total_fen() + spec.margin_fen <= 0:
            raise InvalidArgument("--margin-yuan leaves nothing to fund the employer with")
        with Cluster(args.redis, timeout_s=600) as client:
            gen.setup_world(tb.Ledger(verify_signatures=False), tb.Keyring(), spec, cluster=client)
    console.print(
        f"wrote {args.out} ({spec.payees:,} payees, {args.format})"
        + (f" and a funded world in {args.ledger}" if args.ledger is not None else "")
        + (f" and on the cluster at {args.redis}" if args.redis is not None else "")
    )
    return 0
