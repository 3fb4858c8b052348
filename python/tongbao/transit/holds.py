"""Transit's use of the core's locks (``docs/locks.md``): batch-shaped helpers, nothing more.

The engine builds every LOCK of a batch of taps in one call (tokens picked by the core), and
every CAPTURE unsigned first (its id, and so the id of the rest it keeps locked, is known
before signing: signatures are not part of the id), then signs them all in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tongbao as tb
from tongbao import _core

#: Validity window of the transactions the engine builds: as long as it remembers a tap.
TX_VALIDITY_MS = 2 * 86_400_000
#: Status of a capture of a lock whose deadline passed (the core applied the deadline action).
DEADLINE_PASSED = int(getattr(tb.Status, "LOCK_DEADLINE_PASSED", 26))


@dataclass(frozen=True)
class Capture:
    """An unsigned CAPTURE body and what it does."""

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
        return tb.token_id(self.tx_id, 1)


def capture(
    lock_token: bytes,
    payer: int,
    amount_fen: int,
    keep_rest_locked: bool,
    timestamp_ms: int,
    reference: bytes,
) -> Capture:
    """An unsigned capture of ``amount_fen`` from ``lock_token`` (a release when 0)."""
    expiry = timestamp_ms + TX_VALIDITY_MS
    if amount_fen == 0:
        body = tb.locks.encode_release(lock_token, payer, timestamp_ms, expiry, reference)
    else:
        body = tb.locks.encode_capture(
            lock_token, payer, amount_fen, keep_rest_locked, timestamp_ms, expiry, reference
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
    """One signed LOCK per payer (the operator both beneficiary and releaser), tokens picked
    by the core, or None where the payer cannot fund it. One call."""
    if not payers:
        return []
    txs, skipped = ledger.build_locks(
        keyring,
        payers=list(payers),
        amounts_fen=list(amounts_fen),
        beneficiary=beneficiary,
        releaser=beneficiary,
        deadlines_ms=list(deadlines_ms),
        deadline_captures_fen=list(deadline_captures_fen),
        timestamp_ms=timestamp_ms,
        expiry_ms=timestamp_ms + TX_VALIDITY_MS,
        reference=list(references),
        skip_insufficient=True,
    )
    out: list[bytes | None] = []
    skip = set(skipped)
    built = iter(txs)
    for i in range(len(payers)):
        out.append(None if i in skip else next(built))
    return out


def lock_token_id(tx: bytes) -> bytes:
    """The locked token a LOCK creates (output 0)."""
    return tb.token_id(tb.transaction_id(tx), 0)
