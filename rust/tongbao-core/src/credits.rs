//! Virtual shards and cross-shard credits (ARCHITECTURE.md section 5, `docs/cluster.md`).
//!
//! A sharded ledger holds the tokens of the wallets homed on its virtual shard (vshard):
//! `home_vshard(wallet, count)`. Every wallet is registered on every shard (the directory is
//! replicated, tokens are not). A payment settles on its payer's shard; an output owned by a
//! wallet homed elsewhere is not created locally but *exported*: it goes into this shard's
//! outbox in the same apply (so in the same durable log record), leaves the local supply
//! (`credits_out_fen`), and the worker delivers it at least once to the owner's shard, which
//! *imports* it exactly once (`import_credits`, logged): the token id is remembered forever in
//! `imported`, so a redelivered credit answers ALREADY_SETTLED and a spent credited token is
//! never resurrected.
//!
//! On the receiving side the wallet rules apply: over the balance cap, the excess is swept to
//! the owner's operator when the limits allow it (sweep policy, linked account), exactly as in a
//! local payment; a credit that cannot be applied (closed wallet, balance cap with the reject
//! policy) bounces back to the payer as a new credit (`refund_to`); a bounce that cannot be
//! applied either is held in the shard's suspense (`suspense_fen`, listed by `suspense()`), so
//! value is never lost. Per shard, always:
//! `issued + credits_in = redeemed + credits_out + outstanding (local unspent) + suspense`.

use std::collections::BTreeMap;

use sha2::Digest;

use crate::error::{Error, Result};
use crate::format::{token_id, TokenId, WalletId};
use crate::idhash::IdSet;
use crate::ledger::Ledger;
use crate::rules::{OverCap, WalletStatus, SWEEP_INDEX_FLAG};
use crate::status::Status;

/// Most virtual shards.
pub const VSHARD_COUNT_MAX: u32 = 65_536;
/// Most credits imported in one call.
pub const CREDIT_BATCH_MAX: usize = 1 << 16;
/// Token index flag of a bounced credit: `token_id(credit token, BOUNCE_INDEX_FLAG)`.
pub const BOUNCE_INDEX_FLAG: u16 = 0x4000;
/// Bytes of one credit in its packed form: token id, owner, value, refund_to.
pub const CREDIT_LEN: usize = 32 + 8 + 8 + 8;

/// The virtual shard a wallet lives on: a stable hash (the splitmix64 finaliser) of its id,
/// modulo the shard count. Part of the cluster's on-disk contract: never change it.
pub fn home_vshard(wallet: WalletId, count: u32) -> u32 {
    let mut z = wallet.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % count.max(1) as u64) as u32
}

/// Which vshard a ledger is, out of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    pub count: u32,
    pub index: u32,
    /// Negative control of the cluster checker only: apply a redelivered credit again (breaks
    /// exactly-once). Logged with the spec so that replay reproduces it. Never set otherwise.
    pub unsafe_reapply_credits: bool,
}

/// Value moving to a wallet on another shard (or coming from one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credit {
    /// Id of the token the credit becomes: `token_id(tx, output index)` of the paying tx.
    pub token: TokenId,
    pub owner: WalletId,
    pub value_fen: u64,
    /// Where the value goes if the owner cannot take it (0: nowhere: held in suspense).
    pub refund_to: WalletId,
}

impl Credit {
    pub fn pack(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.token);
        out.extend_from_slice(&self.owner.to_le_bytes());
        out.extend_from_slice(&self.value_fen.to_le_bytes());
        out.extend_from_slice(&self.refund_to.to_le_bytes());
    }

    /// Unpack credits packed back to back; errors name the credit and what is wrong.
    pub fn unpack_all(buf: &[u8]) -> Result<Vec<Credit>> {
        if !buf.len().is_multiple_of(CREDIT_LEN) {
            return Err(Error::InvalidArgument(format!(
                "packed credits are {CREDIT_LEN} bytes each, got {} bytes",
                buf.len()
            )));
        }
        let u64_at = |c: &[u8], at: usize| u64::from_le_bytes(c[at..at + 8].try_into().expect("8"));
        Ok(buf
            .chunks_exact(CREDIT_LEN)
            .map(|c| Credit {
                token: c[..32].try_into().expect("32"),
                owner: u64_at(c, 32),
                value_fen: u64_at(c, 40),
                refund_to: u64_at(c, 48),
            })
            .collect())
    }
}

/// Totals of a sharded ledger, in fen, besides `Supply`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardTotals {
    pub credits_in_fen: u128,
    pub credits_out_fen: u128,
    pub suspense_fen: u128,
    pub outbox_len: u64,
    pub outbox_fen: u128,
    pub imported_count: u64,
    /// Sequence number of the next export (exports so far + 1).
    pub next_outbox_seq: u64,
}

/// The cross-shard part of a ledger's state (empty for an unsharded ledger).
#[derive(Debug)]
pub struct ShardState {
    pub(crate) spec: Option<ShardSpec>,
    /// Undelivered exports by sequence number.
    pub(crate) outbox: BTreeMap<u64, Credit>,
    pub(crate) next_outbox_seq: u64,
    /// Every credit token ever imported (kept forever: what makes import exactly-once).
    pub(crate) imported: IdSet<TokenId>,
    pub(crate) credits_in_fen: u128,
    pub(crate) credits_out_fen: u128,
    pub(crate) suspense: Vec<Credit>,
    pub(crate) suspense_fen: u128,
    /// Lease epoch of the worker that last took this shard (logged when it takes it).
    pub(crate) epoch: u64,
}

impl Default for ShardState {
    fn default() -> Self {
        ShardState {
            spec: None,
            outbox: BTreeMap::new(),
            next_outbox_seq: 1,
            imported: IdSet::default(),
            credits_in_fen: 0,
            credits_out_fen: 0,
            suspense: Vec::new(),
            suspense_fen: 0,
            epoch: 0,
        }
    }
}

impl ShardState {
    /// Fold the shard state into a state digest (sharded ledgers only).
    pub(crate) fn digest(&self, h: &mut sha2::Sha256) {
        let Some(spec) = self.spec else { return };
        h.update(b"shard");
        h.update(spec.count.to_le_bytes());
        h.update(spec.index.to_le_bytes());
        h.update(self.next_outbox_seq.to_le_bytes());
        h.update(self.credits_in_fen.to_le_bytes());
        h.update(self.credits_out_fen.to_le_bytes());
        h.update(self.suspense_fen.to_le_bytes());
        h.update(self.epoch.to_le_bytes());
        for (seq, c) in &self.outbox {
            h.update(seq.to_le_bytes());
            let mut packed = Vec::with_capacity(CREDIT_LEN);
            c.pack(&mut packed);
            h.update(&packed);
        }
        let mut imported: Vec<&TokenId> = self.imported.iter().collect();
        imported.sort_unstable();
        for id in imported {
            h.update(id);
        }
    }
}

/// How a receiving shard takes a credit.
enum Placement {
    Accept,
    Sweep { keep_fen: u64, operator: WalletId },
    Reject(Status),
}

impl Ledger {
    /// Make this ledger vshard `index` of `count` (logged). Only on a ledger with no tokens
    /// and no batches yet, or again with the same spec (idempotent).
    pub fn set_shard(&mut self, spec: ShardSpec) -> Result<()> {
        self.check_not_failed()?;
        if spec.count == 0 || spec.count > VSHARD_COUNT_MAX || spec.index >= spec.count {
            return Err(Error::InvalidArgument(format!(
                "vshard {} of {}: need 1 <= count <= {VSHARD_COUNT_MAX} and index < count",
                spec.index, spec.count
            )));
        }
        match self.shard.spec {
            Some(current) if current == spec => return Ok(()),
            Some(current) => {
                return Err(Error::InvalidArgument(format!(
                    "this ledger is vshard {} of {}; it cannot become vshard {} of {}",
                    current.index, current.count, spec.index, spec.count
                )))
            }
            None if self.batch_seq != 0 || !self.tokens.is_empty() => {
                return Err(Error::InvalidArgument(
                    "a ledger becomes a shard before its first batch".into(),
                ))
            }
            None => {}
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_shard(&spec) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.shard.spec = Some(spec);
        self.maybe_snapshot()
    }

    /// Record in the log that the worker holding lease `epoch` now writes this shard. Epochs
    /// only grow: an older one is refused (a stale worker), the same one is a no-op.
    pub fn set_epoch(&mut self, epoch: u64) -> Result<()> {
        self.check_not_failed()?;
        if self.shard.spec.is_none() {
            return Err(Error::InvalidArgument(
                "epochs belong to sharded ledgers (set_shard first)".into(),
            ));
        }
        if epoch < self.shard.epoch {
            return Err(Error::InvalidArgument(format!(
                "stale epoch {epoch}: this shard's log is at epoch {}",
                self.shard.epoch
            )));
        }
        if epoch == self.shard.epoch {
            return Ok(());
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_epoch(epoch) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.shard.epoch = epoch;
        self.maybe_snapshot()
    }

    pub fn epoch(&self) -> u64 {
        self.shard.epoch
    }

    pub fn shard_spec(&self) -> Option<ShardSpec> {
        self.shard.spec
    }

    /// Whether a wallet's tokens live on this ledger (always, when it is not a shard).
    pub fn is_local(&self, wallet: WalletId) -> bool {
        match self.shard.spec {
            Some(s) => home_vshard(wallet, s.count) == s.index,
            None => true,
        }
    }

    pub fn shard_totals(&self) -> ShardTotals {
        let s = &self.shard;
        ShardTotals {
            credits_in_fen: s.credits_in_fen,
            credits_out_fen: s.credits_out_fen,
            suspense_fen: s.suspense_fen,
            outbox_len: s.outbox.len() as u64,
            outbox_fen: s.outbox.values().map(|c| c.value_fen as u128).sum(),
            imported_count: s.imported.len() as u64,
            next_outbox_seq: s.next_outbox_seq,
        }
    }

    /// The first `limit` undelivered exports with a sequence number above `after`, in order.
    pub fn outbox(&self, after: u64, limit: usize) -> Vec<(u64, Credit)> {
        self.shard
            .outbox
            .range(after.saturating_add(1)..)
            .take(limit)
            .map(|(s, c)| (*s, *c))
            .collect()
    }

    /// Credits held because nobody could take them.
    pub fn suspense(&self) -> &[Credit] {
        &self.shard.suspense
    }

    /// Whether a credit token was ever imported here.
    pub fn is_imported(&self, token: &TokenId) -> bool {
        self.shard.imported.contains(token)
    }

    /// Forget the exports up to sequence number `upto` (delivered); logged, idempotent.
    pub fn credits_delivered(&mut self, upto: u64) -> Result<()> {
        self.check_not_failed()?;
        if upto >= self.shard.next_outbox_seq {
            return Err(Error::InvalidArgument(format!(
                "export {upto} does not exist yet (next is {})",
                self.shard.next_outbox_seq
            )));
        }
        if self
            .shard
            .outbox
            .keys()
            .next()
            .is_none_or(|first| *first > upto)
        {
            return Ok(());
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_delivered(upto) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.apply_delivered(upto);
        self.maybe_snapshot()
    }

    pub(crate) fn apply_delivered(&mut self, upto: u64) {
        self.shard.outbox = self.shard.outbox.split_off(&(upto + 1));
    }

    /// Import credits exported by other shards, each exactly once: one status per credit, OK
    /// (applied, possibly part swept to the operator), ALREADY_SETTLED (imported before),
    /// WALLET_CLOSED, LIMIT_BALANCE or UNKNOWN_WALLET (an owner not registered on this shard:
    /// bounced to `refund_to`, or held in suspense).
    /// Errors (nothing applied): a batch over [`CREDIT_BATCH_MAX`], a zero value, an owner
    /// homed on another shard, a value that would overflow the supply.
    pub fn import_credits(&mut self, credits: &[Credit]) -> Result<Vec<Status>> {
        self.check_not_failed()?;
        let Some(spec) = self.shard.spec else {
            return Err(Error::InvalidArgument(
                "credits are imported by sharded ledgers only (set_shard first)".into(),
            ));
        };
        if credits.len() > CREDIT_BATCH_MAX {
            return Err(Error::Batch(format!(
                "{} credits, at most {CREDIT_BATCH_MAX} in one call",
                credits.len()
            )));
        }
        let mut total: u64 = self.outstanding_fen;
        for (i, c) in credits.iter().enumerate() {
            if c.value_fen == 0 {
                return Err(Error::InvalidArgument(format!("credit {i}: zero value")));
            }
            if !self.is_local(c.owner) {
                return Err(Error::InvalidArgument(format!(
                    "credit {i}: wallet {} lives on vshard {}, this ledger is vshard {}",
                    c.owner,
                    home_vshard(c.owner, spec.count),
                    spec.index
                )));
            }
            total = total.checked_add(c.value_fen).ok_or_else(|| {
                Error::InvalidArgument(format!("credit {i}: value overflows the supply"))
            })?;
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_credits(credits) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        let statuses = self.apply_credits(credits);
        self.maybe_snapshot()?;
        Ok(statuses)
    }

    pub(crate) fn apply_credits(&mut self, credits: &[Credit]) -> Vec<Status> {
        let statuses = credits.iter().map(|c| self.receive_credit(*c)).collect();
        #[cfg(debug_assertions)]
        self.check_supply_fast();
        statuses
    }

    fn receive_credit(&mut self, c: Credit) -> Status {
        let reapply = self.shard.spec.is_some_and(|s| s.unsafe_reapply_credits);
        if self.tokens.contains_key(&c.token)
            || (!reapply
                && (self.shard.imported.contains(&c.token)
                    || self.spent_at(&c.token, self.last_timestamp_ms)))
        {
            return Status::AlreadySettled;
        }
        self.shard.imported.insert(c.token);
        self.shard.credits_in_fen += c.value_fen as u128;
        self.place_credit(c)
    }

    /// Put value that has arrived on this shard where it belongs (owner local).
    fn place_credit(&mut self, c: Credit) -> Status {
        match self.placement(&c) {
            Placement::Accept => {
                self.add_token(c.token, c.owner, c.value_fen);
                self.outstanding_fen += c.value_fen;
                Status::Ok
            }
            Placement::Sweep { keep_fen, operator } => {
                if keep_fen > 0 {
                    self.add_token(c.token, c.owner, keep_fen);
                    self.outstanding_fen += keep_fen;
                }
                self.route_credit(Credit {
                    token: token_id(&c.token, SWEEP_INDEX_FLAG),
                    owner: operator,
                    value_fen: c.value_fen - keep_fen,
                    refund_to: 0,
                });
                Status::Ok
            }
            Placement::Reject(status) => {
                if c.refund_to != 0 && self.wallets.contains_key(&c.refund_to) {
                    self.route_credit(Credit {
                        token: token_id(&c.token, BOUNCE_INDEX_FLAG),
                        owner: c.refund_to,
                        value_fen: c.value_fen,
                        refund_to: 0,
                    });
                } else {
                    self.shard.suspense.push(c);
                    self.shard.suspense_fen += c.value_fen as u128;
                }
                status
            }
        }
    }

    /// The receiving side's wallet rules for a credit (docs/wallet-rules.md).
    fn placement(&self, c: &Credit) -> Placement {
        let Some(w) = self.wallets.get(&c.owner) else {
            return Placement::Reject(Status::UnknownWallet);
        };
        if w.attrs.status == WalletStatus::Closed {
            return Placement::Reject(Status::WalletClosed);
        }
        let Some(cap) = self.limits.of(w).balance_cap_fen else {
            return Placement::Accept;
        };
        let before = w.balance_fen;
        let after = before.saturating_add(c.value_fen);
        let ceiling = cap.max(before);
        if after <= ceiling {
            return Placement::Accept;
        }
        let excess = after - ceiling;
        let operator = w.attrs.operator;
        let can_sweep = self.limits.over_balance_cap == OverCap::Sweep
            && w.attrs.linked_account
            && operator != 0
            && self
                .wallets
                .get(&operator)
                .is_some_and(|op| op.attrs.status != WalletStatus::Closed);
        if can_sweep {
            Placement::Sweep {
                keep_fen: c.value_fen - excess,
                operator,
            }
        } else {
            Placement::Reject(Status::LimitBalance)
        }
    }

    /// Value already counted on this shard, for `c.owner`: placed here or exported.
    fn route_credit(&mut self, c: Credit) {
        if self.is_local(c.owner) {
            self.place_credit(c);
        } else {
            self.export(c);
        }
    }

    /// Move value out of this shard into the outbox (it leaves the local supply).
    pub(crate) fn export(&mut self, c: Credit) {
        let seq = self.shard.next_outbox_seq;
        self.shard.next_outbox_seq += 1;
        self.shard.credits_out_fen += c.value_fen as u128;
        self.shard.outbox.insert(seq, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_vshard_is_stable_and_spreads() {
        // Part of the on-disk contract: these values must never change.
        assert_eq!(home_vshard(0, 256), home_vshard(0, 256));
        let mut counts = [0u32; 16];
        for w in 0..16_000u64 {
            counts[home_vshard(w, 16) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert!((0..1000u64).all(|w| home_vshard(w, 1) == 0));
    }

    #[test]
    fn credits_pack_and_unpack() {
        let c = Credit {
            token: [7u8; 32],
            owner: 42,
            value_fen: 1_000,
            refund_to: 9,
        };
        let mut buf = Vec::new();
        c.pack(&mut buf);
        c.pack(&mut buf);
        assert_eq!(Credit::unpack_all(&buf).unwrap(), vec![c, c]);
        assert!(Credit::unpack_all(&buf[1..]).is_err());
    }
}
