"""A small, slow, readable reference model of the ledger rules (``docs/status-codes.md``).

The model shares no logic with the Rust core: it decodes the v1 binary format itself (see
``rust/tongbao-core/src/format.rs``), hashes with :mod:`hashlib`, and verifies Ed25519 with
``cryptography`` (OpenSSL). Only SM2 signatures are checked with ``tongbao.verify_signature``,
for want of an independent SM2 library. Settlement walks the transactions one at a time and
applies the checks in the documented order; phase 1 / phase 2 is an optimisation of the core
that must not change any outcome, so the model has no phases.

The wallet rules of ``docs/wallet-rules.md`` (frozen and closed wallets, per-payment, daily and
annual caps, balance caps and sweeps) follow the checks of transfers and redeems, in the
documented order; calendar days and years come from :mod:`zoneinfo` (Asia/Shanghai), not from
the core's day arithmetic.

Wallet administration (format version 2, kinds 4-8: register, set class, freeze, unfreeze,
close) is decoded by the model's own decoder and checked in the order of docs/status-codes.md
("Wallet administration"): one signer, who must be the wallet's operator (the central bank for
operator and central-bank wallets); signatures count only for wallets registered before the
batch began (``signer_ids``).

Locks (format version 3, kinds 9-11: lock, capture, release; ``docs/locks.md``) are decoded by
the model's decoder and checked in the order of docs/status-codes.md ("Locks"). The locked
token stays in ``unspent`` (the payer's); its terms are in ``locks``. The deadline action runs
in ``begin_batch``, for every lock whose deadline is before the batch timestamp, earliest
deadline first, ties by token id.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import IntEnum
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SHANGHAI = ZoneInfo("Asia/Shanghai")

# -- constants, written out from the docs and format.rs (not imported from tongbao) -------------

FORMAT_VERSION = 1
ADMIN_FORMAT_VERSION = 2  # wallet administration, kinds 4-8
LOCK_FORMAT_VERSION = 3  # locks, kinds 9-11
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
CONDITION_FORMAT_VERSION = 4  # programmable money: earmarked outputs, kinds 13-14
CONDITION_MCCS_MAX, CONDITION_MERCHANTS_MAX, CONDITION_REGIONS_MAX = 256, 4096, 256
FLAG_NOT_TRANSFERABLE, FLAG_NOT_REDEEMABLE = 1, 2
# The longest transaction: a condition definition with full lists (longer than any payment,
# even one whose outputs all carry a condition id).
TX_BYTES_MAX = max(
    HEADER_LEN
    + 2
    + INPUTS_MAX * 32
    + 2
    + OUTPUTS_MAX * (OUTPUT_LEN + 8)
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN,
    HEADER_LEN
    + 5 * 8
    + 1
    + 2
    + CONDITION_MCCS_MAX * 2
    + 2
    + CONDITION_MERCHANTS_MAX * 8
    + 2
    + CONDITION_REGIONS_MAX * 4
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN,
)

ISSUE, TRANSFER, REDEEM = 1, 2, 3
K_REGISTER, K_SET_CLASS, K_FREEZE, K_UNFREEZE, K_CLOSE = 4, 5, 6, 7, 8
ADMIN_KINDS = (K_REGISTER, K_SET_CLASS, K_FREEZE, K_UNFREEZE, K_CLOSE)
DEFINE, RECLAIM = 13, 14
K_LOCK, K_CAPTURE, K_RELEASE = 9, 10, 11
LOCK_KINDS = (K_LOCK, K_CAPTURE, K_RELEASE)
LAPSE_INDEX_FLAG = 0x2000
LAPSED_MEMORY_MS = 7 * 24 * 3600 * 1000 + 5 * 60 * 1000
KEY_LENGTHS = {1: (32,), 2: (33, 65)}  # Ed25519; SM2 compressed or uncompressed SEC1

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
    # docs/wallet-rules.md
    WALLET_FROZEN = 16
    WALLET_CLOSED = 17
    LIMIT_PAYMENT = 18
    LIMIT_DAILY = 19
    LIMIT_ANNUAL = 20
    LIMIT_BALANCE = 21
    # docs/status-codes.md, wallet administration
    WALLET_EXISTS = 22
    INVALID_WALLET = 23
    BALANCE_NOT_ZERO = 24
    # docs/locks.md
    INPUT_LOCKED = 25
    NOT_LOCKED = 26
    CAPTURE_EXCEEDS_LOCK = 27
    LOCK_DEADLINE_PASSED = 28
    NOT_RELEASER = 29
    # docs/programmable-money.md
    CONDITION_FAILED = 30
    CONDITION_NOT_TRANSFERABLE = 31
    CONDITION_NOT_REDEEMABLE = 32
    CONDITION_WINDOW = 33
    CONDITION_INVALID = 34


RULE_STATUSES = frozenset(range(S.WALLET_FROZEN, S.LIMIT_BALANCE + 1))

# Wallet statuses, over-cap policies and wallet updates (docs/wallet-rules.md).
ACTIVE, FROZEN, CLOSED = 0, 1, 2
SWEEP, REJECT = 1, 2
SET_CLASS, FREEZE, UNFREEZE, CLOSE = 1, 2, 3, 4
SWEEP_INDEX_FLAG = 0x8000
LIMITS_VERSION_LEN_MAX = 64
NO_CAPS: tuple[int | None, ...] = (None, None, None, None)  # balance, payment, daily, annual


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
    # Wallet administration (kinds 4-8): the wallet, the registration (kind 4: wallet kind,
    # class, operator, parent, mcc, region, linked account, scheme, key) and the class (kind 5).
    wallet: int = 0
    registration: tuple[int, int, int, int, int, int, bool, int, bytes] | None = None
    new_class: int = 0
    # Programmable money: each output's condition (0: none), and a DEFINE's condition.
    conditions: tuple[int, ...] = ()
    define: CondDef | None = None
    # Locks (kinds 9-11): the terms of a lock (beneficiary, releaser, deadline_ms,
    # deadline_capture_fen); the payer a capture or release names; a capture's amount and flag.
    terms: tuple[int, int, int, int] | None = None
    payer: int = 0
    amount_fen: int = 0
    keep_rest_locked: bool = False

    @property
    def signers(self) -> list[int]:
        return [s for s, _ in self.signatures]

    @property
    def output_sum(self) -> int:
        """Exact sum (a Python int: may exceed u64)."""
        return sum(a for _, a in self.outputs)


@dataclass(frozen=True)
class CondDef:
    """A spending condition as a DEFINE carries it (docs/programmable-money.md)."""

    condition: int
    issuer: int
    reclaimer: int
    not_before_ms: int
    valid_until_ms: int
    flags: int
    mccs: tuple[int, ...]
    merchants: tuple[int, ...]
    regions: tuple[int, ...]

    def allows(self, wallet_id: int, mcc: int, region: int) -> bool:
        """Whether a merchant is inside every non-empty list."""
        return (
            (not self.merchants or wallet_id in self.merchants)
            and (not self.mccs or mcc in self.mccs)
            and (not self.regions or region in self.regions)
        )


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
    version = r.u8("version")
    if version not in (
        FORMAT_VERSION,
        ADMIN_FORMAT_VERSION,
        LOCK_FORMAT_VERSION,
        CONDITION_FORMAT_VERSION,
    ):
        raise DecodeError("version", 0, "unsupported version")
    kind = r.u8("kind")
    if kind not in (ISSUE, TRANSFER, REDEEM, *ADMIN_KINDS, *LOCK_KINDS, DEFINE, RECLAIM):
        raise DecodeError("kind", 1, "unknown kind")
    # Version of each kind; transfers and redeems are version 4 with an earmarked output.
    home = (
        ADMIN_FORMAT_VERSION
        if kind in ADMIN_KINDS
        else LOCK_FORMAT_VERSION
        if kind in LOCK_KINDS
        else CONDITION_FORMAT_VERSION
        if kind in (DEFINE, RECLAIM)
        else FORMAT_VERSION
    )
    earmark_version = version == CONDITION_FORMAT_VERSION and kind in (TRANSFER, REDEEM)
    if version != home and not earmark_version:
        raise DecodeError("kind", 1, "kind not of this format version")
    timestamp_ms = r.u64("timestamp_ms")
    expiry_pos = r.pos
    expiry_ms = r.u64("expiry_ms")
    if expiry_ms < timestamp_ms:
        raise DecodeError("expiry_ms", expiry_pos, "expiry before timestamp")
    if expiry_ms - timestamp_ms > VALIDITY_MS_MAX:
        raise DecodeError("expiry_ms", expiry_pos, "validity window too long")
    if kind in ADMIN_KINDS:
        return _decode_admin(data, r, kind, timestamp_ms, expiry_ms)
    if kind == DEFINE:
        return _decode_define(data, r, timestamp_ms, expiry_ms)
    if kind in (K_CAPTURE, K_RELEASE):
        return _decode_lock_use(data, r, kind, timestamp_ms, expiry_ms)

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
    conditions = []
    for _ in range(n_outputs):
        owner = r.u64("outputs.owner")
        amount = r.u64("outputs.amount_fen")
        tag_pos = r.pos
        tag = r.u8("outputs.condition")
        condition = 0
        if tag == 1 and earmark_version:
            id_pos = r.pos
            condition = r.u64("outputs.condition_id")
            if condition == 0:
                raise DecodeError("outputs.condition_id", id_pos, "condition 0 is reserved")
        elif tag != 0:
            raise DecodeError("outputs.condition", tag_pos, "unknown condition tag")
        outputs.append((owner, amount))
        conditions.append(condition)

    terms = None
    if kind == K_LOCK:
        terms_pos = r.pos
        terms = (
            r.u64("lock.beneficiary"),
            r.u64("lock.releaser"),
            r.u64("lock.deadline_ms"),
            r.u64("lock.deadline_capture_fen"),
        )
        if outputs and terms[3] > outputs[0][1]:
            raise DecodeError("lock.deadline_capture_fen", terms_pos + 24, "more than locked")

    reference_len = r.u8("reference_len")
    if reference_len > REFERENCE_LEN_MAX:
        raise DecodeError("reference_len", r.pos - 1, "reference too long")
    reference = r.take(reference_len, "reference")
    body = data[: r.pos]

    signatures = _signatures(data, r)

    if earmark_version and not any(conditions):
        raise DecodeError("version", 0, "no earmarked output: format version 1")
    # The shape of each kind.
    if kind == ISSUE and n_inputs != 0:
        raise DecodeError("n_inputs", HEADER_LEN, "an issue has no inputs")
    if kind in (TRANSFER, REDEEM, RECLAIM, K_LOCK) and n_inputs == 0:
        raise DecodeError("n_inputs", HEADER_LEN, "needs an input")
    if kind in (ISSUE, TRANSFER, RECLAIM, K_LOCK) and n_outputs == 0:
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
        conditions=tuple(conditions),
        terms=terms,
    )


def _decode_define(data: bytes, r: _Reader, timestamp_ms: int, expiry_ms: int) -> Tx:
    """The rest of a DEFINE (kind 13) after the validity window."""
    condition = r.u64("define.condition")
    if condition == 0:
        raise DecodeError("define.condition", HEADER_LEN, "condition 0 is reserved")
    issuer, reclaimer, not_before = (
        r.u64(f"define.{n}") for n in ("issuer", "reclaimer", "not_before_ms")
    )
    until_pos = r.pos
    valid_until = r.u64("define.valid_until_ms")
    if valid_until <= not_before:
        raise DecodeError("define.valid_until_ms", until_pos, "window ends before it starts")
    flags = r.u8("define.flags")
    if flags & ~(FLAG_NOT_TRANSFERABLE | FLAG_NOT_REDEEMABLE):
        raise DecodeError("define.flags", r.pos - 1, "unknown flags")
    lists = []
    for name, width, most in (
        ("define.mccs", 2, CONDITION_MCCS_MAX),
        ("define.merchants", 8, CONDITION_MERCHANTS_MAX),
        ("define.regions", 4, CONDITION_REGIONS_MAX),
    ):
        n_pos = r.pos
        n = r.u16(name)
        if n > most:
            raise DecodeError(name, n_pos, "too many entries")
        items: list[int] = []
        for _ in range(n):
            pos = r.pos
            v = int.from_bytes(r.take(width, name), "little")
            if items and items[-1] >= v:
                raise DecodeError(name, pos, "not sorted ascending without duplicates")
            items.append(v)
        lists.append(tuple(items))
    reference_len = r.u8("reference_len")
    if reference_len > REFERENCE_LEN_MAX:
        raise DecodeError("reference_len", r.pos - 1, "reference too long")
    reference = r.take(reference_len, "reference")
    body = data[: r.pos]
    signatures = _signatures(data, r)
    return Tx(
        kind=DEFINE,
        timestamp_ms=timestamp_ms,
        expiry_ms=expiry_ms,
        inputs=(),
        outputs=(),
        reference=reference,
        signatures=tuple(signatures),
        id=tx_id_of_body(body),
        body=body,
        define=CondDef(condition, issuer, reclaimer, not_before, valid_until, flags, *lists),
    )


def _decode_lock_use(data: bytes, r: _Reader, kind: int, timestamp_ms: int, expiry_ms: int) -> Tx:
    """The rest of a capture (kind 10) or release (kind 11): lock token, payer, and for a
    capture the amount (at least 1 fen) and the flags (0 or 1)."""
    token = r.take(32, "lock.token")
    payer = r.u64("lock.payer")
    amount = 0
    keep = False
    if kind == K_CAPTURE:
        amount_pos = r.pos
        amount = r.u64("capture.amount_fen")
        if amount == 0:
            raise DecodeError("capture.amount_fen", amount_pos, "a capture takes at least 1 fen")
        flags = r.u8("capture.flags")
        if flags > 1:
            raise DecodeError("capture.flags", r.pos - 1, "unknown capture flags")
        keep = flags == 1
    reference_len = r.u8("reference_len")
    if reference_len > REFERENCE_LEN_MAX:
        raise DecodeError("reference_len", r.pos - 1, "reference too long")
    reference = r.take(reference_len, "reference")
    body = data[: r.pos]
    signatures = _signatures(data, r)
    return Tx(
        kind=kind,
        timestamp_ms=timestamp_ms,
        expiry_ms=expiry_ms,
        inputs=(token,),
        outputs=(),
        reference=reference,
        signatures=tuple(signatures),
        id=tx_id_of_body(body),
        body=body,
        payer=payer,
        amount_fen=amount,
        keep_rest_locked=keep,
    )


def _signatures(data: bytes, r: _Reader) -> tuple[tuple[int, bytes], ...]:
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
    return tuple(signatures)


def _decode_admin(data: bytes, r: _Reader, kind: int, timestamp_ms: int, expiry_ms: int) -> Tx:
    """The rest of a wallet-administration transaction (format version 2, docs/format.md).

    The model checks a registration's key length for its scheme but not that the key is a
    valid curve point (the core does, with its crypto library; the tests only draw valid keys).
    """
    wallet = r.u64("wallet")
    registration = None
    new_class = 0
    if kind == K_REGISTER:
        wallet_kind = r.u8("registration.kind")
        if wallet_kind not in (PERSONAL, CORPORATE, MERCHANT, OPERATOR, CENTRAL_BANK):
            raise DecodeError("registration.kind", r.pos - 1, "unknown wallet kind")
        wallet_class = r.u8("registration.class")
        if wallet_class not in (1, 2, 3, 4):
            raise DecodeError("registration.class", r.pos - 1, "class outside 1-4")
        operator = r.u64("registration.operator")
        parent = r.u64("registration.parent")
        mcc = r.u16("registration.mcc")
        region = int.from_bytes(r.take(4, "registration.region"), "little")
        linked = r.u8("registration.linked_account")
        if linked > 1:
            raise DecodeError("registration.linked_account", r.pos - 1, "not 0 or 1")
        scheme = r.u8("registration.scheme")
        key_len_pos = r.pos
        key_len = r.u8("registration.key_len")
        if scheme not in KEY_LENGTHS:
            raise DecodeError("registration.scheme", key_len_pos - 1, "unknown scheme")
        if key_len not in KEY_LENGTHS[scheme]:
            raise DecodeError("registration.key_len", key_len_pos, "wrong key length")
        key = r.take(key_len, "registration.key")
        registration = (
            wallet_kind,
            wallet_class,
            operator,
            parent,
            mcc,
            region,
            bool(linked),
            scheme,
            key,
        )
    elif kind == K_SET_CLASS:
        new_class = r.u8("class")
        if new_class not in (1, 2, 3, 4):
            raise DecodeError("class", r.pos - 1, "class outside 1-4")
    reference_len = r.u8("reference_len")
    if reference_len > REFERENCE_LEN_MAX:
        raise DecodeError("reference_len", r.pos - 1, "reference too long")
    reference = r.take(reference_len, "reference")
    body = data[: r.pos]
    signatures = _signatures(data, r)
    return Tx(
        kind=kind,
        timestamp_ms=timestamp_ms,
        expiry_ms=expiry_ms,
        inputs=(),
        outputs=(),
        reference=reference,
        signatures=signatures,
        id=tx_id_of_body(body),
        body=body,
        wallet=wallet,
        registration=registration,
        new_class=new_class,
    )


# -- signatures ----------------------------------------------------------------------------------


@dataclass
class Wallet:
    kind: int
    scheme: int
    public_key: bytes
    wallet_class: int = 1
    operator: int = 0
    parent: int = 0
    mcc: int = 0
    region: int = 0
    linked_account: bool = False
    status: int = 0  # 0 active, 1 frozen, 2 closed
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


class ModelError(Exception):
    """A refused registration, wallet update or limits table (the core raises; nothing changes)."""


def shanghai_day_year(now_ms: int) -> tuple[int, int]:
    """(calendar day number since 1970-01-01, year) of ``now_ms`` in Asia/Shanghai, by zoneinfo."""
    local = datetime.fromtimestamp(now_ms // 1000, tz=SHANGHAI).date()
    return (local - date(1970, 1, 1)).days, local.year


@dataclass
class Plan:
    """What the wallet rules decided for one transfer or redeem."""

    # wallet -> outflow counted against its daily/annual caps (payers and their parents)
    counted: dict[int, int]
    # per output: (credited to its owner, swept to the owner's operator)
    credits: list[tuple[int, int]]
    swept_fen: int


@dataclass
class BatchTotals:
    issued_fen: int = 0
    redeemed_fen: int = 0
    value_moved_fen: int = 0
    swept_fen: int = 0


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
    # wallet -> (Shanghai day, outflow that day, year, outflow that year)
    counters: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    # Limits in force: version, over-cap policy (1 sweep, 2 reject), and 5 rows (classes 1-4,
    # sub-wallets) of (balance, payment, daily, annual) caps, None for no cap.
    limits_version: str = "none"
    over_balance_cap: int = 2
    limits_rows: tuple[tuple[int | None, ...], ...] = ((None, None, None, None),) * 5
    # Wallets whose signatures count in the current batch: those registered before it began
    # (the core verifies signatures before applying the batch, so a wallet opened by a
    # registration in a batch can receive in it but signs from the next batch on).
    signer_ids: set[int] = field(default_factory=set)
    # Programmable money: conditions by id, the earmark of each earmarked unspent token, and
    # per condition (issued, spent by mcc, reclaimed).
    conditions: dict[int, CondDef] = field(default_factory=dict)
    earmarks: dict[bytes, int] = field(default_factory=dict)
    cond_totals: dict[int, tuple[int, dict[int, int], int]] = field(default_factory=dict)
    # Locks: locked token -> (payer, beneficiary, releaser, deadline_ms, deadline_capture_fen);
    # the token itself stays in ``unspent``. Lapsed lock tokens -> until when remembered.
    locks: dict[bytes, tuple[int, int, int, int, int]] = field(default_factory=dict)
    lapsed: dict[bytes, int] = field(default_factory=dict)

    # -- wallets ---------------------------------------------------------------------------

    def register(
        self,
        wallet_id: int,
        kind: int,
        scheme: int,
        public_key: bytes,
        *,
        wallet_class: int = 1,
        operator: int = 0,
        parent: int = 0,
        mcc: int = 0,
        region: int = 0,
        linked_account: bool = False,
    ) -> None:
        """Register one wallet with its attributes, validated as docs/wallet-rules.md and
        ``Ledger.register_wallets`` say; raises :class:`ModelError` and changes nothing."""
        if wallet_id in self.wallets:
            raise ModelError(f"wallet {wallet_id}: duplicate")
        if wallet_class not in (1, 2, 3, 4):
            raise ModelError(f"wallet {wallet_id}: class {wallet_class}")
        if kind in (CENTRAL_BANK, OPERATOR) and wallet_class != 1:
            raise ModelError(f"wallet {wallet_id}: central bank and operators are class 1")
        if operator and operator != wallet_id and self._kind(operator) != OPERATOR:
            raise ModelError(f"wallet {wallet_id}: operator {operator} is not an operator")
        if operator == wallet_id and kind != OPERATOR:
            raise ModelError(f"wallet {wallet_id}: is not an operator")
        if parent:
            p = self.wallets.get(parent)
            if p is None or p.parent or p.operator != operator:
                raise ModelError(f"wallet {wallet_id}: bad parent {parent}")
            if p.kind not in (PERSONAL, CORPORATE) or kind not in (PERSONAL, CORPORATE):
                raise ModelError(f"wallet {wallet_id}: sub-wallets are personal or corporate")
        self.signer_ids.add(wallet_id)
        self.wallets[wallet_id] = Wallet(
            kind,
            scheme,
            bytes(public_key),
            wallet_class=wallet_class,
            operator=operator,
            parent=parent,
            mcc=mcc,
            region=region,
            linked_account=bool(linked_account),
        )

    def _kind(self, wallet_id: int) -> int | None:
        w = self.wallets.get(wallet_id)
        return None if w is None else w.kind

    def update(self, updates: Sequence[tuple[int, int, int]]) -> None:
        """Apply ``(wallet, action, class)`` updates (SET_CLASS, FREEZE, UNFREEZE, CLOSE), all or
        none: unknown and closed wallets (closed earlier in the same call included), classes
        outside 1-4, a class other than 1 for central-bank and operator wallets, and closing
        with a balance are refused with :class:`ModelError`."""
        closing: set[int] = set()
        for wid, action, wallet_class in updates:
            w = self.wallets.get(wid)
            if w is None:
                raise ModelError(f"wallet {wid}: unknown")
            if w.status == CLOSED or wid in closing:
                raise ModelError(f"wallet {wid}: closed")
            if action == SET_CLASS:
                if wallet_class not in (1, 2, 3, 4):
                    raise ModelError(f"wallet {wid}: class {wallet_class}")
                if wallet_class != 1 and w.kind in (CENTRAL_BANK, OPERATOR):
                    raise ModelError(f"wallet {wid}: central bank and operators are class 1")
            elif action == CLOSE:
                if self.balance(wid):
                    raise ModelError(f"wallet {wid}: closing with a balance")
                closing.add(wid)
            elif action not in (FREEZE, UNFREEZE):
                raise ModelError(f"unknown action {action}")
        for wid, action, wallet_class in updates:
            w = self.wallets[wid]
            if action == SET_CLASS:
                w.wallet_class = wallet_class
            else:
                w.status = {FREEZE: FROZEN, UNFREEZE: ACTIVE, CLOSE: CLOSED}[action]

    def set_limits(
        self, version: str, over_balance_cap: int, rows: Sequence[Sequence[int | None]]
    ) -> None:
        """Install a limits table: 5 rows (classes 1-4, sub-wallets) of (balance, payment,
        daily, annual) caps in fen, None for no cap."""
        if not 0 < len(version.encode()) <= LIMITS_VERSION_LEN_MAX:
            raise ModelError("limits version")
        if over_balance_cap not in (SWEEP, REJECT) or len(rows) != 5:
            raise ModelError("limits table")
        self.limits_version = version
        self.over_balance_cap = over_balance_cap
        self.limits_rows = tuple(tuple(row) for row in rows)

    def caps(self, wallet_id: int) -> tuple[int | None, ...]:
        """Effective (balance, payment, daily, annual) caps of a wallet: its class's, the
        tighter of those and the sub-wallet caps for a sub-wallet, none for the central bank and
        operators."""
        w = self.wallets[wallet_id]
        if w.kind in (CENTRAL_BANK, OPERATOR):
            return NO_CAPS
        caps = self.limits_rows[w.wallet_class - 1]
        if w.parent:
            caps = tuple(
                a if b is None else b if a is None else min(a, b)
                for a, b in zip(caps, self.limits_rows[4], strict=True)
            )
        return caps

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
        # Limits: version, over-cap policy, then 5 rows x 4 caps as (present, value).
        version = self.limits_version.encode()
        h.update(bytes([len(version)]) + version + bytes([self.over_balance_cap]))
        for row in self.limits_rows:
            for cap in row:
                h.update(bytes([cap is not None]) + (cap or 0).to_bytes(8, "little"))
        for wid in sorted(self.wallets):
            w = self.wallets[wid]
            h.update(wid.to_bytes(8, "little"))
            h.update(bytes([w.kind, w.scheme]))
            h.update(w.public_key)
            h.update(self.balance(wid).to_bytes(8, "little"))
            # Attributes and outflow counters.
            h.update(bytes([w.wallet_class, w.linked_account, w.status]))
            h.update(w.operator.to_bytes(8, "little") + w.parent.to_bytes(8, "little"))
            h.update(w.mcc.to_bytes(2, "little") + w.region.to_bytes(4, "little"))
            d, d_out, y, y_out = self.counters.get(wid, (0, 0, 0, 0))
            h.update(d.to_bytes(4, "little") + d_out.to_bytes(8, "little"))
            h.update(y.to_bytes(4, "little", signed=True) + y_out.to_bytes(8, "little"))
        for tid in sorted(self.unspent):
            owner, value = self.unspent[tid]
            h.update(tid)
            h.update(owner.to_bytes(8, "little"))
            h.update(value.to_bytes(8, "little"))
        if self.conditions:  # ledgers without conditions keep their digest
            h.update(b"conditions")
            for cid in sorted(self.conditions):
                c = self.conditions[cid]
                u64 = lambda v: v.to_bytes(8, "little")  # noqa: E731
                h.update(b"".join(u64(v) for v in (cid, c.issuer, c.reclaimer)))
                h.update(u64(c.not_before_ms) + u64(c.valid_until_ms) + bytes([c.flags]))
                for items, width in ((c.mccs, 2), (c.merchants, 8), (c.regions, 4)):
                    h.update(u64(len(items)) + b"".join(v.to_bytes(width, "little") for v in items))
                issued, spent, reclaimed = self.cond_totals[cid]
                h.update(u64(issued) + u64(len(spent)))
                for mcc in sorted(spent):
                    h.update(mcc.to_bytes(2, "little") + u64(spent[mcc]))
                h.update(u64(reclaimed) + u64(self.cond_outstanding(cid)))
            for tid in sorted(self.earmarks):
                h.update(tid + self.earmarks[tid].to_bytes(8, "little"))
        if self.locks:
            h.update(b"locks")
            for tid in sorted(self.locks):
                h.update(tid)
                for v in self.locks[tid]:
                    h.update(v.to_bytes(8, "little"))
        return h.digest()

    def cond_outstanding(self, condition: int) -> int:
        """Value of the unspent tokens earmarked under ``condition``."""
        return sum(self.unspent[t][1] for t, c in self.earmarks.items() if c == condition)

    def held(self, wallet_id: int) -> int:
        """Value locked on the wallet's tokens."""
        return sum(self.unspent[t][1] for t, lk in self.locks.items() if lk[0] == wallet_id)

    # -- settlement ------------------------------------------------------------------------

    def settle(self, batch: Sequence[bytes], now_ms: int) -> list[int]:
        self.begin_batch(now_ms)
        return [self.settle_one(raw, now_ms) for raw in batch]

    def begin_batch(self, now_ms: int) -> None:
        """Start a batch at ``now_ms``: the clock moves, expired memory goes, totals restart."""
        if now_ms < self.last_timestamp_ms:
            raise BatchRejected(f"{now_ms} < {self.last_timestamp_ms}")
        self.last_timestamp_ms = now_ms
        self.signer_ids = set(self.wallets)
        # Forget what expired: a marker lives while now <= the spender's expiry.
        self.spent = {t: e for t, e in self.spent.items() if not now_ms > e}
        self.settled = {t: e for t, e in self.settled.items() if not now_ms > e}
        self.lapsed = {t: e for t, e in self.lapsed.items() if not now_ms > e}
        self.last_totals = BatchTotals()
        self.lapse_locks(now_ms)

    def lapse_locks(self, now_ms: int) -> None:
        """The deadline action of every lock whose deadline is before ``now_ms`` (earliest
        first, ties by token id): the beneficiary gets the deadline capture where it can take it
        (a closed wallet or a refused balance cap sends it back to the payer; over the cap with
        the sweep policy, the excess goes to its operator), the payer gets the rest. The payer's
        outflow counts in its counters (not checked)."""
        due = sorted((lk[3], t) for t, lk in self.locks.items() if lk[3] < now_ms)
        for _, token in due:
            payer, beneficiary, _, _, dcap = self.locks.pop(token)
            _, value = self.unspent.pop(token)
            self.lapsed[token] = now_ms + LAPSED_MEMORY_MS
            to_b = min(dcap, value)
            to_p = value - to_b
            if to_b:
                if self._place_lapse(token, beneficiary, to_b):
                    if beneficiary != payer:
                        counted = {payer: to_b}
                        parent = self.wallets[payer].parent
                        if parent:
                            counted[parent] = to_b
                        self._count(counted, now_ms)
                else:
                    to_p = value
            if to_p:
                self.unspent[token_id(token, LAPSE_INDEX_FLAG | 1)] = (payer, to_p)

    def _place_lapse(self, token: bytes, beneficiary: int, amount: int) -> bool:
        w = self.wallets[beneficiary]
        if w.status == CLOSED:
            return False
        credit, swept = amount, 0
        cap = self.caps(beneficiary)[0]
        if cap is not None:
            before = self.balance(beneficiary)
            excess = max(0, before + amount - max(cap, before))
            if excess:
                operator = self.wallets.get(w.operator) if w.operator else None
                if (
                    self.over_balance_cap != SWEEP
                    or not w.linked_account
                    or operator is None
                    or operator.status == CLOSED
                ):
                    return False
                credit, swept = amount - excess, excess
        if credit:
            self.unspent[token_id(token, LAPSE_INDEX_FLAG)] = (beneficiary, credit)
        if swept:
            tid = token_id(token, LAPSE_INDEX_FLAG | SWEEP_INDEX_FLAG)
            self.unspent[tid] = (w.operator, swept)
        return True

    def _count(self, counted: dict[int, int], now_ms: int) -> None:
        day, year = shanghai_day_year(now_ms)
        for w, outflow in counted.items():
            d, d_out, y, y_out = self.counters.get(w, (0, 0, 0, 0))
            self.counters[w] = (
                day,
                (d_out if d == day else 0) + outflow,
                year,
                (y_out if y == year else 0) + outflow,
            )

    def settle_one(self, raw: bytes, now_ms: int) -> int:
        """Settle the next transaction of the batch begun at ``now_ms``; returns its status."""
        status, tx, plan = self.predict(raw, now_ms)
        if status == S.OK:
            assert tx is not None
            self.apply(tx, now_ms, plan)
        return int(status)

    def predict(self, raw: bytes, now: int) -> tuple[S, Tx | None, Plan | None]:
        """The status one transaction would get now, without changing anything: checks 1-17,
        then the wallet rules for transfers and redeems."""
        status, tx = self.check(raw, now)
        if status != S.OK or tx is None:
            return status, tx, None
        if tx.kind in ADMIN_KINDS:
            return self.check_admin(tx), tx, None
        if tx.kind in (DEFINE, RECLAIM):
            return status, tx, None  # decided in check()
        if tx.kind in LOCK_KINDS:
            return self.check_lock(tx, now)
        if tx.kind == ISSUE:
            # No limits on issues, but a frozen central bank cannot issue and a closed operator
            # cannot receive.
            if any(self.wallets[s].status == FROZEN for s in tx.signers):
                return S.WALLET_FROZEN, tx, None
            if any(self.wallets[o].status == CLOSED for o, _ in tx.outputs):
                return S.WALLET_CLOSED, tx, None
            return status, tx, None
        status, plan = self.check_rules(tx, now)
        if status == S.OK and plan is not None and (self.conditions or any(tx.conditions)):
            status = self.check_conditions(tx, plan, now)
        return status, tx, plan

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
        if any(s not in self.signer_ids for s in tx.signers):
            return S.UNKNOWN_WALLET, tx  # 8
        if self.verify_signatures and not all(
            self.wallets[s].verify(tx.id, sig) for s, sig in tx.signatures
        ):
            return S.BAD_SIGNATURE, tx  # 9
        if tx.kind in ADMIN_KINDS + LOCK_KINDS:
            return S.OK, tx  # the administration / lock checks follow
        if tx.kind == DEFINE:
            return self.check_define(tx), tx
        if any(owner not in self.wallets for owner, _ in tx.outputs):
            return S.UNKNOWN_WALLET, tx  # 10
        if any(i not in self.unspent and i not in self.spent for i in tx.inputs):
            return S.UNKNOWN_INPUT, tx  # 11
        if any(i not in self.unspent for i in tx.inputs):
            return S.INPUT_SPENT, tx  # 12
        if any(i in self.locks for i in tx.inputs):
            return S.INPUT_LOCKED, tx  # 12b

        signers = set(tx.signers)
        owners = {self.unspent[i][0] for i in tx.inputs}
        input_sum = sum(self.unspent[i][1] for i in tx.inputs)
        if tx.kind == RECLAIM:
            return self.check_reclaim(tx, now, input_sum), tx
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

    # -- programmable money (docs/programmable-money.md) ------------------------------------

    def check_define(self, tx: Tx) -> S:
        d = tx.define
        assert d is not None
        if not tx.signers:
            return S.MISSING_SIGNATURE
        if len(tx.signers) > 1:
            return S.UNEXPECTED_SIGNER
        if tx.signers[0] != d.issuer:
            return S.MISSING_SIGNATURE
        if d.reclaimer not in self.wallets:
            return S.UNKNOWN_WALLET
        issuer = self.wallets[d.issuer]
        if issuer.kind not in (CORPORATE, OPERATOR, CENTRAL_BANK):
            return S.NOT_AUTHORIZED
        if issuer.status == FROZEN:
            return S.WALLET_FROZEN
        if issuer.status == CLOSED:
            return S.WALLET_CLOSED
        if d.condition in self.conditions:
            return S.CONDITION_INVALID
        return S.OK

    def check_reclaim(self, tx: Tx, now: int, input_sum: int) -> S:
        if not tx.signers:
            return S.MISSING_SIGNATURE
        if len(tx.signers) > 1:
            return S.UNEXPECTED_SIGNER
        marks = [self.earmarks.get(i) for i in tx.inputs]
        if any(m is None for m in marks):
            return S.NOT_AUTHORIZED
        if len(set(marks)) > 1:
            return S.CONDITION_INVALID
        c = self.conditions[marks[0]]  # type: ignore[index]
        if tx.signers[0] != c.reclaimer or any(o != c.reclaimer for o, _ in tx.outputs):
            return S.NOT_AUTHORIZED
        if input_sum != tx.output_sum:
            return S.VALUE_MISMATCH
        if now < c.valid_until_ms:
            return S.CONDITION_WINDOW
        if self.wallets[c.reclaimer].status == CLOSED:
            return S.WALLET_CLOSED
        return S.OK

    def check_conditions(self, tx: Tx, plan: Plan, now: int) -> S:
        """The rule of docs/programmable-money.md for a transfer or redeem that passed every
        other check: earmarked value (inputs under one condition C) only stays earmarked C or
        reaches merchants that satisfy C; only an issuer creates earmarked value."""
        signers = tx.signers
        marks = {self.earmarks[i] for i in tx.inputs if i in self.earmarks}
        if len(marks) > 1:
            return S.CONDITION_INVALID
        cond = next(iter(marks), None)
        if cond is None and not any(tx.conditions):
            return S.OK  # nothing earmarked involved
        earmarked = sum(self.unspent[i][1] for i in tx.inputs if i in self.earmarks)
        for c in tx.conditions:
            if c and c not in self.conditions:
                return S.CONDITION_INVALID
        if tx.kind == REDEEM:
            return S.CONDITION_NOT_REDEEMABLE

        def issuer_signs(c: int) -> bool:
            return signers == [self.conditions[c].issuer]

        kept = 0
        for index, ((owner, amount), c) in enumerate(zip(tx.outputs, tx.conditions, strict=True)):
            if not c:
                continue
            d = self.conditions[c]
            if plan.credits[index][1]:
                return S.CONDITION_NOT_REDEEMABLE  # an earmarked output would be swept
            if c == cond:
                kept += amount
                if owner not in signers and not issuer_signs(c):
                    if d.flags & FLAG_NOT_REDEEMABLE and self.wallets[owner].kind == OPERATOR:
                        return S.CONDITION_NOT_REDEEMABLE
                    if d.flags & FLAG_NOT_TRANSFERABLE:
                        return S.CONDITION_NOT_TRANSFERABLE
            else:
                if not issuer_signs(c):
                    return S.NOT_AUTHORIZED
                if now >= d.valid_until_ms:
                    return S.CONDITION_WINDOW
        if cond is None:
            return S.OK
        d = self.conditions[cond]
        if not d.not_before_ms <= now < d.valid_until_ms:
            return S.CONDITION_WINDOW
        if kept > earmarked:
            return S.OK if issuer_signs(cond) else S.NOT_AUTHORIZED
        leaving = earmarked - kept
        first_refusal = None
        for (owner, amount), c in zip(tx.outputs, tx.conditions, strict=True):
            if leaving == 0:
                break
            if c:
                continue
            w = self.wallets[owner]
            if w.kind == MERCHANT and owner not in signers and d.allows(owner, w.mcc, w.region):
                leaving -= min(amount, leaving)
                continue
            if first_refusal is None:
                if w.kind == OPERATOR and d.flags & FLAG_NOT_REDEEMABLE:
                    first_refusal = S.CONDITION_NOT_REDEEMABLE
                elif (
                    w.kind != MERCHANT and owner not in signers and d.flags & FLAG_NOT_TRANSFERABLE
                ):
                    first_refusal = S.CONDITION_NOT_TRANSFERABLE
                else:
                    first_refusal = S.CONDITION_FAILED
        if leaving:
            return first_refusal or S.CONDITION_FAILED
        return S.OK

    def apply_conditions(self, tx: Tx, spent_inputs: dict[bytes, int]) -> None:
        """After ``apply`` moved the tokens of a transfer: the earmark totals and marks.
        ``spent_inputs`` are the inputs' values."""
        cond_in = {self.earmarks[i] for i in tx.inputs if i in self.earmarks}
        earmarked = sum(v for i, v in spent_inputs.items() if i in self.earmarks)
        for i in tx.inputs:
            self.earmarks.pop(i, None)
        cond = next(iter(cond_in), None)
        signers = tx.signers
        kept = 0
        for index, ((_, amount), c) in enumerate(zip(tx.outputs, tx.conditions, strict=True)):
            if not c:
                continue
            self.earmarks[token_id(tx.id, index)] = c
            if c == cond:
                kept += amount
            else:
                issued, spent, reclaimed = self.cond_totals[c]
                self.cond_totals[c] = (issued + amount, spent, reclaimed)
        if cond is None:
            return
        issued, spent, reclaimed = self.cond_totals[cond]
        if kept > earmarked:
            self.cond_totals[cond] = (issued + kept - earmarked, spent, reclaimed)
            return
        leaving = earmarked - kept
        d = self.conditions[cond]
        for (owner, amount), c in zip(tx.outputs, tx.conditions, strict=True):
            if leaving == 0:
                break
            w = self.wallets[owner]
            if c or w.kind != MERCHANT or owner in signers or not d.allows(owner, w.mcc, w.region):
                continue
            part = min(amount, leaving)
            leaving -= part
            spent[w.mcc] = spent.get(w.mcc, 0) + part

    def check_lock(self, tx: Tx, now: int) -> tuple[S, Tx | None, Plan | None]:
        """The checks of a lock, capture or release (docs/status-codes.md, "Locks"), in order;
        a capture's plan is the wallet rules' plan of the payment it makes."""
        signers = tx.signers
        if tx.kind == K_LOCK:
            assert tx.terms is not None
            beneficiary, releaser, _, _ = tx.terms
            if any(o not in self.wallets for o, _ in tx.outputs) or not (
                beneficiary in self.wallets and releaser in self.wallets
            ):
                return S.UNKNOWN_WALLET, tx, None
            if any(i not in self.unspent and i not in self.spent for i in tx.inputs):
                return S.UNKNOWN_INPUT, tx, None
            if any(i not in self.unspent for i in tx.inputs):
                return S.INPUT_SPENT, tx, None
            if any(i in self.locks for i in tx.inputs):
                return S.INPUT_LOCKED, tx, None
            if any(i in self.earmarks for i in tx.inputs):
                return S.CONDITION_FAILED, tx, None  # locks take free value only
            owners = {self.unspent[i][0] for i in tx.inputs}
            if not owners <= set(signers):
                return S.MISSING_SIGNATURE, tx, None
            if len(signers) != 1:
                return S.UNEXPECTED_SIGNER, tx, None
            payer = signers[0]
            if any(o != payer for o, _ in tx.outputs):
                return S.NOT_AUTHORIZED, tx, None
            if tx.output_sum != sum(self.unspent[i][1] for i in tx.inputs):
                return S.VALUE_MISMATCH, tx, None
            if self.wallets[payer].status == FROZEN:
                return S.WALLET_FROZEN, tx, None
            if self.wallets[beneficiary].status == CLOSED:
                return S.WALLET_CLOSED, tx, None
            return S.OK, tx, None
        (token,) = tx.inputs
        if token not in self.unspent:
            if token in self.spent:
                return S.INPUT_SPENT, tx, None
            if token in self.lapsed:
                return S.LOCK_DEADLINE_PASSED, tx, None
            return S.UNKNOWN_INPUT, tx, None
        lock = self.locks.get(token)
        if lock is None or lock[0] != tx.payer:
            return S.NOT_LOCKED, tx, None
        payer, beneficiary, releaser, deadline, _ = lock
        if not signers:
            return S.MISSING_SIGNATURE, tx, None
        if len(signers) > 1:
            return S.UNEXPECTED_SIGNER, tx, None
        allowed = (releaser,) if tx.kind == K_CAPTURE else (releaser, beneficiary)
        if signers[0] not in allowed:
            return S.NOT_RELEASER, tx, None
        if now > deadline:
            return S.LOCK_DEADLINE_PASSED, tx, None
        if tx.kind == K_RELEASE:
            return S.OK, tx, None
        value = self.unspent[token][1]
        if tx.amount_fen > value:
            return S.CAPTURE_EXCEEDS_LOCK, tx, None
        status, plan = self.check_rules(self._as_payment(tx), now)
        return status, tx, plan

    def _as_payment(self, tx: Tx) -> Tx:
        """A capture as the payment it makes: the locked token to the beneficiary
        (``amount_fen``) with the rest as change to the payer."""
        (token,) = tx.inputs
        payer, beneficiary = self.locks[token][:2]
        rest = self.unspent[token][1] - tx.amount_fen
        outputs = ((beneficiary, tx.amount_fen),) + (((payer, rest),) if rest else ())
        return Tx(TRANSFER, 0, 0, tx.inputs, outputs, b"", (), tx.id, b"")

    def apply_lock(self, tx: Tx, now_ms: int, plan: Plan | None) -> None:
        if tx.kind == K_LOCK:
            assert tx.terms is not None
            payer = tx.signers[0]
            for i in tx.inputs:
                self.unspent.pop(i)
                self.spent[i] = tx.expiry_ms
            for index, (_, amount) in enumerate(tx.outputs):
                self.unspent[token_id(tx.id, index)] = (payer, amount)
            self.locks[token_id(tx.id, 0)] = (payer, *tx.terms)
        else:
            (token,) = tx.inputs
            payer, beneficiary, releaser, deadline, dcap = self.locks.pop(token)
            _, value = self.unspent.pop(token)
            self.spent[token] = tx.expiry_ms
            if tx.kind == K_RELEASE:
                self.unspent[token_id(tx.id, 0)] = (payer, value)
            else:
                assert plan is not None
                self._count(plan.counted, now_ms)
                credit, swept = plan.credits[0]
                if credit:
                    self.unspent[token_id(tx.id, 0)] = (beneficiary, credit)
                if swept:
                    operator = self.wallets[beneficiary].operator
                    self.unspent[token_id(tx.id, SWEEP_INDEX_FLAG)] = (operator, swept)
                self.last_totals.swept_fen += plan.swept_fen
                rest = value - tx.amount_fen
                if rest:
                    rest_id = token_id(tx.id, 1)
                    self.unspent[rest_id] = (payer, rest)
                    if tx.keep_rest_locked:
                        left = max(0, dcap - tx.amount_fen)
                        self.locks[rest_id] = (payer, beneficiary, releaser, deadline, left)
        self.settled[tx.id] = tx.expiry_ms

    def check_admin(self, tx: Tx) -> S:
        """The wallet-administration checks (docs/status-codes.md), in order."""
        if not tx.signers:
            return S.MISSING_SIGNATURE
        if len(tx.signers) > 1:
            return S.UNEXPECTED_SIGNER
        (signer,) = tx.signers
        target = self.wallets.get(tx.wallet)
        if tx.registration is not None:
            if target is not None:
                return S.WALLET_EXISTS
            kind, operator = tx.registration[0], tx.registration[2]
        elif target is None:
            return S.UNKNOWN_WALLET
        else:
            kind, operator = target.kind, target.operator
        s = self.wallets[signer]
        if kind in (CENTRAL_BANK, OPERATOR):
            authorised = s.kind == CENTRAL_BANK
        else:
            authorised = signer == operator and s.kind == OPERATOR
        if not authorised:
            return S.NOT_AUTHORIZED
        if s.status == FROZEN:
            return S.WALLET_FROZEN
        if s.status == CLOSED:
            return S.WALLET_CLOSED
        if tx.registration is not None:
            try:
                self._check_registration(tx.wallet, tx.registration)
            except ModelError:
                return S.INVALID_WALLET
            return S.OK
        assert target is not None
        if target.status == CLOSED:
            return S.WALLET_CLOSED
        if tx.kind == K_SET_CLASS and tx.new_class != 1 and kind in (CENTRAL_BANK, OPERATOR):
            return S.INVALID_WALLET
        if tx.kind == K_CLOSE and self.balance(tx.wallet):
            return S.BALANCE_NOT_ZERO
        return S.OK

    def _check_registration(
        self, wallet_id: int, reg: tuple[int, int, int, int, int, int, bool, int, bytes]
    ) -> None:
        """Validate a registration as :meth:`register` does, on a copy (raises ModelError)."""
        kind, wallet_class, operator, parent, mcc, region, linked, scheme, key = reg
        trial = Model(wallets=dict(self.wallets))
        trial.register(
            wallet_id,
            kind,
            scheme,
            key,
            wallet_class=wallet_class,
            operator=operator,
            parent=parent,
            mcc=mcc,
            region=region,
            linked_account=linked,
        )

    def apply_admin(self, tx: Tx) -> None:
        if tx.registration is not None:
            kind, wallet_class, operator, parent, mcc, region, linked, scheme, key = tx.registration
            signers = set(self.signer_ids)
            self.register(
                tx.wallet,
                kind,
                scheme,
                key,
                wallet_class=wallet_class,
                operator=operator,
                parent=parent,
                mcc=mcc,
                region=region,
                linked_account=linked,
            )
            self.signer_ids = signers  # signs from the next batch on
        else:
            w = self.wallets[tx.wallet]
            if tx.kind == K_SET_CLASS:
                w.wallet_class = tx.new_class
            else:
                w.status = {K_FREEZE: FROZEN, K_UNFREEZE: ACTIVE, K_CLOSE: CLOSED}[tx.kind]
        self.settled[tx.id] = tx.expiry_ms

    def check_rules(self, tx: Tx, now: int) -> tuple[S, Plan | None]:
        """The wallet rules (docs/wallet-rules.md) for a transfer or redeem that passed checks
        1-17, in the documented order; with the plan of counters and sweeps when they pass."""
        spent_by: dict[int, int] = {}  # payer -> value of its inputs
        for i in tx.inputs:
            owner, value = self.unspent[i]
            spent_by[owner] = spent_by.get(owner, 0) + value
        paid_to: dict[int, int] = {}  # payee -> value of its outputs
        for owner, amount in tx.outputs:
            paid_to[owner] = paid_to.get(owner, 0) + amount
        if any(self.wallets[w].status == FROZEN for w in spent_by):
            return S.WALLET_FROZEN, None
        if any(self.wallets[w].status == CLOSED for w in paid_to):
            return S.WALLET_CLOSED, None
        # Outflow: inputs owned minus outputs back (never below zero).
        outflow = {w: out - paid_to.get(w, 0) for w, out in spent_by.items()}
        outflow = {w: o for w, o in outflow.items() if o > 0}
        for w, o in outflow.items():
            cap = self.caps(w)[1]
            if cap is not None and o > cap:
                return S.LIMIT_PAYMENT, None
        # What counts against daily and annual caps: own outflow plus the sub-wallets'.
        counted: dict[int, int] = {}
        for w, o in outflow.items():
            counted[w] = counted.get(w, 0) + o
            parent = self.wallets[w].parent
            if parent:
                counted[parent] = counted.get(parent, 0) + o
        day, year = shanghai_day_year(now)
        for status, cap_index, period, counter_index in (
            (S.LIMIT_DAILY, 2, day, 0),
            (S.LIMIT_ANNUAL, 3, year, 2),
        ):
            for w, o in counted.items():
                cap = self.caps(w)[cap_index]
                if cap is None:
                    continue
                counter = self.counters.get(w, (0, 0, 0, 0))
                used = counter[counter_index + 1] if counter[counter_index] == period else 0
                if used + o > cap:
                    return status, None
        # Balance caps: the excess over max(cap, balance before) is swept or refused.
        credits = [(amount, 0) for _, amount in tx.outputs]
        swept = 0
        for w, incoming in paid_to.items():
            cap = self.caps(w)[0]
            if cap is None:
                continue
            before = self.balance(w)
            after = before - spent_by.get(w, 0) + incoming
            ceiling = max(cap, before)
            if after <= ceiling:
                continue
            excess = after - ceiling
            wallet = self.wallets[w]
            operator = self.wallets.get(wallet.operator) if wallet.operator else None
            if (
                self.over_balance_cap != SWEEP
                or not wallet.linked_account
                or operator is None
                or operator.status == CLOSED
            ):
                return S.LIMIT_BALANCE, None
            room = incoming - excess
            for index, (owner, amount) in enumerate(tx.outputs):
                if owner == w:
                    credit = min(amount, room)
                    room -= credit
                    credits[index] = (credit, amount - credit)
            swept += excess
        return S.OK, Plan(counted, credits, swept)

    def apply(self, tx: Tx, now_ms: int, plan: Plan | None = None) -> None:
        if tx.kind in ADMIN_KINDS:
            self.apply_admin(tx)
            return
        if tx.kind in LOCK_KINDS:
            self.apply_lock(tx, now_ms, plan)
            return
        if tx.kind == DEFINE:
            assert tx.define is not None
            self.conditions[tx.define.condition] = tx.define
            self.cond_totals[tx.define.condition] = (0, {}, 0)
            self.settled[tx.id] = tx.expiry_ms
            return
        reclaimed = self.earmarks.get(tx.inputs[0]) if tx.kind == RECLAIM else None
        input_values = {i: self.unspent[i][1] for i in tx.inputs}
        if tx.kind == TRANSFER and (self.earmarks or any(tx.conditions)):
            self.apply_conditions(tx, input_values)
        input_sum = 0
        for i in tx.inputs:
            _, value = self.unspent.pop(i)
            input_sum += value
            self.spent[i] = tx.expiry_ms
        if reclaimed is not None:
            for i in tx.inputs:
                del self.earmarks[i]
            issued, spent, back = self.cond_totals[reclaimed]
            self.cond_totals[reclaimed] = (issued, spent, back + input_sum)
            plan = Plan({}, [(amount, 0) for _, amount in tx.outputs], 0)
        if plan is None:
            assert tx.kind == ISSUE
            plan = Plan({}, [(amount, 0) for _, amount in tx.outputs], 0)
        # Outflow counters of the Shanghai calendar day and year (docs/wallet-rules.md).
        day, year = shanghai_day_year(now_ms)
        for w, outflow in plan.counted.items():
            d, d_out, y, y_out = self.counters.get(w, (0, 0, 0, 0))
            self.counters[w] = (
                day,
                (d_out if d == day else 0) + outflow,
                year,
                (y_out if y == year else 0) + outflow,
            )
        for index, ((owner, _), (credit, swept)) in enumerate(
            zip(tx.outputs, plan.credits, strict=True)
        ):
            if credit:
                tid = token_id(tx.id, index)
                assert tid not in self.unspent
                self.unspent[tid] = (owner, credit)
            if swept:
                tid = token_id(tx.id, SWEEP_INDEX_FLAG | index)
                assert tid not in self.unspent
                self.unspent[tid] = (self.wallets[owner].operator, swept)
        self.last_totals.swept_fen += plan.swept_fen
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
            if tx.kind == TRANSFER:
                # Value paid to wallets other than the signers: change is not "moved".
                signers = {signer for signer, _ in tx.signatures}
                self.last_totals.value_moved_fen += sum(
                    amount for owner, amount in tx.outputs if owner not in signers
                )
        self.settled[tx.id] = tx.expiry_ms
