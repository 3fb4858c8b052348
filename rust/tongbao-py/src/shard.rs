//! Bindings of virtual shards and cross-shard credits (`tongbao-core/src/credits.rs`), used by
//! `tongbao.shard` and `tongbao.cluster`. Credits cross the boundary packed, 56 bytes each
//! (token id, owner, value, refund_to, little-endian); one call per batch of credits.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use tongbao_core as core;
use tongbao_core::credits::{Credit, ShardSpec};
use tongbao_core::format;

use crate::{invalid, BatchRef, CoreError, PyLedger};

fn pack(credits: impl IntoIterator<Item = Credit>) -> Vec<u8> {
    let mut out = Vec::new();
    for c in credits {
        c.pack(&mut out);
    }
    out
}

/// Make the ledger vshard `index` of `count` (logged; before its first batch).
#[pyfunction]
#[pyo3(signature = (ledger, count, index, unsafe_reapply_credits = false))]
pub fn shard_set(
    mut ledger: PyRefMut<'_, PyLedger>,
    count: u32,
    index: u32,
    unsafe_reapply_credits: bool,
) -> PyResult<()> {
    let spec = ShardSpec {
        count,
        index,
        unsafe_reapply_credits,
    };
    Ok(ledger.inner.set_shard(spec).map_err(CoreError::from)?)
}

/// Record a worker's lease epoch in the shard's log (epochs only grow).
#[pyfunction]
pub fn shard_set_epoch(mut ledger: PyRefMut<'_, PyLedger>, epoch: u64) -> PyResult<()> {
    Ok(ledger.inner.set_epoch(epoch).map_err(CoreError::from)?)
}

/// The last lease epoch recorded in the shard's log (0: none).
#[pyfunction]
pub fn shard_epoch(ledger: PyRef<'_, PyLedger>) -> u64 {
    ledger.inner.epoch()
}

/// `(count, index)` of a sharded ledger, or None.
#[pyfunction]
pub fn shard_spec(ledger: PyRef<'_, PyLedger>) -> Option<(u32, u32)> {
    ledger.inner.shard_spec().map(|s| (s.count, s.index))
}

/// Import packed credits; returns one status byte per credit.
#[pyfunction]
pub fn shard_import_credits<'py>(
    py: Python<'py>,
    mut ledger: PyRefMut<'_, PyLedger>,
    packed: &[u8],
) -> PyResult<Bound<'py, PyBytes>> {
    let credits = Credit::unpack_all(packed).map_err(CoreError::from)?;
    let inner = &mut ledger.inner;
    let statuses = py
        .detach(|| inner.import_credits(&credits))
        .map_err(CoreError::from)?;
    let codes: Vec<u8> = statuses.iter().map(|s| *s as u8).collect();
    Ok(PyBytes::new(py, &codes))
}

/// The first `limit` undelivered exports numbered above `after`: (sequence numbers as u64
/// bytes, packed credits).
#[pyfunction]
#[pyo3(signature = (ledger, limit, after = 0))]
pub fn shard_outbox<'py>(
    py: Python<'py>,
    ledger: PyRef<'_, PyLedger>,
    limit: usize,
    after: u64,
) -> (Bound<'py, PyBytes>, Bound<'py, PyBytes>) {
    let items = ledger.inner.outbox(after, limit);
    let seqs: Vec<u8> = items.iter().flat_map(|(s, _)| s.to_le_bytes()).collect();
    let packed = pack(items.into_iter().map(|(_, c)| c));
    (PyBytes::new(py, &seqs), PyBytes::new(py, &packed))
}

/// Forget exports up to `upto` (delivered; logged).
#[pyfunction]
pub fn shard_delivered(mut ledger: PyRefMut<'_, PyLedger>, upto: u64) -> PyResult<()> {
    Ok(ledger
        .inner
        .credits_delivered(upto)
        .map_err(CoreError::from)?)
}

/// Credits held in suspense, packed.
#[pyfunction]
pub fn shard_suspense<'py>(py: Python<'py>, ledger: PyRef<'_, PyLedger>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &pack(ledger.inner.suspense().iter().copied()))
}

/// Whether a credit token was ever imported.
#[pyfunction]
pub fn shard_is_imported(ledger: PyRef<'_, PyLedger>, token_id: &[u8]) -> PyResult<bool> {
    Ok(ledger
        .inner
        .is_imported(&crate::id32(token_id, "token id")?))
}

/// Cross-shard totals as a dict.
#[pyfunction]
pub fn shard_totals<'py>(
    py: Python<'py>,
    ledger: PyRef<'_, PyLedger>,
) -> PyResult<Bound<'py, PyDict>> {
    let t = ledger.inner.shard_totals();
    let d = PyDict::new(py);
    set_fields!(
        d,
        t,
        [
            credits_in_fen,
            credits_out_fen,
            suspense_fen,
            outbox_len,
            outbox_fen,
            imported_count,
            next_outbox_seq,
        ]
    );
    Ok(d)
}

/// Home vshard of each wallet (u64 little-endian bytes in, u32 little-endian bytes out).
#[pyfunction]
pub fn home_vshards<'py>(
    py: Python<'py>,
    wallets: &[u8],
    count: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    check_count(count)?;
    if !wallets.len().is_multiple_of(8) {
        return Err(invalid("wallet ids are 8 bytes each".into()));
    }
    let out: Vec<u8> = wallets
        .chunks_exact(8)
        .flat_map(|w| {
            core::home_vshard(u64::from_le_bytes(w.try_into().expect("8")), count).to_le_bytes()
        })
        .collect();
    Ok(PyBytes::new(py, &out))
}

fn check_count(count: u32) -> PyResult<()> {
    if count == 0 || count > core::credits::VSHARD_COUNT_MAX {
        return Err(invalid(format!(
            "vshard count {count}: 1 to {}",
            core::credits::VSHARD_COUNT_MAX
        )));
    }
    Ok(())
}

/// Home vshard of each transaction's payer (its first signer; for a capture or release, the
/// payer its body names), u32 little-endian bytes; a
/// transaction that does not decode or has no signer goes to vshard 0 (which answers it with
/// its status). Releases the GIL.
#[pyfunction]
pub fn payer_vshards<'py>(
    py: Python<'py>,
    batch: &Bound<'py, PyAny>,
    count: u32,
) -> PyResult<Bound<'py, PyBytes>> {
    check_count(count)?;
    let held = BatchRef::extract(batch)?;
    let slices = held.slices()?;
    let out: Vec<u8> = py.detach(|| {
        slices
            .iter()
            .flat_map(|raw| {
                // A capture or release names its payer (signed by the releaser, who may live
                // elsewhere): it settles where the locked token is.
                let home = format::decode(raw)
                    .ok()
                    .and_then(|tx| {
                        tx.lock
                            .and_then(|l| l.payer())
                            .or_else(|| tx.signatures.first().map(|s| s.signer))
                    })
                    .map_or(0, |w| core::home_vshard(w, count));
                home.to_le_bytes()
            })
            .collect()
    });
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(shard_set, m)?)?;
    m.add_function(wrap_pyfunction!(shard_spec, m)?)?;
    m.add_function(wrap_pyfunction!(shard_set_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(shard_epoch, m)?)?;
    m.add_function(wrap_pyfunction!(shard_import_credits, m)?)?;
    m.add_function(wrap_pyfunction!(shard_outbox, m)?)?;
    m.add_function(wrap_pyfunction!(shard_delivered, m)?)?;
    m.add_function(wrap_pyfunction!(shard_suspense, m)?)?;
    m.add_function(wrap_pyfunction!(shard_is_imported, m)?)?;
    m.add_function(wrap_pyfunction!(shard_totals, m)?)?;
    m.add_function(wrap_pyfunction!(home_vshards, m)?)?;
    m.add_function(wrap_pyfunction!(payer_vshards, m)?)?;
    m.add("VSHARD_COUNT_MAX", core::credits::VSHARD_COUNT_MAX)?;
    m.add("CREDIT_BATCH_MAX", core::credits::CREDIT_BATCH_MAX)?;
    m.add("CREDIT_LEN", core::credits::CREDIT_LEN)?;
    Ok(())
}
