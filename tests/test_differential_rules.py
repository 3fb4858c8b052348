"""Differential tests of the wallet rules (docs/wallet-rules.md): the Rust ledger against the
reference model (tests/model.py).

Hypothesis draws worlds (classes 1-4, sub-wallets, linked and unlinked deposit accounts,
customers of an operator that may close, no limits, the shipped limits or random tight ones,
either over-cap policy) and runs batches whose timestamps straddle Shanghai midnights and New
Year. Payments aim at every cap (one fen below it, at it, one fen above), multi-payer transfers
mix sub-wallets with their parents, operators fund customers over their balance caps (sweeps)
and redeem; wallets are frozen, unfrozen, reclassified and closed and limits change between
batches. After every batch statuses, balances, tokens, supply, attributes, counters, receipts
and the state digest must agree, and every rejection by a rule must leave the state untouched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

import tongbao as tb
from model import (
    CENTRAL_BANK,
    CLOSE,
    CLOSED,
    CORPORATE,
    ED25519,
    FREEZE,
    MERCHANT,
    OPERATOR,
    PERSONAL,
    REJECT,
    RULE_STATUSES,
    SET_CLASS,
    SWEEP,
    UNFREEZE,
    Model,
    ModelError,
    S,
    shanghai_day_year,
)

T = TypeVar("T")

CB = 1
OPERATORS = [100, 101, 102]
FUNDED_OPERATORS = [100, 101]  # 102 gets no issue: it can be closed under its customers
CUSTOMERS = list(range(1001, 1011))
WALLET_IDS = [CB, *OPERATORS, *CUSTOMERS]
NEWCOMERS = [1100, 1101]  # keyed, registered only by the registration test
UNKNOWN = 9999

KEYRING = tb.Keyring()
_KEYED = WALLET_IDS + NEWCOMERS
PUBLIC_KEYS = dict(zip(_KEYED, KEYRING.generate(_KEYED, ED25519, b"wallet-rules"), strict=True))

HOUR = 3_600_000
DAY = 24 * HOUR
SHANGHAI_OFFSET_MS = 8 * HOUR
NEW_YEAR_2026 = 1_767_196_800_000  # 2025-12-31T16:00:00Z: 2026-01-01 00:00 in Shanghai
NEW_YEAR_2025 = 1_735_660_800_000  # 2024-12-31T16:00:00Z: 2025-01-01 00:00 in Shanghai
LEAP_DAY_2024 = 1_709_136_000_000  # 2024-02-28T16:00:00Z: 2024-02-29 00:00 in Shanghai
LEADS = [0, 1, 1_000, HOUR, 8 * HOUR, 16 * HOUR, DAY - 1, DAY + HOUR]
CORE_ERRORS = (tb.InvalidArgument, tb.UnknownWallet, tb.DuplicateWallet)


def rows_of(limits: tb.Limits) -> list[tuple[int | None, ...]]:
    return [limits.classes[c].row() for c in (1, 2, 3, 4)] + [limits.sub_wallet.row()]


class World:
    """A ledger and the model side by side; draws operations from hypothesis. The model settles
    each transaction as it is built (so the next one is built against the true state), the
    ledger settles the batch at the end."""

    def __init__(self, data: st.DataObject, ledger: tb.Ledger, model: Model) -> None:
        self.data = data
        self.ledger = ledger
        self.model = model
        self.now = self.pick([NEW_YEAR_2026, NEW_YEAR_2025, LEAP_DAY_2024]) - self.pick(LEADS)
        self.batch: list[bytes] = []
        self.expected: list[int] = []
        self.register_cast()
        self.install_limits(self.draw_limits())
        self.begin()
        outputs = [(op, 10**10) for op in FUNDED_OPERATORS]
        body = tb.encode(tb.Kind.ISSUE, [], outputs, self.now, self.now + HOUR)
        self.add(KEYRING.sign([body], [[CB]])[0])
        self.settle()

    # -- draws -----------------------------------------------------------------------------

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def chance(self, n: int) -> bool:
        """True one time in ``n``."""
        return self.integer(1, n) == 1

    # -- the world -------------------------------------------------------------------------

    def register_cast(self) -> None:
        # (id, kind, class, operator, parent, mcc, region, linked account)
        specs: list[tuple[int, int, int, int, int, int, int, bool]] = [
            (CB, CENTRAL_BANK, 1, 0, 0, 0, 0, False)
        ]
        for op in OPERATORS:
            specs.append((op, OPERATOR, 1, self.pick([0, op]), 0, 0, self.integer(0, 3), False))
        for c in CUSTOMERS:
            parents = [s[0] for s in specs if s[0] in CUSTOMERS and s[1] != MERCHANT and not s[4]]
            if parents and self.chance(3):
                parent = self.pick(parents)
                kind = self.pick([PERSONAL, CORPORATE])
                operator = next(s[3] for s in specs if s[0] == parent)
            else:
                parent = 0
                kind = self.pick([PERSONAL, PERSONAL, PERSONAL, CORPORATE, MERCHANT])
                operator = self.pick([100, 100, 101, 102, 0])
            wallet_class = self.pick([1, 2, 3, 3, 4, 4])
            mcc = 5411 if kind == MERCHANT else 0
            linked = self.pick([True, True, True, False])
            specs.append((c, kind, wallet_class, operator, parent, mcc, self.integer(0, 3), linked))
        note(f"wallets: {specs}")
        split = self.integer(1, len(specs))  # in one or two calls (a parent in the same call)
        for chunk in (specs[:split], specs[split:]):
            if chunk:
                columns = list(zip(*chunk, strict=True))
                self.ledger.register_wallets(
                    list(columns[0]),
                    list(columns[1]),
                    [PUBLIC_KEYS[w] for w in columns[0]],
                    ED25519,
                    wallet_class=list(columns[2]),
                    operator=list(columns[3]),
                    parent=list(columns[4]),
                    mcc=list(columns[5]),
                    region=list(columns[6]),
                    linked_account=list(columns[7]),
                )
        for w, kind, wallet_class, operator, parent, mcc, region, linked in specs:
            self.model.register(
                w,
                kind,
                ED25519,
                PUBLIC_KEYS[w],
                wallet_class=wallet_class,
                operator=operator,
                parent=parent,
                mcc=mcc,
                region=region,
                linked_account=linked,
            )

    def random_caps(self) -> dict[str, int]:
        scale = self.pick([1_000, 20_000, 300_000])
        flows = sorted(self.integer(1, 4 * scale) for _ in range(3))
        if self.chance(3):  # an annual cap a day or two of spending away
            flows[2] = flows[1] * self.pick([1, 2])
        caps = {}
        for name, value in zip(("payment", "daily", "annual"), flows, strict=True):
            if not self.chance(4):
                caps[f"{name}_cap_fen"] = value
        if not self.chance(4):
            caps["balance_cap_fen"] = self.integer(1, 8 * scale)
        return caps

    def draw_limits(self) -> tb.Limits | None:
        how = self.pick(["none", "default", "default", "random", "random", "random"])
        over = self.pick(["sweep", "sweep", "reject"])
        if how == "none":
            return None
        if how == "default":
            return dataclasses.replace(tb.load_limits(), over_balance_cap=over)
        doc = {
            "version": f"random-{self.integer(0, 99)}",
            "over_balance_cap": over,
            "class": {"1": {}, "2": self.random_caps(), "3": self.random_caps()},
            "sub_wallet": self.random_caps(),
        }
        doc["class"]["4"] = self.random_caps()
        return tb.parse_limits(doc)

    def install_limits(self, limits: tb.Limits | None) -> None:
        note(f"limits: {limits}")
        if limits is None:
            return
        self.ledger.set_limits(limits)
        over = SWEEP if limits.over_balance_cap == "sweep" else REJECT
        self.model.set_limits(limits.version, over, rows_of(limits))

    # -- building transactions ---------------------------------------------------------------

    def signed(
        self, kind: tb.Kind, inputs: list[bytes], outputs: list[tuple[int, int]], signers: list[int]
    ) -> bytes:
        # The transaction's own timestamp may be on another Shanghai day: only the batch's counts.
        ts = self.now - self.pick([0, 0, 1, 60_000, HOUR, 10 * HOUR, 2 * DAY])
        body = tb.encode(kind, inputs, outputs, ts, self.now + HOUR)
        return KEYRING.sign([body], [sorted(signers)])[0]

    def funded(self, wallets: Sequence[int]) -> list[int]:
        return [w for w in wallets if self.model.balance(w) > 0]

    def targets(self, payer: int, payee: int | None) -> list[int]:
        """Amounts that exactly reach a cap: the payer's per-payment cap, what is left of its
        (and its parent's) daily and annual caps, the payee's room under its balance cap."""
        m = self.model
        day, year = shanghai_day_year(self.now)
        out = []
        payment = m.caps(payer)[1]
        if payment is not None:
            out.append(payment)
        for w in {payer, m.wallets[payer].parent} - {0}:
            _, _, daily, annual = m.caps(w)
            d, d_out, y, y_out = m.counters.get(w, (0, 0, 0, 0))
            for cap, used in (
                (daily, d_out if d == day else 0),
                (annual, y_out if y == year else 0),
            ):
                if cap is not None:
                    out.append(cap - used)
                    if payment is not None:  # as much as one payment may, towards the cap
                        out.append(min(payment, cap - used))
        if payee is not None and payee in m.wallets:
            cap = m.caps(payee)[0]
            if cap is not None:
                out.append(cap - m.balance(payee))
        return sorted(t for t in out if t > 0)

    def amount(self, payer: int, payee: int | None, available: int, most: int) -> int:
        """An amount in 1..available, mostly one fen below, at or above a cap."""
        options = self.targets(payer, payee)
        how = self.pick(["target"] * 3 + ["random", "all"] if options else ["random", "all"])
        if how == "target":
            base = self.pick(options) + self.pick([-1, 0, 0, 1])
        elif how == "random":
            base = self.integer(1, min(available, most))
        else:
            base = available
        return min(max(base, 1), available)

    def select(self, payer: int, amount: int) -> list[tuple[bytes, int]]:
        """Tokens of ``payer`` worth at least ``amount`` (from a drawn starting point)."""
        tokens = self.model.unspent_of(payer)
        start = self.integer(0, len(tokens) - 1)
        picked, total = [], 0
        for token in tokens[start:] + tokens[:start]:
            if total >= amount:
                break
            picked.append(token)
            total += token[1]
        return picked

    def split(self, total: int, parts: int) -> list[int]:
        parts = min(parts, total)
        if parts <= 1:
            return [total]
        cuts = sorted({self.integer(1, total - 1) for _ in range(parts - 1)})
        return [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]

    def payment(self, payer: int, payee: int, most: int, amount: int | None = None) -> bytes:
        """``payer`` pays ``payee`` (in one or more outputs), change back to the payer."""
        available = self.model.balance(payer)
        if amount is None:
            amount = self.amount(payer, payee, available, most)
        amount = min(max(amount, 1), available)
        picked = self.select(payer, amount)
        change = sum(v for _, v in picked) - amount
        outputs = [(payee, a) for a in self.split(amount, self.pick([1, 1, 2, 3]))]
        if change:
            outputs.insert(self.integer(0, len(outputs)), (payer, change))
        return self.signed(tb.Kind.TRANSFER, [t for t, _ in picked], outputs, [payer])

    # -- operations: each returns a transaction, or None when it cannot be built -------------

    def op_pay(self) -> bytes | None:
        funded = self.funded(CUSTOMERS + NEWCOMERS)
        if not funded:
            return None
        payee = self.pick([*CUSTOMERS, self.pick(OPERATORS), self.pick(NEWCOMERS)])
        return self.payment(self.pick(funded), payee, 10**7)

    def op_again(self) -> bytes | None:
        """A payer (often one, or the sub-wallet of one, that paid today) pays again: as much as
        one payment may while its daily or annual cap is far, then up to it and one fen past."""
        m = self.model
        day, year = shanghai_day_year(self.now)

        def paid_today(w: int) -> bool:
            return m.counters.get(w, (-1,))[0] == day

        funded = self.funded(CUSTOMERS)
        payers = [w for w in funded if paid_today(w) or paid_today(m.wallets[w].parent)]
        payers = payers or funded
        if not payers:
            return None
        payer = self.pick(payers)
        left = []
        for w in {payer, m.wallets[payer].parent} - {0}:
            _, _, daily, annual = m.caps(w)
            d, d_out, y, y_out = m.counters.get(w, (0, 0, 0, 0))
            if daily is not None:
                left.append(daily - (d_out if d == day else 0))
            if annual is not None:
                left.append(annual - (y_out if y == year else 0))
        payment = m.caps(payer)[1]
        amount = None
        if left:
            amount = min(left)
            if payment is not None and amount > payment:
                amount = payment - self.pick([0, 0, 1])
            else:
                amount += self.pick([-1, 0, 1, 1])
        return self.payment(payer, self.pick(CUSTOMERS), 10**7, amount)

    def op_fund(self) -> bytes | None:
        """An operator pays a customer, often up to or past its balance cap (a sweep)."""
        funded = self.funded(FUNDED_OPERATORS)
        if not funded:
            return None
        payee = self.pick([*CUSTOMERS, self.pick(NEWCOMERS)])
        return self.payment(self.pick(funded), payee, 3 * 10**6)

    def op_to_closed(self) -> bytes | None:
        closed = [w for w in WALLET_IDS if self.model.wallets[w].status == CLOSED]
        funded = self.funded(CUSTOMERS + FUNDED_OPERATORS)
        if not funded:
            return None
        return self.payment(self.pick(funded), self.pick(closed or CUSTOMERS), 10**6)

    def op_multi(self) -> bytes | None:
        """Several payers (a sub-wallet with its parent when one can) and several outputs."""
        m = self.model
        funded = self.funded(CUSTOMERS)
        if not funded:
            return None
        families = [w for w in funded if m.wallets[w].parent in funded]
        if families and self.chance(2):
            child = self.pick(families)
            payers = [child, m.wallets[child].parent]
        else:
            pool = funded * 3 + self.funded(FUNDED_OPERATORS)
            payers = sorted({self.pick(pool) for _ in range(self.integer(2, 3))})
        inputs: list[bytes] = []
        for p in payers:
            tokens = m.unspent_of(p)
            inputs += self.data.draw(
                st.lists(st.sampled_from(tokens), min_size=1, max_size=2, unique=True)
            )
        total = sum(m.unspent[t][1] for t, _ in inputs)
        recipients = payers + CUSTOMERS
        first = self.pick(recipients)
        head = self.amount(payers[0], first, total, total) if self.chance(2) else total
        amounts = [head] + (self.split(total - head, self.integer(1, 3)) if total > head else [])
        outputs = [(first, amounts[0])] + [(self.pick(recipients), a) for a in amounts[1:]]
        return self.signed(tb.Kind.TRANSFER, [t for t, _ in inputs], outputs, payers)

    def op_redeem(self) -> bytes | None:
        funded = self.funded(FUNDED_OPERATORS)
        if not funded:
            return None
        op = self.pick(funded)
        token, value = self.pick(self.model.unspent_of(op))
        destroyed = self.integer(1, value)
        outputs = [(op, value - destroyed)] if value > destroyed else []
        return self.signed(tb.Kind.REDEEM, [token], outputs, [op])

    def op_admin(self) -> bytes:
        """Wallet administration signed by a wallet: mostly the wallet's operator (the central
        bank for operators), sometimes another operator, a customer, a wallet opened in this
        batch, two signers or none. Registrations of newcomers (or of taken ids) with random,
        sometimes inconsistent attributes; class changes, freezes, unfreezes and closes of
        customers, operators, newcomers and unknown ids."""
        m = self.model
        kind = self.pick(
            [tb.Kind.REGISTER] * 3 + [k for k in tb.Kind if tb.Kind.REGISTER < k <= tb.Kind.CLOSE]
        )
        ts = self.now - self.pick([0, 0, 1, HOUR])
        expiry = self.now + HOUR
        if kind == tb.Kind.REGISTER:
            wallet = self.pick([*NEWCOMERS, *NEWCOMERS, self.pick(CUSTOMERS)])
            wallet_kind = self.pick([PERSONAL, PERSONAL, CORPORATE, MERCHANT, OPERATOR])
            right = CB if wallet_kind == OPERATOR else self.pick(OPERATORS)
            operator = wallet if wallet_kind == OPERATOR else right
            if self.chance(6):
                operator = self.pick([0, *OPERATORS, 1001, UNKNOWN])
            parent = 0
            if self.chance(4):
                parent = self.pick([*CUSTOMERS, *NEWCOMERS, UNKNOWN])
            wallet_class = (
                1 if wallet_kind == OPERATOR and not self.chance(4) else self.integer(1, 4)
            )
            body = tb.encode_admin(
                kind,
                wallet,
                ts,
                expiry,
                registration=(
                    wallet_kind,
                    wallet_class,
                    operator,
                    parent,
                    5411 if wallet_kind == MERCHANT else 0,
                    self.integer(0, 3),
                    self.pick([True, False]),
                    ED25519,
                    PUBLIC_KEYS[wallet],
                ),
            )
        else:
            wallet = self.pick([*CUSTOMERS, *CUSTOMERS, *OPERATORS, *NEWCOMERS, UNKNOWN])
            w = m.wallets.get(wallet)
            right = CB if w is None or w.kind in (OPERATOR, CENTRAL_BANK) else w.operator
            new_class = self.pick([1, 2, 3, 4])
            body = tb.encode_admin(kind, wallet, ts, expiry, wallet_class=new_class)
        how = self.pick(["right"] * 6 + ["other", "none", "two"])
        if how == "right" and right in m.wallets:
            signers = [right]
        elif how == "none":
            signers = []
        elif how == "two":
            signers = sorted({self.pick(OPERATORS), CB})
        else:
            signers = [self.pick([CB, *OPERATORS, self.pick(CUSTOMERS), *NEWCOMERS])]
        event(f"admin {kind.name} signed {how}")
        return KEYRING.sign([body], [signers])[0]

    OPS = (
        "pay",
        "pay",
        "again",
        "again",
        "fund",
        "fund",
        "multi",
        "multi",
        "redeem",
        "to_closed",
        "admin",
        "admin",
    )

    # -- between batches ---------------------------------------------------------------------

    def update_both(self, ids: list[int], action: int, wallet_class: int = 0) -> None:
        """The same wallet update in the ledger and the model: both refuse it or both apply."""
        call: Callable[[], None] = {
            SET_CLASS: lambda: self.ledger.set_class(ids, wallet_class),
            FREEZE: lambda: self.ledger.freeze(ids),
            UNFREEZE: lambda: self.ledger.unfreeze(ids),
            CLOSE: lambda: self.ledger.close_wallets(ids),
        }[action]
        try:
            self.model.update([(w, action, wallet_class) for w in ids])
        except ModelError as e:
            note(f"update {action} {ids} {wallet_class}: refused ({e})")
            with pytest.raises(CORE_ERRORS):
                call()
            return
        note(f"update {action} {ids} {wallet_class}")
        call()

    def between_batches(self) -> None:
        for _ in range(self.pick([0, 0, 1, 1, 2, 3])):
            what = self.pick(["freeze", "unfreeze", "class", "class", "close", "limits"])
            if what == "limits":
                self.install_limits(self.draw_limits())
                continue
            pool = WALLET_IDS if self.chance(4) else CUSTOMERS
            ids = self.data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2))
            if what == "freeze":
                self.update_both(ids, FREEZE)
            elif what == "unfreeze":
                self.update_both(ids, UNFREEZE)
            elif what == "class":
                self.update_both(ids, SET_CLASS, self.pick([1, 2, 3, 4, 4, 0, 5]))
            else:
                empty = [w for w in WALLET_IDS if self.model.balance(w) == 0]
                if empty and not self.chance(4):
                    ids = [self.pick(empty)]
                self.update_both(ids, CLOSE)

    def advance(self) -> None:
        """Move the clock: often to just before, or exactly to, the next Shanghai midnight."""
        to_midnight = DAY - (self.now + SHANGHAI_OFFSET_MS) % DAY
        to_utc_midnight = DAY - self.now % DAY
        before = shanghai_day_year(self.now)
        self.now += self.pick(
            [
                0,
                0,
                1,
                HOUR,
                8 * HOUR,
                DAY,
                to_midnight - 1,
                to_midnight,
                to_midnight,
                to_utc_midnight,
            ]
        )
        after = shanghai_day_year(self.now)
        if self.model.counters and after != before:
            event("new year, counters running" if after[1] != before[1] else "new day")

    # -- settling ----------------------------------------------------------------------------

    def begin(self) -> None:
        self.model.begin_batch(self.now)
        self.batch, self.expected = [], []

    def add(self, raw: bytes | None) -> None:
        if raw is not None:
            self.batch.append(raw)
            self.expected.append(self.model.settle_one(raw, self.now))

    def run_batch(self, max_ops: int) -> None:
        self.between_batches()
        self.advance()
        self.begin()
        for _ in range(self.integer(0, max_ops)):
            self.add(getattr(self, "op_" + self.pick(self.OPS))())
        self.settle()

    def settle(self) -> None:
        note(f"batch at {self.now}: {[S(s).name for s in self.expected]}")
        for s in self.expected:
            event(f"status {S(s).name}")
        previous = self.ledger.last_receipt_hash
        result = self.ledger.settle(self.batch, self.now)
        assert result.statuses.tolist() == self.expected
        receipt, totals = result.receipt, self.model.last_totals
        assert receipt.prev_hash == previous
        assert receipt.swept_fen == totals.swept_fen
        assert receipt.issued_fen == totals.issued_fen
        assert receipt.redeemed_fen == totals.redeemed_fen
        assert receipt.value_moved_fen == totals.value_moved_fen
        if totals.swept_fen:
            event("swept")
        self.compare()

    def compare(self) -> None:
        ledger, m = self.ledger, self.model
        limits = ledger.limits
        assert limits.version == m.limits_version
        assert (SWEEP if limits.over_balance_cap == "sweep" else REJECT) == m.over_balance_cap
        assert tuple(rows_of(limits)) == m.limits_rows
        for w in WALLET_IDS:
            info, mw = ledger.wallet(w), m.wallets[w]
            assert info is not None
            assert info.balance_fen == m.balance(w), w
            assert sorted(ledger.unspent(w)) == m.unspent_of(w), w
            assert (info.wallet_class, info.operator, info.parent, info.linked_account) == (
                mw.wallet_class,
                mw.operator,
                mw.parent,
                mw.linked_account,
            ), w
            assert int(info.status) == mw.status, w
            counters = (info.counter_day, info.day_out_fen, info.counter_year, info.year_out_fen)
            assert counters == m.counters.get(w, (0, 0, 0, 0)), w
        supply = ledger.supply()
        assert (supply.issued_fen, supply.redeemed_fen, supply.outstanding_fen) == m.supply()
        total = sum(ledger.balance(w) for w in m.wallets)
        assert supply.issued_fen - supply.redeemed_fen == supply.outstanding_fen == total
        ledger.check_invariants()
        assert ledger.token_count == len(m.unspent)
        assert ledger.settled_count == len(m.settled)
        for w in [*NEWCOMERS, UNKNOWN]:  # opened (or not) by registrations in batches
            info = ledger.wallet(w)
            assert (info is None) == (w not in m.wallets), w
            if info is not None:
                mw = m.wallets[w]
                assert (info.kind, info.wallet_class, info.operator, int(info.status)) == (
                    mw.kind,
                    mw.wallet_class,
                    mw.operator,
                    mw.status,
                ), w
                assert info.balance_fen == m.balance(w), w
        assert ledger.state_digest() == m.state_digest(ledger.last_receipt_hash)

    # -- rejections change nothing -----------------------------------------------------------

    def view(self, raw: bytes) -> tuple[object, ...]:
        """Everything the ledger shows about the wallets, the tokens and ``raw``."""
        d = tb.decode(raw)
        return (
            tuple(self.ledger.wallet(w) for w in WALLET_IDS),
            tuple(tuple(sorted(self.ledger.unspent(w))) for w in WALLET_IDS),
            self.ledger.supply(),
            self.ledger.token_count,
            self.ledger.settled_count,
            self.ledger.is_settled(d["id"]),
            tuple((self.ledger.token(i), self.ledger.is_spent(i)) for i in d["inputs"]),
        )

    def probe(self) -> None:
        """Build a transaction; if a wallet rule rejects it, settle it alone and check that
        nothing but the receipt chain moved."""
        raw = getattr(self, "op_" + self.pick((*self.OPS, "again", "again")))()
        if raw is None:
            return
        status, _, _ = self.model.predict(raw, self.now)
        if status not in RULE_STATUSES:
            return
        event(f"probe {S(status).name}")
        before = self.view(raw)
        digest_before = self.ledger.state_digest()
        result = self.ledger.settle([raw], self.now)
        assert result.statuses.tolist() == [status]
        assert result.receipt.swept_fen == 0
        assert self.view(raw) == before
        # The model's state (unchanged) under the new receipt hash is the ledger's digest.
        new_hash = self.ledger.last_receipt_hash
        assert self.ledger.state_digest() == self.model.state_digest(new_hash) != digest_before
        self.begin()
        self.add(raw)
        assert self.expected == [status]
        assert self.model.state_digest(new_hash) == self.ledger.state_digest()


@given(st.data())
def test_wallet_rules_match_model(data: st.DataObject) -> None:
    world = World(data, tb.Ledger(threads=1), Model())
    for _ in range(data.draw(st.integers(2, 7), label="batches")):
        world.run_batch(max_ops=8)


@given(st.data())
@settings(max_examples=max(1, settings().max_examples // 2))
def test_rule_rejections_change_nothing(data: st.DataObject) -> None:
    """Every transaction a rule rejects (settled alone) leaves balances, tokens, counters,
    attributes, supply and spent/settled memory as they were; the digest is the old state's
    under the new receipt hash."""
    world = World(data, tb.Ledger(threads=1), Model())
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        world.run_batch(max_ops=6)
    for _ in range(data.draw(st.integers(3, 10), label="probes")):
        if world.chance(3):
            world.between_batches()
        world.probe()


@given(st.data())
@settings(max_examples=max(1, settings().max_examples // 2))
def test_registration_checks_match_model(data: st.DataObject) -> None:
    """New wallets with random (often invalid) attributes: the ledger refuses exactly what the
    model refuses, all or none."""
    world = World(data, tb.Ledger(threads=1), Model())
    count = world.integer(1, 2)
    ids = [world.pick(NEWCOMERS[:1] * 3 + CUSTOMERS[:1]), NEWCOMERS[1]][:count]
    specs = []
    for w in ids:
        kind = world.pick([PERSONAL, PERSONAL, CORPORATE, MERCHANT, OPERATOR, CENTRAL_BANK])
        specs.append(
            (
                w,
                kind,
                world.pick([1, 1, 2, 3, 4, 1, 2, 3, 4, 0, 5]),
                world.pick([0, 0, 100, 100, 101, 102, w, CB, 1001, UNKNOWN]),
                world.pick([0] * 12 + [*CUSTOMERS, *NEWCOMERS, CB, UNKNOWN]),
                world.pick([True, False]),
            )
        )
    note(f"register {specs}")
    model_error = None
    try:
        for w, kind, wallet_class, operator, parent, linked in specs:
            world.model.register(
                w,
                kind,
                ED25519,
                PUBLIC_KEYS[w],
                wallet_class=wallet_class,
                operator=operator,
                parent=parent,
                linked_account=linked,
            )
    except ModelError as e:
        model_error = e
        for w, *_ in specs:  # all or none
            if w in NEWCOMERS:
                world.model.wallets.pop(w, None)
    columns = list(zip(*specs, strict=True))

    def register() -> None:
        world.ledger.register_wallets(
            list(columns[0]),
            list(columns[1]),
            [PUBLIC_KEYS[w] for w in columns[0]],
            ED25519,
            wallet_class=list(columns[2]),
            operator=list(columns[3]),
            parent=list(columns[4]),
            linked_account=list(columns[5]),
        )

    event("refused" if model_error else "registered")
    if model_error:
        with pytest.raises(CORE_ERRORS):
            register()
    else:
        register()
    for w in NEWCOMERS:
        assert (world.ledger.wallet(w) is None) == (w not in world.model.wallets)
    assert world.ledger.state_digest() == world.model.state_digest(world.ledger.last_receipt_hash)
