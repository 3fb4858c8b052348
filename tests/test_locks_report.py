"""The end-of-day report books what a lock's deadline action moves between operators' parties,
so every operator's position change still equals its holdings' change (review finding)."""

from __future__ import annotations

from pathlib import Path

import tongbao as tb

T0 = 1_700_000_000_000  # 2023-11-15 06:13 +08:00
CB, OPA, OPB, RIDER, METRO = 1, 10, 20, 100, 500


def test_deadline_action_is_a_flow_between_parties(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    ledger = tb.Ledger.open(path, threads=1)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OPA, OPB], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [RIDER], tb.WalletKind.PERSONAL, operator=OPA)
    ledger.open_wallets(keys, [METRO], tb.WalletKind.MERCHANT, operator=OPB)
    assert ledger.settle([tb.issue(keys, CB, [(OPA, 100_000)], timestamp_ms=T0)], T0).ok
    assert ledger.pay(keys, OPA, RIDER, 10_000, T0).ok
    lock = ledger.build_lock(keys, RIDER, 700, METRO, METRO, T0 + 50, 300, T0)
    assert ledger.settle([lock], T0).ok
    assert ledger.settle([], T0 + 100).ok  # the deadline passes: 300 to METRO, 400 back
    assert ledger.balance(METRO) == 300 and ledger.balance(RIDER) == 10_000 - 300
    ledger.close()

    report = tb.day_report(path, "2023-11-15")
    a, b = report.operator(OPA), report.operator(OPB)
    assert a is not None and b is not None
    for o in (a, b):
        assert o.position_change_fen == o.holdings_end_fen - o.holdings_start_fen
    assert b.value_in_fen == 300 and a.value_out_fen >= 300
