"""A small world with one spending condition, shared by the programmable-money tests.

Wallets: central bank, one operator, a government issuer (corporate), two people, and
merchants inside and outside the condition's lists. Condition ``COND`` (issuer and reclaimer
``GOV``) allows categories 5812 (restaurants) and 5411 (groceries) in region 440300
(Shenzhen), spendable from ``START`` until before ``END``; not transferable, not redeemable.
"""

from __future__ import annotations

from dataclasses import dataclass

import tongbao as tb

T0 = 1_602_000_000_000  # 2020-10-07 00:00 +08:00 ... (a batch time before the window)
START = 1_602_432_000_000  # 2020-10-12 00:00:00 +08:00
END = 1_603_036_800_000  # 2020-10-19 00:00:00 +08:00 (the window is 12-18 October)
HOUR = 3_600_000

CB, OP, GOV, CORP = 1, 100, 500, 501
ALICE, BOB = 1001, 1002
FOOD, GROCER, CASINO, FAR_FOOD = 3001, 3002, 3003, 3004
SHENZHEN, BEIJING = 440300, 110000
COND = 2020
AMOUNT = 20_000  # ¥200


@dataclass
class CondWorld:
    ledger: tb.Ledger
    keys: tb.Keyring

    def earmarked(self, wallet: int) -> list[tuple[bytes, int]]:
        tokens = self.ledger.unspent(wallet)
        marks = self.ledger.earmarks([t for t, _ in tokens])
        return [tv for tv, m in zip(tokens, marks, strict=True) if m]

    def free(self, wallet: int) -> list[tuple[bytes, int]]:
        tokens = self.ledger.unspent(wallet)
        marks = self.ledger.earmarks([t for t, _ in tokens])
        return [tv for tv, m in zip(tokens, marks, strict=True) if not m]

    def settle_one(self, tx: bytes, timestamp_ms: int) -> tb.Status:
        return tb.Status(int(self.ledger.settle([tx], timestamp_ms).statuses[0]))


def make_world(
    not_transferable: bool = True,
    not_redeemable: bool = True,
    recipients: tuple[int, ...] = (ALICE, BOB),
) -> CondWorld:
    """The world, with the condition defined and ``AMOUNT`` earmarked to each recipient at T0."""
    ledger = tb.Ledger(threads=1)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OP], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [GOV, CORP], tb.WalletKind.CORPORATE, operator=OP)
    ledger.open_wallets(keys, [ALICE, BOB], tb.WalletKind.PERSONAL, operator=OP)
    for wallet, mcc, region in [
        (FOOD, 5812, SHENZHEN),
        (GROCER, 5411, SHENZHEN),
        (CASINO, 7995, SHENZHEN),
        (FAR_FOOD, 5812, BEIJING),
    ]:
        ledger.open_wallets(
            keys, [wallet], tb.WalletKind.MERCHANT, operator=OP, mcc=mcc, region=region
        )
    assert ledger.settle([tb.issue(keys, CB, [(OP, 10_000_000)], T0)], T0).ok
    pay, _ = ledger.build_payments(
        keys, [OP] * 4, [GOV, ALICE, BOB, CORP], [1_000_000, 50_000, 50_000, 50_000], T0
    )
    assert ledger.settle(pay, T0).ok
    define = tb.define_condition(
        keys,
        COND,
        issuer=GOV,
        reclaimer=GOV,
        not_before_ms=START,
        valid_until_ms=END,
        timestamp_ms=T0,
        mccs=[5812, 5411],
        regions=[SHENZHEN],
        not_transferable=not_transferable,
        not_redeemable=not_redeemable,
    )
    world = CondWorld(ledger, keys)
    assert world.settle_one(define, T0) == tb.Status.OK
    if recipients:
        ((token, value),) = world.free(GOV)
        earmark = tb.transfer(
            keys,
            [token],
            [(r, AMOUNT, COND) for r in recipients] + [(GOV, value - AMOUNT * len(recipients))],
            [GOV],
            T0,
        )
        assert world.settle_one(earmark, T0) == tb.Status.OK
    ledger.check_invariants()
    return world
