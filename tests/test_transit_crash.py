"""Transit crash safety (``docs/transit.md``, "Crashes"): a gate controller SIGKILLed mid-burst
and restarted, a batch journaled but never settled, offline gate queues that survive their gate.

The subprocess test runs tests/crash/transit_gate.py on a durable ledger with the engine's
journal, kills it once some answers are out, restarts it (the gates resend every tap), and
compares everything with the same taps decided by an engine that never crashed: every tap
decided once with the same outcome and fare, the same ledger content (no second hold, nothing
charged twice), supply conserved. A second restart resending everything changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tongbao as tb
from tongbao.transit.engine import Flag, Outcome, TransitEngine
from tongbao.transit.fares import load_network
from tongbao.transit.gates import OfflineGate, reconcile
from tongbao.transit.taps import TAP_LEN, Card, Direction, Tap

CB, OP = 1, 10
T0 = 1_796_081_400_000
MIN = 60_000
ISSUED = 10_000_000
NET = load_network("chongqing-metro")
GATE_PROC = Path(__file__).parent / "crash" / "transit_gate.py"
OP_SECRET = hashlib.sha256(b"transit-crash-operator").digest()


def build_world(ledger: tb.Ledger, funds: dict[int, int]) -> tuple[tb.Keyring, dict[int, Card]]:
    """The same wallets and funds on any ledger: fixed keys, so another process can sign."""
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CB], tb.WalletKind.CENTRAL_BANK)
    ledger.register_wallets([OP], tb.WalletKind.OPERATOR, [keys.add(OP, 1, OP_SECRET)])
    cards = {w: Card.new(w, seed=b"crash") for w in funds}
    publics = [keys.add(w, 1, c.secret) for w, c in cards.items()]
    ledger.register_wallets(list(cards), tb.WalletKind.PERSONAL, publics)
    t = T0 - 3_600_000
    assert ledger.settle([tb.issue(keys, CB, [(OP, ISSUED)], t)], t).ok
    payers = list(funds)
    txs, _ = ledger.build_payments(keys, [OP] * len(payers), payers, [funds[w] for w in payers], t)
    assert ledger.settle(txs, t).ok
    return keys, cards


def burst_taps(cards: dict[int, Card], rounds: int = 2) -> list[Tap]:
    """Every rider in, then out 40 minutes later, ``rounds`` times; every 13th tap sent twice."""
    taps: list[Tap] = []
    n = len(NET.stations)
    for r in range(rounds):
        base = T0 + r * 120 * MIN
        for direction, offset in ((Direction.IN, 0), (Direction.OUT, 40 * MIN)):
            for i, card in enumerate(cards.values()):
                station = (i * 7 + r) % n if direction == Direction.IN else (i * 11 + 5 + r) % n
                tap = card.tap(i % 50, station, direction, base + offset + i * 200)
                taps.append(tap)
                if len(taps) % 13 == 0:
                    taps.append(tap)
    return taps


def funds_for(riders: int) -> dict[int, int]:
    # Every 9th rider cannot hold the maximum fare: refused at tap-in, no entry at tap-out.
    return {3000 + i: (100 if i % 9 == 0 else 5_000) for i in range(riders)}


def reference(
    funds: dict[int, int], taps: list[Tap], batch: int
) -> tuple[dict[bytes, tuple[int, int]], tb.Ledger]:
    """The taps decided by an engine that never crashed: decision per tap id, the ledger."""
    ledger = tb.Ledger(threads=1)
    keys, _ = build_world(ledger, funds)
    engine = TransitEngine(ledger, keys, NET, OP)
    engine.register_cards(list(funds))
    decided: dict[bytes, tuple[int, int]] = {}
    for lo in range(0, len(taps), batch):
        chunk = taps[lo : lo + batch]
        now = max(max(t.time_ms for t in chunk), ledger.last_timestamp_ms)
        for tap, d in zip(chunk, engine.process(chunk, now), strict=True):
            decided.setdefault(tap.tap_id, (int(d.outcome), d.fare_fen))
    return decided, ledger


def read_acks(path: Path) -> list[tuple[bytes, int, int, bool]]:
    acks = []
    for line in path.read_text().splitlines():
        tap_id, outcome, fare, repeat = line.split()
        acks.append((bytes.fromhex(tap_id), int(outcome), int(fare), repeat == "1"))
    return acks


def run_gate(d: Path, batch: int) -> int:
    done = subprocess.run(
        [sys.executable, str(GATE_PROC), str(d), str(batch)], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    return int(done.stdout.split()[-1])


def test_sigkill_gate_controller_mid_burst_then_restart_decides_every_tap_once(
    tmp_path: Path,
) -> None:
    riders, batch = 150, 4
    funds = funds_for(riders)
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    _, cards = build_world(ledger, funds)
    ledger.close()
    taps = burst_taps(cards)
    (tmp_path / "taps.bin").write_bytes(b"".join(t.encode() for t in taps))
    secrets = {str(w): c.secret.hex() for w, c in cards.items()} | {str(OP): OP_SECRET.hex()}
    world = {"secrets": secrets, "network": "chongqing-metro", "operator": OP, "cards": [*funds]}
    (tmp_path / "world.json").write_text(json.dumps(world))
    acks_path = tmp_path / "acks"

    # 1. Kill the controller once a third of the answers are out.
    proc = subprocess.Popen(
        [sys.executable, str(GATE_PROC), str(tmp_path), str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if acks_path.exists() and len(acks_path.read_bytes().splitlines()) >= len(taps) // 3:
            break
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the controller finished before it was killed"
    answered_before = {a[0] for a in read_acks(acks_path)}
    assert 0 < len(answered_before) < len(set(t.tap_id for t in taps))

    # 2. Restart: the journal is replayed, the gates resend everything.
    assert run_gate(tmp_path, batch) > 0
    acks = read_acks(acks_path)
    expected, ref_ledger = reference(funds, taps, batch)
    assert {a[0] for a in acks} == set(expected)  # no tap lost
    fresh: dict[bytes, int] = {}
    for tap_id, outcome, fare, repeat in acks:
        assert (outcome, fare) == expected[tap_id]  # the same decision every time it is asked
        fresh[tap_id] = fresh.get(tap_id, 0) + (not repeat)
    assert max(fresh.values()) == 1  # decided once; a repeat answers the first decision
    assert sum(1 for o, _ in expected.values() if o == Outcome.CLOSED) > riders

    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    ledger.check_invariants()
    supply = ledger.supply()
    assert supply.issued_fen == supply.outstanding_fen == ISSUED
    # Nothing charged twice, no second hold: the very ledger content of the run that never
    # crashed (same tokens, same balances, same holds).
    for w in [OP, *funds]:
        assert ledger.balance(w) == ref_ledger.balance(w)
        assert ledger.wallet(w).held_fen == ref_ledger.wallet(w).held_fen  # type: ignore[union-attr]
    digest = ledger.content_digest()
    assert digest == ref_ledger.content_digest()
    ledger.close()

    # 3. A second restart, everything resent again: all repeats, the ledger content unchanged.
    before = len(acks)
    assert run_gate(tmp_path, batch) > 0
    third = read_acks(acks_path)[before:]
    assert len(third) == len(taps) and all(a[3] for a in third)
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    assert ledger.content_digest() == digest
    ledger.check_invariants()


class SettleCrash(Exception):
    pass


def test_a_batch_journaled_but_not_settled_is_settled_on_recovery_once(tmp_path: Path) -> None:
    """The controller dies after the journal is fsynced and before the ledger settles: the
    restarted engine settles that batch from the journal (the same LOCKs, not new ones), and a
    second restart places no second hold for the resent tap-ins."""
    funds = {2001 + i: 5_000 for i in range(6)}
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    keys, cards = build_world(ledger, funds)
    engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
    engine.register_cards(list(funds))
    first = [cards[w].tap(1, 3, Direction.IN, T0) for w in list(funds)[:3]]
    assert all(d.outcome == Outcome.OPEN for d in engine.process(first, T0))
    second = [cards[w].tap(1, 3, Direction.IN, T0 + 10) for w in list(funds)[3:]]

    def crash(*_: object) -> tb.Settlement:
        raise SettleCrash

    ledger.settle = crash  # type: ignore[method-assign,assignment]
    with pytest.raises(SettleCrash):
        engine.process(second, T0 + 10)
    del ledger.settle
    assert all(ledger.wallet(w).held_fen == 0 for w in list(funds)[3:])  # type: ignore[union-attr]
    ledger.close()
    del engine, ledger

    for restart in range(2):
        ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
        engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
        engine.register_cards(list(funds))
        answers = engine.process(first + second, T0 + 20)
        assert all(d.outcome == Outcome.OPEN and d.repeat for d in answers), restart
        assert {d.statuses for d in answers} == {(tb.Status.ALREADY_SETTLED,)}
        assert engine.replayed_records >= 2
        assert engine.holds_outstanding == 6 and engine.stats.holds_placed == 6
        for w in funds:
            assert ledger.wallet(w).held_fen == NET.max_fare_fen  # type: ignore[union-attr]
            assert ledger.balance(w) == 5_000
        ledger.check_invariants()
        # The journey resumes: a tap-out after the restart captures the recovered hold.
        if restart == 1:
            out = cards[2001].tap(2, 20, Direction.OUT, T0 + 30 * MIN)
            d = engine.process([out], T0 + 30 * MIN)[0]
            assert d.outcome == Outcome.CLOSED and d.fare_fen == NET.fare(3, 20)
            assert ledger.balance(2001) == 5_000 - d.fare_fen
            assert ledger.wallet(2001).held_fen == 0  # type: ignore[union-attr]
        ledger.close()
        del engine, ledger


def test_offline_gate_queue_survives_the_gate_and_reconciles_once_across_restarts(
    tmp_path: Path,
) -> None:
    """Taps queued by an offline gate are fsynced before it opens: a new gate process on the
    same file has them (a torn last record is dropped). Reconciled through a journaled engine,
    restarted, and reconciled again: charged once, the over-allowance rest collected once."""
    funds = {2001: 5_000, 2002: 5_000}
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    keys, cards = build_world(ledger, funds)
    engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
    engine.register_cards(list(funds))
    allowance = NET.max_fare_fen
    assert engine.grant_allowances(list(funds), allowance, T0 - MIN) == [tb.Status.OK] * 2
    for card in cards.values():
        card.allowance_left_fen = allowance
    a_path, b_path = str(tmp_path / "gate-a"), str(tmp_path / "gate-b")
    a = OfflineGate(1, NET.station_index("Chaotianmen"), NET, engine.card_key, queue_path=a_path)
    b = OfflineGate(2, NET.station_index("Shapingba"), NET, engine.card_key, queue_path=b_path)
    # Card 2001 is cloned twice: the clones (same counters) ride on what the card says is left.
    clones = [
        Card(2001, cards[2001].scheme, cards[2001].secret, cards[2001].public_key) for _ in "ab"
    ]
    for clone in clones:
        clone.allowance_left_fen = allowance
    riders = [(cards[2001], T0), (cards[2002], T0 + MIN)]
    riders += [(c, T0 + (2 + k) * MIN) for k, c in enumerate(clones)]
    for card, t in riders:
        assert a.tap(card, Direction.IN, t).opens
        assert b.tap(card, Direction.OUT, t + 30 * MIN).opens
    queued = [*a.queue, *b.queue]
    with open(b_path, "ab") as f:
        f.write(b"\x07" * (TAP_LEN // 2))  # the gate died while writing a tap: never opened
    del a, b  # the gate processes are gone
    a = OfflineGate(1, NET.station_index("Chaotianmen"), NET, engine.card_key, queue_path=a_path)
    b = OfflineGate(2, NET.station_index("Shapingba"), NET, engine.card_key, queue_path=b_path)
    assert [*a.queue, *b.queue] == queued and len(queued) == 8
    first = reconcile(engine, [a, b], T0 + 120 * MIN)
    fare = NET.fare("Chaotianmen", "Shapingba")
    flagged = [d for d in first if d.outcome == Outcome.FLAGGED]
    # The second clone found the allowance used up: its fare was collected from the wallet.
    assert len(flagged) == 2 and {d.fare_fen for d in flagged} == {fare}
    assert flagged[1].flags == Flag.DOUBLE_USE | Flag.OVER_ALLOWANCE
    assert flagged[1].uncollected_fen == 0 and flagged[1].statuses == (tb.Status.OK,)
    op_after = ledger.balance(OP)
    digest = ledger.content_digest()
    ledger.close()
    del engine, ledger
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
    engine.register_cards(list(funds))
    again = reconcile(engine, [a, b], T0 + 121 * MIN)
    assert all(d.repeat for d in again)
    assert [(d.outcome, d.fare_fen, d.flags) for d in again] == [
        (d.outcome, d.fare_fen, d.flags) for d in first
    ]
    assert ledger.balance(OP) == op_after and ledger.content_digest() == digest
    assert ledger.supply().outstanding_fen == ISSUED
    ledger.check_invariants()


def test_a_batch_the_ledger_refused_whole_is_not_settled_on_recovery(tmp_path: Path) -> None:
    """``BatchRejected`` (here: a batch time going backwards) settles nothing; the journal says
    so, and recovery does not settle it either: the resent taps are decided afresh, once."""
    funds = {2001: 5_000, 2002: 5_000}
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    keys, cards = build_world(ledger, funds)
    engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
    engine.register_cards(list(funds))
    assert engine.process([cards[2001].tap(1, 3, Direction.IN, T0)], T0)[0].outcome == Outcome.OPEN
    late = [cards[2002].tap(1, 3, Direction.IN, T0 - MIN)]
    with pytest.raises(tb.BatchRejected):
        engine.process(late, T0 - MIN)
    ledger.close()
    del engine, ledger
    ledger = tb.Ledger.open(tmp_path / "ledger", threads=1)
    engine = TransitEngine(ledger, keys, NET, OP, journal=tmp_path / "journal")
    engine.register_cards(list(funds))
    assert ledger.wallet(2002).held_fen == 0  # type: ignore[union-attr]
    d = engine.process(late, T0 + MIN)[0]
    assert d.outcome == Outcome.OPEN and not d.repeat and d.statuses == (tb.Status.OK,)
    assert engine.replayed_records == 1 and engine.stats.holds_placed == 2
    assert ledger.wallet(2002).held_fen == NET.max_fare_fen  # type: ignore[union-attr]
    ledger.check_invariants()
