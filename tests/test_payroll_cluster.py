"""Payroll on the cluster (``payroll run --redis``): a private redis-server and real worker
processes, compared with the embedded run of the same file in the same world — identical
reports (pain.002, report.csv), identical content digest (the same settlements), nobody paid
twice after SIGKILLs of the payroll process and of workers."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import tongbao as tb
from tongbao import cluster
from tongbao.cluster_harness import RedisServer, WorkerPool
from tongbao.ledger import PayeeStates
from tongbao.payroll import generate as gen
from tongbao.payroll import parse_file, run_payroll
from tongbao.payroll.distributed import ClusterPayrollLedger

VSHARDS = 8
RUN_MS = gen.WORLD_TIMESTAMP_MS + 86_400_000
CHUNK = 25


@dataclass
class Cluster:
    server: RedisServer
    pool: WorkerPool
    client: cluster.Cluster


@pytest.fixture
def two_workers(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    data = tmp_path / "data"
    data.mkdir()
    pool = WorkerPool(redis_server.url, data, VSHARDS)
    pool.start("0-3")
    pool.start("4-7")
    try:
        with cluster.Cluster(redis_server.url, vshard_count=VSHARDS, timeout_s=60) as client:
            yield Cluster(redis_server, pool, client)
    finally:
        pool.stop_all()


def write_files(tmp: Path, spec: gen.PayrollSpec) -> dict[str, Path]:
    """The payroll as CSV (plus an unknown payee and a repeated reference) and as pain.001."""
    csv, xml = tmp / "pay.csv", tmp / "pay.xml"
    gen.write_csv(spec, csv, unit="fen")
    with open(csv, "a") as f:
        f.write("77,5000,UNKNOWN-1\n")  # AC01
        payee, amount, ref = next(spec.items())
        f.write(f"{payee},{amount},{ref}\n")  # AM05
    gen.write_pain001(spec, xml)
    return {"csv": csv, "pain001": xml}


def embedded_run(tmp: Path, spec: gen.PayrollSpec, file: Path) -> tuple[tb.Ledger, Path]:
    ledger = tb.Ledger()
    gen.setup_world(ledger, tb.Keyring(), spec)
    keys = tb.Keyring()
    keys.generate([spec.employer], int(tb.Scheme.ED25519), b"tongbao")
    result = run_payroll(
        ledger, keys, parse_file(file), spec.employer, tmp / "embedded-runs",
        timestamp_ms=RUN_MS, chunk_outputs=CHUNK, batch_chunks=4,
    )  # fmt: skip
    return ledger, result.directory


@pytest.mark.parametrize("fmt", ["csv", "pain001"])
def test_cluster_run_settles_and_reports_like_embedded(
    tmp_path: Path, two_workers: Cluster, fmt: str
) -> None:
    spec = gen.PayrollSpec(payees=180, seed=3)
    files = write_files(tmp_path, spec)
    embedded, embedded_dir = embedded_run(tmp_path, spec, files["csv"])
    client = two_workers.client
    gen.setup_world(tb.Ledger(verify_signatures=False), tb.Keyring(), spec, cluster=client)
    keys = tb.Keyring()
    keys.generate([spec.employer], int(tb.Scheme.ED25519), b"tongbao")
    ledger = ClusterPayrollLedger(client, spec.employer)
    for attempt in range(2):  # the second run pays nobody again
        result = run_payroll(
            ledger, keys, parse_file(files[fmt]), spec.employer, tmp_path / "cluster-runs",
            timestamp_ms=RUN_MS, chunk_outputs=CHUNK, batch_chunks=4,
        )  # fmt: skip
        assert result.resumed == (attempt == 1)
        assert result.paid == spec.payees
        cluster.wait_idle(client.redis)
        # The same settlements as the embedded run of the CSV: same wallets, tokens, supply.
        assert client.content_digest() == embedded.content_digest()
    payees = np.arange(spec.payee_base, spec.payee_base + spec.payees, dtype=np.uint64)
    states = ledger.payee_states(payees)
    assert states.balance_fen.tolist() == embedded.balances(payees.tolist()).tolist()
    if fmt == "csv":
        assert result.group_status == "PART" and result.rejected == 2
        for name in ("pain.002.xml", "report.csv"):
            assert (result.directory / name).read_bytes() == (embedded_dir / name).read_bytes()
    else:
        assert result.group_status == "ACSC"


def test_cluster_preflight_reads_each_payees_home_shard(two_workers: Cluster) -> None:
    spec = gen.PayrollSpec(payees=40, seed=5)
    client = two_workers.client
    gen.setup_world(tb.Ledger(verify_signatures=False), tb.Keyring(), spec, cluster=client)
    ledger = ClusterPayrollLedger(client, spec.employer)
    asked = [spec.payee_base + 3, 424242, spec.employer, spec.payee_base + 3]
    states = ledger.payee_states(asked)
    assert states.status.tolist()[1] == PayeeStates.UNKNOWN
    assert states.balance_fen.tolist() == [0, 0, spec.total_fen() + spec.margin_fen, 0]
    assert ledger.wallet(424242) is None
    with pytest.raises(tb.UnknownWallet):
        ledger.spendable(424242)
    info = ledger.wallet(spec.employer)
    assert info is not None and info.kind == tb.WalletKind.CORPORATE
    assert sum(v for _, v in ledger.spendable(spec.employer)) == info.balance_fen
    assert ledger.outflow_room(spec.employer, RUN_MS) == (None, None)
    assert ledger.last_timestamp_ms == gen.WORLD_TIMESTAMP_MS


def command(file: Path, redis_url: str, runs: Path) -> list[str]:
    return [
        sys.executable, "-m", "tongbao", "payroll", "run", str(file),
        "--employer", str(gen.EMPLOYER_ID), "--redis", redis_url, "--runs", str(runs),
        "--quiet", "--timestamp-ms", str(RUN_MS), "--chunk-size", str(CHUNK),
        "--batch-chunks", "1", "--timeout-s", "60",
    ]  # fmt: skip


def crash_round(tmp: Path, seed: int, kills_wanted: int) -> tuple[int, int]:
    """One payroll on a fresh cluster of two workers: SIGKILL the payroll process (and half of
    the time a worker with it) at random moments, then re-run until it finishes; the reports
    and the settlements must equal the embedded run's. Returns (payroll kills, worker kills)."""
    rng = random.Random(seed)
    spec = gen.PayrollSpec(payees=rng.randint(400, 900), seed=seed)
    tmp.mkdir(parents=True)
    files = write_files(tmp, spec)
    fmt = rng.choice(["csv", "pain001"])
    embedded, embedded_dir = embedded_run(tmp, spec, files[fmt])
    server = RedisServer(tmp / "redis")
    server.start()
    data = tmp / "data"
    data.mkdir()
    pool = WorkerPool(server.url, data, VSHARDS)
    kills = worker_kills = 0
    runs = tmp / "runs"
    try:
        names = [pool.start("all"), pool.start("all")]
        with cluster.Cluster(server.url, vshard_count=VSHARDS, timeout_s=60) as client:
            gen.setup_world(tb.Ledger(verify_signatures=False), tb.Keyring(), spec, cluster=client)
            window_s = 0.5  # halves with each run that finished before its kill
            for _ in range(kills_wanted * 4):
                if kills >= kills_wanted:
                    break
                proc = subprocess.Popen(
                    command(files[fmt], server.url, runs),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
                # Kill at a random moment once the run has planned (its plan is on disk): an
                # event, not a fixed delay, so a fast machine cannot finish first every time.
                deadline = time.monotonic() + 60
                while (
                    proc.poll() is None
                    and not any(runs.glob("*/plan.bin"))
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.005)
                time.sleep(rng.uniform(0.0, window_s))
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)
                    kills += 1
                    if rng.random() < 0.5:
                        victim = rng.randrange(len(names))
                        pool.kill(names[victim])
                        names[victim] = pool.start("all")
                        worker_kills += 1
                else:
                    window_s = max(0.01, window_s / 2)
                proc.wait()
                assert proc.returncode in (0, 1, -signal.SIGKILL), (
                    proc.stderr and proc.stderr.read()
                )
                if proc.stderr:
                    proc.stderr.close()
            done = subprocess.run(command(files[fmt], server.url, runs), capture_output=True)
            assert done.returncode in (0, 1), done.stderr.decode()
            cluster.wait_idle(client.redis, 60)
            assert client.content_digest() == embedded.content_digest()
            run_dir = next(runs.iterdir())
            for name in ("pain.002.xml", "report.csv"):
                assert (run_dir / name).read_bytes() == (embedded_dir / name).read_bytes(), name
            statuses = cluster.cluster_status(client.redis)
            assert all(st.dead_letters == 0 for st in statuses)
    finally:
        pool.stop_all()
        server.stop()
    return kills, worker_kills


def test_sigkill_cluster_payroll_and_workers_then_rerun_pays_exactly_once(
    tmp_path: Path,
) -> None:
    kills, _ = crash_round(tmp_path / "r", seed=11, kills_wanted=2)
    assert kills >= 1


@pytest.mark.slow
def test_sigkill_cluster_payroll_campaign(tmp_path: Path) -> None:
    kills = worker_kills = 0
    seed = 200
    while kills < 12:
        k, w = crash_round(tmp_path / str(seed), seed=seed, kills_wanted=7)
        kills, worker_kills = kills + k, worker_kills + w
        seed += 1
    assert kills >= 12 and worker_kills >= 2


def test_cli_generate_run_and_status_on_the_cluster(
    tmp_path: Path, two_workers: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from tongbao import cli

    url = two_workers.server.url
    file = tmp_path / "nov.xml"
    assert cli.main(["payroll", "generate", str(file), "--payees", "60", "--redis", url]) == 0
    runs = tmp_path / "runs"
    run = ["payroll", "run", str(file), "--employer", str(gen.EMPLOYER_ID), "--redis", url]
    assert cli.main([*run, "--runs", str(runs), "--json", "--timestamp-ms", str(RUN_MS)]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["paid"] == 60 and summary["group_status"] == "ACSC"
    assert cli.main(["payroll", "status", summary["run_id"], "--runs", str(runs)]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "finished"
    # The employer paid exactly the file's total, once, even when asked twice.
    assert cli.main([*run, "--runs", str(runs), "--quiet", "--timestamp-ms", str(RUN_MS)]) == 0
    spec = gen.PayrollSpec(payees=60)
    employer = ClusterPayrollLedger(two_workers.client, gen.EMPLOYER_ID).wallet(gen.EMPLOYER_ID)
    assert employer is not None and employer.balance_fen == spec.margin_fen


def test_large_registrations_go_in_entries_a_worker_handles_within_its_lease(
    two_workers: Cluster,
) -> None:
    client = two_workers.client
    keys = tb.Keyring()
    client.register_wallets([7], int(tb.WalletKind.OPERATOR), keys.generate([7], 1, b"x"))
    n = cluster.REGISTER_CHUNK + 10
    ids = list(range(1_000, 1_000 + n))
    classes = [1 + i % 4 for i in range(n)]
    client.register_wallets(
        ids, int(tb.WalletKind.PERSONAL), keys.generate(ids, 1, b"x"), wallet_class=classes,
        operator=7,
    )  # fmt: skip
    for w in (ids[0], ids[-1]):  # first and last entry, on a shard other than vshard 0 too
        for v in (0, VSHARDS - 1):
            info = client.query([(v, {"q": "wallet", "id": w})])[0]
            assert (info["wallet_class"], info["operator"]) == (classes[w - 1_000], 7)
