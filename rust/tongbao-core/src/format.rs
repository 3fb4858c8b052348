//! The canonical binary transaction format, version 1 (specified in `docs/format.md`).
//!
//! All integers are little-endian. A transaction is a *body* followed by a *signature section*:
//!
//! ```text
//! body:   u8 version | u8 kind | u64 timestamp_ms | u64 expiry_ms
//!         | u16 n_inputs  | n_inputs  x [u8; 32] token id
//!         | u16 n_outputs | n_outputs x (u64 owner | u64 amount_fen | u8 condition tag)
//!         | u8 reference_len | reference bytes
//! sigs:   u8 n_signatures | n_signatures x (u64 signer wallet | [u8; 64] signature)
//! ```
//!
//! `tx_id = SHA-256(body)`; every signature signs the 32-byte `tx_id`. Decoding never panics:
//! every failure is a [`DecodeError`] naming the field and the byte offset.

use sha2::{Digest, Sha256};

use crate::error::DecodeError;

/// Format version of payments (kinds 1-3). Their encoding is the same in every version, so
/// their ids never change.
pub const FORMAT_VERSION: u8 = 1;
/// Format version of wallet administration (kinds 4-8, see [`Admin`]): version 2 = version 1
/// plus these kinds. A transaction is encoded in the lowest version that can express it.
pub const ADMIN_FORMAT_VERSION: u8 = 2;
/// Format version of spending conditions (programmable money, `docs/programmable-money.md`):
/// payments with at least one earmarked output (condition tag 1), and kinds 13 (define a
/// condition) and 14 (reclaim). Version 3 is reserved for locks.
pub const CONDITION_FORMAT_VERSION: u8 = 4;
/// Most merchant category codes in one condition.
pub const CONDITION_MCCS_MAX: usize = 256;
/// Most merchant wallet ids in one condition (Shenzhen 2020 listed 3,389 merchants).
pub const CONDITION_MERCHANTS_MAX: usize = 4096;
/// Most region codes in one condition.
pub const CONDITION_REGIONS_MAX: usize = 256;
/// Condition flag: earmarked value cannot be paid to another person's wallet (it can only be
/// spent at merchants that satisfy the condition, or kept as change).
pub const FLAG_NOT_TRANSFERABLE: u8 = 1;
/// Condition flag: earmarked value cannot be exchanged back to deposits (paid to an operator
/// bank, swept over a balance cap, redeemed).
pub const FLAG_NOT_REDEEMABLE: u8 = 2;
/// Bytes of the fixed part of a condition definition.
const DEFINE_FIXED_LEN: usize = 8 + 8 + 8 + 8 + 8 + 1;
/// Format version of locks (kinds 9-11, see [`LockBody`]): version 3 = version 2 plus these
/// kinds. Payments and administration keep their own versions (and so their ids).
pub const LOCK_FORMAT_VERSION: u8 = 3;
/// Longest public key in a registration (SM2 uncompressed SEC1).
pub const KEY_LEN_MAX: usize = 65;
/// Most inputs (token ids) in one transaction.
pub const INPUTS_MAX: usize = 256;
/// Most outputs in one transaction (a payroll chunk pays up to ~1,000 payees).
pub const OUTPUTS_MAX: usize = 1024;
/// Longest reference (invoice, payroll item, fare tap), in bytes.
pub const REFERENCE_LEN_MAX: usize = 140;
/// Most signatures in one transaction: one per distinct input owner.
pub const SIGNATURES_MAX: usize = 64;
/// Longest validity window `expiry_ms - timestamp_ms`: bounds how long settled ids are kept.
pub const VALIDITY_MS_MAX: u64 = 7 * 24 * 3600 * 1000;

const HEADER_LEN: usize = 1 + 1 + 8 + 8;
const OUTPUT_LEN: usize = 8 + 8 + 1;
/// An earmarked output (version 4): the condition id follows the tag.
const OUTPUT_EARMARKED_LEN: usize = OUTPUT_LEN + 8;
const SIGNATURE_ENTRY_LEN: usize = 8 + 64;
/// Largest possible encoded payment, in bytes.
const PAYMENT_BYTES_MAX: usize = HEADER_LEN
    + 2
    + INPUTS_MAX * 32
    + 2
    + OUTPUTS_MAX * OUTPUT_EARMARKED_LEN
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN;
/// Largest possible condition definition, in bytes.
const DEFINE_BYTES_MAX: usize = HEADER_LEN
    + DEFINE_FIXED_LEN
    + 2
    + CONDITION_MCCS_MAX * 2
    + 2
    + CONDITION_MERCHANTS_MAX * 8
    + 2
    + CONDITION_REGIONS_MAX * 4
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN;
/// Largest possible encoded transaction, in bytes.
pub const TX_BYTES_MAX: usize = if PAYMENT_BYTES_MAX > DEFINE_BYTES_MAX {
    PAYMENT_BYTES_MAX
} else {
    DEFINE_BYTES_MAX
};

pub type TokenId = [u8; 32];
pub type TxId = [u8; 32];
pub type WalletId = u64;

/// What a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// The central bank creates value in operator banks' wallets. No inputs.
    Issue = 1,
    /// Value moves between wallets: sum of inputs equals sum of outputs.
    Transfer = 2,
    /// An operator bank returns value to the central bank: sum of inputs exceeds sum of
    /// outputs (change), the difference is destroyed.
    Redeem = 3,
    /// Wallet administration (format version 2), signed by the wallet's operator bank (the
    /// central bank for operator and central-bank wallets): open a wallet...
    Register = 4,
    /// ...change its class (upgrade or downgrade)...
    SetClass = 5,
    /// ...freeze it (it cannot pay), unfreeze it...
    Freeze = 6,
    Unfreeze = 7,
    /// ...or close it (final; its balance must be zero).
    Close = 8,
    /// Locks (format version 3, `docs/locks.md`): the payer reserves value for a beneficiary
    /// under terms (releaser, deadline, deadline capture). Inputs: the payer's free tokens;
    /// output 0 is the locked token, further outputs are change to the payer.
    Lock = 9,
    /// The releaser pays `amount_fen` of a locked token to its beneficiary; the rest goes back
    /// to the payer or stays locked under the same terms.
    Capture = 10,
    /// The releaser or the beneficiary gives the whole locked value back to the payer.
    Release = 11,
    /// Define a spending condition (format version 4), signed by its issuer.
    Define = 13,
    /// Move earmarked tokens whose condition has expired to the condition's reclaimer (format
    /// version 4), signed by the reclaimer.
    Reclaim = 14,
}

impl Kind {
    pub fn from_u8(value: u8) -> Option<Kind> {
        match value {
            1 => Some(Kind::Issue),
            2 => Some(Kind::Transfer),
            3 => Some(Kind::Redeem),
            4 => Some(Kind::Register),
            5 => Some(Kind::SetClass),
            6 => Some(Kind::Freeze),
            7 => Some(Kind::Unfreeze),
            8 => Some(Kind::Close),
            9 => Some(Kind::Lock),
            10 => Some(Kind::Capture),
            11 => Some(Kind::Release),
            13 => Some(Kind::Define),
            14 => Some(Kind::Reclaim),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Issue => "issue",
            Kind::Transfer => "transfer",
            Kind::Redeem => "redeem",
            Kind::Register => "register",
            Kind::SetClass => "set_class",
            Kind::Freeze => "freeze",
            Kind::Unfreeze => "unfreeze",
            Kind::Close => "close",
            Kind::Lock => "lock",
            Kind::Capture => "capture",
            Kind::Release => "release",
            Kind::Define => "define",
            Kind::Reclaim => "reclaim",
        }
    }

    /// Wallet administration rather than a payment.
    pub fn is_admin(self) -> bool {
        (Kind::Register as u8..=Kind::Close as u8).contains(&(self as u8))
    }

    /// A lock, capture or release (format version 3).
    pub fn is_lock(self) -> bool {
        (Kind::Lock as u8..=Kind::Release as u8).contains(&(self as u8))
    }

    /// Programmable-money kinds (define, reclaim): always format version 4.
    pub fn is_condition(self) -> bool {
        matches!(self, Kind::Define | Kind::Reclaim)
    }

    /// The format version this kind is encoded in when it carries no earmarked output (a
    /// transfer or redeem with one is version 4, see [`Transaction::version`]).
    pub fn version(self) -> u8 {
        if self.is_admin() {
            ADMIN_FORMAT_VERSION
        } else if self.is_condition() {
            CONDITION_FORMAT_VERSION
        } else if self.is_lock() {
            LOCK_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        }
    }
}

/// A wallet to open, as a registration transaction carries it (raw codes; the ledger parses
/// the key and checks the attributes against the registry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWallet {
    /// Wallet kind 1 personal, 2 corporate, 3 merchant, 4 operator, 5 central bank.
    pub kind: u8,
    /// Class 1-4.
    pub class: u8,
    pub operator: WalletId,
    pub parent: WalletId,
    pub mcc: u16,
    pub region: u32,
    pub linked_account: bool,
    /// Signature scheme 1 Ed25519, 2 SM2.
    pub scheme: u8,
    /// Public key: Ed25519 32 bytes, SM2 33 or 65 bytes (SEC1).
    pub key: Vec<u8>,
}

/// The payload of a wallet-administration transaction (kinds 4-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Admin {
    /// The wallet opened or changed.
    pub wallet: WalletId,
    /// Register: the new wallet.
    pub registration: Option<NewWallet>,
    /// SetClass: the new class 1-4 (0 for the other kinds).
    pub class: u8,
}

/// The terms of a lock, fixed when it is made (kind 9) and kept by a partial capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockTerms {
    /// The wallet a capture pays.
    pub beneficiary: WalletId,
    /// The wallet whose signature captures or releases (the beneficiary may also release).
    pub releaser: WalletId,
    /// The first batch whose timestamp is after this applies the deadline action.
    pub deadline_ms: u64,
    /// What the beneficiary gets at the deadline (at most the locked amount; 0: all back to
    /// the payer).
    pub deadline_capture_fen: u64,
}

/// The payload of a lock-family transaction (kinds 9-11, format version 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockBody {
    /// Kind 9: the terms of the lock made by output 0.
    Lock(LockTerms),
    /// Kind 10: capture `amount_fen` of the locked token (the transaction's one input) for the
    /// beneficiary; `keep_rest_locked`: the rest stays locked (partial capture), otherwise it
    /// goes back to the payer (final capture).
    Capture {
        payer: WalletId,
        amount_fen: u64,
        keep_rest_locked: bool,
    },
    /// Kind 11: give the locked token (the one input) back to the payer.
    Release { payer: WalletId },
}

impl LockBody {
    /// The payer a capture or release names (lets a router find the payer's shard).
    pub fn payer(&self) -> Option<WalletId> {
        match self {
            LockBody::Lock(_) => None,
            LockBody::Capture { payer, .. } | LockBody::Release { payer } => Some(*payer),
        }
    }
}

/// A spending condition on an output: tag 0 none (plain money), tag 1 earmarked under the
/// condition with this id (format version 4, defined by a [`Kind::Define`] transaction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    None,
    Earmark(u64),
}

/// A spending condition as a [`Kind::Define`] transaction carries it (evaluated in
/// `conditions.rs`; `docs/programmable-money.md`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionDef {
    /// Chosen by the issuer; the first definition of an id wins.
    pub id: u64,
    /// The wallet that signs the definition and alone may create earmarked outputs.
    pub issuer: WalletId,
    /// The wallet that may reclaim unspent earmarked value after `valid_until_ms`.
    pub reclaimer: WalletId,
    /// Earmarked value is spendable from this batch time on (Unix ms)...
    pub not_before_ms: u64,
    /// ...until before this one; from it on, only the reclaimer can move it.
    pub valid_until_ms: u64,
    /// [`FLAG_NOT_TRANSFERABLE`] | [`FLAG_NOT_REDEEMABLE`].
    pub flags: u8,
    /// Allowed merchant category codes (empty: any category), sorted, no duplicates.
    pub mccs: Vec<u16>,
    /// Allowed merchant wallets (empty: any merchant), sorted, no duplicates.
    pub merchants: Vec<WalletId>,
    /// Allowed merchant regions (empty: any region), sorted, no duplicates.
    pub regions: Vec<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Output {
    pub owner: WalletId,
    pub amount_fen: u64,
    pub condition: Condition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureEntry {
    pub signer: WalletId,
    pub signature: [u8; 64],
}

/// A decoded transaction. `body_len` is where the signature section starts in the encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub kind: Kind,
    pub timestamp_ms: u64,
    pub expiry_ms: u64,
    pub inputs: Vec<TokenId>,
    pub outputs: Vec<Output>,
    pub reference: Vec<u8>,
    pub signatures: Vec<SignatureEntry>,
    pub id: TxId,
    /// Kinds 4-8 only (no inputs, no outputs).
    pub admin: Option<Admin>,
    /// Kind 13 only (no inputs, no outputs).
    pub define: Option<Box<ConditionDef>>,
    /// Kinds 9-11 only. A capture or release has one input (the locked token) and no outputs.
    pub lock: Option<LockBody>,
}

impl Transaction {
    /// The format version this transaction is encoded in: the lowest that can express it.
    pub fn version(&self) -> u8 {
        if self.has_earmarked_output() {
            CONDITION_FORMAT_VERSION
        } else {
            self.kind.version()
        }
    }

    /// Whether an output carries a condition (tag 1).
    pub fn has_earmarked_output(&self) -> bool {
        self.outputs.iter().any(|o| o.condition != Condition::None)
    }

    /// Sum of output amounts, or `None` on u64 overflow.
    pub fn output_sum_fen(&self) -> Option<u64> {
        self.outputs
            .iter()
            .try_fold(0u64, |acc, o| acc.checked_add(o.amount_fen))
    }

    /// Encode the body (everything but signatures). Fields must already be within limits.
    pub fn encode_body(&self) -> Vec<u8> {
        if let Some(admin) = &self.admin {
            return encode_admin_body(
                self.kind,
                self.timestamp_ms,
                self.expiry_ms,
                admin,
                &self.reference,
            );
        }
        if let Some(def) = &self.define {
            return encode_define_body(self.timestamp_ms, self.expiry_ms, def, &self.reference);
        }
        if let Some(lock) = &self.lock {
            return encode_lock_body(
                self.kind,
                self.timestamp_ms,
                self.expiry_ms,
                &self.inputs,
                &self.outputs,
                lock,
                &self.reference,
            );
        }
        encode_body(
            self.kind,
            self.timestamp_ms,
            self.expiry_ms,
            &self.inputs,
            &self.outputs,
            &self.reference,
        )
    }

    /// Encode the whole transaction, signatures included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_body();
        append_signatures(&mut out, &self.signatures);
        out
    }
}

/// Hash of a body: the transaction id.
pub fn tx_id_of_body(body: &[u8]) -> TxId {
    Sha256::digest(body).into()
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Token id of output `index` of transaction `tx_id`: `SHA-256(tx_id || u16 LE index)`.
///
/// The 34-byte message fits one block, so the block is padded here and compressed once (with
/// SHA-NI where the CPU has it): no streaming hasher state to set up and finalise, which cost
/// as much as the compression itself on the settlement hot path (one call per output).
pub fn token_id(tx_id: &TxId, index: u16) -> TokenId {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(tx_id);
    block[32..34].copy_from_slice(&index.to_le_bytes());
    block[34] = 0x80;
    block[56..].copy_from_slice(&(34u64 * 8).to_be_bytes());
    let mut state = SHA256_H0;
    sha2::compress256(&mut state, &[block.into()]);
    let mut id = [0u8; 32];
    for (out, word) in id.chunks_exact_mut(4).zip(state) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    id
}

/// Encode a body. Panics only on programmer error (limits exceeded); callers validate first
/// with [`check_limits`].
pub fn encode_body(
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
    inputs: &[TokenId],
    outputs: &[Output],
    reference: &[u8],
) -> Vec<u8> {
    assert!(reference.len() <= REFERENCE_LEN_MAX);
    assert!(!kind.is_admin() && !kind.is_lock() && kind != Kind::Define);
    let earmarked = outputs.iter().any(|o| o.condition != Condition::None);
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + 5
            + inputs.len() * 32
            + outputs.len() * OUTPUT_EARMARKED_LEN
            + reference.len()
            + 1,
    );
    let version = if earmarked || kind == Kind::Reclaim {
        CONDITION_FORMAT_VERSION
    } else {
        FORMAT_VERSION
    };
    encode_payment_part(
        &mut out,
        version,
        kind,
        timestamp_ms,
        expiry_ms,
        inputs,
        outputs,
    );
    out.push(reference.len() as u8);
    out.extend_from_slice(reference);
    out
}

/// Header, inputs and outputs in the version-1 layout (shared by payments and locks; an
/// earmarked output, version 4, carries its condition id after the tag).
fn encode_payment_part(
    out: &mut Vec<u8>,
    version: u8,
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
    inputs: &[TokenId],
    outputs: &[Output],
) {
    assert!(inputs.len() <= INPUTS_MAX && outputs.len() <= OUTPUTS_MAX);
    out.push(version);
    out.push(kind as u8);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&expiry_ms.to_le_bytes());
    out.extend_from_slice(&(inputs.len() as u16).to_le_bytes());
    for input in inputs {
        out.extend_from_slice(input);
    }
    out.extend_from_slice(&(outputs.len() as u16).to_le_bytes());
    for output in outputs {
        out.extend_from_slice(&output.owner.to_le_bytes());
        out.extend_from_slice(&output.amount_fen.to_le_bytes());
        match output.condition {
            Condition::None => out.push(0),
            Condition::Earmark(id) => {
                out.push(1);
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
    }
}

/// Encode the body of a lock-family transaction (format version 3):
///
/// ```text
/// lock (9):     u8 3 | u8 9 | u64 timestamp_ms | u64 expiry_ms
///               | u16 n_inputs | inputs | u16 n_outputs | outputs   (as version 1)
///               | u64 beneficiary | u64 releaser | u64 deadline_ms | u64 deadline_capture_fen
///               | u8 reference_len | reference
/// capture (10): u8 3 | u8 10 | u64 timestamp_ms | u64 expiry_ms | [u8; 32] lock token
///               | u64 payer | u64 amount_fen | u8 flags (1: keep the rest locked)
///               | u8 reference_len | reference
/// release (11): u8 3 | u8 11 | u64 timestamp_ms | u64 expiry_ms | [u8; 32] lock token
///               | u64 payer | u8 reference_len | reference
/// ```
///
/// For a capture or release, `inputs` is the one locked token and `outputs` is empty.
/// Panics only on programmer error (limits exceeded, a body that does not match `kind`).
pub fn encode_lock_body(
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
    inputs: &[TokenId],
    outputs: &[Output],
    body: &LockBody,
    reference: &[u8],
) -> Vec<u8> {
    assert!(reference.len() <= REFERENCE_LEN_MAX);
    let mut out = Vec::with_capacity(
        HEADER_LEN + 38 + inputs.len() * 32 + outputs.len() * OUTPUT_LEN + reference.len(),
    );
    match (kind, body) {
        (Kind::Lock, LockBody::Lock(t)) => {
            encode_payment_part(
                &mut out,
                LOCK_FORMAT_VERSION,
                kind,
                timestamp_ms,
                expiry_ms,
                inputs,
                outputs,
            );
            out.extend_from_slice(&t.beneficiary.to_le_bytes());
            out.extend_from_slice(&t.releaser.to_le_bytes());
            out.extend_from_slice(&t.deadline_ms.to_le_bytes());
            out.extend_from_slice(&t.deadline_capture_fen.to_le_bytes());
        }
        (Kind::Capture | Kind::Release, _) => {
            assert!(inputs.len() == 1 && outputs.is_empty());
            out.push(LOCK_FORMAT_VERSION);
            out.push(kind as u8);
            out.extend_from_slice(&timestamp_ms.to_le_bytes());
            out.extend_from_slice(&expiry_ms.to_le_bytes());
            out.extend_from_slice(&inputs[0]);
            match (kind, body) {
                (
                    Kind::Capture,
                    LockBody::Capture {
                        payer,
                        amount_fen,
                        keep_rest_locked,
                    },
                ) => {
                    out.extend_from_slice(&payer.to_le_bytes());
                    out.extend_from_slice(&amount_fen.to_le_bytes());
                    out.push(*keep_rest_locked as u8);
                }
                (Kind::Release, LockBody::Release { payer }) => {
                    out.extend_from_slice(&payer.to_le_bytes());
                }
                _ => panic!("lock body does not match kind {}", kind.name()),
            }
        }
        _ => panic!("lock body does not match kind {}", kind.name()),
    }
    out.push(reference.len() as u8);
    out.extend_from_slice(reference);
    out
}

/// Append a signature section to an encoded body.
pub fn append_signatures(out: &mut Vec<u8>, signatures: &[SignatureEntry]) {
    assert!(signatures.len() <= SIGNATURES_MAX);
    out.push(signatures.len() as u8);
    for entry in signatures {
        out.extend_from_slice(&entry.signer.to_le_bytes());
        out.extend_from_slice(&entry.signature);
    }
}

/// Check a transaction's field counts against the format limits (used by builders).
pub fn check_limits(
    n_inputs: usize,
    n_outputs: usize,
    reference_len: usize,
    n_signatures: usize,
) -> Result<(), DecodeError> {
    if n_inputs > INPUTS_MAX {
        return Err(DecodeError::new(
            "inputs",
            0,
            format!("{n_inputs} inputs, at most {INPUTS_MAX} allowed"),
        ));
    }
    if n_outputs > OUTPUTS_MAX {
        return Err(DecodeError::new(
            "outputs",
            0,
            format!("{n_outputs} outputs, at most {OUTPUTS_MAX} allowed"),
        ));
    }
    if reference_len > REFERENCE_LEN_MAX {
        return Err(DecodeError::new(
            "reference",
            0,
            format!("reference is {reference_len} bytes, at most {REFERENCE_LEN_MAX} allowed"),
        ));
    }
    if n_signatures > SIGNATURES_MAX {
        return Err(DecodeError::new(
            "signatures",
            0,
            format!("{n_signatures} signatures, at most {SIGNATURES_MAX} allowed"),
        ));
    }
    Ok(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(DecodeError::new(
                field,
                self.pos,
                format!(
                    "truncated: needs {n} bytes, {} left",
                    self.bytes.len().saturating_sub(self.pos)
                ),
            )),
        }
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn array32(&mut self, field: &'static str) -> Result<[u8; 32], DecodeError> {
        Ok(self.take(32, field)?.try_into().expect("32 bytes"))
    }
}

/// Decode one transaction and compute its id. Checks the encoding, the limits and the
/// structural rules of each kind; never panics.
pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    if bytes.len() > TX_BYTES_MAX {
        return Err(DecodeError::new(
            "transaction",
            0,
            format!("{} bytes, at most {TX_BYTES_MAX} allowed", bytes.len()),
        ));
    }
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u8("version")?;
    if !(FORMAT_VERSION..=CONDITION_FORMAT_VERSION).contains(&version) {
        return Err(DecodeError::new(
            "version",
            0,
            format!("unsupported format version {version}, this build reads {FORMAT_VERSION} to {CONDITION_FORMAT_VERSION}"),
        ));
    }
    let kind_byte = r.u8("kind")?;
    let kind = Kind::from_u8(kind_byte).ok_or_else(|| {
        DecodeError::new(
            "kind",
            1,
            format!("unknown kind {kind_byte} (1 issue, 2 transfer, 3 redeem, 4 register, 5 set class, 6 freeze, 7 unfreeze, 8 close, 9 lock, 10 capture, 11 release, 13 define, 14 reclaim)"),
        )
    })?;
    // Transfers and redeems are version 4 when they carry an earmarked output (checked below).
    let earmark_version =
        version == CONDITION_FORMAT_VERSION && matches!(kind, Kind::Transfer | Kind::Redeem);
    if kind.version() != version && !earmark_version {
        return Err(DecodeError::new(
            "kind",
            1,
            format!(
                "kind {} is encoded in format version {}, not {version}",
                kind.name(),
                kind.version()
            ),
        ));
    }
    let timestamp_ms = r.u64("timestamp_ms")?;
    let expiry_pos = r.pos;
    let expiry_ms = r.u64("expiry_ms")?;
    if expiry_ms < timestamp_ms {
        return Err(DecodeError::new(
            "expiry_ms",
            expiry_pos,
            "expiry is before the timestamp".into(),
        ));
    }
    if expiry_ms - timestamp_ms > VALIDITY_MS_MAX {
        return Err(DecodeError::new(
            "expiry_ms",
            expiry_pos,
            format!("validity window exceeds {VALIDITY_MS_MAX} ms"),
        ));
    }

    if kind.is_admin() {
        return decode_admin(r, kind, timestamp_ms, expiry_ms);
    }
    if kind == Kind::Define {
        return decode_define(r, timestamp_ms, expiry_ms);
    }
    if matches!(kind, Kind::Capture | Kind::Release) {
        return decode_lock_use(r, kind, timestamp_ms, expiry_ms);
    }

    let n_pos = r.pos;
    let n_inputs = r.u16("n_inputs")? as usize;
    if n_inputs > INPUTS_MAX {
        return Err(DecodeError::new(
            "n_inputs",
            n_pos,
            format!("{n_inputs} inputs, at most {INPUTS_MAX} allowed"),
        ));
    }
    let mut inputs = Vec::with_capacity(n_inputs);
    for _ in 0..n_inputs {
        inputs.push(r.array32("inputs")?);
    }

    let n_pos = r.pos;
    let n_outputs = r.u16("n_outputs")? as usize;
    if n_outputs > OUTPUTS_MAX {
        return Err(DecodeError::new(
            "n_outputs",
            n_pos,
            format!("{n_outputs} outputs, at most {OUTPUTS_MAX} allowed"),
        ));
    }
    let mut outputs = Vec::with_capacity(n_outputs);
    for _ in 0..n_outputs {
        let owner = r.u64("outputs.owner")?;
        let amount_fen = r.u64("outputs.amount_fen")?;
        let tag_pos = r.pos;
        let condition = match r.u8("outputs.condition")? {
            0 => Condition::None,
            1 if earmark_version => {
                let id_pos = r.pos;
                match r.u64("outputs.condition_id")? {
                    0 => {
                        return Err(DecodeError::new(
                            "outputs.condition_id",
                            id_pos,
                            "condition id 0 is reserved (no condition)".into(),
                        ))
                    }
                    id => Condition::Earmark(id),
                }
            }
            1 if version == CONDITION_FORMAT_VERSION => {
                return Err(DecodeError::new(
                    "outputs.condition",
                    tag_pos,
                    format!("a {} creates no earmarked output", kind.name()),
                ))
            }
            tag => {
                return Err(DecodeError::new(
                    "outputs.condition",
                    tag_pos,
                    format!(
                        "unknown condition tag {tag} (format version {version} defines {})",
                        if version == CONDITION_FORMAT_VERSION {
                            "0, none and 1, earmarked"
                        } else {
                            "only 0, none"
                        }
                    ),
                ))
            }
        };
        outputs.push(Output {
            owner,
            amount_fen,
            condition,
        });
    }

    let mut lock = None;
    if kind == Kind::Lock {
        let terms_pos = r.pos;
        let terms = LockTerms {
            beneficiary: r.u64("lock.beneficiary")?,
            releaser: r.u64("lock.releaser")?,
            deadline_ms: r.u64("lock.deadline_ms")?,
            deadline_capture_fen: r.u64("lock.deadline_capture_fen")?,
        };
        if let Some(locked) = outputs.first() {
            if terms.deadline_capture_fen > locked.amount_fen {
                return Err(DecodeError::new(
                    "lock.deadline_capture_fen",
                    terms_pos + 24,
                    format!(
                        "deadline capture {} fen is more than the {} fen locked",
                        terms.deadline_capture_fen, locked.amount_fen
                    ),
                ));
            }
        }
        lock = Some(LockBody::Lock(terms));
    }

    let (reference, body_len, signatures) = read_reference_and_signatures(&mut r)?;

    if earmark_version && !outputs.iter().any(|o| o.condition != Condition::None) {
        return Err(DecodeError::new(
            "version",
            0,
            format!(
                "a {} without an earmarked output is encoded in format version 1, not 4",
                kind.name()
            ),
        ));
    }
    match kind {
        Kind::Issue if n_inputs != 0 => {
            return Err(DecodeError::new(
                "n_inputs",
                HEADER_LEN,
                "an issue has no inputs".into(),
            ))
        }
        Kind::Transfer | Kind::Redeem | Kind::Reclaim | Kind::Lock if n_inputs == 0 => {
            return Err(DecodeError::new(
                "n_inputs",
                HEADER_LEN,
                format!("a {} needs at least one input", kind.name()),
            ))
        }
        Kind::Issue | Kind::Transfer | Kind::Reclaim | Kind::Lock if n_outputs == 0 => {
            return Err(DecodeError::new(
                "n_outputs",
                HEADER_LEN + 2 + 32 * n_inputs,
                format!("a {} needs at least one output", kind.name()),
            ))
        }
        _ => {}
    }

    let id = tx_id_of_body(&bytes[..body_len]);
    Ok(Transaction {
        kind,
        timestamp_ms,
        expiry_ms,
        inputs,
        outputs,
        reference,
        signatures,
        id,
        admin: None,
        define: None,
        lock,
    })
}

/// Decode the rest of a capture or release (after the validity window).
fn decode_lock_use(
    mut r: Reader<'_>,
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
) -> Result<Transaction, DecodeError> {
    let token = r.array32("lock.token")?;
    let payer = r.u64("lock.payer")?;
    let body = if kind == Kind::Capture {
        let amount_pos = r.pos;
        let amount_fen = r.u64("capture.amount_fen")?;
        if amount_fen == 0 {
            return Err(DecodeError::new(
                "capture.amount_fen",
                amount_pos,
                "a capture takes at least 1 fen (release gives everything back)".into(),
            ));
        }
        let flags = r.u8("capture.flags")?;
        if flags > 1 {
            return Err(DecodeError::new(
                "capture.flags",
                r.pos - 1,
                format!("unknown capture flags {flags} (0 final, 1 keep the rest locked)"),
            ));
        }
        LockBody::Capture {
            payer,
            amount_fen,
            keep_rest_locked: flags == 1,
        }
    } else {
        LockBody::Release { payer }
    };
    let (reference, body_len, signatures) = read_reference_and_signatures(&mut r)?;
    let id = tx_id_of_body(&r.bytes[..body_len]);
    Ok(Transaction {
        kind,
        timestamp_ms,
        expiry_ms,
        inputs: vec![token],
        outputs: Vec::new(),
        reference,
        signatures,
        id,
        admin: None,
        lock: Some(body),
        define: None,
    })
}

/// The end every body shares: the reference, then the signature section. Returns the
/// reference, the body's length (where the signatures start) and the signatures.
fn read_reference_and_signatures(
    r: &mut Reader<'_>,
) -> Result<(Vec<u8>, usize, Vec<SignatureEntry>), DecodeError> {
    let reference_len = r.u8("reference_len")? as usize;
    if reference_len > REFERENCE_LEN_MAX {
        return Err(DecodeError::new(
            "reference_len",
            r.pos - 1,
            format!("reference is {reference_len} bytes, at most {REFERENCE_LEN_MAX} allowed"),
        ));
    }
    let reference = r.take(reference_len, "reference")?.to_vec();
    let body_len = r.pos;
    let signatures = read_signatures(r)?;
    Ok((reference, body_len, signatures))
}

/// Read the signature section; the reader must end exactly at the end of the input.
fn read_signatures(r: &mut Reader<'_>) -> Result<Vec<SignatureEntry>, DecodeError> {
    let n_pos = r.pos;
    let n_signatures = r.u8("n_signatures")? as usize;
    if n_signatures > SIGNATURES_MAX {
        return Err(DecodeError::new(
            "n_signatures",
            n_pos,
            format!("{n_signatures} signatures, at most {SIGNATURES_MAX} allowed"),
        ));
    }
    let mut signatures: Vec<SignatureEntry> = Vec::with_capacity(n_signatures);
    for _ in 0..n_signatures {
        let signer_pos = r.pos;
        let signer = r.u64("signatures.signer")?;
        if signatures.iter().any(|s| s.signer == signer) {
            return Err(DecodeError::new(
                "signatures.signer",
                signer_pos,
                format!("wallet {signer} signs twice"),
            ));
        }
        let signature: [u8; 64] = r
            .take(64, "signatures.signature")?
            .try_into()
            .expect("64 bytes");
        signatures.push(SignatureEntry { signer, signature });
    }
    if r.pos != r.bytes.len() {
        return Err(DecodeError::new(
            "transaction",
            r.pos,
            format!(
                "{} trailing bytes after the signatures",
                r.bytes.len() - r.pos
            ),
        ));
    }
    Ok(signatures)
}

/// Fixed part of a registration: kind, class, operator, parent, mcc, region, linked account,
/// scheme, key length.
const REGISTRATION_FIXED_LEN: usize = 1 + 1 + 8 + 8 + 2 + 4 + 1 + 1 + 1;

/// Encode the body of a wallet-administration transaction (format version 2):
///
/// ```text
/// u8 version (2) | u8 kind | u64 timestamp_ms | u64 expiry_ms | u64 wallet
/// | register:  u8 wallet kind | u8 class | u64 operator | u64 parent | u16 mcc | u32 region
///              | u8 linked_account | u8 scheme | u8 key_len | key
/// | set class: u8 class
/// | u8 reference_len | reference bytes
/// ```
///
/// Panics only on programmer error (a registration missing for `Register`, a key or reference
/// over its limit).
pub fn encode_admin_body(
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
    admin: &Admin,
    reference: &[u8],
) -> Vec<u8> {
    assert!(kind.is_admin() && reference.len() <= REFERENCE_LEN_MAX);
    let mut out =
        Vec::with_capacity(HEADER_LEN + 8 + REGISTRATION_FIXED_LEN + 66 + reference.len());
    out.push(ADMIN_FORMAT_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&expiry_ms.to_le_bytes());
    out.extend_from_slice(&admin.wallet.to_le_bytes());
    match kind {
        Kind::Register => {
            let w = admin.registration.as_ref().expect("a registration");
            assert!(w.key.len() <= KEY_LEN_MAX);
            out.push(w.kind);
            out.push(w.class);
            out.extend_from_slice(&w.operator.to_le_bytes());
            out.extend_from_slice(&w.parent.to_le_bytes());
            out.extend_from_slice(&w.mcc.to_le_bytes());
            out.extend_from_slice(&w.region.to_le_bytes());
            out.push(w.linked_account as u8);
            out.push(w.scheme);
            out.push(w.key.len() as u8);
            out.extend_from_slice(&w.key);
        }
        Kind::SetClass => out.push(admin.class),
        _ => {}
    }
    out.push(reference.len() as u8);
    out.extend_from_slice(reference);
    out
}

/// Decode the rest of a wallet-administration transaction (after the validity window).
fn decode_admin(
    mut r: Reader<'_>,
    kind: Kind,
    timestamp_ms: u64,
    expiry_ms: u64,
) -> Result<Transaction, DecodeError> {
    let wallet = r.u64("wallet")?;
    let mut class = 0u8;
    let mut registration = None;
    let class_in_range = |r: &Reader<'_>, class: u8, field: &'static str| {
        if (1..=4).contains(&class) {
            Ok(class)
        } else {
            Err(DecodeError::new(
                field,
                r.pos - 1,
                format!("class {class} is not a class 1-4"),
            ))
        }
    };
    match kind {
        Kind::Register => {
            let wallet_kind = r.u8("registration.kind")?;
            if !(1..=5).contains(&wallet_kind) {
                return Err(DecodeError::new(
                    "registration.kind",
                    r.pos - 1,
                    format!("unknown wallet kind {wallet_kind} (1 personal, 2 corporate, 3 merchant, 4 operator, 5 central bank)"),
                ));
            }
            let class = r.u8("registration.class")?;
            let class = class_in_range(&r, class, "registration.class")?;
            let operator = r.u64("registration.operator")?;
            let parent = r.u64("registration.parent")?;
            let mcc = r.u16("registration.mcc")?;
            let region_bytes = r.take(4, "registration.region")?;
            let region = u32::from_le_bytes(region_bytes.try_into().expect("4 bytes"));
            let linked = r.u8("registration.linked_account")?;
            if linked > 1 {
                return Err(DecodeError::new(
                    "registration.linked_account",
                    r.pos - 1,
                    format!("linked_account is 0 or 1, got {linked}"),
                ));
            }
            let scheme = r.u8("registration.scheme")?;
            let key_len_pos = r.pos;
            let key_len = r.u8("registration.key_len")? as usize;
            let lengths: &[usize] = match scheme {
                1 => &[32],
                2 => &[33, 65],
                _ => {
                    return Err(DecodeError::new(
                        "registration.scheme",
                        key_len_pos - 1,
                        format!("unknown signature scheme {scheme} (1 Ed25519, 2 SM2)"),
                    ))
                }
            };
            if !lengths.contains(&key_len) {
                return Err(DecodeError::new(
                    "registration.key_len",
                    key_len_pos,
                    format!("a key of scheme {scheme} is {lengths:?} bytes long, got {key_len}"),
                ));
            }
            let key_pos = r.pos;
            let key = r.take(key_len, "registration.key")?.to_vec();
            let parsed = crate::crypto::Scheme::from_u8(scheme)
                .ok_or_else(|| DecodeError::new("registration.scheme", key_pos, "unknown".into()))
                .and_then(|s| {
                    crate::crypto::PublicKey::parse(s, &key)
                        .map_err(|e| DecodeError::new("registration.key", key_pos, e.to_string()))
                });
            parsed?;
            registration = Some(NewWallet {
                kind: wallet_kind,
                class,
                operator,
                parent,
                mcc,
                region,
                linked_account: linked == 1,
                scheme,
                key,
            });
        }
        Kind::SetClass => {
            let c = r.u8("class")?;
            class = class_in_range(&r, c, "class")?;
        }
        _ => {}
    }
    let (reference, body_len, signatures) = read_reference_and_signatures(&mut r)?;
    let id = tx_id_of_body(&r.bytes[..body_len]);
    Ok(Transaction {
        kind,
        timestamp_ms,
        expiry_ms,
        inputs: Vec::new(),
        outputs: Vec::new(),
        reference,
        signatures,
        id,
        admin: Some(Admin {
            wallet,
            registration,
            class,
        }),
        define: None,
        lock: None,
    })
}

/// Encode the body of a condition definition (format version 4, kind 13):
///
/// ```text
/// u8 version (4) | u8 kind (13) | u64 timestamp_ms | u64 expiry_ms
/// | u64 condition id | u64 issuer | u64 reclaimer | u64 not_before_ms | u64 valid_until_ms
/// | u8 flags | u16 n_mccs | n x u16 | u16 n_merchants | n x u64 | u16 n_regions | n x u32
/// | u8 reference_len | reference bytes
/// ```
///
/// Panics only on programmer error (a list or the reference over its limit).
pub fn encode_define_body(
    timestamp_ms: u64,
    expiry_ms: u64,
    def: &ConditionDef,
    reference: &[u8],
) -> Vec<u8> {
    assert!(reference.len() <= REFERENCE_LEN_MAX);
    assert!(def.mccs.len() <= CONDITION_MCCS_MAX);
    assert!(def.merchants.len() <= CONDITION_MERCHANTS_MAX);
    assert!(def.regions.len() <= CONDITION_REGIONS_MAX);
    let mut out = Vec::with_capacity(
        HEADER_LEN
            + DEFINE_FIXED_LEN
            + 6
            + def.mccs.len() * 2
            + def.merchants.len() * 8
            + def.regions.len() * 4
            + 1
            + reference.len(),
    );
    out.push(CONDITION_FORMAT_VERSION);
    out.push(Kind::Define as u8);
    out.extend_from_slice(&timestamp_ms.to_le_bytes());
    out.extend_from_slice(&expiry_ms.to_le_bytes());
    for v in [
        def.id,
        def.issuer,
        def.reclaimer,
        def.not_before_ms,
        def.valid_until_ms,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.push(def.flags);
    out.extend_from_slice(&(def.mccs.len() as u16).to_le_bytes());
    for m in &def.mccs {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out.extend_from_slice(&(def.merchants.len() as u16).to_le_bytes());
    for m in &def.merchants {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out.extend_from_slice(&(def.regions.len() as u16).to_le_bytes());
    for m in &def.regions {
        out.extend_from_slice(&m.to_le_bytes());
    }
    out.push(reference.len() as u8);
    out.extend_from_slice(reference);
    out
}

/// Read a sorted list without duplicates of at most `max` items.
fn read_sorted<T: Ord + Copy>(
    r: &mut Reader<'_>,
    field: &'static str,
    max: usize,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<T, DecodeError>,
) -> Result<Vec<T>, DecodeError> {
    let n_pos = r.pos;
    let n = r.u16(field)? as usize;
    if n > max {
        return Err(DecodeError::new(
            field,
            n_pos,
            format!("{n} entries, at most {max} allowed"),
        ));
    }
    let mut out: Vec<T> = Vec::with_capacity(n);
    for _ in 0..n {
        let pos = r.pos;
        let v = item(r)?;
        if out.last().is_some_and(|last| *last >= v) {
            return Err(DecodeError::new(
                field,
                pos,
                "entries must be sorted ascending, without duplicates".into(),
            ));
        }
        out.push(v);
    }
    Ok(out)
}

/// Decode the rest of a condition definition (after the validity window).
fn decode_define(
    mut r: Reader<'_>,
    timestamp_ms: u64,
    expiry_ms: u64,
) -> Result<Transaction, DecodeError> {
    let id = r.u64("define.condition")?;
    if id == 0 {
        return Err(DecodeError::new(
            "define.condition",
            HEADER_LEN,
            "condition id 0 is reserved (no condition)".into(),
        ));
    }
    let issuer = r.u64("define.issuer")?;
    let reclaimer = r.u64("define.reclaimer")?;
    let not_before_ms = r.u64("define.not_before_ms")?;
    let until_pos = r.pos;
    let valid_until_ms = r.u64("define.valid_until_ms")?;
    if valid_until_ms <= not_before_ms {
        return Err(DecodeError::new(
            "define.valid_until_ms",
            until_pos,
            "valid_until_ms must be after not_before_ms".into(),
        ));
    }
    let flags = r.u8("define.flags")?;
    if flags & !(FLAG_NOT_TRANSFERABLE | FLAG_NOT_REDEEMABLE) != 0 {
        return Err(DecodeError::new(
            "define.flags",
            r.pos - 1,
            format!("unknown flags {flags:#04x} (1 not transferable, 2 not redeemable)"),
        ));
    }
    let mccs = read_sorted(&mut r, "define.mccs", CONDITION_MCCS_MAX, |r| {
        r.u16("define.mccs")
    })?;
    let merchants = read_sorted(&mut r, "define.merchants", CONDITION_MERCHANTS_MAX, |r| {
        r.u64("define.merchants")
    })?;
    let regions = read_sorted(&mut r, "define.regions", CONDITION_REGIONS_MAX, |r| {
        let b = r.take(4, "define.regions")?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    })?;
    let (reference, body_len, signatures) = read_reference_and_signatures(&mut r)?;
    let tx_id = tx_id_of_body(&r.bytes[..body_len]);
    Ok(Transaction {
        kind: Kind::Define,
        timestamp_ms,
        expiry_ms,
        inputs: Vec::new(),
        outputs: Vec::new(),
        reference,
        signatures,
        id: tx_id,
        admin: None,
        lock: None,
        define: Some(Box::new(ConditionDef {
            id,
            issuer,
            reclaimer,
            not_before_ms,
            valid_until_ms,
            flags,
            mccs,
            merchants,
            regions,
        })),
    })
}

/// Length of the body of an encoded transaction (where the signature section starts), without
/// decoding the whole transaction. Used to sign an unsigned encoding.
pub fn body_len(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut r = Reader { bytes, pos: 0 };
    if bytes.first() == Some(&ADMIN_FORMAT_VERSION) {
        r.take(HEADER_LEN + 8, "header")?;
        if bytes[1] == Kind::Register as u8 {
            r.take(REGISTRATION_FIXED_LEN - 1, "registration")?;
            let key_len = r.u8("registration.key_len")? as usize;
            r.take(key_len, "registration.key")?;
        } else if bytes[1] == Kind::SetClass as u8 {
            r.take(1, "class")?;
        }
        let reference_len = r.u8("reference_len")? as usize;
        r.take(reference_len, "reference")?;
        return Ok(r.pos);
    }
    let version = bytes.first().copied();
    let kind = bytes.get(1).copied();
    if version == Some(CONDITION_FORMAT_VERSION) && kind == Some(Kind::Define as u8) {
        r.take(HEADER_LEN + DEFINE_FIXED_LEN, "header")?;
        for width in [2usize, 8, 4] {
            let n = r.u16("condition list")? as usize;
            r.take(n.saturating_mul(width), "condition list")?;
        }
        let reference_len = r.u8("reference_len")? as usize;
        r.take(reference_len, "reference")?;
        return Ok(r.pos);
    }
    if version == Some(LOCK_FORMAT_VERSION)
        && (kind == Some(Kind::Capture as u8) || kind == Some(Kind::Release as u8))
    {
        let fixed = if kind == Some(Kind::Capture as u8) {
            32 + 8 + 8 + 1
        } else {
            32 + 8
        };
        r.take(HEADER_LEN + fixed, "header")?;
        let reference_len = r.u8("reference_len")? as usize;
        r.take(reference_len, "reference")?;
        return Ok(r.pos);
    }
    r.take(HEADER_LEN, "header")?;
    let n_inputs = r.u16("n_inputs")? as usize;
    r.take(n_inputs.saturating_mul(32), "inputs")?;
    let n_outputs = r.u16("n_outputs")? as usize;
    for _ in 0..n_outputs {
        r.take(OUTPUT_LEN - 1, "outputs")?;
        if r.u8("outputs.condition")? == 1 {
            r.take(8, "outputs.condition_id")?;
        }
    }
    if version == Some(LOCK_FORMAT_VERSION) {
        r.take(32, "lock")?;
    }
    let reference_len = r.u8("reference_len")? as usize;
    r.take(reference_len, "reference")?;
    Ok(r.pos)
}

/// Largest number of transactions in one batch.
pub const BATCH_TX_COUNT_MAX: usize = 1 << 20;

/// Frame a list of encoded transactions as one batch blob: `u32 count | (u32 len | bytes)*`.
pub fn frame_batch<T: AsRef<[u8]>>(txs: &[T]) -> Vec<u8> {
    let total: usize = txs.iter().map(|t| t.as_ref().len() + 4).sum();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&(txs.len() as u32).to_le_bytes());
    for tx in txs {
        out.extend_from_slice(&(tx.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(tx.as_ref());
    }
    out
}

/// Split a batch blob made by [`frame_batch`] into transaction slices.
pub fn unframe_batch(blob: &[u8]) -> Result<Vec<&[u8]>, DecodeError> {
    let mut r = Reader {
        bytes: blob,
        pos: 0,
    };
    let count_bytes = r.take(4, "batch.count")?;
    let count = u32::from_le_bytes(count_bytes.try_into().expect("4 bytes")) as usize;
    if count > BATCH_TX_COUNT_MAX {
        return Err(DecodeError::new(
            "batch.count",
            0,
            format!("{count} transactions, at most {BATCH_TX_COUNT_MAX} in one batch"),
        ));
    }
    let mut out = Vec::with_capacity(count.min(blob.len() / 4));
    for _ in 0..count {
        let len_pos = r.pos;
        let len_bytes = r.take(4, "batch.length")?;
        let len = u32::from_le_bytes(len_bytes.try_into().expect("4 bytes")) as usize;
        if len > TX_BYTES_MAX {
            return Err(DecodeError::new(
                "batch.length",
                len_pos,
                format!("transaction of {len} bytes, at most {TX_BYTES_MAX}"),
            ));
        }
        out.push(r.take(len, "batch.transaction")?);
    }
    if r.pos != blob.len() {
        return Err(DecodeError::new(
            "batch",
            r.pos,
            format!(
                "{} trailing bytes after {count} transactions",
                blob.len() - r.pos
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Transaction {
        let body_inputs = vec![[7u8; 32], [9u8; 32]];
        let outputs = vec![
            Output {
                owner: 42,
                amount_fen: 1_000,
                condition: Condition::None,
            },
            Output {
                owner: 43,
                amount_fen: 2_000,
                condition: Condition::None,
            },
        ];
        let body = encode_body(Kind::Transfer, 10, 20, &body_inputs, &outputs, b"inv-1");
        let mut tx = Transaction {
            kind: Kind::Transfer,
            timestamp_ms: 10,
            expiry_ms: 20,
            inputs: body_inputs,
            outputs,
            reference: b"inv-1".to_vec(),
            signatures: vec![SignatureEntry {
                signer: 42,
                signature: [3u8; 64],
            }],
            id: tx_id_of_body(&body),
            admin: None,
            define: None,
            lock: None,
        };
        tx.id = tx_id_of_body(&tx.encode_body());
        tx
    }

    #[test]
    fn round_trip() {
        let tx = sample();
        let bytes = tx.encode();
        assert_eq!(decode(&bytes).unwrap(), tx);
        assert_eq!(body_len(&bytes).unwrap(), tx.encode_body().len());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).unwrap_err();
            assert!(err.offset <= cut, "{err:?}");
        }
    }

    #[test]
    fn trailing_bytes_rejected() {
        let mut bytes = sample().encode();
        bytes.push(0);
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.field, "transaction");
    }

    #[test]
    fn token_id_is_sha256_of_tx_id_and_index() {
        for seed in 0u16..300 {
            let tx_id: TxId = Sha256::digest(seed.to_le_bytes()).into();
            let index = seed.wrapping_mul(211) ^ (0x8000 * (seed & 1));
            let mut hasher = Sha256::new();
            hasher.update(tx_id);
            hasher.update(index.to_le_bytes());
            let expected: TokenId = hasher.finalize().into();
            assert_eq!(token_id(&tx_id, index), expected);
        }
    }

    #[test]
    fn unknown_condition_named() {
        let tx = sample();
        let mut bytes = tx.encode();
        let tag_offset = HEADER_LEN + 2 + 64 + 2 + 16;
        bytes[tag_offset] = 5;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.field, "outputs.condition");
        assert_eq!(err.offset, tag_offset);
    }

    #[test]
    fn batch_framing_round_trip() {
        let a = sample().encode();
        let b = vec![1u8, 2, 3];
        let blob = frame_batch(&[a.clone(), b.clone()]);
        let parts = unframe_batch(&blob).unwrap();
        assert_eq!(parts, vec![&a[..], &b[..]]);
        assert!(unframe_batch(&blob[..blob.len() - 1]).is_err());
    }

    #[test]
    fn earmarked_outputs_are_version_4_and_plain_ones_stay_version_1() {
        let mut tx = sample();
        let plain = tx.encode();
        assert_eq!(plain[0], FORMAT_VERSION);
        tx.outputs[1].condition = Condition::Earmark(2020);
        tx.id = tx_id_of_body(&tx.encode_body());
        let bytes = tx.encode();
        assert_eq!(bytes[0], CONDITION_FORMAT_VERSION);
        assert_eq!(bytes.len(), plain.len() + 8);
        assert_eq!(decode(&bytes).unwrap(), tx);
        assert_eq!(body_len(&bytes).unwrap(), tx.encode_body().len());
        // A version 4 transfer without an earmarked output, and condition id 0, are malformed.
        let mut v4 = plain.clone();
        v4[0] = CONDITION_FORMAT_VERSION;
        assert_eq!(decode(&v4).unwrap_err().field, "version");
        let mut zero = bytes.clone();
        let id_at = HEADER_LEN + 2 + 64 + 2 + OUTPUT_LEN + OUTPUT_LEN;
        zero[id_at..id_at + 8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(decode(&zero).unwrap_err().field, "outputs.condition_id");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn define_round_trips_and_checks_its_lists() {
        let def = ConditionDef {
            id: 7,
            issuer: 500,
            reclaimer: 501,
            not_before_ms: 10,
            valid_until_ms: 20,
            flags: FLAG_NOT_TRANSFERABLE | FLAG_NOT_REDEEMABLE,
            mccs: vec![4111, 5812],
            merchants: vec![3001],
            regions: vec![440300],
        };
        let mut bytes = encode_define_body(1, 2, &def, b"prog");
        append_signatures(&mut bytes, &[]);
        let tx = decode(&bytes).unwrap();
        assert_eq!(tx.kind, Kind::Define);
        assert_eq!(tx.define.as_deref(), Some(&def));
        assert_eq!(tx.encode(), bytes);
        assert_eq!(body_len(&bytes).unwrap(), bytes.len() - 1);
        let unsorted = ConditionDef {
            mccs: vec![5812, 4111],
            ..def.clone()
        };
        let mut bad = encode_define_body(1, 2, &unsorted, b"");
        append_signatures(&mut bad, &[]);
        assert_eq!(decode(&bad).unwrap_err().field, "define.mccs");
        let empty_window = ConditionDef {
            valid_until_ms: 10,
            ..def
        };
        let mut bad = encode_define_body(1, 2, &empty_window, b"");
        append_signatures(&mut bad, &[]);
        assert_eq!(decode(&bad).unwrap_err().field, "define.valid_until_ms");
    }

    #[test]
    fn token_ids_differ_by_index() {
        let id = [1u8; 32];
        assert_ne!(token_id(&id, 0), token_id(&id, 1));
    }
}
