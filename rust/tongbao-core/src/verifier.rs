//! Raw batch signature verification outside any ledger: the ceiling that `Ledger::settle` is
//! measured against (`tongbao bench`). Keys are parsed once ("build once, call many"); each
//! call checks many `(key, message, signature)` triples in parallel with the same code path as
//! the ledger's phase 1 ([`verify_parallel`]).

use crate::crypto::{verify_parallel, PublicKey, VerifyItem};
use crate::error::{Error, Result};

/// Most signatures checked in one call.
pub const VERIFY_BATCH_MAX: usize = 1 << 20;

/// Parsed public keys and a thread pool.
pub struct BatchVerifier {
    keys: Vec<PublicKey>,
    pool: rayon::ThreadPool,
}

impl BatchVerifier {
    /// `threads` 0 means one per core.
    pub fn new(keys: Vec<PublicKey>, threads: usize) -> Result<BatchVerifier> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("tongbao-bench-verify-{i}"))
            .build()
            .map_err(|e| Error::InvalidArgument(format!("cannot start thread pool: {e}")))?;
        Ok(BatchVerifier { keys, pool })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// One verdict per signature: `signatures[i]` by key `key_indices[i]` over `messages[i]`.
    /// Errors: lengths differ, more than [`VERIFY_BATCH_MAX`] items, a key index out of range.
    pub fn verify<M: AsRef<[u8]> + Sync>(
        &self,
        key_indices: &[u32],
        messages: &[M],
        signatures: &[[u8; 64]],
    ) -> Result<Vec<bool>> {
        let n = key_indices.len();
        if messages.len() != n || signatures.len() != n {
            return Err(Error::InvalidArgument(format!(
                "key_indices, messages and signatures differ in length ({n}, {}, {})",
                messages.len(),
                signatures.len()
            )));
        }
        if n > VERIFY_BATCH_MAX {
            return Err(Error::InvalidArgument(format!(
                "{n} signatures, at most {VERIFY_BATCH_MAX} in one call"
            )));
        }
        let mut items = Vec::with_capacity(n);
        for (i, &k) in key_indices.iter().enumerate() {
            let key = self.keys.get(k as usize).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "item {i}: key index {k} out of range ({} keys)",
                    self.keys.len()
                ))
            })?;
            items.push(VerifyItem {
                key,
                message: messages[i].as_ref(),
                signature: &signatures[i],
            });
        }
        Ok(verify_parallel(&self.pool, &items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Scheme, SigningKey};

    #[test]
    fn verdicts_match_single_verification_at_any_thread_count() {
        let signers: Vec<SigningKey> = (0..6)
            .map(|w| {
                let scheme = if w % 3 == 2 {
                    Scheme::Sm2
                } else {
                    Scheme::Ed25519
                };
                SigningKey::derive(scheme, b"verifier", w)
            })
            .collect();
        let keys: Vec<PublicKey> = signers
            .iter()
            .map(|s| PublicKey::parse(s.scheme(), &s.public_key_bytes()).unwrap())
            .collect();
        let n = 300;
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("message {i}").into_bytes())
            .collect();
        let indices: Vec<u32> = (0..n as u32).map(|i| i % 6).collect();
        let mut signatures: Vec<[u8; 64]> = (0..n)
            .map(|i| signers[indices[i] as usize].sign(&messages[i]))
            .collect();
        for bad in [0usize, 77, 150, 299] {
            signatures[bad][40] ^= 1;
        }
        signatures[200] = signers[(indices[200] as usize + 1) % 6].sign(&messages[200]);
        let want: Vec<bool> = (0..n)
            .map(|i| keys[indices[i] as usize].verify(&messages[i], &signatures[i]))
            .collect();
        assert_eq!(want.iter().filter(|ok| !**ok).count(), 5);
        for threads in [1, 3] {
            let v = BatchVerifier::new(keys.clone(), threads).unwrap();
            assert_eq!(v.verify(&indices, &messages, &signatures).unwrap(), want);
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let key = SigningKey::derive(Scheme::Ed25519, b"verifier", 1);
        let keys = vec![PublicKey::parse(Scheme::Ed25519, &key.public_key_bytes()).unwrap()];
        let v = BatchVerifier::new(keys, 1).unwrap();
        let sig = key.sign(b"m");
        assert!(v.verify(&[0, 0], &[b"m"], &[sig]).is_err());
        assert!(v.verify(&[1], &[b"m"], &[sig]).is_err());
        assert_eq!(v.verify(&[0], &[b"m"], &[sig]).unwrap(), vec![true]);
    }
}
