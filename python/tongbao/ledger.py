"""The embedded ledger: register wallets, settle batches, read balances.

Every call that takes a batch makes one call into Rust and releases the GIL while Rust works.

>>> import tongbao as tb
>>> ledger = tb.Ledger(threads=1)
>>> keys = tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [100], tb.WalletKind.OPERATOR)
>>> ledger.open_wallets(keys, [1001, 1002], tb.WalletKind.PERSONAL)
>>> issue = tb.issue(keys, central_bank=1, outputs=[(100, 50_000)], timestamp_ms=1_000)
>>> ledger.settle([issue], timestamp_ms=1_000).statuses.tolist()
[0]
>>> ledger.pay(keys, 100, 1001, 20_000, timestamp_ms=2_000).ok
True
>>> ledger.balance(100), ledger.balance(1001)
(30000, 20000)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.limits import ClassLimits, Limits
from tongbao.locks import LockInfo, LockRequest, build_locks
from tongbao.tx import DEFAULT_VALIDITY_MS
from tongbao.types import Scheme, Status, WalletKind, WalletStatus


@dataclass(frozen=True)
class Receipt:
    """What one settled batch did. ``hash`` chains to ``prev_hash``, the previous receipt's.

    ``value_moved_fen``: value paid by settled transfers to wallets other than their signers
    (change back to a payer is not counted). ``issued_fen`` / ``redeemed_fen``: created and
    destroyed by this batch."""

    seq: int
    timestamp_ms: int
    tx_count: int
    status_counts: dict[Status, int]
    value_moved_fen: int
    swept_fen: int
    issued_fen: int
    redeemed_fen: int
    prev_hash: bytes
    hash: bytes

    @property
    def ok_count(self) -> int:
        return self.status_counts.get(Status.OK, 0)

    @classmethod
    def _from_core(cls, d: dict[str, Any]) -> Receipt:
        counts = {Status(k): int(v) for k, v in d["status_counts"].items()}
        return cls(**{**d, "status_counts": counts})


@dataclass(frozen=True)
class Settlement:
    """Result of :meth:`Ledger.settle`: one status per transaction (``uint8`` numpy array, values
    of :class:`Status`) and the batch receipt."""

    statuses: npt.NDArray[np.uint8]
    receipt: Receipt

    @property
    def ok(self) -> bool:
        """True when every transaction settled (status OK)."""
        return bool((self.statuses == Status.OK).all())

    def status(self, index: int) -> Status:
        """The status of transaction ``index`` as a :class:`Status`."""
        return Status(int(self.statuses[index]))

    def counts(self) -> dict[Status, int]:
        """Transactions per status."""
        return dict(self.receipt.status_counts)


@dataclass(frozen=True)
class WalletInfo:
    """A registered wallet as the ledger sees it."""

    wallet_id: int
    kind: WalletKind
    scheme: Scheme
    public_key: bytes
    balance_fen: int
    token_count: int
    wallet_class: int
    operator: int
    parent: int
    mcc: int
    region: int
    linked_account: bool
    status: WalletStatus
    #: Outflow counted against the daily / annual caps: ``day_out_fen`` in Shanghai calendar day
    #: number ``counter_day`` (days since 1970-01-01), ``year_out_fen`` in year ``counter_year``.
    counter_day: int
    day_out_fen: int
    counter_year: int
    year_out_fen: int
    #: Value locked on the wallet's tokens (``docs/locks.md``): part of ``balance_fen``.
    held_fen: int = 0

    @property
    def available_fen(self) -> int:
        """The balance less what is held by locks: what the wallet can spend now."""
        return self.balance_fen - self.held_fen


@dataclass(frozen=True)
class ConditionInfo:
    """A spending condition (programmable money, ``docs/programmable-money.md``) and what its
    earmarked value has done: always ``issued_fen = spent_fen + reclaimed_fen +
    outstanding_fen``; ``spent_by_mcc`` is what left the earmark at merchants, by category."""

    condition: int
    issuer: int
    reclaimer: int
    not_before_ms: int
    valid_until_ms: int
    not_transferable: bool
    not_redeemable: bool
    mccs: tuple[int, ...]
    merchants: tuple[int, ...]
    regions: tuple[int, ...]
    issued_fen: int
    spent_by_mcc: dict[int, int]
    reclaimed_fen: int
    outstanding_fen: int

    @property
    def spent_fen(self) -> int:
        """Value spent at merchants, all categories."""
        return sum(self.spent_by_mcc.values())


@dataclass(frozen=True)
class PayeeStates:
    """Many wallets as a payer sees them before paying (:meth:`Ledger.payee_states`), one
    array entry per requested id: ``status`` (:class:`WalletStatus` values; ``UNKNOWN`` = 255
    for an unregistered id), ``balance_fen``, ``balance_cap_fen`` (the effective cap;
    ``NO_CAP`` = 2**64 - 1 for none) and ``can_sweep`` (an excess over the cap would be swept
    to the linked deposit account instead of refusing the payment)."""

    UNKNOWN = 255
    NO_CAP = 2**64 - 1

    status: npt.NDArray[np.uint8]
    balance_fen: npt.NDArray[np.uint64]
    balance_cap_fen: npt.NDArray[np.uint64]
    can_sweep: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Recovery:
    """What :meth:`Ledger.open` found: the snapshot it started from, what it replayed, and how
    many bytes of a torn final record it cut."""

    snapshot_lsn: int
    records_replayed: int
    batches_replayed: int
    transactions_replayed: int
    batches_without_outcome: int
    torn_bytes_cut: int
    last_lsn: int


@dataclass(frozen=True)
class Supply:
    """Money supply totals, in fen: ``issued_fen - redeemed_fen == outstanding_fen`` always."""

    issued_fen: int
    redeemed_fen: int
    outstanding_fen: int


class Ledger:
    """An embedded, in-memory ledger of wallets and unspent tokens.

    ``threads``: threads for decoding and signature checks (0: one per core).
    ``verify_signatures``: False only to replay a trusted log or to benchmark; every other
    check still runs.

    Raises :class:`tongbao.errors.InvalidArgument` for an impossible thread count.
    """

    def __init__(self, *, threads: int = 0, verify_signatures: bool = True) -> None:
        self._core = _core.Ledger(threads, verify_signatures)
        self.recovery: Recovery | None = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        threads: int = 0,
        verify_signatures: bool = True,
        commit: str = "fsync",
        snapshot_every_records: int = 10_000,
        snapshots_kept: int = 2,
        _unsafe_ack_before_fsync: bool = False,
    ) -> Ledger:
        """Open (or create) a durable ledger in directory ``path``.

        Recovery runs first: the newest snapshot is loaded and the log after it replayed (each
        batch recomputed and checked against its logged statuses and receipt hash); a torn final
        record, never acknowledged, is cut. ``ledger.recovery`` says what happened.

        From then on every ``settle`` and ``register_wallets`` is appended to the log before it
        returns. ``commit="fsync"`` (default) fsyncs once per batch: an acknowledged batch
        survives power loss. ``commit="none"`` never fsyncs: it survives a process crash but NOT
        a power or kernel failure (benchmarks only; a ``RuntimeWarning`` says so). A snapshot is
        taken every ``snapshot_every_records`` log records (0: only by :meth:`snapshot`).

        Raises ``LedgerLocked`` (another process has it open), ``CorruptLog`` (damage other than
        a torn tail, file and offset named) or ``StorageError``. Releases the GIL.

        >>> import tempfile, tongbao as tb
        >>> d = tempfile.mkdtemp()
        >>> ledger = tb.Ledger.open(d)
        >>> keys = tb.Keyring()
        >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        >>> ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
        >>> ledger.settle([tb.issue(keys, 1, [(2, 100)], timestamp_ms=5)], 5).ok
        True
        >>> del ledger  # a crash here loses nothing acknowledged
        >>> again = tb.Ledger.open(d)
        >>> again.balance(2), again.recovery.batches_replayed
        (100, 1)
        """
        if commit == "none":
            warnings.warn(
                "tongbao: commit='none' never fsyncs the log; acknowledged batches can be lost "
                "on power or kernel failure. Use it for benchmarks only.",
                RuntimeWarning,
                stacklevel=2,
            )
        core, report = _core.Ledger.open(
            os.fspath(path),
            threads,
            verify_signatures,
            commit,
            snapshot_every_records,
            snapshots_kept,
            _unsafe_ack_before_fsync,
        )
        ledger = cls.__new__(cls)
        ledger._core = core
        ledger.recovery = Recovery(**{k: int(v) for k, v in report.items()})
        return ledger

    def close(self) -> None:
        """Sync and release the log and the directory lock (durable ledgers). Later calls that
        change state raise ``LedgerClosed``; reads still work. Idempotent. A ledger is also a
        context manager that closes on exit:

        >>> import tempfile, tongbao as tb
        >>> d = tempfile.mkdtemp()
        >>> with tb.Ledger.open(d) as ledger:
        ...     ledger.open_wallets(tb.Keyring(), [1], tb.WalletKind.CENTRAL_BANK)
        >>> tb.Ledger.open(d).wallet_count
        1
        """
        self._core.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def snapshot(self) -> int:
        """Write a snapshot now (durable ledgers); returns the log sequence number it covers.
        Raises ``InvalidArgument`` for an in-memory ledger. Releases the GIL."""
        return self._core.snapshot()

    @property
    def path(self) -> str | None:
        """The ledger directory, or None for an in-memory ledger."""
        p = self._core.path
        return None if p is None else os.fspath(p)

    @property
    def last_lsn(self) -> int | None:
        """Sequence number of the last log record, or None for an in-memory ledger."""
        return self._core.last_lsn

    # -- wallets ---------------------------------------------------------------------------

    def register_wallets(
        self,
        wallet_ids: Sequence[int],
        kinds: Sequence[int] | int,
        public_keys: Sequence[bytes],
        schemes: Sequence[int] | int = Scheme.ED25519,
        *,
        wallet_class: Sequence[int] | int = 1,
        operator: Sequence[int] | int = 0,
        parent: Sequence[int] | int = 0,
        mcc: Sequence[int] | int = 0,
        region: Sequence[int] | int = 0,
        linked_account: Sequence[bool] | bool = False,
    ) -> None:
        """Register wallets with their public keys and attributes, all or none.

        Each of ``kinds``, ``schemes`` and the keyword attributes is one value for all wallets
        or one per wallet: ``wallet_class`` 1-4 (central-bank and operator wallets are class
        1), ``operator`` the operator bank's wallet id (0: none), ``parent`` of a sub-wallet
        (0: none), ``mcc`` merchant category code, ``region``, ``linked_account`` (over-cap
        value can be swept to a deposit account). Keys are parsed and checked once here
        (Ed25519: canonical, not of small order; SM2: a point on sm2p256v1, Z_A cached).
        Raises ``InvalidKey``, ``DuplicateWallet`` or ``InvalidArgument`` (naming wallet and
        field); on any error nothing is registered. Logged on a durable ledger. Releases the GIL.
        """
        n = len(wallet_ids)

        def each(value: Sequence[Any] | Any, name: str) -> list[Any]:
            if isinstance(value, (int, bool)):
                return [value] * n
            values = list(value)
            if len(values) != n:
                raise InvalidArgument(f"{name}: {len(values)} values for {n} wallets")
            return values

        attrs = list(
            zip(
                [int(c) for c in each(wallet_class, "wallet_class")],
                [int(o) for o in each(operator, "operator")],
                [int(p) for p in each(parent, "parent")],
                [int(m) for m in each(mcc, "mcc")],
                [int(r) for r in each(region, "region")],
                [bool(x) for x in each(linked_account, "linked_account")],
                strict=True,
            )
        )
        self._core.register_wallets(
            [int(w) for w in wallet_ids],
            [int(k) for k in each(kinds, "kinds")],
            [int(s) for s in each(schemes, "schemes")],
            [bytes(k) for k in public_keys],
            attrs,
        )

    def open_wallets(
        self,
        keyring: _core.Keyring,
        wallet_ids: Sequence[int],
        kind: WalletKind,
        scheme: Scheme = Scheme.ED25519,
        seed: bytes = b"tongbao",
        **attrs: Any,
    ) -> None:
        """Generate deterministic keys for ``wallet_ids`` into ``keyring`` (from ``seed``) and
        register the wallets, with the attributes of :meth:`register_wallets`. For simulations
        and tests: real wallets bring their own keys."""
        publics = keyring.generate([int(w) for w in wallet_ids], int(scheme), seed)
        self.register_wallets(wallet_ids, kind, publics, scheme, **attrs)

    def _update(self, wallet_ids: Sequence[int], action: int, wallet_class: int = 0) -> None:
        ids = [int(w) for w in wallet_ids]
        self._core.update_wallets(ids, [action] * len(ids), [wallet_class] * len(ids))

    def set_class(self, wallet_ids: Sequence[int], wallet_class: int) -> None:
        """Upgrade or downgrade wallets to ``wallet_class`` (1-4). All or none; logged. Raises
        ``UnknownWallet`` or ``InvalidArgument`` (closed wallet, bad class)."""
        self._update(wallet_ids, 1, wallet_class)

    def freeze(self, wallet_ids: Sequence[int]) -> None:
        """Freeze wallets: they cannot pay (``WALLET_FROZEN``) but can still receive."""
        self._update(wallet_ids, 2)

    def unfreeze(self, wallet_ids: Sequence[int]) -> None:
        """Let frozen wallets pay again."""
        self._update(wallet_ids, 3)

    def close_wallets(self, wallet_ids: Sequence[int]) -> None:
        """Close wallets for good: they receive nothing more (``WALLET_CLOSED``). Each must have
        a zero balance (``InvalidArgument`` otherwise). All or none; logged."""
        self._update(wallet_ids, 4)

    def set_limits(self, limits: Limits) -> None:
        """Install a validated limits table (see :func:`tongbao.load_limits`); it applies from
        the next batch on and is logged, so replay applies it at the same point.

        >>> import tongbao as tb
        >>> ledger = tb.Ledger()
        >>> ledger.set_limits(tb.load_limits())
        >>> ledger.limits_version
        '2026-11-default'
        """
        table = [limits.classes[c].row() for c in (1, 2, 3, 4)] + [limits.sub_wallet.row()]
        over = 1 if limits.over_balance_cap == "sweep" else 2
        self._core.set_limits(limits.version, over, table)

    @property
    def limits(self) -> Limits:
        """The limits in force (all classes unlimited until :meth:`set_limits`)."""
        version, over, rows = self._core.limits_table()
        classes = {c: ClassLimits(*rows[c - 1]) for c in (1, 2, 3, 4)}
        return Limits(
            version=version,
            over_balance_cap="sweep" if over == 1 else "reject",
            classes=classes,
            sub_wallet=ClassLimits(*rows[4]),
        )

    @property
    def limits_version(self) -> str:
        """Version of the limits in force ("none" until :meth:`set_limits`)."""
        return self._core.limits_version

    def wallet(self, wallet_id: int) -> WalletInfo | None:
        """The wallet's kind, scheme, key, balance and token count, or None if unknown."""
        d = self._core.wallet_info(wallet_id)
        if d is None:
            return None
        return WalletInfo(
            wallet_id=wallet_id,
            kind=WalletKind(d["kind"]),
            scheme=Scheme(d["scheme"]),
            public_key=d["public_key"],
            balance_fen=d["balance_fen"],
            token_count=d["token_count"],
            wallet_class=d["wallet_class"],
            operator=d["operator"],
            parent=d["parent"],
            mcc=d["mcc"],
            region=d["region"],
            linked_account=d["linked_account"],
            status=WalletStatus(d["status"]),
            counter_day=d["day"],
            day_out_fen=d["day_out_fen"],
            counter_year=d["year"],
            year_out_fen=d["year_out_fen"],
            held_fen=d["held_fen"],
        )

    def outflow_room(self, wallet_id: int, timestamp_ms: int) -> tuple[int | None, int | None]:
        """What ``wallet_id`` may still pay out at ``timestamp_ms``, as settlement will judge
        it: ``(payment_cap_fen, room_fen)``, the per-payment cap and the room left under the
        daily and annual caps of the wallet and, for a sub-wallet, of its parent (Shanghai
        calendar days and years); ``None`` where there is no cap. Raises ``UnknownWallet``.

        >>> import tongbao as tb
        >>> ledger, keys = tb.Ledger(), tb.Keyring()
        >>> ledger.set_limits(tb.load_limits())  # the shipped default
        >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        >>> ledger.open_wallets(keys, [7], tb.WalletKind.PERSONAL, wallet_class=4)
        >>> ledger.outflow_room(7, 1_000)  # class 4: ¥2,000 per payment, ¥5,000 a day
        (200000, 500000)
        >>> ledger.outflow_room(1, 1_000)
        (None, None)
        """
        return self._core.outflow_room(wallet_id, timestamp_ms)

    def payee_states(self, wallet_ids: Sequence[int] | npt.NDArray[np.uint64]) -> PayeeStates:
        """Status, balance, effective balance cap and sweep eligibility of many wallets in one
        call (the engine's own rules, as settlement applies them); unknown ids are reported,
        not raised. Releases the GIL.

        >>> import tongbao as tb
        >>> ledger = tb.Ledger()
        >>> ledger.set_limits(tb.load_limits())
        >>> ledger.open_wallets(tb.Keyring(), [7], tb.WalletKind.PERSONAL, wallet_class=4)
        >>> s = ledger.payee_states([7, 8])
        >>> s.status.tolist(), s.balance_cap_fen.tolist()[0], s.can_sweep.tolist()
        ([0, 255], 1000000, [False, False])
        """
        ids = np.asarray(wallet_ids, dtype=np.uint64).tolist()
        status, balance, cap, sweep = self._core.payee_states(ids)
        return PayeeStates(
            status=np.frombuffer(status, dtype=np.uint8),
            balance_fen=np.frombuffer(balance, dtype="<u8").astype(np.uint64),
            balance_cap_fen=np.frombuffer(cap, dtype="<u8").astype(np.uint64),
            can_sweep=np.frombuffer(sweep, dtype=np.uint8).astype(bool),
        )

    @property
    def wallet_count(self) -> int:
        return self._core.wallet_count

    # -- settlement --------------------------------------------------------------------------

    def settle(self, batch: Sequence[bytes] | bytes, timestamp_ms: int) -> Settlement:
        """Settle a batch of encoded transactions at ``timestamp_ms`` (Unix ms, never earlier
        than the previous batch's).

        ``batch`` is a list of ``bytes`` or one blob from :func:`tongbao.frame_batch`. Returns one
        status per transaction and a receipt. Transactions apply in batch order; the first wins
        a conflict. Raises ``BatchRejected`` (too many transactions, timestamp going backwards)
        or ``MalformedTransaction`` (an unreadable blob frame), changing nothing. At most
        ``tongbao.BATCH_TX_COUNT_MAX`` transactions. Releases the GIL; signatures are checked in
        parallel on the ledger's threads.
        """
        items = batch if isinstance(batch, bytes) else list(batch)
        codes, receipt = self._core.settle(items, int(timestamp_ms))
        statuses = np.frombuffer(codes, dtype=np.uint8)
        return Settlement(
            statuses=statuses, receipt=Receipt._from_core(cast(dict[str, Any], receipt))
        )

    def build_payments(
        self,
        keyring: _core.Keyring,
        payers: Sequence[int],
        payees: Sequence[int],
        amounts_fen: Sequence[int],
        timestamp_ms: int,
        expiry_ms: int | None = None,
        reference: bytes | Sequence[bytes] = b"",
        skip_insufficient: bool = False,
    ) -> tuple[list[bytes], list[int]]:
        """Build and sign one transfer per payment, selecting each payer's tokens and making
        change. Payments chain (a later one may spend an earlier one's change, or what its payer
        was paid earlier in the list), so the list settles in one batch, in order.

        Balance caps: only outputs that settle as built are chained. A receipt that the payee's
        balance cap may sweep (part of it to the operator) is not spent later in the list; a
        payment that may be refused with ``LIMIT_BALANCE`` is built (its status says so) but
        neither its receipt nor its change is chained, and its inputs are offered to later
        payments only if it is refused whatever comes before it. The payee's balance at that
        point is bounded from its balance now and the list (docs/wallet-rules.md, "Payments
        built in one batch"), so, settled as one batch against the current state, no built
        payment fails with ``UNKNOWN_INPUT`` or ``INPUT_SPENT`` because of a cap.

        Returns ``(transactions, skipped)``: ``skipped`` lists the indices of payments the payer
        could not fund (only with ``skip_insufficient``; otherwise ``InsufficientFunds`` is
        raised). ``reference`` is one reference for every payment or a sequence of one per
        payment (bill or tax numbers), each at most ``tongbao.REFERENCE_LEN_MAX`` bytes. Raises
        ``UnknownWallet`` or ``InvalidArgument``. Releases the GIL and signs in parallel.
        """
        references = [reference] if isinstance(reference, bytes) else [bytes(r) for r in reference]
        expiry = timestamp_ms + DEFAULT_VALIDITY_MS if expiry_ms is None else expiry_ms
        txs, skipped = self._core.build_payments(
            keyring,
            [int(p) for p in payers],
            [int(p) for p in payees],
            [int(a) for a in amounts_fen],
            int(timestamp_ms),
            int(expiry),
            references,
            skip_insufficient,
        )
        return list(txs), list(skipped)

    def pay(
        self,
        keyring: _core.Keyring,
        payer: int,
        payee: int,
        amount_fen: int,
        timestamp_ms: int,
        reference: bytes = b"",
    ) -> Settlement:
        """Pay ``amount_fen`` from ``payer`` to ``payee`` now: build, sign and settle one
        transfer. Raises ``InsufficientFunds`` if the payer cannot fund it."""
        txs, _ = self.build_payments(
            keyring, [payer], [payee], [amount_fen], timestamp_ms, reference=reference
        )
        return self.settle(txs, timestamp_ms)

    # -- reads -------------------------------------------------------------------------------

    def balance(self, wallet_id: int) -> int:
        """Balance in fen. Raises ``UnknownWallet``."""
        return self._core.balance(wallet_id)

    def balances(self, wallet_ids: Sequence[int]) -> npt.NDArray[np.uint64]:
        """Balances of many wallets in fen, as a ``uint64`` array. Raises ``UnknownWallet``."""
        raw = self._core.balances([int(w) for w in wallet_ids])
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64)

    def unspent(self, wallet_id: int) -> list[tuple[bytes, int]]:
        """The wallet's free unspent tokens as ``(token_id, value_fen)`` (locked tokens are
        listed by :meth:`locks`). Raises ``UnknownWallet``."""
        return list(self._core.unspent(wallet_id))

    def spendable(self, wallet_id: int) -> list[tuple[bytes, int]]:
        """The tokens a plain payment from the wallet can spend, as ``(token_id, value_fen)``:
        unspent, not locked, not earmarked (earmarked value is spent by explicit transactions,
        ``docs/programmable-money.md``). What every builder picks from. Raises ``UnknownWallet``.

        >>> import tongbao as tb
        >>> ledger, keys = tb.Ledger(), tb.Keyring()
        >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        >>> ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
        >>> ledger.settle([tb.issue(keys, 1, [(2, 5_000)], timestamp_ms=0)], 0).ok
        True
        >>> [value for _, value in ledger.spendable(2)]
        [5000]
        """
        tokens = self.unspent(wallet_id)
        if not tokens or not self._core.condition_ids():
            return tokens
        marks = self.earmarks([t for t, _ in tokens])
        return [tv for tv, mark in zip(tokens, marks, strict=True) if not mark]

    def earmarks(self, token_ids: Sequence[bytes]) -> list[int]:
        """The spending condition each token is earmarked under (0: free, or not an unspent
        token). One call for the whole list."""
        return list(self._core.earmarks(list(token_ids)))

    def condition_tokens(self, condition: int) -> list[tuple[bytes, int, int]]:
        """The unspent tokens earmarked under ``condition``: ``(token_id, owner, value_fen)``,
        sorted by token id (what a reclaim gathers)."""
        return list(self._core.condition_tokens(condition))

    def condition_ids(self) -> list[int]:
        """Every defined spending condition, sorted."""
        return list(self._core.condition_ids())

    def condition(self, condition: int) -> ConditionInfo | None:
        """A spending condition and its totals, or None if it is not defined.

        >>> import tongbao as tb
        >>> tb.Ledger().condition(2020) is None
        True
        """
        d = self._core.condition(condition)
        if d is None:
            return None
        flags = int(d["flags"])
        return ConditionInfo(
            condition=int(d["id"]),
            issuer=int(d["issuer"]),
            reclaimer=int(d["reclaimer"]),
            not_before_ms=int(d["not_before_ms"]),
            valid_until_ms=int(d["valid_until_ms"]),
            not_transferable=bool(flags & _core.FLAG_NOT_TRANSFERABLE),
            not_redeemable=bool(flags & _core.FLAG_NOT_REDEEMABLE),
            mccs=tuple(d["mccs"]),
            merchants=tuple(d["merchants"]),
            regions=tuple(d["regions"]),
            issued_fen=int(d["issued_fen"]),
            spent_by_mcc={int(m): int(v) for m, v in d["spent_by_mcc"]},
            reclaimed_fen=int(d["reclaimed_fen"]),
            outstanding_fen=int(d["outstanding_fen"]),
        )

    def held_fen(self, wallet_id: int) -> int:
        """Value held by locks on the wallet's tokens (part of its balance). Raises
        ``UnknownWallet``."""
        return self._core.held_fen(wallet_id)

    def available_fen(self, wallet_id: int) -> int:
        """Balance less held value: what the wallet can spend now. Raises ``UnknownWallet``."""
        return self._core.balance(wallet_id) - self._core.held_fen(wallet_id)

    def locks(self, wallet_id: int) -> list[LockInfo]:
        """The locks on the wallet's tokens (the wallet as payer). Raises ``UnknownWallet``.
        See :mod:`tongbao.locks` for an example."""
        return [
            LockInfo(t, a, wallet_id, b, r, d, c)
            for t, a, b, r, d, c in self._core.locks(wallet_id)
        ]

    def lock(self, token_id: bytes) -> LockInfo | None:
        """The lock on a token, or None if the token is not locked."""
        found = self._core.lock(token_id)
        if found is None:
            return None
        payer, (t, a, b, r, d, c) = found
        return LockInfo(t, a, payer, b, r, d, c)

    @property
    def lock_count(self) -> int:
        """Locks outstanding."""
        return self._core.lock_count

    def build_lock(
        self,
        keyring: _core.Keyring,
        payer: int,
        amount_fen: int,
        beneficiary: int,
        releaser: int,
        deadline_ms: int,
        deadline_capture_fen: int,
        timestamp_ms: int,
        expiry_ms: int | None = None,
        reference: bytes = b"",
    ) -> bytes:
        """Build and sign one lock, picking the payer's free tokens and making change (see
        :func:`tongbao.locks.build_locks`; example in :mod:`tongbao.locks`). Raises
        ``InsufficientFunds`` if the payer's free tokens cannot cover it."""
        request = LockRequest(
            payer, amount_fen, beneficiary, releaser, deadline_ms, deadline_capture_fen, reference
        )
        txs, _ = build_locks(self, keyring, [request], timestamp_ms, expiry_ms)
        return txs[0]

    def build_locks(
        self,
        keyring: _core.Keyring,
        requests: Sequence[LockRequest],
        timestamp_ms: int,
        expiry_ms: int | None = None,
        skip_insufficient: bool = False,
    ) -> tuple[list[bytes], list[int]]:
        """Build and sign many locks that settle in one batch (see
        :func:`tongbao.locks.build_locks`)."""
        return build_locks(self, keyring, requests, timestamp_ms, expiry_ms, skip_insufficient)

    def token(self, token_id: bytes) -> tuple[int, int] | None:
        """``(owner, value_fen)`` of an unspent token, or None."""
        return self._core.token(token_id)

    def is_spent(self, token_id: bytes) -> bool:
        """True while the ledger remembers the token as spent (until its spender expires)."""
        return self._core.is_spent(token_id)

    def is_settled(self, tx_id: bytes) -> bool:
        """True while the ledger remembers the transaction as settled (until it expires)."""
        return self._core.is_settled(tx_id)

    def supply(self) -> Supply:
        """Issued, redeemed and outstanding money, in fen."""
        issued, redeemed, outstanding = self._core.supply()
        return Supply(issued, redeemed, outstanding)

    def check_invariants(self) -> None:
        """Full consistency check of the state (supply conserved, balances match tokens).
        Raises ``InvariantViolation``. O(tokens); releases the GIL."""
        self._core.check_invariants()

    def state_digest(self) -> bytes:
        """SHA-256 digest of the whole state, independent of thread count and map order."""
        return self._core.state_digest()

    def content_digest(self) -> bytes:
        """SHA-256 digest of what the ledger holds (wallets, unspent tokens, supply), unlike
        :meth:`state_digest` independent of the batching (no receipt chain) and of sharding:
        a cluster's shards combined (:func:`tongbao.shard.combine_content`) give the digest of
        one ledger that settled the same payments (``rust/tongbao-core/src/content.rs``).

        >>> import tongbao as tb
        >>> keys, a, b = tb.Keyring(), tb.Ledger(), tb.Ledger()
        >>> for ledger in (a, b):
        ...     ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
        ...     ledger.open_wallets(keys, [10, 11], tb.WalletKind.OPERATOR)
        >>> issues = [tb.issue(keys, 1, [(w, 500)], timestamp_ms=5) for w in (10, 11)]
        >>> a.settle(issues, 5).ok and b.settle(issues[:1], 5).ok and b.settle(issues[1:], 6).ok
        True
        >>> a.content_digest() == b.content_digest(), a.state_digest() == b.state_digest()
        (True, False)
        """
        return _core.combine_content([_core.content_parts(self._core)])

    @property
    def token_count(self) -> int:
        return self._core.token_count

    @property
    def settled_count(self) -> int:
        return self._core.settled_count

    @property
    def threads(self) -> int:
        return self._core.threads

    @property
    def last_timestamp_ms(self) -> int:
        """Timestamp of the last settled batch (the next must not be earlier)."""
        return self._core.last_timestamp_ms

    @property
    def batch_seq(self) -> int:
        return self._core.batch_seq

    @property
    def last_receipt_hash(self) -> bytes:
        return self._core.last_receipt_hash
