"""The aggregate of a sweep (`kdmarl sweep --report`): the trials' figures per grid point with mean, interval and the
paired comparison against the reference; sweep_report.json, .csv, the figures and the console table. Needs
neither Ray nor torch."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from kdmarl_student.stats import mean_ci

from kdmarl_teacher.experiments.spec import REPLICATE_KEYS, TRIAL_FILE, Trial, fmt, load_state, report_file, write_json
from kdmarl_teacher.experiments.statistics import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, paired


def replicate(t: Trial) -> str:
    return ",".join(f"{k}={t.values[k]}" for k in REPLICATE_KEYS if k in t.values)


def _point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True)


NUMERIC_FIGURES = ("retention", "student_return", "teacher_return", "random_return", "min_flops_reduction",
                   "train_minutes", "total_minutes", "env_steps", "team_return", "student_landmarks_covered",
                   "student_collisions", "win_rate_retention", "student_win_rate", "teacher_win_rate",
                   "random_win_rate")


def collect(out: Path) -> tuple[dict[str, Any], list[Trial], dict[str, dict[str, Any]]]:
    """trials.json and each trial's record (sweep_trial.json; the report's figures if the record is older)."""
    data, trials = load_state(out)
    tune_errors_path = out / "tune_errors.json"
    tune_errors = json.loads(tune_errors_path.read_text()) if tune_errors_path.is_file() else {}
    records: dict[str, dict[str, Any]] = {}
    for t in trials:
        path = Path(t.dir) / TRIAL_FILE
        rec = json.loads(path.read_text()) if path.is_file() else {"status": "not run"}
        rep_path = Path(t.dir) / report_file(t.kind)
        if rec.get("status") == "done" and not rep_path.is_file():
            rec = {**rec, "status": "error", "error": f"{rep_path} is missing"}
        if t.name in tune_errors and rec.get("status") != "done":
            rec = {**rec, "status": "error", "error": rec.get("error") or tune_errors[t.name]}
        records[t.name] = rec
    return data, trials, records


def build_report(out: Path, sweep_wall_s: float | None = None) -> dict[str, Any]:
    data, trials, records = collect(out)
    metric, ref = data["metric"], data.get("reference")
    points: dict[str, dict[str, Any]] = {}
    for t in trials:
        p = points.setdefault(_point_key(t.point()), {"point": t.point(), "trials": []})
        p["trials"].append(t)
    rows = []
    for p in points.values():
        done = [t for t in p["trials"] if records[t.name].get("status") == "done"
                and records[t.name]["figures"].get(metric) is not None]
        figs = [records[t.name]["figures"] for t in done]
        row: dict[str, Any] = {"point": p["point"], "variant": p["point"]["variant"], "label": _label(p["point"]),
                               "n_trials": len(p["trials"]), "n_done": len(done)}
        vals = [f[metric] for f in figs]
        row["metric"] = metric
        row.update({k: v for k, v in mean_ci(vals).items()})
        row["per_seed"] = {replicate(t): f[metric] for t, f in zip(done, figs, strict=True)}
        for key in NUMERIC_FIGURES:
            xs = [f[key] for f in figs if isinstance(f.get(key), int | float)]
            if xs and key != metric:
                s = mean_ci(xs)
                row[key], row[f"{key}_ci95"] = s["mean"], s["ci95"]
        if figs and figs[0].get("team") is not None:
            row["team_name"] = figs[0]["team"]
        for key in ("student_hidden", "student_labels", "student_flops", "student_params", "teacher_flops",
                    "budgets_met"):
            if figs and key in figs[0]:
                row[key] = figs[0][key]
        rows.append(row)
    if ref is not None:  # paired comparison of each point with the reference variant at the same other keys
        by_key = {_point_key(r_point(r)): r for r in rows}
        for row in rows:
            if row["variant"] == ref:
                continue
            ref_row = by_key.get(_point_key({**r_point(row), "variant": ref}))
            if ref_row is None:
                continue
            common = sorted(set(row["per_seed"]) & set(ref_row["per_seed"]))
            cmp = paired([row["per_seed"][k] for k in common], [ref_row["per_seed"][k] for k in common])
            row["vs_reference"] = {"reference": ref, "replicates": common, **cmp}
    failed = [{"trial": t.name, "variant": t.variant, "values": t.values, "status": records[t.name].get("status"),
               "attempt": records[t.name].get("attempt"), "error": records[t.name].get("error")}
              for t in trials if records[t.name].get("status") != "done"]
    failed += [{"trial": t.name, "variant": t.variant, "values": t.values, "status": "no_metric",
                "attempt": records[t.name].get("attempt"),
                "error": f"finished, but its report has no {metric!r} (win_rate_retention needs battles its teacher "
                         "wins: SMAX or GRF, not MPE)"}
               for t in trials if records[t.name].get("status") == "done"
               and (records[t.name].get("figures") or {}).get(metric) is None]
    done_records = [records[t.name] for t in trials if records[t.name].get("status") == "done"]
    # a trial recorded from a report its run left behind (the sweep died before recording it) has no wall time
    walls = [r["wall_s"] for r in done_records if r.get("wall_s") is not None]
    rss = [r["peak_rss_mb"] for r in done_records if r.get("peak_rss_mb") is not None]
    report = {"sweep": str(out), "kind": data["kind"], "metric": metric, "reference": ref,
              "n_trials": len(trials), "done": len(trials) - len(failed), "failed": failed,
              "statistics": {
                  "interval": "mean +- t(0.975, n-1) * std(ddof=1) / sqrt(n) across replicates "
                              "(kdmarl_student.stats.ci95_half_width)",
                  "replicates": f"trials differing only in {list(REPLICATE_KEYS)} (teacher = index in the teacher "
                                "list)",
                  "paired_test": "two-sided paired t-test (scipy.stats.ttest_rel) on the replicates both points "
                                 "share",
                  "effect_size": "Cohen's d_z = mean(diff) / std(diff, ddof=1)",
                  "bootstrap": f"percentile 95 % interval of the mean difference over {BOOTSTRAP_RESAMPLES} "
                               f"resamples of the pairs (numpy default_rng({BOOTSTRAP_SEED}))"},
              "trial_wall_s": {"mean": sum(walls) / len(walls) if walls else None, "per_trial": walls},
              "worker_peak_rss_mb": max(rss) if rss else None, "points": rows,
              "trials": [{"trial": t.name, **t.point(), "replicate": replicate(t),
                          "status": records[t.name].get("status"), "wall_s": records[t.name].get("wall_s"),
                          "dir": t.dir, metric: (records[t.name].get("figures") or {}).get(metric)} for t in trials]}
    if sweep_wall_s is not None:
        report["sweep_wall_s"] = sweep_wall_s
    elif (out / "sweep_report.json").is_file():  # --report later: keep the wall time the run measured
        old = json.loads((out / "sweep_report.json").read_text())
        if old.get("sweep_wall_s") is not None:
            report["sweep_wall_s"] = old["sweep_wall_s"]
    return report


def r_point(row: dict[str, Any]) -> dict[str, Any]:
    """A report row's grid point (variant and the grid values but the replicate keys)."""
    return row["point"]


def write_report(out: Path, sweep_wall_s: float | None = None) -> dict[str, Any]:
    """sweep_report.json, sweep_report.csv and the PNGs in the sweep directory."""
    out = Path(out)
    report = build_report(out, sweep_wall_s)
    write_json(out / "sweep_report.json", report)
    point_keys = sorted({k for r in report["points"] for k in r_point(r)}, key=lambda k: (k != "variant", k))
    cols = [*point_keys, "n_done", "n_trials", "metric", "mean", "ci95", "std", "per_seed",
            "min_flops_reduction", "mean_diff", "p_value", "d_z", "boot_low", "boot_high", "verdict"]
    with (out / "sweep_report.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in report["points"]:
            cmp = r.get("vs_reference") or {}
            row = {**r, **r["point"], **{k: cmp.get(k) for k in ("mean_diff", "p_value", "d_z", "boot_low", "boot_high",
                                                    "verdict")}}
            row["per_seed"] = ";".join(f"{k}:{v:.6g}" for k, v in r["per_seed"].items())
            w.writerow(["" if row.get(c) is None else row.get(c) for c in cols])
        for f in report["failed"]:
            w.writerow([f"{'FAILED' if f['status'] == 'error' else 'NOT DONE'} {f['trial']}", f["status"],
                        f.get("error") or ""])
    report["figures"] = [str(p) for p in draw(report, out)]
    write_json(out / "sweep_report.json", report)
    return report


def _label(point: dict[str, Any]) -> str:
    return ", ".join(f"{v}" if k == "variant" else f"{k}={fmt(v)}" for k, v in point.items())


def draw(report: dict[str, Any], out: Path) -> list[Path]:
    """sweep_pareto.png (metric vs FLOPs reduction, error bars = 95 % interval across seeds) and sweep_bars.png
    (one bar per grid point, seeds as dots, the reference's interval shaded)."""
    from kdmarl_teacher.reports.common import FLOPS_TARGET, pyplot, save_figure  # noqa: PLC0415

    rows = [r for r in report["points"] if r["n"] > 0]
    if not rows:
        return []
    metric, paths = report["metric"], []
    plt = pyplot()
    if all(isinstance(r.get("min_flops_reduction"), int | float) for r in rows) and metric != "min_flops_reduction":
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in rows:
            ax.errorbar([r["min_flops_reduction"]], [r["mean"]], yerr=[0 if math.isnan(r["ci95"]) else r["ci95"]],
                        fmt="o", capsize=3, label=f"{r['label']} (n={r['n']})")
        ax.axvline(FLOPS_TARGET, color="tab:green", ls="--", lw=1, label=f"{FLOPS_TARGET:.0f}x")
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs reduction vs teacher actor (min over agents, log scale)")
        ax.set_ylabel(f"{metric} (mean, 95 % interval across seeds)")
        ax.set_title(f"{Path(report['sweep']).name}: {metric} vs FLOPs reduction", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6, loc="best")
        fig.tight_layout()
        paths.append(save_figure(fig, out / "sweep_pareto.png"))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows) + 2), 5))
    xs = list(range(len(rows)))
    ref = report.get("reference")
    for x, r in zip(xs, rows, strict=True):
        color = "tab:orange" if r["variant"] == ref else "tab:blue"
        ax.bar(x, r["mean"], yerr=0 if math.isnan(r["ci95"]) else r["ci95"], capsize=4, color=color, alpha=0.8)
        seeds = list(r["per_seed"].values())
        ax.scatter([x] * len(seeds), seeds, color="black", s=10, zorder=3)
        cmp = r.get("vs_reference")
        if cmp and cmp.get("p_value") is not None and not math.isnan(cmp["p_value"]):
            ax.text(x, r["mean"], f"p={cmp['p_value']:.2g}\nd_z={cmp['d_z']:.2g}", ha="center", va="bottom",
                    fontsize=6)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=7)
    lo = min(min(r["per_seed"].values()) for r in rows)
    hi = max(max(r["per_seed"].values()) for r in rows)
    pad = 0.1 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + 2 * pad)
    ax.set_ylabel(f"{metric} (bar: mean, error bar: 95 % interval; dots: seeds)")
    ax.set_title(f"{Path(report['sweep']).name}: {metric} per grid point"
                 + (f" (orange: reference {ref}; p: paired t-test vs reference)" if ref else ""), fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    paths.append(save_figure(fig, out / "sweep_bars.png"))
    return paths


def print_table(report: dict[str, Any]) -> None:
    metric = report["metric"]
    print(f"{'grid point':50s} {'n':>3s} {metric + ' mean':>14s} {'+-95%':>8s} {'diff':>8s} {'p':>8s} {'d_z':>6s}")
    for r in report["points"]:
        cmp = r.get("vs_reference") or {}

        def num(v: Any, f: str = ".4f") -> str:
            return "" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, f)

        print(f"{r['label'][:50]:50s} {r['n']:>3d} {num(r['mean']):>14s} {num(r['ci95']):>8s} "
              f"{num(cmp.get('mean_diff')):>8s} {num(cmp.get('p_value'), '.3g'):>8s} {num(cmp.get('d_z'), '.2f'):>6s}")
    for f in report["failed"]:  # every trial not done: an error (after its retry), or not run / still running
        if f["status"] == "error":
            print(f"FAILED {f['trial']} (attempt {f.get('attempt')}): {f.get('error')}")
        else:
            print(f"{str(f['status']).upper()} {f['trial']}")
