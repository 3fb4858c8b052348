"""The offline audit of a ledger directory: what ``tongbao verify-log`` runs.

>>> import tempfile, tongbao as tb
>>> d = tempfile.mkdtemp()
>>> ledger = tb.Ledger.open(d)
>>> keys = tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
>>> _ = ledger.settle([tb.issue(keys, 1, [(2, 250)], timestamp_ms=5)], 5)
>>> report = tb.verify_log(d)
>>> report.batches, report.issued_fen, report.outstanding_fen
(1, 250, 250)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

from tongbao import _core


@dataclass(frozen=True)
class AuditReport:
    """Summary of a verified log: everything in it was replayed and checked."""

    segments: int
    records: int
    wallets: int
    batches: int
    transactions: int
    transactions_ok: int
    issued_fen: int
    redeemed_fen: int
    outstanding_fen: int
    last_receipt_hash: bytes
    torn_tail_bytes: int
    batches_without_outcome: int


def verify_log(path: str | os.PathLike[str], threads: int = 0) -> AuditReport:
    """Replay the whole log of ledger directory ``path`` from its first record, offline and
    read-only, checking every signature, every logged status, the receipt hash chain and the
    supply invariant (issued − redeemed = outstanding = Σ unspent).

    Raises :class:`tongbao.errors.CorruptLog` naming the file and offset of the first problem
    (a torn final record is reported in ``torn_tail_bytes``, not raised). Releases the GIL.
    """
    return AuditReport(**cast(dict[str, Any], _core.audit_log(os.fspath(path), threads)))
