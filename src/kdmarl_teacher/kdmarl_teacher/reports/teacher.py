"""`kdmarl report runs/TEACHER`: the teacher learning curve (learning_curve.png) from metrics.csv (MAPPO or QMIX;
a QMIX run also has its periodic greedy evaluation, drawn as a second line).

Two panels: mean training team return against env steps and against wall time. For simple_spread (N=3, 25 steps)
the reference lines of DESIGN.md §5 are drawn (`references.SPREAD_REFERENCES`) and the uniformly random baseline
(or the run's own eval.json figure when there is one). Training returns are of the *stochastic* policy on training
seeds; the headline figure is `kdmarl evaluate`'s.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from kdmarl_teacher.core.references import SPREAD_REFERENCES
from kdmarl_teacher.reports.common import read_metrics


def draw_teacher(run: Path, out: Path) -> Path:
    """The teacher learning curve of `run` -> `out` (PNG)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    m = read_metrics(run / "metrics.csv")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").exists() else {}
    scenario = cfg.get("scenario", "?")
    qmix = cfg.get("algo") == "qmix"
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
        ax.plot(x, m["train_return"], lw=1.2, label=f"train return ({'epsilon-greedy' if qmix else 'stochastic'})")
        if "greedy_return" in m:  # QMIX: the periodic greedy evaluation on fixed seeds
            pts = [(xi, yi) for xi, yi in zip(x, m["greedy_return"], strict=True) if not math.isnan(yi)]
            if pts:
                ax.plot(*zip(*pts, strict=True), lw=1.2, marker=".", ms=3, label="greedy return (fixed seeds)")
        for (name, y), style in zip(refs.items(), ("--", ":", "-.", "-."), strict=False):
            ax.axhline(y, ls=style, color="gray", lw=1, label=name)
        if evaluated is not None:
            ax.scatter([x[-1]], [evaluated], color="red", zorder=5, label=f"eval deterministic {evaluated:.2f}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("team return (mean over agents of summed reward)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"{run.name}: {'QMIX' if qmix else 'MAPPO'} teacher on {scenario} {params or ''}")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
