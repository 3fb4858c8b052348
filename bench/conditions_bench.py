"""Settle throughput of payments spending earmarked tokens vs plain payments (issue 9).

Each of ``--payers`` people holds one free and one earmarked token; one batch has every person
pay a merchant from the free token (plain, change free), the other from the earmarked token
(an allowed merchant, earmarked change). Both settle on fresh copies of the same ledger, and a
third run settles the plain batch on a ledger where no condition exists. Signatures are
verified unless ``--trust``; best of ``--repeat``. Time is the process's CPU time (all its
threads), so other load on the machine does not skew the ratio. Prints payments per CPU
second and the ratios.

    .venv/bin/python bench/conditions_bench.py --payers 20000 --threads 1
"""

from __future__ import annotations

import argparse
import time

import tongbao as tb

CB, OP, GOV, MERCHANT = 1, 10, 500, 3001
T0 = 1_602_432_000_000
COND = 7


def world(
    payers: int, threads: int, verify: bool, with_condition: bool
) -> tuple[tb.Ledger, tb.Keyring, list[int]]:
    ledger = tb.Ledger(threads=threads, verify_signatures=verify)
    keys = tb.Keyring()
    people = list(range(100_000, 100_000 + payers))
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [GOV], tb.WalletKind.CORPORATE)
    ledger.open_wallets(keys, people, tb.WalletKind.PERSONAL)
    ledger.open_wallets(keys, [MERCHANT], tb.WalletKind.MERCHANT, mcc=5812)
    assert ledger.settle([tb.issue(keys, CB, [(OP, 10**12)], T0)], T0).ok
    pay, _ = ledger.build_payments(
        keys, [OP] * (payers + 1), [GOV, *people], [10**9] + [10_000] * payers, T0
    )
    assert ledger.settle(pay, T0).ok
    if with_condition:
        define = tb.define_condition(
            keys,
            COND,
            issuer=GOV,
            reclaimer=GOV,
            not_before_ms=T0,
            valid_until_ms=T0 + 86_400_000,
            timestamp_ms=T0,
            mccs=[5812],
        )
        assert ledger.settle([define], T0).ok
        txs = []
        ((token, value),) = ledger.unspent(GOV)
        for start in range(0, payers, 1000):
            chunk = people[start : start + 1000]
            outputs = [(p, 10_000, COND) for p in chunk] + [(GOV, value - 10_000 * len(chunk))]
            tx = tb.transfer(keys, [token], outputs, [GOV], T0)
            token, value = (
                tb.token_id(tb.transaction_id(tx), len(outputs) - 1),
                value - 10_000 * len(chunk),
            )
            txs.append(tx)
        assert ledger.settle(txs, T0).ok
    return ledger, keys, people


def batch(ledger: tb.Ledger, keys: tb.Keyring, people: list[int], earmarked: bool) -> list[bytes]:
    bodies, signers = [], []
    tokens = {p: ledger.unspent(p) for p in people}
    marks = ledger.earmarks([t for p in people for t, _ in tokens[p]])
    it = iter(marks)
    for p in people:
        for token, value in tokens[p]:
            mark = next(it)
            if bool(mark) != earmarked:
                continue
            change = (p, value - 100, COND) if earmarked else (p, value - 100)
            bodies.append(tb.encode(tb.Kind.TRANSFER, [token], [(MERCHANT, 100), change], T0 + 1))
            signers.append([p])
    return keys.sign(bodies, signers)


def timed(args: argparse.Namespace, earmarked: bool, with_condition: bool) -> float:
    best = 0.0
    for _ in range(args.repeat):
        ledger, keys, people = world(args.payers, args.threads, not args.trust, with_condition)
        txs = batch(ledger, keys, people, earmarked)
        start = time.process_time()
        result = ledger.settle(txs, T0 + 1)
        elapsed = time.process_time() - start
        assert result.ok, result.counts()
        ledger.check_invariants()
        best = max(best, len(txs) / elapsed)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payers", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--trust", action="store_true", help="skip signature verification")
    args = parser.parse_args()
    no_conditions = timed(args, earmarked=False, with_condition=False)
    plain = timed(args, earmarked=False, with_condition=True)
    earmarked = timed(args, earmarked=True, with_condition=True)
    print(f"plain, no condition defined : {no_conditions:12,.0f} payments/CPU-s")
    print(f"plain, conditions defined   : {plain:12,.0f} payments/CPU-s")
    print(f"earmarked spends            : {earmarked:12,.0f} payments/CPU-s")
    print(f"earmarked / plain           : {earmarked / plain:.3f}")
    print(f"earmarked / no condition    : {earmarked / no_conditions:.3f}")


if __name__ == "__main__":
    main()
