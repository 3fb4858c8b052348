//! `Ledger::parse_keys` parses a run of equal keys once; the answers must be those of parsing
//! each key on its own, in order, errors included (a bad key inside or after a run).

use proptest::prelude::*;
use tongbao_core::builder::Keyring;
use tongbao_core::{Ledger, LedgerConfig, PublicKey, Scheme};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn parse_keys_equals_parsing_each(picks in prop::collection::vec(0usize..4, 0..3_000)) {
        let mut keys = Keyring::new();
        let mut pool = keys.derive_many(Scheme::Ed25519, b"pk", &[1, 2]);
        pool.push(vec![0u8; 31]); // wrong length
        pool.push(vec![1u8; 32]); // small order: the identity point
        let ledger = Ledger::new(LedgerConfig { threads: 2, verify_signatures: true }).unwrap();
        let chosen: Vec<Vec<u8>> = picks.iter().map(|&i| pool[i].clone()).collect();
        let schemes = vec![Scheme::Ed25519; chosen.len()];
        let got = ledger.parse_keys(&schemes, &chosen);
        prop_assert_eq!(got.len(), chosen.len());
        for (g, k) in got.iter().zip(&chosen) {
            let want = PublicKey::parse(Scheme::Ed25519, k);
            match (g, &want) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.to_bytes(), b.to_bytes()),
                (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
                _ => prop_assert!(false, "parse_keys {:?} but parse {:?}", g.is_ok(), want.is_ok()),
            }
        }
    }
}
