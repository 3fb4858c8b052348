"""Recovery at scale: a durable ledger with many unspent tokens, recovered from its log and from
a snapshot; resident memory per token.

    python bench/snapshot_scale.py [--tokens 10000000] [--wallets 100000]

Tokens are made by payroll-like transfers of 1,000 outputs each (one signature per transfer).
Prints the time to build, to recover from the log alone, to write a snapshot and to recover
from it, the snapshot's bytes per token, and the growth of resident memory per token. Checks
that every recovery gives the same state digest.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import tongbao as tb

CB, OP = 1, 10
OUTPUTS = 1_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10_000_000)
    parser.add_argument("--wallets", type=int, default=100_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tongbao-scale-"))
    try:
        directory = root / "ledger"
        ledger = tb.Ledger.open(directory, verify_signatures=False, snapshot_every_records=0)
        keys = tb.Keyring()
        people = list(range(1_000, 1_000 + args.wallets))
        ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
        ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
        ledger.open_wallets(keys, people, tb.WalletKind.PERSONAL)
        rss_before = rss_bytes()
        start = time.perf_counter()
        issue = tb.issue(keys, CB, [(OP, 10**15)], timestamp_ms=1)
        assert ledger.settle([issue], 1).ok
        (change, value) = ledger.unspent(OP)[0]
        made, n, batch = 0, 0, []
        while made < args.tokens:
            payees = [people[(made + i) % len(people)] for i in range(OUTPUTS - 1)]
            outputs = [(p, 1 + (made + i) % 997) for i, p in enumerate(payees)]
            paid = sum(a for _, a in outputs)
            value -= paid
            tx = tb.transfer(keys, [change], [*outputs, (OP, value)], [OP], timestamp_ms=2)
            change = tb.token_id(tb.transaction_id(tx), OUTPUTS - 1)
            batch.append(tx)
            made += OUTPUTS - 1
            n += 1
            if len(batch) == 100 or made >= args.tokens:
                assert ledger.settle(batch, 2).ok
                batch = []
        build_s = time.perf_counter() - start
        tokens = ledger.token_count
        rss_per_token = (rss_bytes() - rss_before) / tokens
        digest = ledger.state_digest()
        ledger.close()
        del ledger

        start = time.perf_counter()
        from_log = tb.Ledger.open(directory, snapshot_every_records=0)
        log_s = time.perf_counter() - start
        assert from_log.state_digest() == digest
        replayed = from_log.recovery.transactions_replayed if from_log.recovery else 0
        start = time.perf_counter()
        from_log.snapshot()
        snapshot_s = time.perf_counter() - start
        from_log.close()
        del from_log
        (snapshot,) = directory.glob("snapshot-*.snap")
        start = time.perf_counter()
        from_snapshot = tb.Ledger.open(directory)
        snap_open_s = time.perf_counter() - start
        assert from_snapshot.state_digest() == digest
        print(f"{tokens:,} unspent tokens in {n:,} transfers of {OUTPUTS} outputs: {build_s:.1f} s")
        print(f"  resident memory: {rss_per_token:.0f} bytes per unspent token")
        print(f"  recovery from the log alone: {log_s:.1f} s ({replayed:,} transactions)")
        per_token = snapshot.stat().st_size / tokens
        print(f"  snapshot written in {snapshot_s:.1f} s, {per_token:.1f} B/token")
        print(f"  recovery from the snapshot: {snap_open_s:.1f} s")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
