"""Settle throughput with wallet limits on vs off, side by side in one run.

    python bench/limits.py [--batches 10] [--batch-size 4096] [--threads 1]

Personal wallets are class 2 under the shipped limits (checked on every payment, never hit) in
the "on" run and class 1 with no limits installed in the "off" run; signature checks are off so
the rules' own cost is not hidden behind verification. Every batch must settle all OK.
"""

from __future__ import annotations

import argparse
import random
import time

import tongbao as tb

PEOPLE = list(range(1_000, 21_000))


def rate(limits: bool, batches: int, size: int, threads: int) -> float:
    ledger = tb.Ledger(threads=threads, verify_signatures=False)
    keys = tb.Keyring()
    if limits:
        ledger.set_limits(tb.load_limits())
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
    ledger.open_wallets(
        keys, PEOPLE, tb.WalletKind.PERSONAL, wallet_class=2 if limits else 1, operator=10
    )
    assert ledger.settle([tb.issue(keys, 1, [(10, 10**12)], timestamp_ms=1)], 1).ok
    txs, _ = ledger.build_payments(keys, [10] * len(PEOPLE), PEOPLE, [1_000_000] * len(PEOPLE), 2)
    assert ledger.settle(txs, 2).ok
    rng = random.Random(5)
    elapsed, count = 0.0, 0
    for n in range(batches):
        payers = rng.sample(PEOPLE, size)
        payees = [rng.choice(PEOPLE) for _ in payers]
        txs, _ = ledger.build_payments(
            keys, payers, payees, [rng.randint(1, 500) for _ in payers], 3 + n
        )
        start = time.perf_counter()
        result = ledger.settle(txs, 3 + n)
        elapsed += time.perf_counter() - start
        assert result.ok, result.counts()
        count += len(txs)
    ledger.check_invariants()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rounds = [
        (
            rate(False, args.batches, args.batch_size, args.threads),
            rate(True, args.batches, args.batch_size, args.threads),
        )
        for _ in range(3)
    ]
    for off, on in rounds:
        print(f"limits off {off:>12,.0f} tx/s   on {on:>12,.0f} tx/s   ratio {on / off:.3f}")
    best_off = max(r[0] for r in rounds)
    best_on = max(r[1] for r in rounds)
    print(f"best of 3: ratio {best_on / best_off:.3f}")


if __name__ == "__main__":
    main()
