"""`tongbao verify-log`: the auditor's replay of a durable ledger written by `simulate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tongbao.cli import main


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("sim")
    ledger, summary = root / "ledger", root / "summary.json"
    code = main(
        [
            "simulate",
            "--preset=small-city",
            "--scale=0.05",
            "--batch-size=512",
            f"--ledger={ledger}",
            f"--json={summary}",
            "--quiet",
        ]
    )
    assert code == 0
    return ledger, json.loads(summary.read_text())


def test_verify_log_agrees_with_the_simulation(
    simulated: tuple[Path, dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    ledger, summary = simulated
    assert main(["verify-log", str(ledger), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    supply = summary["supply"]
    assert isinstance(supply, dict)
    assert report["issued_fen"] == supply["issued_fen"]
    assert report["redeemed_fen"] == supply["redeemed_fen"]
    assert report["outstanding_fen"] == supply["issued_fen"] - supply["redeemed_fen"]
    statuses = summary["statuses"]
    assert isinstance(statuses, dict)
    assert report["transactions"] == sum(statuses.values())
    assert report["transactions_ok"] == statuses["OK"]
    assert report["batches_without_outcome"] == 0


def test_verify_log_names_file_and_offset_of_damage(
    simulated: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    source, _ = simulated
    damaged = tmp_path / "ledger"
    damaged.mkdir()
    for f in source.iterdir():
        if f.name != "LOCK":
            (damaged / f.name).write_bytes(f.read_bytes())
    (segment,) = damaged.glob("wal-*.log")
    raw = bytearray(segment.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    segment.write_bytes(bytes(raw))
    result = subprocess.run(
        [sys.executable, "-m", "tongbao", "verify-log", str(damaged)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert segment.name in result.stderr and "offset" in result.stderr


def test_verify_log_of_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["verify-log", str(tmp_path / "nope")]) == 2


def test_simulate_refuses_a_used_ledger_directory(
    simulated: tuple[Path, dict[str, object]],
) -> None:
    ledger, _ = simulated
    assert main(["simulate", "--scale=0.01", f"--ledger={ledger}", "--quiet"]) == 2
