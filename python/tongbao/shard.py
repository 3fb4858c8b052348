"""Virtual shards and cross-shard credits of one embedded ledger (the engine under
:mod:`tongbao.cluster`; design in ``docs/cluster.md``).

A sharded ledger keeps the tokens of the wallets homed on its vshard. An output paid to a wallet
homed elsewhere leaves as a *credit* in the ledger's outbox (in the same logged apply as the
payment); the owner's shard imports it exactly once.

>>> import tongbao as tb
>>> from tongbao import shard
>>> keys = tb.Keyring()
>>> a, b = tb.Ledger(threads=1), tb.Ledger(threads=1)
>>> homes = shard.home_vshards([1, 10], 2).tolist()   # central bank 1, operator 10
>>> homes[0] != homes[1]
True
>>> for index, ledger in enumerate([a, b]):         # every shard knows every wallet
...     shard.make_shard(ledger, count=2, index=index)
...     ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
...     ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> funding = tb.issue(keys, 1, [(10, 5_000)], timestamp_ms=1)
>>> home = [a, b][homes[0]]                        # settled on the payer's shard
>>> home.settle([funding], 1).ok
True
>>> credits = shard.outbox(home)      # wallet 10 is homed on the other shard: one credit
>>> len(credits), credits[0].owner, credits[0].value_fen
(1, 10, 5000)
>>> other = [a, b][1 - homes[0]]
>>> shard.import_credits(other, credits).tolist() == [tb.Status.OK]
True
>>> shard.import_credits(other, credits).tolist() == [tb.Status.ALREADY_SETTLED]   # once only
True
>>> other.balance(10)
5000
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tongbao import _core
from tongbao.ledger import Ledger

#: Most virtual shards; bytes of one packed credit; most credits per import call.
VSHARD_COUNT_MAX: int = _core.VSHARD_COUNT_MAX
CREDIT_LEN: int = _core.CREDIT_LEN
CREDIT_BATCH_MAX: int = _core.CREDIT_BATCH_MAX


@dataclass(frozen=True)
class Credit:
    """Value on its way to ``owner``'s home shard: it becomes token ``token_id`` there.
    ``refund_to`` takes it back if the owner cannot (0: held in the shard's suspense)."""

    token_id: bytes
    owner: int
    value_fen: int
    refund_to: int


@dataclass(frozen=True)
class ShardTotals:
    """Cross-shard totals of one sharded ledger, in fen. Always
    ``issued + credits_in = redeemed + credits_out + outstanding + suspense``."""

    credits_in_fen: int
    credits_out_fen: int
    suspense_fen: int
    outbox_len: int
    outbox_fen: int
    imported_count: int
    next_outbox_seq: int


def pack_credits(credits: Sequence[Credit]) -> bytes:
    """Credits in their packed wire form (56 bytes each, little-endian).

    >>> len(pack_credits([Credit(bytes(32), 5, 100, 0)]))
    56
    """
    out = bytearray()
    for c in credits:
        if len(c.token_id) != 32:
            raise ValueError(f"a token id is 32 bytes, got {len(c.token_id)}")
        out += c.token_id
        out += np.array([c.owner, c.value_fen, c.refund_to], dtype="<u8").tobytes()
    return bytes(out)


def unpack_credits(packed: bytes) -> list[Credit]:
    """The credits of a packed blob; raises ``ValueError`` on a length that is not a multiple
    of 56.

    >>> unpack_credits(pack_credits([Credit(bytes(32), 5, 100, 7)]))[0].refund_to
    7
    """
    if len(packed) % CREDIT_LEN:
        raise ValueError(f"packed credits are {CREDIT_LEN} bytes each, got {len(packed)} bytes")
    out = []
    for at in range(0, len(packed), CREDIT_LEN):
        owner, value, refund = np.frombuffer(packed, dtype="<u8", count=3, offset=at + 32)
        out.append(Credit(packed[at : at + 32], int(owner), int(value), int(refund)))
    return out


def home_vshards(
    wallet_ids: Sequence[int] | npt.NDArray[np.uint64], count: int
) -> npt.NDArray[np.uint32]:
    """The home vshard of each wallet (a stable hash of the id, modulo ``count``).

    >>> home_vshards([7, 7], 256).tolist() == [home_vshards([7], 256)[0]] * 2
    True
    """
    ids = np.ascontiguousarray(wallet_ids, dtype="<u8")
    return np.frombuffer(_core.home_vshards(ids.tobytes(), count), dtype="<u4")


def payer_vshards(batch: Sequence[bytes] | bytes, count: int) -> npt.NDArray[np.uint32]:
    """The home vshard of each transaction's payer (first signer); a transaction that does not
    decode goes to vshard 0, which answers it with MALFORMED. One call, GIL released.

    >>> payer_vshards([b"junk"], 16).tolist()
    [0]
    """
    items = batch if isinstance(batch, bytes) else list(batch)
    return np.frombuffer(_core.payer_vshards(items, count), dtype="<u4")


def make_shard(
    ledger: Ledger, count: int, index: int, *, _unsafe_reapply_credits: bool = False
) -> None:
    """Make ``ledger`` vshard ``index`` of ``count`` (logged). Allowed before its first batch,
    and again with the same values (idempotent); raises ``InvalidArgument`` otherwise.
    ``_unsafe_reapply_credits`` breaks exactly-once import on purpose: the checker's negative
    control only."""
    _core.shard_set(ledger._core, count, index, _unsafe_reapply_credits)


def set_epoch(ledger: Ledger, epoch: int) -> None:
    """Record in the log that the worker holding lease ``epoch`` writes this shard from now on.
    Epochs only grow: an older one raises ``InvalidArgument`` (a stale worker); the same one is
    a no-op."""
    _core.shard_set_epoch(ledger._core, epoch)


def epoch(ledger: Ledger) -> int:
    """The last lease epoch recorded in the shard's log (0: none)."""
    return _core.shard_epoch(ledger._core)


def shard_of(ledger: Ledger) -> tuple[int, int] | None:
    """``(count, index)`` of a sharded ledger, or None."""
    return _core.shard_spec(ledger._core)


def import_credits(ledger: Ledger, credits: Sequence[Credit] | bytes) -> npt.NDArray[np.uint8]:
    """Import credits exported by other shards, each exactly once (logged before it returns).
    One status per credit: OK, ALREADY_SETTLED (imported before), WALLET_CLOSED,
    LIMIT_BALANCE or UNKNOWN_WALLET (owner not registered here): bounced to ``refund_to`` or
    held in suspense; see ``docs/cluster.md``.
    Raises ``InvalidArgument`` (owner homed elsewhere, zero value) or
    ``BatchRejected`` (over ``CREDIT_BATCH_MAX``), applying nothing. Releases the GIL."""
    packed = credits if isinstance(credits, bytes) else pack_credits(credits)
    return np.frombuffer(_core.shard_import_credits(ledger._core, packed), dtype=np.uint8)


def outbox_packed(
    ledger: Ledger, limit: int = CREDIT_BATCH_MAX, after_seq: int = 0
) -> tuple[npt.NDArray[np.uint64], bytes]:
    """The first ``limit`` undelivered exports numbered above ``after_seq``: their sequence
    numbers and the packed credits."""
    seqs, packed = _core.shard_outbox(ledger._core, limit, after_seq)
    return np.frombuffer(seqs, dtype="<u8"), packed


def outbox(ledger: Ledger, limit: int = CREDIT_BATCH_MAX) -> list[Credit]:
    """The first ``limit`` undelivered exports, oldest first."""
    return unpack_credits(outbox_packed(ledger, limit)[1])


def credits_delivered(ledger: Ledger, upto_seq: int) -> None:
    """Forget the exports up to sequence number ``upto_seq``: they are delivered (logged,
    idempotent)."""
    _core.shard_delivered(ledger._core, upto_seq)


def suspense(ledger: Ledger) -> list[Credit]:
    """Credits held because neither their owner nor their payer could take them."""
    return unpack_credits(_core.shard_suspense(ledger._core))


def is_imported(ledger: Ledger, token_id: bytes) -> bool:
    """Whether a credit token was ever imported by this ledger."""
    return _core.shard_is_imported(ledger._core, token_id)


def totals(ledger: Ledger) -> ShardTotals:
    """Cross-shard totals of a ledger (all zero for an unsharded one)."""
    return ShardTotals(**{k: int(v) for k, v in _core.shard_totals(ledger._core).items()})


#: One ledger's share of the content digest: ``(sum, wallets, tokens, issued_fen,
#: redeemed_fen, suspense_fen, in_flight_fen)`` (``sum``: 32 bytes).
ContentParts = tuple[bytes, int, int, int, int, int, int]


def content_parts(ledger: Ledger) -> ContentParts:
    """A ledger's (a shard's) share of the content digest: wallets homed here, its tokens and
    totals, hashed per element and summed (``rust/tongbao-core/src/content.rs``)."""
    s, *rest = _core.content_parts(ledger._core)
    return (bytes(s), *rest)  # type: ignore[return-value]


def combine_content(parts: Sequence[ContentParts]) -> bytes:
    """The content digest of shares combined, in any order: the shards of a cluster give the
    digest of one ledger that settled the same payments, once every credit is imported.

    >>> import tongbao as tb
    >>> keys = tb.Keyring()
    >>> whole, shards = tb.Ledger(), [tb.Ledger(), tb.Ledger()]
    >>> for index, ledger in enumerate(shards):
    ...     make_shard(ledger, count=2, index=index)
    >>> for ledger in (whole, *shards):
    ...     ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ...     ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
    >>> issue = tb.issue(keys, 1, [(10, 700)], timestamp_ms=5)
    >>> bank, operator = home_vshards([1, 10], 2).tolist()
    >>> whole.settle([issue], 5).ok and shards[bank].settle([issue], 5).ok
    True
    >>> before = combine_content([content_parts(s) for s in shards])   # the credit in flight
    >>> _ = import_credits(shards[operator], outbox(shards[bank]))
    >>> after = combine_content([content_parts(s) for s in reversed(shards)])
    >>> after == whole.content_digest() != before
    True
    """
    return bytes(_core.combine_content([(bytes(p[0]), *p[1:]) for p in parts]))
