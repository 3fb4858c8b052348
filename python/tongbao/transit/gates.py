"""Gates: online gates ask the engine; offline gates decide locally and queue.

An **online gate** reads a signed tap from the card, sends it to the engine
(:meth:`tongbao.transit.engine.TransitEngine.process`, usually batched with other gates' taps
by a gate controller) and opens on the decision, writing the journey onto the card.

An **offline gate** cannot reach the engine. It checks the card's signature against its copy of
the card keys and the card's offline allowance (what the card says is left of it, signed):
enough for the maximum fare to enter, for the fare to leave; then it opens, writes the card and
queues the tap. :func:`reconcile` later pushes the queued taps through the same engine code
(``offline=True``): fares are drawn from the allowance lock by partial captures, idempotently
(a tap reconciled twice is charged once), and double use and unpaid fares are flagged.

>>> import tongbao as tb
>>> from tongbao.transit import engine as te, fares, taps
>>> ledger, keys = tb.Ledger(threads=1), tb.Keyring()
>>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
>>> ledger.open_wallets(keys, [10], tb.WalletKind.OPERATOR)
>>> card = taps.Card.new(2001, seed=b"doc")
>>> ledger.register_wallets([2001], tb.WalletKind.PERSONAL, [keys.add(2001, 1, card.secret)])
>>> ledger.settle([tb.issue(keys, 1, [(10, 10_000)], timestamp_ms=1_000)], 1_000).ok
True
>>> ledger.pay(keys, 10, 2001, 5_000, timestamp_ms=1_000).ok
True
>>> net = fares.load_network("chongqing-metro")
>>> engine = te.TransitEngine(ledger, keys, net, operator=10)
>>> engine.register_cards([2001])
>>> gate_in = OnlineGate(1, net.station_index("Chaotianmen"), engine)
>>> gate_in.tap(card, taps.Direction.IN, 2_000).outcome.name
'OPEN'
>>> ledger.wallet(2001).held_fen
1000
>>> gate_out = OnlineGate(2, net.station_index("Shapingba"), engine)
>>> d = gate_out.tap(card, taps.Direction.OUT, 1_800_000)
>>> d.outcome.name, d.fare_fen, ledger.balance(2001), ledger.wallet(2001).held_fen
('CLOSED', 500, 4500, 0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tongbao.transit.engine import Decision, TransitEngine
from tongbao.transit.fares import Network
from tongbao.transit.journal import TapQueue
from tongbao.transit.taps import NO_ENTRY, TAP_LEN, Card, Direction, Tap


def apply_decision(card: Card, tap: Tap, decision: Decision, allowance_used_fen: int = 0) -> None:
    """What an online gate writes on the card once the engine decided: the entry when the
    journey opens, nothing open when it closes."""
    if not decision.opens_gate:
        return
    if tap.direction == Direction.IN:
        card.enter(tap.station, tap.time_ms)
        card.entry_offline = False
    else:
        card.leave(allowance_used_fen)


class OnlineGate:
    """A gate that sends each tap to the engine at once (one tap per call: a gate controller
    batches many gates' taps, see :mod:`tongbao.transit.burst`)."""

    def __init__(self, gate_id: int, station: int, engine: TransitEngine) -> None:
        self.gate_id, self.station, self.engine = gate_id, station, engine

    def tap(self, card: Card, direction: Direction, time_ms: int) -> Decision:
        """Read the card, ask the engine (ledger batch time ``time_ms``), write the card."""
        tap = card.tap(self.gate_id, self.station, direction, time_ms)
        decision = self.engine.process([tap], max(time_ms, self.engine.ledger.last_timestamp_ms))[0]
        used = 0
        if direction == Direction.OUT and card.entry_offline and tap.entry_station != NO_ENTRY:
            used = min(decision.fare_fen, card.allowance_left_fen)
        apply_decision(card, tap, decision, used)
        return decision


@dataclass(frozen=True)
class LocalDecision:
    """An offline gate's own answer: whether it opens, why not, the fare it counted."""

    opens: bool
    reason: str
    fare_fen: int = 0


@dataclass
class OfflineGate:
    """A gate with no link to the engine (see the module docstring). ``card_key`` looks up a
    card's ``(scheme, public key)`` in the gate's downloaded key list (None: unknown card).

    ``queue_path``: keep the queue in this append-only file too; a tap is fsynced there before
    the gate opens, and a gate restarted on the same file starts with the taps it had queued."""

    gate_id: int
    station: int
    network: Network
    card_key: Callable[[int], tuple[int, bytes] | None]
    queue: list[Tap] = field(default_factory=list)
    queue_path: str | None = None

    def __post_init__(self) -> None:
        self._store = None if self.queue_path is None else TapQueue(self.queue_path, TAP_LEN)
        if self._store is not None:
            self.queue.extend(Tap.decode(b) for b in self._store.load())

    def _enqueue(self, tap: Tap) -> None:
        if self._store is not None:
            self._store.append(tap.encode())
        self.queue.append(tap)

    def tap(self, card: Card, direction: Direction, time_ms: int) -> LocalDecision:
        """Decide locally; on yes write the card and queue the tap."""
        tap = card.tap(self.gate_id, self.station, direction, time_ms)
        key = self.card_key(tap.card)
        if key is None:
            return LocalDecision(False, "unknown card")
        if not tap.verify(*key):
            return LocalDecision(False, "bad signature")
        if direction == Direction.IN:
            if card.allowance_left_fen < self.network.max_fare_fen:
                return LocalDecision(False, "offline allowance below the maximum fare")
            self._enqueue(tap)
            card.enter(self.station, time_ms)
            card.entry_offline = True
            return LocalDecision(True, "entered on the offline allowance")
        if card.entry_station == NO_ENTRY:
            return LocalDecision(False, "no entry recorded on the card")
        fare = self.network.fare(card.entry_station, self.station)
        if not card.entry_offline:
            # The journey's hold (placed online) pays; reconciliation captures it.
            self._enqueue(tap)
            card.leave(0)
            return LocalDecision(True, "left; the hold pays", fare)
        if card.allowance_left_fen < fare:
            return LocalDecision(False, "offline allowance below the fare", fare)
        self._enqueue(tap)
        card.leave(fare)
        return LocalDecision(True, "left on the offline allowance", fare)


def reconcile(engine: TransitEngine, gates: Sequence[OfflineGate], now_ms: int) -> list[Decision]:
    """Settle every queued tap of ``gates`` through the engine, in tap-time order, one batch;
    the queues are kept (reconciling again is harmless: repeats answer ``ALREADY_SETTLED``).
    Returns one decision per queued tap, in that order."""
    queued = sorted((t for g in gates for t in g.queue), key=lambda t: (t.time_ms, t.gate))
    return engine.process(queued, now_ms, offline=True)
