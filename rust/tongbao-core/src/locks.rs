//! Locks: value reserved on a payer's token for a beneficiary (`docs/locks.md`).
//!
//! One mechanism for transit-fare holds (lock the maximum fare at tap-in, capture the fare at
//! tap-out), escrow (release on a named party's signature, in instalments, refund at a
//! deadline) and offline allowances (a lock drawn down by partial captures).
//!
//! A locked token stays an ordinary unspent token of the payer in `Ledger::tokens` (so supply,
//! balances and the payer's home shard are unchanged); its terms live in [`LockState`], beside
//! the token table, so a plain payment pays one `is_empty()` test when there are no locks. An
//! ordinary spend of a locked token is `INPUT_LOCKED`.
//!
//! Transactions (format version 3): LOCK (kind 9, the payer signs), CAPTURE (kind 10, the
//! releaser signs), RELEASE (kind 11, the releaser or the beneficiary signs). The deadline
//! action is automatic and deterministic: the first batch whose timestamp is after a lock's
//! deadline applies it before its transactions (`Ledger::lapse_locks`): the beneficiary gets
//! `deadline_capture_fen`, the payer the rest. Replaying the log replays the batches, so it
//! replays the deadline actions identically (`docs/decisions/0011-locks.md`).

use std::collections::BTreeSet;

use hashbrown::HashMap;

use crate::credits::Credit;
use crate::format::{
    token_id, Kind, LockBody, LockTerms, Output, TokenId, Transaction, WalletId, VALIDITY_MS_MAX,
};
use crate::ledger::{Ledger, CLOCK_SKEW_MS_MAX};
use crate::rules::{self, WalletStatus, SWEEP_INDEX_FLAG};
use crate::status::Status;

/// Token index flag of what a deadline action creates: `token_id(lock token, LAPSE_INDEX_FLAG
/// | i)`, i = 0 the beneficiary's part, 1 the payer's rest (`| SWEEP_INDEX_FLAG` for a part
/// swept to the beneficiary's operator).
pub const LAPSE_INDEX_FLAG: u16 = 0x2000;

/// How long a lock that lapsed at its deadline is remembered (a later capture or release of
/// it is `LOCK_DEADLINE_PASSED`, then `UNKNOWN_INPUT`): the longest validity window plus the
/// clock skew, as long as any transaction made before the deadline can still be submitted.
pub const LAPSED_MEMORY_MS: u64 = VALIDITY_MS_MAX + CLOCK_SKEW_MS_MAX;

/// A lock on one unspent token of `payer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lock {
    pub payer: WalletId,
    pub terms: LockTerms,
}

/// A lock as the API lists it: the token, its value and its terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockInfo {
    pub token: TokenId,
    pub amount_fen: u64,
    pub payer: WalletId,
    pub terms: LockTerms,
}

/// The lock part of a ledger's state (empty when no lock was ever made).
#[derive(Debug, Default)]
pub struct LockState {
    /// Locked token -> its lock. The token itself is in `Ledger::tokens`.
    pub(crate) locks: HashMap<TokenId, Lock>,
    /// (deadline, token) of every lock, the earliest first.
    pub(crate) deadlines: BTreeSet<(u64, TokenId)>,
    /// Held value per payer (the sum of its locked tokens); absent = 0.
    pub(crate) held: HashMap<WalletId, u64>,
    /// Lock token -> until when it is remembered as lapsed (counts while `until` is not before
    /// the batch's timestamp; swept lazily with the spent markers, `Ledger::prune`).
    pub(crate) lapsed: HashMap<TokenId, u64>,
}

impl LockState {
    /// Whether `token` is locked (cheap when there are no locks).
    #[inline]
    pub fn is_locked(&self, token: &TokenId) -> bool {
        !self.locks.is_empty() && self.locks.contains_key(token)
    }

    pub(crate) fn insert(&mut self, token: TokenId, lock: Lock, value_fen: u64) {
        self.deadlines.insert((lock.terms.deadline_ms, token));
        *self.held.entry(lock.payer).or_insert(0) += value_fen;
        let previous = self.locks.insert(token, lock);
        assert!(previous.is_none(), "token locked twice: state is corrupt");
    }

    pub(crate) fn remove(&mut self, token: &TokenId, value_fen: u64) -> Lock {
        let lock = self.locks.remove(token).expect("lock exists");
        self.deadlines.remove(&(lock.terms.deadline_ms, *token));
        let held = self.held.get_mut(&lock.payer).expect("payer holds value");
        *held -= value_fen;
        if *held == 0 {
            self.held.remove(&lock.payer);
        }
        lock
    }

    /// Feed the lock state into a state digest (sorted; nothing when there are no locks, so
    /// the digest of a ledger without locks is the same as before locks existed).
    pub(crate) fn digest(&self, h: &mut sha2::Sha256) {
        use sha2::Digest;
        if self.locks.is_empty() {
            return;
        }
        h.update(b"locks");
        let mut locks: Vec<(&TokenId, &Lock)> = self.locks.iter().collect();
        locks.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, l) in locks {
            h.update(id);
            h.update(l.payer.to_le_bytes());
            h.update(l.terms.beneficiary.to_le_bytes());
            h.update(l.terms.releaser.to_le_bytes());
            h.update(l.terms.deadline_ms.to_le_bytes());
            h.update(l.terms.deadline_capture_fen.to_le_bytes());
        }
    }
}

impl Ledger {
    /// Held (locked) value of a wallet.
    pub fn held_fen(&self, wallet: WalletId) -> u64 {
        self.locks.held.get(&wallet).copied().unwrap_or(0)
    }

    /// Whether a token is locked.
    pub fn is_locked(&self, token: &TokenId) -> bool {
        self.locks.is_locked(token)
    }

    /// The lock on a token, if any.
    pub fn lock(&self, token: &TokenId) -> Option<LockInfo> {
        let lock = self.locks.locks.get(token)?;
        Some(LockInfo {
            token: *token,
            amount_fen: self.tokens[token].value_fen,
            payer: lock.payer,
            terms: lock.terms,
        })
    }

    /// The locks on a wallet's tokens (as payer), in token-list order.
    pub fn locks_of(&self, wallet: WalletId) -> Vec<LockInfo> {
        if self.locks.locks.is_empty() {
            return Vec::new();
        }
        self.wallets
            .get(&wallet)
            .map(|w| w.tokens.iter().filter_map(|t| self.lock(t)).collect())
            .unwrap_or_default()
    }

    /// Number of locks outstanding.
    pub fn lock_count(&self) -> usize {
        self.locks.locks.len()
    }

    /// Apply the deadline action of every lock whose deadline is before `now_ms`, earliest
    /// deadline first (ties by token id): the beneficiary gets `deadline_capture_fen`, the
    /// payer the rest. Runs at the start of every batch, before its transactions; it cannot
    /// fail. The beneficiary's part follows the wallet rules of a capture where it can: over
    /// the beneficiary's balance cap it is swept to its operator when the limits allow, to a
    /// wallet on another shard it leaves as a credit; where it cannot be placed (a closed
    /// beneficiary, a balance cap with the reject policy) it goes back to the payer. The
    /// payer's outflow is counted in its daily and annual counters but not checked: the payer
    /// agreed to it when locking.
    pub(crate) fn lapse_locks(&mut self, now_ms: u64) {
        while let Some(&(deadline_ms, token)) = self.locks.deadlines.first() {
            if deadline_ms >= now_ms {
                break;
            }
            let value_fen = self.tokens[&token].value_fen;
            let lock = self.locks.remove(&token, value_fen);
            self.remove_token(&token);
            self.locks
                .lapsed
                .insert(token, now_ms.saturating_add(LAPSED_MEMORY_MS));
            let to_beneficiary = lock.terms.deadline_capture_fen.min(value_fen);
            let mut to_payer = value_fen - to_beneficiary;
            if to_beneficiary > 0 {
                let b = lock.terms.beneficiary;
                let placed = self.place_lapse_payment(&token, b, lock.payer, to_beneficiary);
                if placed {
                    if b != lock.payer {
                        self.count_outflow(lock.payer, to_beneficiary, now_ms);
                    }
                } else {
                    to_payer = value_fen;
                }
            }
            if to_payer > 0 {
                self.add_token(token_id(&token, LAPSE_INDEX_FLAG | 1), lock.payer, to_payer);
            }
        }
    }

    /// Place a deadline capture: false when the beneficiary cannot take it (nothing done).
    fn place_lapse_payment(
        &mut self,
        lock_token: &TokenId,
        beneficiary: WalletId,
        payer: WalletId,
        amount_fen: u64,
    ) -> bool {
        let id = token_id(lock_token, LAPSE_INDEX_FLAG);
        let Some(target) = self.wallets.get(&beneficiary) else {
            return false;
        };
        if target.attrs.status == WalletStatus::Closed {
            return false;
        }
        if !self.is_local(beneficiary) {
            self.export(Credit {
                token: id,
                owner: beneficiary,
                value_fen: amount_fen,
                refund_to: payer,
            });
            self.outstanding_fen -= amount_fen;
            return true;
        }
        let mut credit = amount_fen;
        let mut swept = 0;
        if let Some(cap) = self.limits.of(target).balance_cap_fen {
            let before = target.balance_fen;
            let excess = rules::excess_fen(cap, before, before.saturating_add(amount_fen));
            if excess > 0 {
                if !rules::can_sweep(self, target) {
                    return false;
                }
                swept = excess;
                credit = amount_fen - excess;
            }
        }
        if credit > 0 {
            self.add_token(id, beneficiary, credit);
        }
        if swept > 0 {
            let operator = self.wallets[&beneficiary].attrs.operator;
            let swept_id = token_id(lock_token, LAPSE_INDEX_FLAG | SWEEP_INDEX_FLAG);
            if self.is_local(operator) {
                self.add_token(swept_id, operator, swept);
            } else {
                self.export(Credit {
                    token: swept_id,
                    owner: operator,
                    value_fen: swept,
                    refund_to: 0,
                });
                self.outstanding_fen -= swept;
            }
        }
        true
    }

    fn count_outflow(&mut self, payer: WalletId, amount_fen: u64, now_ms: u64) {
        let mut plan = rules::Plan::default();
        plan.outflows.push((payer, amount_fen));
        if let Some(parent) = self.wallets.get(&payer).map(|w| w.attrs.parent) {
            if parent != 0 {
                plan.outflows.push((parent, amount_fen));
            }
        }
        rules::record_outflows(self, &plan, now_ms);
    }

    /// Phase 2 of a lock, capture or release: checks in the order of `docs/status-codes.md`,
    /// then apply. Leaves state untouched unless it returns OK. Returns the value swept.
    pub(crate) fn apply_lock_tx(
        &mut self,
        tx: &Transaction,
        now_ms: u64,
    ) -> std::result::Result<u64, Status> {
        match tx.lock.expect("a lock-family transaction") {
            LockBody::Lock(terms) => self.apply_lock(tx, terms),
            LockBody::Capture {
                payer,
                amount_fen,
                keep_rest_locked,
            } => self.apply_capture(tx, now_ms, payer, Some((amount_fen, keep_rest_locked))),
            LockBody::Release { payer } => self.apply_capture(tx, now_ms, payer, None),
        }
    }

    fn apply_lock(&mut self, tx: &Transaction, terms: LockTerms) -> Result<u64, Status> {
        let known = |w: &WalletId| self.wallets.contains_key(w);
        if !tx.outputs.iter().all(|o| known(&o.owner))
            || !known(&terms.beneficiary)
            || !known(&terms.releaser)
        {
            return Err(Status::UnknownWallet);
        }
        let mut owners: Vec<(WalletId, u64)> = Vec::with_capacity(tx.inputs.len());
        let mut any_spent = false;
        for input in &tx.inputs {
            match self.tokens.get(input) {
                Some(r) => owners.push((r.owner, r.value_fen)),
                None if self.spent_at(input, self.last_timestamp_ms) => any_spent = true,
                None => return Err(Status::UnknownInput),
            }
        }
        if any_spent {
            return Err(Status::InputSpent);
        }
        if tx.inputs.iter().any(|i| self.locks.is_locked(i)) {
            return Err(Status::InputLocked);
        }
        // Earmarked value cannot be locked: a capture would pay it out past its condition
        // (programmable money, conditions.rs), so locks take free value only.
        if tx.inputs.iter().any(|i| self.earmark(i).is_some()) {
            return Err(Status::ConditionFailed);
        }
        let signers: Vec<WalletId> = tx.signatures.iter().map(|s| s.signer).collect();
        if owners.iter().any(|(o, _)| !signers.contains(o)) {
            return Err(Status::MissingSignature);
        }
        if signers.len() != 1 {
            return Err(Status::UnexpectedSigner);
        }
        let payer = signers[0];
        if tx.outputs.iter().any(|o| o.owner != payer) {
            return Err(Status::NotAuthorized);
        }
        let input_sum: u64 = owners.iter().map(|(_, v)| v).sum();
        if tx.output_sum_fen() != Some(input_sum) {
            return Err(Status::ValueMismatch);
        }
        if self.wallets[&payer].attrs.status == WalletStatus::Frozen {
            return Err(Status::WalletFrozen);
        }
        if self.wallets[&terms.beneficiary].attrs.status == WalletStatus::Closed {
            return Err(Status::WalletClosed);
        }
        // Apply: the inputs are spent, the outputs are the payer's, output 0 locked.
        for input in &tx.inputs {
            self.remove_token(input);
            self.spent.insert(*input, tx.expiry_ms);
        }
        for (index, output) in tx.outputs.iter().enumerate() {
            let id = token_id(&tx.id, index as u16);
            self.add_token(id, payer, output.amount_fen);
            if index == 0 {
                self.locks
                    .insert(id, Lock { payer, terms }, output.amount_fen);
            }
        }
        self.mark_settled(tx);
        Ok(0)
    }

    /// A capture (`take` = Some((amount, keep the rest locked))) or a release (`take` = None).
    fn apply_capture(
        &mut self,
        tx: &Transaction,
        now_ms: u64,
        named_payer: WalletId,
        take: Option<(u64, bool)>,
    ) -> Result<u64, Status> {
        let token = tx.inputs[0];
        let (owner, value_fen) = match self.tokens.get(&token) {
            Some(r) => (r.owner, r.value_fen),
            None if self.spent_at(&token, now_ms) => return Err(Status::InputSpent),
            None if self.locks.lapsed.get(&token).is_some_and(|&u| u >= now_ms) => {
                return Err(Status::LockDeadlinePassed)
            }
            None => return Err(Status::UnknownInput),
        };
        let lock = match self.locks.locks.get(&token) {
            Some(l) if l.payer == named_payer && owner == named_payer => *l,
            _ => return Err(Status::NotLocked),
        };
        let terms = lock.terms;
        let signers: Vec<WalletId> = tx.signatures.iter().map(|s| s.signer).collect();
        if signers.is_empty() {
            return Err(Status::MissingSignature);
        }
        if signers.len() > 1 {
            return Err(Status::UnexpectedSigner);
        }
        let allowed = match take {
            Some(_) => signers[0] == terms.releaser,
            None => signers[0] == terms.releaser || signers[0] == terms.beneficiary,
        };
        if !allowed {
            return Err(Status::NotReleaser);
        }
        if now_ms > terms.deadline_ms {
            return Err(Status::LockDeadlinePassed);
        }
        let Some((amount_fen, keep_rest_locked)) = take else {
            // Release: the whole value back to the payer, free.
            self.locks.remove(&token, value_fen);
            self.remove_token(&token);
            self.mark_spent(&token, tx.expiry_ms);
            self.add_token(token_id(&tx.id, 0), lock.payer, value_fen);
            self.mark_settled(tx);
            return Ok(0);
        };
        if amount_fen > value_fen {
            return Err(Status::CaptureExceedsLock);
        }
        let rest = value_fen - amount_fen;
        // The wallet rules of a payment from the payer to the beneficiary of `amount_fen`
        // (frozen payer, closed beneficiary, caps on the payer's outflow, the beneficiary's
        // balance cap), with the rest as change.
        let mut outputs = vec![Output {
            owner: terms.beneficiary,
            amount_fen,
            condition: crate::format::Condition::None,
        }];
        if rest > 0 {
            outputs.push(Output {
                owner: lock.payer,
                amount_fen: rest,
                condition: crate::format::Condition::None,
            });
        }
        let as_payment = Transaction {
            kind: Kind::Transfer,
            outputs,
            ..tx.clone()
        };
        let plan = rules::check(self, &as_payment, &[(lock.payer, value_fen)], now_ms)?;

        // Apply.
        self.locks.remove(&token, value_fen);
        self.remove_token(&token);
        self.mark_spent(&token, tx.expiry_ms);
        let (credit, swept) = plan.credits[0];
        let beneficiary_id = token_id(&tx.id, 0);
        if credit > 0 {
            if self.is_local(terms.beneficiary) {
                self.add_token(beneficiary_id, terms.beneficiary, credit);
            } else {
                self.export(Credit {
                    token: beneficiary_id,
                    owner: terms.beneficiary,
                    value_fen: credit,
                    refund_to: lock.payer,
                });
                self.outstanding_fen -= credit;
            }
        }
        if swept > 0 {
            let operator = self.wallets[&terms.beneficiary].attrs.operator;
            let id = token_id(&tx.id, SWEEP_INDEX_FLAG);
            if self.is_local(operator) {
                self.add_token(id, operator, swept);
            } else {
                self.export(Credit {
                    token: id,
                    owner: operator,
                    value_fen: swept,
                    refund_to: 0,
                });
                self.outstanding_fen -= swept;
            }
        }
        if rest > 0 {
            let rest_id = token_id(&tx.id, 1);
            self.add_token(rest_id, lock.payer, rest);
            if keep_rest_locked {
                let terms = LockTerms {
                    deadline_capture_fen: terms.deadline_capture_fen.saturating_sub(amount_fen),
                    ..terms
                };
                self.locks.insert(
                    rest_id,
                    Lock {
                        payer: lock.payer,
                        terms,
                    },
                    rest,
                );
            }
        }
        rules::record_outflows(self, &plan, now_ms);
        self.mark_settled(tx);
        Ok(plan.swept_fen)
    }

    fn mark_spent(&mut self, token: &TokenId, expiry_ms: u64) {
        self.spent.insert(*token, expiry_ms);
    }

    fn mark_settled(&mut self, tx: &Transaction) {
        self.settled.insert(tx.id, tx.expiry_ms);
    }

    /// Consistency of the lock state (part of `check_invariants`): every lock is on an unspent
    /// token of its payer, the deadline index lists exactly the locks, and each wallet's held
    /// value is the sum of its locked tokens (so it is within its balance).
    pub(crate) fn check_locks(&self) -> std::result::Result<(), String> {
        let s = &self.locks;
        let mut held: HashMap<WalletId, u64> = HashMap::new();
        for (token, lock) in &s.locks {
            let record = self
                .tokens
                .get(token)
                .ok_or_else(|| "a lock is on a token that is not unspent".to_string())?;
            if record.owner != lock.payer {
                return Err(format!(
                    "a lock of payer {} is on a token of {}",
                    lock.payer, record.owner
                ));
            }
            if !s.deadlines.contains(&(lock.terms.deadline_ms, *token)) {
                return Err("a lock is missing from the deadline index".into());
            }
            if lock.terms.deadline_capture_fen > record.value_fen {
                return Err("a lock's deadline capture exceeds its value".into());
            }
            *held.entry(lock.payer).or_insert(0) += record.value_fen;
        }
        if s.deadlines.len() != s.locks.len() {
            return Err(format!(
                "{} deadlines for {} locks",
                s.deadlines.len(),
                s.locks.len()
            ));
        }
        if held != s.held {
            return Err("held value per wallet out of step with the locks".into());
        }
        for (w, h) in &held {
            if self.wallets[w].balance_fen < *h {
                return Err(format!("wallet {w} holds more than its balance"));
            }
        }
        Ok(())
    }
}
