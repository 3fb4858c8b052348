"""tongbao (通宝): a transaction-processing core for retail central-bank digital currency.

The Rust engine (``tongbao._core``) validates and settles batches of signed transactions; this
package is its Python face.

>>> import tongbao as tb
>>> tb.Status.OK == 0
True
"""

from __future__ import annotations

from tongbao._core import (
    ADMIN_FORMAT_VERSION,
    BATCH_TX_COUNT_MAX,
    CLOCK_SKEW_MS_MAX,
    FORMAT_VERSION,
    INPUTS_MAX,
    OUTPUTS_MAX,
    REFERENCE_LEN_MAX,
    SIGNATURES_MAX,
    TIMESTAMP_MS_MAX,
    TX_BYTES_MAX,
    VALIDITY_MS_MAX,
    Keyring,
    frame_batch,
    public_key_from_secret,
    sign_message,
    unframe_batch,
    verify_signature,
)
from tongbao._core import __version__ as __version__
from tongbao.admin import (
    close_wallet,
    encode_admin,
    freeze_wallet,
    register_wallet,
    set_wallet_class,
    unfreeze_wallet,
)
from tongbao.audit import AuditReport, verify_log
from tongbao.errors import (
    BatchRejected,
    CorruptLog,
    DuplicateWallet,
    InsufficientFunds,
    InvalidArgument,
    InvalidKey,
    InvalidLimits,
    InvalidPreset,
    InvariantViolation,
    LedgerClosed,
    LedgerFailed,
    LedgerLocked,
    MalformedTransaction,
    StorageError,
    TongbaoError,
    UnknownWallet,
)
from tongbao.exchange import deposit_to_digital, digital_to_deposit, top_up
from tongbao.ledger import Ledger, Receipt, Recovery, Settlement, Supply, WalletInfo
from tongbao.limits import ClassLimits, Limits, load_limits, parse_limits
from tongbao.report import DayReport, OperatorDay, day_report
from tongbao.tx import (
    decode,
    encode,
    from_json,
    issue,
    redeem,
    sign,
    to_json,
    token_id,
    transaction_id,
    transfer,
)
from tongbao.types import Kind, Scheme, Status, WalletKind, WalletStatus

__all__ = [
    "ADMIN_FORMAT_VERSION",
    "BATCH_TX_COUNT_MAX",
    "CLOCK_SKEW_MS_MAX",
    "FORMAT_VERSION",
    "INPUTS_MAX",
    "OUTPUTS_MAX",
    "REFERENCE_LEN_MAX",
    "SIGNATURES_MAX",
    "TIMESTAMP_MS_MAX",
    "TX_BYTES_MAX",
    "VALIDITY_MS_MAX",
    "AuditReport",
    "BatchRejected",
    "ClassLimits",
    "CorruptLog",
    "DayReport",
    "DuplicateWallet",
    "InsufficientFunds",
    "InvalidArgument",
    "InvalidKey",
    "InvalidLimits",
    "InvalidPreset",
    "InvariantViolation",
    "Keyring",
    "Kind",
    "Ledger",
    "LedgerClosed",
    "LedgerFailed",
    "LedgerLocked",
    "Limits",
    "MalformedTransaction",
    "OperatorDay",
    "Receipt",
    "Recovery",
    "Scheme",
    "Settlement",
    "Status",
    "StorageError",
    "Supply",
    "TongbaoError",
    "UnknownWallet",
    "WalletInfo",
    "WalletKind",
    "WalletStatus",
    "close_wallet",
    "day_report",
    "decode",
    "deposit_to_digital",
    "digital_to_deposit",
    "encode",
    "encode_admin",
    "frame_batch",
    "freeze_wallet",
    "from_json",
    "issue",
    "load_limits",
    "parse_limits",
    "public_key_from_secret",
    "redeem",
    "register_wallet",
    "set_wallet_class",
    "sign",
    "sign_message",
    "to_json",
    "token_id",
    "top_up",
    "transaction_id",
    "transfer",
    "unframe_batch",
    "unfreeze_wallet",
    "verify_log",
    "verify_signature",
]
