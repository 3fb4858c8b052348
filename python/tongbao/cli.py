"""The ``tongbao`` command line.

Subcommands register themselves in :data:`COMMANDS`; each is a function that adds its parser
and sets ``handler``, a function of the parsed arguments that returns the exit status.

>>> parser = build_parser()
>>> args = parser.parse_args(["simulate", "--preset", "small-city", "--scale", "0.1"])
>>> args.command, args.preset, args.scale, args.seed
('simulate', 'small-city', 0.1, 0)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
from tongbao import cluster, cluster_cli, presets, simulate, simulate_report
from tongbao.cluster_harness import WorkerPool
from tongbao.errors import InvalidArgument, TongbaoError
from tongbao.operator_cli import add_report, add_wallets
from tongbao.payroll.cli import add_payroll
from tongbao.programme_cli import add_programme
from tongbao.transit.cli import add_transit

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


# -- simulate --------------------------------------------------------------------------------


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1, got {value}")
    return value


def add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` subcommand."""
    defaults = simulate.SimulationConfig()
    p = subparsers.add_parser(
        "simulate",
        help="run a city's CBDC pilot (a preset) through the engine and report",
        description=(
            "Run a city's retail CBDC pilot through the engine, from a preset (docs/presets.md): "
            "the central bank issues to operator banks, operators open personal wallets (classes "
            "1-4), corporate wallets and merchants, exchange deposits into them, then the "
            "scenario mix of payments (merchants, bills and taxes with references, transit, "
            "salary runs, person to person) is built, signed and settled in batches, with a few "
            "deliberately bad transactions mixed in. At --scale 1 the payment count and amount "
            "are exactly the preset's. Prints wallets, merchants, scenarios, statuses, operator "
            "positions, throughput and latency and a supply check. Same --seed, same state "
            "digest (whatever the thread count). Exit status 0 on success, 1 if the supply "
            "check fails or the figures do not match the preset."
        ),
    )
    p.add_argument(
        "--preset",
        default=defaults.preset,
        metavar="NAME|PATH",
        help=f"a shipped preset ({', '.join(presets.shipped_presets())}) or a preset TOML "
        "file (default: %(default)s)",
    )
    p.add_argument(
        "--scale",
        type=_scale,
        default=defaults.scale,
        metavar="F",
        help="scale the preset's figures by F, 0 < F <= 1 (default: %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=defaults.seed,
        metavar="N",
        help="random seed: same seed, same run and state digest (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_int_at_least(1),
        default=defaults.batch_size,
        metavar="N",
        help="payments per settled batch (default: %(default)s)",
    )
    p.add_argument(
        "--threads",
        type=_int_at_least(0),
        default=defaults.threads,
        metavar="N",
        help="engine and signing threads, 0 for one per core (default: %(default)s)",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the report as JSON")
    p.add_argument(
        "--html",
        type=Path,
        metavar="PATH",
        help="also write a self-contained HTML report with charts",
    )
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
        "--redis",
        metavar="URL",
        help="settle on the cluster behind this Redis (docs/cluster.md) instead of embedded; "
        "the report adds the cluster's content digest, which must equal the embedded run's",
    )
    p.add_argument(
        "--workers",
        type=_int_at_least(0),
        default=0,
        metavar="N",
        help="with --redis: start N worker processes for the run (vshards split evenly) and "
        "stop them after; 0 uses workers already running (default: %(default)s)",
    )
    p.add_argument(
        "--vshards",
        type=_int_at_least(1),
        default=16,
        metavar="N",
        help="with --redis: vshards of a new cluster (an existing one keeps its count; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="with --workers: the workers' ledger directories (default: a new temporary directory)",
    )
    p.add_argument(
        "--transit",
        choices=simulate.TRANSIT_MODES,
        default=defaults.transit,
        help="how transit journeys settle: holds (LOCK of the max fare at tap-in, CAPTURE of "
        "the fare at tap-out) or payments (one plain payment each; default: %(default)s)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar and no summary (errors only)"
    )
    p.set_defaults(handler=run_simulate)


def config_from_args(args: argparse.Namespace) -> simulate.SimulationConfig:
    """The :class:`tongbao.simulate.SimulationConfig` the ``simulate`` arguments ask for.
    Raises :class:`tongbao.InvalidArgument` for an inconsistent combination."""
    config = simulate.SimulationConfig(
        preset=args.preset,
        scale=args.scale,
        seed=args.seed,
        batch_size=args.batch_size,
        threads=args.threads,
        verify_signatures=args.verify,
        ledger_path=None if args.ledger is None else str(args.ledger),
        redis_url=args.redis,
        transit=args.transit,
    )
    config.validate()
    if args.redis is None and (args.workers or args.data is not None):
        raise InvalidArgument("--workers and --data need --redis")
    return config


def start_simulation_workers(args: argparse.Namespace) -> WorkerPool | None:
    """With ``--redis`` and ``--workers N``: fix the cluster's vshard count (``--vshards``
    for a new cluster) and start N worker processes, each owning an even share of the
    vshards. Returns the pool (stop it after the run), or None."""
    if args.redis is None or not args.workers:
        return None
    client: Any = cluster.connect(args.redis)
    try:
        client.hsetnx(cluster.CONFIG_KEY, "vshards", args.vshards)
        count = cluster.cluster_vshard_count(client)
    finally:
        client.close()
    if args.workers > count:
        raise InvalidArgument(f"--workers {args.workers}: the cluster has only {count} vshards")
    data = args.data or Path(tempfile.mkdtemp(prefix="tongbao-simulate-"))
    data.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(args.redis, data, count, lease_ttl_ms=5_000, claim_idle_ms=5_000)
    bounds = [count * i // args.workers for i in range(args.workers + 1)]
    for lo, hi in itertools.pairwise(bounds):
        pool.start(f"{lo}-{hi - 1}")
    return pool


def run_simulate(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao simulate``: the simulation, the report, the JSON and HTML files. Returns 0,
    or 1 when the supply check fails or the figures do not match the preset."""
    config = config_from_args(args)
    for flag, path in (("--json", args.json), ("--html", args.html)):
        if path is not None and not path.parent.is_dir():
            raise InvalidArgument(f"{flag}: no such directory: {path.parent}")
    pool = start_simulation_workers(args)
    try:
        result = _simulate_with_progress(args, config, console)
    finally:
        if pool is not None:
            pool.stop_all()
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    if args.html is not None:
        simulate_report.write_html(result, args.html)
    if not args.quiet:
        simulate_report.render_summary(result, console)
    if not result.supply_ok:
        reason = result.invariant_error or "issued - redeemed, outstanding and balances disagree"
        if result.cluster is not None and not result.cluster["consistent"]:
            reason = f"the cluster disagrees with the client: {result.cluster}"
        print(f"tongbao simulate: supply check FAILED: {reason}", file=sys.stderr)
        return EXIT_FAILED
    if not result.figures_match:
        print("tongbao simulate: the settled payments do not match the preset", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _simulate_with_progress(
    args: argparse.Namespace, config: simulate.SimulationConfig, console: Console
) -> simulate.SimulationResult:
    sim = simulate.Simulation(config)
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
            phase: progress.add_task(phase, total=units)
            for phase, units in sim.work_units().items()
        }
        sim.on_progress = lambda phase, done: progress.advance(tasks[phase], done)
        if not show_progress and not args.quiet:
            f = sim.figures
            console.print(
                f"simulating {sim.preset.name} at scale {f.scale:g}: {f.personal_wallets:,} "
                f"personal wallets, {f.transactions:,} payments (seed {config.seed})..."
            )
        return sim.run()


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


# -- bench -----------------------------------------------------------------------------------


def add_bench(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark settlement against raw verification, openssl and a naive Python ledger",
        description=(
            "In one run on this machine: raw batch signature verification, Ledger.settle of "
            "1-input 2-output payments (Ed25519 and SM2) at 1 thread and all, settle with "
            "signature checks off, the naive Python ledger (cryptography, PyNaCl), openssl "
            "speed sm2, and peak resident memory per unspent token (1M and 10M tokens, a "
            "subprocess each); then the ratios against the targets of issue 5, PASS or MISS. "
            "Every case checks its results (statuses, supply, state digest, a bad-signature "
            "control). Exit status 0 when every check passed (targets may miss), 1 otherwise."
        ),
    )
    p.add_argument("--quick", action="store_true", help="smaller batches, no 10M-token probe")
    p.add_argument("--batch-size", type=_int_at_least(32), metavar="N", help="payments per batch")
    p.add_argument("--rounds", type=_int_at_least(1), metavar="N", help="rounds (best is kept)")
    p.add_argument(
        "--threads", type=_int_at_least(1), metavar="N", help="'all threads' (default: CPUs)"
    )
    p.add_argument(
        "--memory-tokens",
        type=_int_at_least(1),
        nargs="*",
        metavar="N",
        help="unspent-token counts for the memory probes (none: skip)",
    )
    p.add_argument("--no-sm2", dest="sm2", action="store_false", help="skip SM2 and openssl")
    p.add_argument("--no-openssl", dest="openssl", action="store_false", help="skip openssl speed")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG (needs matplotlib)")
    p.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao bench``: measure, print the tables, write JSON and PNG. Returns 0, or 1
    when a correctness check failed."""
    from tongbao import bench

    changes: dict[str, object] = {"sm2": args.sm2, "openssl": args.openssl and args.sm2}
    for name in ("batch_size", "rounds", "threads"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.memory_tokens is not None:
        changes["memory_tokens"] = tuple(args.memory_tokens)
    if args.batch_size is not None:
        sizes = (bench.BenchConfig.quick() if args.quick else bench.BenchConfig()).sweep_batch_sizes
        changes["sweep_batch_sizes"] = tuple(s for s in sizes if s < args.batch_size)
        changes["naive_batch_size"] = args.batch_size
    config = (bench.BenchConfig.quick if args.quick else bench.BenchConfig.full)(**changes)
    config.validate()
    for path in (args.json, args.plot):
        if path is not None and not path.parent.is_dir():
            raise InvalidArgument(f"no such directory: {path.parent}")
    if args.plot is not None:
        bench.require_matplotlib()
    with console.status("benchmarking...") as status:
        result = bench.run(config, lambda text: status.update(text))
    bench.render(result, console)
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    if args.plot is not None:
        bench.plot(result, args.plot)
    if not all(c.passed for c in result.checks):
        print("tongbao bench: a correctness check FAILED", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# -- the parser ------------------------------------------------------------------------------

#: Functions that add one subcommand each; ``tongbao`` gets them in this order.
COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    add_simulate,
    add_verify_log,
    add_payroll,
    add_bench,
    cluster_cli.add_worker,
    cluster_cli.add_submit,
    cluster_cli.add_cluster,
    add_wallets,
    add_report,
    add_programme,
    add_transit,
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
