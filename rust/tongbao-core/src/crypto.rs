//! Signature schemes: Ed25519 (strict encodings, cofactored batch verification) and SM2 with SM3
//! (GB/T 32918, Z_A cached per registered key). See `docs/decisions/0002-ed25519-verification.md`
//! and, for SM2 verification, `docs/decisions/0003-fast-sm2.md` ([`sm2fast`]).

#[path = "sm2fast.rs"]
pub mod sm2fast;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha256, Sha512};
use sm2::elliptic_curve::sec1::ToEncodedPoint;

use crate::error::{Error, Result};
pub use sm2fast::{sm2_verify_reference, Sm2PublicKey};

/// The distinguishing identifier hashed into SM2's Z_A when none is agreed otherwise
/// (GM/T 0009's default, also OpenSSL's `distid:1234567812345678`).
pub const SM2_DEFAULT_DISTID: &str = "1234567812345678";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Scheme {
    Ed25519 = 1,
    Sm2 = 2,
}

impl Scheme {
    pub fn from_u8(value: u8) -> Option<Scheme> {
        match value {
            1 => Some(Scheme::Ed25519),
            2 => Some(Scheme::Sm2),
            _ => None,
        }
    }
}

/// A registered public key, parsed once ("build once, call many").
#[derive(Clone, Debug)]
pub enum PublicKey {
    Ed25519 {
        compressed: [u8; 32],
        point: EdwardsPoint,
    },
    /// Verified by [`sm2fast`] (the `sm2` crate's path stays as `Sm2PublicKey::verify_reference`).
    Sm2(Box<Sm2PublicKey>),
}

impl PublicKey {
    /// Parse and validate a public key. Ed25519: 32 bytes, canonical encoding, not of small
    /// order. SM2: a SEC1 point on sm2p256v1 (33 or 65 bytes); Z_A is computed here, once.
    pub fn parse(scheme: Scheme, bytes: &[u8]) -> Result<PublicKey> {
        match scheme {
            Scheme::Ed25519 => {
                let compressed: [u8; 32] = bytes.try_into().map_err(|_| {
                    Error::InvalidKey(format!(
                        "an Ed25519 public key is 32 bytes long, got {}",
                        bytes.len()
                    ))
                })?;
                let point = CompressedEdwardsY(compressed).decompress().ok_or_else(|| {
                    Error::InvalidKey("Ed25519 public key is not a curve point".into())
                })?;
                if point.compress().to_bytes() != compressed {
                    return Err(Error::InvalidKey(
                        "Ed25519 public key encoding is not canonical".into(),
                    ));
                }
                if point.is_small_order() {
                    return Err(Error::InvalidKey(
                        "Ed25519 public key has small order (weak key)".into(),
                    ));
                }
                Ok(PublicKey::Ed25519 { compressed, point })
            }
            Scheme::Sm2 => {
                let key = Sm2PublicKey::from_sec1_bytes(SM2_DEFAULT_DISTID, bytes).ok_or_else(|| {
                    Error::InvalidKey(format!(
                        "an SM2 public key is a SEC1 point on sm2p256v1 (65 bytes uncompressed or 33 compressed), got {} bytes that are not one",
                        bytes.len()
                    ))
                })?;
                Ok(PublicKey::Sm2(Box::new(key)))
            }
        }
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            PublicKey::Ed25519 { .. } => Scheme::Ed25519,
            PublicKey::Sm2(_) => Scheme::Sm2,
        }
    }

    /// The canonical encoding (Ed25519: 32 bytes; SM2: 65-byte uncompressed SEC1).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Ed25519 { compressed, .. } => compressed.to_vec(),
            PublicKey::Sm2(key) => key.to_sec1_bytes().to_vec(),
        }
    }

    /// Verify one signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        match self {
            PublicKey::Ed25519 { compressed, point } => {
                ed25519_verify_one(compressed, point, message, signature)
            }
            PublicKey::Sm2(key) => key.verify(message, signature),
        }
    }
}

/// `y < p` for an encoded Edwards point (the sign bit of x is ignored): the canonical-encoding
/// check for R, without the cost of a compression.
fn is_canonical_y(encoded: &[u8; 32]) -> bool {
    // p = 2^255 - 19: the only non-canonical y values are p..2^255-1, i.e. all bytes 0xff except
    // the low byte >= 0xed and the top byte (sign bit cleared) 0x7f.
    if encoded[31] & 0x7f != 0x7f {
        return true;
    }
    if encoded[1..31].iter().any(|&b| b != 0xff) {
        return true;
    }
    encoded[0] < 0xed
}

/// Decoded parts of an Ed25519 signature that passed the encoding checks.
struct EdPrepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Encoding checks (canonical S, canonical R not of small order) and the challenge
/// `k = H(R || A || M)`. `None` means the signature is invalid whatever the equation says.
fn ed25519_prepare(a: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> Option<EdPrepared> {
    let r_bytes: [u8; 32] = signature[..32].try_into().expect("32 bytes");
    let s_bytes: [u8; 32] = signature[32..].try_into().expect("32 bytes");
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    if !is_canonical_y(&r_bytes) {
        return None;
    }
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.is_small_order() {
        return None;
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(a);
    h.update(message);
    let k = Scalar::from_hash(h);
    Some(EdPrepared { r, s, k })
}

/// Single cofactored verification: `[8]([S]B - [k]A - R) == 0`.
fn ed25519_verify_one(
    a: &[u8; 32],
    a_point: &EdwardsPoint,
    message: &[u8],
    signature: &[u8; 64],
) -> bool {
    ed25519_prepare(a, message, signature).is_some_and(|p| ed25519_equation(a_point, &p))
}

/// The cofactored equation for one prepared signature: `[8]([S]B - [k]A - R) == 0`.
fn ed25519_equation(a_point: &EdwardsPoint, p: &EdPrepared) -> bool {
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-a_point, &p.s) - p.r;
    check.mul_by_cofactor().is_identity()
}

/// One signature to check: the key, the message (the ledger passes a 32-byte tx id) and the
/// signature.
pub struct VerifyItem<'a> {
    pub key: &'a PublicKey,
    pub message: &'a [u8],
    pub signature: &'a [u8; 64],
}

/// Below this many Ed25519 signatures a failed batch is checked one by one.
const ED25519_BISECT_MIN: usize = 4;

/// Verify many signatures; returns one bool per item, in order. Ed25519 items are checked with
/// one cofactored multiscalar equation per call (bisected on failure, so each bad signature is
/// pinpointed); the result equals single verification of each item. SM2 items are checked one by
/// one. Runs on the calling thread: callers split work across threads.
pub fn verify_many(items: &[VerifyItem<'_>]) -> Vec<bool> {
    let mut ok = vec![false; items.len()];
    let mut ed_index: Vec<usize> = Vec::with_capacity(items.len());
    let mut ed_prepared: Vec<EdPrepared> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match item.key {
            PublicKey::Ed25519 { compressed, .. } => {
                if let Some(p) = ed25519_prepare(compressed, item.message, item.signature) {
                    ed_index.push(i);
                    ed_prepared.push(p);
                }
            }
            PublicKey::Sm2(key) => ok[i] = key.verify(item.message, item.signature),
        }
    }
    let idx: Vec<usize> = (0..ed_index.len()).collect();
    ed25519_batch_bisect(items, &ed_index, &ed_prepared, &idx, &mut ok);
    ok
}

/// Verify many signatures on `pool`: the items are split into chunks (about four per thread,
/// at least 32 items each) and each chunk goes through [`verify_many`]. Returns one bool per
/// item, in order, equal to single verification of each (so independent of the thread count).
/// The ledger's phase 1 and the raw batch-verify benchmark share this.
pub fn verify_parallel(pool: &rayon::ThreadPool, items: &[VerifyItem<'_>]) -> Vec<bool> {
    use rayon::prelude::*;
    let threads = pool.current_num_threads().max(1);
    let chunk = items.len().div_ceil(threads * 4).max(32);
    pool.install(|| items.par_chunks(chunk).flat_map_iter(verify_many).collect())
}

fn ed25519_batch_bisect(
    items: &[VerifyItem<'_>],
    ed_index: &[usize],
    prepared: &[EdPrepared],
    subset: &[usize],
    ok: &mut [bool],
) {
    if subset.is_empty() {
        return;
    }
    if subset.len() < ED25519_BISECT_MIN {
        for &j in subset {
            let item = &items[ed_index[j]];
            if let PublicKey::Ed25519 { point, .. } = item.key {
                ok[ed_index[j]] = ed25519_equation(point, &prepared[j]);
            }
        }
        return;
    }
    if ed25519_batch_equation(items, ed_index, prepared, subset) {
        for &j in subset {
            ok[ed_index[j]] = true;
        }
        return;
    }
    let (left, right) = subset.split_at(subset.len() / 2);
    ed25519_batch_bisect(items, ed_index, prepared, left, ok);
    ed25519_batch_bisect(items, ed_index, prepared, right, ok);
}

/// `[8]( -(sum z_i s_i) B + sum z_i R_i + sum (z_i k_i) A_i ) == 0` with 128-bit z_i derived
/// deterministically from all the inputs (a transcript hash), so the outcome does not depend on
/// how a batch is split across threads. Coefficients of repeated keys are merged.
fn ed25519_batch_equation(
    items: &[VerifyItem<'_>],
    ed_index: &[usize],
    prepared: &[EdPrepared],
    subset: &[usize],
) -> bool {
    let mut transcript = Sha512::new();
    transcript.update(b"tongbao ed25519 batch v1");
    for &j in subset {
        let item = &items[ed_index[j]];
        transcript.update(item.signature);
        if let PublicKey::Ed25519 { compressed, .. } = item.key {
            transcript.update(compressed);
        }
        transcript.update((item.message.len() as u64).to_le_bytes());
        transcript.update(item.message);
    }
    let seed = transcript.finalize();

    let mut b_coefficient = Scalar::ZERO;
    let mut scalars: Vec<Scalar> = Vec::with_capacity(1 + 2 * subset.len());
    let mut points: Vec<EdwardsPoint> = Vec::with_capacity(1 + 2 * subset.len());
    scalars.push(Scalar::ZERO); // basepoint coefficient, filled in below
    points.push(ED25519_BASEPOINT_POINT);
    // Merge the A coefficients of repeated keys (a payer signing many payments).
    let mut key_slot: hashbrown::HashMap<[u8; 32], usize> = hashbrown::HashMap::new();
    let mut a_scalars: Vec<Scalar> = Vec::new();
    let mut a_points: Vec<EdwardsPoint> = Vec::new();
    for (n, &j) in subset.iter().enumerate() {
        let item = &items[ed_index[j]];
        let PublicKey::Ed25519 { compressed, point } = item.key else {
            continue;
        };
        let mut zh = Sha512::new();
        zh.update(seed);
        zh.update((n as u64).to_le_bytes());
        let z_bytes = zh.finalize();
        let mut z_wide = [0u8; 32];
        z_wide[..16].copy_from_slice(&z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_wide);
        let p = &prepared[j];
        b_coefficient += z * p.s;
        scalars.push(z);
        points.push(p.r);
        let slot = *key_slot.entry(*compressed).or_insert_with(|| {
            a_scalars.push(Scalar::ZERO);
            a_points.push(*point);
            a_points.len() - 1
        });
        a_scalars[slot] += z * p.k;
    }
    scalars[0] = -b_coefficient;
    scalars.extend(a_scalars);
    points.extend(a_points);
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// A secret key held client-side (builders, simulators, tests). Never stored by the ledger.
#[derive(Clone)]
pub enum SigningKey {
    Ed25519(Box<ed25519_dalek::SigningKey>),
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({:?}, <secret>)", self.scheme())
    }
}

impl SigningKey {
    /// A key from 32 secret bytes. SM2 secrets must be a scalar in [1, n-2].
    pub fn from_secret(scheme: Scheme, secret: &[u8]) -> Result<SigningKey> {
        let secret: [u8; 32] = secret.try_into().map_err(|_| {
            Error::InvalidKey(format!(
                "a secret key is 32 bytes long, got {}",
                secret.len()
            ))
        })?;
        match scheme {
            Scheme::Ed25519 => Ok(SigningKey::Ed25519(Box::new(
                ed25519_dalek::SigningKey::from_bytes(&secret),
            ))),
            Scheme::Sm2 => sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_DISTID, &secret)
                .map(|k| SigningKey::Sm2(Box::new(k)))
                .map_err(|_| {
                    Error::InvalidKey("SM2 secret key is not a scalar in [1, n-2]".into())
                }),
        }
    }

    /// A deterministic key derived from a seed and a wallet id (simulators, tests). Not for
    /// production keys: anyone with the seed has the key.
    pub fn derive(scheme: Scheme, seed: &[u8], wallet: u64) -> SigningKey {
        for counter in 0u32.. {
            let mut h = Sha256::new();
            h.update(b"tongbao derive key v1");
            h.update([scheme as u8]);
            h.update((seed.len() as u64).to_le_bytes());
            h.update(seed);
            h.update(wallet.to_le_bytes());
            h.update(counter.to_le_bytes());
            let secret: [u8; 32] = h.finalize().into();
            if let Ok(key) = SigningKey::from_secret(scheme, &secret) {
                return key;
            }
        }
        unreachable!("a valid key is found within a few tries")
    }

    pub fn scheme(&self) -> Scheme {
        match self {
            SigningKey::Ed25519(_) => Scheme::Ed25519,
            SigningKey::Sm2(_) => Scheme::Sm2,
        }
    }

    pub fn public_key_bytes(&self) -> Vec<u8> {
        match self {
            SigningKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            SigningKey::Sm2(k) => k
                .verifying_key()
                .as_affine()
                .to_encoded_point(false)
                .as_bytes()
                .to_vec(),
        }
    }

    /// Sign a message (a tx id). Both schemes sign deterministically.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                k.sign(message).to_bytes()
            }
            SigningKey::Sm2(k) => {
                use sm2::dsa::signature::Signer;
                let sig: sm2::dsa::Signature = k.sign(message);
                sig.to_bytes()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 8032 section 7.1, TEST 1-3 and TEST SHA(abc).
    #[test]
    fn rfc8032_vectors() {
        let cases = [
            ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
             "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
             "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
             "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
             "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
            ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
             "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
             "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
            ("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
             "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
             "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
             "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
        ];
        for (secret, public, message, signature) in cases {
            let key = SigningKey::from_secret(Scheme::Ed25519, &hex(secret)).unwrap();
            assert_eq!(key.public_key_bytes(), hex(public));
            let sig: [u8; 64] = hex(signature).try_into().unwrap();
            assert_eq!(key.sign(&hex(message)), sig);
            let pk = PublicKey::parse(Scheme::Ed25519, &hex(public)).unwrap();
            assert!(pk.verify(&hex(message), &sig));
            let mut bad = sig;
            bad[5] ^= 1;
            assert!(!pk.verify(&hex(message), &bad));
        }
    }

    #[test]
    fn non_canonical_s_rejected() {
        let key = SigningKey::derive(Scheme::Ed25519, b"s", 1);
        let pk = PublicKey::parse(Scheme::Ed25519, &key.public_key_bytes()).unwrap();
        let msg = [1u8; 32];
        let sig = key.sign(&msg);
        // S + L is the same scalar mod L but a non-canonical encoding.
        let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
        let l_bytes = hex("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
        let mut carry = 0u16;
        let mut s_plus_l = [0u8; 32];
        for i in 0..32 {
            let v = s.as_bytes()[i] as u16 + l_bytes[i] as u16 + carry;
            s_plus_l[i] = v as u8;
            carry = v >> 8;
        }
        let mut malleated = sig;
        malleated[32..].copy_from_slice(&s_plus_l);
        assert!(pk.verify(&msg, &sig));
        assert!(!pk.verify(&msg, &malleated));
        let items = [VerifyItem {
            key: &pk,
            message: &msg,
            signature: &malleated,
        }];
        assert_eq!(verify_many(&items), vec![false]);
    }

    #[test]
    fn small_order_key_rejected() {
        // The identity point (y = 1) has order 1.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(PublicKey::parse(Scheme::Ed25519, &identity).is_err());
    }

    #[test]
    fn batch_pinpoints_failures() {
        let keys: Vec<SigningKey> = (0..5)
            .map(|i| SigningKey::derive(Scheme::Ed25519, b"b", i))
            .collect();
        let pks: Vec<PublicKey> = keys
            .iter()
            .map(|k| PublicKey::parse(Scheme::Ed25519, &k.public_key_bytes()).unwrap())
            .collect();
        let messages: Vec<[u8; 32]> = (0..40u8).map(|i| [i; 32]).collect();
        let mut sigs: Vec<[u8; 64]> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 5].sign(m))
            .collect();
        for bad in [3usize, 17, 18, 39] {
            sigs[bad][40] ^= 0x10;
        }
        let items: Vec<VerifyItem> = (0..40)
            .map(|i| VerifyItem {
                key: &pks[i % 5],
                message: &messages[i],
                signature: &sigs[i],
            })
            .collect();
        let ok = verify_many(&items);
        for (i, &v) in ok.iter().enumerate() {
            assert_eq!(v, ![3usize, 17, 18, 39].contains(&i), "item {i}");
        }
    }

    #[test]
    fn sm2_sign_verify_and_reject() {
        let key = SigningKey::derive(Scheme::Sm2, b"sm2", 7);
        let pk = PublicKey::parse(Scheme::Sm2, &key.public_key_bytes()).unwrap();
        let msg = [9u8; 32];
        let sig = key.sign(&msg);
        assert!(pk.verify(&msg, &sig));
        let mut bad = sig;
        bad[63] ^= 1;
        assert!(!pk.verify(&msg, &bad));
        assert!(!pk.verify(&[8u8; 32], &sig));
        assert!(PublicKey::parse(Scheme::Sm2, &[4u8; 65]).is_err());
    }
}
