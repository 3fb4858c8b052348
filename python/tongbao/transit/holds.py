"""Transit's use of the core's locks (``docs/locks.md``): batch-shaped helpers, nothing more.

The engine builds every LOCK of a batch of taps with :func:`tongbao.build_locks` (one call:
each rider's free tokens picked, change made, all signed at once), and every CAPTURE unsigned
first (its id, and so the id of the rest it keeps locked, is known before signing: signatures
are not part of the id), then signs them all in one call.

>>> import tongbao as tb
>>> c = capture(bytes(32), payer=7, amount_fen=300, keep_rest_locked=True, timestamp_ms=0,
...             reference=b"tap")
>>> tb.decode(c.body)["amount_fen"], c.rest_token == tb.token_id(c.tx_id, 1)
(300, True)
>>> tb.decode(capture(bytes(32), 7, 0, False, 0, b"").body)["kind"] == tb.Kind.RELEASE
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tongbao as tb
from tongbao import _core

#: Validity window of the transactions the engine builds: as long as it remembers a tap.
TX_VALIDITY_MS = 2 * 86_400_000


@dataclass(frozen=True)
class Capture:
    """An unsigned CAPTURE (or RELEASE, amount 0) body and what it does."""

    body: bytes
    lock_token: bytes
    payer: int
    amount_fen: int
    keep_rest_locked: bool

    @property
    def tx_id(self) -> bytes:
        return tb.transaction_id(self.body)

    @property
    def rest_token(self) -> bytes:
        """The token a partial capture leaves locked (output 1)."""
        return tb.rest_token_id(self.body)


def capture(
    lock_token: bytes,
    payer: int,
    amount_fen: int,
    keep_rest_locked: bool,
    timestamp_ms: int,
    reference: bytes,
) -> Capture:
    """An unsigned capture of ``amount_fen`` from ``lock_token`` (a release when 0)."""
    body = _core.encode_lock_use(
        lock_token,
        payer,
        amount_fen if amount_fen else None,
        keep_rest_locked,
        timestamp_ms,
        timestamp_ms + TX_VALIDITY_MS,
        reference,
    )
    return Capture(body, lock_token, payer, amount_fen, keep_rest_locked)


def sign_captures(
    keyring: _core.Keyring, releaser: int, captures: Sequence[Capture]
) -> list[bytes]:
    """Sign every capture with the releaser's key, in one call."""
    if not captures:
        return []
    return keyring.sign([c.body for c in captures], [[releaser]] * len(captures))


def build_locks(
    ledger: tb.Ledger,
    keyring: _core.Keyring,
    payers: Sequence[int],
    amounts_fen: Sequence[int],
    beneficiary: int,
    deadlines_ms: Sequence[int],
    deadline_captures_fen: Sequence[int],
    timestamp_ms: int,
    references: Sequence[bytes],
) -> list[bytes | None]:
    """One signed LOCK per payer (``beneficiary`` both beneficiary and releaser), or None where
    the payer's free tokens do not cover it: :func:`tongbao.build_locks` in one call."""
    if not payers:
        return []
    requests = [
        tb.LockRequest(p, a, beneficiary, beneficiary, d, c, r)
        for p, a, d, c, r in zip(
            payers, amounts_fen, deadlines_ms, deadline_captures_fen, references, strict=True
        )
    ]
    txs, skipped = tb.build_locks(
        ledger,
        keyring,
        requests,
        timestamp_ms,
        expiry_ms=timestamp_ms + TX_VALIDITY_MS,
        skip_insufficient=True,
    )
    skip = set(skipped)
    built = iter(txs)
    return [None if i in skip else next(built) for i in range(len(payers))]


def lock_token_id(tx: bytes) -> bytes:
    """The locked token a LOCK creates (output 0)."""
    return tb.lock_token_id(tx)
