//! End-of-day report per operator bank for one Asia/Shanghai calendar day, computed from a
//! ledger directory's log (docs/decisions/0005-wallet-admin-and-reports.md).
//!
//! The log is replayed from its first record, read-only, trusting the logged signature verdicts
//! (as recovery does). Batches before the day replay as they settled; in the day, the
//! transactions the log records as OK are applied one at a time (those with any other status
//! changed nothing), so each one's effect is observed exactly: who paid, who received, what was
//! swept, issued or redeemed. Each must come out OK again, or the log is reported corrupt.
//! Nothing on the settlement path changes and any past day can be reported.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{decode, token_id, Kind, WalletId};
use crate::ledger::{Ledger, LedgerConfig, SigMode, WalletKind};
use crate::rules::{shanghai_day, SWEEP_INDEX_FLAG};
use crate::status::Status;
use crate::wal::{
    apply_state_record, corrupt, decode_payload, io_err, parse_numbered, read_record, replay_batch,
    valid_record_after, Record, RecordRead,
};

/// One operator bank's day (or party: the central bank, or 0 for wallets with no operator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorDay {
    pub operator: WalletId,
    /// End of day: (wallet kind, class, status) -> number of wallets it operates.
    pub wallets: BTreeMap<(u8, u8, u8), u64>,
    /// Settled transactions it took part in (as payer, issue recipient, redeemer or signer of
    /// administration), by kind code.
    pub transactions_ok: BTreeMap<u8, u64>,
    /// Transactions signed by its wallets that the log records as rejected.
    pub transactions_rejected: u64,
    /// Value received from / paid to other parties' wallets (transfers).
    pub value_in_fen: u128,
    pub value_out_fen: u128,
    /// Value paid between its own wallets (change excluded).
    pub internal_fen: u128,
    /// Over-cap value swept from its customers into its wallet (deposits).
    pub swept_fen: u128,
    /// Issued to it by the central bank; redeemed (destroyed) by it.
    pub issued_fen: u128,
    pub redeemed_fen: u128,
    /// Digital cash in its wallets at the start and end of the day: its position against the
    /// central bank (each fen is backed by central-bank money in the deposit-based model).
    pub holdings_start_fen: u128,
    pub holdings_end_fen: u128,
}

/// The day's report: per-operator figures and the gross settlement matrix between parties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayReport {
    /// Shanghai calendar day number (days since 1970-01-01 +08:00).
    pub day: u32,
    pub batches: u64,
    pub transactions: u64,
    pub status_counts: [u64; Status::SLOTS],
    pub operators: BTreeMap<WalletId, OperatorDay>,
    /// (payer party, payee party) -> value moved between them in the day.
    pub gross_fen: BTreeMap<(WalletId, WalletId), u128>,
}

impl Default for DayReport {
    fn default() -> Self {
        DayReport {
            day: 0,
            batches: 0,
            transactions: 0,
            status_counts: [0; Status::SLOTS],
            operators: BTreeMap::new(),
            gross_fen: BTreeMap::new(),
        }
    }
}

impl DayReport {
    /// Bilateral net matrix: for each pair, what one owes the other after netting.
    pub fn net_fen(&self) -> BTreeMap<(WalletId, WalletId), u128> {
        let mut out = BTreeMap::new();
        for (&(a, b), &v) in &self.gross_fen {
            let back = self.gross_fen.get(&(b, a)).copied().unwrap_or(0);
            if v > back {
                out.insert((a, b), v - back);
            }
        }
        out
    }
}

/// The party a wallet belongs to: operator and central-bank wallets are their own party,
/// customers belong to their operator (0: none).
fn party(ledger: &Ledger, wallet: WalletId) -> WalletId {
    match ledger.wallet(wallet) {
        Some(w) if matches!(w.kind, WalletKind::Operator | WalletKind::CentralBank) => wallet,
        Some(w) => w.attrs.operator,
        None => 0,
    }
}

fn holdings(ledger: &Ledger) -> BTreeMap<WalletId, u128> {
    let mut out = BTreeMap::new();
    for (id, w) in &ledger.wallets {
        *out.entry(party(ledger, *id)).or_insert(0) += w.balance_fen as u128;
    }
    out
}

/// Log segments `(first lsn, path)` of a directory, sorted (read-only: nothing is removed).
fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(lsn) = parse_numbered(&name, "wal-", ".log") {
            out.push((lsn, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The end-of-day report of Shanghai day `day` from the log in `dir`. Errors: no log from lsn
/// 1, a corrupt record (file and offset named), or a day's transaction that does not settle
/// again as logged.
pub fn day_report(dir: &Path, day: u32, threads: usize) -> Result<DayReport> {
    let mut ledger = Ledger::new(LedgerConfig {
        threads,
        verify_signatures: false,
    })?;
    let mut report = DayReport {
        day,
        ..Default::default()
    };
    let segs = segments(dir)?;
    match segs.first() {
        Some((1, _)) => {}
        Some((first, path)) => {
            return Err(Error::Corrupt(format!(
                "{}: the log starts at lsn {first}; a report needs every segment from lsn 1",
                path.display()
            )))
        }
        None => {
            return Err(Error::InvalidArgument(format!(
                "{}: no ledger log here",
                dir.display()
            )))
        }
    }
    let mut start: Option<BTreeMap<WalletId, u128>> = None;
    let mut next_lsn = 1u64;
    'segments: for (_, path) in &segs {
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| io_err(path, e))?;
        let mut offset = 0usize;
        let mut pending: Option<Input<'_>> = None;
        loop {
            let (lsn, payload, end) = match read_record(&buf, offset) {
                RecordRead::Record { lsn, payload, end } => (lsn, payload, end),
                RecordRead::End => break,
                // Damage followed by valid records is corruption (as for recovery and audit);
                // a torn tail was never acknowledged: the report stops there.
                RecordRead::Damaged { offset, reason } => {
                    if valid_record_after(&buf, offset) {
                        return Err(corrupt(path, offset, &reason));
                    }
                    break;
                }
            };
            if lsn != next_lsn {
                return Err(corrupt(path, offset, &format!("expected lsn {next_lsn}")));
            }
            next_lsn += 1;
            let record = decode_payload(payload, path, offset)?;
            let outcome = match record {
                Record::Outcome {
                    seq,
                    statuses,
                    receipt_hash,
                } => match pending.take() {
                    Some(p) if p.0 == seq => Some((p, Some((statuses, receipt_hash)))),
                    _ => return Err(corrupt(path, offset, "outcome without its input")),
                },
                other => {
                    let flushed = pending.take().map(|p| (p, None));
                    if let Some((p, statuses)) = flushed {
                        if batch(&mut ledger, &mut report, &mut start, p, statuses, path)? {
                            break 'segments;
                        }
                    }
                    if let Record::Input {
                        seq,
                        timestamp_ms,
                        txs,
                    } = other
                    {
                        pending = Some((seq, timestamp_ms, txs, offset));
                    } else {
                        apply_state_record(&mut ledger, other, path, offset)?;
                    }
                    None
                }
            };
            if let Some((p, statuses)) = outcome {
                if batch(&mut ledger, &mut report, &mut start, p, statuses, path)? {
                    break 'segments;
                }
            }
            offset = end;
        }
        if let Some(p) = pending.take() {
            if batch(&mut ledger, &mut report, &mut start, p, None, path)? {
                break;
            }
        }
    }
    let start = start.unwrap_or_else(|| holdings(&ledger));
    let end = holdings(&ledger);
    for (id, w) in &ledger.wallets {
        let p = party(&ledger, *id);
        let op = entry(&mut report, p);
        *op.wallets
            .entry((w.kind as u8, w.attrs.class, w.attrs.status as u8))
            .or_insert(0) += 1;
    }
    for (p, v) in &start {
        entry(&mut report, *p).holdings_start_fen = *v;
    }
    for (p, v) in &end {
        entry(&mut report, *p).holdings_end_fen = *v;
    }
    Ok(report)
}

fn entry(report: &mut DayReport, party: WalletId) -> &mut OperatorDay {
    report
        .operators
        .entry(party)
        .or_insert_with(|| OperatorDay {
            operator: party,
            ..Default::default()
        })
}

/// A logged batch input and, when the log has it, its outcome (statuses, receipt hash).
type Input<'a> = (u64, u64, Vec<&'a [u8]>, usize);
type Outcome = Option<(Vec<Status>, [u8; 32])>;

/// Replay or observe one batch; true once past the day (stop reading).
fn batch(
    ledger: &mut Ledger,
    report: &mut DayReport,
    start: &mut Option<BTreeMap<WalletId, u128>>,
    input: Input<'_>,
    outcome: Outcome,
    path: &Path,
) -> Result<bool> {
    let (seq, timestamp_ms, txs, offset) = input;
    let day = shanghai_day(timestamp_ms);
    if day > report.day {
        return Ok(true);
    }
    if day < report.day {
        // As recovery replays it: logged verdicts, or (no outcome) every signature verified.
        let logged = outcome.as_ref().map(|(s, h)| (s.as_slice(), *h));
        replay_batch(
            ledger,
            (seq, timestamp_ms, &txs),
            logged,
            logged.is_none(),
            path,
            offset,
        )?;
        return Ok(false);
    }
    if start.is_none() {
        *start = Some(holdings(ledger));
    }
    report.batches += 1;
    // The batch's deadline actions (locks.rs) open it, once, before its transactions. What they
    // move between parties (the beneficiary's part) is booked as a flow, like a capture.
    let due = ledger
        .locks
        .deadlines
        .first()
        .is_some_and(|&(deadline_ms, _)| deadline_ms < timestamp_ms);
    let before = due.then(|| holdings(ledger));
    ledger.lapse_locks(timestamp_ms);
    if let Some(before) = before {
        let after = holdings(ledger);
        let parties: std::collections::BTreeSet<WalletId> =
            before.keys().chain(after.keys()).copied().collect();
        let (mut payers, mut payees) = (Vec::new(), Vec::new());
        for p in parties {
            let (b, a) = (
                before.get(&p).copied().unwrap_or(0),
                after.get(&p).copied().unwrap_or(0),
            );
            if b > a {
                payers.push((p, b - a));
            } else if a > b {
                payees.push((p, a - b));
            }
        }
        book_flows(report, payers, payees);
    }
    if let Some((statuses, _)) = &outcome {
        if statuses.len() != txs.len() {
            return Err(corrupt(
                path,
                offset,
                "status count differs from transaction count",
            ));
        }
    }
    for (i, raw) in txs.iter().enumerate() {
        let logged = outcome.as_ref().map(|(s, _)| s[i]);
        let status = match logged {
            Some(s) if s != Status::Ok => s,
            _ => observe_one(ledger, report, raw, timestamp_ms, logged)
                .map_err(|why| corrupt(path, offset, &format!("batch {seq}: {why}")))?,
        };
        report.transactions += 1;
        report.status_counts[status as usize] += 1;
        if status != Status::Ok {
            count_rejected(ledger, report, raw);
        }
    }
    Ok(false)
}

/// Book value moved from `payers` to `payees` (party, net amount), matched in party id order
/// (exact for the usual single payer): the gross matrix and each side's value out and in.
fn book_flows(
    report: &mut DayReport,
    mut payers: Vec<(WalletId, u128)>,
    mut payees: Vec<(WalletId, u128)>,
) {
    let (mut a, mut b) = (0, 0);
    while a < payers.len() && b < payees.len() {
        let v = payers[a].1.min(payees[b].1);
        *report
            .gross_fen
            .entry((payers[a].0, payees[b].0))
            .or_insert(0) += v;
        entry(report, payers[a].0).value_out_fen += v;
        entry(report, payees[b].0).value_in_fen += v;
        payers[a].1 -= v;
        payees[b].1 -= v;
        if payers[a].1 == 0 {
            a += 1;
        }
        if payees[b].1 == 0 {
            b += 1;
        }
    }
}

fn count_rejected(ledger: &Ledger, report: &mut DayReport, raw: &[u8]) {
    if let Ok(tx) = decode(raw) {
        if let Some(s) = tx.signatures.first() {
            let p = party(ledger, s.signer);
            entry(report, p).transactions_rejected += 1;
        }
    }
}

/// Apply one transaction, alone, and record its flows. `logged`: OK as the log records it
/// (signatures trusted; it must settle OK again), or None for a batch whose outcome never
/// reached the log (signatures verified; whatever status it gets is returned).
fn observe_one(
    ledger: &mut Ledger,
    report: &mut DayReport,
    raw: &[u8],
    timestamp_ms: u64,
    logged: Option<Status>,
) -> std::result::Result<Status, String> {
    let tx = match decode(raw) {
        Ok(tx) => tx,
        Err(_) if logged.is_none() => return Ok(Status::Malformed),
        Err(e) => return Err(format!("logged OK but malformed: {e}")),
    };
    // Party deltas: value in (+) and out (-) of each party's wallets.
    let mut out_by: BTreeMap<WalletId, u128> = BTreeMap::new();
    for input in &tx.inputs {
        if let Some((owner, value)) = ledger.token(input) {
            *out_by.entry(party(ledger, owner)).or_insert(0) += value as u128;
        }
    }
    let signers: Vec<WalletId> = tx.signatures.iter().map(|s| s.signer).collect();
    let signer_party = signers.first().map(|s| party(ledger, *s));
    let mode = match logged {
        Some(_) => SigMode::Replay(&[Status::Ok]),
        None => SigMode::Verify,
    };
    let (statuses, _) = ledger
        .settle_txs(&[raw], timestamp_ms, mode)
        .map_err(|e| e.to_string())?;
    match (statuses[0], logged) {
        (Status::Ok, _) => {}
        (other, None) => return Ok(other),
        (other, Some(_)) => return Err(format!("logged OK, settles {}", other.name())),
    }
    let mut in_by: BTreeMap<WalletId, u128> = BTreeMap::new();
    let mut to_others: BTreeMap<WalletId, u128> = BTreeMap::new();
    for (i, o) in tx.outputs.iter().enumerate() {
        let p = party(ledger, o.owner);
        let credit = ledger.token(&token_id(&tx.id, i as u16)).map_or(0, |t| t.1);
        let swept = ledger
            .token(&token_id(&tx.id, SWEEP_INDEX_FLAG | i as u16))
            .map_or(0, |t| t.1);
        *in_by.entry(p).or_insert(0) += (credit + swept) as u128;
        if swept > 0 {
            entry(report, p).swept_fen += swept as u128;
        }
        if !signers.contains(&o.owner) {
            *to_others.entry(p).or_insert(0) += o.amount_fen as u128;
        }
    }
    if matches!(tx.kind, Kind::Capture | Kind::Release) {
        // No outputs in the body: what it created is the beneficiary's part (index 0, or the
        // payer's whole value for a release), its sweep, and the payer's rest (index 1). (On a
        // sharded log a part exported to another shard is not a local token: each shard's
        // report sees its own side.)
        for index in [0, SWEEP_INDEX_FLAG, 1] {
            if let Some((owner, value)) = ledger.token(&token_id(&tx.id, index)) {
                let p = party(ledger, owner);
                *in_by.entry(p).or_insert(0) += value as u128;
                if index == SWEEP_INDEX_FLAG {
                    entry(report, p).swept_fen += value as u128;
                }
            }
        }
    }
    let mut involved: Vec<WalletId> = match tx.kind {
        Kind::Issue => in_by.keys().copied().collect(),
        Kind::Transfer
        | Kind::Redeem
        | Kind::Reclaim
        | Kind::Lock
        | Kind::Capture
        | Kind::Release => out_by.keys().copied().collect(),
        _ => signer_party.into_iter().collect(),
    };
    involved.dedup();
    for p in involved {
        *entry(report, p)
            .transactions_ok
            .entry(tx.kind as u8)
            .or_insert(0) += 1;
    }
    match tx.kind {
        Kind::Issue => {
            for (p, v) in &in_by {
                entry(report, *p).issued_fen += v;
            }
        }
        Kind::Redeem => {
            for (p, v) in &out_by {
                let back = in_by.get(p).copied().unwrap_or(0);
                entry(report, *p).redeemed_fen += v - back;
            }
        }
        // A reclaim moves value from the holders to the reclaimer, as a transfer does.
        Kind::Transfer | Kind::Reclaim | Kind::Lock | Kind::Capture | Kind::Release => {
            // Net per party, then payers matched to payees in id order (exact for the usual
            // single-payer transfer).
            let mut payers: Vec<(WalletId, u128)> = Vec::new();
            let mut payees: Vec<(WalletId, u128)> = Vec::new();
            let parties: std::collections::BTreeSet<WalletId> =
                out_by.keys().chain(in_by.keys()).copied().collect();
            for p in parties {
                let o = out_by.get(&p).copied().unwrap_or(0);
                let i = in_by.get(&p).copied().unwrap_or(0);
                if o > i {
                    payers.push((p, o - i));
                } else if i > o {
                    payees.push((p, i - o));
                }
                let internal = to_others.get(&p).copied().unwrap_or(0).min(o).min(i);
                entry(report, p).internal_fen += internal;
            }
            book_flows(report, payers, payees);
        }
        _ => {}
    }
    Ok(Status::Ok)
}
