"""Exactly once with real processes: ``tongbao payroll run`` is SIGKILLed at random moments
(while parsing, planning, writing the plan, settling, recording progress or writing reports),
then re-run until it finishes. Every payee must be paid exactly once, supply conserved, the
offline audit must agree, and pain.002 and the CSV report must be byte-identical to those of an
uninterrupted run of the same file in an identical world."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tongbao as tb
from tongbao.payroll import generate as gen

RUN_MS = gen.WORLD_TIMESTAMP_MS + 86_400_000
#: Small chunks and one chunk per batch: many fsynced batches, so kills land mid-settlement.
CHUNK = 25


def make(tmp: Path, name: str, spec: gen.PayrollSpec, fmt: str) -> tuple[Path, Path]:
    ledger_dir = tmp / name
    file = tmp / f"{name}.{fmt}"
    (gen.write_csv if fmt == "csv" else gen.write_pain001)(spec, file)
    with tb.Ledger.open(ledger_dir) as ledger:
        gen.setup_world(ledger, tb.Keyring(), spec)
    return ledger_dir, file


def command(file: Path, ledger_dir: Path, partial: bool) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "tongbao",
        "payroll",
        "run",
        str(file),
        "--employer",
        str(gen.EMPLOYER_ID),
        "--ledger",
        str(ledger_dir),
        "--quiet",
        "--timestamp-ms",
        str(RUN_MS),
        "--chunk-size",
        str(CHUNK),
        "--batch-chunks",
        "1",
    ]
    return [*args, "--partial"] if partial else args


def run_to_end(file: Path, ledger_dir: Path, partial: bool) -> float:
    started = time.monotonic()
    done = subprocess.run(command(file, ledger_dir, partial), capture_output=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr.decode()
    return time.monotonic() - started


def one_round(tmp: Path, seed: int, kills_wanted: int) -> int:
    """One payroll, one clean run, one run killed up to ``kills_wanted`` times; returns the
    number of kills that interrupted the run."""
    tmp.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    payees = rng.randint(1_000, 2_500)
    # Sometimes the employer is short of funds (default: pay none; --partial: a prefix).
    margin = rng.choice([100_000_00, -rng.randint(1, 10_000) * 100_00])
    spec = gen.PayrollSpec(payees=payees, seed=seed, margin_fen=margin)
    if spec.total_fen() + margin <= 0:
        spec = gen.PayrollSpec(payees=payees, seed=seed)
    partial = rng.random() < 0.5
    fmt = rng.choice(["csv", "xml"])
    clean_dir, clean_file = make(tmp, f"clean{seed}", spec, fmt)
    duration = run_to_end(clean_file, clean_dir, partial)
    crash_dir, crash_file = make(tmp, f"crash{seed}", spec, fmt)
    # Identical worlds, so identical files give the same run id and the same plan.
    kills = 0
    for _ in range(kills_wanted * 3):
        if kills >= kills_wanted:
            break
        proc = subprocess.Popen(
            command(crash_file, crash_dir, partial),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(rng.uniform(0.05, duration))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (0, 1, -signal.SIGKILL), proc.stderr and proc.stderr.read()
        if proc.stderr:
            proc.stderr.close()
    run_to_end(crash_file, crash_dir, partial)

    run_id = next((clean_dir / "payroll").iterdir()).name
    clean_run, crash_run = clean_dir / "payroll" / run_id, crash_dir / "payroll" / run_id
    for name in ("pain.002.xml", "report.csv"):
        assert (crash_run / name).read_bytes() == (clean_run / name).read_bytes(), name
    # Every payee got what the report says, once; the employer paid exactly that.
    rows = (crash_run / "report.csv").read_text().splitlines()[1:]
    expected: dict[int, int] = {}
    paid_fen = 0
    for row in rows:
        _line, _ref, payee, amount, status, *_ = row.split(",")
        expected.setdefault(int(payee), 0)
        if status == "ACSC":
            expected[int(payee)] += int(amount)
            paid_fen += int(amount)
    with tb.Ledger.open(crash_dir) as ledger:
        ids = sorted(expected)
        assert ledger.balances(ids).tolist() == [expected[p] for p in ids]
        assert ledger.balance(gen.EMPLOYER_ID) == spec.total_fen() + spec.margin_fen - paid_fen
        ledger.check_invariants()
        supply = ledger.supply()
    report = tb.verify_log(crash_dir)
    assert report.outstanding_fen == supply.outstanding_fen == spec.total_fen() + spec.margin_fen
    return kills


def test_sigkill_a_payroll_run_then_rerun_pays_exactly_once(tmp_path: Path) -> None:
    kills = one_round(tmp_path, seed=1, kills_wanted=3)
    assert kills >= 1


@pytest.mark.slow
def test_sigkill_campaign_fifty_kills(tmp_path: Path) -> None:
    kills = 0
    seed = 100
    while kills < 50:
        kills += one_round(tmp_path / str(seed), seed=seed, kills_wanted=10)
        seed += 1
    assert kills >= 50
