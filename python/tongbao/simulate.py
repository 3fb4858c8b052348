"""A deterministic retail-payments simulation on an embedded :class:`tongbao.Ledger`.

This is what ``tongbao simulate`` (and ``make demo``) runs. The flow, in phases:

1. **wallets**: one central-bank wallet, operator banks, merchants and personal wallets (a share
   of them with SM2 keys), with keys derived from the seed.
2. **issue**: the central bank issues each operator its reserve.
3. **funding**: each operator pays every one of its customers an opening balance (payments built
   and signed by :meth:`tongbao.Ledger.build_payments`, settled in batches).
4. **payments**: a stream of random payments, mostly persons to merchants, some person to
   person, built in batches with ``skip_insufficient=True`` and settled at advancing simulated
   timestamps. A small share of deliberately bad transactions is mixed in: resubmissions of
   settled transactions (``ALREADY_SETTLED``) and double spends of settled inputs
   (``INPUT_SPENT``).
5. **redemption**: each operator redeems half of its unused reserve.

Then the supply is checked (issued - redeemed = outstanding = sum of all balances, and
:meth:`tongbao.Ledger.check_invariants`). Everything depends only on :class:`SimulationConfig`
(the seed included), never on the thread count: the same config gives the same state digest.

Money is integer fen throughout. Random amounts are drawn from a log-normal distribution and
rounded to whole fen once, when drawn; every sum after that is an exact integer.

>>> format_yuan(123_456_78)
'123,456.78'
>>> config = SimulationConfig(wallets=40, merchants=5, transactions=200, batch_size=64)
>>> result = Simulation(config).run()
>>> result.supply_ok, sum(result.status_totals().values()) == result.submitted
(True, True)
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import tongbao as tb
from tongbao.errors import InvalidArgument, InvariantViolation
from tongbao.types import Scheme, Status, WalletKind

#: Simulated start time: 2025-01-01 00:00 China Standard Time, in Unix ms.
DEFAULT_START_MS = 1_735_660_800_000

#: Wallet id ranges by kind (ids are ``base + index``).
CENTRAL_BANK_ID = 1
OPERATOR_BASE = 1_000
MERCHANT_BASE = 100_000
PERSON_BASE = 10_000_000

#: Names of the simulation phases, in order.
PHASES = ("issue", "funding", "payments", "redemption")

#: Called after each settled batch: (phase, units of work done in this batch).
ProgressCallback = Callable[[str, int], None]


def format_yuan(fen: int) -> str:
    """Format an amount in integer fen as yuan with thousands separators, exactly (no floats).

    >>> format_yuan(5), format_yuan(-1_050), format_yuan(0)
    ('0.05', '-10.50', '0.00')
    """
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{yuan:,}.{cents:02d}"


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation run depends on. Two runs with equal configs settle identical
    batches and end with identical state digests, whatever ``threads`` is.

    Counts: ``wallets`` personal wallets, ``merchants``, ``operators``; ``transactions`` payments
    requested in the payments phase, built ``batch_size`` at a time. ``sm2_share`` of the
    personal wallets use SM2 keys, the rest Ed25519. ``p2p_share`` of the payments go to another
    person instead of a merchant. ``resubmit_share`` and ``double_spend_share`` (of the payments
    per batch) are the deliberately bad transactions mixed into each batch. Amount medians are in
    fen. ``sim_payments_per_second`` paces the simulated clock.
    """

    seed: int = 0
    wallets: int = 20_000
    merchants: int = 500
    operators: int = 4
    transactions: int = 200_000
    batch_size: int = 4096
    threads: int = 0
    sm2_share: float = 0.1
    verify_signatures: bool = True
    p2p_share: float = 0.15
    resubmit_share: float = 0.005
    double_spend_share: float = 0.001
    retail_median_fen: int = 2_800
    retail_sigma: float = 1.0
    retail_min_fen: int = 100
    retail_max_fen: int = 200_000
    p2p_median_fen: int = 10_000
    p2p_sigma: float = 1.0
    p2p_max_fen: int = 500_000
    opening_median_fen: int = 150_000
    opening_sigma: float = 0.8
    opening_min_fen: int = 5_000
    opening_max_fen: int = 5_000_000
    reserve_margin_fen: int = 10_000_000
    start_ms: int = DEFAULT_START_MS
    sim_payments_per_second: int = 1_000
    #: A directory for a durable ledger (write-ahead log, `tongbao verify-log` can audit it);
    #: None runs in memory. The directory must be new or empty.
    ledger_path: str | None = None

    def validate(self) -> None:
        """Check every field; raise :class:`tongbao.InvalidArgument` naming the first bad one."""
        if self.ledger_path is not None:
            path = Path(self.ledger_path)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise InvalidArgument(
                    f"ledger_path: {path} exists and is not an empty directory; "
                    "a simulation starts a new ledger"
                )
        minimums = {
            "seed": 0,
            "wallets": 1,
            "merchants": 1,
            "operators": 1,
            "transactions": 0,
            "batch_size": 1,
            "threads": 0,
            "retail_min_fen": 1,
            "retail_median_fen": 1,
            "retail_max_fen": 1,
            "p2p_median_fen": 1,
            "p2p_max_fen": 1,
            "opening_min_fen": 1,
            "opening_median_fen": 1,
            "opening_max_fen": 1,
            "reserve_margin_fen": 1,
            "start_ms": 0,
            "sim_payments_per_second": 1,
        }
        for name, low in minimums.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgument(f"{name} must be an integer >= {low}, got {value!r}")
        if self.batch_size > tb.BATCH_TX_COUNT_MAX:
            raise InvalidArgument(
                f"batch_size must be at most {tb.BATCH_TX_COUNT_MAX:,}, got {self.batch_size}"
            )
        for name in ("sm2_share", "p2p_share", "resubmit_share", "double_spend_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise InvalidArgument(f"{name} must be between 0 and 1, got {share!r}")
        if self.resubmit_share + self.double_spend_share >= 0.5:
            raise InvalidArgument("resubmit_share + double_spend_share must be below 0.5")
        for name in ("retail_sigma", "p2p_sigma", "opening_sigma"):
            if not 0.0 <= getattr(self, name) <= 5.0:
                raise InvalidArgument(f"{name} must be between 0 and 5")
        for lo, med, hi in (
            ("retail_min_fen", "retail_median_fen", "retail_max_fen"),
            ("retail_min_fen", "p2p_median_fen", "p2p_max_fen"),
            ("opening_min_fen", "opening_median_fen", "opening_max_fen"),
        ):
            if not getattr(self, lo) <= getattr(self, med) <= getattr(self, hi):
                raise InvalidArgument(f"need {lo} <= {med} <= {hi}")


@dataclass
class PhaseStats:
    """What one phase submitted and how long it took (client side vs engine).

    ``paid_fen`` is the value of the payments that settled (the amounts paid), counted by the
    simulator; ``value_moved_fen`` is the engine's figure from the receipts (value paid by
    settled transfers to wallets other than the payer, change excluded): the two must agree.
    """

    name: str
    batches: int = 0
    submitted: int = 0
    status_counts: Counter[Status] = field(default_factory=Counter)
    value_moved_fen: int = 0
    paid_fen: int = 0
    build_s: float = 0.0
    settle_s: float = 0.0
    settle_latencies_s: list[float] = field(default_factory=list)

    @property
    def engine_tx_per_s(self) -> float:
        """Transactions settled per second of time spent inside ``Ledger.settle``."""
        return self.submitted / self.settle_s if self.settle_s > 0 else 0.0

    def latency_ms(self, percentile: float) -> float:
        """Settle latency of one batch at ``percentile`` (0-100), in milliseconds."""
        if not self.settle_latencies_s:
            return 0.0
        return float(np.percentile(self.settle_latencies_s, percentile)) * 1000.0


@dataclass
class SimulationResult:
    """The outcome of :meth:`Simulation.run`; :meth:`to_dict` is the JSON summary."""

    config: SimulationConfig
    wallets: dict[str, dict[str, int]]
    phases: dict[str, PhaseStats]
    payments_requested: int
    payments_skipped: int
    resubmissions: int
    double_spends: int
    issued_fen: int
    redeemed_fen: int
    outstanding_fen: int
    balances_fen: int
    expected_issued_fen: int
    expected_redeemed_fen: int
    invariant_error: str | None
    state_digest: bytes
    receipt_hash: bytes
    threads: int
    start_ms: int
    end_ms: int
    setup_s: float
    wall_s: float

    @property
    def submitted(self) -> int:
        """Transactions submitted to ``Ledger.settle``, over all phases."""
        return sum(p.submitted for p in self.phases.values())

    @property
    def supply_ok(self) -> bool:
        """issued - redeemed = outstanding = sum of balances, the totals are what the simulation
        issued and redeemed, and the ledger's invariant check passed."""
        return (
            self.invariant_error is None
            and self.issued_fen - self.redeemed_fen == self.outstanding_fen == self.balances_fen
            and self.issued_fen == self.expected_issued_fen
            and self.redeemed_fen == self.expected_redeemed_fen
        )

    def status_totals(self) -> Counter[Status]:
        """Transactions per status, over all phases."""
        total: Counter[Status] = Counter()
        for p in self.phases.values():
            total.update(p.status_counts)
        return total

    @property
    def value_moved_fen(self) -> int:
        """Output sums of all settled transfers (receipts' figure, change included), in fen."""
        return sum(p.value_moved_fen for p in self.phases.values())

    @property
    def paid_fen(self) -> int:
        """Value of all settled payments (funding and the payment stream), in fen."""
        return sum(p.paid_fen for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready summary (plain ints, floats and strings; money in integer fen).
        Status counts name only the statuses that occurred."""
        pay = self.phases["payments"]
        return {
            "tongbao_version": tb.__version__,
            "config": asdict(self.config),
            "wallets": self.wallets,
            "transactions": {
                "submitted": self.submitted,
                "payments_requested": self.payments_requested,
                "payments_skipped_insufficient": self.payments_skipped,
                "resubmissions": self.resubmissions,
                "double_spends": self.double_spends,
                "by_phase": {
                    name: {
                        "batches": p.batches,
                        "submitted": p.submitted,
                        "statuses": {s.name: n for s, n in sorted(p.status_counts.items())},
                    }
                    for name, p in self.phases.items()
                },
            },
            "statuses": {s.name: n for s, n in sorted(self.status_totals().items())},
            "value_paid_fen": self.paid_fen,
            "value_paid_yuan": format_yuan(self.paid_fen),
            "payments_paid_fen": self.phases["payments"].paid_fen,
            "value_moved_fen": self.value_moved_fen,
            "value_moved_yuan": format_yuan(self.value_moved_fen),
            "supply": {
                "issued_fen": self.issued_fen,
                "redeemed_fen": self.redeemed_fen,
                "outstanding_fen": self.outstanding_fen,
                "balances_fen": self.balances_fen,
                "invariant_error": self.invariant_error,
                "ok": self.supply_ok,
            },
            "state_digest": self.state_digest.hex(),
            "receipt_hash": self.receipt_hash.hex(),
            "timing": {
                "threads": self.threads,
                "wall_s": self.wall_s,
                "setup_s": self.setup_s,
                "build_s": sum(p.build_s for p in self.phases.values()),
                "settle_s": sum(p.settle_s for p in self.phases.values()),
                "payments_build_s": pay.build_s,
                "payments_settle_s": pay.settle_s,
                "engine_tx_per_s": pay.engine_tx_per_s,
                "client_tx_per_s": pay.submitted / pay.build_s if pay.build_s > 0 else 0.0,
                "settle_p50_ms": pay.latency_ms(50),
                "settle_p99_ms": pay.latency_ms(99),
            },
            "simulated_time": {
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "seconds": (self.end_ms - self.start_ms) // 1000,
            },
        }


class Simulation:
    """One run of the retail-payments simulation described by ``config``.

    ``on_progress(phase, done)`` is called after each settled batch of the funding and payments
    phases with the number of payments (requested) the batch covered; see :meth:`work_units`.
    """

    def __init__(self, config: SimulationConfig, on_progress: ProgressCallback | None = None):
        config.validate()
        self.config = config
        self._on_progress = on_progress
        self._rng = np.random.default_rng(config.seed)
        if config.ledger_path is None:
            self.ledger = tb.Ledger(
                threads=config.threads, verify_signatures=config.verify_signatures
            )
        else:
            self.ledger = tb.Ledger.open(
                config.ledger_path,
                threads=config.threads,
                verify_signatures=config.verify_signatures,
            )
        self.keyring = tb.Keyring()
        self.phases = {name: PhaseStats(name) for name in PHASES}
        self.now_ms = config.start_ms
        self._issued_fen = 0
        self._redeemed_fen = 0
        self._skipped = 0
        self._resubmissions = 0
        self._double_spends = 0
        # Transactions of the last batch that settled OK: the pool bad transactions copy from.
        self._recent_ok: list[bytes] = []
        self._persons = np.arange(PERSON_BASE, PERSON_BASE + config.wallets, dtype=np.int64)
        self._merchants = np.arange(MERCHANT_BASE, MERCHANT_BASE + config.merchants, dtype=np.int64)
        self._operators = np.arange(OPERATOR_BASE, OPERATOR_BASE + config.operators, dtype=np.int64)
        self._sm2_persons = 0
        # Drawn in the issue phase: each person's opening balance and operator bank.
        self._opening: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self._operator_of: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    def work_units(self) -> int:
        """Total progress units a run reports: one per funded wallet plus one per requested
        payment."""
        return self.config.wallets + self.config.transactions

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        """Run every phase, check the supply, and return the result. Once per instance."""
        if self.ledger.batch_seq or self.ledger.wallet_count:
            raise RuntimeError("a Simulation runs once; make a new one")
        started = time.perf_counter()
        self._open_wallets()
        setup_s = time.perf_counter() - started
        self._issue()
        self._fund()
        self._pay()
        self._redeem()
        return self._finish(started, setup_s)

    def _open_wallets(self) -> None:
        cfg = self.config
        seed = f"tongbao-sim/{cfg.seed}".encode()
        n_sm2 = round(cfg.wallets * cfg.sm2_share)
        sm2_index = np.sort(self._rng.choice(cfg.wallets, size=n_sm2, replace=False))
        is_sm2 = np.zeros(cfg.wallets, dtype=bool)
        is_sm2[sm2_index] = True
        self._sm2_persons = n_sm2
        ledger, keys = self.ledger, self.keyring
        ledger.open_wallets(keys, [CENTRAL_BANK_ID], WalletKind.CENTRAL_BANK, seed=seed)
        ledger.open_wallets(keys, self._operators.tolist(), WalletKind.OPERATOR, seed=seed)
        ledger.open_wallets(keys, self._merchants.tolist(), WalletKind.MERCHANT, seed=seed)
        ledger.open_wallets(
            keys, self._persons[~is_sm2].tolist(), WalletKind.PERSONAL, Scheme.ED25519, seed
        )
        if n_sm2:
            ledger.open_wallets(
                keys, self._persons[is_sm2].tolist(), WalletKind.PERSONAL, Scheme.SM2, seed
            )

    def _issue(self) -> None:
        cfg = self.config
        self._opening = self._lognormal_fen(
            cfg.wallets, cfg.opening_median_fen, cfg.opening_sigma,
            cfg.opening_min_fen, cfg.opening_max_fen, round_to=100,
        )  # fmt: skip
        self._operator_of = self._operators[self._rng.integers(0, cfg.operators, cfg.wallets)]
        txs = []
        for op in self._operators.tolist():
            need = int(self._opening[self._operator_of == op].sum())
            reserve = need + max(cfg.reserve_margin_fen, need // 10)
            self._issued_fen += reserve
            txs.append(tb.issue(self.keyring, CENTRAL_BANK_ID, [(op, reserve)], self.now_ms))
        self._settle("issue", txs, build_s=0.0)

    def _fund(self) -> None:
        cfg = self.config
        order = np.argsort(self._operator_of, kind="stable")
        for start in range(0, cfg.wallets, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            self._tick(1_000)
            t0 = time.perf_counter()
            txs, skipped = self.ledger.build_payments(
                self.keyring,
                self._operator_of[idx].tolist(),
                self._persons[idx].tolist(),
                self._opening[idx].tolist(),
                self.now_ms,
            )
            assert not skipped
            settlement = self._settle("funding", txs, time.perf_counter() - t0)
            assert settlement is not None
            ok = settlement.statuses == Status.OK
            self.phases["funding"].paid_fen += int(self._opening[idx][ok].sum())
            self._progress("funding", len(idx))

    def _pay(self) -> None:
        cfg = self.config
        remaining = cfg.transactions
        # Some people pay more often than others; a few merchants take most of the trade.
        activity = self._rng.gamma(2.0, 1.0, cfg.wallets)
        person_p = activity / activity.sum()
        rank = self._rng.permutation(cfg.merchants) + 1
        popularity = 1.0 / rank**0.8
        merchant_p = popularity / popularity.sum()
        while remaining > 0:
            n = min(cfg.batch_size, remaining)
            payers, payees, amounts = self._draw_payments(n, person_p, merchant_p)
            self._tick(max(1, n * 1_000 // cfg.sim_payments_per_second))
            self.now_ms += int(self._rng.integers(0, 500))
            t0 = time.perf_counter()
            txs, skipped = self.ledger.build_payments(
                self.keyring,
                payers.tolist(),
                payees.tolist(),
                amounts.tolist(),
                self.now_ms,
                skip_insufficient=True,
            )
            self._skipped += len(skipped)
            batch, good_at = self._mix_in_bad(txs, n)
            settlement = self._settle("payments", batch, time.perf_counter() - t0)
            if settlement is not None:
                built_amounts = np.delete(amounts, skipped)
                ok = settlement.statuses[good_at] == Status.OK
                self.phases["payments"].paid_fen += int(built_amounts[ok].sum())
            self._progress("payments", n)
            remaining -= n

    def _redeem(self) -> None:
        self._tick(60_000)
        t0 = time.perf_counter()
        txs = []
        for op in self._operators.tolist():
            tokens = self.ledger.unspent(op)[: tb.INPUTS_MAX]
            total = sum(value for _, value in tokens)
            destroy = total // 2
            if destroy == 0:
                continue
            change = [(op, total - destroy)] if total > destroy else []
            txs.append(tb.redeem(self.keyring, [t for t, _ in tokens], change, [op], self.now_ms))
            self._redeemed_fen += destroy
        self._settle("redemption", txs, time.perf_counter() - t0)

    def _finish(self, started: float, setup_s: float) -> SimulationResult:
        cfg = self.config
        supply = self.ledger.supply()
        all_ids = [CENTRAL_BANK_ID, *self._operators.tolist(), *self._merchants.tolist()]
        all_ids += self._persons.tolist()
        balances_fen = sum(self.ledger.balances(all_ids).tolist())
        invariant_error = None
        try:
            self.ledger.check_invariants()
        except InvariantViolation as exc:
            invariant_error = str(exc)
        ed = cfg.wallets - self._sm2_persons
        wallets = {
            "central_bank": {"ed25519": 1, "sm2": 0},
            "operator": {"ed25519": cfg.operators, "sm2": 0},
            "merchant": {"ed25519": cfg.merchants, "sm2": 0},
            "personal": {"ed25519": ed, "sm2": self._sm2_persons},
        }
        return SimulationResult(
            config=cfg,
            wallets=wallets,
            phases=self.phases,
            payments_requested=cfg.transactions,
            payments_skipped=self._skipped,
            resubmissions=self._resubmissions,
            double_spends=self._double_spends,
            issued_fen=supply.issued_fen,
            redeemed_fen=supply.redeemed_fen,
            outstanding_fen=supply.outstanding_fen,
            balances_fen=balances_fen,
            expected_issued_fen=self._issued_fen,
            expected_redeemed_fen=self._redeemed_fen,
            invariant_error=invariant_error,
            state_digest=self.ledger.state_digest(),
            receipt_hash=self.ledger.last_receipt_hash,
            threads=self.ledger.threads,
            start_ms=cfg.start_ms,
            end_ms=self.now_ms,
            setup_s=setup_s,
            wall_s=time.perf_counter() - started,
        )

    # -- helpers -----------------------------------------------------------------------------

    def _tick(self, ms: int) -> None:
        self.now_ms += ms

    def _progress(self, phase: str, done: int) -> None:
        if self._on_progress is not None:
            self._on_progress(phase, done)

    def _lognormal_fen(
        self, n: int, median_fen: int, sigma: float, low: int, high: int, round_to: int = 1
    ) -> npt.NDArray[np.int64]:
        """``n`` amounts in fen, log-normal around ``median_fen``, rounded once to a multiple of
        ``round_to`` fen and clipped to ``[low, high]``: integers from here on."""
        raw = self._rng.lognormal(math.log(median_fen), sigma, n) / round_to
        fen = np.rint(raw).astype(np.int64) * round_to
        return np.clip(fen, low, high)

    def _draw_payments(
        self, n: int, person_p: npt.NDArray[np.float64], merchant_p: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        cfg = self.config
        rng = self._rng
        payer_idx = rng.choice(cfg.wallets, size=n, p=person_p)
        payees = self._merchants[rng.choice(cfg.merchants, size=n, p=merchant_p)]
        amounts = self._lognormal_fen(
            n, cfg.retail_median_fen, cfg.retail_sigma, cfg.retail_min_fen, cfg.retail_max_fen
        )
        if cfg.wallets >= 2 and cfg.p2p_share > 0:
            p2p = rng.random(n) < cfg.p2p_share
            k = int(p2p.sum())
            # Another person: shift the payer's index by 1..wallets-1, so never the payer.
            other = (payer_idx[p2p] + rng.integers(1, cfg.wallets, k)) % cfg.wallets
            payees[p2p] = self._persons[other]
            amounts[p2p] = self._lognormal_fen(
                k, cfg.p2p_median_fen, cfg.p2p_sigma, cfg.retail_min_fen, cfg.p2p_max_fen,
                round_to=100,
            )  # fmt: skip
        return self._persons[payer_idx], payees, amounts

    def _count(self, expected: float) -> int:
        """Stochastic rounding: ``floor(expected)`` plus one with probability of the fraction."""
        whole = math.floor(expected)
        return whole + int(self._rng.random() < expected - whole)

    def _mix_in_bad(self, txs: list[bytes], n: int) -> tuple[list[bytes], npt.NDArray[np.intp]]:
        """Interleave resubmissions and double spends of the previous batch's settled
        transactions into ``txs`` at random positions, keeping ``txs`` in order (payments of one
        payer chain and must settle in order). Returns the batch and the positions of ``txs``
        in it."""
        cfg = self.config
        pool = self._recent_ok
        if not pool:
            return txs, np.arange(len(txs))
        n_resubmit = min(self._count(n * cfg.resubmit_share), len(pool))
        n_double = min(self._count(n * cfg.double_spend_share), len(pool))
        bad = [pool[i] for i in self._rng.choice(len(pool), n_resubmit, replace=False)]
        for i in self._rng.choice(len(pool), n_double, replace=False):
            bad.append(self._double_spend(pool[int(i)]))
        self._resubmissions += n_resubmit
        self._double_spends += n_double
        if not bad:
            return txs, np.arange(len(txs))
        total = len(txs) + len(bad)
        is_bad = np.zeros(total, dtype=bool)
        is_bad[self._rng.choice(total, len(bad), replace=False)] = True
        good_it, bad_it = iter(txs), iter(bad)
        batch = [next(bad_it) if b else next(good_it) for b in is_bad.tolist()]
        return batch, np.flatnonzero(~is_bad)

    def _double_spend(self, tx: bytes) -> bytes:
        """A new transfer, signed by the same payer, spending the inputs of ``tx`` (settled
        already) to a merchant instead: the ledger must answer ``INPUT_SPENT``."""
        doc = tb.decode(tx)
        total = sum(amount for _, amount in doc["outputs"])
        signer = doc["signatures"][0][0]
        thief_payee = int(self._merchants[int(self._rng.integers(0, len(self._merchants)))])
        return tb.transfer(
            self.keyring, doc["inputs"], [(thief_payee, total)], [signer], self.now_ms
        )

    def _settle(self, phase: str, txs: Sequence[bytes], build_s: float) -> tb.Settlement | None:
        """Settle ``txs`` as one batch at the simulated now and record it under ``phase``;
        an empty list is not submitted (None)."""
        stats = self.phases[phase]
        stats.build_s += build_s
        if not txs:
            return None
        t0 = time.perf_counter()
        settlement = self.ledger.settle(list(txs), self.now_ms)
        elapsed = time.perf_counter() - t0
        stats.settle_s += elapsed
        stats.settle_latencies_s.append(elapsed)
        stats.batches += 1
        stats.submitted += len(txs)
        stats.status_counts.update({s: n for s, n in settlement.counts().items() if n})
        stats.value_moved_fen += settlement.receipt.value_moved_fen
        ok = np.flatnonzero(settlement.statuses == Status.OK).tolist()
        self._recent_ok = [txs[i] for i in ok]
        return settlement


def run(config: SimulationConfig, on_progress: ProgressCallback | None = None) -> SimulationResult:
    """Run one simulation (see :class:`Simulation`)."""
    return Simulation(config, on_progress).run()


# -- the summary, for people ---------------------------------------------------------------


def summary_tables(result: SimulationResult) -> list[Table]:
    """The run's summary as rich tables: wallets, transactions by status, money and supply,
    performance and state."""
    d = result.to_dict()
    timing = d["timing"]

    wallets = Table(title="Wallets", title_justify="left")
    wallets.add_column("kind")
    for col in ("Ed25519", "SM2", "total"):
        wallets.add_column(col, justify="right")
    for kind, by_scheme in result.wallets.items():
        ed, sm2 = by_scheme["ed25519"], by_scheme["sm2"]
        wallets.add_row(kind.replace("_", " "), f"{ed:,}", f"{sm2:,}", f"{ed + sm2:,}")
    n_ed = sum(w["ed25519"] for w in result.wallets.values())
    n_sm2 = sum(w["sm2"] for w in result.wallets.values())
    wallets.add_row("all", f"{n_ed:,}", f"{n_sm2:,}", f"{n_ed + n_sm2:,}", style="bold")

    statuses = Table(title="Transactions by status", title_justify="left")
    statuses.add_column("status")
    for name in PHASES:
        statuses.add_column(name, justify="right")
    statuses.add_column("total", justify="right")
    totals = result.status_totals()
    for status in sorted(totals):
        style = "green" if status == Status.OK else "yellow"
        cells = [f"{result.phases[p].status_counts.get(status, 0):,}" for p in PHASES]
        statuses.add_row(status.name, *cells, f"{totals[status]:,}", style=style)
    statuses.add_row(
        "submitted",
        *[f"{result.phases[p].submitted:,}" for p in PHASES],
        f"{result.submitted:,}",
        style="bold",
    )
    statuses.caption = (
        f"{result.payments_requested:,} payments requested, {result.payments_skipped:,} skipped "
        f"(payer short of funds, not submitted); mixed in: {result.resubmissions:,} "
        f"resubmissions, {result.double_spends:,} double spends"
    )

    money = Table(title="Money", title_justify="left")
    money.add_column("")
    money.add_column("yuan", justify="right")
    money.add_row("payments settled (value paid)", format_yuan(result.phases["payments"].paid_fen))
    money.add_row("opening balances funded", format_yuan(result.phases["funding"].paid_fen))
    money.add_row("moved by transfers (engine receipts)", format_yuan(result.value_moved_fen))
    money.add_row("issued", format_yuan(result.issued_fen))
    money.add_row("redeemed", format_yuan(result.redeemed_fen))
    money.add_row("outstanding", format_yuan(result.outstanding_fen))
    money.add_row("sum of all balances", format_yuan(result.balances_fen))
    if result.supply_ok:
        money.add_row("supply check", "[bold green]OK[/]")
        money.caption = "issued - redeemed = outstanding = sum of balances; invariants hold"
    else:
        money.add_row("supply check", "[bold red]FAILED[/]")
        money.caption = escape(result.invariant_error or "the totals disagree")

    perf = Table(title="Performance", title_justify="left")
    perf.add_column("")
    perf.add_column("value", justify="right")
    pay = result.phases["payments"]
    perf.add_row("threads", str(result.threads))
    perf.add_row("payment batches", f"{pay.batches:,} (batch size {result.config.batch_size:,})")
    perf.add_row(
        "client build + sign", f"{pay.build_s:.2f} s ({timing['client_tx_per_s']:,.0f} tx/s)"
    )
    perf.add_row("engine settle", f"{pay.settle_s:.2f} s")
    perf.add_row("engine throughput", f"[bold]{timing['engine_tx_per_s']:,.0f} tx/s[/]")
    perf.add_row(
        "settle latency per batch",
        f"p50 {timing['settle_p50_ms']:.1f} ms, p99 {timing['settle_p99_ms']:.1f} ms",
    )
    perf.add_row("keys + registration", f"{result.setup_s:.2f} s")
    perf.add_row("wall time", f"{result.wall_s:.2f} s")
    perf.add_row("simulated time", f"{d['simulated_time']['seconds']:,} s")
    perf.add_row("signatures", "verified" if result.config.verify_signatures else "NOT verified")
    perf.add_row("state digest", result.state_digest.hex()[:16])
    perf.add_row("receipt chain head", result.receipt_hash.hex()[:16])
    return [wallets, statuses, money, perf]


def render_summary(result: SimulationResult, console: Console) -> None:
    """Print :func:`summary_tables` to ``console``."""
    for table in summary_tables(result):
        console.print(table)
