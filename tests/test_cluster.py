"""The cluster end to end: real redis-server, real worker processes, checked against an embedded
reference ledger and the offline checker."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import tongbao as tb
from tongbao import cli, cluster
from tongbao.cluster_check import check_cluster
from tongbao.cluster_harness import RedisServer, WorkerPool, Workload, cluster_balances

VSHARDS = 8


def test_settles_across_shards_like_the_embedded_ledger(
    tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pool = WorkerPool(redis_server.url, data, VSHARDS)
    try:
        pool.start("0-3")
        pool.start("4-7")
        with cluster.Cluster(
            redis_server.url, vshard_count=VSHARDS, inflight_max=3, entry_tx_max=8, timeout_s=20
        ) as client:
            load = Workload(client, wallets=30)
            load.fund()
            for _ in range(3):
                got = load.round(40)
                assert (got == tb.Status.OK).sum() > 20
                assert (got == tb.Status.ALREADY_SETTLED).sum() >= 3  # the resubmissions
            assert load.mismatches == []
            status = cluster.wait_idle(client.redis)
            assert {s.owner for s in status} == {"w1", "w2"}
            assert all(s.dead_letters == 0 for s in status)
            assert sum(s.txs for s in status) >= len(load.history.items)
            # The command line: resubmitting settled transactions answers ALREADY_SETTLED.
            again = tmp_path / "again.hex"
            again.write_text("".join(tx.hex() + "\n" for tx, _ in load.history.items[-10:]))
            capsys.readouterr()
            assert (
                cli.main(
                    [
                        "submit",
                        str(again),
                        "--redis",
                        redis_server.url,
                        "--timestamp-ms",
                        str(load.now_ms),
                    ]
                )
                == 0
            )
            assert orjson.loads(capsys.readouterr().out) == {"ALREADY_SETTLED": 10}
            assert (
                cli.main(
                    [
                        "cluster",
                        "status",
                        "--redis",
                        redis_server.url,
                        "--json",
                        "--interval-s",
                        "0",
                    ]
                )
                == 0
            )
            shown = orjson.loads(capsys.readouterr().out)
            assert shown["total"]["vshards"] == VSHARDS and shown["total"]["dead_letters"] == 0
            assert shown["total"]["txs"] == sum(s.txs for s in cluster.cluster_status(client.redis))
            pool.stop_all()
            expected = load.expected_balances()
            assert cluster_balances(data, VSHARDS, list(expected)) == expected
            report = check_cluster(data, VSHARDS, client.redis, load.history)
            assert report.errors == []
            assert report.credits_out_fen > 0 and report.credits_in_fen == report.credits_out_fen
            assert report.issued_fen == report.unspent_fen
    finally:
        pool.stop_all()
