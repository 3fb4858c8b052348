"""Locks (docs/locks.md): lock, final and partial capture, release, the deadline action, the
wallet rules of a capture, durability (log replay and snapshots), the JSON form and routing on
a sharded ledger. Each status has its own test in tests/test_statuses.py; the differential
tests against the reference model are in tests/test_locks_model.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import tongbao as tb
from model import Model
from tongbao import Status

T0 = 1_700_000_000_000
HOUR = 3_600_000
CB, OP = 1, 10
RIDER, METRO, ARBITER, SHOP = 100, 500, 600, 700


def limits(class4: dict[str, int]) -> tb.Limits:
    return tb.parse_limits(
        {
            "version": "locks-test",
            "over_balance_cap": "sweep",
            "class": {"1": {}, "2": {}, "3": {}, "4": class4},
        }
    )


def make_ledger(ledger: tb.Ledger | None = None) -> tuple[tb.Ledger, tb.Keyring]:
    ledger = ledger or tb.Ledger(threads=1)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [RIDER, ARBITER], tb.WalletKind.PERSONAL, operator=OP)
    ledger.open_wallets(keys, [METRO, SHOP], tb.WalletKind.MERCHANT, operator=OP)
    assert ledger.settle([tb.issue(keys, CB, [(OP, 1_000_000)], T0)], T0).ok
    assert ledger.pay(keys, OP, RIDER, 10_000, T0).ok
    return ledger, keys


def held_lock(
    ledger: tb.Ledger,
    keys: tb.Keyring,
    amount: int = 600,
    deadline: int = T0 + 2 * HOUR,
    deadline_capture: int = 600,
    releaser: int = METRO,
    at: int = T0,
) -> bytes:
    tx = ledger.build_lock(keys, RIDER, amount, METRO, releaser, deadline, deadline_capture, at)
    assert ledger.settle([tx], at).ok
    return tb.lock_token_id(tx)


def test_lock_holds_value_in_the_payers_balance() -> None:
    ledger, keys = make_ledger()
    token = held_lock(ledger, keys)
    w = ledger.wallet(RIDER)
    assert w is not None
    assert (w.balance_fen, w.held_fen, w.available_fen) == (10_000, 600, 9_400)
    assert ledger.token(token) == (RIDER, 600)
    assert ledger.lock_count == 1
    (info,) = ledger.locks(RIDER)
    assert info == tb.LockInfo(token, 600, RIDER, METRO, METRO, T0 + 2 * HOUR, 600)
    assert ledger.lock(token) == info
    assert token not in [t for t, _ in ledger.unspent(RIDER)]
    ledger.check_invariants()
    # A payment of more than the available balance cannot be built from free tokens.
    with pytest.raises(tb.InsufficientFunds):
        ledger.build_payments(keys, [RIDER], [SHOP], [9_401], T0)
    assert ledger.pay(keys, RIDER, SHOP, 9_400, T0).ok
    assert (ledger.balance(RIDER), ledger.held_fen(RIDER)) == (600, 600)


def test_final_capture_returns_the_rest() -> None:
    ledger, keys = make_ledger()
    token = held_lock(ledger, keys)
    tap_out = tb.capture(keys, METRO, token, RIDER, 400, False, T0 + 60_000)
    assert ledger.settle([tap_out], T0 + 60_000).ok
    assert (ledger.balance(RIDER), ledger.balance(METRO), ledger.held_fen(RIDER)) == (9_600, 400, 0)
    assert ledger.token(tb.rest_token_id(tap_out)) == (RIDER, 200)
    assert ledger.token(tb.token_id(tb.transaction_id(tap_out), 0)) == (METRO, 400)
    assert ledger.lock_count == 0
    ledger.check_invariants()


def test_partial_captures_keep_the_terms_and_draw_down() -> None:
    ledger, keys = make_ledger()
    token = held_lock(ledger, keys, amount=1_000, deadline_capture=300)
    captured = 0
    for n, amount in enumerate((100, 250, 400)):
        t = T0 + 1_000 * (n + 1)
        tx = tb.capture(keys, METRO, token, RIDER, amount, True, t)
        assert ledger.settle([tx], t).ok
        captured += amount
        token = tb.rest_token_id(tx)
        lock = ledger.lock(token)
        assert lock is not None
        assert (lock.amount_fen, lock.beneficiary, lock.deadline_ms) == (
            1_000 - captured,
            METRO,
            T0 + 2 * HOUR,
        )
        # The deadline capture is what the beneficiary is owed in all: less what it took.
        assert lock.deadline_capture_fen == max(0, 300 - captured)
    assert ledger.held_fen(RIDER) == 250 and ledger.balance(METRO) == 750
    last = tb.capture(keys, METRO, token, RIDER, 250, True, T0 + 9_000)
    assert ledger.settle([last], T0 + 9_000).ok
    assert ledger.lock_count == 0 and ledger.balance(METRO) == 1_000
    ledger.check_invariants()


def test_release_gives_everything_back() -> None:
    ledger, keys = make_ledger()
    token = held_lock(ledger, keys, releaser=ARBITER)
    release = tb.release(keys, ARBITER, token, RIDER, T0 + 1)
    assert ledger.settle([release, release], T0 + 1).statuses.tolist() == [
        Status.OK,
        Status.ALREADY_SETTLED,
    ]
    assert (ledger.balance(RIDER), ledger.held_fen(RIDER), ledger.balance(METRO)) == (10_000, 0, 0)
    assert ledger.token(tb.token_id(tb.transaction_id(release), 0)) == (RIDER, 600)


@pytest.mark.parametrize(("deadline_capture", "metro_gets"), [(600, 600), (250, 250), (0, 0)])
def test_deadline_action_pays_the_deadline_capture(deadline_capture: int, metro_gets: int) -> None:
    ledger, keys = make_ledger()
    deadline = T0 + HOUR
    token = held_lock(ledger, keys, deadline=deadline, deadline_capture=deadline_capture)
    ledger.settle([], deadline)  # not yet: the deadline itself is still in time
    assert ledger.lock_count == 1
    result = ledger.settle([], deadline + 1)
    assert result.ok and result.receipt.tx_count == 0
    assert ledger.lock_count == 0
    assert ledger.balance(METRO) == metro_gets
    assert ledger.balance(RIDER) == 10_000 - metro_gets
    to_metro, to_rider = tb.lapse_token_ids(token)
    assert ledger.token(to_metro) == ((METRO, metro_gets) if metro_gets else None)
    rest = 600 - metro_gets
    assert ledger.token(to_rider) == ((RIDER, rest) if rest else None)
    # The rider's outflow is counted (but was not checked: it agreed to it when locking).
    info = ledger.wallet(RIDER)
    assert info is not None and info.day_out_fen == metro_gets
    ledger.check_invariants()


def test_deadline_runs_before_the_batchs_transactions_in_deadline_order() -> None:
    ledger, keys = make_ledger()
    tokens = [
        held_lock(ledger, keys, amount=100 + n, deadline=T0 + 10 - n, deadline_capture=100 + n)
        for n in range(3)
    ]
    later = T0 + 100
    ledger.settle([], later)
    assert ledger.lock_count == 0
    assert all(ledger.token(tb.lapse_token_ids(t)[0]) is not None for t in tokens)
    assert ledger.balance(METRO) == 303
    ledger.check_invariants()


def test_capture_counts_against_the_payers_caps_and_sweeps_over_the_merchants_cap() -> None:
    ledger, keys = make_ledger()
    ledger.set_limits(limits({"payment_cap_fen": 500}))
    ledger.set_class([RIDER, METRO], 4)
    token = held_lock(ledger, keys, amount=1_000, deadline_capture=0)
    over = tb.capture(keys, METRO, token, RIDER, 501, False, T0 + 1)
    assert ledger.settle([over], T0 + 1).status(0) == Status.LIMIT_PAYMENT
    assert ledger.lock(token) is not None  # the lock stays for a smaller capture or the deadline
    ok = tb.capture(keys, METRO, token, RIDER, 500, False, T0 + 2)
    assert ledger.settle([ok], T0 + 2).ok
    info = ledger.wallet(RIDER)
    assert info is not None and info.day_out_fen == 500


def test_merchant_over_its_balance_cap_is_swept_on_capture() -> None:
    ledger, keys = make_ledger()
    ledger.set_limits(limits({"balance_cap_fen": 300}))
    ledger.set_class([METRO], 4)
    token = held_lock(ledger, keys, amount=500, deadline_capture=0)
    capture = tb.capture(keys, METRO, token, RIDER, 500, False, T0 + 1)
    result = ledger.settle([capture], T0 + 1)
    # METRO has no linked account: over the cap it is refused, the lock stays.
    assert result.status(0) == Status.LIMIT_BALANCE
    assert ledger.lock(token) is not None


def test_wallet_with_held_value_cannot_close() -> None:
    ledger, keys = make_ledger()
    held_lock(ledger, keys, amount=10_000, deadline_capture=0)
    assert ledger.available_fen(RIDER) == 0
    close = tb.close_wallet(keys, OP, RIDER, timestamp_ms=T0)
    assert ledger.settle([close], T0).status(0) == Status.BALANCE_NOT_ZERO


def test_json_form_round_trips() -> None:
    ledger, keys = make_ledger()
    lock = ledger.build_lock(keys, RIDER, 600, METRO, ARBITER, T0 + HOUR, 100, T0, reference=b"x")
    token = tb.lock_token_id(lock)
    for tx in (
        lock,
        tb.capture(keys, ARBITER, token, RIDER, 5, True, T0, reference=b"tap"),
        tb.release(keys, METRO, token, RIDER, T0),
    ):
        doc = tb.to_json(tx)
        assert doc["version"] == tb.LOCK_FORMAT_VERSION
        assert tb.from_json(doc) == tx
    assert tb.to_json(lock)["lock"] == {
        "beneficiary": METRO,
        "releaser": ARBITER,
        "deadline_ms": T0 + HOUR,
        "deadline_capture_fen": 100,
    }


def test_payments_keep_their_version_1_bytes() -> None:
    keys = tb.Keyring()
    keys.generate([7], tb.Scheme.ED25519, b"v1")
    tx = tb.transfer(keys, [bytes(32)], [(8, 5)], [7], 1_000, 2_000, b"r")
    assert tx[0] == 1
    # Decoded and re-encoded by the independent model's decoder: same id, version 1.
    assert tb.transaction_id(tx) == __import__("model").decode(tx).id


def test_durable_ledger_replays_locks_and_deadlines(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = tb.Ledger.open(path, threads=1)
    ledger, keys = make_ledger(ledger)
    t1 = held_lock(ledger, keys, amount=700, deadline=T0 + 50, deadline_capture=300)
    t2 = held_lock(ledger, keys, amount=900, deadline=T0 + HOUR, deadline_capture=0)
    partial = tb.capture(keys, METRO, t2, RIDER, 100, True, T0 + 10)
    assert ledger.settle([partial], T0 + 10).ok
    ledger.snapshot()
    ledger.settle([], T0 + 100)  # t1's deadline action, after the snapshot
    digest = ledger.state_digest()
    ledger.close()
    again = tb.Ledger.open(path, threads=1)
    assert again.state_digest() == digest
    assert again.lock_count == 1 and again.lock(tb.rest_token_id(partial)) is not None
    assert again.lock(t1) is None
    again.check_invariants()
    # A capture of the lapsed lock is still recognised after recovery.
    late = tb.capture(keys, METRO, t1, RIDER, 1, False, T0 + 100)
    assert again.settle([late], T0 + 200).status(0) == Status.LOCK_DEADLINE_PASSED
    again.close()


def test_model_agrees_on_a_transit_morning() -> None:
    """A small scripted interleaving, checked against the reference model status by status
    and by state digest (the property tests draw many more)."""
    ledger, keys, model = tb.Ledger(threads=1), tb.Keyring(), Model()
    for ids, kind in (
        ([CB], tb.WalletKind.CENTRAL_BANK),
        ([OP], tb.WalletKind.OPERATOR),
        ([RIDER], tb.WalletKind.PERSONAL),
        ([METRO, SHOP], tb.WalletKind.MERCHANT),
    ):
        ledger.open_wallets(keys, ids, kind)
        for w in ids:
            model.register(w, kind, tb.Scheme.ED25519, keys.public_key(w))

    def both(batch: list[bytes], now: int) -> list[int]:
        got = ledger.settle(batch, now).statuses.tolist()
        assert got == model.settle(batch, now)
        assert ledger.state_digest() == model.state_digest(ledger.last_receipt_hash)
        return got

    both([tb.issue(keys, CB, [(OP, 100_000)], T0)], T0)
    both(ledger.build_payments(keys, [OP], [RIDER], [1_000], T0)[0], T0)
    lock = ledger.build_lock(keys, RIDER, 600, METRO, METRO, T0 + 1_000, 600, T0 + 1)
    token = tb.lock_token_id(lock)
    spend = tb.transfer(keys, [token], [(SHOP, 600)], [RIDER], T0 + 1)
    assert both([lock, spend], T0 + 1) == [Status.OK, Status.INPUT_LOCKED]
    partial = tb.capture(keys, METRO, token, RIDER, 200, True, T0 + 2)
    assert both([partial, partial], T0 + 2) == [Status.OK, Status.ALREADY_SETTLED]
    assert both([], T0 + 5_000) == []  # the rest lapses: 400 to METRO (600 owed in all)
    assert ledger.balance(METRO) == 600 and ledger.lock_count == 0


def test_sharded_capture_routes_to_the_payer_and_exports_to_the_beneficiary() -> None:
    """On a cluster a capture is signed by the releaser (homed anywhere) but settles on the
    payer's shard, found from the body; the beneficiary's part leaves as a credit, and a
    deadline action's part too. Same balances as one unsharded ledger."""
    import random

    from test_cluster_credits import _two_shards

    keys, shards, payer, payee = _two_shards()
    reference = tb.Ledger(threads=1)
    reference.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    reference.open_wallets(keys, [10, 11], tb.WalletKind.OPERATOR)
    reference.open_wallets(keys, list(range(100, 120)), tb.WalletKind.PERSONAL)
    rng = random.Random(7)

    def both(txs: list[bytes], ts: int) -> list[int]:
        expected = reference.settle(txs, ts).statuses.tolist()
        assert shards.settle(txs, ts).tolist() == expected
        shards.deliver(rng)
        return expected

    both([tb.issue(keys, 1, [(10, 100_000)], T0)], T0)
    both(reference.build_payments(keys, [10], [payer], [10_000], T0)[0], T0)
    first = reference.build_lock(keys, payer, 3_000, payee, payee, T0 + 10, 0, T0)
    assert both([first], T0) == [Status.OK]
    second = reference.build_lock(keys, payer, 2_000, payee, payee, T0 + 20, 500, T0 + 1)
    assert both([second], T0 + 1) == [Status.OK]
    capture = tb.capture(keys, payee, tb.lock_token_id(first), payer, 1_200, False, T0 + 2)
    # The releaser lives on the other shard; the body names the payer: route there.
    assert shard_of(capture, 2) == shard_of_wallet(payer, 2) != shard_of_wallet(payee, 2)
    assert both([capture], T0 + 2) == [Status.OK]
    # The second lock lapses at its shard's next batch (an idle shard needs a tick: an empty
    # batch): 500 to the payee, across shards.
    reference.settle([], T0 + 100)
    for ledger in shards.ledgers:
        ledger.settle([], T0 + 100)
    shards.deliver(rng)
    for w in (payer, payee):
        assert shards.home(w).balance(w) == reference.balance(w)
    assert reference.balance(payee) == 1_700 and reference.balance(payer) == 8_300
    issued, redeemed, outstanding, credits_in, credits_out = shards.totals()
    assert credits_in == credits_out and issued - redeemed == outstanding
    for ledger in shards.ledgers:
        ledger.check_invariants()
        assert ledger.lock_count == 0


def shard_of(tx: bytes, count: int) -> int:
    from tongbao import shard

    return int(shard.payer_vshards([tx], count)[0])


def shard_of_wallet(wallet: int, count: int) -> int:
    from tongbao import shard

    return int(shard.home_vshards([wallet], count)[0])


def test_day_report_replays_locks_and_deadlines(tmp_path: Path) -> None:
    """The end-of-day report replays the log on its own reader: locks, captures and the
    deadline actions opening batches replay there as they settled (a logged OK that settled
    otherwise would be a CorruptLog)."""
    path = tmp_path / "ledger"
    ledger, keys = make_ledger(tb.Ledger.open(path, threads=1))
    token = held_lock(ledger, keys, amount=700, deadline=T0 + 50, deadline_capture=300)
    other = held_lock(ledger, keys, amount=900, deadline=T0 + HOUR, deadline_capture=0)
    # The first lock lapses at the start of this batch; the rider then spends what came back.
    assert ledger.settle([], T0 + 100).ok
    spend = ledger.build_payments(keys, [RIDER], [SHOP], [ledger.available_fen(RIDER)], T0 + 100)
    assert ledger.settle(spend[0], T0 + 100).ok
    capture = tb.capture(keys, METRO, other, RIDER, 900, False, T0 + 200)
    assert ledger.settle([capture], T0 + 200).ok
    # A capture for a merchant of another operator is a flow between the two parties.
    ledger.open_wallets(keys, [11], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [510], tb.WalletKind.MERCHANT, operator=11)
    assert ledger.pay(keys, OP, RIDER, 1_000, T0 + 300).ok
    lock = ledger.build_lock(keys, RIDER, 800, 510, 510, T0 + HOUR, 0, T0 + 300)
    partial = tb.capture(keys, 510, tb.lock_token_id(lock), RIDER, 300, True, T0 + 400)
    assert ledger.settle([lock], T0 + 300).ok and ledger.settle([partial], T0 + 400).ok
    ledger.close()
    report = tb.day_report(path, "2023-11-15")
    assert report.transactions >= 8
    assert report.status_counts.get(Status.OK, 0) == report.transactions
    assert report.gross_fen.get((OP, 11)) == 300
    assert tb.lapse_token_ids(token)[0] != token
