"""``Ledger.build_payments`` and the balance cap: a payee never spends, later in the same batch,
a receipt that the engine sweeps (over the cap) or refuses (``LIMIT_BALANCE``), so no built
transaction fails with ``UNKNOWN_INPUT`` / ``INPUT_SPENT`` and supply is conserved."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import tongbao as tb

CB, OP, ALICE, BOB = 1, 10, 100, 101
CAP4_FEN: int = tb.load_limits().classes[4].balance_cap_fen or 0
assert CAP4_FEN > 0


def ledger_with(alice_fen: int, *, linked: bool) -> tuple[tb.Ledger, tb.Keyring]:
    """Default limits; operator OP holds two tokens; ALICE (class 4) holds ``alice_fen``."""
    ledger = tb.Ledger()
    keys = tb.Keyring()
    ledger.set_limits(tb.load_limits())
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(
        keys, [ALICE], tb.WalletKind.PERSONAL, wallet_class=4, operator=OP, linked_account=linked
    )
    ledger.open_wallets(keys, [BOB], tb.WalletKind.PERSONAL, wallet_class=1, operator=OP)
    assert ledger.settle([tb.issue(keys, CB, [(OP, 5_000_000)] * 2, timestamp_ms=1)], 1).ok
    assert ledger.settle(ledger.build_payments(keys, [OP], [ALICE], [alice_fen], 2)[0], 2).ok
    return ledger, keys


@pytest.mark.parametrize(
    ("alice_fen", "swept_fen"),
    [(CAP4_FEN, 200_000), (CAP4_FEN - 100_000, 100_000)],
    ids=["fully-swept", "partly-swept"],
)
def test_a_swept_receipt_is_not_spent_in_the_same_batch(alice_fen: int, swept_fen: int) -> None:
    """Regression (pilot simulator): ALICE at or near her cap receives 200_000 fen, which is
    swept in full or in part to her operator, then pays BOB 150_000 in the same batch. The
    builder used to take the 200_000 receipt as input (UNKNOWN_INPUT when fully swept, a value
    mismatch when partly swept)."""
    ledger, keys = ledger_with(alice_fen, linked=True)
    txs, skipped = ledger.build_payments(keys, [OP, ALICE], [ALICE, BOB], [200_000, 150_000], 3)
    assert skipped == []
    settlement = ledger.settle(txs, 3)
    assert settlement.statuses.tolist() == [tb.Status.OK, tb.Status.OK]
    assert settlement.receipt.swept_fen == swept_fen
    assert ledger.balance(BOB) == 150_000
    assert ledger.balance(ALICE) == alice_fen + 200_000 - swept_fen - 150_000
    ledger.check_invariants()


def test_a_refused_receipt_is_not_spent_and_its_payer_change_is_not_chained() -> None:
    """ALICE has no linked account: the operator's 100_000 to her gets LIMIT_BALANCE. Neither
    her later payment nor the operator's may build on that transaction's outputs, and its
    inputs are not offered to a later payment either (they stay the payer's if it fails)."""
    ledger, keys = ledger_with(CAP4_FEN - 50_000, linked=False)
    txs, skipped = ledger.build_payments(
        keys, [OP, ALICE, OP], [ALICE, BOB, BOB], [100_000, 60_000, 70_000], 3
    )
    assert skipped == []
    statuses = ledger.settle(txs, 3).statuses.tolist()
    assert statuses == [tb.Status.LIMIT_BALANCE, tb.Status.OK, tb.Status.OK]
    assert ledger.balance(BOB) == 130_000
    assert ledger.balance(ALICE) == CAP4_FEN - 50_000 - 60_000
    ledger.check_invariants()


def test_a_payment_that_may_be_refused_locks_its_inputs_and_outputs() -> None:
    """ALICE spends her only token first, so when the operator then pays her 100_000 the builder
    cannot tell whether she is still over the cap (it is refused only if her payment fails):
    the operator's change and ALICE's receipt are not chained, and the operator's next payment
    is funded from its other token. Here everything settles."""
    ledger, keys = ledger_with(CAP4_FEN - 50_000, linked=False)
    txs, skipped = ledger.build_payments(
        keys, [ALICE, OP, OP, ALICE], [BOB, ALICE, BOB, BOB], [60_000, 100_000, 70_000, 100], 3
    )
    assert skipped == []
    assert ledger.settle(txs, 3).ok
    assert ledger.balance(BOB) == 130_100
    assert ledger.balance(ALICE) == CAP4_FEN - 50_000 - 60_000 + 100_000 - 100
    ledger.check_invariants()


def test_an_unswept_receipt_still_chains() -> None:
    """Far under the cap nothing changes: BOB (class 1, no cap) spends what ALICE just paid
    him, because it is his only token."""
    ledger, keys = ledger_with(300_000, linked=True)
    txs, _ = ledger.build_payments(keys, [ALICE, BOB], [BOB, ALICE], [100_000, 40_000], 3)
    assert ledger.settle(txs, 3).ok
    assert (ledger.balance(ALICE), ledger.balance(BOB)) == (240_000, 60_000)


# -- property --------------------------------------------------------------------------------

PERSONS = list(range(100, 106))
#: Balance caps only (no outflow caps), so the balance cap is the only rule that can refuse.
CAPS_FEN = {2: 50_000, 3: 20_000, 4: 10_000}


def limits(over: str) -> tb.Limits:
    return tb.parse_limits(
        {
            "version": f"caps-{over}",
            "over_balance_cap": over,
            "class": {
                "1": {},
                **{str(c): {"balance_cap_fen": cap} for c, cap in CAPS_FEN.items()},
            },
        }
    )


wallets_st = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.booleans(),
        st.integers(0, 12_000) | st.sampled_from([5_000, 9_000, 10_000, 19_000]),
    ),
    min_size=len(PERSONS),
    max_size=len(PERSONS),
)
#: Half the payments are the operator's (it has the money), half go to persons near their caps.
payments_st = st.lists(
    st.tuples(
        st.one_of(st.just(OP), st.sampled_from(PERSONS)),
        st.one_of(st.sampled_from(PERSONS), st.sampled_from([OP, *PERSONS])),
        st.integers(1, 15_000) | st.sampled_from([3_000, 6_000, 9_000, 12_000]),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(over=st.sampled_from(["sweep", "reject"]), wallets=wallets_st, payments=payments_st)
def test_built_batches_never_lose_an_input_and_conserve_supply(
    over: str, wallets: list[tuple[int, bool, int]], payments: list[tuple[int, int, int]]
) -> None:
    ledger = tb.Ledger()
    keys = tb.Keyring()
    ledger.set_limits(limits(over))
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    for w, (wallet_class, linked, _) in zip(PERSONS, wallets, strict=True):
        ledger.open_wallets(
            keys,
            [w],
            tb.WalletKind.PERSONAL,
            wallet_class=wallet_class,
            operator=OP,
            linked_account=linked,
        )
    assert ledger.settle([tb.issue(keys, CB, [(OP, 200_000)] * 4, timestamp_ms=1)], 1).ok
    funded = [(w, fen) for w, (_, _, fen) in zip(PERSONS, wallets, strict=True) if fen]
    if funded:
        txs, _ = ledger.build_payments(
            keys, [OP] * len(funded), [w for w, _ in funded], [f for _, f in funded], 2
        )
        ledger.settle(txs, 2)  # openings over a cap are swept or refused; either is fine here
    before = ledger.supply()

    payers, payees, amounts = (list(x) for x in zip(*payments, strict=True))
    txs, skipped = ledger.build_payments(keys, payers, payees, amounts, 3, skip_insufficient=True)
    assert len(txs) + len(skipped) == len(payments)
    settlement = ledger.settle(txs, 3)
    statuses = settlement.statuses
    event(f"swept: {settlement.receipt.swept_fen > 0}")
    event(f"refused: {(statuses == tb.Status.LIMIT_BALANCE).any()}")
    lost = np.isin(statuses, [tb.Status.UNKNOWN_INPUT, tb.Status.INPUT_SPENT])
    assert not lost.any(), statuses.tolist()
    # Only the balance cap can refuse here, and only where the excess cannot be swept.
    assert set(statuses.tolist()) <= {tb.Status.OK, tb.Status.LIMIT_BALANCE}
    if over == "sweep" and all(linked for _, linked, _ in wallets):
        assert (statuses == tb.Status.OK).all()
    after = ledger.supply()
    assert after == before
    assert after.issued_fen - after.redeemed_fen == after.outstanding_fen
    assert int(ledger.balances([OP, *PERSONS]).sum()) == after.outstanding_fen
    ledger.check_invariants()
