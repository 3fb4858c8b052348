"""Differential tests of spending conditions: the Rust ledger against the reference model.

Hypothesis draws condition definitions (random lists, flags and windows that open and close at
or near Asia/Shanghai midnight) and batches at times around those edges mixing: issuers
earmarking value (for their own condition or someone else's), holders spending random mixes
of earmarked and free tokens to merchants inside and outside the lists, to people, to the
operator (a redemption to deposits) and back to themselves (splits and merges, earmarked or
free change), operator redemptions, and reclaims by the right and wrong wallets before and
after expiry. After every batch the statuses, the state digest (conditions, earmarks and
totals included) and each condition's totals agree, and supply and every programme's budget
are conserved (``issued = spent + reclaimed + outstanding``).
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, Phase, event, given, note, settings
from hypothesis import strategies as st

import tongbao as tb
from model import CENTRAL_BANK, CORPORATE, ED25519, MERCHANT, OPERATOR, PERSONAL, Model, S

CB, OP, GOV, GOV2 = 1, 100, 500, 501
PEOPLE = [1001, 1002, 1003]
# merchant -> (mcc, region)
MERCHANTS = {3001: (5812, 440300), 3002: (5411, 440300), 3003: (7995, 440300), 3004: (5812, 110000)}
KINDS = {CB: CENTRAL_BANK, OP: OPERATOR, GOV: CORPORATE, GOV2: CORPORATE}
KINDS |= {p: PERSONAL for p in PEOPLE} | {m: MERCHANT for m in MERCHANTS}
IDS = sorted(KINDS)
KEYRING = tb.Keyring()
PUBLIC = dict(zip(IDS, KEYRING.generate(IDS, ED25519, b"conditions"), strict=True))

DAY = 86_400_000
# 2020-10-12 00:00 Asia/Shanghai (16:00 UTC the day before): windows open and close near it.
MIDNIGHT = 1_602_432_000_000
T0 = MIDNIGHT - 3 * DAY
EDGES = [MIDNIGHT + k * DAY + d for k in (0, 1, 2) for d in (-1, 0, 1)]
CONDITION_IDS = [7, 2020, 2021]


def setup() -> tuple[tb.Ledger, Model]:
    ledger = tb.Ledger(threads=2)
    model = Model()
    for w in IDS:
        mcc, region = MERCHANTS.get(w, (0, 0))
        ledger.register_wallets([w], KINDS[w], [PUBLIC[w]], mcc=mcc, region=region)
        model.register(w, KINDS[w], ED25519, PUBLIC[w], mcc=mcc, region=region)
    funding = tb.issue(KEYRING, CB, [(OP, 5_000_000)], T0)
    # The operator pays everybody some free value in several tokens.
    outs = [(w, 40_000) for w in [GOV, GOV2, *PEOPLE] for _ in range(2)]
    first = tb.token_id(tb.transaction_id(funding), 0)
    change = (OP, 5_000_000 - 40_000 * len(outs))
    batch = [funding, tb.transfer(KEYRING, [first], [*outs, change], [OP], T0)]
    statuses = ledger.settle(batch, T0).statuses
    assert list(statuses) == model.settle(batch, T0) == [0, 0]
    return ledger, model


class Scenario:
    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.ledger, self.model = setup()
        self.now = T0

    def draw(self, strategy: st.SearchStrategy) -> object:  # type: ignore[type-arg]
        return self.data.draw(strategy)

    def pick(self, options: list) -> object:  # type: ignore[type-arg]
        return self.data.draw(st.sampled_from(options))

    def tokens_of(self, wallet: int) -> list[tuple[bytes, int]]:
        return sorted((t, v) for t, (o, v) in self.model.unspent.items() if o == wallet)

    def programme(self) -> list[bytes]:
        """A first batch: GOV defines condition 2020 and earmarks value for the people (and,
        sometimes, for a merchant or the operator)."""
        define = self.define(issuer=GOV, condition=2020)
        (token, value), *_ = self.tokens_of(GOV)
        each = value // 4
        owners = [*PEOPLE, self.pick([GOV, OP, 3001, PEOPLE[0]])]
        outputs = [(w, each, 2020) for w in owners]
        earmark = tb.transfer(KEYRING, [token], outputs, [GOV], self.now)  # type: ignore[arg-type]
        return [define, earmark]

    def define(self, issuer: int | None = None, condition: int | None = None) -> bytes:
        if issuer is None:
            issuer = int(self.pick([GOV, GOV, GOV2, PEOPLE[0]]))  # type: ignore[arg-type]
        if condition is None:
            condition = int(self.pick(CONDITION_IDS))  # type: ignore[arg-type]
        start = self.pick([T0, *EDGES])
        end = self.pick([e for e in EDGES if e > start] or [start + DAY])
        mccs = self.draw(st.lists(st.sampled_from([5812, 5411, 7995]), max_size=2, unique=True))
        merchants = self.draw(st.lists(st.sampled_from(list(MERCHANTS)), max_size=2, unique=True))
        regions = self.draw(st.lists(st.sampled_from([440300, 110000]), max_size=1))
        return tb.define_condition(
            KEYRING,
            condition,
            issuer=issuer,
            reclaimer=self.pick([issuer, GOV2]),  # type: ignore[arg-type]
            not_before_ms=start,  # type: ignore[arg-type]
            valid_until_ms=end,  # type: ignore[arg-type]
            timestamp_ms=self.now,
            mccs=mccs,
            merchants=merchants,
            regions=regions,
            not_transferable=bool(self.draw(st.booleans())),
            not_redeemable=bool(self.draw(st.booleans())),
        )

    def payment(self) -> bytes | None:
        holders = [w for w in IDS if self.tokens_of(w)]
        payer = int(self.pick(holders))  # type: ignore[arg-type]
        mine = self.tokens_of(payer)
        earmarked = [tv for tv in mine if tv[0] in self.model.earmarks]
        free = [tv for tv in mine if tv[0] not in self.model.earmarks]
        n_e = int(self.draw(st.integers(0, min(2, len(earmarked)))))  # type: ignore[arg-type]
        low = 0 if n_e or not free else 1
        n_f = int(self.draw(st.integers(low, min(2, len(free)))))  # type: ignore[arg-type]
        if earmarked and self.draw(st.booleans()):
            return self.proper_spend(payer, earmarked[0], free[:n_f])
        inputs = earmarked[:n_e] + free[:n_f]
        if not inputs:
            return None
        total = sum(v for _, v in inputs)
        n_out = int(self.draw(st.integers(1, 3)))  # type: ignore[arg-type]
        cuts = (
            sorted(self.draw(st.lists(st.integers(1, total - 1), max_size=n_out - 1, unique=True)))
            if total > 1
            else []
        )  # type: ignore[arg-type]
        amounts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        if self.draw(st.integers(0, 9)) == 0:
            amounts[-1] += 1  # a value mismatch now and then
        own = sorted({c for t, _ in inputs if (c := self.model.earmarks.get(t))})
        outputs: list[tuple[int, ...]] = []
        for amount in amounts:
            owner = int(self.pick([payer, payer, *MERCHANTS, *MERCHANTS, *PEOPLE, OP]))  # type: ignore[arg-type]
            defined = sorted(self.model.conditions) or [0]
            tag = int(self.pick([0, 0, *(own * 3 or [0]), *defined, *CONDITION_IDS]))  # type: ignore[arg-type]
            outputs.append((owner, amount, tag) if tag else (owner, amount))
        kind = (
            tb.Kind.REDEEM
            if payer == OP and self.draw(st.integers(0, 3)) == 0
            else tb.Kind.TRANSFER
        )
        if kind == tb.Kind.REDEEM:
            outputs = [(OP, max(1, total // 2), *outputs[0][2:])]
        body = tb.encode(kind, [t for t, _ in inputs], outputs, self.now)  # type: ignore[arg-type]
        return tb.sign(KEYRING, body, [payer])

    def proper_spend(
        self, payer: int, token: tuple[bytes, int], free: list[tuple[bytes, int]]
    ) -> bytes:
        """Spend an earmarked token the way a holder should: at a merchant its condition
        allows (when there is one), earmarked change back, maybe topped up with free value."""
        cond = self.model.conditions[self.model.earmarks[token[0]]]
        allowed = [m for m, (mcc, region) in MERCHANTS.items() if cond.allows(m, mcc, region)]
        merchant = int(self.pick(allowed or list(MERCHANTS)))  # type: ignore[arg-type]
        value = token[1] + sum(v for _, v in free)
        pay = int(self.draw(st.integers(1, value)))  # type: ignore[arg-type]
        outputs: list[tuple[int, ...]] = [(merchant, pay)]
        if pay < value:
            kept = min(value - pay, token[1])
            outputs.append((payer, kept, cond.condition))
            if value - pay - kept:
                outputs.append((payer, value - pay - kept))
        inputs = [token[0], *(t for t, _ in free)]
        return tb.transfer(KEYRING, inputs, outputs, [payer], self.now)  # type: ignore[arg-type]

    def reclaim(self) -> bytes | None:
        by_condition: dict[int, list[bytes]] = {}
        for t, c in sorted(self.model.earmarks.items()):
            by_condition.setdefault(c, []).append(t)
        if not by_condition:
            return None
        cond = int(self.pick(sorted(by_condition)))  # type: ignore[arg-type]
        tokens = by_condition[cond][: int(self.draw(st.integers(1, 3)))]  # type: ignore[arg-type]
        if self.draw(st.integers(0, 5)) == 0:
            tokens += [t for t, _ in self.tokens_of(PEOPLE[0]) if t not in self.model.earmarks][:1]
        reclaimer = int(self.pick([self.model.conditions[cond].reclaimer] * 3 + [GOV, GOV2]))  # type: ignore[arg-type]
        value = sum(self.model.unspent[t][1] for t in tokens)
        return tb.reclaim(KEYRING, reclaimer, tokens, value, self.now)

    def batch(self) -> list[bytes]:
        txs: list[bytes] = []
        for _ in range(int(self.draw(st.integers(1, 6)))):  # type: ignore[arg-type]
            action = self.pick(["define", "pay", "pay", "pay", "pay", "reclaim"])
            tx = {"define": self.define, "pay": self.payment, "reclaim": self.reclaim}[action]()  # type: ignore[index]
            if tx is not None:
                txs.append(tx)
        return txs

    def run(self, n_batches: int) -> None:
        times = sorted(
            self.draw(st.lists(st.sampled_from(EDGES), min_size=n_batches, max_size=n_batches))
        )  # type: ignore[arg-type]
        start = [self.programme()]
        for now in [T0, *times]:
            if start:
                batch = start.pop()
                got = [int(s) for s in self.ledger.settle(batch, now).statuses]
                assert got == self.model.settle(batch, now)
                self.compare()
                continue
            self.now = now
            batch = self.batch()
            got = [int(s) for s in self.ledger.settle(batch, now).statuses]
            want = self.model.settle(batch, now)
            note(f"t={now} statuses={[S(s).name for s in got]}")
            for tx, status in zip(batch, got, strict=True):
                event(f"kind {tb.decode(tx)['kind']}: {S(status).name}")
            assert got == want, [tb.decode(tx) for tx in batch]
            self.compare()

    def compare(self) -> None:
        ledger, model = self.ledger, self.model
        ledger.check_invariants()
        assert ledger.supply() == tb.Supply(*model.supply())
        assert ledger.condition_ids() == sorted(model.conditions)
        for cid in model.conditions:
            info = ledger.condition(cid)
            assert info is not None
            issued, spent, reclaimed = model.cond_totals[cid]
            outstanding = model.cond_outstanding(cid)
            assert (
                info.issued_fen,
                info.spent_by_mcc,
                info.reclaimed_fen,
                info.outstanding_fen,
            ) == (
                issued,
                spent,
                reclaimed,
                outstanding,
            )
            if spent:
                event("earmarked value spent at merchants")
            if reclaimed:
                event("earmarked value reclaimed")
            # Each programme's budget is conserved.
            assert issued == sum(spent.values()) + reclaimed + outstanding
        assert ledger.state_digest() == model.state_digest(ledger.last_receipt_hash)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
)
@given(st.data())
def test_conditions_match_the_model(data: st.DataObject) -> None:
    Scenario(data).run(n_batches=6)


def test_plain_payments_keep_version_1_bytes() -> None:
    """A payment without conditions is encoded as before (version 1), so no id changes."""
    body = tb.encode(tb.Kind.TRANSFER, [bytes(32)], [(42, 1_250)], 1_000, 61_000, b"INV-7")
    assert body[0] == 1
    assert body.hex().endswith(struct.pack("<QQB", 42, 1_250, 0).hex() + "05494e562d3700")
    earmarked = tb.encode(tb.Kind.TRANSFER, [bytes(32)], [(42, 1_250, 7)], 1_000, 61_000)
    assert earmarked[0] == 4
    assert tb.decode(earmarked)["outputs"] == [(42, 1_250, 7)]
