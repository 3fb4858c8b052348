"""Fault tests of the cluster: SIGKILLed workers and Redis, redelivered credits, and the
checker's negative control (exactly-once credit import broken on purpose)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tongbao import cli, cluster
from tongbao.cluster_check import check_cluster
from tongbao.cluster_harness import RedisServer, WorkerPool, Workload, run_campaign

VSHARDS = 8


def _redeliver_every_credit(client: Any) -> int:
    """Add every credit-stream entry again, as an at-least-once transport may."""
    again = 0
    for v in range(VSHARDS):
        for _id, fields in client.xrange(cluster.key("credit", v)):
            client.xadd(cluster.key("credit", v), fields)
            again += 1
    return again


@pytest.mark.parametrize("unsafe", [False, True], ids=["exactly-once", "negative-control"])
def test_checker_catches_a_credit_applied_twice(
    tmp_path: Path, redis_server: RedisServer, unsafe: bool
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = {cluster.UNSAFE_REAPPLY_ENV: "1"} if unsafe else {}
    pool = WorkerPool(redis_server.url, data, VSHARDS, env=env)
    try:
        pool.start("0-3")
        pool.start("4-7")
        with cluster.Cluster(redis_server.url, vshard_count=VSHARDS, timeout_s=20) as client:
            load = Workload(client, wallets=20)
            load.fund()  # persons are paid by credits from the operators' shards
            load.round(30)  # and spend them
            assert _redeliver_every_credit(client.redis) > 0
            load.client_wait()
            pool.stop_all()
            report = check_cluster(data, VSHARDS, client.redis, load.history)
    finally:
        pool.stop_all()
    if unsafe:
        assert any("applied twice or lost" in e for e in report.errors), report.errors
        assert report.credits_in_fen > report.credits_out_fen
    else:
        assert report.errors == []
        assert report.credits_in_fen == report.credits_out_fen > 0


def test_workers_and_redis_killed_mid_run_lose_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # tongbao cluster campaign: 2 SIGKILLed workers and 2 SIGKILLed redis-servers, mid-round.
    args = [
        "cluster",
        "campaign",
        "--kills",
        "4",
        "--redis-kill-every",
        "2",
        "--dir",
        str(tmp_path),
    ]
    code = cli.main(args)
    result = orjson.loads(capsys.readouterr().out)
    assert result["failures"] == []
    assert code == 0
    assert (result["worker_kills"], result["redis_kills"]) == (2, 2)
    assert result["acknowledged"] > 100


@pytest.mark.slow
def test_fault_campaign_300_kills(tmp_path: Path) -> None:
    result = run_campaign(tmp_path, kills=300, redis_kill_every=10, wallets=40, payments=20)
    assert result.worker_kills + result.redis_kills == 300
    assert result.mismatches == []
    assert result.balance_errors == []
    assert result.report.errors == []
