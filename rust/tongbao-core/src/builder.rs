//! Client-side helpers: a keyring of secret keys, batch signing, and wallet-level payments that
//! select the payer's tokens and make change, so users never handle token ids.

use hashbrown::HashMap;
use rayon::prelude::*;

use crate::crypto::{Scheme, SigningKey};
use crate::error::{Error, Result};
use crate::format::{
    append_signatures, body_len, check_limits, encode_body, token_id, tx_id_of_body, Condition,
    Kind, Output, SignatureEntry, TokenId, WalletId, INPUTS_MAX, VALIDITY_MS_MAX,
};
use crate::ledger::Ledger;
use crate::rules::{self, CapRisk};

/// Secret keys by wallet id, held by a client (operator app, simulator, test).
#[derive(Default, Debug)]
pub struct Keyring {
    keys: HashMap<WalletId, SigningKey>,
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    pub fn insert(&mut self, wallet: WalletId, key: SigningKey) {
        self.keys.insert(wallet, key);
    }

    pub fn get(&self, wallet: WalletId) -> Option<&SigningKey> {
        self.keys.get(&wallet)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Derive deterministic keys for many wallets (in parallel); returns their public keys.
    pub fn derive_many(
        &mut self,
        scheme: Scheme,
        seed: &[u8],
        wallets: &[WalletId],
    ) -> Vec<Vec<u8>> {
        let keys: Vec<SigningKey> = wallets
            .par_iter()
            .map(|&w| SigningKey::derive(scheme, seed, w))
            .collect();
        let publics = keys.par_iter().map(|k| k.public_key_bytes()).collect();
        for (&w, k) in wallets.iter().zip(keys) {
            self.keys.insert(w, k);
        }
        publics
    }

    /// Sign encoded transactions: each gets one signature per wallet in `signers[i]`, replacing
    /// any signature section it had. Runs in parallel on the current rayon pool.
    pub fn sign_many<T: AsRef<[u8]> + Sync>(
        &self,
        txs: &[T],
        signers: &[Vec<WalletId>],
    ) -> Result<Vec<Vec<u8>>> {
        if txs.len() != signers.len() {
            return Err(Error::InvalidArgument(format!(
                "{} transactions but {} signer lists",
                txs.len(),
                signers.len()
            )));
        }
        txs.par_iter()
            .zip(signers.par_iter())
            .map(|(tx, who)| {
                let tx = tx.as_ref();
                let body = &tx[..body_len(tx)?];
                check_limits(0, 0, 0, who.len())?;
                self.sign_body(body, who)
            })
            .collect()
    }

    fn sign_body(&self, body: &[u8], signers: &[WalletId]) -> Result<Vec<u8>> {
        let id = tx_id_of_body(body);
        let mut entries = Vec::with_capacity(signers.len());
        for &signer in signers {
            let key = self.keys.get(&signer).ok_or_else(|| {
                Error::InvalidArgument(format!("no secret key for wallet {signer} in the keyring"))
            })?;
            entries.push(SignatureEntry {
                signer,
                signature: key.sign(&id),
            });
        }
        let mut out = body.to_vec();
        append_signatures(&mut out, &entries);
        Ok(out)
    }
}

/// How many of a payer's newest tokens are searched for one that covers a payment alone.
const SINGLE_TOKEN_WINDOW: usize = 16;

/// One payment request: `amount_fen` from `payer` to `payee`.
#[derive(Clone, Copy, Debug)]
pub struct Payment {
    pub payer: WalletId,
    pub payee: WalletId,
    pub amount_fen: u64,
}

/// Signed payments, in request order, and the indices of requests that were skipped.
pub struct BuiltPayments {
    pub transactions: Vec<Vec<u8>>,
    pub skipped: Vec<usize>,
}

/// Build and sign transfers for many payments against the ledger's current state. Payments
/// chain: a later one may spend the change of an earlier one, or a payment its payer received
/// earlier in the list, so the whole list settles in one batch, in order. Token selection: the
/// smallest of the payer's 16 newest tokens that covers the amount alone; otherwise the newest
/// tokens first, up to [`INPUTS_MAX`] inputs. A payment the payer cannot fund is skipped (its
/// index reported) when `skip_insufficient`, else the whole call fails.
///
/// Balance caps (docs/wallet-rules.md): only outputs that settle exactly as built are chained.
/// For each payment the builder bounds the payee's balance at that point: at most its balance
/// now plus everything paid to it earlier in the list, at least its balance now minus the
/// inputs it spent earlier in the list. It asks [`rules::cap_risk`], the engine's rule, at the
/// upper bound: if the payment cannot go over the cap, its receipt and the change are spendable
/// later in the list; if part of it may be swept to the operator, only the change is (the
/// receipt may be smaller or absent); if it may be refused with `LIMIT_BALANCE`, neither is,
/// and its inputs are not offered to a later payment either, unless it is refused even at the
/// lower bound (then they stay the payer's). So, for a batch of these transactions settled
/// against the ledger's current state, the balance cap never makes a later built payment fail
/// with `UNKNOWN_INPUT` or `INPUT_SPENT`.
pub fn build_payments(
    ledger: &Ledger,
    keyring: &Keyring,
    payments: &[Payment],
    timestamp_ms: u64,
    expiry_ms: u64,
    reference: &[u8],
    skip_insufficient: bool,
) -> Result<BuiltPayments> {
    build_payments_with_references(
        ledger,
        keyring,
        payments,
        timestamp_ms,
        expiry_ms,
        &[reference],
        skip_insufficient,
    )
}

/// [`build_payments`] with a reference per payment (a tax or bill number, say): `references`
/// holds either one reference for every payment or exactly one per payment.
pub fn build_payments_with_references<R: AsRef<[u8]>>(
    ledger: &Ledger,
    keyring: &Keyring,
    payments: &[Payment],
    timestamp_ms: u64,
    expiry_ms: u64,
    references: &[R],
    skip_insufficient: bool,
) -> Result<BuiltPayments> {
    if references.len() != 1 && references.len() != payments.len() {
        return Err(Error::InvalidArgument(format!(
            "{} references for {} payments: give one for all or one per payment",
            references.len(),
            payments.len()
        )));
    }
    for r in references {
        check_limits(0, 2, r.as_ref().len(), 1)?;
    }
    if expiry_ms < timestamp_ms {
        return Err(Error::InvalidArgument(
            "expiry_ms is before timestamp_ms".into(),
        ));
    }
    if expiry_ms - timestamp_ms > VALIDITY_MS_MAX {
        return Err(Error::InvalidArgument(format!(
            "expiry_ms - timestamp_ms exceeds the validity window of {VALIDITY_MS_MAX} ms"
        )));
    }
    // Each payer's spendable tokens as seen by this build: the ledger's, minus those spent by
    // earlier payments here, plus the change and receipts they created that settle as built.
    let mut views: HashMap<WalletId, Vec<(TokenId, u64)>> = HashMap::new();
    let view = |views: &mut HashMap<WalletId, Vec<(TokenId, u64)>>, w: WalletId| -> Result<()> {
        if !views.contains_key(&w) {
            let wallet = ledger.wallet(w).ok_or(Error::UnknownWallet(w))?;
            // Locked tokens are not spendable (docs/locks.md).
            let tokens = wallet
                .token_ids()
                .iter()
                .filter(|id| !ledger.is_locked(id))
                .map(|id| (*id, ledger.token(id).expect("listed token exists").1))
                .collect();
            views.insert(w, tokens);
        }
        Ok(())
    };
    // Per wallet: value paid to it earlier in this list (swept parts included) and value of the
    // inputs it spent, so that its balance now plus / minus these bounds its balance when a
    // later payment to it settles.
    let mut received_fen: HashMap<WalletId, u64> = HashMap::new();
    let mut spent_fen: HashMap<WalletId, u64> = HashMap::new();
    let mut bodies: Vec<(Vec<u8>, WalletId)> = Vec::with_capacity(payments.len());
    let mut skipped = Vec::new();
    for (n, p) in payments.iter().enumerate() {
        if p.amount_fen == 0 {
            return Err(Error::InvalidArgument(format!("payment {n} has amount 0")));
        }
        if keyring.get(p.payer).is_none() {
            return Err(Error::InvalidArgument(format!(
                "no secret key for wallet {} in the keyring",
                p.payer
            )));
        }
        view(&mut views, p.payer)?;
        view(&mut views, p.payee)?;
        let tokens = views.get_mut(&p.payer).expect("view made");
        // One token is best: among the newest few, the smallest that covers the amount moves
        // to the end so it is taken alone.
        let window = tokens.len().saturating_sub(SINGLE_TOKEN_WINDOW);
        let single = tokens[window..]
            .iter()
            .enumerate()
            .filter(|(_, (_, v))| *v >= p.amount_fen)
            .min_by_key(|(_, (_, v))| *v)
            .map(|(i, _)| window + i);
        if let Some(i) = single {
            let last = tokens.len() - 1;
            tokens.swap(i, last);
        }
        let mut inputs: Vec<TokenId> = Vec::new();
        let mut gathered: u64 = 0;
        let mut taken: Vec<(TokenId, u64)> = Vec::new();
        while gathered < p.amount_fen && inputs.len() < INPUTS_MAX {
            let Some((id, value)) = tokens.pop() else {
                break;
            };
            gathered += value;
            inputs.push(id);
            taken.push((id, value));
        }
        if gathered < p.amount_fen {
            tokens.extend(taken.into_iter().rev());
            if skip_insufficient {
                skipped.push(n);
                continue;
            }
            return Err(Error::InsufficientFunds(format!(
                "payment {n}: wallet {} cannot fund {} fen with at most {INPUTS_MAX} tokens",
                p.payer, p.amount_fen
            )));
        }
        let mut outputs = vec![Output {
            owner: p.payee,
            amount_fen: p.amount_fen,
            condition: Condition::None,
        }];
        let change = gathered - p.amount_fen;
        if change > 0 {
            outputs.push(Output {
                owner: p.payer,
                amount_fen: change,
                condition: Condition::None,
            });
        }
        let body = encode_body(
            Kind::Transfer,
            timestamp_ms,
            expiry_ms,
            &inputs,
            &outputs,
            references[if references.len() == 1 { 0 } else { n }].as_ref(),
        );
        let id = tx_id_of_body(&body);
        // A self-payment leaves the balance as it was: the cap cannot touch it.
        let risk = if p.payee == p.payer {
            CapRisk::None
        } else {
            let balance_fen = ledger.wallet(p.payee).expect("view made").balance_fen;
            let balance_min_fen =
                balance_fen.saturating_sub(spent_fen.get(&p.payee).copied().unwrap_or(0));
            if rules::cap_risk(ledger, p.payee, balance_min_fen, p.amount_fen) == CapRisk::Reject {
                // Refused whatever happens before it: its inputs stay the payer's.
                views
                    .get_mut(&p.payer)
                    .expect("view made")
                    .extend(taken.into_iter().rev());
                bodies.push((body, p.payer));
                continue;
            }
            let seen = received_fen.entry(p.payee).or_insert(0);
            let balance_max_fen = balance_fen.saturating_add(*seen);
            *seen = seen.saturating_add(p.amount_fen);
            let risk = rules::cap_risk(ledger, p.payee, balance_max_fen, p.amount_fen);
            if risk == CapRisk::Sweep {
                // The swept part goes to the payee's operator, whose balance grows by as much.
                let operator = ledger.wallet(p.payee).expect("view made").attrs.operator;
                let op_seen = received_fen.entry(operator).or_insert(0);
                *op_seen = op_seen.saturating_add(p.amount_fen);
            }
            risk
        };
        let payer_spent = spent_fen.entry(p.payer).or_insert(0);
        *payer_spent = payer_spent.saturating_add(gathered);
        if risk == CapRisk::Reject {
            // May be refused: its inputs stay out of the payer's view (spent if it settles,
            // the payer's again if not) and nothing may build on its outputs.
            bodies.push((body, p.payer));
            continue;
        }
        if risk == CapRisk::None {
            views
                .get_mut(&p.payee)
                .expect("view made")
                .push((token_id(&id, 0), p.amount_fen));
        }
        if change > 0 {
            views
                .get_mut(&p.payer)
                .expect("view made")
                .push((token_id(&id, 1), change));
        }
        bodies.push((body, p.payer));
    }
    let transactions = ledger.install(|| {
        bodies
            .par_iter()
            .map(|(body, payer)| keyring.sign_body(body, &[*payer]))
            .collect::<Result<Vec<_>>>()
    })?;
    Ok(BuiltPayments {
        transactions,
        skipped,
    })
}
