"""The same workers and client on a real 3-master Redis Cluster (loopback, durable nodes): a
host's workers and a Redis master SIGKILLed mid-run, nothing lost or applied twice."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import redis

from tongbao import cluster
from tongbao.cluster_harness import (
    RedisClusterServers,
    WorkerPool,
    Workload,
    run_cluster_campaign,
)

pytestmark = pytest.mark.skipif(
    shutil.which("redis-cli") is None, reason="needs redis-cli (Debian package redis-tools)"
)

#: A vshard's keys: tb:{vNNN}:... (one hash tag, one slot); tb:config is the only global key.
VSHARD_KEY = re.compile(rb"^tb:\{v\d{3}\}:")


@pytest.mark.slow
def test_campaign_on_redis_cluster_loses_nothing(tmp_path: Path) -> None:
    # 10 faults mid-round: 5 times both workers of one host, 5 times one Redis master.
    result = run_cluster_campaign(tmp_path, events=10, wallets=30, payments=30)
    print(
        f"redis cluster campaign: {result.worker_kills} worker SIGKILLs "
        f"({result.worker_kills // 2} host kills), {result.redis_kills} master SIGKILLs, "
        f"{result.rounds} rounds, {result.entries} entries, {result.acknowledged} acknowledged "
        f"transactions, {result.seconds:.1f} s"
    )
    assert (result.worker_kills, result.redis_kills) == (10, 5)
    assert result.mismatches == []
    assert result.balance_errors == []
    assert result.report.errors == []
    assert result.acknowledged > 100 and result.entries > result.rounds
    assert result.report.credits_in_fen == result.report.credits_out_fen > 0


def _keys(servers: RedisClusterServers) -> set[bytes]:
    seen: set[bytes] = set()
    for node in servers.nodes:
        client = redis.Redis(port=node.port)
        seen.update(client.scan_iter(count=1000))
        client.close()
    return seen


def test_every_key_of_a_vshard_shares_its_hash_tag(tmp_path: Path) -> None:
    # Workers, payments across shards and a poison entry create every kind of key; each must
    # carry its vshard's tag (one slot: the Lua scripts touch them together), or be tb:config.
    servers = RedisClusterServers(tmp_path / "redis")
    servers.start()
    data = tmp_path / "data"
    data.mkdir()
    pool = WorkerPool(servers.url, data, 4)
    try:
        pool.start("all")
        with cluster.Cluster(servers.url, vshard_count=4, timeout_s=30) as client:
            load = Workload(client, wallets=8)
            load.fund()
            load.round(8)
            client.redis.xadd(
                cluster.key("in", 1), {"op": "bogus", "reply": cluster.key("res:", 1) + "poison"}
            )
            load.client_wait()
            assert load.mismatches == []
            assert client.redis.xlen(cluster.key("dlq", 1)) == 1
            assert client.redis.get(cluster.key("res:", 1) + "poison").startswith(b"E")
            seen = _keys(servers)
    finally:
        pool.stop_all()
        servers.stop()
    assert b"tb:config" in seen
    assert [k for k in seen if k != b"tb:config" and not VSHARD_KEY.match(k)] == []
    kinds = {k.split(b":")[2] for k in seen if k != b"tb:config"}
    assert {b"in", b"credit", b"dlq", b"lease", b"epoch", b"logepoch", b"stats", b"res"} <= kinds
