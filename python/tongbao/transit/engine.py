"""The fare engine at work: taps in, decisions out, one ledger batch per call.

:class:`TransitEngine` turns a batch of signed taps (:class:`tongbao.transit.taps.Tap`) into
one decision per tap and one ``Ledger.settle`` call, on the core's locks (``docs/locks.md``):

* **tap-in**: a LOCK of the maximum fare (less if the daily cap leaves less room) from the
  rider's wallet to the operator, deadline = tap time + the network's time limit, deadline
  capture = the same amount (an incomplete journey pays the maximum fare, applied by the core
  itself in the first batch past the deadline);
* **tap-out**: a final CAPTURE of the distance fare (capped by the daily cap), the rest back to
  the rider; a journey the card entered on its offline allowance is paid by a partial CAPTURE
  of the allowance lock instead;
* a **repeated tap** (the same tap again, or a second tap-in at the same station within
  :data:`REPEAT_WINDOW_MS`) gets the first decision again; the transactions of the first are
  submitted again and the ledger answers ``ALREADY_SETTLED``, so nothing is charged twice.

Online gates call :meth:`TransitEngine.process` at once; offline gates
(:class:`tongbao.transit.gates.OfflineGate`) decide locally and their queued taps go through the
same :meth:`TransitEngine.process` later (``offline=True``): reconciliation. The doctest of
:mod:`tongbao.transit.gates` shows a whole journey.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

import numpy as np

import tongbao as tb
from tongbao import _core
from tongbao.transit import holds
from tongbao.transit.fares import Network
from tongbao.transit.journal import Journal
from tongbao.transit.taps import NO_ENTRY, Direction, Tap

#: A second tap-in at the same station within this time is the same entry (a rider tapping
#: twice because the gate was slow), not a new journey.
REPEAT_WINDOW_MS = 120_000
#: How long decided taps are remembered; an older tap is refused as stale (``REFUSED_BAD_TAP``),
#: so a repeat is never judged afresh. Two days, the validity of the engine's transactions.
DECIDED_MEMORY_MS = holds.TX_VALIDITY_MS
#: How often (ledger time) decided taps older than :data:`DECIDED_MEMORY_MS` are forgotten.
PRUNE_EVERY_MS = 3_600_000
#: Most taps in one :meth:`TransitEngine.process` call.
TAPS_PER_CALL_MAX = 65_536
#: Shanghai is UTC+8 all year: calendar days for the daily cap.
_SHANGHAI_OFFSET_MS = 8 * 3_600_000
_DAY_MS = 86_400_000


def shanghai_day(time_ms: int) -> int:
    """Asia/Shanghai calendar day number (days since 1970-01-01) of a Unix time in ms.

    >>> shanghai_day(0), shanghai_day(16 * 3_600_000)
    (0, 1)
    """
    return (time_ms + _SHANGHAI_OFFSET_MS) // _DAY_MS


class Outcome(IntEnum):
    """What the engine decided for one tap. The gate opens for :data:`GATE_OPENS`."""

    #: Tap-in: the hold is placed (or nothing to hold: the daily cap is reached).
    OPEN = 0
    #: Tap-out: the fare is charged, the rest of the hold released.
    CLOSED = 1
    #: Tap-out after the time limit: the core charged the maximum fare at the deadline.
    EXPIRED_JOURNEY = 2
    #: Tap-in refused: the wallet cannot hold the maximum fare (status says why).
    REFUSED_FUNDS = 3
    #: Refused: the signature is not the card's.
    REFUSED_SIGNATURE = 4
    #: Refused: the card is not registered with the engine.
    REFUSED_UNKNOWN_CARD = 5
    #: Tap-out with no journey the engine or the card knows of: see the staff.
    REFUSED_NO_ENTRY = 6
    #: Reconciliation: a tap-in at an offline gate; nothing to settle.
    NOTHING_TO_SETTLE = 7
    #: Tap-out paid (in full or in part) beyond the card's offline allowance: the allowance was
    #: used twice (a cloned card, two offline gates) or overdrawn; see ``flags``.
    FLAGGED = 8
    #: Tap-out with a bad station number or other unusable data.
    REFUSED_BAD_TAP = 9


#: Outcomes for which the gate lets the rider through.
GATE_OPENS = frozenset({Outcome.OPEN, Outcome.CLOSED, Outcome.EXPIRED_JOURNEY, Outcome.FLAGGED})


class Flag(IntEnum):
    """Why reconciliation flagged a tap (bits of :attr:`Decision.flags`)."""

    NONE = 0
    #: The card's counter was used by another tap already (a clone, or the same card at two
    #: offline gates at once).
    DOUBLE_USE = 1
    #: The fare did not fit in what was left of the offline allowance.
    OVER_ALLOWANCE = 2
    #: What the allowance did not cover could not be collected from the wallet either.
    INSUFFICIENT_FUNDS = 4
    #: The offline tap-out arrived after its journey's deadline: the core had already charged
    #: the maximum fare (a refund of the difference is a customer-service matter).
    LATE = 8


@dataclass(frozen=True)
class Decision:
    """The engine's answer to one tap: the outcome, the fare charged for it in fen (tap-out),
    the ledger statuses of its transactions, ``repeat`` when it answers an earlier identical
    tap, and reconciliation ``flags`` (:class:`Flag` bits) with ``uncollected_fen``."""

    tap_id: bytes
    outcome: Outcome
    fare_fen: int = 0
    statuses: tuple[int, ...] = ()
    repeat: bool = False
    flags: int = 0
    uncollected_fen: int = 0

    @property
    def opens_gate(self) -> bool:
        return self.outcome in GATE_OPENS


@dataclass
class Journey:
    """An open journey held online: the lock, where and when it started."""

    lock_token: bytes
    entry_station: int
    entry_ms: int
    held_fen: int
    deadline_ms: int
    tap_id: bytes


@dataclass
class Allowance:
    """A card's offline allowance as the ledger holds it: a standing lock to the operator,
    drawn down by partial captures (``token`` changes with each)."""

    token: bytes
    left_fen: int
    seen_counters: dict[int, bytes] = dataclasses.field(default_factory=dict)


@dataclass
class EngineStats:
    """Running totals: taps by outcome, fares charged (captures settled), holds placed."""

    taps: int = 0
    repeats: int = 0
    outcomes: dict[Outcome, int] = dataclasses.field(default_factory=dict)
    fares_charged_fen: int = 0
    holds_placed: int = 0
    expired_journeys: int = 0
    max_fares_charged_fen: int = 0
    flagged: int = 0
    uncollected_fen: int = 0


class TransitEngine:
    """Decides taps for one operator on one ledger (see the module docstring).

    ``keyring`` must hold the operator's key (it signs captures and releases) and the riders'
    keys (a card authorises its hold by its signed tap; the engine signs the LOCK body with the
    rider's wallet key on the card's behalf: in this simulation the keyring stands in for the
    card's secure element). Raises ``UnknownWallet`` if the operator is not registered.

    ``journal``: a path for the engine's write-ahead journal (:mod:`tongbao.transit.journal`;
    use it with a durable ledger, ``Ledger.open``). A restarted engine given the same ledger
    directory and journal (cards registered again first) replays the journal on its first
    :meth:`process` or :meth:`grant_allowances` call: its journeys, decided taps and daily-cap
    counters are back, a batch that was journaled but not settled is settled, and a resent tap
    is answered as a repeat (no second hold, nothing charged twice); :meth:`recover` does it
    at once.

    ``settler``: where batches settle, when not on ``ledger`` itself: an object with
    ``settle(txs, timestamp_ms) -> Settlement``. On the cluster ``ledger`` is the client's
    mirror (the wallet-side view LOCKs are built from) and the settler a
    :class:`tongbao.simulate_cluster.ClusterSettler` over it (``tongbao transit burst --redis``).
    """

    def __init__(
        self,
        ledger: tb.Ledger,
        keyring: _core.Keyring,
        network: Network,
        operator: int,
        *,
        verify_threads: int = 1,
        journal: str | os.PathLike[str] | None = None,
        settler: _Settler | None = None,
    ) -> None:
        if ledger.wallet(operator) is None:
            raise tb.UnknownWallet(f"operator wallet {operator} is not registered", operator)
        self.ledger = ledger
        self.keyring = keyring
        self.network = network
        self.operator = operator
        self.verify_threads = verify_threads
        self.settler: _Settler = ledger if settler is None else settler
        self.journeys: dict[int, Journey] = {}
        #: Journeys whose deadline passed (charged the maximum fare by the core), until the
        #: card taps again: a late tap-out is told so instead of being refused.
        self.lapsed: dict[int, Journey] = {}
        self.allowances: dict[int, Allowance] = {}
        self.stats = EngineStats()
        self._cards: dict[int, int] = {}
        self._card_keys: list[tuple[int, bytes]] = []
        self._verifier: _core.BatchVerifier | None = None
        self._decided: dict[bytes, tuple[Decision, list[bytes], int]] = {}
        self._charged: dict[tuple[int, int], int] = {}
        self._lapsed_until_ms = 0
        self._pruned_at_ms = 0
        #: (deadline, card, tap id) of every journey opened, the earliest first.
        self._deadlines: list[tuple[int, int, bytes]] = []
        # Crash safety (see journal): settle calls are numbered; replay reuses what was built.
        self._journal = None if journal is None else Journal(journal)
        self._seq = 0
        self._replaying = False
        self._done: dict[int, list[int]] = {}
        self._lock_override: dict[bytes, bytes | None] | None = None
        self._allow_override: list[bytes | None] | None = None
        self._rest_override: dict[bytes, bytes | None] = {}
        #: Journal records replayed at recovery (0: none, or no journal).
        self.replayed_records = 0

    # -- cards ---------------------------------------------------------------------------------

    def register_cards(self, wallet_ids: Sequence[int]) -> None:
        """Accept taps from these wallets' cards (their keys as the ledger registered them).
        Raises ``UnknownWallet``."""
        for w in wallet_ids:
            if int(w) in self._cards:
                continue
            info = self.ledger.wallet(int(w))
            if info is None:
                raise tb.UnknownWallet(f"card wallet {w} is not registered", int(w))
            self._cards[int(w)] = len(self._card_keys)
            self._card_keys.append((int(info.scheme), info.public_key))
        self._verifier = None

    def card_key(self, wallet_id: int) -> tuple[int, bytes] | None:
        """``(scheme, public key)`` of a registered card, or None."""
        index = self._cards.get(wallet_id)
        return None if index is None else self._card_keys[index]

    def grant_allowances(
        self, wallet_ids: Sequence[int], amount_fen: int, timestamp_ms: int, days: int = 30
    ) -> list[int]:
        """Lock ``amount_fen`` of each wallet to the operator as its offline allowance for
        ``days`` (what is not used goes back at the deadline). One batch; returns the statuses.
        The cards must then be told (:meth:`tongbao.transit.taps.Card` ``allowance_left_fen``)."""
        self.recover()
        ids = [int(w) for w in wallet_ids]
        deadline = timestamp_ms + days * _DAY_MS
        if self._allow_override is not None:
            txs = self._allow_override
        else:
            txs = holds.build_locks(
                self.ledger,
                self.keyring,
                ids,
                [amount_fen] * len(ids),
                self.operator,
                [deadline] * len(ids),
                [0] * len(ids),
                timestamp_ms,
                [b"tb-allowance"] * len(ids),
            )
        batch = [tx for tx in txs if tx is not None]
        record = {
            "op": "allow",
            "ids": ids,
            "amount": amount_fen,
            "ts": timestamp_ms,
            "days": days,
            "locks": [_hex(tx) for tx in txs],
        }
        statuses = iter(self._settle(batch, timestamp_ms, record))
        result = []
        for w, tx in zip(ids, txs, strict=True):
            if tx is None:
                result.append(int(tb.Status.VALUE_MISMATCH))
                continue
            status = next(statuses)
            if status == tb.Status.OK:
                self.allowances[w] = Allowance(holds.lock_token_id(tx), amount_fen)
            result.append(status)
        return result

    # -- taps ----------------------------------------------------------------------------------

    def _verify(self, taps: Sequence[Tap]) -> list[bool]:
        if self._verifier is None and self._card_keys:
            schemes = [s for s, _ in self._card_keys]
            keys = [k for _, k in self._card_keys]
            self._verifier = _core.BatchVerifier(schemes, keys, self.verify_threads)
        known = [i for i, t in enumerate(taps) if t.card in self._cards]
        ok = [False] * len(taps)
        if known and self._verifier is not None:
            valid = self._verifier.verify(
                [self._cards[taps[i].card] for i in known],
                [taps[i].message() for i in known],
                [taps[i].signature for i in known],
            )
            for i, flag in zip(known, valid, strict=True):
                ok[i] = bool(flag)
        return ok

    def cap_room(self, card: int, time_ms: int) -> int:
        """What ``card`` may still be charged in fares on ``time_ms``'s Shanghai day."""
        cap = self.network.daily_cap_fen
        if cap is None:
            return self.network.max_fare_fen * 1_000
        return max(0, cap - self._charged.get((card, shanghai_day(time_ms)), 0))

    def _charge(self, card: int, time_ms: int, amount_fen: int) -> None:
        key = (card, shanghai_day(time_ms))
        self._charged[key] = self._charged.get(key, 0) + amount_fen

    def _open(self, card: int, journey: Journey) -> None:
        self.journeys[card] = journey
        heapq.heappush(self._deadlines, (journey.deadline_ms, card, journey.tap_id))

    def _lapse(self, now_ms: int) -> None:
        """Forget journeys whose deadline passed: the core applies their deadline capture in the
        next batch (the one about to settle, at the latest); count it against the daily cap."""
        if now_ms <= self._lapsed_until_ms:
            return
        self._lapsed_until_ms = now_ms
        while self._deadlines and self._deadlines[0][0] < now_ms:
            _, card, tap_id = heapq.heappop(self._deadlines)
            journey = self.journeys.get(card)
            if journey is None or journey.tap_id != tap_id:
                continue  # closed already
            del self.journeys[card]
            self._charge(card, journey.entry_ms, journey.held_fen)
            self.stats.expired_journeys += 1
            self.stats.max_fares_charged_fen += journey.held_fen
            self.lapsed[card] = journey
        if now_ms - self._pruned_at_ms >= PRUNE_EVERY_MS:
            self._pruned_at_ms = now_ms
            horizon = now_ms - DECIDED_MEMORY_MS
            self._decided = {k: v for k, v in self._decided.items() if v[2] >= horizon}

    def process(self, taps: Sequence[Tap], now_ms: int, *, offline: bool = False) -> list[Decision]:
        """Decide a batch of taps at ``now_ms`` (the ledger batch time: not before the previous
        batch's). ``offline``: these taps were already let through by offline gates
        (reconciliation): tap-ins settle nothing, tap-outs are charged and flagged, never
        refused. One ``Ledger.settle`` call. Raises ``InvalidArgument`` for more than
        :data:`TAPS_PER_CALL_MAX` taps."""
        if len(taps) > TAPS_PER_CALL_MAX:
            raise tb.InvalidArgument(f"at most {TAPS_PER_CALL_MAX} taps per call")
        self.recover()
        self._lapse(now_ms)
        verified = self._verify(taps)
        decisions: list[Decision | None] = [None] * len(taps)
        txs: list[bytes] = []
        tx_owner: list[int] = []  # tap index of each transaction
        # tap index -> what to do once statuses are known
        pending: dict[int, tuple[str, object]] = {}
        lock_requests: list[tuple[int, int, int]] = []  # (tap index, amount, deadline)
        capture_requests: list[tuple[int, holds.Capture, str, object]] = []
        repeat_of: dict[int, tuple[Decision, list[bytes]]] = {}
        seen_in_batch: dict[bytes, int] = {}
        stats = self.stats
        for i, tap in enumerate(taps):
            stats.taps += 1
            tap_id = tap.tap_id
            earlier = self._decided.get(tap_id)
            if earlier is None and tap_id in seen_in_batch:
                repeat_of[i] = (Decision(tap_id, Outcome.OPEN), [])  # resolved after settle
                pending[i] = ("same-batch", seen_in_batch[tap_id])
                continue
            if earlier is not None:
                decision, earlier_txs, _ = earlier
                decisions[i] = dataclasses.replace(decision, repeat=True, statuses=())
                repeat_of[i] = (decision, earlier_txs)
                for tx in earlier_txs:
                    txs.append(tx)
                    tx_owner.append(i)
                continue
            seen_in_batch[tap_id] = i
            if tap.card not in self._cards:
                decisions[i] = Decision(tap_id, Outcome.REFUSED_UNKNOWN_CARD)
                continue
            if not verified[i]:
                decisions[i] = Decision(tap_id, Outcome.REFUSED_SIGNATURE)
                continue
            if not 0 <= tap.station < len(self.network.stations) or (
                tap.time_ms < now_ms - DECIDED_MEMORY_MS
            ):
                decisions[i] = Decision(tap_id, Outcome.REFUSED_BAD_TAP)
                continue
            if tap.direction == Direction.IN:
                self._tap_in(i, tap, offline, decisions, lock_requests, pending)
            else:
                self._tap_out(i, tap, offline, now_ms, decisions, capture_requests)

        # Build: captures and releases (operator-signed, one signing call), then locks (one
        # signing call, each from the rider's free tokens).
        built_captures = holds.sign_captures(
            self.keyring, self.operator, [c for _, c, _, _ in capture_requests]
        )
        capture_tx_at: dict[int, list[int]] = {}
        for (i, _, _, _), tx in zip(capture_requests, built_captures, strict=True):
            capture_tx_at.setdefault(i, []).append(len(txs))
            txs.append(tx)
            tx_owner.append(i)
        if self._lock_override is not None:
            override = self._lock_override
            lock_txs = [override.get(taps[i].tap_id) for i, _, _ in lock_requests]
        else:
            lock_txs = holds.build_locks(
                self.ledger,
                self.keyring,
                [taps[i].card for i, _, _ in lock_requests],
                [a for _, a, _ in lock_requests],
                self.operator,
                [d for _, _, d in lock_requests],
                [a for _, a, _ in lock_requests],
                now_ms,
                [taps[i].tap_id[:16] for i, _, _ in lock_requests],
            )
        lock_tx_at: dict[int, int] = {}
        for (i, _, _), lock_tx in zip(lock_requests, lock_txs, strict=True):
            if lock_tx is None:
                decisions[i] = Decision(taps[i].tap_id, Outcome.REFUSED_FUNDS)
                continue
            lock_tx_at[i] = len(txs)
            txs.append(lock_tx)
            tx_owner.append(i)

        record: dict[str, object] = {}
        if self._journal is not None and not self._replaying:
            record = {
                "op": "taps",
                "now": now_ms,
                "offline": offline,
                "taps": [t.encode().hex() for t in taps],
                "locks": {
                    taps[i].tap_id.hex(): _hex(tx)
                    for (i, _, _), tx in zip(lock_requests, lock_txs, strict=True)
                },
            }
        statuses = self._settle(txs, now_ms, record)

        # Apply outcomes.
        for i, (amount, deadline) in ((i, (a, d)) for i, a, d in lock_requests):
            if i not in lock_tx_at:
                continue
            tap = taps[i]
            status = statuses[lock_tx_at[i]]
            tx = txs[lock_tx_at[i]]
            if status == tb.Status.OK:
                lock = holds.lock_token_id(tx)
                self._open(
                    tap.card, Journey(lock, tap.station, tap.time_ms, amount, deadline, tap.tap_id)
                )
                stats.holds_placed += 1
                decisions[i] = Decision(tap.tap_id, Outcome.OPEN, 0, (status,))
            else:
                decisions[i] = Decision(tap.tap_id, Outcome.REFUSED_FUNDS, 0, (status,))
        for i, request, kind, extra in capture_requests:
            self._apply_capture(
                i, taps[i], request, kind, extra, now_ms, decisions, capture_tx_at, statuses
            )
        for i, (kind, extra) in pending.items():
            if kind == "same-batch":
                first = decisions[int(extra)]  # type: ignore[call-overload]
                assert first is not None
                decisions[i] = dataclasses.replace(first, repeat=True, statuses=())
        owned: dict[int, list[int]] = {}
        for k, owner in enumerate(tx_owner):
            owned.setdefault(owner, []).append(k)
        result: list[Decision] = []
        for i, maybe in enumerate(decisions):
            assert maybe is not None, "every tap gets a decision"
            decision = maybe
            if i in repeat_of and decision.repeat:
                own = tuple(statuses[k] for k in owned.get(i, ()))
                decision = dataclasses.replace(decision, statuses=own)
                stats.repeats += 1
            else:
                own_txs = [txs[k] for k in owned.get(i, ())]
                self._decided[decision.tap_id] = (decision, own_txs, taps[i].time_ms)
            stats.outcomes[decision.outcome] = stats.outcomes.get(decision.outcome, 0) + 1
            result.append(decision)
        return result

    def _tap_in(
        self,
        i: int,
        tap: Tap,
        offline: bool,
        decisions: list[Decision | None],
        lock_requests: list[tuple[int, int, int]],
        pending: dict[int, tuple[str, object]],
    ) -> None:
        if offline:
            decisions[i] = Decision(tap.tap_id, Outcome.NOTHING_TO_SETTLE)
            return
        self.lapsed.pop(tap.card, None)
        journey = self.journeys.get(tap.card)
        if (
            journey is not None
            and journey.entry_station == tap.station
            and 0 <= tap.time_ms - journey.entry_ms <= REPEAT_WINDOW_MS
        ):
            decisions[i] = Decision(tap.tap_id, Outcome.OPEN, repeat=True)
            return
        if journey is not None:
            # A new entry while a journey is open: the old one is incomplete; it keeps its
            # lock, which the core charges at its deadline (max fare), and a new one starts.
            del self.journeys[tap.card]
            self._charge(tap.card, journey.entry_ms, journey.held_fen)
            self.stats.max_fares_charged_fen += journey.held_fen
        amount = min(self.network.max_fare_fen, self.cap_room(tap.card, tap.time_ms))
        deadline = tap.time_ms + self.network.time_limit_ms
        if amount == 0:  # the daily cap is reached: a journey with nothing held
            self._open(tap.card, Journey(b"", tap.station, tap.time_ms, 0, deadline, tap.tap_id))
            decisions[i] = Decision(tap.tap_id, Outcome.OPEN)
            return
        lock_requests.append((i, amount, deadline))

    def _tap_out(
        self,
        i: int,
        tap: Tap,
        offline: bool,
        now_ms: int,
        decisions: list[Decision | None],
        capture_requests: list[tuple[int, holds.Capture, str, object]],
    ) -> None:
        lapsed = self.lapsed.get(tap.card)
        if (
            tap.card not in self.journeys
            and lapsed is not None
            and tap.entry_station in (NO_ENTRY, lapsed.entry_station)
        ):
            # Charged the maximum fare at the deadline, by the core: nothing more now.
            del self.lapsed[tap.card]
            late = Flag.LATE if offline else Flag.NONE
            decisions[i] = Decision(
                tap.tap_id, Outcome.EXPIRED_JOURNEY, lapsed.held_fen, flags=int(late)
            )
            return
        journey = self.journeys.get(tap.card)
        if journey is not None and (tap.entry_station in (NO_ENTRY, journey.entry_station)):
            fare = self.network.fare(journey.entry_station, tap.station)
            # The hold was bounded by the cap room at tap-in; the fare charged by the hold.
            charged = min(fare, journey.held_fen, self.cap_room(tap.card, tap.time_ms))
            if not journey.lock_token:  # nothing was held: the daily cap
                del self.journeys[tap.card]
                decisions[i] = Decision(tap.tap_id, Outcome.CLOSED, 0)
                return
            request = holds.capture(
                journey.lock_token, tap.card, charged, False, now_ms, tap.tap_id[:16]
            )
            capture_requests.append((i, request, "hold", journey))
            del self.journeys[tap.card]
            return
        allowance = self.allowances.get(tap.card)
        if tap.entry_station == NO_ENTRY or allowance is None:
            decisions[i] = Decision(tap.tap_id, Outcome.REFUSED_NO_ENTRY)
            return
        if not 0 <= tap.entry_station < len(self.network.stations):
            decisions[i] = Decision(tap.tap_id, Outcome.REFUSED_BAD_TAP)
            return
        fare = min(
            self.network.fare(tap.entry_station, tap.station),
            self.cap_room(tap.card, tap.time_ms),
        )
        flags = 0
        other = allowance.seen_counters.get(tap.counter)
        if other is not None and other != tap.tap_id:
            flags |= Flag.DOUBLE_USE
        allowance.seen_counters[tap.counter] = tap.tap_id
        from_allowance = min(fare, allowance.left_fen)
        rest = fare - from_allowance
        if rest:
            flags |= Flag.OVER_ALLOWANCE
        if from_allowance:
            request = holds.capture(
                allowance.token, tap.card, from_allowance, True, now_ms, tap.tap_id[:16]
            )
            capture_requests.append((i, request, "allowance", (fare, rest, flags)))
            # Chain: the next capture of this allowance in the same batch spends the rest.
            allowance.token = request.rest_token
            allowance.left_fen -= from_allowance
        else:
            decisions[i] = self._collect_rest(tap, now_ms, fare, rest, flags, ())

    def _collect_rest(
        self, tap: Tap, now_ms: int, fare: int, rest: int, flags: int, statuses: tuple[int, ...]
    ) -> Decision:
        """Charge what the allowance did not cover from the wallet's free balance (a plain
        payment to the operator, settled at once); flag it."""
        uncollected = 0
        if rest:
            if self._replaying:
                built = self._rest_override.get(tap.tap_id)
                txs = [] if built is None else [built]
            else:
                txs, _ = self.ledger.build_payments(
                    self.keyring,
                    [tap.card],
                    [self.operator],
                    [rest],
                    now_ms,
                    reference=b"tb-fare-rest" + tap.tap_id[:16],
                    skip_insufficient=True,
                )
            record = {"op": "rest", "tap": tap.tap_id.hex(), "tx": _hex(txs[0] if txs else None)}
            settled = self._settle(txs, now_ms, record)
            status = tb.Status.VALUE_MISMATCH
            if txs:
                status = tb.Status(int(settled[0]))
            statuses = (*statuses, int(status))
            if status != tb.Status.OK:
                uncollected = rest
                flags |= Flag.INSUFFICIENT_FUNDS
        charged = fare - uncollected
        self._charge(tap.card, tap.time_ms, charged)
        self.stats.fares_charged_fen += charged
        self.stats.uncollected_fen += uncollected
        outcome = Outcome.FLAGGED if flags else Outcome.CLOSED
        if flags:
            self.stats.flagged += 1
        return Decision(tap.tap_id, outcome, charged, statuses, False, flags, uncollected)

    def _apply_capture(
        self,
        i: int,
        tap: Tap,
        request: holds.Capture,
        kind: str,
        extra: object,
        now_ms: int,
        decisions: list[Decision | None],
        capture_tx_at: dict[int, list[int]],
        statuses: list[int],
    ) -> None:
        status = statuses[capture_tx_at[i][0]]
        if kind == "hold":
            journey = extra
            assert isinstance(journey, Journey)
            if status == tb.Status.OK:
                self._charge(tap.card, tap.time_ms, request.amount_fen)
                self.stats.fares_charged_fen += request.amount_fen
                decisions[i] = Decision(tap.tap_id, Outcome.CLOSED, request.amount_fen, (status,))
            elif status == tb.Status.LOCK_DEADLINE_PASSED:
                self._charge(tap.card, journey.entry_ms, journey.held_fen)
                self.stats.expired_journeys += 1
                self.stats.max_fares_charged_fen += journey.held_fen
                decisions[i] = Decision(
                    tap.tap_id, Outcome.EXPIRED_JOURNEY, journey.held_fen, (status,)
                )
            else:
                raise tb.InvariantViolation(
                    f"capture of card {tap.card}'s hold failed: {tb.Status(status).name}"
                )
            return
        assert isinstance(extra, tuple)
        fare, rest, flags = (int(x) for x in extra)
        if status != tb.Status.OK:
            raise tb.InvariantViolation(
                f"capture of card {tap.card}'s allowance failed: {tb.Status(status).name}"
            )
        decisions[i] = self._collect_rest(tap, now_ms, fare, rest, flags, (status,))

    # -- crash safety --------------------------------------------------------------------------

    def _settle(self, txs: list[bytes], now_ms: int, record: Mapping[str, object]) -> list[int]:
        """Every ledger call of the engine: journal ``record`` (fsynced when there is something
        to settle), settle, journal the statuses. While replaying, a batch whose statuses were
        journaled is not settled again; one that was not is settled now (``ALREADY_SETTLED``:
        it had settled before the crash, read as ``OK``)."""
        seq = self._seq
        self._seq += 1
        if self._journal is None:
            return self.settler.settle(txs, now_ms).statuses.tolist() if txs else []
        if self._replaying:
            done = self._done.get(seq)
            if done is not None or not txs:
                return done or []
            at = max(now_ms, self.ledger.last_timestamp_ms)
            statuses = [
                int(tb.Status.OK) if s == tb.Status.ALREADY_SETTLED else s
                for s in self.settler.settle(txs, at).statuses.tolist()
            ]
        else:
            self._journal.append({"seq": seq, **record}, sync=bool(txs))
            if not txs:
                return []
            try:
                statuses = self.settler.settle(txs, now_ms).statuses.tolist()
            except tb.BatchRejected:
                # Refused whole, nothing settled: recovery must not settle it either.
                self._journal.append({"op": "rejected", "seq": seq}, sync=True)
                raise
        self._journal.append({"op": "done", "seq": seq, "st": statuses}, sync=False)
        return statuses

    def recover(self) -> None:
        """Replay the journal found at start-up, once (see the class docstring); later calls do
        nothing. :meth:`process` calls it first; call it yourself (cards registered) before
        reading ``ledger.last_timestamp_ms`` for the next batch time: replay may settle a
        journaled batch and move the ledger's clock."""
        if self._journal is None or not self._journal.records or self._replaying:
            return
        records, self._journal.records = self._journal.records, []
        self._done = {r["seq"]: r["st"] for r in records if r["op"] == "done"}
        rejected = {r["seq"] for r in records if r["op"] == "rejected"}
        self._rest_override = {
            bytes.fromhex(r["tap"]): _unhex(r["tx"]) for r in records if r["op"] == "rest"
        }
        self._replaying = True
        try:
            for r in records:
                if r.get("seq") in rejected and r["op"] != "rejected":
                    continue
                if r["op"] == "taps":
                    self._seq = r["seq"]
                    self._lock_override = {
                        bytes.fromhex(k): _unhex(v) for k, v in r["locks"].items()
                    }
                    taps = [Tap.decode(bytes.fromhex(t)) for t in r["taps"]]
                    self.process(taps, r["now"], offline=r["offline"])
                elif r["op"] == "allow":
                    self._seq = r["seq"]
                    self._allow_override = [_unhex(v) for v in r["locks"]]
                    self.grant_allowances(r["ids"], r["amount"], r["ts"], r["days"])
                else:
                    continue
                self.replayed_records += 1
        finally:
            self._replaying = False
            self._lock_override = self._allow_override = None
            self._done, self._rest_override = {}, {}
        self._seq = 1 + max((r["seq"] for r in records), default=-1)

    # -- reads ---------------------------------------------------------------------------------

    @property
    def holds_outstanding(self) -> int:
        """Open journeys (holds placed and neither captured nor past their deadline)."""
        return len(self.journeys)

    def charged_today(self, card: int, time_ms: int) -> int:
        """Fares charged to ``card`` on ``time_ms``'s Shanghai day (as the engine counts)."""
        return self._charged.get((card, shanghai_day(time_ms)), 0)


class _Settler(Protocol):
    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> tb.Settlement: ...


def _hex(tx: bytes | None) -> str | None:
    return None if tx is None else tx.hex()


def _unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def outcome_counts(decisions: Sequence[Decision]) -> dict[str, int]:
    """Decisions per outcome name (for reports).

    >>> outcome_counts([Decision(b"", Outcome.OPEN), Decision(b"", Outcome.OPEN)])
    {'OPEN': 2}
    """
    counts = np.bincount([int(d.outcome) for d in decisions], minlength=len(Outcome))
    return {Outcome(i).name: int(c) for i, c in enumerate(counts) if c}
