"""The pilot simulator on a cluster: ``tongbao simulate --redis URL --workers 2`` against the
embedded run of the same preset and seed — identical content digest (wallets, tokens,
supply), the same figures, no status mismatch against the client's mirror."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tongbao import cli, simulate
from tongbao.cluster_harness import RedisServer
from tongbao.simulate_cluster import waves

ARGS = ["simulate", "--preset", "small-city", "--scale", "0.02", "--batch-size", "256"]


def test_workers_two_gives_the_embedded_content_digest(
    tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    embedded = simulate.Simulation(
        simulate.SimulationConfig(preset="small-city", scale=0.02, batch_size=256)
    ).run()
    out = tmp_path / "cluster.json"
    code = cli.main(
        [*ARGS, "--redis", redis_server.url, "--workers", "2", "--vshards", "8",
         "--data", str(tmp_path / "data"), "--json", str(out), "--quiet"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = orjson.loads(out.read_bytes())
    assert report["content_digest"] == embedded.content_digest.hex()
    assert report["cluster"]["content_digest"] == embedded.content_digest.hex()
    assert report["cluster"]["consistent"] and report["cluster"]["status_mismatches"] == []
    assert report["cluster"]["vshards"] == 8
    # At least one wave per batch; more where a receipt spent in the batch that paid it waits
    # for its credit. With transit journeys as holds (decision 0016) this small run has no such
    # chain, so no extra wave; the split itself is tested by test_waves_keep_per_vshard_order.
    batches = sum(p.batches for p in embedded.phases.values())
    assert report["cluster"]["waves"] >= batches
    assert report["supply"]["ok"]
    # Transit journeys settled as holds on the cluster too: a lock and a capture each.
    assert report["setup"]["transit_locks"] == embedded.transit_locks > 0
    assert report["setup"]["transit_captures"] == embedded.transit_captures
    # The same payments settled, so the same figures as the embedded run.
    assert report["payments"]["settled"] == embedded.payments_settled == 800
    # Both ledgers of the spawned workers are where --data said, one per vshard.
    assert sorted(p.name for p in (tmp_path / "data").glob("v*")) == [f"v{i:03d}" for i in range(8)]
    # A second simulation on the same cluster is refused (its wallets are there already).
    capsys.readouterr()
    again = [*ARGS, "--redis", redis_server.url, "--workers", "2", "--data", str(tmp_path / "data")]
    assert cli.main([*again, "--quiet"]) == 2
    assert "fresh cluster" in capsys.readouterr().err


def test_workers_need_redis(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([*ARGS, "--workers", "2"]) == 2
    assert "--workers and --data need --redis" in capsys.readouterr().err


def test_waves_keep_per_vshard_order() -> None:
    import tongbao as tb

    keys, ledger = tb.Keyring(), tb.Ledger()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [2, 3, 4], tb.WalletKind.OPERATOR)
    assert ledger.settle([tb.issue(keys, 1, [(2, 900)], 5)], 5).ok
    # 2 pays 3; 3 spends it at once (another shard: next wave); 4 (same shard as 2) pays
    # nobody's receipt but comes after 2's payment on its shard.
    txs, _ = ledger.build_payments(keys, [2, 3], [3, 4], [500, 400], 6)
    assert waves(txs, [0, 1], 2) == [[0], [1]]
    assert waves(txs, [0, 0], 2) == [[0, 1]]  # same shard: one wave, in order
