"""The macro benchmark behind ``tongbao bench``: the engine against its ceiling and its baselines,
measured side by side in one run on one machine, with the ratios the project targets.

What is measured (every case checks its results; a fast wrong answer fails the run):

* **raw batch verify**: :class:`tongbao._core.BatchVerifier` on the very signatures of the
  payment batch (keys parsed once, the ledger's parallel code path): the ceiling for settle;
* **settle**: :meth:`tongbao.Ledger.settle` of one batch of 1-input, 2-output payments (person
  ``i`` pays merchant ``i``, with change), Ed25519 and SM2 payers, at 1 thread and at all; all
  statuses must be OK, supply conserved, the state digest equal to a reference ledger's;
* **settle, signatures off**: the trusted-replay path on the same batch (same digest);
* **naive**: the pure-Python ledger of :mod:`tongbao.naive` on the same shape, with
  ``cryptography`` and PyNaCl when installed;
* **openssl speed sm2** (verify/s, one process, wall clock) when ``openssl`` is on the PATH,
  interleaved with the SM2 raw verify rounds;
* **memory**: peak resident bytes per unspent token at 1M and 10M tokens, each in a fresh
  subprocess (``python -m tongbao.bench memory N``);
* **controls**: a batch with corrupted signatures must answer BAD_SIGNATURE exactly there, in
  settle, in raw verify and in the naive ledger.

Times are the best of ``rounds`` (the least disturbed by other processes), and the cases of a
ratio run interleaved, round by round (raw verify and settle; 1 thread and all), so both see the
same background load; ratios are between numbers of the same run. A small run:

>>> config = BenchConfig.quick(batch_size=32, rounds=1, memory_tokens=(), sm2=False)
>>> result = run(config)
>>> all(c.passed for c in result.checks)
True
>>> sorted({m.case for m in result.measurements})  # doctest: +NORMALIZE_WHITESPACE
['naive', 'naive sig-off', 'raw verify', 'settle', 'settle sig-off']
>>> [t.name for t in result.targets][:2]
['Ed25519 settle / raw verify, 1t', 'Ed25519 settle / raw verify, all']
"""

from __future__ import annotations

import functools
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tongbao as tb
from tongbao import _core

#: Wallet ids of the workload.
CENTRAL_BANK = 1
OPERATOR = 2
PERSON_BASE = 1_000
MERCHANT_BASE = 1_000_000_000
#: Each person starts with one token of this value.
OPENING_FEN = 10_000
T_SETUP_MS = 1_000_000
T_BATCH_MS = 2_000_000
#: Outputs per transfer when making tokens for the memory probe.
MEMORY_OUTPUTS = 1_000
#: Transfers per settled batch in the memory probe.
MEMORY_BATCH_TXS = 100
#: Wallets the memory probe's tokens are spread over.
MEMORY_WALLETS = 100_000
#: Most tokens a memory probe makes.
MEMORY_TOKENS_MAX = 100_000_000
#: Signatures corrupted in the bad-signature controls.
CONTROL_BAD_INDICES = (0, 5, 17)

#: The issue's targets.
TARGET_SETTLE_OVER_VERIFY = 0.8
TARGET_OVER_NAIVE_MACHINE = 15.0
TARGET_OVER_NAIVE_CORE = 4.0
TARGET_SM2_OVER_OPENSSL = 1.5
TARGET_SIG_OFF_TX_PER_S_PER_CORE = 1_000_000.0
TARGET_BYTES_PER_TOKEN = 200.0
TARGET_MEMORY_TOKENS = 10_000_000


def all_threads() -> int:
    """The threads "all" means: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BenchConfig:
    """What to run. ``batch_size`` transactions per timed batch; the sweep (for the plot) uses
    prefixes of that batch. :meth:`quick` and :meth:`full` are the two presets."""

    batch_size: int = 4096
    rounds: int = 3
    sweep_batch_sizes: tuple[int, ...] = (64, 256, 1024, 4096)
    naive_batch_size: int = 2048
    memory_tokens: tuple[int, ...] = (1_000_000, 10_000_000)
    threads: int = field(default_factory=all_threads)
    openssl: bool = True
    sm2: bool = True

    @classmethod
    def full(cls, **changes: Any) -> BenchConfig:
        """The default run (a few minutes on 2 cores, most of it making 10M tokens)."""
        return replace(cls(), **changes)

    @classmethod
    def quick(cls, **changes: Any) -> BenchConfig:
        """Smaller batches and no 10M-token probe (well under a minute)."""
        quick = cls(
            batch_size=1024,
            rounds=3,
            sweep_batch_sizes=(64, 256, 1024),
            naive_batch_size=512,
            memory_tokens=(1_000_000,),
        )
        return replace(quick, **changes)

    def validate(self) -> None:
        """Raise :class:`tongbao.InvalidArgument` for sizes out of range."""
        if not 1 <= self.batch_size <= tb.BATCH_TX_COUNT_MAX:
            raise tb.InvalidArgument(f"batch size 1..{tb.BATCH_TX_COUNT_MAX}")
        if self.batch_size <= max(CONTROL_BAD_INDICES):
            raise tb.InvalidArgument(f"batch size must exceed {max(CONTROL_BAD_INDICES)}")
        if self.rounds < 1 or self.threads < 1 or self.naive_batch_size < 1:
            raise tb.InvalidArgument("rounds, threads and the naive batch size are at least 1")
        if any(not 0 < n <= MEMORY_TOKENS_MAX for n in self.memory_tokens):
            raise tb.InvalidArgument(f"memory probes make 1..{MEMORY_TOKENS_MAX:,} tokens")


@dataclass(frozen=True)
class Measurement:
    """One throughput: ``rate`` ``unit`` (transactions or signatures per second)."""

    case: str
    variant: str
    threads: int
    batch_size: int
    rate: float
    unit: str
    rounds: int


@dataclass(frozen=True)
class MemoryProbe:
    """Resident memory of a ledger holding ``tokens`` unspent tokens (fresh process)."""

    tokens: int
    wallets: int
    peak_bytes_per_token: float
    resident_bytes_per_token: float
    build_s: float


@dataclass(frozen=True)
class Check:
    """A correctness check a benchmark made."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Target:
    """A ratio or number against the issue's goal; ``passed`` is None when not measured."""

    name: str
    value: float | None
    goal: float
    at_most: bool
    passed: bool | None
    note: str = ""


@dataclass
class BenchResult:
    """Everything one run measured."""

    config: BenchConfig
    machine: dict[str, Any]
    measurements: list[Measurement] = field(default_factory=list)
    memory: list[MemoryProbe] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    openssl_sm2_verify_per_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def find(self, case: str, variant: str, threads: int, batch_size: int) -> float | None:
        """The rate of one measurement, or None."""
        for m in self.measurements:
            if (m.case, m.variant, m.threads, m.batch_size) == (case, variant, threads, batch_size):
                return m.rate
        return None

    def check(self, name: str, passed: bool, detail: str = "") -> None:
        """Record a correctness check."""
        self.checks.append(Check(name, bool(passed), detail))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``tongbao bench --json``)."""
        return {
            "config": asdict(self.config),
            "machine": self.machine,
            "measurements": [asdict(m) for m in self.measurements],
            "memory": [asdict(m) for m in self.memory],
            "openssl_sm2_verify_per_s": self.openssl_sm2_verify_per_s,
            "checks": [asdict(c) for c in self.checks],
            "targets": [asdict(t) for t in self.targets],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Case:
    """One timed case: ``timed(setup())`` per round (setup not timed); ``record(seconds, done)``
    gets the best time and each round's ``(state, output)``, checks them and records the rate."""

    setup: Callable[[], Any]
    timed: Callable[[Any], Any]
    record: Callable[[float, list[tuple[Any, Any]]], None]


def measure(rounds: int, cases: Sequence[Case]) -> None:
    """Run ``rounds`` rounds of every case, interleaved (round 1 of each case, then round 2, ...)
    so that cases compared in a ratio see the same background load; keep each case's best."""
    best = [float("inf")] * len(cases)
    done: list[list[tuple[Any, Any]]] = [[] for _ in cases]
    for _ in range(rounds):
        for k, case in enumerate(cases):
            state = case.setup()
            start = time.perf_counter()
            out = case.timed(state)
            best[k] = min(best[k], time.perf_counter() - start)
            done[k].append((state, out))
    for k, case in enumerate(cases):
        case.record(best[k], done[k])


# -- the tongbao workload --------------------------------------------------------------------


def amount_fen(i: int) -> int:
    """What person ``i`` pays merchant ``i``."""
    return 1_000 + i % 500


@dataclass(frozen=True)
class Workload:
    """Registered wallets, the setup batches that fund them, the batch to time and the state
    digest after it. Persons use ``scheme``; everyone else Ed25519."""

    scheme: tb.Scheme
    n: int
    registrations: list[tuple[list[int], tb.WalletKind, tb.Scheme, list[bytes]]]
    setup: list[list[bytes]]
    batch: list[bytes]
    digest_after: bytes
    payer_keys: list[bytes]

    def fresh_ledger(self, threads: int, verify: bool) -> tb.Ledger:
        """A new ledger in the state the batch was built against."""
        ledger = tb.Ledger(threads=threads, verify_signatures=verify)
        for ids, kind, scheme, publics in self.registrations:
            ledger.register_wallets(ids, kind, publics, schemes=scheme)
        for txs in self.setup:
            if not ledger.settle(txs, T_SETUP_MS).ok:
                raise AssertionError("workload setup did not settle")
        return ledger


@functools.cache
def workload(scheme: tb.Scheme, n: int) -> Workload:
    """Build (once per process) the workload of ``n`` payments by ``scheme`` payers."""
    keys = tb.Keyring()
    persons = list(range(PERSON_BASE, PERSON_BASE + n))
    merchants = list(range(MERCHANT_BASE, MERCHANT_BASE + n))
    registrations = [
        (ids, kind, s, keys.generate(ids, int(s), b"tongbao bench"))
        for ids, kind, s in (
            ([CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK, tb.Scheme.ED25519),
            ([OPERATOR], tb.WalletKind.OPERATOR, tb.Scheme.ED25519),
            (persons, tb.WalletKind.PERSONAL, scheme),
            (merchants, tb.WalletKind.MERCHANT, tb.Scheme.ED25519),
        )
    ]
    ledger = tb.Ledger(verify_signatures=False)
    for ids, kind, s, publics in registrations:
        ledger.register_wallets(ids, kind, publics, schemes=s)
    issue = [tb.issue(keys, CENTRAL_BANK, [(OPERATOR, n * OPENING_FEN)], T_SETUP_MS)]
    assert ledger.settle(issue, T_SETUP_MS).ok
    funding, skipped = ledger.build_payments(
        keys, [OPERATOR] * n, persons, [OPENING_FEN] * n, T_SETUP_MS
    )
    assert not skipped and ledger.settle(funding, T_SETUP_MS).ok
    batch, skipped = ledger.build_payments(
        keys, persons, merchants, [amount_fen(i) for i in range(n)], T_BATCH_MS
    )
    assert not skipped and ledger.settle(batch, T_BATCH_MS).ok
    ledger.check_invariants()
    return Workload(
        scheme,
        n,
        registrations,
        [issue, funding],
        batch,
        ledger.state_digest(),
        registrations[2][3],
    )


def corrupt_signature(tx: bytes) -> bytes:
    """``tx`` with one bit of its (last) signature flipped."""
    return tx[:-10] + bytes([tx[-10] ^ 0x01]) + tx[-9:]


def check_settled(
    result: BenchResult, name: str, work: Workload, ledger: tb.Ledger, settlement: tb.Settlement
) -> None:
    """All OK, supply conserved, the reference digest, the expected balances."""
    counts = settlement.counts()
    ok = counts.get(tb.Status.OK, 0)
    result.check(f"{name}: all {work.n} statuses OK", ok == work.n, str(counts))
    try:
        ledger.check_invariants()
        conserved = ledger.supply().outstanding_fen == work.n * OPENING_FEN
    except tb.InvariantViolation as exc:
        conserved = False
        result.notes.append(f"{name}: {exc}")
    result.check(f"{name}: supply conserved", conserved)
    result.check(f"{name}: state digest as reference", ledger.state_digest() == work.digest_after)
    last = work.n - 1
    result.check(
        f"{name}: balances",
        ledger.balance(MERCHANT_BASE + last) == amount_fen(last)
        and ledger.balance(PERSON_BASE + last) == OPENING_FEN - amount_fen(last),
    )


def settle_case(
    result: BenchResult, work: Workload, threads: int, verify: bool, n: int, rounds: int
) -> Case:
    """Settle the first ``n`` payments of the workload on fresh ledgers; records tx/s."""
    batch = work.batch[:n]
    variant = f"{work.scheme.name.lower()}" if verify else "sig-off"
    name = f"settle {variant} {threads}t n={n}"

    def record(seconds: float, done: list[tuple[Any, Any]]) -> None:
        for ledger, settlement in done:
            if n == work.n:
                check_settled(result, name, work, ledger, settlement)
            else:
                result.check(f"{name}: all statuses OK", settlement.ok)
        case = "settle" if verify else "settle sig-off"
        result.measurements.append(
            Measurement(case, work.scheme.name.lower(), threads, n, n / seconds, "tx/s", rounds)
        )

    return Case(
        lambda: work.fresh_ledger(threads, verify),
        lambda ledger: ledger.settle(batch, T_BATCH_MS),
        record,
    )


def control_settle(result: BenchResult, work: Workload, threads: int) -> None:
    """Corrupted signatures must come back BAD_SIGNATURE exactly where they are."""
    batch = list(work.batch)
    for i in CONTROL_BAD_INDICES:
        batch[i] = corrupt_signature(batch[i])
    ledger = work.fresh_ledger(threads, verify=True)
    statuses = ledger.settle(batch, T_BATCH_MS).statuses
    bad = {i for i, s in enumerate(statuses) if s != tb.Status.OK}
    result.check(
        f"control: settle {work.scheme.name.lower()} finds the corrupted signatures",
        bad == set(CONTROL_BAD_INDICES)
        and all(statuses[i] == tb.Status.BAD_SIGNATURE for i in CONTROL_BAD_INDICES),
        f"non-OK at {sorted(bad)}",
    )
    ledger.check_invariants()


def verify_inputs(work: Workload) -> tuple[list[int], list[bytes], list[bytes]]:
    """Key indices, messages (tx ids) and signatures of the workload's batch."""
    messages = [tb.transaction_id(tx) for tx in work.batch]
    signatures = [bytes(tb.decode(tx)["signatures"][0][1]) for tx in work.batch]
    return list(range(work.n)), messages, signatures


def raw_verify_case(result: BenchResult, work: Workload, threads: int, rounds: int) -> Case:
    """Raw batch verification of the batch's signatures; records signatures/s. Runs the
    bad-signature control at once (which also warms up lazily built tables and threads)."""
    verifier = _core.BatchVerifier([int(work.scheme)] * work.n, work.payer_keys, threads)
    indices, messages, signatures = verify_inputs(work)
    name = f"raw verify {work.scheme.name.lower()} {threads}t"
    bad_signatures = list(signatures)
    for i in CONTROL_BAD_INDICES:
        bad_signatures[i] = bytes([bad_signatures[i][0] ^ 0x01]) + bad_signatures[i][1:]
    got = verifier.verify(indices, messages, bad_signatures)
    result.check(
        f"control: {name} finds the corrupted signatures",
        {i for i, v in enumerate(got) if v == 0} == set(CONTROL_BAD_INDICES),
    )

    def record(seconds: float, done: list[tuple[Any, Any]]) -> None:
        result.check(f"{name}: all valid", all(v == bytes([1]) * work.n for _, v in done))
        result.measurements.append(
            Measurement(
                "raw verify", work.scheme.name.lower(), threads, work.n, work.n / seconds,
                "sig/s", rounds,
            )
        )  # fmt: skip

    return Case(lambda: None, lambda _: verifier.verify(indices, messages, signatures), record)


# -- the naive baseline ----------------------------------------------------------------------


def naive_backends() -> list[str]:
    """The naive ledger's signature libraries that are installed."""
    found = []
    for backend, module in (("cryptography", "cryptography"), ("pynacl", "nacl")):
        try:
            __import__(module)
        except ImportError:
            continue
        found.append(backend)
    return found


def bench_naive(result: BenchResult, n: int, rounds: int) -> None:
    """The naive ledger on ``n`` 1-in/2-out payments, per backend, signatures on and off."""
    backends = naive_backends()
    if "cryptography" not in backends:
        result.notes.append("naive baseline skipped: `cryptography` is not installed")
        return
    from tongbao.naive import NaiveLedger, Wallets

    persons = list(range(PERSON_BASE, PERSON_BASE + n))
    wallets = Wallets(persons + list(range(MERCHANT_BASE, MERCHANT_BASE + n)))

    def fresh(verify: bool, backend: str) -> tuple[NaiveLedger, list[bytes]]:
        ledger = NaiveLedger(verify_signatures=verify, backend=backend)
        for w in wallets.keys:
            ledger.register(w, wallets.public_key(w))
        return ledger, [ledger.mint(PERSON_BASE + i, OPENING_FEN) for i in range(n)]

    _, tokens = fresh(False, "cryptography")  # minting is deterministic
    batch = [
        wallets.transfer(
            [(tokens[i], p)],
            [(MERCHANT_BASE + i, amount_fen(i)), (p, OPENING_FEN - amount_fen(i))],
            T_BATCH_MS,
        )
        for i, p in enumerate(persons)
    ]

    def case(backend: str, verify: bool) -> Case:
        variant = backend if verify else "sig-off"
        name = f"naive {variant}"
        if verify:
            bad = list(batch)
            for i in CONTROL_BAD_INDICES:
                bad[i] = corrupt_signature(bad[i])
            statuses = fresh(True, backend)[0].settle(bad)
            result.check(
                f"control: {name} finds the corrupted signatures",
                {i for i, s in enumerate(statuses) if s != tb.Status.OK} == set(CONTROL_BAD_INDICES)
                and all(statuses[i] == tb.Status.BAD_SIGNATURE for i in CONTROL_BAD_INDICES),
            )

        def record(seconds: float, done: list[tuple[Any, Any]]) -> None:
            for ledger, statuses in done:
                result.check(f"{name}: all statuses OK", statuses == [tb.Status.OK] * n)
                try:
                    ledger.check_invariants()
                    conserved = ledger.minted_fen == n * OPENING_FEN
                    result.check(f"{name}: supply conserved", conserved)
                except AssertionError as exc:
                    result.check(f"{name}: supply conserved", False, str(exc))
            kind = "naive" if verify else "naive sig-off"
            result.measurements.append(
                Measurement(kind, variant, 1, n, n / seconds, "tx/s", rounds)
            )

        return Case(lambda: fresh(verify, backend)[0], lambda ledger: ledger.settle(batch), record)

    measure(rounds, [*(case(b, True) for b in backends), case("cryptography", False)])


# -- openssl and memory ----------------------------------------------------------------------


def openssl_sm2_verify_per_s(seconds: int = 1) -> float | None:
    """``openssl speed -elapsed -seconds N sm2`` verify/s (one process), or None if unavailable.
    ``-elapsed``: wall-clock time like every other number here (by default openssl divides by
    its user CPU time, which on a loaded machine flatters it against wall-clock rates)."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "speed", "-elapsed", "-seconds", str(seconds), "sm2"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        match = re.match(r"\s*256 bits SM2.*\s([\d.]+)\s+([\d.]+)\s*$", line)
        if match:
            return float(match.group(2))
    return None


def openssl_case(result: BenchResult) -> Case:
    """``openssl speed sm2`` as a case interleaved with SM2 raw verify; records the best rate."""

    def record(_: float, done: list[tuple[Any, Any]]) -> None:
        rates = [rate for _, rate in done if rate is not None]
        result.openssl_sm2_verify_per_s = max(rates, default=None)
        if not rates:
            result.notes.append("openssl speed sm2 not available")

    return Case(lambda: None, lambda _: openssl_sm2_verify_per_s(), record)


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_probe(tokens: int, wallets: int = MEMORY_WALLETS) -> MemoryProbe:
    """Make ``tokens`` unspent tokens in a fresh in-memory ledger (signatures off, transfers of
    :data:`MEMORY_OUTPUTS` outputs) and measure resident memory per token. Run it in a fresh
    process (``python -m tongbao.bench memory N``) for a clean peak. Raises ``AssertionError``
    if the ledger does not hold exactly the tokens it should or does not conserve supply."""
    wallets = max(1, min(wallets, tokens))
    ledger = tb.Ledger(threads=1, verify_signatures=False)
    keys = tb.Keyring()
    people = list(range(PERSON_BASE, PERSON_BASE + wallets))
    ledger.open_wallets(keys, [CENTRAL_BANK], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [OPERATOR], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, people, tb.WalletKind.PERSONAL)
    issued = 10**15
    assert ledger.settle([tb.issue(keys, CENTRAL_BANK, [(OPERATOR, issued)], 1)], 1).ok
    ((change, value),) = ledger.unspent(OPERATOR)
    rss_before = rss_bytes()
    peak_before = peak_rss_bytes()
    start = time.perf_counter()
    made, batch = 0, []
    while made < tokens - 1:  # the operator's change is one of the tokens
        count = min(MEMORY_OUTPUTS - 1, tokens - 1 - made)
        outputs = [(people[(made + i) % wallets], 1 + (made + i) % 997) for i in range(count)]
        value -= sum(a for _, a in outputs)
        tx = tb.transfer(keys, [change], [*outputs, (OPERATOR, value)], [OPERATOR], timestamp_ms=2)
        change = tb.token_id(tb.transaction_id(tx), count)
        batch.append(tx)
        made += count
        if len(batch) == MEMORY_BATCH_TXS or made >= tokens - 1:
            assert ledger.settle(batch, 2).ok
            batch = []
    build_s = time.perf_counter() - start
    assert ledger.token_count == tokens, (ledger.token_count, tokens)
    ledger.check_invariants()
    assert ledger.supply().outstanding_fen == issued
    peak = peak_rss_bytes()
    return MemoryProbe(
        tokens=tokens,
        wallets=wallets,
        peak_bytes_per_token=(peak - max(peak_before, rss_before)) / tokens,
        resident_bytes_per_token=(rss_bytes() - rss_before) / tokens,
        build_s=build_s,
    )


def run_memory_probe(result: BenchResult, tokens: int) -> None:
    """:func:`memory_probe` in a subprocess; records it and its checks."""
    proc = subprocess.run(
        [sys.executable, "-m", "tongbao.bench", "memory", str(tokens)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        result.check(f"memory {tokens:,} tokens: probe ran", False, proc.stderr.strip()[-500:])
        return
    import orjson

    probe = MemoryProbe(**orjson.loads(proc.stdout))
    result.check(f"memory {tokens:,} tokens: exact token count and supply conserved", True)
    result.memory.append(probe)


# -- the run ---------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU model, cores, Python and tongbao versions."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": all_threads(),
        "python": platform.python_version(),
        "tongbao": tb.__version__,
        "platform": platform.platform(),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _target(
    name: str, value: float | None, goal: float, at_most: bool = False, note: str = ""
) -> Target:
    passed = None if value is None else (value <= goal if at_most else value >= goal)
    return Target(name, value, goal, at_most, passed, note)


def evaluate_targets(result: BenchResult) -> None:
    """Fill ``result.targets`` from the measurements."""
    c = result.config
    n, t = c.batch_size, c.threads
    for threads, label in ((1, "1t"), (t, "all")):
        result.targets.append(
            _target(
                f"Ed25519 settle / raw verify, {label}",
                _ratio(
                    result.find("settle", "ed25519", threads, n),
                    result.find("raw verify", "ed25519", threads, n),
                ),
                TARGET_SETTLE_OVER_VERIFY,
            )
        )
    naive = [m for m in result.measurements if m.case == "naive"]
    best_naive = max(naive, key=lambda m: m.rate) if naive else None
    note = f"best naive: {best_naive.variant}" if best_naive else "naive not measured"
    naive_rate = best_naive.rate if best_naive else None
    result.targets.append(
        _target(
            "settle all / naive (machine)",
            _ratio(result.find("settle", "ed25519", t, n), naive_rate),
            TARGET_OVER_NAIVE_MACHINE,
            note=note + "; the naive ledger is single-threaded (GIL)",
        )
    )
    result.targets.append(
        _target(
            "settle 1t / naive (per core)",
            _ratio(result.find("settle", "ed25519", 1, n), naive_rate),
            TARGET_OVER_NAIVE_CORE,
            note=note,
        )
    )
    result.targets.append(
        _target(
            "SM2 verify 1t / openssl speed",
            _ratio(result.find("raw verify", "sm2", 1, n), result.openssl_sm2_verify_per_s),
            TARGET_SM2_OVER_OPENSSL,
            note="" if result.openssl_sm2_verify_per_s else "openssl not measured",
        )
    )
    result.targets.append(
        _target(
            "settle sig-off, tx/s, 1t",
            result.find("settle sig-off", "ed25519", 1, n),
            TARGET_SIG_OFF_TX_PER_S_PER_CORE,
        )
    )
    at_10m = [p for p in result.memory if p.tokens >= TARGET_MEMORY_TOKENS]
    largest = max(result.memory, key=lambda p: p.tokens) if result.memory else None
    probe = at_10m[0] if at_10m else None
    result.targets.append(
        _target(
            "peak bytes/token at 10M",
            probe.peak_bytes_per_token if probe else None,
            TARGET_BYTES_PER_TOKEN,
            at_most=True,
            note=""
            if probe
            else (
                f"10M not measured; {largest.tokens:,} tokens: {largest.peak_bytes_per_token:.0f} B"
                if largest
                else "not measured"
            ),
        )
    )


def run(config: BenchConfig, progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run every benchmark of ``config``; see the module docstring. Never raises for a failed
    check: look at ``result.checks``."""
    config.validate()
    say = progress or (lambda _: None)
    result = BenchResult(config, machine_info())
    n, rounds = config.batch_size, config.rounds
    thread_counts = sorted({1, config.threads})
    schemes = [tb.Scheme.ED25519, *([tb.Scheme.SM2] if config.sm2 else [])]
    for scheme in schemes:
        say(f"building the {scheme.name} workload ({n:,} payments)")
        work = workload(scheme, n)
        for threads in thread_counts:
            say(f"raw verify and settle {scheme.name}, {threads} thread(s), interleaved")
            cases = [
                raw_verify_case(result, work, threads, rounds),
                settle_case(result, work, threads, True, n, rounds),
            ]
            if scheme == tb.Scheme.SM2 and threads == 1 and config.openssl:
                cases.append(openssl_case(result))
            measure(rounds, cases)
        control_settle(result, work, config.threads)
    ed = workload(tb.Scheme.ED25519, n)
    say("settle, signatures off")
    measure(rounds * 3, [settle_case(result, ed, t, False, n, rounds * 3) for t in thread_counts])
    say("settle sweep over batch sizes (Ed25519)")
    for size in config.sweep_batch_sizes:
        if size < n:
            measure(rounds, [settle_case(result, ed, t, True, size, rounds) for t in thread_counts])
    say("naive Python baseline")
    bench_naive(result, config.naive_batch_size, max(1, min(rounds, 3)))
    for tokens in config.memory_tokens:
        say(f"memory with {tokens:,} unspent tokens (subprocess)")
        run_memory_probe(result, tokens)
    evaluate_targets(result)
    return result


# -- output ----------------------------------------------------------------------------------


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}"


def render(result: BenchResult, console: Any) -> None:
    """Print the side-by-side tables with :mod:`rich` on ``console``."""
    from rich.table import Table

    c = result.config
    m = result.machine
    console.print(
        f"[bold]tongbao bench[/]: {m['cpu']} ({m['cpus']} CPUs), batch {c.batch_size:,}, "
        f"best of {c.rounds} rounds; ratios are within this run"
    )
    naive = [x for x in result.measurements if x.case == "naive"]
    base = max((x.rate for x in naive), default=None)
    table = Table(title="throughput (1-input 2-output payments)")
    table.add_column("case")
    for col in ("threads", "batch", "per second", "x naive"):
        table.add_column(col, justify="right")
    for x in result.measurements:
        if x.case == "settle" and x.batch_size != c.batch_size:
            continue  # the sweep goes to the plot and the JSON
        ratio = _ratio(x.rate, base) if x.unit == "tx/s" else None
        name = x.case if x.case.endswith("sig-off") else f"{x.case} {x.variant}"
        table.add_row(
            name,
            str(x.threads),
            f"{x.batch_size:,}",
            f"{_fmt_rate(x.rate)} {x.unit.split('/')[0]}",
            "" if ratio is None else f"{ratio:,.1f}x",
        )
    if result.openssl_sm2_verify_per_s:
        rate = _fmt_rate(result.openssl_sm2_verify_per_s)
        table.add_row("openssl speed sm2 verify", "1", "", f"{rate} sig", "")
    console.print(table)
    if result.memory:
        mem = Table(title="memory (a fresh process each)")
        for col in ("unspent tokens", "wallets", "peak B/token", "resident B/token", "build s"):
            mem.add_column(col, justify="right")
        for p in result.memory:
            mem.add_row(
                f"{p.tokens:,}",
                f"{p.wallets:,}",
                f"{p.peak_bytes_per_token:.0f}",
                f"{p.resident_bytes_per_token:.0f}",
                f"{p.build_s:.1f}",
            )
        console.print(mem)
    targets = Table(title="targets (issue 5)")
    targets.add_column("target")
    targets.add_column("measured", justify="right")
    targets.add_column("goal", justify="right")
    targets.add_column("")
    notes = []
    for t in result.targets:
        value = (
            "n/a" if t.value is None else f"{t.value:,.3f}" if t.value < 100 else f"{t.value:,.0f}"
        )
        verdict = {True: "[green]PASS[/]", False: "[red]MISS[/]", None: "[yellow]n/a[/]"}[t.passed]
        shown = f"{t.goal:,.0f}" if t.goal >= 100 else f"{t.goal:g}"
        goal = f"{'<=' if t.at_most else '>='} {shown}"
        targets.add_row(t.name, value, goal, verdict)
        if t.note:
            notes.append(f"{t.name}: {t.note}")
    console.print(targets)
    failed = [ch for ch in result.checks if not ch.passed]
    console.print(
        f"correctness checks: {len(result.checks) - len(failed)}/{len(result.checks)} passed"
    )
    for ch in failed:
        console.print(f"[red]FAILED[/] {ch.name} {ch.detail}")
    for note in notes + result.notes:
        console.print(f"note: {note}")


def require_matplotlib() -> None:
    """Raise :class:`tongbao.InvalidArgument` with what to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise tb.InvalidArgument(
            "--plot needs matplotlib: pip install matplotlib (or tongbao[bench])"
        ) from None


def plot(result: BenchResult, path: Path) -> None:
    """Write a PNG: settle tx/s against batch size (per thread count) and against thread count
    (settle and raw verify). Raises :class:`tongbao.InvalidArgument` when matplotlib is missing.
    """
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    settle = [x for x in result.measurements if x.case == "settle" and x.variant == "ed25519"]
    for threads in sorted({x.threads for x in settle}):
        points = sorted((x.batch_size, x.rate) for x in settle if x.threads == threads)
        left.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{threads}t")
    left.set_xscale("log", base=2)
    left.set_xlabel("batch size (transactions)")
    left.set_ylabel("settle tx/s (Ed25519, 1 in, 2 out)")
    left.set_title("settle vs batch size")
    left.legend()
    n = result.config.batch_size
    for case, variant in (
        ("settle", "ed25519"),
        ("raw verify", "ed25519"),
        ("settle", "sm2"),
        ("settle sig-off", "ed25519"),
    ):
        points = sorted(
            (x.threads, x.rate)
            for x in result.measurements
            if x.case == case and x.variant == variant and x.batch_size == n
        )
        if points:
            right.plot(
                [p[0] for p in points],
                [p[1] for p in points],
                marker="o",
                label=f"{case} {variant}" if case != "settle sig-off" else case,
            )
    right.set_xticks(sorted({x.threads for x in result.measurements}))
    right.set_xlabel("threads")
    right.set_ylabel("per second")
    right.set_yscale("log")
    right.set_title(f"batch {n:,}: throughput vs threads")
    right.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tongbao.bench memory N``: one memory probe, printed as JSON (for
    :func:`run_memory_probe`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "memory":
        print("usage: python -m tongbao.bench memory TOKENS", file=sys.stderr)
        return 2
    import orjson

    probe = memory_probe(int(args[1]))
    sys.stdout.write(orjson.dumps(asdict(probe)).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
