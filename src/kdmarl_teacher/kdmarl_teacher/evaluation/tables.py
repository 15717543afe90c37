"""The tables `kdmarl evaluate` prints (rich), for a teacher run and for a bundle alike."""

from __future__ import annotations

import sys
from typing import Any


def console() -> Any:
    """A rich console; piped output (logs, `make demo`) gets 120 columns instead of rich's 80."""
    from rich.console import Console  # noqa: PLC0415

    return Console() if sys.stdout.isatty() else Console(width=120)


def print_table(report: dict[str, Any], run: str) -> None:
    from rich.table import Table  # noqa: PLC0415

    res = report["results"]
    metric_names = sorted({k for r in res.values() for k in r["metrics"]})
    wins = any("win_rate" in r for r in res.values())  # SMAX
    seed_kind = "seeds" if str(report.get("seeding", "")).startswith(("SMAX", "GRF")) else "mpe2 seeds"
    table = Table(title=f"{run}: {report['scenario']['name']}, {report['episodes']} episodes, "
                        f"{seed_kind} {report['seeds'][0]}-{report['seeds'][1]}")
    table.add_column("policy")
    table.add_column("team return (95% CI)", justify="right")
    if wins:
        table.add_column("win rate (95% CI)", justify="right")
    for m in metric_names:
        table.add_column(m, justify="right")
    for policy, r in res.items():
        tr = r["team_return"]
        cells = [f"{tr['mean']:.3f} ± {tr['ci95']:.3f}"]
        if wins:
            wr = r.get("win_rate")
            cells.append(f"{wr['mean']:.3f} ± {wr['ci95']:.3f}" if wr else "-")
        cells += [f"{r['metrics'][m]['mean']:.3f}" if m in r["metrics"] else "-" for m in metric_names]
        table.add_row(policy, *cells)
    for name, value in report.get("references", {}).items():
        if isinstance(value, float):
            table.add_row(f"[dim]ref: {name}[/dim]", f"[dim]{value:.2f}[/dim]",
                          *["" for _ in range(len(metric_names) + int(wins))])
    console().print(table)


def print_bundle_agents(report: dict[str, Any]) -> None:
    from rich.table import Table  # noqa: PLC0415

    ret = report["retention"]
    table = Table(title=f"retention {ret:.3f}" if ret is not None else "retention: n/a",
                  caption=f"teacher actor: {report['teacher_flops']:,} FLOPs per decision"
                  if report["teacher_flops"] else None)
    for col in ("agent", "input", "student", "params", "FLOPs", "FLOPs reduction", "budget"):
        table.add_column(col, justify="left" if col in ("agent", "student", "budget") else "right")
    for a in report["agents"]:
        budget = "-" if a["budget"] is None else f"{a['budget']} ({'met' if a['budget_met'] else 'NOT met'})"
        reduction = f"{a['flops_reduction']:.1f}x" if a["flops_reduction"] else "-"
        table.add_row(a["agent"], str(a["input_dim"]), str(a["architecture"]), f"{a['params']:,}",
                      f"{a['flops']:,}", reduction, budget)
    console().print(table)
