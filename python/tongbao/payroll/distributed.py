"""Payroll on the cluster: the :class:`~tongbao.payroll.run.PayrollLedger` seam served by a
:class:`tongbao.cluster.Cluster` client.

A run's transactions are all signed by the employer, so they all settle on the employer's
home vshard (chunks export their payees' credits to the payees' shards, in the same logged
apply). The reads of pre-flight go to the shard that knows the answer: the employer's
wallet, tokens, caps and last batch time to its home shard, each payee's state to the
payee's home shard (its balance lives there), one ``query`` entry per vshard. Exactly once
is the embedded argument unchanged (decision 0008): the plan is written before anything
settles, a re-run resubmits the same bytes, and the employer's shard answers
``ALREADY_SETTLED`` for what it already applied, whichever worker applied it.

>>> import tongbao as tb
>>> from tongbao.payroll.distributed import payees_by_vshard
>>> groups = payees_by_vshard(np.array([5, 6, 5], dtype=np.uint64), 1)
>>> [(v, ids.tolist()) for v, ids in groups]
[(0, [5, 6])]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tongbao import shard
from tongbao.cluster import Cluster
from tongbao.errors import UnknownWallet
from tongbao.ledger import PayeeStates, WalletInfo
from tongbao.types import Scheme, WalletKind, WalletStatus


@dataclass(frozen=True)
class ClusterSettlement:
    """What a cluster settle gives a payroll run: one status per transaction."""

    statuses: npt.NDArray[np.uint8]


def payees_by_vshard(
    wallet_ids: npt.NDArray[np.uint64], vshard_count: int
) -> list[tuple[int, npt.NDArray[np.uint64]]]:
    """The distinct wallet ids grouped by home vshard, each group sorted."""
    unique = np.unique(wallet_ids)
    homes = shard.home_vshards(unique, vshard_count) if len(unique) else np.zeros(0, np.uint32)
    return [(int(v), unique[homes == v]) for v in np.unique(homes)]


class ClusterPayrollLedger:
    """The :class:`~tongbao.payroll.run.PayrollLedger` of a cluster, for runs from
    ``employer`` (``tongbao payroll run --redis URL``)."""

    def __init__(self, client: Cluster, employer: int) -> None:
        self.client = client
        self.employer = employer
        self.home = int(shard.home_vshards([employer], client.vshard_count)[0])

    def _ask(self, wallet_id: int, request: dict[str, object]) -> object:
        v = int(shard.home_vshards([wallet_id], self.client.vshard_count)[0])
        return self.client.query([(v, request)])[0]

    def wallet(self, wallet_id: int) -> WalletInfo | None:
        d = self._ask(wallet_id, {"q": "wallet", "id": int(wallet_id)})
        if d is None:
            return None
        assert isinstance(d, dict)
        return WalletInfo(
            **{
                **d,
                "kind": WalletKind(d["kind"]),
                "scheme": Scheme(d["scheme"]),
                "status": WalletStatus(d["status"]),
                "linked_account": bool(d["linked_account"]),
                "public_key": bytes.fromhex(d["public_key"]),
            }
        )

    def payee_states(self, wallet_ids: Sequence[int] | npt.NDArray[np.uint64]) -> PayeeStates:
        ids = np.asarray(wallet_ids, dtype=np.uint64)
        groups = payees_by_vshard(ids, self.client.vshard_count)
        answers = self.client.query(
            [(v, {"q": "payee_states", "ids": group.tolist()}) for v, group in groups]
        )
        # Answers come per vshard: find each requested id in the concatenated groups.
        found = np.concatenate([g for _, g in groups]) if groups else np.zeros(0, np.uint64)
        cols = [
            np.concatenate([np.asarray(a[c], dtype=dtype) for a in answers])
            if answers
            else np.zeros(0, dtype)
            for c, dtype in enumerate((np.uint8, np.uint64, np.uint64, np.bool_))
        ]
        order = np.argsort(found, kind="stable")
        pick = order[np.searchsorted(found[order], ids)] if len(ids) else order[:0]
        return PayeeStates(
            status=cols[0][pick],
            balance_fen=cols[1][pick],
            balance_cap_fen=cols[2][pick],
            can_sweep=cols[3][pick],
        )

    def spendable(self, wallet_id: int) -> list[tuple[bytes, int]]:
        got = self._ask(wallet_id, {"q": "unspent", "id": int(wallet_id)})
        if got is None:
            raise UnknownWallet(f"wallet {wallet_id} is not registered", wallet_id)
        assert isinstance(got, list)
        return [(bytes.fromhex(t), int(v)) for t, v in got]

    def outflow_room(self, wallet_id: int, timestamp_ms: int) -> tuple[int | None, int | None]:
        got = self._ask(wallet_id, {"q": "outflow_room", "id": int(wallet_id), "ts": timestamp_ms})
        assert isinstance(got, list)
        return got[0], got[1]

    @property
    def last_timestamp_ms(self) -> int:
        """The employer's shard's last batch time: the run's transactions settle there."""
        got = self.client.query([(self.home, {"q": "last_timestamp_ms"})])[0]
        return int(got)

    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> ClusterSettlement:
        """Settle on the cluster (the employer's shard); raises ``ClusterTimeout`` when the
        answers do not come (re-running the payroll is then safe)."""
        return ClusterSettlement(self.client.settle(batch, timestamp_ms))
