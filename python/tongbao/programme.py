"""Subsidy, coupon and red-envelope programmes on spending conditions (programmable money).

A programme is a spending condition (``docs/programmable-money.md``) plus who gets how much: a
recipient list or a seeded lottery, a fixed amount each or a seeded random split of a fixed
total (red envelopes). Everything random is recomputable from the seed and the inputs, so an
auditor can check who won and who got how much. The engine enforces the condition; this module
only builds the transactions:

- :meth:`Programme.define_tx`: the DEFINE transaction, signed by the issuer;
- :meth:`Programme.issue_txs`: earmarked outputs to the recipients, from the issuer's free
  value, chunked (``OUTPUTS_PER_TX``);
- :meth:`Programme.reclaim_txs`: after expiry, the unspent earmarked tokens back to the
  reclaimer (``INPUTS_PER_RECLAIM`` per transaction);
- :func:`programme_report`: issued, spent by merchant category, reclaimed, outstanding.

>>> import tongbao as tb
>>> lottery_winners(range(100, 110), 3, "demo") == lottery_winners(range(100, 110), 3, "demo")
True
>>> split = red_envelope_split(10_000, 5, "new-year")
>>> sum(split), len(split), min(split) >= 1
(10000, 5, True)
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from tongbao import _core
from tongbao.errors import InvalidArgument
from tongbao.ledger import ConditionInfo, Ledger
from tongbao.tx import define_condition, reclaim, sign, token_id, transaction_id
from tongbao.tx import encode as encode_tx
from tongbao.types import Kind

#: Earmarked outputs per issuing transaction (one more output is the issuer's change).
OUTPUTS_PER_TX = 1_000
#: Earmarked tokens per reclaim transaction.
INPUTS_PER_RECLAIM = 256
#: Most recipients of one programme.
RECIPIENTS_MAX = 10_000_000
SHANGHAI = timezone(timedelta(hours=8))


def _draw(seed: str, label: bytes, item: int) -> int:
    """A 64-bit number drawn from ``seed`` for ``item``: SHA-256, so anyone can recompute it."""
    digest = hashlib.sha256(seed.encode() + b"\x00" + label + item.to_bytes(8, "little")).digest()
    return int.from_bytes(digest[:8], "little")


def lottery_winners(applicants: Iterable[int], winners: int, seed: str) -> list[int]:
    """The ``winners`` applicants with the smallest draw ``SHA-256(seed, id)``, sorted by id.

    Reproducible and auditable: the draw of each applicant depends only on the seed and its id
    (not on the order of the list). Raises ``InvalidArgument`` when there are fewer applicants
    than winners.

    >>> lottery_winners([5, 6, 7, 8], 2, "s") == lottery_winners([8, 7, 6, 5], 2, "s")
    True
    """
    pool = sorted(set(int(a) for a in applicants))
    if winners > len(pool):
        raise InvalidArgument(f"lottery: {winners} winners but only {len(pool)} applicants")
    ranked = sorted(pool, key=lambda a: (_draw(seed, b"lottery", a), a))
    return sorted(ranked[:winners])


def red_envelope_split(total_fen: int, count: int, seed: str) -> list[int]:
    """Split ``total_fen`` into ``count`` random shares of at least 1 fen ("double mean": each
    share is drawn from 1 to twice the mean of what is left), from ``seed`` alone.

    >>> red_envelope_split(100, 3, "x") == red_envelope_split(100, 3, "x")
    True
    >>> red_envelope_split(2, 3, "x")
    Traceback (most recent call last):
    ...
    tongbao.errors.InvalidArgument: red envelope: 2 fen cannot give 3 shares of at least 1 fen
    """
    if count < 1 or total_fen < count:
        raise InvalidArgument(
            f"red envelope: {total_fen} fen cannot give {count} shares of at least 1 fen"
        )
    shares = []
    left = total_fen
    for i in range(count - 1):
        remaining = count - i
        high = min(2 * left // remaining, left - (remaining - 1))
        share = 1 + _draw(seed, b"envelope", i) % max(high, 1)
        share = min(share, left - (remaining - 1))
        shares.append(share)
        left -= share
    shares.append(left)
    return shares


def shanghai_ms(text: str) -> int:
    """Unix ms of an ISO date-time; without an offset it is Asia/Shanghai time.

    >>> shanghai_ms("2020-10-12T00:00:00")
    1602432000000
    >>> shanghai_ms("2020-10-11T16:00:00+00:00")
    1602432000000
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"not an ISO date-time: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=SHANGHAI)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class Programme:
    """A subsidy, coupon or red-envelope programme: a condition and its allocations."""

    name: str
    condition: int
    issuer: int
    reclaimer: int
    not_before_ms: int
    valid_until_ms: int
    #: (recipient wallet, amount in fen), sorted by wallet.
    allocations: tuple[tuple[int, int], ...]
    mccs: tuple[int, ...] = ()
    merchants: tuple[int, ...] = ()
    regions: tuple[int, ...] = ()
    not_transferable: bool = False
    not_redeemable: bool = False
    #: How the recipients and amounts were drawn (seed, applicants...), for the audit trail.
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def budget_fen(self) -> int:
        """Sum of the allocations."""
        return sum(a for _, a in self.allocations)

    def define_tx(self, keyring: _core.Keyring, timestamp_ms: int) -> bytes:
        """The DEFINE transaction of the programme's condition, signed by the issuer."""
        return define_condition(
            keyring,
            self.condition,
            issuer=self.issuer,
            reclaimer=self.reclaimer,
            not_before_ms=self.not_before_ms,
            valid_until_ms=self.valid_until_ms,
            timestamp_ms=timestamp_ms,
            mccs=self.mccs,
            merchants=self.merchants,
            regions=self.regions,
            not_transferable=self.not_transferable,
            not_redeemable=self.not_redeemable,
            reference=self.name.encode()[: _core.REFERENCE_LEN_MAX],
        )

    def issue_txs(
        self,
        ledger: Ledger,
        keyring: _core.Keyring,
        timestamp_ms: int,
        funding: list[tuple[bytes, int]] | None = None,
    ) -> list[bytes]:
        """Transactions that earmark every allocation from the issuer's free tokens, chained so
        they settle in one batch (each spends the previous one's change), in chunks of
        ``OUTPUTS_PER_TX`` recipients. Raises ``InvalidArgument`` when the issuer's free value
        does not cover what is left to issue.

        Safe to call again after a crash, two ways (docs/programmable-money.md):

        - ``funding`` given (the issuer's free ``(token, fen)`` the issuance was first planned
          from): the same transactions, byte for byte, every time; the ledger answers
          ``ALREADY_SETTLED`` for those that settled before the crash.
        - otherwise: a check of what was issued. Chunk *k* settles only after chunk *k-1*
          (its change, or the batch order), so the condition's ``issued_fen`` is the sum of
          the first *j* chunks: those are skipped and only the rest is built, from the
          issuer's free tokens as they are now. An ``issued_fen`` that is no such sum (the
          condition was issued by something else) raises ``InvalidArgument``.
        """
        allocations = list(self.allocations)
        chunks = [
            allocations[start : start + OUTPUTS_PER_TX]
            for start in range(0, len(allocations), OUTPUTS_PER_TX)
        ]
        first = 0
        if funding is None:
            info = ledger.condition(self.condition)
            issued = info.issued_fen if info is not None else 0
            done = 0
            while first < len(chunks) and done < issued:
                done += sum(a for _, a in chunks[first])
                first += 1
            if done != issued:
                raise InvalidArgument(
                    f"programme {self.name!r}: condition {self.condition} has {issued} fen "
                    f"issued, which is not the sum of a first run of its chunks: it was not "
                    f"issued by this programme; refusing to issue again"
                )
            unspent = ledger.unspent(self.issuer)
            free = [
                tv
                for tv, mark in zip(unspent, ledger.earmarks([t for t, _ in unspent]), strict=True)
                if mark == 0
            ]
        else:
            free = list(funding)
        free.sort(key=lambda tv: (-tv[1], tv[0]))
        need_all = sum(a for chunk in chunks[first:] for _, a in chunk)
        if sum(v for _, v in free) < need_all:
            raise InvalidArgument(
                f"programme {self.name!r}: issuer {self.issuer} has "
                f"{sum(v for _, v in free)} fen free, {need_all} fen is left to issue "
                f"(budget {self.budget_fen} fen)"
            )
        txs: list[bytes] = []
        change: tuple[bytes, int] | None = None
        for k in range(first, len(chunks)):
            chunk = chunks[k]
            need = sum(a for _, a in chunk)
            inputs: list[tuple[bytes, int]] = [change] if change else []
            while sum(v for _, v in inputs) < need:
                if len(inputs) >= _core.INPUTS_MAX:
                    raise InvalidArgument(
                        f"programme {self.name!r}: the issuer's tokens are too small to fund a "
                        f"chunk with {_core.INPUTS_MAX} inputs; consolidate them first"
                    )
                inputs.append(free.pop(0))
            have = sum(v for _, v in inputs)
            outputs: list[tuple[int, int] | tuple[int, int, int]] = [
                (w, a, self.condition) for w, a in chunk
            ]
            if have > need:
                outputs.append((self.issuer, have - need))
            body = encode_tx(
                Kind.TRANSFER,
                [t for t, _ in inputs],
                outputs,
                timestamp_ms,
                reference=f"{self.condition}:{k}".encode(),
            )
            tx = sign(keyring, body, [self.issuer])
            txs.append(tx)
            change = (
                (token_id(transaction_id(tx), len(outputs) - 1), have - need)
                if have > need
                else None
            )
        return txs

    def reclaim_txs(self, ledger: Ledger, keyring: _core.Keyring, timestamp_ms: int) -> list[bytes]:
        """RECLAIM transactions moving every unspent earmarked token of the programme back to
        the reclaimer (settle them at or after ``valid_until_ms``)."""
        tokens = ledger.condition_tokens(self.condition)
        txs = []
        for start in range(0, len(tokens), INPUTS_PER_RECLAIM):
            chunk = tokens[start : start + INPUTS_PER_RECLAIM]
            txs.append(
                reclaim(
                    keyring,
                    self.reclaimer,
                    [t for t, _, _ in chunk],
                    sum(v for _, _, v in chunk),
                    timestamp_ms,
                    reference=f"reclaim:{self.condition}:{start // INPUTS_PER_RECLAIM}".encode(),
                )
            )
        return txs


def _ids(table: dict[str, Any], key: str, where: str) -> tuple[int, ...]:
    """A list of ids, or a range ``{first = N, count = M}``."""
    value = table.get(key, [])
    if isinstance(value, dict):
        try:
            first, count = int(value["first"]), int(value["count"])
        except (KeyError, TypeError, ValueError):
            raise InvalidArgument(f"{where}: {key}: a range is {{first = N, count = M}}") from None
        if count < 0 or count > RECIPIENTS_MAX:
            raise InvalidArgument(f"{where}: {key}: count {count} out of range")
        return tuple(range(first, first + count))
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise InvalidArgument(f"{where}: {key}: a list of integers or {{first, count}}")
    return tuple(value)


def parse_programme(doc: dict[str, Any], where: str = "programme") -> Programme:
    """A :class:`Programme` from the parsed TOML of a programme config (see
    ``docs/programmable-money.md`` and ``examples/programmes/``). Raises ``InvalidArgument``
    naming the field.

    >>> p = parse_programme({"programme": {
    ...     "name": "demo", "condition": 7, "issuer": 500, "amount_fen": 1_000,
    ...     "not_before": "2020-10-12T00:00", "valid_until": "2020-10-19T00:00",
    ...     "recipients": [1001, 1002], "mccs": [5812]}})
    >>> p.budget_fen, p.allocations, p.reclaimer
    (2000, ((1001, 1000), (1002, 1000)), 500)
    """
    try:
        t = doc["programme"]
    except KeyError:
        raise InvalidArgument(f"{where}: missing table [programme]") from None

    def need(key: str, kind: type) -> Any:
        if key not in t:
            raise InvalidArgument(f"{where}: programme.{key}: missing")
        value = t[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise InvalidArgument(f"{where}: programme.{key}: expected {kind.__name__}")
        return value

    name = need("name", str)
    condition = need("condition", int)
    issuer = need("issuer", int)
    reclaimer = int(t.get("reclaimer", issuer))
    not_before_ms = shanghai_ms(need("not_before", str))
    valid_until_ms = shanghai_ms(need("valid_until", str))
    if valid_until_ms <= not_before_ms:
        raise InvalidArgument(f"{where}: programme.valid_until: must be after not_before")
    provenance: dict[str, Any] = {}
    lottery = doc.get("lottery")
    if lottery is not None:
        applicants = _ids(lottery, "applicants", f"{where}: lottery")
        seed = str(lottery.get("seed", ""))
        winners_n = int(lottery.get("winners", 0))
        if not seed or winners_n < 1:
            raise InvalidArgument(f"{where}: lottery: needs a seed and winners >= 1")
        recipients = tuple(lottery_winners(applicants, winners_n, seed))
        provenance["lottery"] = {
            "seed": seed,
            "applicants": len(applicants),
            "winners": winners_n,
        }
    else:
        recipients = _ids(t, "recipients", f"{where}: programme")
    if not recipients or len(set(recipients)) != len(recipients):
        raise InvalidArgument(f"{where}: programme.recipients: empty or with duplicates")
    envelope = doc.get("red_envelope")
    if envelope is not None:
        seed = str(envelope.get("seed", ""))
        total = int(envelope.get("total_fen", 0))
        amounts = red_envelope_split(total, len(recipients), seed)
        provenance["red_envelope"] = {"seed": seed, "total_fen": total}
    else:
        amount = need("amount_fen", int)
        if amount < 1:
            raise InvalidArgument(f"{where}: programme.amount_fen: must be positive")
        amounts = [amount] * len(recipients)
    allocations = tuple(sorted(zip(recipients, amounts, strict=True)))
    budget = t.get("budget_fen")
    total = sum(amounts)
    if budget is not None and int(budget) != total:
        raise InvalidArgument(
            f"{where}: programme.budget_fen: {budget} but the allocations add up to {total}"
        )
    return Programme(
        name=name,
        condition=condition,
        issuer=issuer,
        reclaimer=reclaimer,
        not_before_ms=not_before_ms,
        valid_until_ms=valid_until_ms,
        allocations=allocations,
        mccs=tuple(sorted(set(_ids(t, "mccs", f"{where}: programme")))),
        merchants=tuple(sorted(set(_ids(t, "merchants", f"{where}: programme")))),
        regions=tuple(sorted(set(_ids(t, "regions", f"{where}: programme")))),
        not_transferable=bool(t.get("not_transferable", False)),
        not_redeemable=bool(t.get("not_redeemable", False)),
        provenance=provenance,
    )


def load_programme(path: str | Path) -> Programme:
    """Read a programme config (TOML). Raises ``InvalidArgument`` naming the file and field."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"{p}: {exc}") from None
    return parse_programme(doc, str(p))


@dataclass(frozen=True)
class ProgrammeReport:
    """What a programme's earmarked value did: ``issued_fen = spent_fen + reclaimed_fen +
    outstanding_fen`` (the engine keeps the totals; this adds the budget and names)."""

    name: str
    condition: int
    budget_fen: int
    recipients: int
    issued_fen: int
    spent_by_mcc: dict[int, int]
    reclaimed_fen: int
    outstanding_fen: int

    @property
    def spent_fen(self) -> int:
        """Spent at merchants, all categories."""
        return sum(self.spent_by_mcc.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (amounts in fen)."""
        return {
            "name": self.name,
            "condition": self.condition,
            "budget_fen": self.budget_fen,
            "recipients": self.recipients,
            "issued_fen": self.issued_fen,
            "spent_fen": self.spent_fen,
            "spent_by_mcc": {str(m): v for m, v in sorted(self.spent_by_mcc.items())},
            "reclaimed_fen": self.reclaimed_fen,
            "outstanding_fen": self.outstanding_fen,
        }

    def render(self) -> str:
        """A plain-text table for the terminal.

        >>> r = ProgrammeReport("demo", 7, 2_000, 2, 2_000, {5812: 1_500}, 500, 0)
        >>> print(r.render())
        programme demo (condition 7): 2 recipients, budget ¥20.00
          issued              ¥20.00
          spent, mcc 5812     ¥15.00
          spent               ¥15.00
          reclaimed            ¥5.00
          outstanding          ¥0.00
        """
        rows = [("issued", self.issued_fen)]
        rows += [(f"spent, mcc {m}", v) for m, v in sorted(self.spent_by_mcc.items())]
        rows += [
            ("spent", self.spent_fen),
            ("reclaimed", self.reclaimed_fen),
            ("outstanding", self.outstanding_fen),
        ]
        lines = [
            f"programme {self.name} (condition {self.condition}): {self.recipients:,} "
            f"recipients, budget {_yuan(self.budget_fen)}"
        ]
        width = max(len(_yuan(v)) for _, v in rows)
        lines += [f"  {label:<16}{_yuan(v):>{width + 4}}" for label, v in rows]
        return "\n".join(lines)


def _yuan(fen: int) -> str:
    return f"¥{fen // 100:,}.{fen % 100:02d}"


def programme_report(ledger: Ledger, programme: Programme) -> ProgrammeReport:
    """The programme's report from the engine's totals. Raises ``InvalidArgument`` when the
    condition is not defined on this ledger."""
    info: ConditionInfo | None = ledger.condition(programme.condition)
    if info is None:
        raise InvalidArgument(f"condition {programme.condition} is not defined on this ledger")
    return ProgrammeReport(
        name=programme.name,
        condition=programme.condition,
        budget_fen=programme.budget_fen,
        recipients=len(programme.allocations),
        issued_fen=info.issued_fen,
        spent_by_mcc=dict(info.spent_by_mcc),
        reclaimed_fen=info.reclaimed_fen,
        outstanding_fen=info.outstanding_fen,
    )


@dataclass
class ProgrammeRun:
    """The outcome of :func:`run_programme`: the ledger it ran on, the report, and per phase
    the status counts (``{"issue": {"OK": 51}, ...}``)."""

    ledger: Ledger
    report: ProgrammeReport
    statuses: dict[str, dict[str, int]]


def run_programme(
    programme: Programme,
    spend_share: float = 0.7,
    merchant_count: int = 100,
    seed: int = 0,
    threads: int = 0,
    ledger_dir: str | Path | None = None,
    batch_txs: int = 50_000,
    on_batch: Callable[[str, int, dict[str, int]], None] | None = None,
) -> ProgrammeRun:
    """Run a programme end to end: open the wallets (central bank, operator, issuer,
    recipients, merchants of the allowed categories), fund the issuer, define, issue, let a
    ``spend_share`` of the recipients spend 50-100 % of their allocation at random merchants
    on random days of the window (one batch a day, at noon Shanghai time), reclaim the rest at
    ``valid_until`` and report. Supply is checked after each phase.

    In memory by default; with ``ledger_dir``, on a durable ledger there, and a re-run after a
    crash at any point completes the run without issuing (or paying) anything twice: every
    transaction up to the reclaim is deterministic (keys from a fixed seed, the issuer funded
    by one known token, :meth:`Programme.issue_txs` planned from it), so the ledger answers
    ``ALREADY_SETTLED`` for what settled before the crash; spending days already past on the
    ledger are skipped; the reclaim takes whatever earmarked tokens are left. Transactions
    settle ``batch_txs`` at a time; ``on_batch(phase, index, counts)`` is called after each
    batch is settled (and logged, on a durable ledger).

    >>> p = parse_programme({"programme": {
    ...     "name": "demo", "condition": 7, "issuer": 500, "amount_fen": 1_000,
    ...     "not_before": "2020-10-12T00:00", "valid_until": "2020-10-14T00:00",
    ...     "recipients": {"first": 10_000, "count": 50}, "mccs": [5812],
    ...     "not_transferable": True, "not_redeemable": True}})
    >>> run = run_programme(p, spend_share=0.5, merchant_count=5, threads=1)
    >>> r = run.report
    >>> r.issued_fen == r.spent_fen + r.reclaimed_fen and r.outstanding_fen == 0
    True
    >>> run.statuses["issue"], run.statuses["reclaim"]
    ({'OK': 1}, {'OK': 1})
    """
    import random

    from tongbao.tx import issue as issue_tx
    from tongbao.tx import transfer
    from tongbao.types import Scheme, Status, WalletKind

    rng = random.Random(seed)
    central_bank, operator = 1, 2
    recipients = [w for w, _ in programme.allocations]
    taken = {central_bank, operator, programme.issuer, programme.reclaimer, *recipients}
    if programme.merchants:
        merchants = list(programme.merchants)
    else:
        merchants = []
        next_id = 900_000_000
        while len(merchants) < merchant_count:
            if next_id not in taken:
                merchants.append(next_id)
            next_id += 1
    if taken & set(merchants):
        raise InvalidArgument("a merchant id is also a recipient, issuer or reserved id (1, 2)")
    if batch_txs < 1:
        raise InvalidArgument(f"batch_txs must be positive, got {batch_txs}")
    if ledger_dir is None:
        ledger = Ledger(threads=threads)
    else:
        ledger = Ledger.open(ledger_dir, threads=threads)
    keys = _core.Keyring()

    def open_wallets(ids: list[int], kind: WalletKind, **attrs: Any) -> None:
        # Keys are derived from a fixed seed: the same on a re-run. Register only the wallets
        # a crashed run had not registered yet.
        keys.generate(ids, int(Scheme.ED25519), b"tongbao")
        new = [w for w in ids if ledger.wallet(w) is None]
        if new:
            ledger.open_wallets(keys, new, kind, **attrs)

    open_wallets([central_bank], WalletKind.CENTRAL_BANK)
    open_wallets([operator], WalletKind.OPERATOR)
    issuers = sorted({programme.issuer, programme.reclaimer})
    open_wallets(issuers, WalletKind.CORPORATE, operator=operator)
    open_wallets(recipients, WalletKind.PERSONAL, operator=operator)
    mccs = list(programme.mccs) or [5999]
    region = programme.regions[0] if programme.regions else 0
    for i, mcc in enumerate(mccs):
        group = merchants[i :: len(mccs)]
        if group:
            open_wallets(group, WalletKind.MERCHANT, operator=operator, mcc=mcc, region=region)
    day_ms = 86_400_000
    t = programme.not_before_ms - day_ms
    statuses: dict[str, dict[str, int]] = {}

    def settle(phase: str, txs: list[bytes], at_ms: int) -> None:
        counts = statuses.setdefault(phase, {})
        for start in range(0, len(txs), batch_txs):
            result = ledger.settle(txs[start : start + batch_txs], at_ms)
            for code in result.statuses:
                name = Status(int(code)).name
                counts[name] = counts.get(name, 0) + 1
            if on_batch is not None:
                on_batch(phase, start // batch_txs, counts)
        ledger.check_invariants()

    budget = programme.budget_fen
    # Deterministic funding: the central bank issues the budget to the operator, which pays it
    # to the issuer in one known token; the issuance is planned from that token alone.
    funding = issue_tx(keys, central_bank, [(operator, budget)], t)
    paid = transfer(
        keys, [token_id(transaction_id(funding), 0)], [(programme.issuer, budget)], [operator], t
    )
    issued = programme.issue_txs(
        ledger, keys, t, funding=[(token_id(transaction_id(paid), 0), budget)]
    )
    if ledger.last_timestamp_ms <= t:  # else a crashed run had issued everything and gone on
        settle("fund", [funding], t)
        settle("fund", [paid], t)
        settle("define", [programme.define_tx(keys, t)], t)
        settle("issue", issued, t)
    # Each recipient's earmarked token: output i % OUTPUTS_PER_TX of chunk i // OUTPUTS_PER_TX.
    ids = [transaction_id(tx) for tx in issued]
    days = max(1, (programme.valid_until_ms - programme.not_before_ms) // day_ms)
    spends: dict[int, list[tuple[bytes, int]]] = {}
    for i, (wallet, amount) in enumerate(programme.allocations):
        if rng.random() >= spend_share:
            continue
        token = token_id(ids[i // OUTPUTS_PER_TX], i % OUTPUTS_PER_TX)
        day = rng.randrange(days)
        at_ms = min(
            programme.not_before_ms + day * day_ms + day_ms // 2, programme.valid_until_ms - 1
        )
        pay = max(1, amount * rng.randint(50, 100) // 100)
        outputs: list[tuple[int, int] | tuple[int, int, int]] = [(rng.choice(merchants), pay)]
        if pay < amount:
            outputs.append((wallet, amount - pay, programme.condition))
        body = encode_tx(Kind.TRANSFER, [token], outputs, at_ms)
        spends.setdefault(at_ms, []).append((body, wallet))
    for at_ms in sorted(spends):
        if at_ms < ledger.last_timestamp_ms:  # a day a crashed run had settled
            continue
        bodies = [b for b, _ in spends[at_ms]]
        signed = keys.sign(bodies, [[w] for _, w in spends[at_ms]])
        settle("spend", signed, at_ms)
    end = programme.valid_until_ms
    settle("reclaim", programme.reclaim_txs(ledger, keys, end), end)
    return ProgrammeRun(ledger, programme_report(ledger, programme), statuses)
