"""Offline checker of a tongbao cluster's history (what clients were told) against its shards'
durable ledgers and its credit streams.

Run it with the workers stopped (it opens every vshard's ledger directory, recovering each from
its log) and Redis up (it reads the credit streams). It checks:

- every shard's own invariants (``issued + credits_in = redeemed + credits_out + unspent +
  suspense``, token index, balances);
- supply conserved across all shards: ``Σ issued − Σ redeemed = Σ unspent + Σ suspense + in
  flight``, where in flight (``Σ credits_out − Σ credits_in``) must equal exactly the value of
  the credits not yet imported (undelivered outboxes plus credit-stream entries whose token the
  owner's shard has not imported): a credit applied twice, or lost, breaks this;
- every acknowledged transaction (OK or ALREADY_SETTLED to a client) is settled on its payer's
  shard, and its inputs are spent there;
- no token spent by two different acknowledged transactions;
- nothing is stuck: no dead-lettered entries, no value in a shard's suspense, and (unless
  ``expect_idle=False``) no credit still waiting to be imported. These hold value that an
  operator must look at; they are reported as errors, with the amounts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tongbao import shard
from tongbao.cluster import key
from tongbao.errors import InvariantViolation
from tongbao.ledger import Ledger
from tongbao.tx import decode, transaction_id
from tongbao.types import Status

#: Credit-stream entries read per XRANGE call.
XRANGE_COUNT = 1000


@dataclass
class History:
    """What clients submitted and were told: (encoded transaction, status) pairs."""

    items: list[tuple[bytes, int]] = field(default_factory=list)

    def record(self, txs: Iterable[bytes], statuses: Iterable[int]) -> None:
        """Record one ``settle`` call's transactions and the statuses answered."""
        self.items.extend(zip(txs, (int(s) for s in statuses), strict=True))

    def acknowledged(self) -> list[bytes]:
        """Transactions a client was told settled (OK, or ALREADY_SETTLED)."""
        return [tx for tx, s in self.items if s in (Status.OK, Status.ALREADY_SETTLED)]


@dataclass
class CheckReport:
    """The checker's findings: ``errors`` empty means every property held."""

    errors: list[str]
    vshards: int
    issued_fen: int
    redeemed_fen: int
    unspent_fen: int
    suspense_fen: int
    in_flight_fen: int
    credits_in_fen: int
    credits_out_fen: int
    acknowledged: int

    @property
    def ok(self) -> bool:
        return not self.errors


def check_cluster(
    data_dir: str | os.PathLike[str],
    vshard_count: int,
    redis_client: redis.Redis,
    history: History,
    *,
    expect_idle: bool = True,
) -> CheckReport:
    """Check the cluster whose vshard ledgers live under ``data_dir`` (see the module doc).
    ``expect_idle=False`` accepts credits still on their way (a check while traffic flows)."""
    client: Any = redis_client
    root = Path(data_dir)
    ledgers: dict[int, Ledger] = {}
    errors: list[str] = []
    try:
        for v in range(vshard_count):
            directory = root / f"v{v:03d}"
            if directory.exists():
                ledgers[v] = Ledger.open(
                    directory, threads=1, verify_signatures=False, snapshot_every_records=0
                )
        issued = redeemed = unspent = suspense = c_in = c_out = outbox_fen = 0
        for v, ledger in ledgers.items():
            try:
                ledger.check_invariants()
            except InvariantViolation as e:
                errors.append(f"vshard {v}: {e}")
            s, t = ledger.supply(), shard.totals(ledger)
            issued += s.issued_fen
            redeemed += s.redeemed_fen
            unspent += s.outstanding_fen
            suspense += t.suspense_fen
            c_in += t.credits_in_fen
            c_out += t.credits_out_fen
            outbox_fen += t.outbox_fen
            if t.suspense_fen:
                errors.append(
                    f"vshard {v}: suspense holds {t.suspense_fen} fen in "
                    f"{len(shard.suspense(ledger))} credits (no owner could take them, nobody to "
                    "refund): an operator must resolve them"
                )
        # Credits sent but not (yet) imported by their owner's shard.
        seen: set[bytes] = set()
        unimported_fen = 0
        for v in range(vshard_count):
            start = "-"
            while True:
                entries = client.xrange(key("credit", v), min=start, max="+", count=XRANGE_COUNT)
                for _entry_id, fields in entries:
                    for c in shard.unpack_credits(fields[b"credits"]):
                        if c.token_id in seen:
                            continue
                        seen.add(c.token_id)
                        home = ledgers.get(v)
                        if home is None or not shard.is_imported(home, c.token_id):
                            unimported_fen += c.value_fen
                if len(entries) < XRANGE_COUNT:
                    break
                start = "(" + entries[-1][0].decode()
        for v in range(vshard_count):
            dead = int(client.xlen(key("dlq", v)))
            if dead:
                errors.append(
                    f"vshard {v}: {dead} dead-lettered entries in {key('dlq', v)} (their value "
                    "or their submitters' transactions wait for an operator)"
                )
        if expect_idle and outbox_fen + unimported_fen:
            errors.append(
                f"{outbox_fen + unimported_fen} fen of credits not imported (undelivered "
                f"outboxes {outbox_fen}, credit streams {unimported_fen}): the cluster is not "
                "idle, or credits are stuck"
            )
        in_flight = c_out - c_in
        if in_flight != outbox_fen + unimported_fen:
            errors.append(
                f"credits: out {c_out} - in {c_in} = {in_flight} fen in flight, but undelivered "
                f"outboxes hold {outbox_fen} and unimported credits {unimported_fen}: a credit was "
                "applied twice or lost"
            )
        if issued - redeemed != unspent + suspense + in_flight:
            errors.append(
                f"supply: issued {issued} - redeemed {redeemed} != unspent {unspent} + suspense "
                f"{suspense} + in flight {in_flight}"
            )
        acknowledged = history.acknowledged()
        spent_by: dict[bytes, bytes] = {}
        homes = shard.payer_vshards(acknowledged, vshard_count).tolist() if acknowledged else []
        for tx, v in zip(acknowledged, homes, strict=True):
            tx_id = transaction_id(tx)
            home = ledgers.get(int(v))
            if home is None or not home.is_settled(tx_id):
                errors.append(
                    f"acknowledged transaction {tx_id.hex()} is not settled on vshard {v}"
                )
                continue
            for token in decode(tx)["inputs"]:
                token = bytes(token)
                other = spent_by.setdefault(token, tx_id)
                if other != tx_id:
                    errors.append(f"token {token.hex()} spent by {other.hex()} and {tx_id.hex()}")
                if home.token(token) is not None:
                    errors.append(
                        f"token {token.hex()} spent by {tx_id.hex()} is unspent on vshard {v}"
                    )
        return CheckReport(
            errors=errors,
            vshards=len(ledgers),
            issued_fen=issued,
            redeemed_fen=redeemed,
            unspent_fen=unspent,
            suspense_fen=suspense,
            in_flight_fen=in_flight,
            credits_in_fen=c_in,
            credits_out_fen=c_out,
            acknowledged=len(acknowledged),
        )
    finally:
        for ledger in ledgers.values():
            ledger.close()
