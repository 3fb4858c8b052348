"""The pilot simulator: a city's digital-cash pilot, from a preset, through the engine.

This is what ``tongbao simulate`` (and ``make demo``) runs. A preset
(:mod:`tongbao.presets`, ``docs/presets.md``) gives the pilot's figures and its scenario mix;
``scale`` shrinks it. The run, deterministic from ``seed``:

1. **plan**: every wallet's attributes (operator bank, class, key scheme, category code,
   region) and every payment (scenario, payer, payee, amount; payslips of salary runs) are drawn
   up front, so the counts and the amount per scenario are exactly the scaled preset figures.
   Payments that a payer's class limits would refuse (per payment, daily, annual, balance cap)
   are moved to class-1 payers, so every planned payment can settle.
2. **wallets**: the central bank and the operator banks; the operators open personal wallets
   (classes 1-4, a share with SM2 keys), corporate wallets and merchants. The ledger gets the
   default class limits (``tongbao.load_limits()``).
3. **issue**: the central bank issues each operator what its customers will exchange, plus a
   reserve.
4. **exchange**: each operator pays every customer (personal and corporate) its deposit
   exchange: what the plan has it spend, plus pocket money.
5. **payments**: the scenario mix in time order over the preset's window, in batches; each
   scenario uses the engine feature it needs (merchant payments, bills and taxes with a
   reference per payment, person-to-person transfers, salary runs as multi-output transfers
   from corporate wallets, transit fares as plain payments for now). A small share of
   deliberately bad transactions (resubmissions, double spends) is mixed in and counted apart.
6. **redemption**: each operator redeems half of its unused reserve.

Then the supply is checked (issued - redeemed = outstanding = sum of all balances, and
:meth:`tongbao.Ledger.check_invariants`), and each scenario's settled count and amount is
compared with the plan. Everything depends only on :class:`SimulationConfig`, never on the
thread count: the same config gives the same state digest. Money is integer fen throughout;
random amounts are rounded to fen once, when drawn.

Two seams are kept for work happening elsewhere: :meth:`Simulation._settle` is the only place
that submits a batch (a distributed settler plugs in there), and :func:`pay_salaries` is the
only place that builds salary payouts (the payroll module plugs in there).

>>> format_yuan(123_456_78)
'123,456.78'
>>> config = SimulationConfig(preset="small-city", scale=0.02, batch_size=256)
>>> result = Simulation(config).run()
>>> result.supply_ok, result.figures_match
(True, True)
>>> result.payments_settled == result.figures.transactions == 800
True
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

import tongbao as tb
from tongbao import shard
from tongbao.cluster import Cluster, wait_idle
from tongbao.errors import InvalidArgument, InvariantViolation
from tongbao.presets import ENGINE_FEATURES, Preset, ScaledFigures, load_preset, scale_figures
from tongbao.simulate_cluster import IDLE_TIMEOUT_S, ClusterSettler
from tongbao.types import Scheme, Status, WalletKind

#: Wallet id ranges by kind (ids are ``base + index``).
CENTRAL_BANK_ID = 1
OPERATOR_BASE = 1_000
MERCHANT_BASE = 100_000
CORPORATE_BASE = 1_000_000
PERSON_BASE = 100_000_000

#: Names of the phases that submit transactions, in order.
PHASES = ("issue", "exchange", "payments", "redemption")

#: Progress phases (units): wallets opened, customers funded, payments planned.
PROGRESS_PHASES = ("wallets", "exchange", "payments")

#: Wallets registered per call while opening (so progress moves).
OPEN_CHUNK = 65_536

#: Reserve each operator keeps above what its customers exchange: the larger of this and 10%.
RESERVE_MARGIN_FEN = 10_000_000

#: Smallest pocket money a person gets on top of planned spending (so planned outflow must
#: stay this far under a class's balance cap).
POCKET_MIN_FEN = 100

#: Corporate pocket money is this many times a person's.
CORPORATE_POCKET_FACTOR = 20

#: Zipf exponent of payee popularity within a scenario's pool (a few take most of the trade).
POPULARITY_EXPONENT = 0.8

#: Milliseconds in a day; Asia/Shanghai is UTC+8 all year (no daylight saving).
DAY_MS = 86_400_000
SHANGHAI_OFFSET_MS = 8 * 3_600_000

#: A cap of None (no cap), as an integer larger than any amount.
NO_CAP_FEN = 2**62

#: Called after each unit of work: (progress phase, units done).
ProgressCallback = Callable[[str, int], None]


def format_yuan(fen: int) -> str:
    """Format an amount in integer fen as yuan with thousands separators, exactly (no floats).

    >>> format_yuan(5), format_yuan(-1_050), format_yuan(0)
    ('0.05', '-10.50', '0.00')
    """
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(int(fen)), 100)
    return f"{sign}{yuan:,}.{cents:02d}"


class Settler(Protocol):
    """What settles a batch: an embedded :class:`tongbao.Ledger` today; a cluster client can
    stand in (see :meth:`Simulation._settle`)."""

    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> tb.Settlement: ...


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a run depends on. Two runs with equal configs settle identical batches and end
    with identical state digests, whatever ``threads`` is.

    ``preset``: a shipped preset's name or a TOML file's path; ``scale``: its figures times this
    (0 < scale <= 1, rounded to integers); ``batch_size``: payments per settled batch;
    ``threads``: engine and signing threads (0: one per core); ``ledger_path``: a new or empty
    directory for a durable ledger (auditable with ``tongbao verify-log``), None for in memory;
    ``redis_url``: settle on a cluster (:mod:`tongbao.simulate_cluster`) instead.
    """

    preset: str = "chongqing-2022"
    scale: float = 1.0
    seed: int = 0
    batch_size: int = 4096
    threads: int = 0
    verify_signatures: bool = True
    ledger_path: str | None = None
    #: Settle on the cluster behind this Redis (its workers running) instead of embedded.
    redis_url: str | None = None

    def validate(self) -> None:
        """Check every field; raise :class:`tongbao.InvalidArgument` naming the first bad one."""
        if self.redis_url is not None and self.ledger_path is not None:
            raise InvalidArgument(
                "ledger_path: a cluster run keeps its ledgers with the workers; give "
                "redis_url or ledger_path, not both"
            )
        if self.ledger_path is not None:
            path = Path(self.ledger_path)
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise InvalidArgument(
                    f"ledger_path: {path} exists and is not an empty directory; "
                    "a simulation starts a new ledger"
                )
        for name, low in (("seed", 0), ("batch_size", 1), ("threads", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidArgument(f"{name} must be an integer >= {low}, got {value!r}")
        if self.batch_size > tb.BATCH_TX_COUNT_MAX // 2:
            raise InvalidArgument(
                f"batch_size must be at most {tb.BATCH_TX_COUNT_MAX // 2:,}, got {self.batch_size}"
            )
        if not isinstance(self.scale, int | float) or not 0 < self.scale <= 1:
            raise InvalidArgument(f"scale must be above 0 and at most 1, got {self.scale!r}")


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
    swept_fen: int = 0
    paid_fen: int = 0
    build_s: float = 0.0
    settle_s: float = 0.0
    settle_latencies_s: list[float] = field(default_factory=list)

    @property
    def engine_tx_per_s(self) -> float:
        """Transactions settled per second of time spent inside ``settle``."""
        return self.submitted / self.settle_s if self.settle_s > 0 else 0.0

    def latency_ms(self, percentile: float) -> float:
        """Settle latency of one batch at ``percentile`` (0-100), in milliseconds."""
        if not self.settle_latencies_s:
            return 0.0
        return float(np.percentile(self.settle_latencies_s, percentile)) * 1000.0


@dataclass
class ScenarioStats:
    """One scenario: what the plan asked for and what settled. ``payslips`` counts the outputs
    of salary runs (0 for other scenarios)."""

    name: str
    title: str
    feature: str
    planned_transactions: int
    planned_amount_fen: int
    payslips: int = 0
    settled_transactions: int = 0
    settled_amount_fen: int = 0
    failed: int = 0

    @property
    def matches(self) -> bool:
        return (
            self.failed == 0
            and self.settled_transactions == self.planned_transactions
            and self.settled_amount_fen == self.planned_amount_fen
        )


@dataclass(frozen=True)
class BatchRecord:
    """One settled batch: its phase, size, build and settle seconds, and when it ended
    (seconds since the run started)."""

    phase: str
    tx_count: int
    build_s: float
    settle_s: float
    end_s: float


@dataclass
class SimulationResult:
    """The outcome of :meth:`Simulation.run`; :meth:`to_dict` is the JSON report."""

    config: SimulationConfig
    preset: Preset
    figures: ScaledFigures
    wallets: dict[str, dict[str, int]]
    merchants_by_category: list[dict[str, Any]]
    merchants_by_region: list[dict[str, Any]]
    corporate_by_category: list[dict[str, Any]]
    scenarios: list[ScenarioStats]
    phases: dict[str, PhaseStats]
    batches: list[BatchRecord]
    operators: list[dict[str, Any]]
    wallet_openings: int
    payments_reassigned: int
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
    #: :meth:`tongbao.Ledger.content_digest`: wallets, tokens and supply, independent of
    #: batching and sharding (the state digest includes the receipt chain).
    content_digest: bytes = b""
    #: On a cluster: vshards, waves, status mismatches against the client's mirror, and the
    #: cluster's combined content digest (must equal ``content_digest``).
    cluster: dict[str, Any] | None = None

    @property
    def submitted(self) -> int:
        """Transactions submitted to the engine, over all phases."""
        return sum(p.submitted for p in self.phases.values())

    @property
    def payments_settled(self) -> int:
        """Pilot payments that settled (the figure the preset's count is compared with)."""
        return sum(s.settled_transactions for s in self.scenarios)

    @property
    def payments_amount_fen(self) -> int:
        """Value of the pilot payments that settled, in fen."""
        return sum(s.settled_amount_fen for s in self.scenarios)

    @property
    def figures_match(self) -> bool:
        """Every scenario settled exactly its planned count and amount, so the totals are the
        scaled preset figures."""
        return (
            all(s.matches for s in self.scenarios)
            and self.payments_settled == self.figures.transactions
            and self.payments_amount_fen == self.figures.amount_fen
        )

    @property
    def supply_ok(self) -> bool:
        """issued - redeemed = outstanding = sum of balances, the totals are what the simulation
        issued and redeemed, and the ledger's invariant check passed."""
        return (
            self.invariant_error is None
            and self.issued_fen - self.redeemed_fen == self.outstanding_fen == self.balances_fen
            and self.issued_fen == self.expected_issued_fen
            and self.redeemed_fen == self.expected_redeemed_fen
            and (self.cluster is None or self.cluster["consistent"])
        )

    def status_totals(self) -> Counter[Status]:
        """Transactions per status, over all phases."""
        total: Counter[Status] = Counter()
        for p in self.phases.values():
            total.update(p.status_counts)
        return total

    @property
    def value_moved_fen(self) -> int:
        """Value paid by all settled transfers (receipts' figure, change excluded), in fen."""
        return sum(p.value_moved_fen for p in self.phases.values())

    @property
    def swept_fen(self) -> int:
        """Value swept over balance caps to operators' wallets (receipts' figure), in fen."""
        return sum(p.swept_fen for p in self.phases.values())

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report (plain ints, floats and strings; money in integer fen)."""
        pay = self.phases["payments"]
        fig = self.figures
        return {
            "tongbao_version": tb.__version__,
            "config": asdict(self.config),
            "preset": {
                "name": self.preset.name,
                "title": self.preset.title,
                "source": self.preset.source,
                "scale": fig.scale,
                "figures": {
                    "personal_wallets": fig.personal_wallets,
                    "corporate_wallets": fig.corporate_wallets,
                    "merchants": fig.merchants,
                    "transactions": fig.transactions,
                    "amount_fen": fig.amount_fen,
                },
            },
            "figures_match": self.figures_match,
            "wallets": self.wallets,
            "merchants": {
                "by_category": self.merchants_by_category,
                "by_region": self.merchants_by_region,
            },
            "corporate": {"by_category": self.corporate_by_category},
            "scenarios": [
                {**asdict(s), "engine_feature": ENGINE_FEATURES[s.feature], "matches": s.matches}
                for s in self.scenarios
            ],
            "payments": {
                "settled": self.payments_settled,
                "amount_fen": self.payments_amount_fen,
                "amount_yuan": format_yuan(self.payments_amount_fen),
                "reassigned_to_class_1": self.payments_reassigned,
            },
            "setup": {
                "wallet_openings": self.wallet_openings,
                "issue_transactions": self.phases["issue"].submitted,
                "exchange_transactions": self.phases["exchange"].submitted,
                "redemption_transactions": self.phases["redemption"].submitted,
            },
            "adversarial": {
                "resubmissions": self.resubmissions,
                "double_spends": self.double_spends,
            },
            "transactions": {
                "submitted": self.submitted,
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
            "operators": self.operators,
            "supply": {
                "issued_fen": self.issued_fen,
                "redeemed_fen": self.redeemed_fen,
                "outstanding_fen": self.outstanding_fen,
                "balances_fen": self.balances_fen,
                "swept_fen": self.swept_fen,
                "value_moved_fen": self.value_moved_fen,
                "invariant_error": self.invariant_error,
                "ok": self.supply_ok,
            },
            "state_digest": self.state_digest.hex(),
            "content_digest": self.content_digest.hex(),
            "receipt_hash": self.receipt_hash.hex(),
            "cluster": self.cluster,
            "timing": {
                "threads": self.threads,
                "wall_s": self.wall_s,
                "setup_s": self.setup_s,
                "payments_build_s": pay.build_s,
                "payments_settle_s": pay.settle_s,
                "engine_tx_per_s": pay.engine_tx_per_s,
                "end_to_end_tx_per_s": (
                    pay.submitted / (pay.build_s + pay.settle_s)
                    if pay.build_s + pay.settle_s > 0
                    else 0.0
                ),
                "by_phase": {
                    name: {
                        "batches": p.batches,
                        "build_s": p.build_s,
                        "settle_s": p.settle_s,
                        "engine_tx_per_s": p.engine_tx_per_s,
                        "settle_p50_ms": p.latency_ms(50),
                        "settle_p90_ms": p.latency_ms(90),
                        "settle_p99_ms": p.latency_ms(99),
                        "settle_max_ms": p.latency_ms(100),
                    }
                    for name, p in self.phases.items()
                },
                "batches": [asdict(b) for b in self.batches],
            },
            "simulated_time": {
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "seconds": (self.end_ms - self.start_ms) // 1000,
            },
        }


# -- amounts -----------------------------------------------------------------------------------


def fit_total(
    rng: np.random.Generator, n: int, total_fen: int, sigma: float, min_fen: int, max_fen: int
) -> npt.NDArray[np.int64]:
    """``n`` amounts in ``[min_fen, max_fen]`` that sum to ``total_fen`` exactly: log-normal of
    shape ``sigma`` scaled to the mean ``total_fen / n``, floored to whole fen and clipped, then
    the remainder spread (at random positions) over the amounts with room. Raises
    ``InvalidArgument`` when no such amounts exist.

    >>> a = fit_total(np.random.default_rng(1), 1000, 50_000, 1.0, 10, 500)
    >>> int(a.sum()), bool(a.min() >= 10), bool(a.max() <= 500)
    (50000, True, True)
    """
    if not n * min_fen <= total_fen <= n * max_fen:
        raise InvalidArgument(f"{n} amounts in {min_fen}..{max_fen} fen cannot sum to {total_fen}")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    raw = rng.lognormal(0.0, sigma, n)
    amounts: npt.NDArray[np.int64] = np.clip(
        np.floor(raw * (total_fen / raw.sum())), min_fen, max_fen
    ).astype(np.int64)
    diff = total_fen - int(amounts.sum())
    while diff != 0:
        room = (max_fen - amounts) if diff > 0 else (amounts - min_fen)
        idx = rng.permutation(np.flatnonzero(room > 0))
        step = max(1, abs(diff) // len(idx))
        add = np.minimum(room[idx], step)
        cum = np.cumsum(add)
        k = int(np.searchsorted(cum, abs(diff)))
        if k < len(add):
            add[k] -= int(cum[k]) - abs(diff)
            add[k + 1 :] = 0
        amounts[idx] += add if diff > 0 else -add
        diff = total_fen - int(amounts.sum())
    return amounts


# -- salaries: the seam for the payroll module -------------------------------------------------


@dataclass(frozen=True)
class SalaryRun:
    """One employer paying payslips in one transaction: employee wallet ids and amounts in fen,
    and the run's reference."""

    employer: int
    employees: Sequence[int]
    amounts_fen: Sequence[int]
    reference: bytes


def pay_salaries(
    ledger: tb.Ledger, keyring: tb.Keyring, runs: Sequence[SalaryRun], timestamp_ms: int
) -> list[bytes]:
    """Build and sign one multi-output transfer per salary run: the employer's tokens as inputs
    (largest first), one output per payslip, change back to the employer. Runs of one employer
    chain (a later run spends the earlier one's change), so the list settles in one batch, in
    order. This is the one place the simulator builds salaries; the payroll module replaces it.
    Raises ``InsufficientFunds`` when an employer cannot fund a run.

    >>> ledger, keys = tb.Ledger(), tb.Keyring()
    >>> ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    >>> ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
    >>> ledger.open_wallets(keys, [5], tb.WalletKind.CORPORATE)
    >>> ledger.open_wallets(keys, [7, 8], tb.WalletKind.PERSONAL)
    >>> _ = ledger.settle([tb.issue(keys, 1, [(2, 10_000)], 1_000)], 1_000)
    >>> ledger.pay(keys, 2, 5, 10_000, 1_500).ok
    True
    >>> txs = pay_salaries(ledger, keys, [SalaryRun(5, [7, 8], [3_000, 4_000], b"PAY-1")], 2_000)
    >>> ledger.settle(txs, 2_000).ok, ledger.balances([5, 7, 8]).tolist()
    (True, [3000, 3000, 4000])
    """
    views: dict[int, list[tuple[bytes, int]]] = {}
    txs = []
    for run in runs:
        if len(run.employees) != len(run.amounts_fen) or not run.employees:
            raise InvalidArgument("a salary run needs one amount per employee, and employees")
        if len(run.employees) + 1 > tb.OUTPUTS_MAX:
            raise InvalidArgument(f"a salary run pays at most {tb.OUTPUTS_MAX - 1} payslips")
        tokens = views.setdefault(run.employer, sorted(ledger.spendable(run.employer), key=_value))
        need = sum(int(a) for a in run.amounts_fen)
        inputs: list[bytes] = []
        gathered = 0
        while gathered < need and tokens and len(inputs) < tb.INPUTS_MAX:
            token, value = tokens.pop()
            inputs.append(token)
            gathered += value
        if gathered < need:
            raise tb.InsufficientFunds(
                f"employer {run.employer} cannot fund a salary run of {need} fen"
            )
        outputs = [(int(e), int(a)) for e, a in zip(run.employees, run.amounts_fen, strict=True)]
        if gathered > need:
            outputs.append((run.employer, gathered - need))
        tx = tb.transfer(
            keyring, inputs, outputs, [run.employer], timestamp_ms, reference=run.reference
        )
        if gathered > need:
            change = (tb.token_id(tb.transaction_id(tx), len(outputs) - 1), gathered - need)
            tokens.append(change)
            tokens.sort(key=_value)
        txs.append(tx)
    return txs


def _value(token: tuple[bytes, int]) -> int:
    return token[1]


# -- the plan ----------------------------------------------------------------------------------


@dataclass
class _Plan:
    """Every wallet and payment of a run, drawn up front (arrays indexed by position)."""

    person_ids: npt.NDArray[np.int64]
    person_class: npt.NDArray[np.int64]
    person_sm2: npt.NDArray[np.bool_]
    person_operator: npt.NDArray[np.int64]
    corporate_ids: npt.NDArray[np.int64]
    corporate_mcc: npt.NDArray[np.int64]
    corporate_region: npt.NDArray[np.int64]
    corporate_operator: npt.NDArray[np.int64]
    merchant_ids: npt.NDArray[np.int64]
    merchant_mcc: npt.NDArray[np.int64]
    merchant_region: npt.NDArray[np.int64]
    merchant_operator: npt.NDArray[np.int64]
    # Payments in time order: scenario index, payer, payee (-1 for salary runs), amount.
    scenario: npt.NDArray[np.int64]
    payer: npt.NDArray[np.int64]
    payee: npt.NDArray[np.int64]
    amount: npt.NDArray[np.int64]
    batch_ms: npt.NDArray[np.int64]
    # Salary runs: payment index -> (start, end) into the payslip arrays.
    payslip_start: dict[int, int]
    payslip_end: dict[int, int]
    payslip_employee: npt.NDArray[np.int64]
    payslip_amount: npt.NDArray[np.int64]
    person_opening: npt.NDArray[np.int64]
    corporate_opening: npt.NDArray[np.int64]
    reassigned: int


class Simulation:
    """One run of a preset through the engine (see the module docstring).

    ``on_progress(phase, done)`` is called as work is done, with ``phase`` one of
    :data:`PROGRESS_PHASES`; :meth:`work_units` gives the totals.
    """

    def __init__(self, config: SimulationConfig, on_progress: ProgressCallback | None = None):
        config.validate()
        self.config = config
        self.preset = load_preset(config.preset)
        self.figures = scale_figures(self.preset, config.scale)
        self.on_progress = on_progress
        self._rng = np.random.default_rng(config.seed)
        self.cluster: Cluster | None = None
        if config.redis_url is not None:
            # The cluster settles; the client keeps a mirror to build payments from.
            self.cluster = Cluster(config.redis_url, timeout_s=600)
            self.ledger = tb.Ledger(threads=config.threads, verify_signatures=False)
        elif config.ledger_path is None:
            self.ledger = tb.Ledger(
                threads=config.threads, verify_signatures=config.verify_signatures
            )
        else:
            self.ledger = tb.Ledger.open(
                config.ledger_path,
                threads=config.threads,
                verify_signatures=config.verify_signatures,
            )
        self.settler: Settler = self.ledger
        if self.cluster is not None:
            self.settler = ClusterSettler(self.cluster, self.ledger)
        self.keyring = tb.Keyring()
        self.limits = tb.load_limits()
        self.phases = {name: PhaseStats(name) for name in PHASES}
        self.batches: list[BatchRecord] = []
        self.scenarios = [
            ScenarioStats(s.name, s.title, s.feature, n, fen)
            for s, n, fen in zip(
                self.preset.scenarios,
                self.figures.scenario_transactions,
                self.figures.scenario_amount_fen,
                strict=True,
            )
        ]
        self.now_ms = self.preset.start_ms
        self._operators = np.arange(
            OPERATOR_BASE, OPERATOR_BASE + len(self.preset.operators), dtype=np.int64
        )
        self._issued_fen = 0
        self._redeemed_fen = 0
        self._resubmissions = 0
        self._double_spends = 0
        self._started = 0.0
        self._plan: _Plan | None = None

    def work_units(self) -> dict[str, int]:
        """Progress units per phase: wallets opened, customers funded, payments."""
        f = self.figures
        customers = f.personal_wallets + f.corporate_wallets
        return {
            "wallets": customers + f.merchants,
            "exchange": customers,
            "payments": f.transactions,
        }

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> SimulationResult:
        """Plan, open wallets, issue, exchange, pay, redeem, check; return the result. Once per
        instance."""
        if self.ledger.batch_seq or self.ledger.wallet_count:
            raise RuntimeError("a Simulation runs once; make a new one")
        if self.cluster is not None:
            home = int(shard.home_vshards([CENTRAL_BANK_ID], self.cluster.vshard_count)[0])
            if self.cluster.query([(home, {"q": "wallet", "id": CENTRAL_BANK_ID})])[0]:
                raise InvalidArgument(
                    "redis_url: this cluster already holds a simulation's wallets; a "
                    "simulation starts on a fresh cluster (new Redis and worker data)"
                )
        self._started = time.perf_counter()
        plan = self._plan = self._make_plan()
        self._open_wallets(plan)
        setup_s = time.perf_counter() - self._started
        self._issue(plan)
        self._exchange(plan)
        self._pay(plan)
        self._redeem()
        return self._finish(plan, setup_s)

    def _make_plan(self) -> _Plan:
        preset, fig, rng = self.preset, self.figures, self._rng
        n_ops = len(preset.operators)
        op_p = np.array(preset.operator_shares)

        # Wallets.
        n_p, n_c, n_m = fig.personal_wallets, fig.corporate_wallets, fig.merchants
        person_ids = np.arange(PERSON_BASE, PERSON_BASE + n_p, dtype=np.int64)
        person_class = rng.choice(4, size=n_p, p=np.array(preset.class_shares)) + 1
        person_sm2 = rng.random(n_p) < preset.sm2_share
        person_operator = self._operators[rng.choice(n_ops, size=n_p, p=op_p)]
        corporate_ids = np.arange(CORPORATE_BASE, CORPORATE_BASE + n_c, dtype=np.int64)
        corporate_mcc = self._categories(n_c, preset.corporate_categories, "corporate")
        corporate_region = rng.choice(
            len(preset.regions), size=n_c, p=np.array(preset.region_shares)
        )
        corporate_operator = self._operators[rng.choice(n_ops, size=n_c, p=op_p)]
        merchant_ids = np.arange(MERCHANT_BASE, MERCHANT_BASE + n_m, dtype=np.int64)
        merchant_mcc = self._categories(n_m, preset.merchant_categories, "merchants")
        merchant_region = rng.choice(
            len(preset.regions), size=n_m, p=np.array(preset.region_shares)
        )
        merchant_operator = self._operators[rng.choice(n_ops, size=n_m, p=op_p)]

        # Payments, scenario by scenario.
        person_cdf = np.cumsum(rng.gamma(2.0, 1.0, n_p))
        scen_parts, payer_parts, payee_parts, amount_parts = [], [], [], []
        slip_counts: list[npt.NDArray[np.int64]] = []
        slip_employees: list[npt.NDArray[np.int64]] = []
        slip_amounts: list[npt.NDArray[np.int64]] = []
        for i, (sc, n, total) in enumerate(
            zip(preset.scenarios, fig.scenario_transactions, fig.scenario_amount_fen, strict=True)
        ):
            a = sc.amounts
            if sc.payer == "personal":
                payers = person_ids[self._weighted(person_cdf, n)]
            else:
                pool = corporate_ids[np.isin(corporate_mcc, sc.payer_mcc)]
                payers = pool[self._popular(len(pool), n)]
            if sc.feature == "salary":
                counts = rng.integers(sc.outputs_min, sc.outputs_max + 1, n)
                n_slips = int(counts.sum())
                slips = fit_total(rng, n_slips, total, a.sigma, a.min_fen, a.max_fen)
                pool = person_ids[np.isin(person_class, sc.payee_classes)]
                if len(pool) == 0:
                    raise InvalidArgument(f"scenario {sc.name}: no persons of its payee classes")
                slip_counts.append(counts)
                slip_employees.append(pool[rng.integers(0, len(pool), n_slips)])
                slip_amounts.append(slips)
                starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
                amounts = np.add.reduceat(slips, starts) if n else slips[:0]
                payees = np.full(n, -1, dtype=np.int64)
            else:
                amounts = fit_total(rng, n, total, a.sigma, a.min_fen, a.max_fen)
                if sc.payee == "personal":
                    pool = person_ids[np.isin(person_class, sc.payee_classes)]
                elif sc.payee == "merchant":
                    pool = merchant_ids[np.isin(merchant_mcc, sc.payee_mcc)]
                else:
                    pool = corporate_ids[np.isin(corporate_mcc, sc.payee_mcc)]
                if len(pool) == 0 and n:
                    raise InvalidArgument(f"scenario {sc.name}: no {sc.payee} wallets to pay")
                payees = pool[self._popular(len(pool), n)]
            scen_parts.append(np.full(n, i, dtype=np.int64))
            payer_parts.append(payers.astype(np.int64))
            payee_parts.append(payees)
            amount_parts.append(amounts.astype(np.int64))
        scenario = np.concatenate(scen_parts)
        payer = np.concatenate(payer_parts)
        payee = np.concatenate(payee_parts)
        amount = np.concatenate(amount_parts)
        salary_index = np.flatnonzero(payee == -1)  # in scenario order, as the payslip arrays
        slip_count_all = np.concatenate(slip_counts) if slip_counts else np.zeros(0, np.int64)
        slip_employee = np.concatenate(slip_employees) if slip_employees else np.zeros(0, np.int64)
        slip_amount = np.concatenate(slip_amounts) if slip_amounts else np.zeros(0, np.int64)

        # Time order: a random interleaving, in batches spread over the preset's window.
        order = rng.permutation(len(scenario))
        scenario, payer, payee, amount = scenario[order], payer[order], payee[order], amount[order]
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        slip_end_cum = np.cumsum(slip_count_all)
        payslip_start = {
            int(position[k]): int(e - c)
            for k, e, c in zip(salary_index, slip_end_cum, slip_count_all, strict=True)
        }
        payslip_end = {
            int(position[k]): int(e) for k, e in zip(salary_index, slip_end_cum, strict=True)
        }
        n_batches = max(1, math.ceil(len(order) / self.config.batch_size))
        # Exchange takes the first minute; payments follow, evenly over the window.
        pay_start = preset.start_ms + 60_000
        span = preset.end_ms - 60_000 - pay_start
        batch_times = pay_start + (np.arange(1, n_batches + 1) * span) // n_batches
        batch_ms = batch_times[np.arange(len(order)) // self.config.batch_size]

        reassigned = self._respect_limits(
            scenario, payer, payee, amount, batch_ms, person_ids, person_class
        )

        # Openings: what each customer will spend, plus pocket money, within its balance cap.
        person_out = self._outflow(payer, amount, PERSON_BASE, n_p)
        pocket = self._pocket(n_p)
        caps = self._caps("balance_cap_fen")[person_class]
        person_opening = np.minimum(person_out + pocket, np.maximum(caps, person_out))
        reassigned += self._stay_under_caps(
            payer, payee, amount, slip_employee, slip_amount, person_ids, person_class,
            person_opening,
        )  # fmt: skip
        corporate_out = self._outflow(payer, amount, CORPORATE_BASE, n_c)
        corporate_opening = corporate_out + self._pocket(n_c) * CORPORATE_POCKET_FACTOR
        return _Plan(
            person_ids=person_ids,
            person_class=person_class,
            person_sm2=person_sm2,
            person_operator=person_operator,
            corporate_ids=corporate_ids,
            corporate_mcc=corporate_mcc,
            corporate_region=corporate_region,
            corporate_operator=corporate_operator,
            merchant_ids=merchant_ids,
            merchant_mcc=merchant_mcc,
            merchant_region=merchant_region,
            merchant_operator=merchant_operator,
            scenario=scenario,
            payer=payer,
            payee=payee,
            amount=amount,
            batch_ms=batch_ms,
            payslip_start=payslip_start,
            payslip_end=payslip_end,
            payslip_employee=slip_employee,
            payslip_amount=slip_amount,
            person_opening=person_opening,
            corporate_opening=corporate_opening,
            reassigned=reassigned,
        )

    def _categories(self, n: int, categories: Sequence[Any], what: str) -> npt.NDArray[np.int64]:
        """Category codes for ``n`` wallets: counts apportioned by share, every category at
        least one wallet, in random order."""
        from tongbao.presets import apportion

        if n < len(categories):
            raise InvalidArgument(
                f"{what}: {n} wallets at this scale, fewer than its {len(categories)} categories"
            )
        scaled_shares = [round(c.share * 1_000_000) for c in categories]
        counts = apportion(n - len(categories), scaled_shares)
        codes = np.repeat([c.mcc for c in categories], [k + 1 for k in counts]).astype(np.int64)
        return self._rng.permutation(codes)

    def _popular(self, pool_size: int, n: int) -> npt.NDArray[np.int64]:
        """``n`` indices into a pool, Zipf-popular (rank^-0.8, ranks shuffled)."""
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        rank = self._rng.permutation(pool_size) + 1
        return self._weighted(np.cumsum(1.0 / rank**POPULARITY_EXPONENT), n)

    def _weighted(self, cdf: npt.NDArray[np.float64], n: int) -> npt.NDArray[np.int64]:
        """``n`` indices drawn with probability proportional to the steps of the cumulative
        weights ``cdf`` (a search per draw: much faster than ``Generator.choice(p=...)`` over
        a million wallets)."""
        # Sorted keys search in one sweep (cache-friendly); the shuffle restores random order.
        keys = np.sort(self._rng.random(n)) * cdf[-1]
        picks = np.minimum(np.searchsorted(cdf, keys, side="right"), len(cdf) - 1)
        return self._rng.permutation(picks.astype(np.int64))

    def _pocket(self, n: int) -> npt.NDArray[np.int64]:
        """Pocket money per customer: log-normal around the preset's median, whole yuan."""
        p = self.preset
        raw = self._rng.lognormal(math.log(p.opening_median_fen), p.opening_sigma, n) / 100
        return np.maximum(np.rint(raw).astype(np.int64) * 100, POCKET_MIN_FEN)

    def _caps(self, name: str) -> npt.NDArray[np.int64]:
        """One cap of the default limits, indexed by class 0-4 (0 unused), None as no cap."""
        caps = [NO_CAP_FEN]
        for c in (1, 2, 3, 4):
            value = getattr(self.limits.classes[c], name)
            caps.append(NO_CAP_FEN if value is None else int(value))
        return np.array(caps, dtype=np.int64)

    @staticmethod
    def _outflow(
        payer: npt.NDArray[np.int64], amount: npt.NDArray[np.int64], base: int, n: int
    ) -> npt.NDArray[np.int64]:
        """Total planned outflow of each wallet ``base + i`` (integer sums)."""
        out = np.zeros(n, dtype=np.int64)
        mine = (payer >= base) & (payer < base + n)
        np.add.at(out, payer[mine] - base, amount[mine])
        return out

    def _respect_limits(
        self,
        scenario: npt.NDArray[np.int64],
        payer: npt.NDArray[np.int64],
        payee: npt.NDArray[np.int64],
        amount: npt.NDArray[np.int64],
        batch_ms: npt.NDArray[np.int64],
        person_ids: npt.NDArray[np.int64],
        person_class: npt.NDArray[np.int64],
    ) -> int:
        """Move the payments a payer's class limits would refuse to class-1 payers (no limits),
        in place: over the per-payment cap; every payment of a (payer, day) or (payer, year)
        over the daily or annual cap; every payment of a payer whose total would not fit under
        its balance cap with pocket money. Person-to-person payments never pay the payer.
        Returns how many payments moved."""
        personal = payer >= PERSON_BASE
        class1 = person_ids[person_class == 1]
        moved = np.zeros(len(payer), dtype=bool)

        # The payer's class per payment (1 for corporate payers), kept up to date by move().
        c = np.ones(len(payer), dtype=np.int64)
        c[personal] = person_class[payer[personal] - PERSON_BASE]

        def move(rows: npt.NDArray[np.intp]) -> None:
            if len(rows):
                payer[rows] = class1[self._rng.integers(0, len(class1), len(rows))]
                moved[rows] = True
                c[rows] = 1

        local_day = (batch_ms + SHANGHAI_OFFSET_MS) // DAY_MS
        days = np.unique(local_day)
        # Day numbers count from 1970-01-01 (proleptic ordinal 719,163).
        years = np.array([dt.date.fromordinal(719_163 + int(d)).year for d in days])
        year = years[np.searchsorted(days, local_day)].astype(np.int64)
        zero = np.zeros(len(payer), dtype=np.int64)

        move(np.flatnonzero(personal & (amount > self._caps("payment_cap_fen")[c])))
        for cap_name, key, headroom in (
            ("daily_cap_fen", local_day, 0),
            ("annual_cap_fen", year, 0),
            ("balance_cap_fen", zero, POCKET_MIN_FEN),
        ):
            rows = np.flatnonzero(c > 1)
            if not len(rows):
                continue
            # One sort on (payer, key) packed in an int64: keys span under 2^20 values.
            packed = (payer[rows] - PERSON_BASE) * 2**20 + (key[rows] - key.min())
            order = rows[np.argsort(packed, kind="stable")]
            p, k = payer[order], key[order]
            new = np.ones(len(order), dtype=bool)
            new[1:] = (p[1:] != p[:-1]) | (k[1:] != k[:-1])
            starts = np.flatnonzero(new)
            sums = np.add.reduceat(amount[order], starts)
            group = np.cumsum(new) - 1
            limit = self._caps(cap_name)[c[order[starts]]] - headroom
            move(order[(sums > limit)[group]])
        # A person-to-person payment moved to its own payee goes to the next wallet of the pool.
        for i, sc in enumerate(self.preset.scenarios):
            if sc.feature != "p2p":
                continue
            pool = person_ids[np.isin(person_class, sc.payee_classes)]
            while True:
                same = np.flatnonzero((scenario == i) & (payer == payee))
                if not len(same) or len(pool) < 2:
                    break
                payee[same] = pool[self._rng.integers(0, len(pool), len(same))]
        return int(moved.sum())

    def _stay_under_caps(
        self,
        payer: npt.NDArray[np.int64],
        payee: npt.NDArray[np.int64],
        amount: npt.NDArray[np.int64],
        slip_employee: npt.NDArray[np.int64],
        slip_amount: npt.NDArray[np.int64],
        person_ids: npt.NDArray[np.int64],
        person_class: npt.NDArray[np.int64],
        person_opening: npt.NDArray[np.int64],
    ) -> int:
        """Send no person with a balance cap more than fits under it (opening plus everything
        received), in place: their incoming person-to-person payments and payslips go to
        class-1 persons instead. Value over a cap would be swept to the operator, and
        ``build_payments`` then does not chain that receipt into the payee's later payments of
        the same batch (they are funded from its other tokens or skipped). Returns how many
        payments and payslips moved."""
        n_p = len(person_ids)
        incoming = np.zeros(n_p, dtype=np.int64)
        to_person = payee >= PERSON_BASE
        np.add.at(incoming, payee[to_person] - PERSON_BASE, amount[to_person])
        np.add.at(incoming, slip_employee - PERSON_BASE, slip_amount)
        caps = self._caps("balance_cap_fen")[person_class]
        over = person_opening + incoming > caps
        class1 = person_ids[person_class == 1]
        rows = np.flatnonzero(to_person & over[np.maximum(payee - PERSON_BASE, 0)])
        slips = np.flatnonzero(over[slip_employee - PERSON_BASE])
        payee[rows] = class1[self._rng.integers(0, len(class1), len(rows))]
        slip_employee[slips] = class1[self._rng.integers(0, len(class1), len(slips))]
        while len(class1) > 1:  # never pay oneself
            same = np.flatnonzero(payer == payee)
            if not len(same):
                break
            payee[same] = class1[self._rng.integers(0, len(class1), len(same))]
        return len(rows) + len(slips)

    # -- phases ------------------------------------------------------------------------------

    def _open_wallets(self, plan: _Plan) -> None:
        seed = f"tongbao-sim/{self.config.seed}".encode()
        ledger = self.ledger
        self._open([CENTRAL_BANK_ID], WalletKind.CENTRAL_BANK, Scheme.ED25519, seed, {})
        self._open(self._operators.tolist(), WalletKind.OPERATOR, Scheme.ED25519, seed, {})
        ledger.set_limits(self.limits)
        if self.cluster is not None:
            self.cluster.set_limits(self.limits)
        groups: list[tuple[WalletKind, Scheme, npt.NDArray[np.int64], dict[str, Any]]] = [
            (
                WalletKind.MERCHANT,
                Scheme.ED25519,
                plan.merchant_ids,
                {
                    "operator": plan.merchant_operator,
                    "mcc": plan.merchant_mcc,
                    "region": plan.merchant_region + 1,
                    "linked_account": True,
                },
            ),
            (
                WalletKind.CORPORATE,
                Scheme.ED25519,
                plan.corporate_ids,
                {
                    "operator": plan.corporate_operator,
                    "mcc": plan.corporate_mcc,
                    "region": plan.corporate_region + 1,
                    "linked_account": True,
                },
            ),
        ]
        for scheme, mask in ((Scheme.ED25519, ~plan.person_sm2), (Scheme.SM2, plan.person_sm2)):
            groups.append(
                (
                    WalletKind.PERSONAL,
                    scheme,
                    plan.person_ids[mask],
                    {
                        "wallet_class": plan.person_class[mask],
                        "operator": plan.person_operator[mask],
                        # Classes 1-3 have a linked deposit account; class 4 is anonymous.
                        "linked_account": plan.person_class[mask] <= 3,
                    },
                )
            )
        for kind, scheme, ids, attrs in groups:
            for start in range(0, len(ids), OPEN_CHUNK):
                part = slice(start, start + OPEN_CHUNK)
                chunk_attrs = {
                    k: (v[part].tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in attrs.items()
                }
                self._open(ids[part].tolist(), kind, scheme, seed, chunk_attrs)
                self._progress("wallets", len(ids[part]))

    def _open(
        self, ids: list[int], kind: WalletKind, scheme: Scheme, seed: bytes, attrs: dict[str, Any]
    ) -> None:
        """Open wallets in the ledger, and register them on every shard of the cluster."""
        self.ledger.open_wallets(self.keyring, ids, kind, scheme, seed, **attrs)
        if self.cluster is not None and ids:
            publics = [self.keyring.public_key(w) for w in ids]
            self.cluster.register_wallets(ids, int(kind), publics, int(scheme), **attrs)

    def _issue(self, plan: _Plan) -> None:
        txs = []
        for op in self._operators.tolist():
            need = int(plan.person_opening[plan.person_operator == op].sum())
            need += int(plan.corporate_opening[plan.corporate_operator == op].sum())
            reserve = need + max(RESERVE_MARGIN_FEN, need // 10)
            self._issued_fen += reserve
            txs.append(tb.issue(self.keyring, CENTRAL_BANK_ID, [(op, reserve)], self.now_ms))
        self._settle("issue", txs, build_s=0.0)

    def _exchange(self, plan: _Plan) -> None:
        """Deposit exchange: each operator pays its customers their opening balances."""
        customers = np.concatenate((plan.person_ids, plan.corporate_ids))
        operator_of = np.concatenate((plan.person_operator, plan.corporate_operator))
        opening = np.concatenate((plan.person_opening, plan.corporate_opening))
        order = np.argsort(operator_of, kind="stable")
        for start in range(0, len(order), self.config.batch_size):
            idx = order[start : start + self.config.batch_size]
            self.now_ms += 1
            t0 = time.perf_counter()
            txs, skipped = self.ledger.build_payments(
                self.keyring,
                operator_of[idx].tolist(),
                customers[idx].tolist(),
                opening[idx].tolist(),
                self.now_ms,
            )
            assert not skipped
            settlement = self._settle("exchange", txs, time.perf_counter() - t0)
            assert settlement is not None
            ok = settlement.statuses == Status.OK
            self.phases["exchange"].paid_fen += int(opening[idx][ok].sum())
            self._progress("exchange", len(idx))

    def _pay(self, plan: _Plan) -> None:
        preset = self.preset
        batch = self.config.batch_size
        is_salary = plan.payee == -1
        references = [sc.reference.encode() for sc in preset.scenarios]
        for start in range(0, len(plan.scenario), batch):
            rows = np.arange(start, min(start + batch, len(plan.scenario)))
            self.now_ms = max(self.now_ms + 1, int(plan.batch_ms[start]))
            t0 = time.perf_counter()
            simple = rows[~is_salary[rows]]
            refs: bytes | list[bytes] = b""
            if any(references[s] for s in set(plan.scenario[simple].tolist())):
                refs = [
                    f"{references[s].decode()}/{payee}/{row:09d}".encode() if references[s] else b""
                    for s, payee, row in zip(
                        plan.scenario[simple].tolist(),
                        plan.payee[simple].tolist(),
                        simple.tolist(),
                        strict=True,
                    )
                ]
            txs, skipped = self.ledger.build_payments(
                self.keyring,
                plan.payer[simple].tolist(),
                plan.payee[simple].tolist(),
                plan.amount[simple].tolist(),
                self.now_ms,
                reference=refs,
                skip_insufficient=True,
            )
            for i in skipped:
                self.scenarios[int(plan.scenario[simple[i]])].failed += 1
            built = np.delete(simple, skipped)
            salary_rows = rows[is_salary[rows]]
            runs = [
                SalaryRun(
                    employer=int(plan.payer[r]),
                    employees=plan.payslip_employee[
                        plan.payslip_start[r] : plan.payslip_end[r]
                    ].tolist(),
                    amounts_fen=plan.payslip_amount[
                        plan.payslip_start[r] : plan.payslip_end[r]
                    ].tolist(),
                    reference=f"SALARY/{int(plan.payer[r])}/{r:09d}".encode(),
                )
                for r in salary_rows.tolist()
            ]
            txs += pay_salaries(self.ledger, self.keyring, runs, self.now_ms)
            tx_rows = np.concatenate((built, salary_rows))
            mixed, good_at = self._mix_in_bad(txs, len(rows))
            settlement = self._settle("payments", mixed, time.perf_counter() - t0)
            if settlement is not None:
                ok = settlement.statuses[good_at] == Status.OK
                scen = plan.scenario[tx_rows]
                settled_n = np.bincount(scen[ok], minlength=len(self.scenarios))
                failed_n = np.bincount(scen[~ok], minlength=len(self.scenarios))
                paid = np.zeros(len(self.scenarios), dtype=np.int64)
                np.add.at(paid, scen[ok], plan.amount[tx_rows][ok])
                for i, stats in enumerate(self.scenarios):
                    stats.settled_transactions += int(settled_n[i])
                    stats.settled_amount_fen += int(paid[i])
                    stats.failed += int(failed_n[i])
                    if stats.feature == "salary":
                        mine = salary_rows[ok[len(built) :]]
                        stats.payslips += sum(
                            plan.payslip_end[r] - plan.payslip_start[r] for r in mine.tolist()
                        )
                self.phases["payments"].paid_fen += int(paid.sum())
            self._progress("payments", len(rows))

    def _redeem(self) -> None:
        self.now_ms = max(self.now_ms + 1, self.preset.end_ms)
        t0 = time.perf_counter()
        txs = []
        for op in self._operators.tolist():
            tokens = self.ledger.spendable(op)[: tb.INPUTS_MAX]
            total = sum(value for _, value in tokens)
            destroy = total // 2
            if destroy == 0:
                continue
            change = [(op, total - destroy)] if total > destroy else []
            txs.append(tb.redeem(self.keyring, [t for t, _ in tokens], change, [op], self.now_ms))
            self._redeemed_fen += destroy
        self._settle("redemption", txs, time.perf_counter() - t0)

    def _finish(self, plan: _Plan, setup_s: float) -> SimulationResult:
        preset = self.preset
        ledger = self.ledger
        supply = ledger.supply()
        all_ids = [CENTRAL_BANK_ID, *self._operators.tolist()]
        all_ids += plan.merchant_ids.tolist() + plan.corporate_ids.tolist()
        all_ids += plan.person_ids.tolist()
        balances_fen = sum(ledger.balances(all_ids).tolist())
        invariant_error = None
        try:
            ledger.check_invariants()
        except InvariantViolation as exc:
            invariant_error = str(exc)
        personal: dict[str, int] = {}
        for c in (1, 2, 3, 4):
            personal[f"class {c}"] = int((plan.person_class == c).sum())
        personal["sm2"] = int(plan.person_sm2.sum())
        personal["ed25519"] = len(plan.person_ids) - personal["sm2"]
        personal["total"] = len(plan.person_ids)
        wallets = {
            "central_bank": {"total": 1},
            "operator": {"total": len(self._operators)},
            "personal": personal,
            "corporate": {"total": len(plan.corporate_ids)},
            "merchant": {"total": len(plan.merchant_ids)},
        }
        region_names = preset.regions
        by_category = []
        for cat in preset.merchant_categories:
            by_category.append(
                {
                    "mcc": cat.mcc,
                    "name": cat.name,
                    "count": int((plan.merchant_mcc == cat.mcc).sum()),
                }
            )
        corporate_by_category = [
            {"mcc": cat.mcc, "name": cat.name, "count": int((plan.corporate_mcc == cat.mcc).sum())}
            for cat in preset.corporate_categories
        ]
        by_region = [
            {"region": name, "count": int((plan.merchant_region == i).sum())}
            for i, name in enumerate(region_names)
        ]
        operators = []
        op_balances = ledger.balances(self._operators.tolist()).tolist()
        for i, op in enumerate(self._operators.tolist()):
            operators.append(
                {
                    "name": preset.operators[i],
                    "wallet_id": op,
                    "personal_wallets": int((plan.person_operator == op).sum()),
                    "corporate_wallets": int((plan.corporate_operator == op).sum()),
                    "merchants": int((plan.merchant_operator == op).sum()),
                    "exchanged_fen": int(plan.person_opening[plan.person_operator == op].sum())
                    + int(plan.corporate_opening[plan.corporate_operator == op].sum()),
                    "balance_fen": int(op_balances[i]),
                }
            )
        return SimulationResult(
            config=self.config,
            preset=preset,
            figures=self.figures,
            wallets=wallets,
            merchants_by_category=by_category,
            merchants_by_region=by_region,
            corporate_by_category=corporate_by_category,
            scenarios=self.scenarios,
            phases=self.phases,
            batches=self.batches,
            operators=operators,
            wallet_openings=ledger.wallet_count,
            payments_reassigned=plan.reassigned,
            resubmissions=self._resubmissions,
            double_spends=self._double_spends,
            issued_fen=supply.issued_fen,
            redeemed_fen=supply.redeemed_fen,
            outstanding_fen=supply.outstanding_fen,
            balances_fen=balances_fen,
            expected_issued_fen=self._issued_fen,
            expected_redeemed_fen=self._redeemed_fen,
            invariant_error=invariant_error,
            state_digest=ledger.state_digest(),
            receipt_hash=ledger.last_receipt_hash,
            content_digest=ledger.content_digest(),
            cluster=self._cluster_check(),
            threads=ledger.threads,
            start_ms=preset.start_ms,
            end_ms=self.now_ms,
            setup_s=setup_s,
            wall_s=time.perf_counter() - self._started,
        )

    def _cluster_check(self) -> dict[str, Any] | None:
        """On a cluster: wait for every credit, then compare its content digest with the
        mirror's; the statuses were compared batch by batch."""
        if self.cluster is None:
            return None
        assert isinstance(self.settler, ClusterSettler)
        wait_idle(self.cluster.redis, IDLE_TIMEOUT_S)
        digest = self.cluster.content_digest()
        mirror = self.ledger.content_digest()
        return {
            "vshards": self.cluster.vshard_count,
            "waves": self.settler.waves,
            "status_mismatches": self.settler.mismatches[:20],
            "content_digest": digest.hex(),
            "consistent": digest == mirror and not self.settler.mismatches,
        }

    # -- helpers -----------------------------------------------------------------------------

    def _progress(self, phase: str, done: int) -> None:
        if self.on_progress is not None:
            self.on_progress(phase, done)

    def _count(self, expected: float) -> int:
        """Stochastic rounding: ``floor(expected)`` plus one with probability of the fraction."""
        whole = math.floor(expected)
        return whole + int(self._rng.random() < expected - whole)

    def _mix_in_bad(self, txs: list[bytes], n: int) -> tuple[list[bytes], npt.NDArray[np.intp]]:
        """Mix deliberately bad transactions into ``txs``: resubmissions of some of them
        (``ALREADY_SETTLED``) and new transfers spending their inputs again (``INPUT_SPENT``),
        each placed at a random position after its original; ``txs`` keep their order
        (payments of one payer chain). Returns the batch and the positions of ``txs`` in it."""
        m = len(txs)
        n_resubmit = min(self._count(n * self.preset.resubmit_share), m)
        n_double = min(self._count(n * self.preset.double_spend_share), m)
        if m == 0 or n_resubmit + n_double == 0:
            return txs, np.arange(m)
        originals = self._rng.choice(m, n_resubmit + n_double, replace=True)
        bad = [txs[int(j)] for j in originals[:n_resubmit]]
        bad += [self._double_spend(txs[int(j)]) for j in originals[n_resubmit:]]
        self._resubmissions += n_resubmit
        self._double_spends += n_double
        # Sort keys: good tx j at 2j, a bad copy of j after a random later good tx t >= j.
        later = self._rng.integers(originals, m)
        keys = np.concatenate((2 * np.arange(m), 2 * later + 1))
        order = np.argsort(keys, kind="stable")
        everything = txs + bad
        batch = [everything[i] for i in order.tolist()]
        return batch, np.flatnonzero(order < m)

    def _double_spend(self, tx: bytes) -> bytes:
        """A new transfer, signed by the same payer, spending the inputs of ``tx`` (settled
        already) to a merchant instead: the ledger must answer ``INPUT_SPENT``."""
        assert self._plan is not None
        doc = tb.decode(tx)
        total = sum(amount for _, amount in doc["outputs"])
        signer = doc["signatures"][0][0]
        merchants = self._plan.merchant_ids
        thief_payee = int(merchants[int(self._rng.integers(0, len(merchants)))])
        return tb.transfer(
            self.keyring, doc["inputs"], [(thief_payee, total)], [signer], self.now_ms
        )

    def _settle(self, phase: str, txs: Sequence[bytes], build_s: float) -> tb.Settlement | None:
        """Settle ``txs`` as one batch at the simulated now and record it under ``phase``;
        an empty list is not submitted (None). The one place batches go to the engine: a
        distributed settler replaces ``self.settler`` and nothing else changes."""
        stats = self.phases[phase]
        stats.build_s += build_s
        if not txs:
            return None
        t0 = time.perf_counter()
        settlement = self.settler.settle(list(txs), self.now_ms)
        elapsed = time.perf_counter() - t0
        stats.settle_s += elapsed
        stats.settle_latencies_s.append(elapsed)
        stats.batches += 1
        stats.submitted += len(txs)
        stats.status_counts.update({s: n for s, n in settlement.counts().items() if n})
        stats.value_moved_fen += settlement.receipt.value_moved_fen
        stats.swept_fen += settlement.receipt.swept_fen
        self.batches.append(
            BatchRecord(phase, len(txs), build_s, elapsed, time.perf_counter() - self._started)
        )
        return settlement


def run(config: SimulationConfig, on_progress: ProgressCallback | None = None) -> SimulationResult:
    """Run one simulation (see :class:`Simulation`)."""
    return Simulation(config, on_progress).run()
