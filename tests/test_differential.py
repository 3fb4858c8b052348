"""Differential tests: the Rust ledger against the pure-Python reference model (tests/model.py).

Hypothesis draws multi-batch scenarios (issuance, payments, hand-built transfers and
redemptions, resubmissions, corrupted signatures and bytes, odd timestamps) and every batch is
settled in both; statuses, balances, unspent tokens, supply, spent/settled memory, receipts and
the state digest must agree after every batch.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import tongbao as tb
from model import (
    CENTRAL_BANK,
    ED25519,
    MERCHANT,
    OPERATOR,
    PERSONAL,
    SM2,
    U64_MAX,
    VALIDITY_MS_MAX,
    BatchRejected,
    DecodeError,
    Model,
    Tx,
    Wallet,
    decode,
    token_id,
)

# -- the cast: registered wallets, and keys the ledger does not know ------------------------------

WALLETS: dict[int, tuple[int, int]] = {  # id -> (wallet kind, scheme)
    1: (CENTRAL_BANK, ED25519),
    2: (CENTRAL_BANK, SM2),
    100: (OPERATOR, ED25519),
    101: (OPERATOR, ED25519),
    102: (OPERATOR, SM2),
    1001: (PERSONAL, ED25519),
    1002: (PERSONAL, ED25519),
    1003: (PERSONAL, ED25519),
    1004: (PERSONAL, SM2),
    1005: (PERSONAL, SM2),
    2001: (MERCHANT, ED25519),
}
OPERATORS = [w for w, (k, _) in WALLETS.items() if k == OPERATOR]
NON_OPERATORS = [w for w, (k, _) in WALLETS.items() if k != OPERATOR]
CENTRAL_BANKS = [w for w, (k, _) in WALLETS.items() if k == CENTRAL_BANK]
UNREGISTERED_SIGNERS = {9001: ED25519, 9002: SM2}  # keys in the keyring, wallets not registered
UNKNOWN_OWNER = 9999  # neither registered nor keyed
T = TypeVar("T")

KEYRING = tb.Keyring()
PUBLIC_KEYS: dict[int, bytes] = {}
for _scheme in (ED25519, SM2):
    _ids = [w for w, (_, s) in WALLETS.items() if s == _scheme]
    _ids += [w for w, s in UNREGISTERED_SIGNERS.items() if s == _scheme]
    PUBLIC_KEYS.update(zip(_ids, KEYRING.generate(_ids, _scheme, b"differential"), strict=True))

T0 = 1_700_000_000_000
HOUR = 3_600_000
SKEW = tb.CLOCK_SKEW_MS_MAX
BATCH_STEPS = [0, 0, 1, 1_000, 60_000, SKEW, HOUR, HOUR + 1, 86_400_000, VALIDITY_MS_MAX + 1]


def sign_section(body: bytes, entries: list[tuple[int, bytes]]) -> bytes:
    """An encoded transaction from a body and explicit (signer, signature) entries."""
    section = bytes([len(entries)])
    for signer, sig in entries:
        section += struct.pack("<Q", signer) + sig
    return body + section


class Scenario:
    """Builds batches from hypothesis draws and settles each in the ledgers and the model."""

    def __init__(self, data: st.DataObject, ledgers: list[tb.Ledger], model: Model) -> None:
        self.data = data
        self.ledgers = ledgers
        self.model = model
        self.now = T0
        self.settled_once = False
        self.history: list[bytes] = []  # every transaction built, settled or not
        self.signed_history: list[Tx] = []  # the decodable ones with a signature
        self.batch: list[bytes] = []
        self.pending: list[tuple[bytes, int, int]] = []  # outputs of this batch's transactions
        self.known_tokens: set[bytes] = set()
        self.known_txs: set[bytes] = set()
        self.receipt_hash = bytes(32)
        ids = list(WALLETS)
        kinds = [WALLETS[w][0] for w in ids]
        schemes = [WALLETS[w][1] for w in ids]
        publics = [PUBLIC_KEYS[w] for w in ids]
        for ledger in ledgers:
            ledger.register_wallets(ids, kinds, publics, schemes)
        for w in ids:
            model.register(w, WALLETS[w][0], WALLETS[w][1], PUBLIC_KEYS[w])

    # -- draws -----------------------------------------------------------------------------

    def pick(self, options: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(options))

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(st.integers(lo, hi))

    def amount(self) -> int:
        size = self.pick(["small"] * 6 + ["zero", "huge"])
        if size == "zero":
            return 0
        if size == "huge":
            return self.integer(U64_MAX - 1_000_000, U64_MAX)
        return self.integer(1, 1_000_000)

    def timing(self) -> tuple[int, int]:
        """(timestamp_ms, expiry_ms) relative to the batch time: mostly valid, sometimes not."""
        now = self.now
        mode = self.pick(
            ["normal"] * 8
            + ["short", "long", "expired", "skew_edge", "future", "window", "backwards"]
        )
        if mode == "normal":
            ts = now - self.integer(0, 60_000)
            return ts, ts + HOUR
        if mode == "short":
            return now, now + self.integer(0, 2_000)
        if mode == "long":
            return now, now + VALIDITY_MS_MAX
        if mode == "expired":
            return now - 2 * HOUR, now - self.integer(1, HOUR)
        if mode == "skew_edge":
            return now + SKEW, now + SKEW + HOUR
        if mode == "future":
            ts = now + SKEW + self.integer(1, 1_000_000)
            return ts, ts + HOUR
        if mode == "window":
            return now, now + VALIDITY_MS_MAX + 1
        return now, now - 1  # expiry before timestamp

    def registered(self) -> int:
        return self.pick(list(WALLETS))

    def choose_input(self) -> tuple[bytes, int | None, int]:
        """(token id, owner if known, value if known else 0)."""
        sources = ["unspent"] * 5 + ["pending", "spent", "unknown"]
        source = self.pick(sources)
        if source == "unspent" and self.model.unspent:
            tid = self.pick(sorted(self.model.unspent))
            owner, value = self.model.unspent[tid]
            return tid, owner, value
        if source == "pending" and self.pending:
            return self.pick(self.pending)
        if source == "spent" and self.model.spent:
            return self.pick(sorted(self.model.spent)), None, 0
        return self.data.draw(st.binary(min_size=32, max_size=32)), None, 0

    def add(self, tx: bytes) -> None:
        self.batch.append(tx)
        self.history.append(tx)
        try:
            decoded = decode(tx)
        except DecodeError as e:
            with pytest.raises(tb.MalformedTransaction) as info:
                tb.decode(tx)
            assert (info.value.field, info.value.offset) == (e.field, e.offset)
            return
        assert tb.decode(tx)["id"] == decoded.id
        self.known_txs.add(decoded.id)
        if decoded.signatures:
            self.signed_history.append(decoded)
        self.known_tokens.update(decoded.inputs)
        for index, (owner, amount) in enumerate(decoded.outputs):
            self.pending.append((token_id(decoded.id, index), owner, amount))

    def signed(
        self,
        kind: tb.Kind,
        inputs: list[bytes],
        outputs: list[tuple[int, int]],
        signers: list[int],
    ) -> bytes:
        ts, expiry = self.timing()
        body = tb.encode(kind, inputs, outputs, ts, expiry)
        # An owner without a key (UNKNOWN_OWNER) cannot sign: its signature is just missing.
        return KEYRING.sign([body], [[s for s in signers if s in PUBLIC_KEYS]])[0]

    # -- operations: each appends transactions to the batch -----------------------------------

    def op_issue(self) -> None:
        who = self.pick(["cb"] * 4 + ["operator", "personal", "none", "two", "unregistered"])
        signers = {
            "cb": [self.pick(CENTRAL_BANKS)],
            "operator": [self.pick(OPERATORS)],
            "personal": [1001],
            "none": [],
            "two": [1, self.pick([2, *OPERATORS])],
            "unregistered": [self.pick(list(UNREGISTERED_SIGNERS))],
        }[who]
        outputs = []
        for _ in range(self.integer(1, 3)):
            owner = self.pick(OPERATORS * 4 + [1001, UNKNOWN_OWNER])
            outputs.append((owner, self.amount()))
        self.add(self.signed(tb.Kind.ISSUE, [], outputs, signers))

    def op_pay(self) -> None:
        """Payments through the ledger's own builder (token selection and change)."""
        funded = [w for w in WALLETS if self.model.balance(w) > 0]
        if not funded:
            return
        payers, payees, amounts = [], [], []
        for _ in range(self.integer(1, 4)):
            payer = self.pick(funded)
            balance = self.model.balance(payer)
            how = self.pick(["part", "part", "all", "too_much"])
            amount = {
                "part": self.integer(1, balance),
                "all": balance,
                "too_much": min(balance + 1, U64_MAX),
            }[how]
            payers.append(payer)
            payees.append(self.registered())
            amounts.append(amount)
        ts, expiry = self.timing()
        # The builder refuses expiry < timestamp and windows over VALIDITY_MS_MAX (hand-built
        # transfers still cover those as MALFORMED).
        expiry = min(max(ts, expiry), ts + VALIDITY_MS_MAX)
        reference = self.data.draw(st.binary(max_size=8))
        txs, _skipped = self.ledgers[0].build_payments(
            KEYRING, payers, payees, amounts, ts, expiry, reference, skip_insufficient=True
        )
        for tx in txs:
            self.add(tx)

    def op_transfer(self) -> None:
        """A hand-built transfer spending explicit tokens, possibly broken in one way."""
        picked = [self.choose_input() for _ in range(self.integer(1, 3))]
        inputs = [tid for tid, _, _ in picked]
        owners = sorted({o for _, o, _ in picked if o is not None})
        total = sum({t: v for t, _, v in picked}.values()) or self.integer(1, 1_000)
        if total > U64_MAX:  # unsettled outputs of this batch can sum past u64
            amounts = [U64_MAX] * (total // U64_MAX) + [total % U64_MAX]
            amounts = [a for a in amounts if a]
        else:
            parts = self.integer(1, 3) if total >= 3 else 1
            cuts: list[int] = []
            if parts > 1:
                cuts = sorted(
                    self.data.draw(st.sets(st.integers(1, total - 1), max_size=parts - 1))
                )
            amounts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        outputs = [(self.registered(), a) for a in amounts]
        signers = list(owners)
        flaw = self.pick(
            ["none"] * 6
            + [
                "dup_input",
                "zero_out",
                "overflow",
                "more_out",
                "less_out",
                "unknown_owner",
                "drop_signer",
                "extra_signer",
                "unregistered_signer",
                "no_signers",
            ]
        )
        if flaw == "dup_input":
            inputs.append(self.pick(inputs))
        elif flaw == "zero_out":
            outputs.append((self.registered(), 0))
        elif flaw == "overflow":
            outputs = [(self.registered(), U64_MAX), (self.registered(), min(total, U64_MAX))]
        elif flaw == "more_out":
            owner, amount = outputs[-1]
            if amount < U64_MAX:
                outputs[-1] = (owner, amount + 1)
        elif flaw == "less_out":
            owner, amount = outputs[-1]
            if amount > 1:
                outputs[-1] = (owner, amount - 1)
        elif flaw == "unknown_owner":
            outputs[0] = (UNKNOWN_OWNER, outputs[0][1])
        elif flaw == "drop_signer" and signers:
            signers.remove(self.pick(signers))
        elif flaw == "extra_signer":
            extra = self.registered()
            if extra not in signers:
                signers.append(extra)
        elif flaw == "unregistered_signer":
            signers.append(self.pick(list(UNREGISTERED_SIGNERS)))
        elif flaw == "no_signers":
            signers = []
        self.add(self.signed(tb.Kind.TRANSFER, inputs, outputs, signers))

    def op_redeem(self) -> None:
        redeemer = self.pick(OPERATORS * 3 + [1001])
        own = [(t, o, v) for t, (o, v) in self.model.unspent.items() if o == redeemer]
        own += [p for p in self.pending if p[1] == redeemer]
        if own:
            picked = [self.pick(own) for _ in range(self.integer(1, 2))]
            picked = list({p[0]: p for p in picked}.values())
        else:
            picked = [self.choose_input()]
        inputs = [tid for tid, _, _ in picked]
        total = sum(v for _, _, v in picked)
        signers = sorted({o for _, o, _ in picked if o is not None}) or [redeemer]
        change = self.pick(["none", "none", "part", "equal", "more", "to_other"])
        if change == "none" or (total <= 1 and change in ("part", "to_other")):
            outputs = []
        elif change == "part":
            outputs = [(signers[0], self.integer(1, min(total - 1, U64_MAX)))]
        elif change == "to_other":
            outputs = [(self.registered(), self.integer(1, min(total - 1, U64_MAX)))]
        elif change == "equal":
            outputs = [(signers[0], min(max(total, 1), U64_MAX))]
        else:
            outputs = [(signers[0], min(total + 1, U64_MAX))]
        if self.pick([False] * 4 + [True]):
            signers = signers[1:] if len(signers) > 1 else [self.registered()]
        self.add(self.signed(tb.Kind.REDEEM, inputs, outputs, signers))

    def op_resubmit(self) -> None:
        """An earlier transaction again: as it was, or re-signed (same body, same id)."""
        if not self.history:
            return
        raw = self.pick(self.history)
        how = self.pick(["as_is", "as_is", "resign_fewer", "resign_more"])
        try:
            tx = decode(raw)
        except DecodeError:
            how = "as_is"
        if how != "as_is":
            signers = [s for s in tx.signers if s in PUBLIC_KEYS]
            if how == "resign_fewer":
                signers = signers[:-1]
            elif self.registered() not in signers:
                signers.append(self.registered())
            raw = KEYRING.sign([raw], [signers])[0]
        self.add(raw)

    def op_bad_signature(self) -> None:
        """A decodable transaction with one signature broken: bit flip, wrong key, wrong
        message (honestly generated or randomly corrupted signatures only)."""
        if self.signed_history:
            self.add(self.corrupt(self.pick(self.signed_history)))

    def corrupt(self, tx: Tx) -> bytes:
        """``tx`` with one of its signatures broken."""
        entries = list(tx.signatures)
        n = self.integer(0, len(entries) - 1)
        signer, sig = entries[n]
        how = self.pick(["flip", "flip", "wrong_key", "wrong_message"])
        if signer not in PUBLIC_KEYS:
            how = "flip"
        if how == "flip":
            bit = self.integer(0, 511)
            sig = bytearray(sig)
            sig[bit // 8] ^= 1 << (bit % 8)
            sig = bytes(sig)
        elif how == "wrong_key":
            other = self.pick([w for w in PUBLIC_KEYS if w != signer])
            sig = KEYRING.sign([tx.body + b"\x00"], [[other]])[0][-64:]
        else:
            other_body = tb.encode(tb.Kind.ISSUE, [], [(100, 1)], self.now, self.now + 1)
            sig = KEYRING.sign([other_body], [[signer]])[0][-64:]
        entries[n] = (signer, sig)
        return sign_section(tx.body, entries)

    def op_mangle(self) -> None:
        """Bytes that are (mostly) not a transaction."""
        how = self.pick(
            ["truncate", "flip", "extend", "random", "version", "kind", "condition", "empty"]
        )
        base = self.pick(self.history) if self.history else b"\x01\x02"
        if how == "truncate":
            raw = base[: self.integer(0, max(0, len(base) - 1))]
        elif how == "flip" and base:
            i = self.integer(0, len(base) - 1)
            raw = base[:i] + bytes([base[i] ^ self.integer(1, 255)]) + base[i + 1 :]
        elif how == "extend":
            raw = base + self.data.draw(st.binary(min_size=1, max_size=3))
        elif how == "random":
            raw = self.data.draw(st.binary(max_size=200))
        elif how == "version":
            raw = bytes([self.pick([0, 2, 255])]) + base[1:]
        elif how == "kind" and len(base) > 1:
            raw = base[:1] + bytes([self.pick([0, 1, 2, 3, 4, 255])]) + base[2:]
        elif how == "condition":
            try:
                tx = decode(base)
            except DecodeError:
                return
            if not tx.outputs:
                return
            j = self.integer(0, len(tx.outputs) - 1)
            at = 18 + 2 + 32 * len(tx.inputs) + 2 + 17 * j + 16
            raw = base[:at] + bytes([self.integer(1, 255)]) + base[at + 1 :]
        else:
            raw = b""
        self.add(raw)

    def op_bulk(self) -> None:
        """Many payments at once (so the batch is split across threads), some broken."""
        balances = {w: self.model.balance(w) for w in WALLETS}
        funded = [w for w, b in balances.items() if b > 0]
        if not funded:
            return
        # Mostly Ed25519 payers: SM2 verification is ~1 ms a signature.
        weighted = [w for w in funded if WALLETS[w][1] == ED25519] * 4 + funded
        n = self.integer(70, 110)
        payers = [self.pick(weighted) for _ in range(n)]
        amounts = [self.integer(1, max(1, balances[p] // 4)) for p in payers]
        payees = [self.registered() for _ in range(n)]
        txs, _ = self.ledgers[0].build_payments(
            KEYRING, payers, payees, amounts, self.now, self.now + HOUR, skip_insufficient=True
        )
        # Break a few: some replaced (BAD_SIGNATURE, and what chains on their change fails),
        # some preceded by a broken copy (which fails, then the original settles).
        broken = self.data.draw(st.sets(st.integers(0, max(0, len(txs) - 1)), max_size=8))
        for i, tx in enumerate(txs):
            how = self.pick(["replace", "before"]) if i in broken else "keep"
            if how == "keep":
                self.add(tx)
                continue
            bad = self.corrupt(decode(tx))
            self.add(bad)
            if how == "before":
                self.add(tx)

    OPS = ("pay", "transfer", "issue", "redeem", "resubmit", "bad_signature", "mangle")

    # -- settling --------------------------------------------------------------------------

    def genesis(self) -> None:
        outputs = [(op, self.pick([1_000_000, 50_000_000, U64_MAX // 4])) for op in OPERATORS]
        body = tb.encode(tb.Kind.ISSUE, [], outputs, self.now, self.now + HOUR)
        self.add(KEYRING.sign([body], [[self.pick(CENTRAL_BANKS)]])[0])
        self.settle()

    def run_batch(self, max_ops: int = 8, bulk: bool = False) -> None:
        self.now += self.pick(BATCH_STEPS)
        if bulk:
            self.op_bulk()
        for _ in range(self.integer(0, max_ops)):
            getattr(self, "op_" + self.pick(self.OPS))()
        self.settle()

    def settle(self) -> None:
        batch, now = self.batch, self.now
        previous = self.model.last_timestamp_ms
        if self.settled_once and self.pick([False] * 5 + [True]):
            self.check_backwards(batch, previous - self.pick([1, previous - 1]))
        expected = self.model.settle(batch, now)
        note(f"batch at {now}: {[tb.Status(s).name for s in expected]}")
        framed = self.pick([False, False, True])
        for ledger in self.ledgers:
            result = ledger.settle(tb.frame_batch(batch) if framed else batch, now)
            assert result.statuses.tolist() == expected
            self.check_receipt(result.receipt, expected, now)
        self.receipt_hash = self.ledgers[0].last_receipt_hash
        self.settled_once = True
        self.batch, self.pending = [], []
        self.known_tokens.update(self.model.unspent, self.model.spent)
        self.compare()

    def check_backwards(self, batch: list[bytes], earlier: int) -> None:
        """A batch timestamped before the previous batch is refused and changes nothing."""
        for ledger in self.ledgers:
            before = ledger.state_digest()
            with pytest.raises(tb.BatchRejected):
                ledger.settle(batch, earlier)
            assert ledger.state_digest() == before
        with pytest.raises(BatchRejected):
            self.model.settle(batch, earlier)

    def check_receipt(self, receipt: tb.Receipt, expected: list[int], now: int) -> None:
        totals = self.model.last_totals
        assert receipt.timestamp_ms == now
        assert receipt.tx_count == len(expected)
        assert receipt.prev_hash == self.receipt_hash
        assert {int(k): v for k, v in receipt.status_counts.items()} == Counter(expected)
        assert receipt.issued_fen == totals.issued_fen
        assert receipt.redeemed_fen == totals.redeemed_fen
        assert receipt.value_moved_fen == totals.value_moved_fen

    def compare(self) -> None:
        m = self.model
        digests = set()
        for ledger in self.ledgers:
            for w in WALLETS:
                assert ledger.balance(w) == m.balance(w), w
                assert sorted(ledger.unspent(w)) == m.unspent_of(w), w
            supply = ledger.supply()
            assert (supply.issued_fen, supply.redeemed_fen, supply.outstanding_fen) == m.supply()
            ledger.check_invariants()
            total = int(ledger.balances(list(WALLETS)).sum(dtype=object))
            assert supply.issued_fen - supply.redeemed_fen == supply.outstanding_fen == total
            assert ledger.token_count == len(m.unspent)
            assert ledger.settled_count == len(m.settled)
            for tid in self.known_tokens:
                assert ledger.is_spent(tid) == (tid in m.spent)
                assert ledger.token(tid) == m.unspent.get(tid)
            for txid in self.known_txs:
                assert ledger.is_settled(txid) == (txid in m.settled)
            assert ledger.state_digest() == m.state_digest(ledger.last_receipt_hash)
            digests.add(ledger.state_digest())
        assert len(digests) == 1


@given(st.data())
def test_ledger_matches_model(data: st.DataObject) -> None:
    scenario = Scenario(data, [tb.Ledger(threads=2)], Model())
    scenario.genesis()
    for _ in range(data.draw(st.integers(1, 5), label="batches")):
        scenario.run_batch()


@given(st.data())
def test_ledger_matches_model_without_signature_checks(data: st.DataObject) -> None:
    """verify_signatures=False skips check 9 only; unknown signers are still UNKNOWN_WALLET."""
    scenario = Scenario(
        data, [tb.Ledger(threads=1, verify_signatures=False)], Model(verify_signatures=False)
    )
    scenario.genesis()
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        scenario.run_batch(max_ops=5)


@given(st.data())
@settings(max_examples=max(1, settings().max_examples // 5))
def test_thread_count_does_not_change_outcome(data: st.DataObject) -> None:
    """Large batches (split across threads) settle the same on 1 and 2 threads."""
    one, two = tb.Ledger(threads=1), tb.Ledger(threads=2)
    assert (one.threads, two.threads) == (1, 2)
    scenario = Scenario(data, [one, two], Model())
    scenario.genesis()
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        scenario.run_batch(max_ops=4, bulk=True)
        assert one.state_digest() == two.state_digest()
        assert one.last_receipt_hash == two.last_receipt_hash


# -- the decoder on its own ----------------------------------------------------------------------


@st.composite
def encodings(draw: st.DrawFn) -> bytes:
    """Encodings near the valid ones: random fields (shape rules not always met), then maybe
    one mutation."""
    kind = draw(st.sampled_from([1, 2, 3]))
    inputs = draw(st.lists(st.binary(min_size=32, max_size=32), max_size=3))
    outputs = draw(
        st.lists(st.tuples(st.integers(0, U64_MAX), st.integers(0, U64_MAX)), max_size=3)
    )
    ts = draw(st.integers(0, U64_MAX))
    expiry = draw(
        st.one_of(
            st.integers(ts, min(U64_MAX, ts + VALIDITY_MS_MAX)),
            st.integers(0, U64_MAX),
            st.just(min(U64_MAX, ts + VALIDITY_MS_MAX + 1)),
        )
    )
    reference = draw(st.binary(max_size=tb.REFERENCE_LEN_MAX))
    signers = draw(st.lists(st.sampled_from([1, 2, 100, 2**64 - 1]), max_size=3))
    sigs = [(s, draw(st.binary(min_size=64, max_size=64))) for s in signers]
    body = tb.encode(tb.Kind(kind), inputs, outputs, ts, expiry, reference)
    raw = sign_section(body, sigs)
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "extend", "set"]))
    if mutation == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif mutation == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
    elif mutation == "extend":
        raw += draw(st.binary(min_size=1, max_size=4))
    elif mutation == "set":
        i = draw(st.integers(0, min(len(raw) - 1, 40)))
        raw = raw[:i] + bytes([draw(st.sampled_from([0, 1, 4, 0x8D, 0xFF]))]) + raw[i + 1 :]
    return raw


@given(encodings())
def test_decoder_matches_model(raw: bytes) -> None:
    """The core's decoder and the model's accept the same bytes, decode the same fields and
    report the same field and offset for the first problem."""
    try:
        expected = decode(raw)
    except DecodeError as e:
        with pytest.raises(tb.MalformedTransaction) as info:
            tb.decode(raw)
        assert (info.value.field, info.value.offset) == (e.field, e.offset)
        return
    got = tb.decode(raw)
    assert got["kind"] == expected.kind
    assert (got["timestamp_ms"], got["expiry_ms"]) == (expected.timestamp_ms, expected.expiry_ms)
    assert tuple(got["inputs"]) == expected.inputs
    assert tuple(got["outputs"]) == expected.outputs
    assert got["reference"] == expected.reference
    assert tuple(got["signatures"]) == expected.signatures
    assert got["id"] == expected.id == tb.transaction_id(raw)
    for index in (0, 1, 65535):
        assert tb.token_id(expected.id, index) == token_id(expected.id, index)


@given(st.binary(max_size=300))
def test_decoder_matches_model_on_random_bytes(raw: bytes) -> None:
    try:
        decode(raw)
    except DecodeError as e:
        with pytest.raises(tb.MalformedTransaction) as info:
            tb.decode(raw)
        assert (info.value.field, info.value.offset) == (e.field, e.offset)
    else:
        tb.decode(raw)


def test_model_verifies_ed25519_independently() -> None:
    """The model's Ed25519 path uses `cryptography`, and agrees with the core on a good and a
    bad signature (a guard that the model is not vacuous)."""
    body = tb.encode(tb.Kind.ISSUE, [], [(100, 5)], T0, T0 + HOUR)
    tx = decode(KEYRING.sign([body], [[1]])[0])
    (signer, sig), wallet = tx.signatures[0], Wallet(CENTRAL_BANK, ED25519, PUBLIC_KEYS[1])
    assert signer == 1
    assert wallet.verify(tx.id, sig)
    assert tb.verify_signature(tb.Scheme.ED25519, PUBLIC_KEYS[1], tx.id, sig)
    bad = bytes([sig[0] ^ 1]) + sig[1:]
    assert not wallet.verify(tx.id, bad)
    assert not tb.verify_signature(tb.Scheme.ED25519, PUBLIC_KEYS[1], tx.id, bad)
    assert not Wallet(CENTRAL_BANK, ED25519, PUBLIC_KEYS[100]).verify(tx.id, sig)
