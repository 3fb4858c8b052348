"""Each programmable-money status (30-34, ``docs/status-codes.md``) produced through the Python
API; a refused transaction changes nothing (state digest unchanged but for the receipt chain,
checked by the unchanged balances, earmarks and condition totals)."""

from __future__ import annotations

from collections.abc import Callable

import tongbao as tb
from condition_world import (
    ALICE,
    AMOUNT,
    BOB,
    CASINO,
    COND,
    END,
    FAR_FOOD,
    FOOD,
    GOV,
    HOUR,
    OP,
    START,
    T0,
    CondWorld,
    make_world,
)
from tongbao import Status


def _state(world: CondWorld) -> tuple[object, ...]:
    ledger = world.ledger
    wallets = (GOV, ALICE, BOB, FOOD, CASINO, FAR_FOOD, OP)
    return (
        tuple(sorted(ledger.unspent(w)) for w in wallets),
        tuple(ledger.earmarks([t for w in wallets for t, _ in ledger.unspent(w)])),
        ledger.condition(COND),
        ledger.supply(),
    )


def refused(world: CondWorld, tx: bytes, at_ms: int, status: Status) -> None:
    before = _state(world)
    assert world.settle_one(tx, at_ms) == status
    assert _state(world) == before
    world.ledger.check_invariants()


def alice_pays(world: CondWorld, outputs: list[tuple[int, ...]], at_ms: int) -> bytes:
    ((token, _),) = world.earmarked(ALICE)
    return tb.transfer(world.keys, [token], outputs, [ALICE], at_ms)  # type: ignore[arg-type]


def test_condition_failed() -> None:
    world = make_world()
    # A merchant outside the categories, one outside the region, and laundering to free change.
    for outputs in (
        [(CASINO, AMOUNT)],
        [(FAR_FOOD, AMOUNT)],
        [(FOOD, 5_000), (ALICE, AMOUNT - 5_000)],
    ):
        refused(world, alice_pays(world, outputs, START), START, Status.CONDITION_FAILED)


def test_condition_not_transferable() -> None:
    world = make_world()
    refused(
        world, alice_pays(world, [(BOB, AMOUNT)], START), START, Status.CONDITION_NOT_TRANSFERABLE
    )
    refused(
        world,
        alice_pays(world, [(BOB, AMOUNT, COND)], START),
        START,
        Status.CONDITION_NOT_TRANSFERABLE,
    )


def test_condition_not_redeemable() -> None:
    world = make_world()
    refused(world, alice_pays(world, [(OP, AMOUNT)], START), START, Status.CONDITION_NOT_REDEEMABLE)


def test_condition_window() -> None:
    world = make_world()
    refused(
        world, alice_pays(world, [(FOOD, AMOUNT)], START - 1), START - 1, Status.CONDITION_WINDOW
    )
    # A reclaim before the end of the window.
    ((token, value),) = world.earmarked(ALICE)
    early = tb.reclaim(world.keys, GOV, [token], value, END - 1)
    refused(world, early, END - 1, Status.CONDITION_WINDOW)
    refused(world, alice_pays(world, [(FOOD, AMOUNT)], END), END, Status.CONDITION_WINDOW)


def test_condition_invalid() -> None:
    world = make_world()
    ((token, value),) = world.free(ALICE)
    # An output earmarked under a condition nobody defined.
    unknown = tb.transfer(world.keys, [token], [(BOB, value, 999)], [ALICE], T0 + HOUR)
    refused(world, unknown, T0 + HOUR, Status.CONDITION_INVALID)
    # A condition id defined twice.
    again = tb.define_condition(
        world.keys,
        COND,
        issuer=GOV,
        reclaimer=GOV,
        not_before_ms=0,
        valid_until_ms=1,
        timestamp_ms=T0 + HOUR,
    )
    refused(world, again, T0 + HOUR, Status.CONDITION_INVALID)


CONDITION_STATUS_TESTS: dict[Status, Callable[[], None]] = {
    Status.CONDITION_FAILED: test_condition_failed,
    Status.CONDITION_NOT_TRANSFERABLE: test_condition_not_transferable,
    Status.CONDITION_NOT_REDEEMABLE: test_condition_not_redeemable,
    Status.CONDITION_WINDOW: test_condition_window,
    Status.CONDITION_INVALID: test_condition_invalid,
}
