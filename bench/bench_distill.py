#!/usr/bin/env python3
"""KD-MARL distillation benchmark (issue 4 §4, §6; issue 14): retention vs FLOPs reduction, baselines and
ablations, over distillation seeds and teachers, through `kdmarl sweep` on the local Ray.

Two sweeps (specs in bench/sweeps/, same evaluation seeds mpe2 1000-1199, same env-step budget per method):
- `distill_teams.yaml` (headline rows): the full loss on spread3_full (microcontroller budget; target retention
  >= 0.95 at >= 30x fewer FLOPs per agent, < 10 min), spread3_hetero (>= 0.90) and speaker_listener (>= 0.90),
  5 distillation seeds each; spread3_full also across 3 teachers trained with different seeds (teachers 2 and 3
  come from the `kind: train` sweep `teachers.yaml` unless --teachers-spread-extra gives them).
- `distill.yaml` (ablation rows): on spread3_full, KL-only, each loss term removed in turn and the resource-aware
  option against the full loss, 5 seeds each, paired on the seeds: mean difference with its paired bootstrap
  95 % interval, paired t-test p-value, Cohen's d_z, and a plain verdict.
- `spread3_hetero.yaml` (`--only hetero`, issue 26 §5): the heterogeneous team on every seed of 5 (target
  retention >= 0.95 on each, every budget met), the shipped team against history features on every agent and
  against twice the env steps, paired.
MAPPO from scratch at student size (shared actor + one-hot, same env steps) stays one sequential run (seed 1):
it is not a distillation, so it is not in the sweeps.

    python bench/bench_distill.py --teacher-spread runs/spread --teacher-sl runs/sl --keep runs/kd_bench
    python bench/bench_distill.py --keep runs/kd_bench --reuse     # re-tabulate / resume the sweeps there
    python bench/bench_distill.py --quick                          # smoke check (tiny teachers and grids)
    python bench/bench_distill.py --teacher-spread runs/spread --only ablation --keep runs/kd_bench --report-only
    python bench/bench_distill.py --teacher-spread runs/spread --only hetero --keep runs/kd_bench   # ~25 min

Writes bench/results/distill.json, distill_ablation.json and distill_hetero.json (--quick: distill_quick.json).
Trial run directories and the sweep reports (sweep_report.json/.csv/PNGs) stay under --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent


def train_teacher(scenario: str, minutes: float, out: Path, quick: bool) -> Path:
    from kdmarl_teacher.algos.config import default_config_path, load_config  # noqa: PLC0415
    from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415

    overrides = [f"time_limit_minutes={minutes}"]
    if quick:
        overrides += ["num_envs=128", "total_steps=96000", "lr=0.003", "actor_hidden=[64,64]",
                      "critic_hidden=[64,64]", "torch_threads=1"]
    cfg = load_config(default_config_path(scenario), overrides)
    return train(cfg, out, progress=sys.stderr.isatty())


def row_from_report(name: str, team: str, rep: dict[str, Any]) -> dict[str, Any]:
    return {
        "variant": name, "team": team, "retention": round(rep["retention"], 4),
        "student_return": round(rep["students_eval"]["team_return"], 3),
        "student_ci95": round(rep["students_eval"]["ci95"], 3),
        "teacher_return": round(rep["teacher_eval"]["team_return"], 3),
        "random_return": round(rep["random_eval"]["team_return"], 3),
        "min_flops_reduction": round(rep["min_flops_reduction"], 2),
        "student_hidden": [a["hidden"] for a in rep["agents"]],
        "student_labels": [a.get("student", f"mlp{a['hidden']}") for a in rep["agents"]],
        "budgets_met": all(a["fits_budget"] for a in rep["agents"]),
        "student_flops": [a["flops"] for a in rep["agents"]],
        "teacher_flops": rep["teacher"]["actor_resources"]["flops"],
        "env_steps": rep["global_step"], "train_minutes": round(rep["wall_time_s"] / 60, 2),
        "total_minutes": round(rep["total_time_s"] / 60, 2), "terms": rep["terms"],
        **{f"student_{k}": round(v, 3) for k, v in rep["students_eval"].items() if k in ("landmarks_covered",
                                                                                          "collisions")},
    }


def distill_run(name: str, teacher_path: Path, team: str, out: Path, *, steps: int, episodes: int,
                overrides: dict[str, Any], reuse: bool = False) -> dict[str, Any]:
    """One distillation; with ``reuse`` an existing finished run directory is read instead of rerun."""
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.distill.config import DistillConfig  # noqa: PLC0415
    from kdmarl_teacher.distill.loop import distill  # noqa: PLC0415

    report_path = out / name / "distill_report.json"
    if reuse and report_path.is_file():
        print(f"reusing {report_path}")
        return row_from_report(name, team, json.loads(report_path.read_text()))
    cfg = DistillConfig(team=team, total_steps=steps, eval_episodes=episodes, **overrides)
    rep = distill(cfg, load_teacher(teacher_path), out / name, teacher_path=teacher_path,
                  progress=sys.stderr.isatty())
    return row_from_report(name, team, rep)


def guarded(fn: Any, label: tuple[str, str], **kwargs: Any) -> dict[str, Any]:
    """Run one benchmark entry; a failure becomes an error row instead of losing every other result."""
    try:
        return fn(**kwargs)
    except Exception as err:
        traceback.print_exc()
        return {"variant": label[0], "team": label[1], "error": f"{type(err).__name__}: {err}"}


def train_scratch(teacher_path: Path, out: Path, *, steps: int, hidden: list[int]) -> tuple[Any, float]:
    """MAPPO from scratch with the student's size as the (shared) actor: the teacher's own training config (same
    scenario, rollout shape, optimizer, critic) with only the actor, the env-step budget and the thread count
    changed. Returns the trained policy (a loaded teacher checkpoint) and its training minutes."""
    from kdmarl_teacher.algos.config import TeacherConfig  # noqa: PLC0415
    from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.core.config import apply_overrides  # noqa: PLC0415

    saved = dict(load_teacher(teacher_path).config)
    saved.update(total_steps=steps, actor_hidden=list(hidden), use_gru=False, torch_threads=1,
                 time_limit_minutes=0, checkpoint_every=100000)
    cfg = apply_overrides(TeacherConfig(), saved, f"{teacher_path} (config) + the scratch baseline's changes", {})
    cfg.validate({})
    t0 = time.time()
    small = load_teacher(train(cfg, out, progress=sys.stderr.isatty()))
    return small, (time.time() - t0) / 60


def mappo_scratch_run(teacher_path: Path, out: Path, *, steps: int, episodes: int, hidden: list[int],
                      ref: dict[str, Any]) -> dict[str, Any]:
    """MAPPO from scratch at student size (`train_scratch`), same env steps, same eval seeds as the students."""
    from kdmarl_teacher.core.resources import module_resources  # noqa: PLC0415
    from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

    small, minutes = train_scratch(teacher_path, out / "mappo_scratch", steps=steps, hidden=hidden)
    res = evaluate(small, episodes=episodes, seed_start=1000)["results"]
    r_small = res["deterministic"]["team_return"]
    r_random, r_teacher = ref["random_return"], ref["teacher_return"]
    flops = module_resources(small.actor).flops
    return {"variant": "mappo_scratch", "team": "spread3_full (shared actor + one-hot)",
            "retention": round((r_small["mean"] - r_random) / (r_teacher - r_random), 4),
            "student_return": round(r_small["mean"], 3), "student_ci95": round(r_small["ci95"], 3),
            "teacher_return": r_teacher, "random_return": r_random,
            "min_flops_reduction": round(ref["teacher_flops"] / flops, 2), "student_hidden": [hidden],
            "student_flops": [flops], "env_steps": steps, "train_minutes": round(minutes, 2),
            "terms": "PPO + centralized critic, no teacher"}


# ------------------------------------------------------------------------------------------ through kdmarl sweep
SWEEPS_DIR = BENCH_DIR / "sweeps"
SWEEP_COLUMNS = ["variant", "team", "retention", "retention_ci95", "n_seeds", "diff_vs_full",
                 "diff_ci95", "p_value", "d_z", "verdict", "min_flops_reduction", "student_hidden", "env_steps",
                 "train_minutes"]


def load_bench_spec(name: str, quick: bool) -> dict[str, Any]:
    """bench/sweeps/NAME.yaml; with `quick`, its `bench.quick` base/grid/variants/eval_episodes applied."""
    import yaml  # noqa: PLC0415

    spec = yaml.safe_load((SWEEPS_DIR / name).read_text())
    q = (spec.get("bench") or {}).get("quick") or {}
    if quick:
        spec["base"] = {**spec.get("base", {}), **q.get("base", {})}
        spec["grid"] = {**spec.get("grid", {}), **q.get("grid", {})}
        if "variants" in q:
            spec["variants"] = {k: v for k, v in spec["variants"].items() if k in q["variants"]}
        if "eval_episodes" in q:
            spec["eval_episodes"] = q["eval_episodes"]
    return spec


def run_spec(spec: dict[str, Any], out: Path, *, cpus: int | None = None, reuse: bool = False,
             report_only: bool = False) -> dict[str, Any]:
    """`kdmarl sweep SPEC --out OUT` (the same code path; the spec, as run, is written next to OUT). With `reuse`
    and a sweep already in OUT: `kdmarl sweep --resume` (finished trials are read, not rerun). With `report_only`:
    `kdmarl sweep --report OUT` (what OUT holds now; unfinished trials are listed as not run)."""
    import yaml  # noqa: PLC0415
    from kdmarl_teacher.experiments import sweep  # noqa: PLC0415

    if report_only:
        if not (out / "trials.json").is_file():
            raise FileNotFoundError(f"--report-only: no sweep in {out} (trials.json missing)")
        sweep.main(["--report", str(out)])
        return json.loads((out / "sweep_report.json").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_file = out.parent / f"{out.name}.spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    resume = reuse and (out / "trials.json").is_file()
    argv = ([] if resume else [str(spec_file)]) + ["--out", str(out)] + (["--resume"] if resume else [])
    argv += ["--cpus", str(cpus)] if cpus else []
    print(f"kdmarl sweep {' '.join(argv)}", flush=True)
    sweep.main(argv)  # 1 when some trials failed: they are error rows below
    return json.loads((out / "sweep_report.json").read_text())


def rows_from_sweep(report: dict[str, Any], ndigits: int = 4) -> list[dict[str, Any]]:
    """bench/results rows from a sweep report: one per grid point, the old columns as means across seeds (and
    teachers), plus the interval, the per-seed values and the paired comparison with the reference variant.
    The sweep's metric names its columns (METRIC, METRIC_ci95, METRIC_per_seed: `retention` on MPE,
    `win_rate_retention` on battles, where return retention is `retention` and the win rates are added).
    `student_ci95` becomes the 95 % interval of the mean student return across seeds (so report_bench's retention
    error bar, student_ci95 / (R_teacher - R_random), is the interval of retention across seeds). A grid point
    whose trials all failed is an error row naming the failures."""
    def r(v: Any, nd: int = ndigits) -> Any:
        return round(v, nd) if isinstance(v, float) else v

    errors: dict[str, list[str]] = {}
    for f in report["failed"]:
        errors.setdefault(f["variant"], []).append(f"{f['trial']}: {f.get('error') or f['status']}")
    rows = []
    for p in report["points"]:
        team = p.get("team_name") or p["point"].get("team")
        if not p["n"]:
            rows.append({"variant": p["variant"], "team": team, "label": p["label"],
                         "error": "; ".join(errors.get(p["variant"], ["no finished trial"]))})
            continue
        metric = report["metric"]
        row = {"variant": p["variant"], "team": team, "label": p["label"], metric: r(p["mean"]),
               f"{metric}_ci95": r(p["ci95"]), "n_seeds": p["n"],
               f"{metric}_per_seed": {k: r(v) for k, v in p["per_seed"].items()},
               **{k: r(p[k]) for k in ("retention", "student_win_rate", "teacher_win_rate", "random_win_rate")
                  if k != metric and isinstance(p.get(k), float)},
               "student_return": r(p.get("student_return"), 3), "student_ci95": r(p.get("student_return_ci95"), 3),
               "teacher_return": r(p.get("teacher_return"), 3), "random_return": r(p.get("random_return"), 3),
               "min_flops_reduction": r(p.get("min_flops_reduction"), 2), "student_hidden": p.get("student_hidden"),
               "student_labels": p.get("student_labels"), "student_flops": p.get("student_flops"),
               "student_params": p.get("student_params"),
               "teacher_flops": p.get("teacher_flops"), "budgets_met": p.get("budgets_met"),
               "env_steps": int(p["env_steps"]) if p.get("env_steps") else None,
               "train_minutes": r(p.get("train_minutes"), 2), "total_minutes": r(p.get("total_minutes"), 2),
               "failed_trials": p["n_trials"] - p["n_done"]}
        cmp = p.get("vs_reference")
        if cmp:
            row.update({"diff_vs_full": r(cmp["mean_diff"]), "diff_ci95": [r(cmp["boot_low"]), r(cmp["boot_high"])],
                        "p_value": r(cmp["p_value"], 4), "d_z": r(cmp["d_z"], 2), "verdict": cmp["verdict"],
                        "n_pairs": cmp["n_pairs"]})
        rows.append(row)
    return rows


def teachers_sweep(root: Path, quick: bool, reuse: bool) -> list[Path]:
    """Teachers 2 and 3 of the teacher-seed axis: the `kind: train` sweep bench/sweeps/teachers.yaml."""
    rep = run_spec(load_bench_spec("teachers.yaml", quick), root / "teachers", reuse=reuse)
    paths = [Path(t["dir"]) / "teacher.pt" for t in rep["trials"] if t["status"] == "done"]
    if len(paths) != len(rep["trials"]):
        raise RuntimeError(f"teacher sweep: {rep['failed']}")
    return paths


def link_headline_run(report: dict[str, Any], link: Path) -> None:
    """ROOT/kdmarl_full -> the spread3_full trial of teacher 0, seed 1 (scripts/bench.sh exports that run for the
    runtime benchmark, as before the sweep)."""
    for t in report["trials"]:
        if t["status"] == "done" and t.get("team") == "spread3_full" and t["replicate"] in ("teacher=0,seed=1",
                                                                                             "seed=1"):
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(t["dir"]), target_is_directory=True)
            return


def every_seed_target(row: dict[str, Any], goal: float = 0.95) -> dict[str, Any]:
    """Issue 26 §5: retention >= `goal` on each seed (the worst seed decides), every agent within its budget."""
    per_seed = list(row["retention_per_seed"].values())
    worst = min(per_seed)
    return {"what": f"{row['team']}, {row['variant']} ({row['env_steps']} env steps): retention on every seed of "
                    f"{len(per_seed)}, every budget met",
            "target": f">= {goal} on each seed",
            "reached": f"worst seed {worst:.4f}; mean {row['retention']} ± {row['retention_ci95']} (per seed "
                       f"{' / '.join(f'{v:.4f}' for v in per_seed)}); budgets met: {row.get('budgets_met')}",
            "met": bool(worst >= goal and row.get("budgets_met") is True)}


def main() -> int:
    import os  # noqa: PLC0415

    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-spread", help="simple_spread teacher.pt or run dir (default: train one)")
    parser.add_argument("--teachers-spread-extra", nargs=2, metavar="TEACHER",
                        help="teachers 2 and 3 of the teacher-seed axis (default: bench/sweeps/teachers.yaml)")
    parser.add_argument("--teacher-sl", help="simple_speaker_listener teacher (default: train one)")
    parser.add_argument("--teacher-minutes", type=float, default=10.0, help="wall time per teacher trained here")
    parser.add_argument("--only", default="main,ablation", help="comma list of: main, ablation, hetero")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny teachers and grids")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: resume the sweeps there (finished trials are read, not rerun)")
    parser.add_argument("--no-scratch", action="store_true", help="skip the MAPPO-from-scratch baseline")
    parser.add_argument("--report-only", action="store_true",
                        help="with --keep: tabulate the sweeps there as they are (an interrupted "
                             "benchmark), run no trial")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_distill_"))
    root.mkdir(parents=True, exist_ok=True)
    main_rows: list[dict[str, Any]] = []
    abl_rows: list[dict[str, Any]] = []
    hetero_rows: list[dict[str, Any]] = []
    reports: dict[str, dict[str, Any]] = {}
    steps = load_bench_spec("distill.yaml", args.quick)["base"]["total_steps"]
    try:
        t_spread = Path(args.teacher_spread) if args.teacher_spread else train_teacher(
            "simple_spread", args.teacher_minutes, root / "teacher_spread", args.quick)
        os.environ["KDMARL_TEACHER_SPREAD"] = str(t_spread.resolve())
        if "main" in parts:
            extra = ([Path(t) for t in args.teachers_spread_extra] if args.teachers_spread_extra
                     else teachers_sweep(root, args.quick, args.reuse))
            for i, t in enumerate(extra, start=2):
                os.environ[f"KDMARL_TEACHER_SPREAD_{i}"] = str(t.resolve())
            t_sl = Path(args.teacher_sl) if args.teacher_sl else train_teacher(
                "simple_speaker_listener", args.teacher_minutes, root / "teacher_sl", args.quick)
            os.environ["KDMARL_TEACHER_SL"] = str(t_sl.resolve())
            reports["teams"] = run_spec(load_bench_spec("distill_teams.yaml", args.quick), root / "teams",
                                        cpus=args.cpus, reuse=args.reuse, report_only=args.report_only)
            main_rows = rows_from_sweep(reports["teams"])
            link_headline_run(reports["teams"], root / "kdmarl_full")
        if "ablation" in parts:
            reports["ablation"] = run_spec(load_bench_spec("distill.yaml", args.quick), root / "ablation",
                                           cpus=args.cpus, reuse=args.reuse, report_only=args.report_only)
            abl_rows = rows_from_sweep(reports["ablation"])
            full = next((r for r in abl_rows if r["variant"] == "kdmarl_full" and "error" not in r), None)
            if full is not None and not (args.no_scratch or args.report_only):
                episodes = load_bench_spec("distill.yaml", args.quick)["base"]["eval_episodes"]
                scratch = guarded(mappo_scratch_run, ("mappo_scratch", "spread3_full"), teacher_path=t_spread,
                                  out=root, steps=steps, episodes=episodes, hidden=list(full["student_hidden"][0]),
                                  ref=full)
                abl_rows.append({**scratch, "n_seeds": 1, "verdict": "one seed, not in the sweep"})
        if "hetero" in parts:
            reports["hetero"] = run_spec(load_bench_spec("spread3_hetero.yaml", args.quick), root / "hetero",
                                         cpus=args.cpus, reuse=args.reuse, report_only=args.report_only)
            hetero_rows = rows_from_sweep(reports["hetero"])
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    notes = ["retention = (R_student - R_random) / (R_teacher - R_random), greedy teacher and students, uniform "
             "random, same mpe2 seeds (DESIGN.md §5); each row: mean over distillation seeds (and teachers)",
             "retention_ci95: 95 % interval across seeds, t(0.975, n-1) * sd / sqrt(n) (kdmarl_student.stats); "
             "student_ci95 likewise for the student return",
             "ablation: diff_vs_full = mean paired difference with kdmarl_full on the same seeds, diff_ci95 its paired "
             "bootstrap 95 % interval (10 000 resamples, seed 0), p_value a two-sided paired t-test, d_z = "
             "mean(diff) / sd(diff); verdict at p < 0.05",
             "FLOPs = 2 x MACs of the Linear layers at batch 1; reduction = teacher actor FLOPs / student FLOPs",
             f"env-step budget per method: {steps}; run through `kdmarl sweep` (bench/sweeps/) on the local Ray, one "
             "torch thread per trial; train_minutes move with the load (trials share the cores)"]
    if any(r.get("variant") == "mappo_scratch" for r in abl_rows):
        notes.append("mappo_scratch: MAPPO from scratch at student size, one seed, run sequentially (not a "
                     "distillation, so not in the sweep)")
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny teachers, budgets and grids; figures are not the benchmark")
    spread_rows = [r for r in main_rows if r.get("team") == "spread3_full" and "error" not in r]
    targets = []
    if spread_rows:
        r = spread_rows[0]
        targets.append({"what": "spread N=3 full obs: retention at >= 30x FLOPs reduction, < 10 min (mean over "
                                f"{r['n_seeds']} runs: 3 teachers x seeds)",
                        "target": "retention >= 0.95, reduction >= 30x, < 10 min",
                        "reached": f"{r['retention']} ± {r['retention_ci95']} at {r['min_flops_reduction']}x in "
                                   f"{r['train_minutes']} min",
                        "met": bool(r["retention"] >= 0.95 and r["min_flops_reduction"] >= 30
                                    and r["train_minutes"] < 10)})
    for team, label in (("spread3_hetero", "heterogeneous spread team"), ("speaker_listener", "speaker-listener")):
        for r in main_rows:
            if r.get("team") == team and "error" not in r:
                targets.append({"what": f"{label}: retention (mean over {r['n_seeds']} seeds)", "target": ">= 0.90",
                                "reached": f"{r['retention']} ± {r['retention_ci95']}",
                                "met": bool(r["retention"] >= 0.90)})
    kl = next((r for r in abl_rows if r["variant"] == "kl_only" and "error" not in r), None)
    if kl is not None and kl.get("p_value") is not None:
        targets.append({"what": "KD-MARL full loss vs KL-only at equal size (paired over seeds)",
                        "target": ">= kl_only", "reached": f"diff kl_only - full {kl['diff_vs_full']} "
                                                            f"(95 % {kl['diff_ci95']}, p = {kl['p_value']})",
                        "met": bool(kl["diff_vs_full"] <= 0)})
    extra = {"sweeps": {k: v["sweep"] for k, v in reports.items()},
             "sweep_wall_s": {k: v.get("sweep_wall_s") for k, v in reports.items()}}
    if hetero_rows and not args.quick:
        write_result("distill_hetero",
                     title="spread3_hetero on every seed: shipped team, history on every agent, twice the env steps",
                     columns=[*SWEEP_COLUMNS, "budgets_met"], rows=hetero_rows, notes=notes, extra=extra,
                     targets=[every_seed_target(r) for r in hetero_rows if "error" not in r])
    if args.quick:
        write_result("distill_quick", title="KD-MARL distillation: retention, FLOPs reduction, wall time",
                     columns=SWEEP_COLUMNS, rows=main_rows + hetero_rows, targets=targets, notes=notes,
                     extra={**extra, "ablation_rows": abl_rows})
        return 0
    if main_rows:
        write_result("distill", title="KD-MARL distillation: retention, FLOPs reduction, wall time",
                     columns=[c for c in SWEEP_COLUMNS if c not in ("diff_vs_full", "diff_ci95", "p_value", "d_z",
                                                                    "verdict")],
                     rows=main_rows, targets=targets, notes=notes, extra=extra)
    if abl_rows:
        write_result("distill_ablation", title="KD-MARL on spread3_full: baselines and ablations at equal size",
                     columns=SWEEP_COLUMNS, rows=abl_rows, notes=notes, extra=extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
