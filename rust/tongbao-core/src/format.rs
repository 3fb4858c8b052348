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
const SIGNATURE_ENTRY_LEN: usize = 8 + 64;
/// Largest possible encoded transaction, in bytes.
pub const TX_BYTES_MAX: usize = HEADER_LEN
    + 2
    + INPUTS_MAX * 32
    + 2
    + OUTPUTS_MAX * OUTPUT_LEN
    + 1
    + REFERENCE_LEN_MAX
    + 1
    + SIGNATURES_MAX * SIGNATURE_ENTRY_LEN;

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
        }
    }

    /// Wallet administration rather than a payment.
    pub fn is_admin(self) -> bool {
        self as u8 >= Kind::Register as u8
    }

    /// The format version this kind is encoded in.
    pub fn version(self) -> u8 {
        if self.is_admin() {
            ADMIN_FORMAT_VERSION
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

/// A spending condition on an output. Version 1 defines only `None` (tag 0); the tag byte is
/// the room left for programmable money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    None,
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
}

impl Transaction {
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
    assert!(inputs.len() <= INPUTS_MAX && outputs.len() <= OUTPUTS_MAX);
    assert!(reference.len() <= REFERENCE_LEN_MAX);
    let mut out = Vec::with_capacity(
        HEADER_LEN + 5 + inputs.len() * 32 + outputs.len() * OUTPUT_LEN + reference.len() + 1,
    );
    out.push(FORMAT_VERSION);
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
        out.push(match output.condition {
            Condition::None => 0,
        });
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
    if version != FORMAT_VERSION && version != ADMIN_FORMAT_VERSION {
        return Err(DecodeError::new(
            "version",
            0,
            format!("unsupported format version {version}, this build reads {FORMAT_VERSION} and {ADMIN_FORMAT_VERSION}"),
        ));
    }
    let kind_byte = r.u8("kind")?;
    let kind = Kind::from_u8(kind_byte).ok_or_else(|| {
        DecodeError::new(
            "kind",
            1,
            format!("unknown kind {kind_byte} (1 issue, 2 transfer, 3 redeem, 4 register, 5 set class, 6 freeze, 7 unfreeze, 8 close)"),
        )
    })?;
    if kind.version() != version {
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
            tag => {
                return Err(DecodeError::new(
                    "outputs.condition",
                    tag_pos,
                    format!("unknown condition tag {tag} (format version 1 defines only 0, none)"),
                ))
            }
        };
        outputs.push(Output {
            owner,
            amount_fen,
            condition,
        });
    }

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

    let signatures = read_signatures(&mut r)?;

    match kind {
        Kind::Issue if n_inputs != 0 => {
            return Err(DecodeError::new(
                "n_inputs",
                HEADER_LEN,
                "an issue has no inputs".into(),
            ))
        }
        Kind::Transfer | Kind::Redeem if n_inputs == 0 => {
            return Err(DecodeError::new(
                "n_inputs",
                HEADER_LEN,
                format!("a {} needs at least one input", kind.name()),
            ))
        }
        Kind::Issue | Kind::Transfer if n_outputs == 0 => {
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
    })
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
    let signatures = read_signatures(&mut r)?;
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
    r.take(HEADER_LEN, "header")?;
    let n_inputs = r.u16("n_inputs")? as usize;
    r.take(n_inputs.saturating_mul(32), "inputs")?;
    let n_outputs = r.u16("n_outputs")? as usize;
    r.take(n_outputs.saturating_mul(OUTPUT_LEN), "outputs")?;
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
    fn token_ids_differ_by_index() {
        let id = [1u8; 32];
        assert_ne!(token_id(&id, 0), token_id(&id, 1));
    }
}
