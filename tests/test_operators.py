"""Operator banks: wallet administration on a durable ledger, deposit exchange helpers, the
end-of-day report (checked against the payments that built it and against conservation), and
the ``tongbao wallets`` / ``tongbao report`` commands."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tongbao as tb
from tongbao.cli import main

CB, OP_A, OP_B, OP_C = 1, 10, 11, 12
HOUR = 3_600_000
NEW_YEAR_2026 = 1_767_196_800_000  # 2026-01-01 00:00 in Shanghai (2025-12-31T16:00Z)
DAY_2026_01_01 = dt.date(2026, 1, 1)


def bootstrap(ledger: tb.Ledger, keys: tb.Keyring, t: int) -> None:
    """The central bank (privileged bootstrap), then operators opened by the central bank's
    signed registrations, funded by an issue."""
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    publics = keys.generate([OP_A, OP_B, OP_C], tb.Scheme.ED25519, b"ops")
    regs = [
        tb.register_wallet(keys, CB, op, tb.WalletKind.OPERATOR, pk, timestamp_ms=t)
        for op, pk in zip([OP_A, OP_B, OP_C], publics, strict=True)
    ]
    assert ledger.settle(regs, t).ok
    issue = tb.issue(keys, CB, [(OP_A, 10**8), (OP_B, 10**8), (OP_C, 10**8)], t)
    assert ledger.settle([issue], t).ok


def open_customers(
    ledger: tb.Ledger, keys: tb.Keyring, ids: list[int], operator: int, t: int, **attrs: int
) -> None:
    publics = keys.generate(ids, tb.Scheme.ED25519, b"customers")
    regs = [
        tb.register_wallet(keys, operator, w, tb.WalletKind.PERSONAL, pk, timestamp_ms=t, **attrs)  # type: ignore[arg-type]
        for w, pk in zip(ids, publics, strict=True)
    ]
    assert ledger.settle(regs, t).ok


def test_admin_transactions_survive_a_restart(tmp_path: Path) -> None:
    keys = tb.Keyring()
    t = NEW_YEAR_2026
    with tb.Ledger.open(tmp_path) as ledger:
        bootstrap(ledger, keys, t)
        open_customers(ledger, keys, [100, 101], OP_A, t, wallet_class=4)
        freeze = tb.freeze_wallet(keys, OP_A, 101, timestamp_ms=t)
        upgrade = tb.set_wallet_class(keys, OP_A, 100, 2, timestamp_ms=t)
        assert ledger.settle([freeze, upgrade], t + 1).ok
        digest = ledger.state_digest()
    with tb.Ledger.open(tmp_path) as again:
        assert again.state_digest() == digest
        assert again.wallet(101).status == tb.WalletStatus.FROZEN  # type: ignore[union-attr]
        assert again.wallet(100).wallet_class == 2  # type: ignore[union-attr]
        # Still idempotent after the restart.
        assert again.settle([freeze], t + 2).status(0) == tb.Status.ALREADY_SETTLED
    audit = tb.verify_log(tmp_path)
    assert audit.transactions_ok == 3 + 1 + 2 + 2  # operators, issue, customers, admin


# -- deposit exchange ----------------------------------------------------------------------------


def test_exchange_round_trip_conserves_supply() -> None:
    ledger, keys = tb.Ledger(threads=1), tb.Keyring()
    bootstrap(ledger, keys, 0)
    open_customers(ledger, keys, [100], OP_A, 0)
    supply = ledger.supply()
    assert tb.deposit_to_digital(ledger, keys, 100, 70_000, 1).ok
    assert (ledger.balance(100), ledger.balance(OP_A)) == (70_000, 10**8 - 70_000)
    assert tb.digital_to_deposit(ledger, keys, 100, 20_000, 2).ok
    assert ledger.supply() == supply  # deposits and digital cash swapped, nothing destroyed
    assert tb.digital_to_deposit(ledger, keys, 100, 50_000, 3, redeem=True).ok
    assert ledger.balance(100) == 0
    assert ledger.supply().outstanding_fen == supply.outstanding_fen - 50_000
    with pytest.raises(tb.InsufficientFunds):
        tb.digital_to_deposit(ledger, keys, 100, 1, 4)
    with pytest.raises(tb.InvalidArgument):
        tb.deposit_to_digital(ledger, keys, 100, 0, 4)
    with pytest.raises(tb.InvalidArgument):
        tb.deposit_to_digital(ledger, keys, OP_B, 10, 4)  # an operator has no operator
    ledger.check_invariants()


def test_top_up_on_demand_respects_the_balance_cap() -> None:
    ledger, keys = tb.Ledger(threads=1), tb.Keyring()
    bootstrap(ledger, keys, 0)
    ledger.set_limits(tb.load_limits())  # class 4: ¥10,000 balance cap
    open_customers(ledger, keys, [100], OP_A, 0, wallet_class=2)
    open_customers(ledger, keys, [101], OP_B, 0, wallet_class=4)
    result = tb.top_up(ledger, keys, [100, 101], 50_000, 2_000_000, 1)
    assert result is not None
    # One status per topped-up wallet: the class-4 wallet has no linked account, so its
    # top-up over the cap is refused and nothing moves.
    assert [tb.Status(s) for s in result.statuses] == [tb.Status.OK, tb.Status.LIMIT_BALANCE]
    assert (ledger.balance(100), ledger.balance(101)) == (2_000_000, 0)
    within = tb.top_up(ledger, keys, [100, 101], 50_000, 1_000_000, 2)
    assert within is not None and within.ok
    assert (ledger.balance(100), ledger.balance(101)) == (2_000_000, 1_000_000)
    with pytest.raises(tb.InvalidArgument):
        tb.top_up(ledger, keys, [100], 10, 5, 3)


# -- end-of-day report ---------------------------------------------------------------------------

CUSTOMERS = {OP_A: [100, 101, 102], OP_B: [200, 201], OP_C: [300]}


def party(w: int) -> int:
    return next((op for op, ids in CUSTOMERS.items() if w in ids), w)


@given(st.data())
@settings(max_examples=25, deadline=None)
def test_day_report_matches_the_payments(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Random payments between customers and operators over three Shanghai days (the second
    batch of the report day lands exactly at midnight): the report's gross matrix is the sum of
    the OK payments between different operators, statuses are the day's, and every operator's
    position moves by issued − redeemed + in − out."""
    tmp = tmp_path_factory.mktemp("report")
    keys = tb.Keyring()
    start = NEW_YEAR_2026 - 2 * HOUR  # 2025-12-31 22:00 Shanghai
    expected_gross: Counter[tuple[int, int]] = Counter()
    expected_status: Counter[tb.Status] = Counter()
    with tb.Ledger.open(tmp) as ledger:
        bootstrap(ledger, keys, start)
        for op, ids in CUSTOMERS.items():
            open_customers(ledger, keys, ids, op, start)
        everyone = [w for ids in CUSTOMERS.values() for w in ids] + [OP_A, OP_B, OP_C]
        times = [start + HOUR, NEW_YEAR_2026, NEW_YEAR_2026 + 5 * HOUR, NEW_YEAR_2026 + 30 * HOUR]
        for now in times:
            in_day = dt.datetime.fromtimestamp(now / 1000, dt.timezone(dt.timedelta(hours=8)))
            payers = data.draw(st.lists(st.sampled_from(everyone), min_size=1, max_size=6))
            payees = [data.draw(st.sampled_from(everyone)) for _ in payers]
            amounts = [data.draw(st.integers(1, 60_000)) for _ in payers]
            txs, skipped = ledger.build_payments(
                keys, payers, payees, amounts, now, skip_insufficient=True
            )
            kept = [i for i in range(len(payers)) if i not in skipped]
            if data.draw(st.booleans()):  # an admin action and a replay in the same batch
                txs.append(tb.freeze_wallet(keys, OP_B, 201, timestamp_ms=now))
                txs.append(txs[0] if txs else tb.freeze_wallet(keys, OP_A, 201, timestamp_ms=now))
            if data.draw(st.booleans()):  # an operator redeems part of its reserve
                token, value = max(ledger.unspent(OP_C), key=lambda t: t[1])
                txs.append(tb.redeem(keys, [token], [(OP_C, value - 1_000)], [OP_C], now))
            result = ledger.settle(txs, now)
            note(f"{in_day}: {[tb.Status(s).name for s in result.statuses]}")
            if in_day.date() == DAY_2026_01_01:
                expected_status.update(tb.Status(s) for s in result.statuses)
                for tx_index, i in enumerate(kept):
                    if result.status(tx_index) == tb.Status.OK:
                        a, b = party(payers[i]), party(payees[i])
                        if a != b:
                            expected_gross[(a, b)] += amounts[i]
            if now == times[2]:
                end_of_day = {
                    op: sum(ledger.balance(w) for w in [op, *ids]) for op, ids in CUSTOMERS.items()
                }
                wallet_count = ledger.wallet_count

    report = tb.day_report(tmp, DAY_2026_01_01)
    assert report.batches == 2
    assert report.gross_fen == {k: v for k, v in expected_gross.items() if v}
    assert report.status_counts == dict(expected_status)
    assert sum(sum(o.wallets.values()) for o in report.operators.values()) == wallet_count
    for op in CUSTOMERS:
        o = report.operator(op)
        assert o.holdings_end_fen == end_of_day[op]
        assert o.holdings_end_fen - o.holdings_start_fen == o.position_change_fen
        assert report.net_position(op) == o.value_in_fen - o.value_out_fen
    for (a, b), v in report.net_fen.items():
        assert v == report.gross_fen.get((a, b), 0) - report.gross_fen.get((b, a), 0) > 0
    doc = orjson.loads(orjson.dumps(report.to_json()))
    assert doc["day"] == "2026-01-01" and doc["batches"] == 2


def test_report_of_a_quiet_day_and_bad_input(tmp_path: Path) -> None:
    keys = tb.Keyring()
    with tb.Ledger.open(tmp_path) as ledger:
        bootstrap(ledger, keys, NEW_YEAR_2026)
    quiet = tb.day_report(tmp_path, "2026-01-05")
    assert (quiet.batches, quiet.transactions, quiet.gross_fen) == (0, 0, {})
    assert quiet.operator(OP_A).holdings_start_fen == quiet.operator(OP_A).holdings_end_fen == 10**8
    with pytest.raises(tb.InvalidArgument, match="YYYY-MM-DD"):
        tb.day_report(tmp_path, "2026-13-01")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tb.InvalidArgument, match="no ledger log"):
        tb.day_report(tmp_path / "empty", "2026-01-01")
    with pytest.raises(tb.StorageError):
        tb.day_report(tmp_path / "nothing", "2026-01-01")


# -- CLI -----------------------------------------------------------------------------------------


def test_cli_wallets_and_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tb.Keyring()
    with tb.Ledger.open(tmp_path) as ledger:
        bootstrap(ledger, keys, NEW_YEAR_2026)
    d = str(tmp_path)
    at = str(NEW_YEAR_2026 + HOUR)
    # The operators' keys were derived from seed "ops" by bootstrap().
    common = ["--ledger", d, "--seed", "ops", "--at-ms", at]
    assert (
        main(["wallets", "open", *common, "--signer", "10", "--wallet", "100", "--class", "4"]) == 0
    )
    assert main(["wallets", "open", *common, "--signer", "11", "--wallet", "100"]) == 1
    assert main(["wallets", "freeze", *common, "--wallet", "100"]) == 0
    assert main(["wallets", "unfreeze", *common, "--wallet", "100"]) == 0
    assert main(["wallets", "close", *common, "--wallet", "100"]) == 0
    assert main(["wallets", "upgrade", *common, "--wallet", "100", "--class", "2"]) == 1
    out = capsys.readouterr().out
    assert "wallets open 100: OK" in out and "wallets open 100: WALLET_EXISTS" in out
    assert "wallets upgrade 100: WALLET_CLOSED" in out
    assert main(["wallets", "show", "--ledger", d, "--wallet", "100", "--json"]) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert (shown["status"], shown["class"], shown["operator"]) == ("CLOSED", 4, OP_A)
    assert main(["wallets", "show", "--ledger", d, "--wallet", "999"]) == 2
    assert main(["report", "--ledger", d, "--day", "2026-01-01", "--json"]) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["status_counts"] == {"OK": 8, "WALLET_EXISTS": 1, "WALLET_CLOSED": 1}
    assert main(["report", "--ledger", d, "--day", "yesterday"]) == 2
    # And as a real process, human-readable.
    run = subprocess.run(
        [sys.executable, "-m", "tongbao", "report", "--ledger", d, "--day", "2026-01-01"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "End-of-day report 2026-01-01" in run.stdout and "party 10" in run.stdout
