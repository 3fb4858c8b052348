"""Spending conditions through the Python API: the earmark rules (mixed inputs, change keeps
the condition, issuers only), reclaims, recovery from the log and from a snapshot, sharded
ledgers, wallet-level payments that leave earmarked tokens alone, and programmes (supply and
budget conserved, the report adds up, the Shenzhen 2020 programme at full size)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tongbao as tb
from condition_world import (
    ALICE,
    AMOUNT,
    BOB,
    CASINO,
    COND,
    END,
    FOOD,
    GOV,
    GROCER,
    START,
    T0,
    make_world,
)
from tongbao import Status, shard
from tongbao import programme as pg

ROOT = Path(__file__).resolve().parent.parent


def test_spend_at_allowed_merchants_is_plain_money_for_them_and_change_keeps_the_condition() -> (
    None
):
    world = make_world()
    ((token, value),) = world.earmarked(ALICE)
    tx = tb.transfer(
        world.keys,
        [token],
        [(FOOD, 5_000), (GROCER, 3_000), (ALICE, value - 8_000, COND)],
        [ALICE],
        START,
    )
    assert world.settle_one(tx, START) == Status.OK
    assert world.earmarked(FOOD) == [] and world.ledger.balance(FOOD) == 5_000
    ((_, kept),) = world.earmarked(ALICE)
    assert kept == value - 8_000
    info = world.ledger.condition(COND)
    assert info is not None
    assert info.spent_by_mcc == {5812: 5_000, 5411: 3_000}
    assert info.issued_fen == 2 * AMOUNT and info.outstanding_fen == 2 * AMOUNT - 8_000
    world.ledger.check_invariants()


def test_mixed_inputs_free_value_pays_what_the_earmark_cannot() -> None:
    """Earmarked + free inputs: the earmarked part must reach allowed merchants or stay
    earmarked; free value may go anywhere. Splitting or merging never frees earmarked value."""
    world = make_world()
    ((e_token, e_value),) = world.earmarked(ALICE)
    ((f_token, f_value),) = world.free(ALICE)
    inputs = [e_token, f_token]
    # The casino (not allowed) is paid from the free part; the earmark goes to FOOD: fine.
    ok = tb.transfer(
        world.keys,
        inputs,
        [(CASINO, f_value - 1_000), (FOOD, e_value), (ALICE, 1_000)],
        [ALICE],
        START,
    )
    # Same inputs, but 1 fen of the earmark would end up as free change: refused.
    launder = tb.transfer(
        world.keys,
        inputs,
        [(CASINO, f_value - 1_000), (FOOD, e_value - 1), (ALICE, 1_001)],
        [ALICE],
        START,
    )
    assert world.settle_one(launder, START) == Status.CONDITION_FAILED
    assert world.settle_one(ok, START) == Status.OK
    assert world.ledger.condition(COND).spent_by_mcc == {5812: e_value}  # type: ignore[union-attr]
    # Merging earmarked into a bigger earmarked token (a split back later) keeps it earmarked.
    ((b_token, b_value),) = world.earmarked(BOB)
    ((bf_token, bf_value),) = world.free(BOB)
    merge = tb.transfer(
        world.keys, [b_token, bf_token], [(BOB, b_value + bf_value, COND)], [BOB], START
    )
    assert world.settle_one(merge, START) == Status.NOT_AUTHORIZED  # only the issuer adds value
    world.ledger.check_invariants()


def test_only_the_issuer_earmarks_and_the_reclaimer_takes_back_after_expiry() -> None:
    world = make_world()
    ((token, value),) = world.free(ALICE)
    forged = tb.transfer(world.keys, [token], [(BOB, value, COND)], [ALICE], T0)
    assert world.settle_one(forged, T0) == Status.NOT_AUTHORIZED
    tokens = world.ledger.condition_tokens(COND)
    assert sorted(o for _, o, _ in tokens) == [ALICE, BOB]
    total = sum(v for _, _, v in tokens)
    wrong = tb.reclaim(world.keys, ALICE, [t for t, _, _ in tokens], total, END)
    assert world.settle_one(wrong, END) == Status.NOT_AUTHORIZED
    gov_before = world.ledger.balance(GOV)
    back = tb.reclaim(world.keys, GOV, [t for t, _, _ in tokens], total, END)
    assert world.settle_one(back, END) == Status.OK
    assert world.ledger.balance(GOV) == gov_before + total
    info = world.ledger.condition(COND)
    assert info is not None and (info.reclaimed_fen, info.outstanding_fen) == (total, 0)
    assert world.ledger.condition_tokens(COND) == []
    world.ledger.check_invariants()


def test_build_payments_never_picks_earmarked_tokens() -> None:
    world = make_world()
    free = sum(v for _, v in world.free(ALICE))
    txs, _ = world.ledger.build_payments(world.keys, [ALICE], [BOB], [free], START)
    assert world.ledger.settle(txs, START).ok
    with pytest.raises(tb.InsufficientFunds):
        world.ledger.build_payments(world.keys, [ALICE], [BOB], [1], START)
    assert [v for _, v in world.earmarked(ALICE)] == [AMOUNT]


def _durable_world(path: Path) -> tuple[tb.Ledger, tb.Keyring]:
    """The condition world on a durable ledger (same steps as make_world)."""
    import condition_world as cw

    ledger = tb.Ledger.open(path, threads=1, snapshot_every_records=0)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [cw.CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [cw.OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [GOV, cw.CORP], tb.WalletKind.CORPORATE, operator=cw.OP)
    ledger.open_wallets(keys, [ALICE, BOB], tb.WalletKind.PERSONAL, operator=cw.OP)
    ledger.open_wallets(
        keys, [FOOD], tb.WalletKind.MERCHANT, operator=cw.OP, mcc=5812, region=cw.SHENZHEN
    )
    assert ledger.settle([tb.issue(keys, cw.CB, [(cw.OP, 1_000_000)], T0)], T0).ok
    pay, _ = ledger.build_payments(keys, [cw.OP], [GOV], [500_000], T0)
    assert ledger.settle(pay, T0).ok
    define = tb.define_condition(
        keys,
        COND,
        issuer=GOV,
        reclaimer=GOV,
        not_before_ms=START,
        valid_until_ms=END,
        timestamp_ms=T0,
        mccs=[5812],
        not_transferable=True,
    )
    ((token, value),) = ledger.unspent(GOV)
    earmark = tb.transfer(keys, [token], [(ALICE, AMOUNT, COND), (GOV, value - AMOUNT)], [GOV], T0)
    assert ledger.settle([define, earmark], T0).ok
    ((e_token, _),) = [tv for tv in ledger.unspent(ALICE)]
    spend = tb.transfer(
        keys, [e_token], [(FOOD, 5_000), (ALICE, AMOUNT - 5_000, COND)], [ALICE], START
    )
    assert ledger.settle([spend], START).ok
    return ledger, keys


@pytest.mark.parametrize("snapshot", [False, True])
def test_recovery_reproduces_conditions(tmp_path: Path, snapshot: bool) -> None:
    ledger, _ = _durable_world(tmp_path / "l")
    if snapshot:
        ledger.snapshot()
    digest = ledger.state_digest()
    info = ledger.condition(COND)
    ledger.close()
    again = tb.Ledger.open(tmp_path / "l", threads=1)
    assert again.state_digest() == digest
    assert again.condition(COND) == info
    assert info is not None and info.spent_by_mcc == {5812: 5_000}
    again.check_invariants()
    again.close()
    report = tb.verify_log(tmp_path / "l")
    assert report.batches == 4 and report.transactions_ok == report.transactions == 5


def test_earmarked_outputs_to_another_shard_are_refused() -> None:
    """Decision 0012: a credit does not carry a condition, so an earmarked output to a wallet
    homed on another shard is refused (CONDITION_INVALID); plain outputs still travel."""
    keys = tb.Keyring()
    ledgers = [tb.Ledger(threads=1) for _ in range(2)]
    home = {w: int(shard.home_vshards([w], 2)[0]) for w in range(1000, 1100)}
    same = [w for w in home if home[w] == home[1000]]
    other = [w for w in home if home[w] != home[1000]]
    issuer, near, far = 1000, same[1], other[0]
    for index, ledger in enumerate(ledgers):
        shard.make_shard(ledger, 2, index)
        ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
        ledger.open_wallets(keys, [issuer], tb.WalletKind.CORPORATE)
        ledger.open_wallets(keys, [near, far], tb.WalletKind.PERSONAL)
    mine = ledgers[home[issuer]]
    # Fund the issuer on its shard directly (issue to the operator on the operator's shard,
    # which exports the payment as a credit when the issuer lives elsewhere: keep it simple by
    # checking where the operator lives).
    op_shard = ledgers[int(shard.home_vshards([10], 2)[0])]
    assert op_shard.settle([tb.issue(keys, 1, [(10, 100_000)], T0)], T0).ok
    pay, _ = op_shard.build_payments(keys, [10], [issuer], [100_000], T0)
    assert op_shard.settle(pay, T0).ok
    if op_shard is not mine:
        credits = shard.outbox(op_shard)
        shard.import_credits(mine, credits)
    define = tb.define_condition(
        keys,
        COND,
        issuer=issuer,
        reclaimer=issuer,
        not_before_ms=0,
        valid_until_ms=END,
        timestamp_ms=T0,
    )
    assert mine.settle([define], T0).ok
    ((token, value),) = mine.unspent(issuer)
    far_tx = tb.transfer(keys, [token], [(far, 1_000, COND), (issuer, value - 1_000)], [issuer], T0)
    near_tx = tb.transfer(
        keys, [token], [(near, 1_000, COND), (issuer, value - 1_000)], [issuer], T0
    )
    statuses = mine.settle([far_tx, near_tx], T0).statuses
    assert [Status(int(s)) for s in statuses] == [Status.CONDITION_INVALID, Status.OK]
    mine.check_invariants()


# -- programmes ----------------------------------------------------------------------------------


def test_programme_conserves_supply_and_the_report_adds_up() -> None:
    p = pg.load_programme(ROOT / "examples/programmes/red-envelope.toml")
    shares = [a for _, a in p.allocations]
    assert sum(shares) == 8_888_800 and len(shares) == 200
    # Auditable: the split is recomputed from the seed alone, in recipient order.
    assert shares == pg.red_envelope_split(8_888_800, 200, "new-year-2026")
    run = pg.run_programme(p, spend_share=0.6, merchant_count=10, threads=1)
    r = run.report
    assert r.issued_fen == r.budget_fen == 8_888_800
    assert r.issued_fen == r.spent_fen + r.reclaimed_fen + r.outstanding_fen
    assert r.outstanding_fen == 0 and r.spent_fen > 0 and r.reclaimed_fen > 0
    supply = run.ledger.supply()
    assert supply.issued_fen - supply.redeemed_fen == supply.outstanding_fen
    assert all(k == "OK" for counts in run.statuses.values() for k in counts)
    run.ledger.check_invariants()


def test_lottery_is_seeded_and_order_free() -> None:
    winners = pg.lottery_winners(range(1_000), 10, "seed")
    assert winners == pg.lottery_winners(reversed(range(1_000)), 10, "seed")
    assert winners != pg.lottery_winners(range(1_000), 10, "other seed")
    assert len(set(winners)) == 10


def test_chongqing_config_restricts_to_low_carbon_categories() -> None:
    p = pg.load_programme(ROOT / "examples/programmes/chongqing-low-carbon.toml")
    assert p.mccs == (4111, 4131, 4789, 5261) and p.not_transferable and p.not_redeemable
    assert len(p.allocations) == 20_000


def test_bad_config_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[programme]\nname = "x"\ncondition = 1\nissuer = 5\n')
    with pytest.raises(tb.InvalidArgument, match=r"bad.toml: programme.not_before: missing"):
        pg.load_programme(path)


@pytest.mark.slow
def test_shenzhen_2020_at_full_size() -> None:
    """50,000 envelopes of ¥200 (¥10M) drawn among 1,913,000 applicants, 3,389 listed merchants,
    one week; the report adds up and every fen is accounted for."""
    p = pg.load_programme(ROOT / "examples/programmes/shenzhen-2020.toml")
    assert len(p.allocations) == 50_000 and p.budget_fen == 1_000_000_000
    assert len(p.merchants) == 3_389
    run = pg.run_programme(p, spend_share=0.7)
    r = run.report
    assert r.issued_fen == 1_000_000_000
    assert r.issued_fen == r.spent_fen + r.reclaimed_fen and r.outstanding_fen == 0
    assert run.statuses["spend"] == {"OK": sum(run.statuses["spend"].values())}
    run.ledger.check_invariants()
