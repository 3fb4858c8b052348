//! Per-transaction outcomes of settlement (documented in `docs/status-codes.md`).
//!
//! The checks run in the order of the codes' listing in [`Status::CHECK_ORDER`]; a transaction
//! gets the status of the first check it fails.

/// One status per transaction. The numeric values are part of the wire and log format: never
/// renumber, only append.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Ok = 0,
    AlreadySettled = 1,
    Malformed = 2,
    Expired = 3,
    NotYetValid = 4,
    DuplicateInput = 5,
    ZeroValueOutput = 6,
    ValueOverflow = 7,
    UnknownWallet = 8,
    BadSignature = 9,
    MissingSignature = 10,
    UnexpectedSigner = 11,
    UnknownInput = 12,
    InputSpent = 13,
    ValueMismatch = 14,
    NotAuthorized = 15,
    WalletFrozen = 16,
    WalletClosed = 17,
    LimitPayment = 18,
    LimitDaily = 19,
    LimitAnnual = 20,
    LimitBalance = 21,
    WalletExists = 22,
    InvalidWallet = 23,
    BalanceNotZero = 24,
    /// An input of a transfer, redeem or lock is a locked token (`docs/locks.md`).
    InputLocked = 25,
    /// A capture or release whose input is not a locked token, or names another payer.
    NotLocked = 26,
    /// A capture of more than the locked amount.
    CaptureExceedsLock = 27,
    /// A capture or release after the lock's deadline (the deadline action applies instead).
    LockDeadlinePassed = 28,
    /// A capture not signed by the lock's releaser, or a release signed by neither the
    /// releaser nor the beneficiary.
    NotReleaser = 29,
}

impl Status {
    /// Every status, by numeric value.
    pub const ALL: [Status; 30] = [
        Status::Ok,
        Status::AlreadySettled,
        Status::Malformed,
        Status::Expired,
        Status::NotYetValid,
        Status::DuplicateInput,
        Status::ZeroValueOutput,
        Status::ValueOverflow,
        Status::UnknownWallet,
        Status::BadSignature,
        Status::MissingSignature,
        Status::UnexpectedSigner,
        Status::UnknownInput,
        Status::InputSpent,
        Status::ValueMismatch,
        Status::NotAuthorized,
        Status::WalletFrozen,
        Status::WalletClosed,
        Status::LimitPayment,
        Status::LimitDaily,
        Status::LimitAnnual,
        Status::LimitBalance,
        Status::WalletExists,
        Status::InvalidWallet,
        Status::BalanceNotZero,
        Status::InputLocked,
        Status::NotLocked,
        Status::CaptureExceedsLock,
        Status::LockDeadlinePassed,
        Status::NotReleaser,
    ];

    pub fn from_u8(value: u8) -> Option<Status> {
        Status::ALL.get(value as usize).copied()
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::AlreadySettled => "ALREADY_SETTLED",
            Status::Malformed => "MALFORMED",
            Status::Expired => "EXPIRED",
            Status::NotYetValid => "NOT_YET_VALID",
            Status::DuplicateInput => "DUPLICATE_INPUT",
            Status::ZeroValueOutput => "ZERO_VALUE_OUTPUT",
            Status::ValueOverflow => "VALUE_OVERFLOW",
            Status::UnknownWallet => "UNKNOWN_WALLET",
            Status::BadSignature => "BAD_SIGNATURE",
            Status::MissingSignature => "MISSING_SIGNATURE",
            Status::UnexpectedSigner => "UNEXPECTED_SIGNER",
            Status::UnknownInput => "UNKNOWN_INPUT",
            Status::InputSpent => "INPUT_SPENT",
            Status::ValueMismatch => "VALUE_MISMATCH",
            Status::NotAuthorized => "NOT_AUTHORIZED",
            Status::WalletFrozen => "WALLET_FROZEN",
            Status::WalletClosed => "WALLET_CLOSED",
            Status::LimitPayment => "LIMIT_PAYMENT",
            Status::LimitDaily => "LIMIT_DAILY",
            Status::LimitAnnual => "LIMIT_ANNUAL",
            Status::LimitBalance => "LIMIT_BALANCE",
            Status::WalletExists => "WALLET_EXISTS",
            Status::InvalidWallet => "INVALID_WALLET",
            Status::BalanceNotZero => "BALANCE_NOT_ZERO",
            Status::InputLocked => "INPUT_LOCKED",
            Status::NotLocked => "NOT_LOCKED",
            Status::CaptureExceedsLock => "CAPTURE_EXCEEDS_LOCK",
            Status::LockDeadlinePassed => "LOCK_DEADLINE_PASSED",
            Status::NotReleaser => "NOT_RELEASER",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_dense_and_round_trip() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as u8 as usize, i);
            assert_eq!(Status::from_u8(i as u8), Some(*s));
        }
        assert_eq!(Status::from_u8(Status::ALL.len() as u8), None);
    }
}
