"""Sharded ledgers in one process (no Redis): differential property tests against one unsharded
ledger, exactly-once import under duplication and reordering, the receiving side's wallet rules
(sweep, bounce, suspense), and recovery of the cross-shard state from the log and snapshots."""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tongbao as tb
from tongbao import shard

CENTRAL_BANK, OPERATORS = 1, [10, 11]


class Shards:
    """``count`` sharded ledgers and a courier that delivers their credits (with duplicates
    and in shuffled order when asked)."""

    def __init__(
        self, count: int, keys: tb.Keyring, persons: list[int], dirs: list[Path] | None = None
    ) -> None:
        self.count = count
        if dirs:
            self.ledgers = [tb.Ledger.open(d, threads=1, snapshot_every_records=0) for d in dirs]
        else:
            self.ledgers = [tb.Ledger(threads=1) for _ in range(count)]
        for index, ledger in enumerate(self.ledgers):
            shard.make_shard(ledger, count, index)
            ledger.open_wallets(keys, [CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK)
            ledger.open_wallets(keys, OPERATORS, tb.WalletKind.OPERATOR)
            ledger.open_wallets(keys, persons, tb.WalletKind.PERSONAL)
        self.delivered: list[shard.Credit] = []

    def home(self, wallet: int) -> tb.Ledger:
        return self.ledgers[int(shard.home_vshards([wallet], self.count)[0])]

    def settle(self, txs: list[bytes], ts: int) -> np.ndarray:
        statuses = np.full(len(txs), 255, dtype=np.uint8)
        homes = shard.payer_vshards(txs, self.count)
        for v in set(homes.tolist()):
            idx = np.flatnonzero(homes == v)
            statuses[idx] = self.ledgers[v].settle([txs[i] for i in idx], ts).statuses
        return statuses

    def deliver(self, rng: random.Random, duplicates: float = 0.0) -> None:
        """Move every outbox to the owners' shards, repeating some credits, until all are empty
        (bounces and sweeps create more)."""
        while True:
            credits: list[shard.Credit] = []
            for ledger in self.ledgers:
                seqs, packed = shard.outbox_packed(ledger)
                if len(seqs):
                    credits += shard.unpack_credits(packed)
                    shard.credits_delivered(ledger, int(seqs[-1]))
            if not credits:
                return
            credits += [c for c in credits if rng.random() < duplicates]
            credits += [c for c in self.delivered if rng.random() < duplicates]  # late repeats
            rng.shuffle(credits)
            for c in credits:
                shard.import_credits(self.home(c.owner), [c])
            self.delivered += credits

    def totals(self) -> tuple[int, int, int, int, int]:
        s = [ledger.supply() for ledger in self.ledgers]
        t = [shard.totals(ledger) for ledger in self.ledgers]
        return (
            sum(x.issued_fen for x in s),
            sum(x.redeemed_fen for x in s),
            sum(x.outstanding_fen for x in s),
            sum(x.credits_in_fen for x in t),
            sum(x.credits_out_fen for x in t),
        )


@given(
    count=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    rounds=st.integers(1, 4),
    duplicates=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_sharded_ledgers_settle_like_one_ledger(
    count: int, seed: int, rounds: int, duplicates: float
) -> None:
    rng = random.Random(seed)
    keys = tb.Keyring()
    persons = list(range(100, 112))
    reference = tb.Ledger(threads=1)
    reference.open_wallets(keys, [CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK)
    reference.open_wallets(keys, OPERATORS, tb.WalletKind.OPERATOR)
    reference.open_wallets(keys, persons, tb.WalletKind.PERSONAL)
    shards = Shards(count, keys, persons)
    ts = 1_000
    issue = tb.issue(keys, CENTRAL_BANK, [(op, 1_000_000) for op in OPERATORS], timestamp_ms=ts)
    assert reference.settle([issue], ts).ok and (shards.settle([issue], ts) == 0).all()
    shards.deliver(rng, duplicates)
    txs, _ = reference.build_payments(
        keys, [OPERATORS[i % 2] for i in range(12)], persons, [50_000] * 12, ts
    )
    assert reference.settle(txs, ts).ok and (shards.settle(txs, ts) == 0).all()
    shards.deliver(rng, duplicates)
    for _ in range(rounds):
        ts += 1_000
        people = persons[:]
        rng.shuffle(people)
        payers = [rng.choice(people[:6]) for _ in range(15)]
        payees = [rng.choice(people[6:] + OPERATORS) for _ in range(15)]
        amounts = [rng.randint(1, 30_000) for _ in range(15)]
        txs, _ = reference.build_payments(keys, payers, payees, amounts, ts, skip_insufficient=True)
        txs += txs[:3]
        expected = reference.settle(txs, ts).statuses
        assert shards.settle(txs, ts).tolist() == expected.tolist()
        shards.deliver(rng, duplicates)
    wallets = [CENTRAL_BANK, *OPERATORS, *persons]
    assert [shards.home(w).balance(w) for w in wallets] == reference.balances(wallets).tolist()
    for w in wallets:  # no wallet has tokens away from home
        assert all(
            ledger.balance(w) == 0 for ledger in shards.ledgers if ledger is not shards.home(w)
        )
    issued, redeemed, outstanding, credits_in, credits_out = shards.totals()
    assert credits_in == credits_out
    assert issued - redeemed == outstanding == reference.supply().outstanding_fen
    for ledger in shards.ledgers:
        ledger.check_invariants()
    # The content digest: the shards' shares, in any order, make the reference's digest
    # (its state digest differs: receipt chains); without the central bank's shard they don't.
    parts = [shard.content_parts(ledger) for ledger in shards.ledgers]
    rng.shuffle(parts)
    assert shard.combine_content(parts) == reference.content_digest()
    without = [shard.content_parts(x) for x in shards.ledgers if x is not shards.home(CENTRAL_BANK)]
    assert shard.combine_content(without) != reference.content_digest()


def _two_shards(limits: tb.Limits | None = None) -> tuple[tb.Keyring, Shards, int, int]:
    """Two shards with a payer and a payee homed on different shards."""
    keys = tb.Keyring()
    persons = list(range(100, 120))
    homes = shard.home_vshards(persons, 2).tolist()
    payer = next(p for p, h in zip(persons, homes, strict=True) if h == 0)
    payee = next(p for p, h in zip(persons, homes, strict=True) if h == 1)
    shards = Shards(2, keys, persons)
    if limits is not None:
        for ledger in shards.ledgers:
            ledger.set_limits(limits)
    return keys, shards, payer, payee


def _credit(owner: int, value_fen: int, refund_to: int, tag: bytes = b"x") -> shard.Credit:
    return shard.Credit(tag.ljust(32, b"\0"), owner, value_fen, refund_to)


def test_a_credit_never_resurrects_a_spent_token() -> None:
    keys, shards, payer, payee = _two_shards()
    home = shards.home(payee)
    c = _credit(payee, 5_000, payer)
    assert shard.import_credits(home, [c]).tolist() == [tb.Status.OK]
    txs, _ = home.build_payments(keys, [payee], [payee], [5_000], 10)  # spend it (to itself)
    assert home.settle(txs, 10).ok
    assert home.token(c.token_id) is None and home.is_spent(c.token_id)
    assert shard.import_credits(home, [c, c]).tolist() == [tb.Status.ALREADY_SETTLED] * 2
    assert home.balance(payee) == 5_000
    assert shard.totals(home).credits_in_fen == 5_000


def test_receiving_side_rules_sweep_bounce_and_suspense() -> None:
    sweep = tb.parse_limits(
        {
            "version": "t",
            "over_balance_cap": "sweep",
            "class": {"1": {}, "2": {}, "3": {}, "4": {"balance_cap_fen": 1_000}},
        }
    )
    keys, shards, payer, payee = _two_shards(sweep)
    home, payer_home = shards.home(payee), shards.home(payer)
    operator = OPERATORS[0]
    for ledger in shards.ledgers:
        ledger.open_wallets(
            keys,
            [9_001],
            tb.WalletKind.PERSONAL,
            wallet_class=4,
            operator=operator,
            linked_account=True,
        )
        ledger.open_wallets(
            keys, [9_002], tb.WalletKind.PERSONAL, wallet_class=4, operator=operator
        )
    over = [_credit(w, 1_500, payer, bytes([w % 256, 1])) for w in (9_001, 9_002)]
    for c in over:
        statuses = shard.import_credits(shards.home(c.owner), [c]).tolist()
        assert statuses == [tb.Status.OK if c.owner == 9_001 else tb.Status.LIMIT_BALANCE]
    rng = random.Random(0)
    shards.deliver(rng)
    assert shards.home(9_001).balance(9_001) == 1_000  # the rest swept to the operator
    assert shards.home(operator).balance(operator) == 500
    assert shards.home(9_002).balance(9_002) == 0
    assert payer_home.balance(payer) == 1_500  # bounced back to the payer
    # A closed owner with nobody to refund: held in suspense, never lost.
    home.close_wallets([payee])
    lost = _credit(payee, 700, 0, b"orphan")
    assert shard.import_credits(home, [lost]).tolist() == [tb.Status.WALLET_CLOSED]
    assert shard.suspense(home) == [lost]
    assert shard.totals(home).suspense_fen == 700
    home.check_invariants()
    issued, redeemed, outstanding, credits_in, credits_out = shards.totals()
    suspense = sum(shard.totals(ledger).suspense_fen for ledger in shards.ledgers)
    # Value created out of thin air by this test's hand-made credits: 1_500 + 1_500 + 700.
    assert credits_in - credits_out == 3_700 == outstanding + suspense - (issued - redeemed)


def test_a_credit_for_an_unknown_owner_bounces_or_waits_in_suspense() -> None:
    # Per credit, not per entry: the others of the same import apply; the unknown owner's value
    # goes back to the payer, or (nobody to refund) into suspense. Nothing is lost.
    _, shards, payer, payee = _two_shards()
    home = shards.home(payee)
    stranger = next(w for w in range(123_000, 124_000) if shards.home(w) is home)
    bounced, orphan = _credit(stranger, 900, payer, b"b"), _credit(stranger, 40, 0, b"o")
    statuses = shard.import_credits(home, [bounced, _credit(payee, 5, payer, b"p"), orphan])
    assert statuses.tolist() == [tb.Status.UNKNOWN_WALLET, tb.Status.OK, tb.Status.UNKNOWN_WALLET]
    assert home.balance(payee) == 5 and shard.suspense(home) == [orphan]
    shards.deliver(random.Random(0), duplicates=0.5)
    assert shards.home(payer).balance(payer) == 900  # the bounce arrived, once
    for ledger in shards.ledgers:
        ledger.check_invariants()
    issued, redeemed, outstanding, credits_in, credits_out = shards.totals()
    suspense = sum(shard.totals(ledger).suspense_fen for ledger in shards.ledgers)
    # Value created by this test's hand-made credits: 900 + 5 + 40.
    assert credits_in - credits_out == 945 == outstanding + suspense - (issued - redeemed)


def test_misrouted_or_bad_credits_are_refused_whole() -> None:
    _, shards, payer, payee = _two_shards()
    home = shards.home(payee)
    with pytest.raises(tb.InvalidArgument, match="lives on vshard"):
        shard.import_credits(home, [_credit(payee, 1, 0), _credit(payer, 1, 0, b"y")])
    with pytest.raises(tb.InvalidArgument, match="zero value"):
        shard.import_credits(home, [_credit(payee, 0, 0)])
    stranger = next(w for w in range(123_000, 124_000) if shards.home(w) is not home)
    with pytest.raises(tb.InvalidArgument, match="lives on vshard"):
        shard.import_credits(home, [_credit(stranger, 1, 0)])  # unknown and misrouted
    assert shard.totals(home).imported_count == 0 and home.balance(payee) == 0
    with pytest.raises(tb.InvalidArgument, match="cannot become"):
        shard.make_shard(home, 3, 0)
    with pytest.raises(tb.InvalidArgument, match="credits are imported by sharded ledgers"):
        shard.import_credits(tb.Ledger(threads=1), [_credit(payee, 1, 0)])


@pytest.mark.parametrize("snapshot", [False, True])
def test_cross_shard_state_survives_reopen(tmp_path: Path, snapshot: bool) -> None:
    keys = tb.Keyring()
    persons = list(range(100, 116))
    dirs = [tmp_path / "a", tmp_path / "b"]
    shards = Shards(2, keys, persons, dirs)
    issue = tb.issue(keys, CENTRAL_BANK, [(op, 100_000) for op in OPERATORS], timestamp_ms=5)
    shards.settle([issue], 5)
    shards.deliver(random.Random(1), duplicates=0.5)
    txs, _ = shards.home(OPERATORS[0]).build_payments(
        keys, [OPERATORS[0]] * 4, persons[:4], [1_000] * 4, 6
    )
    shards.settle(txs, 6)  # leave these credits undelivered in the outbox
    for ledger in shards.ledgers:
        shard.set_epoch(ledger, 3)
        shard.set_epoch(ledger, 3)  # the same epoch again: nothing to log
        with pytest.raises(tb.InvalidArgument, match="stale epoch 2"):
            shard.set_epoch(ledger, 2)
    digests = [ledger.state_digest() for ledger in shards.ledgers]
    totals = [shard.totals(ledger) for ledger in shards.ledgers]
    for ledger in shards.ledgers:
        if snapshot:
            ledger.snapshot()
        ledger.close()
    again = [tb.Ledger.open(d, threads=1) for d in dirs]
    assert [ledger.state_digest() for ledger in again] == digests
    assert [shard.totals(ledger) for ledger in again] == totals
    assert [shard.shard_of(ledger) for ledger in again] == [(2, 0), (2, 1)]
    assert [shard.epoch(ledger) for ledger in again] == [3, 3]
    with pytest.raises(tb.InvalidArgument, match="stale epoch"):
        shard.set_epoch(again[0], 1)
    assert sum(t.outbox_len for t in totals) > 0
    for d, ledger in zip(dirs, again, strict=True):
        ledger.close()
        assert tb.verify_log(d).transactions > 0


def test_batch_time_hint_is_clamped_and_checked() -> None:
    """A submitter's batch-time hint can't push a shard's clock far ahead (every later payment
    would be EXPIRED), can't take it back, and a hint that is not a number refuses the entry."""
    from tongbao.cluster import CLOCK_SKEW_MS_MAX, _batch_time

    ledger = tb.Ledger()
    now_ms = int(time.time() * 1000)
    far = _batch_time(ledger, [{b"ts": str(now_ms * 1000).encode()}])
    assert now_ms <= far <= int(time.time() * 1000) + CLOCK_SKEW_MS_MAX
    assert _batch_time(ledger, [{b"ts": b"5"}, {b"ts": b"7"}]) == 7
    assert now_ms <= _batch_time(ledger, [{}]) <= int(time.time() * 1000)
    for bad in (b"-1", b"1e9", b"99999999999999999999999", b""):
        with pytest.raises(tb.InvalidArgument):
            _batch_time(ledger, [{b"ts": bad}])


@pytest.mark.parametrize("sharded", [False, True])
def test_wallet_administration_is_refused_on_a_sharded_ledger(sharded: bool) -> None:
    """A freeze settled on one shard would not reach the wallet's home shard: sharded ledgers
    answer NOT_AUTHORIZED and change nothing; the same transaction unsharded is OK."""
    keys = tb.Keyring()
    ledger = tb.Ledger(threads=1)
    if sharded:
        shard.make_shard(ledger, 4, 0)
    ledger.open_wallets(keys, [CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, OPERATORS, tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [500], tb.WalletKind.PERSONAL, operator=OPERATORS[0])
    freeze = tb.freeze_wallet(keys, OPERATORS[0], 500, timestamp_ms=1_000)
    status = ledger.settle([freeze], 1_000).statuses[0]
    info = ledger.wallet(500)
    assert info is not None
    if sharded:
        assert status == tb.Status.NOT_AUTHORIZED
        assert info.status == tb.WalletStatus.ACTIVE
    else:
        assert status == tb.Status.OK
        assert info.status == tb.WalletStatus.FROZEN
