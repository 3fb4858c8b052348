"""The transport misbehaving: a TCP proxy that drops Redis replies (redis-py then retries the
command, which Redis already executed), and poison entries going to the dead-letter stream."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import redis

from tongbao import cluster, shard
from tongbao.cluster_check import check_cluster
from tongbao.cluster_harness import RedisServer, WorkerPool, Workload, cluster_balances

VSHARDS = 4


class ReplyDroppingProxy:
    """Forwards loopback TCP to Redis; every ``drop_every``-th chunk of replies is swallowed and
    the connection closed, after Redis executed the command: the client cannot tell whether it
    ran, and redis-py retries it."""

    def __init__(self, target_port: int, drop_every: int) -> None:
        self.target_port = target_port
        self.drop_every = drop_every
        self.replies = 0
        self.dropped = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies:
                    with self.lock:
                        self.replies += 1
                        drop = self.replies % self.drop_every == 0
                        self.dropped += drop
                    if drop:
                        break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def test_retries_after_dropped_replies_apply_nothing_twice(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    proxy = ReplyDroppingProxy(redis_server.port, drop_every=15)
    data = tmp_path / "data"
    data.mkdir()
    pool = WorkerPool(proxy.url, data, VSHARDS)
    direct = redis.Redis(port=redis_server.port)
    try:
        pool.start("0-1")
        pool.start("2-3")
        with cluster.Cluster(
            proxy.url, vshard_count=VSHARDS, inflight_max=2, entry_tx_max=8, timeout_s=60
        ) as client:
            load = Workload(client, wallets=16)
            load.fund()
            for _ in range(3):
                load.round(24)
            cluster.wait_idle(direct, 60)
        pool.stop_all()
        assert proxy.dropped >= 20, proxy.dropped
        assert load.mismatches == [], load.mismatches
        expected = load.expected_balances()
        assert cluster_balances(data, VSHARDS, list(expected)) == expected
        report = check_cluster(data, VSHARDS, direct, load.history)
        assert report.errors == []
        assert report.credits_in_fen == report.credits_out_fen > 0
    finally:
        pool.stop_all()
        proxy.close()
        direct.close()


def test_poison_entries_go_to_the_dead_letter_stream(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pool = WorkerPool(redis_server.url, data, VSHARDS)
    r = redis.Redis(port=redis_server.port)
    try:
        pool.start("all")
        with cluster.Cluster(redis_server.url, vshard_count=VSHARDS, timeout_s=20) as client:
            Workload(client, wallets=4)  # registers wallets on every shard
        # A batch whose framing is broken: refused whole, at once, and the submitter told why.
        reply = cluster.key("res:", 1) + "poison"
        r.xadd(cluster.key("in", 1), {"op": "settle", "batch": b"\x05\x00", "reply": reply})
        # A credit sent to the wrong shard (its owner lives on vshard 3): refused whole,
        # retried, then dead-lettered, never dropped. (A credit for an unregistered owner is a
        # per-credit outcome instead: bounced or held in suspense.)
        stranger = next(w for w in range(5_000, 6_000) if shard.home_vshards([w], VSHARDS)[0] == 3)
        packed = shard.pack_credits([shard.Credit(b"s".ljust(32, b"\0"), stranger, 777, 0)])
        r.xadd(cluster.key("credit", 2), {"credits": packed, "src": 0})
        deadline = time.monotonic() + 30
        while r.xlen(cluster.key("dlq", 1)) < 1 or r.xlen(cluster.key("dlq", 2)) < 1:
            assert time.monotonic() < deadline, "poison entries not dead-lettered"
            time.sleep(0.1)
        [(_, refused)] = r.xrange(cluster.key("dlq", 1))
        assert refused[b"reason"].startswith(b"refused: MalformedTransaction")
        assert (r.get(reply) or b"").startswith(b"E")
        [(_, credit)] = r.xrange(cluster.key("dlq", 2))
        assert b"lives on vshard 3" in credit[b"reason"] and credit[b"credits"] == packed
        assert int(r.xpending(cluster.key("credit", 2), cluster.GROUP)["pending"]) == 0
        status = cluster.cluster_status(r)
        assert [s.dead_letters for s in status] == [0, 1, 1, 0]
    finally:
        pool.stop_all()
        r.close()
