"""Payroll files: CSV and ISO 20022 ``pain.001.001.09``, parsed and validated as a whole.

Both parsers return a :class:`Payroll`: one item per payee line, in file order, with amounts in
integer fen. A file that is malformed raises :class:`tongbao.errors.PayrollFileError` naming the
line and field (CSV) or the XPath and line (XML) and the reason; nothing has been paid then.

CSV: a header is required and states the unit of the amounts, ``amount_yuan`` (at most two
decimals) or ``amount_fen`` (an integer); the other columns are ``payee_wallet`` and
``reference`` (the per-payee id echoed in the reports, like an EndToEndId). A repeated reference
is not a file error: the later line is reported as a duplicate (``AM05``) and not paid.

>>> import hashlib
>>> data = b"payee_wallet,amount_yuan,reference\\n1001,1234.5,JAN-1\\n1002,0.01,JAN-2\\n"
>>> p = parse_csv_bytes(data)
>>> list(p.payees), list(p.amounts_fen), p.references
([1001, 1002], [123450, 1], ['JAN-1', 'JAN-2'])
>>> p.run_id == "csv-" + hashlib.sha256(data).hexdigest()[:24]
True
>>> parse_csv_bytes(b"payee_wallet,amount_yuan,reference\\n1001,1.234,X\\n")
Traceback (most recent call last):
...
tongbao.errors.PayrollFileError: line 2, field amount_yuan: '1.234' has more than two decimals
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree

from tongbao.errors import PayrollFileError

#: Most payees one file may carry (one run plans at most this many outputs).
PAYEES_MAX = 1_000_000
#: Longest reference / EndToEndId / MsgId / PmtInfId (ISO 20022 Max35Text).
ID_LEN_MAX = 35
#: Largest single amount accepted, in fen (¥100 billion): PAYEES_MAX of them sum inside u64.
AMOUNT_FEN_MAX = 10**13
#: Largest wallet id (u64).
WALLET_ID_MAX = 2**64 - 1
#: Category purposes a payroll run accepts: salary, bonus, pension.
CATEGORY_PURPOSES = ("SALA", "BONU", "PENS")
#: The only currency of the ledger.
CURRENCY = "CNY"

PAIN001_NS = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
CSV_COLUMNS_YUAN = ("payee_wallet", "amount_yuan", "reference")
CSV_COLUMNS_FEN = ("payee_wallet", "amount_fen", "reference")

_YUAN = re.compile(r"(\d{1,13})(?:\.(\d{1,2}))?")
_YUAN_MORE = re.compile(r"\d+\.\d{3,}")
_FEN = re.compile(r"\d{1,16}")
_WALLET = re.compile(r"\d{1,20}")
#: Whole columns, one value a line: amounts with exactly two decimals, wallet ids.
_YUAN_COLUMN = re.compile(r"\d{1,13}\.\d\d(?:\n\d{1,13}\.\d\d)*")
_WALLET_COLUMN = re.compile(r"\d{1,20}(?:\n\d{1,20})*")


@dataclass
class Payroll:
    """A validated payroll file: ``payees[i]`` gets ``amounts_fen[i]`` (fen), with per-payee id
    ``references[i]`` (EndToEndId), from source line ``lines[i]`` of payment block
    ``blocks[i]`` (an index into ``block_ids``). ``duplicates`` lists items whose reference
    repeats an earlier one's (CSV only; they are reported ``AM05``)."""

    source: str
    run_id: str
    file_sha256: str
    msg_id: str
    debtor: int | None
    category_purpose: str
    block_ids: list[str]
    payees: array[int] = field(default_factory=lambda: array("Q"))
    amounts_fen: array[int] = field(default_factory=lambda: array("Q"))
    lines: array[int] = field(default_factory=lambda: array("I"))
    blocks: array[int] = field(default_factory=lambda: array("I"))
    references: list[str] = field(default_factory=list)
    duplicates: set[int] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.payees)

    @property
    def total_fen(self) -> int:
        """Sum of all amounts, in fen."""
        return sum(self.amounts_fen)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parse_yuan(text: str) -> int | None:
    """Yuan with at most two decimals to fen, exactly (no floats); None if not such a number.

    >>> parse_yuan("12.3"), parse_yuan("0.05"), parse_yuan("7"), parse_yuan("1e3")
    (1230, 5, 700, None)
    """
    m = _YUAN.fullmatch(text)
    if m is None:
        return None
    cents = (m.group(2) or "").ljust(2, "0")
    return int(m.group(1)) * 100 + int(cents)


def _check_reference(where: str, value: str, what: str) -> None:
    if not value or value != value.strip() or not value.isprintable():
        raise PayrollFileError(
            where, f"{what} is empty, unprintable or has surrounding spaces: {value!r}"
        )
    if len(value) > ID_LEN_MAX:
        raise PayrollFileError(where, f"{what} is longer than {ID_LEN_MAX} characters")


# -- CSV -------------------------------------------------------------------------------------


def parse_csv(path: str | Path) -> Payroll:
    """Parse and validate a payroll CSV file (see the module docstring). The run id is
    ``csv-`` and the first 24 hex digits of the file's SHA-256. Raises ``PayrollFileError``."""
    return _parse_csv(Path(path).read_bytes())


def parse_csv_bytes(data: bytes) -> Payroll:
    """:func:`parse_csv` of the file's content."""
    return _parse_csv(data)


def _parse_csv(data: bytes) -> Payroll:
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PayrollFileError(f"line {line}", "not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    payroll = Payroll(
        source="csv",
        run_id=f"csv-{digest[:24]}",
        file_sha256=digest,
        msg_id="",
        debtor=None,
        category_purpose="SALA",
        block_ids=[f"csv-{digest[:24]}"],
    )
    seen: dict[str, int] = {}
    try:
        header = next(reader, None)
        if header is None:
            raise PayrollFileError("line 1", "empty file: a header line is required")
        columns = tuple(c.strip() for c in header)
        if sorted(columns) == sorted(CSV_COLUMNS_YUAN):
            in_yuan = True
        elif sorted(columns) == sorted(CSV_COLUMNS_FEN):
            in_yuan = False
        else:
            raise PayrollFileError(
                "line 1",
                f"header must name the columns payee_wallet, reference and amount_yuan or "
                f"amount_fen (the unit of the amounts), got {','.join(columns)!r}",
            )
        i_wallet = columns.index("payee_wallet")
        amount_name = "amount_yuan" if in_yuan else "amount_fen"
        i_amount = columns.index(amount_name)
        i_ref = columns.index("reference")
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != 3:
                raise PayrollFileError(f"line {line}", f"expected 3 fields, got {len(row)}")
            if len(payroll.payees) >= PAYEES_MAX:
                raise PayrollFileError(f"line {line}", f"more than {PAYEES_MAX:,} payees")
            wallet_text = row[i_wallet].strip()
            if _WALLET.fullmatch(wallet_text) is None or not (
                0 < int(wallet_text) <= WALLET_ID_MAX
            ):
                raise PayrollFileError(
                    f"line {line}, field payee_wallet", f"{wallet_text!r} is not a wallet id"
                )
            amount_text = row[i_amount].strip()
            amount = _amount(amount_text, in_yuan, f"line {line}, field {amount_name}")
            ref = row[i_ref]
            _check_reference(f"line {line}, field reference", ref, "reference")
            n = len(payroll.payees)
            if ref in seen:
                payroll.duplicates.add(n)
            else:
                seen[ref] = n
            payroll.payees.append(int(wallet_text))
            payroll.amounts_fen.append(amount)
            payroll.lines.append(line)
            payroll.blocks.append(0)
            payroll.references.append(ref)
    except csv.Error as exc:
        raise PayrollFileError(f"line {reader.line_num}", f"unreadable CSV: {exc}") from None
    if not payroll.payees:
        raise PayrollFileError("line 2", "no payees after the header")
    return payroll


def _amount(text: str, in_yuan: bool, where: str) -> int:
    if in_yuan:
        value = parse_yuan(text)
        if value is None:
            if _YUAN_MORE.fullmatch(text):
                raise PayrollFileError(where, f"{text!r} has more than two decimals")
            raise PayrollFileError(where, f"{text!r} is not an amount in yuan")
    else:
        if _FEN.fullmatch(text) is None:
            raise PayrollFileError(where, f"{text!r} is not a whole number of fen")
        value = int(text)
    if value == 0:
        raise PayrollFileError(where, "amount is zero")
    if value > AMOUNT_FEN_MAX:
        raise PayrollFileError(where, f"amount over the maximum of {AMOUNT_FEN_MAX} fen")
    return value


# -- pain.001.001.09 -------------------------------------------------------------------------


def _q(tag: str) -> str:
    return f"{{{PAIN001_NS}}}{tag}"


_GRPHDR, _PMTINF, _TX = _q("GrpHdr"), _q("PmtInf"), _q("CdtTrfTxInf")
_PMTID, _E2E, _AMT, _INSTDAMT = _q("PmtId"), _q("EndToEndId"), _q("Amt"), _q("InstdAmt")
_CDTRACCT, _ACCT_ID = _q("CdtrAcct"), f"{_q('Id')}/{_q('Othr')}/{_q('Id')}"


def _tx_fields(
    elem: etree._Element,
) -> tuple[str | None, etree._Element | None, str | None]:
    """EndToEndId text, the InstdAmt element and the creditor wallet text of a CdtTrfTxInf,
    by one pass over its children (each None when absent)."""
    e2e = payee = None
    amt = None
    for child in elem:
        t = child.tag
        if t == _PMTID:
            for g in child:
                if g.tag == _E2E:
                    e2e = g.text or ""
        elif t == _AMT:
            for g in child:
                if g.tag == _INSTDAMT:
                    amt = g
        elif t == _CDTRACCT:
            payee = child.findtext(_ACCT_ID)
    return e2e, amt, payee


#: Transactions read per batch (one set of XPath evaluations over the batch).
PARSE_BATCH = 512
_NSMAP = {"p": PAIN001_NS}
_XP_E2E = etree.XPath(
    "p:CdtTrfTxInf[position() <= $n]/p:PmtId/p:EndToEndId/text()",
    namespaces=_NSMAP,
    smart_strings=False,
)
_XP_AMT = etree.XPath(
    "p:CdtTrfTxInf[position() <= $n]/p:Amt/p:InstdAmt/text()",
    namespaces=_NSMAP,
    smart_strings=False,
)
_XP_CCY = etree.XPath(
    "p:CdtTrfTxInf[position() <= $n]/p:Amt/p:InstdAmt/@Ccy", namespaces=_NSMAP, smart_strings=False
)
_XP_PAYEE = etree.XPath(
    "p:CdtTrfTxInf[position() <= $n]/p:CdtrAcct/p:Id/p:Othr/p:Id/text()",
    namespaces=_NSMAP,
    smart_strings=False,
)


def _read_batch_fast(
    parent: etree._Element, elems: list[etree._Element], seen: set[str]
) -> tuple[list[str], list[int], list[int], list[int]] | None:
    """Read a batch of well-formed transactions (the first ``len(elems)`` CdtTrfTxInf children
    of ``parent``, which are ``elems``) with four XPath evaluations and checks over whole
    columns: (EndToEndIds, amounts in fen, payee wallets, lines). None if anything is off; then
    :func:`_read_tx` finds and names it, one transaction at a time."""
    n = len(elems)
    # libxml2 parses ahead: the parent may already hold (partial) transactions after the
    # batch, so each XPath is limited to the batch's first n.
    e2e_texts, amts = _XP_E2E(parent, n=n), _XP_AMT(parent, n=n)
    ccys, payee_texts = _XP_CCY(parent, n=n), _XP_PAYEE(parent, n=n)
    if not (len(e2e_texts) == len(amts) == len(ccys) == len(payee_texts) == n):
        return None
    if any(c != CURRENCY for c in ccys):
        return None
    e2es = [str(e).strip() for e in e2e_texts]
    if (
        min(map(len, e2es)) == 0
        or max(map(len, e2es)) > ID_LEN_MAX
        or not all(map(str.isprintable, e2es))
        or len(set(e2es)) != n
        or not seen.isdisjoint(e2es)
    ):
        return None
    amt_strs = [str(a) for a in amts]
    if _YUAN_COLUMN.fullmatch("\n".join(amt_strs)):
        amounts = [int(a.replace(".", "")) for a in amt_strs]
    else:
        parsed = [parse_yuan(a.strip()) for a in amt_strs]
        if None in parsed:
            return None
        amounts = [a for a in parsed if a is not None]
    if min(amounts) == 0 or max(amounts) > AMOUNT_FEN_MAX:
        return None
    payee_strs = [str(p) for p in payee_texts]
    if not _WALLET_COLUMN.fullmatch("\n".join(payee_strs)):
        return None
    payees = [int(p) for p in payee_strs]
    if min(payees) == 0 or max(payees) > WALLET_ID_MAX:
        return None
    return e2es, amounts, payees, [e.sourceline or 0 for e in elems]


def _read_tx(elem: etree._Element, where: str, seen: set[str]) -> tuple[str, int, int, int]:
    """One CdtTrfTxInf, every check with its XPath and line: (EndToEndId, amount in fen,
    payee wallet, line). ``seen`` holds the EndToEndIds before it (this one is added)."""
    line = elem.sourceline or 0
    e2e, amt, payee_text = _tx_fields(elem)
    if e2e is None:
        raise PayrollFileError(f"{where}/PmtId/EndToEndId", "missing EndToEndId")
    e2e = e2e.strip()
    _check_reference(f"{where}/PmtId/EndToEndId (line {line})", e2e, "EndToEndId")
    if e2e in seen:
        raise PayrollFileError(
            f"{where}/PmtId/EndToEndId (line {line})", f"duplicate EndToEndId {e2e!r}"
        )
    seen.add(e2e)
    if amt is None:
        raise PayrollFileError(f"{where}/Amt/InstdAmt (line {line})", "missing")
    amt_where = f"{where}/Amt/InstdAmt (line {amt.sourceline})"
    if amt.get("Ccy") != CURRENCY:
        raise PayrollFileError(amt_where, f"currency must be {CURRENCY}, got {amt.get('Ccy')!r}")
    amount = _decimal_fen((amt.text or "").strip(), amt_where)
    if amount == 0:
        raise PayrollFileError(amt_where, "amount is zero")
    if amount > AMOUNT_FEN_MAX:
        raise PayrollFileError(amt_where, f"over {AMOUNT_FEN_MAX} fen")
    payee_where = f"{where}/CdtrAcct/Id/Othr/Id (line {line})"
    if payee_text is None:
        raise PayrollFileError(payee_where, "missing creditor wallet")
    payee_text = payee_text.strip()
    if _WALLET.fullmatch(payee_text) is None or not 0 < int(payee_text) <= WALLET_ID_MAX:
        raise PayrollFileError(payee_where, f"{payee_text!r} is not a wallet id")
    return e2e, amount, int(payee_text), line


def _check_root(path: Path) -> None:
    """The document element must be pain.001.001.09's Document (read without the rest)."""
    try:
        for _, root in etree.iterparse(
            str(path), events=("start",), resolve_entities=False, no_network=True
        ):
            if root.tag != _q("Document"):
                raise PayrollFileError(
                    f"/{etree.QName(root).localname} (line {root.sourceline})",
                    f"root must be Document in namespace {PAIN001_NS}, "
                    f"got {etree.QName(root).text}",
                )
            return
    except etree.XMLSyntaxError as exc:
        raise PayrollFileError(f"line {exc.lineno}", f"not well-formed XML: {exc.msg}") from None


def _text(elem: etree._Element, path: list[str], where: str, what: str) -> str:
    node: etree._Element | None = elem
    for tag in path:
        assert node is not None
        node = node.find(_q(tag))
        if node is None:
            raise PayrollFileError(f"{where}/{'/'.join(path)}", f"missing {what}")
    assert node is not None
    return (node.text or "").strip()


def _wallet_of(elem: etree._Element, path: list[str], where: str, what: str) -> int:
    text = _text(elem, path, where, what)
    if _WALLET.fullmatch(text) is None or not 0 < int(text) <= WALLET_ID_MAX:
        raise PayrollFileError(f"{where}/{'/'.join(path)}", f"{text!r} is not a wallet id")
    return int(text)


def _decimal_fen(text: str, where: str) -> int:
    value = parse_yuan(text)
    if value is None:
        if _YUAN_MORE.fullmatch(text):
            raise PayrollFileError(where, f"{text!r} has more than two decimals")
        raise PayrollFileError(where, f"{text!r} is not a decimal amount")
    return value


def parse_pain001(path: str | Path) -> Payroll:
    """Parse and validate a ``pain.001.001.09`` customer credit transfer initiation with
    ``lxml.etree.iterparse``, clearing each transaction after reading it, so memory stays
    bounded by the items kept (a few dozen bytes per payee), not the document.

    Checked before anything is paid: the namespace, GrpHdr/MsgId, that GrpHdr/NbOfTxs and
    GrpHdr/CtrlSum (and each PmtInf's, when present) agree with the transactions, one debtor
    wallet (DbtrAcct/Id/Othr/Id) for the whole file, PmtTpInf/CtgyPurp/Cd in SALA, BONU or
    PENS, Ccy="CNY", amounts with at most two decimals, unique EndToEndIds. The run id is
    ``pain001-`` and the MsgId. Raises ``PayrollFileError`` naming the XPath and line.
    """
    path = Path(path)
    digest = _sha256_file(path)
    payroll = Payroll(
        source="pain.001",
        run_id="",
        file_sha256=digest,
        msg_id="",
        debtor=None,
        category_purpose="",
        block_ids=[],
    )
    root_path = "/Document/CstmrCdtTrfInitn"
    group: dict[str, str] = {}
    seen: set[str] = set()
    block_count = 1  # the block being read (1-based): blocks ended so far + 1
    tx_in_block = 0
    block_sum = 0
    block_declared: tuple[str, str] | None = None
    categories: set[str] = set()
    pending: list[etree._Element] = []
    leftover: list[etree._Element] = []

    def flush(block_no: int, first: int) -> int:
        """Read the pending transactions of block ``block_no`` (``first`` is the 1-based index
        of the first in its block), append them to the payroll, free them; returns their sum."""
        elems = pending[:]
        pending.clear()
        parent = elems[0].getparent()
        assert parent is not None
        for old in leftover:
            parent.remove(old)
        leftover.clear()
        base = f"{root_path}/PmtInf[{block_no}]/CdtTrfTxInf"
        room = PAYEES_MAX - len(payroll.payees)
        if len(elems) > room:
            where = f"{base}[{first + room}] (line {elems[room].sourceline})"
            raise PayrollFileError(where, f"more than {PAYEES_MAX:,} payees")
        read = _read_batch_fast(parent, elems, seen)
        if read is None:  # something is wrong: find it, one transaction at a time
            rows = [_read_tx(e, f"{base}[{first + j}]", seen) for j, e in enumerate(elems)]
            read = (
                [r[0] for r in rows],
                [r[1] for r in rows],
                [r[2] for r in rows],
                [r[3] for r in rows],
            )
        e2es, amounts, payees, lines = read
        payroll.payees.extend(payees)
        payroll.amounts_fen.extend(amounts)
        payroll.lines.extend(lines)
        payroll.blocks.extend([block_no - 1] * len(payees))
        payroll.references.extend(e2es)
        seen.update(e2es)
        total = sum(amounts)
        # Bounded memory: drop what was read (the element iterparse is on stays, cleared,
        # until the next batch or the end of the block).
        for e in elems[:-1]:
            parent.remove(e)
        elems[-1].clear()
        leftover.append(elems[-1])
        return total

    _check_root(path)
    context = etree.iterparse(
        str(path),
        events=("end",),
        tag=(_GRPHDR, _PMTINF, _TX),
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        remove_blank_text=True,
    )
    try:
        for _event, elem in context:
            tag = elem.tag
            if tag == _GRPHDR:
                where = f"{root_path}/GrpHdr"
                group["MsgId"] = _text(elem, ["MsgId"], where, "MsgId")
                _check_reference(f"{where}/MsgId", group["MsgId"], "MsgId")
                group["NbOfTxs"] = _text(elem, ["NbOfTxs"], where, "NbOfTxs")
                ctrl = elem.find(_q("CtrlSum"))
                if ctrl is None:
                    raise PayrollFileError(f"{where}/CtrlSum", "missing CtrlSum")
                group["CtrlSum"] = (ctrl.text or "").strip()
                group["line"] = str(elem.sourceline)
                elem.clear()
            elif tag == _TX:
                tx_in_block += 1
                pending.append(elem)
                if len(pending) >= PARSE_BATCH:
                    block_sum += flush(block_count, tx_in_block - len(pending) + 1)
            elif tag == _PMTINF:
                if pending:
                    block_sum += flush(block_count, tx_in_block - len(pending) + 1)
                where = f"{root_path}/PmtInf[{block_count}]"
                pmt_id = _text(elem, ["PmtInfId"], where, "PmtInfId")
                _check_reference(f"{where}/PmtInfId", pmt_id, "PmtInfId")
                payroll.block_ids.append(pmt_id)
                cat = elem.find(f"{_q('PmtTpInf')}/{_q('CtgyPurp')}/{_q('Cd')}")
                if cat is None or (cat.text or "").strip() not in CATEGORY_PURPOSES:
                    found = None if cat is None else (cat.text or "").strip()
                    raise PayrollFileError(
                        f"{where}/PmtTpInf/CtgyPurp/Cd",
                        f"category purpose must be one of {', '.join(CATEGORY_PURPOSES)}, "
                        f"got {found!r}",
                    )
                categories.add((cat.text or "").strip())
                debtor = _wallet_of(elem, ["DbtrAcct", "Id", "Othr", "Id"], where, "debtor")
                if payroll.debtor is not None and debtor != payroll.debtor:
                    raise PayrollFileError(
                        f"{where}/DbtrAcct/Id/Othr/Id",
                        f"debtor {debtor} differs from {payroll.debtor}: one debtor per file",
                    )
                payroll.debtor = debtor
                if tx_in_block == 0:
                    raise PayrollFileError(where, "no CdtTrfTxInf")
                nb = elem.find(_q("NbOfTxs"))
                ctrl = elem.find(_q("CtrlSum"))
                block_declared = (
                    "" if nb is None else (nb.text or "").strip(),
                    "" if ctrl is None else (ctrl.text or "").strip(),
                )
                if nb is not None and block_declared[0] != str(tx_in_block):
                    raise PayrollFileError(
                        f"{where}/NbOfTxs",
                        f"says {block_declared[0]} but the block has {tx_in_block} transactions",
                    )
                if ctrl is not None and _decimal_fen(block_declared[1], f"{where}/CtrlSum") != (
                    block_sum
                ):
                    raise PayrollFileError(
                        f"{where}/CtrlSum",
                        f"says {block_declared[1]} but the amounts sum to {_yuan(block_sum)}",
                    )
                elem.clear()
                parent = elem.getparent()
                if parent is not None:
                    parent.remove(elem)
                leftover.clear()  # it went with the block
                block_count += 1
                tx_in_block = 0
                block_sum = 0
    except etree.XMLSyntaxError as exc:
        raise PayrollFileError(f"line {exc.lineno}", f"not well-formed XML: {exc.msg}") from None
    where = f"{root_path}/GrpHdr"
    if not group:
        raise PayrollFileError(where, "missing GrpHdr")
    if block_count == 1:
        raise PayrollFileError(f"{root_path}/PmtInf", "no PmtInf")
    if group["NbOfTxs"] != str(len(payroll.payees)):
        raise PayrollFileError(
            f"{where}/NbOfTxs (line {group['line']})",
            f"says {group['NbOfTxs']} but the file has {len(payroll.payees)} transactions",
        )
    total = payroll.total_fen
    if _decimal_fen(group["CtrlSum"], f"{where}/CtrlSum") != total:
        raise PayrollFileError(
            f"{where}/CtrlSum (line {group['line']})",
            f"says {group['CtrlSum']} but the amounts sum to {_yuan(total)}",
        )
    payroll.msg_id = group["MsgId"]
    payroll.run_id = "pain001-" + _safe_id(payroll.msg_id)
    payroll.category_purpose = "/".join(sorted(categories))
    return payroll


def _safe_id(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9._-]{1,35}", text) and not text.startswith("."):
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def parse_file(path: str | Path) -> Payroll:
    """Parse a payroll file by its content: XML (``<?xml`` or ``<Document``) as pain.001,
    anything else as CSV. Raises ``PayrollFileError``."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return parse_pain001(path)
    return parse_csv(path)
