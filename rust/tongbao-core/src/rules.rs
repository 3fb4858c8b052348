//! Wallet rules (docs/wallet-rules.md): classes and their limits, frozen and closed wallets,
//! balance-cap sweeps. Evaluated in phase 2, O(inputs + outputs) per transaction.

use crate::format::{Transaction, WalletId};
use crate::ledger::{Ledger, Wallet, WalletKind};
use crate::status::Status;

/// Milliseconds Asia/Shanghai is ahead of UTC (no daylight saving since 1991).
pub const SHANGHAI_OFFSET_MS: u64 = 8 * 3600 * 1000;
const DAY_MS: u64 = 86_400_000;
/// Token index flag of the swept part of an output (`0x8000 | i`); outputs are < 1024.
pub const SWEEP_INDEX_FLAG: u16 = 0x8000;
/// Longest limits version string.
pub const LIMITS_VERSION_LEN_MAX: usize = 64;

/// Calendar day number in Asia/Shanghai of a Unix-ms timestamp (day 0 = 1970-01-01 +08:00).
pub fn shanghai_day(timestamp_ms: u64) -> u32 {
    (timestamp_ms.saturating_add(SHANGHAI_OFFSET_MS) / DAY_MS).min(u32::MAX as u64) as u32
}

/// Proleptic Gregorian year of a day number (days since 1970-01-01), after Howard Hinnant's
/// `civil_from_days`.
pub fn civil_year(day: u32) -> i32 {
    let z = day as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400;
    (if month <= 2 { year + 1 } else { year }) as i32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WalletStatus {
    Active = 0,
    Frozen = 1,
    Closed = 2,
}

impl WalletStatus {
    pub fn from_u8(value: u8) -> Option<WalletStatus> {
        match value {
            0 => Some(WalletStatus::Active),
            1 => Some(WalletStatus::Frozen),
            2 => Some(WalletStatus::Closed),
            _ => None,
        }
    }
}

/// Who a wallet is, beyond its key: set at registration, changed by wallet updates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalletAttrs {
    /// e-CNY class 1 (in person, no limits) to 4 (anonymous).
    pub class: u8,
    /// The operator bank's wallet that opened this one (0: none).
    pub operator: WalletId,
    /// Parent wallet of a sub-wallet (0: none).
    pub parent: WalletId,
    /// Merchant category code (merchants; 0 otherwise).
    pub mcc: u16,
    /// Region code (0: unspecified).
    pub region: u32,
    /// Has a linked deposit account at its operator (over-cap value can be swept there).
    pub linked_account: bool,
    pub status: WalletStatus,
}

impl Default for WalletAttrs {
    fn default() -> Self {
        WalletAttrs {
            class: 1,
            operator: 0,
            parent: 0,
            mcc: 0,
            region: 0,
            linked_account: false,
            status: WalletStatus::Active,
        }
    }
}

/// Outflow counters of the current Shanghai day and year.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub day: u32,
    pub day_out_fen: u64,
    pub year: i32,
    pub year_out_fen: u64,
}

impl Counters {
    fn today(&self, day: u32) -> u64 {
        if self.day == day {
            self.day_out_fen
        } else {
            0
        }
    }

    fn this_year(&self, year: i32) -> u64 {
        if self.year == year {
            self.year_out_fen
        } else {
            0
        }
    }

    fn add(&mut self, day: u32, year: i32, fen: u64) {
        self.day_out_fen = self.today(day).saturating_add(fen);
        self.day = day;
        self.year_out_fen = self.this_year(year).saturating_add(fen);
        self.year = year;
    }
}

/// Caps of one class (None: no cap), in fen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassLimits {
    pub balance_cap_fen: Option<u64>,
    pub payment_cap_fen: Option<u64>,
    pub daily_cap_fen: Option<u64>,
    pub annual_cap_fen: Option<u64>,
}

fn min_cap(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl ClassLimits {
    fn tightest(&self, other: &ClassLimits) -> ClassLimits {
        ClassLimits {
            balance_cap_fen: min_cap(self.balance_cap_fen, other.balance_cap_fen),
            payment_cap_fen: min_cap(self.payment_cap_fen, other.payment_cap_fen),
            daily_cap_fen: min_cap(self.daily_cap_fen, other.daily_cap_fen),
            annual_cap_fen: min_cap(self.annual_cap_fen, other.annual_cap_fen),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OverCap {
    Sweep = 1,
    Reject = 2,
}

/// A versioned limits table (validated in Python from the config file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    pub version: String,
    pub over_balance_cap: OverCap,
    /// Classes 1 to 4.
    pub classes: [ClassLimits; 4],
    pub sub_wallet: ClassLimits,
}

impl Limits {
    /// No limits at all: what a ledger has until `set_limits`.
    pub fn none() -> Limits {
        Limits {
            version: "none".into(),
            over_balance_cap: OverCap::Reject,
            classes: [ClassLimits::default(); 4],
            sub_wallet: ClassLimits::default(),
        }
    }

    /// The effective caps of a wallet.
    pub fn of(&self, wallet: &Wallet) -> ClassLimits {
        if matches!(wallet.kind, WalletKind::CentralBank | WalletKind::Operator) {
            return ClassLimits::default();
        }
        let class = self.classes[(wallet.attrs.class.clamp(1, 4) - 1) as usize];
        if wallet.attrs.parent != 0 {
            class.tightest(&self.sub_wallet)
        } else {
            class
        }
    }
}

/// What a transaction does to counters and where swept value goes, decided before applying.
#[derive(Debug, Default)]
pub struct Plan {
    /// (wallet, outflow) for every wallet whose counters grow (payers and their parents).
    pub outflows: Vec<(WalletId, u64)>,
    /// Per output index: (credited to the owner, swept to the owner's operator).
    pub credits: Vec<(u64, u64)>,
    pub swept_fen: u64,
}

/// Sum amounts per wallet id (sorted by id).
fn per_wallet(items: impl Iterator<Item = (WalletId, u64)>) -> Vec<(WalletId, u64)> {
    let mut v: Vec<(WalletId, u64)> = items.collect();
    v.sort_unstable_by_key(|(w, _)| *w);
    let mut out: Vec<(WalletId, u64)> = Vec::with_capacity(v.len());
    for (w, a) in v {
        match out.last_mut() {
            Some((last, sum)) if *last == w => *sum += a,
            _ => out.push((w, a)),
        }
    }
    out
}

fn lookup(sorted: &[(WalletId, u64)], w: WalletId) -> u64 {
    sorted
        .binary_search_by_key(&w, |(id, _)| *id)
        .map(|i| sorted[i].1)
        .unwrap_or(0)
}

/// Check the wallet rules for a transfer or redeem whose other checks passed. `owners` are the
/// input owners with each input's value. Returns the plan, or the failing status.
pub fn check(
    ledger: &Ledger,
    tx: &Transaction,
    inputs: &[(WalletId, u64)],
    now_ms: u64,
) -> Result<Plan, Status> {
    let wallet = |w: WalletId| &ledger.wallets[&w];
    let spent = per_wallet(inputs.iter().copied());
    let received = per_wallet(tx.outputs.iter().map(|o| (o.owner, o.amount_fen)));
    if spent
        .iter()
        .any(|(w, _)| wallet(*w).attrs.status == WalletStatus::Frozen)
    {
        return Err(Status::WalletFrozen);
    }
    if received
        .iter()
        .any(|(w, _)| wallet(*w).attrs.status == WalletStatus::Closed)
    {
        return Err(Status::WalletClosed);
    }
    let limits = &ledger.limits;
    let day = shanghai_day(now_ms);
    let year = civil_year(day);
    // Outflow of each payer; a sub-wallet's outflow also counts for its parent.
    let mut outflows: Vec<(WalletId, u64)> = Vec::new();
    for &(w, out) in &spent {
        let outflow = out.saturating_sub(lookup(&received, w));
        if outflow == 0 {
            continue;
        }
        if let Some(cap) = limits.of(wallet(w)).payment_cap_fen {
            if outflow > cap {
                return Err(Status::LimitPayment);
            }
        }
        outflows.push((w, outflow));
        let parent = wallet(w).attrs.parent;
        if parent != 0 {
            outflows.push((parent, outflow));
        }
    }
    let outflows = per_wallet(outflows.into_iter());
    for (cap_of, used_of, status) in [
        (
            (|l: &ClassLimits| l.daily_cap_fen) as fn(&ClassLimits) -> Option<u64>,
            (|c: &Counters, d: u32, _: i32| c.today(d)) as fn(&Counters, u32, i32) -> u64,
            Status::LimitDaily,
        ),
        (
            |l: &ClassLimits| l.annual_cap_fen,
            |c: &Counters, _: u32, y: i32| c.this_year(y),
            Status::LimitAnnual,
        ),
    ] {
        for &(w, outflow) in &outflows {
            let target = wallet(w);
            if let Some(cap) = cap_of(&limits.of(target)) {
                if used_of(&target.counters, day, year).saturating_add(outflow) > cap {
                    return Err(status);
                }
            }
        }
    }
    // Balance caps: the excess of what a wallet's balance would become is swept or refused.
    let mut credits: Vec<(u64, u64)> = tx.outputs.iter().map(|o| (o.amount_fen, 0)).collect();
    let mut swept_fen = 0u64;
    for &(w, incoming) in &received {
        if !ledger.is_local(w) {
            // Its balance lives on its home shard, which applies the cap (credits.rs).
            continue;
        }
        let target = wallet(w);
        let Some(cap) = limits.of(target).balance_cap_fen else {
            continue;
        };
        let before = target.balance_fen;
        let after = before - lookup(&spent, w) + incoming;
        let excess = excess_fen(cap, before, after);
        if excess == 0 {
            continue;
        }
        if !can_sweep(ledger, target) {
            return Err(Status::LimitBalance);
        }
        // Credit this wallet's outputs in order; what is left of the room goes, the rest is swept.
        let mut room = incoming - excess;
        for (i, o) in tx.outputs.iter().enumerate() {
            if o.owner != w {
                continue;
            }
            let credit = o.amount_fen.min(room);
            room -= credit;
            credits[i] = (credit, o.amount_fen - credit);
        }
        swept_fen += excess;
    }
    Ok(Plan {
        outflows,
        credits,
        swept_fen,
    })
}

/// The balance-cap rule: what a wallet's balance `after` a transaction exceeds the larger of
/// its cap and its balance `before` by (0: within the rule). Nondecreasing in `before` for a
/// fixed inflow `after - before`, so a bound on `before` bounds the excess ([`cap_risk`]).
pub(crate) fn excess_fen(cap_fen: u64, before_fen: u64, after_fen: u64) -> u64 {
    after_fen.saturating_sub(cap_fen.max(before_fen))
}

/// What the balance-cap rule may do to `incoming_fen` paid to `wallet` (by another wallet)
/// when its balance at that point is at most `balance_max_fen` (a client's bound, e.g. the
/// builder's: its balance now plus everything paid to it since).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapRisk {
    /// Credited in full, as built, whatever the balance up to the bound.
    None,
    /// The transaction settles but the receipt may be smaller than built or absent: part or
    /// all of it may be swept to the operator, or (a wallet homed on another shard) it is
    /// credited there.
    Sweep,
    /// The transaction may be refused with `LIMIT_BALANCE`.
    Reject,
}

/// The [`CapRisk`] of a payment, by the rule [`check`] applies. Panics on an unknown wallet.
pub fn cap_risk(
    ledger: &Ledger,
    wallet: WalletId,
    balance_max_fen: u64,
    incoming_fen: u64,
) -> CapRisk {
    if !ledger.is_local(wallet) {
        return CapRisk::Sweep;
    }
    let target = &ledger.wallets[&wallet];
    let Some(cap) = ledger.limits.of(target).balance_cap_fen else {
        return CapRisk::None;
    };
    let after_max_fen = balance_max_fen.saturating_add(incoming_fen);
    if excess_fen(cap, balance_max_fen, after_max_fen) == 0 {
        CapRisk::None
    } else if can_sweep(ledger, target) {
        CapRisk::Sweep
    } else {
        CapRisk::Reject
    }
}

/// Whether value over `wallet`'s balance cap can be swept to its linked deposit account: the
/// limits say "sweep", it has a linked account and an operator wallet that is not closed.
/// What `wallet` may still pay out at `now_ms` under its caps, as [`check`] will judge it: the
/// per-payment cap, and the room left under the daily and annual caps of the wallet and, for
/// a sub-wallet, of its parent (`None`: no cap). `None` for an unknown wallet.
pub fn outflow_room(
    ledger: &Ledger,
    wallet_id: WalletId,
    now_ms: u64,
) -> Option<(Option<u64>, Option<u64>)> {
    let wallet = ledger.wallets.get(&wallet_id)?;
    let limits = &ledger.limits;
    let day = shanghai_day(now_ms);
    let year = civil_year(day);
    let mut room: Option<u64> = None;
    let mut payers = vec![wallet];
    if wallet.attrs.parent != 0 {
        payers.extend(ledger.wallets.get(&wallet.attrs.parent));
    }
    for w in payers {
        let caps = limits.of(w);
        if let Some(cap) = caps.daily_cap_fen {
            room = min_cap(room, Some(cap.saturating_sub(w.counters.today(day))));
        }
        if let Some(cap) = caps.annual_cap_fen {
            room = min_cap(room, Some(cap.saturating_sub(w.counters.this_year(year))));
        }
    }
    Some((limits.of(wallet).payment_cap_fen, room))
}

pub fn can_sweep(ledger: &Ledger, wallet: &Wallet) -> bool {
    let operator = wallet.attrs.operator;
    ledger.limits.over_balance_cap == OverCap::Sweep
        && wallet.attrs.linked_account
        && operator != 0
        && ledger
            .wallets
            .get(&operator)
            .is_some_and(|op| op.attrs.status != WalletStatus::Closed)
}

/// What a payer needs to know about many payees before paying them, in one pass: per id its
/// status (`None` if unknown), balance, effective balance cap and whether an excess over the
/// cap would be swept rather than refused (payroll pre-flight).
pub fn payee_states(ledger: &Ledger, ids: &[WalletId]) -> Vec<Option<PayeeState>> {
    ids.iter()
        .map(|id| {
            ledger.wallets.get(id).map(|w| PayeeState {
                status: w.attrs.status,
                balance_fen: w.balance_fen,
                balance_cap_fen: ledger.limits.of(w).balance_cap_fen,
                can_sweep: can_sweep(ledger, w),
            })
        })
        .collect()
}

/// One payee as [`payee_states`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayeeState {
    pub status: WalletStatus,
    pub balance_fen: u64,
    pub balance_cap_fen: Option<u64>,
    pub can_sweep: bool,
}

/// Record a plan's outflows in the counters (the tokens are moved by the ledger).
pub fn record_outflows(ledger: &mut Ledger, plan: &Plan, now_ms: u64) {
    let day = shanghai_day(now_ms);
    let year = civil_year(day);
    for &(w, outflow) in &plan.outflows {
        if let Some(target) = ledger.wallets.get_mut(&w) {
            target.counters.add(day, year, outflow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shanghai_midnight_starts_a_new_day_and_year() {
        // 2025-12-31T16:00:00Z is 2026-01-01 00:00 in Shanghai.
        let new_year_ms: u64 = 1_767_196_800_000;
        assert_eq!(shanghai_day(new_year_ms) - shanghai_day(new_year_ms - 1), 1);
        assert_eq!(civil_year(shanghai_day(new_year_ms - 1)), 2025);
        assert_eq!(civil_year(shanghai_day(new_year_ms)), 2026);
        assert_eq!(civil_year(0), 1970);
        // 2024 is a leap year: 2024-12-31 is day 20088, 2025-01-01 is 20089.
        assert_eq!(civil_year(20_088), 2024);
        assert_eq!(civil_year(20_089), 2025);
    }

    #[test]
    fn excess_is_over_the_larger_of_cap_and_balance_before_and_grows_with_it() {
        assert_eq!(excess_fen(100, 40, 100), 0);
        assert_eq!(excess_fen(100, 40, 130), 30);
        assert_eq!(excess_fen(100, 150, 140), 0); // over the cap already, but falling
        assert_eq!(excess_fen(100, 150, 170), 20);
        for before in 0..300u64 {
            assert!(
                excess_fen(100, before, before + 25) <= excess_fen(100, before + 1, before + 26)
            );
        }
    }

    #[test]
    fn per_wallet_sums_and_sorts() {
        let v = per_wallet([(3, 1), (1, 2), (3, 4)].into_iter());
        assert_eq!(v, vec![(1, 2), (3, 5)]);
        assert_eq!(lookup(&v, 3), 5);
        assert_eq!(lookup(&v, 2), 0);
    }
}
