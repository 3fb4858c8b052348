//! Thin pyo3 bindings: `tongbao._core`. Python inputs are extracted to owned or borrowed Rust
//! data while attached; the real work runs detached (`py.detach`) on the core's thread pool.
//! Whole-call failures raise exceptions defined in Python (`tongbao.errors`); per-transaction
//! failures come back as status arrays.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use tongbao_core as core;
use tongbao_core::format::{self, Condition, Output, SignatureEntry, TokenId};
use tongbao_core::{Kind, Scheme, Status, WalletKind};

mod errors {
    pyo3::import_exception!(tongbao.errors, TongbaoError);
    pyo3::import_exception!(tongbao.errors, MalformedTransaction);
    pyo3::import_exception!(tongbao.errors, InvalidKey);
    pyo3::import_exception!(tongbao.errors, DuplicateWallet);
    pyo3::import_exception!(tongbao.errors, UnknownWallet);
    pyo3::import_exception!(tongbao.errors, BatchRejected);
    pyo3::import_exception!(tongbao.errors, InsufficientFunds);
    pyo3::import_exception!(tongbao.errors, InvalidArgument);
    pyo3::import_exception!(tongbao.errors, InvariantViolation);
    pyo3::import_exception!(tongbao.errors, StorageError);
    pyo3::import_exception!(tongbao.errors, CorruptLog);
    pyo3::import_exception!(tongbao.errors, LedgerFailed);
    pyo3::import_exception!(tongbao.errors, LedgerLocked);
    pyo3::import_exception!(tongbao.errors, LedgerClosed);
}

/// The one conversion point from core errors to Python exceptions.
struct CoreError(core::Error);

impl From<core::Error> for CoreError {
    fn from(e: core::Error) -> Self {
        CoreError(e)
    }
}

impl From<core::DecodeError> for CoreError {
    fn from(e: core::DecodeError) -> Self {
        CoreError(core::Error::Malformed(e))
    }
}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        let message = e.0.to_string();
        match e.0 {
            core::Error::Malformed(d) => {
                errors::MalformedTransaction::new_err((message, d.field, d.offset))
            }
            core::Error::InvalidKey(_) => errors::InvalidKey::new_err(message),
            core::Error::DuplicateWallet(id) => errors::DuplicateWallet::new_err((message, id)),
            core::Error::UnknownWallet(id) => errors::UnknownWallet::new_err((message, id)),
            core::Error::Batch(_) => errors::BatchRejected::new_err(message),
            core::Error::InsufficientFunds(_) => errors::InsufficientFunds::new_err(message),
            core::Error::InvalidArgument(_) => errors::InvalidArgument::new_err(message),
            core::Error::Io { .. } => errors::StorageError::new_err(message),
            core::Error::Corrupt(_) => errors::CorruptLog::new_err(message),
            core::Error::Failed(_) => errors::LedgerFailed::new_err(message),
            core::Error::Locked(_) => errors::LedgerLocked::new_err(message),
            core::Error::Closed => errors::LedgerClosed::new_err(message),
        }
    }
}

fn invalid(message: String) -> PyErr {
    errors::InvalidArgument::new_err(message)
}

fn scheme_of(value: u8) -> PyResult<Scheme> {
    Scheme::from_u8(value).ok_or_else(|| {
        invalid(format!(
            "unknown signature scheme {value} (1 Ed25519, 2 SM2)"
        ))
    })
}

fn kind_of(value: u8) -> PyResult<Kind> {
    Kind::from_u8(value).ok_or_else(|| {
        invalid(format!(
            "unknown transaction kind {value} (1 issue, 2 transfer, 3 redeem, 4-8 administration, 9 lock, 10 capture, 11 release)"
        ))
    })
}

fn wallet_kind_of(value: u8) -> PyResult<WalletKind> {
    WalletKind::from_u8(value).ok_or_else(|| {
        invalid(format!(
            "unknown wallet kind {value} (1 personal, 2 corporate, 3 merchant, 4 operator, 5 central bank)"
        ))
    })
}

fn id32(bytes: &[u8], what: &str) -> PyResult<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| invalid(format!("a {what} is 32 bytes long, got {}", bytes.len())))
}

/// A batch held while its bytes are borrowed: one framed blob or a list of `bytes` objects.
/// Only immutable `bytes` are accepted and a strong reference to each is held here, so the
/// borrowed slices stay valid while the GIL is released, whatever other threads do to the list.
enum BatchRef<'py> {
    Blob(Bound<'py, PyBytes>),
    Items(Vec<Bound<'py, PyBytes>>),
}

impl<'py> BatchRef<'py> {
    fn extract(batch: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(blob) = batch.cast::<PyBytes>() {
            return Ok(BatchRef::Blob(blob.clone()));
        }
        let list = batch.cast::<PyList>().map_err(|_| {
            PyTypeError::new_err("a batch is a framed bytes blob or a list of bytes")
        })?;
        if list.len() > format::BATCH_TX_COUNT_MAX {
            return Err(errors::BatchRejected::new_err(format!(
                "{} transactions, at most {} in one batch",
                list.len(),
                format::BATCH_TX_COUNT_MAX
            )));
        }
        let mut items = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let bytes = item
                .cast_into::<PyBytes>()
                .map_err(|_| PyTypeError::new_err(format!("batch item {i} is not bytes")))?;
            items.push(bytes);
        }
        Ok(BatchRef::Items(items))
    }

    fn slices(&self) -> PyResult<Vec<&[u8]>> {
        match self {
            BatchRef::Blob(blob) => {
                Ok(format::unframe_batch(blob.as_bytes()).map_err(CoreError::from)?)
            }
            BatchRef::Items(items) => Ok(items.iter().map(|b| b.as_bytes()).collect()),
        }
    }
}

/// Copy the named fields of a core struct into a dict under the same names.
macro_rules! set_fields {
    ($dict:expr, $src:expr, [$($field:ident),* $(,)?]) => {
        $($dict.set_item(stringify!($field), $src.$field)?;)*
    };
}

mod shard;

fn receipt_dict<'py>(py: Python<'py>, r: &core::Receipt) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    set_fields!(
        d,
        r,
        [
            seq,
            timestamp_ms,
            tx_count,
            value_moved_fen,
            swept_fen,
            issued_fen,
            redeemed_fen
        ]
    );
    let counts = PyDict::new(py);
    for s in Status::ALL {
        let n = r.status_counts[s as usize];
        if n > 0 {
            counts.set_item(s as u8, n)?;
        }
    }
    d.set_item("status_counts", counts)?;
    d.set_item("prev_hash", PyBytes::new(py, &r.prev_hash))?;
    d.set_item("hash", PyBytes::new(py, &r.hash))?;
    Ok(d)
}

/// Wallet attributes as Python passes them: (class, operator, parent, mcc, region, linked).
type AttrsTuple = (u8, u64, u64, u16, u32, bool);

/// The settlement engine. See `tongbao.Ledger` for the documented Python API.
#[pyclass(module = "tongbao._core", name = "Ledger")]
struct PyLedger {
    inner: core::Ledger,
}

#[pymethods]
impl PyLedger {
    #[new]
    #[pyo3(signature = (threads = 0, verify_signatures = true))]
    fn new(threads: usize, verify_signatures: bool) -> PyResult<Self> {
        if threads > 1024 {
            return Err(invalid(format!("threads={threads}: at most 1024")));
        }
        let inner = core::Ledger::new(core::LedgerConfig {
            threads,
            verify_signatures,
        })
        .map_err(CoreError::from)?;
        Ok(PyLedger { inner })
    }

    /// Open or create a durable ledger directory; returns (ledger, recovery report dict).
    #[staticmethod]
    #[pyo3(signature = (path, threads = 0, verify_signatures = true, commit = "fsync", snapshot_every_records = 10_000, snapshots_kept = 2, unsafe_ack_before_fsync = false))]
    #[allow(clippy::too_many_arguments)]
    fn open<'py>(
        py: Python<'py>,
        path: std::path::PathBuf,
        threads: usize,
        verify_signatures: bool,
        commit: &str,
        snapshot_every_records: u64,
        snapshots_kept: usize,
        unsafe_ack_before_fsync: bool,
    ) -> PyResult<(Self, Bound<'py, PyDict>)> {
        let commit = match commit {
            "fsync" => core::CommitPolicy::Fsync,
            "none" => core::CommitPolicy::NoSync,
            other => {
                return Err(invalid(format!(
                    "commit={other:?}: use \"fsync\" or \"none\""
                )))
            }
        };
        if threads > 1024 {
            return Err(invalid(format!("threads={threads}: at most 1024")));
        }
        let options = core::StoreOptions {
            commit,
            snapshot_every_records,
            snapshots_kept,
            unsafe_ack_before_fsync,
        };
        let config = core::LedgerConfig {
            threads,
            verify_signatures,
        };
        let (inner, report) = py
            .detach(|| core::Ledger::open(&path, config, options))
            .map_err(CoreError::from)?;
        let d = PyDict::new(py);
        set_fields!(
            d,
            report,
            [
                snapshot_lsn,
                records_replayed,
                batches_replayed,
                transactions_replayed,
                batches_without_outcome,
                torn_bytes_cut,
                last_lsn,
            ]
        );
        Ok((PyLedger { inner }, d))
    }

    /// Sync and release the log and its lock; later state changes raise LedgerClosed.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.close()).map_err(CoreError::from)?)
    }

    /// Take a snapshot now; returns its log sequence number.
    fn snapshot(&mut self, py: Python<'_>) -> PyResult<u64> {
        let inner = &mut self.inner;
        Ok(py.detach(|| inner.snapshot()).map_err(CoreError::from)?)
    }

    #[getter]
    fn path(&self) -> Option<std::path::PathBuf> {
        self.inner.store().map(|s| s.dir().to_path_buf())
    }

    #[getter]
    fn last_lsn(&self) -> Option<u64> {
        self.inner.store().map(|s| s.last_lsn())
    }

    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    #[getter]
    fn verify_signatures(&self) -> bool {
        self.inner.verify_signatures()
    }

    #[getter]
    fn wallet_count(&self) -> usize {
        self.inner.wallet_count()
    }

    #[getter]
    fn token_count(&self) -> usize {
        self.inner.token_count()
    }

    #[getter]
    fn settled_count(&self) -> usize {
        self.inner.settled_count()
    }

    #[getter]
    fn batch_seq(&self) -> u64 {
        self.inner.batch_seq()
    }

    #[getter]
    fn last_timestamp_ms(&self) -> u64 {
        self.inner.last_timestamp_ms()
    }

    #[getter]
    fn last_receipt_hash<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.last_receipt_hash())
    }

    /// Register wallets all or none. `attrs` holds one tuple per wallet:
    /// (class, operator, parent, mcc, region, linked_account).
    #[pyo3(signature = (wallet_ids, kinds, schemes, public_keys, attrs = None))]
    fn register_wallets(
        &mut self,
        py: Python<'_>,
        wallet_ids: Vec<u64>,
        kinds: Vec<u8>,
        schemes: Vec<u8>,
        public_keys: Vec<Vec<u8>>,
        attrs: Option<Vec<AttrsTuple>>,
    ) -> PyResult<()> {
        let n = wallet_ids.len();
        if kinds.len() != n || schemes.len() != n || public_keys.len() != n {
            return Err(invalid(format!(
                "wallet_ids, kinds, schemes and public_keys differ in length ({n}, {}, {}, {})",
                kinds.len(),
                schemes.len(),
                public_keys.len()
            )));
        }
        if let Some(a) = &attrs {
            if a.len() != n {
                return Err(invalid(format!(
                    "{n} wallets but {} attribute tuples",
                    a.len()
                )));
            }
        }
        let mut parsed_kinds = Vec::with_capacity(n);
        let mut parsed_schemes = Vec::with_capacity(n);
        for i in 0..n {
            parsed_kinds.push(wallet_kind_of(kinds[i])?);
            parsed_schemes.push(scheme_of(schemes[i])?);
        }
        let inner = &self.inner;
        let keys = py.detach(|| inner.parse_keys(&parsed_schemes, &public_keys));
        let mut wallets = Vec::with_capacity(n);
        for (i, key) in keys.into_iter().enumerate() {
            let key = key.map_err(|e| {
                errors::InvalidKey::new_err(format!("wallet {}: {}", wallet_ids[i], e))
            })?;
            let attrs = match &attrs {
                Some(a) => {
                    let (class, operator, parent, mcc, region, linked_account) = a[i];
                    core::WalletAttrs {
                        class,
                        operator,
                        parent,
                        mcc,
                        region,
                        linked_account,
                        status: core::WalletStatus::Active,
                    }
                }
                None => core::WalletAttrs::default(),
            };
            wallets.push(core::Registration {
                id: wallet_ids[i],
                kind: parsed_kinds[i],
                key,
                attrs,
            });
        }
        self.inner
            .register_wallets(wallets)
            .map_err(CoreError::from)?;
        Ok(())
    }

    /// Update wallets all or none: actions 1 set class, 2 freeze, 3 unfreeze, 4 close;
    /// `classes[i]` is used by action 1.
    fn update_wallets(
        &mut self,
        wallet_ids: Vec<u64>,
        actions: Vec<u8>,
        classes: Vec<u8>,
    ) -> PyResult<()> {
        if actions.len() != wallet_ids.len() || classes.len() != wallet_ids.len() {
            return Err(invalid(
                "wallet_ids, actions and classes differ in length".into(),
            ));
        }
        let mut updates = Vec::with_capacity(wallet_ids.len());
        for i in 0..wallet_ids.len() {
            let update = match actions[i] {
                1 => core::WalletUpdate::SetClass(classes[i]),
                2 => core::WalletUpdate::Freeze,
                3 => core::WalletUpdate::Unfreeze,
                4 => core::WalletUpdate::Close,
                other => {
                    return Err(invalid(format!(
                        "unknown wallet update {other} (1 set class, 2 freeze, 3 unfreeze, 4 close)"
                    )))
                }
            };
            updates.push((wallet_ids[i], update));
        }
        self.inner
            .update_wallets(updates)
            .map_err(CoreError::from)?;
        Ok(())
    }

    /// Install limits: `table` has 5 rows (classes 1-4, then sub-wallets) of
    /// (balance, payment, daily, annual) caps in fen, None for no cap; `over_balance_cap`
    /// 1 sweep, 2 reject.
    #[allow(clippy::type_complexity)]
    fn set_limits(
        &mut self,
        version: String,
        over_balance_cap: u8,
        table: Vec<(Option<u64>, Option<u64>, Option<u64>, Option<u64>)>,
    ) -> PyResult<()> {
        if table.len() != 5 {
            return Err(invalid(format!(
                "the limits table has 5 rows (classes 1-4, sub-wallets), got {}",
                table.len()
            )));
        }
        let over_balance_cap = match over_balance_cap {
            1 => core::OverCap::Sweep,
            2 => core::OverCap::Reject,
            other => {
                return Err(invalid(format!(
                    "over_balance_cap {other}: 1 sweep, 2 reject"
                )))
            }
        };
        let rows: Vec<core::ClassLimits> = table
            .into_iter()
            .map(|(b, p, d, a)| core::ClassLimits {
                balance_cap_fen: b,
                payment_cap_fen: p,
                daily_cap_fen: d,
                annual_cap_fen: a,
            })
            .collect();
        let limits = core::Limits {
            version,
            over_balance_cap,
            classes: [rows[0], rows[1], rows[2], rows[3]],
            sub_wallet: rows[4],
        };
        self.inner.set_limits(limits).map_err(CoreError::from)?;
        Ok(())
    }

    #[getter]
    fn limits_version(&self) -> String {
        self.inner.limits().version.clone()
    }

    /// The limits in force: (version, over_balance_cap 1 sweep / 2 reject, 5 rows of caps).
    #[allow(clippy::type_complexity)]
    fn limits_table(
        &self,
    ) -> (
        String,
        u8,
        Vec<(Option<u64>, Option<u64>, Option<u64>, Option<u64>)>,
    ) {
        let l = self.inner.limits();
        let rows = l
            .classes
            .iter()
            .chain(std::iter::once(&l.sub_wallet))
            .map(|c| {
                (
                    c.balance_cap_fen,
                    c.payment_cap_fen,
                    c.daily_cap_fen,
                    c.annual_cap_fen,
                )
            })
            .collect();
        (l.version.clone(), l.over_balance_cap as u8, rows)
    }

    /// Returns `(statuses, receipt)`: statuses as bytes (one u8 per transaction).
    fn settle<'py>(
        &mut self,
        py: Python<'py>,
        batch: &Bound<'py, PyAny>,
        timestamp_ms: u64,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyDict>)> {
        let held = BatchRef::extract(batch)?;
        let slices = held.slices()?;
        let inner = &mut self.inner;
        let (statuses, receipt) = py
            .detach(|| inner.settle(&slices, timestamp_ms))
            .map_err(CoreError::from)?;
        let codes: Vec<u8> = statuses.iter().map(|s| *s as u8).collect();
        Ok((PyBytes::new(py, &codes), receipt_dict(py, &receipt)?))
    }

    fn balance(&self, wallet_id: u64) -> PyResult<u64> {
        self.inner
            .wallet(wallet_id)
            .map(|w| w.balance_fen)
            .ok_or_else(|| CoreError(core::Error::UnknownWallet(wallet_id)).into())
    }

    /// Balances of many wallets as little-endian u64 bytes; unknown wallets raise.
    fn balances<'py>(
        &self,
        py: Python<'py>,
        wallet_ids: Vec<u64>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::with_capacity(wallet_ids.len() * 8);
        for id in wallet_ids {
            let w = self
                .inner
                .wallet(id)
                .ok_or(CoreError(core::Error::UnknownWallet(id)))?;
            out.extend_from_slice(&w.balance_fen.to_le_bytes());
        }
        Ok(PyBytes::new(py, &out))
    }

    /// What a wallet may still pay out at `timestamp_ms` under its caps, as settlement judges
    /// it: (per-payment cap, room under the daily and annual caps of the wallet and its
    /// parent); None for no cap. Raises UnknownWallet for an unknown wallet.
    fn outflow_room(
        &self,
        wallet_id: u64,
        timestamp_ms: u64,
    ) -> PyResult<(Option<u64>, Option<u64>)> {
        core::rules::outflow_room(&self.inner, wallet_id, timestamp_ms)
            .ok_or_else(|| CoreError(core::Error::UnknownWallet(wallet_id)).into())
    }

    /// Payees as payroll pre-flight needs them, one pass for many ids: four byte arrays of
    /// status (u8: 0 active, 1 frozen, 2 closed, 255 unknown), balance (u64 LE), effective
    /// balance cap (u64 LE, u64::MAX for none) and can-sweep (u8 0/1).
    #[allow(clippy::type_complexity)]
    fn payee_states<'py>(
        &self,
        py: Python<'py>,
        wallet_ids: Vec<u64>,
    ) -> (
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
    ) {
        let inner = &self.inner;
        let (status, balance, cap, sweep) = py.detach(|| {
            let states = core::rules::payee_states(inner, &wallet_ids);
            let n = states.len();
            let (mut status, mut balance, mut cap, mut sweep) = (
                Vec::with_capacity(n),
                Vec::with_capacity(n * 8),
                Vec::with_capacity(n * 8),
                Vec::with_capacity(n),
            );
            for s in states {
                status.push(s.map_or(u8::MAX, |s| s.status as u8));
                balance.extend_from_slice(&s.map_or(0, |s| s.balance_fen).to_le_bytes());
                let c = s.and_then(|s| s.balance_cap_fen).unwrap_or(u64::MAX);
                cap.extend_from_slice(&c.to_le_bytes());
                sweep.push(u8::from(s.is_some_and(|s| s.can_sweep)));
            }
            (status, balance, cap, sweep)
        });
        (
            PyBytes::new(py, &status),
            PyBytes::new(py, &balance),
            PyBytes::new(py, &cap),
            PyBytes::new(py, &sweep),
        )
    }

    /// `(kind, scheme, public_key, balance_fen, token_count)` or None.
    /// The wallet as a dict, or None if unknown.
    fn wallet_info<'py>(
        &self,
        py: Python<'py>,
        wallet_id: u64,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(w) = self.inner.wallet(wallet_id) else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("kind", w.kind as u8)?;
        d.set_item("scheme", w.key.scheme() as u8)?;
        d.set_item("public_key", PyBytes::new(py, &w.key.to_bytes()))?;
        d.set_item("balance_fen", w.balance_fen)?;
        d.set_item("token_count", w.token_ids().len())?;
        d.set_item("held_fen", self.inner.held_fen(wallet_id))?;
        let a = &w.attrs;
        d.set_item("wallet_class", a.class)?;
        set_fields!(d, a, [operator, parent, mcc, region, linked_account]);
        d.set_item("status", a.status as u8)?;
        set_fields!(d, w.counters, [day, day_out_fen, year, year_out_fen]);
        Ok(Some(d))
    }

    fn unspent<'py>(
        &self,
        py: Python<'py>,
        wallet_id: u64,
    ) -> PyResult<Vec<(Bound<'py, PyBytes>, u64)>> {
        let w = self
            .inner
            .wallet(wallet_id)
            .ok_or(CoreError(core::Error::UnknownWallet(wallet_id)))?;
        Ok(w.token_ids()
            .iter()
            .filter(|id| !self.inner.is_locked(id))
            .map(|id| {
                (
                    PyBytes::new(py, id),
                    self.inner.token(id).expect("listed token").1,
                )
            })
            .collect())
    }

    fn token(&self, token_id: &[u8]) -> PyResult<Option<(u64, u64)>> {
        Ok(self.inner.token(&id32(token_id, "token id")?))
    }

    /// Held (locked) value of a wallet; unknown wallets raise.
    fn held_fen(&self, wallet_id: u64) -> PyResult<u64> {
        if self.inner.wallet(wallet_id).is_none() {
            return Err(CoreError(core::Error::UnknownWallet(wallet_id)).into());
        }
        Ok(self.inner.held_fen(wallet_id))
    }

    /// The locks on a wallet's tokens: (token, amount_fen, beneficiary, releaser, deadline_ms,
    /// deadline_capture_fen) each; unknown wallets raise.
    fn locks<'py>(&self, py: Python<'py>, wallet_id: u64) -> PyResult<Vec<LockTuple<'py>>> {
        if self.inner.wallet(wallet_id).is_none() {
            return Err(CoreError(core::Error::UnknownWallet(wallet_id)).into());
        }
        Ok(self
            .inner
            .locks_of(wallet_id)
            .iter()
            .map(|l| lock_tuple(py, l))
            .collect())
    }

    /// The lock on a token (payer first, then as `locks`), or None.
    fn lock<'py>(
        &self,
        py: Python<'py>,
        token_id: &[u8],
    ) -> PyResult<Option<(u64, LockTuple<'py>)>> {
        Ok(self
            .inner
            .lock(&id32(token_id, "token id")?)
            .map(|l| (l.payer, lock_tuple(py, &l))))
    }

    #[getter]
    fn lock_count(&self) -> usize {
        self.inner.lock_count()
    }

    fn is_spent(&self, token_id: &[u8]) -> PyResult<bool> {
        Ok(self.inner.is_spent(&id32(token_id, "token id")?))
    }

    fn is_settled(&self, tx_id: &[u8]) -> PyResult<bool> {
        Ok(self.inner.is_settled(&id32(tx_id, "transaction id")?))
    }

    /// `(issued_fen, redeemed_fen, outstanding_fen)`.
    fn supply(&self) -> (u128, u128, u64) {
        let s = self.inner.supply();
        (s.issued_fen, s.redeemed_fen, s.outstanding_fen)
    }

    fn check_invariants(&self, py: Python<'_>) -> PyResult<()> {
        let inner = &self.inner;
        py.detach(|| inner.check_invariants())
            .map_err(errors::InvariantViolation::new_err)
    }

    fn state_digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let inner = &self.inner;
        let digest = py.detach(|| inner.state_digest());
        PyBytes::new(py, &digest)
    }

    #[pyo3(signature = (keyring, payers, payees, amounts, timestamp_ms, expiry_ms, reference = vec![Vec::new()], skip_insufficient = false))]
    #[allow(clippy::too_many_arguments)]
    fn build_payments<'py>(
        &self,
        py: Python<'py>,
        keyring: &PyKeyring,
        payers: Vec<u64>,
        payees: Vec<u64>,
        amounts: Vec<u64>,
        timestamp_ms: u64,
        expiry_ms: u64,
        reference: Vec<Vec<u8>>,
        skip_insufficient: bool,
    ) -> PyResult<(Vec<Bound<'py, PyBytes>>, Vec<usize>)> {
        if payers.len() != payees.len() || payers.len() != amounts.len() {
            return Err(invalid(format!(
                "payers, payees and amounts differ in length ({}, {}, {})",
                payers.len(),
                payees.len(),
                amounts.len()
            )));
        }
        let payments: Vec<core::Payment> = payers
            .iter()
            .zip(&payees)
            .zip(&amounts)
            .map(|((&payer, &payee), &amount_fen)| core::Payment {
                payer,
                payee,
                amount_fen,
            })
            .collect();
        let inner = &self.inner;
        let keys = &keyring.inner;
        let built = py
            .detach(|| {
                core::build_payments_with_references(
                    inner,
                    keys,
                    &payments,
                    timestamp_ms,
                    expiry_ms,
                    &reference,
                    skip_insufficient,
                )
            })
            .map_err(CoreError::from)?;
        let txs = built
            .transactions
            .iter()
            .map(|t| PyBytes::new(py, t))
            .collect();
        Ok((txs, built.skipped))
    }
}

/// Secret keys held client-side. See `tongbao.Keyring`.
#[pyclass(module = "tongbao._core", name = "Keyring")]
struct PyKeyring {
    inner: core::Keyring,
}

#[pymethods]
impl PyKeyring {
    #[new]
    fn new() -> Self {
        PyKeyring {
            inner: core::Keyring::new(),
        }
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, wallet_id: u64) -> bool {
        self.inner.get(wallet_id).is_some()
    }

    fn generate<'py>(
        &mut self,
        py: Python<'py>,
        wallet_ids: Vec<u64>,
        scheme: u8,
        seed: Vec<u8>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let scheme = scheme_of(scheme)?;
        let inner = &mut self.inner;
        let publics = py.detach(|| inner.derive_many(scheme, &seed, &wallet_ids));
        Ok(publics.iter().map(|p| PyBytes::new(py, p)).collect())
    }

    fn add<'py>(
        &mut self,
        py: Python<'py>,
        wallet_id: u64,
        scheme: u8,
        secret: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let key =
            core::SigningKey::from_secret(scheme_of(scheme)?, secret).map_err(CoreError::from)?;
        let public = key.public_key_bytes();
        self.inner.insert(wallet_id, key);
        Ok(PyBytes::new(py, &public))
    }

    fn public_key<'py>(&self, py: Python<'py>, wallet_id: u64) -> PyResult<Bound<'py, PyBytes>> {
        let key = self.inner.get(wallet_id).ok_or_else(|| {
            invalid(format!(
                "no secret key for wallet {wallet_id} in the keyring"
            ))
        })?;
        Ok(PyBytes::new(py, &key.public_key_bytes()))
    }

    fn sign<'py>(
        &self,
        py: Python<'py>,
        txs: &Bound<'py, PyAny>,
        signers: Vec<Vec<u64>>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let held = BatchRef::extract(txs)?;
        let slices = held.slices()?;
        let inner = &self.inner;
        let signed = py
            .detach(|| inner.sign_many(&slices, &signers))
            .map_err(CoreError::from)?;
        Ok(signed.iter().map(|t| PyBytes::new(py, t)).collect())
    }
}

/// Encode a transaction (format v1). Raises MalformedTransaction when a limit is exceeded.
#[pyfunction]
#[pyo3(signature = (kind, inputs, outputs, timestamp_ms, expiry_ms, reference = b"".to_vec(), signatures = Vec::new()))]
#[allow(clippy::too_many_arguments)]
fn encode_transaction<'py>(
    py: Python<'py>,
    kind: u8,
    inputs: Vec<Vec<u8>>,
    outputs: Vec<(u64, u64)>,
    timestamp_ms: u64,
    expiry_ms: u64,
    reference: Vec<u8>,
    signatures: Vec<(u64, Vec<u8>)>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = kind_of(kind)?;
    format::check_limits(
        inputs.len(),
        outputs.len(),
        reference.len(),
        signatures.len(),
    )
    .map_err(CoreError::from)?;
    let inputs: Vec<TokenId> = inputs
        .iter()
        .map(|i| id32(i, "token id"))
        .collect::<PyResult<_>>()?;
    let outputs: Vec<Output> = outputs
        .into_iter()
        .map(|(owner, amount_fen)| Output {
            owner,
            amount_fen,
            condition: Condition::None,
        })
        .collect();
    let mut entries = Vec::with_capacity(signatures.len());
    for (signer, sig) in signatures {
        let signature: [u8; 64] = sig
            .as_slice()
            .try_into()
            .map_err(|_| invalid(format!("a signature is 64 bytes long, got {}", sig.len())))?;
        entries.push(SignatureEntry { signer, signature });
    }
    let mut out = format::encode_body(kind, timestamp_ms, expiry_ms, &inputs, &outputs, &reference);
    format::append_signatures(&mut out, &entries);
    Ok(PyBytes::new(py, &out))
}

/// Encode a wallet-administration transaction (format v2, kinds 4-8), unsigned. `registration`
/// (kind 4 only) is (wallet_kind, class, operator, parent, mcc, region, linked_account, scheme,
/// public_key); `class_` is the new class of kind 5. Raises MalformedTransaction naming the field
/// when the result would not decode (a bad key, class, scheme, reference length).
#[pyfunction]
#[pyo3(signature = (kind, wallet, timestamp_ms, expiry_ms, reference = b"".to_vec(), registration = None, class_ = 0))]
#[allow(clippy::too_many_arguments)]
fn encode_admin<'py>(
    py: Python<'py>,
    kind: u8,
    wallet: u64,
    timestamp_ms: u64,
    expiry_ms: u64,
    reference: Vec<u8>,
    registration: Option<RegistrationTuple>,
    class_: u8,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = kind_of(kind)?;
    if !kind.is_admin() {
        return Err(invalid(format!(
            "kind {} is not wallet administration (4-8)",
            kind.name()
        )));
    }
    format::check_limits(0, 0, reference.len(), 0).map_err(CoreError::from)?;
    let registration = match (kind, registration) {
        (Kind::Register, Some((wk, class, operator, parent, mcc, region, linked, scheme, key))) => {
            if key.len() > format::KEY_LEN_MAX {
                return Err(invalid(format!(
                    "a public key is at most {} bytes, got {}",
                    format::KEY_LEN_MAX,
                    key.len()
                )));
            }
            Some(format::NewWallet {
                kind: wk,
                class,
                operator,
                parent,
                mcc,
                region,
                linked_account: linked,
                scheme,
                key,
            })
        }
        (Kind::Register, None) => return Err(invalid("a registration needs its wallet".into())),
        (_, Some(_)) => return Err(invalid("only kind register carries a registration".into())),
        (_, None) => None,
    };
    let admin = format::Admin {
        wallet,
        registration,
        class: if kind == Kind::SetClass { class_ } else { 0 },
    };
    let mut out = format::encode_admin_body(kind, timestamp_ms, expiry_ms, &admin, &reference);
    format::append_signatures(&mut out, &[]);
    // The decoder is the one judge of what is well formed: refuse what it would refuse.
    format::decode(&out).map_err(CoreError::from)?;
    Ok(PyBytes::new(py, &out))
}

/// A lock as Python sees it: (token, amount_fen, beneficiary, releaser, deadline_ms,
/// deadline_capture_fen).
type LockTuple<'py> = (Bound<'py, PyBytes>, u64, u64, u64, u64, u64);

fn lock_tuple<'py>(py: Python<'py>, l: &core::LockInfo) -> LockTuple<'py> {
    (
        PyBytes::new(py, &l.token),
        l.amount_fen,
        l.terms.beneficiary,
        l.terms.releaser,
        l.terms.deadline_ms,
        l.terms.deadline_capture_fen,
    )
}

/// Encode a lock-family transaction (format v3), unsigned, and check that it decodes.
fn encode_lock_family<'py>(
    py: Python<'py>,
    timestamp_ms: u64,
    expiry_ms: u64,
    inputs: Vec<TokenId>,
    outputs: Vec<Output>,
    body: format::LockBody,
    reference: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    format::check_limits(inputs.len(), outputs.len(), reference.len(), 0)
        .map_err(CoreError::from)?;
    let kind = match body {
        format::LockBody::Lock(_) => Kind::Lock,
        format::LockBody::Capture { .. } => Kind::Capture,
        format::LockBody::Release { .. } => Kind::Release,
    };
    let mut out = format::encode_lock_body(
        kind,
        timestamp_ms,
        expiry_ms,
        &inputs,
        &outputs,
        &body,
        &reference,
    );
    format::append_signatures(&mut out, &[]);
    // The decoder is the one judge of what is well formed: refuse what it would refuse.
    format::decode(&out).map_err(CoreError::from)?;
    Ok(PyBytes::new(py, &out))
}

/// Encode a lock (kind 9), unsigned: `inputs` the payer's tokens, `outputs` (owner, amount)
/// with output 0 the locked amount and the others change (all owned by the payer), and the
/// terms. Raises MalformedTransaction naming the field when it would not decode.
#[pyfunction]
#[pyo3(signature = (inputs, outputs, beneficiary, releaser, deadline_ms, deadline_capture_fen, timestamp_ms, expiry_ms, reference = b"".to_vec()))]
#[allow(clippy::too_many_arguments)]
fn encode_lock<'py>(
    py: Python<'py>,
    inputs: Vec<Vec<u8>>,
    outputs: Vec<(u64, u64)>,
    beneficiary: u64,
    releaser: u64,
    deadline_ms: u64,
    deadline_capture_fen: u64,
    timestamp_ms: u64,
    expiry_ms: u64,
    reference: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let inputs: Vec<TokenId> = inputs
        .iter()
        .map(|i| id32(i, "token id"))
        .collect::<PyResult<_>>()?;
    let outputs: Vec<Output> = outputs
        .into_iter()
        .map(|(owner, amount_fen)| Output {
            owner,
            amount_fen,
            condition: Condition::None,
        })
        .collect();
    let terms = format::LockTerms {
        beneficiary,
        releaser,
        deadline_ms,
        deadline_capture_fen,
    };
    encode_lock_family(
        py,
        timestamp_ms,
        expiry_ms,
        inputs,
        outputs,
        format::LockBody::Lock(terms),
        reference,
    )
}

/// Encode a capture (kind 10, `amount_fen` given) or a release (kind 11, `amount_fen` None) of
/// `lock_token`, whose payer is `payer`, unsigned.
#[pyfunction]
#[pyo3(signature = (lock_token, payer, amount_fen, keep_rest_locked, timestamp_ms, expiry_ms, reference = b"".to_vec()))]
#[allow(clippy::too_many_arguments)]
fn encode_lock_use<'py>(
    py: Python<'py>,
    lock_token: &[u8],
    payer: u64,
    amount_fen: Option<u64>,
    keep_rest_locked: bool,
    timestamp_ms: u64,
    expiry_ms: u64,
    reference: Vec<u8>,
) -> PyResult<Bound<'py, PyBytes>> {
    let token = id32(lock_token, "lock token id")?;
    let body = match amount_fen {
        Some(amount_fen) => format::LockBody::Capture {
            payer,
            amount_fen,
            keep_rest_locked,
        },
        None => format::LockBody::Release { payer },
    };
    encode_lock_family(
        py,
        timestamp_ms,
        expiry_ms,
        vec![token],
        Vec::new(),
        body,
        reference,
    )
}

/// A registration as Python passes it (see `encode_admin`).
type RegistrationTuple = (u8, u8, u64, u64, u16, u32, bool, u8, Vec<u8>);

/// Decode an encoded transaction into a dict. Raises MalformedTransaction naming field and offset.
#[pyfunction]
fn decode_transaction<'py>(py: Python<'py>, tx: &[u8]) -> PyResult<Bound<'py, PyDict>> {
    let t = format::decode(tx).map_err(CoreError::from)?;
    let d = PyDict::new(py);
    d.set_item("version", t.kind.version())?;
    d.set_item("kind", t.kind as u8)?;
    d.set_item("timestamp_ms", t.timestamp_ms)?;
    d.set_item("expiry_ms", t.expiry_ms)?;
    d.set_item(
        "inputs",
        t.inputs
            .iter()
            .map(|i| PyBytes::new(py, i))
            .collect::<Vec<_>>(),
    )?;
    d.set_item(
        "outputs",
        t.outputs
            .iter()
            .map(|o| (o.owner, o.amount_fen))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("reference", PyBytes::new(py, &t.reference))?;
    d.set_item(
        "signatures",
        t.signatures
            .iter()
            .map(|s| (s.signer, PyBytes::new(py, &s.signature)))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("id", PyBytes::new(py, &t.id))?;
    match &t.lock {
        Some(format::LockBody::Lock(terms)) => {
            let l = PyDict::new(py);
            set_fields!(
                l,
                terms,
                [beneficiary, releaser, deadline_ms, deadline_capture_fen]
            );
            d.set_item("lock", l)?;
        }
        Some(format::LockBody::Capture {
            payer,
            amount_fen,
            keep_rest_locked,
        }) => {
            d.set_item("payer", payer)?;
            d.set_item("amount_fen", amount_fen)?;
            d.set_item("keep_rest_locked", keep_rest_locked)?;
        }
        Some(format::LockBody::Release { payer }) => d.set_item("payer", payer)?,
        None => {}
    }
    if let Some(a) = &t.admin {
        d.set_item("wallet", a.wallet)?;
        if t.kind == Kind::SetClass {
            d.set_item("wallet_class", a.class)?;
        }
        if let Some(r) = &a.registration {
            let reg = PyDict::new(py);
            reg.set_item("wallet_kind", r.kind)?;
            reg.set_item("wallet_class", r.class)?;
            set_fields!(
                reg,
                r,
                [operator, parent, mcc, region, linked_account, scheme]
            );
            reg.set_item("public_key", PyBytes::new(py, &r.key))?;
            d.set_item("registration", reg)?;
        }
    }
    Ok(d)
}

/// The 32-byte id (SHA-256 of the body) of an encoded transaction.
#[pyfunction]
fn transaction_id<'py>(py: Python<'py>, tx: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let n = format::body_len(tx).map_err(CoreError::from)?;
    Ok(PyBytes::new(py, &format::tx_id_of_body(&tx[..n])))
}

/// The id of output `index` of transaction `tx_id`: SHA-256(tx_id || u16 LE index).
#[pyfunction]
fn token_id<'py>(py: Python<'py>, tx_id: &[u8], index: u16) -> PyResult<Bound<'py, PyBytes>> {
    Ok(PyBytes::new(
        py,
        &format::token_id(&id32(tx_id, "transaction id")?, index),
    ))
}

/// Frame encoded transactions into one batch blob: u32 count, then (u32 length, bytes) each.
///
/// >>> import tongbao as tb
/// >>> tb.unframe_batch(tb.frame_batch([b"a", b"bc"]))
/// [b'a', b'bc']
#[pyfunction]
fn frame_batch<'py>(py: Python<'py>, txs: Vec<Vec<u8>>) -> PyResult<Bound<'py, PyBytes>> {
    if txs.len() > format::BATCH_TX_COUNT_MAX {
        return Err(errors::BatchRejected::new_err(format!(
            "at most {} transactions in one batch",
            format::BATCH_TX_COUNT_MAX
        )));
    }
    Ok(PyBytes::new(py, &format::frame_batch(&txs)))
}

/// Raw batch signature verification (the benchmark ceiling for `Ledger.settle`): public keys
/// parsed once, then many `(key index, message, signature)` triples per call, checked in
/// parallel on its own threads with the ledger's code path; the GIL is released.
#[pyclass(module = "tongbao._core", name = "BatchVerifier")]
struct PyBatchVerifier {
    inner: core::verifier::BatchVerifier,
}

#[pymethods]
impl PyBatchVerifier {
    #[new]
    #[pyo3(signature = (schemes, public_keys, threads = 0))]
    fn new(
        py: Python<'_>,
        schemes: Vec<u8>,
        public_keys: Vec<Vec<u8>>,
        threads: usize,
    ) -> PyResult<Self> {
        if schemes.len() != public_keys.len() {
            return Err(invalid(format!(
                "schemes and public_keys differ in length ({}, {})",
                schemes.len(),
                public_keys.len()
            )));
        }
        let parsed_schemes = schemes
            .iter()
            .map(|s| scheme_of(*s))
            .collect::<PyResult<Vec<Scheme>>>()?;
        let keys = py
            .detach(|| {
                parsed_schemes
                    .iter()
                    .zip(&public_keys)
                    .enumerate()
                    .map(|(i, (s, k))| core::PublicKey::parse(*s, k).map_err(|e| (i, e)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|(i, e)| errors::InvalidKey::new_err(format!("key {i}: {e}")))?;
        let inner = core::verifier::BatchVerifier::new(keys, threads).map_err(CoreError::from)?;
        Ok(PyBatchVerifier { inner })
    }

    #[getter]
    fn threads(&self) -> usize {
        self.inner.threads()
    }

    fn __len__(&self) -> usize {
        self.inner.key_count()
    }

    /// One byte per signature, 1 valid and 0 invalid.
    fn verify<'py>(
        &self,
        py: Python<'py>,
        key_indices: Vec<u32>,
        messages: &Bound<'py, PyAny>,
        signatures: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let messages = BatchRef::extract(messages)?;
        let messages = messages.slices()?;
        let signatures = BatchRef::extract(signatures)?;
        let signatures = signatures
            .slices()?
            .iter()
            .enumerate()
            .map(|(i, s)| {
                <[u8; 64]>::try_from(*s).map_err(|_| {
                    invalid(format!(
                        "signature {i}: a signature is 64 bytes long, got {}",
                        s.len()
                    ))
                })
            })
            .collect::<PyResult<Vec<[u8; 64]>>>()?;
        let inner = &self.inner;
        let verdicts = py
            .detach(|| inner.verify(&key_indices, &messages, &signatures))
            .map_err(CoreError::from)?;
        let bytes: Vec<u8> = verdicts.into_iter().map(u8::from).collect();
        Ok(PyBytes::new(py, &bytes))
    }
}

/// Split a batch blob made by `frame_batch`. Raises MalformedTransaction on bad framing.
#[pyfunction]
fn unframe_batch<'py>(py: Python<'py>, blob: &[u8]) -> PyResult<Vec<Bound<'py, PyBytes>>> {
    let parts = format::unframe_batch(blob).map_err(CoreError::from)?;
    Ok(parts.iter().map(|p| PyBytes::new(py, p)).collect())
}

/// Verify one signature (scheme 1 Ed25519 strict, 2 SM2 with SM3 and the default distinguishing
/// ID) over `message`. Raises InvalidKey for an unusable public key; a bad signature is False.
#[pyfunction]
fn verify_signature(
    scheme: u8,
    public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> PyResult<bool> {
    let key = core::PublicKey::parse(scheme_of(scheme)?, public_key).map_err(CoreError::from)?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| {
        invalid(format!(
            "a signature is 64 bytes long, got {}",
            signature.len()
        ))
    })?;
    Ok(key.verify(message, &signature))
}

/// Sign `message` with a 32-byte secret key (deterministic for both schemes). For tests and tools.
#[pyfunction]
fn sign_message<'py>(
    py: Python<'py>,
    scheme: u8,
    secret: &[u8],
    message: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let key = core::SigningKey::from_secret(scheme_of(scheme)?, secret).map_err(CoreError::from)?;
    Ok(PyBytes::new(py, &key.sign(message)))
}

/// The public key of a 32-byte secret (Ed25519: 32 bytes; SM2: 65-byte uncompressed SEC1).
#[pyfunction]
fn public_key_from_secret<'py>(
    py: Python<'py>,
    scheme: u8,
    secret: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let key = core::SigningKey::from_secret(scheme_of(scheme)?, secret).map_err(CoreError::from)?;
    Ok(PyBytes::new(py, &key.public_key_bytes()))
}

/// Replay a ledger directory's whole log offline with every check (signatures, statuses,
/// receipt chain, supply). Returns a summary dict; raises CorruptLog naming file and offset.
#[pyfunction]
#[pyo3(signature = (path, threads = 0))]
fn audit_log<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let report = py
        .detach(|| core::audit(&path, threads))
        .map_err(CoreError::from)?;
    let d = PyDict::new(py);
    set_fields!(
        d,
        report,
        [
            segments,
            records,
            wallets,
            batches,
            transactions,
            transactions_ok,
            issued_fen,
            redeemed_fen,
            outstanding_fen,
            torn_tail_bytes,
            batches_without_outcome,
        ]
    );
    d.set_item(
        "last_receipt_hash",
        PyBytes::new(py, &report.last_receipt_hash),
    )?;
    Ok(d)
}

/// The end-of-day report of Shanghai day `day` (days since 1970-01-01 +08:00) from the log of
/// ledger directory `path`, as a dict. Releases the GIL.
#[pyfunction]
#[pyo3(signature = (path, day, threads = 0))]
fn day_report<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    day: u32,
    threads: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let r = py
        .detach(|| core::report::day_report(&path, day, threads))
        .map_err(CoreError::from)?;
    let d = PyDict::new(py);
    set_fields!(d, r, [day, batches, transactions]);
    let counts = PyDict::new(py);
    for s in Status::ALL {
        let n = r.status_counts[s as usize];
        if n > 0 {
            counts.set_item(s as u8, n)?;
        }
    }
    d.set_item("status_counts", counts)?;
    let operators = PyList::empty(py);
    for op in r.operators.values() {
        let o = PyDict::new(py);
        set_fields!(
            o,
            op,
            [
                operator,
                transactions_rejected,
                value_in_fen,
                value_out_fen,
                internal_fen,
                swept_fen,
                issued_fen,
                redeemed_fen,
                holdings_start_fen,
                holdings_end_fen
            ]
        );
        let wallets: Vec<(u8, u8, u8, u64)> = op
            .wallets
            .iter()
            .map(|(&(k, c, s), &n)| (k, c, s, n))
            .collect();
        o.set_item("wallets", wallets)?;
        let txs: Vec<(u8, u64)> = op.transactions_ok.iter().map(|(&k, &n)| (k, n)).collect();
        o.set_item("transactions_ok", txs)?;
        operators.append(o)?;
    }
    d.set_item("operators", operators)?;
    let gross: Vec<(u64, u64, u128)> = r.gross_fen.iter().map(|(&(a, b), &v)| (a, b, v)).collect();
    d.set_item("gross_fen", gross)?;
    let net: Vec<(u64, u64, u128)> = r.net_fen().iter().map(|(&(a, b), &v)| (a, b, v)).collect();
    d.set_item("net_fen", net)?;
    Ok(d)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyLedger>()?;
    m.add_class::<PyKeyring>()?;
    m.add_class::<PyBatchVerifier>()?;
    m.add_function(wrap_pyfunction!(encode_transaction, m)?)?;
    m.add_function(wrap_pyfunction!(decode_transaction, m)?)?;
    m.add_function(wrap_pyfunction!(encode_admin, m)?)?;
    m.add_function(wrap_pyfunction!(encode_lock, m)?)?;
    m.add_function(wrap_pyfunction!(encode_lock_use, m)?)?;
    m.add_function(wrap_pyfunction!(transaction_id, m)?)?;
    m.add_function(wrap_pyfunction!(token_id, m)?)?;
    m.add_function(wrap_pyfunction!(frame_batch, m)?)?;
    m.add_function(wrap_pyfunction!(unframe_batch, m)?)?;
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(sign_message, m)?)?;
    m.add_function(wrap_pyfunction!(public_key_from_secret, m)?)?;
    m.add_function(wrap_pyfunction!(audit_log, m)?)?;
    shard::register(m)?;
    m.add_function(wrap_pyfunction!(day_report, m)?)?;
    m.add("FORMAT_VERSION", format::FORMAT_VERSION)?;
    m.add("ADMIN_FORMAT_VERSION", format::ADMIN_FORMAT_VERSION)?;
    m.add("LOCK_FORMAT_VERSION", format::LOCK_FORMAT_VERSION)?;
    m.add("LOCK_LAPSE_INDEX_FLAG", core::locks::LAPSE_INDEX_FLAG)?;
    m.add("INPUTS_MAX", format::INPUTS_MAX)?;
    m.add("OUTPUTS_MAX", format::OUTPUTS_MAX)?;
    m.add("REFERENCE_LEN_MAX", format::REFERENCE_LEN_MAX)?;
    m.add("SIGNATURES_MAX", format::SIGNATURES_MAX)?;
    m.add("VALIDITY_MS_MAX", format::VALIDITY_MS_MAX)?;
    m.add("TX_BYTES_MAX", format::TX_BYTES_MAX)?;
    m.add("BATCH_TX_COUNT_MAX", format::BATCH_TX_COUNT_MAX)?;
    m.add("CLOCK_SKEW_MS_MAX", core::ledger::CLOCK_SKEW_MS_MAX)?;
    m.add("TIMESTAMP_MS_MAX", core::ledger::TIMESTAMP_MS_MAX)?;
    m.add(
        "STATUS_NAMES",
        Status::ALL.iter().map(|s| s.name()).collect::<Vec<_>>(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
