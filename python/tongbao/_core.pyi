"""Typed stub of the compiled extension ``tongbao._core`` (Rust, pyo3). Checked by stubtest.

Use the documented wrappers in :mod:`tongbao` (``tongbao.Ledger`` and friends); these are the
raw batch-shaped calls underneath. Every call taking a batch releases the GIL.
"""

from collections.abc import Sequence
from typing import Any, final

__all__ = [
    "ADMIN_FORMAT_VERSION",
    "BATCH_TX_COUNT_MAX",
    "CLOCK_SKEW_MS_MAX",
    "CREDIT_BATCH_MAX",
    "CREDIT_LEN",
    "FORMAT_VERSION",
    "INPUTS_MAX",
    "LOCK_FORMAT_VERSION",
    "LOCK_LAPSE_INDEX_FLAG",
    "OUTPUTS_MAX",
    "REFERENCE_LEN_MAX",
    "SIGNATURES_MAX",
    "STATUS_NAMES",
    "TIMESTAMP_MS_MAX",
    "TX_BYTES_MAX",
    "VALIDITY_MS_MAX",
    "VSHARD_COUNT_MAX",
    "BatchVerifier",
    "Keyring",
    "Ledger",
    "__version__",
    "audit_log",
    "day_report",
    "decode_transaction",
    "encode_admin",
    "encode_lock",
    "encode_lock_use",
    "encode_transaction",
    "frame_batch",
    "home_vshards",
    "payer_vshards",
    "public_key_from_secret",
    "shard_delivered",
    "shard_epoch",
    "shard_import_credits",
    "shard_is_imported",
    "shard_outbox",
    "shard_set",
    "shard_set_epoch",
    "shard_spec",
    "shard_suspense",
    "shard_totals",
    "sign_message",
    "token_id",
    "transaction_id",
    "unframe_batch",
    "verify_signature",
]

FORMAT_VERSION: int
ADMIN_FORMAT_VERSION: int
LOCK_FORMAT_VERSION: int
LOCK_LAPSE_INDEX_FLAG: int
INPUTS_MAX: int
OUTPUTS_MAX: int
REFERENCE_LEN_MAX: int
SIGNATURES_MAX: int
VALIDITY_MS_MAX: int
TX_BYTES_MAX: int
BATCH_TX_COUNT_MAX: int
CLOCK_SKEW_MS_MAX: int
TIMESTAMP_MS_MAX: int
STATUS_NAMES: list[str]
__version__: str

@final
class Ledger:
    """The settlement engine: wallets, unspent tokens, batch settlement."""

    def __new__(cls, threads: int = 0, verify_signatures: bool = True) -> Ledger: ...
    @staticmethod
    def open(
        path: str,
        threads: int = 0,
        verify_signatures: bool = True,
        commit: str = "fsync",
        snapshot_every_records: int = 10_000,
        snapshots_kept: int = 2,
        unsafe_ack_before_fsync: bool = False,
    ) -> tuple[Ledger, dict[str, int]]:
        """Open or create a durable ledger directory; returns (ledger, recovery report)."""

    def snapshot(self) -> int: ...
    def close(self) -> None: ...
    @property
    def path(self) -> str | None: ...
    @property
    def last_lsn(self) -> int | None: ...
    @property
    def threads(self) -> int: ...
    @property
    def verify_signatures(self) -> bool: ...
    @property
    def wallet_count(self) -> int: ...
    @property
    def token_count(self) -> int: ...
    @property
    def settled_count(self) -> int: ...
    @property
    def lock_count(self) -> int: ...
    @property
    def batch_seq(self) -> int: ...
    @property
    def last_timestamp_ms(self) -> int: ...
    @property
    def last_receipt_hash(self) -> bytes: ...
    def register_wallets(
        self,
        wallet_ids: Sequence[int],
        kinds: Sequence[int],
        schemes: Sequence[int],
        public_keys: Sequence[bytes],
        attrs: Sequence[tuple[int, int, int, int, int, bool]] | None = None,
    ) -> None:
        """Register wallets all or none. Raises InvalidKey, DuplicateWallet, InvalidArgument."""

    def update_wallets(
        self, wallet_ids: Sequence[int], actions: Sequence[int], classes: Sequence[int]
    ) -> None: ...
    def set_limits(
        self,
        version: str,
        over_balance_cap: int,
        table: Sequence[tuple[int | None, int | None, int | None, int | None]],
    ) -> None: ...
    @property
    def limits_version(self) -> str: ...
    def limits_table(
        self,
    ) -> tuple[str, int, list[tuple[int | None, int | None, int | None, int | None]]]: ...
    def settle(
        self, batch: list[bytes] | bytes, timestamp_ms: int
    ) -> tuple[bytes, dict[str, object]]:
        """Settle a batch; returns (one status byte per transaction, receipt dict)."""

    def balance(self, wallet_id: int) -> int: ...
    def balances(self, wallet_ids: Sequence[int]) -> bytes:
        """Balances as little-endian u64 bytes."""

    def outflow_room(self, wallet_id: int, timestamp_ms: int) -> tuple[int | None, int | None]:
        """(per-payment cap, room under the daily and annual caps of the wallet and its parent)
        at ``timestamp_ms``; None for no cap. Raises UnknownWallet."""

    def payee_states(self, wallet_ids: Sequence[int]) -> tuple[bytes, bytes, bytes, bytes]:
        """Status (u8, 255 unknown), balance (u64 LE), balance cap (u64 LE, max: none) and
        can-sweep (u8) of many wallets; releases the GIL."""

    def wallet_info(self, wallet_id: int) -> dict[str, Any] | None:
        """The wallet's fields as a dict, or None."""

    def unspent(self, wallet_id: int) -> list[tuple[bytes, int]]: ...
    def token(self, token_id: bytes) -> tuple[int, int] | None: ...
    def is_spent(self, token_id: bytes) -> bool: ...
    def held_fen(self, wallet_id: int) -> int:
        """Held (locked) value of a wallet. Raises UnknownWallet."""

    def locks(self, wallet_id: int) -> list[tuple[bytes, int, int, int, int, int]]:
        """(token, amount_fen, beneficiary, releaser, deadline_ms, deadline_capture_fen) of
        each lock on the wallet's tokens. Raises UnknownWallet."""

    def lock(self, token_id: bytes) -> tuple[int, tuple[bytes, int, int, int, int, int]] | None:
        """(payer, lock as in ``locks``) of a locked token, or None."""

    def is_settled(self, tx_id: bytes) -> bool: ...
    def supply(self) -> tuple[int, int, int]:
        """(issued_fen, redeemed_fen, outstanding_fen)."""

    def check_invariants(self) -> None: ...
    def state_digest(self) -> bytes: ...
    def build_payments(
        self,
        keyring: Keyring,
        payers: Sequence[int],
        payees: Sequence[int],
        amounts: Sequence[int],
        timestamp_ms: int,
        expiry_ms: int,
        reference: Sequence[bytes] = ...,
        skip_insufficient: bool = False,
    ) -> tuple[list[bytes], list[int]]:
        """Build and sign transfers; returns (transactions, skipped indices). ``reference``
        holds one reference for every payment or one per payment. A receipt the balance cap
        may sweep or refuse is never spent later in the list (see ``Ledger.build_payments``)."""

@final
class Keyring:
    """Secret keys by wallet id, held client-side."""

    def __new__(cls) -> Keyring: ...
    def __len__(self) -> int: ...
    def __contains__(self, wallet_id: int, /) -> bool: ...
    def generate(self, wallet_ids: Sequence[int], scheme: int, seed: bytes) -> list[bytes]:
        """Derive deterministic keys (for simulations and tests); returns public keys."""

    def add(self, wallet_id: int, scheme: int, secret: bytes) -> bytes:
        """Add a 32-byte secret key; returns the public key."""

    def public_key(self, wallet_id: int) -> bytes: ...
    def sign(self, txs: list[bytes] | bytes, signers: Sequence[Sequence[int]]) -> list[bytes]:
        """Sign encoded transactions (replacing their signatures), in parallel."""

@final
class BatchVerifier:
    """Raw batch signature verification (the ceiling ``tongbao bench`` compares settle with):
    keys parsed once, then many (key index, message, signature) triples per call, checked in
    parallel on its own ``threads`` (0: one per core) with the ledger's code path."""

    def __new__(
        cls, schemes: Sequence[int], public_keys: Sequence[bytes], threads: int = 0
    ) -> BatchVerifier: ...
    def __len__(self) -> int: ...
    @property
    def threads(self) -> int: ...
    def verify(
        self, key_indices: Sequence[int], messages: list[bytes], signatures: list[bytes]
    ) -> bytes:
        """One byte per signature, 1 valid, 0 invalid. Raises InvalidArgument (lengths differ,
        a key index out of range, a signature not 64 bytes). Releases the GIL."""

def encode_transaction(
    kind: int,
    inputs: Sequence[bytes],
    outputs: Sequence[tuple[int, int]],
    timestamp_ms: int,
    expiry_ms: int,
    reference: bytes = ...,
    signatures: Sequence[tuple[int, bytes]] = ...,
) -> bytes: ...
def encode_admin(
    kind: int,
    wallet: int,
    timestamp_ms: int,
    expiry_ms: int,
    reference: bytes = ...,
    registration: tuple[int, int, int, int, int, int, bool, int, bytes] | None = None,
    class_: int = 0,
) -> bytes:
    """Encode an unsigned wallet-administration transaction (format v2, kinds 4-8).
    ``registration`` (kind 4): (wallet_kind, class, operator, parent, mcc, region,
    linked_account, scheme, public_key). Raises ``MalformedTransaction`` naming the field."""

def encode_lock(
    inputs: Sequence[bytes],
    outputs: Sequence[tuple[int, int]],
    beneficiary: int,
    releaser: int,
    deadline_ms: int,
    deadline_capture_fen: int,
    timestamp_ms: int,
    expiry_ms: int,
    reference: bytes = ...,
) -> bytes:
    """Encode an unsigned lock (format v3, kind 9); output 0 is the locked amount.
    Raises ``MalformedTransaction`` naming the field."""

def encode_lock_use(
    lock_token: bytes,
    payer: int,
    amount_fen: int | None,
    keep_rest_locked: bool,
    timestamp_ms: int,
    expiry_ms: int,
    reference: bytes = ...,
) -> bytes:
    """Encode an unsigned capture (kind 10, ``amount_fen`` given) or release (kind 11,
    ``amount_fen`` None). Raises ``MalformedTransaction`` naming the field."""

def decode_transaction(tx: bytes) -> dict[str, object]: ...
def day_report(path: str, day: int, threads: int = 0) -> dict[str, Any]:
    """End-of-day report of Shanghai day ``day`` from a ledger directory's log (see
    ``tongbao.day_report``). Releases the GIL."""

def transaction_id(tx: bytes) -> bytes: ...
def token_id(tx_id: bytes, index: int) -> bytes: ...
def frame_batch(txs: Sequence[bytes]) -> bytes: ...
def unframe_batch(blob: bytes) -> list[bytes]: ...
def verify_signature(scheme: int, public_key: bytes, message: bytes, signature: bytes) -> bool: ...
def sign_message(scheme: int, secret: bytes, message: bytes) -> bytes: ...
def public_key_from_secret(scheme: int, secret: bytes) -> bytes: ...
def audit_log(path: str, threads: int = 0) -> dict[str, object]:
    """Replay a ledger directory's whole log with every check; returns a summary."""

# -- virtual shards and cross-shard credits (tongbao.shard) ------------------------------------
VSHARD_COUNT_MAX: int
CREDIT_BATCH_MAX: int
CREDIT_LEN: int

def shard_set(ledger: Ledger, count: int, index: int, unsafe_reapply_credits: bool = False) -> None:
    """Make the ledger vshard ``index`` of ``count`` (logged; before its first batch)."""

def shard_spec(ledger: Ledger) -> tuple[int, int] | None: ...
def shard_set_epoch(ledger: Ledger, epoch: int) -> None:
    """Record a worker's lease epoch in the shard's log (epochs only grow)."""

def shard_epoch(ledger: Ledger) -> int: ...
def shard_import_credits(ledger: Ledger, packed: bytes) -> bytes:
    """Import packed credits (56 bytes each); one status byte per credit. Releases the GIL."""

def shard_outbox(ledger: Ledger, limit: int, after: int = 0) -> tuple[bytes, bytes]:
    """The first ``limit`` undelivered exports numbered above ``after``: (u64 sequence
    numbers, packed credits)."""

def shard_delivered(ledger: Ledger, upto: int) -> None: ...
def shard_suspense(ledger: Ledger) -> bytes: ...
def shard_is_imported(ledger: Ledger, token_id: bytes) -> bool: ...
def shard_totals(ledger: Ledger) -> dict[str, int]: ...
def home_vshards(wallets: bytes, count: int) -> bytes:
    """Home vshard (u32) of each wallet id (u64), little-endian."""

def payer_vshards(batch: list[bytes] | bytes, count: int) -> bytes:
    """Home vshard (u32) of each transaction's first signer; undecodable ones go to 0."""
