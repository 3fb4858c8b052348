//! Bindings of the content digest (`tongbao-core/src/content.rs`): a ledger's share as a tuple,
//! shares combined (a cluster's shards) into one digest. Used by `tongbao.Ledger.content_digest`
//! and `tongbao.shard.content_parts` / `combine_content`.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use tongbao_core::ContentParts;

use crate::{invalid, PyLedger};

/// A share as `(sum (32 bytes), wallets, tokens, issued, redeemed, suspense, in_flight)`.
type PartsTuple = (Vec<u8>, u64, u64, u128, u128, u128, u128);

/// A ledger's share of the content digest (one call; releases the GIL).
#[pyfunction]
pub fn content_parts(py: Python<'_>, ledger: PyRef<'_, PyLedger>) -> PartsTuple {
    let inner = &ledger.inner;
    let p = py.detach(|| inner.content_parts());
    (
        p.sum.to_vec(),
        p.wallets,
        p.tokens,
        p.issued_fen,
        p.redeemed_fen,
        p.suspense_fen,
        p.in_flight_fen,
    )
}

/// The content digest of shares combined (order does not matter).
#[pyfunction]
pub fn combine_content<'py>(
    py: Python<'py>,
    parts: Vec<PartsTuple>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut total = ContentParts::default();
    for (sum, wallets, tokens, issued_fen, redeemed_fen, suspense_fen, in_flight_fen) in parts {
        let sum: [u8; 32] = sum
            .as_slice()
            .try_into()
            .map_err(|_| invalid("content parts: the sum must be 32 bytes".to_string()))?;
        total.combine(&ContentParts {
            sum,
            wallets,
            tokens,
            issued_fen,
            redeemed_fen,
            suspense_fen,
            in_flight_fen,
        });
    }
    Ok(PyBytes::new(py, &total.digest()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(content_parts, m)?)?;
    m.add_function(wrap_pyfunction!(combine_content, m)?)?;
    Ok(())
}
