"""``Ledger.build_payments`` with one reference per payment (bills and taxes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tongbao as tb


def funded() -> tuple[tb.Ledger, tb.Keyring]:
    ledger, keys = tb.Ledger(), tb.Keyring()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [10, 11, 12], tb.WalletKind.PERSONAL)
    ledger.open_wallets(keys, [50], tb.WalletKind.CORPORATE)
    assert ledger.settle([tb.issue(keys, 1, [(2, 1_000_000)], 1_000)], 1_000).ok
    txs, _ = ledger.build_payments(keys, [2, 2, 2], [10, 11, 12], [10_000] * 3, 1_000)
    assert ledger.settle(txs, 1_000).ok
    return ledger, keys


@settings(max_examples=25, deadline=None)
@given(refs=st.lists(st.binary(max_size=tb.REFERENCE_LEN_MAX), min_size=1, max_size=12))
def test_each_payment_carries_its_own_reference(refs: list[bytes]) -> None:
    ledger, keys = funded()
    payers = [10 + i % 3 for i in range(len(refs))]
    txs, skipped = ledger.build_payments(
        keys, payers, [50] * len(refs), [7] * len(refs), 2_000, reference=refs
    )
    assert skipped == []
    assert [tb.decode(tx)["reference"] for tx in txs] == refs
    assert ledger.settle(txs, 2_000).ok
    assert ledger.balance(50) == 7 * len(refs)


def test_one_reference_is_shared() -> None:
    ledger, keys = funded()
    txs, _ = ledger.build_payments(keys, [10, 11], [50, 50], [5, 6], 2_000, reference=b"TAX-2022")
    assert [tb.decode(tx)["reference"] for tx in txs] == [b"TAX-2022"] * 2


@pytest.mark.parametrize(
    ("refs", "error", "message"),
    [
        ([b"a", b"b", b"c"], tb.InvalidArgument, "3 references for 2 payments"),
        ([b"x" * (tb.REFERENCE_LEN_MAX + 1), b""], tb.MalformedTransaction, "reference is 141"),
    ],
)
def test_bad_references_are_refused(
    refs: list[bytes], error: type[Exception], message: str
) -> None:
    ledger, keys = funded()
    before = ledger.state_digest()
    with pytest.raises(error, match=message):
        ledger.build_payments(keys, [10, 11], [50, 50], [5, 6], 2_000, reference=refs)
    assert ledger.state_digest() == before
