//! SM2 (GB/T 32918 with SM3, distinguishing id "1234567812345678") against signatures made by an
//! independent implementation: OpenSSL 3.0.19, recorded once so this test needs no openssl:
//!
//! ```text
//! openssl genpkey -algorithm SM2 -out key.pem
//! openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678 \
//!     -inkey key.pem -in msg.bin -out sig.der      # DER ECDSA-Sig-Value, converted to r || s
//! ```
//!
//! More recorded cases (41, message lengths around SM3's block boundaries, other distinguishing
//! ids) are in `tests/vectors/openssl_sm2_vectors.json` (made by
//! `tests/vectors/gen_openssl_sm2.py`). The live two-way cross-check with the openssl command line
//! is `tests/test_signatures.py`.

use serde_json::Value;
use tongbao_core::crypto::{verify_many, PublicKey, Scheme, SigningKey, VerifyItem};

const JSON_VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/openssl_sm2_vectors.json"
);

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// (uncompressed public key, message, r || s), all made by OpenSSL with the default distid.
const OPENSSL_VECTORS: [(&str, &str, &str); 4] = [
    (
        "04745c8be0252d77434cad9895554a59a11cb59287322440e4310605f2fbe8798de32ae0e597db4ca1b207cf4e0a2ab380d62ff5a60367f7f5fbd6e0e4371d594f",
        "",
        "7093c14847b983da4aaac92e78c4cb1edb087035c767f4457a50f1c6100091160bd27e7fb0ab012cbe5e18fe77da8d07030337f0c2475f1e56690a6328f8ac53",
    ),
    (
        "049d71edbc5d27696d9bcd01cec22b6c7458128eccea4e189f91b52993c3d9cecb7cd79e32c82850ad9d118c581eb8a68ab32e15039c198d7c0bafcf76292ebaf8",
        "616263",
        "9fcccb347ea1f2ef0634259a6e6f42f059b0693402a2107e2d1482dac54f32aca5b2e489494887b8a2b25f39989575b65ca8fdd90d78e703ac94e82dd3bd1002",
    ),
    (
        "04c83316b59f49a4181966069950c3cf0c6cf25a78f323105830baade2d0e60c974c57d48470e6ff649d7775c0839503081638807aafa7b0ea089131a18c71a050",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        "b29865c980478406ee2d15d6ffa991abd463391e5c358c22d324da4301f245aa2099c8944b3ef1608a07b5bc287130bc528da1292253e08de842df74f7270bc0",
    ),
    (
        "0460ff2d2e0a56bb179ab4f7bbe9b6052dd697e0b560b85c3139a27d28755cb43e1cf04e1cedfa2ecef30b4faf9b3eb474314bfca42adc1969c64103bfbd7e7e34",
        "746f6e6762616f20534d322063726f73732d636865636b2077697468204f70656e53534c20332e3020746f6e6762616f20534d322063726f73732d636865636b2077697468204f70656e53534c20332e3020746f6e6762616f20534d322063726f73732d636865636b2077697468204f70656e53534c20332e3020",
        "3ab9d4380fad40aad98d32cfe40b51e0ad9e4e399d59bc4c5478ab265493c43c978cc98109662bf6db0a68877d92b65a3a51da9e7ecc50eca252fa10402154c3",
    ),
];

/// Signed by OpenSSL over "abc" with distid "ALICE123@YAHOO.COM" (which OpenSSL verifies):
/// Z_A differs, so our verifier, bound to "1234567812345678", must reject it.
const OTHER_DISTID: (&str, &str, &str) = (
    "0494ee199bd713b46a5c5e3683150061830436924dff3f79698450f46639cafab56040e7bc32f6aaac622e94fad71e3074b857ed9af8ffe235e6caef5583c279ac",
    "616263",
    "c864b78443c8173d0c806140be0a80c9ac82e173f4647b8ec79de3590fedf5538b70ab9cdb5f2fa30ae982f92c30e37efbe0e0373673f828452759ef396e5dd6",
);

fn sig64(s: &str) -> [u8; 64] {
    hex(s).try_into().expect("64-byte signature")
}

#[test]
fn openssl_signatures_verify() {
    for (public, message, signature) in OPENSSL_VECTORS {
        let public = hex(public);
        let key = PublicKey::parse(Scheme::Sm2, &public).expect("openssl key parses");
        assert_eq!(
            key.to_bytes(),
            public,
            "canonical encoding is the uncompressed point"
        );
        let message = hex(message);
        let sig = sig64(signature);
        assert!(
            key.verify(&message, &sig),
            "openssl signature over {message:02x?}"
        );

        // The compressed form of the same point is the same key.
        let mut compressed = vec![2 + (public[64] & 1)];
        compressed.extend_from_slice(&public[1..33]);
        let key_c = PublicKey::parse(Scheme::Sm2, &compressed).expect("compressed key parses");
        assert_eq!(key_c.to_bytes(), public);
        assert!(key_c.verify(&message, &sig));

        // Any single bit flip of r or s, and any change to the message, is rejected.
        for bit in 0..512 {
            let mut bad = sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!key.verify(&message, &bad), "bit {bit} flipped accepted");
        }
        let mut longer = message.clone();
        longer.push(0);
        assert!(!key.verify(&longer, &sig));
    }
}

#[test]
fn openssl_signatures_in_verify_many() {
    // verify_many takes 32-byte messages: the vector over 00..1f, plus tampered copies and
    // Ed25519 items mixed in.
    let (public, message, signature) = OPENSSL_VECTORS[2];
    let key = PublicKey::parse(Scheme::Sm2, &hex(public)).unwrap();
    let message: [u8; 32] = hex(message).try_into().unwrap();
    let good = sig64(signature);
    let mut bad = good;
    bad[10] ^= 0x40;
    let ed = SigningKey::derive(Scheme::Ed25519, b"sm2 mix", 1);
    let ed_key = PublicKey::parse(Scheme::Ed25519, &ed.public_key_bytes()).unwrap();
    let ed_sig = ed.sign(&message);
    let items = [
        VerifyItem {
            key: &key,
            message: &message,
            signature: &good,
        },
        VerifyItem {
            key: &ed_key,
            message: &message,
            signature: &ed_sig,
        },
        VerifyItem {
            key: &key,
            message: &message,
            signature: &bad,
        },
        VerifyItem {
            key: &key,
            message: &message,
            signature: &ed_sig,
        },
        VerifyItem {
            key: &ed_key,
            message: &message,
            signature: &good,
        },
    ];
    assert_eq!(verify_many(&items), vec![true, true, false, false, false]);
}

/// The message as `VerifyItem::message` takes it (`&[u8; 32]` today, or `&[u8]`).
fn as_message<'a, M: TryFrom<&'a [u8]>>(msg: &'a [u8]) -> Option<M> {
    M::try_from(msg).ok()
}

#[test]
fn recorded_openssl_vectors() {
    let text = std::fs::read_to_string(JSON_VECTORS)
        .unwrap_or_else(|e| panic!("cannot read {JSON_VECTORS}: {e}"));
    let doc: Value = serde_json::from_str(&text).expect("JSON");
    let cases = doc["cases"].as_array().expect("cases");
    let field = |c: &Value, name: &str| hex(c[name].as_str().expect(name));
    let parsed: Vec<(PublicKey, Vec<u8>, [u8; 64], bool)> = cases
        .iter()
        .map(|c| {
            let key = PublicKey::parse(Scheme::Sm2, &field(c, "public")).expect("key parses");
            let valid = match c["result"].as_str() {
                Some("valid") => true,
                Some("invalid") => false,
                other => panic!("unexpected result {other:?}"),
            };
            let sig: [u8; 64] = field(c, "signature").try_into().expect("64 bytes");
            (key, field(c, "message"), sig, valid)
        })
        .collect();
    assert_eq!(parsed.len(), 41);
    assert_eq!(parsed.iter().filter(|c| !c.3).count(), 3);
    for (i, (key, message, sig, valid)) in parsed.iter().enumerate() {
        assert_eq!(key.verify(message, sig), *valid, "case {i}: {}", cases[i]);
        for bit in [0usize, 100, 255, 256, 400, 511] {
            let mut bad = *sig;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!key.verify(message, &bad), "case {i} bit {bit}");
        }
    }
    // Those whose message verify_many can take, in one call (all of them with a `&[u8]` field).
    let batchable: Vec<(VerifyItem<'_>, bool)> = parsed
        .iter()
        .filter_map(|(key, message, sig, valid)| {
            Some((
                VerifyItem {
                    key,
                    message: as_message(message)?,
                    signature: sig,
                },
                *valid,
            ))
        })
        .collect();
    assert!(batchable.len() >= 3, "the 32-byte messages at least");
    let (items, expected): (Vec<VerifyItem<'_>>, Vec<bool>) = batchable.into_iter().unzip();
    assert_eq!(verify_many(&items), expected);
}

#[test]
fn other_distinguishing_id_rejected() {
    let (public, message, signature) = OTHER_DISTID;
    let key = PublicKey::parse(Scheme::Sm2, &hex(public)).unwrap();
    assert!(!key.verify(&hex(message), &sig64(signature)));
}

#[test]
fn out_of_range_scalars_rejected() {
    // n, the order of the sm2p256v1 base point.
    let n = hex("fffffffeffffffffffffffffffffffff7203df6b21c6052b53bbf40939d54123");
    let (public, message, signature) = OPENSSL_VECTORS[1];
    let key = PublicKey::parse(Scheme::Sm2, &hex(public)).unwrap();
    let message = hex(message);
    let good = sig64(signature);
    let zero = [0u8; 32];
    let mut n_plus_1 = n.clone();
    n_plus_1[31] += 1; // n ends in 0x23
                       // s = n - r: t = (r + s) mod n = 0, which GB/T 32918 (verification step B5) rejects.
    let r_int = &good[..32];
    let mut n_minus_r = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let v = n[i] as i16 - r_int[i] as i16 - borrow;
        n_minus_r[i] = v.rem_euclid(256) as u8;
        borrow = i16::from(v < 0);
    }
    assert_eq!(borrow, 0, "r < n");
    let cases: [(&[u8], &[u8]); 9] = [
        (&zero, &good[32..]),
        (&good[..32], &zero),
        (&n, &good[32..]),
        (&good[..32], &n),
        (&n_plus_1, &good[32..]),
        (&good[..32], &n_plus_1),
        (&good[..32], &n_minus_r),
        (&[0xff; 32], &good[32..]),
        (&[0xff; 32], &[0xff; 32]),
    ];
    for (r, s) in cases {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(r);
        sig[32..].copy_from_slice(s);
        assert!(!key.verify(&message, &sig), "r {r:02x?} s {s:02x?}");
    }
}

#[test]
fn invalid_public_keys_refused() {
    let (public, _, _) = OPENSSL_VECTORS[0];
    let public = hex(public);
    let mut off_curve = public.clone();
    off_curve[64] ^= 1;
    let mut bad_tag = public.clone();
    bad_tag[0] = 5;
    for bytes in [
        vec![],
        vec![0u8],
        public[..64].to_vec(),
        off_curve,
        bad_tag,
        vec![4u8; 65],
    ] {
        assert!(
            PublicKey::parse(Scheme::Sm2, &bytes).is_err(),
            "accepted {bytes:02x?}"
        );
    }
}

#[test]
fn own_signatures_round_trip() {
    for wallet in 0..8 {
        let key = SigningKey::derive(Scheme::Sm2, b"sm2 round trip", wallet);
        let public = PublicKey::parse(Scheme::Sm2, &key.public_key_bytes()).unwrap();
        for len in [0usize, 1, 32, 55, 56, 63, 64, 65, 119, 120, 1000] {
            let message: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
            let sig = key.sign(&message);
            assert_eq!(sig, key.sign(&message), "deterministic");
            assert!(public.verify(&message, &sig));
            let mut bad = sig;
            bad[33] ^= 0x80;
            assert!(!public.verify(&message, &bad));
        }
    }
}
