"""The pilot report: rich tables for the terminal, and a self-contained HTML file with charts.

:func:`summary_tables` turns a :class:`tongbao.simulate.SimulationResult` into rich tables
(pilot figures, wallets, merchants, scenarios, set-up, statuses, operators, performance, supply);
:func:`write_html` writes the same tables plus two PNG charts (throughput over time, scenario
mix) embedded as data URIs, so the file opens anywhere without its neighbours.

>>> from tongbao.simulate import Simulation, SimulationConfig
>>> result = Simulation(SimulationConfig(preset="small-city", scale=0.02)).run()
>>> [t.title for t in summary_tables(result)][:3]
['Pilot figures: small-city at scale 0.02', 'Wallets', 'Merchants by category']
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tongbao.presets import ENGINE_FEATURES
from tongbao.simulate import SimulationResult, format_yuan
from tongbao.types import Status


def _yes(ok: bool) -> str:
    return "[bold green]yes[/]" if ok else "[bold red]NO[/]"


def summary_tables(result: SimulationResult) -> list[Table]:
    """The run's report as rich tables, in reading order."""
    fig = result.figures
    tables = []

    pilot = Table(
        title=f"Pilot figures: {result.preset.name} at scale {fig.scale:g}", title_justify="left"
    )
    pilot.add_column("")
    pilot.add_column("preset x scale", justify="right")
    pilot.add_column("simulated", justify="right")
    pilot.add_column("match", justify="center")
    w = result.wallets
    rows = [
        ("personal wallets", fig.personal_wallets, w["personal"]["total"]),
        ("corporate wallets", fig.corporate_wallets, w["corporate"]["total"]),
        ("merchants", fig.merchants, w["merchant"]["total"]),
        ("payment transactions", fig.transactions, result.payments_settled),
    ]
    for name, want, got in rows:
        pilot.add_row(name, f"{want:,}", f"{got:,}", _yes(want == got))
    pilot.add_row(
        "amount (yuan)",
        format_yuan(fig.amount_fen),
        format_yuan(result.payments_amount_fen),
        _yes(fig.amount_fen == result.payments_amount_fen),
    )
    pilot.caption = escape(result.preset.title)
    tables.append(pilot)

    wallets = Table(title="Wallets", title_justify="left")
    wallets.add_column("kind")
    wallets.add_column("count", justify="right")
    wallets.add_column("detail")
    p = w["personal"]
    wallets.add_row("central bank", "1", "")
    wallets.add_row(
        "operator banks", f"{w['operator']['total']:,}", ", ".join(result.preset.operators)
    )
    wallets.add_row(
        "personal",
        f"{p['total']:,}",
        " · ".join(f"{k} {p[k]:,}" for k in ("class 1", "class 2", "class 3", "class 4"))
        + f" | Ed25519 {p['ed25519']:,} · SM2 {p['sm2']:,}",
    )
    wallets.add_row(
        "corporate",
        f"{w['corporate']['total']:,}",
        " · ".join(f"{c['name']} {c['count']:,}" for c in result.corporate_by_category),
    )
    wallets.add_row("merchants", f"{w['merchant']['total']:,}", "categories and regions below")
    tables.append(wallets)

    merchants = Table(title="Merchants by category", title_justify="left")
    merchants.add_column("MCC", justify="right")
    merchants.add_column("category")
    merchants.add_column("merchants", justify="right")
    for c in result.merchants_by_category:
        merchants.add_row(str(c["mcc"]), c["name"], f"{c['count']:,}")
    merchants.caption = "regions: " + ", ".join(
        f"{r['region']} {r['count']:,}" for r in result.merchants_by_region
    )
    tables.append(merchants)

    scen = Table(title="Payments by scenario", title_justify="left")
    for col, just in (
        ("scenario", "left"),
        ("engine feature", "left"),
        ("transactions", "right"),
        ("amount (yuan)", "right"),
        ("mean (yuan)", "right"),
        ("share of amount", "right"),
        ("match", "center"),
    ):
        scen.add_column(col, justify=just)  # type: ignore[arg-type]
    total_amount = max(1, result.payments_amount_fen)
    for s in result.scenarios:
        feature = ENGINE_FEATURES[s.feature]
        if s.feature == "salary":
            feature += f" ({s.payslips:,} payslips)"
        mean = s.settled_amount_fen // s.settled_transactions if s.settled_transactions else 0
        scen.add_row(
            s.name,
            feature,
            f"{s.settled_transactions:,}",
            format_yuan(s.settled_amount_fen),
            format_yuan(mean),
            f"{100 * s.settled_amount_fen / total_amount:.1f}%",
            _yes(s.matches),
        )
    scen.add_row(
        "all",
        "",
        f"{result.payments_settled:,}",
        format_yuan(result.payments_amount_fen),
        "",
        "",
        _yes(result.figures_match),
        style="bold",
    )
    scen.caption = (
        f"{result.payments_reassigned:,} planned payments moved to class-1 payers to respect "
        "class limits; transit fares are plain payments until the transit engine exists"
    )
    tables.append(scen)

    setup = Table(
        title="Set-up and other transactions (not in the pilot's count)", title_justify="left"
    )
    setup.add_column("")
    setup.add_column("count", justify="right")
    setup.add_column("yuan", justify="right")
    setup.add_row("wallet openings (registrations, logged)", f"{result.wallet_openings:,}", "")
    setup.add_row(
        "issue: central bank to operators",
        f"{result.phases['issue'].submitted:,}",
        format_yuan(result.issued_fen),
    )
    setup.add_row(
        "deposit exchange: operators to customers",
        f"{result.phases['exchange'].submitted:,}",
        format_yuan(result.phases["exchange"].paid_fen),
    )
    if result.transit_locks or result.transit_captures:
        setup.add_row(
            "transit tap-in: holds (LOCK of the max fare)", f"{result.transit_locks:,}", ""
        )
        setup.add_row(
            "transit tap-out: fares captured (CAPTURE; each a journey above)",
            f"{result.transit_captures:,}",
            format_yuan(result.phases["transit"].paid_fen),
        )
    setup.add_row(
        "redemption: operators to deposits",
        f"{result.phases['redemption'].submitted:,}",
        format_yuan(result.redeemed_fen),
    )
    setup.add_row("resubmissions mixed in (ALREADY_SETTLED)", f"{result.resubmissions:,}", "")
    setup.add_row("double spends mixed in (INPUT_SPENT)", f"{result.double_spends:,}", "")
    tables.append(setup)

    statuses = Table(title="Transactions by status", title_justify="left")
    statuses.add_column("status")
    for name in result.phases:
        statuses.add_column(name, justify="right")
    statuses.add_column("total", justify="right")
    totals = result.status_totals()
    for status in sorted(totals):
        style = "green" if status == Status.OK else "yellow"
        cells = [f"{p.status_counts.get(status, 0):,}" for p in result.phases.values()]
        statuses.add_row(status.name, *cells, f"{totals[status]:,}", style=style)
    statuses.add_row(
        "submitted",
        *[f"{p.submitted:,}" for p in result.phases.values()],
        f"{result.submitted:,}",
        style="bold",
    )
    tables.append(statuses)

    ops = Table(title="Operator positions", title_justify="left")
    for col in (
        "operator",
        "personal",
        "corporate",
        "merchants",
        "exchanged (yuan)",
        "balance (yuan)",
    ):
        ops.add_column(col, justify="left" if col == "operator" else "right")
    for o in result.operators:
        ops.add_row(
            o["name"],
            f"{o['personal_wallets']:,}",
            f"{o['corporate_wallets']:,}",
            f"{o['merchants']:,}",
            format_yuan(o["exchanged_fen"]),
            format_yuan(o["balance_fen"]),
        )
    ops.caption = (
        "balance: reserve left after exchange and redemption, plus value swept over customers' "
        f"balance caps (¥{format_yuan(result.swept_fen)} in all)"
    )
    tables.append(ops)

    perf = Table(title="Throughput and latency per batch", title_justify="left")
    for col in ("phase", "batches", "tx", "engine tx/s", "p50 ms", "p90 ms", "p99 ms", "max ms"):
        perf.add_column(col, justify="left" if col == "phase" else "right")
    for name, ph in result.phases.items():
        perf.add_row(
            name,
            f"{ph.batches:,}",
            f"{ph.submitted:,}",
            f"{ph.engine_tx_per_s:,.0f}",
            f"{ph.latency_ms(50):.1f}",
            f"{ph.latency_ms(90):.1f}",
            f"{ph.latency_ms(99):.1f}",
            f"{ph.latency_ms(100):.1f}",
        )
    d = result.to_dict()["timing"]
    pay = result.phases["payments"]
    perf.caption = (
        f"threads {result.threads}, batch size {result.config.batch_size:,}, signatures "
        f"{'verified' if result.config.verify_signatures else 'NOT verified'}; payments: build "
        f"+ sign {pay.build_s:.1f} s, settle {pay.settle_s:.1f} s, end to end "
        f"{d['end_to_end_tx_per_s']:,.0f} tx/s; wall {result.wall_s:.1f} s (plan and keys "
        f"{result.setup_s:.1f} s)"
    )
    tables.append(perf)

    money = Table(title="Supply check", title_justify="left")
    money.add_column("")
    money.add_column("yuan", justify="right")
    money.add_row("issued", format_yuan(result.issued_fen))
    money.add_row("redeemed", format_yuan(result.redeemed_fen))
    money.add_row("outstanding", format_yuan(result.outstanding_fen))
    money.add_row("sum of all balances", format_yuan(result.balances_fen))
    money.add_row("moved by transfers (engine receipts)", format_yuan(result.value_moved_fen))
    if result.supply_ok:
        money.add_row("supply check", "[bold green]OK[/]")
        money.caption = (
            "issued - redeemed = outstanding = sum of balances; invariants hold; state digest "
            f"{result.state_digest.hex()[:16]}, content digest {result.content_digest.hex()[:16]}"
        )
        if result.cluster is not None:
            money.caption += (
                f"; cluster of {result.cluster['vshards']} vshards ({result.cluster['waves']} "
                "waves): same statuses and content digest"
            )
    else:
        money.add_row("supply check", "[bold red]FAILED[/]")
        money.caption = escape(result.invariant_error or "the totals disagree")
    tables.append(money)
    return tables


def render_summary(result: SimulationResult, console: Console) -> None:
    """Print :func:`summary_tables` to ``console``."""
    for table in summary_tables(result):
        console.print(table)


# -- HTML ----------------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def charts(result: SimulationResult) -> dict[str, str]:
    """The report's charts as base64 PNG: ``throughput`` (engine tx/s per batch against wall
    time, by phase) and ``scenarios`` (share of count and of amount per scenario)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for phase in ("exchange", "payments", "transit"):
        points = [b for b in result.batches if b.phase == phase and b.settle_s > 0]
        if points:
            ax.plot(
                [b.end_s for b in points],
                [b.tx_count / b.settle_s for b in points],
                ".-",
                markersize=3,
                linewidth=0.8,
                label=f"{phase}: engine (settle only)",
            )
            ax.plot(
                [b.end_s for b in points],
                [b.tx_count / (b.settle_s + b.build_s) for b in points],
                ".",
                markersize=2,
                alpha=0.6,
                label=f"{phase}: build + sign + settle",
            )
    ax.set_xlabel("wall time since start (s)")
    ax.set_ylabel("transactions per second")
    ax.set_title("Throughput per batch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    out["throughput"] = _png(fig)
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
    names = [s.name for s in result.scenarios]
    counts = [s.settled_transactions for s in result.scenarios]
    amounts = [s.settled_amount_fen / 100e6 for s in result.scenarios]  # display only
    left.barh(names, counts, color="#4477aa")
    left.set_title("transactions")
    left.invert_yaxis()
    right.barh(names, amounts, color="#cc6677")
    right.set_title("amount (million yuan)")
    right.invert_yaxis()
    right.set_yticklabels([])
    for a in (left, right):
        a.grid(axis="x", alpha=0.3)
    fig.suptitle("Scenario mix")
    out["scenarios"] = _png(fig)
    plt.close(fig)
    return out


def write_html(result: SimulationResult, path: Path) -> None:
    """Write the report as one self-contained HTML file: the tables of :func:`summary_tables`
    (exported by rich) and the PNG charts of :func:`charts`, embedded."""
    console = Console(record=True, width=120, file=io.StringIO())
    for table in summary_tables(result):
        console.print(table)
    tables_html = console.export_html(inline_styles=True, code_format="<pre>{code}</pre>")
    images = charts(result)
    title = html.escape(f"tongbao simulate: {result.preset.title} (scale {result.figures.scale:g})")
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}
pre{{font-size:12px;line-height:1.25}} img{{max-width:100%}}</style></head>
<body><h1>{title}</h1>
<p>Source: {html.escape(result.preset.source)}. Seed {result.config.seed}; state digest
<code>{result.state_digest.hex()}</code>; content digest
<code>{result.content_digest.hex()}</code>. Figures match the preset:
<b>{"yes" if result.figures_match else "NO"}</b>; supply check:
<b>{"OK" if result.supply_ok else "FAILED"}</b>.</p>
<h2>Throughput</h2>
<img alt="throughput per batch" src="data:image/png;base64,{images["throughput"]}">
<h2>Scenario mix</h2>
<img alt="scenario mix" src="data:image/png;base64,{images["scenarios"]}">
<h2>Tables</h2>{tables_html}
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
