"""Payroll end to end on the embedded durable ledger, against the engine's own settle rate.

For each size (default 100,000 and 1,000,000 payees), in a fresh child process (so each peak
memory is its own): generate a pain.001 file and a funded world (not timed), then time
``run_payroll`` end to end: parse (lxml iterparse), pre-flight, plan, sign (one Rust batch
call), write the plan, settle (fsync per batch of 64 chunks), write report.csv and pain.002.

Baseline, in the same run: the engine settling single-payee transfers (built by
``build_payments``) with signatures OFF, in memory — the fastest the engine moves money one
payee per transaction. The ratio payroll payees/s ÷ baseline payees/s is what the issue asks
about: one signature covers a thousand payees, so payroll should come close.

    python bench/payroll.py                       # 100k and 1M
    python bench/payroll.py --payees 100000       # one size
    python bench/payroll.py --cluster --payees 20000   # embedded vs cluster, 1 and 2 workers

``--cluster``: the same file and world, run embedded (durable) and on a cluster (a private
redis-server, ``--vshards`` vshards, 1 then 2 worker processes, durable logs, signatures
verified): payees/s end to end of each and the ratio cluster / embedded, plus the time until
every payee's credit is imported on its shard (``idle_s``). Each cluster run must end with the
embedded run's content digest, or the benchmark fails.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tongbao as tb
from tongbao import cluster, payroll
from tongbao.cluster_harness import RedisServer, WorkerPool
from tongbao.payroll import generate as gen
from tongbao.payroll.distributed import ClusterPayrollLedger

RUN_MS = gen.WORLD_TIMESTAMP_MS + 86_400_000
BASELINE_PAYMENTS = 100_000
BASELINE_BATCH = 4_096


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def hwm_mb(pid: int | str = "self") -> float:
    """Peak RSS (VmHWM) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def log(line: str) -> None:
    """Progress of the (untimed) setup steps, on stderr."""
    print(line, file=sys.stderr, flush=True)


def reset_hwm() -> None:
    """Reset this process's peak RSS (Linux: write 5 to clear_refs), so the next phase's peak
    is its own."""
    Path("/proc/self/clear_refs").write_text("5")


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def setup(directory: Path, payees: int, fmt: str) -> None:
    """The file and the funded world (a separate process: not in the measured memory)."""
    spec = gen.PayrollSpec(payees=payees, seed=42)
    file = directory / ("payroll.csv" if fmt == "csv" else "payroll.xml")
    (gen.write_csv if fmt == "csv" else gen.write_pain001)(spec, file)
    with tb.Ledger.open(directory / "ledger") as ledger:
        gen.setup_world(ledger, tb.Keyring(), spec)


def one_size(payees: int, fmt: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="tb-payroll-bench-") as tmp:
        d = Path(tmp)
        spec = gen.PayrollSpec(payees=payees, seed=42)
        file = d / ("payroll.csv" if fmt == "csv" else "payroll.xml")
        t = time.perf_counter()
        subprocess.check_call(
            [sys.executable, __file__, "--setup", str(d), str(payees), "--format", fmt]
        )
        setup_s = time.perf_counter() - t
        with tb.Ledger.open(d / "ledger") as ledger:
            rss_ledger = current_rss_mb()
            keys = tb.Keyring()
            keys.generate([spec.employer], int(tb.Scheme.ED25519), b"tongbao")
            t = time.perf_counter()
            parsed = payroll.parse_file(file)
            parse_s = time.perf_counter() - t
            result = payroll.run_payroll(
                ledger, keys, parsed, spec.employer, d / "runs", timestamp_ms=RUN_MS
            )
            total_s = parse_s + result.duration_s
            assert result.paid == payees, result.summary()
            assert ledger.balance(spec.employer) == spec.margin_fen
            ledger.check_invariants()
        return {
            "payees": payees,
            "format": fmt,
            "setup_s": round(setup_s, 2),
            "parse_s": round(parse_s, 2),
            **{f"{k}_s": round(v, 2) for k, v in result.phases_s.items()},
            "total_s": round(total_s, 2),
            "payees_per_s": round(payees / total_s),
            "transactions": len(result.plan.txs),
            "pain002_mb": round((result.directory / "pain.002.xml").stat().st_size / 1e6, 1),
            "file_mb": round(file.stat().st_size / 1e6, 1),
            "rss_mb_ledger_open": round(rss_ledger),
            "peak_rss_mb": round(peak_rss_mb()),
            "payroll_peak_mb": round(peak_rss_mb() - rss_ledger),
        }


def baseline() -> dict[str, object]:
    """Single-payee transfers, signatures off, in memory: settle time only."""
    ledger = tb.Ledger(verify_signatures=False)
    keys = tb.Keyring()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [1000], tb.WalletKind.OPERATOR)
    payees = list(range(10_000_000, 10_000_000 + 10_000))
    ledger.open_wallets(keys, payees, tb.WalletKind.PERSONAL)
    issue = tb.issue(keys, 1, [(1000, 10**12)] * 64, timestamp_ms=gen.WORLD_TIMESTAMP_MS)
    ledger.settle([issue], gen.WORLD_TIMESTAMP_MS)
    settle_s = 0.0
    done = 0
    while done < BASELINE_PAYMENTS:
        n = min(BASELINE_BATCH, BASELINE_PAYMENTS - done)
        payers = [1000] * n
        to = [payees[(done + i) % len(payees)] for i in range(n)]
        txs, _ = ledger.build_payments(keys, payers, to, [100] * n, gen.WORLD_TIMESTAMP_MS)
        t = time.perf_counter()
        result = ledger.settle(txs, gen.WORLD_TIMESTAMP_MS)
        settle_s += time.perf_counter() - t
        assert result.ok
        done += n
    return {
        "payments": done,
        "settle_s": round(settle_s, 2),
        "payees_per_s": round(done / settle_s),
    }


def cluster_compare(
    payees: int, fmt: str, vshards: int, worker_counts: list[int]
) -> list[dict[str, object]]:
    """The same payroll embedded, then on a cluster with each of ``worker_counts`` workers
    (fresh each). Peak RSS: of this process during each run (VmHWM reset before it), and of
    each worker process."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="tb-payroll-cluster-bench-") as tmp:
        d = Path(tmp)
        spec = gen.PayrollSpec(payees=payees, seed=42)
        file = d / ("payroll.csv" if fmt == "csv" else "payroll.xml")
        t0 = time.perf_counter()
        (gen.write_csv if fmt == "csv" else gen.write_pain001)(spec, file)
        log(f"{payees:,}: file written in {time.perf_counter() - t0:.1f} s")
        keys = tb.Keyring()
        keys.generate([spec.employer], int(tb.Scheme.ED25519), b"tongbao")
        with tb.Ledger.open(d / "ledger") as ledger:
            t0 = time.perf_counter()
            gen.setup_world(ledger, tb.Keyring(), spec)
            log(f"{payees:,}: embedded world in {time.perf_counter() - t0:.1f} s")
            reset_hwm()
            rss_before = current_rss_mb()
            t = time.perf_counter()
            result = payroll.run_payroll(
                ledger, keys, payroll.parse_file(file), spec.employer, d / "runs",
                timestamp_ms=RUN_MS,
            )  # fmt: skip
            total_s = time.perf_counter() - t
            peak = hwm_mb()
            assert result.paid == payees, result.summary()
            expected = ledger.content_digest()
        rows.append(
            {
                "mode": "embedded",
                "payees": payees,
                "total_s": round(total_s, 2),
                **{f"{k}_s": round(v, 2) for k, v in result.phases_s.items()},
                "payees_per_s": round(payees / total_s),
                "peak_rss_mb": round(peak),
                "rss_mb_before": round(rss_before),
            }
        )
        log(json.dumps(rows[-1]))
        for workers in worker_counts:
            server = RedisServer(d / f"redis{workers}")
            server.start()
            data = d / f"data{workers}"
            data.mkdir()
            pool = WorkerPool(server.url, data, vshards, lease_ttl_ms=5_000, claim_idle_ms=5_000)
            try:
                half = vshards // 2
                ranges = ["all"] if workers == 1 else [f"0-{half - 1}", f"{half}-{vshards - 1}"]
                names = [pool.start(r) for r in ranges]
                with cluster.Cluster(server.url, vshard_count=vshards, timeout_s=600) as client:
                    t0 = time.perf_counter()
                    gen.setup_world(
                        tb.Ledger(verify_signatures=False), tb.Keyring(), spec, cluster=client
                    )
                    log(f"{payees:,}: cluster world in {time.perf_counter() - t0:.1f} s")
                    reset_hwm()
                    rss_before = current_rss_mb()
                    t = time.perf_counter()
                    result = payroll.run_payroll(
                        ClusterPayrollLedger(client, spec.employer), keys,
                        payroll.parse_file(file), spec.employer, d / f"cluster-runs{workers}",
                        timestamp_ms=RUN_MS,
                    )  # fmt: skip
                    total_s = time.perf_counter() - t
                    peak = hwm_mb()
                    cluster.wait_idle(client.redis, 600)
                    idle_s = time.perf_counter() - t
                    worker_peaks = [round(hwm_mb(pool.processes[n].pid)) for n in names]
                    assert result.paid == payees, result.summary()
                    if client.content_digest() != expected:
                        raise SystemExit("cluster and embedded content digests differ")
            finally:
                pool.stop_all()
                server.stop()
            rows.append(
                {
                    "mode": f"cluster, {workers} worker{'s' if workers > 1 else ''}",
                    "payees": payees,
                    "vshards": vshards,
                    "total_s": round(total_s, 2),
                    **{f"{k}_s": round(v, 2) for k, v in result.phases_s.items()},
                    "idle_s": round(idle_s, 2),
                    "payees_per_s": round(payees / total_s),
                    "peak_rss_mb": round(peak),
                    "rss_mb_before": round(rss_before),
                    "worker_peak_rss_mb": worker_peaks,
                }
            )
            log(json.dumps(rows[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payees", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--format", choices=("pain001", "csv"), nargs="+", default=["pain001"])
    parser.add_argument(
        "--cluster", action="store_true", help="embedded vs a cluster of 1 and 2 workers"
    )
    parser.add_argument("--vshards", type=int, default=16, help="cluster vshards (--cluster)")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="worker counts (--cluster)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--setup", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.setup:
        setup(Path(args.setup[0]), int(args.setup[1]), args.format[0])
        return
    if args.one:
        print(json.dumps(one_size(args.one, args.format[0])))
        return
    if args.baseline:
        print(json.dumps(baseline()))
        return
    me = [sys.executable, __file__]
    base = json.loads(subprocess.check_output([*me, "--baseline"]))
    if args.cluster:
        print(json.dumps({"baseline": base}), flush=True)
        for n in args.payees:
            for fmt in args.format:
                rows = cluster_compare(n, fmt, args.vshards, args.workers)
                embedded = float(rows[0]["payees_per_s"])  # type: ignore[arg-type]
                for row in rows:
                    row["vs_embedded"] = round(float(row["payees_per_s"]) / embedded, 2)  # type: ignore[arg-type]
                    row["vs_baseline"] = round(float(row["payees_per_s"]) / base["payees_per_s"], 2)
                    print(json.dumps(row), flush=True)
        return
    print(
        f"baseline: engine, single-payee transfers, signatures off, in memory: "
        f"{base['payees_per_s']:,} payees/s ({base['payments']:,} in {base['settle_s']} s)"
    )
    for n in args.payees:
        for fmt in args.format:
            row = json.loads(subprocess.check_output([*me, "--one", str(n), "--format", fmt]))
            ratio = row["payees_per_s"] / base["payees_per_s"]
            settle_ratio = n / row["settle_s"] / base["payees_per_s"] if row["settle_s"] else 0
            print(json.dumps(row))
            print(
                f"{n:>9,} payees ({fmt}): {row['payees_per_s']:,} payees/s end to end "
                f"(durable, signatures on) = {ratio:.2f}x the baseline; settle step alone "
                f"{settle_ratio:.1f}x; peak RSS {row['peak_rss_mb']} MB "
                f"({row['payroll_peak_mb']} MB above the opened ledger)"
            )


if __name__ == "__main__":
    main()
