"""Every status of ``docs/status-codes.md``, produced through the Python API, and the whole-batch
errors. A rejected transaction must change nothing: balances, tokens, spent and settled memory,
supply, and the state digest except for the receipt chain (which records every batch).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

import tongbao as tb
from model import Model
from tongbao import Status

T0 = 1_700_000_000_000
T1 = T0 + 1_000
HOUR = 3_600_000
U64_MAX = 2**64 - 1

CB, OP, OP2 = 1, 100, 101
ALICE, BOB, CAROL = 1001, 1002, 1003  # CAROL has an SM2 key
STRANGER = 9001  # a key in the keyring, no wallet in the ledger
NOBODY = 424242  # neither
CUSTOMER_OF_OP = 2501  # opened by OP with a signed registration (fixture _customer_of_op)
WALLET_IDS = [CB, OP, OP2, ALICE, BOB, CAROL, CUSTOMER_OF_OP]


@dataclass
class World:
    ledger: tb.Ledger
    keys: tb.Keyring
    payments: list[bytes]  # settled at T0: OP pays ALICE 50,000 and CAROL 20,000

    def token_of(self, wallet: int) -> tuple[bytes, int]:
        (token,) = self.ledger.unspent(wallet)
        return token

    @property
    def spent_token(self) -> bytes:
        """A token the first payment spent (an issue output of OP)."""
        return tb.decode(self.payments[0])["inputs"][0]


@pytest.fixture
def world() -> World:
    ledger = tb.Ledger(threads=1)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP, OP2], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [ALICE, BOB], tb.WalletKind.PERSONAL)
    ledger.open_wallets(keys, [CAROL], tb.WalletKind.PERSONAL, tb.Scheme.SM2)
    keys.generate([STRANGER], tb.Scheme.ED25519, b"stranger")
    issue = tb.issue(keys, CB, [(OP, 1_000_000), (OP2, 500_000)], T0)
    assert ledger.settle([issue], T0).ok
    payments, _ = ledger.build_payments(keys, [OP, OP], [ALICE, CAROL], [50_000, 20_000], T0)
    assert ledger.settle(payments, T0).ok
    return World(ledger, keys, payments)


# -- "changes nothing" ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    wallets: tuple[tb.WalletInfo, ...]
    unspent: tuple[tuple[int, tuple[tuple[bytes, int], ...]], ...]
    supply: tb.Supply
    settled_count: int
    token_count: int
    memory: tuple[tuple[bool, bool, tuple[int, int] | None], ...]  # per probed id
    limits: tb.Limits
    locks: tuple[tb.LockInfo, ...] = ()


def snapshot(ledger: tb.Ledger, probe: list[bytes]) -> Snapshot:
    wallets = []
    for w in WALLET_IDS:
        info = ledger.wallet(w)
        assert info is not None
        wallets.append(info)
    return Snapshot(
        wallets=tuple(wallets),
        unspent=tuple((w, tuple(sorted(ledger.unspent(w)))) for w in WALLET_IDS),
        supply=ledger.supply(),
        settled_count=ledger.settled_count,
        token_count=ledger.token_count,
        memory=tuple((ledger.is_spent(i), ledger.is_settled(i), ledger.token(i)) for i in probe),
        limits=ledger.limits,
        locks=tuple(lk for w in WALLET_IDS for lk in ledger.locks(w)),
    )


def digest_of(snap: Snapshot, receipt_hash: bytes) -> bytes:
    """``state_digest`` of the state in ``snap`` with the receipt chain at ``receipt_hash``."""
    model = Model()
    model.limits_version = snap.limits.version
    model.over_balance_cap = 1 if snap.limits.over_balance_cap == "sweep" else 2
    model.limits_rows = tuple(
        [snap.limits.classes[c].row() for c in (1, 2, 3, 4)] + [snap.limits.sub_wallet.row()]
    )
    for info in snap.wallets:
        model.register(info.wallet_id, info.kind, info.scheme, info.public_key)
        w = model.wallets[info.wallet_id]
        w.wallet_class, w.operator, w.parent = info.wallet_class, info.operator, info.parent
        w.mcc, w.region, w.linked_account = info.mcc, info.region, info.linked_account
        w.status = int(info.status)
        if info.day_out_fen or info.year_out_fen:
            model.counters[info.wallet_id] = (
                info.counter_day,
                info.day_out_fen,
                info.counter_year,
                info.year_out_fen,
            )
    model.unspent = {t: (w, v) for w, tokens in snap.unspent for t, v in tokens}
    for lk in snap.locks:
        model.unspent[lk.token] = (lk.payer, lk.amount_fen)
        model.locks[lk.token] = (
            lk.payer,
            lk.beneficiary,
            lk.releaser,
            lk.deadline_ms,
            lk.deadline_capture_fen,
        )
    model.issued_fen = snap.supply.issued_fen
    model.redeemed_fen = snap.supply.redeemed_fen
    return model.state_digest(receipt_hash)


def ids_in(raw: bytes) -> list[bytes]:
    """The transaction id and input ids of ``raw`` if it decodes (to probe the memory)."""
    try:
        d = tb.decode(raw)
    except tb.MalformedTransaction:
        return []
    return [d["id"], *d["inputs"]]


def settle_rejected(world: World, tx: bytes, status: Status, now: int = T1) -> None:
    """Settle ``[tx]`` alone, expect ``status`` and an untouched state."""
    assert status != Status.OK
    ledger = world.ledger
    # Move the clock first: forgetting expired ids is the passing of time, not the tx's doing.
    ledger.settle([], now)
    probe = ids_in(tx)
    before = snapshot(ledger, probe)
    digest_before = ledger.state_digest()
    # The digest is a function of what the snapshot holds (and the receipt chain).
    assert digest_of(before, ledger.last_receipt_hash) == digest_before

    result = ledger.settle([tx], now)

    assert result.status(0) == status, result.status(0).name
    assert result.receipt.status_counts == {status: 1}
    assert (result.receipt.issued_fen, result.receipt.redeemed_fen) == (0, 0)
    assert result.receipt.value_moved_fen == 0
    after = snapshot(ledger, probe)
    assert after == before
    # Only the receipt chain moved on: the digest is the old state's under the new receipt.
    assert result.receipt.prev_hash != result.receipt.hash == ledger.last_receipt_hash
    assert ledger.state_digest() == digest_of(before, ledger.last_receipt_hash)
    ledger.check_invariants()


def alice_pays_bob(world: World, timestamp_ms: int = T1, expiry_ms: int | None = None) -> bytes:
    token, value = world.token_of(ALICE)
    outputs = [(BOB, 10_000), (ALICE, value - 10_000)]
    return tb.transfer(world.keys, [token], outputs, [ALICE], timestamp_ms, expiry_ms)


def flip_bit(tx: bytes, offset_from_end: int) -> bytes:
    i = len(tx) - offset_from_end
    return tx[:i] + bytes([tx[i] ^ 0x01]) + tx[i + 1 :]


# -- OK ------------------------------------------------------------------------------------------


def test_ok_transfer(world: World) -> None:
    ledger = world.ledger
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(BOB, 10_000), (ALICE, value - 10_000)], [ALICE], T1)
    tx_id = tb.transaction_id(tx)
    supply, settled = ledger.supply(), ledger.settled_count
    result = ledger.settle([tx], T1)
    assert result.status(0) == Status.OK and result.ok
    assert result.receipt.value_moved_fen == 10_000  # paid to Bob; Alice's change excluded
    assert (ledger.balance(ALICE), ledger.balance(BOB)) == (value - 10_000, 10_000)
    assert ledger.unspent(BOB) == [(tb.token_id(tx_id, 0), 10_000)]
    assert ledger.token(tb.token_id(tx_id, 1)) == (ALICE, value - 10_000)
    assert ledger.token(token) is None and ledger.is_spent(token)
    assert ledger.is_settled(tx_id) and ledger.settled_count == settled + 1
    assert ledger.supply() == supply
    ledger.check_invariants()


def test_ok_issue_and_redeem_move_the_supply(world: World) -> None:
    ledger = world.ledger
    before = ledger.supply()
    issue = tb.issue(world.keys, CB, [(OP2, 7_000)], T1)
    res = ledger.settle([issue], T1)
    assert res.status(0) == Status.OK and res.receipt.issued_fen == 7_000
    token = tb.token_id(tb.transaction_id(issue), 0)
    redeem = tb.redeem(world.keys, [token], [(OP2, 2_000)], [OP2], T1)
    res = ledger.settle([redeem], T1)
    assert res.status(0) == Status.OK and res.receipt.redeemed_fen == 5_000
    after = ledger.supply()
    assert after.issued_fen == before.issued_fen + 7_000
    assert after.redeemed_fen == before.redeemed_fen + 5_000
    assert after.outstanding_fen == before.outstanding_fen + 2_000
    assert ledger.balance(OP2) == 500_000 + 2_000
    ledger.check_invariants()


# -- one test per status -------------------------------------------------------------------------


def test_already_settled(world: World) -> None:
    settle_rejected(world, world.payments[0], Status.ALREADY_SETTLED)


def test_already_settled_whatever_the_signatures(world: World) -> None:
    """Same body, other signature section (same id): ALREADY_SETTLED, not BAD_SIGNATURE,
    UNKNOWN_WALLET or INPUT_SPENT."""
    paid = world.payments[0]
    settle_rejected(world, flip_bit(paid, 1), Status.ALREADY_SETTLED)
    settle_rejected(world, world.keys.sign([paid], [[OP, STRANGER]])[0], Status.ALREADY_SETTLED)
    settle_rejected(world, tb.sign(world.keys, paid, []), Status.ALREADY_SETTLED)


def test_already_settled_within_one_batch(world: World) -> None:
    tx = alice_pays_bob(world)
    res = world.ledger.settle([tx, tx, flip_bit(tx, 3)], T1)
    assert res.statuses.tolist() == [Status.OK, Status.ALREADY_SETTLED, Status.ALREADY_SETTLED]
    assert world.ledger.balance(BOB) == 10_000


def test_malformed(world: World) -> None:
    settle_rejected(world, world.payments[0][:-1], Status.MALFORMED)


@pytest.mark.parametrize(
    "make",
    [
        lambda w: b"",
        lambda w: b"\x01",
        lambda w: w.payments[0] + b"\x00",
        lambda w: b"\x03" + w.payments[0][1:],
        lambda w: b"\x02" + w.payments[0][1:],  # a payment kind in the admin version
        lambda w: tb.encode(tb.Kind.ISSUE, [w.spent_token], [(OP, 5)], T1),
        lambda w: tb.encode(tb.Kind.TRANSFER, [], [(OP, 5)], T1),
        lambda w: tb.encode(tb.Kind.REDEEM, [], [], T1),
        lambda w: tb.encode(tb.Kind.TRANSFER, [w.token_of(ALICE)[0]], [], T1),
        lambda w: tb.encode(tb.Kind.ISSUE, [], [], T1),
        lambda w: tb.encode(tb.Kind.ISSUE, [], [(OP, 5)], T1, T1 - 1),
        lambda w: tb.encode(tb.Kind.ISSUE, [], [(OP, 5)], T1, T1 + tb.VALIDITY_MS_MAX + 1),
        lambda w: tb.encode(tb.Kind.ISSUE, [], [(OP, 5)], T1, signatures=[(CB, bytes(64))] * 2),
    ],
    ids=[
        "empty",
        "version-only",
        "trailing-byte",
        "payment-in-version-3",
        "payment-in-version-2",
        "issue-with-inputs",
        "transfer-without-inputs",
        "redeem-without-inputs",
        "transfer-without-outputs",
        "issue-without-outputs",
        "expiry-before-timestamp",
        "window-over-7-days",
        "signer-twice",
    ],
)
def test_malformed_shapes(world: World, make: Callable[[World], bytes]) -> None:
    settle_rejected(world, make(world), Status.MALFORMED)


def test_expired(world: World) -> None:
    tx = alice_pays_bob(world, timestamp_ms=T1 - 2 * HOUR, expiry_ms=T1 - 1)
    settle_rejected(world, tx, Status.EXPIRED)


def test_expiry_is_inclusive(world: World) -> None:
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(BOB, value)], [ALICE], T1 - HOUR, expiry_ms=T1)
    assert world.ledger.settle([tx], T1).status(0) == Status.OK


def test_expired_resubmission_of_a_settled_transaction(world: World) -> None:
    """After its expiry a settled transaction is EXPIRED (check 2 before check 4): never
    applied twice, and the ledger has forgotten it."""
    paid = world.payments[0]
    expiry = tb.decode(paid)["expiry_ms"]
    settle_rejected(world, paid, Status.ALREADY_SETTLED, now=expiry)
    settle_rejected(world, paid, Status.EXPIRED, now=expiry + 1)
    assert not world.ledger.is_settled(tb.transaction_id(paid))


def test_not_yet_valid(world: World) -> None:
    ahead = T1 + tb.CLOCK_SKEW_MS_MAX + 1
    tx = alice_pays_bob(world, timestamp_ms=ahead, expiry_ms=ahead + HOUR)
    settle_rejected(world, tx, Status.NOT_YET_VALID)


def test_clock_skew_edge_is_valid(world: World) -> None:
    ahead = T1 + tb.CLOCK_SKEW_MS_MAX
    tx = alice_pays_bob(world, timestamp_ms=ahead, expiry_ms=ahead + HOUR)
    assert world.ledger.settle([tx], T1).status(0) == Status.OK


def test_duplicate_input(world: World) -> None:
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token, token], [(BOB, 2 * value)], [ALICE], T1)
    settle_rejected(world, tx, Status.DUPLICATE_INPUT)


def test_zero_value_output(world: World) -> None:
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(BOB, value), (ALICE, 0)], [ALICE], T1)
    settle_rejected(world, tx, Status.ZERO_VALUE_OUTPUT)


def test_value_overflow_of_outputs(world: World) -> None:
    token, _ = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(BOB, U64_MAX), (ALICE, 1)], [ALICE], T1)
    settle_rejected(world, tx, Status.VALUE_OVERFLOW)


def test_value_overflow_of_outstanding_supply(world: World) -> None:
    room = U64_MAX - world.ledger.supply().outstanding_fen
    settle_rejected(world, tb.issue(world.keys, CB, [(OP, room + 1)], T1), Status.VALUE_OVERFLOW)
    # Exactly up to u64::MAX is fine.
    res = world.ledger.settle([tb.issue(world.keys, CB, [(OP, room)], T1)], T1)
    assert res.status(0) == Status.OK
    assert world.ledger.supply().outstanding_fen == U64_MAX
    world.ledger.check_invariants()


def test_unknown_wallet_signer(world: World) -> None:
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(BOB, value)], [ALICE, STRANGER], T1)
    settle_rejected(world, tx, Status.UNKNOWN_WALLET)


def test_unknown_wallet_output_owner(world: World) -> None:
    token, value = world.token_of(ALICE)
    tx = tb.transfer(world.keys, [token], [(NOBODY, value)], [ALICE], T1)
    settle_rejected(world, tx, Status.UNKNOWN_WALLET)


@pytest.mark.parametrize("offset_from_end", [1, 20, 33, 64])
def test_bad_signature_ed25519(world: World, offset_from_end: int) -> None:
    settle_rejected(world, flip_bit(alice_pays_bob(world), offset_from_end), Status.BAD_SIGNATURE)


def test_bad_signature_sm2(world: World) -> None:
    token, value = world.token_of(CAROL)
    tx = tb.transfer(world.keys, [token], [(BOB, value)], [CAROL], T1)
    settle_rejected(world, flip_bit(tx, 5), Status.BAD_SIGNATURE)


def test_bad_signature_wrong_key(world: World) -> None:
    """BOB's signature filed under ALICE's wallet id."""
    tx = alice_pays_bob(world)
    bob_sig = tb.sign(world.keys, tx, [BOB])[-64:]
    forged = tx[:-64] + bob_sig
    assert tb.decode(forged)["signatures"] == [(ALICE, bob_sig)]
    settle_rejected(world, forged, Status.BAD_SIGNATURE)


def test_missing_signature_transfer(world: World) -> None:
    settle_rejected(world, tb.sign(world.keys, alice_pays_bob(world), []), Status.MISSING_SIGNATURE)
    # Checked before UNEXPECTED_SIGNER: signed by someone else only.
    settle_rejected(
        world, tb.sign(world.keys, alice_pays_bob(world), [BOB]), Status.MISSING_SIGNATURE
    )


def test_missing_signature_issue(world: World) -> None:
    issue = tb.sign(world.keys, tb.issue(world.keys, CB, [(OP, 5)], T1), [])
    settle_rejected(world, issue, Status.MISSING_SIGNATURE)


def test_unexpected_signer(world: World) -> None:
    tx = tb.sign(world.keys, alice_pays_bob(world), [ALICE, BOB])
    settle_rejected(world, tx, Status.UNEXPECTED_SIGNER)


def test_unexpected_signer_issue(world: World) -> None:
    issue = tb.sign(world.keys, tb.issue(world.keys, CB, [(OP, 5)], T1), [CB, OP])
    settle_rejected(world, issue, Status.UNEXPECTED_SIGNER)


def test_unknown_input(world: World) -> None:
    tx = tb.transfer(world.keys, [bytes(range(32))], [(BOB, 5)], [ALICE], T1)
    settle_rejected(world, tx, Status.UNKNOWN_INPUT)


def test_unknown_input_once_the_spender_expired(world: World) -> None:
    """The spent marker lives until the spender's expiry, then the token is forgotten."""
    spent = world.spent_token
    expiry = tb.decode(world.payments[0])["expiry_ms"]
    assert world.ledger.is_spent(spent)

    def spend(now: int) -> bytes:
        return tb.transfer(world.keys, [spent], [(BOB, 5)], [OP], now)

    settle_rejected(world, spend(expiry), Status.INPUT_SPENT, now=expiry)
    settle_rejected(world, spend(expiry + 1), Status.UNKNOWN_INPUT, now=expiry + 1)
    assert not world.ledger.is_spent(spent)


def test_input_spent(world: World) -> None:
    tx = tb.transfer(world.keys, [world.spent_token], [(BOB, 5)], [OP], T1)
    settle_rejected(world, tx, Status.INPUT_SPENT)


def test_input_spent_within_one_batch(world: World) -> None:
    """Double spend in one batch: the first wins."""
    token, value = world.token_of(ALICE)
    to_bob = tb.transfer(world.keys, [token], [(BOB, value)], [ALICE], T1)
    to_carol = tb.transfer(world.keys, [token], [(CAROL, value)], [ALICE], T1)
    res = world.ledger.settle([to_bob, to_carol], T1)
    assert res.statuses.tolist() == [Status.OK, Status.INPUT_SPENT]
    assert (world.ledger.balance(BOB), world.ledger.balance(CAROL)) == (value, 20_000)


def test_unknown_input_checked_before_input_spent(world: World) -> None:
    tx = tb.transfer(world.keys, [world.spent_token, bytes(32)], [(BOB, 5)], [OP], T1)
    settle_rejected(world, tx, Status.UNKNOWN_INPUT)


def test_value_mismatch_transfer(world: World) -> None:
    token, value = world.token_of(ALICE)
    for amount in (value - 1, value + 1):
        tx = tb.transfer(world.keys, [token], [(BOB, amount)], [ALICE], T1)
        settle_rejected(world, tx, Status.VALUE_MISMATCH)


def test_value_mismatch_redeem(world: World) -> None:
    """A redemption must destroy something: change >= inputs is refused."""
    (token, value), *_ = world.ledger.unspent(OP2)
    for change in (value, value + 1):
        tx = tb.redeem(world.keys, [token], [(OP2, change)], [OP2], T1)
        settle_rejected(world, tx, Status.VALUE_MISMATCH)


@pytest.mark.parametrize(
    "make",
    [
        lambda w: tb.issue(w.keys, OP, [(OP2, 5)], T1),
        lambda w: tb.issue(w.keys, CB, [(OP, 5), (ALICE, 5)], T1),
        lambda w: tb.redeem(w.keys, [w.token_of(ALICE)[0]], [], [ALICE], T1),
        lambda w: tb.redeem(w.keys, [w.ledger.unspent(OP2)[0][0]], [(OP, 1)], [OP2], T1),
        # Wallet administration: OP2 acts on a wallet OP operates; an operator on an operator.
        lambda w: tb.freeze_wallet(w.keys, OP2, CUSTOMER_OF_OP, timestamp_ms=T1),
        lambda w: tb.set_wallet_class(w.keys, OP, OP2, 1, timestamp_ms=T1),
    ],
    ids=[
        "issue-by-operator",
        "issue-to-personal",
        "redeem-by-personal",
        "redeem-change-elsewhere",
        "freeze-by-another-operator",
        "operator-changed-by-operator",
    ],
)
def test_not_authorized(world: World, make: Callable[[World], bytes]) -> None:
    settle_rejected(world, make(world), Status.NOT_AUTHORIZED)


# -- wallet rules (docs/wallet-rules.md) ---------------------------------------------------------

SHANGHAI_MIDNIGHT = 1_700_064_000_000  # 2023-11-16 00:00 +08:00, the first after T0
SHANGHAI_NEW_YEAR = 1_704_038_400_000  # 2024-01-01 00:00 +08:00


def tight_limits(**class4: int) -> tb.Limits:
    """The shipped limits with class 4's caps replaced."""
    return tb.parse_limits(
        {
            "version": "test-tight",
            "over_balance_cap": "sweep",
            "class": {"1": {}, "2": {}, "3": {}, "4": class4},
        }
    )


def alice_pays(world: World, amount: int, now: int, payee: int = BOB) -> bytes:
    txs, _ = world.ledger.build_payments(world.keys, [ALICE], [payee], [amount], now)
    return txs[0]


def test_wallet_frozen(world: World) -> None:
    world.ledger.freeze([ALICE])
    settle_rejected(world, alice_pays(world, 1_000, T1), Status.WALLET_FROZEN)
    world.ledger.unfreeze([ALICE])
    assert world.ledger.settle([alice_pays(world, 1_000, T1)], T1).ok


def test_frozen_wallet_still_receives(world: World) -> None:
    world.ledger.freeze([BOB])
    assert world.ledger.settle([alice_pays(world, 1_000, T1)], T1).ok
    assert world.ledger.balance(BOB) == 1_000


def test_wallet_closed(world: World) -> None:
    world.ledger.close_wallets([BOB])
    assert world.ledger.wallet(BOB).status == tb.WalletStatus.CLOSED  # type: ignore[union-attr]
    settle_rejected(world, alice_pays(world, 1_000, T1), Status.WALLET_CLOSED)
    with pytest.raises(tb.InvalidArgument, match="balance"):
        world.ledger.close_wallets([ALICE])  # 50,000 fen left
    with pytest.raises(tb.InvalidArgument, match="closed"):
        world.ledger.unfreeze([BOB])


def test_limit_payment(world: World) -> None:
    world.ledger.set_limits(tight_limits(payment_cap_fen=10_000))
    world.ledger.set_class([ALICE], 4)
    settle_rejected(world, alice_pays(world, 10_001, T1), Status.LIMIT_PAYMENT)
    assert world.ledger.settle([alice_pays(world, 10_000, T1)], T1).ok


def test_limit_daily_resets_at_shanghai_midnight(world: World) -> None:
    world.ledger.set_limits(tight_limits(payment_cap_fen=20_000, daily_cap_fen=30_000))
    world.ledger.set_class([ALICE], 4)
    assert world.ledger.settle([alice_pays(world, 20_000, T1)], T1).ok
    settle_rejected(world, alice_pays(world, 10_001, T1), Status.LIMIT_DAILY)
    just_before = SHANGHAI_MIDNIGHT - 1
    settle_rejected(world, alice_pays(world, 10_001, just_before), Status.LIMIT_DAILY, just_before)
    # A batch that straddles midnight is judged by its own timestamp: after midnight, a new day.
    assert world.ledger.settle([alice_pays(world, 20_000, SHANGHAI_MIDNIGHT)], SHANGHAI_MIDNIGHT).ok
    info = world.ledger.wallet(ALICE)
    assert info is not None and info.day_out_fen == 20_000 and info.year_out_fen == 40_000


def test_limit_annual_resets_at_shanghai_new_year(world: World) -> None:
    world.ledger.set_limits(tight_limits(daily_cap_fen=20_000, annual_cap_fen=25_000))
    world.ledger.set_class([ALICE], 4)
    assert world.ledger.settle([alice_pays(world, 20_000, T1)], T1).ok
    day2 = SHANGHAI_MIDNIGHT + HOUR
    settle_rejected(world, alice_pays(world, 5_001, day2), Status.LIMIT_ANNUAL, day2)
    new_year = SHANGHAI_NEW_YEAR
    assert world.ledger.settle([alice_pays(world, 20_000, new_year)], new_year).ok


def test_limit_balance_without_linked_account(world: World) -> None:
    world.ledger.set_limits(tight_limits(balance_cap_fen=10_000))
    world.ledger.set_class([BOB], 4)
    settle_rejected(world, alice_pays(world, 10_001, T1), Status.LIMIT_BALANCE)
    assert world.ledger.settle([alice_pays(world, 10_000, T1)], T1).ok


def test_over_cap_value_is_swept_to_the_operator(world: World) -> None:
    ledger = world.ledger
    ledger.set_limits(tight_limits(balance_cap_fen=10_000))
    ledger.open_wallets(
        world.keys,
        [2001],
        tb.WalletKind.PERSONAL,
        wallet_class=4,
        operator=OP2,
        linked_account=True,
    )
    supply, op2 = ledger.supply(), ledger.balance(OP2)
    result = ledger.settle([alice_pays(world, 25_000, T1, payee=2001)], T1)
    assert result.ok
    assert result.receipt.swept_fen == 15_000
    assert (ledger.balance(2001), ledger.balance(OP2)) == (10_000, op2 + 15_000)
    assert ledger.supply() == supply  # a sweep is a redemption to deposits, not a burn
    ledger.check_invariants()


# -- wallet administration (kinds 4-8) -----------------------------------------------------------


@pytest.fixture(autouse=True)
def _customer_of_op(world: World) -> None:
    """Every test's world also has a class-4 wallet that OP opened by a signed transaction."""
    key = world.keys.generate([CUSTOMER_OF_OP], tb.Scheme.ED25519, b"customer")[0]
    tx = tb.register_wallet(
        world.keys, OP, CUSTOMER_OF_OP, tb.WalletKind.PERSONAL, key, timestamp_ms=T0, wallet_class=4
    )
    assert world.ledger.settle([tx], T0).ok


def test_wallet_exists(world: World) -> None:
    key = world.keys.public_key(ALICE)
    tx = tb.register_wallet(world.keys, OP, ALICE, tb.WalletKind.PERSONAL, key, timestamp_ms=T1)
    settle_rejected(world, tx, Status.WALLET_EXISTS)


@pytest.mark.parametrize(
    ("kind", "attrs"),
    [
        (tb.WalletKind.PERSONAL, {"parent": NOBODY}),  # unknown parent
        (tb.WalletKind.MERCHANT, {"parent": CUSTOMER_OF_OP}),  # merchants have no parent
        (tb.WalletKind.PERSONAL, {"parent": ALICE}),  # a parent at another operator (none)
        (tb.WalletKind.OPERATOR, {"wallet_class": 2}),  # operators are class 1
    ],
    ids=["unknown-parent", "merchant-sub-wallet", "parent-elsewhere", "operator-class-2"],
)
def test_invalid_wallet(world: World, kind: tb.WalletKind, attrs: dict[str, int]) -> None:
    key = world.keys.generate([3001], tb.Scheme.ED25519, b"new")[0]
    signer = CB if kind == tb.WalletKind.OPERATOR else OP
    tx = tb.register_wallet(world.keys, signer, 3001, kind, key, timestamp_ms=T1, **attrs)
    settle_rejected(world, tx, Status.INVALID_WALLET)
    assert world.ledger.wallet(3001) is None


def test_balance_not_zero(world: World) -> None:
    ledger = world.ledger
    txs, _ = ledger.build_payments(world.keys, [OP], [CUSTOMER_OF_OP], [1_000], T1)
    assert ledger.settle(txs, T1).ok
    close = tb.close_wallet(world.keys, OP, CUSTOMER_OF_OP, timestamp_ms=T1)
    settle_rejected(world, close, Status.BALANCE_NOT_ZERO)
    # Redeemed to deposits (paid back to the operator), it closes.
    back, _ = ledger.build_payments(world.keys, [CUSTOMER_OF_OP], [OP], [1_000], T1)
    assert ledger.settle(back, T1).ok
    assert ledger.settle([close], T1).ok
    assert ledger.wallet(CUSTOMER_OF_OP).status == tb.WalletStatus.CLOSED  # type: ignore[union-attr]


def test_admin_transactions_by_the_operator(world: World) -> None:
    """Upgrade, freeze (then the wallet cannot pay), unfreeze, all signed by OP; a resubmission
    is ALREADY_SETTLED; the central bank signs for operators."""
    ledger, keys = world.ledger, world.keys
    txs, _ = ledger.build_payments(keys, [OP], [CUSTOMER_OF_OP], [5_000], T1)
    upgrade = tb.set_wallet_class(keys, OP, CUSTOMER_OF_OP, 2, timestamp_ms=T1)
    freeze = tb.freeze_wallet(keys, OP, CUSTOMER_OF_OP, timestamp_ms=T1)
    assert ledger.settle([*txs, upgrade, freeze], T1).ok
    info = ledger.wallet(CUSTOMER_OF_OP)
    assert info is not None and (info.wallet_class, info.status) == (2, tb.WalletStatus.FROZEN)
    pay, _ = ledger.build_payments(keys, [CUSTOMER_OF_OP], [BOB], [100], T1)
    settle_rejected(world, pay[0], Status.WALLET_FROZEN)
    settle_rejected(world, freeze, Status.ALREADY_SETTLED)
    unfreeze = tb.unfreeze_wallet(keys, OP, CUSTOMER_OF_OP, timestamp_ms=T1)
    assert ledger.settle([unfreeze, pay[0]], T1).ok
    assert ledger.balance(BOB) == 100
    freeze_op = tb.freeze_wallet(keys, CB, OP2, timestamp_ms=T1)
    assert ledger.settle([freeze_op], T1).ok
    assert ledger.wallet(OP2).status == tb.WalletStatus.FROZEN  # type: ignore[union-attr]


def test_malformed_registration_names_the_field(world: World) -> None:
    key = bytearray(world.keys.public_key(ALICE))
    with pytest.raises(tb.MalformedTransaction) as info:
        tb.register_wallet(
            world.keys, OP, 3002, tb.WalletKind.PERSONAL, bytes(key[:31]), timestamp_ms=T1
        )
    assert info.value.field == "registration.key_len"
    good = tb.register_wallet(
        world.keys, OP, 3002, tb.WalletKind.PERSONAL, bytes(key), timestamp_ms=T1
    )
    # The key is the last 32 bytes of the body before the reference length; make it off-curve
    # or non-canonical by setting it to all 0xff.
    body_end = len(good) - 1 - 72  # one signature, empty reference
    bad = good[: body_end - 1 - 32] + b"\xff" * 32 + good[body_end - 1 :]
    with pytest.raises(tb.MalformedTransaction) as info:
        tb.decode(bad)
    assert info.value.field == "registration.key"
    settle_rejected(world, bad, Status.MALFORMED)


# -- locks (docs/locks.md) -----------------------------------------------------------------------

LOCKED_FEN, DEADLINE_CAPTURE_FEN = 5_000, 1_000
DEADLINE = T1 + HOUR


def locked(world: World, at: int = T0) -> bytes:
    """ALICE locks 5,000 fen for BOB, released by CAROL, deadline in an hour; its token."""
    tx = world.ledger.build_lock(
        world.keys, ALICE, LOCKED_FEN, BOB, CAROL, DEADLINE, DEADLINE_CAPTURE_FEN, at
    )
    assert world.ledger.settle([tx], at).ok
    return tb.lock_token_id(tx)


def test_input_locked(world: World) -> None:
    token = locked(world)
    spend = tb.transfer(world.keys, [token], [(BOB, LOCKED_FEN)], [ALICE], T1)
    settle_rejected(world, spend, Status.INPUT_LOCKED)
    relock = tb.lock(world.keys, ALICE, [token], LOCKED_FEN, BOB, BOB, DEADLINE, 0, T1)
    settle_rejected(world, relock, Status.INPUT_LOCKED)
    # The free change stays spendable, and so does the lock through a capture.
    assert world.ledger.available_fen(ALICE) == 50_000 - LOCKED_FEN


def test_not_locked(world: World) -> None:
    token = locked(world)
    (free, _) = world.ledger.unspent(ALICE)[0]
    capture = tb.capture(world.keys, CAROL, free, ALICE, 1, False, T1)
    settle_rejected(world, capture, Status.NOT_LOCKED)
    wrong_payer = tb.capture(world.keys, CAROL, token, BOB, 1, False, T1)
    settle_rejected(world, wrong_payer, Status.NOT_LOCKED)
    settle_rejected(world, tb.release(world.keys, CAROL, free, ALICE, T1), Status.NOT_LOCKED)


def test_capture_exceeds_lock(world: World) -> None:
    token = locked(world)
    over = tb.capture(world.keys, CAROL, token, ALICE, LOCKED_FEN + 1, False, T1)
    settle_rejected(world, over, Status.CAPTURE_EXCEEDS_LOCK)
    exact = tb.capture(world.keys, CAROL, token, ALICE, LOCKED_FEN, False, T1)
    assert world.ledger.settle([exact], T1).ok
    assert world.ledger.balance(BOB) == LOCKED_FEN


def test_lock_deadline_passed(world: World) -> None:
    token = locked(world)
    late = tb.capture(world.keys, CAROL, token, ALICE, 1, False, DEADLINE)
    # In the batch at the deadline the lock still holds; one ms later its deadline action ran
    # (BOB got the deadline capture, ALICE the rest) and a capture or release is too late.
    assert world.ledger.lock(token) is not None
    settle_rejected(world, late, Status.LOCK_DEADLINE_PASSED, now=DEADLINE + 1)
    assert world.ledger.balance(BOB) == DEADLINE_CAPTURE_FEN
    release = tb.release(world.keys, BOB, token, ALICE, DEADLINE)
    settle_rejected(world, release, Status.LOCK_DEADLINE_PASSED, now=DEADLINE + 2)


def test_lock_deadline_passed_within_the_locking_batch(world: World) -> None:
    lock = tb.lock(world.keys, ALICE, [world.token_of(ALICE)[0]], 50_000, BOB, CAROL, T1, 0, T1)
    capture = tb.capture(world.keys, CAROL, tb.lock_token_id(lock), ALICE, 1, False, T1)
    result = world.ledger.settle([lock, capture], T1 + 1)
    assert result.statuses.tolist() == [Status.OK, Status.LOCK_DEADLINE_PASSED]
    world.ledger.settle([], T1 + 2)  # the deadline action: all back to ALICE
    assert (world.ledger.balance(ALICE), world.ledger.held_fen(ALICE)) == (50_000, 0)


def test_not_releaser(world: World) -> None:
    token = locked(world)
    for signer in (ALICE, BOB):  # the payer, and the beneficiary (who may only release)
        capture = tb.capture(world.keys, signer, token, ALICE, 1, False, T1)
        settle_rejected(world, capture, Status.NOT_RELEASER)
    settle_rejected(world, tb.release(world.keys, ALICE, token, ALICE, T1), Status.NOT_RELEASER)
    # The beneficiary may release (give the money back).
    assert world.ledger.settle([tb.release(world.keys, BOB, token, ALICE, T1)], T1).ok
    assert (world.ledger.balance(ALICE), world.ledger.held_fen(ALICE)) == (50_000, 0)


def test_lock_statuses_of_the_shared_checks(world: World) -> None:
    token = locked(world)
    capture = tb.capture(world.keys, CAROL, token, ALICE, 100, False, T1)
    assert world.ledger.settle([capture], T1).ok
    settle_rejected(world, capture, Status.ALREADY_SETTLED)
    other = tb.capture(world.keys, CAROL, token, ALICE, 99, False, T1)
    settle_rejected(world, other, Status.INPUT_SPENT)
    settle_rejected(
        world, tb.capture(world.keys, CAROL, bytes(32), ALICE, 1, False, T1), Status.UNKNOWN_INPUT
    )
    fresh = locked(world, at=T1)
    body = tb.to_json(tb.capture(world.keys, CAROL, fresh, ALICE, 100, False, T1))
    body["signatures"] = []
    settle_rejected(world, tb.from_json(body), Status.MISSING_SIGNATURE)
    two = tb.sign(world.keys, tb.from_json(body), [CAROL, BOB])
    settle_rejected(world, two, Status.UNEXPECTED_SIGNER)
    free, value = world.ledger.unspent(ALICE)[0]
    stranger = tb.lock(world.keys, ALICE, [free], value, NOBODY, BOB, DEADLINE, 0, T1)
    settle_rejected(world, stranger, Status.UNKNOWN_WALLET)
    mismatch = tb.lock(world.keys, ALICE, [free], value - 1, BOB, BOB, DEADLINE, 0, T1)
    settle_rejected(world, mismatch, Status.VALUE_MISMATCH)
    by_bob = tb.lock(world.keys, BOB, [free], value, BOB, BOB, DEADLINE, 0, T1)
    settle_rejected(world, by_bob, Status.MISSING_SIGNATURE)
    body = tb.to_json(tb.lock(world.keys, ALICE, [free], value, BOB, BOB, DEADLINE, 0, T1))
    body["outputs"][0]["owner"] = BOB  # the locked value must stay the payer's
    signed = tb.sign(world.keys, tb.from_json(body), [ALICE])
    settle_rejected(world, signed, Status.NOT_AUTHORIZED)


STATUS_TESTS = {
    Status.OK: test_ok_transfer,
    Status.ALREADY_SETTLED: test_already_settled,
    Status.MALFORMED: test_malformed,
    Status.EXPIRED: test_expired,
    Status.NOT_YET_VALID: test_not_yet_valid,
    Status.DUPLICATE_INPUT: test_duplicate_input,
    Status.ZERO_VALUE_OUTPUT: test_zero_value_output,
    Status.VALUE_OVERFLOW: test_value_overflow_of_outputs,
    Status.UNKNOWN_WALLET: test_unknown_wallet_signer,
    Status.BAD_SIGNATURE: test_bad_signature_ed25519,
    Status.MISSING_SIGNATURE: test_missing_signature_transfer,
    Status.UNEXPECTED_SIGNER: test_unexpected_signer,
    Status.UNKNOWN_INPUT: test_unknown_input,
    Status.INPUT_SPENT: test_input_spent,
    Status.VALUE_MISMATCH: test_value_mismatch_transfer,
    Status.NOT_AUTHORIZED: test_not_authorized,
    Status.WALLET_FROZEN: test_wallet_frozen,
    Status.WALLET_CLOSED: test_wallet_closed,
    Status.LIMIT_PAYMENT: test_limit_payment,
    Status.LIMIT_DAILY: test_limit_daily_resets_at_shanghai_midnight,
    Status.LIMIT_ANNUAL: test_limit_annual_resets_at_shanghai_new_year,
    Status.LIMIT_BALANCE: test_limit_balance_without_linked_account,
    Status.WALLET_EXISTS: test_wallet_exists,
    Status.INVALID_WALLET: test_invalid_wallet,
    Status.BALANCE_NOT_ZERO: test_balance_not_zero,
    Status.INPUT_LOCKED: test_input_locked,
    Status.NOT_LOCKED: test_not_locked,
    Status.CAPTURE_EXCEEDS_LOCK: test_capture_exceeds_lock,
    Status.LOCK_DEADLINE_PASSED: test_lock_deadline_passed,
    Status.NOT_RELEASER: test_not_releaser,
}


def test_every_status_has_a_test() -> None:
    assert set(STATUS_TESTS) == set(Status)


def test_status_names_match_the_core() -> None:
    assert [s.name for s in Status] == list(tb._core.STATUS_NAMES)
    assert [s.value for s in Status] == list(range(len(tb._core.STATUS_NAMES)))


# -- whole-batch errors --------------------------------------------------------------------------


def assert_refused(world: World, call: Callable[[], object], error: type[Exception]) -> None:
    ledger = world.ledger
    digest, seq, receipt = ledger.state_digest(), ledger.batch_seq, ledger.last_receipt_hash
    with pytest.raises(error):
        call()
    assert (ledger.state_digest(), ledger.batch_seq, ledger.last_receipt_hash) == (
        digest,
        seq,
        receipt,
    )


def test_batch_timestamp_going_backwards(world: World) -> None:
    tx = alice_pays_bob(world)
    assert_refused(world, lambda: world.ledger.settle([tx], T0 - 1), tb.BatchRejected)
    assert world.ledger.balance(BOB) == 0
    # An equal timestamp is fine, and the refused transaction was not applied.
    assert world.ledger.settle([tx], T0).status(0) == Status.OK
    assert world.ledger.settle([], T1).receipt.tx_count == 0
    assert_refused(world, lambda: world.ledger.settle([], T1 - 1), tb.BatchRejected)


def test_batch_too_large(world: World) -> None:
    big = [b""] * (tb.BATCH_TX_COUNT_MAX + 1)
    assert_refused(world, lambda: world.ledger.settle(big, T1), tb.BatchRejected)


def test_broken_framed_blob(world: World) -> None:
    tx = alice_pays_bob(world)
    blob = tb.frame_batch([b"garbage", tx])
    for broken, field in [
        (blob[:-1], "batch.transaction"),
        (blob + b"\x00", "batch"),
        (blob[:3], "batch.count"),
        (struct.pack("<I", 3) + blob[4:], "batch.length"),
    ]:
        assert_refused(world, lambda b=broken: world.ledger.settle(b, T1), tb.MalformedTransaction)
        with pytest.raises(tb.MalformedTransaction) as info:
            tb.unframe_batch(broken)
        assert info.value.field == field
    # The intact blob settles; its unreadable transaction is a status, not an error.
    res = world.ledger.settle(blob, T1)
    assert res.statuses.tolist() == [Status.MALFORMED, Status.OK]


def test_batch_items_must_be_bytes(world: World) -> None:
    tx = alice_pays_bob(world)
    for bad in ([tx, "text"], [tx, bytearray(tx)], [tx, None], [memoryview(tx)]):
        assert_refused(world, lambda b=bad: world.ledger.settle(b, T1), TypeError)
    assert_refused(world, lambda: world.ledger.settle(42, T1), TypeError)  # type: ignore[arg-type]
    assert world.ledger.settle([tx], T1).status(0) == Status.OK


# -- decode errors name the field and the byte ----------------------------------------------------


def _transfer(world: World) -> bytes:
    token, _ = world.token_of(ALICE)
    return tb.transfer(world.keys, [token], [(BOB, 5)], [ALICE], T1, reference=b"ref")


# transfer layout: header 18 | n_inputs 2 | input 32 | n_outputs 2 | output 17 | ref_len 1 |
# ref 3 | n_sigs 1 | signer 8 | signature 64  (body = 75 bytes, total 148)
BODY = 18 + 2 + 32 + 2 + 17 + 1 + 3


@pytest.mark.parametrize(
    ("mutate", "field", "offset"),
    [
        (lambda t: b"", "version", 0),
        (lambda t: t[:1], "kind", 1),
        (lambda t: t[:5], "timestamp_ms", 2),
        (lambda t: t[:30], "inputs", 20),
        (lambda t: t[:60], "outputs.owner", 54),
        (lambda t: t[: BODY + 1 + 8 + 10], "signatures.signature", BODY + 1 + 8),
        (lambda t: b"\xf7" + t[1:], "version", 0),
        (lambda t: b"\x02" + t[1:], "kind", 1),
        (lambda t: t[:1] + b"\x04" + t[2:], "kind", 1),
        (lambda t: t + b"\x00\x00", "transaction", BODY + 1 + 72),
        (lambda t: t[:70] + b"\x01" + t[71:], "outputs.condition", 70),
        (lambda t: t[:10] + struct.pack("<Q", 0) + t[18:], "expiry_ms", 10),
        (lambda t: t[:18] + struct.pack("<H", 257) + t[20:], "n_inputs", 18),
        (lambda t: t[:71] + bytes([141]) + t[72:], "reference_len", 71),
        (lambda t: t[:BODY] + b"\x41" + t[BODY + 1 :], "n_signatures", BODY),
        (lambda t: t[:BODY] + b"\x02" + t[BODY + 1 :] + t[BODY + 1 :], "signatures.signer", 148),
        (lambda t: t[:1] + b"\x01" + t[2:], "n_inputs", 18),  # an issue with an input
        (lambda t: t + bytes(tb.TX_BYTES_MAX), "transaction", 0),
    ],
    ids=[
        "empty",
        "truncated-kind",
        "truncated-timestamp",
        "truncated-input",
        "truncated-output",
        "truncated-signature",
        "bad-version",
        "payment-in-version-2",
        "bad-kind",
        "trailing-bytes",
        "condition-tag",
        "expiry-before-timestamp",
        "too-many-inputs",
        "reference-too-long",
        "too-many-signatures",
        "signer-twice",
        "issue-with-input",
        "too-long",
    ],
)
def test_decode_names_field_and_offset(
    world: World, mutate: Callable[[bytes], bytes], field: str, offset: int
) -> None:
    tx = _transfer(world)
    assert len(tx) == BODY + 1 + 72
    assert tb.decode(tx)["reference"] == b"ref"
    with pytest.raises(tb.MalformedTransaction) as info:
        tb.decode(mutate(tx))
    assert (info.value.field, info.value.offset) == (field, offset)
    assert isinstance(info.value, ValueError) and isinstance(info.value, tb.TongbaoError)


def test_annual_counter_rolls_over_exactly_at_new_year(world: World) -> None:
    world.ledger.set_limits(tight_limits(daily_cap_fen=20_000, annual_cap_fen=25_000))
    world.ledger.set_class([ALICE], 4)
    day_before = SHANGHAI_NEW_YEAR - 25 * HOUR  # 2023-12-30, so the daily cap is fresh below
    assert world.ledger.settle([alice_pays(world, 20_000, day_before)], day_before).ok
    just_before = SHANGHAI_NEW_YEAR - 1
    settle_rejected(world, alice_pays(world, 5_001, just_before), Status.LIMIT_ANNUAL, just_before)
    assert world.ledger.settle([alice_pays(world, 20_000, SHANGHAI_NEW_YEAR)], SHANGHAI_NEW_YEAR).ok


def test_closed_operator_receives_no_issue(
    world: World,
) -> None:
    ledger = world.ledger
    ledger.open_wallets(world.keys, [102], tb.WalletKind.OPERATOR)
    ledger.close_wallets([102])
    supply, tokens = ledger.supply(), ledger.token_count
    result = ledger.settle([tb.issue(world.keys, CB, [(102, 5_000)], T1)], T1)
    assert result.status(0) == Status.WALLET_CLOSED
    assert (ledger.balance(102), ledger.supply(), ledger.token_count) == (0, supply, tokens)


def test_frozen_central_bank_cannot_issue(world: World) -> None:
    world.ledger.freeze([CB])
    settle_rejected(world, tb.issue(world.keys, CB, [(OP, 5_000)], T1), Status.WALLET_FROZEN)
