"""Operator banks exchange deposits for digital cash and back (the two-tier model).

The digital cash an operator bank hands out comes from its **reserve wallet** (its operator
wallet, funded by issues from the central bank). These helpers build, sign and settle the
ledger side of each exchange; the deposit side (debiting or crediting the customer's account)
is the bank's own core-banking entry, made once the returned status is ``OK``.

- :func:`deposit_to_digital`: the customer's deposit is debited; the reserve wallet pays the
  customer's wallet.
- :func:`digital_to_deposit`: the customer's wallet pays the reserve wallet back; the deposit is
  credited. With ``redeem=True`` the operator also returns that value to the central bank (a
  redemption: outstanding supply falls).
- :func:`top_up`: top-up on demand: every wallet whose balance is under ``threshold_fen`` is
  brought back to ``target_fen`` from the reserve, in one batch.

Each call settles one batch and returns its :class:`tongbao.Settlement`; per-wallet outcomes are
statuses (``LIMIT_BALANCE`` for a top-up over a class-4 cap without a linked account, say),
never a lost fen: a rejected exchange changes nothing on the ledger.

>>> import tongbao as tb
>>> ledger, keys = tb.Ledger(), tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> ledger.open_wallets(keys, [100, 101], tb.WalletKind.PERSONAL, operator=10)
>>> _ = ledger.settle([tb.issue(keys, 1, [(10, 100_000)], timestamp_ms=0)], 0)
>>> tb.deposit_to_digital(ledger, keys, 100, 20_000, timestamp_ms=1).ok
True
>>> tb.digital_to_deposit(ledger, keys, 100, 5_000, timestamp_ms=2, redeem=True).ok
True
>>> ledger.balance(100), ledger.balance(10), ledger.supply().outstanding_fen
(15000, 80000, 95000)
>>> result = tb.top_up(ledger, keys, [100, 101], threshold_fen=16_000, target_fen=30_000,
...                    timestamp_ms=3)
>>> result.ok, ledger.balance(100), ledger.balance(101)
(True, 30000, 30000)
>>> tb.top_up(ledger, keys, [100, 101], 16_000, 30_000, timestamp_ms=4) is None  # all above
True
"""

from __future__ import annotations

from collections.abc import Sequence

from tongbao import _core
from tongbao.errors import InsufficientFunds, InvalidArgument, UnknownWallet
from tongbao.ledger import Ledger, Settlement
from tongbao.tx import DEFAULT_VALIDITY_MS
from tongbao.tx import redeem as redeem_tx
from tongbao.types import WalletKind

#: Most wallets one top-up call serves (one batch).
TOP_UP_WALLETS_MAX = 100_000


def operator_of(ledger: Ledger, wallet: int) -> int:
    """The operator bank wallet that operates ``wallet``; raises ``UnknownWallet`` or
    ``InvalidArgument`` (no operator)."""
    info = ledger.wallet(wallet)
    if info is None:
        raise UnknownWallet(f"wallet {wallet} is not registered")
    if info.kind in (WalletKind.OPERATOR, WalletKind.CENTRAL_BANK) or info.operator == 0:
        raise InvalidArgument(f"wallet {wallet} has no operator bank to exchange with")
    return info.operator


def _check_amount(amount_fen: int) -> None:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise InvalidArgument(f"amount_fen: a positive integer in fen, got {amount_fen!r}")


def deposit_to_digital(
    ledger: Ledger,
    keyring: _core.Keyring,
    customer: int,
    amount_fen: int,
    timestamp_ms: int,
    reference: bytes = b"",
) -> Settlement:
    """Exchange ``amount_fen`` of the customer's deposits for digital cash: the operator's
    reserve wallet pays ``customer``. Raises ``InsufficientFunds`` if the reserve is short
    (ask the central bank for an issue), ``UnknownWallet``/``InvalidArgument``."""
    _check_amount(amount_fen)
    operator = operator_of(ledger, customer)
    txs, _ = ledger.build_payments(
        keyring, [operator], [customer], [amount_fen], timestamp_ms, reference=reference
    )
    return ledger.settle(txs, timestamp_ms)


def digital_to_deposit(
    ledger: Ledger,
    keyring: _core.Keyring,
    customer: int,
    amount_fen: int,
    timestamp_ms: int,
    reference: bytes = b"",
    redeem: bool = False,
) -> Settlement:
    """Exchange ``amount_fen`` of the customer's digital cash for deposits: ``customer`` pays
    its operator's reserve wallet. With ``redeem``, once that payment is OK a second batch
    redeems the same value from the reserve to the central bank, and its settlement is
    returned (the payment's, if the payment failed). Raises ``InsufficientFunds`` if the
    customer (or, redeeming, the reserve) is short."""
    _check_amount(amount_fen)
    operator = operator_of(ledger, customer)
    txs, _ = ledger.build_payments(
        keyring, [customer], [operator], [amount_fen], timestamp_ms, reference=reference
    )
    if redeem:
        result = ledger.settle(txs, timestamp_ms)
        if not result.ok:
            return result
        txs = [_redemption(ledger, keyring, operator, amount_fen, timestamp_ms, reference)]
    return ledger.settle(txs, timestamp_ms)


def _redemption(
    ledger: Ledger,
    keyring: _core.Keyring,
    operator: int,
    amount_fen: int,
    timestamp_ms: int,
    reference: bytes,
) -> bytes:
    """A redemption destroying ``amount_fen`` of the operator's tokens (change back to it)."""
    picked, total = [], 0
    for token, value in sorted(ledger.spendable(operator), key=lambda t: -t[1]):
        if total >= amount_fen:
            break
        picked.append(token)
        total += value
    if total < amount_fen:
        raise InsufficientFunds(f"operator {operator} holds {total} fen, {amount_fen} to redeem")
    change = [(operator, total - amount_fen)] if total > amount_fen else []
    expiry = timestamp_ms + DEFAULT_VALIDITY_MS
    return redeem_tx(keyring, picked, change, [operator], timestamp_ms, expiry, reference)


def top_up(
    ledger: Ledger,
    keyring: _core.Keyring,
    wallets: Sequence[int],
    threshold_fen: int,
    target_fen: int,
    timestamp_ms: int,
    reference: bytes = b"top-up",
) -> Settlement | None:
    """Top-up on demand: each wallet whose balance is under ``threshold_fen`` is paid
    ``target_fen − balance`` by its operator's reserve wallet, all in one batch (one status per
    topped-up wallet, in the order of ``wallets``). Returns None when no wallet needs it.

    Call it when a wallet's balance falls (after each batch, or from a payment front end, as
    the e-CNY "automatic top-up" from a linked account does). Raises ``InvalidArgument``
    (``target_fen < threshold_fen``, more than :data:`TOP_UP_WALLETS_MAX` wallets),
    ``InsufficientFunds`` (a reserve is short), ``UnknownWallet``.
    """
    if not 0 < threshold_fen <= target_fen:
        raise InvalidArgument("top_up: need 0 < threshold_fen <= target_fen")
    if len(wallets) > TOP_UP_WALLETS_MAX:
        raise InvalidArgument(f"top_up: at most {TOP_UP_WALLETS_MAX} wallets in one call")
    payers, payees, amounts = [], [], []
    for wallet in wallets:
        balance = ledger.balance(wallet)
        if balance < threshold_fen:
            payers.append(operator_of(ledger, wallet))
            payees.append(wallet)
            amounts.append(target_fen - balance)
    if not payees:
        return None
    txs, _ = ledger.build_payments(
        keyring, payers, payees, amounts, timestamp_ms, reference=reference
    )
    return ledger.settle(txs, timestamp_ms)
