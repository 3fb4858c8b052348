//! The one error type of the core. Per-transaction failures are [`crate::Status`] values, not
//! errors: an [`Error`] means the whole call was refused and nothing changed.

/// A transaction or batch encoding that cannot be read: names the field and the byte offset.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {field} at byte {offset}: {reason}")]
pub struct DecodeError {
    pub field: &'static str,
    pub offset: usize,
    pub reason: String,
}

impl DecodeError {
    pub fn new(field: &'static str, offset: usize, reason: String) -> Self {
        DecodeError {
            field,
            offset,
            reason,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("wallet {0} is already registered")]
    DuplicateWallet(u64),
    #[error("wallet {0} is not registered")]
    UnknownWallet(u64),
    #[error("batch rejected: {0}")]
    Batch(String),
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("log or snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("ledger stopped after a failed write ({0}): reopen it to recover from its log")]
    Failed(String),
    #[error("the ledger is closed")]
    Closed,
    #[error("{0} is locked by another process")]
    Locked(String),
}

pub type Result<T> = std::result::Result<T, Error>;
