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
from typing import Any

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


def free_cluster_port() -> int:
    """A free loopback port whose Redis Cluster bus port (port + 10000) is free too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 30_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port


class RedisServer:
    """A private ``redis-server`` on a loopback port, durable (AOF, ``appendfsync always``,
    ``aof-load-truncated no``), that can be SIGKILLed and restarted on the same data."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, extra: list[str] | None = None) -> None:
        """Start (or restart) the server on its directory; ``extra`` arguments are kept for
        restarts."""
        if extra is not None:
            self.extra = extra
        args = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
            "--aof-load-truncated", "no", "--save", "", "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"), *self.extra,
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


class RedisClusterServers:
    """A private Redis Cluster of ``masters`` masters (``replicas`` replicas each) on free
    loopback ports, built from the ``redis-server`` binary with ``redis-cli --cluster create``.
    Every node is durable like :class:`RedisServer` and lives in its own directory; a master
    can be SIGKILLed and restarted from its AOF (``nodes.conf`` keeps its identity and slots).
    ``url`` is a ``redis+cluster://`` URL (see :func:`tongbao.cluster.connect`)."""

    def __init__(
        self, directory: Path, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 3000
    ) -> None:
        self.directory = directory
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes = [
            RedisServer(directory / f"node{i}", free_cluster_port())
            for i in range(masters * (1 + replicas))
        ]

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def _start_node(self, node: RedisServer) -> None:
        node.start(
            [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
            ]
        )

    def start(self) -> None:
        """Start every node, create the cluster, wait until every node says ``cluster_state:ok``."""
        try:
            for node in self.nodes:
                self._start_node(node)
            self._create()
        except BaseException:
            self.kill()
            raise

    def _create(self) -> None:
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            if node.process is None:
                continue
            client: Any = redis.Redis(port=node.port, socket_timeout=1.0)
            try:
                while True:
                    try:
                        info = client.execute_command("CLUSTER", "INFO")
                        if "cluster_state:ok" in str(info) or (
                            isinstance(info, dict) and info.get("cluster_state") == "ok"
                        ):
                            break
                    except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"Redis Cluster node {node.port} not ok")
                    time.sleep(0.05)
            finally:
                client.close()

    def master_of(self, key: str) -> RedisServer:
        """The node that serves ``key``'s slot now."""
        client: Any = redis.Redis(port=self.nodes[0].port, socket_timeout=2.0)
        try:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for lo, hi, primary, *_ in client.execute_command("CLUSTER SLOTS"):
                if lo <= slot <= hi:
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        finally:
            client.close()
        raise RuntimeError(f"no node serves {key}")

    def kill_and_restart(self, node: RedisServer) -> None:
        """SIGKILL one node and start it again on its AOF and ``nodes.conf``."""
        node.kill()
        self._start_node(node)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


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
    """What a fault campaign did and what the checker found (``entries``: stream entries
    acknowledged, ``seconds``: wall time)."""

    worker_kills: int
    redis_kills: int
    rounds: int
    acknowledged: int
    mismatches: list[str]
    balance_errors: list[str]
    report: CheckReport
    entries: int = 0
    seconds: float = 0.0


def _campaign_result(
    load: Any,
    pool: Any,
    client: Any,
    data: Path,
    vshard_count: int,
    counts: tuple[int, int, int],
    began: float,
) -> CampaignResult:
    """End of a campaign (one Redis or a Redis Cluster): wait for the client, stop the workers,
    compare every balance with the reference and run the checker."""
    worker_kills, redis_kills, rounds = counts
    load.client_wait()
    entries = sum(s.entries for s in cluster.cluster_status(client.redis))
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
        entries,
        time.monotonic() - began,
    )


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
    began = time.monotonic()
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
            return _campaign_result(
                load, pool, client, data, vshard_count, (worker_kills, redis_kills, rounds), began
            )
    finally:
        pool.stop_all()
        server.stop()


def run_cluster_campaign(
    directory: Path,
    *,
    events: int,
    vshard_count: int = 8,
    hosts: int = 2,
    workers_per_host: int = 2,
    wallets: int = 40,
    payments: int = 40,
    seed: int = 11,
) -> CampaignResult:
    """The fault campaign on a 3-master Redis Cluster (:class:`RedisClusterServers`) with
    ``hosts`` simulated hosts of ``workers_per_host`` workers each (every host serves every
    vshard, split among its workers; one data directory stands for the shared volume). Each of
    ``events`` rounds has one fault landing mid-round, alternately: every worker process of one
    host SIGKILLed (the other hosts take over; the host comes back as a standby), or the Redis
    master of a random vshard SIGKILLed and restarted from its AOF. Then everything stops and
    the history, the balances and the checker are checked."""
    rng = random.Random(seed)
    began = time.monotonic()
    servers = RedisClusterServers(directory / "redis")
    servers.start()
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    pool = WorkerPool(servers.url, data, vshard_count)
    per = -(-vshard_count // workers_per_host)
    ranges = [
        f"{i * per}-{min(vshard_count, (i + 1) * per) - 1}"
        for i in range(workers_per_host)
        if i * per < vshard_count
    ]

    def start_host(h: int) -> list[str]:
        return [pool.start(r, name=f"host{h}-{pool.started + 1}") for r in ranges]

    worker_kills = redis_kills = rounds = 0
    try:
        members = {h: start_host(h) for h in range(hosts)}
        with cluster.Cluster(
            servers.url, vshard_count=vshard_count, inflight_max=4, entry_tx_max=16, timeout_s=120
        ) as client:
            load = Workload(client, wallets=wallets, seed=seed)
            load.fund()
            for k in range(events):
                delay_s = rng.uniform(0.0, 0.15)
                kill_redis = k % 2 == 1
                host = rng.randrange(hosts)
                master = servers.master_of(cluster.key("in", rng.randrange(vshard_count)))

                def strike(
                    kill_redis: bool = kill_redis,
                    host: int = host,
                    master: RedisServer = master,
                    delay_s: float = delay_s,
                ) -> None:
                    time.sleep(delay_s)
                    if kill_redis:
                        servers.kill_and_restart(master)
                    else:
                        for name in members[host]:
                            pool.kill(name)

                t = threading.Thread(target=strike)
                t.start()
                load.round(payments)
                t.join()
                rounds += 1
                if kill_redis:
                    redis_kills += 1
                else:
                    worker_kills += len(members[host])
                    members[host] = start_host(host)
            load.round(payments)
            rounds += 1
            return _campaign_result(
                load, pool, client, data, vshard_count, (worker_kills, redis_kills, rounds), began
            )
    finally:
        pool.stop_all()
        servers.stop()
