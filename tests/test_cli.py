"""The ``tongbao`` command line: ``tongbao simulate`` in-process and as a subprocess."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import tongbao as tb
from tongbao.cli import build_parser, main

SMALL = ["--wallets", "200", "--merchants", "30", "--transactions", "2000", "--batch-size", "500"]


def simulate(tmp_path: Path, *extra: str, name: str = "out.json") -> dict[str, Any]:
    out = tmp_path / name
    assert main(["simulate", *SMALL, "--quiet", "--json", str(out), *extra]) == 0
    doc: dict[str, Any] = orjson.loads(out.read_bytes())
    return doc


def check_summary(doc: dict[str, Any]) -> None:
    statuses = doc["statuses"]
    tx = doc["transactions"]
    assert sum(statuses.values()) == tx["submitted"]
    assert statuses["OK"] > 0
    assert statuses["ALREADY_SETTLED"] > 0
    assert statuses["ALREADY_SETTLED"] == tx["resubmissions"]
    assert statuses.get("INPUT_SPENT", 0) == tx["double_spends"]
    assert tx["payments_requested"] == 2000
    supply = doc["supply"]
    assert supply["ok"] is True
    assert supply["invariant_error"] is None
    assert supply["issued_fen"] - supply["redeemed_fen"] == supply["outstanding_fen"]
    assert supply["outstanding_fen"] == supply["balances_fen"]
    assert doc["wallets"]["personal"]["ed25519"] + doc["wallets"]["personal"]["sm2"] == 200
    assert len(doc["state_digest"]) == 64
    assert doc["timing"]["engine_tx_per_s"] > 0


def test_simulate_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = simulate(tmp_path)
    check_summary(doc)
    assert capsys.readouterr().out == ""  # --quiet


def test_simulate_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in ("Wallets", "Transactions by status", "ALREADY_SETTLED", "supply check", "tx/s"):
        assert text in out
    assert "OK" in out and "FAILED" not in out


def test_simulate_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "sub.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tongbao", "simulate", *SMALL, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Transactions by status" in proc.stdout  # not a TTY: no progress bar, but a summary
    doc = orjson.loads(out.read_bytes())
    check_summary(doc)
    assert doc["state_digest"] == simulate(tmp_path, name="again.json")["state_digest"]


def test_determinism(tmp_path: Path) -> None:
    base = simulate(tmp_path, "--seed", "5", "--threads", "1", name="a.json")["state_digest"]
    assert (
        simulate(tmp_path, "--seed", "5", "--threads", "2", name="b.json")["state_digest"] == base
    )
    assert (
        simulate(tmp_path, "--seed", "6", "--threads", "2", name="c.json")["state_digest"] != base
    )


def test_no_verify(tmp_path: Path) -> None:
    doc = simulate(tmp_path, "--no-verify", "--seed", "5")
    check_summary(doc)
    assert doc["config"]["verify_signatures"] is False
    assert doc["state_digest"] == simulate(tmp_path, "--seed", "5", name="v.json")["state_digest"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--wallets", "-5"], "argument --wallets: must be at least 1, got -5"),
        (["--transactions", "-1"], "argument --transactions: must be at least 0, got -1"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--threads", "two"], "argument --threads: expected an integer, got 'two'"),
        (["--sm2-share", "1.5"], "argument --sm2-share: must be between 0 and 1"),
        (["--batch-size", str(tb.BATCH_TX_COUNT_MAX + 1)], "batch_size must be at most"),
        (["--resubmit-share", "0.4", "--double-spend-share", "0.2"], "below 0.5"),
        (["--json", "/nonexistent-dir/x.json"], "--json: no such directory"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_argument_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_argument_error_subprocess() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tongbao", "simulate", "--wallets", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--wallets: must be at least 1, got -3" in proc.stderr


def test_no_command_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"tongbao {tb.__version__}"


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "simulate" in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    out = capsys.readouterr().out
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subcommands.choices["simulate"]._actions:
        assert action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in out


def test_failed_supply_check_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tongbao import simulate as sim

    monkeypatch.setattr(sim.SimulationResult, "supply_ok", property(lambda self: False))
    assert main(["simulate", *SMALL]) == 1
    captured = capsys.readouterr()
    assert "supply check FAILED" in captured.err
    assert "FAILED" in captured.out
