//! The content digest: what the ledger holds (wallets, unspent tokens, supply), independent of
//! how it got there (batching, receipt chain) and of how it is split across shards.
//!
//! `Ledger::state_digest` commits to the receipt chain, so two ledgers that settled the same
//! payments in different batches, or a cluster's shards against one embedded ledger, can never
//! agree on it. The content digest is built to agree in exactly those cases:
//!
//! - every element (a wallet, an unspent token) is hashed on its own (SHA-256 with a domain
//!   tag) and the element hashes are **added modulo 2^256** (a multiset hash). Addition is
//!   commutative and associative, so the sum depends neither on map order nor on how the
//!   elements are partitioned: the sum over shards is the sum of the shards' sums, and
//!   combining needs only each shard's 32-byte sum, not its elements. XOR would also commute,
//!   but an element counted twice would cancel out; a sum does not.
//! - a wallet is counted by its home shard only (every shard registers every wallet; its
//!   balance and tokens live on its home shard); a sharded ledger holds only local tokens.
//! - supply totals (issued, redeemed, suspense) and the value in flight between shards
//!   (`credits_out - credits_in`, zero once every credit is imported) are summed.
//! - the digest is SHA-256 of a tag, the sum, the element counts and the totals.
//!
//! Additive multiset hashes are not collision resistant against an adversary who chooses
//! many elements (Wagner's generalised birthday attack): this is a consistency check between
//! honest runs (differential tests, the simulator's report), not a commitment; the state
//! digest and the log remain the commitment. Wallet day/year outflow counters are left out:
//! a parent's counters are per shard in a cluster (docs/cluster.md, known problems).

use sha2::{Digest, Sha256};

use crate::ledger::Ledger;

/// One ledger's (or one shard's) share of the content digest; shares combine by addition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContentParts {
    /// Sum of the element hashes modulo 2^256, little-endian.
    pub sum: [u8; 32],
    pub wallets: u64,
    pub tokens: u64,
    pub issued_fen: u128,
    pub redeemed_fen: u128,
    pub suspense_fen: u128,
    /// `credits_out - credits_in`, wrapping: value exported and not yet imported.
    pub in_flight_fen: u128,
}

fn add256(acc: &mut [u8; 32], x: &[u8; 32]) {
    let mut carry = 0u16;
    for i in 0..32 {
        let s = acc[i] as u16 + x[i] as u16 + carry;
        acc[i] = s as u8;
        carry = s >> 8;
    }
}

impl ContentParts {
    /// Add another share (another shard's): the result is the share of their union.
    pub fn combine(&mut self, other: &ContentParts) {
        add256(&mut self.sum, &other.sum);
        self.wallets += other.wallets;
        self.tokens += other.tokens;
        self.issued_fen = self.issued_fen.wrapping_add(other.issued_fen);
        self.redeemed_fen = self.redeemed_fen.wrapping_add(other.redeemed_fen);
        self.suspense_fen = self.suspense_fen.wrapping_add(other.suspense_fen);
        self.in_flight_fen = self.in_flight_fen.wrapping_add(other.in_flight_fen);
    }

    /// The digest of everything combined so far.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"tongbao content v1");
        h.update(self.sum);
        h.update(self.wallets.to_le_bytes());
        h.update(self.tokens.to_le_bytes());
        h.update(self.issued_fen.to_le_bytes());
        h.update(self.redeemed_fen.to_le_bytes());
        h.update(self.suspense_fen.to_le_bytes());
        h.update(self.in_flight_fen.to_le_bytes());
        h.finalize().into()
    }
}

impl Ledger {
    /// This ledger's share of the content digest (see the module documentation).
    pub fn content_parts(&self) -> ContentParts {
        let mut p = ContentParts {
            issued_fen: self.issued_fen,
            redeemed_fen: self.redeemed_fen,
            suspense_fen: self.shard.suspense_fen,
            in_flight_fen: self
                .shard
                .credits_out_fen
                .wrapping_sub(self.shard.credits_in_fen),
            ..ContentParts::default()
        };
        for (id, w) in &self.wallets {
            if !self.is_local(*id) {
                continue;
            }
            let mut h = Sha256::new();
            h.update(b"wallet");
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
            add256(&mut p.sum, &h.finalize().into());
            p.wallets += 1;
        }
        for (id, t) in &self.tokens {
            let mut h = Sha256::new();
            h.update(b"token");
            h.update(id);
            h.update(t.owner.to_le_bytes());
            h.update(t.value_fen.to_le_bytes());
            // What else the token carries (a plain token's element is unchanged): its earmark
            // (programmable money) and its lock.
            if let Some(condition) = self.earmark(id) {
                h.update(b"earmark");
                h.update(condition.to_le_bytes());
            }
            if let Some(lock) = self.locks.locks.get(id) {
                h.update(b"lock");
                for v in [
                    lock.payer,
                    lock.terms.beneficiary,
                    lock.terms.releaser,
                    lock.terms.deadline_ms,
                    lock.terms.deadline_capture_fen,
                ] {
                    h.update(v.to_le_bytes());
                }
            }
            add256(&mut p.sum, &h.finalize().into());
            p.tokens += 1;
        }
        p
    }

    /// Digest of what the ledger holds, independent of batching and sharding: equal for an
    /// embedded ledger and the combined shards of a cluster that settled the same payments.
    pub fn content_digest(&self) -> [u8; 32] {
        self.content_parts().digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_carries_and_wraps() {
        let mut a = [0xffu8; 32];
        let mut one = [0u8; 32];
        one[0] = 1;
        add256(&mut a, &one);
        assert_eq!(a, [0u8; 32]);
        let mut b = [0u8; 32];
        b[0] = 0xff;
        add256(&mut b, &one);
        assert_eq!(b[0..2], [0, 1]);
    }

    #[test]
    fn combining_is_order_free_and_counts_duplicates() {
        let mut x = ContentParts::default();
        x.sum[3] = 9;
        x.wallets = 1;
        let mut y = ContentParts::default();
        y.sum[0] = 200;
        y.tokens = 2;
        let (mut xy, mut yx) = (x, y);
        xy.combine(&y);
        yx.combine(&x);
        assert_eq!(xy, yx);
        let mut twice = xy;
        twice.combine(&y);
        assert_ne!(twice.digest(), xy.digest());
        let empty = Ledger::new(Default::default()).unwrap();
        assert_eq!(empty.content_digest(), ContentParts::default().digest());
    }
}
