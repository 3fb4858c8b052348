"""Escrow (tongbao.escrow) on locks: each step is a transaction with a status; the payer is
refunded on a signed refund or at the deadline; instalments add up; wrong signers are refused
and change nothing."""

from __future__ import annotations

import pytest

import tongbao as tb
from tongbao import Status, escrow

T0 = 1_700_000_000_000
DAY = 86_400_000
CB, OP, BUYER, SELLER, INSPECTOR, STRANGER = 1, 10, 100, 700, 800, 900


@pytest.fixture
def world() -> tuple[tb.Ledger, tb.Keyring]:
    ledger, keys = tb.Ledger(threads=1), tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [BUYER, INSPECTOR, STRANGER], tb.WalletKind.PERSONAL, operator=OP)
    ledger.open_wallets(keys, [SELLER], tb.WalletKind.MERCHANT, operator=OP)
    assert ledger.settle([tb.issue(keys, CB, [(OP, 1_000_000)], T0)], T0).ok
    assert ledger.pay(keys, OP, BUYER, 100_000, T0).ok
    return ledger, keys


def test_instalments_add_up_and_wrong_signers_change_nothing(
    world: tuple[tb.Ledger, tb.Keyring],
) -> None:
    ledger, keys = world
    tx, handle = escrow.open(ledger, keys, BUYER, SELLER, 30_000, INSPECTOR, T0 + 30 * DAY, T0)
    assert escrow.settle(ledger, tx, T0) == Status.OK
    assert ledger.available_fen(BUYER) == 70_000
    with pytest.raises(tb.InvalidArgument):
        escrow.instalment(keys, handle, 30_001, T0)
    digest = ledger.state_digest()
    forged = tb.capture(keys, SELLER, handle.token, BUYER, 10_000, True, T0 + 1)
    assert escrow.settle(ledger, forged, T0 + 1) == Status.NOT_RELEASER
    refund = escrow.refund(keys, handle, STRANGER, T0 + 1)
    assert escrow.settle(ledger, refund, T0 + 1) == Status.NOT_RELEASER
    assert ledger.held_fen(BUYER) == 30_000 and ledger.state_digest() != digest  # receipts
    paid = 0
    current: escrow.Escrow | None = handle
    for n, amount in enumerate([10_000, 15_000, 5_000]):
        assert current is not None
        tx, current = escrow.instalment(keys, current, amount, T0 + (n + 2) * DAY)
        assert escrow.settle(ledger, tx, T0 + (n + 2) * DAY) == Status.OK
        paid += amount
        assert ledger.balance(SELLER) == paid
    assert current is None and ledger.held_fen(BUYER) == 0
    assert ledger.balance(BUYER) == 70_000
    ledger.check_invariants()


def test_refund_by_the_payee_and_at_the_deadline(world: tuple[tb.Ledger, tb.Keyring]) -> None:
    ledger, keys = world
    tx, a = escrow.open(ledger, keys, BUYER, SELLER, 20_000, INSPECTOR, T0 + DAY, T0)
    assert escrow.settle(ledger, tx, T0) == Status.OK
    tx, b = escrow.open(ledger, keys, BUYER, SELLER, 30_000, INSPECTOR, T0 + DAY, T0)
    assert escrow.settle(ledger, tx, T0) == Status.OK
    assert escrow.settle(ledger, escrow.refund(keys, a, SELLER, T0 + 1), T0 + 1) == Status.OK
    assert escrow.held_fen(ledger, a) == 0 and escrow.held_fen(ledger, b) == 30_000
    ledger.settle([], T0 + DAY + 1)  # b's deadline: refunded in full
    assert escrow.held_fen(ledger, b) == 0
    assert (ledger.balance(BUYER), ledger.balance(SELLER)) == (100_000, 0)
    late, _ = escrow.release(keys, b, T0 + DAY + 2)
    assert escrow.settle(ledger, late, T0 + DAY + 2) == Status.LOCK_DEADLINE_PASSED
    ledger.check_invariants()
