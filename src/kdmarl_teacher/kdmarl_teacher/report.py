"""`kdmarl report`: the figures of a run or of the benchmark results (PNG, matplotlib Agg).

- `kdmarl report runs/TEACHER`: the teacher learning curve from metrics.csv. Two panels: mean training team
  return against env steps and against wall time. For simple_spread (N=3, 25 steps) the reference lines of
  DESIGN.md §5 are drawn (-8.05 velocity-tracking controller, -7.05 model-based planner) and the uniformly random
  baseline (-26.9, or the run's own eval.json figure when there is one). Training returns are of the
  *stochastic* policy on training seeds; the headline figure is `kdmarl evaluate`'s.
- `kdmarl report runs/DISTILL` (the run holds distill_report.json): `distill_agents.png`, per-agent FLOPs and
  parameters against each agent's hardware budget and the FLOPs reduction vs the teacher actor, and
  `distill_curves.png`, the distillation learning curves (return, loss terms, teacher agreement, task figures).
- `kdmarl report --bench [DIR]` (default bench/results): `distill_pareto.png`, retention vs FLOPs reduction
  over the student ladder (distill_ladder.json), and `distill_ablation.png`, retention per baseline and
  ablation with 95 % CI (distill_ablation.json, plus any baseline rows of distill.json). Written to
  `--out-dir` (default docs/), where the README shows them.

Retention error bars are the student team return's 95 % CI divided by (R_teacher - R_random): the teacher and
random figures are treated as exact, which they are not quite; the caption says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import yaml

from kdmarl_teacher.evaluate import SPREAD_REFERENCES

DEFAULT_BENCH_DIR = "bench/results"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", nargs="?", help="run directory holding metrics.csv (teacher or distillation run)")
    parser.add_argument("--out", help="teacher run: PNG path (default RUN/learning_curve.png)")
    parser.add_argument("--bench", nargs="?", const=DEFAULT_BENCH_DIR, metavar="DIR",
                        help=f"draw the benchmark figures from DIR (default {DEFAULT_BENCH_DIR}) instead of a run")
    parser.add_argument("--out-dir", help="where the PNGs go (default: the run directory; docs/ with --bench)")


def read_metrics(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (a run directory holds metrics.csv)")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows yet")
    cols: dict[str, list[float]] = {k: [] for k in rows[0]}
    for r in rows:
        for k, column in cols.items():
            try:
                column.append(float(r[k]))
            except (TypeError, ValueError):
                column.append(float("nan"))
    return cols


def draw(run: Path, out: Path) -> Path:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    m = read_metrics(run / "metrics.csv")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    scenario = cfg.get("scenario", "?")
    params = cfg.get("env_params", {}) or {}
    refs: dict[str, float] = {}
    if scenario == "simple_spread" and params.get("N", 3) == 3 and params.get("max_cycles", 25) == 25:
        refs = {"velocity controller -8.05": SPREAD_REFERENCES["velocity_controller"],
                "model-based planner -7.05": SPREAD_REFERENCES["model_based_planner"],
                "random -26.9": SPREAD_REFERENCES["random"]}
    eval_json = run / "eval.json"
    evaluated = None
    if eval_json.exists():
        ev = json.loads(eval_json.read_text())
        refs = {k: v for k, v in refs.items() if not k.startswith("random")}
        refs[f"random (eval) {ev['results']['random']['team_return']['mean']:.2f}"] = \
            ev["results"]["random"]["team_return"]["mean"]
        evaluated = ev["results"]["deterministic"]["team_return"]["mean"]

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, xkey, xlabel, scale in ((axes[0], "global_step", "env steps (millions)", 1e-6),
                                    (axes[1], "wall_time", "wall time (minutes)", 1 / 60)):
        x = [v * scale for v in m[xkey]]
        ax.plot(x, m["train_return"], lw=1.2, label="train return (stochastic)")
        for (name, y), style in zip(refs.items(), ("--", ":", "-.", "-."), strict=False):
            ax.axhline(y, ls=style, color="gray", lw=1, label=name)
        if evaluated is not None:
            ax.scatter([x[-1]], [evaluated], color="red", zorder=5, label=f"eval deterministic {evaluated:.2f}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("team return (mean over agents of summed reward)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{run.name}: MAPPO teacher on {scenario} {params or ''}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ---- shared helpers ------------------------------------------------------------------------------------------
RETENTION_TARGETS = {"issue target 0.95 (full obs)": 0.95, "target 0.90 (hetero / published)": 0.90}
FLOPS_TARGET = 30.0  # issue 4 §6: >= 30x fewer FLOPs per agent than the teacher actor
ABLATION_ORDER = ("kdmarl_full", "kl_only", "mappo_scratch", "minus_pg", "minus_kl", "minus_ce", "minus_relation",
                  "minus_role", "resource_aware")
ABLATION_LABELS = {"kdmarl_full": "KD-MARL full loss", "kl_only": "KL-only distillation (baseline)",
                   "mappo_scratch": "MAPPO from scratch (baseline)", "minus_pg": "full - teacher-guided PG",
                   "minus_kl": "full - KL", "minus_ce": "full - argmax CE", "minus_relation": "full - relation",
                   "minus_role": "full - role alignment", "resource_aware": "resource-aware (lasso + prune)"}


def _pyplot() -> Any:
    """matplotlib with the Agg backend, imported late so `kdmarl --help` stays light."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def read_json(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with ``required`` keys; any problem is a ValueError/FileNotFoundError naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    return data


def _row_field(path: Path, i: int, row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise ValueError(f"{path}: rows[{i}] has no field '{key}'")
    return row[key]


def _retention_ci(row: dict[str, Any]) -> float:
    """Half-width of the retention CI from the student return's CI (teacher and random taken as exact)."""
    span = row["teacher_return"] - row["random_return"]
    ci = row.get("ci95", row.get("student_ci95"))
    return abs(ci / span) if ci is not None and span else 0.0


def _save(fig: Any, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    _pyplot().close(fig)
    return out


def _smooth(y: list[float], window: int) -> list[float]:
    """Trailing moving average ignoring NaN: training curves are noisy per iteration."""
    out, acc = [], []
    for v in y:
        acc.append(v)
        if len(acc) > window:
            acc.pop(0)
        vals = [a for a in acc if not math.isnan(a)]
        out.append(sum(vals) / len(vals) if vals else float("nan"))
    return out


# ---- benchmark figures -------------------------------------------------------------------------------------------
def draw_pareto(ladder_json: Path, out: Path) -> Path:
    """Retention vs FLOPs reduction over the student ladder: what each factor of compression costs."""
    data = read_json(ladder_json, ("rows",))
    rows = []
    for i, r in enumerate(data["rows"]):
        if "error" in r:
            continue
        for key in ("hidden", "flops", "flops_reduction", "retention", "teacher_return", "random_return"):
            _row_field(ladder_json, i, r, key)
        rows.append(r)
    if not rows:
        raise ValueError(f"{ladder_json}: no finished rows to plot")
    rows.sort(key=lambda r: r["flops_reduction"])
    x = [r["flops_reduction"] for r in rows]
    y = [r["retention"] for r in rows]
    err = [_retention_ci(r) for r in rows]
    # Pareto-optimal rungs: no other rung is both more compressed and better retained.
    front = [r for r in rows if not any(o["flops_reduction"] > r["flops_reduction"] and o["retention"] > r["retention"]
                                        for o in rows)]

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    ax.axvspan(FLOPS_TARGET, max(x) * 2.5, color="tab:green", alpha=0.06, label="target region (>= 30x)")
    for (label, level), style in zip(RETENTION_TARGETS.items(), ("--", ":"), strict=True):
        ax.axhline(level, color="gray", ls=style, lw=1, label=f"retention {label}")
    ax.axhline(1.0, color="black", lw=0.8, alpha=0.5, label="teacher (retention 1.0)")
    ax.axvline(FLOPS_TARGET, color="tab:green", ls="--", lw=1, label=f"{FLOPS_TARGET:.0f}x FLOPs reduction target")
    ax.plot(x, y, color="tab:blue", lw=1, alpha=0.5)
    ax.errorbar(x, y, yerr=err, fmt="o", color="tab:blue", capsize=3, label="student team (95 % CI)")
    fx = [r["flops_reduction"] for r in front]
    fy = [r["retention"] for r in front]
    ax.plot(fx, fy, "s", mfc="none", mec="tab:red", ms=11, label="Pareto-optimal rung")
    for r in rows:
        ax.annotate(f"{'x'.join(map(str, r['hidden']))}\n{r['flops']} FLOPs", (r["flops_reduction"], r["retention"]),
                    textcoords="offset points", xytext=(7, 5), ha="left", fontsize=7,
                    bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1})
    ax.set_xscale("log")
    ax.set_xlim(min(x) / 1.6, max(x) * 2.5)
    lo = min(min(y) - max(err), 0.85)
    ax.set_ylim(lo - 0.05, 1.05)
    ax.set_xlabel("FLOPs reduction per agent (teacher actor FLOPs / student FLOPs, log scale)")
    ax.set_ylabel("retention (R_s - R_rand) / (R_t - R_rand)")
    teacher = f"teacher {rows[0]['teacher_return']:.2f}, random {rows[0]['random_return']:.2f}"
    steps = rows[0].get("env_steps")
    ax.set_title("Retention vs FLOPs reduction over the student ladder (spread N=3, full obs, mpe2 seeds "
                 f"1000-1199)\n{teacher}"
                 + (f"; {steps / 1e6:.1f}M env steps per rung" if steps else ""), fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return _save(fig, out)


def ablation_rows(bench_dir: Path) -> list[dict[str, Any]]:
    """distill_ablation.json rows, plus baseline/ablation rows of distill.json not already there (by variant)."""
    path = bench_dir / "distill_ablation.json"
    data = read_json(path, ("rows",))
    rows: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(data["rows"]):
        variant = _row_field(path, i, r, "variant")
        if "error" not in r:
            for key in ("retention", "teacher_return", "random_return"):
                _row_field(path, i, r, key)
        rows.setdefault(variant, r)
    main = bench_dir / "distill.json"
    if main.is_file():
        extra = read_json(main, ("rows",))
        for r in [*extra.get("ablation_rows", []), *extra["rows"]]:
            if r.get("variant") in ABLATION_ORDER and r.get("variant") != "kdmarl_full" \
                    and "retention" in r and "teacher_return" in r:
                rows.setdefault(r["variant"], r)
    order = [v for v in ABLATION_ORDER if v in rows] + sorted(v for v in rows if v not in ABLATION_ORDER)
    return [rows[v] for v in order]


def draw_ablation(bench_dir: Path, out: Path) -> Path:
    """Retention per variant at equal student size: baselines first, then each term removed in turn.

    Two panels on the same rows: the full 0-1 range (MAPPO from scratch sits far below) and a zoom on the
    distillation variants, whose differences are a few hundredths and would otherwise be invisible.
    """
    rows = ablation_rows(bench_dir)
    ok = [r for r in rows if "error" not in r]
    if not ok:
        raise ValueError(f"{bench_dir / 'distill_ablation.json'}: no finished rows to plot")
    full = next((r for r in ok if r["variant"] == "kdmarl_full"), None)
    colors = {"kdmarl_full": "tab:blue", "kl_only": "tab:orange", "mappo_scratch": "tab:orange",
              "resource_aware": "tab:purple"}
    ypos = list(range(len(rows)))[::-1]
    distilled = [r["retention"] - _retention_ci(r) for r in ok if r["variant"] != "mappo_scratch"]
    zoom_lo = min([*distilled, 0.9]) - 0.02

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 2.2), sharey=True,
                             gridspec_kw={"width_ratios": [1, 1.4]})
    for ax, (lo, hi) in zip(axes, ((0.0, 1.1), (zoom_lo, 1.01)), strict=True):
        for yp, r in zip(ypos, rows, strict=True):
            if "error" in r:
                if ax is axes[0]:
                    ax.text(0.02, yp, f"failed: {r['error'][:40]}", va="center", fontsize=7, color="red")
                continue
            ret, ci = r["retention"], _retention_ci(r)
            ax.barh(yp, ret, xerr=ci, color=colors.get(r["variant"], "tab:gray"), alpha=0.85, capsize=3)
            if ax is axes[1] and ret >= lo:
                size = r.get("student_hidden")
                sizes = sorted({"x".join(map(str, h)) for h in size or []})
                size_txt = f"  ({sizes[0]})" if len(sizes) == 1 else f"  ({'/'.join(sizes)}, pruned)" if sizes else ""
                ax.text(lo + 0.002, yp, f"{ret:.3f}{size_txt}", va="center", fontsize=8,
                        bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1})
            elif ax is axes[1]:
                ax.text(lo + 0.002, yp, f"{ret:.3f} (off scale, see left)", va="center", fontsize=8)
        for (label, level), style in zip(RETENTION_TARGETS.items(), ("--", ":"), strict=True):
            ax.axvline(level, color="gray", ls=style, lw=1, label=f"retention {label}")
        if full is not None:
            ax.axvline(full["retention"], color="tab:blue", lw=1, alpha=0.6,
                       label=f"KD-MARL full loss {full['retention']:.3f}")
        ax.set_xlim(lo, hi)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ypos)
    axes[0].set_yticklabels([ABLATION_LABELS.get(r["variant"], r["variant"]) for r in rows], fontsize=9)
    axes[0].set_xlabel("retention (R_s - R_rand) / (R_t - R_rand)")
    axes[1].set_xlabel("retention, zoomed (label: value and student hidden widths)")
    axes[0].set_title("full range", fontsize=9)
    axes[1].set_title("zoom on the distillation variants", fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    steps = ok[0].get("env_steps")
    fig.suptitle("Baselines and ablations at equal student size (spread N=3, full obs, mpe2 seeds 1000-1199)\n"
                 + (f"same {steps / 1e6:.1f}M env-step budget each; " if steps else "")
                 + "one distillation seed; error bar = student return 95 % CI / (R_t - R_rand)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return _save(fig, out)


def draw_bench(bench_dir: Path, out_dir: Path) -> list[Path]:
    """Both benchmark figures; the ladder file is required, as is the ablation file."""
    return [draw_pareto(bench_dir / "distill_ladder.json", out_dir / "distill_pareto.png"),
            draw_ablation(bench_dir, out_dir / "distill_ablation.png")]


# ---- distillation run figures ------------------------------------------------------------------------------------
def _retention_text(value: float | None) -> str:
    """distill_report.json's retention: None (null) when teacher and random score alike (bundle_eval.retention);
    NaN in reports written before issue 10."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def agent_budgets(run: Path, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each agent's hardware budget: from students.pt when present (exact), else used x the recorded margin."""
    students = run / "students.pt"
    if students.is_file():  # torch only here: the figures of a run without students.pt stay torch-free
        from kdmarl_teacher.students_file import read_students_payload  # noqa: PLC0415

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
                      f"{'x'.join(map(str, a['hidden']))}")

    plt = _pyplot()
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
    return _save(fig, out)


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

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(x, m["train_team_return"], color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(x, _smooth(m["train_team_return"], window), color="tab:blue", lw=1.5,
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
            ax.plot(x, _smooth(col, window), lw=1.2, label=term)
    ax.set_yscale("log")
    ax.set_ylabel("loss term (unweighted, log scale)")
    ax.set_title("distillation loss terms (moving average)", fontsize=10)
    ax.legend(fontsize=7, loc="upper right")

    ax = axes[1, 0]
    agreement = m.get("teacher_agreement") or m.get("loss/agreement")  # the column's name before issue 10
    if agreement:
        ax.plot(x, agreement, color="tab:green", alpha=0.25, lw=0.8)
        ax.plot(x, _smooth(agreement, window), color="tab:green", lw=1.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("student argmax = teacher argmax (fraction)")
    ax.set_title("agreement with the teacher's greedy action", fontsize=10)
    ax.set_xlabel("env steps (millions)")

    ax = axes[1, 1]
    for key, color in (("task/landmarks_covered", "tab:purple"), ("task/collisions", "tab:red")):
        if key in m:
            ax.plot(x, _smooth(m[key], window), color=color, lw=1.5, label=f"{key.split('/')[1]} (training)")
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
    return _save(fig, out)


def draw_distill(run: Path, out_dir: Path) -> list[Path]:
    return [draw_agents(run, out_dir / "distill_agents.png"), draw_distill_curves(run, out_dir / "distill_curves.png")]


def run(args: argparse.Namespace) -> int:
    if args.bench is not None:
        if args.run:
            raise ValueError("give either a run directory or --bench, not both")
        paths = draw_bench(Path(args.bench), Path(args.out_dir or "docs"))
    elif args.run is None:
        raise ValueError("nothing to draw: give a run directory or --bench [DIR]")
    else:
        run_dir = Path(args.run)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        if (run_dir / "distill_report.json").is_file():
            if args.out:
                raise ValueError("--out names the teacher learning curve; a distillation run takes --out-dir")
            paths = draw_distill(run_dir, Path(args.out_dir) if args.out_dir else run_dir)
        else:
            out = Path(args.out) if args.out else Path(args.out_dir or run_dir) / "learning_curve.png"
            paths = [draw(run_dir, out)]
    for p in paths:
        print(f"wrote {p}")
    return 0
