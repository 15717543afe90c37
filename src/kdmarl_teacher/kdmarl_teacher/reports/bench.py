"""`kdmarl report --bench [DIR]`: the benchmark figures from bench/results.

`distill_pareto.png`, retention vs FLOPs reduction over the student ladder (distill_ladder.json),
`distill_ablation.png`, retention per baseline and ablation with 95 % CI (distill_ablation.json, plus any baseline
rows of distill.json), and `peers_<task>.png` for each `peers_<task>.json` (ours vs a JaxMARL peer, one run).
Retention error bars are the 95 % interval across distillation seeds for rows from a sweep (n_seeds > 1), else
the student team return's 95 % CI divided by (R_teacher - R_random): the teacher and random figures are treated
as exact, which they are not quite; the caption says which.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdmarl_teacher.reports.common import FLOPS_TARGET, pyplot, read_json, save_figure
from kdmarl_teacher.reports.peers import draw_peers

RETENTION_TARGETS = {"issue target 0.95 (full obs)": 0.95, "target 0.90 (hetero / published)": 0.90}
ABLATION_ORDER = ("kdmarl_full", "kl_only", "mappo_scratch", "minus_pg", "minus_kl", "minus_ce", "minus_relation",
                  "minus_role", "resource_aware")
ABLATION_LABELS = {"kdmarl_full": "KD-MARL full loss", "kl_only": "KL-only distillation (baseline)",
                   "mappo_scratch": "MAPPO from scratch (baseline)", "minus_pg": "full - teacher-guided PG",
                   "minus_kl": "full - KL", "minus_ce": "full - argmax CE", "minus_relation": "full - relation",
                   "minus_role": "full - role alignment", "resource_aware": "resource-aware (lasso + prune)"}



def _row_field(path: Path, i: int, row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise ValueError(f"{path}: rows[{i}] has no field '{key}'")
    return row[key]


def _retention_ci(row: dict[str, Any]) -> float:
    """Half-width of the retention CI: across distillation seeds when the row has it (a sweep's
    `retention_ci95`), else from the student return's CI (teacher and random taken as exact)."""
    if row.get("n_seeds", 1) > 1 and row.get("retention_ci95") is not None:
        return float(row["retention_ci95"])
    span = row["teacher_return"] - row["random_return"]
    ci = row.get("ci95", row.get("student_ci95"))
    return abs(ci / span) if ci is not None and span else 0.0


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

    plt = pyplot()
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
    return save_figure(fig, out)


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

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 2.2), sharey=True,
                             gridspec_kw={"width_ratios": [1, 1.4]})
    for ax, (lo, hi) in zip(axes, ((0.0, 1.1), (zoom_lo, 1.01)), strict=True):
        for yp, r in zip(ypos, rows, strict=True):
            if "error" in r:
                if ax is axes[0]:
                    what = "not run" if "not run" in r["error"] else f"failed: {r['error'][:40]}"
                    ax.text(0.02, yp, what, va="center", fontsize=7, color="red")
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
    seeds = [int(r.get("n_seeds") or 1) for r in ok]
    fig.suptitle("Baselines and ablations at equal student size (spread N=3, full obs, mpe2 seeds 1000-1199)\n"
                 + (f"same {steps / 1e6:.1f}M env-step budget each; " if steps else "")
                 + (f"{max(seeds)} distillation seeds per variant (n < {max(seeds)}: see the table); error bar = "
                    "95 % interval across seeds" if max(seeds) > 1 else
                    "one distillation seed; error bar = student return 95 % CI / (R_t - R_rand)"), fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return save_figure(fig, out)


def draw_bench(bench_dir: Path, out_dir: Path) -> list[Path]:
    """Both distillation figures (the ladder file is required, as is the ablation file), and one side-by-side
    figure per peer comparison present (`peers_<task>.json` of bench/bench_peers.py -> `peers_<task>.png`)."""
    paths = [draw_pareto(bench_dir / "distill_ladder.json", out_dir / "distill_pareto.png"),
             draw_ablation(bench_dir, out_dir / "distill_ablation.png")]
    for peers_json in sorted(bench_dir.glob("peers_*.json")):
        if not peers_json.stem.endswith("_quick"):
            paths.append(draw_peers(peers_json, out_dir / f"{peers_json.stem}.png"))
    return paths
