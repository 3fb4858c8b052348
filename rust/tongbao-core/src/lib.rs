//! tongbao-core: the ledger engine of tongbao, a transaction-processing core for retail
//! central-bank digital currency. Pure Rust, no Python: the `tongbao-py` crate binds it.
//!
//! - [`format`]: the canonical binary transaction format (version 1) and batch framing.
//! - [`crypto`]: Ed25519 (strict encodings, cofactored batch verification) and SM2/SM3.
//! - [`ledger`]: wallets, the UTXO set and batch settlement with one [`Status`] per transaction.
//! - [`builder`]: client-side keyring, batch signing and wallet-level payments.

pub mod admin;
pub mod builder;
pub mod credits;
pub mod crypto;
pub mod error;
pub mod format;
pub mod ledger;
pub mod locks;
pub mod report;
pub mod rules;
pub mod status;
pub mod verifier;
pub mod wal;

pub use builder::{
    build_payments, build_payments_with_references, BuiltPayments, Keyring, Payment,
};
pub use credits::{home_vshard, Credit, ShardSpec, ShardTotals};
pub use crypto::{PublicKey, Scheme, SigningKey};
pub use error::{DecodeError, Error, Result};
pub use format::{decode, Kind, Transaction};
pub use ledger::{Ledger, LedgerConfig, Receipt, Registration, Supply, WalletKind, WalletUpdate};
pub use locks::{Lock, LockInfo};
pub use rules::{ClassLimits, Limits, OverCap, WalletAttrs, WalletStatus};
pub use status::Status;
pub use wal::{audit, AuditReport, CommitPolicy, RecoveryReport, StoreOptions};
