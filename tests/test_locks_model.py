"""Differential property tests of locks: the Rust ledger against the reference model
(tests/model.py), which has its own decoder and its own lock rules.

Hypothesis draws random interleavings, over several batches whose clock moves past deadlines,
of locks, final and partial captures, releases (by the right and the wrong signers), transfers
(some spending locked tokens), resubmissions and captures of lapsed or spent locks, with or
without wallet limits (caps on the payer, balance caps with sweep or reject on the
beneficiary). After every batch: the same statuses, the same state digest (tokens, locks,
counters), the same held value per wallet, and supply conserved (issued − redeemed =
outstanding = Σ balances, held value included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import tongbao as tb
from model import CENTRAL_BANK, ED25519, MERCHANT, OPERATOR, PERSONAL, REJECT, SWEEP, Model

T = TypeVar("T")
T0 = 1_767_196_800_000 - 3_600_000  # an hour before 2026 in Shanghai: day and year roll over
HOUR = 3_600_000
CB, OP = 1, 10
PERSONS = [100, 101, 102, 103]
MERCHANTS = [500, 501]  # 500 has a linked account (sweepable), 501 not
ARBITER = 600
EVERYONE = [CB, OP, *PERSONS, *MERCHANTS, ARBITER]
KEYRING = tb.Keyring()
KEYRING.generate(EVERYONE, tb.Scheme.ED25519, b"locks-model")
STEPS = [0, 1, 700, 2_000, 10_000, 60_000, HOUR]
DEADLINE_LEADS = [0, 1, 500, 1_000, 5_000, 30_000, 2 * HOUR]


class World:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.ledger = tb.Ledger(threads=1)
        self.model = Model()
        self.now = T0
        self.built: list[bytes] = []  # every transaction built so far (for resubmissions)
        caps = self.pick(["none", "sweep", "reject"])
        note(f"limits: {caps}")
        for ids, kind, klass, linked in (
            ([CB], CENTRAL_BANK, 1, False),
            ([OP], OPERATOR, 1, False),
            ([*PERSONS, ARBITER], PERSONAL, 4 if caps != "none" else 1, False),
            ([500], MERCHANT, 4 if caps != "none" else 1, True),
            ([501], MERCHANT, 4 if caps != "none" else 1, False),
        ):
            operator = 0 if kind in (CENTRAL_BANK,) else OP
            keys = [KEYRING.public_key(w) for w in ids]
            self.ledger.register_wallets(
                ids, kind, keys, wallet_class=klass, operator=operator, linked_account=linked
            )
            for w, key in zip(ids, keys, strict=True):
                self.model.register(
                    w,
                    kind,
                    ED25519,
                    key,
                    wallet_class=klass,
                    operator=operator,
                    linked_account=linked,
                )
        if caps != "none":
            class4 = {"balance_cap_fen": 30_000, "payment_cap_fen": 4_000, "daily_cap_fen": 9_000}
            limits = tb.parse_limits(
                {
                    "version": "locks-model",
                    "over_balance_cap": caps,
                    "class": {"1": {}, "2": {}, "3": {}, "4": class4},
                }
            )
            self.ledger.set_limits(limits)
            rows = [limits.classes[c].row() for c in (1, 2, 3, 4)] + [limits.sub_wallet.row()]
            self.model.set_limits(limits.version, SWEEP if caps == "sweep" else REJECT, rows)
        self.batch: list[bytes] = [self.sign(tb.encode(tb.Kind.ISSUE, [], [(OP, 10**8)], T0), CB)]
        self.settle()
        pays = [(p, 6_000) for p in PERSONS for _ in range(3)]
        body = tb.encode(
            tb.Kind.TRANSFER,
            [t for t, _ in self.model.unspent_of(OP)],
            [*pays, (OP, 10**8 - 6_000 * len(pays))],
            T0,
        )
        self.batch = [self.sign(body, OP)]
        self.settle()

    # -- draws -----------------------------------------------------------------------------

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def chance(self, one_in: int) -> bool:
        return self.data.draw(st.integers(0, one_in - 1)) == 0

    def sign(self, body: bytes, signer: int) -> bytes:
        return KEYRING.sign([body], [[signer]])[0]

    # -- the model's view (the model settles each transaction as it is built) ---------------

    def free_tokens(self, wallet: int) -> list[tuple[bytes, int]]:
        return [(t, v) for t, v in self.model.unspent_of(wallet) if t not in self.model.locks]

    def add(self, tx: bytes) -> None:
        status = self.model.settle_one(tx, self.now)
        outcome = f"{tb.Kind(tb.decode(tx)['kind']).name}: {tb.Status(status).name}"
        note(f"  {outcome}")
        event(outcome)
        self.expected.append(status)
        self.batch.append(tx)
        self.built.append(tx)

    # -- operations --------------------------------------------------------------------------

    def op_lock(self) -> None:
        payer = self.pick(PERSONS)
        free = self.free_tokens(payer)
        if not free:
            return
        chosen = [self.pick(free)] if self.chance(2) else free[: self.integer(1, len(free))]
        if self.chance(8) and self.model.locks:
            chosen.append((self.pick(sorted(self.model.locks)), 0))  # a locked input
        total = sum(v for _, v in chosen)
        amount = self.integer(1, max(1, total))
        change = max(0, total - amount) + (1 if self.chance(10) else 0)  # or VALUE_MISMATCH
        beneficiary = self.pick([*MERCHANTS, *PERSONS])
        releaser = self.pick([beneficiary, beneficiary, ARBITER, payer])
        deadline = self.now + self.pick(DEADLINE_LEADS)
        dcap = self.pick([0, amount, self.integer(0, amount)])
        body = tb.encode_lock(
            payer,
            [t for t, _ in chosen],
            amount,
            beneficiary,
            releaser,
            deadline,
            dcap,
            self.now,
            change_fen=change,
        )
        self.add(self.sign(body, payer))

    def some_lock_token(self) -> tuple[bytes, int] | None:
        """A token to capture or release, and its payer: mostly a live lock, sometimes a lapsed
        or spent one, a free token, or an unknown id."""
        live = sorted(self.model.locks)
        r = self.integer(0, 9)
        if live and r < 7:
            t = self.pick(live)
            return t, self.model.locks[t][0]
        if r == 7 and self.model.lapsed:
            return self.pick(sorted(self.model.lapsed)), self.pick(PERSONS)
        if r == 8:
            p = self.pick(PERSONS)
            free = self.free_tokens(p)
            return (self.pick(free)[0], p) if free else None
        return bytes([self.integer(0, 255)]) * 32, self.pick(PERSONS)

    def op_capture(self) -> None:
        found = self.some_lock_token()
        if found is None:
            return
        token, payer = found
        lock = self.model.locks.get(token)
        value = self.model.unspent[token][1] if token in self.model.unspent else 1
        releaser = lock[2] if lock else ARBITER
        signer = releaser if not self.chance(6) else self.pick(EVERYONE)
        if self.chance(10):
            payer = self.pick(PERSONS)
        amount = self.pick([1, value, self.integer(1, max(1, value)), value + 1])
        keep = self.chance(2)
        self.add(tb.capture(KEYRING, signer, token, payer, amount, keep, self.now))

    def op_release(self) -> None:
        found = self.some_lock_token()
        if found is None:
            return
        token, payer = found
        lock = self.model.locks.get(token)
        options = [lock[1], lock[2]] if lock else [ARBITER]
        signer = self.pick(options) if not self.chance(5) else self.pick(EVERYONE)
        self.add(tb.release(KEYRING, signer, token, payer, self.now))

    def op_transfer(self) -> None:
        payer = self.pick(PERSONS)
        tokens = self.model.unspent_of(payer)
        if not tokens:
            return
        # Any token of the payer: locked ones must be refused (INPUT_LOCKED).
        token, value = self.pick(tokens)
        payee = self.pick([*MERCHANTS, *PERSONS])
        amount = self.integer(1, value)
        outputs = [(payee, amount)] + ([(payer, value - amount)] if value > amount else [])
        self.add(self.sign(tb.encode(tb.Kind.TRANSFER, [token], outputs, self.now), payer))

    def op_resubmit(self) -> None:
        if self.built:
            self.add(self.pick(self.built))

    # -- batches -----------------------------------------------------------------------------

    def settle(self) -> None:
        got = self.ledger.settle(self.batch, self.now).statuses.tolist()
        if hasattr(self, "expected"):
            assert got == self.expected
        else:
            assert got == self.model.settle(self.batch, self.now)
        self.check()

    def check(self) -> None:
        ledger, model = self.ledger, self.model
        assert ledger.state_digest() == model.state_digest(ledger.last_receipt_hash)
        for w in EVERYONE:
            assert ledger.held_fen(w) == model.held(w)
            assert ledger.balance(w) == model.balance(w)
        supply = ledger.supply()
        assert supply.issued_fen - supply.redeemed_fen == supply.outstanding_fen
        assert supply.outstanding_fen == sum(ledger.balance(w) for w in EVERYONE)
        assert ledger.lock_count == len(model.locks)
        ledger.check_invariants()

    def run_batch(self) -> None:
        self.now += self.pick(STEPS)
        note(f"batch at +{self.now - T0} ms")
        self.model.begin_batch(self.now)
        self.batch, self.expected = [], []
        ops = [self.op_lock] * 3 + [self.op_capture] * 3 + [self.op_release, self.op_transfer]
        for _ in range(self.integer(0, 6)):
            if self.chance(12):
                self.op_resubmit()
            else:
                self.pick(ops)()
        self.settle()


@given(st.data())
@settings(deadline=None)
def test_locks_match_the_model(data: st.DataObject) -> None:
    world = World(data)
    for _ in range(data.draw(st.integers(1, 8))):
        world.run_batch()
    # Far past every deadline: every lock has lapsed, all value is free again.
    world.now += 10 * HOUR
    world.model.begin_batch(world.now)
    world.batch, world.expected = [], []
    world.settle()
    assert world.ledger.lock_count == 0
