//! Property-based fuzzing of the transaction decoder and the batch framing (`format.rs`).
//!
//! - arbitrary bytes: `decode`, `body_len` and `unframe_batch` never panic, errors point inside
//!   the input, and whatever decodes re-encodes to exactly the input;
//! - valid transactions (every kind, counts from 0 to the format limits, edge timestamps)
//!   round-trip through `encode` / `decode` exactly, alone and framed in a batch;
//! - mutated encodings (bit flips, truncation, insertion, deletion, overwrites, count-field edits,
//!   duplicated chunks) either fail with an error whose offset is within the input or decode to a
//!   transaction whose re-encoding is the input: the encoding is canonical, no two byte strings
//!   decode to the same transaction.
//!
//! Cases per property: `TONGBAO_FUZZ_CASES` (default 2000). Each run draws a fresh seed and prints
//! it; `TONGBAO_FUZZ_SEED=<u64>` replays a run. `make fuzz` runs
//! `TONGBAO_FUZZ_CASES=20000 cargo test -q -p tongbao-core --release --test fuzz_decode`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseResult, TestRunner};
use tongbao_core::crypto::{Scheme, SigningKey};
use tongbao_core::format::{
    self, Admin, Condition, Kind, NewWallet, Output, SignatureEntry, Transaction, INPUTS_MAX,
    OUTPUTS_MAX, REFERENCE_LEN_MAX, SIGNATURES_MAX, TX_BYTES_MAX, VALIDITY_MS_MAX,
};

const DEFAULT_CASES: u32 = 2000;

fn cases() -> u32 {
    match std::env::var("TONGBAO_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("TONGBAO_FUZZ_CASES={v:?} is not a case count")),
        Err(_) => DEFAULT_CASES,
    }
}

fn base_seed() -> u64 {
    match std::env::var("TONGBAO_FUZZ_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("TONGBAO_FUZZ_SEED={v:?} is not a u64")),
        Err(_) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.as_secs() ^ (u64::from(now.subsec_nanos()) << 20) ^ u64::from(std::process::id())
        }
    }
}

/// Run `test` on `cases()` values of `strategy`, then print how many ran (straight to stderr,
/// which the test harness does not capture, so `cargo test -q` shows it).
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S::Value: std::fmt::Debug,
{
    let n = cases();
    let seed = base_seed();
    let config = Config {
        cases: n,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let ran = AtomicU64::new(0);
    let start = Instant::now();
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(value)
    });
    if let Err(e) = result {
        panic!("fuzz_decode {name} failed (replay with TONGBAO_FUZZ_SEED={seed}): {e}");
    }
    let _ = writeln!(
        std::io::stderr(),
        "fuzz_decode {name}: {n} cases passed ({} runs incl. shrinking) in {:.1} s, seed {seed}",
        ran.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );
}

/// Everything that decodes must re-encode to exactly the input (canonical encoding); every
/// error must name an offset inside the input (or its end).
fn check_decode(bytes: &[u8]) -> TestCaseResult {
    match format::decode(bytes) {
        Ok(tx) => {
            prop_assert_eq!(
                tx.encode(),
                bytes,
                "decoded {:?} does not re-encode to the input",
                tx
            );
            let body = tx.encode_body();
            prop_assert_eq!(tx.id, format::tx_id_of_body(&body));
            prop_assert_eq!(format::body_len(bytes).ok(), Some(body.len()));
            prop_assert!(bytes.len() <= TX_BYTES_MAX);
            prop_assert!(tx.inputs.len() <= INPUTS_MAX && tx.outputs.len() <= OUTPUTS_MAX);
            prop_assert!(tx.reference.len() <= REFERENCE_LEN_MAX);
            prop_assert!(tx.signatures.len() <= SIGNATURES_MAX);
            prop_assert!(tx.expiry_ms >= tx.timestamp_ms);
            prop_assert!(tx.expiry_ms - tx.timestamp_ms <= VALIDITY_MS_MAX);
        }
        Err(e) => {
            prop_assert!(
                e.offset <= bytes.len(),
                "error offset {} past the input ({} bytes): {}",
                e.offset,
                bytes.len(),
                e
            );
        }
    }
    if let Ok(n) = format::body_len(bytes) {
        prop_assert!(n <= bytes.len());
    }
    Ok(())
}

fn check_unframe(blob: &[u8]) -> TestCaseResult {
    match format::unframe_batch(blob) {
        Ok(parts) => prop_assert_eq!(format::frame_batch(&parts), blob),
        Err(e) => prop_assert!(e.offset <= blob.len(), "{e} ({} bytes)", blob.len()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// A count between `min` and `max`, mostly small, sometimes anywhere, sometimes the limit.
fn count(min: usize, max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => min..=(min + 3).min(max),
        3 => min..=(min + 20).min(max),
        1 => min..=max,
        1 => Just(max),
    ]
}

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => any::<u64>(),
        2 => 0u64..1000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

fn arb_output() -> impl Strategy<Value = Output> {
    (arb_u64(), arb_u64()).prop_map(|(owner, amount_fen)| Output {
        owner,
        amount_fen,
        condition: Condition::None,
    })
}

/// `(timestamp_ms, expiry_ms)` within the validity window, edges included.
fn arb_validity() -> impl Strategy<Value = (u64, u64)> {
    let timestamp = prop_oneof![
        4 => any::<u64>(),
        2 => 1_600_000_000_000u64..1_900_000_000_000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - VALIDITY_MS_MAX),
    ];
    let window = prop_oneof![
        4 => 0..=VALIDITY_MS_MAX,
        1 => Just(0u64),
        1 => Just(VALIDITY_MS_MAX),
    ];
    (timestamp, window).prop_map(|(ts, w)| (ts, ts.saturating_add(w)))
}

/// `N` pseudo-random bytes from one `u64` (splitmix64): the decoder does not look inside token
/// ids and signatures, and drawing them byte by byte would dominate the run time.
fn expand<const N: usize>(mut state: u64) -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
    out
}

fn arb_bytes_n<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    prop_oneof![
        8 => any::<u64>().prop_map(expand::<N>),
        1 => Just([0u8; N]),
        1 => Just([0xffu8; N]),
    ]
}

fn arb_signatures() -> impl Strategy<Value = Vec<SignatureEntry>> {
    let signer = prop_oneof![3 => any::<u64>(), 1 => 0u64..8];
    count(0, SIGNATURES_MAX)
        .prop_flat_map(move |n| vec((signer.clone(), arb_bytes_n::<64>()), n))
        .prop_map(|entries| {
            // Signers are distinct (the decoder rejects a wallet signing twice).
            let mut out: Vec<SignatureEntry> = Vec::with_capacity(entries.len());
            for (signer, signature) in entries {
                if !out.iter().any(|s| s.signer == signer) {
                    out.push(SignatureEntry { signer, signature });
                }
            }
            out
        })
}

/// A valid payment (kinds 1-3): fields within the format limits and the per-kind rules.
fn arb_tx() -> impl Strategy<Value = Transaction> {
    prop_oneof![Just(Kind::Issue), Just(Kind::Transfer), Just(Kind::Redeem)]
        .prop_flat_map(|kind| {
            let (inputs_min, inputs_max) = match kind {
                Kind::Issue => (0, 0),
                _ => (1, INPUTS_MAX),
            };
            let outputs_min = match kind {
                Kind::Issue | Kind::Transfer => 1,
                _ => 0,
            };
            (
                Just(kind),
                arb_validity(),
                count(inputs_min, inputs_max).prop_flat_map(|n| vec(arb_bytes_n::<32>(), n)),
                count(outputs_min, OUTPUTS_MAX).prop_flat_map(|n| vec(arb_output(), n)),
                count(0, REFERENCE_LEN_MAX).prop_flat_map(|n| vec(any::<u8>(), n)),
                arb_signatures(),
            )
        })
        .prop_map(
            |(kind, (timestamp_ms, expiry_ms), inputs, outputs, reference, signatures)| {
                let body = format::encode_body(
                    kind,
                    timestamp_ms,
                    expiry_ms,
                    &inputs,
                    &outputs,
                    &reference,
                );
                Transaction {
                    kind,
                    timestamp_ms,
                    expiry_ms,
                    inputs,
                    outputs,
                    reference,
                    signatures,
                    id: format::tx_id_of_body(&body),
                    admin: None,
                    lock: None,
                }
            },
        )
}

/// Valid public keys for registrations (the decoder parses them): Ed25519, SM2 uncompressed
/// and SM2 compressed.
fn arb_key() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (0u64..4, 0u8..3).prop_map(|(seed, which)| match which {
        0 => (
            1,
            SigningKey::derive(Scheme::Ed25519, b"fuzz", seed).public_key_bytes(),
        ),
        1 => (
            2,
            SigningKey::derive(Scheme::Sm2, b"fuzz", seed).public_key_bytes(),
        ),
        _ => {
            let full = SigningKey::derive(Scheme::Sm2, b"fuzz", seed).public_key_bytes();
            let mut compressed = vec![2 + (full[64] & 1)];
            compressed.extend_from_slice(&full[1..33]);
            (2, compressed)
        }
    })
}

/// A valid wallet-administration transaction (format version 2, kinds 4-8).
fn arb_admin_tx() -> impl Strategy<Value = Transaction> {
    let registration = (
        1u8..=5,
        1u8..=4,
        arb_u64(),
        arb_u64(),
        any::<u16>(),
        any::<u32>(),
        any::<bool>(),
        arb_key(),
    )
        .prop_map(
            |(kind, class, operator, parent, mcc, region, linked_account, (scheme, key))| {
                NewWallet {
                    kind,
                    class,
                    operator,
                    parent,
                    mcc,
                    region,
                    linked_account,
                    scheme,
                    key,
                }
            },
        );
    (
        prop_oneof![
            Just(Kind::Register),
            Just(Kind::SetClass),
            Just(Kind::Freeze),
            Just(Kind::Unfreeze),
            Just(Kind::Close)
        ],
        arb_validity(),
        arb_u64(),
        registration,
        1u8..=4,
        count(0, REFERENCE_LEN_MAX).prop_flat_map(|n| vec(any::<u8>(), n)),
        arb_signatures(),
    )
        .prop_map(
            |(kind, (timestamp_ms, expiry_ms), wallet, reg, class, reference, signatures)| {
                let admin = Admin {
                    wallet,
                    registration: (kind == Kind::Register).then_some(reg),
                    class: if kind == Kind::SetClass { class } else { 0 },
                };
                let body =
                    format::encode_admin_body(kind, timestamp_ms, expiry_ms, &admin, &reference);
                Transaction {
                    kind,
                    timestamp_ms,
                    expiry_ms,
                    inputs: Vec::new(),
                    outputs: Vec::new(),
                    reference,
                    signatures,
                    id: format::tx_id_of_body(&body),
                    admin: Some(admin),
                    lock: None,
                }
            },
        )
}

/// Any valid transaction: a payment (version 1) or wallet administration (version 2).
fn arb_any_tx() -> impl Strategy<Value = Transaction> {
    prop_oneof![3 => arb_tx(), 2 => arb_admin_tx()]
}

#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(Index, u8),
    Truncate(Index),
    Insert(Index, u8),
    Delete(Index),
    Overwrite(Index, u8),
    /// Write a little-endian u16 (count fields are u16; also hits u8 counts and tags).
    WriteU16(Index, u16),
    /// Copy a chunk of the input and insert it elsewhere (an extra input, output or signature
    /// whose count was not updated, or a repeated signer).
    Duplicate(Index, Index, u8),
    /// Append bytes.
    Append(Vec<u8>),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    let interesting_u16 = prop_oneof![
        Just(0u16),
        Just(1),
        Just(64),
        Just(65),
        Just(140),
        Just(141),
        Just(255),
        Just(256),
        Just(257),
        Just(1024),
        Just(1025),
        Just(u16::MAX),
        any::<u16>(),
    ];
    prop_oneof![
        4 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => any::<Index>().prop_map(Mutation::Delete),
        2 => (any::<Index>(), prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(0xff), any::<u8>()])
            .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        2 => (any::<Index>(), interesting_u16).prop_map(|(i, v)| Mutation::WriteU16(i, v)),
        2 => (any::<Index>(), any::<Index>(), prop_oneof![Just(1u8), Just(8), Just(17), Just(32), Just(72), any::<u8>()])
            .prop_map(|(from, to, len)| Mutation::Duplicate(from, to, len)),
        1 => vec(any::<u8>(), 1..80).prop_map(Mutation::Append),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::FlipBit(i, bit) if len > 0 => bytes[i.index(len)] ^= 1 << bit,
        Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
        Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        Mutation::Delete(i) if len > 0 => {
            bytes.remove(i.index(len));
        }
        Mutation::Overwrite(i, b) if len > 0 => bytes[i.index(len)] = *b,
        Mutation::WriteU16(i, v) if len > 1 => {
            let at = i.index(len - 1);
            bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
        }
        Mutation::Duplicate(from, to, n) if len > 0 => {
            let start = from.index(len);
            let end = (start + *n as usize).min(len);
            let chunk = bytes[start..end].to_vec();
            let at = to.index(len + 1);
            bytes.splice(at..at, chunk);
        }
        Mutation::Append(extra) => bytes.extend_from_slice(extra),
        _ => {}
    }
}

/// Raw bytes, some with a plausible header so the decoder gets past the first fields.
fn arb_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = (1u8..=2, 0u8..=9, arb_validity(), any::<u16>(), any::<u16>()).prop_map(
        |(version, kind, (ts, exp), a, b)| {
            let mut h = vec![version, kind];
            h.extend_from_slice(&ts.to_le_bytes());
            h.extend_from_slice(&exp.to_le_bytes());
            // Small counts half of the time, so the body parser runs on.
            h.extend_from_slice(&(if a % 2 == 0 { a % 4 } else { a }).to_le_bytes());
            h.extend_from_slice(&(if b % 2 == 0 { b % 4 } else { b }).to_le_bytes());
            h
        },
    );
    prop_oneof![
        3 => vec(any::<u8>(), 0..48),
        3 => vec(any::<u8>(), 0..600),
        3 => (header, vec(any::<u8>(), 0..400)).prop_map(|(mut h, tail)| {
            h.extend(tail);
            h
        }),
        1 => (TX_BYTES_MAX - 2..TX_BYTES_MAX + 3, any::<u8>()).prop_map(|(n, b)| vec![b; n]),
    ]
}

/// A batch blob built from random parts, then possibly corrupted.
fn arb_blob() -> impl Strategy<Value = Vec<u8>> {
    (
        vec(vec(any::<u8>(), 0..40), 0..6),
        -2i64..=2,
        vec(arb_mutation(), 0..3),
    )
        .prop_map(|(parts, count_delta, mutations)| {
            let mut blob = format::frame_batch(&parts);
            let count = (parts.len() as i64 + count_delta).max(0) as u32;
            blob[..4].copy_from_slice(&count.to_le_bytes());
            for m in &mutations {
                apply(&mut blob, m);
            }
            blob
        })
}

// ---------------------------------------------------------------------------------------------
// Properties

#[test]
fn arbitrary_bytes_never_panic() {
    fuzz("arbitrary_bytes", arb_bytes(), |bytes| {
        check_decode(&bytes)?;
        check_unframe(&bytes)
    });
}

#[test]
fn arbitrary_batch_blobs_never_panic() {
    fuzz("batch_blobs", arb_blob(), |blob| {
        check_unframe(&blob)?;
        if let Ok(parts) = format::unframe_batch(&blob) {
            for part in parts {
                check_decode(part)?;
            }
        }
        Ok(())
    });
}

#[test]
fn valid_transactions_round_trip() {
    fuzz("round_trip", arb_any_tx(), |tx| {
        let bytes = tx.encode();
        prop_assert!(bytes.len() <= TX_BYTES_MAX);
        let decoded = format::decode(&bytes);
        prop_assert_eq!(decoded.as_ref(), Ok(&tx));
        prop_assert_eq!(format::body_len(&bytes), Ok(tx.encode_body().len()));
        // Framed with a second copy and an empty slice, the batch splits back exactly.
        let blob = format::frame_batch(&[&bytes[..], &[][..], &bytes[..]]);
        let parts = format::unframe_batch(&blob);
        prop_assert_eq!(parts, Ok(vec![&bytes[..], &[][..], &bytes[..]]));
        Ok(())
    });
}

#[test]
fn mutated_encodings_error_or_stay_canonical() {
    let strategy = (arb_any_tx(), vec(arb_mutation(), 1..=4));
    let decoded_ok = AtomicU64::new(0);
    let errors = AtomicU64::new(0);
    fuzz("mutations", strategy, |(tx, mutations)| {
        let original = tx.encode();
        let mut bytes = original.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_decode(&bytes)?;
        match format::decode(&bytes) {
            Ok(decoded) => {
                decoded_ok.fetch_add(1, Ordering::Relaxed);
                // Canonical: a different byte string never decodes to the same transaction.
                prop_assert_eq!(decoded == tx, bytes == original);
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    });
    let _ = writeln!(
        std::io::stderr(),
        "fuzz_decode mutations: {} mutated encodings decoded (and re-encoded exactly), {} rejected",
        decoded_ok.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed)
    );
}

/// Every strict prefix of a valid encoding is an error pointing inside the prefix.
#[test]
fn every_truncation_of_a_valid_encoding_fails() {
    fuzz("truncations", arb_any_tx(), |tx| {
        let bytes = tx.encode();
        // All cuts for small encodings; for large ones the first and last 100 and ~64 between.
        let n = bytes.len();
        let cuts: Vec<usize> = if n <= 400 {
            (0..n).collect()
        } else {
            (0..100)
                .chain((100..n - 100).step_by((n - 200) / 64 + 1))
                .chain(n - 100..n)
                .collect()
        };
        for cut in cuts {
            match format::decode(&bytes[..cut]) {
                Ok(t) => prop_assert!(false, "prefix of {cut} bytes decodes: {t:?}"),
                Err(e) => prop_assert!(e.offset <= cut, "{e} (prefix of {cut} bytes)"),
            }
        }
        Ok(())
    });
}
