"""Seeded payroll files of any size, and a consistent world to pay them in.

``tongbao payroll generate`` writes a CSV or ``pain.001.001.09`` file (streamed, so a million
payees take constant memory) and, given a ledger directory, registers the wallets the file
names and funds the employer, so that ``tongbao payroll run`` works right away:

>>> import tempfile, tongbao as tb
>>> from pathlib import Path
>>> from tongbao.payroll import generate as g
>>> d = Path(tempfile.mkdtemp())
>>> spec = g.PayrollSpec(payees=5, seed=1)
>>> g.write_csv(spec, d / "p.csv")
>>> g.write_pain001(spec, d / "p.xml")
>>> ledger, keys = tb.Ledger(), tb.Keyring()
>>> g.setup_world(ledger, keys, spec)
>>> ledger.balance(spec.employer) == spec.total_fen() + spec.margin_fen
True
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

import tongbao as tb
from tongbao import _core
from tongbao.cluster import Cluster, wait_idle
from tongbao.errors import TongbaoError
from tongbao.payroll.inputs import PAIN001_NS
from tongbao.payroll.reports import atomic_text, iso_datetime, yuan_text
from tongbao.types import Status, WalletKind

CENTRAL_BANK_ID = 1
OPERATOR_ID = 1_000
EMPLOYER_ID = 500_000
PAYEE_BASE = 10_000_000
#: When the generated world is set up (2026-11-01 00:00 +08:00), in Unix ms.
WORLD_TIMESTAMP_MS = 1_761_926_400_000
#: Wallets registered per call while setting up a world.
REGISTER_CHUNK = 100_000


@dataclass(frozen=True)
class PayrollSpec:
    """A generated payroll: ``payees`` wallets ``payee_base + i`` paid by ``employer``, amounts
    drawn from ``seed`` between ``amount_min_fen`` and ``amount_max_fen``; ``margin_fen`` more
    than the total funds the employer in :func:`setup_world`."""

    payees: int
    seed: int = 0
    employer: int = EMPLOYER_ID
    payee_base: int = PAYEE_BASE
    amount_min_fen: int = 300_000
    amount_max_fen: int = 3_000_000
    category_purpose: str = "SALA"
    margin_fen: int = 100_000_00
    msg_id: str = ""

    def items(self) -> Iterator[tuple[int, int, str]]:
        """``(payee wallet, amount_fen, reference)`` for each payee, in file order."""
        rng = random.Random(self.seed)
        for i in range(self.payees):
            amount = rng.randint(self.amount_min_fen, self.amount_max_fen)
            yield self.payee_base + i, amount, f"E2E-{self.seed}-{i:07d}"

    def total_fen(self) -> int:
        return sum(a for _, a, _ in self.items())

    def message_id(self) -> str:
        return self.msg_id or f"PAY-{self.seed}-{self.payees}"


def write_csv(spec: PayrollSpec, path: str | Path, *, unit: str = "yuan") -> None:
    """Write the payroll as CSV with amounts in ``yuan`` (two decimals) or ``fen``."""
    with atomic_text(Path(path)) as f:
        f.write(f"payee_wallet,amount_{unit},reference\n")
        for payee, amount, ref in spec.items():
            shown = yuan_text(amount) if unit == "yuan" else str(amount)
            f.write(f"{payee},{shown},{ref}\n")


def write_pain001(spec: PayrollSpec, path: str | Path) -> None:
    """Write the payroll as a ``pain.001.001.09`` message, one PmtInf block."""
    total = spec.total_fen()
    with atomic_text(Path(path)) as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n')
        f.write(f'<Document xmlns="{PAIN001_NS}">\n<CstmrCdtTrfInitn>\n')
        f.write(
            f"<GrpHdr><MsgId>{escape(spec.message_id())}</MsgId>"
            f"<CreDtTm>{iso_datetime(WORLD_TIMESTAMP_MS)}</CreDtTm>"
            f"<NbOfTxs>{spec.payees}</NbOfTxs><CtrlSum>{yuan_text(total)}</CtrlSum>"
            "<InitgPty><Nm>tongbao payroll generate</Nm></InitgPty></GrpHdr>\n"
        )
        f.write(
            f"<PmtInf><PmtInfId>{escape(spec.message_id())}-1</PmtInfId><PmtMtd>TRF</PmtMtd>"
            f"<NbOfTxs>{spec.payees}</NbOfTxs><CtrlSum>{yuan_text(total)}</CtrlSum>"
            f"<PmtTpInf><CtgyPurp><Cd>{spec.category_purpose}</Cd></CtgyPurp></PmtTpInf>"
            "<ReqdExctnDt><Dt>2026-11-30</Dt></ReqdExctnDt><Dbtr><Nm>Employer</Nm></Dbtr>"
            f"<DbtrAcct><Id><Othr><Id>{spec.employer}</Id></Othr></Id></DbtrAcct>"
            "<DbtrAgt><FinInstnId><Othr><Id>TONGBAO</Id></Othr></FinInstnId></DbtrAgt>\n"
        )
        for payee, amount, ref in spec.items():
            f.write(
                f"<CdtTrfTxInf><PmtId><EndToEndId>{ref}</EndToEndId></PmtId>"
                f'<Amt><InstdAmt Ccy="CNY">{yuan_text(amount)}</InstdAmt></Amt>'
                f"<Cdtr><Nm>Payee {payee}</Nm></Cdtr>"
                f"<CdtrAcct><Id><Othr><Id>{payee}</Id></Othr></Id></CdtrAcct>"
                f"<RmtInf><Ustrd>{spec.category_purpose} {ref}</Ustrd></RmtInf></CdtTrfTxInf>\n"
            )
        f.write("</PmtInf>\n</CstmrCdtTrfInitn>\n</Document>\n")


def setup_world(
    ledger: tb.Ledger,
    keyring: _core.Keyring,
    spec: PayrollSpec,
    *,
    key_seed: bytes = b"tongbao",
    cluster: Cluster | None = None,
) -> None:
    """Register a central bank, an operator bank, the employer (corporate, class 1) and every
    payee (personal, class 1), with keys derived from ``key_seed``; issue the file's total plus
    ``margin_fen`` to the operator and pay it to the employer, at ``WORLD_TIMESTAMP_MS``.

    With ``cluster``, the same wallets are registered and the same transactions settled on the
    cluster too (``ledger`` is then a mirror that builds them, e.g. ``tb.Ledger()``): the
    cluster ends in the same state, token ids included, and is waited on until idle."""

    def register(ids: Sequence[int], kind: WalletKind, publics: Sequence[bytes]) -> None:
        if cluster is not None:
            operator = 0 if kind in (WalletKind.CENTRAL_BANK, WalletKind.OPERATOR) else OPERATOR_ID
            cluster.register_wallets(list(ids), int(kind), list(publics), operator=operator)

    def settle(txs: list[bytes], t: int) -> None:
        ledger.settle(txs, t)
        if cluster is not None:
            got = cluster.settle(txs, t)
            # ALREADY_SETTLED: a worker settled the entry, lost its lease before answering,
            # and the next owner answered the redelivered entry.
            if not np.isin(got, [Status.OK, Status.ALREADY_SETTLED]).all():
                names = [Status(int(x)).name for x in got]
                raise TongbaoError(f"setting up the payroll world on the cluster: {names}")
            wait_idle(cluster.redis)

    ledger.open_wallets(keyring, [CENTRAL_BANK_ID], WalletKind.CENTRAL_BANK, seed=key_seed)
    ledger.open_wallets(keyring, [OPERATOR_ID], WalletKind.OPERATOR, seed=key_seed)
    ledger.open_wallets(
        keyring, [spec.employer], WalletKind.CORPORATE, seed=key_seed, operator=OPERATOR_ID
    )
    register([CENTRAL_BANK_ID], WalletKind.CENTRAL_BANK, [keyring.public_key(CENTRAL_BANK_ID)])
    register([OPERATOR_ID], WalletKind.OPERATOR, [keyring.public_key(OPERATOR_ID)])
    register([spec.employer], WalletKind.CORPORATE, [keyring.public_key(spec.employer)])
    for start in range(0, spec.payees, REGISTER_CHUNK):
        ids = range(
            spec.payee_base + start, spec.payee_base + min(spec.payees, start + REGISTER_CHUNK)
        )
        # Payees never sign here: register them with the operator's public key (keys are
        # per wallet in the registry; a payee's own key matters only when it pays).
        public = keyring.public_key(OPERATOR_ID)
        ledger.register_wallets(
            list(ids), WalletKind.PERSONAL, [public] * len(ids), operator=OPERATOR_ID
        )
        register(ids, WalletKind.PERSONAL, [public] * len(ids))
    fund = spec.total_fen() + spec.margin_fen
    t = max(WORLD_TIMESTAMP_MS, ledger.last_timestamp_ms)
    issue = tb.issue(keyring, CENTRAL_BANK_ID, [(OPERATOR_ID, fund)], timestamp_ms=t)
    settle([issue], t)
    txs, _ = ledger.build_payments(keyring, [OPERATOR_ID], [spec.employer], [fund], t)
    settle(txs, t)
