//! Hashing of token and transaction ids in the ledger's maps.
//!
//! Ids are SHA-256 outputs: already uniform, so hashing all 32 bytes again (the maps' general
//! hasher) is wasted work on the settlement hot path. [`IdHasher`] mixes the first 16 bytes with
//! two keys drawn at random per process (one 64x64->128-bit multiply, folded). The keys matter:
//! ids are chosen by whoever writes transactions (any reference byte changes them), and without
//! a secret a writer could grind ids whose hashes collide in the table's low bits and slow every
//! lookup down; with it they cannot see which ids collide.

use std::hash::{BuildHasher, Hasher};

/// Builds [`IdHasher`]s with this map's random keys.
#[derive(Clone, Copy, Debug)]
pub struct IdHashBuilder {
    k0: u64,
    k1: u64,
}

impl Default for IdHashBuilder {
    fn default() -> Self {
        // std's RandomState is seeded from the OS once per process (then incremented).
        let state = std::collections::hash_map::RandomState::new();
        IdHashBuilder {
            k0: state.hash_one(0x7462_6964_6b30u64) | 1,
            k1: state.hash_one(0x7462_6964_6b31u64),
        }
    }
}

impl BuildHasher for IdHashBuilder {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher {
            k0: self.k0,
            k1: self.k1,
            hash: 0,
        }
    }
}

/// The hasher of one id (see the module docs). Anything else than a 16-byte-or-longer write
/// (the length prefix a `[u8; 32]` writes first) is folded in with the same multiply, so the
/// hasher stays correct for any key type, only tuned for ids.
#[derive(Clone, Copy, Debug)]
pub struct IdHasher {
    k0: u64,
    k1: u64,
    hash: u64,
}

#[inline(always)]
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = (a as u128).wrapping_mul(b as u128);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for IdHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        if bytes.len() >= 16 {
            let a = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
            let b = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
            self.hash ^= folded_multiply(a ^ self.k0, b ^ self.k1);
        } else {
            for &byte in bytes {
                self.write_u64(byte as u64);
            }
        }
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.hash = folded_multiply(self.hash ^ value ^ self.k0, self.k1 | 1);
    }

    #[inline]
    fn write_usize(&mut self, _len: usize) {
        // The length prefix of a fixed-size array carries no information.
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

/// A map keyed by token or transaction ids.
pub type IdMap<K, V> = hashbrown::HashMap<K, V, IdHashBuilder>;
/// A set of token or transaction ids.
pub type IdSet<K> = hashbrown::HashSet<K, IdHashBuilder>;

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn map_of_ids_behaves_like_a_map() {
        let mut map: IdMap<[u8; 32], u64> = IdMap::default();
        let ids: Vec<[u8; 32]> = (0u64..10_000)
            .map(|i| Sha256::digest(i.to_le_bytes()).into())
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert!(map.insert(*id, i as u64).is_none());
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(map.get(id), Some(&(i as u64)));
        }
        let absent: [u8; 32] = Sha256::digest(b"absent").into();
        assert!(!map.contains_key(&absent));
    }

    #[test]
    fn keys_differ_between_builders_and_ids_spread() {
        let a = IdHashBuilder::default();
        let b = IdHashBuilder::default();
        let id: [u8; 32] = Sha256::digest(b"x").into();
        assert_ne!(a.hash_one(id), b.hash_one(id));
        // Low bits (the table's bucket index) of consecutive ids are spread out.
        let buckets: std::collections::HashSet<u64> = (0u64..4096)
            .map(|i| {
                let id: [u8; 32] = Sha256::digest(i.to_le_bytes()).into();
                a.hash_one(id) & 4095
            })
            .collect();
        assert!(buckets.len() > 2000, "{} distinct buckets", buckets.len());
    }
}
