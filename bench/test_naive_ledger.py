"""Correctness of the naive baseline, and agreement with tongbao on the statuses both answer."""

from __future__ import annotations

import tongbao as tb
import tongbao.naive as nl


def test_self_check() -> None:
    nl.self_check()


def test_same_verdicts_as_tongbao() -> None:
    """One scenario through both ledgers: valid 1-in/2-out and 2-in/2-out transfers, a
    resubmission, a double spend, a value mismatch, a bad signature, an unknown owner."""
    alice, bob, carol, mallory = 1001, 1002, 1003, 1004
    people = [alice, bob, carol]

    # tongbao: issue to an operator, fund alice twice and bob once, as the naive mints do.
    keys = tb.Keyring()
    ledger = tb.Ledger(threads=2)
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, people, tb.WalletKind.PERSONAL)
    _ = keys.generate([mallory], tb.Scheme.ED25519, b"mallory")
    funding = tb.issue(keys, 1, [(10, 17_000)], 0)
    assert ledger.settle([funding], 0).ok
    fund_txs, _ = ledger.build_payments(keys, [10, 10, 10], [alice, alice, bob],
                                        [10_000, 5_000, 2_000], 0)  # fmt: skip
    assert ledger.settle(fund_txs, 0).ok
    a1, a2, b1 = (tb.token_id(tb.transaction_id(tx), 0) for tx in fund_txs)

    # naive: the same three tokens, minted.
    wallets = nl.Wallets([alice, bob, carol, mallory])
    naive = nl.NaiveLedger()
    for w in people:
        naive.register(w, wallets.public_key(w))
    n1, n2, nb = naive.mint(alice, 10_000), naive.mint(alice, 5_000), naive.mint(bob, 2_000)

    def both(
        inputs: list[tuple[int, int]], outputs: list[tuple[int, int]], t: int
    ) -> tuple[bytes, bytes]:
        """The same transfer in each format; ``inputs`` are (index into tokens, signer)."""
        tokens_tb = [a1, a2, b1, *extra_tb]
        tokens_nl = [n1, n2, nb, *extra_nl]
        signers = sorted({s for _, s in inputs})
        tx_tb = tb.transfer(keys, [tokens_tb[i] for i, _ in inputs], outputs, signers, t)
        tx_nl = wallets.transfer([(tokens_nl[i], s) for i, s in inputs], outputs, t)
        return tx_tb, tx_nl

    extra_tb: list[bytes] = []
    extra_nl: list[bytes] = []
    pay = both([(0, alice)], [(bob, 3_000), (alice, 7_000)], 1)
    extra_tb.append(tb.token_id(tb.transaction_id(pay[0]), 1))  # alice's change: index 3
    extra_nl.append(nl.token_id(nl.decode(pay[1])[0], 1))
    cases = [
        (pay, tb.Status.OK),
        (pay, tb.Status.ALREADY_SETTLED),
        (both([(0, alice)], [(carol, 10_000)], 2), tb.Status.INPUT_SPENT),
        (both([(1, alice), (2, bob)], [(carol, 6_000), (bob, 1_000)], 3), tb.Status.OK),
        (both([(3, alice)], [(bob, 6_999)], 4), tb.Status.VALUE_MISMATCH),
        (both([(3, mallory)], [(bob, 7_000)], 4), None),  # tongbao: wrong signer
        (both([(3, alice)], [(99_999, 7_000)], 4), tb.Status.UNKNOWN_WALLET),
        (both([(3, alice)], [(carol, 7_000)], 5), tb.Status.OK),
    ]
    got_tb = ledger.settle([c[0][0] for c in cases], 10).statuses.tolist()
    got_nl = naive.settle([c[0][1] for c in cases])
    for (_, want), s_tb, s_nl in zip(cases, got_tb, got_nl, strict=True):
        if want is None:
            # mallory signing alice's token: tongbao rejects the signer set (mallory is not a
            # registered wallet), naive rejects the signature. Both refuse.
            assert s_tb != tb.Status.OK and s_nl == tb.Status.BAD_SIGNATURE
        else:
            assert s_tb == want and s_nl == want
    ledger.check_invariants()
    naive.check_invariants()
    for w in people:
        assert ledger.balance(w) == naive.balance(w)
