//! DUPLICATE_INPUT is answered exactly when an input id repeats, for few inputs (the pairwise
//! scan) and many (the hash set), against a hash-set reference.

use std::collections::HashSet;

use proptest::prelude::*;
use tongbao_core::builder::Keyring;
use tongbao_core::format::{self, Condition, Kind, Output};
use tongbao_core::WalletKind;
use tongbao_core::{Ledger, LedgerConfig, PublicKey, Registration, Scheme, Status, WalletAttrs};

fn ledger_and_keys() -> (Ledger, Keyring) {
    let mut keys = Keyring::new();
    let public = keys.derive_many(Scheme::Ed25519, b"dup", &[7]).remove(0);
    let mut ledger = Ledger::new(LedgerConfig {
        threads: 1,
        verify_signatures: false,
    })
    .unwrap();
    ledger
        .register_wallets(vec![Registration {
            id: 7,
            kind: WalletKind::Personal,
            key: PublicKey::parse(Scheme::Ed25519, &public).unwrap(),
            attrs: WalletAttrs::default(),
        }])
        .unwrap();
    (ledger, keys)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn duplicate_input_iff_an_id_repeats(
        distinct in prop::collection::hash_set(any::<u16>(), 1..40),
        repeat in prop::option::of((any::<prop::sample::Index>(), any::<prop::sample::Index>())),
    ) {
        let mut picks: Vec<u16> = distinct.into_iter().collect();
        if let Some((which, at)) = repeat {
            let copy = picks[which.index(picks.len())];
            picks.insert(at.index(picks.len() + 1), copy);
        }
        let (mut ledger, keys) = ledger_and_keys();
        let inputs: Vec<[u8; 32]> = picks
            .iter()
            .map(|p| {
                let mut id = [0u8; 32];
                id[..2].copy_from_slice(&p.to_le_bytes());
                id
            })
            .collect();
        let output = Output { owner: 7, amount_fen: 1, condition: Condition::None };
        let body = format::encode_body(Kind::Transfer, 1, 10, &inputs, &[output], &[]);
        let tx = keys.sign_many(&[body], &[vec![7]]).unwrap().remove(0);
        let (statuses, _) = ledger.settle(&[tx], 1).unwrap();
        let distinct: HashSet<u16> = picks.iter().copied().collect();
        let want = if distinct.len() < picks.len() { Status::DuplicateInput } else { Status::UnknownInput };
        prop_assert_eq!(statuses[0], want);
    }
}
