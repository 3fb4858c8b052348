//! Durability: the write-ahead log, snapshots, recovery and the offline audit
//! (`docs/durability.md`).
//!
//! A ledger directory holds log segments `wal-<first lsn>.log` and snapshots
//! `snapshot-<lsn>.snap`. Every state change is one log record with a consecutive log sequence
//! number (lsn): a wallet registration or a settled batch (its transactions, timestamp,
//! statuses and receipt hash). A record is `magic | payload length | lsn | crc32c | payload`;
//! `settle` returns only after its record is written and (policy `Fsync`) fsynced: one fsync per
//! batch. Recovery loads the newest snapshot and replays the records after it, recomputing each
//! batch and checking that it gives the logged statuses and receipt hash. A torn record at the
//! very end (a write that never completed, so was never acknowledged) is cut; any other damage
//! is an error naming the file and offset.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::conditions::{ConditionState, ConditionStats, Conditions};
use crate::credits::{Credit, ShardSpec, ShardState, CREDIT_LEN};
use crate::crypto::{PublicKey, Scheme};
use crate::error::{Error, Result};
use crate::format::{frame_batch, unframe_batch, ConditionDef, WalletId};
use crate::ledger::{
    Ledger, LedgerConfig, Receipt, Registration, SigMode, TokenRecord, WalletKind, WalletUpdate,
};
use crate::rules::{ClassLimits, Counters, Limits, OverCap, WalletAttrs, WalletStatus};
use crate::status::Status;

const RECORD_MAGIC: [u8; 4] = *b"TBW1";
const RECORD_HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Largest log record payload (a batch of maximal transactions is far below).
pub const RECORD_PAYLOAD_MAX: usize = 1 << 30;
const RECORD_WALLETS: u8 = 1;
/// A batch's input: sequence number, timestamp, transactions. Written and fsynced while the
/// batch is being settled; enough on its own to replay the batch (apply is deterministic).
const RECORD_INPUT: u8 = 3;
/// A batch's outcome: statuses and receipt hash, written after the batch settled and fsynced
/// with the next record. Recovery and audit check replays against it when it is there.
const RECORD_OUTCOME: u8 = 4;
/// A limits table installed with `set_limits`.
const RECORD_LIMITS: u8 = 5;
/// Wallet updates (class, freeze, unfreeze, close).
const RECORD_UPDATES: u8 = 6;
/// The ledger became a virtual shard (credits.rs).
const RECORD_SHARD: u8 = 7;
/// Credits imported from other shards.
const RECORD_CREDITS: u8 = 8;
/// Exports up to a sequence number were delivered (removed from the outbox).
const RECORD_DELIVERED: u8 = 9;
/// A worker's lease epoch: it writes this shard from here on.
const RECORD_EPOCH: u8 = 10;
/// Version 04 added the locks section, 05 the conditions section (programmable money), 06 both.
const SNAPSHOT_MAGIC: &[u8; 8] = b"TBSNAP06";

/// When `settle` may return relative to the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitPolicy {
    /// fsync the log once per batch before returning: an acknowledged batch survives power loss.
    Fsync,
    /// Write to the OS but never fsync: survives a process crash, NOT a power loss or kernel
    /// crash. For benchmarks only.
    NoSync,
}

/// Options of a durable ledger.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub commit: CommitPolicy,
    /// Take a snapshot after this many log records (0: never automatically).
    pub snapshot_every_records: u64,
    /// Snapshots kept (the newest ones); older are deleted. Log segments are all kept: they are
    /// the audit trail (`tongbao verify-log`).
    pub snapshots_kept: usize,
    /// Test hook for the negative control of the crash tests: acknowledge each batch *before*
    /// its fsync (the fsync happens at the start of the next append). Never set it otherwise.
    pub unsafe_ack_before_fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            commit: CommitPolicy::Fsync,
            snapshot_every_records: 10_000,
            snapshots_kept: 2,
            unsafe_ack_before_fsync: false,
        }
    }
}

/// What `Ledger::open` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub snapshot_lsn: u64,
    pub records_replayed: u64,
    pub batches_replayed: u64,
    pub transactions_replayed: u64,
    pub transactions_ok: u64,
    pub batches_without_outcome: u64,
    pub torn_bytes_cut: u64,
    pub last_lsn: u64,
}

/// The open log of a durable ledger.
pub struct Store {
    dir: PathBuf,
    _lock: File,
    segment: File,
    segment_path: PathBuf,
    /// Bytes of the current segment known to be durable (fsynced, or written under NoSync).
    synced_len: u64,
    written_len: u64,
    next_lsn: u64,
    records_since_snapshot: u64,
    options: StoreOptions,
}

pub(crate) fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

pub(crate) fn parse_numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// Numbered files of a ledger directory: `(number, path)`, sorted.
type Numbered = Vec<(u64, PathBuf)>;

/// Log segments `(first lsn, path)` and snapshots `(lsn, path)` of a directory, sorted.
fn list_dir(dir: &Path) -> Result<(Numbered, Numbered)> {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(lsn) = parse_numbered(&name, "wal-", ".log") {
            segments.push((lsn, entry.path()));
        } else if let Some(lsn) = parse_numbered(&name, "snapshot-", ".snap") {
            snapshots.push((lsn, entry.path()));
        } else if name.ends_with(".tmp") {
            // A snapshot interrupted before its rename: never used, safe to remove.
            fs::remove_file(entry.path()).map_err(|e| io_err(&entry.path(), e))?;
        }
    }
    segments.sort();
    snapshots.sort();
    Ok((segments, snapshots))
}

// ---------------------------------------------------------------------------------------------
// Records

fn encode_record(lsn: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&RECORD_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    let mut crc = crc32c::crc32c(&out[4..16]);
    crc = crc32c::crc32c_append(crc, payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

pub(crate) enum RecordRead<'a> {
    Record {
        lsn: u64,
        payload: &'a [u8],
        end: usize,
    },
    End,
    /// Damage at `offset`: torn (nothing valid after it) or corrupt (valid records follow).
    Damaged {
        offset: usize,
        reason: String,
    },
}

pub(crate) fn read_record(buf: &[u8], offset: usize) -> RecordRead<'_> {
    if offset == buf.len() {
        return RecordRead::End;
    }
    let rest = &buf[offset..];
    if rest.len() < RECORD_HEADER_LEN {
        return RecordRead::Damaged {
            offset,
            reason: "truncated record header".into(),
        };
    }
    if rest[..4] != RECORD_MAGIC {
        return RecordRead::Damaged {
            offset,
            reason: "bad record magic".into(),
        };
    }
    let len = u32::from_le_bytes(rest[4..8].try_into().expect("4")) as usize;
    let lsn = u64::from_le_bytes(rest[8..16].try_into().expect("8"));
    let crc = u32::from_le_bytes(rest[16..20].try_into().expect("4"));
    if len > RECORD_PAYLOAD_MAX || RECORD_HEADER_LEN + len > rest.len() {
        return RecordRead::Damaged {
            offset,
            reason: format!("record of {len} bytes runs past the end"),
        };
    }
    let payload = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len];
    let mut actual = crc32c::crc32c(&rest[4..16]);
    actual = crc32c::crc32c_append(actual, payload);
    if actual != crc {
        return RecordRead::Damaged {
            offset,
            reason: "checksum mismatch".into(),
        };
    }
    RecordRead::Record {
        lsn,
        payload,
        end: offset + RECORD_HEADER_LEN + len,
    }
}

/// True if a complete, valid record starts anywhere after `offset`: then damage at `offset` is
/// corruption in the middle of the log, not a torn tail.
pub(crate) fn valid_record_after(buf: &[u8], offset: usize) -> bool {
    let mut pos = offset + 1;
    while pos + RECORD_HEADER_LEN <= buf.len() {
        match buf[pos..].windows(4).position(|w| w == RECORD_MAGIC) {
            None => return false,
            Some(i) => {
                pos += i;
                if let RecordRead::Record { .. } = read_record(buf, pos) {
                    return true;
                }
                pos += 1;
            }
        }
    }
    false
}

fn write_registration(w: &mut Writer, r: &Registration) {
    w.u64(r.id);
    w.u8(r.kind as u8);
    w.u8(r.key.scheme() as u8);
    let key = r.key.to_bytes();
    w.u8(key.len() as u8);
    w.bytes(&key);
    write_attrs(w, &r.attrs);
}

fn write_attrs(w: &mut Writer, a: &WalletAttrs) {
    w.u8(a.class);
    w.u64(a.operator);
    w.u64(a.parent);
    w.bytes(&a.mcc.to_le_bytes());
    w.bytes(&a.region.to_le_bytes());
    w.u8(a.linked_account as u8);
    w.u8(a.status as u8);
}

/// Read one registration. `last` is the previous registration's key in the same record or
/// snapshot: a key equal to it is not parsed again (parsing is a curve point decompression;
/// wallets sharing a key are common in generated worlds, and a worker replays every
/// registration once per vshard when it takes vshards over).
fn read_registration(
    r: &mut ByteReader<'_>,
    last: &mut Option<(Scheme, Vec<u8>, PublicKey)>,
) -> Result<Registration> {
    let id = r.u64()?;
    let kind = WalletKind::from_u8(r.u8()?).ok_or_else(|| r.bad("wallet kind"))?;
    let scheme = Scheme::from_u8(r.u8()?).ok_or_else(|| r.bad("wallet scheme"))?;
    let key_len = r.u8()? as usize;
    let bytes = r.take(key_len)?;
    let key = match last {
        Some((s, b, key)) if *s == scheme && b.as_slice() == bytes => key.clone(),
        _ => {
            let key = PublicKey::parse(scheme, bytes).map_err(|_| r.bad("wallet key"))?;
            *last = Some((scheme, bytes.to_vec(), key.clone()));
            key
        }
    };
    let attrs = read_attrs(r)?;
    Ok(Registration {
        id,
        kind,
        key,
        attrs,
    })
}

fn read_attrs(r: &mut ByteReader<'_>) -> Result<WalletAttrs> {
    let class = r.u8()?;
    let operator = r.u64()?;
    let parent = r.u64()?;
    let mcc = u16::from_le_bytes(r.take(2)?.try_into().expect("2"));
    let region = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
    let linked_account = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(r.bad("linked_account flag")),
    };
    let status = WalletStatus::from_u8(r.u8()?).ok_or_else(|| r.bad("wallet status"))?;
    Ok(WalletAttrs {
        class,
        operator,
        parent,
        mcc,
        region,
        linked_account,
        status,
    })
}

pub(crate) fn write_limits(w: &mut Writer, l: &Limits) {
    w.u8(l.version.len() as u8);
    w.bytes(l.version.as_bytes());
    w.u8(l.over_balance_cap as u8);
    for c in l.classes.iter().chain(std::iter::once(&l.sub_wallet)) {
        for cap in [
            c.balance_cap_fen,
            c.payment_cap_fen,
            c.daily_cap_fen,
            c.annual_cap_fen,
        ] {
            w.u8(cap.is_some() as u8);
            w.u64(cap.unwrap_or(0));
        }
    }
}

fn read_limits(r: &mut ByteReader<'_>) -> Result<Limits> {
    let n = r.u8()? as usize;
    let version = String::from_utf8(r.take(n)?.to_vec()).map_err(|_| r.bad("limits version"))?;
    let over_balance_cap = match r.u8()? {
        1 => OverCap::Sweep,
        2 => OverCap::Reject,
        _ => return Err(r.bad("over_balance_cap")),
    };
    let mut tables = [ClassLimits::default(); 5];
    for table in tables.iter_mut() {
        let mut caps = [None; 4];
        for cap in caps.iter_mut() {
            let present = r.u8()?;
            let value = r.u64()?;
            *cap = match present {
                0 => None,
                1 => Some(value),
                _ => return Err(r.bad("cap flag")),
            };
        }
        *table = ClassLimits {
            balance_cap_fen: caps[0],
            payment_cap_fen: caps[1],
            daily_cap_fen: caps[2],
            annual_cap_fen: caps[3],
        };
    }
    Ok(Limits {
        version,
        over_balance_cap,
        classes: [tables[0], tables[1], tables[2], tables[3]],
        sub_wallet: tables[4],
    })
}

fn encode_wallets(wallets: &[Registration]) -> Vec<u8> {
    let mut w = Writer(vec![RECORD_WALLETS]);
    w.bytes(&(wallets.len() as u32).to_le_bytes());
    for r in wallets {
        write_registration(&mut w, r);
    }
    w.0
}

fn encode_limits(limits: &Limits) -> Vec<u8> {
    let mut w = Writer(vec![RECORD_LIMITS]);
    write_limits(&mut w, limits);
    w.0
}

fn encode_updates(updates: &[(WalletId, WalletUpdate)]) -> Vec<u8> {
    let mut w = Writer(vec![RECORD_UPDATES]);
    w.bytes(&(updates.len() as u32).to_le_bytes());
    for &(id, update) in updates {
        w.u64(id);
        let (action, class) = match update {
            WalletUpdate::SetClass(c) => (1, c),
            WalletUpdate::Freeze => (2, 0),
            WalletUpdate::Unfreeze => (3, 0),
            WalletUpdate::Close => (4, 0),
        };
        w.u8(action);
        w.u8(class);
    }
    w.0
}

fn encode_input<T: AsRef<[u8]>>(seq: u64, timestamp_ms: u64, batch: &[T]) -> Vec<u8> {
    let framed = frame_batch(batch);
    let mut out = Vec::with_capacity(1 + 16 + framed.len());
    out.push(RECORD_INPUT);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&framed);
    out
}

fn encode_outcome(receipt: &Receipt, statuses: &[Status]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + statuses.len() + 32);
    out.push(RECORD_OUTCOME);
    out.extend_from_slice(&receipt.seq.to_le_bytes());
    out.extend_from_slice(&(statuses.len() as u32).to_le_bytes());
    out.extend(statuses.iter().map(|s| *s as u8));
    out.extend_from_slice(&receipt.hash);
    out
}

fn encode_shard(spec: &ShardSpec) -> Vec<u8> {
    let mut w = Writer(vec![RECORD_SHARD]);
    w.bytes(&spec.count.to_le_bytes());
    w.bytes(&spec.index.to_le_bytes());
    w.u8(spec.unsafe_reapply_credits as u8);
    w.0
}

fn encode_credits(credits: &[Credit]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(1 + credits.len() * CREDIT_LEN));
    w.u8(RECORD_CREDITS);
    for c in credits {
        c.pack(&mut w.0);
    }
    w.0
}

/// A decoded log record.
pub enum Record<'a> {
    Shard(ShardSpec),
    Credits(Vec<Credit>),
    Delivered(u64),
    Epoch(u64),
    Wallets(Vec<Registration>),
    Limits(Box<Limits>),
    Updates(Vec<(WalletId, WalletUpdate)>),
    Input {
        seq: u64,
        timestamp_ms: u64,
        txs: Vec<&'a [u8]>,
    },
    Outcome {
        seq: u64,
        statuses: Vec<Status>,
        receipt_hash: [u8; 32],
    },
}

pub(crate) fn corrupt(path: &Path, offset: usize, what: &str) -> Error {
    Error::Corrupt(format!(
        "{}: record at offset {offset}: {what}",
        path.display()
    ))
}

pub(crate) fn decode_payload<'a>(
    payload: &'a [u8],
    path: &Path,
    offset: usize,
) -> Result<Record<'a>> {
    let bad = |what: &str| corrupt(path, offset, what);
    let (&kind, body) = payload.split_first().ok_or_else(|| bad("empty payload"))?;
    match kind {
        RECORD_CREDITS => Credit::unpack_all(body)
            .map(Record::Credits)
            .map_err(|_| bad("credits record length")),
        RECORD_WALLETS | RECORD_LIMITS | RECORD_UPDATES | RECORD_SHARD | RECORD_DELIVERED
        | RECORD_EPOCH => {
            let mut r = ByteReader {
                buf: body,
                pos: 0,
                path,
                what: "log record payload",
            };
            let record = match kind {
                RECORD_WALLETS => {
                    let n = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
                    let mut wallets = Vec::with_capacity((n as usize).min(body.len() / 8));
                    let mut last = None;
                    for _ in 0..n {
                        wallets.push(read_registration(&mut r, &mut last)?);
                    }
                    Record::Wallets(wallets)
                }
                RECORD_LIMITS => Record::Limits(Box::new(read_limits(&mut r)?)),
                RECORD_SHARD => Record::Shard(read_shard_spec(&mut r)?),
                RECORD_DELIVERED => Record::Delivered(r.u64()?),
                RECORD_EPOCH => Record::Epoch(r.u64()?),
                _ => {
                    let n = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
                    let mut updates = Vec::with_capacity((n as usize).min(body.len() / 10));
                    for _ in 0..n {
                        let id = r.u64()?;
                        let action = r.u8()?;
                        let class = r.u8()?;
                        let update = match action {
                            1 => WalletUpdate::SetClass(class),
                            2 => WalletUpdate::Freeze,
                            3 => WalletUpdate::Unfreeze,
                            4 => WalletUpdate::Close,
                            _ => return Err(bad("wallet update action")),
                        };
                        updates.push((id, update));
                    }
                    Record::Updates(updates)
                }
            };
            if r.pos != body.len() {
                return Err(bad("trailing bytes in record"));
            }
            Ok(record)
        }
        RECORD_INPUT => {
            if body.len() < 16 {
                return Err(bad("short batch input record"));
            }
            let seq = u64::from_le_bytes(body[..8].try_into().expect("8"));
            let timestamp_ms = u64::from_le_bytes(body[8..16].try_into().expect("8"));
            let txs =
                unframe_batch(&body[16..]).map_err(|e| bad(&format!("batch framing: {e}")))?;
            Ok(Record::Input {
                seq,
                timestamp_ms,
                txs,
            })
        }
        RECORD_OUTCOME => {
            if body.len() < 12 + 32 {
                return Err(bad("short batch outcome record"));
            }
            let seq = u64::from_le_bytes(body[..8].try_into().expect("8"));
            let count = u32::from_le_bytes(body[8..12].try_into().expect("4")) as usize;
            if body.len() != 12 + count + 32 {
                return Err(bad("batch outcome record length"));
            }
            let statuses = body[12..12 + count]
                .iter()
                .map(|&b| Status::from_u8(b).ok_or_else(|| bad("unknown status")))
                .collect::<Result<Vec<_>>>()?;
            let receipt_hash: [u8; 32] = body[12 + count..].try_into().expect("32");
            Ok(Record::Outcome {
                seq,
                statuses,
                receipt_hash,
            })
        }
        _ => Err(bad("unknown record type")),
    }
}

impl Store {
    /// Append one record. `sync`: the record must be durable before this returns (policy
    /// `Fsync`); otherwise it is fsynced together with the next synced record.
    fn append(&mut self, payload: &[u8], sync: bool) -> Result<()> {
        if payload.len() > RECORD_PAYLOAD_MAX {
            return Err(Error::InvalidArgument(format!(
                "log record of {} bytes, at most {RECORD_PAYLOAD_MAX}",
                payload.len()
            )));
        }
        let record = encode_record(self.next_lsn, payload);
        let path = self.segment_path.clone();
        let fsync = self.options.commit == CommitPolicy::Fsync;
        if sync && self.options.unsafe_ack_before_fsync && fsync {
            // Negative control: what earlier calls acknowledged is synced only now.
            self.segment.sync_data().map_err(|e| io_err(&path, e))?;
            self.synced_len = self.written_len;
            self.publish_synced()?;
        }
        self.segment
            .write_all(&record)
            .map_err(|e| io_err(&path, e))?;
        self.written_len += record.len() as u64;
        if sync && !self.options.unsafe_ack_before_fsync {
            if fsync {
                self.segment.sync_data().map_err(|e| io_err(&path, e))?;
            }
            self.synced_len = self.written_len;
            self.publish_synced()?;
        }
        self.next_lsn += 1;
        self.records_since_snapshot += 1;
        Ok(())
    }

    /// For crash tests only (`TONGBAO_SYNCED_MARKER` set): write how many bytes of the segment
    /// are durable, so a test can drop the rest to simulate a power loss.
    fn publish_synced(&self) -> Result<()> {
        if let Some(marker) = std::env::var_os("TONGBAO_SYNCED_MARKER") {
            let line = format!("{} {}\n", self.segment_path.display(), self.synced_len);
            fs::write(&marker, line).map_err(|e| io_err(Path::new(&marker), e))?;
        }
        Ok(())
    }

    pub(crate) fn append_wallets(&mut self, wallets: &[Registration]) -> Result<()> {
        self.append(&encode_wallets(wallets), true)
    }

    pub(crate) fn append_limits(&mut self, limits: &Limits) -> Result<()> {
        self.append(&encode_limits(limits), true)
    }

    pub(crate) fn append_shard(&mut self, spec: &ShardSpec) -> Result<()> {
        self.append(&encode_shard(spec), true)
    }

    pub(crate) fn append_credits(&mut self, credits: &[Credit]) -> Result<()> {
        self.append(&encode_credits(credits), true)
    }

    pub(crate) fn append_epoch(&mut self, epoch: u64) -> Result<()> {
        let mut w = Writer(vec![RECORD_EPOCH]);
        w.u64(epoch);
        self.append(&w.0, true)
    }

    pub(crate) fn append_delivered(&mut self, upto: u64) -> Result<()> {
        let mut w = Writer(vec![RECORD_DELIVERED]);
        w.u64(upto);
        self.append(&w.0, true)
    }

    pub(crate) fn append_updates(&mut self, updates: &[(WalletId, WalletUpdate)]) -> Result<()> {
        self.append(&encode_updates(updates), true)
    }

    /// Append a batch's input and (policy `Fsync`) fsync it. Runs on its own thread while the
    /// batch settles.
    pub(crate) fn append_input<T: AsRef<[u8]>>(
        &mut self,
        seq: u64,
        timestamp_ms: u64,
        batch: &[T],
    ) -> Result<()> {
        self.append(&encode_input(seq, timestamp_ms, batch), true)
    }

    /// Append a batch's outcome; fsynced together with the next record.
    pub(crate) fn append_outcome(&mut self, receipt: &Receipt, statuses: &[Status]) -> Result<()> {
        self.append(&encode_outcome(receipt, statuses), false)
    }

    /// Sync what was written; the lock is released when the store is dropped.
    pub(crate) fn close(&mut self) -> Result<()> {
        self.sync()
    }

    /// fsync what was written (policy `Fsync`).
    fn sync(&mut self) -> Result<()> {
        if self.options.commit == CommitPolicy::Fsync && self.synced_len < self.written_len {
            let path = self.segment_path.clone();
            self.segment.sync_data().map_err(|e| io_err(&path, e))?;
            self.synced_len = self.written_len;
            self.publish_synced()?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn last_lsn(&self) -> u64 {
        self.next_lsn - 1
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
}

struct ByteReader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "{}: {} truncated at offset {}",
                    self.path.display(),
                    self.what,
                    self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u128(&mut self) -> Result<u128> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn id(&mut self) -> Result<[u8; 32]> {
        Ok(self.take(32)?.try_into().expect("32"))
    }
    fn bad(&self, what: &str) -> Error {
        Error::Corrupt(format!(
            "{}: {} offset {}: {what}",
            self.path.display(),
            self.what,
            self.pos
        ))
    }
}

fn encode_snapshot(ledger: &Ledger, lsn: u64) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(128 + ledger.tokens.len() * 48));
    w.bytes(SNAPSHOT_MAGIC);
    w.u64(lsn);
    w.u64(ledger.batch_seq);
    w.u64(ledger.last_timestamp_ms);
    w.bytes(&ledger.last_receipt_hash);
    w.u128(ledger.issued_fen);
    w.u128(ledger.redeemed_fen);
    w.u64(ledger.outstanding_fen);
    write_limits(&mut w, &ledger.limits);
    let mut ids: Vec<&WalletId> = ledger.wallets.keys().collect();
    ids.sort_unstable();
    w.u64(ids.len() as u64);
    for id in ids {
        let wallet = &ledger.wallets[id];
        write_registration(
            &mut w,
            &Registration {
                id: *id,
                kind: wallet.kind,
                key: wallet.key.clone(),
                attrs: wallet.attrs,
            },
        );
        let c = &wallet.counters;
        w.bytes(&c.day.to_le_bytes());
        w.u64(c.day_out_fen);
        w.bytes(&c.year.to_le_bytes());
        w.u64(c.year_out_fen);
        w.u64(wallet.tokens.len() as u64);
        for token in &wallet.tokens {
            w.bytes(token);
            w.u64(ledger.tokens[token].value_fen);
        }
    }
    // Only the live entries (the sweep is lazy): the snapshot is the same whenever it ran.
    let now = ledger.last_timestamp_ms;
    let mut spent: Vec<_> = ledger.spent.iter().filter(|(_, e)| **e >= now).collect();
    spent.sort_unstable();
    w.u64(spent.len() as u64);
    for (id, expiry) in spent {
        w.bytes(id);
        w.u64(*expiry);
    }
    let mut settled: Vec<_> = ledger.settled.iter().filter(|(_, e)| **e >= now).collect();
    settled.sort_unstable();
    w.u64(settled.len() as u64);
    for (id, expiry) in settled {
        w.bytes(id);
        w.u64(*expiry);
    }
    write_shard_state(&mut w, &ledger.shard);
    write_conditions(&mut w, &ledger.conds);
    write_lock_state(&mut w, &ledger.locks, now);
    let digest = Sha256::digest(&w.0);
    w.bytes(&digest);
    w.0
}

fn read_shard_spec(r: &mut ByteReader<'_>) -> Result<ShardSpec> {
    let count = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
    let index = u32::from_le_bytes(r.take(4)?.try_into().expect("4"));
    let unsafe_reapply_credits = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(r.bad("shard flag")),
    };
    if count == 0 || index >= count {
        return Err(r.bad("shard index out of range"));
    }
    Ok(ShardSpec {
        count,
        index,
        unsafe_reapply_credits,
    })
}

/// The cross-shard state: spec (flag byte 0: none), counters, outbox, imported set, suspense.
fn write_shard_state(w: &mut Writer, s: &ShardState) {
    let Some(spec) = s.spec else {
        w.u8(0);
        return;
    };
    w.u8(1);
    w.bytes(&spec.count.to_le_bytes());
    w.bytes(&spec.index.to_le_bytes());
    w.u8(spec.unsafe_reapply_credits as u8);
    w.u64(s.next_outbox_seq);
    w.u64(s.epoch);
    w.u128(s.credits_in_fen);
    w.u128(s.credits_out_fen);
    w.u64(s.outbox.len() as u64);
    for (seq, c) in &s.outbox {
        w.u64(*seq);
        c.pack(&mut w.0);
    }
    let mut imported: Vec<_> = s.imported.iter().collect();
    imported.sort_unstable();
    w.u64(imported.len() as u64);
    for id in imported {
        w.bytes(id);
    }
    w.u64(s.suspense.len() as u64);
    for c in &s.suspense {
        c.pack(&mut w.0);
    }
}

/// One condition: its definition and totals (snapshot section and state digest).
pub(crate) fn write_condition(w: &mut Writer, c: &ConditionState) {
    let d = &c.def;
    for v in [
        d.id,
        d.issuer,
        d.reclaimer,
        d.not_before_ms,
        d.valid_until_ms,
    ] {
        w.u64(v);
    }
    w.u8(d.flags);
    w.u64(d.mccs.len() as u64);
    for m in &d.mccs {
        w.bytes(&m.to_le_bytes());
    }
    w.u64(d.merchants.len() as u64);
    for m in &d.merchants {
        w.u64(*m);
    }
    w.u64(d.regions.len() as u64);
    for m in &d.regions {
        w.bytes(&m.to_le_bytes());
    }
    let s = &c.stats;
    w.u64(s.issued_fen);
    w.u64(s.spent_by_mcc.len() as u64);
    for (mcc, fen) in &s.spent_by_mcc {
        w.bytes(&mcc.to_le_bytes());
        w.u64(*fen);
    }
    w.u64(s.reclaimed_fen);
    w.u64(s.outstanding_fen);
}

/// The conditions section: definitions with totals (sorted by id), then earmarks (sorted).
fn write_conditions(w: &mut Writer, conds: &Conditions) {
    let mut defs: Vec<&ConditionState> = conds.defs.values().collect();
    defs.sort_unstable_by_key(|c| c.def.id);
    w.u64(defs.len() as u64);
    for c in defs {
        write_condition(w, c);
    }
    let mut earmarks: Vec<_> = conds.earmarks.iter().collect();
    earmarks.sort_unstable();
    w.u64(earmarks.len() as u64);
    for (token, id) in earmarks {
        w.bytes(token);
        w.u64(*id);
    }
}

fn read_conditions(r: &mut ByteReader<'_>) -> Result<Conditions> {
    let mut conds = Conditions::default();
    let u16_of = |r: &mut ByteReader<'_>| -> Result<u16> {
        Ok(u16::from_le_bytes(r.take(2)?.try_into().expect("2")))
    };
    for _ in 0..r.u64()? {
        let (id, issuer, reclaimer, not_before_ms, valid_until_ms) =
            (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
        let flags = r.u8()?;
        let mut mccs = Vec::new();
        for _ in 0..r.u64()? {
            mccs.push(u16_of(r)?);
        }
        let mut merchants = Vec::new();
        for _ in 0..r.u64()? {
            merchants.push(r.u64()?);
        }
        let mut regions = Vec::new();
        for _ in 0..r.u64()? {
            regions.push(u32::from_le_bytes(r.take(4)?.try_into().expect("4")));
        }
        let mut stats = ConditionStats {
            issued_fen: r.u64()?,
            ..ConditionStats::default()
        };
        for _ in 0..r.u64()? {
            let mcc = u16_of(r)?;
            stats.spent_by_mcc.insert(mcc, r.u64()?);
        }
        stats.reclaimed_fen = r.u64()?;
        stats.outstanding_fen = r.u64()?;
        let def = ConditionDef {
            id,
            issuer,
            reclaimer,
            not_before_ms,
            valid_until_ms,
            flags,
            mccs,
            merchants,
            regions,
        };
        if conds
            .defs
            .insert(id, ConditionState { def, stats })
            .is_some()
        {
            return Err(r.bad("condition listed twice"));
        }
    }
    for _ in 0..r.u64()? {
        let token = r.id()?;
        let id = r.u64()?;
        if conds.earmarks.insert(token, id).is_some() {
            return Err(r.bad("earmark listed twice"));
        }
    }
    Ok(conds)
}

/// The lock state (`locks.rs`): locks sorted by token, then lapsed locks still remembered.
fn write_lock_state(w: &mut Writer, s: &crate::locks::LockState, now: u64) {
    let mut locks: Vec<_> = s.locks.iter().collect();
    locks.sort_unstable_by(|a, b| a.0.cmp(b.0));
    w.u64(locks.len() as u64);
    for (token, l) in locks {
        w.bytes(token);
        w.u64(l.payer);
        w.u64(l.terms.beneficiary);
        w.u64(l.terms.releaser);
        w.u64(l.terms.deadline_ms);
        w.u64(l.terms.deadline_capture_fen);
    }
    // Only the live entries (the sweep is lazy), as for spent markers.
    let mut lapsed: Vec<_> = s.lapsed.iter().filter(|(_, u)| **u >= now).collect();
    lapsed.sort_unstable();
    w.u64(lapsed.len() as u64);
    for (token, until) in lapsed {
        w.bytes(token);
        w.u64(*until);
    }
}

fn read_lock_state(ledger: &mut Ledger, r: &mut ByteReader<'_>) -> Result<()> {
    for _ in 0..r.u64()? {
        let token = r.id()?;
        let lock = crate::locks::Lock {
            payer: r.u64()?,
            terms: crate::format::LockTerms {
                beneficiary: r.u64()?,
                releaser: r.u64()?,
                deadline_ms: r.u64()?,
                deadline_capture_fen: r.u64()?,
            },
        };
        let value_fen = match ledger.tokens.get(&token) {
            Some(t) if t.owner == lock.payer => t.value_fen,
            _ => return Err(r.bad("lock on a token its payer does not hold")),
        };
        if ledger.locks.locks.contains_key(&token) {
            return Err(r.bad("token locked twice"));
        }
        ledger.locks.insert(token, lock, value_fen);
    }
    for _ in 0..r.u64()? {
        let token = r.id()?;
        let until = r.u64()?;
        ledger.locks.lapsed.insert(token, until);
    }
    Ok(())
}

fn read_credit(r: &mut ByteReader<'_>) -> Result<Credit> {
    Ok(Credit::unpack_all(r.take(CREDIT_LEN)?).expect("one credit")[0])
}

fn read_shard_state(r: &mut ByteReader<'_>) -> Result<ShardState> {
    let mut s = ShardState::default();
    match r.u8()? {
        0 => return Ok(s),
        1 => {}
        _ => return Err(r.bad("shard state flag")),
    }
    s.spec = Some(read_shard_spec(r)?);
    s.next_outbox_seq = r.u64()?;
    s.epoch = r.u64()?;
    s.credits_in_fen = r.u128()?;
    s.credits_out_fen = r.u128()?;
    for _ in 0..r.u64()? {
        let seq = r.u64()?;
        if seq >= s.next_outbox_seq || s.outbox.insert(seq, read_credit(r)?).is_some() {
            return Err(r.bad("outbox sequence"));
        }
    }
    for _ in 0..r.u64()? {
        if !s.imported.insert(r.id()?) {
            return Err(r.bad("credit imported twice"));
        }
    }
    for _ in 0..r.u64()? {
        let c = read_credit(r)?;
        s.suspense_fen += c.value_fen as u128;
        s.suspense.push(c);
    }
    Ok(s)
}

fn load_snapshot(ledger: &mut Ledger, path: &Path) -> Result<u64> {
    let buf = fs::read(path).map_err(|e| io_err(path, e))?;
    if buf.len() < SNAPSHOT_MAGIC.len() + 32 || &buf[..8] != SNAPSHOT_MAGIC {
        return Err(Error::Corrupt(format!(
            "{}: not a tongbao snapshot",
            path.display()
        )));
    }
    let (body, digest) = buf.split_at(buf.len() - 32);
    if Sha256::digest(body)[..] != *digest {
        return Err(Error::Corrupt(format!(
            "{}: snapshot checksum mismatch",
            path.display()
        )));
    }
    let mut r = ByteReader {
        buf: body,
        pos: 8,
        path,
        what: "snapshot",
    };
    let lsn = r.u64()?;
    ledger.batch_seq = r.u64()?;
    ledger.last_timestamp_ms = r.u64()?;
    ledger.last_receipt_hash = r.id()?;
    ledger.issued_fen = r.u128()?;
    ledger.redeemed_fen = r.u128()?;
    ledger.outstanding_fen = r.u64()?;
    ledger.limits = read_limits(&mut r)?;
    let n_wallets = r.u64()?;
    let mut last = None;
    for _ in 0..n_wallets {
        let registration = read_registration(&mut r, &mut last)?;
        let id = registration.id;
        if ledger.wallets.contains_key(&id) {
            return Err(r.bad("wallet listed twice"));
        }
        ledger.apply_wallets(vec![registration]);
        let counters = Counters {
            day: u32::from_le_bytes(r.take(4)?.try_into().expect("4")),
            day_out_fen: r.u64()?,
            year: i32::from_le_bytes(r.take(4)?.try_into().expect("4")),
            year_out_fen: r.u64()?,
        };
        ledger.wallets.get_mut(&id).expect("just added").counters = counters;
        let n_tokens = r.u64()?;
        let mut balance: u64 = 0;
        let mut tokens = Vec::with_capacity(n_tokens.min(1 << 24) as usize);
        for pos in 0..n_tokens {
            let token = r.id()?;
            let value_fen = r.u64()?;
            balance = balance
                .checked_add(value_fen)
                .ok_or_else(|| r.bad("balance overflow"))?;
            let record = TokenRecord {
                owner: id,
                value_fen,
                pos: pos as u32,
            };
            if ledger.tokens.insert(token, record).is_some() {
                return Err(r.bad("token listed twice"));
            }
            tokens.push(token);
        }
        let wallet = ledger.wallets.get_mut(&id).expect("just added");
        wallet.tokens = tokens;
        wallet.balance_fen = balance;
    }
    let n_spent = r.u64()?;
    for _ in 0..n_spent {
        let id = r.id()?;
        let expiry = r.u64()?;
        ledger.spent.insert(id, expiry);
    }
    let n_settled = r.u64()?;
    for _ in 0..n_settled {
        let id = r.id()?;
        let expiry = r.u64()?;
        ledger.settled.insert(id, expiry);
    }
    ledger.shard = read_shard_state(&mut r)?;
    ledger.conds = read_conditions(&mut r)?;
    read_lock_state(ledger, &mut r)?;
    if r.pos != body.len() {
        return Err(r.bad("trailing bytes"));
    }
    ledger
        .check_invariants()
        .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    Ok(lsn)
}

// ---------------------------------------------------------------------------------------------
// Replay

/// Replay one batch on a ledger being recovered or audited. With its outcome record, the
/// replay must reproduce the logged statuses and receipt hash; recovery then takes signature
/// verdicts from it (`verify` false). Without one (the process died between the two records)
/// every signature is verified. Returns (transactions, transactions OK).
pub(crate) fn replay_batch(
    ledger: &mut Ledger,
    input: (u64, u64, &[&[u8]]),
    outcome: Option<(&[Status], [u8; 32])>,
    verify: bool,
    path: &Path,
    offset: usize,
) -> Result<(u64, u64)> {
    let (seq, timestamp_ms, txs) = input;
    if seq != ledger.batch_seq + 1 {
        return Err(corrupt(
            path,
            offset,
            &format!("batch {seq} follows batch {}", ledger.batch_seq),
        ));
    }
    let mode = match outcome {
        Some((statuses, _)) if !verify => {
            if statuses.len() != txs.len() {
                return Err(corrupt(
                    path,
                    offset,
                    "status count differs from transaction count",
                ));
            }
            SigMode::Replay(statuses)
        }
        // No outcome (the process died between the two records): the audit verifies every
        // signature; recovery does what the ledger does live (a trusting ledger trusts).
        _ if verify || ledger.verify_signatures() => SigMode::Verify,
        _ => SigMode::Trust,
    };
    let replayed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ledger.settle_with(txs, timestamp_ms, mode)
    }))
    .map_err(|_| corrupt(path, offset, &format!("batch {seq}: replay panicked")))?;
    let (replayed, receipt) = replayed.map_err(|e| {
        corrupt(
            path,
            offset,
            &format!("batch {seq} cannot be replayed: {e}"),
        )
    })?;
    if let Some((statuses, receipt_hash)) = outcome {
        if statuses.len() != txs.len() {
            return Err(corrupt(
                path,
                offset,
                "status count differs from transaction count",
            ));
        }
        if let Some(i) = (0..txs.len()).find(|&i| replayed[i] != statuses[i]) {
            return Err(corrupt(
                path,
                offset,
                &format!(
                    "batch {seq} transaction {i}: logged {} but replay gives {}",
                    statuses[i].name(),
                    replayed[i].name()
                ),
            ));
        }
        if receipt.hash != receipt_hash {
            return Err(corrupt(
                path,
                offset,
                &format!("batch {seq}: receipt hash does not match the chain"),
            ));
        }
    }
    let ok = replayed.iter().filter(|s| **s == Status::Ok).count() as u64;
    Ok((txs.len() as u64, ok))
}

/// Apply one logged record that is not part of a batch (wallets, wallet updates, limits, shard
/// identity, imported credits, delivery marks) to `ledger`, checking it against the state it
/// lands on. Recovery and the end-of-day report replay logs through this one function.
pub(crate) fn apply_state_record(
    ledger: &mut Ledger,
    record: Record<'_>,
    path: &Path,
    offset: usize,
) -> Result<()> {
    match record {
        Record::Shard(spec) => ledger.shard.spec = Some(spec),
        Record::Credits(credits) => {
            if let Some(c) = credits.iter().find(|c| {
                // An owner not registered here is valid: that credit bounced (UNKNOWN_WALLET).
                ledger.shard.spec.is_none() || !ledger.is_local(c.owner)
            }) {
                return Err(corrupt(
                    path,
                    offset,
                    &format!("credit to wallet {} cannot be imported here", c.owner),
                ));
            }
            ledger.apply_credits(&credits);
        }
        Record::Delivered(upto) => ledger.apply_delivered(upto),
        Record::Epoch(epoch) => ledger.shard.epoch = epoch,
        Record::Limits(limits) => ledger.limits = *limits,
        Record::Updates(updates) => {
            if let Some((id, _)) = updates
                .iter()
                .find(|(id, _)| !ledger.wallets.contains_key(id))
            {
                return Err(corrupt(
                    path,
                    offset,
                    &format!("update of unknown wallet {id}"),
                ));
            }
            ledger.apply_updates(&updates);
        }
        Record::Wallets(wallets) => {
            if let Some(id) = wallets
                .iter()
                .map(|r| r.id)
                .find(|id| ledger.wallets.contains_key(id))
            {
                return Err(corrupt(
                    path,
                    offset,
                    &format!("wallet {id} registered twice"),
                ));
            }
            ledger.apply_wallets(wallets);
        }
        Record::Input { .. } | Record::Outcome { .. } => {
            unreachable!("batch records are replayed by the caller")
        }
    }
    Ok(())
}

/// Read one segment: replay its records after `after_lsn`. Returns the byte length of the valid
/// prefix and whether it ended in damage (torn or corrupt, decided by the caller).
struct SegmentScan {
    valid_len: usize,
    damage: Option<(usize, String, bool)>,
}

fn scan_segment(
    ledger: &mut Ledger,
    path: &Path,
    next_lsn: &mut u64,
    after_lsn: u64,
    verify: bool,
    report: &mut RecoveryReport,
) -> Result<SegmentScan> {
    let mut buf = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|e| io_err(path, e))?;
    let mut offset = 0usize;
    // A batch input waiting for its outcome record (the next record, if the process lived).
    let mut pending: Option<(u64, u64, Vec<&[u8]>, usize)> = None;
    let replay = |ledger: &mut Ledger,
                  pending: (u64, u64, Vec<&[u8]>, usize),
                  outcome: Option<(&[Status], [u8; 32])>,
                  report: &mut RecoveryReport|
     -> Result<()> {
        let (seq, ts, txs, at) = pending;
        let (n, ok) = replay_batch(ledger, (seq, ts, &txs), outcome, verify, path, at)?;
        report.batches_replayed += 1;
        report.transactions_replayed += n;
        report.transactions_ok += ok;
        if outcome.is_none() {
            report.batches_without_outcome += 1;
        }
        Ok(())
    };
    let scan = loop {
        match read_record(&buf, offset) {
            RecordRead::End => {
                break SegmentScan {
                    valid_len: offset,
                    damage: None,
                }
            }
            RecordRead::Damaged { offset, reason } => {
                let followed = valid_record_after(&buf, offset);
                break SegmentScan {
                    valid_len: offset,
                    damage: Some((offset, reason, followed)),
                };
            }
            RecordRead::Record { lsn, payload, end } => {
                if lsn <= after_lsn {
                    offset = end;
                    continue;
                }
                if lsn != *next_lsn {
                    return Err(corrupt(
                        path,
                        offset,
                        &format!("gap: expected lsn {} but found {lsn}", next_lsn),
                    ));
                }
                let record = decode_payload(payload, path, offset)?;
                match record {
                    Record::Outcome {
                        seq,
                        statuses,
                        receipt_hash,
                    } => match pending.take() {
                        Some(p) if p.0 == seq => {
                            replay(ledger, p, Some((&statuses, receipt_hash)), report)?
                        }
                        _ => {
                            return Err(corrupt(
                                path,
                                offset,
                                &format!("outcome of batch {seq} without its input"),
                            ))
                        }
                    },
                    other => {
                        if let Some(p) = pending.take() {
                            replay(ledger, p, None, report)?;
                        }
                        if let Record::Input {
                            seq,
                            timestamp_ms,
                            txs,
                        } = other
                        {
                            pending = Some((seq, timestamp_ms, txs, offset));
                        } else {
                            apply_state_record(ledger, other, path, offset)?;
                        }
                    }
                }
                report.records_replayed += 1;
                *next_lsn = lsn + 1;
                offset = end;
            }
        }
    };
    if let Some(p) = pending.take() {
        replay(ledger, p, None, report)?;
    }
    Ok(scan)
}

impl Ledger {
    /// Open (or create) a durable ledger in `dir`: load the newest snapshot, replay the log
    /// after it, cut a torn final record, and append from there. Errors: the directory is
    /// locked by another process, or the log/snapshot is corrupt (file and offset named).
    pub fn open(
        dir: &Path,
        config: LedgerConfig,
        options: StoreOptions,
    ) -> Result<(Ledger, RecoveryReport)> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err(&lock_path, e))?;
        lock.try_lock()
            .map_err(|_| Error::Locked(dir.display().to_string()))?;

        let mut ledger = Ledger::new(config)?;
        let (segments, snapshots) = list_dir(dir)?;
        let mut report = RecoveryReport::default();
        if let Some((_, path)) = snapshots.last() {
            report.snapshot_lsn = load_snapshot(&mut ledger, path)?;
        }
        let mut next_lsn = if report.snapshot_lsn > 0 {
            report.snapshot_lsn + 1
        } else {
            1
        };
        if let Some((first, path)) = segments.first() {
            if report.snapshot_lsn == 0 && *first != 1 {
                return Err(Error::Corrupt(format!(
                    "{}: the log starts at lsn {first} but there is no snapshot to start from",
                    path.display()
                )));
            }
        }
        let mut tail: Option<(PathBuf, u64)> = None;
        for (n, (_, path)) in segments.iter().enumerate() {
            let is_last = n + 1 == segments.len();
            // A segment followed by one that starts at or before the snapshot's next lsn holds
            // only records the snapshot covers: recovery skips it (the audit reads it).
            if let Some((next_first, _)) = segments.get(n + 1) {
                if *next_first <= report.snapshot_lsn + 1 {
                    continue;
                }
            }
            let mut seg_next = next_lsn;
            let scan = scan_segment(
                &mut ledger,
                path,
                &mut seg_next,
                report.snapshot_lsn,
                false,
                &mut report,
            )?;
            next_lsn = seg_next;
            if let Some((offset, reason, followed)) = scan.damage {
                if followed || !is_last {
                    return Err(Error::Corrupt(format!(
                        "{}: record at offset {offset}: {reason} (valid records follow: the log is corrupt, not torn)",
                        path.display()
                    )));
                }
                let len = fs::metadata(path).map_err(|e| io_err(path, e))?.len();
                report.torn_bytes_cut = len - offset as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io_err(path, e))?;
                f.set_len(offset as u64).map_err(|e| io_err(path, e))?;
                f.sync_all().map_err(|e| io_err(path, e))?;
            }
            if is_last {
                tail = Some((path.clone(), scan.valid_len as u64));
            }
        }
        report.last_lsn = next_lsn - 1;

        let (segment_path, len) = match tail {
            Some(t) => t,
            None => {
                let path = dir.join(segment_name(next_lsn));
                File::create(&path).map_err(|e| io_err(&path, e))?;
                sync_dir(dir)?;
                (path, 0)
            }
        };
        let segment = OpenOptions::new()
            .append(true)
            .open(&segment_path)
            .map_err(|e| io_err(&segment_path, e))?;
        ledger.store = Some(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            segment,
            segment_path,
            synced_len: len,
            written_len: len,
            next_lsn,
            records_since_snapshot: report.records_replayed,
            options,
        });
        Ok((ledger, report))
    }

    /// Take a snapshot now (durable ledgers only): write it to a temporary file, fsync, rename,
    /// fsync the directory, then start a new log segment and delete old snapshots.
    pub fn snapshot(&mut self) -> Result<u64> {
        self.check_not_failed()?;
        let result = self.snapshot_inner();
        if let Err(e) = &result {
            self.failed = Some(e.to_string());
        }
        result
    }

    fn snapshot_inner(&mut self) -> Result<u64> {
        if self.store.is_none() {
            return Err(Error::InvalidArgument(
                "an in-memory ledger has no snapshots".into(),
            ));
        }
        // A snapshot must never be ahead of the durable log: sync the records it covers first
        // (the last outcome record is otherwise synced only with the next record).
        let store = self.store.as_mut().expect("checked");
        store.sync()?;
        let lsn = store.last_lsn();
        let dir = store.dir.clone();
        let keep = store.options.snapshots_kept.max(1);
        let bytes = encode_snapshot(self, lsn);
        let final_path = dir.join(snapshot_name(lsn));
        let tmp_path = dir.join(format!("{}.tmp", snapshot_name(lsn)));
        {
            let mut f = File::create(&tmp_path).map_err(|e| io_err(&tmp_path, e))?;
            if let Ok(delay) = std::env::var("TONGBAO_SNAPSHOT_PAUSE_MS") {
                // Crash tests: widen the window between the write and the rename.
                f.write_all(&bytes[..bytes.len() / 2])
                    .map_err(|e| io_err(&tmp_path, e))?;
                std::thread::sleep(std::time::Duration::from_millis(delay.parse().unwrap_or(0)));
                f.write_all(&bytes[bytes.len() / 2..])
                    .map_err(|e| io_err(&tmp_path, e))?;
            } else {
                f.write_all(&bytes).map_err(|e| io_err(&tmp_path, e))?;
            }
            f.sync_all().map_err(|e| io_err(&tmp_path, e))?;
        }
        fs::rename(&tmp_path, &final_path).map_err(|e| io_err(&final_path, e))?;
        sync_dir(&dir)?;
        // New segment, so recovery after this snapshot reads only records after it.
        let store = self.store.as_mut().expect("checked");
        let seg_path = dir.join(segment_name(lsn + 1));
        if seg_path != store.segment_path {
            let segment = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&seg_path)
                .map_err(|e| io_err(&seg_path, e))?;
            sync_dir(&dir)?;
            store.segment = segment;
            store.segment_path = seg_path;
            store.synced_len = 0;
            store.written_len = 0;
        }
        store.records_since_snapshot = 0;
        let (_, snapshots) = list_dir(&dir)?;
        if snapshots.len() > keep {
            for (_, path) in &snapshots[..snapshots.len() - keep] {
                fs::remove_file(path).map_err(|e| io_err(path, e))?;
            }
        }
        Ok(lsn)
    }

    pub(crate) fn maybe_snapshot(&mut self) -> Result<()> {
        let due = match &self.store {
            Some(s) => {
                s.options.snapshot_every_records > 0
                    && s.records_since_snapshot >= s.options.snapshot_every_records
            }
            None => false,
        };
        if due {
            self.snapshot()?;
        }
        Ok(())
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }
}

/// What `audit` found: the summary an auditor reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditReport {
    pub segments: u64,
    pub records: u64,
    pub wallets: u64,
    pub batches: u64,
    pub transactions: u64,
    pub transactions_ok: u64,
    pub issued_fen: u128,
    pub redeemed_fen: u128,
    pub outstanding_fen: u64,
    pub last_receipt_hash: [u8; 32],
    pub torn_tail_bytes: u64,
    pub batches_without_outcome: u64,
}

/// Replay a ledger directory's whole log offline, from lsn 1, verifying every signature, every
/// logged status, the receipt hash chain and the supply invariant. Read-only: a torn tail is
/// reported, not cut. Errors name the file and offset of the first problem.
pub fn audit(dir: &Path, threads: usize) -> Result<AuditReport> {
    let (segments, _) = list_dir(dir)?;
    let mut ledger = Ledger::new(LedgerConfig {
        threads,
        verify_signatures: true,
    })?;
    let mut report = RecoveryReport::default();
    let mut next_lsn = 1u64;
    let mut audit = AuditReport {
        segments: segments.len() as u64,
        ..Default::default()
    };
    if let Some((first, path)) = segments.first() {
        if *first != 1 {
            return Err(Error::Corrupt(format!(
                "{}: the log starts at lsn {first}; an audit needs every segment from lsn 1",
                path.display()
            )));
        }
    }
    for (n, (first, path)) in segments.iter().enumerate() {
        if *first != next_lsn {
            return Err(Error::Corrupt(format!(
                "{}: segment starts at lsn {first} but lsn {next_lsn} was expected (a segment is missing)",
                path.display()
            )));
        }
        let scan = scan_segment(&mut ledger, path, &mut next_lsn, 0, true, &mut report)?;
        if let Some((offset, reason, followed)) = scan.damage {
            if followed || n + 1 != segments.len() {
                return Err(Error::Corrupt(format!(
                    "{}: record at offset {offset}: {reason}",
                    path.display()
                )));
            }
            audit.torn_tail_bytes =
                fs::metadata(path).map_err(|e| io_err(path, e))?.len() - offset as u64;
        }
        ledger
            .check_invariants()
            .map_err(|e| Error::Corrupt(format!("{}: {e}", path.display())))?;
    }
    let supply = ledger.supply();
    audit.records = report.records_replayed;
    audit.batches = report.batches_replayed;
    audit.transactions = report.transactions_replayed;
    audit.wallets = ledger.wallet_count() as u64;
    audit.transactions_ok = report.transactions_ok;
    audit.batches_without_outcome = report.batches_without_outcome;
    audit.issued_fen = supply.issued_fen;
    audit.redeemed_fen = supply.redeemed_fen;
    audit.outstanding_fen = supply.outstanding_fen;
    audit.last_receipt_hash = ledger.last_receipt_hash();
    Ok(audit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::{build_payments, Keyring, Payment};
    use crate::format::{
        append_signatures, encode_body, tx_id_of_body, Condition, Kind, Output, SignatureEntry,
    };

    const CB: u64 = 1;
    const OP: u64 = 10;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tongbao-wal-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn options(snapshot_every_records: u64) -> StoreOptions {
        StoreOptions {
            snapshot_every_records,
            ..StoreOptions::default()
        }
    }

    fn setup(ledger: &mut Ledger, keys: &mut Keyring) {
        let ids = [CB, OP, 100, 101, 102];
        let kinds = [
            WalletKind::CentralBank,
            WalletKind::Operator,
            WalletKind::Personal,
            WalletKind::Personal,
            WalletKind::Personal,
        ];
        let publics = keys.derive_many(Scheme::Ed25519, b"wal", &ids);
        let wallets = ids
            .iter()
            .zip(kinds)
            .zip(publics)
            .map(|((id, kind), pk)| Registration {
                id: *id,
                kind,
                key: PublicKey::parse(Scheme::Ed25519, &pk).unwrap(),
                attrs: WalletAttrs {
                    operator: if *id >= 100 { OP } else { 0 },
                    linked_account: *id == 102,
                    ..WalletAttrs::default()
                },
            })
            .collect();
        ledger.register_wallets(wallets).unwrap();
        let body = encode_body(
            Kind::Issue,
            1_000,
            100_000,
            &[],
            &[Output {
                owner: OP,
                amount_fen: 1_000_000,
                condition: Condition::None,
            }],
            b"",
        );
        let id = tx_id_of_body(&body);
        let mut tx = body;
        append_signatures(
            &mut tx,
            &[SignatureEntry {
                signer: CB,
                signature: keys.get(CB).unwrap().sign(&id),
            }],
        );
        let (statuses, _) = ledger.settle(&[tx], 1_000).unwrap();
        assert_eq!(statuses, vec![Status::Ok]);
    }

    fn pay_round(ledger: &mut Ledger, keys: &Keyring, t: u64) {
        let payments = [
            Payment {
                payer: OP,
                payee: 100,
                amount_fen: 1_000,
            },
            Payment {
                payer: OP,
                payee: 101,
                amount_fen: 2_000,
            },
            Payment {
                payer: OP,
                payee: 102,
                amount_fen: 3_000,
            },
        ];
        let built = build_payments(ledger, keys, &payments, t, t + 50_000, b"", false).unwrap();
        let (statuses, _) = ledger.settle(&built.transactions, t).unwrap();
        assert!(statuses.iter().all(|s| *s == Status::Ok));
        // Resubmission is idempotent and logged too.
        let (again, _) = ledger.settle(&built.transactions, t).unwrap();
        assert!(again.iter().all(|s| *s == Status::AlreadySettled));
    }

    /// Sign a lock-family body with one signer.
    fn signed_lock(keys: &Keyring, body: Vec<u8>, signer: u64) -> Vec<u8> {
        let id = tx_id_of_body(&body);
        let mut tx = body;
        append_signatures(
            &mut tx,
            &[SignatureEntry {
                signer,
                signature: keys.get(signer).unwrap().sign(&id),
            }],
        );
        tx
    }

    #[test]
    fn locks_survive_reopen_and_snapshots_and_deadlines_replay() {
        use crate::format::{encode_lock_body, token_id, LockBody, LockTerms};
        for snapshot_every in [0, 3] {
            let dir = temp_dir(&format!("locks-{snapshot_every}"));
            let mut keys = Keyring::new();
            let (digest, held) = {
                let (mut ledger, _) =
                    Ledger::open(&dir, LedgerConfig::default(), options(snapshot_every)).unwrap();
                setup(&mut ledger, &mut keys);
                pay_round(&mut ledger, &keys, 2_000);
                // 100 locks its 1,000 fen token: 600 for 101 (deadline 3,000, 200 then), 400
                // change; 101 captures 100 and keeps the rest locked; the deadline passes.
                let input = ledger.wallet(100).unwrap().token_ids()[0];
                let out = |amount_fen| Output {
                    owner: 100,
                    amount_fen,
                    condition: Condition::None,
                };
                let terms = LockTerms {
                    beneficiary: 101,
                    releaser: 101,
                    deadline_ms: 3_000,
                    deadline_capture_fen: 200,
                };
                let body = encode_lock_body(
                    Kind::Lock,
                    2_100,
                    50_000,
                    &[input],
                    &[out(600), out(400)],
                    &LockBody::Lock(terms),
                    b"",
                );
                let lock = signed_lock(&keys, body, 100);
                let locked = token_id(&tx_id_of_body(&lock[..lock.len() - 73]), 0);
                let capture_body = encode_lock_body(
                    Kind::Capture,
                    2_200,
                    50_000,
                    &[locked],
                    &[],
                    &LockBody::Capture {
                        payer: 100,
                        amount_fen: 100,
                        keep_rest_locked: true,
                    },
                    b"",
                );
                let capture = signed_lock(&keys, capture_body, 101);
                let (s, _) = ledger.settle(std::slice::from_ref(&lock), 2_100).unwrap();
                assert_eq!(s, vec![Status::Ok]);
                let (s, _) = ledger.settle(&[capture.clone(), lock], 2_200).unwrap();
                assert_eq!(s, vec![Status::Ok, Status::AlreadySettled]);
                assert_eq!(ledger.held_fen(100), 500);
                assert_eq!(ledger.lock_count(), 1);
                let held = ledger.held_fen(100);
                // The deadline passes: 100 more to 101 (200 owed in all), 400 back to 100.
                ledger.settle::<Vec<u8>>(&[], 3_001).unwrap();
                assert_eq!(ledger.lock_count(), 0);
                assert_eq!(ledger.wallet(101).unwrap().balance_fen, 2_000 + 200);
                assert_eq!(ledger.wallet(100).unwrap().balance_fen, 1_000 - 200);
                let (s, _) = ledger.settle(&[capture], 3_002).unwrap();
                assert_eq!(s, vec![Status::AlreadySettled]);
                ledger.check_invariants().unwrap();
                (ledger.state_digest(), held)
            };
            assert_eq!(held, 500);
            let (ledger, _) =
                Ledger::open(&dir, LedgerConfig::default(), options(snapshot_every)).unwrap();
            assert_eq!(ledger.state_digest(), digest);
            ledger.check_invariants().unwrap();
            let audit = audit(&dir, 1).unwrap();
            assert_eq!(audit.outstanding_fen, 1_000_000);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn reopen_rebuilds_the_same_state() {
        let dir = temp_dir("reopen");
        let mut keys = Keyring::new();
        let digest = {
            let (mut ledger, report) =
                Ledger::open(&dir, LedgerConfig::default(), options(0)).unwrap();
            assert_eq!(report.last_lsn, 0);
            setup(&mut ledger, &mut keys);
            for t in 0..5 {
                pay_round(&mut ledger, &keys, 2_000 + t);
            }
            ledger.state_digest()
        };
        let (ledger, report) = Ledger::open(&dir, LedgerConfig::default(), options(0)).unwrap();
        assert_eq!(ledger.state_digest(), digest);
        assert_eq!(report.records_replayed, 1 + 2 + 20);
        assert_eq!(report.batches_without_outcome, 0);
        assert_eq!(report.torn_bytes_cut, 0);
        let audit = audit(&dir, 1).unwrap();
        assert_eq!(audit.batches, 11);
        assert_eq!(audit.outstanding_fen, 1_000_000);
        assert_eq!(audit.last_receipt_hash, ledger.last_receipt_hash());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn snapshots_bound_replay_and_keep_state() {
        let dir = temp_dir("snap");
        let mut keys = Keyring::new();
        let digest = {
            let (mut ledger, _) = Ledger::open(&dir, LedgerConfig::default(), options(4)).unwrap();
            setup(&mut ledger, &mut keys);
            for t in 0..7 {
                pay_round(&mut ledger, &keys, 2_000 + t);
            }
            ledger.state_digest()
        };
        let (_, snapshots) = list_dir(&dir).unwrap();
        assert!(!snapshots.is_empty() && snapshots.len() <= 2);
        let (ledger, report) = Ledger::open(&dir, LedgerConfig::default(), options(4)).unwrap();
        assert_eq!(ledger.state_digest(), digest);
        assert!(report.snapshot_lsn > 0);
        assert!(report.records_replayed < 4, "{report:?}");
        // The audit still replays everything from lsn 1.
        let audit = audit(&dir, 2).unwrap();
        assert_eq!(audit.batches, 15);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_tail_is_cut_and_corruption_in_the_middle_is_an_error() {
        let dir = temp_dir("torn");
        let mut keys = Keyring::new();
        {
            let (mut ledger, _) = Ledger::open(&dir, LedgerConfig::default(), options(0)).unwrap();
            setup(&mut ledger, &mut keys);
            pay_round(&mut ledger, &keys, 2_000);
        }
        let (segments, _) = list_dir(&dir).unwrap();
        let path = segments[0].1.clone();
        let full = fs::read(&path).unwrap();
        // Torn: the final record loses its last 5 bytes.
        fs::write(&path, &full[..full.len() - 5]).unwrap();
        let (ledger, report) = Ledger::open(&dir, LedgerConfig::default(), options(0)).unwrap();
        assert!(report.torn_bytes_cut > 0);
        // The last outcome record was cut; its batch's input is whole, so it is replayed
        // (signatures verified, as no outcome vouches for them).
        assert_eq!(report.records_replayed, 6);
        assert_eq!(report.batches_replayed, 3);
        assert_eq!(report.batches_without_outcome, 1);
        drop(ledger);
        // Corrupt: a flipped byte inside the first record's payload, valid records after it.
        let mut bad = full.clone();
        bad[RECORD_HEADER_LEN + 10] ^= 0x40;
        fs::write(&path, &bad).unwrap();
        let err = Ledger::open(&dir, LedgerConfig::default(), options(0))
            .err()
            .expect("corrupt log");
        let text = err.to_string();
        assert!(
            text.contains("offset 0") && text.contains("corrupt"),
            "{text}"
        );
        assert!(audit(&dir, 1).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn class4_limits() -> Limits {
        let class4 = ClassLimits {
            balance_cap_fen: Some(500_000),
            payment_cap_fen: Some(200_000),
            daily_cap_fen: Some(500_000),
            annual_cap_fen: Some(5_000_000),
        };
        Limits {
            version: "test-1".into(),
            over_balance_cap: OverCap::Sweep,
            classes: [ClassLimits::default(), class4, class4, class4],
            sub_wallet: ClassLimits::default(),
        }
    }

    #[test]
    fn limits_updates_and_counters_survive_reopen_and_snapshots() {
        for snapshot_every in [0, 3] {
            let dir = temp_dir(&format!("rules-{snapshot_every}"));
            let mut keys = Keyring::new();
            let digest = {
                let (mut ledger, _) =
                    Ledger::open(&dir, LedgerConfig::default(), options(snapshot_every)).unwrap();
                setup(&mut ledger, &mut keys);
                ledger.set_limits(class4_limits()).unwrap();
                ledger
                    .update_wallets(vec![
                        (100, WalletUpdate::SetClass(4)),
                        (102, WalletUpdate::SetClass(4)),
                    ])
                    .unwrap();
                pay_round(&mut ledger, &keys, 2_000);
                // 102 (class 4, linked) receives over its cap: the excess is swept to OP.
                let built = build_payments(
                    &ledger,
                    &keys,
                    &[Payment {
                        payer: OP,
                        payee: 102,
                        amount_fen: 900_000,
                    }],
                    3_000,
                    60_000,
                    b"",
                    false,
                )
                .unwrap();
                let (statuses, receipt) = ledger.settle(&built.transactions, 3_000).unwrap();
                assert_eq!(statuses, vec![Status::Ok]);
                assert_eq!(receipt.swept_fen, 900_000 + 3_000 - 500_000);
                assert_eq!(ledger.wallet(102).unwrap().balance_fen, 500_000);
                ledger
                    .update_wallets(vec![(101, WalletUpdate::Freeze)])
                    .unwrap();
                ledger.check_invariants().unwrap();
                ledger.state_digest()
            };
            let (ledger, _) =
                Ledger::open(&dir, LedgerConfig::default(), options(snapshot_every)).unwrap();
            assert_eq!(
                ledger.state_digest(),
                digest,
                "snapshot_every={snapshot_every}"
            );
            assert_eq!(ledger.limits().version, "test-1");
            assert_eq!(
                ledger.wallet(101).unwrap().attrs.status,
                WalletStatus::Frozen
            );
            assert!(ledger.wallet(100).unwrap().counters.day_out_fen == 0);
            assert_eq!(audit(&dir, 1).unwrap().outstanding_fen, 1_000_000);
            fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_trusting_ledger_recovers_a_batch_without_outcome_as_it_settled_it() {
        let dir = temp_dir("trust");
        let mut keys = Keyring::new();
        let trusting = LedgerConfig {
            threads: 1,
            verify_signatures: false,
        };
        let digest = {
            let (mut ledger, _) = Ledger::open(&dir, trusting, options(0)).unwrap();
            setup(&mut ledger, &mut keys);
            let built = build_payments(
                &ledger,
                &keys,
                &[Payment {
                    payer: OP,
                    payee: 100,
                    amount_fen: 7,
                }],
                2_000,
                60_000,
                b"",
                false,
            )
            .unwrap();
            let mut tx = built.transactions[0].clone();
            let last = tx.len() - 1;
            tx[last] ^= 1; // a bad signature, accepted because signatures are trusted
            let (statuses, _) = ledger.settle(&[tx], 2_000).unwrap();
            assert_eq!(statuses, vec![Status::Ok]);
            ledger.state_digest()
        };
        // Drop the final outcome record, as a crash between the two records would.
        let (segments, _) = list_dir(&dir).unwrap();
        let path = &segments[0].1;
        let buf = fs::read(path).unwrap();
        let mut offset = 0;
        let mut last_start = 0;
        while let RecordRead::Record { end, .. } = read_record(&buf, offset) {
            last_start = offset;
            offset = end;
        }
        fs::write(path, &buf[..last_start]).unwrap();
        let trusting = LedgerConfig {
            threads: 1,
            verify_signatures: false,
        };
        let (ledger, report) = Ledger::open(&dir, trusting, options(0)).unwrap();
        assert_eq!(report.batches_without_outcome, 1);
        assert_eq!(ledger.state_digest(), digest);
        // The auditor verifies every signature: of the two transactions the trusting ledger
        // settled (the issue and the payment), it accepts only the issue.
        assert_eq!(audit(&dir, 1).unwrap().transactions_ok, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn second_open_of_a_locked_directory_fails() {
        let dir = temp_dir("lock");
        let (_ledger, _) = Ledger::open(&dir, LedgerConfig::default(), options(0)).unwrap();
        assert!(matches!(
            Ledger::open(&dir, LedgerConfig::default(), options(0)),
            Err(Error::Locked(_))
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
