"""Run a whole tongbao cluster on one machine: a private ``redis-server``, worker processes, a
workload checked against an embedded reference ledger, and the fault campaign (SIGKILL of
workers and Redis) behind ``tests/test_cluster_faults.py`` and ``bench/cluster.py``.

Everything binds 127.0.0.1 on free ports and lives in one directory. Workers are started as
new processes (``subprocess``), never forked from a process with threads.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

import tongbao as tb
from tongbao import cluster, shard
from tongbao.cluster_check import CheckReport, History, check_cluster

#: Seconds to wait for a redis-server to answer after start.
REDIS_START_S_MAX = 10.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 6379)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port != 6379:
            return port


class RedisServer:
    """A private ``redis-server`` on a loopback port, durable (AOF, ``appendfsync always``,
    ``aof-load-truncated no``), that can be SIGKILLed and restarted on the same data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
            "--aof-load-truncated", "no", "--save", "", "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + REDIS_START_S_MAX
        while True:
            try:
                if client.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")
            time.sleep(0.02)
        client.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no final fsync)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@dataclass
class WorkerPool:
    """Worker processes of one cluster, each started with ``python -m tongbao worker``."""

    redis_url: str
    data_dir: Path
    vshard_count: int
    lease_ttl_ms: int = 600
    claim_idle_ms: int = 600
    env: dict[str, str] = field(default_factory=dict)
    verify_signatures: bool = True
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started: int = 0

    def start(self, vshards: str = "all", name: str | None = None) -> str:
        self.started += 1
        name = name or f"w{self.started}"
        args = [
            sys.executable, "-m", "tongbao", "worker", "--redis", self.redis_url,
            "--data", str(self.data_dir), "--vshards", vshards,
            "--vshard-count", str(self.vshard_count),
            "--name", name, "--lease-ttl-ms", str(self.lease_ttl_ms),
            "--claim-idle-ms", str(self.claim_idle_ms),
        ]  # fmt: skip
        if not self.verify_signatures:
            args.append("--no-verify")
        log = open(self.data_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.processes[name] = subprocess.Popen(
            args, env={**os.environ, **self.env}, stdout=log, stderr=log
        )
        log.close()
        return name

    def kill(self, name: str) -> None:
        """SIGKILL one worker."""
        p = self.processes.pop(name)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait()

    def stop_all(self) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.terminate()
        for p in self.processes.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.processes.clear()


class Workload:
    """Payments between wallets spread over every vshard, each round checked against an
    embedded, unsharded reference ledger that settles the same transactions."""

    def __init__(self, client: cluster.Cluster, wallets: int = 40, seed: int = 1) -> None:
        self.client = client
        self.keys = tb.Keyring()
        self.mirror = tb.Ledger(threads=1)
        self.rng = random.Random(seed)
        self.history = History()
        self.now_ms = 1_000
        self.central_bank, self.operators = 1, [10, 11]
        self.persons = list(range(1_000, 1_000 + wallets))
        for ids, kind in (
            ([self.central_bank], tb.WalletKind.CENTRAL_BANK),
            (self.operators, tb.WalletKind.OPERATOR),
            (self.persons, tb.WalletKind.PERSONAL),
        ):
            publics = self.keys.generate(ids, int(tb.Scheme.ED25519), b"cluster")
            self.mirror.register_wallets(ids, kind, publics)
            client.register_wallets(ids, int(kind), publics)
        self.mismatches: list[str] = []

    def _settle(self, txs: list[bytes]) -> np.ndarray:
        self.now_ms += 1_000
        expected = self.mirror.settle(txs, self.now_ms).statuses
        got = self.client.settle(txs, self.now_ms)
        self.history.record(txs, got)
        # A batch settled and then redelivered (worker killed before it answered) answers
        # ALREADY_SETTLED where the reference says OK; every other status must agree.
        same = (got == expected) | ((expected == tb.Status.OK) & (got == tb.Status.ALREADY_SETTLED))
        for i in np.flatnonzero(~same)[:5]:
            cluster_says, reference_says = (
                tb.Status(int(got[i])).name,
                tb.Status(int(expected[i])).name,
            )
            self.mismatches.append(f"tx {i}: cluster {cluster_says}, reference {reference_says}")
        return got

    def fund(self, per_person_fen: int = 100_000) -> None:
        """Issue to the operators and pay every person from them (credits across shards)."""
        total = per_person_fen * len(self.persons)
        issue = tb.issue(
            self.keys,
            self.central_bank,
            [(op, total) for op in self.operators],
            timestamp_ms=self.now_ms + 1_000,
        )
        self._settle([issue])
        self.client_wait()
        payers = [self.operators[i % 2] for i in range(len(self.persons))]
        txs, _ = self.mirror.build_payments(
            self.keys,
            payers,
            self.persons,
            [per_person_fen] * len(self.persons),
            self.now_ms + 1_000,
        )
        self._settle(txs)
        self.client_wait()

    def round(self, payments: int = 50) -> np.ndarray:
        """One round of random person-to-person payments (some deliberately resubmitted)."""
        # Payers and payees are disjoint within a round: value received from another shard is
        # spendable once its credit has arrived, not within the batch that pays it.
        people = self.persons[:]
        self.rng.shuffle(people)
        half = len(people) // 2
        payers = [self.rng.choice(people[:half]) for _ in range(payments)]
        payees = [self.rng.choice(people[half:]) for _ in range(payments)]
        amounts = [self.rng.randint(1, 5_000) for _ in range(payments)]
        txs, _ = self.mirror.build_payments(
            self.keys, payers, payees, amounts, self.now_ms + 1_000, skip_insufficient=True
        )
        txs += txs[: len(txs) // 10]  # resubmissions answer ALREADY_SETTLED
        got = self._settle(txs)
        self.client_wait()
        return got

    def client_wait(self, timeout_s: float = 60.0) -> None:
        cluster.wait_idle(self.client.redis, timeout_s)

    def expected_balances(self) -> dict[int, int]:
        ids = [self.central_bank, *self.operators, *self.persons]
        return dict(zip(ids, (int(b) for b in self.mirror.balances(ids)), strict=True))


def cluster_balances(data_dir: Path, vshard_count: int, wallet_ids: list[int]) -> dict[int, int]:
    """Each wallet's balance on its home shard (workers stopped)."""
    homes = shard.home_vshards(wallet_ids, vshard_count).tolist() if wallet_ids else []
    out: dict[int, int] = {}
    for w, v in zip(wallet_ids, homes, strict=True):
        with tb.Ledger.open(
            data_dir / f"v{int(v):03d}", threads=1, verify_signatures=False
        ) as ledger:
            out[w] = ledger.balance(w)
    return out


@dataclass
class CampaignResult:
    """What a fault campaign did and what the checker found."""

    worker_kills: int
    redis_kills: int
    rounds: int
    acknowledged: int
    mismatches: list[str]
    balance_errors: list[str]
    report: CheckReport


def run_campaign(
    directory: Path,
    *,
    kills: int,
    vshard_count: int = 8,
    workers: int = 2,
    redis_kill_every: int = 10,
    wallets: int = 40,
    payments: int = 40,
    seed: int = 7,
) -> CampaignResult:
    """SIGKILL workers (and every ``redis_kill_every``-th time Redis) mid-run, ``kills`` times,
    restarting each; then stop everything and check the history and the ledgers."""
    rng = random.Random(seed)
    server = RedisServer(directory / "redis")
    server.start()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(server.url, data, vshard_count)
    worker_kills = redis_kills = rounds = 0
    try:
        names = [pool.start() for _ in range(workers)]
        with cluster.Cluster(
            server.url, vshard_count=vshard_count, inflight_max=4, entry_tx_max=16, timeout_s=120
        ) as client:
            load = Workload(client, wallets=wallets, seed=seed)
            load.fund()
            for k in range(kills):
                # Kill mid-round: the entries are submitted, the kill lands while they settle.
                delay_s = rng.uniform(0.0, 0.15)
                victim = rng.choice(names)
                kill_redis = redis_kill_every > 0 and (k + 1) % redis_kill_every == 0

                def strike(
                    victim: str = victim, kill_redis: bool = kill_redis, delay_s: float = delay_s
                ) -> None:
                    time.sleep(delay_s)
                    if kill_redis:
                        server.kill()
                        server.start()
                    else:
                        pool.kill(victim)

                t = threading.Thread(target=strike)
                t.start()
                load.round(payments)
                t.join()
                rounds += 1
                if kill_redis:
                    redis_kills += 1
                else:
                    worker_kills += 1
                    names[names.index(victim)] = pool.start()
            load.round(payments)
            rounds += 1
            load.client_wait()
            pool.stop_all()
            expected = load.expected_balances()
            got = cluster_balances(data, vshard_count, list(expected))
            balance_errors = [
                f"wallet {w}: cluster {got[w]}, reference {expected[w]}"
                for w in expected
                if got[w] != expected[w]
            ]
            report = check_cluster(data, vshard_count, client.redis, load.history)
            return CampaignResult(
                worker_kills,
                redis_kills,
                rounds,
                report.acknowledged,
                load.mismatches,
                balance_errors,
                report,
            )
    finally:
        pool.stop_all()
        server.stop()
