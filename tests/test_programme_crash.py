"""Issuance exactly once with real processes: ``tongbao programme run --ledger DIR`` is
SIGKILLed in the middle of issuing (after a known number of issue batches, and at a moment
left to chance), then re-run on the same durable ledger. Every recipient must end up with
exactly its allocation issued to it, the programme's budget conserved (issued = budget =
spent + reclaimed + outstanding) and supply checked by the engine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

import tongbao as tb
from tongbao import programme as pg

#: 4 issue chunks of 1,000 recipients, one transaction per settled batch.
CONFIG = """\
[programme]
name = "crash test envelopes"
condition = 4242
issuer = 700
not_before = "2026-01-28T00:00:00"
valid_until = "2026-01-31T00:00:00"
recipients = { first = 30_000, count = 4_000 }
not_transferable = true

[red_envelope]
total_fen = 123_456_789
seed = "crash"
"""


def command(config: Path, ledger_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "tongbao", "programme", "run", str(config),
        "--ledger", str(ledger_dir), "--batch-txs", "1", "--progress", "--json",
        "--merchants", "20", "--spend-share", "0.3", "--threads", "1",
    ]  # fmt: skip


def kill_after(config: Path, ledger_dir: Path, line: str, pause: str = "") -> None:
    """Start a run, SIGKILL it once it wrote ``line`` to stderr (with ``pause``, it waits
    there for the kill)."""
    env = {**os.environ, "TONGBAO_PROGRAMME_PAUSE_AFTER": pause}
    proc = subprocess.Popen(
        command(config, ledger_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for got in proc.stderr:
        seen.append(got)
        if got.startswith(line):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert any(s.startswith(line) for s in seen), "".join(seen)


def issued_per_recipient(ledger: tb.Ledger, condition: int) -> dict[int, int]:
    """Per owner, the value it holds under ``condition`` (before any spending: what was
    issued to it)."""
    out: dict[int, int] = {}
    for _token, owner, value in ledger.condition_tokens(condition):
        out[owner] = out.get(owner, 0) + value
    return out


@pytest.mark.slow
def test_sigkill_mid_issue_then_rerun_issues_exactly_once(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text(CONFIG)
    programme = pg.load_programme(config)
    ledger_dir = tmp_path / "ledger"
    chunk_sums = [
        sum(a for _, a in programme.allocations[k : k + pg.OUTPUTS_PER_TX])
        for k in range(0, len(programme.allocations), pg.OUTPUTS_PER_TX)
    ]

    # 1. Killed after exactly 2 of the 4 issue batches were settled (and logged).
    kill_after(config, ledger_dir, "paused", pause="issue:1")
    with tb.Ledger.open(ledger_dir) as ledger:
        info = ledger.condition(programme.condition)
        assert info is not None
        assert info.issued_fen == sum(chunk_sums[:2]) < programme.budget_fen
        held = issued_per_recipient(ledger, programme.condition)
        ledger.check_invariants()
    allocation = dict(programme.allocations)
    assert held == {w: allocation[w] for w, _ in programme.allocations[: 2 * pg.OUTPUTS_PER_TX]}

    # 2. Re-run, killed again a little later, wherever it is (still issuing, or spending).
    kill_after(config, ledger_dir, "issue batch 2")

    # 3. Re-run to the end: nothing issued twice, everything conserved.
    done = subprocess.run(command(config, ledger_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    report = orjson.loads(done.stdout)
    assert report["issued_fen"] == programme.budget_fen == 123_456_789
    assert report["issued_fen"] == (
        report["spent_fen"] + report["reclaimed_fen"] + report["outstanding_fen"]
    )
    assert report["outstanding_fen"] == 0
    issue = report["statuses"]["issue"]
    assert issue.get("ALREADY_SETTLED", 0) >= 3 and sum(issue.values()) == 4
    assert set(issue) <= {"OK", "ALREADY_SETTLED"}, issue

    # Each recipient was issued exactly its allocation: compare with an uninterrupted run of
    # the same programme (deterministic spending), recipient by recipient, after reclaim.
    clean_dir = tmp_path / "clean"
    clean = subprocess.run(command(config, clean_dir), capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    with tb.Ledger.open(ledger_dir) as crashed, tb.Ledger.open(clean_dir) as uninterrupted:
        crashed.check_invariants()
        assert crashed.content_digest() == uninterrupted.content_digest()
        wallets = [w for w, _ in programme.allocations] + [programme.issuer]
        assert [crashed.balance(w) for w in wallets] == [uninterrupted.balance(w) for w in wallets]


def test_issue_txs_without_funding_skips_what_was_issued() -> None:
    """The check-what-was-issued path: after the first chunks settled, a second call builds
    only the rest; a third builds nothing; an ``issued_fen`` that is not a run of this
    programme's chunks is refused."""
    t = pg.shanghai_ms("2026-01-27T00:00:00")
    programme = pg.parse_programme(
        {
            "programme": {
                "name": "resume", "condition": 77, "issuer": 700,
                "not_before": "2026-01-28T00:00:00", "valid_until": "2026-01-31T00:00:00",
                "recipients": {"first": 30_000, "count": 3_500},
            },
            "red_envelope": {"total_fen": 9_999_999, "seed": "resume"},
        }
    )  # fmt: skip
    ledger, keys = tb.Ledger(threads=1), tb.Keyring()
    ledger.open_wallets(keys, [1], tb.WalletKind.CENTRAL_BANK)
    ledger.open_wallets(keys, [2], tb.WalletKind.OPERATOR)
    ledger.open_wallets(keys, [700], tb.WalletKind.CORPORATE, operator=2)
    recipients = [w for w, _ in programme.allocations]
    ledger.open_wallets(keys, recipients, tb.WalletKind.PERSONAL, operator=2)
    budget = programme.budget_fen
    assert ledger.settle([tb.issue(keys, 1, [(2, budget + 5_000)], t)], t).ok
    pay, _ = ledger.build_payments(keys, [2], [700], [budget + 5_000], t)
    assert ledger.settle(pay, t).ok
    assert ledger.settle([programme.define_tx(keys, t)], t).ok

    first = programme.issue_txs(ledger, keys, t)
    assert len(first) == 4
    assert ledger.settle(first[:2], t).ok  # "crash" after two chunks
    rest = programme.issue_txs(ledger, keys, t)
    assert len(rest) == 2
    assert ledger.settle(rest, t).ok
    assert programme.issue_txs(ledger, keys, t) == []
    info = ledger.condition(77)
    assert info is not None and info.issued_fen == budget
    held: dict[int, int] = {}
    for _token, owner, value in ledger.condition_tokens(77):
        held[owner] = held.get(owner, 0) + value
    assert held == dict(programme.allocations)
    assert ledger.balance(700) == 5_000
    ledger.check_invariants()

    # Another programme with the same condition id and other amounts: refused, not re-issued.
    other = pg.Programme(**{**programme.__dict__, "allocations": ((30_000, 3),)})
    with pytest.raises(tb.InvalidArgument, match="not the sum of a first run"):
        other.issue_txs(ledger, keys, t)
