"""Micro-benchmarks of the settlement engine against a naive pure-Python ledger.

Run with ``make bench`` (``pytest bench --benchmark-enable``); with benchmarks disabled (the
default, ``pytest bench -q``) every case still runs once and checks its results, so this file
doubles as a correctness test. See ``bench/README.md`` for what the numbers mean.

Workload, the same shape for both ledgers: ``n`` personal wallets each own one token of 10,000
fen, and the batch has ``n`` transfers, person ``i`` paying merchant ``i`` (1 input, 2 outputs:
payment and change), all valid. Each timed round settles the batch on a fresh ledger in the
same state; building that state is setup, not timed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pytest

import tongbao as tb
from tongbao.naive import NaiveLedger, Wallets

BATCH_SIZES = [256, 4096]
ROUNDS = {256: 20, 4096: 5}
NAIVE_ROUNDS = {256: 5, 4096: 3}
CENTRAL_BANK = 1
OPERATOR = 2
PERSON_BASE = 1_000
MERCHANT_BASE = 1_000_000
OPENING_FEN = 10_000
T_SETUP = 1_000_000
T_BATCH = 2_000_000


def amount(i: int) -> int:
    return 1_000 + i % 500


# -- tongbao ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TongbaoWorkload:
    """Registered wallets, the setup batches that fund them, and the batch to time."""

    n: int
    registrations: list[tuple[list[int], tb.WalletKind, list[bytes]]]
    setup: list[tuple[list[bytes], int]]
    batch: list[bytes]
    digest_after: bytes

    def fresh_ledger(self, threads: int, verify: bool) -> tb.Ledger:
        """A new ledger in the state the batch was built against."""
        ledger = tb.Ledger(threads=threads, verify_signatures=verify)
        for ids, kind, publics in self.registrations:
            ledger.register_wallets(ids, kind, publics)
        for txs, ts in self.setup:
            assert ledger.settle(txs, ts).ok
        return ledger


@functools.cache
def tongbao_workload(n: int) -> TongbaoWorkload:
    keys = tb.Keyring()
    persons = list(range(PERSON_BASE, PERSON_BASE + n))
    merchants = list(range(MERCHANT_BASE, MERCHANT_BASE + n))
    registrations = [
        (ids, kind, keys.generate(ids, tb.Scheme.ED25519, b"bench"))
        for ids, kind in (
            ([CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK),
            ([OPERATOR], tb.WalletKind.OPERATOR),
            (persons, tb.WalletKind.PERSONAL),
            (merchants, tb.WalletKind.MERCHANT),
        )
    ]
    ledger = tb.Ledger()
    for ids, kind, publics in registrations:
        ledger.register_wallets(ids, kind, publics)
    issue = [tb.issue(keys, CENTRAL_BANK, [(OPERATOR, n * OPENING_FEN)], T_SETUP)]
    assert ledger.settle(issue, T_SETUP).ok
    funding, skipped = ledger.build_payments(
        keys, [OPERATOR] * n, persons, [OPENING_FEN] * n, T_SETUP
    )
    assert not skipped
    assert ledger.settle(funding, T_SETUP).ok
    batch, skipped = ledger.build_payments(
        keys, persons, merchants, [amount(i) for i in range(n)], T_BATCH
    )
    assert not skipped
    settlement = ledger.settle(batch, T_BATCH)
    assert settlement.ok
    ledger.check_invariants()
    return TongbaoWorkload(
        n, registrations, [(issue, T_SETUP), (funding, T_SETUP)], batch, ledger.state_digest()
    )


@pytest.mark.parametrize("n", BATCH_SIZES)
def test_decode(benchmark: Any, n: int) -> None:
    """``tongbao.decode`` of every transaction of the batch, one Python call each."""
    batch = tongbao_workload(n).batch
    benchmark.group = "decode"
    docs = benchmark(lambda: [tb.decode(tx) for tx in batch])
    assert len(docs) == n
    assert all(d["kind"] == tb.Kind.TRANSFER for d in docs)
    assert all(len(d["inputs"]) == 1 and len(d["outputs"]) == 2 for d in docs)
    assert sum(d["outputs"][0][1] for d in docs) == sum(amount(i) for i in range(n))


@pytest.mark.parametrize("threads", [1, 0], ids=["1-thread", "all-cores"])
@pytest.mark.parametrize("verify", [True, False], ids=["sig-on", "sig-off"])
@pytest.mark.parametrize("n", BATCH_SIZES)
def test_settle_tongbao(benchmark: Any, n: int, verify: bool, threads: int) -> None:
    """``Ledger.settle`` of one batch of ``n`` transfers."""
    work = tongbao_workload(n)
    done: list[tuple[tb.Ledger, tb.Settlement]] = []

    def setup() -> tuple[tuple[tb.Ledger], dict[str, Any]]:
        return (work.fresh_ledger(threads, verify),), {}

    def settle(ledger: tb.Ledger) -> None:
        done.append((ledger, ledger.settle(work.batch, T_BATCH)))

    benchmark.group = f"settle {n}"
    benchmark.pedantic(settle, setup=setup, rounds=ROUNDS[n], iterations=1)
    assert done
    for ledger, settlement in done:
        assert settlement.ok
        counts = settlement.counts()
        assert counts.get(tb.Status.OK) == n and sum(counts.values()) == n
        assert ledger.state_digest() == work.digest_after
    ledger.check_invariants()
    assert ledger.supply().outstanding_fen == n * OPENING_FEN
    assert ledger.balance(MERCHANT_BASE + 1) == amount(1)
    assert ledger.balance(PERSON_BASE + 1) == OPENING_FEN - amount(1)


# -- the naive baseline ----------------------------------------------------------------------


@dataclass(frozen=True)
class NaiveWorkload:
    n: int
    wallets: Wallets
    batch: list[bytes]

    def fresh_ledger(self, verify: bool) -> tuple[NaiveLedger, list[bytes]]:
        ledger = NaiveLedger(verify_signatures=verify)
        for w in self.wallets.keys:
            ledger.register(w, self.wallets.public_key(w))
        tokens = [ledger.mint(PERSON_BASE + i, OPENING_FEN) for i in range(self.n)]
        return ledger, tokens


@functools.cache
def naive_workload(n: int) -> NaiveWorkload:
    persons = list(range(PERSON_BASE, PERSON_BASE + n))
    wallets = Wallets(persons + list(range(MERCHANT_BASE, MERCHANT_BASE + n)))
    # Minting is deterministic, so the token ids of a fresh ledger are known in advance.
    _, tokens = NaiveWorkload(n, wallets, []).fresh_ledger(verify=False)
    batch = [
        wallets.transfer(
            [(tokens[i], p)],
            [(MERCHANT_BASE + i, amount(i)), (p, OPENING_FEN - amount(i))],
            T_BATCH,
        )
        for i, p in enumerate(persons)
    ]
    return NaiveWorkload(n, wallets, batch)


@pytest.mark.parametrize("verify", [True, False], ids=["sig-on", "sig-off"])
@pytest.mark.parametrize("n", BATCH_SIZES)
def test_settle_naive(benchmark: Any, n: int, verify: bool) -> None:
    """The naive pure-Python ledger settling the same-shaped batch."""
    work = naive_workload(n)
    done: list[tuple[NaiveLedger, list[tb.Status]]] = []

    def setup() -> tuple[tuple[NaiveLedger], dict[str, Any]]:
        return (work.fresh_ledger(verify)[0],), {}

    def settle(ledger: NaiveLedger) -> None:
        done.append((ledger, ledger.settle(work.batch)))

    benchmark.group = f"settle {n}"
    benchmark.pedantic(settle, setup=setup, rounds=NAIVE_ROUNDS[n], iterations=1)
    assert done
    for ledger, statuses in done:
        assert statuses == [tb.Status.OK] * n
        ledger.check_invariants()
        assert len(ledger.unspent) == 2 * n
        assert ledger.balance(PERSON_BASE + 1) == OPENING_FEN - amount(1)
        assert ledger.balance(MERCHANT_BASE + 1) == amount(1)
