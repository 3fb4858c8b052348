"""Locks: value reserved on a payer's token for a beneficiary (``docs/locks.md``).

One core mechanism for transit-fare holds, escrow (:mod:`tongbao.escrow`) and offline
allowances. A **lock** (kind 9, signed by the payer) turns ``amount_fen`` of the payer's
tokens into a locked token: still the payer's (its balance counts it as *held*), but an
ordinary payment spending it gets ``INPUT_LOCKED``. Its terms: the ``beneficiary`` a capture
pays, the ``releaser`` whose signature captures or releases, a ``deadline_ms`` and the
``deadline_capture_fen`` the beneficiary gets when the deadline passes (0: all back to the
payer). Then:

- :func:`capture` (kind 10, the releaser signs): pays ``amount_fen`` (at most the locked value)
  to the beneficiary; the rest goes back to the payer (final capture), or stays locked under
  the same terms (``keep_rest_locked=True``: instalments, an allowance drawn down).
- :func:`release` (kind 11, the releaser or the beneficiary signs): everything back.
- The deadline: the first batch whose timestamp is after ``deadline_ms`` pays
  ``deadline_capture_fen`` to the beneficiary and the rest to the payer, before its
  transactions. Nothing to submit; replaying the log replays it.

Build and settle a transit hold (tap-in locks the ¥6 maximum fare for 2 hours, tap-out
captures the ¥4 fare):

>>> import tongbao as tb
>>> ledger, keys = tb.Ledger(), tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> ledger.open_wallets(keys, [100], tb.WalletKind.PERSONAL, operator=10)
>>> ledger.open_wallets(keys, [500], tb.WalletKind.MERCHANT, operator=10)
>>> _ = ledger.settle([tb.issue(keys, 1, [(10, 10_000)], timestamp_ms=0)], 0)
>>> _ = ledger.pay(keys, 10, 100, 2_000, timestamp_ms=1)
>>> tap_in = ledger.build_lock(keys, payer=100, amount_fen=600, beneficiary=500,
...                            releaser=500, deadline_ms=2 * 3_600_000,
...                            deadline_capture_fen=600, timestamp_ms=1_000)
>>> ledger.settle([tap_in], 1_000).ok
True
>>> w = ledger.wallet(100)
>>> w.balance_fen, w.held_fen, w.available_fen
(2000, 600, 1400)
>>> held = tb.lock_token_id(tap_in)
>>> ledger.locks(100)[0].amount_fen, ledger.locks(100)[0].token == held
(600, True)
>>> tap_out = tb.capture(keys, releaser=500, lock_token=held, payer=100, amount_fen=400,
...                      keep_rest_locked=False, timestamp_ms=60_000)
>>> ledger.settle([tap_out, tap_out], 60_000).statuses.tolist()  # a repeated tap: settled once
[0, 1]
>>> ledger.balance(100), ledger.balance(500), ledger.held_fen(100)
(1600, 400, 0)

A lock whose deadline passes without a capture pays ``deadline_capture_fen`` (here the maximum
fare of an incomplete journey) at the next batch:

>>> tap_in = ledger.build_lock(keys, 100, 600, 500, 500, deadline_ms=100_000,
...                            deadline_capture_fen=600, timestamp_ms=70_000)
>>> ledger.settle([tap_in], 70_000).ok
True
>>> _ = ledger.settle([], 100_001)  # any batch after the deadline
>>> ledger.balance(100), ledger.balance(500), ledger.locks(100)
(1000, 1000, [])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tongbao import _core
from tongbao.errors import InsufficientFunds, InvalidArgument
from tongbao.tx import DEFAULT_VALIDITY_MS, sign, token_id, transaction_id

if TYPE_CHECKING:
    from tongbao.ledger import Ledger

#: Token index flag of what a deadline action creates (see :func:`lapse_token_ids`).
LAPSE_INDEX_FLAG = _core.LOCK_LAPSE_INDEX_FLAG


@dataclass(frozen=True)
class LockInfo:
    """A lock outstanding on one of the payer's tokens."""

    token: bytes
    amount_fen: int
    payer: int
    beneficiary: int
    releaser: int
    deadline_ms: int
    deadline_capture_fen: int


def _fen(value: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"{name} is an integer in fen, got {value!r}")
    if value < 0:
        raise InvalidArgument(f"{name} is negative: {value}")
    return value


def _expiry(timestamp_ms: int, expiry_ms: int | None) -> int:
    return int(timestamp_ms) + DEFAULT_VALIDITY_MS if expiry_ms is None else int(expiry_ms)


def encode_lock(
    payer: int,
    inputs: Sequence[bytes],
    amount_fen: int,
    beneficiary: int,
    releaser: int,
    deadline_ms: int,
    deadline_capture_fen: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    change_fen: int = 0,
) -> bytes:
    """An unsigned lock (kind 9): output 0 locks ``amount_fen`` for the payer, output 1 (when
    ``change_fen`` > 0) is change; ``inputs`` must be worth ``amount_fen + change_fen``.

    >>> import tongbao as tb
    >>> tx = tb.encode_lock(7, [bytes(32)], 600, 500, 500, 10_000, 600, timestamp_ms=1_000)
    >>> d = tb.decode(tx)
    >>> d["version"], d["kind"], d["outputs"], d["lock"]["deadline_capture_fen"]
    (3, 9, [(7, 600)], 600)
    >>> try:
    ...     tb.encode_lock(7, [bytes(32)], 600, 500, 500, 10_000, 700, timestamp_ms=1_000)
    ... except tb.MalformedTransaction as e:
    ...     print(e.field, e.offset)
    lock.deadline_capture_fen 95
    """
    outputs = [(int(payer), _fen(amount_fen, "amount_fen"))]
    if _fen(change_fen, "change_fen") > 0:
        outputs.append((int(payer), change_fen))
    return _core.encode_lock(
        [bytes(i) for i in inputs],
        outputs,
        int(beneficiary),
        int(releaser),
        int(deadline_ms),
        _fen(deadline_capture_fen, "deadline_capture_fen"),
        int(timestamp_ms),
        _expiry(timestamp_ms, expiry_ms),
        bytes(reference),
    )


def lock(
    keyring: _core.Keyring,
    payer: int,
    inputs: Sequence[bytes],
    amount_fen: int,
    beneficiary: int,
    releaser: int,
    deadline_ms: int,
    deadline_capture_fen: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
    change_fen: int = 0,
) -> bytes:
    """A lock signed by ``payer`` spending explicit token ids (see :func:`encode_lock`;
    :meth:`tongbao.Ledger.build_lock` picks the tokens and the change for you).

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([7], tb.Scheme.ED25519, b"doc")
    >>> tx = tb.lock(keys, 7, [bytes(32)], 600, 500, 500, 10_000, 0, timestamp_ms=1_000,
    ...              change_fen=400)
    >>> tb.decode(tx)["outputs"], [s for s, _ in tb.decode(tx)["signatures"]]
    ([(7, 600), (7, 400)], [7])
    """
    body = encode_lock(
        payer,
        inputs,
        amount_fen,
        beneficiary,
        releaser,
        deadline_ms,
        deadline_capture_fen,
        timestamp_ms,
        expiry_ms,
        reference,
        change_fen,
    )
    return sign(keyring, body, [int(payer)])


def capture(
    keyring: _core.Keyring,
    releaser: int,
    lock_token: bytes,
    payer: int,
    amount_fen: int,
    keep_rest_locked: bool,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A capture (kind 10) signed by ``releaser``: ``amount_fen`` of the locked token to its
    beneficiary; the rest back to ``payer`` or, with ``keep_rest_locked``, still locked (its
    token is :func:`rest_token_id`). ``payer`` is the lock's payer (routing on a cluster).

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([500], tb.Scheme.ED25519, b"doc")
    >>> tx = tb.capture(keys, 500, bytes(32), payer=7, amount_fen=400, keep_rest_locked=True,
    ...                 timestamp_ms=1_000)
    >>> d = tb.decode(tx)
    >>> d["kind"], d["payer"], d["amount_fen"], d["keep_rest_locked"], d["inputs"] == [bytes(32)]
    (10, 7, 400, True, True)
    """
    if _fen(amount_fen, "amount_fen") == 0:
        raise InvalidArgument("a capture takes at least 1 fen (release gives everything back)")
    body = _core.encode_lock_use(
        bytes(lock_token),
        int(payer),
        amount_fen,
        bool(keep_rest_locked),
        int(timestamp_ms),
        _expiry(timestamp_ms, expiry_ms),
        bytes(reference),
    )
    return sign(keyring, body, [int(releaser)])


def release(
    keyring: _core.Keyring,
    signer: int,
    lock_token: bytes,
    payer: int,
    timestamp_ms: int,
    expiry_ms: int | None = None,
    reference: bytes = b"",
) -> bytes:
    """A release (kind 11) signed by ``signer`` (the lock's releaser or beneficiary): the whole
    locked value back to ``payer``, free.

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([500], tb.Scheme.ED25519, b"doc")
    >>> d = tb.decode(tb.release(keys, 500, bytes(32), payer=7, timestamp_ms=1_000))
    >>> d["kind"], d["payer"], "amount_fen" in d
    (11, 7, False)
    """
    body = _core.encode_lock_use(
        bytes(lock_token),
        int(payer),
        None,
        False,
        int(timestamp_ms),
        _expiry(timestamp_ms, expiry_ms),
        bytes(reference),
    )
    return sign(keyring, body, [int(signer)])


def lock_token_id(tx: bytes) -> bytes:
    """The locked token a lock transaction makes: output 0.

    >>> import tongbao as tb
    >>> tx = tb.encode_lock(7, [bytes(32)], 600, 500, 500, 10_000, 0, timestamp_ms=0)
    >>> tb.lock_token_id(tx) == tb.token_id(tb.transaction_id(tx), 0)
    True
    """
    return token_id(transaction_id(tx), 0)


def rest_token_id(capture_tx: bytes) -> bytes:
    """The payer's token for what a capture leaves: still locked after a partial capture
    (``keep_rest_locked``), free after a final one (output 1; absent when nothing is left).

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> _ = keys.generate([500], tb.Scheme.ED25519, b"doc")
    >>> tx = tb.capture(keys, 500, bytes(32), 7, 100, True, timestamp_ms=0)
    >>> tb.rest_token_id(tx) == tb.token_id(tb.transaction_id(tx), 1)
    True
    """
    return token_id(transaction_id(capture_tx), 1)


def lapse_token_ids(lock_token: bytes) -> tuple[bytes, bytes]:
    """The tokens a deadline action makes from ``lock_token``: (the beneficiary's part, the
    payer's rest). A part swept over the beneficiary's balance cap has the id of index
    ``LAPSE_INDEX_FLAG | 0x8000``.

    >>> import tongbao as tb
    >>> b, p = tb.lapse_token_ids(bytes(32))
    >>> b == tb.token_id(bytes(32), tb.locks.LAPSE_INDEX_FLAG), b != p
    (True, True)
    """
    return token_id(lock_token, LAPSE_INDEX_FLAG), token_id(lock_token, LAPSE_INDEX_FLAG | 1)


@dataclass(frozen=True)
class LockRequest:
    """One lock to build with :func:`build_locks`."""

    payer: int
    amount_fen: int
    beneficiary: int
    releaser: int
    deadline_ms: int
    deadline_capture_fen: int
    reference: bytes = b""


def build_locks(
    ledger: Ledger,
    keyring: _core.Keyring,
    requests: Sequence[LockRequest],
    timestamp_ms: int,
    expiry_ms: int | None = None,
    skip_insufficient: bool = False,
) -> tuple[list[bytes], list[int]]:
    """Build and sign one lock per request, picking each payer's free tokens (the smallest
    that covers the amount alone, else the largest first) and making change. Locks of the
    same payer chain within the list (a later one spends an earlier one's change), so the
    list settles in one batch, in order. Returns ``(transactions, skipped)``: the indices
    of requests the payer could not fund (with ``skip_insufficient``; otherwise
    ``InsufficientFunds`` is raised). Signs all in one parallel call.

    >>> import tongbao as tb
    >>> ledger, keys = tb.Ledger(), tb.Keyring()
    >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    >>> ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
    >>> _ = ledger.settle([tb.issue(keys, 1, [(10, 1_000)], timestamp_ms=0)], 0)
    >>> reqs = [tb.LockRequest(10, 600, 10, 10, 5_000, 0), tb.LockRequest(10, 600, 10, 10,
    ...         5_000, 0), tb.LockRequest(10, 300, 10, 10, 5_000, 0)]
    >>> txs, skipped = tb.build_locks(ledger, keys, reqs, 1_000, skip_insufficient=True)
    >>> skipped, ledger.settle(txs, 1_000).statuses.tolist(), ledger.held_fen(10)
    ([1], [0, 0], 900)
    """
    expiry = _expiry(timestamp_ms, expiry_ms)
    views: dict[int, list[tuple[bytes, int]]] = {}
    bodies: list[bytes] = []
    signers: list[list[int]] = []
    skipped: list[int] = []
    for n, r in enumerate(requests):
        amount = _fen(r.amount_fen, "amount_fen")
        if amount == 0:
            raise InvalidArgument(f"lock {n}: a lock holds at least 1 fen")
        payer = int(r.payer)
        if payer not in views:
            views[payer] = ledger.spendable(payer)  # neither locked nor earmarked
        tokens = views[payer]
        covering = [t for t in tokens if t[1] >= amount]
        if covering:
            chosen = [min(covering, key=lambda t: t[1])]
        else:
            chosen = []
            total = 0
            for t in sorted(tokens, key=lambda t: -t[1]):
                if total >= amount or len(chosen) == _core.INPUTS_MAX:
                    break
                chosen.append(t)
                total += t[1]
        total = sum(v for _, v in chosen)
        if total < amount:
            if skip_insufficient:
                skipped.append(n)
                continue
            raise InsufficientFunds(
                f"lock {n}: wallet {payer} cannot lock {amount} fen from its free tokens"
            )
        body = encode_lock(
            payer,
            [t for t, _ in chosen],
            amount,
            r.beneficiary,
            r.releaser,
            r.deadline_ms,
            r.deadline_capture_fen,
            timestamp_ms,
            expiry,
            r.reference,
            change_fen=total - amount,
        )
        spent = {t for t, _ in chosen}
        tokens[:] = [t for t in tokens if t[0] not in spent]
        if total > amount:
            tokens.append((token_id(transaction_id(body), 1), total - amount))
        bodies.append(body)
        signers.append([payer])
    return list(keyring.sign(bodies, signers)) if bodies else [], skipped
