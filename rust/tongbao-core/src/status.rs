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
    /// Earmarked value goes where its condition does not allow: a merchant not listed, of a
    /// category or region not allowed, or out of the earmark (laundering by split or merge).
    ConditionFailed = 30,
    /// Earmarked value of a non-transferable condition paid to another person's wallet.
    ConditionNotTransferable = 31,
    /// Earmarked value of a non-redeemable condition exchanged back to deposits (paid to an
    /// operator bank, swept over a balance cap) or redeemed.
    ConditionNotRedeemable = 32,
    /// Earmarked value spent before its condition's `not_before_ms` or from its
    /// `valid_until_ms` on, or a reclaim before `valid_until_ms`.
    ConditionWindow = 33,
    /// An unknown condition id, a condition id defined twice, inputs under two conditions, or
    /// an earmarked output to a wallet homed on another shard.
    ConditionInvalid = 34,
}

impl Status {
    /// One more than the largest numeric value: the length of per-status count arrays.
    pub const SLOTS: usize = 35;

    /// Every status, by numeric value.
    pub const ALL: [Status; 35] = [
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
        Status::ConditionFailed,
        Status::ConditionNotTransferable,
        Status::ConditionNotRedeemable,
        Status::ConditionWindow,
        Status::ConditionInvalid,
    ];

    pub fn from_u8(value: u8) -> Option<Status> {
        Status::ALL.iter().copied().find(|s| *s as u8 == value)
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
            Status::ConditionFailed => "CONDITION_FAILED",
            Status::ConditionNotTransferable => "CONDITION_NOT_TRANSFERABLE",
            Status::ConditionNotRedeemable => "CONDITION_NOT_REDEEMABLE",
            Status::ConditionWindow => "CONDITION_WINDOW",
            Status::ConditionInvalid => "CONDITION_INVALID",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_ordered_and_round_trip() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "values are dense");
            assert!((*s as usize) < Status::SLOTS);
            assert_eq!(Status::from_u8(*s as u8), Some(*s));
        }
        assert_eq!(Status::from_u8(Status::SLOTS as u8), None);
    }
}
