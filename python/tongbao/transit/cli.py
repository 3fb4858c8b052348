"""``tongbao transit ...``: fares and the burst benchmark from the command line.

>>> from tongbao.cli import build_parser
>>> args = build_parser().parse_args(["transit", "burst", "--taps", "1000", "--duration", "2s"])
>>> args.transit_command, args.taps, args.duration, args.offline_share
('burst', 1000, 2.0, 0.1)
>>> from tongbao.cli import main
>>> main(["transit", "fare", "Chaotianmen", "Shapingba"])
Chaotianmen -> Shapingba: 13.3 km, fare 5.00 yuan (chongqing-like)
0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from tongbao.errors import InvalidArgument
from tongbao.transit import burst as burst_mod
from tongbao.transit.fares import SHIPPED, load_network


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        return burst_mod.parse_duration(text)
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def add_transit(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``transit`` subcommand and its own subcommands."""
    p = subparsers.add_parser(
        "transit",
        help="transit fares: fare lookup and the fare-tap burst benchmark",
        description="Transit fares on the core's locks: holds at tap-in, captures at tap-out, "
        "offline gates and reconciliation (docs/transit.md).",
    )
    sub = p.add_subparsers(dest="transit_command", metavar="SUBCOMMAND", required=True)
    network_help = f"a shipped network ({', '.join(SHIPPED)}) or a fare config TOML file"

    f = sub.add_parser("fare", help="the distance and fare between two stations")
    f.add_argument("entry", help="entry station name")
    f.add_argument("exit", help="exit station name")
    f.add_argument("--network", default="chongqing-metro", metavar="NAME|PATH", help=network_help)
    f.set_defaults(handler=run_fare)

    b = sub.add_parser(
        "burst",
        help="replay a morning peak of taps through the engine and report latency",
        description="Replay a morning peak in real time (arrival curve in docs/transit.md): "
        "riders funded and given an offline allowance, warm-up journeys held, then --taps "
        "taps over --duration through a gate controller that batches them (--batch-max, "
        "--wait-ms) into the embedded ledger; offline gates decide locally and are "
        "reconciled after the window (twice: the second must charge nothing). Reports "
        "tap-to-decision latency p50/p99/p999, taps/s, backlog, holds outstanding, fares "
        "charged and a supply check; --plot writes a PNG. Exit status 0 when the supply and "
        "fare checks pass, 1 otherwise. --redis URL: settle on a running cluster instead "
        "(start its workers first; docs/transit.md).",
    )
    defaults = burst_mod.BurstConfig()
    b.add_argument("--taps", type=_positive_int, default=defaults.taps, metavar="N")
    b.add_argument(
        "--stations",
        type=_positive_int,
        default=defaults.stations,
        metavar="N",
        help="stations with gates (the network's first N; default %(default)s)",
    )
    b.add_argument(
        "--duration",
        type=_duration,
        default=defaults.duration_s,
        metavar="T",
        help="window length: 60s, 2m, 500ms (default 60s)",
    )
    b.add_argument(
        "--offline-share",
        type=_share,
        default=defaults.offline_share,
        metavar="F",
        help="share of gates offline (default %(default)s)",
    )
    b.add_argument("--seed", type=int, default=defaults.seed, metavar="S")
    b.add_argument(
        "--batch-max",
        type=_positive_int,
        default=defaults.batch_max,
        metavar="N",
        help="most taps per engine batch (default %(default)s)",
    )
    b.add_argument(
        "--wait-ms",
        type=float,
        default=defaults.wait_ms,
        metavar="MS",
        help="longest a tap waits for its batch to fill (default %(default)s)",
    )
    b.add_argument(
        "--threads", type=int, default=0, metavar="N", help="engine threads, 0 for one per core"
    )
    b.add_argument("--network", default=defaults.network, metavar="NAME|PATH", help=network_help)
    b.add_argument(
        "--ledger",
        type=Path,
        metavar="DIR",
        help="a durable ledger in DIR (new or empty; fsync per batch)",
    )
    b.add_argument(
        "--redis",
        metavar="URL",
        help="settle on the cluster at URL; the engine builds from a client mirror, checked "
        "against the cluster at the end",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="with --redis: start N worker processes for the run (vshards split evenly) and "
        "stop them after; 0 uses workers already running (default: %(default)s)",
    )
    b.add_argument(
        "--vshards",
        type=_positive_int,
        default=16,
        metavar="N",
        help="with --redis: vshards of a new cluster (default: %(default)s)",
    )
    b.add_argument(
        "--data", type=Path, metavar="DIR", help="with --workers: the workers' ledger directories"
    )
    b.add_argument("--json", type=Path, metavar="PATH", help="write the result as JSON")
    b.add_argument("--plot", type=Path, metavar="PATH", help="write a PNG of rate and latency")
    b.set_defaults(handler=run_burst)


def run_fare(args: argparse.Namespace, console: Console) -> int:
    """Print the shortest distance and the fare between two stations."""
    net = load_network(args.network)
    try:
        distance = net.distance_m(args.entry, args.exit)
        fare = net.fare(args.entry, args.exit)
    except KeyError as exc:
        raise InvalidArgument(str(exc.args[0])) from None
    print(
        f"{args.entry} -> {args.exit}: {distance / 1000:.1f} km, fare {fare // 100}."
        f"{fare % 100:02d} yuan ({net.name})"
    )
    return 0


def run_burst(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao transit burst`` and print the report."""
    from tongbao.cli import start_simulation_workers  # the CLI imports this module

    if args.redis is not None and args.ledger is not None:
        raise InvalidArgument("--ledger and --redis: the cluster's workers keep the ledgers")
    if args.redis is None and (args.workers or args.data is not None):
        raise InvalidArgument("--workers and --data need --redis")
    for path in (args.json, args.plot):
        if path is not None and not path.parent.is_dir():
            raise InvalidArgument(f"no such directory: {path.parent}")
    config = burst_mod.BurstConfig(
        taps=args.taps,
        stations=args.stations,
        duration_s=args.duration,
        offline_share=args.offline_share,
        seed=args.seed,
        batch_max=args.batch_max,
        wait_ms=args.wait_ms,
        network=args.network,
        threads=args.threads,
        ledger_path=None if args.ledger is None else str(args.ledger),
        redis_url=args.redis,
    )
    pool = start_simulation_workers(args)
    try:
        with console.status("transit burst...") as status:
            result = burst_mod.run_burst(config, lambda text: status.update(text))
    finally:
        if pool is not None:
            pool.stop_all()
    render(result, console)
    if args.json is not None:
        args.json.write_bytes(
            orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    if args.plot is not None:
        burst_mod.plot(result, args.plot)
    if not (result.supply_ok and result.fares_ok and result.cluster_ok is not False):
        print("tongbao transit burst: supply or fare check FAILED", file=sys.stderr)
        return 1
    return 0


def _yuan(fen: int) -> str:
    return f"{fen // 100:,}.{fen % 100:02d}"


def render(result: burst_mod.BurstResult, console: Console) -> None:
    """Print a burst result as a table."""
    t = Table(title="tongbao transit burst", show_header=False)
    rows = [
        (
            "taps (online / offline)",
            f"{result.taps:,} ({result.online_taps:,} / {result.offline_taps:,})",
        ),
        (
            "riders, gates (offline)",
            f"{result.riders:,}, {result.gates:,} ({result.offline_gates:,})",
        ),
        ("window wall time", f"{result.wall_s:.2f} s (setup {result.setup_s:.1f} s, untimed)"),
        ("taps/s", f"{result.taps_per_s:,.0f}"),
        (
            "tap-to-decision p50 / p99 / p999 / max",
            f"{result.latency_ms_p50:.1f} / {result.latency_ms_p99:.1f} / "
            f"{result.latency_ms_p999:.1f} / {result.latency_ms_max:.1f} ms (online gates)",
        ),
        ("offline gate decision p99", f"{result.offline_decision_ms_p99:.2f} ms"),
        ("engine batches (mean taps)", f"{result.batches:,} ({result.batch_taps_mean:.0f})"),
        ("backlog max", f"{result.backlog_max:,} taps"),
        (
            "holds outstanding start / max / end",
            f"{result.holds_outstanding_start:,} / {result.holds_outstanding_max:,} / "
            f"{result.holds_outstanding_end:,}",
        ),
        ("outcomes", ", ".join(f"{k} {v:,}" for k, v in result.outcomes.items())),
        (
            "reconciled",
            ", ".join(f"{k} {v:,}" for k, v in result.reconciled.items())
            + f" in {result.reconcile_s:.2f} s; again: {_yuan(result.reconcile_again_charged_fen)}"
            " yuan charged",
        ),
        (
            "fares charged (+ max fares)",
            f"{_yuan(result.fares_charged_fen)} yuan (+ {_yuan(result.max_fares_charged_fen)})",
        ),
        (
            "operator received",
            f"{_yuan(result.operator_gain_fen)} yuan: {'OK' if result.fares_ok else 'MISMATCH'}",
        ),
        (
            "supply",
            f"outstanding {_yuan(result.supply['outstanding_fen'])} yuan = balances: "
            f"{'OK' if result.supply_ok else 'FAILED'}",
        ),
    ]
    if result.cluster_ok is not None:
        rows.append(
            (
                "cluster",
                "statuses and content digest = the client mirror's: "
                + ("OK" if result.cluster_ok else "MISMATCH"),
            )
        )
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
