"""Distributed vs embedded settlement, side by side in one run.

One-signature payments whose payees are spread over every vshard, settled (signatures
verified) by:

- embedded: one durable ``tongbao.Ledger`` (fsync per batch) in this process;
- cluster: ``--workers`` ``tongbao worker`` processes + one private redis-server (AOF,
  appendfsync always), submitted with ``tongbao.cluster.Cluster`` and timed until every
  credit is imported (cluster idle).

Prints throughput of both, their ratio, submit-to-status latency p50/p99 per stream entry, and
the largest ingress/credit lag seen per vshard while it ran.

    python bench/cluster.py [--payments 20000 --wallets 4000 --vshards 256 --workers 2]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson

import tongbao as tb
from tongbao import cluster
from tongbao.cluster_harness import RedisServer, WorkerPool

BATCH_TX_MAX = 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=20_000)
    parser.add_argument("--wallets", type=int, default=4_000)
    parser.add_argument("--vshards", type=int, default=cluster.VSHARD_COUNT_DEFAULT)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=cluster.INFLIGHT_MAX_DEFAULT)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="tongbao-bench-cluster-"))
    keys = tb.Keyring()
    persons = list(range(1_000, 1_000 + args.wallets))
    wallets = [(1, tb.WalletKind.CENTRAL_BANK), (10, tb.WalletKind.OPERATOR)]
    wallets += [(p, tb.WalletKind.PERSONAL) for p in persons]

    # A builder ledger makes the transactions (it settles each round as it goes, untimed).
    builder = tb.Ledger(threads=args.workers, verify_signatures=False)
    embedded = tb.Ledger.open(root / "embedded", threads=args.workers, snapshot_every_records=0)
    for w, kind in wallets:
        public = keys.generate([w], int(tb.Scheme.ED25519), b"b")
        builder.register_wallets([w], kind, public)
        embedded.register_wallets([w], kind, public)
    ts = 1_000
    issue = tb.issue(keys, 1, [(10, 10**12)], timestamp_ms=ts)
    assert builder.settle([issue], ts).ok
    n = len(persons)
    funding, _ = builder.build_payments(keys, [10] * n, persons, [10**6] * n, ts)
    setup = [[issue]]
    setup += [funding[i : i + BATCH_TX_MAX] for i in range(0, n, BATCH_TX_MAX)]
    for batch in setup:
        assert embedded.settle(batch, ts).ok
    for batch in setup[1:]:
        assert builder.settle(batch, ts).ok
    ts += 1_000
    # Each round every payer pays once, to a payee anywhere (payers and payees disjoint per
    # round, so that a credit is spent only after it has arrived).
    rounds: list[list[bytes]] = []
    made = 0
    while made < args.payments:
        people = persons[:]
        rng.shuffle(people)
        half = len(people) // 2
        n = min(half, args.payments - made)
        payees = [rng.choice(people[half:]) for _ in range(n)]
        amounts = [rng.randint(1, 500) for _ in range(n)]
        txs, _ = builder.build_payments(keys, people[:n], payees, amounts, ts)
        assert builder.settle(txs, ts).ok
        rounds.append(txs)
        made += n

    # -- embedded ---------------------------------------------------------------------------
    started = time.perf_counter()
    for txs in rounds:
        for i in range(0, len(txs), BATCH_TX_MAX):
            assert embedded.settle(txs[i : i + BATCH_TX_MAX], ts).ok
    embedded_s = time.perf_counter() - started
    embedded.close()

    # -- cluster ----------------------------------------------------------------------------
    server = RedisServer(root / "redis")
    server.start()
    pool = WorkerPool(server.url, root / "cluster", args.vshards, 5_000, 5_000)
    (root / "cluster").mkdir()
    per = -(-args.vshards // args.workers)
    for k in range(args.workers):
        pool.start(f"{k * per}-{min((k + 1) * per, args.vshards) - 1}")
    lag_max: dict[int, int] = {}
    try:
        with cluster.Cluster(
            server.url, vshard_count=args.vshards, inflight_max=args.inflight, timeout_s=600
        ) as client:
            for w, kind in wallets[:2]:
                client.register_wallets([w], int(kind), [keys.public_key(w)])
            publics = [keys.public_key(p) for p in persons]
            client.register_wallets(persons, int(tb.WalletKind.PERSONAL), publics)
            for batch in setup:
                got = client.settle(batch, 1_000)
                assert (got == 0).all(), cluster.statuses_named(got)
                cluster.wait_idle(client.redis, 600)
            client.latencies_ms.clear()
            stop = threading.Event()

            def sample_lag() -> None:
                watcher = cluster.connect(server.url)
                while not stop.wait(0.5):
                    for s in cluster.cluster_status(watcher):
                        lag_max[s.vshard] = max(lag_max.get(s.vshard, 0), s.in_lag + s.credit_lag)
                watcher.close()

            sampler = threading.Thread(target=sample_lag)
            sampler.start()
            started = time.perf_counter()
            for txs in rounds:
                statuses = client.settle(txs, ts)
                assert (statuses == tb.Status.OK).all(), cluster.statuses_named(statuses)
                cluster.wait_idle(client.redis, 600)
            cluster_s = time.perf_counter() - started
            stop.set()
            sampler.join()
            latencies = np.array(client.latencies_ms)
    finally:
        pool.stop_all()
        server.stop()

    total = sum(len(t) for t in rounds)
    lags = np.array([lag_max.get(v, 0) for v in range(args.vshards)])
    report = {
        "payments": total,
        "vshards": args.vshards,
        "workers": args.workers,
        "embedded_tx_per_s": round(total / embedded_s),
        "cluster_tx_per_s": round(total / cluster_s),
        "ratio_cluster_to_embedded": round(embedded_s / cluster_s, 3),
        "entry_latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
        "entry_latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
        "entries": len(latencies),
        "vshard_lag_max": int(lags.max()),
        "vshard_lag_mean_of_max": round(float(lags.mean()), 2),
    }
    print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
