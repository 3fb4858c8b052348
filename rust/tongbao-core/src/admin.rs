//! Wallet administration as transactions (format version 2, kinds 4-8): open a wallet, change
//! its class, freeze, unfreeze and close it. Each is signed by the wallet's *authority* — its
//! operator bank for personal, corporate and merchant wallets, a central-bank wallet for
//! operator and central-bank wallets — travels in a settlement batch, is applied in batch order
//! in phase 2 (so a batch can open a wallet and pay it), and is logged like a payment.
//!
//! The privileged `Ledger::register_wallets` / `update_wallets` calls are the embedder's
//! bootstrap path (the first central-bank wallet, bulk migration); they share the checks below
//! ([`Ledger::check_update`], `check_registrations`) and the apply functions, so both paths
//! enforce the same registry rules.

use crate::crypto::{PublicKey, Scheme};
use crate::error::Error;
use crate::format::{Admin, Kind, Transaction, WalletId};
use crate::ledger::{Ledger, Registration, WalletKind, WalletUpdate};
use crate::rules::{WalletAttrs, WalletStatus};
use crate::status::Status;

impl Ledger {
    /// Whether `update` may be applied to wallet `id` now: `(status, reason)` if not. Shared by
    /// the privileged `update_wallets` and the signed transactions.
    pub(crate) fn check_update(
        &self,
        id: WalletId,
        update: WalletUpdate,
    ) -> std::result::Result<(), (Status, String)> {
        let w = self
            .wallets
            .get(&id)
            .ok_or((Status::UnknownWallet, "is not registered".to_string()))?;
        if w.attrs.status == WalletStatus::Closed {
            return Err((Status::WalletClosed, "is closed".into()));
        }
        match update {
            WalletUpdate::SetClass(c) if !(1..=4).contains(&c) => Err((
                Status::InvalidWallet,
                format!("class {c} is not a class 1-4"),
            )),
            WalletUpdate::SetClass(c)
                if c != 1 && matches!(w.kind, WalletKind::CentralBank | WalletKind::Operator) =>
            {
                Err((
                    Status::InvalidWallet,
                    "central-bank and operator wallets are class 1".into(),
                ))
            }
            WalletUpdate::Close if w.balance_fen != 0 => Err((
                Status::BalanceNotZero,
                format!("cannot close with a balance of {} fen", w.balance_fen),
            )),
            _ => Ok(()),
        }
    }

    /// Whether `signer` may administer a wallet of `kind` at `operator`: the central bank for
    /// operator and central-bank wallets, the wallet's own operator bank for the others.
    fn is_authority(&self, signer: WalletId, kind: WalletKind, operator: WalletId) -> bool {
        let Some(s) = self.wallets.get(&signer) else {
            return false;
        };
        match kind {
            WalletKind::CentralBank | WalletKind::Operator => s.kind == WalletKind::CentralBank,
            _ => signer == operator && s.kind == WalletKind::Operator,
        }
    }

    /// Phase 2 of a wallet-administration transaction: the checks of docs/status-codes.md
    /// ("Wallet administration"), in order, then the change. Leaves state untouched unless OK.
    pub(crate) fn apply_admin(
        &mut self,
        tx: &Transaction,
        admin: &Admin,
    ) -> std::result::Result<(), Status> {
        // A sharded ledger is one vshard of a cluster, and every shard keeps the registry: an
        // administration transaction applied on its signer's shard alone would leave the
        // others (the wallet's home among them) unchanged. Refused until the cluster
        // broadcasts administration (docs/cluster.md).
        if self.shard.spec.is_some() {
            return Err(Status::NotAuthorized);
        }
        let signer = match tx.signatures.as_slice() {
            [] => return Err(Status::MissingSignature),
            [one] => one.signer,
            _ => return Err(Status::UnexpectedSigner),
        };
        let id = admin.wallet;
        // The wallet's kind and operator, as registered or as the registration says.
        let (kind, operator) = match (&admin.registration, self.wallets.get(&id)) {
            (Some(_), Some(_)) => return Err(Status::WalletExists),
            (Some(r), None) => (
                WalletKind::from_u8(r.kind).expect("checked by decode"),
                r.operator,
            ),
            (None, Some(w)) => (w.kind, w.attrs.operator),
            (None, None) => return Err(Status::UnknownWallet),
        };
        if !self.is_authority(signer, kind, operator) {
            return Err(Status::NotAuthorized);
        }
        match self.wallets[&signer].attrs.status {
            WalletStatus::Frozen => return Err(Status::WalletFrozen),
            WalletStatus::Closed => return Err(Status::WalletClosed),
            WalletStatus::Active => {}
        }
        match &admin.registration {
            Some(r) => {
                let scheme = Scheme::from_u8(r.scheme).expect("checked by decode");
                let key = PublicKey::parse(scheme, &r.key).expect("checked by decode");
                let registration = Registration {
                    id,
                    kind,
                    key,
                    attrs: WalletAttrs {
                        class: r.class,
                        operator: r.operator,
                        parent: r.parent,
                        mcc: r.mcc,
                        region: r.region,
                        linked_account: r.linked_account,
                        status: WalletStatus::Active,
                    },
                };
                let one = std::slice::from_ref(&registration);
                self.check_registrations(one).map_err(|e| match e {
                    Error::DuplicateWallet(_) => Status::WalletExists,
                    _ => Status::InvalidWallet,
                })?;
                self.apply_wallets(vec![registration]);
            }
            None => {
                let update = match tx.kind {
                    Kind::SetClass => WalletUpdate::SetClass(admin.class),
                    Kind::Freeze => WalletUpdate::Freeze,
                    Kind::Unfreeze => WalletUpdate::Unfreeze,
                    Kind::Close => WalletUpdate::Close,
                    other => unreachable!("{} is not a wallet update", other.name()),
                };
                self.check_update(id, update)
                    .map_err(|(status, _)| status)?;
                self.apply_updates(&[(id, update)]);
            }
        }
        self.settled.insert(tx.id, tx.expiry_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::Keyring;
    use crate::format::{
        append_signatures, encode_admin_body, encode_body, tx_id_of_body, Condition, NewWallet,
        Output, SignatureEntry,
    };
    use crate::ledger::LedgerConfig;

    const CB: u64 = 1;
    const OP_A: u64 = 10;
    const OP_B: u64 = 11;

    fn signed(mut body: Vec<u8>, keys: &Keyring, signers: &[u64]) -> Vec<u8> {
        let id = tx_id_of_body(&body);
        let entries: Vec<SignatureEntry> = signers
            .iter()
            .map(|s| SignatureEntry {
                signer: *s,
                signature: keys.get(*s).unwrap().sign(&id),
            })
            .collect();
        append_signatures(&mut body, &entries);
        body
    }

    fn admin(kind: Kind, wallet: u64, class: u8, reg: Option<NewWallet>, t: u64) -> Vec<u8> {
        let a = Admin {
            wallet,
            registration: reg,
            class,
        };
        encode_admin_body(kind, t, t + 60_000, &a, b"")
    }

    fn new_wallet(keys: &mut Keyring, id: u64, kind: u8, operator: u64) -> NewWallet {
        let key = keys.derive_many(Scheme::Ed25519, b"admin", &[id]).remove(0);
        NewWallet {
            kind,
            class: 4,
            operator,
            parent: 0,
            mcc: 0,
            region: 0,
            linked_account: false,
            scheme: 1,
            key,
        }
    }

    /// What a rejected transaction must not change (the state digest also covers the receipt
    /// chain, which every batch moves on).
    fn fingerprint(ledger: &Ledger) -> Vec<(u64, WalletKind, WalletAttrs, u64)> {
        let mut v: Vec<_> = ledger
            .wallets
            .iter()
            .map(|(id, w)| (*id, w.kind, w.attrs, w.balance_fen))
            .collect();
        v.sort_unstable_by_key(|x| x.0);
        v.push((
            u64::MAX,
            WalletKind::Personal,
            WalletAttrs::default(),
            ledger.settled_count() as u64,
        ));
        v
    }

    /// A ledger bootstrapped with a central bank (the one privileged registration), whose
    /// operators are then opened by signed transactions.
    fn bootstrap(keys: &mut Keyring) -> Ledger {
        let mut ledger = Ledger::new(LedgerConfig::default()).unwrap();
        let pk = keys.derive_many(Scheme::Ed25519, b"admin", &[CB]).remove(0);
        ledger
            .register_wallets(vec![Registration {
                id: CB,
                kind: WalletKind::CentralBank,
                key: PublicKey::parse(Scheme::Ed25519, &pk).unwrap(),
                attrs: WalletAttrs::default(),
            }])
            .unwrap();
        let mut ops = Vec::new();
        for op in [OP_A, OP_B] {
            let mut reg = new_wallet(keys, op, WalletKind::Operator as u8, op);
            reg.class = 1;
            ops.push(signed(
                admin(Kind::Register, op, 0, Some(reg), 10),
                keys,
                &[CB],
            ));
        }
        let issue = encode_body(
            Kind::Issue,
            10,
            60_010,
            &[],
            &[Output {
                owner: OP_A,
                amount_fen: 1_000_000,
                condition: Condition::None,
            }],
            b"",
        );
        ops.push(signed(issue, keys, &[CB]));
        let (statuses, _) = ledger.settle(&ops, 10).unwrap();
        assert_eq!(statuses, vec![Status::Ok; 3]);
        ledger
    }

    #[test]
    fn a_batch_opens_a_wallet_and_pays_it() {
        let mut keys = Keyring::new();
        let mut ledger = bootstrap(&mut keys);
        let reg = new_wallet(&mut keys, 100, WalletKind::Personal as u8, OP_A);
        let open = signed(admin(Kind::Register, 100, 0, Some(reg), 20), &keys, &[OP_A]);
        let token = *ledger.wallet(OP_A).unwrap().token_ids().first().unwrap();
        let pay = encode_body(
            Kind::Transfer,
            20,
            60_020,
            &[token],
            &[
                Output {
                    owner: 100,
                    amount_fen: 500,
                    condition: Condition::None,
                },
                Output {
                    owner: OP_A,
                    amount_fen: 999_500,
                    condition: Condition::None,
                },
            ],
            b"",
        );
        let pay = signed(pay, &keys, &[OP_A]);
        let (statuses, receipt) = ledger.settle(&[open.clone(), pay], 20).unwrap();
        assert_eq!(statuses, vec![Status::Ok, Status::Ok]);
        assert_eq!(receipt.value_moved_fen, 500);
        let w = ledger.wallet(100).unwrap();
        assert_eq!(
            (w.balance_fen, w.attrs.class, w.attrs.operator),
            (500, 4, OP_A)
        );
        // Re-submission: ALREADY_SETTLED, nothing changes.
        let before = fingerprint(&ledger);
        let (again, _) = ledger.settle(&[open], 21).unwrap();
        assert_eq!(again, vec![Status::AlreadySettled]);
        assert_eq!(fingerprint(&ledger), before);
        ledger.check_invariants().unwrap();
    }

    #[test]
    fn each_admin_status_leaves_the_state_untouched() {
        let mut keys = Keyring::new();
        let mut ledger = bootstrap(&mut keys);
        let reg = new_wallet(&mut keys, 100, WalletKind::Personal as u8, OP_A);
        let open = signed(
            admin(Kind::Register, 100, 0, Some(reg.clone()), 20),
            &keys,
            &[OP_A],
        );
        assert_eq!(ledger.settle(&[open], 20).unwrap().0, vec![Status::Ok]);
        let reg_b = new_wallet(&mut keys, 200, WalletKind::Personal as u8, OP_B);
        let mut sub = new_wallet(&mut keys, 201, WalletKind::Merchant as u8, OP_A);
        sub.parent = 100;
        let mut forged = signed(admin(Kind::Freeze, 100, 0, None, 30), &keys, &[OP_A]);
        let last = forged.len() - 1;
        forged[last] ^= 1;
        let cases: Vec<(Vec<u8>, Status)> = vec![
            (
                signed(admin(Kind::Freeze, 100, 0, None, 30), &keys, &[]),
                Status::MissingSignature,
            ),
            (
                signed(admin(Kind::Freeze, 100, 0, None, 31), &keys, &[OP_A, OP_B]),
                Status::UnexpectedSigner,
            ),
            (forged, Status::BadSignature),
            (
                signed(admin(Kind::Freeze, 999, 0, None, 30), &keys, &[OP_A]),
                Status::UnknownWallet,
            ),
            (
                signed(admin(Kind::Register, 100, 0, Some(reg), 30), &keys, &[OP_A]),
                Status::WalletExists,
            ),
            // Operator B acts on a wallet operator A operates.
            (
                signed(admin(Kind::Freeze, 100, 0, None, 32), &keys, &[OP_B]),
                Status::NotAuthorized,
            ),
            // Operator A opens a wallet at operator B.
            (
                signed(
                    admin(Kind::Register, 200, 0, Some(reg_b), 30),
                    &keys,
                    &[OP_A],
                ),
                Status::NotAuthorized,
            ),
            // Only the central bank changes an operator.
            (
                signed(admin(Kind::SetClass, OP_B, 1, None, 30), &keys, &[OP_A]),
                Status::NotAuthorized,
            ),
            (
                signed(admin(Kind::SetClass, OP_B, 2, None, 30), &keys, &[CB]),
                Status::InvalidWallet,
            ),
            (
                signed(admin(Kind::Register, 201, 0, Some(sub), 30), &keys, &[OP_A]),
                Status::InvalidWallet,
            ),
        ];
        for (tx, want) in cases {
            let before = fingerprint(&ledger);
            let (got, _) = ledger.settle(&[&tx], 30).unwrap();
            assert_eq!(got, vec![want], "{:?}", crate::format::decode(&tx));
            assert_eq!(fingerprint(&ledger), before, "{want:?} changed the state");
        }
        // Freeze, pay from the frozen wallet is refused; unfreeze, class change, close.
        let steps: Vec<(Vec<u8>, Status)> = vec![
            (
                signed(admin(Kind::Freeze, 100, 0, None, 40), &keys, &[OP_A]),
                Status::Ok,
            ),
            (
                signed(admin(Kind::Unfreeze, 100, 0, None, 40), &keys, &[OP_A]),
                Status::Ok,
            ),
            (
                signed(admin(Kind::SetClass, 100, 2, None, 40), &keys, &[OP_A]),
                Status::Ok,
            ),
            (
                signed(admin(Kind::Close, 100, 0, None, 40), &keys, &[OP_A]),
                Status::Ok,
            ),
            (
                signed(admin(Kind::Unfreeze, 100, 0, None, 41), &keys, &[OP_A]),
                Status::WalletClosed,
            ),
        ];
        for (tx, want) in steps {
            assert_eq!(ledger.settle(&[tx], 40).unwrap().0, vec![want]);
        }
        let w = ledger.wallet(100).unwrap();
        assert_eq!((w.attrs.class, w.attrs.status), (2, WalletStatus::Closed));
        // An operator with a balance cannot be closed.
        let close_op = signed(admin(Kind::Close, OP_A, 0, None, 50), &keys, &[CB]);
        assert_eq!(
            ledger.settle(&[close_op], 50).unwrap().0,
            vec![Status::BalanceNotZero]
        );
        // A frozen operator can no longer administer its wallets.
        let freeze_op = signed(admin(Kind::Freeze, OP_A, 0, None, 51), &keys, &[CB]);
        let reg = new_wallet(&mut keys, 102, WalletKind::Personal as u8, OP_A);
        let open = signed(admin(Kind::Register, 102, 0, Some(reg), 51), &keys, &[OP_A]);
        assert_eq!(
            ledger.settle(&[freeze_op, open], 51).unwrap().0,
            vec![Status::Ok, Status::WalletFrozen]
        );
        ledger.check_invariants().unwrap();
    }
}
