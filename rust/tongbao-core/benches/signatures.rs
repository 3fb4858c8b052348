//! Single-threaded signature verification throughput: SM2 (the `sm2` crate's path, the fast path
//! without and with per-key tables, signing) next to `openssl speed sm2` run in the same
//! process, and Ed25519 (single and `verify_many` batches) for context.
//!
//! ```text
//! cargo bench -p tongbao-core --bench signatures            # 5 rounds of 1 s per line
//! BENCH_ROUNDS=9 BENCH_SECONDS=2 cargo bench -p tongbao-core --bench signatures
//! BENCH_OPENSSL=0 cargo bench -p tongbao-core --bench signatures   # skip openssl speed
//! BENCH_FILTER=reference BENCH_OPENSSL=0 cargo bench ...   # only lines whose name contains it
//! ```
//!
//! Numbers are per core: everything here runs on one thread, and `openssl speed` (no `-multi`)
//! runs one process.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use tongbao_core::crypto::{
    sm2_verify_reference, verify_many, PublicKey, Scheme, SigningKey, VerifyItem,
};

const KEYS: usize = 16;
const MESSAGES: usize = 64;

/// Calls `f(i)` for i = 0, 1, .. for about `seconds`; returns calls per second.
fn rate(seconds: f64, f: &mut dyn FnMut(usize)) -> f64 {
    // Warm-up (and lazily built tables).
    for i in 0..8 {
        f(i);
    }
    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut done = 0usize;
    let mut batch = 1usize;
    loop {
        for _ in 0..batch {
            f(done);
            done += 1;
        }
        let elapsed = start.elapsed();
        if elapsed >= budget {
            return done as f64 / elapsed.as_secs_f64();
        }
        batch = (batch * 2).min(1024);
    }
}

/// One measured line: `f(i)` does `ops` operations.
struct Line<'a> {
    name: String,
    ops: f64,
    vs_openssl: bool,
    f: Box<dyn FnMut(usize) + 'a>,
    rates: Vec<f64>,
}

impl<'a> Line<'a> {
    fn new(name: &str, ops: f64, vs_openssl: bool, f: impl FnMut(usize) + 'a) -> Line<'a> {
        Line {
            name: name.to_string(),
            ops,
            vs_openssl,
            f: Box::new(f),
            rates: Vec::new(),
        }
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_line(name: &str, rates: &[f64], openssl: Option<f64>) {
    let m = median(rates);
    let lo = rates.iter().copied().fold(f64::MAX, f64::min);
    let hi = rates.iter().copied().fold(0.0, f64::max);
    let vs = match openssl {
        Some(o) => format!("  {:5.2}x openssl", m / o),
        None => String::new(),
    };
    println!(
        "{name:<46} {m:>8.0} /s  {:>7.1} us  [{lo:.0}..{hi:.0}]{vs}",
        1e6 / m
    );
}

/// `openssl speed -seconds N sm2` verify/s (and sign/s), if openssl is on PATH.
fn openssl_speed(seconds: u64) -> Option<(f64, f64)> {
    let out = Command::new("openssl")
        .args(["speed", "-seconds", &seconds.to_string(), "sm2"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "256 bits SM2 (CurveSM2)   0.0006s   0.0007s   1723.3   1383.7"
    let line = text.lines().find(|l| l.contains("SM2 (CurveSM2)"))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let verify: f64 = fields.last()?.parse().ok()?;
    let sign: f64 = fields.get(fields.len().checked_sub(2)?)?.parse().ok()?;
    Some((sign, verify))
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let run_openssl = std::env::var("BENCH_OPENSSL").map_or(true, |v| v != "0");
    println!(
        "single thread; {rounds} rounds, each running every line for {seconds} s in turn \
         (openssl too), so load changes hit all lines alike; median /s, time per op, \
         [min..max] over rounds; {} logical CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // SM2: KEYS keys, MESSAGES 32-byte messages (tx ids), every signature valid.
    let sm2_keys: Vec<SigningKey> = (0..KEYS)
        .map(|i| SigningKey::derive(Scheme::Sm2, b"bench sm2", i as u64))
        .collect();
    let sm2_public: Vec<Vec<u8>> = sm2_keys.iter().map(|k| k.public_key_bytes()).collect();
    let messages: Vec<[u8; 32]> = (0..MESSAGES)
        .map(|i| {
            let mut m = [0u8; 32];
            m[..8].copy_from_slice(&(i as u64).to_le_bytes());
            m[31] = 0x5a;
            m
        })
        .collect();
    let sm2_sigs: Vec<[u8; 64]> = (0..MESSAGES)
        .map(|i| sm2_keys[i % KEYS].sign(&messages[i]))
        .collect();
    let parse_sm2 = || -> Vec<PublicKey> {
        sm2_public
            .iter()
            .map(|k| PublicKey::parse(Scheme::Sm2, k).unwrap())
            .collect()
    };
    let reference_keys: Vec<sm2::dsa::VerifyingKey> = sm2_public
        .iter()
        .map(|k| sm2::dsa::VerifyingKey::from_sec1_bytes("1234567812345678", k).unwrap())
        .collect();
    let cold_keys = parse_sm2();
    let hot_keys = parse_sm2();
    for k in &hot_keys {
        if let PublicKey::Sm2(key) = k {
            key.precompute();
        }
    }

    // Ed25519 for context.
    let ed_keys: Vec<SigningKey> = (0..KEYS)
        .map(|i| SigningKey::derive(Scheme::Ed25519, b"bench ed", i as u64))
        .collect();
    let ed_public: Vec<PublicKey> = ed_keys
        .iter()
        .map(|k| PublicKey::parse(Scheme::Ed25519, &k.public_key_bytes()).unwrap())
        .collect();
    let ed_sigs: Vec<[u8; 64]> = (0..MESSAGES)
        .map(|i| ed_keys[i % KEYS].sign(&messages[i]))
        .collect();
    let items: Vec<VerifyItem> = (0..MESSAGES)
        .map(|j| VerifyItem {
            key: &ed_public[j % KEYS],
            message: &messages[j],
            signature: &ed_sigs[j],
        })
        .collect();

    let mut lines = vec![
        Line::new("SM2 verify, reference (sm2 crate)", 1.0, true, |i| {
            let j = i % MESSAGES;
            assert!(black_box(sm2_verify_reference(
                &reference_keys[j % KEYS],
                &messages[j],
                &sm2_sigs[j]
            )));
        }),
        Line::new("SM2 verify, fast (no per-key tables)", 1.0, true, |i| {
            let j = i % MESSAGES;
            let PublicKey::Sm2(key) = &cold_keys[j % KEYS] else {
                unreachable!()
            };
            assert!(black_box(
                key.verify_without_key_tables(&messages[j], &sm2_sigs[j])
            ));
        }),
        Line::new(
            "SM2 verify, fast (hot key, per-key tables)",
            1.0,
            true,
            |i| {
                let j = i % MESSAGES;
                assert!(black_box(
                    hot_keys[j % KEYS].verify(&messages[j], &sm2_sigs[j])
                ));
            },
        ),
        Line::new("SM2 parse key + verify (fast, cold key)", 1.0, true, |i| {
            let j = i % MESSAGES;
            let key = PublicKey::parse(Scheme::Sm2, &sm2_public[j % KEYS]).unwrap();
            assert!(black_box(key.verify(&messages[j], &sm2_sigs[j])));
        }),
        Line::new("SM2 parse key + build per-key tables", 1.0, false, |i| {
            let key = PublicKey::parse(Scheme::Sm2, &sm2_public[i % KEYS]).unwrap();
            if let PublicKey::Sm2(k) = &key {
                k.precompute();
            }
            black_box(key);
        }),
        Line::new("SM2 sign (sm2 crate)", 1.0, false, |i| {
            let j = i % MESSAGES;
            black_box(sm2_keys[j % KEYS].sign(&messages[j]));
        }),
        Line::new("Ed25519 verify, single", 1.0, false, |i| {
            let j = i % MESSAGES;
            assert!(black_box(
                ed_public[j % KEYS].verify(&messages[j], &ed_sigs[j])
            ));
        }),
        Line::new(
            &format!("Ed25519 verify_many, {MESSAGES} per batch"),
            MESSAGES as f64,
            false,
            |_| {
                let ok = verify_many(black_box(&items));
                assert!(ok.iter().all(|&v| v));
            },
        ),
    ];

    if let Ok(filter) = std::env::var("BENCH_FILTER") {
        lines.retain(|l| l.name.contains(&filter));
    }

    let mut openssl_verify = Vec::new();
    let mut openssl_sign = Vec::new();
    let openssl_seconds = seconds.ceil().max(1.0) as u64;
    for _ in 0..rounds {
        if run_openssl {
            if let Some((sign, verify)) = openssl_speed(openssl_seconds) {
                openssl_sign.push(sign);
                openssl_verify.push(verify);
            }
        }
        for line in &mut lines {
            let per_call = rate(seconds, &mut line.f);
            line.rates.push(per_call * line.ops);
        }
    }

    let openssl = (!openssl_verify.is_empty()).then(|| median(&openssl_verify));
    if let Some(o) = openssl {
        println!(
            "`openssl speed -seconds {openssl_seconds} sm2`, {}:",
            openssl_version()
        );
        print_line("SM2 verify, openssl speed", &openssl_verify, Some(o));
        print_line("SM2 sign, openssl speed", &openssl_sign, None);
    } else if run_openssl {
        println!("openssl speed sm2: not available");
    }
    println!("tongbao (SM2: sm2p256v1, SM3, distid 1234567812345678; messages of 32 bytes):");
    for line in &lines {
        let vs = if line.vs_openssl { openssl } else { None };
        print_line(&line.name, &line.rates, vs);
    }
}

fn openssl_version() -> String {
    Command::new("openssl")
        .arg("version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
