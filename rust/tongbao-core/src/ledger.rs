//! The UTXO ledger and batch settlement (ARCHITECTURE.md section 4).
//!
//! `settle` runs in two phases. Phase 1, in parallel on the ledger's thread pool and without
//! touching state: decode, stateless checks, signature verification. Phase 2, on one thread in
//! batch order: the stateful checks and the apply. The first transaction in a batch wins a
//! conflict; the result depends only on the state, the batch and its timestamp.

use hashbrown::{HashMap, HashSet};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::crypto::{verify_parallel, PublicKey, Scheme, VerifyItem};
use crate::error::{Error, Result};
use crate::format::{
    decode, token_id, Kind, TokenId, Transaction, TxId, WalletId, BATCH_TX_COUNT_MAX,
};
use crate::idhash::IdMap;
use crate::rules::{
    self, Counters, Limits, WalletAttrs, WalletStatus, LIMITS_VERSION_LEN_MAX, SWEEP_INDEX_FLAG,
};
use crate::status::Status;

/// How far a transaction's timestamp may be ahead of the batch timestamp.
pub const CLOCK_SKEW_MS_MAX: u64 = 5 * 60 * 1000;
/// Latest batch timestamp accepted: 9999-12-31T23:59:59.999Z (keeps calendar arithmetic in range).
pub const TIMESTAMP_MS_MAX: u64 = 253_402_300_799_999;
/// Most wallets registered in one call.
pub const REGISTER_BATCH_MAX: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WalletKind {
    Personal = 1,
    Corporate = 2,
    Merchant = 3,
    Operator = 4,
    CentralBank = 5,
}

impl WalletKind {
    pub fn from_u8(value: u8) -> Option<WalletKind> {
        match value {
            1 => Some(WalletKind::Personal),
            2 => Some(WalletKind::Corporate),
            3 => Some(WalletKind::Merchant),
            4 => Some(WalletKind::Operator),
            5 => Some(WalletKind::CentralBank),
            _ => None,
        }
    }
}

/// A registered wallet: its key (parsed once), kind, balance and the ids of its unspent tokens.
#[derive(Debug)]
pub struct Wallet {
    pub kind: WalletKind,
    pub key: PublicKey,
    pub balance_fen: u64,
    pub attrs: WalletAttrs,
    pub counters: Counters,
    pub(crate) tokens: Vec<TokenId>,
}

/// A wallet to register: id, kind, key and attributes (class, operator, parent, ...).
#[derive(Clone, Debug)]
pub struct Registration {
    pub id: WalletId,
    pub kind: WalletKind,
    pub key: PublicKey,
    pub attrs: WalletAttrs,
}

/// A change to a registered wallet, logged like a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalletUpdate {
    SetClass(u8),
    Freeze,
    Unfreeze,
    /// Final; the balance must be zero.
    Close,
}

impl Wallet {
    pub fn token_ids(&self) -> &[TokenId] {
        &self.tokens
    }
}

/// An unspent token. `pos` is its index in the owner's token list (O(1) removal).
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenRecord {
    pub(crate) owner: WalletId,
    pub(crate) value_fen: u64,
    pub(crate) pos: u32,
}

/// Fewest spent markers and settled ids before a sweep is considered (see `Ledger::prune`).
const SWEEP_MIN: usize = 1 << 16;

/// The receipt of one settled batch; `hash` chains to the previous receipt's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub tx_count: u64,
    pub status_counts: [u64; Status::SLOTS],
    /// Value paid by settled transfers to wallets other than their signers (change excluded).
    pub value_moved_fen: u128,
    /// Value swept from wallets over their balance cap to their operators (deposits).
    pub swept_fen: u128,
    pub issued_fen: u128,
    pub redeemed_fen: u128,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
}

/// Value a transfer pays to wallets that did not sign it: its outputs minus the change.
fn paid_to_others_fen(tx: &Transaction) -> u128 {
    tx.outputs
        .iter()
        .filter(|o| !tx.signatures.iter().any(|s| s.signer == o.owner))
        .map(|o| o.amount_fen as u128)
        .sum()
}

/// Up to this many inputs, duplicates are found by comparing pairs (no allocation).
const DUPLICATE_SCAN_MAX: usize = 16;

/// Whether an id occurs twice: pairwise for few (the common 1-3 inputs), a hash set otherwise.
fn has_duplicate(ids: &[TokenId]) -> bool {
    if ids.len() <= DUPLICATE_SCAN_MAX {
        return ids
            .iter()
            .enumerate()
            .any(|(k, id)| ids[k + 1..].contains(id));
    }
    let mut seen: HashSet<&TokenId> = HashSet::with_capacity(ids.len());
    !ids.iter().all(|i| seen.insert(i))
}

/// Totals of the money supply, in fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supply {
    pub issued_fen: u128,
    pub redeemed_fen: u128,
    pub outstanding_fen: u64,
}

pub struct LedgerConfig {
    /// Threads for phase 1 (decode, checks, signatures). 0 means one per core.
    pub threads: usize,
    /// Off only for trusted replay of a log whose signatures were checked when it was written,
    /// and for benchmarks. Every other check still runs.
    pub verify_signatures: bool,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            threads: 0,
            verify_signatures: true,
        }
    }
}

pub struct Ledger {
    pub(crate) wallets: HashMap<WalletId, Wallet>,
    pub(crate) tokens: IdMap<TokenId, TokenRecord>,
    /// Spent token -> expiry of the spending transaction. A marker counts while its expiry is
    /// not before the current batch's timestamp (`spent_at`); expired ones are swept lazily.
    pub(crate) spent: IdMap<TokenId, u64>,
    /// Settled transaction -> its expiry, counted the same way (`settled_at`): afterwards the
    /// transaction is EXPIRED anyway.
    pub(crate) settled: IdMap<TxId, u64>,
    /// `remembered_count()` at which the next sweep runs (`prune`).
    sweep_at: usize,
    pub(crate) issued_fen: u128,
    pub(crate) redeemed_fen: u128,
    pub(crate) outstanding_fen: u64,
    pub(crate) last_timestamp_ms: u64,
    pub(crate) batch_seq: u64,
    pub(crate) last_receipt_hash: [u8; 32],
    verify_signatures: bool,
    pool: rayon::ThreadPool,
    pub(crate) store: Option<crate::wal::Store>,
    /// Set when a write to the log failed: the in-memory state may be ahead of the log, so
    /// every later call is refused until the ledger is reopened (recovery).
    pub(crate) failed: Option<String>,
    closed: bool,
    pub(crate) limits: Limits,
    /// Virtual shard and cross-shard credits (`credits.rs`); empty when not a shard.
    pub(crate) shard: crate::credits::ShardState,
    /// Spending conditions and earmarked tokens (`conditions.rs`); empty without programmes.
    pub(crate) conds: crate::conditions::Conditions,
    /// Locks on tokens (`locks.rs`), beside `tokens`; empty until a lock is made.
    pub(crate) locks: crate::locks::LockState,
}

/// How phase 1 treats signatures.
#[derive(Clone, Copy)]
pub(crate) enum SigMode<'a> {
    /// Verify every signature.
    Verify,
    /// Trust them (benchmarks; replay of a log written by this ledger).
    Trust,
    /// Replay a logged batch: a transaction logged as BAD_SIGNATURE fails its signature check
    /// again, every other signature is trusted. Everything else is recomputed.
    Replay(&'a [Status]),
}

/// Phase-1 verdict on one transaction.
struct Checked {
    tx: Option<Transaction>,
    status: Status,
}

impl Ledger {
    pub fn new(config: LedgerConfig) -> Result<Ledger> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("tongbao-verify-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start thread pool: {e}")))?;
        Ok(Ledger {
            wallets: HashMap::new(),
            tokens: IdMap::default(),
            spent: IdMap::default(),
            settled: IdMap::default(),
            sweep_at: SWEEP_MIN,
            issued_fen: 0,
            redeemed_fen: 0,
            outstanding_fen: 0,
            last_timestamp_ms: 0,
            batch_seq: 0,
            last_receipt_hash: [0u8; 32],
            verify_signatures: config.verify_signatures,
            pool,
            store: None,
            failed: None,
            closed: false,
            limits: Limits::none(),
            shard: crate::credits::ShardState::default(),
            conds: crate::conditions::Conditions::default(),
            locks: crate::locks::LockState::default(),
        })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Run `f` on the ledger's thread pool (so client-side work such as signing uses the same
    /// thread count as settlement).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Parse many public keys in parallel (registration of a million wallets). A key equal to
    /// the one before it (wallets sharing a key: generated worlds, an operator's accounts) is
    /// parsed once per run of 1,024: parsing is a curve point decompression, and a cluster
    /// parses every registration once per vshard (docs/payroll.md, "Measured").
    pub fn parse_keys<K: AsRef<[u8]> + Sync>(
        &self,
        schemes: &[Scheme],
        keys: &[K],
    ) -> Vec<Result<PublicKey>> {
        const RUN: usize = 1_024;
        self.pool.install(|| {
            schemes
                .par_chunks(RUN)
                .zip(keys.par_chunks(RUN))
                .flat_map_iter(|(ss, ks)| {
                    let mut last: Option<(Scheme, &[u8], PublicKey)> = None;
                    let mut out = Vec::with_capacity(ss.len());
                    for (s, k) in ss.iter().zip(ks) {
                        let k = k.as_ref();
                        if let Some((ls, lk, key)) = &last {
                            if ls == s && *lk == k {
                                out.push(Ok(key.clone()));
                                continue;
                            }
                        }
                        let parsed = PublicKey::parse(*s, k);
                        if let Ok(key) = &parsed {
                            last = Some((*s, k, key.clone()));
                        }
                        out.push(parsed);
                    }
                    out
                })
                .collect()
        })
    }

    pub fn verify_signatures(&self) -> bool {
        self.verify_signatures
    }

    /// Register wallets, all or none: every id and attribute is checked before any is added.
    /// Errors name the wallet and the field: a duplicate id, a class outside 1-4 (central-bank
    /// and operator wallets are class 1), an operator that is not a registered operator wallet,
    /// a parent that is unknown, itself a sub-wallet, or at another operator.
    pub fn register_wallets(&mut self, wallets: Vec<Registration>) -> Result<()> {
        if wallets.len() > REGISTER_BATCH_MAX {
            return Err(Error::InvalidArgument(format!(
                "{} wallets in one call, at most {REGISTER_BATCH_MAX}",
                wallets.len()
            )));
        }
        self.check_not_failed()?;
        self.check_registrations(&wallets)?;
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_wallets(&wallets) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.apply_wallets(wallets);
        self.maybe_snapshot()
    }

    pub(crate) fn check_registrations(&self, wallets: &[Registration]) -> Result<()> {
        let mut seen: HashMap<WalletId, &Registration> = HashMap::with_capacity(wallets.len());
        for r in wallets {
            if self.wallets.contains_key(&r.id) || seen.contains_key(&r.id) {
                return Err(Error::DuplicateWallet(r.id));
            }
            let bad = |field: &str, why: String| {
                Err(Error::InvalidArgument(format!(
                    "wallet {}: {field}: {why}",
                    r.id
                )))
            };
            let a = &r.attrs;
            if !(1..=4).contains(&a.class) {
                return bad("class", format!("{} is not a class 1-4", a.class));
            }
            if matches!(r.kind, WalletKind::CentralBank | WalletKind::Operator) && a.class != 1 {
                return bad(
                    "class",
                    "central-bank and operator wallets are class 1".into(),
                );
            }
            if a.status != WalletStatus::Active {
                return bad("status", "a new wallet is active".into());
            }
            // The operator: this wallet itself (an operator), or a registered operator wallet.
            let operator_kind = |id: WalletId| {
                if id == r.id {
                    Some(r.kind)
                } else {
                    self.wallets
                        .get(&id)
                        .map(|w| w.kind)
                        .or_else(|| seen.get(&id).map(|s| s.kind))
                }
            };
            if a.operator != 0 && operator_kind(a.operator) != Some(WalletKind::Operator) {
                return bad(
                    "operator",
                    format!("{} is not an operator wallet", a.operator),
                );
            }
            if a.parent != 0 {
                let parent = self
                    .wallets
                    .get(&a.parent)
                    .map(|w| (w.kind, w.attrs))
                    .or_else(|| seen.get(&a.parent).map(|s| (s.kind, s.attrs)));
                match parent {
                    None => return bad("parent", format!("{} is not registered", a.parent)),
                    Some((_, pa)) if pa.parent != 0 => {
                        return bad("parent", format!("{} is itself a sub-wallet", a.parent))
                    }
                    Some((_, pa)) if pa.operator != a.operator => {
                        return bad("parent", format!("{} is at another operator", a.parent))
                    }
                    Some((kind, _))
                        if !matches!(kind, WalletKind::Personal | WalletKind::Corporate) =>
                    {
                        return bad(
                            "parent",
                            "only personal and corporate wallets have sub-wallets".into(),
                        )
                    }
                    _ => {}
                }
                if !matches!(r.kind, WalletKind::Personal | WalletKind::Corporate) {
                    return bad("kind", "a sub-wallet is personal or corporate".into());
                }
            }
            seen.insert(r.id, r);
        }
        Ok(())
    }

    pub(crate) fn apply_wallets(&mut self, wallets: Vec<Registration>) {
        self.wallets.reserve(wallets.len());
        for r in wallets {
            let previous = self.wallets.insert(
                r.id,
                Wallet {
                    kind: r.kind,
                    key: r.key,
                    balance_fen: 0,
                    attrs: r.attrs,
                    counters: Counters::default(),
                    tokens: Vec::new(),
                },
            );
            assert!(previous.is_none(), "wallet {} registered twice", r.id);
        }
    }

    /// Change wallets (class, freeze, unfreeze, close), all or none. Errors name the wallet:
    /// unknown, already closed, a class outside 1-4 (or not 1 for central-bank and operator
    /// wallets), closing with a balance.
    pub fn update_wallets(&mut self, updates: Vec<(WalletId, WalletUpdate)>) -> Result<()> {
        if updates.len() > REGISTER_BATCH_MAX {
            return Err(Error::InvalidArgument(format!(
                "{} updates in one call, at most {REGISTER_BATCH_MAX}",
                updates.len()
            )));
        }
        self.check_not_failed()?;
        let mut closing: HashSet<WalletId> = HashSet::new();
        for &(id, update) in &updates {
            if closing.contains(&id) {
                return Err(Error::InvalidArgument(format!("wallet {id}: is closed")));
            }
            self.check_update(id, update)
                .map_err(|(status, why)| match status {
                    Status::UnknownWallet => Error::UnknownWallet(id),
                    _ => Error::InvalidArgument(format!("wallet {id}: {why}")),
                })?;
            if update == WalletUpdate::Close {
                closing.insert(id);
            }
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_updates(&updates) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.apply_updates(&updates);
        self.maybe_snapshot()
    }

    pub(crate) fn apply_updates(&mut self, updates: &[(WalletId, WalletUpdate)]) {
        for &(id, update) in updates {
            let w = self.wallets.get_mut(&id).expect("checked");
            match update {
                WalletUpdate::SetClass(c) => w.attrs.class = c,
                WalletUpdate::Freeze => w.attrs.status = WalletStatus::Frozen,
                WalletUpdate::Unfreeze => w.attrs.status = WalletStatus::Active,
                WalletUpdate::Close => w.attrs.status = WalletStatus::Closed,
            }
        }
    }

    /// Install a limits table (logged; applies from the next batch on).
    pub fn set_limits(&mut self, limits: Limits) -> Result<()> {
        self.check_not_failed()?;
        if limits.version.is_empty() || limits.version.len() > LIMITS_VERSION_LEN_MAX {
            return Err(Error::InvalidArgument(format!(
                "limits version must be 1-{LIMITS_VERSION_LEN_MAX} bytes"
            )));
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_limits(&limits) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.limits = limits;
        self.maybe_snapshot()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn check_not_failed(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        match &self.failed {
            Some(reason) => Err(Error::Failed(reason.clone())),
            None => Ok(()),
        }
    }

    /// Close the ledger: sync and release its log and directory lock. Every later call that
    /// changes state fails with [`Error::Closed`]; reads still work. Idempotent.
    pub fn close(&mut self) -> Result<()> {
        self.closed = true;
        match self.store.take() {
            Some(mut store) => store.close(),
            None => Ok(()),
        }
    }

    pub fn wallet(&self, id: WalletId) -> Option<&Wallet> {
        self.wallets.get(&id)
    }

    pub fn wallet_count(&self) -> usize {
        self.wallets.len()
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Settled transactions still valid at the last batch's timestamp (remembered so that a
    /// resubmission answers ALREADY_SETTLED). Counts them: O(n), for statistics and tests.
    pub fn settled_count(&self) -> usize {
        let now = self.last_timestamp_ms;
        self.settled.values().filter(|&&e| e >= now).count()
    }

    /// `(owner, value_fen)` of an unspent token.
    pub fn token(&self, id: &TokenId) -> Option<(WalletId, u64)> {
        self.tokens.get(id).map(|t| (t.owner, t.value_fen))
    }

    /// Whether a transaction still valid at the last batch's timestamp spent token `id`.
    pub fn is_spent(&self, id: &TokenId) -> bool {
        self.spent_at(id, self.last_timestamp_ms)
    }

    /// Whether transaction `id` settled and is still valid at the last batch's timestamp.
    pub fn is_settled(&self, id: &TxId) -> bool {
        self.settled_at(id, self.last_timestamp_ms)
    }

    pub fn supply(&self) -> Supply {
        Supply {
            issued_fen: self.issued_fen,
            redeemed_fen: self.redeemed_fen,
            outstanding_fen: self.outstanding_fen,
        }
    }

    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms
    }

    pub fn last_receipt_hash(&self) -> [u8; 32] {
        self.last_receipt_hash
    }

    pub fn batch_seq(&self) -> u64 {
        self.batch_seq
    }

    /// Settle a batch at `timestamp_ms`: one status per transaction, in order, and a receipt.
    /// Errors (nothing applied): a batch over [`BATCH_TX_COUNT_MAX`], or a timestamp earlier
    /// than the previous batch's.
    /// With a log (`Ledger::open`), the batch, its statuses and receipt hash are appended and
    /// (commit policy `Fsync`) fsynced before this returns; an I/O error fails the ledger.
    pub fn settle<T: AsRef<[u8]> + Sync>(
        &mut self,
        batch: &[T],
        timestamp_ms: u64,
    ) -> Result<(Vec<Status>, Receipt)> {
        self.check_not_failed()?;
        self.check_batch(batch.len(), timestamp_ms)?;
        let mode = if self.verify_signatures {
            SigMode::Verify
        } else {
            SigMode::Trust
        };
        // The batch's input is logged and fsynced on another thread while it settles: apply is
        // deterministic given the input, so the input alone is enough to recover the batch.
        let seq = self.batch_seq + 1;
        let mut store = self.store.take();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            std::thread::scope(|scope| {
                let logger = store
                    .as_mut()
                    .map(|st| scope.spawn(move || st.append_input(seq, timestamp_ms, batch)));
                let settled = self.settle_with(batch, timestamp_ms, mode);
                let logged = logger.map(|h| h.join().expect("log writer panicked"));
                (settled, logged)
            })
        }));
        self.store = store;
        let (settled, logged) = match outcome {
            Ok(done) => done,
            Err(panic) => {
                // A bug: the state may be half-applied. Stop loudly, keep the log for recovery.
                self.failed = Some("settlement panicked (a bug); reopen to recover".into());
                std::panic::resume_unwind(panic);
            }
        };
        let (statuses, receipt) = settled.expect("batch checked before settling");
        if let Some(Err(e)) = logged {
            self.failed = Some(e.to_string());
            return Err(e);
        }
        if let Some(store) = self.store.as_mut() {
            if let Err(e) = store.append_outcome(&receipt, &statuses) {
                self.failed = Some(e.to_string());
                return Err(e);
            }
        }
        self.maybe_snapshot()?;
        Ok((statuses, receipt))
    }

    fn check_batch(&self, tx_count: usize, timestamp_ms: u64) -> Result<()> {
        if tx_count > BATCH_TX_COUNT_MAX {
            return Err(Error::Batch(format!(
                "{tx_count} transactions, at most {BATCH_TX_COUNT_MAX} in one batch"
            )));
        }
        if timestamp_ms < self.last_timestamp_ms {
            return Err(Error::Batch(format!(
                "batch timestamp {timestamp_ms} ms is before the previous batch's {} ms: timestamps never go backwards",
                self.last_timestamp_ms
            )));
        }
        if timestamp_ms > TIMESTAMP_MS_MAX {
            return Err(Error::Batch(format!(
                "batch timestamp {timestamp_ms} ms is after {TIMESTAMP_MS_MAX} ms (9999-12-31)"
            )));
        }
        Ok(())
    }

    pub(crate) fn settle_with<T: AsRef<[u8]> + Sync>(
        &mut self,
        batch: &[T],
        timestamp_ms: u64,
        mode: SigMode<'_>,
    ) -> Result<(Vec<Status>, Receipt)> {
        self.check_batch(batch.len(), timestamp_ms)?;
        self.last_timestamp_ms = timestamp_ms;
        self.prune(timestamp_ms);
        self.lapse_locks(timestamp_ms);
        self.settle_txs(batch, timestamp_ms, mode)
    }

    /// Settle a batch's transactions without the deadline actions that open it (the
    /// end-of-day report applies those once per batch, then observes transactions one by one).
    pub(crate) fn settle_txs<T: AsRef<[u8]> + Sync>(
        &mut self,
        batch: &[T],
        timestamp_ms: u64,
        mode: SigMode<'_>,
    ) -> Result<(Vec<Status>, Receipt)> {
        self.check_batch(batch.len(), timestamp_ms)?;
        self.last_timestamp_ms = timestamp_ms;
        self.prune(timestamp_ms);

        let checked = self.check_stateless(batch, timestamp_ms, mode);

        let mut statuses = Vec::with_capacity(batch.len());
        let mut receipt_hasher = Sha256::new();
        receipt_hasher.update(b"tongbao receipt v1");
        receipt_hasher.update(self.last_receipt_hash);
        receipt_hasher.update((self.batch_seq + 1).to_le_bytes());
        receipt_hasher.update(timestamp_ms.to_le_bytes());
        receipt_hasher.update((batch.len() as u64).to_le_bytes());
        let mut status_counts = [0u64; Status::SLOTS];
        let mut value_moved_fen: u128 = 0;
        let mut swept_fen: u128 = 0;
        let issued_before = self.issued_fen;
        let redeemed_before = self.redeemed_fen;
        for (raw, item) in batch.iter().zip(checked) {
            let status = match item.status {
                Status::Malformed | Status::Expired | Status::NotYetValid => item.status,
                _ => {
                    let tx = item.tx.as_ref().expect("decoded");
                    if self.settled_at(&tx.id, timestamp_ms) {
                        Status::AlreadySettled
                    } else if item.status != Status::Ok {
                        item.status
                    } else {
                        match self.apply(tx, timestamp_ms) {
                            Ok(swept) => {
                                if tx.kind == Kind::Transfer {
                                    value_moved_fen += paid_to_others_fen(tx);
                                }
                                swept_fen += swept as u128;
                                Status::Ok
                            }
                            Err(status) => status,
                        }
                    }
                }
            };
            let raw = raw.as_ref();
            receipt_hasher.update((raw.len() as u32).to_le_bytes());
            receipt_hasher.update(raw);
            receipt_hasher.update([status as u8]);
            status_counts[status as usize] += 1;
            statuses.push(status);
        }
        self.batch_seq += 1;
        let hash: [u8; 32] = receipt_hasher.finalize().into();
        let receipt = Receipt {
            seq: self.batch_seq,
            timestamp_ms,
            tx_count: batch.len() as u64,
            status_counts,
            value_moved_fen,
            swept_fen,
            issued_fen: self.issued_fen - issued_before,
            redeemed_fen: self.redeemed_fen - redeemed_before,
            prev_hash: self.last_receipt_hash,
            hash,
        };
        self.last_receipt_hash = hash;
        #[cfg(debug_assertions)]
        self.check_supply_fast();
        Ok((statuses, receipt))
    }

    /// Whether `id` was spent by a transaction still valid at `now_ms` (a later spend of it
    /// is INPUT_SPENT; after that expiry the token is simply unknown).
    pub(crate) fn spent_at(&self, id: &TokenId, now_ms: u64) -> bool {
        self.spent.get(id).is_some_and(|&expiry| expiry >= now_ms)
    }

    /// Whether transaction `id` settled and is still valid at `now_ms`.
    pub(crate) fn settled_at(&self, id: &TxId, now_ms: u64) -> bool {
        self.settled.get(id).is_some_and(|&expiry| expiry >= now_ms)
    }

    /// Forget spent markers and settled ids whose transaction expired before `now_ms`, in
    /// bulk: when the two maps have doubled since the last sweep, one pass keeps the live
    /// entries. Every lookup checks the expiry (`spent_at`, `settled_at`), so when an expired
    /// entry goes makes no difference to any result; the sweep only bounds memory, at an
    /// amortised O(1) per entry and with no per-transaction bookkeeping (a heap of expiries
    /// cost 18% of apply: decision 0015).
    fn prune(&mut self, now_ms: u64) {
        if self.remembered_count() < self.sweep_at {
            return;
        }
        self.spent.retain(|_, expiry| *expiry >= now_ms);
        self.settled.retain(|_, expiry| *expiry >= now_ms);
        self.locks.lapsed.retain(|_, until| *until >= now_ms);
        self.sweep_at = SWEEP_MIN.max(2 * self.remembered_count());
    }

    /// Entries of the maps that `prune` sweeps: spent markers, settled ids, lapsed locks.
    fn remembered_count(&self) -> usize {
        self.spent.len() + self.settled.len() + self.locks.lapsed.len()
    }

    /// Phase 1: decode, stateless checks and signatures, in parallel; reads state only to find
    /// keys and to skip verifying transactions that are already settled.
    fn check_stateless<T: AsRef<[u8]> + Sync>(
        &self,
        batch: &[T],
        now_ms: u64,
        mode: SigMode<'_>,
    ) -> Vec<Checked> {
        let verify = matches!(mode, SigMode::Verify);
        self.pool.install(|| {
            let mut checked: Vec<Checked> = batch
                .par_iter()
                .with_min_len(64)
                .map(|raw| {
                    let tx = match decode(raw.as_ref()) {
                        Ok(tx) => tx,
                        Err(_) => {
                            return Checked {
                                tx: None,
                                status: Status::Malformed,
                            }
                        }
                    };
                    let status = self.stateless_status(&tx, now_ms, !verify);
                    Checked {
                        tx: Some(tx),
                        status,
                    }
                })
                .collect();
            if let SigMode::Replay(logged) = mode {
                for (c, logged) in checked.iter_mut().zip(logged) {
                    if c.status == Status::Ok && *logged == Status::BadSignature {
                        c.status = Status::BadSignature;
                    }
                }
            }
            if !verify {
                return checked;
            }
            // Signature jobs of the transactions still standing and not already settled.
            let mut jobs: Vec<(usize, VerifyItem<'_>)> = Vec::new();
            let mut bad_signer: Vec<usize> = Vec::new();
            for (i, c) in checked.iter().enumerate() {
                let Some(tx) = c.tx.as_ref() else { continue };
                if c.status != Status::Ok || self.settled_at(&tx.id, now_ms) {
                    continue;
                }
                let mut known = true;
                for entry in &tx.signatures {
                    match self.wallets.get(&entry.signer) {
                        Some(w) => jobs.push((
                            i,
                            VerifyItem {
                                key: &w.key,
                                message: &tx.id,
                                signature: &entry.signature,
                            },
                        )),
                        None => known = false,
                    }
                }
                if !known {
                    bad_signer.push(i);
                }
            }
            let (owners, items): (Vec<usize>, Vec<VerifyItem<'_>>) = jobs.into_iter().unzip();
            let verdicts = verify_parallel(&self.pool, &items);
            let failed: Vec<usize> = owners
                .iter()
                .zip(verdicts)
                .filter(|(_, ok)| !ok)
                .map(|(i, _)| *i)
                .collect();
            drop(items);
            for i in bad_signer {
                checked[i].status = Status::UnknownWallet;
            }
            for i in failed {
                if checked[i].status == Status::Ok {
                    checked[i].status = Status::BadSignature;
                }
            }
            checked
        })
    }

    /// The checks that need nothing but the transaction and the batch time, in their order.
    fn stateless_status(&self, tx: &Transaction, now_ms: u64, check_signers: bool) -> Status {
        if now_ms > tx.expiry_ms {
            return Status::Expired;
        }
        if tx.timestamp_ms > now_ms.saturating_add(CLOCK_SKEW_MS_MAX) {
            return Status::NotYetValid;
        }
        // ALREADY_SETTLED is decided in phase 2, ahead of every status below.
        if has_duplicate(&tx.inputs) {
            return Status::DuplicateInput;
        }
        if tx.outputs.iter().any(|o| o.amount_fen == 0) {
            return Status::ZeroValueOutput;
        }
        if tx.output_sum_fen().is_none() {
            return Status::ValueOverflow;
        }
        if check_signers
            && tx
                .signatures
                .iter()
                .any(|s| !self.wallets.contains_key(&s.signer))
        {
            return Status::UnknownWallet;
        }
        Status::Ok
    }

    /// Phase 2 for one transaction: stateful checks, then apply. Leaves state untouched unless
    /// it returns OK.
    /// Returns the value swept to operators, or the failing status.
    fn apply(&mut self, tx: &Transaction, now_ms: u64) -> std::result::Result<u64, Status> {
        if let Some(admin) = &tx.admin {
            return self.apply_admin(tx, admin).map(|()| 0);
        }
        if let Some(def) = &tx.define {
            self.apply_define(tx, def)?;
            self.settled.insert(tx.id, tx.expiry_ms);
            return Ok(0);
        }
        if tx.lock.is_some() {
            return self.apply_lock_tx(tx, now_ms);
        }
        if tx
            .outputs
            .iter()
            .any(|o| !self.wallets.contains_key(&o.owner))
        {
            return Err(Status::UnknownWallet);
        }
        let mut records: Vec<TokenRecord> = Vec::with_capacity(tx.inputs.len());
        let mut any_spent = false;
        for input in &tx.inputs {
            match self.tokens.get(input) {
                Some(r) => records.push(*r),
                None if self.spent_at(input, now_ms) => any_spent = true,
                None => return Err(Status::UnknownInput),
            }
        }
        if any_spent {
            return Err(Status::InputSpent);
        }
        if !self.locks.locks.is_empty() && tx.inputs.iter().any(|i| self.locks.is_locked(i)) {
            return Err(Status::InputLocked);
        }
        let signers: Vec<WalletId> = tx.signatures.iter().map(|s| s.signer).collect();
        let output_sum = tx.output_sum_fen().expect("checked in phase 1");
        let mut reclaimed = None;
        match tx.kind {
            Kind::Reclaim => reclaimed = Some(self.check_reclaim(tx, &records, now_ms)?),
            Kind::Issue => {
                if signers.is_empty() {
                    return Err(Status::MissingSignature);
                }
                if signers.len() > 1 {
                    return Err(Status::UnexpectedSigner);
                }
                if self.wallets[&signers[0]].kind != WalletKind::CentralBank
                    || tx
                        .outputs
                        .iter()
                        .any(|o| self.wallets[&o.owner].kind != WalletKind::Operator)
                {
                    return Err(Status::NotAuthorized);
                }
                if self.outstanding_fen.checked_add(output_sum).is_none() {
                    return Err(Status::ValueOverflow);
                }
            }
            Kind::Transfer | Kind::Redeem => {
                if records.iter().any(|r| !signers.contains(&r.owner)) {
                    return Err(Status::MissingSignature);
                }
                if signers
                    .iter()
                    .any(|s| !records.iter().any(|r| r.owner == *s))
                {
                    return Err(Status::UnexpectedSigner);
                }
                let input_sum = records
                    .iter()
                    .try_fold(0u64, |acc, r| acc.checked_add(r.value_fen))
                    .expect("inputs sum to at most the outstanding supply");
                if tx.kind == Kind::Redeem {
                    if records
                        .iter()
                        .any(|r| self.wallets[&r.owner].kind != WalletKind::Operator)
                        || tx.outputs.iter().any(|o| !signers.contains(&o.owner))
                    {
                        return Err(Status::NotAuthorized);
                    }
                    if output_sum >= input_sum {
                        return Err(Status::ValueMismatch);
                    }
                } else if output_sum != input_sum {
                    return Err(Status::ValueMismatch);
                }
            }
            _ => unreachable!("wallet administration applied above"),
        }

        let plan = match tx.kind {
            Kind::Issue => {
                // Issues have no limits, but a frozen central bank cannot issue and a closed
                // operator cannot receive.
                if self.wallets[&signers[0]].attrs.status == WalletStatus::Frozen {
                    return Err(Status::WalletFrozen);
                }
                if tx
                    .outputs
                    .iter()
                    .any(|o| self.wallets[&o.owner].attrs.status == WalletStatus::Closed)
                {
                    return Err(Status::WalletClosed);
                }
                None
            }
            Kind::Transfer | Kind::Redeem => {
                let owned: Vec<(WalletId, u64)> =
                    records.iter().map(|r| (r.owner, r.value_fen)).collect();
                Some(rules::check(self, tx, &owned, now_ms)?)
            }
            Kind::Reclaim => None,
            _ => unreachable!("wallet administration applied above"),
        };
        // Spending conditions: skipped at the cost of one test when no condition exists.
        let earmarks = match &plan {
            Some(p) if self.conds.is_active() || tx.has_earmarked_output() => {
                self.check_conditions(tx, &records, p, now_ms)?
            }
            _ => None,
        };

        // Apply: every check passed.
        let mut input_sum: u64 = 0;
        for input in &tx.inputs {
            input_sum += self.remove_token(input);
            self.spent.insert(*input, tx.expiry_ms);
        }
        let mut swept_fen = 0u64;
        // Outputs owned by wallets homed on other shards leave as credits (credits.rs).
        let refund_to = signers.first().copied().unwrap_or(0);
        let mut exported_fen = 0u64;
        for (index, output) in tx.outputs.iter().enumerate() {
            let (credit, swept) = match &plan {
                Some(p) => p.credits[index],
                None => (output.amount_fen, 0),
            };
            let mut place = |ledger: &mut Ledger, id, owner, value_fen, refund_to| {
                if ledger.is_local(owner) {
                    ledger.add_token(id, owner, value_fen);
                } else {
                    ledger.export(crate::credits::Credit {
                        token: id,
                        owner,
                        value_fen,
                        refund_to,
                    });
                    exported_fen += value_fen;
                }
            };
            if credit > 0 {
                let id = token_id(&tx.id, index as u16);
                if let crate::format::Condition::Earmark(c) = output.condition {
                    // Earmarked outputs are never swept nor exported (checked in conditions.rs).
                    self.conds.earmarks.insert(id, c);
                }
                place(self, id, output.owner, credit, refund_to);
            }
            if swept > 0 {
                let operator = self.wallets[&output.owner].attrs.operator;
                let id = token_id(&tx.id, SWEEP_INDEX_FLAG | index as u16);
                place(self, id, operator, swept, 0);
                swept_fen += swept;
            }
        }
        if let Some(p) = &plan {
            debug_assert_eq!(p.swept_fen, swept_fen);
            rules::record_outflows(self, p, now_ms);
        }
        if let Some(e) = earmarks {
            self.apply_earmarks(tx, e);
        }
        if let Some(cond) = reclaimed {
            self.apply_reclaim(tx, cond, input_sum);
        }
        match tx.kind {
            Kind::Issue => {
                self.issued_fen += output_sum as u128;
                self.outstanding_fen += output_sum;
            }
            Kind::Redeem => {
                let destroyed = input_sum - output_sum;
                self.redeemed_fen += destroyed as u128;
                self.outstanding_fen -= destroyed;
            }
            Kind::Transfer | Kind::Reclaim => debug_assert_eq!(input_sum, output_sum),
            _ => unreachable!("wallet administration applied above"),
        }
        self.outstanding_fen -= exported_fen;
        self.settled.insert(tx.id, tx.expiry_ms);
        Ok(swept_fen)
    }

    pub(crate) fn add_token(&mut self, id: TokenId, owner: WalletId, value_fen: u64) {
        let wallet = self.wallets.get_mut(&owner).expect("owner checked");
        let pos = wallet.tokens.len() as u32;
        wallet.tokens.push(id);
        wallet.balance_fen = wallet
            .balance_fen
            .checked_add(value_fen)
            .expect("balance within supply");
        let previous = self.tokens.insert(
            id,
            TokenRecord {
                owner,
                value_fen,
                pos,
            },
        );
        assert!(previous.is_none(), "token id collision: state is corrupt");
    }

    /// Remove an unspent token from the state; returns its value.
    pub(crate) fn remove_token(&mut self, id: &TokenId) -> u64 {
        let record = self.tokens.remove(id).expect("input checked");
        let wallet = self.wallets.get_mut(&record.owner).expect("owner exists");
        let last = wallet.tokens.pop().expect("owner lists the token");
        if last != *id {
            wallet.tokens[record.pos as usize] = last;
            self.tokens.get_mut(&last).expect("listed token exists").pos = record.pos;
        }
        wallet.balance_fen -= record.value_fen;
        record.value_fen
    }

    #[cfg(debug_assertions)]
    pub(crate) fn check_supply_fast(&self) {
        let total: u128 = self.wallets.values().map(|w| w.balance_fen as u128).sum();
        assert_eq!(
            total, self.outstanding_fen as u128,
            "supply invariant broken"
        );
        assert!(self.supply_balances(), "supply invariant broken");
    }

    /// issued + credits in = redeemed + credits out + outstanding + suspense (credits and
    /// suspense are zero on an unsharded ledger).
    fn supply_balances(&self) -> bool {
        let s = &self.shard;
        self.issued_fen + s.credits_in_fen
            == self.redeemed_fen + s.credits_out_fen + self.outstanding_fen as u128 + s.suspense_fen
    }

    /// Full consistency check (tests, audits): issued - redeemed = outstanding = sum of unspent
    /// tokens = sum of balances; every wallet's token list matches the token table.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        if !self.supply_balances() {
            let s = &self.shard;
            return Err(format!(
                "issued {} + credits in {} != redeemed {} + credits out {} + outstanding {} + suspense {}",
                self.issued_fen,
                s.credits_in_fen,
                self.redeemed_fen,
                s.credits_out_fen,
                self.outstanding_fen,
                s.suspense_fen
            ));
        }
        let token_total: u128 = self.tokens.values().map(|t| t.value_fen as u128).sum();
        if token_total != self.outstanding_fen as u128 {
            return Err(format!(
                "unspent tokens sum to {token_total}, outstanding is {}",
                self.outstanding_fen
            ));
        }
        let mut listed = 0usize;
        for (id, wallet) in &self.wallets {
            let mut sum: u128 = 0;
            for (pos, token) in wallet.tokens.iter().enumerate() {
                let record = self
                    .tokens
                    .get(token)
                    .ok_or_else(|| format!("wallet {id} lists a missing token"))?;
                if record.owner != *id || record.pos as usize != pos {
                    return Err(format!("wallet {id}: token index out of step"));
                }
                sum += record.value_fen as u128;
            }
            if sum != wallet.balance_fen as u128 {
                return Err(format!(
                    "wallet {id}: balance {} but tokens sum to {sum}",
                    wallet.balance_fen
                ));
            }
            listed += wallet.tokens.len();
        }
        if listed != self.tokens.len() {
            return Err(format!(
                "{listed} tokens listed by wallets, {} in the table",
                self.tokens.len()
            ));
        }
        self.check_condition_invariants()?;
        self.check_locks()
    }

    /// A digest of the ledger state that does not depend on hash-map order: the same batches
    /// give the same digest, whatever the thread count.
    pub fn state_digest(&self) -> [u8; 32] {
        let mut tokens: Vec<(&TokenId, &TokenRecord)> = self.tokens.iter().collect();
        tokens.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut wallets: Vec<(&WalletId, &Wallet)> = self.wallets.iter().collect();
        wallets.sort_unstable_by_key(|(id, _)| **id);
        let mut h = Sha256::new();
        h.update(b"tongbao state v1");
        h.update(self.issued_fen.to_le_bytes());
        h.update(self.redeemed_fen.to_le_bytes());
        h.update(self.last_receipt_hash);
        let mut limits = crate::wal::Writer(Vec::new());
        crate::wal::write_limits(&mut limits, &self.limits);
        h.update(&limits.0);
        for (id, w) in wallets {
            h.update(id.to_le_bytes());
            h.update([w.kind as u8, w.key.scheme() as u8]);
            h.update(w.key.to_bytes());
            h.update(w.balance_fen.to_le_bytes());
            let a = &w.attrs;
            h.update([a.class, a.linked_account as u8, a.status as u8]);
            h.update(a.operator.to_le_bytes());
            h.update(a.parent.to_le_bytes());
            h.update(a.mcc.to_le_bytes());
            h.update(a.region.to_le_bytes());
            let c = &w.counters;
            h.update(c.day.to_le_bytes());
            h.update(c.day_out_fen.to_le_bytes());
            h.update(c.year.to_le_bytes());
            h.update(c.year_out_fen.to_le_bytes());
        }
        for (id, t) in tokens {
            h.update(id);
            h.update(t.owner.to_le_bytes());
            h.update(t.value_fen.to_le_bytes());
        }
        self.shard.digest(&mut h);
        self.conds.digest(&mut h);
        self.locks.digest(&mut h);
        h.finalize().into()
    }
}
