"""The pilot simulator on a cluster (``tongbao simulate --redis URL --workers N``).

The simulator builds every payment from a wallet-side view of the tokens
(:meth:`tongbao.Ledger.build_payments`); on a cluster that view is a *mirror*: an embedded
ledger, signatures off, that settles the same batches in the client. The cluster settles
them for real (signatures verified, durable, sharded); :class:`ClusterSettler` checks every
status against the mirror's and, at the end, the cluster's content digest against the
mirror's (:meth:`tongbao.cluster.Cluster.content_digest`).

Value paid to a wallet on another shard is spendable once its credit is imported, not within
the batch that pays it, while ``build_payments`` chains a receipt into the payee's later
payments of the same batch. A batch is therefore settled in *waves*
(:func:`waves`): a transaction that spends a token created earlier in the batch on another
shard goes into a later wave than its creator, and each vshard's transactions keep their
batch order across waves; the settler waits for the credits between waves.

>>> waves([], [], 4)
[]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

import tongbao as tb
from tongbao import cluster, shard
from tongbao.types import Status

#: Seconds to wait for credits to be imported between waves.
IDLE_TIMEOUT_S = 120.0


def waves(batch: Sequence[bytes], homes: Sequence[int], vshard_count: int) -> list[list[int]]:
    """Split a batch into waves (lists of batch positions): a transaction's wave is at least
    that of the transaction before it on the same vshard (per-vshard order is kept), and one
    more than that of any transaction of the batch on another vshard whose output it spends
    (the credit must be imported first).

    >>> keys, ledger = tb.Keyring(), tb.Ledger()
    >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    >>> ledger.open_wallets(keys, [2, 3], tb.WalletKind.OPERATOR)
    >>> issue = tb.issue(keys, 1, [(2, 500)], 5)
    >>> _ = ledger.settle([issue], 5)
    >>> pay, _ = ledger.build_payments(keys, [2, 3], [3, 2], [300, 200], 6)  # 3 spends 2's
    >>> homes = [0, 1]   # say 2 lives on vshard 0, 3 on vshard 1
    >>> waves(pay, homes, 2)
    [[0], [1]]
    """
    created: dict[bytes, int] = {}
    level_of: list[int] = []
    last_on: dict[int, int] = {}
    for i, tx in enumerate(batch):
        v = int(homes[i])
        level = last_on.get(v, 0)
        doc = tb.decode(tx)
        for token in doc["inputs"]:
            creator = created.get(bytes(token))
            if creator is not None and int(homes[creator]) != v:
                level = max(level, level_of[creator] + 1)
        level_of.append(level)
        last_on[v] = level
        tx_id = tb.transaction_id(tx)
        for k in range(len(doc["outputs"])):
            created.setdefault(tb.token_id(tx_id, k), i)
    out: list[list[int]] = [[] for _ in range(max(level_of, default=-1) + 1)]
    for i, level in enumerate(level_of):
        out[level].append(i)
    return out


class ClusterSettler:
    """Settles batches on a cluster and on the client's mirror (the wallet-side view the
    simulator builds from); returns the mirror's settlement with the cluster's statuses
    (``ALREADY_SETTLED`` where the mirror says ``OK`` counts as ``OK``: a redelivered entry).
    ``mismatches`` lists every transaction whose statuses differ otherwise (there should be
    none). ``wait_credits=False``: one wave, no wait for credits, for batches in which no
    transaction spends what another shard's transaction of the same batch creates (transit:
    each LOCK and CAPTURE spends its rider's own tokens; credits to the operator may lag)."""

    def __init__(
        self, client: cluster.Cluster, mirror: tb.Ledger, *, wait_credits: bool = True
    ) -> None:
        self.client = client
        self.mirror = mirror
        self.wait_credits = wait_credits
        self.mismatches: list[str] = []
        self.waves = 0

    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> tb.Settlement:
        """Settle ``batch`` at ``timestamp_ms`` in waves, waiting for credits after each."""
        txs = [bytes(t) for t in batch]
        expected = self.mirror.settle(txs, timestamp_ms)
        homes = shard.payer_vshards(txs, self.client.vshard_count)
        got: npt.NDArray[np.uint8] = np.full(len(txs), 255, dtype=np.uint8)
        if self.wait_credits:
            for wave in waves(txs, homes.tolist(), self.client.vshard_count):
                got[wave] = self.client.settle([txs[i] for i in wave], timestamp_ms)
                cluster.wait_idle(self.client.redis, IDLE_TIMEOUT_S)
                self.waves += 1
        elif txs:
            got[:] = self.client.settle(txs, timestamp_ms)
            self.waves += 1
        # A worker that settled an entry and lost its lease before answering leaves the
        # answer to the next owner, which finds it settled: the same outcome, settled once.
        redelivered = (got == Status.ALREADY_SETTLED) & (expected.statuses == Status.OK)
        got[redelivered] = Status.OK
        for i in np.flatnonzero(got != expected.statuses)[:20].tolist():
            self.mismatches.append(
                f"tx {i} at {timestamp_ms}: cluster {Status(int(got[i])).name}, "
                f"client mirror {Status(int(expected.statuses[i])).name}"
            )
        return tb.Settlement(statuses=got, receipt=expected.receipt)
