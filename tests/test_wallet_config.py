"""Limits config files and wallet registration rules: bad input is refused with the field named,
and the ledger keeps what it had."""

from __future__ import annotations

from pathlib import Path

import pytest

import tongbao as tb

DEFAULT = tb.load_limits()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_default_follows_the_public_figures() -> None:
    c4, c2 = DEFAULT.classes[4], DEFAULT.classes[2]
    assert (c4.balance_cap_fen, c4.payment_cap_fen, c4.daily_cap_fen, c4.annual_cap_fen) == (
        1_000_000,
        200_000,
        500_000,
        5_000_000,
    )
    assert (c2.balance_cap_fen, c2.payment_cap_fen, c2.daily_cap_fen) == (
        50_000_000,
        5_000_000,
        10_000_000,
    )
    assert DEFAULT.classes[1] == tb.ClassLimits()


def test_json_and_toml_give_the_same_limits(tmp_path: Path) -> None:
    import json

    doc = {
        "version": DEFAULT.version,
        "over_balance_cap": DEFAULT.over_balance_cap,
        "class": {
            str(c): {k: v for k, v in vars(DEFAULT.classes[c]).items() if v is not None}
            for c in (1, 2, 3, 4)
        },
        "sub_wallet": {k: v for k, v in vars(DEFAULT.sub_wallet).items() if v is not None},
    }
    assert tb.load_limits(write(tmp_path, "l.json", json.dumps(doc))) == DEFAULT


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('version = "v"\nover_balance_cap = "sweep"\n[class.1]\n[class.2]\n[class.3]\n', "class.4"),
        ('version = "v"\nover_balance_cap = "burn"\n', "over_balance_cap"),
        ('over_balance_cap = "sweep"\n', "version"),
        (
            'version = "v"\nover_balance_cap = "sweep"\n[class.1]\n[class.2]\n[class.3]\n'
            "[class.4]\npayment_cap_fen = -5\n",
            "class.4.payment_cap_fen",
        ),
        (
            'version = "v"\nover_balance_cap = "sweep"\n[class.1]\n[class.2]\n[class.3]\n'
            "[class.4]\npayment_cap_fen = 12.5\n",
            "class.4.payment_cap_fen",
        ),
        (
            'version = "v"\nover_balance_cap = "sweep"\n[class.1]\n[class.2]\n[class.3]\n'
            "[class.4]\npayment_cap_fen = 500\ndaily_cap_fen = 400\n",
            "class.4.payment_cap_fen",
        ),
        (
            'version = "v"\nover_balance_cap = "sweep"\n[class.1]\npayment_cap_fen = 5\n'
            "[class.2]\n[class.3]\n[class.4]\n",
            "class.1",
        ),
        (
            'version = "v"\nover_balance_cap = "sweep"\n[class.1]\n[class.2]\n[class.3]\n'
            "[class.4]\nmonthly_cap_fen = 5\n",
            "class.4.monthly_cap_fen",
        ),
        ('version = "v"\nover_balance_cap = "sweep"\nfoo = 1\n', "foo"),
        ('version = "v\nover_balance_cap = "sweep"\n', "l.toml"),
    ],
)
def test_bad_config_is_refused_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    ledger = tb.Ledger()
    ledger.set_limits(DEFAULT)
    with pytest.raises(tb.InvalidLimits, match=f"limits: (.*/)?{field}"):
        ledger.set_limits(tb.load_limits(write(tmp_path, "l.toml", text)))
    assert ledger.limits == DEFAULT  # still on the version it had


def test_limits_and_wallet_changes_survive_a_restart(tmp_path: Path) -> None:
    keys = tb.Keyring()
    with tb.Ledger.open(tmp_path / "ledger", snapshot_every_records=3) as ledger:
        ledger.set_limits(DEFAULT)
        ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
        ledger.open_wallets(keys, [100, 101], tb.WalletKind.PERSONAL, wallet_class=4, operator=10)
        ledger.settle([tb.issue(keys, 1, [(10, 10_000_000)], timestamp_ms=1)], 1)
        txs, _ = ledger.build_payments(keys, [10, 10], [100, 101], [300_000, 5_000], 2)
        assert ledger.settle(txs, 2).ok
        txs, _ = ledger.build_payments(keys, [100], [101], [150_000], 3)
        assert ledger.settle(txs, 3).ok
        ledger.freeze([101])
        ledger.set_class([100], 3)
        digest = ledger.state_digest()
    reopened = tb.Ledger.open(tmp_path / "ledger")
    assert reopened.state_digest() == digest
    assert reopened.limits == DEFAULT
    alice = reopened.wallet(100)
    assert alice is not None and (alice.wallet_class, alice.day_out_fen) == (3, 150_000)
    assert reopened.wallet(101).status == tb.WalletStatus.FROZEN  # type: ignore[union-attr]
    assert tb.verify_log(tmp_path / "ledger").outstanding_fen == 10_000_000


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"wallet_class": 5}, "class"),
        ({"wallet_class": 0}, "class"),
        ({"operator": 1}, "operator"),
        ({"operator": 424242}, "operator"),
        ({"parent": 424242}, "parent"),
    ],
)
def test_bad_registration_names_the_field_and_registers_nothing(
    attrs: dict[str, int], message: str
) -> None:
    ledger = tb.Ledger()
    keys = tb.Keyring()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    with pytest.raises(tb.InvalidArgument, match=f"wallet 6: {message}"):
        ledger.open_wallets(keys, [6, 7], tb.WalletKind.PERSONAL, **attrs)  # type: ignore[arg-type]
    assert ledger.wallet_count == 1


def test_sub_wallet_rules() -> None:
    ledger = tb.Ledger()
    keys = tb.Keyring()
    ledger.open_wallets(keys, [10, 11], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [100], tb.WalletKind.PERSONAL, operator=10)
    ledger.open_wallets(keys, [101], tb.WalletKind.PERSONAL, operator=10, parent=100)
    with pytest.raises(tb.InvalidArgument, match="itself a sub-wallet"):
        ledger.open_wallets(keys, [102], tb.WalletKind.PERSONAL, operator=10, parent=101)
    with pytest.raises(tb.InvalidArgument, match="another operator"):
        ledger.open_wallets(keys, [103], tb.WalletKind.PERSONAL, operator=11, parent=100)
    with pytest.raises(tb.InvalidArgument, match="sub-wallet is personal or corporate"):
        ledger.open_wallets(keys, [104], tb.WalletKind.MERCHANT, operator=10, parent=100)
    with pytest.raises(tb.InvalidArgument, match="operator wallets are class 1"):
        ledger.set_class([10], 2)


def test_sub_wallet_spending_counts_against_the_parent() -> None:
    ledger = tb.Ledger()
    keys = tb.Keyring()
    ledger.set_limits(DEFAULT)
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [100, 200], tb.WalletKind.PERSONAL, wallet_class=4, operator=10)
    ledger.open_wallets(
        keys, [101], tb.WalletKind.PERSONAL, wallet_class=4, operator=10, parent=100
    )
    ledger.settle([tb.issue(keys, 1, [(10, 10_000_000)], timestamp_ms=1)], 1)
    txs, _ = ledger.build_payments(keys, [10, 10], [100, 101], [600_000, 300_000], 2)
    assert ledger.settle(txs, 2).ok
    # The sub-wallet's own caps: ¥1,000 per payment (the tighter of class 4 and sub-wallet).
    txs, _ = ledger.build_payments(keys, [101], [200], [100_001], 3)
    assert ledger.settle(txs, 3).status(0) == tb.Status.LIMIT_PAYMENT
    # The parent pays 450,000 of its 500,000 daily cap; the sub-wallet's 60,000 would pass its
    # own daily cap (200,000) but takes the parent over its cap.
    txs, _ = ledger.build_payments(
        keys, [100, 100, 100], [200, 200, 200], [200_000] * 2 + [50_000], 4
    )
    assert ledger.settle(txs, 4).ok
    # outflow_room says so before paying: the sub-wallet's ¥1,000 per payment, and the
    # parent's remaining 50,000 fen of daily room (not the sub-wallet's own 200,000).
    assert ledger.outflow_room(101, 5) == (100_000, 50_000)
    assert ledger.outflow_room(100, 5) == (200_000, 50_000)
    with pytest.raises(tb.UnknownWallet):
        ledger.outflow_room(999, 5)
    txs, _ = ledger.build_payments(keys, [101], [200], [60_000], 5)
    assert ledger.settle(txs, 5).status(0) == tb.Status.LIMIT_DAILY
    txs, _ = ledger.build_payments(keys, [101], [200], [50_000], 6)
    assert ledger.settle(txs, 6).ok
    assert ledger.wallet(100).day_out_fen == 500_000  # type: ignore[union-attr]
