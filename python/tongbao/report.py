"""End-of-day report per operator bank for one Asia/Shanghai calendar day.

Computed by the core from a ledger directory's log (``docs/decisions/0005-wallet-admin-and-
reports.md``): the log is replayed, read-only, up to the end of the day, and each transaction
of the day is observed as it applies. For every party (an operator bank, the central bank, or 0
for wallets without an operator) it gives the wallets it operates by kind, class and status,
its settled and rejected transactions, value in and out, what was swept to it, issued to it and
redeemed by it, and its position against the central bank (the digital cash in its wallets,
backed one for one by central-bank money in the deposit-based model in force since January
2026), with the gross and bilateral net settlement matrices between parties.

>>> import tempfile, datetime, tongbao as tb
>>> d = tempfile.mkdtemp()
>>> keys = tb.Keyring()
>>> with tb.Ledger.open(d) as ledger:
...     ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
...     ledger.open_wallets(keys, [10, 11], tb.WalletKind.OPERATOR)
...     ledger.open_wallets(keys, [100], tb.WalletKind.PERSONAL, operator=10)
...     ledger.open_wallets(keys, [200], tb.WalletKind.PERSONAL, operator=11)
...     noon = 1_767_240_000_000  # 2026-01-01 12:00 in Shanghai
...     _ = ledger.settle([tb.issue(keys, 1, [(10, 50_000)], noon)], noon)
...     txs, _ = ledger.build_payments(keys, [10, 10], [100, 200], [30_000, 5_000], noon + 1)
...     _ = ledger.settle(txs, noon + 1)
>>> report = tb.day_report(d, datetime.date(2026, 1, 1))
>>> bank = report.operator(10)
>>> bank.issued_fen, bank.value_out_fen, bank.holdings_end_fen
(50000, 5000, 45000)
>>> report.gross_fen
{(10, 11): 5000}
>>> report.net_position(11)
5000
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.types import Kind, Status, WalletKind, WalletStatus

EPOCH = dt.date(1970, 1, 1)


def shanghai_day_number(day: dt.date | str) -> int:
    """Days since 1970-01-01 of a calendar date (``date`` or ``"YYYY-MM-DD"``): the core's
    Asia/Shanghai day numbering. Raises ``InvalidArgument`` for a malformed date.

    >>> shanghai_day_number("2026-01-01")
    20454
    """
    if isinstance(day, str):
        try:
            day = dt.date.fromisoformat(day)
        except ValueError:
            raise InvalidArgument(f"day: {day!r} is not a YYYY-MM-DD date") from None
    number = (day - EPOCH).days
    if number < 0:
        raise InvalidArgument(f"day: {day} is before 1970-01-01")
    return number


@dataclass(frozen=True)
class OperatorDay:
    """One party's day. ``holdings_*_fen``: digital cash in its wallets (its position against
    the central bank) at the start and end of the day."""

    operator: int
    wallets: dict[tuple[WalletKind, int, WalletStatus], int]
    transactions_ok: dict[Kind, int]
    transactions_rejected: int
    value_in_fen: int
    value_out_fen: int
    internal_fen: int
    swept_fen: int
    issued_fen: int
    redeemed_fen: int
    holdings_start_fen: int
    holdings_end_fen: int

    @property
    def position_change_fen(self) -> int:
        """Issued − redeemed + value in − value out: equals end − start holdings (checked by
        the tests: value is conserved)."""
        return self.issued_fen - self.redeemed_fen + self.value_in_fen - self.value_out_fen


@dataclass(frozen=True)
class DayReport:
    """The report of one Shanghai calendar day (see the module docstring)."""

    day: dt.date
    batches: int
    transactions: int
    status_counts: dict[Status, int]
    operators: dict[int, OperatorDay]
    gross_fen: dict[tuple[int, int], int]
    net_fen: dict[tuple[int, int], int]

    def operator(self, operator: int) -> OperatorDay:
        """The day of one party; raises ``InvalidArgument`` if it has no wallets or flows."""
        try:
            return self.operators[operator]
        except KeyError:
            raise InvalidArgument(f"operator {operator} is not in the report") from None

    def net_position(self, operator: int) -> int:
        """Multilateral net settlement of a party with all others (received − paid)."""
        received = sum(v for (_, b), v in self.gross_fen.items() if b == operator)
        paid = sum(v for (a, _), v in self.gross_fen.items() if a == operator)
        return received - paid

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``orjson.dumps(report.to_json())``)."""
        return {
            "day": self.day.isoformat(),
            "batches": self.batches,
            "transactions": self.transactions,
            "status_counts": {s.name: n for s, n in self.status_counts.items()},
            "operators": [
                {
                    "operator": o.operator,
                    "wallets": [
                        {"kind": k.name, "class": c, "status": s.name, "count": n}
                        for (k, c, s), n in sorted(o.wallets.items())
                    ],
                    "transactions_ok": {k.name: n for k, n in o.transactions_ok.items()},
                    "transactions_rejected": o.transactions_rejected,
                    "value_in_fen": o.value_in_fen,
                    "value_out_fen": o.value_out_fen,
                    "internal_fen": o.internal_fen,
                    "swept_fen": o.swept_fen,
                    "issued_fen": o.issued_fen,
                    "redeemed_fen": o.redeemed_fen,
                    "holdings_start_fen": o.holdings_start_fen,
                    "holdings_end_fen": o.holdings_end_fen,
                    "net_settlement_fen": self.net_position(o.operator),
                }
                for o in self.operators.values()
            ],
            "gross_fen": [{"from": a, "to": b, "fen": v} for (a, b), v in self.gross_fen.items()],
            "net_fen": [{"from": a, "to": b, "fen": v} for (a, b), v in self.net_fen.items()],
        }

    def render(self) -> str:
        """The report as text for people."""
        lines = [
            f"End-of-day report {self.day.isoformat()} (Asia/Shanghai): "
            f"{self.batches} batches, {self.transactions} transactions"
        ]
        for o in self.operators.values():
            wallets = sum(o.wallets.values())
            ok = sum(o.transactions_ok.values())
            lines.append(
                f"party {o.operator}: {wallets} wallets, {ok} settled, "
                f"{o.transactions_rejected} rejected, in {o.value_in_fen} fen, "
                f"out {o.value_out_fen} fen, internal {o.internal_fen} fen, swept "
                f"{o.swept_fen} fen, issued {o.issued_fen} fen, redeemed {o.redeemed_fen} fen, "
                f"position {o.holdings_start_fen} -> {o.holdings_end_fen} fen, "
                f"net settlement {self.net_position(o.operator)} fen"
            )
        for (a, b), v in self.gross_fen.items():
            lines.append(f"gross {a} -> {b}: {v} fen")
        for (a, b), v in self.net_fen.items():
            lines.append(f"net {a} -> {b}: {v} fen")
        return "\n".join(lines)


def day_report(path: str | os.PathLike[str], day: dt.date | str, threads: int = 0) -> DayReport:
    """The end-of-day report of Shanghai calendar ``day`` from the log of ledger directory
    ``path`` (read-only; works on a closed ledger and on any past day).

    Raises ``InvalidArgument`` (bad day, no log), ``CorruptLog`` (file and offset named).
    Replays the log up to the end of the day: the cost grows with the log. Releases the GIL.
    """
    number = shanghai_day_number(day)
    d = _core.day_report(os.fspath(path), number, threads)
    operators = {}
    for o in d["operators"]:
        o = dict(o)
        o["wallets"] = {(WalletKind(k), c, WalletStatus(s)): n for k, c, s, n in o.pop("wallets")}
        o["transactions_ok"] = {Kind(k): n for k, n in o.pop("transactions_ok")}
        operators[o["operator"]] = OperatorDay(**o)
    return DayReport(
        day=EPOCH + dt.timedelta(days=number),
        batches=d["batches"],
        transactions=d["transactions"],
        status_counts={Status(k): v for k, v in d["status_counts"].items()},
        operators=operators,
        gross_fen={(a, b): v for a, b, v in d["gross_fen"]},
        net_fen={(a, b): v for a, b, v in d["net_fen"]},
    )
