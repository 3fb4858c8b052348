"""The cluster subcommands of ``tongbao``: ``worker``, ``submit`` and ``cluster status``.

>>> from tongbao.cli import build_parser
>>> args = build_parser().parse_args(["worker", "--redis", "redis://127.0.0.1:7000", "--data", "d",
...                                   "--vshards", "0-3"])
>>> args.command, args.vshards, args.lease_ttl_ms
('worker', '0-3', 5000)
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console
from rich.table import Table

from tongbao import cluster
from tongbao.errors import InvalidArgument


def add_worker(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``worker`` subcommand."""
    p = subparsers.add_parser(
        "worker",
        help="serve vshards of a cluster: settle their Redis streams into durable ledgers",
        description=(
            "Take the leases of the given vshards as they are free (a standby takes over a dead "
            "worker's vshards once its lease expires), open one durable ledger per vshard under "
            "--data (recovering it from its log), and settle the vshards' ingress and credit "
            "streams until SIGTERM. Entries are acknowledged only after their durable commit, "
            "fenced by the lease epoch."
        ),
    )
    p.add_argument(
        "--redis",
        required=True,
        metavar="URL",
        help="redis://host:port (one Redis) or redis+cluster://host:port (a Redis Cluster)",
    )
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="ledger directories")
    p.add_argument("--vshards", default="all", metavar="SPEC", help="all, or e.g. 0-127,200")
    p.add_argument(
        "--vshard-count",
        type=int,
        default=None,
        metavar="N",
        help=f"vshards of a new cluster (default {cluster.VSHARD_COUNT_DEFAULT})",
    )
    p.add_argument("--name", default=None, help="consumer name (default host-pid)")
    p.add_argument("--lease-ttl-ms", type=int, default=cluster.LEASE_TTL_MS_DEFAULT)
    p.add_argument("--claim-idle-ms", type=int, default=cluster.CLAIM_IDLE_MS_DEFAULT)
    p.add_argument("--deliveries-max", type=int, default=cluster.DELIVERIES_MAX_DEFAULT)
    p.add_argument("--threads", type=int, default=1, help="signature threads per ledger")
    p.add_argument("--no-verify", action="store_true", help="trust signatures (benchmarks only)")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao worker`` until SIGTERM."""
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s worker %(message)s")
    client = cluster.connect(args.redis)
    count = cluster.cluster_vshard_count(client, args.vshard_count)
    client.close()
    config = cluster.WorkerConfig(
        redis_url=args.redis,
        data_dir=args.data,
        vshards=cluster.parse_vshards(args.vshards, count),
        vshard_count=count,
        lease_ttl_ms=args.lease_ttl_ms,
        claim_idle_ms=args.claim_idle_ms,
        deliveries_max=args.deliveries_max,
        threads=args.threads,
        verify_signatures=not args.no_verify,
    )
    if args.name:
        config.name = args.name
    if config.lease_ttl_ms < 100 or config.claim_idle_ms < config.lease_ttl_ms // 2:
        raise InvalidArgument("--lease-ttl-ms at least 100, --claim-idle-ms at least half of it")
    return cluster.Worker(config).run()


def add_submit(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``submit`` subcommand."""
    p = subparsers.add_parser(
        "submit",
        help="settle a file of transactions on a cluster and print the statuses",
        description=(
            "Read encoded transactions, one hex string per line, submit them to the cluster "
            "(each to its payer's home vshard) and print the count per status. Safe to re-run: "
            "settled transactions answer ALREADY_SETTLED."
        ),
    )
    p.add_argument("path", type=Path, metavar="FILE", help="one hex-encoded transaction per line")
    p.add_argument("--redis", required=True, metavar="URL")
    p.add_argument("--timestamp-ms", type=int, default=0, help="batch time hint (default: now)")
    p.add_argument(
        "--statuses",
        type=Path,
        default=None,
        metavar="OUT",
        help="write one status name per line here",
    )
    p.set_defaults(handler=run_submit)


def run_submit(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao submit``."""
    txs = []
    for number, line in enumerate(args.path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            txs.append(bytes.fromhex(line.strip()))
        except ValueError:
            raise InvalidArgument(f"{args.path}:{number}: not a hex string") from None
    with cluster.Cluster(args.redis) as client:
        statuses = client.settle(txs, args.timestamp_ms or None)
    if args.statuses:
        from tongbao.types import Status

        args.statuses.write_text("".join(f"{Status(int(s)).name}\n" for s in statuses))
    sys.stdout.write(orjson.dumps(cluster.statuses_named(statuses)).decode() + "\n")
    return 0


def add_cluster(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cluster`` subcommand (``cluster status``)."""
    p = subparsers.add_parser(
        "cluster",
        help="inspect a cluster: lease, lag, pending and dead letters per vshard",
        description=(
            "status: per vshard, the lease owner and epoch, consumer-group lag (entries not yet "
            "read) and pending (read, not acknowledged) of the ingress and credit streams, "
            "dead letters, and the throughput over --interval-s."
        ),
    )
    p.add_argument("action", choices=["status", "campaign"])
    p.add_argument("--redis", metavar="URL", help="the cluster (status)")
    p.add_argument("--kills", type=int, default=300, help="campaign: SIGKILLs to inject")
    p.add_argument("--dir", type=Path, default=None, help="campaign: working directory")
    p.add_argument(
        "--redis-kill-every", type=int, default=10, help="campaign: every Nth kill is Redis"
    )
    p.add_argument(
        "--redis-cluster",
        action="store_true",
        help="campaign: on a 3-master Redis Cluster; --kills faults alternate between all "
        "workers of one host and one Redis master",
    )
    p.add_argument("--interval-s", type=float, default=1.0, help="throughput sampling window")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_cluster)


def run_cluster(args: argparse.Namespace, console: Console) -> int:
    """Run ``tongbao cluster status``, or ``tongbao cluster campaign``: a private cluster on
    this machine (redis-server and two workers on loopback) under ``--kills`` SIGKILLs of
    workers and Redis, then the checker; exit status 1 if anything was lost or applied twice.
    ``--redis-cluster``: the same on a 3-master Redis Cluster with two hosts of two workers."""
    if args.action == "campaign":
        from tongbao.cluster_harness import run_campaign, run_cluster_campaign

        directory = args.dir or Path(tempfile.mkdtemp(prefix="tongbao-campaign-"))
        if args.redis_cluster:
            result = run_cluster_campaign(directory, events=args.kills)
        else:
            result = run_campaign(
                directory, kills=args.kills, redis_kill_every=args.redis_kill_every
            )
        failures = result.mismatches + result.balance_errors + result.report.errors
        summary = {
            "worker_kills": result.worker_kills,
            "redis_kills": result.redis_kills,
            "rounds": result.rounds,
            "acknowledged": result.acknowledged,
            "entries": result.entries,
            "seconds": round(result.seconds, 1),
            "failures": failures[:20],
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        return 1 if failures else 0
    if not args.redis:
        raise InvalidArgument("cluster status needs --redis URL")
    client = cluster.connect(args.redis)
    before = cluster.cluster_status(client)
    started = time.monotonic()
    time.sleep(max(args.interval_s, 0.0))
    after = cluster.cluster_status(client)
    elapsed_s = max(time.monotonic() - started, 1e-9)
    client.close()
    txs_per_s = {a.vshard: (a.txs - b.txs) / elapsed_s for a, b in zip(after, before, strict=True)}
    rows = [{**s.__dict__, "txs_per_s": round(txs_per_s[s.vshard], 1)} for s in after]
    total = {
        "vshards": len(rows),
        "owned": sum(1 for s in after if s.owner),
        "in_lag": sum(s.in_lag for s in after),
        "pending": sum(s.in_pending + s.credit_pending for s in after),
        "credit_lag": sum(s.credit_lag for s in after),
        "dead_letters": sum(s.dead_letters for s in after),
        "txs": sum(s.txs for s in after),
        "txs_per_s": round(float(np.sum(list(txs_per_s.values()))), 1),
    }
    if args.json:
        sys.stdout.write(orjson.dumps({"total": total, "vshards": rows}).decode() + "\n")
        return 0
    table = Table(title="tongbao cluster status")
    for name in (
        "vshard",
        "owner",
        "epoch",
        "in_lag",
        "in_pending",
        "credit_lag",
        "credit_pending",
        "dead_letters",
        "txs",
        "txs_per_s",
    ):
        table.add_column(name)
    for row in rows:
        table.add_row(*(str(row[c.header]) for c in table.columns))  # type: ignore[index]
    console.print(table)
    console.print(total)
    return 0
