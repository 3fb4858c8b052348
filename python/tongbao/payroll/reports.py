"""A run's reports: per-payee CSV and ISO 20022 ``pain.002.001.10`` status report.

Both are functions of the durable plan and the recorded statuses only (no clock, no counts of
attempts), so a run completed after crashes reports byte for byte what an uninterrupted run
does. The XML is streamed to disk (a million payees make some 250 MB), with every text value
escaped; the tests parse it back and validate it against the official XSD.

>>> from tongbao.payroll.reports import yuan_text, iso_datetime
>>> yuan_text(123_405), iso_datetime(1_764_374_400_000)
('1234.05', '2025-11-29T00:00:00.000Z')
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING
from xml.sax.saxutils import escape

import numpy as np

import tongbao as tb
from tongbao.payroll.inputs import CURRENCY, Payroll
from tongbao.types import Status

if TYPE_CHECKING:
    from tongbao.payroll.run import RunResult

PAIN002_NS = "urn:iso:std:iso:20022:tech:xsd:pain.002.001.10"
#: Reason codes as ISO 20022 ExternalStatusReason1Code, by :class:`Reason` value.
REASON_CODES = ("", "AC01", "AC06", "AM02", "AM04", "AM05", "MS03")
#: What each reason means, for the CSV report and pain.002 AddtlInf.
REASON_TEXT = (
    "",
    "unknown wallet",
    "wallet frozen or closed",
    "over a wallet limit",
    "insufficient funds",
    "duplicate reference",
    "not settled",
)
CSV_REPORT_COLUMNS = (
    "line",
    "end_to_end_id",
    "payee_wallet",
    "amount_fen",
    "status",
    "reason",
    "detail",
    "tx_id",
)


def yuan_text(fen: int) -> str:
    """Fen as an ISO 20022 decimal amount in yuan, exactly."""
    return f"{fen // 100}.{fen % 100:02d}"


def iso_datetime(timestamp_ms: int) -> str:
    """Unix ms as an ISO 8601 UTC date-time with milliseconds."""
    t = dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{timestamp_ms % 1000:03d}Z"


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file written to ``path.part``, fsynced and renamed over ``path`` on success."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _detail(reason: int, status: int) -> str:
    if status >= 0 and reason:
        return f"{REASON_TEXT[reason]} (settlement: {Status(status).name})"
    return REASON_TEXT[reason]


def write_reports(result: RunResult, payroll: Payroll) -> None:
    """Write ``report.csv`` and ``pain.002.xml`` into the run's directory."""
    write_csv_report(result, payroll, result.directory / "report.csv")
    write_pain002(result, payroll, result.directory / "pain.002.xml")


def write_csv_report(result: RunResult, payroll: Payroll, path: Path) -> None:
    """One row per payee, in file order: source line, reference, wallet, amount in fen, ACSC
    or RJCT, the reason code, a human detail and the id of the transaction that paid it."""
    tx_ids = [tb.transaction_id(tx).hex() for tx in result.plan.txs[1:]]
    chunks = result.plan.chunks.tolist()
    reasons = result.reasons.tolist()
    statuses = result.tx_statuses.tolist()
    tx_ids.append("")  # chunk -1: not paid
    with atomic_text(path) as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_REPORT_COLUMNS)
        w.writerows(
            (
                line,
                ref,
                payee,
                amount,
                "RJCT" if r else "ACSC",
                REASON_CODES[r],
                _detail(r, status) if r else "",
                "" if r else tx_ids[chunk],
            )
            for line, ref, payee, amount, r, status, chunk in zip(
                payroll.lines,
                payroll.references,
                payroll.payees,
                payroll.amounts_fen,
                reasons,
                statuses,
                chunks,
                strict=True,
            )
        )


def _status_counts(f: IO[str], reasons: np.ndarray, amounts: np.ndarray, indent: str) -> None:
    paid = reasons == 0
    for code, mask in (("ACSC", paid), ("RJCT", ~paid)):
        count = int(mask.sum())
        if count:
            total = int(amounts[mask].astype(object).sum())
            f.write(
                f"{indent}<NbOfTxsPerSts><DtldNbOfTxs>{count}</DtldNbOfTxs>"
                f"<DtldSts>{code}</DtldSts><DtldCtrlSum>{yuan_text(total)}</DtldCtrlSum>"
                "</NbOfTxsPerSts>\n"
            )


_ACSC = "<TxSts>ACSC</TxSts>"


def _rejected(reason: int, status: int) -> str:
    return (
        f"<TxSts>RJCT</TxSts><StsRsnInf><Rsn><Cd>{REASON_CODES[reason]}</Cd></Rsn>"
        f"<AddtlInf>{escape(_detail(reason, status))}</AddtlInf></StsRsnInf>"
    )


def _group_status(reasons: np.ndarray) -> str:
    paid = int((reasons == 0).sum())
    return "ACSC" if paid == len(reasons) else ("RJCT" if paid == 0 else "PART")


def write_pain002(result: RunResult, payroll: Payroll, path: Path) -> None:
    """The ``pain.002.001.10`` customer payment status report: the group status (ACSC all
    paid, RJCT none, PART some), counts per status, then per original payment information
    block its status and each transaction's status (ACSC or RJCT with its reason code),
    original EndToEndId, amount and creditor wallet."""
    reasons = result.reasons
    amounts = np.asarray(payroll.amounts_fen, dtype=np.uint64)
    blocks = np.asarray(payroll.blocks, dtype=np.int64)
    statuses = result.tx_statuses.tolist()
    reason_list = reasons.tolist()
    msg_name = "pain.001.001.09" if payroll.source == "pain.001" else "tongbao.payroll.csv"
    original_id = payroll.msg_id or payroll.run_id
    with atomic_text(path) as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        f.write(f'<Document xmlns="{PAIN002_NS}">\n<CstmrPmtStsRpt>\n')
        f.write(
            f"<GrpHdr><MsgId>{escape(('TB-' + result.run_id)[:35])}</MsgId>"
            f"<CreDtTm>{iso_datetime(result.plan.timestamp_ms)}</CreDtTm></GrpHdr>\n"
        )
        f.write(
            f"<OrgnlGrpInfAndSts><OrgnlMsgId>{escape(original_id[:35])}</OrgnlMsgId>"
            f"<OrgnlMsgNmId>{msg_name}</OrgnlMsgNmId>"
            f"<OrgnlNbOfTxs>{len(reasons)}</OrgnlNbOfTxs>"
            f"<OrgnlCtrlSum>{yuan_text(payroll.total_fen)}</OrgnlCtrlSum>"
            f"<GrpSts>{_group_status(reasons)}</GrpSts>\n"
        )
        _status_counts(f, reasons, amounts, "  ")
        f.write("</OrgnlGrpInfAndSts>\n")
        for b, block_id in enumerate(payroll.block_ids):
            members = np.flatnonzero(blocks == b)
            if not len(members):
                continue
            block_reasons = reasons[members]
            f.write(
                f"<OrgnlPmtInfAndSts><OrgnlPmtInfId>{escape(block_id)}</OrgnlPmtInfId>"
                f"<OrgnlNbOfTxs>{len(members)}</OrgnlNbOfTxs>"
                f"<OrgnlCtrlSum>{yuan_text(int(amounts[members].astype(object).sum()))}"
                f"</OrgnlCtrlSum><PmtInfSts>{_group_status(block_reasons)}</PmtInfSts>\n"
            )
            _status_counts(f, block_reasons, amounts[members], "  ")
            lo, hi = int(members[0]), int(members[-1]) + 1  # a block's items are contiguous
            f.writelines(
                f"  <TxInfAndSts><OrgnlEndToEndId>{escape(ref)}</OrgnlEndToEndId>"
                + (_ACSC if r == 0 else _rejected(r, status))
                + f'<OrgnlTxRef><Amt><InstdAmt Ccy="{CURRENCY}">{amount // 100}.'
                f"{amount % 100:02d}</InstdAmt></Amt><CdtrAcct><Id><Othr><Id>{payee}</Id>"
                "</Othr></Id></CdtrAcct></OrgnlTxRef></TxInfAndSts>\n"
                for ref, r, status, amount, payee in zip(
                    payroll.references[lo:hi],
                    reason_list[lo:hi],
                    statuses[lo:hi],
                    payroll.amounts_fen[lo:hi],
                    payroll.payees[lo:hi],
                    strict=True,
                )
            )
            f.write("</OrgnlPmtInfAndSts>\n")
        f.write("</CstmrPmtStsRpt>\n</Document>\n")
