"""The pilot simulator behind ``tongbao simulate`` (simulate.py, presets.py, simulate_report.py)."""

from __future__ import annotations

import copy
import dataclasses
import io
import tomllib
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import tongbao as tb
from tongbao.presets import (
    apportion,
    load_preset,
    parse_preset,
    scale_figures,
    shipped_presets,
)
from tongbao.simulate import (
    CORPORATE_BASE,
    PERSON_BASE,
    SalaryRun,
    Simulation,
    SimulationConfig,
    SimulationResult,
    fit_total,
    format_yuan,
    pay_salaries,
)
from tongbao.simulate_report import summary_tables

SMALL = SimulationConfig(preset="small-city", scale=0.05, seed=11, batch_size=400)


@pytest.fixture(scope="module")
def small() -> SimulationResult:
    return Simulation(SMALL).run()


# -- the run -------------------------------------------------------------------------------------


def test_figures_match_the_scaled_preset(small: SimulationResult) -> None:
    figures = scale_figures(load_preset("small-city"), 0.05)
    assert small.figures_match
    assert small.payments_settled == figures.transactions == 2_000
    assert small.payments_amount_fen == figures.amount_fen == 20_000_000
    for stats, n, fen in zip(
        small.scenarios, figures.scenario_transactions, figures.scenario_amount_fen, strict=True
    ):
        assert (stats.settled_transactions, stats.settled_amount_fen, stats.failed) == (n, fen, 0)
    salary = next(s for s in small.scenarios if s.feature == "salary")
    assert 2 * salary.settled_transactions <= salary.payslips <= 8 * salary.settled_transactions
    assert small.wallets["personal"]["total"] == 1_000
    assert small.wallets["corporate"]["total"] == 40
    assert small.wallets["merchant"]["total"] == 30
    assert sum(c["count"] for c in small.merchants_by_category) == 30
    assert sum(r["count"] for r in small.merchants_by_region) == 30


def test_statuses_account_for_every_submitted_transaction(small: SimulationResult) -> None:
    totals = small.status_totals()
    assert sum(totals.values()) == small.submitted
    for phase in small.phases.values():
        assert sum(phase.status_counts.values()) == phase.submitted
    # Transit journeys settle as a hold and a capture each (phase "transit", decision 0016),
    # every other payment as one transaction of phase "payments".
    journeys = sum(s.settled_transactions for s in small.scenarios if s.feature == "transit")
    assert journeys > 0
    pay = small.phases["payments"]
    assert pay.submitted == (
        small.payments_settled - journeys + small.resubmissions + small.double_spends
    )
    transit = small.phases["transit"]
    assert small.transit_locks == small.transit_captures == journeys
    assert transit.submitted == 2 * journeys
    assert transit.status_counts == {tb.Status.OK: transit.submitted}


def test_engine_rejects_exactly_the_bad_transactions(small: SimulationResult) -> None:
    totals = small.status_totals()
    assert small.resubmissions > 0 and small.double_spends > 0
    assert totals[tb.Status.ALREADY_SETTLED] == small.resubmissions
    assert totals[tb.Status.INPUT_SPENT] == small.double_spends
    assert totals[tb.Status.OK] == small.submitted - small.resubmissions - small.double_spends
    for phase in ("issue", "exchange", "transit", "redemption"):
        stats = small.phases[phase]
        assert stats.status_counts == {tb.Status.OK: stats.submitted}
    assert small.phases["exchange"].submitted == 1_000 + 40


def test_supply_is_conserved(small: SimulationResult) -> None:
    assert small.supply_ok
    assert small.invariant_error is None
    assert small.issued_fen - small.redeemed_fen == small.outstanding_fen == small.balances_fen
    assert small.redeemed_fen > 0
    exchanged = sum(o["exchanged_fen"] for o in small.operators)
    assert small.phases["exchange"].paid_fen == exchanged > 0


def test_engine_receipts_count_exactly_the_value_paid(small: SimulationResult) -> None:
    """Receipts' value moved (transfers only, change excluded) = exchange + pilot payments other
    than transit journeys (captures are not transfers: the simulator counts their fares)."""
    transfers = small.payments_amount_fen - small.phases["transit"].paid_fen
    assert small.value_moved_fen == small.phases["exchange"].paid_fen + transfers
    paid = small.phases["payments"].paid_fen + small.phases["transit"].paid_fen
    assert paid == small.payments_amount_fen
    transit = next(s for s in small.scenarios if s.feature == "transit")
    assert small.phases["transit"].paid_fen == transit.settled_amount_fen > 0


def test_json_report_is_plain_data(small: SimulationResult) -> None:
    d = small.to_dict()
    assert sum(d["statuses"].values()) == d["transactions"]["submitted"]
    assert d["supply"]["ok"] is True and d["figures_match"] is True
    assert d["config"]["seed"] == SMALL.seed
    assert d["preset"]["figures"]["transactions"] == 2_000
    assert len(d["state_digest"]) == 64
    assert all(isinstance(v, int) for k, v in d["supply"].items() if k.endswith("_fen"))
    assert [s["name"] for s in d["scenarios"]] == [s.name for s in small.scenarios]
    assert len(d["timing"]["batches"]) == sum(p.batches for p in small.phases.values())
    assert d["timing"]["engine_tx_per_s"] > 0


def test_summary_tables_render(small: SimulationResult) -> None:
    console = Console(width=140, record=True, file=io.StringIO())
    for table in summary_tables(small):
        console.print(table)
    text = console.export_text()
    for needle in (
        "ALREADY_SETTLED",
        "INPUT_SPENT",
        "Operator positions",
        "City Commercial Bank",
        "transit: hold, then capture",
        "transit tap-in: holds",
        "salary run",
        small.state_digest.hex()[:16],
        format_yuan(small.balances_fen),
    ):
        assert needle in text
    assert "NO" not in text.split() and "FAILED" not in text


class Recorder:
    """A settler that keeps every batch it passes on (the seam a cluster client plugs into)."""

    def __init__(self, ledger: tb.Ledger) -> None:
        self.ledger = ledger
        self.batches: list[list[bytes]] = []

    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> tb.Settlement:
        self.batches.append(list(batch))
        return self.ledger.settle(batch, timestamp_ms)


def test_each_scenario_uses_its_engine_feature() -> None:
    sim = Simulation(SMALL)
    recorder = Recorder(sim.ledger)
    sim.settler = recorder
    result = sim.run()
    assert result.state_digest == Simulation(SMALL).run().state_digest  # the seam changes nothing
    decoded = [tb.decode(tx) for batch in recorder.batches[-13:-1] for tx in batch]
    payments = [d for d in decoded if d["kind"] == tb.Kind.TRANSFER]
    # Transit journeys: a hold at tap-in, a capture at tap-out, both naming the operator.
    taps = Counter(d["reference"].split(b"/")[0] for d in decoded if d["kind"] != tb.Kind.TRANSFER)
    assert taps[b"TAP-IN"] == taps[b"TAP-OUT"] > 0
    for d in decoded:
        if d["kind"] == tb.Kind.LOCK:
            assert d["reference"].startswith(b"TAP-IN/")
            terms = d["lock"]
            assert int(d["reference"].split(b"/")[1]) == terms["beneficiary"] == terms["releaser"]
            assert terms["deadline_capture_fen"] == d["outputs"][0][1] >= 100  # the hold
        elif d["kind"] == tb.Kind.CAPTURE:
            assert d["reference"].startswith(b"TAP-OUT/") and d["amount_fen"] > 0
    refs = Counter(d["reference"].split(b"/")[0] for d in payments)
    assert refs[b"UTIL"] > 0 and refs[b"SALARY"] > 0 and refs[b""] > 0
    for d in payments:
        payees = [owner for owner, _ in d["outputs"]]
        payer = d["signatures"][0][0]
        if d["reference"].startswith(b"UTIL/"):
            # a bill: reference UTIL/<payee>/<row>, paid to a utility (a corporate wallet)
            assert int(d["reference"].split(b"/")[1]) == payees[0]
            assert CORPORATE_BASE <= payees[0] < PERSON_BASE and payer >= PERSON_BASE
        elif d["reference"].startswith(b"SALARY/"):
            # a salary run: one employer, several employees in one transaction
            assert CORPORATE_BASE <= payer < PERSON_BASE
            assert len([p for p in payees if p >= PERSON_BASE]) >= 2
    # Every bill reference is unique.
    bills = [d["reference"] for d in payments if d["reference"].startswith(b"UTIL/")]
    assert len(set(bills)) == len(bills)


def digest(config: SimulationConfig) -> bytes:
    return Simulation(config).run().state_digest


def test_deterministic_for_a_seed_and_independent_of_threads(small: SimulationResult) -> None:
    assert digest(dataclasses.replace(SMALL, threads=1)) == small.state_digest
    assert digest(dataclasses.replace(SMALL, threads=2)) == small.state_digest
    assert digest(dataclasses.replace(SMALL, seed=12)) != small.state_digest


def test_transit_as_plain_payments_keeps_the_figures(small: SimulationResult) -> None:
    """``transit="payments"`` (the simulator before decision 0016): one plain payment per
    journey, the same counts and amounts, no locks; a different ledger (other transactions,
    other tokens)."""
    plain = Simulation(dataclasses.replace(SMALL, transit="payments")).run()
    assert plain.figures_match and plain.supply_ok
    assert plain.transit_locks == plain.transit_captures == plain.phases["transit"].submitted == 0
    assert plain.payments_amount_fen == small.payments_amount_fen
    assert plain.value_moved_fen == plain.phases["exchange"].paid_fen + plain.payments_amount_fen
    assert plain.content_digest != small.content_digest


def test_no_verify_settles_the_same(small: SimulationResult) -> None:
    assert digest(dataclasses.replace(SMALL, verify_signatures=False)) == small.state_digest


def test_progress_reports_every_unit() -> None:
    config = dataclasses.replace(SMALL, scale=0.02, batch_size=128)
    seen: dict[str, int] = {}

    def on_progress(phase: str, done: int) -> None:
        seen[phase] = seen.get(phase, 0) + done

    sim = Simulation(config, on_progress)
    sim.run()
    assert seen == sim.work_units()
    assert seen["payments"] == 800


def test_a_simulation_runs_once() -> None:
    sim = Simulation(dataclasses.replace(SMALL, scale=0.01))
    assert sim.run().supply_ok
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run()


def test_durable_run_passes_the_log_audit(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    config = dataclasses.replace(SMALL, scale=0.02, ledger_path=str(ledger))
    sim = Simulation(config)
    result = sim.run()
    sim.ledger.close()
    report = tb.verify_log(ledger)
    assert report.transactions == result.submitted
    assert report.transactions_ok == result.status_totals()[tb.Status.OK]
    assert report.outstanding_fen == result.outstanding_fen


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scale": 0}, "scale must be above 0"),
        ({"scale": 1.5}, "scale must be above 0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"batch_size": tb.BATCH_TX_COUNT_MAX}, "batch_size must be at most"),
        ({"threads": 1.5}, "threads must be an integer"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"transit": "bus"}, "transit must be one of holds, payments"),
    ],
)
def test_bad_config_is_refused(change: dict[str, object], message: str) -> None:
    config = dataclasses.replace(SMALL, **change)  # type: ignore[arg-type]
    with pytest.raises(tb.InvalidArgument, match=message):
        config.validate()
    with pytest.raises(tb.InvalidArgument):
        Simulation(config)


# -- the plan at full scale (no settlement) ------------------------------------------------------


@pytest.fixture(scope="module")
def chongqing_plan() -> tuple[Simulation, Any]:
    sim = Simulation(SimulationConfig(preset="chongqing-2022", scale=1.0))
    return sim, sim._make_plan()


def test_chongqing_plan_at_scale_1_is_the_pilot(chongqing_plan: tuple[Simulation, Any]) -> None:
    sim, plan = chongqing_plan
    preset = sim.preset
    assert len(plan.person_ids) == 1_066_600
    assert len(plan.corporate_ids) == 42_400
    assert len(plan.merchant_ids) >= 12_000
    assert len(plan.scenario) == 1_576_700
    assert int(plan.amount.sum()) == 28_800_000_000
    counts = np.bincount(plan.scenario, minlength=len(preset.scenarios))
    paid = np.zeros(len(preset.scenarios), dtype=np.int64)
    np.add.at(paid, plan.scenario, plan.amount)
    for i, sc in enumerate(preset.scenarios):
        assert (int(counts[i]), int(paid[i])) == (sc.transactions, sc.amount_fen), sc.name
        mine = plan.amount[(plan.scenario == i) & (plan.payee != -1)]
        assert (mine >= sc.amounts.min_fen).all() and (mine <= sc.amounts.max_fen).all()
    assert int(plan.payslip_amount.sum()) == next(
        sc.amount_fen for sc in preset.scenarios if sc.feature == "salary"
    )
    assert len({sc.name for sc in preset.scenarios}) == 11  # ten general scenarios + p2p


def test_chongqing_plan_respects_class_limits(chongqing_plan: tuple[Simulation, Any]) -> None:
    sim, plan = chongqing_plan
    limits = tb.load_limits()
    personal = plan.payer >= PERSON_BASE
    cls = np.ones(len(plan.payer), dtype=np.int64)
    cls[personal] = plan.person_class[plan.payer[personal] - PERSON_BASE]
    day = (plan.batch_ms + 8 * 3_600_000) // 86_400_000
    for c in (2, 3, 4):
        caps = limits.classes[c]
        mine = personal & (cls == c)
        assert caps.payment_cap_fen is not None and caps.daily_cap_fen is not None
        assert (plan.amount[mine] <= caps.payment_cap_fen).all()
        keys = plan.payer[mine] * 100_000 + day[mine]
        _, inverse = np.unique(keys, return_inverse=True)
        per_day = np.zeros(inverse.max() + 1, dtype=np.int64)
        np.add.at(per_day, inverse, plan.amount[mine])
        assert per_day.max() <= caps.daily_cap_fen
        # Openings fit under the balance cap and cover the planned spending.
        who = plan.person_class == c
        assert caps.balance_cap_fen is not None
        assert (plan.person_opening[who] <= caps.balance_cap_fen).all()
    out = np.zeros(len(plan.person_ids), dtype=np.int64)
    np.add.at(out, plan.payer[personal] - PERSON_BASE, plan.amount[personal])
    assert (plan.person_opening >= out).all()
    # Nothing is ever swept: opening plus everything received fits under each balance cap.
    incoming = np.zeros(len(plan.person_ids), dtype=np.int64)
    to_person = plan.payee >= PERSON_BASE
    np.add.at(incoming, plan.payee[to_person] - PERSON_BASE, plan.amount[to_person])
    np.add.at(incoming, plan.payslip_employee - PERSON_BASE, plan.payslip_amount)
    for c in (2, 3, 4):
        cap = limits.classes[c].balance_cap_fen
        assert cap is not None
        who = plan.person_class == c
        assert (plan.person_opening[who] + incoming[who] <= cap).all()
    p2p = [i for i, s in enumerate(sim.preset.scenarios) if s.feature == "p2p"]
    mask = np.isin(plan.scenario, p2p)
    assert (plan.payer[mask] != plan.payee[mask]).all()


# -- presets -------------------------------------------------------------------------------------


def test_shipped_presets_load_and_add_up() -> None:
    assert {"chongqing-2022", "small-city"} <= set(shipped_presets())
    for name in shipped_presets():
        preset = load_preset(name)
        assert sum(s.transactions for s in preset.scenarios) == preset.totals.transactions
        assert sum(s.amount_fen for s in preset.scenarios) == preset.totals.amount_fen
    cq = load_preset("chongqing-2022")
    assert (cq.totals.personal_wallets, cq.totals.corporate_wallets) == (1_066_600, 42_400)
    assert cq.totals.transactions == 1_576_700 and cq.totals.amount_fen == 28_800_000_000
    assert cq.totals.merchants > 12_000


@settings(max_examples=50, deadline=None)
@given(scale=st.floats(min_value=0.01, max_value=1.0))
def test_scaled_figures_add_up_at_any_scale(scale: float) -> None:
    preset = load_preset("chongqing-2022")
    f = scale_figures(preset, scale)
    assert sum(f.scenario_transactions) == f.transactions
    assert sum(f.scenario_amount_fen) == f.amount_fen
    assert abs(f.transactions - preset.totals.transactions * scale) <= 0.5 + 1e-6
    assert abs(f.amount_fen - preset.totals.amount_fen * scale) <= 0.5 + 1e-3


def test_scale_1_is_the_preset_itself() -> None:
    preset = load_preset("chongqing-2022")
    f = scale_figures(preset, 1.0)
    assert f.scenario_transactions == tuple(s.transactions for s in preset.scenarios)
    assert f.scenario_amount_fen == tuple(s.amount_fen for s in preset.scenarios)


@given(total=st.integers(0, 10**9), weights=st.lists(st.integers(0, 10**6), min_size=1))
def test_apportion_sums_exactly(total: int, weights: list[int]) -> None:
    if sum(weights) == 0:
        return
    parts = apportion(total, weights)
    assert sum(parts) == total and all(p >= 0 for p in parts)
    for p, w in zip(parts, weights, strict=True):
        assert abs(p - total * w / sum(weights)) < 1 + 1e-6


@settings(deadline=None)
@given(
    n=st.integers(1, 2_000),
    low=st.integers(1, 1_000),
    spread=st.integers(0, 100_000),
    where=st.floats(0.0, 1.0),
    sigma=st.floats(0.0, 3.0),
    seed=st.integers(0, 2**32),
)
def test_fit_total_is_exact_and_in_bounds(
    n: int, low: int, spread: int, where: float, sigma: float, seed: int
) -> None:
    high = low + spread
    total = n * low + round(where * n * spread)
    amounts = fit_total(np.random.default_rng(seed), n, total, sigma, low, high)
    assert amounts.dtype == np.int64 and len(amounts) == n
    assert int(amounts.sum()) == total
    assert int(amounts.min()) >= low and int(amounts.max()) <= high


def small_city_doc() -> dict[str, Any]:
    text = resources.files("tongbao").joinpath("data/presets/small-city.toml").read_text()
    return tomllib.loads(text)


def edit(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return doc


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("title", DELETE, "title: missing"),
        ("totals.transactions", 40_001, "totals.transactions: 40_001 but the scenarios"),
        ("totals.amount_fen", -1, "totals.amount_fen: must be an integer"),
        ("totals.merchants", "600", "totals.merchants: must be an integer"),
        ("personal.class_shares", [0.5, 0.5, 0.5], "personal.class_shares: needs 4 entries"),
        ("personal.sm2_share", 2, "personal.sm2_share: must be between 0.0 and 1.0"),
        ("personal.colour", "red", "personal.colour: unknown field"),
        ("operators.shares", [0.5, 0.6, 0.2], "operators.shares: shares between 0 and 1"),
        ("merchants.categories.0.mcc", 99_999, "merchants.categories[0].mcc"),
        ("scenario.0.feature", "teleport", "scenario[0].feature: must be one of"),
        ("scenario.0.payee_mcc", [1234], "scenario[0].payee_mcc: no merchant category"),
        ("scenario.0.amount.min_fen", 10**9, "scenario[0].amount.min_fen"),
        ("scenario.3.reference", DELETE, 'scenario[3].reference: feature "bill" needs'),
        ("scenario.4.payer", "personal", "scenario[4].payer_mcc: only corporate payers"),
        ("scenario.5.feature", "merchant", "scenario[5].feature: person-to-person payments use"),
        ("scenario.0.outputs_max", 3, 'scenario[0].outputs_max: only feature "salary"'),
        ("start", "yesterday", "start: must be a TOML date-time"),
    ],
)
def test_malformed_preset_is_refused_naming_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(tb.InvalidPreset, match=r"preset bad\.toml: ") as info:
        parse_preset(edit(small_city_doc(), path, value), "bad.toml")
    assert message in str(info.value)


def test_preset_file_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("name = \n")
    with pytest.raises(tb.InvalidPreset, match=f"preset {broken}: "):
        load_preset(broken)
    with pytest.raises(tb.InvalidPreset, match="no such shipped preset"):
        load_preset("atlantis")
    good = tmp_path / "mine.toml"
    good.write_text(resources.files("tongbao").joinpath("data/presets/small-city.toml").read_text())
    assert load_preset(good).name == "small-city"
    result = Simulation(SimulationConfig(preset=str(good), scale=0.01)).run()
    assert result.figures_match and result.supply_ok


def test_salary_runs_chain_and_refuse_what_they_cannot_fund() -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [5], tb.WalletKind.CORPORATE)
    ledger.open_wallets(keys, list(range(10, 20)), tb.WalletKind.PERSONAL)
    assert ledger.settle([tb.issue(keys, 1, [(2, 10_000)], 1_000)], 1_000).ok
    assert ledger.pay(keys, 2, 5, 6_000, 1_500).ok and ledger.pay(keys, 2, 5, 4_000, 1_500).ok
    assert len(ledger.unspent(5)) == 2
    runs = [
        SalaryRun(5, list(range(10, 15)), [1_000] * 5, b"PAY-1"),
        SalaryRun(5, list(range(15, 20)), [900] * 5, b"PAY-2"),
    ]
    txs = pay_salaries(ledger, keys, runs, 2_000)
    settlement = ledger.settle(txs, 2_000)
    assert settlement.ok
    assert ledger.balance(5) == 10_000 - 5_000 - 4_500
    assert tb.decode(txs[1])["reference"] == b"PAY-2"
    with pytest.raises(tb.InsufficientFunds):
        pay_salaries(ledger, keys, [SalaryRun(5, [10], [501], b"")], 3_000)
    with pytest.raises(tb.InvalidArgument):
        pay_salaries(ledger, keys, [SalaryRun(5, [10, 11], [1], b"")], 3_000)


def test_format_yuan_is_exact() -> None:
    assert format_yuan(0) == "0.00"
    assert format_yuan(1) == "0.01"
    assert format_yuan(123_456_789) == "1,234,567.89"
    assert format_yuan(2**64 - 1) == "184,467,440,737,095,516.15"
    assert format_yuan(-5) == "-0.05"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_full_chongqing_pilot_at_scale_1(tmp_path: Path) -> None:
    """The whole pilot, durable, then the auditor's replay (several minutes)."""
    ledger = tmp_path / "ledger"
    sim = Simulation(SimulationConfig(preset="chongqing-2022", ledger_path=str(ledger)))
    result = sim.run()
    sim.ledger.close()
    assert result.figures_match and result.supply_ok
    assert result.payments_settled == 1_576_700
    assert result.payments_amount_fen == 28_800_000_000
    report = tb.verify_log(ledger)
    assert report.transactions == result.submitted
    assert report.outstanding_fen == result.outstanding_fen
