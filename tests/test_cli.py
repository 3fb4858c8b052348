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

SMALL = ["--preset", "small-city", "--scale", "0.02", "--batch-size", "300"]


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
    assert statuses.get("ALREADY_SETTLED", 0) == doc["adversarial"]["resubmissions"]
    assert statuses.get("INPUT_SPENT", 0) == doc["adversarial"]["double_spends"]
    assert doc["figures_match"] is True
    assert doc["payments"]["settled"] == doc["preset"]["figures"]["transactions"] == 800
    assert doc["payments"]["amount_fen"] == doc["preset"]["figures"]["amount_fen"] == 8_000_000
    supply = doc["supply"]
    assert supply["ok"] is True
    assert supply["invariant_error"] is None
    assert supply["issued_fen"] - supply["redeemed_fen"] == supply["outstanding_fen"]
    assert supply["outstanding_fen"] == supply["balances_fen"]
    assert doc["wallets"]["personal"]["ed25519"] + doc["wallets"]["personal"]["sm2"] == 400
    assert len(doc["state_digest"]) == 64
    assert doc["timing"]["engine_tx_per_s"] > 0


def test_simulate_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = simulate(tmp_path)
    check_summary(doc)
    assert capsys.readouterr().out == ""  # --quiet


def test_simulate_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", *SMALL, "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for text in (
        "Pilot figures",
        "Wallets",
        "Payments by scenario",
        "Transactions by status",
        "Operator positions",
        "Supply check",
        "tx/s",
    ):
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
        (["--scale", "0"], "argument --scale: must be above 0 and at most 1, got 0.0"),
        (["--scale", "2"], "argument --scale: must be above 0 and at most 1"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--threads", "two"], "argument --threads: expected an integer, got 'two'"),
        (["--batch-size", str(tb.BATCH_TX_COUNT_MAX + 1)], "batch_size must be at most"),
        (["--preset", "atlantis"], "no such shipped preset"),
        (["--preset", "small-city", "--scale", "0.0001"], "use a larger scale"),
        (["--json", "/nonexistent-dir/x.json"], "--json: no such directory"),
        (["--html", "/nonexistent-dir/x.html"], "--html: no such directory"),
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
        [sys.executable, "-m", "tongbao", "simulate", "--batch-size", "-3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--batch-size: must be at least 1, got -3" in proc.stderr


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


def test_figures_that_do_not_match_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tongbao import simulate as sim

    monkeypatch.setattr(sim.SimulationResult, "figures_match", property(lambda self: False))
    assert main(["simulate", *SMALL, "--quiet"]) == 1
    assert "do not match the preset" in capsys.readouterr().err


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["simulate", *SMALL, "--quiet", "--html", str(page)]) == 0
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 2
    assert "Payments by scenario" in text and "Supply check" in text
    assert "<script" not in text and 'src="http' not in text
