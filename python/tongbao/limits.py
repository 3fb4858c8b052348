"""Wallet limits per e-CNY class, from a versioned TOML or JSON config file.

The shipped default (``tongbao/data/limits-default.toml``) follows public statements on e-CNY
wallet classes; see ``docs/wallet-rules.md``. Validation names the field that is wrong, and a
ledger keeps the limits it had when a file is rejected.

>>> import tongbao as tb
>>> limits = tb.load_limits()
>>> limits.version, limits.classes[4].payment_cap_fen, limits.classes[1].balance_cap_fen
('2026-11-default', 200000, None)
>>> tb.parse_limits({"version": "x", "over_balance_cap": "sweep", "class": {"5": {}}})
Traceback (most recent call last):
...
tongbao.errors.InvalidLimits: limits: class.5: classes are 1, 2, 3 and 4
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from tongbao.errors import InvalidLimits

CAP_FIELDS = ("balance_cap_fen", "payment_cap_fen", "daily_cap_fen", "annual_cap_fen")
VERSION_LEN_MAX = 64
#: Largest cap accepted, in fen (well inside u64).
CAP_FEN_MAX = 10**17


@dataclass(frozen=True)
class ClassLimits:
    """Caps of one class in fen; None is no cap."""

    balance_cap_fen: int | None = None
    payment_cap_fen: int | None = None
    daily_cap_fen: int | None = None
    annual_cap_fen: int | None = None

    def row(self) -> tuple[int | None, int | None, int | None, int | None]:
        return (self.balance_cap_fen, self.payment_cap_fen, self.daily_cap_fen, self.annual_cap_fen)


@dataclass(frozen=True)
class Limits:
    """A validated limits table: ``classes`` maps 1-4 to their caps."""

    version: str
    over_balance_cap: str
    classes: dict[int, ClassLimits] = field(default_factory=dict)
    sub_wallet: ClassLimits = ClassLimits()


def _class_limits(where: str, table: Any) -> ClassLimits:
    if not isinstance(table, dict):
        raise InvalidLimits(f"limits: {where}: expected a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(CAP_FIELDS))
    if unknown:
        raise InvalidLimits(f"limits: {where}.{unknown[0]}: unknown field")
    caps: dict[str, int | None] = {}
    for name in CAP_FIELDS:
        value = table.get(name)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= CAP_FEN_MAX
        ):
            raise InvalidLimits(
                f"limits: {where}.{name}: must be an integer number of fen in 1..{CAP_FEN_MAX}, "
                f"got {value!r}"
            )
        caps[name] = value
    ordered = [
        ("payment_cap_fen", "daily_cap_fen"),
        ("daily_cap_fen", "annual_cap_fen"),
    ]
    for small, large in ordered:
        a, b = caps[small], caps[large]
        if a is not None and b is not None and a > b:
            raise InvalidLimits(f"limits: {where}.{small}: {a} is above {large} {b}")
    return ClassLimits(**caps)


def parse_limits(doc: dict[str, Any]) -> Limits:
    """Validate a parsed config document. Raises :class:`tongbao.errors.InvalidLimits` naming
    the field."""
    if not isinstance(doc, dict):
        raise InvalidLimits("limits: the document is not a table")
    unknown = sorted(set(doc) - {"version", "over_balance_cap", "class", "sub_wallet"})
    if unknown:
        raise InvalidLimits(f"limits: {unknown[0]}: unknown field")
    version = doc.get("version")
    if not isinstance(version, str) or not 0 < len(version.encode()) <= VERSION_LEN_MAX:
        raise InvalidLimits(f"limits: version: a string of 1-{VERSION_LEN_MAX} bytes is required")
    over = doc.get("over_balance_cap")
    if over not in ("sweep", "reject"):
        raise InvalidLimits(f'limits: over_balance_cap: "sweep" or "reject", got {over!r}')
    classes_doc = doc.get("class", {})
    if not isinstance(classes_doc, dict):
        raise InvalidLimits("limits: class: expected a table of classes 1-4")
    classes: dict[int, ClassLimits] = {}
    for key, table in classes_doc.items():
        if str(key) not in ("1", "2", "3", "4"):
            raise InvalidLimits(f"limits: class.{key}: classes are 1, 2, 3 and 4")
        classes[int(key)] = _class_limits(f"class.{key}", table)
    for c in (1, 2, 3, 4):
        if c not in classes:
            raise InvalidLimits(f"limits: class.{c}: missing (an empty table means no limits)")
    if classes[1] != ClassLimits():
        raise InvalidLimits("limits: class.1: class 1 (identified in person) has no limits")
    sub = _class_limits("sub_wallet", doc.get("sub_wallet", {}))
    return Limits(version=version, over_balance_cap=over, classes=classes, sub_wallet=sub)


def load_limits(path: str | os.PathLike[str] | None = None) -> Limits:
    """Load and validate a limits file (``.toml`` or ``.json``); the shipped default when
    ``path`` is None. Raises ``InvalidLimits`` naming the field (or the TOML/JSON syntax error)."""
    if path is None:
        text = resources.files("tongbao").joinpath("data/limits-default.toml").read_text()
        name = "limits-default.toml"
    else:
        name = os.fspath(path)
        with open(name, encoding="utf-8") as f:
            text = f.read()
    try:
        doc = json.loads(text) if name.endswith(".json") else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidLimits(f"limits: {name}: {exc}") from None
    return parse_limits(doc)
