"""Escrow and conditional release (issue 9, item 3): a thin layer on :mod:`tongbao.locks`.

The payer's money is locked to a **payee** under a release rule: it is released to the payee
when a named **releaser** signs (the buyer accepting a delivery, a parent confirming a lesson,
an inspector), all at once or in **instalments** (partial captures), and it is **refunded** to
the payer on a signed refund (by the releaser or by the payee, say a school that stops) or
automatically after the **refund deadline** (the lock's deadline action with a deadline capture
of 0). Every step is one transaction with a status, logged like any other; nothing here keeps
state of its own: an :class:`Escrow` is a handle on the lock (its current token).

Prepaid fees for 4 lessons of ¥200, released lesson by lesson by the parent, the rest
refunded when the school stops:

>>> import tongbao as tb
>>> from tongbao import escrow
>>> ledger, keys = tb.Ledger(), tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> ledger.open_wallets(keys, [100, 101], tb.WalletKind.PERSONAL, operator=10)
>>> ledger.open_wallets(keys, [700], tb.WalletKind.MERCHANT, operator=10)
>>> _ = ledger.settle([tb.issue(keys, 1, [(10, 100_000)], timestamp_ms=0)], 0)
>>> _ = ledger.pay(keys, 10, 100, 100_000, timestamp_ms=0)
>>> DAY = 86_400_000
>>> tx, fees = escrow.open(ledger, keys, payer=100, payee=700, amount_fen=80_000,
...                        releaser=101, refund_after_ms=90 * DAY, timestamp_ms=1)
>>> escrow.settle(ledger, tx, 1)
<Status.OK: 0>
>>> for lesson in (1, 2):
...     tx, fees = escrow.instalment(keys, fees, 20_000, timestamp_ms=lesson * DAY)
...     print(escrow.settle(ledger, tx, lesson * DAY).name, ledger.balance(700))
OK 20000
OK 40000
>>> escrow.held_fen(ledger, fees)
40000
>>> tx = escrow.refund(keys, fees, signer=700, timestamp_ms=3 * DAY)  # the school stops
>>> escrow.settle(ledger, tx, 3 * DAY).name, ledger.balance(100), escrow.held_fen(ledger, fees)
('OK', 60000, 0)

A delivery accepted by the buyer releases everything; a forged release is refused with a
status, and changes nothing:

>>> tx, order = escrow.open(ledger, keys, 100, 700, 5_000, releaser=100,
...                         refund_after_ms=10 * DAY, timestamp_ms=4 * DAY)
>>> escrow.settle(ledger, tx, 4 * DAY).name
'OK'
>>> forged, _ = escrow.release(keys, order, timestamp_ms=5 * DAY, signer=700)
>>> escrow.settle(ledger, forged, 5 * DAY).name
'NOT_RELEASER'
>>> tx, _ = escrow.release(keys, order, timestamp_ms=5 * DAY)
>>> escrow.settle(ledger, tx, 5 * DAY).name, ledger.balance(700)
('OK', 45000)

Nobody signs: after the refund deadline the next batch refunds the payer.

>>> tx, lapsed = escrow.open(ledger, keys, 100, 700, 1_000, 101, refund_after_ms=6 * DAY,
...                          timestamp_ms=5 * DAY)
>>> escrow.settle(ledger, tx, 5 * DAY).name, ledger.held_fen(100)
('OK', 1000)
>>> _ = ledger.settle([], 6 * DAY + 1)
>>> escrow.held_fen(ledger, lapsed), ledger.balance(100), ledger.balance(700)
(0, 55000, 45000)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.ledger import Ledger
from tongbao.locks import capture, lock_token_id, rest_token_id
from tongbao.locks import release as release_lock
from tongbao.types import Status


@dataclass(frozen=True)
class Escrow:
    """Handle on an escrow: its current lock token and its terms. ``amount_fen`` is what the
    handle's token holds (after instalments, what is left)."""

    token: bytes
    payer: int
    payee: int
    releaser: int
    refund_after_ms: int
    amount_fen: int


def open(
    ledger: Ledger,
    keyring: _core.Keyring,
    payer: int,
    payee: int,
    amount_fen: int,
    releaser: int,
    refund_after_ms: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> tuple[bytes, Escrow]:
    """Lock ``amount_fen`` of the payer's free tokens to ``payee``, released by ``releaser``'s
    signature, refunded in full after ``refund_after_ms``. Returns the signed lock and the
    escrow's handle (valid once the lock settles ``OK``). Raises ``InsufficientFunds``."""
    tx = ledger.build_lock(
        keyring,
        payer,
        amount_fen,
        payee,
        releaser,
        refund_after_ms,
        0,
        timestamp_ms,
        expiry_ms,
        reference,
    )
    handle = Escrow(lock_token_id(tx), payer, payee, releaser, refund_after_ms, amount_fen)
    return tx, handle


def instalment(
    keyring: _core.Keyring,
    escrow: Escrow,
    amount_fen: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> tuple[bytes, Escrow | None]:
    """Release ``amount_fen`` to the payee (signed by the releaser), the rest staying in
    escrow under the same terms. Returns the signed capture and the handle on what is left
    (None when nothing is)."""
    if not 0 < amount_fen <= escrow.amount_fen:
        raise InvalidArgument(
            f"an instalment is 1 to {escrow.amount_fen} fen (what the escrow holds), "
            f"got {amount_fen}"
        )
    tx = capture(
        keyring,
        escrow.releaser,
        escrow.token,
        escrow.payer,
        amount_fen,
        True,
        timestamp_ms,
        expiry_ms,
        reference,
    )
    left = escrow.amount_fen - amount_fen
    return tx, (replace(escrow, token=rest_token_id(tx), amount_fen=left) if left else None)


def release(
    keyring: _core.Keyring,
    escrow: Escrow,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    signer: int | None = None,
) -> tuple[bytes, None]:
    """Release everything the escrow holds to the payee (a final capture), signed by the
    releaser (``signer`` only to build a deliberately wrong one: it gets ``NOT_RELEASER``)."""
    tx = capture(
        keyring,
        escrow.releaser if signer is None else signer,
        escrow.token,
        escrow.payer,
        escrow.amount_fen,
        False,
        timestamp_ms,
        expiry_ms,
        reference,
    )
    return tx, None


def refund(
    keyring: _core.Keyring,
    escrow: Escrow,
    signer: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """Refund everything the escrow holds to the payer, signed by the releaser or the payee
    (anyone else: ``NOT_RELEASER``)."""
    return release_lock(
        keyring, signer, escrow.token, escrow.payer, timestamp_ms, expiry_ms, reference
    )


def settle(ledger: Ledger, tx: bytes, timestamp_ms: int) -> Status:
    """Settle one escrow step alone and return its status (``OK``, or why it was refused:
    ``NOT_RELEASER``, ``LOCK_DEADLINE_PASSED``, ``CAPTURE_EXCEEDS_LOCK``, ...)."""
    return ledger.settle([tx], timestamp_ms).status(0)


def held_fen(ledger: Ledger, escrow: Escrow) -> int:
    """What the escrow's token still holds on the ledger (0 once released, refunded, or past
    its deadline)."""
    info = ledger.lock(escrow.token)
    return info.amount_fen if info is not None else 0
