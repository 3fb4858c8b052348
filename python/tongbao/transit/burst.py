"""``tongbao transit burst``: a morning peak of taps replayed in real time through the engine.

**The arrival curve** (``docs/transit.md`` has the numbers): taps come in two streams.

* *Entries* (tap-in, :data:`ENTRY_SHARE` of the taps): a non-homogeneous Poisson process whose
  rate follows the peak, ``0.5 + sin²(π t / duration)`` (half the mean rate at the edges of the
  window, 1.5× in the middle), spread over stations by a Zipf-like weight (a few residential
  hubs take most entries).
* *Exits* (tap-out): riders who entered earlier (during the 85 minutes before the window) leave
  in platoons: at each station trains arrive every :data:`HEADWAY_S` seconds (a random phase
  per station), each train's riders reach the gates after a log-normal walk (median
  :data:`WALK_MEDIAN_S` s), and the trains carry more riders in the middle of the window (the
  same peak shape).

A small share (:data:`STALE_SHARE`) of the warm-up journeys are older than the time limit and
never tap out: the core charges them the maximum fare at their deadline, in the window's first
batch. Each gate is offline with probability ``offline_share``: its taps are decided at the
gate (signature and allowance) and reconciled after the window.

**The gate controller** gathers online taps from every gate and sends them to the engine in
small batches: a batch goes when it holds ``batch_max`` taps or its oldest tap has waited
``wait_ms``. Latency is tap-to-decision: from the tap's scheduled arrival to the moment the
engine's decision for it is back (queueing, batching, building, signing, settling included).

>>> result = run_burst(BurstConfig(taps=400, stations=10, duration_s=0.5, seed=1))
>>> result.taps, result.supply_ok, result.fares_ok
(400, True, True)
>>> result.online_taps + result.offline_taps == result.taps
True
"""

from __future__ import annotations

import gc
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tongbao as tb
from tongbao.cluster import Cluster, wait_idle
from tongbao.errors import InvalidArgument
from tongbao.simulate_cluster import ClusterSettler
from tongbao.transit.engine import Outcome, TransitEngine, outcome_counts
from tongbao.transit.fares import Network, load_network
from tongbao.transit.gates import OfflineGate, apply_decision, reconcile
from tongbao.transit.taps import Card, Direction, Tap

#: Share of the window's taps that are entries (the rest are exits).
ENTRY_SHARE = 0.55
#: Share of warm-up journeys that are past their time limit (incomplete: maximum fare).
STALE_SHARE = 0.02
#: Seconds between trains at a station (per direction and line, rounded up).
HEADWAY_S = 30.0
#: Median walk from the platform to the exit gates, seconds.
WALK_MEDIAN_S = 12.0
#: What each rider is paid in before the burst and the offline allowance locked out of it.
RIDER_FUNDS_FEN = 5_000
ALLOWANCE_FEN = 2_000
#: 2026-11-30 07:30 Asia/Shanghai: the window's start on the ledger clock.
START_MS = 1_796_081_400_000
#: Gates per station: one per 0.75 taps/s of the station's peak demand, at least 2.
GATE_RATE_PER_S = 0.75
#: Limits.
TAPS_MAX = 2_000_000
DURATION_S_MAX = 3_600.0


@dataclass(frozen=True)
class BurstConfig:
    """What to replay: ``taps`` in ``duration_s`` seconds at ``stations`` stations of the
    network (the first ``stations`` in file order), ``offline_share`` of the gates offline,
    gate-controller batches of at most ``batch_max`` taps waiting at most ``wait_ms``."""

    taps: int = 50_000
    stations: int = 40
    duration_s: float = 60.0
    offline_share: float = 0.1
    seed: int = 0
    batch_max: int = 512
    wait_ms: float = 20.0
    network: str = "chongqing-metro"
    threads: int = 0
    ledger_path: str | None = None
    redis_url: str | None = None

    def validate(self, network: Network) -> None:
        """Raise ``InvalidArgument`` naming the option that is out of range."""
        if not 1 <= self.taps <= TAPS_MAX:
            raise InvalidArgument(f"--taps: 1 to {TAPS_MAX}, got {self.taps}")
        if not 2 <= self.stations <= len(network.stations):
            raise InvalidArgument(
                f"--stations: 2 to {len(network.stations)} (the network's), got {self.stations}"
            )
        if not 0 < self.duration_s <= DURATION_S_MAX:
            raise InvalidArgument(f"--duration: above 0 and at most {DURATION_S_MAX:g} s")
        if not 0.0 <= self.offline_share <= 1.0:
            raise InvalidArgument(f"--offline-share: 0 to 1, got {self.offline_share}")
        if not 1 <= self.batch_max <= 65_536 or not 0 <= self.wait_ms <= 10_000:
            raise InvalidArgument("--batch-max 1-65536 and --wait-ms 0-10000")


def parse_duration(text: str) -> float:
    """Seconds in ``60s``, ``2m``, ``500ms`` or ``45``.

    >>> parse_duration("60s"), parse_duration("2m"), parse_duration("500ms"), parse_duration("3")
    (60.0, 120.0, 0.5, 3.0)
    """
    t = text.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], factor
            break
    else:
        scale = 1.0
    try:
        value = float(t) * scale
    except ValueError:
        raise InvalidArgument(f"a duration such as 60s, 2m or 500ms, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"a positive duration, got {text!r}")
    return value


@dataclass
class BurstResult:
    """What a burst measured (times in ms, money in fen); ``series`` per second of the window."""

    config: dict[str, Any]
    taps: int
    online_taps: int
    offline_taps: int
    riders: int
    gates: int
    offline_gates: int
    wall_s: float
    setup_s: float
    taps_per_s: float
    latency_ms_p50: float
    latency_ms_p99: float
    latency_ms_p999: float
    latency_ms_max: float
    offline_decision_ms_p99: float
    batches: int
    batch_taps_mean: float
    backlog_max: int
    holds_outstanding_start: int
    holds_outstanding_end: int
    holds_outstanding_max: int
    outcomes: dict[str, int]
    reconciled: dict[str, int]
    reconcile_s: float
    reconcile_again_charged_fen: int
    fares_charged_fen: int
    max_fares_charged_fen: int
    operator_gain_fen: int
    fares_ok: bool
    supply_ok: bool
    supply: dict[str, int]
    series: dict[str, list[float]] = field(default_factory=dict)
    #: On the cluster (``--redis``): every status matched the client's mirror and the cluster's
    #: content digest equals the mirror's at the end. None when embedded.
    cluster_ok: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _peak_shape(t: np.ndarray, duration_s: float) -> np.ndarray:
    return 0.5 + np.sin(np.pi * t / duration_s) ** 2


def _sample_peak(rng: np.random.Generator, n: int, duration_s: float) -> np.ndarray:
    """``n`` times in [0, duration) with density proportional to the peak shape."""
    out = np.empty(0)
    while out.size < n:
        t = rng.uniform(0.0, duration_s, size=2 * n)
        keep = rng.uniform(0.0, 1.5, size=t.size) < _peak_shape(t, duration_s)
        out = np.concatenate([out, t[keep]])
    return np.sort(out[:n])


@dataclass
class _Plan:
    cards: list[Card]
    station_ids: np.ndarray
    entries: list[tuple[int, int, int]]  # warm-up: (card index, station, time_ms)
    arrivals_s: np.ndarray  # per window tap, sorted
    tap_card: np.ndarray
    tap_station: np.ndarray
    tap_direction: np.ndarray
    tap_gate: np.ndarray
    gate_offline: np.ndarray
    gate_station: np.ndarray
    stale: int


def _plan(config: BurstConfig, network: Network, start: int) -> _Plan:
    rng = np.random.default_rng(config.seed)
    n_in = round(config.taps * ENTRY_SHARE)
    n_out = config.taps - n_in
    n_stale = round(n_out * STALE_SHARE)
    station_ids = np.arange(config.stations)
    weights = 1.0 / np.arange(1, config.stations + 1) ** 0.8
    rng.shuffle(weights)
    weights /= weights.sum()
    # Warm-up riders: entered before the window; the exit riders' exit differs from entry.
    n_warm = n_out + n_stale
    warm_entry = rng.choice(station_ids, size=n_warm, p=weights)
    entry_ms = rng.integers(start - 85 * 60_000, start - 5 * 60_000, size=n_warm)
    limit = network.time_limit_ms
    entry_ms[n_out:] = start - limit - rng.integers(1_000, 5 * 60_000, size=n_stale)
    exit_station = rng.choice(
        station_ids, size=n_out, p=np.full(config.stations, 1 / config.stations)
    )
    same = exit_station == warm_entry[:n_out]
    exit_station[same] = (exit_station[same] + 1) % config.stations
    # Exit times: trains every HEADWAY_S at each station, a random phase, a walk.
    d = config.duration_s
    phase = rng.uniform(0, HEADWAY_S, size=config.stations)
    out_times = np.empty(n_out)
    todo = np.arange(n_out)
    while todo.size:
        st = exit_station[todo]
        trains = rng.uniform(-2 * WALK_MEDIAN_S, d, size=todo.size)
        trains = phase[st] + np.floor((trains - phase[st]) / HEADWAY_S) * HEADWAY_S
        accept = rng.uniform(0, 1.5, size=todo.size) < _peak_shape(np.clip(trains, 0, d), d)
        walk = WALK_MEDIAN_S * rng.lognormal(0.0, 0.5, size=todo.size)
        t = trains + walk
        ok = accept & (t >= 0) & (t < d)
        out_times[todo[ok]] = t[ok]
        todo = todo[~ok]
    in_times = _sample_peak(rng, n_in, d)
    in_station = rng.choice(station_ids, size=n_in, p=weights)
    # Window taps: exits are cards 0..n_out-1, entries cards n_warm..n_warm+n_in-1.
    arrivals = np.concatenate([out_times, in_times])
    cards_ix = np.concatenate([np.arange(n_out), n_warm + np.arange(n_in)])
    stations = np.concatenate([exit_station, in_station])
    directions = np.concatenate([np.full(n_out, 2), np.full(n_in, 1)])
    order = np.argsort(arrivals, kind="stable")
    # Gates: enough per station for its peak demand.
    per_station_rate = np.bincount(stations, minlength=config.stations) / d * 1.5
    gates_per = np.maximum(2, np.ceil(per_station_rate / GATE_RATE_PER_S)).astype(int)
    gate_station = np.repeat(station_ids, gates_per)
    first_gate = np.concatenate([[0], np.cumsum(gates_per)[:-1]])
    gate_offline = rng.uniform(size=gate_station.size) < config.offline_share
    tap_gate = first_gate[stations] + rng.integers(0, gates_per[stations])
    cards = [Card.new(100_000 + i, seed=b"burst%d" % config.seed) for i in range(n_warm + n_in)]
    entries = [(i, int(warm_entry[i]), int(entry_ms[i])) for i in range(n_warm)]
    entries.sort(key=lambda e: e[2])
    return _Plan(
        cards=cards,
        station_ids=station_ids,
        entries=entries,
        arrivals_s=arrivals[order],
        tap_card=cards_ix[order],
        tap_station=stations[order],
        tap_direction=directions[order],
        tap_gate=tap_gate[order],
        gate_offline=gate_offline,
        gate_station=gate_station,
        stale=n_stale,
    )


OPERATOR = 10
CENTRAL_BANK = 1


def _setup(
    config: BurstConfig, network: Network, plan: _Plan, start: int, client: Cluster | None
) -> tuple[tb.Ledger, tb.Keyring, TransitEngine]:
    """Wallets, funds, allowances and the warm-up journeys, through the engine, untimed. On
    the cluster (``client``) the returned ledger is the client's mirror (signatures off) and
    the engine settles through a :class:`ClusterSettler` over it."""
    if client is not None:
        ledger = tb.Ledger(threads=config.threads, verify_signatures=False)
    elif config.ledger_path is None:
        ledger = tb.Ledger(threads=config.threads)
    else:
        ledger = tb.Ledger.open(config.ledger_path, threads=config.threads)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OPERATOR], tb.WalletKind.OPERATOR)
    ids = [c.wallet_id for c in plan.cards]
    publics = [keys.add(c.wallet_id, int(c.scheme), c.secret) for c in plan.cards]
    ledger.register_wallets(ids, tb.WalletKind.PERSONAL, publics)
    settle: Any = ledger.settle
    engine_settler = None
    if client is not None:
        for wallet, kind in (
            (CENTRAL_BANK, tb.WalletKind.CENTRAL_BANK),
            (OPERATOR, tb.WalletKind.OPERATOR),
        ):
            client.register_wallets([wallet], kind, [keys.public_key(wallet)])
        client.register_wallets(ids, tb.WalletKind.PERSONAL, publics)
        settle = ClusterSettler(client, ledger).settle
        engine_settler = ClusterSettler(client, ledger, wait_credits=False)
    t = start - 6 * 3_600_000
    total = RIDER_FUNDS_FEN * len(ids)
    assert settle([tb.issue(keys, CENTRAL_BANK, [(OPERATOR, total)], t)], t).ok
    step = tb.BATCH_TX_COUNT_MAX // 16
    for lo in range(0, len(ids), step):
        payees = ids[lo : lo + step]
        txs, _ = ledger.build_payments(
            keys, [OPERATOR] * len(payees), payees, [RIDER_FUNDS_FEN] * len(payees), t
        )
        assert settle(txs, t).ok
    engine = TransitEngine(
        ledger,
        keys,
        network,
        OPERATOR,
        verify_threads=config.threads or 0,
        settler=engine_settler,
    )
    engine.register_cards(ids)
    statuses = engine.grant_allowances(ids, ALLOWANCE_FEN, t)
    assert all(code == tb.Status.OK for code in statuses)
    for card in plan.cards:
        card.allowance_left_fen = ALLOWANCE_FEN
    # Warm-up entries, in time order, a batch per 2,048.
    for lo in range(0, len(plan.entries), 2_048):
        chunk = plan.entries[lo : lo + 2_048]
        warm = [plan.cards[c].tap(0, st, Direction.IN, ms) for c, st, ms in chunk]
        latest = max(ms for _, _, ms in chunk)
        decided = engine.process(warm, max(latest, ledger.last_timestamp_ms))
        for (c, _, _), tap, decision in zip(chunk, warm, decided, strict=True):
            assert decision.outcome == Outcome.OPEN, decision
            apply_decision(plan.cards[c], tap, decision)
    return ledger, keys, engine


def run_burst(config: BurstConfig, on_progress: Callable[[str], None] | None = None) -> BurstResult:
    """Plan, set up and replay one burst (see the module docstring); reconcile the offline
    gates, check supply and fares. Raises ``InvalidArgument`` for a bad config."""
    say = on_progress or (lambda _text: None)
    network = load_network(config.network)
    config.validate(network)
    setup_started = time.perf_counter()
    say("planning taps")
    # On the cluster the ledger clock is the workers' wall clock (they clamp batch times to
    # it): the window starts now. Embedded, it starts at a fixed morning peak.
    start = START_MS if config.redis_url is None else int(time.time() * 1000)
    plan = _plan(config, network, start)
    say(f"setting up {len(plan.cards):,} riders")
    client = None if config.redis_url is None else Cluster(config.redis_url)
    ledger, _keys, engine = _setup(config, network, plan, start, client)
    supply_before = ledger.supply()
    operator_before = ledger.balance(OPERATOR)
    fares_before = engine.stats.fares_charged_fen
    n = len(plan.arrivals_s)
    gates: dict[int, OfflineGate] = {}
    for g in np.flatnonzero(plan.gate_offline).tolist():
        gates[g] = OfflineGate(g, int(plan.gate_station[g]), network, engine.card_key)
    # Cards sign their taps as they tap: signed ahead here (the card's work, not the engine's).
    online = ~plan.gate_offline[plan.tap_gate]
    taps: list[Tap | None] = [None] * n
    for k in np.flatnonzero(online).tolist():
        card = plan.cards[int(plan.tap_card[k])]
        ms = start + int(plan.arrivals_s[k] * 1000)
        taps[k] = card.tap(
            int(plan.tap_gate[k]),
            int(plan.tap_station[k]),
            Direction(int(plan.tap_direction[k])),
            ms,
        )
    setup_s = time.perf_counter() - setup_started
    # What setup made lives to the end: keep the collector from rescanning it mid-window (a
    # full collection over 50,000 cards' objects is a pause of tens of ms).
    gc.collect()
    gc.freeze()
    holds_start = engine.holds_outstanding
    say(f"replaying {n:,} taps over {config.duration_s:g} s")

    latency = np.full(n, np.nan)
    offline_ms: list[float] = []
    local_refused = 0
    batch_rows: list[tuple[float, int, int, int]] = []  # (t, taps, backlog, holds)
    decisions_all = []
    pending: deque[int] = deque()
    arrivals = plan.arrivals_s
    wait_s = config.wait_ms / 1000
    i = 0
    t0 = time.perf_counter()
    while i < n or pending:
        now = time.perf_counter() - t0
        while i < n and arrivals[i] <= now:
            if online[i]:
                pending.append(i)
            else:
                gate = gates[int(plan.tap_gate[i])]
                started = time.perf_counter()
                local = gate.tap(
                    plan.cards[int(plan.tap_card[i])],
                    Direction(int(plan.tap_direction[i])),
                    start + int(arrivals[i] * 1000),
                )
                done = time.perf_counter()
                offline_ms.append((done - started) * 1000)
                latency[i] = done - t0 - arrivals[i]
                local_refused += not local.opens
            i += 1
        if pending and (
            len(pending) >= config.batch_max or now - arrivals[pending[0]] >= wait_s or i == n
        ):
            take = [pending.popleft() for _ in range(min(config.batch_max, len(pending)))]
            backlog = len(take) + len(pending)
            now_ms = max(start + int(now * 1000), ledger.last_timestamp_ms)
            batch = [taps[k] for k in take]
            decisions = engine.process(batch, now_ms)  # type: ignore[arg-type]
            done = time.perf_counter() - t0
            for k, tap, decision in zip(take, batch, decisions, strict=True):
                latency[k] = done - arrivals[k]
                assert tap is not None
                apply_decision(plan.cards[int(plan.tap_card[k])], tap, decision)
            decisions_all.extend(decisions)
            batch_rows.append((done, len(take), backlog, engine.holds_outstanding))
            continue
        next_times = []
        if i < n:
            next_times.append(arrivals[i])
        if pending:
            next_times.append(arrivals[pending[0]] + wait_s)
        delay = min(next_times) - (time.perf_counter() - t0)
        if delay > 0:
            time.sleep(min(delay, 0.05))
    wall_s = time.perf_counter() - t0
    gc.unfreeze()

    # Reconcile the offline gates, twice: the second must charge nothing.
    say("reconciling offline gates")
    started = time.perf_counter()
    rec_now = max(start + int(wall_s * 1000) + 60_000, ledger.last_timestamp_ms)
    if client is not None:
        # Idle shards apply due deadlines (the stale journeys' maximum fares) only at their
        # next batch: a clock tick to every vshard, then the credits to the operator.
        client.tick(rec_now)
        wait_idle(client.redis, 120.0)
    reconciled = reconcile(engine, list(gates.values()), rec_now)
    reconcile_s = time.perf_counter() - started
    before_again = ledger.balance(OPERATOR)
    again = reconcile(engine, list(gates.values()), rec_now + 1_000)
    again_charged = ledger.balance(OPERATOR) - before_again
    assert all(d.repeat for d in again)
    cluster_ok = None
    if client is not None:
        # Every status the cluster gave matched the mirror's; once the deadlines due by the
        # last batch are applied everywhere (a tick) and the credits imported, the cluster holds
        # what the mirror holds.
        client.tick(ledger.last_timestamp_ms)
        wait_idle(client.redis, 120.0)
        settler = engine.settler
        assert isinstance(settler, ClusterSettler)
        cluster_ok = not settler.mismatches and client.content_digest() == ledger.content_digest()
        client.close()

    supply = ledger.supply()
    ledger.check_invariants()
    all_ids = [CENTRAL_BANK, OPERATOR, *(c.wallet_id for c in plan.cards)]
    balances_total = int(ledger.balances(all_ids).astype(object).sum())
    supply_ok = (
        supply == supply_before
        and supply.issued_fen - supply.redeemed_fen == supply.outstanding_fen == balances_total
    )
    operator_gain = ledger.balance(OPERATOR) - operator_before
    charged = engine.stats.fares_charged_fen - fares_before
    fares_ok = operator_gain == charged + engine.stats.max_fares_charged_fen and again_charged == 0

    ok_lat = latency[online & ~np.isnan(latency)] * 1000
    series = _series(plan, latency, online, batch_rows, config.duration_s, wall_s)
    if config.ledger_path is not None:
        ledger.close()
    gates_total = int(plan.gate_station.size)
    return BurstResult(
        config=asdict(config),
        taps=n,
        online_taps=int(online.sum()),
        offline_taps=int((~online).sum()),
        riders=len(plan.cards),
        gates=gates_total,
        offline_gates=int(plan.gate_offline.sum()),
        wall_s=wall_s,
        setup_s=setup_s,
        taps_per_s=n / wall_s,
        latency_ms_p50=_pct(ok_lat, 50),
        latency_ms_p99=_pct(ok_lat, 99),
        latency_ms_p999=_pct(ok_lat, 99.9),
        latency_ms_max=float(ok_lat.max()) if ok_lat.size else 0.0,
        offline_decision_ms_p99=_pct(np.array(offline_ms), 99),
        batches=len(batch_rows),
        batch_taps_mean=float(np.mean([r[1] for r in batch_rows])) if batch_rows else 0.0,
        backlog_max=max((r[2] for r in batch_rows), default=0),
        holds_outstanding_start=holds_start,
        holds_outstanding_end=engine.holds_outstanding,
        holds_outstanding_max=max((r[3] for r in batch_rows), default=holds_start),
        outcomes={**outcome_counts(decisions_all), "OFFLINE_LOCAL_REFUSED": local_refused},
        reconciled=outcome_counts(reconciled),
        reconcile_s=reconcile_s,
        reconcile_again_charged_fen=again_charged,
        fares_charged_fen=charged,
        max_fares_charged_fen=engine.stats.max_fares_charged_fen,
        operator_gain_fen=operator_gain,
        fares_ok=fares_ok,
        supply_ok=supply_ok,
        supply={
            "issued_fen": supply.issued_fen,
            "redeemed_fen": supply.redeemed_fen,
            "outstanding_fen": supply.outstanding_fen,
            "balances_fen": balances_total,
        },
        series=series,
        cluster_ok=cluster_ok,
    )


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else 0.0


def _series(
    plan: _Plan,
    latency: np.ndarray,
    online: np.ndarray,
    batch_rows: list[tuple[float, int, int, int]],
    duration_s: float,
    wall_s: float,
) -> dict[str, list[float]]:
    """Per 1-second bin (``duration_s`` < 10: per tenth of the window): offered taps/s, online
    latency p50/p99, backlog and holds outstanding at the bin's last batch."""
    width = 1.0 if duration_s >= 10 else duration_s / 10
    bins = max(1, math.ceil(max(duration_s, wall_s) / width))
    which = np.minimum((plan.arrivals_s / width).astype(int), bins - 1)
    rate = np.bincount(which, minlength=bins) / width
    p50, p99 = [], []
    for b in range(bins):
        lat = latency[(which == b) & online] * 1000
        lat = lat[~np.isnan(lat)]
        p50.append(_pct(lat, 50))
        p99.append(_pct(lat, 99))
    backlog = [0.0] * bins
    holds = [0.0] * bins
    for t, _, b_log, h in batch_rows:
        b = min(int(t / width), bins - 1)
        backlog[b] = max(backlog[b], float(b_log))
        holds[b] = float(h)
    for b in range(1, bins):
        if holds[b] == 0:
            holds[b] = holds[b - 1]
    return {
        "t_s": [b * width for b in range(bins)],
        "offered_taps_per_s": rate.tolist(),
        "latency_ms_p50": p50,
        "latency_ms_p99": p99,
        "backlog_max": backlog,
        "holds_outstanding": holds,
    }


def plot(result: BurstResult, path: Path) -> None:
    """Write a PNG: offered rate, latency p50/p99 and backlog/holds over the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.series
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].bar(
        s["t_s"],
        s["offered_taps_per_s"],
        width=s["t_s"][1] - s["t_s"][0] if len(s["t_s"]) > 1 else 1.0,
        align="edge",
        color="#4c78a8",
    )
    axes[0].set_ylabel("offered taps/s")
    axes[0].set_title(
        f"transit burst: {result.taps:,} taps, {result.taps_per_s:,.0f} taps/s; "
        f"p50/p99/p999 {result.latency_ms_p50:.0f}/{result.latency_ms_p99:.0f}/"
        f"{result.latency_ms_p999:.0f} ms"
    )
    axes[1].plot(s["t_s"], s["latency_ms_p50"], label="p50")
    axes[1].plot(s["t_s"], s["latency_ms_p99"], label="p99")
    axes[1].axhline(450, color="red", linestyle=":", label="gate contract 450 ms")
    axes[1].set_ylabel("tap-to-decision ms")
    axes[1].legend(loc="upper right")
    axes[2].plot(s["t_s"], s["backlog_max"], label="backlog (taps waiting)")
    axes[2].set_ylabel("backlog")
    twin = axes[2].twinx()
    twin.plot(s["t_s"], s["holds_outstanding"], color="#e45756", label="holds outstanding")
    twin.set_ylabel("holds outstanding")
    axes[2].set_xlabel("seconds into the window")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
