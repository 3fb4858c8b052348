"""The simulation engine behind ``tongbao simulate`` (python/tongbao/simulate.py)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from rich.console import Console

import tongbao as tb
from tongbao.simulate import (
    PERSON_BASE,
    Simulation,
    SimulationConfig,
    SimulationResult,
    format_yuan,
    summary_tables,
)

SMALL = SimulationConfig(
    seed=11, wallets=150, merchants=20, operators=3, transactions=1_500, batch_size=400
)


@pytest.fixture(scope="module")
def small() -> SimulationResult:
    return Simulation(SMALL).run()


def test_statuses_account_for_every_submitted_transaction(small: SimulationResult) -> None:
    totals = small.status_totals()
    assert sum(totals.values()) == small.submitted
    for phase in small.phases.values():
        assert sum(phase.status_counts.values()) == phase.submitted
    pay = small.phases["payments"]
    # Every built payment plus every mixed-in bad transaction was submitted.
    assert pay.submitted == (
        small.payments_requested
        - small.payments_skipped
        + small.resubmissions
        + small.double_spends
    )


def test_engine_rejects_exactly_the_bad_transactions(small: SimulationResult) -> None:
    totals = small.status_totals()
    assert small.resubmissions > 0 and small.double_spends > 0
    assert totals[tb.Status.ALREADY_SETTLED] == small.resubmissions
    assert totals[tb.Status.INPUT_SPENT] == small.double_spends
    assert totals[tb.Status.OK] == small.submitted - small.resubmissions - small.double_spends
    for phase in ("issue", "funding", "redemption"):
        stats = small.phases[phase]
        assert stats.status_counts == {tb.Status.OK: stats.submitted}


def test_supply_is_conserved(small: SimulationResult) -> None:
    assert small.supply_ok
    assert small.invariant_error is None
    assert small.issued_fen - small.redeemed_fen == small.outstanding_fen == small.balances_fen
    assert small.redeemed_fen > 0
    assert small.phases["funding"].paid_fen > 0
    assert 0 < small.phases["payments"].paid_fen <= small.phases["payments"].value_moved_fen


def test_json_summary_is_plain_data(small: SimulationResult) -> None:
    d = small.to_dict()
    assert sum(d["statuses"].values()) == d["transactions"]["submitted"]
    assert d["supply"]["ok"] is True
    assert d["wallets"]["personal"]["sm2"] == round(SMALL.wallets * SMALL.sm2_share)
    assert d["config"]["seed"] == SMALL.seed
    assert len(d["state_digest"]) == 64
    assert all(isinstance(v, int) for k, v in d["supply"].items() if k.endswith("_fen"))
    assert d["timing"]["engine_tx_per_s"] > 0


def test_summary_tables_render(small: SimulationResult) -> None:
    console = Console(width=100, record=True, file=io.StringIO())
    for table in summary_tables(small):
        console.print(table)
    text = console.export_text()
    assert "ALREADY_SETTLED" in text and "INPUT_SPENT" in text
    assert small.state_digest.hex()[:16] in text
    assert format_yuan(small.balances_fen) in text


def digest(config: SimulationConfig) -> bytes:
    return Simulation(config).run().state_digest


def test_deterministic_for_a_seed_and_independent_of_threads(small: SimulationResult) -> None:
    assert digest(dataclasses.replace(SMALL, threads=1)) == small.state_digest
    assert digest(dataclasses.replace(SMALL, threads=2)) == small.state_digest
    assert digest(dataclasses.replace(SMALL, seed=12)) != small.state_digest


def test_no_verify_settles_the_same(small: SimulationResult) -> None:
    assert digest(dataclasses.replace(SMALL, verify_signatures=False)) == small.state_digest


def test_progress_reports_every_unit() -> None:
    config = dataclasses.replace(SMALL, transactions=300, batch_size=128)
    seen: dict[str, int] = {}

    def on_progress(phase: str, done: int) -> None:
        seen[phase] = seen.get(phase, 0) + done

    sim = Simulation(config, on_progress)
    sim.run()
    assert seen == {"funding": config.wallets, "payments": config.transactions}
    assert sum(seen.values()) == sim.work_units()


def test_edge_sizes() -> None:
    one = Simulation(
        SimulationConfig(wallets=1, merchants=1, operators=1, transactions=5, batch_size=1)
    ).run()
    assert one.supply_ok
    assert one.phases["payments"].batches >= 1
    nothing = Simulation(SimulationConfig(wallets=3, merchants=1, transactions=0)).run()
    assert nothing.supply_ok and nothing.phases["payments"].submitted == 0
    all_sm2 = Simulation(
        SimulationConfig(wallets=20, merchants=2, transactions=50, sm2_share=1.0)
    ).run()
    assert all_sm2.wallets["personal"] == {"ed25519": 0, "sm2": 20}
    assert all_sm2.status_totals()[tb.Status.OK] > 0


def test_person_to_person_payments_never_pay_oneself() -> None:
    config = dataclasses.replace(SMALL, p2p_share=1.0, transactions=400)
    sim = Simulation(config)
    person_p = np.full(config.wallets, 1.0 / config.wallets)
    merchant_p = np.full(config.merchants, 1.0 / config.merchants)
    payers, payees, amounts = sim._draw_payments(2_000, person_p, merchant_p)
    assert (payers != payees).all()
    assert (payees >= PERSON_BASE).all()
    assert amounts.dtype == np.int64 and (amounts >= config.retail_min_fen).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"wallets": 0}, "wallets must be an integer >= 1"),
        ({"transactions": -1}, "transactions must be an integer >= 0"),
        ({"batch_size": tb.BATCH_TX_COUNT_MAX + 1}, "batch_size must be at most"),
        ({"sm2_share": 1.5}, "sm2_share must be between 0 and 1"),
        ({"threads": 1.5}, "threads must be an integer"),
        ({"retail_median_fen": 50}, "retail_min_fen <= retail_median_fen"),
        ({"resubmit_share": 0.3, "double_spend_share": 0.3}, "below 0.5"),
    ],
)
def test_bad_config_is_refused(change: dict[str, object], message: str) -> None:
    config = dataclasses.replace(SimulationConfig(), **change)  # type: ignore[arg-type]
    with pytest.raises(tb.InvalidArgument, match=message):
        config.validate()
    with pytest.raises(tb.InvalidArgument):
        Simulation(config)


def test_format_yuan_is_exact() -> None:
    assert format_yuan(0) == "0.00"
    assert format_yuan(1) == "0.01"
    assert format_yuan(100) == "1.00"
    assert format_yuan(123_456_789) == "1,234,567.89"
    assert format_yuan(2**64 - 1) == "184,467,440,737,095,516.15"
    assert format_yuan(-5) == "-0.05"


def test_a_simulation_runs_once() -> None:
    sim = Simulation(SimulationConfig(wallets=5, merchants=2, transactions=10))
    assert sim.run().supply_ok
    with pytest.raises(RuntimeError, match="runs once"):
        sim.run()


def test_engine_receipts_count_exactly_the_value_paid(small: SimulationResult) -> None:
    """The receipts' value moved (change excluded) equals what the simulator paid."""
    paid = sum(phase.paid_fen for phase in small.phases.values())
    assert small.value_moved_fen == paid > 0
