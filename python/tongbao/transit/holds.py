"""Transit's use of the core's locks (``docs/locks.md``): batch-shaped helpers, nothing more.

The engine builds every LOCK of a batch of taps with one signing call (tokens picked here from
the wallet's free tokens: the core has no lock builder yet), and
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
    body = _core.encode_lock_use(
        lock_token,
        payer,
        amount_fen if amount_fen else None,
        keep_rest_locked,
        timestamp_ms,
        expiry,
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


def _pick(tokens: list[tuple[bytes, int]], amount_fen: int) -> list[tuple[bytes, int]] | None:
    """The smallest single token that covers the amount, else the largest first."""
    single = [t for t in tokens if t[1] >= amount_fen]
    if single:
        return [min(single, key=lambda t: t[1])]
    picked, total = [], 0
    for token in sorted(tokens, key=lambda t: -t[1]):
        picked.append(token)
        total += token[1]
        if total >= amount_fen:
            return picked[: tb.INPUTS_MAX]
    return None


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
    """One signed LOCK per payer (``beneficiary`` both beneficiary and releaser) from the
    payer's free tokens, change back to the payer, or None where the free tokens do not cover
    it. Signed in one call. A payer listed twice never gets the same token twice."""
    if not payers:
        return []
    expiry = timestamp_ms + TX_VALIDITY_MS
    used: set[bytes] = set()
    bodies: list[bytes | None] = []
    for payer, amount, deadline, on_deadline, reference in zip(
        payers, amounts_fen, deadlines_ms, deadline_captures_fen, references, strict=True
    ):
        locked = {info.token for info in ledger.locks(payer)}
        free = [t for t in ledger.unspent(payer) if t[0] not in locked and t[0] not in used]
        picked = _pick(free, amount)
        if picked is None:
            bodies.append(None)
            continue
        used.update(t for t, _ in picked)
        change = sum(v for _, v in picked) - amount
        outputs = [(payer, amount)] + ([(payer, change)] if change else [])
        bodies.append(
            _core.encode_lock(
                [t for t, _ in picked],
                outputs,
                beneficiary,
                beneficiary,
                deadline,
                on_deadline,
                timestamp_ms,
                expiry,
                reference,
            )
        )
    built = [(i, b) for i, b in enumerate(bodies) if b is not None]
    signed = keyring.sign([b for _, b in built], [[payers[i]] for i, _ in built])
    out: list[bytes | None] = [None] * len(payers)
    for (i, _), tx in zip(built, signed, strict=True):
        out[i] = tx
    return out


def lock_token_id(tx: bytes) -> bytes:
    """The locked token a LOCK creates (output 0)."""
    return tb.token_id(tb.transaction_id(tx), 0)
