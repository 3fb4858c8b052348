//! Spending conditions (programmable money, `docs/programmable-money.md`), evaluated as data.
//!
//! A condition is defined once by a DEFINE transaction signed by its issuer; outputs reference
//! it by id (condition tag 1). The ledger keeps the definitions and the earmark of each
//! earmarked token in maps beside `tokens` ([`Conditions`]), so a payment that touches no
//! earmarked token pays one emptiness test when no condition exists, and one hash lookup per
//! input otherwise.
//!
//! The rule for a transfer, with `E` the earmarked input value (all under one condition `C`),
//! `T` the value of its outputs earmarked `C`, and `M` the value of its plain outputs to
//! merchants that satisfy `C` (and did not sign):
//! - earmarked value cannot leave the earmark except to such merchants: `E <= T + M`;
//! - only `C`'s issuer creates earmarked value (`T > E`, or outputs under another condition),
//!   necessarily from its free value;
//! - the issuer may hand earmarked outputs to anyone; anyone else keeps them (change) unless
//!   `C` is transferable;
//! - earmarked value moves only in `C`'s window `not_before_ms <= now < valid_until_ms`; from
//!   `valid_until_ms` on, only the reclaimer moves it (RECLAIM, back to the reclaimer).

use std::collections::BTreeMap;

use hashbrown::HashMap;
use sha2::Digest;

use crate::format::{
    Condition, ConditionDef, Kind, TokenId, Transaction, WalletId, FLAG_NOT_REDEEMABLE,
    FLAG_NOT_TRANSFERABLE,
};
use crate::ledger::{Ledger, TokenRecord, WalletKind};
use crate::rules::{Plan, WalletStatus};
use crate::status::Status;

/// What a programme's condition has done so far, in fen. Always
/// `issued = spent + reclaimed + outstanding`, and `outstanding` is the value of its unspent
/// earmarked tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConditionStats {
    /// Earmarked by the issuer from its free value.
    pub issued_fen: u64,
    /// Left the earmark at merchants, by merchant category code.
    pub spent_by_mcc: BTreeMap<u16, u64>,
    /// Moved back to the reclaimer after expiry.
    pub reclaimed_fen: u64,
    /// Held as earmarked tokens now.
    pub outstanding_fen: u64,
}

impl ConditionStats {
    pub fn spent_fen(&self) -> u64 {
        self.spent_by_mcc.values().sum()
    }
}

/// A defined condition and its running totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    pub def: ConditionDef,
    pub stats: ConditionStats,
}

/// The ledger's conditions: definitions by id and the earmark of each earmarked unspent token.
#[derive(Debug, Default)]
pub struct Conditions {
    pub(crate) defs: HashMap<u64, ConditionState>,
    pub(crate) earmarks: HashMap<TokenId, u64>,
}

impl Conditions {
    /// Whether any condition exists (otherwise nothing is earmarked and plain payments skip
    /// every condition check).
    pub fn is_active(&self) -> bool {
        !self.defs.is_empty()
    }

    /// Fold the conditions into a state digest (sorted, so independent of hash-map order).
    pub(crate) fn digest(&self, h: &mut sha2::Sha256) {
        if !self.is_active() {
            return; // ledgers without conditions keep their digest
        }
        h.update(b"conditions");
        let mut defs: Vec<&ConditionState> = self.defs.values().collect();
        defs.sort_unstable_by_key(|c| c.def.id);
        for c in defs {
            let mut w = crate::wal::Writer(Vec::new());
            crate::wal::write_condition(&mut w, c);
            h.update(&w.0);
        }
        let mut earmarks: Vec<(&TokenId, &u64)> = self.earmarks.iter().collect();
        earmarks.sort_unstable();
        for (token, id) in earmarks {
            h.update(token);
            h.update(id.to_le_bytes());
        }
    }
}

/// Whether merchant wallet `owner` satisfies `def`'s lists (the caller checks it is a merchant).
fn merchant_allowed(def: &ConditionDef, owner: WalletId, mcc: u16, region: u32) -> bool {
    (def.merchants.is_empty() || def.merchants.binary_search(&owner).is_ok())
        && (def.mccs.is_empty() || def.mccs.binary_search(&mcc).is_ok())
        && (def.regions.is_empty() || def.regions.binary_search(&region).is_ok())
}

fn in_window(def: &ConditionDef, now_ms: u64) -> bool {
    def.not_before_ms <= now_ms && now_ms < def.valid_until_ms
}

/// What a transfer does to earmarks, decided before applying.
#[derive(Debug, Default)]
pub(crate) struct EarmarkPlan {
    /// The input condition and the earmarked value that left it at merchants, by mcc.
    spent: Option<(u64, Vec<(u16, u64)>)>,
    /// (condition, value) newly earmarked by its issuer.
    issued: Vec<(u64, u64)>,
}

impl Ledger {
    /// The condition checks of a transfer or redeem whose other checks (wallet rules included)
    /// passed: `records` are its inputs, `plan` the wallet rules' plan. `None`: nothing
    /// earmarked is involved.
    pub(crate) fn check_conditions(
        &self,
        tx: &Transaction,
        records: &[TokenRecord],
        plan: &Plan,
        now_ms: u64,
    ) -> Result<Option<EarmarkPlan>, Status> {
        // The input condition (at most one) and the earmarked input value.
        let mut input_condition: Option<u64> = None;
        let mut earmarked_fen: u64 = 0;
        if !self.conds.earmarks.is_empty() {
            for (input, record) in tx.inputs.iter().zip(records) {
                if let Some(id) = self.conds.earmarks.get(input) {
                    if input_condition.is_some_and(|c| c != *id) {
                        return Err(Status::ConditionInvalid);
                    }
                    input_condition = Some(*id);
                    earmarked_fen += record.value_fen;
                }
            }
        }
        if input_condition.is_none() && !tx.has_earmarked_output() {
            return Ok(None);
        }
        let signed = |w: WalletId| tx.signatures.iter().any(|s| s.signer == w);
        for o in &tx.outputs {
            if let Condition::Earmark(id) = o.condition {
                if !self.conds.defs.contains_key(&id) {
                    return Err(Status::ConditionInvalid);
                }
                if !self.is_local(o.owner) {
                    return Err(Status::ConditionInvalid);
                }
            }
        }
        if tx.kind == Kind::Redeem {
            // Earmarked value is never destroyed: the programme's budget stays accounted for.
            return Err(Status::ConditionNotRedeemable);
        }
        let is_issuer = |id: u64| {
            let issuer = self.conds.defs[&id].def.issuer;
            matches!(tx.signatures.as_slice(), [one] if one.signer == issuer)
        };
        // Outputs under the input condition, outputs newly earmarked by an issuer.
        let mut kept_fen: u64 = 0;
        let mut issued: Vec<(u64, u64)> = Vec::new();
        for (index, o) in tx.outputs.iter().enumerate() {
            let Condition::Earmark(id) = o.condition else {
                continue;
            };
            let state = &self.conds.defs[&id];
            if plan.credits.get(index).is_some_and(|(_, swept)| *swept > 0) {
                // Earmarked value is never swept to a deposit account.
                return Err(Status::ConditionNotRedeemable);
            }
            if Some(id) == input_condition {
                kept_fen += o.amount_fen;
                if !signed(o.owner) && !is_issuer(id) {
                    let owner_kind = self.wallets[&o.owner].kind;
                    if state.def.flags & FLAG_NOT_REDEEMABLE != 0
                        && owner_kind == WalletKind::Operator
                    {
                        return Err(Status::ConditionNotRedeemable);
                    }
                    if state.def.flags & FLAG_NOT_TRANSFERABLE != 0 {
                        return Err(Status::ConditionNotTransferable);
                    }
                }
            } else {
                if !is_issuer(id) {
                    return Err(Status::NotAuthorized);
                }
                if now_ms >= state.def.valid_until_ms {
                    return Err(Status::ConditionWindow);
                }
                match issued.iter_mut().find(|(c, _)| *c == id) {
                    Some((_, v)) => *v += o.amount_fen,
                    None => issued.push((id, o.amount_fen)),
                }
            }
        }
        let Some(cond) = input_condition else {
            return Ok(Some(EarmarkPlan {
                spent: None,
                issued,
            }));
        };
        let def = &self.conds.defs[&cond].def;
        if !in_window(def, now_ms) {
            return Err(Status::ConditionWindow);
        }
        if kept_fen > earmarked_fen {
            // More earmarked than came in: only the issuer adds to an earmark.
            if !is_issuer(cond) {
                return Err(Status::NotAuthorized);
            }
            issued.push((cond, kept_fen - earmarked_fen));
            return Ok(Some(EarmarkPlan {
                spent: Some((cond, Vec::new())),
                issued,
            }));
        }
        // What leaves the earmark must reach merchants that satisfy the condition; it is
        // attributed to them in output order.
        let mut leaving_fen = earmarked_fen - kept_fen;
        let mut spent: Vec<(u16, u64)> = Vec::new();
        let mut refused: Option<Status> = None;
        for o in &tx.outputs {
            if leaving_fen == 0 {
                break;
            }
            if o.condition != Condition::None {
                continue;
            }
            let owner = &self.wallets[&o.owner];
            let eligible = owner.kind == WalletKind::Merchant
                && !signed(o.owner)
                && merchant_allowed(def, o.owner, owner.attrs.mcc, owner.attrs.region);
            if eligible {
                let part = o.amount_fen.min(leaving_fen);
                leaving_fen -= part;
                match spent.iter_mut().find(|(m, _)| *m == owner.attrs.mcc) {
                    Some((_, v)) => *v += part,
                    None => spent.push((owner.attrs.mcc, part)),
                }
                continue;
            }
            // Why this output cannot take earmarked value (the first reason found is reported).
            let why = if owner.kind == WalletKind::Operator && def.flags & FLAG_NOT_REDEEMABLE != 0
            {
                Status::ConditionNotRedeemable
            } else if owner.kind != WalletKind::Merchant
                && !signed(o.owner)
                && def.flags & FLAG_NOT_TRANSFERABLE != 0
            {
                Status::ConditionNotTransferable
            } else {
                Status::ConditionFailed
            };
            refused.get_or_insert(why);
        }
        if leaving_fen > 0 {
            return Err(refused.unwrap_or(Status::ConditionFailed));
        }
        Ok(Some(EarmarkPlan {
            spent: Some((cond, spent)),
            issued,
        }))
    }

    /// Apply an earmark plan after the transfer's tokens moved: forget the inputs' earmarks,
    /// earmark the outputs, update the totals.
    pub(crate) fn apply_earmarks(&mut self, tx: &Transaction, plan: EarmarkPlan) {
        if plan.spent.is_some() {
            for input in &tx.inputs {
                self.conds.earmarks.remove(input);
            }
        }
        if let Some((cond, spent)) = &plan.spent {
            let stats = &mut self.conds.defs.get_mut(cond).expect("checked").stats;
            for (mcc, fen) in spent {
                *stats.spent_by_mcc.entry(*mcc).or_insert(0) += fen;
            }
        }
        for (cond, fen) in &plan.issued {
            let stats = &mut self.conds.defs.get_mut(cond).expect("checked").stats;
            stats.issued_fen = stats.issued_fen.checked_add(*fen).expect("within supply");
        }
        // Outstanding follows the earmarked tokens: recompute the touched conditions' share.
        let mut touched: Vec<u64> = plan.issued.iter().map(|(c, _)| *c).collect();
        touched.extend(plan.spent.as_ref().map(|(c, _)| *c));
        // (The outputs' earmarks were recorded as their tokens were created, ledger.rs.)
        touched.sort_unstable();
        touched.dedup();
        for cond in touched {
            let stats = &mut self.conds.defs.get_mut(&cond).expect("checked").stats;
            stats.outstanding_fen = stats.issued_fen - stats.spent_fen() - stats.reclaimed_fen;
        }
    }

    /// DEFINE: checks and apply. Leaves state untouched unless it returns OK.
    pub(crate) fn apply_define(
        &mut self,
        tx: &Transaction,
        def: &ConditionDef,
    ) -> Result<(), Status> {
        let signer = match tx.signatures.as_slice() {
            [] => return Err(Status::MissingSignature),
            [one] => one.signer,
            _ => return Err(Status::UnexpectedSigner),
        };
        if signer != def.issuer {
            return Err(Status::MissingSignature);
        }
        if !self.wallets.contains_key(&def.reclaimer) {
            return Err(Status::UnknownWallet);
        }
        let issuer = &self.wallets[&def.issuer];
        if !matches!(
            issuer.kind,
            WalletKind::Corporate | WalletKind::Operator | WalletKind::CentralBank
        ) {
            return Err(Status::NotAuthorized);
        }
        match issuer.attrs.status {
            WalletStatus::Frozen => return Err(Status::WalletFrozen),
            WalletStatus::Closed => return Err(Status::WalletClosed),
            WalletStatus::Active => {}
        }
        if self.conds.defs.contains_key(&def.id) {
            return Err(Status::ConditionInvalid);
        }
        self.conds.defs.insert(
            def.id,
            ConditionState {
                def: def.clone(),
                stats: ConditionStats::default(),
            },
        );
        Ok(())
    }

    /// RECLAIM: the stateful checks (inputs exist and are unspent: checked by the caller).
    /// Returns the condition reclaimed.
    pub(crate) fn check_reclaim(
        &self,
        tx: &Transaction,
        records: &[TokenRecord],
        now_ms: u64,
    ) -> Result<u64, Status> {
        let signer = match tx.signatures.as_slice() {
            [] => return Err(Status::MissingSignature),
            [one] => one.signer,
            _ => return Err(Status::UnexpectedSigner),
        };
        let mut cond: Option<u64> = None;
        for input in &tx.inputs {
            let Some(id) = self.conds.earmarks.get(input) else {
                return Err(Status::NotAuthorized);
            };
            if cond.is_some_and(|c| c != *id) {
                return Err(Status::ConditionInvalid);
            }
            cond = Some(*id);
        }
        let cond = cond.expect("a reclaim has inputs");
        let def = &self.conds.defs[&cond].def;
        if signer != def.reclaimer || tx.outputs.iter().any(|o| o.owner != def.reclaimer) {
            return Err(Status::NotAuthorized);
        }
        let input_sum: u64 = records.iter().map(|r| r.value_fen).sum();
        if input_sum != tx.output_sum_fen().expect("checked in phase 1") {
            return Err(Status::ValueMismatch);
        }
        if now_ms < def.valid_until_ms {
            return Err(Status::ConditionWindow);
        }
        let reclaimer = &self.wallets[&def.reclaimer];
        if reclaimer.attrs.status == WalletStatus::Closed {
            return Err(Status::WalletClosed);
        }
        if !self.is_local(def.reclaimer) {
            return Err(Status::ConditionInvalid);
        }
        Ok(cond)
    }

    /// After a reclaim's tokens moved: forget the earmarks, count the reclaimed value.
    pub(crate) fn apply_reclaim(&mut self, tx: &Transaction, cond: u64, value_fen: u64) {
        for input in &tx.inputs {
            self.conds.earmarks.remove(input);
        }
        let stats = &mut self.conds.defs.get_mut(&cond).expect("checked").stats;
        stats.reclaimed_fen += value_fen;
        stats.outstanding_fen -= value_fen;
    }

    /// A condition and its totals.
    pub fn condition(&self, id: u64) -> Option<&ConditionState> {
        self.conds.defs.get(&id)
    }

    /// Every condition id, sorted.
    pub fn condition_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.conds.defs.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The unspent tokens earmarked under condition `id`: (token, owner, value), sorted by
    /// token id (what a reclaim gathers). O(earmarked tokens of every condition).
    pub fn earmarked_tokens(&self, id: u64) -> Vec<(TokenId, WalletId, u64)> {
        let mut out: Vec<(TokenId, WalletId, u64)> = self
            .conds
            .earmarks
            .iter()
            .filter(|(_, c)| **c == id)
            .map(|(t, _)| {
                let r = &self.tokens[t];
                (*t, r.owner, r.value_fen)
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// The condition an unspent token is earmarked under (`None`: free or unknown).
    pub fn earmark(&self, token: &TokenId) -> Option<u64> {
        self.conds.earmarks.get(token).copied()
    }

    /// The conditions' invariants: every earmark is an unspent token under a defined
    /// condition; per condition, the earmarked tokens sum to `outstanding` and
    /// `issued = spent + reclaimed + outstanding`.
    pub(crate) fn check_condition_invariants(&self) -> Result<(), String> {
        let mut sums: HashMap<u64, u128> = HashMap::new();
        for (token, id) in &self.conds.earmarks {
            let record = self
                .tokens
                .get(token)
                .ok_or_else(|| "an earmark names a token that is not unspent".to_string())?;
            if !self.conds.defs.contains_key(id) {
                return Err(format!("a token is earmarked under unknown condition {id}"));
            }
            *sums.entry(*id).or_insert(0) += record.value_fen as u128;
        }
        for (id, c) in &self.conds.defs {
            let s = &c.stats;
            let held = sums.get(id).copied().unwrap_or(0);
            if held != s.outstanding_fen as u128 {
                return Err(format!(
                    "condition {id}: earmarked tokens sum to {held}, outstanding is {}",
                    s.outstanding_fen
                ));
            }
            if s.issued_fen as u128
                != s.spent_fen() as u128 + s.reclaimed_fen as u128 + s.outstanding_fen as u128
            {
                return Err(format!(
                    "condition {id}: issued {} != spent {} + reclaimed {} + outstanding {}",
                    s.issued_fen,
                    s.spent_fen(),
                    s.reclaimed_fen,
                    s.outstanding_fen
                ));
            }
        }
        Ok(())
    }
}
