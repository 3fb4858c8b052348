//! `Ledger::settle` throughput without Python: 1-input 2-output Ed25519 payments, signatures off
//! (the trusted-replay path) and on, one thread. A steady state: a pool of payers pays a pool of
//! merchants, batch after batch, on one ledger; the batches are built (and signed) first on a
//! twin ledger, so only settlement is timed. Also a good target for `perf record`.
//!
//! ```text
//! cargo bench -p tongbao-core --bench settle                  # sig-off and sig-on
//! BENCH_BATCHES=200 BENCH_SIG=off cargo bench -p tongbao-core --bench settle
//! ```
//! Every batch must settle all OK; supply and the state digest are checked against the twin.

use std::time::Instant;

use tongbao_core::builder::{build_payments, Keyring, Payment};
use tongbao_core::format::{self, Kind, Output};
use tongbao_core::{
    Ledger, LedgerConfig, PublicKey, Registration, Scheme, WalletAttrs, WalletKind,
};

const CB: u64 = 1;
const OP: u64 = 2;
const PERSON_BASE: u64 = 1_000;
const MERCHANT_BASE: u64 = 1_000_000_000;
const T0: u64 = 1_000_000;

/// CPU time of this process so far (all threads), from /proc (Linux; 0 elsewhere): less
/// disturbed than wall time when other processes share the cores.
fn cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Setup {
    keyring: Keyring,
    registrations: Vec<Registration>,
    issue: Vec<u8>,
}

fn setup(people: usize) -> Setup {
    let mut keyring = Keyring::new();
    let mut registrations = Vec::new();
    let groups: [(Vec<u64>, WalletKind); 4] = [
        (vec![CB], WalletKind::CentralBank),
        (vec![OP], WalletKind::Operator),
        (
            (0..people as u64).map(|i| PERSON_BASE + i).collect(),
            WalletKind::Personal,
        ),
        (
            (0..people as u64).map(|i| MERCHANT_BASE + i).collect(),
            WalletKind::Merchant,
        ),
    ];
    for (ids, kind) in groups {
        let publics = keyring.derive_many(Scheme::Ed25519, b"settle bench", &ids);
        for (id, public) in ids.iter().zip(publics) {
            registrations.push(Registration {
                id: *id,
                kind,
                key: PublicKey::parse(Scheme::Ed25519, &public).unwrap(),
                attrs: WalletAttrs::default(),
            });
        }
    }
    let body = format::encode_body(
        Kind::Issue,
        T0,
        T0 + 1,
        &[],
        &[Output {
            owner: OP,
            amount_fen: 10u64.pow(15),
            condition: format::Condition::None,
        }],
        &[],
    );
    let issue = keyring.sign_many(&[body], &[vec![CB]]).unwrap().remove(0);
    Setup {
        keyring,
        registrations,
        issue,
    }
}

fn ledger(s: &Setup, verify: bool) -> Ledger {
    let mut l = Ledger::new(LedgerConfig {
        threads: 1,
        verify_signatures: verify,
    })
    .unwrap();
    l.register_wallets(s.registrations.clone()).unwrap();
    let (st, _) = l.settle(&[&s.issue], T0).unwrap();
    assert!(st.iter().all(|s| *s == tongbao_core::Status::Ok));
    l
}

fn main() {
    let people = env("BENCH_PEOPLE", 4096);
    let batches = env("BENCH_BATCHES", 40);
    let repeat = env("BENCH_REPEAT", 1);
    let sig = std::env::var("BENCH_SIG").unwrap_or_else(|_| "both".into());
    let s = setup(people);
    // Build every batch on a twin ledger: funding, then `batches` rounds of payments.
    let mut twin = ledger(&s, false);
    let mut all: Vec<(Vec<Vec<u8>>, u64)> = Vec::new();
    let fund: Vec<Payment> = (0..people as u64)
        .map(|i| Payment {
            payer: OP,
            payee: PERSON_BASE + i,
            amount_fen: 1_000_000,
        })
        .collect();
    let mut ts = T0;
    let built = build_payments(&twin, &s.keyring, &fund, ts, ts + 3_600_000, &[], false).unwrap();
    twin.settle(&built.transactions, ts).unwrap();
    all.push((built.transactions, ts));
    for b in 0..batches {
        ts += 1;
        let pay: Vec<Payment> = (0..people as u64)
            .map(|i| Payment {
                payer: PERSON_BASE + i,
                payee: MERCHANT_BASE + (i + b as u64) % people as u64,
                amount_fen: 1 + (i + b as u64) % 97,
            })
            .collect();
        let built =
            build_payments(&twin, &s.keyring, &pay, ts, ts + 3_600_000, &[], false).unwrap();
        let (st, _) = twin.settle(&built.transactions, ts).unwrap();
        assert!(st.iter().all(|s| *s == tongbao_core::Status::Ok));
        all.push((built.transactions, ts));
    }
    let digest = twin.state_digest();
    for verify in [false, true] {
        if (verify && sig == "off") || (!verify && sig == "on") {
            continue;
        }
        for _ in 0..repeat {
            settle_all(&s, &all, verify, &digest);
        }
    }
}

/// Settle every payment batch on a fresh funded ledger; print the rate.
fn settle_all(s: &Setup, all: &[(Vec<Vec<u8>>, u64)], verify: bool, digest: &[u8; 32]) {
    {
        let mut l = ledger(s, verify);
        let (fund, ts) = &all[0];
        l.settle(fund, *ts).unwrap();
        let start = Instant::now();
        let cpu_start = cpu_ns();
        let mut n = 0usize;
        for (batch, ts) in &all[1..] {
            let (st, _) = l.settle(batch, *ts).unwrap();
            assert!(st.iter().all(|s| *s == tongbao_core::Status::Ok));
            n += batch.len();
        }
        let secs = start.elapsed().as_secs_f64();
        let cpu_us = (cpu_ns() - cpu_start) as f64 / 1e3;
        assert_eq!(&l.state_digest(), digest);
        l.check_invariants().unwrap();
        println!(
            "settle 1 thread, signatures {}: {n} tx in {secs:.3} s = {:.0} tx/s ({:.2} us/tx wall, {:.2} us/tx CPU), {} unspent tokens",
            if verify { "on " } else { "off" },
            n as f64 / secs,
            secs * 1e6 / n as f64,
            cpu_us / n as f64,
            l.token_count()
        );
    }
}
