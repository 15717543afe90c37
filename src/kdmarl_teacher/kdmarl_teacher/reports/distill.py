"""`kdmarl report runs/DISTILL` (the run holds distill_report.json): the distillation figures.

`distill_agents.png`: per-agent FLOPs and parameters against each agent's hardware budget and the FLOPs reduction
vs the teacher actor; `distill_curves.png`: the learning curves (return, loss terms, teacher agreement, task
figures). Torch is imported only to read the exact budgets from students.pt when the run has one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kdmarl_teacher.reports.common import FLOPS_TARGET, pyplot, read_json, read_metrics, save_figure, smooth


def _retention_text(value: float | None) -> str:
    """distill_report.json's retention: None (null) when teacher and random score alike (bundle_eval.retention);
    NaN in reports written before issue 10."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def agent_budgets(run: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each agent's hardware budget: from students.pt when present (exact), else used x the recorded margin."""
    students = run / "students.pt"
    if students.is_file():  # torch only here: the figures of a run without students.pt stay torch-free
        from kdmarl_teacher.distill.students_file import read_students_payload  # noqa: PLC0415 (torch: only here)

        return [dict(a.get("hardware") or {}) for a in read_students_payload(students)["agents"]]
    out = []
    for a in report["agents"]:
        m = a.get("ladder_margins") or {}
        out.append({"name": a.get("hardware"), "max_flops": a["flops"] * m["max_flops"] if "max_flops" in m else None,
                    "max_params": a["params"] * m["max_params"] if "max_params" in m else None})
    return out


def draw_agents(run: Path, out: Path) -> Path:
    """Per-agent bars: FLOPs and parameters against the agent's own budget, and the FLOPs reduction."""
    path = run / "distill_report.json"
    rep = read_json(path, ("agents", "teacher", "retention", "students_eval", "teacher_eval", "random_eval"))
    agents = rep["agents"]
    for i, a in enumerate(agents):
        for key in ("name", "flops", "params", "flops_reduction", "hidden"):
            if key not in a:
                raise ValueError(f"{path}: agents[{i}] has no field '{key}'")
    budgets = agent_budgets(run, rep)
    teacher = rep["teacher"]["actor_resources"]
    labels = []
    for a, b in zip(agents, budgets, strict=True):
        sensing = a["sensing"]["name"] if isinstance(a.get("sensing"), dict) else a.get("sensing", "?")
        labels.append(f"{a['name']}\n{sensing}\n{b.get('name') or a.get('hardware', '?')}\n"
                      f"{a.get('student') or 'x'.join(map(str, a['hidden']))}")  # "gru32", or MLP widths

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    xs = list(range(len(agents)))
    for ax, key, budget_key, what in ((axes[0], "flops", "max_flops", "FLOPs per decision"),
                                      (axes[1], "params", "max_params", "parameters")):
        used = [a[key] for a in agents]
        ax.bar(xs, used, color="tab:blue", width=0.6, label="student")
        for x, b in zip(xs, budgets, strict=True):
            if b.get(budget_key):
                ax.hlines(b[budget_key], x - 0.4, x + 0.4, color="tab:red", lw=2,
                          label="hardware budget" if x == 0 else None)
        ax.axhline(teacher[key], color="black", ls="--", lw=1, label=f"teacher actor {teacher[key]}")
        for x, u, b in zip(xs, used, budgets, strict=True):
            cap = b.get(budget_key)
            text = f"{u} / {cap:.0f}" if cap else str(u)  # used / allowed: the margin at a glance
            ax.text(x, max(u, cap or 0) * 1.15, text, ha="center", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(top=max(*used, teacher[key], *(b.get(budget_key) or 0 for b in budgets)) * 3)
        ax.set_ylabel(f"{what} (log scale)")
        ax.set_title(f"{what} vs budget (labels: used / allowed)", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
    red = [a["flops_reduction"] for a in agents]
    axes[2].bar(xs, red, color="tab:green", width=0.6)
    axes[2].axhline(FLOPS_TARGET, color="tab:green", ls="--", lw=1,
                    label=f"{FLOPS_TARGET:.0f}x target (issue 4, full-obs team)")
    for x, r in zip(xs, red, strict=True):
        axes[2].text(x, r * 1.05, f"{r:.1f}x", ha="center", fontsize=8)
    axes[2].set_yscale("log")
    axes[2].set_ylim(top=max(*red, FLOPS_TARGET) * 2)
    axes[2].set_ylabel("FLOPs reduction vs teacher actor (x, log scale)")
    axes[2].set_title("FLOPs reduction per agent", fontsize=10)
    axes[2].legend(fontsize=7, loc="upper left")
    for ax in axes:
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, fontsize=7)
        ax.grid(axis="y", alpha=0.3, which="both")
    s, t, r = rep["students_eval"], rep["teacher_eval"], rep["random_eval"]
    fig.suptitle(f"{run.name}: team {rep.get('team', '?')} — retention {_retention_text(rep['retention'])} "
                 f"(team-level; students "
                 f"{s['team_return']:.2f} ± {s['ci95']:.2f}, teacher {t['team_return']:.2f}, random "
                 f"{r['team_return']:.2f}, {s.get('episodes', '?')} seeds)\nper agent: sensing profile / hardware "
                 "profile / hidden widths; returns are team-level (agents share the reward), so no per-agent return",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def draw_distill_curves(run: Path, out: Path) -> Path:
    """Distillation learning curves: return, loss terms, teacher agreement and task figures vs env steps."""
    path = run / "distill_report.json"
    rep = read_json(path, ("teacher_eval", "students_eval", "random_eval"))
    m = read_metrics(run / "metrics.csv")
    for key in ("global_step", "train_team_return"):
        if key not in m:
            raise ValueError(f"{run / 'metrics.csv'}: no column '{key}'")
    x = [v / 1e6 for v in m["global_step"]]
    window = max(1, len(x) // 50)

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(x, m["train_team_return"], color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(x, smooth(m["train_team_return"], window), color="tab:blue", lw=1.5,
            label="students, training rollouts (stochastic)")
    t, r, s = rep["teacher_eval"]["team_return"], rep["random_eval"]["team_return"], rep["students_eval"]
    ax.axhline(t, color="black", ls="--", lw=1, label=f"teacher eval (greedy) {t:.2f}")
    ax.axhline(r, color="gray", ls=":", lw=1, label=f"random eval {r:.2f}")
    ax.errorbar([x[-1]], [s["team_return"]], yerr=[s["ci95"]], fmt="o", color="red", capsize=3,
                label=f"students eval (greedy) {s['team_return']:.2f} ± {s['ci95']:.2f}")
    ax.set_ylabel("team return (mean over agents of summed reward)")
    ax.set_title(f"team return; retention {_retention_text(rep.get('retention'))}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")

    ax = axes[0, 1]
    for term in ("kl", "ce", "relation", "role"):
        col = m.get(f"loss/{term}")
        if col and any(v > 0 for v in col if not math.isnan(v)):
            ax.plot(x, smooth(col, window), lw=1.2, label=term)
    ax.set_yscale("log")
    ax.set_ylabel("loss term (unweighted, log scale)")
    ax.set_title("distillation loss terms (moving average)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")

    ax = axes[1, 0]
    agreement = m.get("teacher_agreement") or m.get("loss/agreement")  # the column's name before issue 10
    if agreement:
        ax.plot(x, agreement, color="tab:green", alpha=0.25, lw=0.8)
        ax.plot(x, smooth(agreement, window), color="tab:green", lw=1.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("student argmax = teacher argmax (fraction)")
    ax.set_title("agreement with the teacher's greedy action", fontsize=10)
    ax.set_xlabel("env steps (millions)")

    ax = axes[1, 1]
    for key, color in (("task/landmarks_covered", "tab:purple"), ("task/collisions", "tab:red")):
        if key in m:
            ax.plot(x, smooth(m[key], window), color=color, lw=1.5, label=f"{key.split('/')[1]} (training)")
    for key, color in (("landmarks_covered", "tab:purple"), ("collisions", "tab:red")):
        if key in s:
            ax.scatter([x[-1]], [s[key]], color=color, marker="D", zorder=5, label=f"{key} eval {s[key]:.2f}")
    ax.set_ylabel("per episode (landmarks of 3 / collision steps)")
    ax.set_title("task figures (landmarks covered at the last step, collisions)", fontsize=10)
    ax.set_xlabel("env steps (millions)")
    ax.legend(fontsize=7, loc="upper right")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(f"{run.name}: KD-MARL distillation of team {rep.get('team', '?')} "
                 f"(terms {', '.join(rep.get('terms', {}))}; {rep.get('global_step', 0) / 1e6:.2f}M env steps)",
                 fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out)


def draw_distill(run: Path, out_dir: Path) -> list[Path]:
    return [draw_agents(run, out_dir / "distill_agents.png"), draw_distill_curves(run, out_dir / "distill_curves.png")]
