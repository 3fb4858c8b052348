"""A small, slow, readable reference model of the ledger rules (``docs/status-codes.md``).

The model shares no logic with the Rust core: it decodes the v1 binary format itself (see
``rust/tongbao-core/src/format.rs``), hashes with :mod:`hashlib`, and verifies Ed25519 with
``cryptography`` (OpenSSL). Only SM2 signatures are checked with ``tongbao.verify_signature``,
for want of an independent SM2 library. Settlement walks the transactions one at a time and
applies the checks in the documented order; phase 1 / phase 2 is an optimisation of the core
that must not change any outcome, so the model has no phases.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# -- constants, written out from the docs and format.rs (not imported from tongbao) -------------

FORMAT_VERSION = 1
INPUTS_MAX = 256
OUTPUTS_MAX = 1024
REFERENCE_LEN_MAX = 140
SIGNATURES_MAX = 64
VALIDITY_MS_MAX = 7 * 24 * 3600 * 1000
CLOCK_SKEW_MS_MAX = 5 * 60 * 1000
U64_MAX = 2**64 - 1

HEADER_LEN = 1 + 1 + 8 + 8
OUTPUT_LEN = 8 + 8 + 1
SIGNATURE_ENTRY_LEN = 8 + 64
TX_BYTES_MAX = (
    HEADER_LEN
    + 2
    + INPUTS_MAX * 32
    + 2
    + OUTPUTS_MAX * OUTPUT_LEN
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN
)

ISSUE, TRANSFER, REDEEM = 1, 2, 3

# Wallet kinds (ledger.rs WalletKind) and signature schemes (crypto.rs Scheme).
PERSONAL, CORPORATE, MERCHANT, OPERATOR, CENTRAL_BANK = 1, 2, 3, 4, 5
ED25519, SM2 = 1, 2


class S(IntEnum):
    """Status codes, values from the table in docs/status-codes.md."""

    OK = 0
    ALREADY_SETTLED = 1
    MALFORMED = 2
    EXPIRED = 3
    NOT_YET_VALID = 4
    DUPLICATE_INPUT = 5
    ZERO_VALUE_OUTPUT = 6
    VALUE_OVERFLOW = 7
    UNKNOWN_WALLET = 8
    BAD_SIGNATURE = 9
    MISSING_SIGNATURE = 10
    UNEXPECTED_SIGNER = 11
    UNKNOWN_INPUT = 12
    INPUT_SPENT = 13
    VALUE_MISMATCH = 14
    NOT_AUTHORIZED = 15


# -- decoding ------------------------------------------------------------------------------------


class DecodeError(Exception):
    """The bytes are not a v1 transaction; ``field`` and ``offset`` as the core reports them."""

    def __init__(self, field: str, offset: int, message: str) -> None:
        super().__init__(f"{field} at byte {offset}: {message}")
        self.field = field
        self.offset = offset


@dataclass(frozen=True)
class Tx:
    kind: int
    timestamp_ms: int
    expiry_ms: int
    inputs: tuple[bytes, ...]
    outputs: tuple[tuple[int, int], ...]  # (owner, amount_fen)
    reference: bytes
    signatures: tuple[tuple[int, bytes], ...]  # (signer, 64-byte signature)
    id: bytes
    body: bytes

    @property
    def signers(self) -> list[int]:
        return [s for s, _ in self.signatures]

    @property
    def output_sum(self) -> int:
        """Exact sum (a Python int: may exceed u64)."""
        return sum(a for _, a in self.outputs)


def tx_id_of_body(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


def token_id(tx_id: bytes, index: int) -> bytes:
    return hashlib.sha256(tx_id + struct.pack("<H", index)).digest()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, name: str) -> bytes:
        if self.pos + n > len(self.data):
            left = max(0, len(self.data) - self.pos)
            raise DecodeError(name, self.pos, f"truncated: needs {n} bytes, {left} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self, name: str) -> int:
        return self.take(1, name)[0]

    def u16(self, name: str) -> int:
        return int.from_bytes(self.take(2, name), "little")

    def u64(self, name: str) -> int:
        return int.from_bytes(self.take(8, name), "little")


def decode(data: bytes) -> Tx:
    """Decode one transaction, checking what the core's decoder checks, in the same order (so
    the first failure names the same field and offset)."""
    if len(data) > TX_BYTES_MAX:
        raise DecodeError("transaction", 0, "too long")
    r = _Reader(data)
    if r.u8("version") != FORMAT_VERSION:
        raise DecodeError("version", 0, "unsupported version")
    kind = r.u8("kind")
    if kind not in (ISSUE, TRANSFER, REDEEM):
        raise DecodeError("kind", 1, "unknown kind")
    timestamp_ms = r.u64("timestamp_ms")
    expiry_pos = r.pos
    expiry_ms = r.u64("expiry_ms")
    if expiry_ms < timestamp_ms:
        raise DecodeError("expiry_ms", expiry_pos, "expiry before timestamp")
    if expiry_ms - timestamp_ms > VALIDITY_MS_MAX:
        raise DecodeError("expiry_ms", expiry_pos, "validity window too long")

    n_pos = r.pos
    n_inputs = r.u16("n_inputs")
    if n_inputs > INPUTS_MAX:
        raise DecodeError("n_inputs", n_pos, "too many inputs")
    inputs = tuple(r.take(32, "inputs") for _ in range(n_inputs))

    n_pos = r.pos
    n_outputs = r.u16("n_outputs")
    if n_outputs > OUTPUTS_MAX:
        raise DecodeError("n_outputs", n_pos, "too many outputs")
    outputs = []
    for _ in range(n_outputs):
        owner = r.u64("outputs.owner")
        amount = r.u64("outputs.amount_fen")
        tag_pos = r.pos
        if r.u8("outputs.condition") != 0:
            raise DecodeError("outputs.condition", tag_pos, "unknown condition tag")
        outputs.append((owner, amount))

    reference_len = r.u8("reference_len")
    if reference_len > REFERENCE_LEN_MAX:
        raise DecodeError("reference_len", r.pos - 1, "reference too long")
    reference = r.take(reference_len, "reference")
    body = data[: r.pos]

    n_pos = r.pos
    n_signatures = r.u8("n_signatures")
    if n_signatures > SIGNATURES_MAX:
        raise DecodeError("n_signatures", n_pos, "too many signatures")
    signatures: list[tuple[int, bytes]] = []
    for _ in range(n_signatures):
        signer_pos = r.pos
        signer = r.u64("signatures.signer")
        if any(s == signer for s, _ in signatures):
            raise DecodeError("signatures.signer", signer_pos, "signer listed twice")
        signatures.append((signer, r.take(64, "signatures.signature")))
    if r.pos != len(data):
        raise DecodeError("transaction", r.pos, "trailing bytes")

    # The shape of each kind.
    if kind == ISSUE and n_inputs != 0:
        raise DecodeError("n_inputs", HEADER_LEN, "an issue has no inputs")
    if kind in (TRANSFER, REDEEM) and n_inputs == 0:
        raise DecodeError("n_inputs", HEADER_LEN, "needs an input")
    if kind in (ISSUE, TRANSFER) and n_outputs == 0:
        raise DecodeError("n_outputs", HEADER_LEN + 2 + 32 * n_inputs, "needs an output")

    return Tx(
        kind=kind,
        timestamp_ms=timestamp_ms,
        expiry_ms=expiry_ms,
        inputs=inputs,
        outputs=tuple(outputs),
        reference=reference,
        signatures=tuple(signatures),
        id=tx_id_of_body(body),
        body=body,
    )


# -- signatures ----------------------------------------------------------------------------------


@dataclass
class Wallet:
    kind: int
    scheme: int
    public_key: bytes
    _ed_key: Ed25519PublicKey | None = None

    def verify(self, message: bytes, signature: bytes) -> bool:
        if self.scheme == ED25519:
            if self._ed_key is None:
                self._ed_key = Ed25519PublicKey.from_public_bytes(self.public_key)
            try:
                self._ed_key.verify(signature, message)
            except InvalidSignature:
                return False
            return True
        # No independent SM2 implementation is available: use the core's.
        import tongbao

        return bool(tongbao.verify_signature(SM2, self.public_key, message, signature))


# -- the ledger ----------------------------------------------------------------------------------


class BatchRejected(Exception):
    """The model's whole-batch error (timestamp going backwards)."""


@dataclass
class BatchTotals:
    issued_fen: int = 0
    redeemed_fen: int = 0
    value_moved_fen: int = 0


@dataclass
class Model:
    verify_signatures: bool = True
    wallets: dict[int, Wallet] = field(default_factory=dict)
    unspent: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # token -> (owner, value)
    spent: dict[bytes, int] = field(default_factory=dict)  # token -> spender's expiry
    settled: dict[bytes, int] = field(default_factory=dict)  # tx id -> its expiry
    issued_fen: int = 0
    redeemed_fen: int = 0
    outstanding_fen: int = 0
    last_timestamp_ms: int = 0
    last_totals: BatchTotals = field(default_factory=BatchTotals)

    # -- wallets ---------------------------------------------------------------------------

    def register(self, wallet_id: int, kind: int, scheme: int, public_key: bytes) -> None:
        assert wallet_id not in self.wallets
        self.wallets[wallet_id] = Wallet(kind, scheme, bytes(public_key))

    # -- reads -----------------------------------------------------------------------------

    def balance(self, wallet_id: int) -> int:
        return sum(v for owner, v in self.unspent.values() if owner == wallet_id)

    def unspent_of(self, wallet_id: int) -> list[tuple[bytes, int]]:
        return sorted((t, v) for t, (owner, v) in self.unspent.items() if owner == wallet_id)

    def supply(self) -> tuple[int, int, int]:
        return self.issued_fen, self.redeemed_fen, self.outstanding_fen

    def state_digest(self, last_receipt_hash: bytes) -> bytes:
        """The core's ``state_digest`` layout (ledger.rs ``Ledger::state_digest``), computed from
        the model's state; the receipt chain hash is taken as given."""
        h = hashlib.sha256(b"tongbao state v1")
        h.update(self.issued_fen.to_bytes(16, "little"))
        h.update(self.redeemed_fen.to_bytes(16, "little"))
        h.update(last_receipt_hash)
        for wid in sorted(self.wallets):
            w = self.wallets[wid]
            h.update(wid.to_bytes(8, "little"))
            h.update(bytes([w.kind, w.scheme]))
            h.update(w.public_key)
            h.update(self.balance(wid).to_bytes(8, "little"))
        for tid in sorted(self.unspent):
            owner, value = self.unspent[tid]
            h.update(tid)
            h.update(owner.to_bytes(8, "little"))
            h.update(value.to_bytes(8, "little"))
        return h.digest()

    # -- settlement ------------------------------------------------------------------------

    def settle(self, batch: Sequence[bytes], now_ms: int) -> list[int]:
        if now_ms < self.last_timestamp_ms:
            raise BatchRejected(f"{now_ms} < {self.last_timestamp_ms}")
        self.last_timestamp_ms = now_ms
        # Forget what expired: a marker lives while now <= the spender's expiry.
        self.spent = {t: e for t, e in self.spent.items() if not now_ms > e}
        self.settled = {t: e for t, e in self.settled.items() if not now_ms > e}
        self.last_totals = BatchTotals()
        statuses = []
        for raw in batch:
            status, tx = self.check(raw, now_ms)
            if status == S.OK:
                assert tx is not None
                self.apply(tx)
            statuses.append(int(status))
        return statuses

    def check(self, raw: bytes, now: int) -> tuple[S, Tx | None]:
        """The status of one transaction against the current state (checks 1-17, in order)."""
        try:
            tx = decode(raw)
        except DecodeError:
            return S.MALFORMED, None  # 1
        if now > tx.expiry_ms:
            return S.EXPIRED, tx  # 2
        if tx.timestamp_ms > now + CLOCK_SKEW_MS_MAX:
            return S.NOT_YET_VALID, tx  # 3
        if tx.id in self.settled:
            return S.ALREADY_SETTLED, tx  # 4
        if len(set(tx.inputs)) != len(tx.inputs):
            return S.DUPLICATE_INPUT, tx  # 5
        if any(amount == 0 for _, amount in tx.outputs):
            return S.ZERO_VALUE_OUTPUT, tx  # 6
        if tx.output_sum > U64_MAX:
            return S.VALUE_OVERFLOW, tx  # 7
        if any(s not in self.wallets for s in tx.signers):
            return S.UNKNOWN_WALLET, tx  # 8
        if self.verify_signatures and not all(
            self.wallets[s].verify(tx.id, sig) for s, sig in tx.signatures
        ):
            return S.BAD_SIGNATURE, tx  # 9
        if any(owner not in self.wallets for owner, _ in tx.outputs):
            return S.UNKNOWN_WALLET, tx  # 10
        if any(i not in self.unspent and i not in self.spent for i in tx.inputs):
            return S.UNKNOWN_INPUT, tx  # 11
        if any(i not in self.unspent for i in tx.inputs):
            return S.INPUT_SPENT, tx  # 12

        signers = set(tx.signers)
        owners = {self.unspent[i][0] for i in tx.inputs}
        input_sum = sum(self.unspent[i][1] for i in tx.inputs)
        if tx.kind == ISSUE:
            if not signers:
                return S.MISSING_SIGNATURE, tx  # 13
            if len(signers) > 1:
                return S.UNEXPECTED_SIGNER, tx  # 14
            (signer,) = signers
            if self.wallets[signer].kind != CENTRAL_BANK or any(
                self.wallets[o].kind != OPERATOR for o, _ in tx.outputs
            ):
                return S.NOT_AUTHORIZED, tx  # 15
            if self.outstanding_fen + tx.output_sum > U64_MAX:
                return S.VALUE_OVERFLOW, tx  # 17
            return S.OK, tx
        if not owners <= signers:
            return S.MISSING_SIGNATURE, tx  # 13
        if not signers <= owners:
            return S.UNEXPECTED_SIGNER, tx  # 14
        if tx.kind == REDEEM:
            if any(self.wallets[o].kind != OPERATOR for o in owners) or any(
                o not in signers for o, _ in tx.outputs
            ):
                return S.NOT_AUTHORIZED, tx  # 15
            if tx.output_sum >= input_sum:
                return S.VALUE_MISMATCH, tx  # 16
        elif tx.output_sum != input_sum:
            return S.VALUE_MISMATCH, tx  # 16
        return S.OK, tx

    def apply(self, tx: Tx) -> None:
        input_sum = 0
        for i in tx.inputs:
            _, value = self.unspent.pop(i)
            input_sum += value
            self.spent[i] = tx.expiry_ms
        for index, (owner, amount) in enumerate(tx.outputs):
            tid = token_id(tx.id, index)
            assert tid not in self.unspent
            self.unspent[tid] = (owner, amount)
        if tx.kind == ISSUE:
            self.issued_fen += tx.output_sum
            self.outstanding_fen += tx.output_sum
            self.last_totals.issued_fen += tx.output_sum
        elif tx.kind == REDEEM:
            destroyed = input_sum - tx.output_sum
            self.redeemed_fen += destroyed
            self.outstanding_fen -= destroyed
            self.last_totals.redeemed_fen += destroyed
        else:
            assert input_sum == tx.output_sum
            # Value paid to wallets other than the signers: change is not "moved".
            signers = {signer for signer, _ in tx.signatures}
            self.last_totals.value_moved_fen += sum(
                amount for owner, amount in tx.outputs if owner not in signers
            )
        self.settled[tx.id] = tx.expiry_ms
