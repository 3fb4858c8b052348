"""Distributed settlement over Redis Streams: virtual shards, workers, credits, a client.

Wallets hash to ``vshard_count`` virtual shards (:func:`tongbao.shard.home_vshards`). A
``tongbao worker`` process owns vshards through fenced leases, keeps one durable
:class:`tongbao.Ledger` per vshard (its own write-ahead log directory), and consumes the vshard's
streams with a consumer group: ``tb:{vNNN}:in`` (batches of encoded transactions, wallet
registrations) and ``tb:{vNNN}:credit`` (credits exported by other shards). It acknowledges an
entry (XACK) only after the ledger committed it durably, in one Lua script that first checks
its lease, so a worker whose lease was taken can no longer acknowledge or answer. Results go to
a per-request list the submitter waits on. Redis is the transport; each vshard's log is the
system of record. The full design is in ``docs/cluster.md``.

>>> import tongbao as tb
>>> key("in", 7)
'tb:{v007}:in'
>>> key("credit", 42)
'tb:{v042}:credit'
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tongbao import _core, shard
from tongbao.errors import (
    BatchRejected,
    ClusterTimeout,
    InvalidArgument,
    LedgerClosed,
    LedgerFailed,
    LedgerLocked,
    StorageError,
    TongbaoError,
)
from tongbao.ledger import Ledger
from tongbao.limits import ClassLimits, Limits
from tongbao.types import Status

log = logging.getLogger("tongbao.cluster")

#: Virtual shards of a new cluster (fixed for the cluster's life: it is in every wallet's home).
VSHARD_COUNT_DEFAULT = 256
#: Consumer group of the workers on every stream.
GROUP = "tongbao"
#: Most transactions in one stream entry (the client splits larger groups).
ENTRY_TX_MAX = 4096
#: Wallets per registration entry: a worker registers an entry's wallets in one go, and an
#: entry must be handled well within a lease's TTL (a longer one loses the lease every time).
REGISTER_CHUNK = 4096
#: Stream entries a client keeps in flight before it waits for results (backpressure): one per
#: vshard of the default count, so one call keeps every vshard busy. Redis holds at most this
#: many entries of a client (each up to ENTRY_TX_MAX transactions).
INFLIGHT_MAX_DEFAULT = 256
#: Vshards a worker handles at once (threads; the ledgers release the GIL while they settle).
WORKER_THREADS = 8
#: XREADGROUP bounds of a worker: entries per stream per read, and how long a read blocks.
READ_COUNT = 32
READ_BLOCK_MS = 100
#: A vshard lease lasts this long unless renewed (renewed every third of it).
LEASE_TTL_MS_DEFAULT = 5_000
#: Pending entries idle this long are claimed (XAUTOCLAIM) by the vshard's current owner.
CLAIM_IDLE_MS_DEFAULT = 5_000
#: An entry delivered this many times without being acknowledged goes to ``tb:{vNNN}:dlq``.
DELIVERIES_MAX_DEFAULT = 5
#: Entries claimed per XAUTOCLAIM call, and calls per reclaim round.
CLAIM_COUNT = 64
#: How far ahead of this worker's clock a submitter's batch-time hint may be; a later hint is
#: clamped (a shard never goes back in time, so one bad hint would otherwise expire everything).
CLOCK_SKEW_MS_MAX = 60_000
CLAIM_ROUNDS_MAX = 16
#: Credits per XADD when a worker delivers its outbox.
OUTBOX_FLUSH_MAX = 4096
#: Exports sent between two logged delivery marks (each mark is one fsync of the vshard's log).
OUTBOX_MARK_EVERY = 4096
#: Seconds a result list is kept for its submitter.
REPLY_TTL_S = 600
#: How long a worker waits for Redis to come back before it exits.
REDIS_DOWN_S_MAX = 60.0
#: Default seconds a client waits for all results of one ``settle`` call.
SETTLE_TIMEOUT_S_DEFAULT = 60.0
#: redis-py retries of one command after a connection error (the command may have run: every
#: message is idempotent), with exponential backoff from 10 ms up to 500 ms.
REDIS_RETRIES = 5
REDIS_BACKOFF_S_CAP = 0.5
#: Key of the cluster's configuration hash (vshard count).
CONFIG_KEY = "tb:config"
#: Environment variable of the checker's negative control (breaks exactly-once credit import).
UNSAFE_REAPPLY_ENV = "TONGBAO_UNSAFE_REAPPLY_CREDITS"

_CREDIT_DTYPE = np.dtype([("token", "V32"), ("owner", "<u8"), ("value", "<u8"), ("refund", "<u8")])


def key(kind: str, vshard: int) -> str:
    """The Redis key of one vshard's ``kind`` (in, credit, out, dlq, lease, epoch, stats, ...).
    Every key of a vshard shares the hash tag ``{vNNN}``, so Redis Cluster keeps them in one slot
    and one Lua script can touch them all."""
    return f"tb:{{v{vshard:03d}}}:{kind}"


#: URL schemes of a Redis Cluster (``redis+cluster://host:port``: any node; the client finds
#: the others and follows slot moves and failovers).
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
#: Errors after which a command may succeed later (Redis restarting, a Cluster master down or
#: failing over): workers and clients wait and retry, everything else is a bug or poison.
TRANSIENT_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
)


def is_cluster_url(redis_url: str) -> bool:
    """Whether ``redis_url`` names a Redis Cluster (``redis+cluster://``) rather than one Redis.

    >>> is_cluster_url("redis+cluster://127.0.0.1:7000"), is_cluster_url("redis://127.0.0.1:7000")
    (True, False)
    """
    return redis_url.startswith(CLUSTER_SCHEMES)


def connect(redis_url: str, socket_timeout_s: float = 10.0, retries: int = REDIS_RETRIES) -> Any:
    """A redis-py client that retries a command after a connection error ``retries`` times
    (redis-py's own default does not, for a plain ``from_url``). ``redis://`` gives a
    ``redis.Redis``; ``redis+cluster://host:port`` (any node of a Redis Cluster) gives a
    ``redis.RedisCluster``, which routes every command by its keys' slot. Typed ``Any``:
    redis-py's annotations are looser than its replies (bytes here).

    >>> type(connect("redis://127.0.0.1:1")).__name__
    'Redis'
    """
    retry = Retry(ExponentialBackoff(cap=REDIS_BACKOFF_S_CAP, base=0.01), retries)
    if is_cluster_url(redis_url):
        return redis.RedisCluster.from_url(
            redis_url.replace("+cluster", "", 1),
            socket_timeout=socket_timeout_s,
            retry=retry,
        )
    return redis.Redis.from_url(
        redis_url,
        socket_timeout=socket_timeout_s,
        retry=retry,
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def _batch_time(ledger: Ledger, entries: list[dict[bytes, bytes]]) -> int:
    """The time a shard settles entries at: the submitters' latest hint (now when none),
    clamped to ``CLOCK_SKEW_MS_MAX`` ahead of this worker's clock, never before the shard's
    last batch. A hint that is not a number refuses the entry (``InvalidArgument``)."""
    now_ms = int(time.time() * 1000)
    hints = []
    for fields in entries:
        raw = fields.get(b"ts", b"0")
        if not raw.isdigit() or len(raw) > 19:
            raise InvalidArgument(f"ts {raw[:24]!r} is not a time in ms")
        hints.append(int(raw))
    hint = max(hints, default=0) or now_ms
    return max(ledger.last_timestamp_ms, min(hint, now_ms + CLOCK_SKEW_MS_MAX))


def parse_vshards(text: str, count: int) -> list[int]:
    """Parse ``all`` or a list like ``0-7,9,12-13`` into sorted vshard numbers below ``count``.

    >>> parse_vshards("0-2,5", 8)
    [0, 1, 2, 5]
    >>> parse_vshards("all", 3)
    [0, 1, 2]
    """
    if text == "all":
        return list(range(count))
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidArgument(f"vshards: {part!r} is not N or N-M") from None
        if not 0 <= first <= last < count:
            raise InvalidArgument(f"vshards: {part!r} is outside 0-{count - 1}")
        out.update(range(first, last + 1))
    return sorted(out)


def cluster_vshard_count(client: redis.Redis, requested: int | None = None) -> int:
    """The cluster's vshard count, fixed by whoever came first (``tb:config``). Raises
    ``InvalidArgument`` when ``requested`` differs from the stored count."""
    if requested is not None and not 1 <= requested <= shard.VSHARD_COUNT_MAX:
        raise InvalidArgument(f"vshard count {requested}: 1 to {shard.VSHARD_COUNT_MAX}")
    client.hsetnx(CONFIG_KEY, "vshards", requested or VSHARD_COUNT_DEFAULT)
    stored = int(client.hget(CONFIG_KEY, "vshards") or 0)
    if requested is not None and stored != requested:
        raise InvalidArgument(f"this cluster has {stored} vshards, not {requested}")
    return stored


# -- Lua: leases and fenced acknowledgements ---------------------------------------------------

#: KEYS lease, epoch; ARGV owner, ttl_ms. Returns the epoch held (new or renewed), 0 if taken.
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local e, o = string.match(cur, '^(%d+):(.*)$')
  if o == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(e)
  end
  return 0
end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], e .. ':' .. ARGV[1], 'PX', ARGV[2])
return e
"""
#: KEYS lease; ARGV token, ttl_ms (0: release). 1 if the lease was ours.
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then redis.call('DEL', KEYS[1]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
#: KEYS lease, stream, reply, stats, reply notification; ARGV token, group, id, reply payload,
#: reply ttl, txs. Acknowledge an entry and answer its submitter, only while the lease is ours.
#: The first answer sticks (SET NX): a redelivered entry does not overwrite it.
_COMMIT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[4] ~= '' and redis.call('SET', KEYS[3], ARGV[4], 'NX', 'EX', ARGV[5]) then
  redis.call('RPUSH', KEYS[5], 1)
  redis.call('EXPIRE', KEYS[5], ARGV[5])
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'entries', 1)
redis.call('HINCRBY', KEYS[4], 'txs', ARGV[6])
return 1
"""
#: KEYS lease, stream, stats, then (reply, notification) per entry; ARGV token, group, n, reply
#: ttl, txs, then n ids, then n reply payloads ('' for none). Acknowledge n entries of one
#: vshard settled together, answering each submitter (first answer sticks), while the lease is
#: ours.
_COMMIT_MANY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[3])
for i = 1, n do
  local payload = ARGV[5 + n + i]
  if payload ~= '' and redis.call('SET', KEYS[2 + 2 * i], payload, 'NX', 'EX', ARGV[4]) then
    redis.call('RPUSH', KEYS[3 + 2 * i], 1)
    redis.call('EXPIRE', KEYS[3 + 2 * i], ARGV[4])
  end
  redis.call('XACK', KEYS[2], ARGV[2], ARGV[5 + i])
end
redis.call('HINCRBY', KEYS[3], 'entries', n)
redis.call('HINCRBY', KEYS[3], 'txs', ARGV[5])
return 1
"""
#: KEYS lease, stream, dlq, reply, reply notification; ARGV token, group, id, reason, reply
#: payload, reply ttl,
#: then field, value pairs of the entry. Move a poison entry to the dead-letter stream.
_DEAD_LETTER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local fields = {'source_id', ARGV[3], 'reason', ARGV[4]}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[3], '*', unpack(fields))
if ARGV[5] ~= '' and redis.call('SET', KEYS[4], ARGV[5], 'NX', 'EX', ARGV[6]) then
  redis.call('RPUSH', KEYS[5], 1)
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
return 1
"""


#: KEYS lease, log epoch; ARGV token, epoch. Record (fenced) the lease epoch the vshard's log
#: now carries; it only grows. 1 if recorded, 0 if the lease is not ours.
_RECORD_LOG_EPOCH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > cur then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"""
#: KEYS credit, in (one vshard: one slot); ARGV group, consumer, count. A Redis Cluster worker
#: reads each vshard with this script (XREADGROUP over several slots is refused there); a
#: pipeline of them costs one round trip per node.
_READ = """
return redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], KEYS[2], '>', '>')
"""
#: Seconds a Redis Cluster worker sleeps after a poll that found nothing, and a Redis Cluster
#: client blocks on one vshard's notifications before it polls every answer.
CLUSTER_POLL_S = 0.02


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise


# -- reads -------------------------------------------------------------------------------------

#: Reads a client may ask of one vshard's ledger (``op=query`` entries, answered ``Q`` + JSON).
#: They travel through the vshard's ingress stream, so a read is ordered after every batch
#: submitted to that vshard before it (read-your-writes for one submitter).
QUERIES = ("wallet", "payee_states", "unspent", "outflow_room", "last_timestamp_ms", "digest")


def query_ledger(ledger: Ledger, request: dict[str, Any]) -> bytes:
    """Answer one read of a vshard's ledger as JSON bytes (see :data:`QUERIES`): ``wallet``
    (its fields, or null), ``payee_states`` (four lists), ``unspent`` (the spendable tokens,
    :meth:`tongbao.Ledger.spendable`: [[token hex, fen]], null if unknown), ``outflow_room``
    ([cap or null, room or null]), ``last_timestamp_ms``, ``digest`` (the shard's share of the
    content digest, :func:`tongbao.shard.content_parts`). Raises ``InvalidArgument`` for an
    unknown read.

    >>> import tongbao as tb
    >>> ledger = tb.Ledger()
    >>> query_ledger(ledger, {"q": "wallet", "id": 5}), query_ledger(ledger, {"q": "unspent",
    ...     "id": 5})
    (b'null', b'null')
    """
    q = request.get("q")
    if q == "wallet":
        info = ledger.wallet(int(request["id"]))
        if info is None:
            return b"null"
        d = {k: int(v) for k, v in vars(info).items() if k != "public_key"}
        return orjson.dumps({**d, "public_key": info.public_key.hex()})
    if q == "payee_states":
        states = ledger.payee_states(np.asarray(request["ids"], dtype=np.uint64))
        return orjson.dumps(
            [
                states.status.tolist(),
                states.balance_fen.tolist(),
                states.balance_cap_fen.tolist(),
                states.can_sweep.tolist(),
            ]
        )
    if q == "unspent":
        wallet_id = int(request["id"])
        if ledger.wallet(wallet_id) is None:
            return b"null"
        return orjson.dumps([[t.hex(), v] for t, v in ledger.spendable(wallet_id)])
    if q == "outflow_room":
        return orjson.dumps(list(ledger.outflow_room(int(request["id"]), int(request["ts"]))))
    if q == "last_timestamp_ms":
        return orjson.dumps(ledger.last_timestamp_ms)
    if q == "digest":
        # The shard's share of the content digest (128-bit totals as text: JSON numbers are
        # not safe above 2**53 everywhere).
        parts = shard.content_parts(ledger)
        return orjson.dumps([parts[0].hex(), *(str(p) for p in parts[1:])])
    raise InvalidArgument(f"unknown query {q!r}; one of {', '.join(QUERIES)}")


def limits_to_json(limits: Limits) -> bytes:
    """A limits table as the JSON of an ``op=limits`` entry (:func:`limits_from_json`).

    >>> import tongbao as tb
    >>> limits_from_json(limits_to_json(tb.load_limits())) == tb.load_limits()
    True
    """
    return orjson.dumps(
        {
            "version": limits.version,
            "over_balance_cap": limits.over_balance_cap,
            "classes": {str(c): list(row.row()) for c, row in limits.classes.items()},
            "sub_wallet": list(limits.sub_wallet.row()),
        }
    )


def limits_from_json(data: bytes) -> Limits:
    """The limits table of an ``op=limits`` entry."""
    d = orjson.loads(data)
    return Limits(
        version=str(d["version"]),
        over_balance_cap=str(d["over_balance_cap"]),
        classes={int(c): ClassLimits(*row) for c, row in d["classes"].items()},
        sub_wallet=ClassLimits(*d["sub_wallet"]),
    )


# -- worker ------------------------------------------------------------------------------------


@dataclass
class WorkerConfig:
    """What a ``tongbao worker`` process runs: which vshards it may own, where their ledgers
    live, and its bounds (all times in ms)."""

    redis_url: str
    data_dir: Path
    vshards: list[int]
    vshard_count: int = VSHARD_COUNT_DEFAULT
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_ttl_ms: int = LEASE_TTL_MS_DEFAULT
    claim_idle_ms: int = CLAIM_IDLE_MS_DEFAULT
    deliveries_max: int = DELIVERIES_MAX_DEFAULT
    threads: int = 1
    verify_signatures: bool = True
    snapshot_every_records: int = 10_000


@dataclass
class _Owned:
    vshard: int
    epoch: int
    token: str
    ledger: Ledger
    renewed_at: float
    #: Exports sent to their streams (in memory: after a restart the unmarked ones are sent
    #: again, which the receivers ignore) and the last one marked delivered in the log.
    sent_upto: int = 0
    marked_upto: int = 0
    #: Pending entries (delivered, not acknowledged) must be handled before new ones: set when
    #: the vshard is taken over and after a failed read, whose entries may sit in the pending
    #: list unseen. Entries of one vshard are handled in stream order, always.
    drain: bool = True


@dataclass
class _Settled:
    """Entries of one vshard settled together, waiting for their credits to be sent and their
    fenced acknowledgement (done for every vshard of one read at once)."""

    owned: _Owned
    keys: list[str]
    args: list[Any]


class LeaseLost(TongbaoError):
    """A worker's lease on a vshard was taken (or expired): it stops serving that vshard."""


class Worker:
    """One worker process: owns vshards by lease, settles their streams into their ledgers.

    Run it with ``tongbao worker``; tests start it as a subprocess (never by forking a process
    that has threads)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        #: Lease owner and consumer name: the worker's name plus a per-process nonce, so two
        #: processes given the same ``--name`` never share a lease or a consumer.
        self.identity = f"{config.name}~{secrets.token_hex(6)}"
        self.cluster_mode = is_cluster_url(config.redis_url)
        self.redis: Any = connect(config.redis_url)
        # XREADGROUP ">" is not idempotent: a retried read after a lost reply skips the
        # entries the lost reply carried (they wait in the pending list). Reads therefore never
        # retry silently; a failed read makes the worker drain its pending entries first.
        self.reader: Any = connect(config.redis_url, retries=0)
        self.owned: dict[int, _Owned] = {}
        self._stop = False
        self._acquire = self.redis.register_script(_ACQUIRE)
        self._renew = self.redis.register_script(_RENEW)
        self._commit = self.redis.register_script(_COMMIT)
        self._commit_many = self.redis.register_script(_COMMIT_MANY)
        self._dead_letter = self.redis.register_script(_DEAD_LETTER)
        self._record_log_epoch = self.redis.register_script(_RECORD_LOG_EPOCH)
        self._read_sha = ""
        self._refused: set[int] = set()
        #: While the vshards of one read are handled: settled groups whose credits and
        #: acknowledgements are sent afterwards, all in one pipeline each.
        self._settled: list[_Settled] | None = None
        self._last_claim = 0.0
        self._last_acquire = 0.0
        self._failures: dict[tuple[int, str, bytes], str] = {}
        self._unsafe_reapply = os.environ.get(UNSAFE_REAPPLY_ENV) == "1"
        self._pool = ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="tongbao-vshard")

    def stop(self, *_: object) -> None:
        """Finish the entry in hand, then leave (SIGTERM / SIGINT)."""
        self._stop = True

    # -- leases ----------------------------------------------------------------------------

    def _try_acquire(self, v: int) -> None:
        c = self.config
        acquired_at = time.monotonic()  # the lease's TTL runs from here, not from the open
        epoch = int(
            self._acquire(
                keys=[key("lease", v), key("epoch", v)], args=[self.identity, c.lease_ttl_ms]
            )
        )
        if epoch == 0:
            return
        token = f"{epoch}:{self.identity}"
        directory = c.data_dir / f"v{v:03d}"
        try:
            ledger = Ledger.open(
                directory,
                threads=c.threads,
                verify_signatures=c.verify_signatures,
                snapshot_every_records=c.snapshot_every_records,
            )
        except LedgerLocked:
            # The previous owner is still alive with the directory open: let it notice its
            # fence and close; try again later.
            self._renew(keys=[key("lease", v)], args=[token, 0])
            return
        # The log must be at least as new as the last log Redis saw take this vshard: a fresh
        # or stale directory (a standby without the shared volume, a wrong --data) would fork
        # the shard. Refuse it; an operator must bring the right directory.
        log_epoch, recorded = shard.epoch(ledger), int(self.redis.get(key("logepoch", v)) or 0)
        if log_epoch < recorded:
            if v not in self._refused:
                log.error(
                    "vshard %d: %s is at epoch %d, the cluster's log of this vshard is at epoch "
                    "%d: a fresh or stale data directory, refused",
                    v,
                    directory,
                    log_epoch,
                    recorded,
                )
            self._refused.add(v)
            ledger.close()
            self._renew(keys=[key("lease", v)], args=[token, 0])
            return
        shard.make_shard(ledger, c.vshard_count, v, _unsafe_reapply_credits=self._unsafe_reapply)
        try:
            shard.set_epoch(ledger, epoch)  # the log records who writes from here on
        except InvalidArgument:
            # The log has seen a newer epoch than Redis hands out (Redis lost its counter):
            # refuse to write, leave the shard to an operator.
            log.error("vshard %d: epoch %d is older than its log's", v, epoch)
            ledger.close()
            self._renew(keys=[key("lease", v)], args=[token, 0])
            return
        if not self._record_log_epoch(
            keys=[key("lease", v), key("logepoch", v)], args=[token, epoch]
        ):
            ledger.close()
            return
        self._refused.discard(v)
        for kind in ("in", "credit"):
            _ensure_group(self.redis, key(kind, v))
        owned = _Owned(v, epoch, token, ledger, acquired_at)
        self.owned[v] = owned
        self._renew_due()  # a slow recovery: renew now, or drop the vshard if the lease lapsed
        if self.owned.get(v) is not owned:
            return
        log.info("vshard %d: epoch %d, recovered %s", v, epoch, ledger.recovery)
        self._flush_outbox(owned)

    def _drop(self, v: int, why: str) -> None:
        owned = self.owned.pop(v, None)
        if owned is not None:
            log.warning("vshard %d: dropped (%s)", v, why)
            owned.ledger.close()

    def _renew_due(self) -> None:
        """Renew the leases due (a third of their TTL old); called between groups of entries
        too. A single settle that outlasts the TTL still loses its lease (the commit is then
        refused and the vshard recovered): keep entries and ``READ_COUNT`` small enough."""
        now = time.monotonic()
        ttl_s = self.config.lease_ttl_ms / 1000
        due = [o for o in self.owned.values() if now - o.renewed_at >= ttl_s / 3]
        if not due:
            return
        # One pipeline for all (EVALSHA by command: a cluster pipeline routes it by its key).
        pipe = self.redis.pipeline(transaction=False)
        for owned in due:
            pipe.execute_command(
                "EVALSHA",
                self._renew.sha,
                1,
                key("lease", owned.vshard),
                owned.token,
                self.config.lease_ttl_ms,
            )
        results = pipe.execute(raise_on_error=False)
        for owned, result in zip(due, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                result = self._renew(
                    keys=[key("lease", owned.vshard)], args=[owned.token, self.config.lease_ttl_ms]
                )
            elif isinstance(result, Exception):
                raise result
            if result:
                owned.renewed_at = now
            else:
                self._drop(owned.vshard, "lease lost")

    def _leases(self) -> None:
        self._renew_due()
        now = time.monotonic()
        if now - self._last_acquire >= self.config.lease_ttl_ms / 4000:
            self._last_acquire = now
            for v in self.config.vshards:
                if v not in self.owned:
                    self._try_acquire(v)
                    self._renew_due()

    # -- entries ---------------------------------------------------------------------------

    def _fenced(self, owned: _Owned, script: Any, keys: list[str], args: list[Any]) -> None:
        if not script(keys=keys, args=[owned.token, *args]):
            self._drop(owned.vshard, "fenced: lease taken")
            raise LeaseLost(f"vshard {owned.vshard}: lease lost")

    def _handle(
        self, owned: _Owned, kind: str, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        v = owned.vshard
        stream = key(kind, v)
        reply = fields.get(b"reply", b"").decode()
        if reply and not reply.startswith(key("res:", v)):
            reply = ""  # a reply key outside this vshard's slot is ignored
        failure_key = (v, kind, entry_id)
        if deliveries > self.config.deliveries_max:
            reason = self._failures.pop(
                failure_key,
                f"delivered {deliveries - 1} times without an acknowledgement (worker crashes?)",
            )
            answer = self._settled_answer(owned, fields) if kind == "in" else None
            self._to_dlq(owned, stream, entry_id, fields, reason, reply, answer)
            return
        try:
            if kind == "credit":
                payload, txs = self._import(owned, fields), 0
            else:
                payload, txs = self._ingress(owned, fields)
        except (StorageError, LedgerFailed, LedgerClosed) as e:
            # The ledger's disk failed: its state may be ahead of its log. Reopen (recover).
            self._drop(v, f"{type(e).__name__}: {e}")
            return
        except (TongbaoError, KeyError, ValueError) as e:
            reason = f"{type(e).__name__}: {e}"
            if kind == "in":
                # The entry itself is refused (whole-batch error, bad framing, unknown op): the
                # ledger changed nothing and would refuse it again, so it is poison at once;
                # the submitter gets the reason.
                self._to_dlq(owned, stream, entry_id, fields, f"refused: {reason}", reply)
                return
            # A credit is never dropped: it stays pending, is retried after claim_idle_ms and
            # goes to the dead-letter stream (value held there, visible) after deliveries_max.
            self._failures[failure_key] = reason
            log.warning("vshard %d: credit entry %s failed: %s (left pending)", v, entry_id, reason)
            return
        self._flush_outbox(owned)
        self._fenced(
            owned,
            self._commit,
            [
                key("lease", v),
                stream,
                reply or key("stats", v),
                key("stats", v),
                reply + ":n" if reply else key("stats", v),
            ],
            [GROUP, entry_id, payload if reply else b"", REPLY_TTL_S, txs],
        )
        self._failures.pop(failure_key, None)

    def _reply_key(self, v: int, fields: dict[bytes, bytes]) -> str:
        reply = fields.get(b"reply", b"").decode()
        return reply if reply.startswith(key("res:", v)) else ""

    def _handle_group(
        self, owned: _Owned, kind: str, entries: list[tuple[bytes, dict[bytes, bytes]]]
    ) -> None:
        """Handle the entries of one stream read together: one ledger call (one fsync) and one
        fenced acknowledgement for all. Anything unusual (a registration, an error) falls back
        to one entry at a time, which isolates a poison entry."""
        v = owned.vshard
        if len(entries) > 1:
            try:
                done = self._settle_together(owned, kind, entries)
            except (StorageError, LedgerFailed, LedgerClosed) as e:
                self._drop(v, f"{type(e).__name__}: {e}")
                return
            if done:
                return
        for entry_id, fields in entries:
            if self.owned.get(v) is not owned:
                return
            self._handle(owned, kind, entry_id, fields, 1)

    def _settle_together(
        self, owned: _Owned, kind: str, entries: list[tuple[bytes, dict[bytes, bytes]]]
    ) -> bool:
        ledger, v = owned.ledger, owned.vshard
        payloads: list[bytes] = []
        txs = 0
        try:
            if kind == "credit":
                shard.import_credits(ledger, b"".join(f[b"credits"] for _, f in entries))
                payloads = [b""] * len(entries)
            else:
                if any(f.get(b"op") != b"settle" for _, f in entries):
                    return False
                parts = [_core.unframe_batch(f[b"batch"]) for _, f in entries]
                batch = [tx for part in parts for tx in part]
                if len(batch) > _core.BATCH_TX_COUNT_MAX:
                    return False
                ts = _batch_time(ledger, [f for _, f in entries])
                codes = ledger.settle(batch, ts).statuses.tobytes()
                at = 0
                for part in parts:
                    payloads.append(b"S" + codes[at : at + len(part)])
                    at += len(part)
                txs = len(batch)
        except (StorageError, LedgerFailed, LedgerClosed):
            raise
        except (TongbaoError, KeyError, ValueError):
            return False  # nothing applied: one at a time finds the culprit
        replies = [self._reply_key(v, f) for _, f in entries]
        keys = [key("lease", v), key(kind, v), key("stats", v)]
        for reply in replies:
            keys += [reply, reply + ":n"] if reply else [key("stats", v)] * 2
        args = [
            GROUP,
            len(entries),
            REPLY_TTL_S,
            txs,
            *(entry_id for entry_id, _ in entries),
            *(p if r else b"" for p, r in zip(payloads, replies, strict=True)),
        ]
        if self._settled is not None:
            self._settled.append(_Settled(owned, keys, args))  # sent by _finish_settled
            return True
        self._flush_outbox(owned)
        self._fenced(owned, self._commit_many, keys, args)
        return True

    def _finish_settled(self, settled: list[_Settled]) -> None:
        """Send the credits of every vshard settled in this read (one XADD per destination
        vshard, credits of all sources together), then acknowledge and answer them (one
        pipeline of fenced scripts). The order per vshard is the same as one at a time:
        credits out before the acknowledgement."""
        settled = [s for s in settled if self.owned.get(s.owned.vshard) is s.owned]
        if not settled:
            return
        self._flush_many(list({s.owned.vshard: s.owned for s in settled}.values()))
        pipe = self.redis.pipeline(transaction=False)
        for s in settled:
            # EVALSHA by command: a cluster pipeline routes it by its keys (one vshard's slot).
            pipe.execute_command(
                "EVALSHA", self._commit_many.sha, len(s.keys), *s.keys, s.owned.token, *s.args
            )
        results = pipe.execute(raise_on_error=False)
        for s, result in zip(settled, results, strict=True):
            if isinstance(result, redis.exceptions.NoScriptError):
                result = self._commit_many(keys=s.keys, args=[s.owned.token, *s.args])  # loads
            elif isinstance(result, Exception):
                raise result
            if not result:
                self._drop(s.owned.vshard, "fenced: lease taken")

    def _flush_many(self, owned_list: list[_Owned]) -> None:
        """``_flush_outbox`` for several vshards at once: their new exports grouped by
        destination, one XADD per destination (at most ``OUTBOX_FLUSH_MAX`` credits each)."""
        count = self.config.vshard_count
        parts: dict[int, list[tuple[int, bytes]]] = {}
        sent: list[tuple[_Owned, int]] = []
        for owned in owned_list:
            seqs, packed = shard.outbox_packed(owned.ledger, OUTBOX_FLUSH_MAX, owned.sent_upto)
            if len(seqs):
                records = np.frombuffer(packed, dtype=_CREDIT_DTYPE)
                dests = shard.home_vshards(records["owner"], count)
                for d in np.unique(dests):
                    parts.setdefault(int(d), []).append(
                        (owned.vshard, records[dests == d].tobytes())
                    )
                sent.append((owned, int(seqs[-1])))
        if parts:
            pipe = self.redis.pipeline(transaction=False)
            size = OUTBOX_FLUSH_MAX * _CREDIT_DTYPE.itemsize
            for d, chunks in parts.items():
                blob, sources = b"", list[int]()
                for src, chunk in [*chunks, (-1, b"")]:
                    if blob and (src < 0 or len(blob) + len(chunk) > size):
                        pipe.xadd(
                            key("credit", d),
                            {"credits": blob, "src": ",".join(str(x) for x in sources)},
                        )
                        blob, sources = b"", list[int]()
                    blob += chunk
                    sources.append(src)
            pipe.execute()
        for owned, upto in sent:
            owned.sent_upto = upto
        for owned in owned_list:
            self._flush_outbox(owned)  # anything beyond OUTBOX_FLUSH_MAX, and delivery marks

    def _to_dlq(
        self,
        owned: _Owned,
        stream: str,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        reply: str,
        answer: bytes | None = None,
    ) -> None:
        """Move an entry to the dead-letter stream, answering its submitter ``answer`` (default
        ``E`` + reason)."""
        v = owned.vshard
        log.error("vshard %d: entry %s to the dead-letter stream: %s", v, entry_id, reason)
        flat: list[bytes] = []
        for k, value in fields.items():
            flat += [k, value]
        self._fenced(
            owned,
            self._dead_letter,
            [
                key("lease", v),
                stream,
                key("dlq", v),
                reply or key("stats", v),
                reply + ":n" if reply else key("stats", v),
            ],
            [
                GROUP,
                entry_id,
                reason,
                (answer or b"E" + reason.encode()) if reply else b"",
                REPLY_TTL_S,
                *flat,
            ],
        )

    @staticmethod
    def _settled_answer(owned: _Owned, fields: dict[bytes, bytes]) -> bytes | None:
        """The answer of a settle entry whose transactions the ledger already settled (an
        earlier owner committed it, then crashed before acknowledging): ``S`` + ALREADY_SETTLED
        for each, as a redelivery would say. ``None`` when any is not settled (or the entry
        cannot be read): then the entry was never committed and its submitter gets ``E``."""
        if fields.get(b"op") != b"settle":
            return None
        try:
            txs = _core.unframe_batch(fields[b"batch"])
        except (TongbaoError, KeyError, ValueError):
            return None
        if not txs or not all(owned.ledger.is_settled(_core.transaction_id(t)) for t in txs):
            return None
        return b"S" + bytes([Status.ALREADY_SETTLED]) * len(txs)

    def _ingress(self, owned: _Owned, fields: dict[bytes, bytes]) -> tuple[bytes, int]:
        op = fields.get(b"op", b"")
        ledger = owned.ledger
        if op == b"settle":
            batch = fields[b"batch"]
            ts = _batch_time(ledger, [fields])
            settlement = ledger.settle(batch, ts)
            return b"S" + settlement.statuses.tobytes(), len(settlement.statuses)
        if op == b"register":
            self._register(ledger, orjson.loads(fields[b"wallets"]))
            return b"R", 0
        if op == b"query":
            return b"Q" + query_ledger(ledger, orjson.loads(fields[b"query"])), 0
        if op == b"limits":
            limits = limits_from_json(fields[b"limits"])
            if ledger.limits != limits:
                ledger.set_limits(limits)  # logged: replay applies it at the same point
            return b"L", 0
        raise InvalidArgument(f"unknown op {op!r}")

    @staticmethod
    def _register(ledger: Ledger, d: dict[str, Any]) -> None:
        ids = [int(w) for w in d["ids"]]
        keys = [bytes.fromhex(k) for k in d["keys"]]
        fresh = []
        for i, w in enumerate(ids):
            info = ledger.wallet(w)
            if info is None:
                fresh.append(i)
            elif info.public_key != keys[i]:
                raise InvalidArgument(f"wallet {w} is registered with another key")
        if not fresh:
            return
        attrs = {
            name: [d[name][i] for i in fresh]
            for name in ("wallet_class", "operator", "parent", "mcc", "region", "linked_account")
        }
        ledger.register_wallets(
            [ids[i] for i in fresh],
            [d["kinds"][i] for i in fresh],
            [keys[i] for i in fresh],
            [d["schemes"][i] for i in fresh],
            **attrs,
        )

    def _import(self, owned: _Owned, fields: dict[bytes, bytes]) -> bytes:
        shard.import_credits(owned.ledger, fields[b"credits"])
        return b""

    def _flush_outbox(self, owned: _Owned, mark: bool = False) -> None:
        """Send the vshard's new exports to their shards' credit streams (at least once). The
        ledger forgets sent exports (a logged mark, one fsync) only every ``OUTBOX_MARK_EVERY``
        exports or when ``mark``: until then a restart sends them again, harmlessly."""
        ledger = owned.ledger
        count = self.config.vshard_count
        while True:
            seqs, packed = shard.outbox_packed(ledger, OUTBOX_FLUSH_MAX, owned.sent_upto)
            if not len(seqs):
                if owned.sent_upto > owned.marked_upto and (
                    mark or owned.sent_upto - owned.marked_upto >= OUTBOX_MARK_EVERY
                ):
                    shard.credits_delivered(ledger, owned.sent_upto)
                    owned.marked_upto = owned.sent_upto
                return
            records = np.frombuffer(packed, dtype=_CREDIT_DTYPE)
            dests = shard.home_vshards(records["owner"], count)
            pipe = self.redis.pipeline(transaction=False)
            for d in np.unique(dests):
                subset = records[dests == d].tobytes()
                pipe.xadd(
                    key("credit", int(d)),
                    {"credits": subset, "src": owned.vshard, "epoch": owned.epoch},
                )
            pipe.execute()
            owned.sent_upto = int(seqs[-1])

    # -- the loop --------------------------------------------------------------------------

    def _claim(self, v: int, kind: str, idle_ms: int, first: Any = None) -> bool:
        """Claim the vshard's pending entries of one stream idle for ``idle_ms`` and handle
        them in stream order, with their delivery counts. Returns whether the pending list was
        scanned to its end (at most ``CLAIM_ROUNDS_MAX`` rounds of ``CLAIM_COUNT``). ``first``:
        the reply of the first XAUTOCLAIM, when the caller already sent it."""
        start = "0-0"
        stream = key(kind, v)
        for _ in range(CLAIM_ROUNDS_MAX):
            owned = self.owned.get(v)
            if owned is None:
                return False
            if first is None:
                first = self.redis.xautoclaim(
                    stream, GROUP, self.identity, idle_ms, start, count=CLAIM_COUNT
                )
            start, entries, _deleted = first[:3]
            first = None
            for entry_id, fields in entries:
                if fields is None:
                    continue
                info = self.redis.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
                deliveries = int(info[0]["times_delivered"]) if info else 1
                self._handle(owned, kind, entry_id, fields, deliveries)
                self._renew_due()
            if start in (b"0-0", "0-0"):
                return True
        return False

    def _reclaim(self) -> None:
        """Claim pending entries idle for ``claim_idle_ms`` (a dead owner's, or our own that
        failed) and handle them, with their delivery counts."""
        idle_ms = self.config.claim_idle_ms
        streams = [(v, kind) for v in self.owned for kind in ("in", "credit")]
        # The first XAUTOCLAIM of every stream in one pipeline; usually all come back empty.
        pipe = self.redis.pipeline(transaction=False)
        for v, kind in streams:
            pipe.xautoclaim(key(kind, v), GROUP, self.identity, idle_ms, "0-0", count=CLAIM_COUNT)
        for (v, kind), first in zip(streams, pipe.execute(), strict=True):
            if first[1] or first[0] not in (b"0-0", "0-0"):
                self._claim(v, kind, idle_ms, first)

    def _drain(self) -> None:
        """Handle every pending entry of the vshards marked ``drain`` before any new entry: a
        new owner takes its predecessor's (fenced: it can no longer acknowledge), and after a
        failed read the worker takes back its own that the lost reply carried."""
        for v, owned in list(self.owned.items()):
            if owned.drain:
                done = all([self._claim(v, "credit", 0), self._claim(v, "in", 0)])
                if self.owned.get(v) is owned:
                    owned.drain = not done

    def _read_cluster(self, vshards: list[int]) -> list[Any]:
        """XREADGROUP on a Redis Cluster: one script call per vshard (its two streams share a
        slot), pipelined (one round trip per node); sleeps ``CLUSTER_POLL_S`` when nothing
        came. Same shape as ``xreadgroup``'s reply."""
        if not self._read_sha:
            self._read_sha = self.reader.script_load(_READ)
        pipe = self.reader.pipeline(transaction=False)
        for v in vshards:
            # (ClusterPipeline blocks its evalsha method, not the command: it routes EVALSHA by
            # its keys.)
            pipe.execute_command(
                "EVALSHA",
                self._read_sha,
                2,
                key("credit", v),
                key("in", v),
                GROUP,
                self.identity,
                READ_COUNT,
            )
        response = []
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, redis.exceptions.NoScriptError):
                self._read_sha = ""  # a restarted node: load again, read next time
                continue
            if isinstance(result, Exception):
                raise result
            for stream, entries in result or []:
                response.append(
                    (stream, [(i, dict(zip(f[::2], f[1::2], strict=True))) for i, f in entries])
                )
        if not response:
            time.sleep(CLUSTER_POLL_S)
        return response

    def _step(self) -> None:
        self._leases()
        if not self.owned:
            time.sleep(self.config.lease_ttl_ms / 4000)
            return
        now = time.monotonic()
        if now - self._last_claim >= self.config.claim_idle_ms / 2000:
            self._last_claim = now
            self._reclaim()
        self._drain()
        streams: dict[str, str] = {}
        for v, owned in self.owned.items():
            if owned.drain:
                continue  # its pending entries were not all handled yet
            streams[key("credit", v)] = ">"
            streams[key("in", v)] = ">"
        if not streams:
            return
        try:
            if self.cluster_mode:
                response = self._read_cluster(
                    [v for v, owned in self.owned.items() if not owned.drain]
                )
            else:
                response = self.reader.xreadgroup(
                    GROUP, self.identity, streams, count=READ_COUNT, block=READ_BLOCK_MS
                )
        except TRANSIENT_ERRORS:
            for owned in self.owned.values():
                owned.drain = True  # the lost reply's entries wait in the pending list
            raise
        if not response:
            for owned in list(self.owned.values()):
                self._flush_outbox(owned, mark=True)
        by_vshard: dict[int, list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]] = {}
        for stream_name, entries in response or []:
            name = stream_name.decode() if isinstance(stream_name, bytes) else stream_name
            v = int(name[len("tb:{v") : name.index("}")])
            by_vshard.setdefault(v, []).append((name.rsplit(":", 1)[1], entries))
        # Vshards are independent (own ledger, own streams): handle them in parallel, so their
        # fsyncs overlap (settle releases the GIL). One vshard's groups run in order, credits
        # first.
        self._settled = []
        try:
            tasks = [
                self._pool.submit(self._handle_vshard, v, groups) for v, groups in by_vshard.items()
            ]
            # Wait for every vshard before raising: no ledger may be touched by two threads.
            wait(tasks)
            settled, self._settled = self._settled, None
            self._finish_settled(settled)
        finally:
            self._settled = None
        for task in tasks:
            task.result()
        self._renew_due()

    def _handle_vshard(
        self, v: int, groups: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]
    ) -> None:
        owned = self.owned.get(v)
        for kind, entries in sorted(groups, key=lambda g: g[0] != "credit"):
            if owned is None or self.owned.get(v) is not owned:
                return
            with contextlib.suppress(LeaseLost):
                self._handle_group(owned, kind, entries)

    def run(self) -> int:
        """Serve until stopped (SIGTERM/SIGINT); returns the exit status. Waits up to
        ``REDIS_DOWN_S_MAX`` for Redis when it is unreachable."""
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        down_since: float | None = None
        backoff_s = 0.05
        while not self._stop:
            try:
                self._step()
                down_since, backoff_s = None, 0.05
            except LeaseLost:
                continue
            except TRANSIENT_ERRORS as e:
                # Whatever the failed command was, an entry may be left pending: drain first.
                for owned in self.owned.values():
                    owned.drain = True
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since > REDIS_DOWN_S_MAX:
                    log.error("Redis unreachable for %.0f s: %s", now - down_since, e)
                    return 1
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)
        for v in list(self.owned):
            owned = self.owned[v]
            with contextlib.suppress(redis.RedisError):
                self._flush_outbox(owned, mark=True)
            with contextlib.suppress(redis.RedisError):
                self._renew(keys=[key("lease", v)], args=[owned.token, 0])
            self._drop(v, "stopping")
        return 0


# -- client ------------------------------------------------------------------------------------


@dataclass
class _Pending:
    vshard: int
    indices: npt.NDArray[np.intp]
    sent_at: float


class Cluster:
    """A client of a tongbao cluster: registers wallets on every shard and settles batches,
    routing each transaction to its payer's home vshard.

    ``inflight_max`` bounds the stream entries in flight (backpressure: ``settle`` waits for
    results before it submits more). Every message is safe to repeat: a batch delivered twice
    answers ALREADY_SETTLED the second time, a credit is imported once.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        vshard_count: int | None = None,
        inflight_max: int = INFLIGHT_MAX_DEFAULT,
        entry_tx_max: int = ENTRY_TX_MAX,
        timeout_s: float = SETTLE_TIMEOUT_S_DEFAULT,
    ) -> None:
        if not 1 <= inflight_max <= 4096:
            raise InvalidArgument(f"inflight_max={inflight_max}: 1 to 4096")
        if not 1 <= entry_tx_max <= ENTRY_TX_MAX:
            raise InvalidArgument(f"entry_tx_max={entry_tx_max}: 1 to {ENTRY_TX_MAX}")
        self.redis: Any = connect(redis_url, max(timeout_s, 1.0) + 5.0)
        self.cluster_mode = is_cluster_url(redis_url)
        self.vshard_count = cluster_vshard_count(self.redis, vshard_count)
        self.inflight_max = inflight_max
        self.entry_tx_max = entry_tx_max
        self.timeout_s = timeout_s
        #: Submit-to-status latency of every entry answered, in ms (for benchmarks).
        self.latencies_ms: list[float] = []

    def close(self) -> None:
        """Close the Redis connections."""
        self.redis.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _submit_many(self, entries: list[tuple[int, dict[str, Any]]], deadline: float) -> list[str]:
        """XADD entries in one pipeline (one round trip per node); returns their reply keys."""
        replies = [key("res:", v) + secrets.token_hex(12) for v, _ in entries]
        while True:
            try:
                # A retry after a lost reply may add an entry twice: harmless, the second
                # settles nothing and its answer does not replace the first (SET NX).
                pipe = self.redis.pipeline(transaction=False)
                for (v, fields), reply in zip(entries, replies, strict=True):
                    pipe.xadd(key("in", v), {**fields, "reply": reply})
                pipe.execute()
                return replies
            except TRANSIENT_ERRORS:
                if time.monotonic() > deadline:
                    raise ClusterTimeout(f"Redis unreachable for {self.timeout_s} s") from None
                time.sleep(0.1)

    def _wait(self, pending: dict[str, _Pending], deadline: float, on_reply: Any) -> None:
        """Wait for answers: BLPOP on the notifications is the fast path; the answers
        themselves (string keys) are read with MGET, so a notification lost with a connection
        costs a poll, not the answer."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClusterTimeout(
                f"{len(pending)} stream entries unanswered after {self.timeout_s} s; "
                "resubmitting is safe"
            )
        ready = list(pending)
        try:
            if self.cluster_mode:
                # One BLPOP may only name keys of one slot: block briefly on the oldest entry's
                # vshard, then read every answer (MGET split by slot).
                v = next(iter(pending.values())).vshard
                self.redis.blpop(
                    [r + ":n" for r, item in pending.items() if item.vshard == v],
                    timeout=min(max(remaining, 0.01), CLUSTER_POLL_S),
                )
                payloads = self.redis.mget_nonatomic(ready)
            else:
                # Block until one answer is notified, then read every pending answer: those
                # that came meanwhile cost no further round trip.
                self.redis.blpop(
                    [r + ":n" for r in pending], timeout=min(max(remaining, 0.01), 1.0)
                )
                payloads = self.redis.mget(ready)
        except TRANSIENT_ERRORS:
            time.sleep(0.1)
            return
        for reply, payload in zip(ready, payloads, strict=True):
            if payload is None:
                continue
            item = pending.pop(reply)
            self.latencies_ms.append((time.monotonic() - item.sent_at) * 1000)
            on_reply(item, payload)

    def register_wallets(
        self,
        wallet_ids: Sequence[int],
        kinds: Sequence[int] | int,
        public_keys: Sequence[bytes],
        schemes: Sequence[int] | int = 1,
        **attrs: Any,
    ) -> None:
        """Register wallets on every vshard (the wallet directory is replicated, tokens are
        not), with the arguments of :meth:`tongbao.Ledger.register_wallets`, in entries of at
        most ``REGISTER_CHUNK`` wallets. Waits until every shard answered; safe to repeat.
        Raises ``BatchRejected`` with a shard's reason."""
        n = len(wallet_ids)
        if n > REGISTER_CHUNK:
            for start in range(0, n, REGISTER_CHUNK):
                part = slice(start, start + REGISTER_CHUNK)

                def cut(value: Any, part: slice = part) -> Any:
                    if isinstance(value, (list, tuple, np.ndarray)):
                        return list(value[part])
                    return value

                self.register_wallets(
                    list(wallet_ids[part]),
                    cut(kinds),
                    list(public_keys[part]),
                    cut(schemes),
                    **{name: cut(v) for name, v in attrs.items()},
                )
            return

        def each(value: Any, default: Any) -> list[Any]:
            value = default if value is None else value
            return list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * n

        payload = {
            "ids": [int(w) for w in wallet_ids],
            "kinds": [int(k) for k in each(kinds, 0)],
            "schemes": [int(s) for s in each(schemes, 1)],
            "keys": [bytes(k).hex() for k in public_keys],
            **{
                name: [v if isinstance(v, bool) else int(v) for v in each(attrs.get(name), default)]
                for name, default in (
                    ("wallet_class", 1),
                    ("operator", 0),
                    ("parent", 0),
                    ("mcc", 0),
                    ("region", 0),
                    ("linked_account", False),
                )
            },
        }
        blob = orjson.dumps(payload)
        errors: list[str] = []

        def on_reply(item: _Pending, data: bytes) -> None:
            if data[:1] == b"E":
                errors.append(f"vshard {item.vshard}: {data[1:].decode()}")

        self._run(
            [
                (v, {"op": "register", "wallets": blob}, np.arange(0))
                for v in range(self.vshard_count)
            ],
            on_reply,
        )
        if errors:
            raise BatchRejected("; ".join(errors[:5]))

    def set_limits(self, limits: Limits) -> None:
        """Install a limits table on every vshard (logged by each; see
        :meth:`tongbao.Ledger.set_limits`). Waits until every shard answered; safe to repeat."""
        errors: list[str] = []

        def on_reply(item: _Pending, data: bytes) -> None:
            if data[:1] == b"E":
                errors.append(f"vshard {item.vshard}: {data[1:].decode()}")

        blob = limits_to_json(limits)
        self._run(
            [(v, {"op": "limits", "limits": blob}, np.arange(0)) for v in range(self.vshard_count)],
            on_reply,
        )
        if errors:
            raise BatchRejected("; ".join(errors[:5]))

    def open_wallets(
        self,
        keyring: _core.Keyring,
        wallet_ids: Sequence[int],
        kind: int,
        scheme: int = 1,
        seed: bytes = b"tongbao",
        **attrs: Any,
    ) -> None:
        """Generate deterministic keys into ``keyring`` and register the wallets everywhere
        (simulations and tests; real wallets bring their own keys)."""
        publics = keyring.generate([int(w) for w in wallet_ids], int(scheme), seed)
        self.register_wallets(wallet_ids, kind, publics, scheme, **attrs)

    def _run(
        self, entries: list[tuple[int, dict[str, Any], npt.NDArray[np.intp]]], on_reply: Any
    ) -> None:
        deadline = time.monotonic() + self.timeout_s
        pending: dict[str, _Pending] = {}
        at = 0
        while at < len(entries):
            while len(pending) >= self.inflight_max:
                self._wait(pending, deadline, on_reply)
            chunk = entries[at : at + self.inflight_max - len(pending)]
            at += len(chunk)
            replies = self._submit_many([(v, fields) for v, fields, _ in chunk], deadline)
            sent_at = time.monotonic()
            for (v, _, indices), reply in zip(chunk, replies, strict=True):
                pending[reply] = _Pending(v, indices, sent_at)
        while pending:
            self._wait(pending, deadline, on_reply)

    def query(self, requests: Sequence[tuple[int, dict[str, Any]]]) -> list[Any]:
        """Ask vshards' ledgers reads (:func:`query_ledger`): ``(vshard, request)`` pairs in,
        the decoded JSON answers out, in order. Each read is ordered after the batches this
        client submitted to that vshard before. Raises ``BatchRejected`` with a shard's reason
        and ``ClusterTimeout``."""
        answers: list[Any] = [None] * len(requests)
        errors: list[str] = []

        def on_reply(item: _Pending, data: bytes) -> None:
            if data[:1] == b"Q":
                answers[int(item.indices[0])] = orjson.loads(data[1:])
            else:
                errors.append(f"vshard {item.vshard}: {data[1:].decode(errors='replace')}")

        self._run(
            [
                (int(v), {"op": "query", "query": orjson.dumps(r)}, np.array([i], dtype=np.intp))
                for i, (v, r) in enumerate(requests)
            ],
            on_reply,
        )
        if errors:
            raise BatchRejected("; ".join(errors[:5]))
        return answers

    def content_digest(self) -> bytes:
        """The cluster's content digest: every vshard's share
        (:func:`tongbao.shard.content_parts`) combined. Equal to the
        :meth:`tongbao.Ledger.content_digest` of one embedded ledger that settled the same
        payments once every credit is imported (call :func:`wait_idle` first)."""
        answers = self.query([(v, {"q": "digest"}) for v in range(self.vshard_count)])
        return shard.combine_content(
            [(bytes.fromhex(a[0]), *(int(x) for x in a[1:])) for a in answers]  # type: ignore[misc]
        )

    def settle(
        self, batch: Sequence[bytes], timestamp_ms: int | None = None
    ) -> npt.NDArray[np.uint8]:
        """Settle transactions on their payers' home shards; returns one status per
        transaction, in batch order (``uint8``, values of :class:`tongbao.Status`).

        Transactions are grouped by vshard into stream entries of at most ``entry_tx_max``;
        at most ``inflight_max`` entries are in flight at once. ``timestamp_ms`` is a hint for
        the batch time (a shard never goes back in time). Raises ``ClusterTimeout`` when
        results do not come within ``timeout_s`` (the batch may still settle: resubmitting it
        is safe and answers ALREADY_SETTLED), ``BatchRejected`` when a shard refused an entry
        whole."""
        items = [bytes(t) for t in batch]
        statuses = np.full(len(items), 255, dtype=np.uint8)
        if not items:
            return statuses
        homes = shard.payer_vshards(items, self.vshard_count)
        order = np.argsort(homes, kind="stable")
        bounds = np.flatnonzero(np.diff(homes[order])) + 1
        entries = []
        for group in np.split(order, bounds):
            v = int(homes[group[0]])
            for start in range(0, len(group), self.entry_tx_max):
                chunk = group[start : start + self.entry_tx_max]
                fields = {
                    "op": "settle",
                    "batch": _core.frame_batch([items[i] for i in chunk]),
                    "ts": int(timestamp_ms or 0),
                }
                entries.append((v, fields, chunk))
        errors: list[str] = []

        def on_reply(item: _Pending, data: bytes) -> None:
            if data[:1] == b"S" and len(data) == len(item.indices) + 1:
                statuses[item.indices] = np.frombuffer(data, dtype=np.uint8, offset=1)
            else:
                errors.append(f"vshard {item.vshard}: {data[1:].decode(errors='replace')}")

        self._run(entries, on_reply)
        if errors:
            raise BatchRejected("; ".join(errors[:5]))
        return statuses


# -- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VshardStatus:
    """One vshard as Redis sees it: owner and epoch of its lease, consumer-group lag (entries
    not yet delivered) and pending (delivered, not acknowledged) of its ingress and credit
    streams, dead letters, and entries / transactions acknowledged so far."""

    vshard: int
    owner: str
    epoch: int
    in_lag: int
    in_pending: int
    credit_lag: int
    credit_pending: int
    dead_letters: int
    entries: int
    txs: int


def _group_info(info: Any, groups: Any) -> tuple[int, int]:
    """(lag, pending) of the workers' group on a stream, from its XINFO STREAM and XINFO GROUPS
    replies (errors: no stream yet). Redis reports lag as nil when it cannot count it; then an
    undelivered tail (last id delivered to the group behind the stream's last id) counts as 1,
    so that "idle" is never claimed falsely."""
    if isinstance(info, Exception) or isinstance(groups, Exception):
        if isinstance(info, redis.ResponseError) or isinstance(groups, redis.ResponseError):
            return 0, 0
        raise info if isinstance(info, Exception) else groups
    last_id = info["last-generated-id"]
    for g in groups:
        if (g["name"].decode() if isinstance(g["name"], bytes) else g["name"]) == GROUP:
            lag = g.get("lag")
            behind = g["last-delivered-id"] != last_id
            lag = int(lag) if lag is not None else int(behind)
            return max(lag, int(behind)), int(g["pending"])
    # No group yet: everything in the stream is undelivered.
    return int(info["length"]), 0


def cluster_status(redis_client: redis.Redis) -> list[VshardStatus]:
    """The status of every vshard of the cluster."""
    client: Any = redis_client
    count = int(client.hget(CONFIG_KEY, "vshards") or 0)
    # One pipeline for every vshard (one round trip per Redis node), not ~8 per vshard.
    pipe = client.pipeline(transaction=False)
    for v in range(count):
        pipe.get(key("lease", v))
        for kind in ("in", "credit"):
            pipe.xinfo_stream(key(kind, v))
            pipe.xinfo_groups(key(kind, v))
        pipe.hgetall(key("stats", v))
        pipe.xlen(key("dlq", v))
    replies = pipe.execute(raise_on_error=False)
    out = []
    for v in range(count):
        lease, in_info, in_groups, cr_info, cr_groups, stats, dead = replies[7 * v : 7 * v + 7]
        for reply in (lease, stats, dead):
            if isinstance(reply, Exception):
                raise reply
        epoch_text, _, owner = (lease or b"0:").decode().partition(":")
        owner = owner.rsplit("~", 1)[0]  # the worker's name, without its process nonce
        in_lag, in_pending = _group_info(in_info, in_groups)
        credit_lag, credit_pending = _group_info(cr_info, cr_groups)
        out.append(
            VshardStatus(
                vshard=v,
                owner=owner,
                epoch=int(epoch_text),
                in_lag=in_lag,
                in_pending=in_pending,
                credit_lag=credit_lag,
                credit_pending=credit_pending,
                dead_letters=int(dead),
                entries=int(stats.get(b"entries", 0)),
                txs=int(stats.get(b"txs", 0)),
            )
        )
    return out


def wait_idle(client: redis.Redis, timeout_s: float = 30.0) -> list[VshardStatus]:
    """Wait until no vshard has lag or pending entries (every credit delivered and imported);
    returns the final status. Raises ``ClusterTimeout`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = cluster_status(client)
        except TRANSIENT_ERRORS:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if all(s.in_lag == s.in_pending == s.credit_lag == s.credit_pending == 0 for s in status):
            return status
        if time.monotonic() > deadline:
            busy = [
                s for s in status if s.in_lag or s.in_pending or s.credit_lag or s.credit_pending
            ]
            raise ClusterTimeout(f"cluster not idle after {timeout_s} s: {busy[:4]}")
        time.sleep(0.05)


def statuses_named(statuses: npt.NDArray[np.uint8]) -> dict[str, int]:
    """Count statuses by name.

    >>> statuses_named(np.array([0, 0, 1], dtype=np.uint8))
    {'OK': 2, 'ALREADY_SETTLED': 1}
    """
    values, counts = np.unique(statuses, return_counts=True)
    return {Status(int(v)).name: int(c) for v, c in zip(values, counts, strict=True)}
