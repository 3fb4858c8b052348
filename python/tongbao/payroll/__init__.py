"""Salary batch payouts: CSV and ISO 20022 ``pain.001`` in, ``pain.002`` out, exactly once.

A payroll file is parsed and validated as a whole (:mod:`tongbao.payroll.inputs`), every payee
is decided against the ledger, the payments are planned as signed chunk transactions of up to
1,000 payees each and written down durably, then settled; a re-run of the same file after a
crash completes the rest and pays nobody twice (:mod:`tongbao.payroll.run`). Reports: a CSV row
and a ``pain.002.001.10`` entry per payee (:mod:`tongbao.payroll.reports`). See
``docs/payroll.md``.

>>> import tempfile, tongbao as tb
>>> from pathlib import Path
>>> from tongbao import payroll
>>> d = Path(tempfile.mkdtemp())
>>> spec = payroll.PayrollSpec(payees=2_500, seed=3)
>>> payroll.write_pain001(spec, d / "nov.xml")
>>> ledger, keys = tb.Ledger.open(d / "ledger"), tb.Keyring()
>>> payroll.setup_world(ledger, keys, spec)
>>> result = payroll.run_payroll(ledger, keys, payroll.parse_file(d / "nov.xml"),
...                              spec.employer, d / "runs", timestamp_ms=1_764_000_000_000)
>>> result.group_status, result.paid, len(result.plan.txs)   # funding + 3 chunks
('ACSC', 2500, 4)
>>> again = payroll.run_payroll(ledger, keys, payroll.parse_file(d / "nov.xml"),
...                             spec.employer, d / "runs", timestamp_ms=1_764_000_000_000)
>>> again.resumed, again.paid, ledger.balance(spec.employer) == spec.margin_fen
(True, 2500, True)
"""

from __future__ import annotations

from tongbao.payroll.generate import PayrollSpec, setup_world, write_csv, write_pain001
from tongbao.payroll.inputs import Payroll, parse_csv, parse_file, parse_pain001
from tongbao.payroll.run import (
    CHUNK_OUTPUTS,
    PayrollLedger,
    Plan,
    Reason,
    RunResult,
    make_plan,
    read_status,
    run_payroll,
    runs_dir,
)

__all__ = [
    "CHUNK_OUTPUTS",
    "Payroll",
    "PayrollLedger",
    "PayrollSpec",
    "Plan",
    "Reason",
    "RunResult",
    "make_plan",
    "parse_csv",
    "parse_file",
    "parse_pain001",
    "read_status",
    "run_payroll",
    "runs_dir",
    "setup_world",
    "write_csv",
    "write_pain001",
]
