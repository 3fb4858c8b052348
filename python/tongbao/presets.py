"""City presets for ``tongbao simulate``: a pilot described as data, in a TOML file.

A preset names the pilot's published totals (wallets, merchants, transactions, amount), the
operator banks, the class mix of personal wallets, merchant and corporate categories (MCC) and
regions, and the scenario mix: per scenario its count, its total amount in fen, who pays whom,
the amount distribution and the engine feature it uses. ``docs/presets.md`` describes the
format field by field; the repo ships ``chongqing-2022`` and ``small-city`` in
``tongbao/data/presets/``.

Loading validates everything and names the field that is wrong, and the scenario sums must
equal the published totals exactly. :func:`scale_figures` scales a preset to ``--scale``:
every count and amount is rounded to an integer, apportioned so the scenario figures still sum
to the rounded scaled totals.

>>> preset = load_preset("chongqing-2022")
>>> preset.totals.transactions, preset.totals.amount_fen
(1576700, 28800000000)
>>> sum(s.transactions for s in preset.scenarios) == preset.totals.transactions
True
>>> figures = scale_figures(preset, 0.1)
>>> figures.transactions, figures.amount_fen, figures.personal_wallets
(157670, 2880000000, 106660)
>>> parse_preset({"name": "x"}, "x.toml")
Traceback (most recent call last):
...
tongbao.errors.InvalidPreset: preset x.toml: title: missing
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from tongbao.errors import InvalidPreset

#: Limits on what a preset may ask for (so a typo cannot ask for a billion wallets).
WALLETS_MAX = 50_000_000
TRANSACTIONS_MAX = 100_000_000
AMOUNT_FEN_MAX = 10**15
PAYMENT_FEN_MAX = 10**10
OPERATORS_MAX = 64
CATEGORIES_MAX = 256
REGIONS_MAX = 256
SCENARIOS_MAX = 64
OUTPUTS_PER_TX_MAX = 1_000
NAME_LEN_MAX = 64
TEXT_LEN_MAX = 2_000
REFERENCE_PREFIX_LEN_MAX = 40
SIGMA_MAX = 3.0
SCALE_MIN = 1e-6
SCALE_MAX = 1.0

#: Who may pay and who may be paid in a scenario.
PAYER_KINDS = ("personal", "corporate")
PAYEE_KINDS = ("merchant", "corporate", "personal")

#: What each scenario asks of the engine (shown in the report).
ENGINE_FEATURES = {
    "merchant": "merchant payment",
    "bill": "bill/tax, reference per payment",
    "transit": "transit: hold, then capture",
    "p2p": "person-to-person transfer",
    "salary": "salary run: multi-output transfer",
}


@dataclass(frozen=True)
class Category:
    """A merchant or corporate category: ISO 18245 merchant category code, name, share."""

    mcc: int
    name: str
    share: float


@dataclass(frozen=True)
class Amounts:
    """How one payment's amount (one payslip's, for salaries) is drawn: log-normal with shape
    ``sigma``, scaled so the scenario's mean is its amount over its count, clipped to
    ``[min_fen, max_fen]``, then made to sum exactly to the scenario's amount."""

    sigma: float
    min_fen: int
    max_fen: int


@dataclass(frozen=True)
class Scenario:
    """One line of the scenario mix. ``transactions`` and ``amount_fen`` are the scenario's
    share of the pilot's figures; ``feature`` is a key of :data:`ENGINE_FEATURES`."""

    name: str
    title: str
    feature: str
    transactions: int
    amount_fen: int
    payer: str
    payee: str
    payer_mcc: tuple[int, ...]
    payee_mcc: tuple[int, ...]
    payee_classes: tuple[int, ...]
    amounts: Amounts
    outputs_min: int
    outputs_max: int
    reference: str


@dataclass(frozen=True)
class Totals:
    """The pilot's published figures; the sections of the preset must add up to them."""

    personal_wallets: int
    corporate_wallets: int
    merchants: int
    transactions: int
    amount_fen: int


@dataclass(frozen=True)
class Preset:
    """A validated preset (see the module docstring and ``docs/presets.md``)."""

    name: str
    title: str
    source: str
    start_ms: int
    end_ms: int
    totals: Totals
    operators: tuple[str, ...]
    operator_shares: tuple[float, ...]
    sm2_share: float
    class_shares: tuple[float, ...]
    opening_median_fen: int
    opening_sigma: float
    regions: tuple[str, ...]
    region_shares: tuple[float, ...]
    merchant_categories: tuple[Category, ...]
    corporate_categories: tuple[Category, ...]
    resubmit_share: float
    double_spend_share: float
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True)
class ScaledFigures:
    """A preset's figures at a scale: integer counts and amounts, per scenario in preset
    order; the scenario lists sum to ``transactions`` and ``amount_fen``."""

    scale: float
    personal_wallets: int
    corporate_wallets: int
    merchants: int
    transactions: int
    amount_fen: int
    scenario_transactions: tuple[int, ...]
    scenario_amount_fen: tuple[int, ...]


# -- reading -----------------------------------------------------------------------------------


class _Table:
    """A TOML table being read: every read names its field path; unknown fields are refused
    by :meth:`done`."""

    def __init__(self, doc: Any, where: str, file: str):
        self.file = file
        self.where = where
        if not isinstance(doc, dict):
            self.fail(where or "the document", f"expected a table, got {type(doc).__name__}")
        self.doc: dict[str, Any] = doc
        self.seen: set[str] = set()

    def fail(self, field: str, message: str) -> None:
        raise InvalidPreset(f"preset {self.file}: {field}: {message}")

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, default: Any = ...) -> Any:
        self.seen.add(key)
        if key not in self.doc:
            if default is ...:
                self.fail(self.path(key), "missing")
            return default
        return self.doc[key]

    def table(self, key: str) -> _Table:
        return _Table(self.get(key), self.path(key), self.file)

    def tables(self, key: str, limit: int) -> list[_Table]:
        items = self.get(key)
        if not isinstance(items, list) or not items:
            self.fail(self.path(key), "expected a non-empty array of tables")
        if len(items) > limit:
            self.fail(self.path(key), f"at most {limit} entries, got {len(items)}")
        return [_Table(t, f"{self.path(key)}[{i}]", self.file) for i, t in enumerate(items)]

    def integer(self, key: str, low: int, high: int, default: Any = ...) -> int:
        value = self.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.fail(self.path(key), f"must be an integer in {low:_}..{high:_}, got {value!r}")
        return int(value)

    def number(self, key: str, low: float, high: float, default: Any = ...) -> float:
        value = self.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            self.fail(self.path(key), f"must be a number, got {value!r}")
        if not (math.isfinite(value) and low <= value <= high):
            self.fail(self.path(key), f"must be between {low} and {high}, got {value!r}")
        return float(value)

    def text(self, key: str, limit: int, default: Any = ...) -> str:
        value = self.get(key, default)
        if not isinstance(value, str) or len(value) > limit:
            self.fail(self.path(key), f"must be a string of at most {limit} characters")
        return str(value)

    def name(self, key: str) -> str:
        value = self.text(key, NAME_LEN_MAX)
        if not value or not all(c.isalnum() or c in "-_." for c in value):
            self.fail(self.path(key), f"must be letters, digits, '-', '_' or '.', got {value!r}")
        return value

    def choice(self, key: str, options: Sequence[str]) -> str:
        value = self.get(key)
        if value not in options:
            self.fail(self.path(key), f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)

    def timestamp_ms(self, key: str) -> int:
        value = self.get(key)
        if not isinstance(value, dt.datetime) or value.tzinfo is None:
            self.fail(self.path(key), "must be a TOML date-time with an offset (+08:00)")
        return int(value.timestamp() * 1000)

    def ints(self, key: str, low: int, high: int, default: Any = ...) -> tuple[int, ...]:
        values = self.get(key, default)
        if not isinstance(values, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and low <= v <= high for v in values
        ):
            self.fail(self.path(key), f"must be an array of integers in {low}..{high}")
        return tuple(int(v) for v in values)

    def shares(self, key: str, n: int | None, limit: int) -> tuple[float, ...]:
        values = self.get(key)
        if not isinstance(values, list) or not values or len(values) > limit:
            self.fail(self.path(key), f"must be a non-empty array of at most {limit} numbers")
        if n is not None and len(values) != n:
            self.fail(self.path(key), f"needs {n} entries, got {len(values)}")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            self.fail(self.path(key), "must be numbers")
        if any(not 0 <= v <= 1 for v in values) or not math.isclose(sum(values), 1.0):
            self.fail(self.path(key), f"shares between 0 and 1 that sum to 1, got {sum(values)}")
        return tuple(float(v) for v in values)

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.seen)
        if unknown:
            self.fail(self.path(unknown[0]), "unknown field")


def _categories(parent: _Table, key: str) -> tuple[Category, ...]:
    cats = []
    for t in parent.tables(key, CATEGORIES_MAX):
        mcc, name = t.integer("mcc", 0, 9999), t.text("name", NAME_LEN_MAX)
        cats.append(Category(mcc=mcc, name=name, share=t.number("share", 0.0, 1.0)))
        t.done()
    total = sum(c.share for c in cats)
    if not math.isclose(total, 1.0):
        parent.fail(parent.path(key), f"category shares must sum to 1, got {total}")
    mccs = [c.mcc for c in cats]
    if len(set(mccs)) != len(mccs):
        parent.fail(parent.path(key), "a category code appears twice")
    return tuple(cats)


def _scenario(t: _Table, merchant_mcc: set[int], corporate_mcc: set[int]) -> Scenario:
    name = t.name("name")
    title = t.text("title", TEXT_LEN_MAX)
    feature = t.choice("feature", list(ENGINE_FEATURES))
    transactions = t.integer("transactions", 0, TRANSACTIONS_MAX)
    amount_fen = t.integer("amount_fen", 0, AMOUNT_FEN_MAX)
    payer = t.choice("payer", PAYER_KINDS)
    payee = t.choice("payee", PAYEE_KINDS)
    payer_mcc = t.ints("payer_mcc", 0, 9999, default=[])
    payee_mcc = t.ints("payee_mcc", 0, 9999, default=[])
    payee_classes = t.ints("payee_classes", 1, 4, default=[1, 2, 3, 4])
    a = t.table("amount")
    amounts = Amounts(
        sigma=a.number("sigma", 0.0, SIGMA_MAX),
        min_fen=a.integer("min_fen", 1, PAYMENT_FEN_MAX),
        max_fen=a.integer("max_fen", 1, PAYMENT_FEN_MAX),
    )
    if amounts.min_fen > amounts.max_fen:
        a.fail(a.path("min_fen"), f"{amounts.min_fen} is above max_fen {amounts.max_fen}")
    a.done()
    outputs_min = t.integer("outputs_min", 1, OUTPUTS_PER_TX_MAX, default=1)
    outputs_max = t.integer("outputs_max", outputs_min, OUTPUTS_PER_TX_MAX, default=outputs_min)
    reference = t.text("reference", REFERENCE_PREFIX_LEN_MAX, default="")
    t.done()
    # Consistency: the pools the scenario draws from, and features that fit the parties.
    if payer == "personal" and payer_mcc:
        t.fail(t.path("payer_mcc"), "only corporate payers have category codes")
    pools = {"merchant": merchant_mcc, "corporate": corporate_mcc}
    for field, kind, codes in (("payer_mcc", payer, payer_mcc), ("payee_mcc", payee, payee_mcc)):
        missing = sorted(set(codes) - pools.get(kind, set()))
        if missing:
            t.fail(t.path(field), f"no {kind} category has code {missing[0]}")
    if payee in ("merchant", "corporate") and not payee_mcc:
        t.fail(t.path("payee_mcc"), f"name the {payee} categories that are paid")
    if payee != "personal" and "payee_classes" in t.doc:
        t.fail(t.path("payee_classes"), "only personal payees have classes")
    if payee == payer == "personal" and feature != "p2p":
        t.fail(t.path("feature"), 'person-to-person payments use feature "p2p"')
    if feature == "salary" and (payer != "corporate" or payee != "personal"):
        t.fail(t.path("feature"), "salary is paid by corporate wallets to personal wallets")
    if feature != "salary" and outputs_max > 1:
        t.fail(t.path("outputs_max"), 'only feature "salary" pays several outputs per transaction')
    if feature == "bill" and not reference:
        t.fail(t.path("reference"), 'feature "bill" needs a reference prefix')
    # The amount must be reachable with that many payments (payslips) in [min_fen, max_fen].
    low = transactions * outputs_min * amounts.min_fen
    high = transactions * outputs_max * amounts.max_fen
    if not low <= amount_fen <= high:
        t.fail(
            t.path("amount_fen"),
            f"{amount_fen:_} fen cannot be paid by {transactions:_} transactions of "
            f"{outputs_min}-{outputs_max} payments of {amounts.min_fen:_}-{amounts.max_fen:_} fen",
        )
    return Scenario(
        name=name,
        title=title,
        feature=feature,
        transactions=transactions,
        amount_fen=amount_fen,
        payer=payer,
        payee=payee,
        payer_mcc=payer_mcc,
        payee_mcc=payee_mcc,
        payee_classes=payee_classes,
        amounts=amounts,
        outputs_min=outputs_min,
        outputs_max=outputs_max,
        reference=reference,
    )


def parse_preset(doc: dict[str, Any], file: str = "<preset>") -> Preset:
    """Validate a parsed preset document. Raises :class:`tongbao.errors.InvalidPreset` naming
    the file and the field."""
    top = _Table(doc, "", file)
    name = top.name("name")
    title = top.text("title", TEXT_LEN_MAX)
    source = top.text("source", TEXT_LEN_MAX, default="")
    start_ms = top.timestamp_ms("start")
    end_ms = top.timestamp_ms("end")
    if end_ms <= start_ms:
        top.fail("end", "must be after start")

    t = top.table("totals")
    totals = Totals(
        personal_wallets=t.integer("personal_wallets", 1, WALLETS_MAX),
        corporate_wallets=t.integer("corporate_wallets", 0, WALLETS_MAX),
        merchants=t.integer("merchants", 1, WALLETS_MAX),
        transactions=t.integer("transactions", 0, TRANSACTIONS_MAX),
        amount_fen=t.integer("amount_fen", 0, AMOUNT_FEN_MAX),
    )
    t.done()

    o = top.table("operators")
    operators = tuple(o.get("names"))
    if not operators or len(operators) > OPERATORS_MAX:
        o.fail("operators.names", f"1 to {OPERATORS_MAX} operator names")
    if not all(isinstance(n, str) and 0 < len(n) <= NAME_LEN_MAX for n in operators):
        o.fail("operators.names", f"names are strings of 1-{NAME_LEN_MAX} characters")
    operator_shares = o.shares("shares", len(operators), OPERATORS_MAX)
    o.done()

    p = top.table("personal")
    sm2_share = p.number("sm2_share", 0.0, 1.0)
    class_shares = p.shares("class_shares", 4, 4)
    opening_median_fen = p.integer("opening_median_fen", 1, PAYMENT_FEN_MAX)
    opening_sigma = p.number("opening_sigma", 0.0, SIGMA_MAX)
    p.done()

    m = top.table("merchants")
    regions = tuple(m.get("regions"))
    if not regions or len(regions) > REGIONS_MAX:
        m.fail("merchants.regions", f"1 to {REGIONS_MAX} region names")
    if not all(isinstance(r, str) and 0 < len(r) <= NAME_LEN_MAX for r in regions):
        m.fail("merchants.regions", f"names are strings of 1-{NAME_LEN_MAX} characters")
    region_shares = m.shares("region_shares", len(regions), REGIONS_MAX)
    merchant_categories = _categories(m, "categories")
    m.done()

    c = top.table("corporate")
    corporate_categories = _categories(c, "categories")
    c.done()

    adv = top.table("adversarial") if "adversarial" in doc else _Table({}, "adversarial", file)
    resubmit_share = adv.number("resubmit_share", 0.0, 0.1, default=0.0)
    double_spend_share = adv.number("double_spend_share", 0.0, 0.1, default=0.0)
    adv.done()

    merchant_mcc = {cat.mcc for cat in merchant_categories}
    corporate_mcc = {cat.mcc for cat in corporate_categories}
    scenarios = tuple(
        _scenario(s, merchant_mcc, corporate_mcc) for s in top.tables("scenario", SCENARIOS_MAX)
    )
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        top.fail("scenario", "two scenarios have the same name")
    top.done()

    for field, total in (("transactions", totals.transactions), ("amount_fen", totals.amount_fen)):
        summed = sum(getattr(s, field) for s in scenarios)
        if summed != total:
            top.fail(
                f"totals.{field}",
                f"{total:_} but the scenarios' {field} sum to {summed:_}",
            )
    if any(s.payer == "personal" for s in scenarios) and class_shares[0] == 0:
        top.fail("personal.class_shares", "class 1 needs a share (it takes payments over caps)")
    if any(s.payer == "corporate" for s in scenarios) and totals.corporate_wallets == 0:
        top.fail("totals.corporate_wallets", "corporate payers need corporate wallets")
    return Preset(
        name=name,
        title=title,
        source=source,
        start_ms=start_ms,
        end_ms=end_ms,
        totals=totals,
        operators=operators,
        operator_shares=operator_shares,
        sm2_share=sm2_share,
        class_shares=class_shares,
        opening_median_fen=opening_median_fen,
        opening_sigma=opening_sigma,
        regions=regions,
        region_shares=region_shares,
        merchant_categories=merchant_categories,
        corporate_categories=corporate_categories,
        resubmit_share=resubmit_share,
        double_spend_share=double_spend_share,
        scenarios=scenarios,
    )


def shipped_presets() -> list[str]:
    """Names of the presets shipped with tongbao.

    >>> shipped_presets()
    ['chongqing-2022', 'small-city']
    """
    folder = resources.files("tongbao").joinpath("data/presets")
    return sorted(
        p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml")
    )


def load_preset(name_or_path: str | os.PathLike[str]) -> Preset:
    """Load and validate a preset: a shipped preset's name (``chongqing-2022``) or the path of
    a TOML file. Raises :class:`tongbao.errors.InvalidPreset` naming the field (or the TOML
    syntax error), or ``OSError`` when the file cannot be read."""
    text_name = os.fspath(name_or_path)
    if text_name in shipped_presets():
        folder = resources.files("tongbao").joinpath("data/presets")
        text = folder.joinpath(f"{text_name}.toml").read_text(encoding="utf-8")
        file = f"{text_name}.toml"
    else:
        path = Path(text_name)
        if not path.suffix == ".toml" and not path.exists():
            raise InvalidPreset(
                f"preset {text_name}: no such shipped preset (shipped: "
                f"{', '.join(shipped_presets())}) and no such file"
            )
        text = path.read_text(encoding="utf-8")
        file = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidPreset(f"preset {file}: {exc}") from None
    return parse_preset(doc, file)


# -- scaling -----------------------------------------------------------------------------------


def scaled(value: int, scale: Fraction) -> int:
    """``value * scale`` rounded half up, exactly.

    >>> scaled(1_066_600, Fraction(1, 10)), scaled(5, Fraction(1, 2)), scaled(7, Fraction(1))
    (106660, 3, 7)
    """
    return math.floor(value * scale + Fraction(1, 2))


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` that sum to ``total`` exactly
    (largest remainder; ties to the earlier entry).

    >>> apportion(10, [1, 1, 1])
    [4, 3, 3]
    >>> apportion(0, [5, 5]), apportion(7, [0, 3])
    ([0, 0], [0, 7])
    """
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot apportion a positive total over zero weights")
        return [0] * len(weights)
    exact = [Fraction(total * w, weight_sum) for w in weights]
    parts = [math.floor(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def scale_figures(preset: Preset, scale: float) -> ScaledFigures:
    """The preset's figures at ``scale`` (``SCALE_MIN``..1): each total scaled and rounded half
    up, the scenario counts and amounts apportioned so they sum to those totals. At scale 1 the
    figures are the preset's own. Raises :class:`tongbao.errors.InvalidPreset` when a scenario
    would have no transactions but an amount (or payments it cannot reach)."""
    if not (math.isfinite(scale) and SCALE_MIN <= scale <= SCALE_MAX):
        raise InvalidPreset(f"scale must be between {SCALE_MIN} and {SCALE_MAX}, got {scale}")
    s = Fraction(str(scale))
    totals = preset.totals
    transactions = scaled(totals.transactions, s)
    amount_fen = scaled(totals.amount_fen, s)
    counts = apportion(transactions, [sc.transactions for sc in preset.scenarios])
    amounts = apportion(amount_fen, [sc.amount_fen for sc in preset.scenarios])
    for sc, n, fen in zip(preset.scenarios, counts, amounts, strict=True):
        a = sc.amounts
        if not n * sc.outputs_min * a.min_fen <= fen <= n * sc.outputs_max * a.max_fen:
            raise InvalidPreset(
                f"preset {preset.name}: scenario {sc.name}: at scale {scale} its {n:_} "
                f"transactions cannot pay {fen:_} fen; use a larger scale"
            )
    figures = ScaledFigures(
        scale=scale,
        personal_wallets=max(1, scaled(totals.personal_wallets, s)),
        corporate_wallets=scaled(totals.corporate_wallets, s),
        merchants=max(1, scaled(totals.merchants, s)),
        transactions=transactions,
        amount_fen=amount_fen,
        scenario_transactions=tuple(counts),
        scenario_amount_fen=tuple(amounts),
    )
    if figures.corporate_wallets == 0 and any(sc.payer == "corporate" for sc in preset.scenarios):
        raise InvalidPreset(f"preset {preset.name}: at scale {scale} no corporate wallets remain")
    return figures
