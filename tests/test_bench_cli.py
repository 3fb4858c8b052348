"""`tongbao bench`: a tiny run end to end (structure and correctness checks, not speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

import tongbao as tb
from tongbao import bench
from tongbao.cli import main

CASES = {"raw verify", "settle", "settle sig-off", "naive", "naive sig-off"}


def test_bench_quick_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    png = tmp_path / "bench.png"
    argv = ["bench", "--quick", "--batch-size", "80", "--rounds", "1", "--threads", "2"]
    argv += ["--memory-tokens", "3000", "--json", str(out), "--plot", str(png)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "targets (issue 5)" in printed and "correctness checks" in printed
    doc = orjson.loads(out.read_bytes())
    assert doc["config"]["batch_size"] == 80 and doc["config"]["memory_tokens"] == [3000]
    assert doc["checks"] and all(c["passed"] for c in doc["checks"])
    names = [c["name"] for c in doc["checks"]]
    for control in ("settle ed25519", "settle sm2", "raw verify ed25519 1t", "naive pynacl"):
        assert f"control: {control} finds the corrupted signatures" in names
    rows = doc["measurements"]
    assert {m["case"] for m in rows} == CASES
    for case, variant in [("settle", "ed25519"), ("settle", "sm2"), ("raw verify", "sm2")]:
        assert {m["threads"] for m in rows if (m["case"], m["variant"]) == (case, variant)} == {
            1,
            2,
        }
    assert {m["variant"] for m in rows if m["case"] == "naive"} == {"cryptography", "pynacl"}
    assert all(m["rate"] > 0 for m in rows)
    sweep = {(m["batch_size"], m["threads"]) for m in rows if m["case"] == "settle"}
    assert sweep == {(64, 1), (64, 2), (80, 1), (80, 2)}  # quick sweep sizes below the batch
    (probe,) = doc["memory"]
    assert probe["tokens"] == 3000 and probe["resident_bytes_per_token"] > 0
    targets = {t["name"]: t for t in doc["targets"]}
    assert len(targets) == 7
    for t in targets.values():
        assert t["passed"] in (True, False, None)
        assert (t["passed"] is None) == (t["value"] is None)
    assert targets["peak bytes/token at 10M"]["passed"] is None  # not measured
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checks_can_fail() -> None:
    """The settle checks reject a ledger that did not settle the batch."""
    work = bench.workload(tb.Scheme.ED25519, 40)
    result = bench.BenchResult(bench.BenchConfig.quick(batch_size=40), {})
    ledger = work.fresh_ledger(1, verify=True)
    wrong = ledger.settle([*work.batch[:-1], bench.corrupt_signature(work.batch[-1])], 2_000_000)
    bench.check_settled(result, "wrong", work, ledger, wrong)
    failed = {c.name for c in result.checks if not c.passed}
    assert failed == {
        "wrong: all 40 statuses OK",
        "wrong: state digest as reference",
        "wrong: balances",
    }


def test_plot_without_matplotlib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import raises ImportError
    code = main(["bench", "--quick", "--plot", str(tmp_path / "x.png")])
    assert code == 2
    assert not (tmp_path / "x.png").exists()


def test_bad_sizes_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--batch-size", "8"]) == 2
    assert "at least 32" in capsys.readouterr().err
