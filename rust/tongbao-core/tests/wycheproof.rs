//! Ed25519 verification against Project Wycheproof (`tests/vectors/wycheproof_ed25519_test.json`,
//! see `tests/vectors/README.md`) and against synthetic edge cases that pin down the documented
//! semantics of `crypto.rs`: strict encodings (canonical S and R, R and A not of small order) with
//! the *cofactored* equation `[8]([S]B - [k]A - R) == 0`, single and batch alike.
//!
//! Every case goes through `PublicKey::parse(..).verify(..)`. `crypto::verify_many` takes the
//! message as `VerifyItem::message`, today a `&[u8; 32]` (a tx id), so only the Wycheproof cases
//! with 32-byte messages can go through it (written so that every case goes through once the
//! field is widened to `&[u8]`); the synthetic set (all with 32-byte messages) covers the batch
//! path with Wycheproof-style mutations of our own signatures, torsion components and mixed-order
//! keys, in one call and in random-size chunks.

use std::collections::BTreeMap;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use serde_json::Value;
use sha2::{Digest, Sha512};
use tongbao_core::crypto::{verify_many, PublicKey, Scheme, VerifyItem};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/vectors/wycheproof_ed25519_test.json"
);

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Case {
    tc_id: u64,
    comment: String,
    flags: Vec<String>,
    key: Vec<u8>,
    msg: Vec<u8>,
    sig: Vec<u8>,
    valid: bool,
}

impl Case {
    fn describe(&self) -> String {
        format!(
            "tcId {} ({}; {:?}; {}): key {} msg {} sig {}",
            self.tc_id,
            if self.valid { "valid" } else { "invalid" },
            self.flags,
            self.comment,
            to_hex(&self.key),
            to_hex(&self.msg),
            to_hex(&self.sig)
        )
    }
}

fn load() -> (Value, Vec<Case>) {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read {VECTORS}: {e} (see tests/vectors/README.md)"));
    let doc: Value = serde_json::from_str(&text).expect("vectors are JSON");
    assert_eq!(doc["algorithm"], "EDDSA");
    let mut cases = Vec::new();
    for group in doc["testGroups"].as_array().expect("testGroups") {
        assert_eq!(group["type"], "EddsaVerify");
        assert_eq!(group["publicKey"]["curve"], "edwards25519");
        let key = hex(group["publicKey"]["pk"].as_str().expect("pk"));
        for test in group["tests"].as_array().expect("tests") {
            let result = test["result"].as_str().expect("result");
            let valid = match result {
                "valid" => true,
                "invalid" => false,
                // "acceptable" is not used by this file; a new one must be triaged by hand.
                other => panic!("tcId {}: unexpected result {other:?}", test["tcId"]),
            };
            cases.push(Case {
                tc_id: test["tcId"].as_u64().expect("tcId"),
                comment: test["comment"].as_str().unwrap_or("").to_string(),
                flags: test["flags"]
                    .as_array()
                    .map(|f| {
                        f.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
                key: key.clone(),
                msg: hex(test["msg"].as_str().expect("msg")),
                sig: hex(test["sig"].as_str().expect("sig")),
                valid,
            });
        }
    }
    (doc, cases)
}

/// splitmix64: a tiny deterministic PRNG for shuffles and chunk sizes (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[test]
fn vector_file_is_the_documented_one() {
    let (doc, cases) = load();
    assert_eq!(doc["numberOfTests"].as_u64(), Some(cases.len() as u64));
    assert_eq!(
        cases.len(),
        151,
        "tests/vectors/README.md documents 151 cases"
    );
    assert_eq!(cases.iter().filter(|c| c.valid).count(), 88);
    assert_eq!(cases.iter().filter(|c| !c.valid).count(), 63);
    let mut ids: Vec<u64> = cases.iter().map(|c| c.tc_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cases.len(), "tcIds are unique");
}

/// Outcome of one case through the single-signature API.
#[derive(Debug, PartialEq, Eq)]
enum Single {
    KeyRefused,
    WrongLength,
    Verified(bool),
}

fn single(case: &Case) -> Single {
    let Ok(key) = PublicKey::parse(Scheme::Ed25519, &case.key) else {
        return Single::KeyRefused;
    };
    let Ok(sig) = <[u8; 64]>::try_from(case.sig.as_slice()) else {
        return Single::WrongLength;
    };
    Single::Verified(key.verify(&case.msg, &sig))
}

#[test]
fn wycheproof_single_verification() {
    let (_, cases) = load();
    let mut failures = Vec::new();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        let outcome = single(case);
        let (agrees, label) = match (&outcome, case.valid) {
            (Single::Verified(true), true) => (true, "valid accepted"),
            (Single::Verified(false), false) => (true, "invalid rejected by verify"),
            (Single::WrongLength, false) => (true, "invalid rejected: signature not 64 bytes"),
            (Single::KeyRefused, false) => (true, "invalid rejected: key refused by parse"),
            (Single::Verified(true), false) => (false, "INVALID ACCEPTED"),
            (Single::Verified(false), true) => (false, "VALID REJECTED"),
            (Single::WrongLength, true) => (false, "VALID with a non-64-byte signature"),
            (Single::KeyRefused, true) => (false, "VALID with a key parse refuses"),
        };
        *tally.entry(label).or_default() += 1;
        if !agrees {
            failures.push(format!("{label}: {}", case.describe()));
        }
    }
    eprintln!("wycheproof single verification: {tally:?}");
    assert!(
        failures.is_empty(),
        "{} of {} Wycheproof cases disagree:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(tally.values().sum::<usize>(), 151);
}

/// Keys: `PublicKey::parse` may refuse a key only if every case under it is invalid.
#[test]
fn refused_keys_appear_only_in_invalid_cases() {
    let (_, cases) = load();
    for case in &cases {
        if PublicKey::parse(Scheme::Ed25519, &case.key).is_err() {
            assert!(
                !case.valid,
                "parse refuses the key of a valid case: {}",
                case.describe()
            );
        }
    }
}

/// One batch item, owned.
struct Owned {
    label: String,
    key: PublicKey,
    msg: Vec<u8>,
    sig: [u8; 64],
    expected: bool,
}

/// The message as `VerifyItem::message` takes it, whatever that type is (`&[u8; 32]` or `&[u8]`):
/// `None` if this message cannot be passed to `verify_many`.
fn as_message<'a, M: TryFrom<&'a [u8]>>(msg: &'a [u8]) -> Option<M> {
    M::try_from(msg).ok()
}

fn verify_item(o: &Owned) -> Option<VerifyItem<'_>> {
    Some(VerifyItem {
        key: &o.key,
        message: as_message(&o.msg)?,
        signature: &o.sig,
    })
}

fn check_batch(items: &[Owned], rounds: u64) {
    // Single verification first: the batch must equal it item for item.
    for it in items {
        assert_eq!(
            it.key.verify(&it.msg, &it.sig),
            it.expected,
            "single verification of {}",
            it.label
        );
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    let mut chunk_calls = 0usize;
    for round in 0..rounds {
        let mut rng = Rng(0x7b_0000 + round);
        if round > 0 {
            rng.shuffle(&mut order);
        }
        // All items in one call.
        let refs: Vec<VerifyItem<'_>> = order
            .iter()
            .map(|&i| verify_item(&items[i]).expect("only batchable items here"))
            .collect();
        let got = verify_many(&refs);
        assert_eq!(got.len(), refs.len());
        for (pos, &i) in order.iter().enumerate() {
            assert_eq!(
                got[pos],
                items[i].expected,
                "verify_many, one call of {} (round {round}): {}",
                items.len(),
                items[i].label
            );
        }
        // Random-size chunks (1 .. 2x the bisection threshold and up to a quarter of the set).
        let mut start = 0;
        while start < refs.len() {
            let max = (refs.len() / 4).max(9);
            let len = (1 + rng.below(max)).min(refs.len() - start);
            let got = verify_many(&refs[start..start + len]);
            chunk_calls += 1;
            for (k, &ok) in got.iter().enumerate() {
                let i = order[start + k];
                assert_eq!(
                    ok,
                    items[i].expected,
                    "verify_many, chunk [{start}, {}) (round {round}): {}",
                    start + len,
                    items[i].label
                );
            }
            start += len;
        }
    }
    eprintln!(
        "verify_many: {} items, {rounds} rounds of one call each, {chunk_calls} chunk calls",
        items.len()
    );
}

#[test]
fn wycheproof_batch_verification() {
    let (_, cases) = load();
    let mut items = Vec::new();
    for case in &cases {
        let (Ok(key), Ok(sig)) = (
            PublicKey::parse(Scheme::Ed25519, &case.key),
            <[u8; 64]>::try_from(case.sig.as_slice()),
        ) else {
            continue;
        };
        let owned = Owned {
            label: case.describe(),
            key,
            msg: case.msg.clone(),
            sig,
            expected: case.valid,
        };
        if verify_item(&owned).is_some() {
            items.push(owned);
        }
    }
    // With `message: &[u8; 32]`: tcId 84 (valid, S just under L), 85 (invalid, S just above L)
    // and 99 (valid). With `&[u8]`: every case with a 64-byte signature.
    eprintln!(
        "wycheproof cases through verify_many: {} of {}",
        items.len(),
        cases.len()
    );
    assert!(
        items.len() == 3 || items.len() == 139,
        "{} Wycheproof cases can go through verify_many",
        items.len()
    );
    // Surround them with honest signatures so the batch equation and the bisection run.
    let mut all = honest_items(60, 0);
    all.extend(items);
    check_batch(&all, 20);
}

// ---------------------------------------------------------------------------------------------
// Synthetic cases. Our own signer with a known secret scalar `a` and nonce `r`, so S can be
// recomputed for a modified R or key the way Wycheproof builds its "InvalidEncoding" cases.

struct Signer {
    a: Scalar,
    /// The public key point; `a`·B plus an optional torsion component.
    point: EdwardsPoint,
}

impl Signer {
    fn new(seed: u64, torsion: usize) -> Signer {
        let a = Scalar::hash_from_bytes::<Sha512>(&seed.to_le_bytes());
        let point = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[torsion];
        Signer { a, point }
    }

    fn encoded(&self) -> [u8; 32] {
        self.point.compress().to_bytes()
    }

    fn key(&self) -> PublicKey {
        PublicKey::parse(Scheme::Ed25519, &self.encoded()).expect("synthetic key parses")
    }

    fn nonce(&self, msg: &[u8; 32]) -> Scalar {
        let mut h = Sha512::new();
        h.update(b"synthetic nonce");
        h.update(self.a.as_bytes());
        h.update(msg);
        Scalar::from_hash(h)
    }

    fn challenge(&self, r_enc: &[u8; 32], msg: &[u8; 32]) -> Scalar {
        let mut h = Sha512::new();
        h.update(r_enc);
        h.update(self.encoded());
        h.update(msg);
        Scalar::from_hash(h)
    }

    /// A signature whose R is encoded as `r_enc` and whose S satisfies `[S]B - [k]A' = [r]B + ..`
    /// for nonce `r`, i.e. `S = r + k·a` with `k = H(r_enc || A || M)`.
    fn sign_with_r(&self, r: Scalar, r_enc: [u8; 32], msg: &[u8; 32]) -> [u8; 64] {
        let k = self.challenge(&r_enc, msg);
        let s = r + k * self.a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_enc);
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    fn sign(&self, msg: &[u8; 32]) -> [u8; 64] {
        let r = self.nonce(msg);
        let r_enc = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
        self.sign_with_r(r, r_enc, msg)
    }
}

fn message(n: u64) -> [u8; 32] {
    let d = Sha512::digest(n.to_le_bytes());
    d[..32].try_into().expect("32 bytes")
}

fn honest_items(n: u64, torsion: usize) -> Vec<Owned> {
    (0..n)
        .map(|i| {
            // A few keys, each signing several messages: repeated keys are merged in the batch.
            let signer = Signer::new(1000 + i % 7, torsion);
            let msg = message(i);
            Owned {
                label: format!("honest signature {i} (key torsion {torsion})"),
                key: signer.key(),
                msg: msg.to_vec(),
                sig: signer.sign(&msg),
                expected: true,
            }
        })
        .collect()
}

/// `a + b` for 256-bit little-endian integers; `None` on overflow past 2^256.
fn add256(a: &[u8; 32], b: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = a[i] as u16 + b[i] as u16 + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    (carry == 0).then_some(out)
}

const L_BYTES: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The cofactorless strict verifier of ed25519-dalek (`verify_strict`), as a reference for which
/// synthetic cases differ only because our equation is cofactored.
fn dalek_strict(key: &[u8; 32], msg: &[u8; 32], sig: &[u8; 64]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(key) else {
        return false;
    };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
}

/// Synthetic edge cases, each with our expected outcome and the cofactorless (dalek strict) one.
fn synthetic_items() -> Vec<(Owned, bool)> {
    let mut out: Vec<(Owned, bool)> = Vec::new();
    let mut push = |label: String, signer: &Signer, msg: [u8; 32], sig: [u8; 64], ours: bool| {
        let strict = dalek_strict(&signer.encoded(), &msg, &sig);
        out.push((
            Owned {
                label,
                key: signer.key(),
                msg: msg.to_vec(),
                sig,
                expected: ours,
            },
            strict,
        ));
    };

    for seed in 0..4u64 {
        let signer = Signer::new(seed, 0);
        let msg = message(100 + seed);
        let sig = signer.sign(&msg);
        push(format!("honest seed {seed}"), &signer, msg, sig, true);

        let mut other = msg;
        other[0] ^= 1;
        push(
            format!("wrong message seed {seed}"),
            &signer,
            other,
            sig,
            false,
        );

        // Errors that cancel when summed with equal coefficients: S + d and S - d (and a triple
        // S + d, S + d, S - 2d). Each is invalid; a batch equation without independent random
        // coefficients would accept the group.
        let d = Scalar::hash_from_bytes::<Sha512>(&[seed as u8, 0xdd]);
        let s_scalar = Scalar::from_canonical_bytes(sig[32..].try_into().expect("32 bytes"))
            .expect("canonical S");
        for (n, delta) in [d, -d, d, d, -(d + d)].into_iter().enumerate() {
            let mut m = sig;
            m[32..].copy_from_slice((s_scalar + delta).as_bytes());
            push(
                format!("cancelling error {n} seed {seed}"),
                &signer,
                msg,
                m,
                false,
            );
        }

        // S + jL: the same scalar mod L, a non-canonical encoding (RFC 8032 5.1.7).
        let s: [u8; 32] = sig[32..].try_into().expect("32 bytes");
        let mut jl = [0u8; 32];
        for j in 1..=15u8 {
            jl = add256(&jl, &L_BYTES).expect("15 L < 2^256");
            if let Some(s2) = add256(&s, &jl) {
                let mut m = sig;
                m[32..].copy_from_slice(&s2);
                push(format!("S + {j}L seed {seed}"), &signer, msg, m, false);
            }
        }
        // Bits 253..255 of S set (Wycheproof 67-69).
        for bit in 253..256 {
            let mut m = sig;
            m[32 + bit / 8] |= 1 << (bit % 8);
            push(
                format!("S bit {bit} set seed {seed}"),
                &signer,
                msg,
                m,
                false,
            );
        }
        // R bit flips with S recomputed for the flipped encoding (Wycheproof 42-59): the
        // recovered R is the original one, which differs from the encoded R.
        let r = signer.nonce(&msg);
        let r_enc = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
        for bit in [
            0usize, 1, 2, 7, 8, 16, 31, 32, 63, 64, 97, 127, 240, 247, 248, 253, 254, 255,
        ] {
            let mut flipped = r_enc;
            flipped[bit / 8] ^= 1 << (bit % 8);
            let m = signer.sign_with_r(r, flipped, &msg);
            push(
                format!("R bit {bit} flipped, S recomputed, seed {seed}"),
                &signer,
                msg,
                m,
                false,
            );
        }
        // R' = R + T (T a torsion point of order 2, 4 or 8), S recomputed for R': the cofactored
        // equation accepts (the -T residue is killed by [8]); a cofactorless verifier rejects.
        for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
            let r_point = ED25519_BASEPOINT_POINT * r + torsion;
            let m = signer.sign_with_r(r, r_point.compress().to_bytes(), &msg);
            push(
                format!("R + T{t}, S recomputed, seed {seed}"),
                &signer,
                msg,
                m,
                true,
            );
        }
        // R a small-order point, S = k·a (so [S]B - [k]A - R = -R is a torsion point): the
        // cofactored equation holds, but a small-order R is refused by our encoding rules.
        for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
            let m = signer.sign_with_r(Scalar::ZERO, torsion.compress().to_bytes(), &msg);
            push(
                format!("R = T{t} (small order), S = k·a, seed {seed}"),
                &signer,
                msg,
                m,
                false,
            );
        }
    }

    // Mixed-order keys A' = aB + T: signatures made with `a` satisfy the cofactored equation.
    for t in 1..8 {
        for seed in 0..3u64 {
            let signer = Signer::new(50 + seed, t);
            let msg = message(200 + seed);
            let sig = signer.sign(&msg);
            push(
                format!("mixed-order key (+T{t}) seed {seed}"),
                &signer,
                msg,
                sig,
                true,
            );
        }
    }

    // Special encodings of R with S = 0 or S = k·a.
    let signer = Signer::new(77, 0);
    let msg = message(300);
    let mut p_plus_1 = [0xffu8; 32];
    p_plus_1[0] = 0xee; // p + 1 = 2^255 - 18: a non-canonical encoding of y = 1 (the identity)
    p_plus_1[31] = 0x7f;
    let mut neg_zero_identity = [0u8; 32];
    neg_zero_identity[0] = 1;
    neg_zero_identity[31] = 0x80; // y = 1 with the sign bit of x set (Wycheproof 151)
    for (name, enc) in [
        ("y = p + 1 (non-canonical identity)", p_plus_1),
        ("y = 1, x sign bit set", neg_zero_identity),
        ("all 0xff", [0xff; 32]),
        ("all zero (y = 0)", [0; 32]),
    ] {
        let m = signer.sign_with_r(Scalar::ZERO, enc, &msg);
        push(format!("R {name}, S = k·a"), &signer, msg, m, false);
        let mut zero_s = [0u8; 64];
        zero_s[..32].copy_from_slice(&enc);
        push(format!("R {name}, S = 0"), &signer, msg, zero_s, false);
    }
    // Non-canonical encodings y + p of every small y that is on the curve (y < 19). No signature
    // with such an R can be made without a discrete log, so these only check the decoder path.
    for y in 0u8..19 {
        let mut canonical = [0u8; 32];
        canonical[0] = y;
        let Some(point) = CompressedEdwardsY(canonical).decompress() else {
            continue;
        };
        let mut enc = [0xffu8; 32];
        enc[0] = 0xed + y;
        enc[31] = 0x7f;
        let m = signer.sign_with_r(Scalar::ZERO, enc, &msg);
        push(
            format!(
                "R = y+p for y = {y} (small order: {})",
                point.is_small_order()
            ),
            &signer,
            msg,
            m,
            false,
        );
    }
    out
}

#[test]
fn synthetic_cases_single_and_batch() {
    let synthetic = synthetic_items();
    let mut cofactor_only = Vec::new();
    for (item, strict) in &synthetic {
        let ours = item.expected;
        if ours != *strict {
            cofactor_only.push(format!(
                "{} (ours {ours}, dalek verify_strict {strict})",
                item.label
            ));
        }
        // Only torsion-related cases may differ from the cofactorless strict verifier, and only
        // in the direction "we accept, it rejects".
        if ours != *strict {
            assert!(
                ours && (item.label.contains("+ T") || item.label.contains("+T")),
                "unexpected disagreement with ed25519-dalek verify_strict: {}",
                item.label
            );
        }
    }
    eprintln!(
        "synthetic: {} cases, {} accepted only because the equation is cofactored",
        synthetic.len(),
        cofactor_only.len()
    );
    let mut items: Vec<Owned> = synthetic.into_iter().map(|(o, _)| o).collect();
    items.extend(honest_items(40, 0));
    items.extend(honest_items(12, 3));
    check_batch(&items, 30);
}

/// Batches of valid signatures under mixed-order keys (and prime-order ones) all verify, and a
/// single bad item among them is pinpointed. (Whether the equation passed at once or only after
/// bisection is not visible through the API: a cofactorless batch equation would still give
/// these results, only slower.)
#[test]
fn torsion_components_do_not_break_the_batch_equation() {
    let mut items = honest_items(16, 5);
    items.extend(honest_items(16, 0));
    check_batch(&items, 5);
    let mut bad = honest_items(33, 7);
    bad[17].sig[40] ^= 4;
    bad[17].expected = false;
    bad[17].label.push_str(" (tampered)");
    check_batch(&bad, 5);
}

/// A small-order torsion point encoded canonically must never be accepted as a key.
#[test]
fn small_order_keys_refused() {
    for (t, torsion) in EIGHT_TORSION.iter().enumerate() {
        let enc = torsion.compress().to_bytes();
        assert!(
            PublicKey::parse(Scheme::Ed25519, &enc).is_err(),
            "torsion point T{t} accepted as a key"
        );
        assert!(torsion.mul_by_cofactor().is_identity());
    }
}
