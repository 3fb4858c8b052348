"""The ``tongbao programme`` command: subsidy, coupon and red-envelope programmes.

``run CONFIG`` runs a programme end to end on an embedded ledger (define, issue, spending,
reclaim) and prints its report (``--ledger DIR``: a durable one, and a re-run after a crash
completes the run without issuing twice); ``check CONFIG`` validates a config and prints who
gets how much (recomputed from the seeds: the audit); ``envelope`` prints a seeded
red-envelope split.

>>> from tongbao.cli import main
>>> main(["programme", "envelope", "--total-fen", "1000", "--count", "4", "--seed", "doc"])
[...]
0
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import orjson
from rich.console import Console

from tongbao import programme as pg
from tongbao.errors import InvalidArgument


def add_programme(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``programme`` subcommand and its own subcommands."""
    p = subparsers.add_parser(
        "programme",
        help="earmarked subsidy, coupon and red-envelope programmes (programmable money)",
        description=(
            "Programmes of earmarked money on spending conditions evaluated by the engine: "
            "see docs/programmable-money.md and the sample configs in examples/programmes/."
        ),
    )
    sub = p.add_subparsers(dest="programme_command", metavar="ACTION", required=True)
    run = sub.add_parser(
        "run",
        help="run a programme end to end on an embedded ledger and print its report",
        description=(
            "Open the wallets, fund the issuer, define the condition, issue the earmarked "
            "tokens, let a share of the recipients spend at random merchants during the "
            "window, reclaim the unspent value at the end and print the report (issued, spent "
            "by merchant category, reclaimed, outstanding). Exit status 1 if the report does "
            "not add up or a phase had refusals it should not have."
        ),
    )
    run.add_argument("config", type=Path, metavar="CONFIG", help="programme config (TOML)")
    run.add_argument("--spend-share", type=float, default=0.7, help="share of recipients who spend")
    run.add_argument("--merchants", type=int, default=100, help="merchants when none are listed")
    run.add_argument("--seed", type=int, default=0, help="seed of the simulated spending")
    run.add_argument("--threads", type=int, default=0, help="engine threads, 0 for all")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.add_argument(
        "--ledger",
        type=Path,
        metavar="DIR",
        help="run on a durable ledger in DIR; re-run after a crash to complete the run "
        "(nothing is issued or paid twice)",
    )
    run.add_argument("--batch-txs", type=int, default=50_000, help="transactions per settled batch")
    run.add_argument(
        "--progress",
        action="store_true",
        help="print a line to stderr after each settled batch (PHASE batch N: counts)",
    )
    run.set_defaults(handler=run_run)
    check = sub.add_parser(
        "check",
        help="validate a config and print its allocations, recomputed from the seeds",
    )
    check.add_argument("config", type=Path, metavar="CONFIG", help="programme config (TOML)")
    check.add_argument("--json", action="store_true", help="print every allocation as JSON")
    check.set_defaults(handler=run_check)
    env = sub.add_parser("envelope", help="print a seeded red-envelope split (JSON list of fen)")
    env.add_argument("--total-fen", type=int, required=True)
    env.add_argument("--count", type=int, required=True)
    env.add_argument("--seed", required=True)
    env.set_defaults(handler=run_envelope)


def run_run(args: argparse.Namespace, console: Console) -> int:
    """``tongbao programme run``."""
    programme = pg.load_programme(args.config)
    if not 0.0 <= args.spend_share <= 1.0:
        raise InvalidArgument(f"--spend-share must be in [0, 1], got {args.spend_share}")

    # Test hook (tests/test_programme_crash.py): "PHASE:N" stops after batch N of PHASE has
    # settled, until stdin closes, so a test can SIGKILL the process at that exact point.
    pause = os.environ.get("TONGBAO_PROGRAMME_PAUSE_AFTER", "")

    def progress(phase: str, index: int, counts: dict[str, int]) -> None:
        print(f"{phase} batch {index}: {counts}", file=sys.stderr, flush=True)
        if pause == f"{phase}:{index}":
            print("paused", file=sys.stderr, flush=True)
            sys.stdin.read()

    run = pg.run_programme(
        programme,
        spend_share=args.spend_share,
        merchant_count=args.merchants,
        seed=args.seed,
        threads=args.threads,
        ledger_dir=args.ledger,
        batch_txs=args.batch_txs,
        on_batch=progress if args.progress else None,
    )
    run.ledger.close()
    r = run.report
    if args.json:
        doc = r.to_json() | {"statuses": run.statuses}
        print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    else:
        console.print(r.render(), highlight=False, soft_wrap=True)
        for phase, counts in run.statuses.items():
            console.print(f"  {phase:<10} {counts}", highlight=False)
    adds_up = r.issued_fen == r.spent_fen + r.reclaimed_fen + r.outstanding_fen
    # ALREADY_SETTLED: settled by an earlier, crashed run of the same programme (--ledger).
    refusals = any(
        k not in ("OK", "ALREADY_SETTLED")
        for p in ("fund", "define", "issue", "reclaim")
        for k in run.statuses.get(p, {})
    )
    return 0 if adds_up and not refusals and r.issued_fen == r.budget_fen else 1


def run_check(args: argparse.Namespace, console: Console) -> int:
    """``tongbao programme check``."""
    programme = pg.load_programme(args.config)
    if args.json:
        doc = {
            "name": programme.name,
            "condition": programme.condition,
            "budget_fen": programme.budget_fen,
            "provenance": programme.provenance,
            "allocations": [list(a) for a in programme.allocations],
        }
        print(orjson.dumps(doc).decode())
        return 0
    console.print(
        f"programme {programme.name} (condition {programme.condition}): "
        f"{len(programme.allocations):,} recipients, budget {programme.budget_fen:,} fen, "
        f"{len(programme.merchants):,} listed merchants, mccs {list(programme.mccs)}, "
        f"regions {list(programme.regions)}; drawn from {programme.provenance or 'a list'}",
        highlight=False,
    )
    return 0


def run_envelope(args: argparse.Namespace, console: Console) -> int:
    """``tongbao programme envelope``."""
    print(orjson.dumps(pg.red_envelope_split(args.total_fen, args.count, args.seed)).decode())
    return 0
