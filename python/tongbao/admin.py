"""Wallet administration as signed transactions (``docs/wallet-rules.md``, "Administration").

An operator bank opens, upgrades or downgrades, freezes, unfreezes and closes the wallets it
operates by signing a transaction (format version 2, kinds 4-8) and settling it in a batch like
any payment; the central bank does the same for operator-bank wallets. The ledger checks that
the signer is the wallet's operator (``NOT_AUTHORIZED`` otherwise), applies the change in batch
order (so one batch can open a wallet and pay it), logs it, and answers a resubmission with
``ALREADY_SETTLED``.

>>> import tongbao as tb
>>> ledger, keys = tb.Ledger(), tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)  # bootstrap: the one privileged call
>>> bank = tb.register_wallet(keys, 1, 10, tb.WalletKind.OPERATOR, keys.generate([10], 1, b"s")[0],
...                           timestamp_ms=0)
>>> alice_key = keys.generate([100], 1, b"s")[0]
>>> alice = tb.register_wallet(keys, 10, 100, tb.WalletKind.PERSONAL, alice_key,
...                            wallet_class=4, timestamp_ms=0)
>>> [tb.Status(s).name for s in ledger.settle([bank, alice], 0).statuses]
['OK', 'UNKNOWN_WALLET']
>>> ledger.settle([alice], 1).status(0).name  # the bank signs from the batch after its own
'OK'
>>> ledger.settle([tb.set_wallet_class(keys, 10, 100, 2, timestamp_ms=2)], 2).status(0).name
'OK'
>>> ledger.wallet(100).wallet_class, ledger.wallet(100).operator
(2, 10)
>>> ledger.settle([tb.freeze_wallet(keys, 1, 100, timestamp_ms=3)], 3).status(0).name
'NOT_AUTHORIZED'
"""

from __future__ import annotations

from tongbao import _core
from tongbao.tx import DEFAULT_VALIDITY_MS, sign
from tongbao.types import Kind, Scheme, WalletKind

#: A registration as :func:`encode_admin` takes it: (wallet kind, class, operator, parent,
#: mcc, region, linked_account, scheme, public key).
Registration = tuple[int, int, int, int, int, int, bool, int, bytes]


def encode_admin(
    kind: Kind,
    wallet: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    registration: Registration | None = None,
    wallet_class: int = 0,
) -> bytes:
    """Encode an unsigned wallet-administration transaction (kinds 4-8, format version 2);
    sign it with :func:`tongbao.sign`. ``registration`` goes with ``Kind.REGISTER`` only,
    ``wallet_class`` with ``Kind.SET_CLASS``.

    Raises ``MalformedTransaction`` naming the field (``registration.key``, ``class``, ...) or
    ``InvalidArgument``.

    >>> import tongbao as tb
    >>> tx = tb.encode_admin(tb.Kind.SET_CLASS, 100, timestamp_ms=0, wallet_class=2)
    >>> d = tb.decode(tx)
    >>> d["version"], tb.Kind(d["kind"]).name, d["wallet"], d["wallet_class"]
    (2, 'SET_CLASS', 100, 2)
    >>> tb.encode_admin(tb.Kind.SET_CLASS, 100, timestamp_ms=0, wallet_class=7)
    Traceback (most recent call last):
    ...
    tongbao.errors.MalformedTransaction: malformed class at byte 26: class 7 is not a class 1-4
    """
    expiry = timestamp_ms + DEFAULT_VALIDITY_MS if expiry_ms is None else expiry_ms
    return _core.encode_admin(
        int(kind),
        int(wallet),
        int(timestamp_ms),
        int(expiry),
        bytes(reference),
        registration,
        int(wallet_class),
    )


def _signed(
    keyring: _core.Keyring,
    signer: int,
    kind: Kind,
    wallet: int,
    timestamp_ms: int,
    expiry_ms: int | None,
    reference: bytes,
    registration: Registration | None = None,
    wallet_class: int = 0,
) -> bytes:
    body = encode_admin(
        kind, wallet, timestamp_ms, expiry_ms, reference, registration, wallet_class
    )
    return sign(keyring, body, [int(signer)])


def register_wallet(
    keyring: _core.Keyring,
    signer: int,
    wallet: int,
    kind: WalletKind,
    public_key: bytes,
    *,
    timestamp_ms: int,
    scheme: Scheme = Scheme.ED25519,
    wallet_class: int = 1,
    operator: int | None = None,
    parent: int = 0,
    mcc: int = 0,
    region: int = 0,
    linked_account: bool = False,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A registration (kind 4) of ``wallet`` signed by ``signer``: its operator bank for a
    personal, corporate or merchant wallet (``operator`` defaults to ``signer``), a
    central-bank wallet for an operator or central-bank wallet (``operator`` defaults to the
    new wallet itself for an operator, 0 for the central bank).

    Raises ``MalformedTransaction`` naming the field (bad key for ``scheme``, class outside
    1-4, reference too long). Whether the registry accepts it is the ledger's status.
    """
    if operator is None:
        if kind == WalletKind.OPERATOR:
            operator = wallet
        elif kind == WalletKind.CENTRAL_BANK:
            operator = 0
        else:
            operator = signer
    registration = (
        int(kind),
        int(wallet_class),
        int(operator),
        int(parent),
        int(mcc),
        int(region),
        bool(linked_account),
        int(scheme),
        bytes(public_key),
    )
    return _signed(
        keyring, signer, Kind.REGISTER, wallet, timestamp_ms, expiry_ms, reference, registration
    )


def set_wallet_class(
    keyring: _core.Keyring,
    signer: int,
    wallet: int,
    wallet_class: int,
    *,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """Upgrade or downgrade ``wallet`` to ``wallet_class`` (kind 5), signed by its operator."""
    return _signed(
        keyring,
        signer,
        Kind.SET_CLASS,
        wallet,
        timestamp_ms,
        expiry_ms,
        reference,
        wallet_class=wallet_class,
    )


def freeze_wallet(
    keyring: _core.Keyring,
    signer: int,
    wallet: int,
    *,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """Freeze ``wallet`` (kind 6): it can still receive but not pay. Freezing a frozen
    wallet is OK and changes nothing."""
    return _signed(keyring, signer, Kind.FREEZE, wallet, timestamp_ms, expiry_ms, reference)


def unfreeze_wallet(
    keyring: _core.Keyring,
    signer: int,
    wallet: int,
    *,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """Let a frozen ``wallet`` pay again (kind 7); OK and no change on an active one."""
    return _signed(keyring, signer, Kind.UNFREEZE, wallet, timestamp_ms, expiry_ms, reference)


def close_wallet(
    keyring: _core.Keyring,
    signer: int,
    wallet: int,
    *,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """Close ``wallet`` for good (kind 8): ``BALANCE_NOT_ZERO`` unless its balance is 0 (redeem
    it to deposits first, see :func:`tongbao.digital_to_deposit`)."""
    return _signed(keyring, signer, Kind.CLOSE, wallet, timestamp_ms, expiry_ms, reference)
