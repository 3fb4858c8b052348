"""Durable vs in-memory settlement, recovery time and snapshot size, side by side in one run.

    python bench/durability.py [--batches 20] [--batch-size 1000] [--recovery-tx 1000000]

Prints tx/s of `Ledger.settle` in memory and with the write-ahead log (fsync once per batch),
with signatures on and off, and their ratios; then the time to recover a log of
`--recovery-tx` transactions (replayed from the log alone, then from a snapshot) and the
snapshot's bytes per unspent token. Every run checks its results: all statuses OK, recovered
state digest equal to the original.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import tongbao as tb

PEOPLE = list(range(1_000, 5_000))
OPERATORS = [10, 11, 12, 13]


def populate(ledger: tb.Ledger, keys: tb.Keyring) -> None:
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, OPERATORS, tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, PEOPLE, tb.WalletKind.PERSONAL)
    issue = tb.issue(keys, 1, [(op, 10**12) for op in OPERATORS], timestamp_ms=1)
    assert ledger.settle([issue], 1).ok
    per_operator = len(PEOPLE) // len(OPERATORS)
    for i, op in enumerate(OPERATORS):
        payees = PEOPLE[i * per_operator : (i + 1) * per_operator]
        txs, _ = ledger.build_payments(keys, [op] * len(payees), payees, [10**7] * len(payees), 2)
        assert ledger.settle(txs, 2).ok


def payment_batches(
    ledger: tb.Ledger, keys: tb.Keyring, batches: int, size: int, seed: int
) -> Callable[[int], list[bytes]]:
    rng = random.Random(seed)

    def batch(n: int) -> list[bytes]:
        payers = rng.sample(PEOPLE, size)
        payees = [rng.choice(PEOPLE) for _ in payers]
        amounts = [rng.randint(1, 1_000) for _ in payers]
        txs, skipped = ledger.build_payments(keys, payers, payees, amounts, 10 + n)
        assert not skipped
        return txs

    return batch


def settle_rate(ledger: tb.Ledger, batches: int, size: int) -> float:
    keys = tb.Keyring()
    populate(ledger, keys)
    make = payment_batches(ledger, keys, batches, size, seed=7)
    elapsed, count = 0.0, 0
    for n in range(batches):
        txs = make(n)
        start = time.perf_counter()
        result = ledger.settle(txs, 10 + n)
        elapsed += time.perf_counter() - start
        assert result.ok, result.counts()
        count += len(txs)
    ledger.check_invariants()
    return count / elapsed


def recovery(total_tx: int, size: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="tongbao-recovery-"))
    try:
        directory = root / "ledger"
        ledger = tb.Ledger.open(directory, verify_signatures=False, snapshot_every_records=0)
        keys = tb.Keyring()
        populate(ledger, keys)
        make = payment_batches(ledger, keys, total_tx // size, size, seed=3)
        start = time.perf_counter()
        for n in range(total_tx // size):
            assert ledger.settle(make(n), 10 + n).ok
        build_s = time.perf_counter() - start
        digest, tokens = ledger.state_digest(), ledger.token_count
        log_bytes = sum(p.stat().st_size for p in directory.glob("wal-*.log"))
        ledger.close()
        start = time.perf_counter()
        reopened = tb.Ledger.open(directory, snapshot_every_records=0)
        replay_s = time.perf_counter() - start
        assert reopened.state_digest() == digest
        assert reopened.recovery is not None
        replayed = reopened.recovery.transactions_replayed
        reopened.snapshot()
        reopened.close()
        (snapshot,) = directory.glob("snapshot-*.snap")
        start = time.perf_counter()
        from_snapshot = tb.Ledger.open(directory)
        snapshot_s = time.perf_counter() - start
        assert from_snapshot.state_digest() == digest
        mib = log_bytes / 2**20
        print(f"log of {replayed:,} transactions ({mib:,.1f} MiB) built in {build_s:.1f} s")
        rate = replayed / replay_s
        print(f"  recovery from the log alone: {replay_s:.2f} s = {rate:,.0f} tx/s replayed")
        print(
            f"  recovery from a snapshot of {tokens:,} unspent tokens: {snapshot_s:.2f} s; "
            f"snapshot {snapshot.stat().st_size / tokens:.1f} bytes per token"
        )
    finally:
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--recovery-tx", type=int, default=200_000)
    args = parser.parse_args()
    rows = []
    for verify in (True, False):
        memory = settle_rate(tb.Ledger(verify_signatures=verify), args.batches, args.batch_size)
        directory = tempfile.mkdtemp(prefix="tongbao-durable-")
        try:
            durable = settle_rate(
                tb.Ledger.open(directory, verify_signatures=verify), args.batches, args.batch_size
            )
        finally:
            shutil.rmtree(directory)
        rows.append((verify, memory, durable))
    print(f"settle, {args.batches} batches of {args.batch_size} one-signature payments")
    print(f"{'signatures':<12}{'in memory tx/s':>16}{'durable tx/s':>16}{'ratio':>8}")
    for verify, memory, durable in rows:
        label = "on" if verify else "off"
        print(f"{label:<12}{memory:>16,.0f}{durable:>16,.0f}{durable / memory:>8.3f}")
    if args.recovery_tx:
        recovery(args.recovery_tx, args.batch_size)


if __name__ == "__main__":
    main()
