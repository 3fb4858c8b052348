"""Where locks meet spending conditions: earmarked value cannot be locked (a capture would pay
it out past its condition), free value of the same wallet can, and a lock cannot carry an
earmark."""

from __future__ import annotations

import pytest

import tongbao as tb
from condition_world import ALICE, CASINO, FOOD, START, make_world
from tongbao import Status


def test_earmarked_tokens_cannot_be_locked_but_free_ones_can() -> None:
    world = make_world()
    ((e_token, e_value),) = world.earmarked(ALICE)
    before = world.ledger.content_digest()
    lock = tb.lock(
        world.keys,
        ALICE,
        [e_token],
        e_value,
        beneficiary=CASINO,
        releaser=CASINO,
        deadline_ms=START + 3_600_000,
        deadline_capture_fen=e_value,
        timestamp_ms=START,
    )
    assert world.settle_one(lock, START) == Status.CONDITION_FAILED
    assert world.ledger.lock_count == 0
    assert world.earmarked(ALICE) == [(e_token, e_value)]
    assert world.ledger.content_digest() == before  # nothing but the receipt chain moved
    world.ledger.check_invariants()

    ((f_token, f_value),) = world.free(ALICE)
    lock = tb.lock(
        world.keys,
        ALICE,
        [f_token],
        f_value,
        beneficiary=FOOD,
        releaser=FOOD,
        deadline_ms=START + 3_600_000,
        deadline_capture_fen=0,
        timestamp_ms=START,
    )
    assert world.settle_one(lock, START) == Status.OK
    assert world.ledger.held_fen(ALICE) == f_value
    assert world.earmarked(ALICE) == [(e_token, e_value)]
    world.ledger.check_invariants()


def test_a_lock_output_cannot_carry_an_earmark() -> None:
    """Locks are format version 3, whose outputs are plain: an earmark tag there is malformed."""
    world = make_world()
    ((f_token, f_value),) = world.free(ALICE)
    lock = tb.lock(
        world.keys,
        ALICE,
        [f_token],
        f_value,
        beneficiary=FOOD,
        releaser=FOOD,
        deadline_ms=START + 3_600_000,
        deadline_capture_fen=0,
        timestamp_ms=START,
    )
    body = bytearray(lock)
    # Output 0's condition tag: header 18 + n_inputs 2 + 32 + n_outputs 2 + owner 8 + amount 8.
    tag = 18 + 2 + 32 + 2 + 16
    assert body[tag] == 0
    body[tag] = 1
    with pytest.raises(tb.MalformedTransaction) as err:
        tb.decode(bytes(body))
    assert err.value.field == "outputs.condition"
    assert world.settle_one(bytes(body), START) == Status.MALFORMED


def test_builders_pick_free_tokens_around_earmarked_ones() -> None:
    """``Ledger.spendable`` leaves out earmarked (and locked) tokens, so a built lock or payment
    never picks an earmarked token, even when it is the best fit (review finding)."""
    world = make_world()
    ((e_token, e_value),) = world.earmarked(ALICE)
    free = world.free(ALICE)
    assert world.ledger.spendable(ALICE) == free
    amount = e_value - 5_000  # the earmarked token would be the smallest token covering it
    assert all(value > e_value for _, value in free)
    lock = world.ledger.build_lock(
        world.keys, ALICE, amount, FOOD, FOOD, START + 3_600_000, 0, START
    )
    assert tb.decode(lock)["inputs"] != [e_token]
    assert world.settle_one(lock, START) == Status.OK
    assert world.ledger.held_fen(ALICE) == amount
    assert world.earmarked(ALICE) == [(e_token, e_value)]
    world.ledger.check_invariants()
