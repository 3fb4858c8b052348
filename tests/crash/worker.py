"""A settling process for the crash tests: opens a durable ledger, settles deterministic random
payments batch after batch, and records each acknowledged batch *after* `settle` returns.

    python tests/crash/worker.py DIR ACKS SEED BATCHES [--unsafe-ack] [--snapshot-every N]

ACKS gets one line per acknowledged batch: `seq <hex tx>,<status> ... <crc32>` (tx bytes in
hex; a line cut by a kill fails its checksum and does not count as acknowledged). The
test kills this process with SIGKILL at random moments and checks the ledger against ACKS.

With TONGBAO_CRASH_LOCKS=1 every other batch is a lock batch (docs/locks.md): final and partial
captures of locks made earlier, then new locks with deadlines a few batches ahead, so locks are
outstanding, captured and lapsing (deadline actions at batch start) around every kill.
"""

from __future__ import annotations

import argparse
import os
import random
import zlib

import tongbao as tb

CENTRAL_BANK = 1
OPERATOR = 10
PEOPLE = list(range(100, 140))
T0_MS = 1_700_000_000_000
BATCH_SIZE = 40


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("acks")
    parser.add_argument("seed", type=int)
    parser.add_argument("batches", type=int)
    parser.add_argument("--unsafe-ack", action="store_true")
    parser.add_argument("--snapshot-every", type=int, default=25)
    args = parser.parse_args()

    ledger = tb.Ledger.open(
        args.dir,
        threads=1,
        snapshot_every_records=args.snapshot_every,
        _unsafe_ack_before_fsync=args.unsafe_ack,
    )
    keys = tb.Keyring()
    ids = [CENTRAL_BANK, OPERATOR, *PEOPLE]
    publics = keys.generate(ids, int(tb.Scheme.ED25519), b"crash")
    if ledger.wallet(CENTRAL_BANK) is None:
        kinds = [tb.WalletKind.CENTRAL_BANK, tb.WalletKind.OPERATOR] + [
            tb.WalletKind.PERSONAL
        ] * len(PEOPLE)
        ledger.register_wallets(ids, [int(k) for k in kinds], publics)
    fd = os.open(args.acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    if os.path.getsize(args.acks) > 0:
        with open(args.acks, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                os.write(fd, b"\n")  # end a line cut by a previous kill

    def settle(txs: list[bytes]) -> None:
        ts = max(ledger.last_timestamp_ms + 1_000, T0_MS)
        result = ledger.settle(txs, ts)
        body = " ".join(f"{tx.hex()},{int(s)}" for tx, s in zip(txs, result.statuses, strict=True))
        line = f"{result.receipt.seq} {body}"
        os.write(fd, f"{line} {zlib.crc32(line.encode()):08x}\n".encode())

    # Deterministic: a no-op (ALREADY_SETTLED) after the first successful run.
    settle([tb.issue(keys, CENTRAL_BANK, [(OPERATOR, 10_000_000)], timestamp_ms=T0_MS)])
    while ledger.batch_seq < args.batches:
        rng = random.Random(args.seed * 1_000_003 + ledger.batch_seq)
        if os.environ.get("TONGBAO_CRASH_LOCKS") == "1" and ledger.batch_seq % 2 == 0:
            settle(lock_batch(ledger, keys, rng))
            continue
        payers, payees, amounts = [], [], []
        for _ in range(BATCH_SIZE):
            payer = rng.choice([OPERATOR, *PEOPLE])
            payees.append(rng.choice(PEOPLE))
            payers.append(payer)
            amounts.append(rng.randint(1, 5_000))
        ts = max(ledger.last_timestamp_ms + 1_000, T0_MS)
        txs, _ = ledger.build_payments(
            keys, payers, payees, amounts, ts, ts + 6 * 24 * 3_600_000, skip_insufficient=True
        )
        if rng.random() < 0.2 and txs:
            txs.append(txs[0])  # a resubmission inside the batch
        settle(txs)
    os.close(fd)
    os._exit(0)


def lock_batch(ledger: tb.Ledger, keys: tb.Keyring, rng: random.Random) -> list[bytes]:
    """Captures of live locks (by their releaser, final or partial), then new locks."""
    ts = max(ledger.last_timestamp_ms + 1_000, T0_MS)
    expiry = ts + 6 * 24 * 3_600_000
    txs = []
    for payer in rng.sample(PEOPLE, 10):
        for lock in ledger.locks(payer):
            if lock.deadline_ms >= ts and rng.random() < 0.5:
                amount = rng.randint(1, lock.amount_fen)
                keep = rng.random() < 0.5
                txs.append(
                    tb.capture(keys, lock.releaser, lock.token, payer, amount, keep, ts, expiry)
                )
    requests = []
    for _ in range(10):
        amount = rng.randint(1, 3_000)
        beneficiary = rng.choice(PEOPLE)
        deadline = ts + rng.choice([500, 1_500, 3_000, 8_000])
        requests.append(
            tb.LockRequest(
                rng.choice(PEOPLE),
                amount,
                beneficiary,
                beneficiary,
                deadline,
                rng.randint(0, amount),
            )
        )
    locks, _ = ledger.build_locks(keys, requests, ts, expiry, skip_insufficient=True)
    return txs + locks


if __name__ == "__main__":
    main()
