"""A payroll run: pre-flight checks, a durable plan of signed transactions, settlement that
resumes after any crash, and the per-payee outcome.

The exactly-once design (``docs/decisions/0008-payroll-exactly-once.md``):

1. **Pre-flight** decides every item against the ledger as it is: unknown payee (``AC01``),
   frozen or closed payee or employer (``AC06``), over a limit (``AM02``), repeated reference
   (``AM05``), not fundable (``AM04``; all items, or in ``partial`` mode the items from the
   first one the funds do not cover).
2. **Plan**: the accepted items, in file order, are cut into chunks of at most
   ``chunk_outputs`` payees. One *funding* transaction spends the employer's largest tokens
   (deterministically: value descending, then token id) into one token per chunk, of exactly
   the chunk's total, plus change; chunk ``k`` spends funding output ``k`` and pays its payees,
   no change. Everything is built, then signed in one batch call into Rust
   (:meth:`tongbao.Keyring.sign`), with fixed timestamp and expiry, and the plan (the signed
   bytes and every item's decision) is written to the run directory and fsynced **before**
   anything is settled.
3. **Settle** the plan's transactions in order, in batches; each batch's statuses are appended
   to a progress log. ``OK`` and ``ALREADY_SETTLED`` both mean settled once: a re-run after a
   crash resubmits the very same bytes, and the ledger's idempotency by transaction id never
   applies one twice. Each payee appears in exactly one chunk, each chunk's input token can be
   spent once, so nobody is paid twice, whatever was or was not recorded before the crash.
4. **Report**: CSV and ``pain.002.001.10`` from the plan and the statuses only, so a re-run's
   report is byte-identical to an uninterrupted run's.

The engine is reached through :class:`PayrollLedger`, the small seam that
:class:`tongbao.Ledger` (embedded) and :class:`tongbao.payroll.distributed.ClusterPayrollLedger`
(the cluster, ``--redis``) both satisfy.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

import tongbao as tb
from tongbao import _core
from tongbao.errors import InvalidArgument, PayrollRunError, UnknownWallet
from tongbao.ledger import PayeeStates, WalletInfo
from tongbao.payroll.inputs import Payroll
from tongbao.types import Kind, Status, WalletStatus

#: Payees per chunk transaction (the funding transaction has one output per chunk).
CHUNK_OUTPUTS = 1_000
#: Most chunks a run may have: the funding transaction's outputs, less one for change.
CHUNKS_MAX = tb.OUTPUTS_MAX - 1
#: Chunk transactions per settled batch (one fsync and one progress record each).
BATCH_CHUNKS = 64
#: How often a run re-plans when its funding transaction lost its inputs to another payment.
REPLANS_MAX = 3
#: Validity of a plan's transactions: the engine's maximum (7 days). A run must finish within
#: it; afterwards its unsettled transactions are EXPIRED and can never apply.
PLAN_VALIDITY_MS = tb.VALIDITY_MS_MAX

_PLAN_MAGIC = b"TBPAYPLAN1"


class Reason(IntEnum):
    """A payee's outcome: PAID, or the ISO 20022 reason it was not paid."""

    PAID = 0
    AC01 = 1  # unknown account
    AC06 = 2  # blocked account (frozen or closed, payee or employer)
    AM02 = 3  # not allowed amount (over a wallet limit)
    AM04 = 4  # insufficient funds
    AM05 = 5  # duplicate
    MS03 = 6  # reason not specified (an unexpected engine status; see the report's detail)


#: What a chunk's engine status means for each of its payees.
STATUS_REASON: dict[Status, Reason] = {
    Status.OK: Reason.PAID,
    Status.ALREADY_SETTLED: Reason.PAID,
    Status.WALLET_FROZEN: Reason.AC06,
    Status.WALLET_CLOSED: Reason.AC06,
    Status.LIMIT_PAYMENT: Reason.AM02,
    Status.LIMIT_DAILY: Reason.AM02,
    Status.LIMIT_ANNUAL: Reason.AM02,
    Status.LIMIT_BALANCE: Reason.AM02,
    Status.INPUT_SPENT: Reason.AM04,
    Status.UNKNOWN_INPUT: Reason.AM04,
    Status.UNKNOWN_WALLET: Reason.AC01,
}

#: :data:`STATUS_REASON` as a lookup table over all 256 status values (MS03 where unmapped).
_REASON_OF_STATUS = np.array(
    [
        int(STATUS_REASON.get(Status(v), Reason.MS03))
        if v in Status._value2member_map_
        else Reason.MS03
        for v in range(256)
    ],
    dtype=np.uint8,
)


class Settled(Protocol):
    """What a settle gives back to a run: one status per transaction, in batch order."""

    @property
    def statuses(self) -> npt.NDArray[np.uint8]: ...


class PayrollLedger(Protocol):
    """What a payroll run needs from the engine: the reads of pre-flight and planning, and one
    batch-shaped ``settle``. :class:`tongbao.Ledger` (embedded) satisfies it, and so does
    :class:`tongbao.payroll.distributed.ClusterPayrollLedger` (the cluster)."""

    def wallet(self, wallet_id: int) -> WalletInfo | None: ...
    def payee_states(self, wallet_ids: Sequence[int] | npt.NDArray[np.uint64]) -> PayeeStates: ...
    def spendable(self, wallet_id: int) -> list[tuple[bytes, int]]: ...
    def outflow_room(self, wallet_id: int, timestamp_ms: int) -> tuple[int | None, int | None]: ...
    @property
    def last_timestamp_ms(self) -> int: ...
    def settle(self, batch: Sequence[bytes], timestamp_ms: int) -> Settled: ...


@dataclass
class Plan:
    """A run's durable plan: every item's pre-flight decision and chunk, and the signed
    transactions (``txs[0]`` the funding transaction, ``txs[1 + k]`` chunk ``k``)."""

    run_id: str
    file_sha256: str
    employer: int
    timestamp_ms: int
    expiry_ms: int
    partial: bool
    generation: int
    reasons: npt.NDArray[np.uint8]
    chunks: npt.NDArray[np.int32]
    txs: list[bytes]

    @property
    def chunk_count(self) -> int:
        return max(0, len(self.txs) - 1)

    def to_bytes(self) -> bytes:
        header = json.dumps(
            {
                "run_id": self.run_id,
                "file_sha256": self.file_sha256,
                "employer": self.employer,
                "timestamp_ms": self.timestamp_ms,
                "expiry_ms": self.expiry_ms,
                "partial": self.partial,
                "generation": self.generation,
                "items": len(self.reasons),
            },
            sort_keys=True,
        ).encode()
        body = b"".join(
            [
                struct.pack("<I", len(header)),
                header,
                self.reasons.astype(np.uint8).tobytes(),
                self.chunks.astype("<i4").tobytes(),
                _core.frame_batch(self.txs),
            ]
        )
        return _PLAN_MAGIC + struct.pack("<I", zlib.crc32(body)) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> Plan:
        if not data.startswith(_PLAN_MAGIC):
            raise PayrollRunError("payroll plan: bad magic (not a plan file)")
        (crc,) = struct.unpack_from("<I", data, len(_PLAN_MAGIC))
        body = data[len(_PLAN_MAGIC) + 4 :]
        if zlib.crc32(body) != crc:
            raise PayrollRunError("payroll plan: checksum mismatch (damaged plan file)")
        (hlen,) = struct.unpack_from("<I", body, 0)
        header = json.loads(body[4 : 4 + hlen])
        n = int(header["items"])
        at = 4 + hlen
        reasons = np.frombuffer(body, dtype=np.uint8, count=n, offset=at).copy()
        at += n
        chunks = np.frombuffer(body, dtype="<i4", count=n, offset=at).astype(np.int32)
        at += 4 * n
        txs = list(_core.unframe_batch(body[at:]))
        return cls(
            run_id=header["run_id"],
            file_sha256=header["file_sha256"],
            employer=int(header["employer"]),
            timestamp_ms=int(header["timestamp_ms"]),
            expiry_ms=int(header["expiry_ms"]),
            partial=bool(header["partial"]),
            generation=int(header["generation"]),
            reasons=reasons,
            chunks=chunks,
            txs=txs,
        )


# -- durable files ---------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdir_durable(path: Path) -> None:
    """Create ``path`` and missing parents, fsyncing each new entry's parent directory: a run
    directory that vanished in a power loss would lose its plan while the ledger kept what
    the plan settled, and a re-run would then plan (and pay) again."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        _fsync_dir(d.parent)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that after a crash it holds either the old or the new content: a
    temporary file, fsync, rename, fsync of the directory."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Progress:
    """The run's append-only progress log: one line per settled batch, ``first count statuses
    crc``; a line cut by a crash fails its checksum and is ignored (its batch is simply
    resubmitted, which is safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, tx_count: int) -> npt.NDArray[np.int16]:
        """Recorded status per plan transaction, -1 where none is recorded."""
        statuses = np.full(tx_count, -1, dtype=np.int16)
        if not self.path.exists():
            return statuses
        for line in self.path.read_bytes().split(b"\n"):
            body, _, crc = line.rpartition(b" ")
            if not body or f"{zlib.crc32(body):08x}".encode() != crc:
                continue
            first_text, count_text, codes_hex = body.split(b" ")
            first, count = int(first_text), int(count_text)
            codes = bytes.fromhex(codes_hex.decode())
            if len(codes) != count or first + count > tx_count:
                continue
            statuses[first : first + count] = np.frombuffer(codes, dtype=np.uint8)
        return statuses

    def append(self, first: int, codes: bytes) -> None:
        body = f"{first} {len(codes)} {codes.hex()}".encode()
        with open(self.path, "ab") as f:
            f.write(body + b" " + f"{zlib.crc32(body):08x}".encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())


# -- pre-flight ------------------------------------------------------------------------------


def preflight(
    ledger: PayrollLedger, payroll: Payroll, employer: int, partial: bool, now_ms: int
) -> tuple[npt.NDArray[np.uint8], list[tuple[bytes, int]]]:
    """Decide every item against the ledger as it is now: a :class:`Reason` per item (PAID
    means accepted), and the employer tokens that fund the accepted items (value descending,
    then token id; at most ``INPUTS_MAX``). Payees are read in one batch call
    (:meth:`tongbao.Ledger.payee_states`, the engine's own rules). Raises ``UnknownWallet``
    for an unknown employer."""
    n = len(payroll)
    reasons = np.zeros(n, dtype=np.uint8)
    boss = ledger.wallet(employer)
    if boss is None:
        raise UnknownWallet(f"employer wallet {employer} is not registered", employer)
    if payroll.duplicates:
        reasons[sorted(payroll.duplicates)] = Reason.AM05
    if boss.status != WalletStatus.ACTIVE:
        reasons[reasons == Reason.PAID] = Reason.AC06
        return reasons, []
    payees = np.frombuffer(payroll.payees, dtype=np.uint64)
    amounts = np.frombuffer(payroll.amounts_fen, dtype=np.uint64)
    unique, inverse = np.unique(payees, return_inverse=True)
    states = ledger.payee_states(unique)
    status = states.status[inverse]
    reasons[(reasons == Reason.PAID) & (status == PayeeStates.UNKNOWN)] = Reason.AC01
    reasons[(reasons == Reason.PAID) & (status != WalletStatus.ACTIVE)] = Reason.AC06
    # Balance caps that would refuse (not sweep) the excess, cumulative over this run.
    capped = (states.balance_cap_fen != PayeeStates.NO_CAP) & ~states.can_sweep
    capped &= unique != employer
    if capped.any():
        incoming: dict[int, int] = {}
        for i in np.flatnonzero((reasons == Reason.PAID) & capped[inverse]).tolist():
            u = int(inverse[i])
            balance, cap = int(states.balance_fen[u]), int(states.balance_cap_fen[u])
            after = balance + incoming.get(u, 0) + int(amounts[i])
            if after > max(cap, balance):
                reasons[i] = Reason.AM02
            else:
                incoming[u] = after - balance
    # The employer's own caps, as the engine judges them: per payment (one chunk is one
    # payment), and the room under the daily and annual caps (its parent's too).
    payment_cap_fen, out_room = ledger.outflow_room(employer, now_ms)
    if out_room is not None or payment_cap_fen is not None:
        out = 0
        for i in np.flatnonzero(reasons == Reason.PAID).tolist():
            amount = int(amounts[i])
            over_payment = payment_cap_fen is not None and amount > payment_cap_fen
            over_room = out_room is not None and out + amount > out_room
            if over_payment or over_room:
                reasons[i] = Reason.AM02
            else:
                out += amount
    # Funds: the employer's largest tokens, at most INPUTS_MAX of them. (Sums stay in u64:
    # at most PAYEES_MAX amounts of at most AMOUNT_FEN_MAX.)
    tokens = sorted(ledger.spendable(employer), key=lambda t: (-t[1], t[0]))[: tb.INPUTS_MAX]
    available = sum(v for _, v in tokens)
    accepted = np.flatnonzero(reasons == Reason.PAID)
    if len(accepted):
        running = np.cumsum(amounts[accepted], dtype=np.uint64)
        if not partial and int(running[-1]) > available:
            reasons[accepted] = Reason.AM04
        elif partial:
            over = np.flatnonzero(running > np.uint64(available))
            if len(over):
                reasons[accepted[over[0] :]] = Reason.AM04
    total = int(amounts[reasons == Reason.PAID].sum(dtype=np.uint64))
    chosen: list[tuple[bytes, int]] = []
    gathered = 0
    for token in tokens:
        if gathered >= total:
            break
        chosen.append(token)
        gathered += token[1]
    return reasons, chosen


# -- plan ------------------------------------------------------------------------------------


def chunk_items(
    amounts_fen: Sequence[int],
    accepted: npt.NDArray[np.int64],
    chunk_outputs: int,
    payment_cap_fen: int | None,
) -> list[npt.NDArray[np.int64]]:
    """Cut the accepted item indices, in order, into chunks of at most ``chunk_outputs``
    items whose totals stay within the employer's per-payment cap.

    >>> [c.tolist() for c in chunk_items([5, 5, 5, 5, 5], np.array([0, 1, 2, 4]), 3, None)]
    [[0, 1, 2], [4]]
    >>> [c.tolist() for c in chunk_items([5, 5, 5, 5], np.array([0, 1, 2, 3]), 3, 10)]
    [[0, 1], [2, 3]]
    """
    if payment_cap_fen is None:
        return [accepted[i : i + chunk_outputs] for i in range(0, len(accepted), chunk_outputs)]
    chunks: list[npt.NDArray[np.int64]] = []
    current: list[int] = []
    total = 0
    for i in accepted.tolist():
        amount = int(amounts_fen[i])
        if current and (len(current) >= chunk_outputs or total + amount > payment_cap_fen):
            chunks.append(np.array(current, dtype=np.int64))
            current, total = [], 0
        current.append(i)
        total += amount
    if current:
        chunks.append(np.array(current, dtype=np.int64))
    return chunks


def make_plan(
    ledger: PayrollLedger,
    keyring: _core.Keyring,
    payroll: Payroll,
    employer: int,
    *,
    partial: bool,
    timestamp_ms: int,
    chunk_outputs: int = CHUNK_OUTPUTS,
    generation: int = 0,
) -> Plan:
    """Pre-flight and build the run's signed transactions (nothing is settled or written).
    Raises ``UnknownWallet`` (employer), ``InvalidArgument`` (too many chunks) or
    ``PayrollRunError`` (the keyring cannot sign for the employer)."""
    if employer not in keyring:
        raise PayrollRunError(f"no signing key for employer wallet {employer} in the keyring")
    boss = ledger.wallet(employer)
    if boss is not None and keyring.public_key(employer) != boss.public_key:
        raise PayrollRunError(
            f"the signing key for wallet {employer} is not the one registered in the ledger"
        )
    reasons, tokens = preflight(ledger, payroll, employer, partial, timestamp_ms)
    accepted = np.flatnonzero(reasons == Reason.PAID).astype(np.int64)
    payment_cap_fen = ledger.outflow_room(employer, timestamp_ms)[0] if boss is not None else None
    chunks = chunk_items(payroll.amounts_fen, accepted, chunk_outputs, payment_cap_fen)
    if len(chunks) > CHUNKS_MAX:
        raise InvalidArgument(
            f"{len(accepted):,} payees in chunks of {chunk_outputs} make {len(chunks)} chunks; "
            f"at most {CHUNKS_MAX} fit one funding transaction: use larger chunks"
        )
    chunk_of = np.full(len(payroll), -1, dtype=np.int32)
    expiry_ms = timestamp_ms + PLAN_VALIDITY_MS
    txs: list[bytes] = []
    if chunks:
        payees = np.frombuffer(payroll.payees, dtype=np.uint64)
        amounts = np.frombuffer(payroll.amounts_fen, dtype=np.uint64)
        totals = [int(amounts[c].sum(dtype=np.uint64)) for c in chunks]
        gathered = sum(v for _, v in tokens)
        outputs = [(employer, t) for t in totals]
        if gathered > sum(totals):
            outputs.append((employer, gathered - sum(totals)))
        transfer = int(Kind.TRANSFER)
        funding = _core.encode_transaction(
            transfer,
            [t for t, _ in tokens],
            outputs,
            timestamp_ms,
            expiry_ms,
            b"payroll funding",
            [],
        )
        funding_id = tb.transaction_id(funding)
        bodies = [funding]
        for k, items in enumerate(chunks):
            chunk_of[items] = k
            bodies.append(
                _core.encode_transaction(
                    transfer,
                    [tb.token_id(funding_id, k)],
                    list(zip(payees[items].tolist(), amounts[items].tolist(), strict=True)),
                    timestamp_ms,
                    expiry_ms,
                    f"payroll chunk {k}".encode(),
                    [],
                )
            )
        txs = keyring.sign(bodies, [[employer]] * len(bodies))
    return Plan(
        run_id=payroll.run_id,
        file_sha256=payroll.file_sha256,
        employer=employer,
        timestamp_ms=timestamp_ms,
        expiry_ms=expiry_ms,
        partial=partial,
        generation=generation,
        reasons=reasons,
        chunks=chunk_of,
        txs=txs,
    )


# -- the run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    """The outcome of a payroll run: per item ``reasons`` (:class:`Reason`) and the engine
    status of its chunk (``-1`` when it was rejected before settlement), and the summary."""

    run_id: str
    directory: Path
    plan: Plan
    reasons: npt.NDArray[np.uint8]
    tx_statuses: npt.NDArray[np.int16]
    payees: int
    paid: int
    rejected: int
    amount_paid_fen: int
    amount_rejected_fen: int
    duration_s: float
    resumed: bool
    #: Seconds spent planning (pre-flight, build, sign, write), settling and reporting.
    phases_s: dict[str, float]
    group_status: str

    @property
    def payees_per_s(self) -> float:
        return self.payees / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        """The run summary as a JSON-ready dict."""
        return {
            "run_id": self.run_id,
            "group_status": self.group_status,
            "payees": self.payees,
            "paid": self.paid,
            "rejected": self.rejected,
            "amount_paid_fen": self.amount_paid_fen,
            "amount_rejected_fen": self.amount_rejected_fen,
            "rejected_by_reason": {
                r.name: int((self.reasons == r).sum()) for r in Reason if r != Reason.PAID
            },
            "transactions": len(self.plan.txs),
            "duration_s": round(self.duration_s, 3),
            "payees_per_s": round(self.payees_per_s, 1),
            "resumed": self.resumed,
            "phases_s": {k: round(v, 3) for k, v in self.phases_s.items()},
        }


#: Called after each settled batch with (payees settled so far, payees in the plan).
ProgressCallback = Callable[[int, int], None]


def runs_dir(ledger_path: str | os.PathLike[str]) -> Path:
    """Where a durable ledger's payroll runs live: ``<ledger>/payroll``."""
    return Path(ledger_path) / "payroll"


def run_payroll(
    ledger: PayrollLedger,
    keyring: _core.Keyring,
    payroll: Payroll,
    employer: int,
    run_root: str | os.PathLike[str],
    *,
    partial: bool = False,
    timestamp_ms: int | None = None,
    chunk_outputs: int = CHUNK_OUTPUTS,
    batch_chunks: int = BATCH_CHUNKS,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Run (or resume) ``payroll`` from wallet ``employer``: plan, settle, report.

    The run's directory is ``run_root/<run id>``. If it holds a plan, the run resumes it
    (the file must be the same: same SHA-256, same employer and mode) and settles what is not
    recorded as settled; otherwise it plans (``timestamp_ms``, default now and never before the
    ledger's last batch, becomes every transaction's timestamp) and writes the plan durably
    before settling anything. Reports ``report.csv``, ``pain.002.xml`` and ``summary.json``
    are written into the run's directory.

    Raises ``PayrollRunError`` (file or options differ from the recorded plan, plan expired,
    no key), ``UnknownWallet`` (employer) or ``InvalidArgument``.
    """
    from tongbao.payroll.reports import write_reports

    if chunk_outputs < 1 or chunk_outputs > tb.OUTPUTS_MAX:
        raise InvalidArgument(f"chunk_outputs must be 1 to {tb.OUTPUTS_MAX}")
    if batch_chunks < 1:
        raise InvalidArgument("batch_chunks must be at least 1")
    if payroll.debtor is not None and payroll.debtor != employer:
        raise PayrollRunError(
            f"the file's debtor wallet is {payroll.debtor}, not the employer {employer}"
        )
    started = time.perf_counter()
    phases = {"plan": 0.0, "settle": 0.0, "report": 0.0}
    directory = Path(run_root) / payroll.run_id
    mkdir_durable(directory)
    plan_path = directory / "plan.bin"

    def now() -> int:
        base = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        return max(base, ledger.last_timestamp_ms)

    resumed = plan_path.exists()
    plan: Plan | None = None
    if resumed:
        plan = Plan.from_bytes(plan_path.read_bytes())
        if plan.file_sha256 != payroll.file_sha256:
            raise PayrollRunError(
                f"run {payroll.run_id} was planned from a different file (SHA-256 "
                f"{plan.file_sha256[:16]}...): a MsgId is used once; give the new file its own"
            )
        if plan.employer != employer or plan.partial != partial:
            raise PayrollRunError(
                f"run {payroll.run_id} was planned with employer {plan.employer} and "
                f"partial={plan.partial}; re-run it with the same options"
            )
    for _attempt in range(REPLANS_MAX + 1):
        if plan is None:
            # After a dead plan, the next generation (its own progress log).
            generation = _next_generation(directory)
            t = time.perf_counter()
            plan = make_plan(
                ledger,
                keyring,
                payroll,
                employer,
                partial=partial,
                timestamp_ms=now(),
                chunk_outputs=chunk_outputs,
                generation=generation,
            )
            write_atomic(plan_path, plan.to_bytes())
            phases["plan"] += time.perf_counter() - t
        progress = Progress(directory / f"progress-{plan.generation}.log")
        statuses = progress.read(len(plan.txs))
        t = time.perf_counter()
        _settle(ledger, plan, progress, statuses, now, batch_chunks, on_progress)
        phases["settle"] += time.perf_counter() - t
        if len(plan.txs) and statuses[0] in (Status.INPUT_SPENT, Status.UNKNOWN_INPUT):
            # The funding transaction lost an input to another payment: it can never settle,
            # so no chunk of this plan can either. Plan again from the ledger as it is.
            os.replace(plan_path, directory / f"plan-dead-{plan.generation}.bin")
            _fsync_dir(directory)
            resumed = True
            plan = None
            continue
        break
    else:
        raise PayrollRunError(
            f"run {payroll.run_id}: the employer's tokens were spent by other payments "
            f"{REPLANS_MAX + 1} times while planning; stop other payments and re-run"
        )
    assert plan is not None
    reasons = plan.reasons.copy()
    item_status = np.full(len(reasons), -1, dtype=np.int16)
    accepted = plan.chunks >= 0
    if accepted.any():
        chunk_status = statuses[1:][plan.chunks[accepted]]
        item_status[accepted] = chunk_status
        reasons[accepted] = _REASON_OF_STATUS[chunk_status.astype(np.uint8)]
    amounts = np.asarray(payroll.amounts_fen, dtype=np.uint64)
    paid_mask = reasons == Reason.PAID
    paid = int(paid_mask.sum())
    n = len(reasons)
    group = "ACSC" if paid == n else ("RJCT" if paid == 0 else "PART")
    result = RunResult(
        run_id=payroll.run_id,
        directory=directory,
        plan=plan,
        reasons=reasons,
        tx_statuses=item_status,
        payees=n,
        paid=paid,
        rejected=n - paid,
        amount_paid_fen=int(amounts[paid_mask].astype(object).sum()) if paid else 0,
        amount_rejected_fen=int(amounts[~paid_mask].astype(object).sum()) if paid < n else 0,
        duration_s=0.0,
        phases_s=phases,
        resumed=resumed,
        group_status=group,
    )
    t = time.perf_counter()
    write_reports(result, payroll)
    phases["report"] = time.perf_counter() - t
    result.duration_s = time.perf_counter() - started
    write_atomic(
        directory / "summary.json",
        json.dumps(result.summary(), indent=2, sort_keys=True).encode() + b"\n",
    )
    return result


def _next_generation(directory: Path) -> int:
    dead = [int(p.stem.rsplit("-", 1)[1]) for p in directory.glob("plan-dead-*.bin")]
    return max(dead, default=-1) + 1


def _settle(
    ledger: PayrollLedger,
    plan: Plan,
    progress: Progress,
    statuses: npt.NDArray[np.int16],
    now: Callable[[], int],
    batch_chunks: int,
    on_progress: ProgressCallback | None,
) -> None:
    sizes = np.bincount(plan.chunks[plan.chunks >= 0], minlength=plan.chunk_count)
    total = int(sizes.sum())
    done = int(sizes[statuses[1:] >= 0].sum()) if plan.chunk_count else 0
    if on_progress is not None:
        on_progress(done, total)
    pending = [i for i in range(len(plan.txs)) if statuses[i] < 0]
    if pending and now() > plan.expiry_ms:
        raise PayrollRunError(
            f"run {plan.run_id}: its plan expired at {plan.expiry_ms} (7 days after planning) "
            f"with {len(pending)} transactions not recorded; they can no longer apply. Check "
            "the ledger (tongbao verify-log) before paying the rest with a new file"
        )
    # Batches of consecutive pending transactions (the funding transaction goes first).
    start = 0
    while start < len(pending):
        group = [pending[start]]
        while (
            start + len(group) < len(pending)
            and len(group) < batch_chunks
            and pending[start + len(group)] == group[-1] + 1
        ):
            group.append(pending[start + len(group)])
        start += len(group)
        result = ledger.settle([plan.txs[i] for i in group], now())
        codes = result.statuses.astype(np.uint8).tobytes()
        progress.append(group[0], codes)
        statuses[group[0] : group[0] + len(group)] = result.statuses
        if on_progress is not None:
            settled = sum(int(sizes[i - 1]) for i in group if i > 0)
            done += settled
            on_progress(done, total)


def read_status(run_root: str | os.PathLike[str], run_id: str) -> dict[str, Any]:
    """What is known about run ``run_id`` under ``run_root``: its summary once finished,
    otherwise its plan and how many of its transactions are recorded as settled.
    Raises ``InvalidArgument`` for an unknown run."""
    directory = Path(run_root) / run_id
    if not directory.is_dir():
        raise InvalidArgument(f"no payroll run {run_id!r} under {run_root}")
    summary = directory / "summary.json"
    if summary.exists():
        out: dict[str, Any] = json.loads(summary.read_bytes())
        out["state"] = "finished"
        return out
    plan_path = directory / "plan.bin"
    if not plan_path.exists():
        return {"run_id": run_id, "state": "not planned"}
    plan = Plan.from_bytes(plan_path.read_bytes())
    statuses = Progress(directory / f"progress-{plan.generation}.log").read(len(plan.txs))
    return {
        "run_id": run_id,
        "state": "in progress (re-run the same file to complete it)",
        "payees": len(plan.reasons),
        "accepted": int((plan.chunks >= 0).sum()),
        "transactions": len(plan.txs),
        "transactions_recorded": int((statuses >= 0).sum()),
        "plan_sha256": hashlib.sha256(plan_path.read_bytes()).hexdigest(),
    }
