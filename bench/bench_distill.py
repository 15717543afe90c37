#!/usr/bin/env python3
"""KD-MARL distillation benchmark (issue 4 §4, §6): retention vs FLOPs reduction, baselines and ablations.

Runs, on this machine, with the same evaluation seeds (mpe2 1000-1199) and the same env-step budget per method:
- `simple_spread` N=3, full observation, microcontroller budget (spread3_full): KD-MARL full loss.
  Target: retention >= 0.95 at >= 30x fewer FLOPs per agent than the teacher actor, in < 10 min.
- `simple_spread` heterogeneous team (spread3_hetero: 3 sensing x 3 hardware profiles): retention >= 0.90.
- `simple_speaker_listener` (speaker_listener team): retention >= 0.90.
- Baselines at the same student size and observation (spread3_full): KL-only policy distillation, MAPPO from
  scratch at student size (shared 2x16 actor + one-hot, centralized critic, same env steps), and KD-MARL with
  each loss term removed in turn; plus the resource-aware option (start 2x wider, group lasso, prune to the
  same budget, fine-tune) against the ladder choice.

    python bench/bench_distill.py --teacher-spread runs/spread --teacher-sl runs/sl   # full benchmark
    python bench/bench_distill.py                       # trains both teachers first (--teacher-minutes each)
    python bench/bench_distill.py --quick               # smoke check (tiny teachers, tiny budgets; ~3 min)

Writes bench/results/distill.json (main table + targets) and bench/results/distill_ablation.json
(--quick writes distill_quick.json instead). Run it on a quiet machine: wall times move with the load.
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
sys.path.insert(0, str(BENCH_DIR))
for _pkg in ("kdmarl_student", "kdmarl_teacher"):
    sys.path.insert(0, str(ROOT / "src" / _pkg))

from kdmarl_teacher.config import TERMS  # noqa: E402  (torch-free: the bench process stays light)


def train_teacher(scenario: str, minutes: float, out: Path, quick: bool) -> Path:
    from kdmarl_teacher.config import default_config_path, load_config  # noqa: PLC0415
    from kdmarl_teacher.mappo import train  # noqa: PLC0415

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
    from kdmarl_teacher.checkpoint import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.config import DistillConfig  # noqa: PLC0415
    from kdmarl_teacher.distill import distill  # noqa: PLC0415

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


def mappo_scratch_run(teacher_path: Path, out: Path, *, steps: int, episodes: int, hidden: list[int],
                      ref: dict[str, Any]) -> dict[str, Any]:
    """MAPPO from scratch with the student's size as the (shared) actor, same env steps, same eval seeds."""
    from kdmarl_teacher.checkpoint import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.config import load_config  # noqa: PLC0415
    from kdmarl_teacher.evaluate import evaluate  # noqa: PLC0415
    from kdmarl_teacher.mappo import train  # noqa: PLC0415
    from kdmarl_teacher.resources import module_resources  # noqa: PLC0415

    teacher = load_teacher(teacher_path)
    cfg_dict = dict(teacher.config)
    keep = ("scenario", "env_params", "num_envs", "num_steps", "lr", "anneal_lr", "gamma", "gae_lambda",
            "update_epochs", "num_minibatches", "clip_coef", "vf_coef", "ent_coef", "max_grad_norm", "critic_hidden",
            "activation", "input_norm", "seed")
    overrides = [f"{k}={v}" for k, v in cfg_dict.items() if k in keep and not isinstance(v, dict)]
    overrides += [f"total_steps={steps}", f"actor_hidden={hidden}", "use_gru=false", "torch_threads=1",
                  "time_limit_minutes=0", "checkpoint_every=100000"]
    cfg = load_config(None, overrides)
    cfg.env_params = dict(cfg_dict.get("env_params", {}))
    t0 = time.time()
    small = load_teacher(train(cfg, out / "mappo_scratch", progress=sys.stderr.isatty()))
    res = evaluate(small, episodes=episodes, seed_start=1000)["results"]
    r_small = res["deterministic"]["team_return"]
    r_random, r_teacher = ref["random_return"], ref["teacher_return"]
    flops = module_resources(small.actor).flops
    return {"variant": "mappo_scratch", "team": "spread3_full (shared actor + one-hot)",
            "retention": round((r_small["mean"] - r_random) / (r_teacher - r_random), 4),
            "student_return": round(r_small["mean"], 3), "student_ci95": round(r_small["ci95"], 3),
            "teacher_return": r_teacher, "random_return": r_random,
            "min_flops_reduction": round(ref["teacher_flops"] / flops, 2), "student_hidden": [hidden],
            "student_flops": [flops], "env_steps": steps, "train_minutes": round((time.time() - t0) / 60, 2),
            "terms": "PPO + centralized critic, no teacher"}


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher-spread", help="simple_spread teacher.pt or run dir (default: train one)")
    parser.add_argument("--teacher-sl", help="simple_speaker_listener teacher (default: train one)")
    parser.add_argument("--teacher-minutes", type=float, default=10.0, help="wall time per teacher trained here")
    parser.add_argument("--steps", type=int, default=1_500_000, help="env-step budget of every method")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes (mpe2 seeds from 1000)")
    parser.add_argument("--only", default="main,ablation", help="comma list of: main, ablation")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny teachers and budgets")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: read finished runs (distill_report.json) instead of rerunning them")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes = 64 * 25 * 8, 20
    parts = set(args.only.split(","))
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_distill_"))
    root.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {"num_envs": 64} if args.quick else {}
    main_rows: list[dict[str, Any]] = []
    abl_rows: list[dict[str, Any]] = []
    reuse = args.reuse
    try:
        t_spread = Path(args.teacher_spread) if args.teacher_spread else train_teacher(
            "simple_spread", args.teacher_minutes, root / "teacher_spread", args.quick)
        spread = {"teacher_path": t_spread, "team": "spread3_full", "out": root, "steps": args.steps,
                  "episodes": args.episodes, "reuse": reuse}
        full = guarded(distill_run, ("kdmarl_full", "spread3_full"), name="kdmarl_full", **spread, overrides=common)
        main_rows.append(full)
        if "main" in parts:
            main_rows.append(guarded(distill_run, ("kdmarl_full", "spread3_hetero"), name="kdmarl_full",
                                     **{**spread, "team": "spread3_hetero", "out": root / "hetero"}, overrides=common))
            t_sl = Path(args.teacher_sl) if args.teacher_sl else train_teacher(
                "simple_speaker_listener", args.teacher_minutes, root / "teacher_sl", args.quick)
            main_rows.append(guarded(distill_run, ("kdmarl_full", "speaker_listener"), name="kdmarl_full",
                                     **{**spread, "teacher_path": t_sl, "team": "speaker_listener", "out": root / "sl"},
                                     overrides=common))
        if "ablation" in parts:
            abl_rows.append(full)
            kl_only = {f"use_{t}": t == "kl" for t in TERMS}
            abl_rows.append(guarded(distill_run, ("kl_only", "spread3_full"), name="kl_only", **spread,
                                    overrides={**common, **kl_only}))
            for term in TERMS if not args.quick else ("pg",):
                abl_rows.append(guarded(distill_run, (f"minus_{term}", "spread3_full"), name=f"minus_{term}", **spread,
                                        overrides={**common, f"use_{term}": False}))
            abl_rows.append(guarded(distill_run, ("resource_aware", "spread3_full"), name="resource_aware", **spread,
                                    overrides={**common, "resource_aware": True}))
            if "error" not in full:
                abl_rows.append(guarded(mappo_scratch_run, ("mappo_scratch", "spread3_full"), teacher_path=t_spread,
                                        out=root, steps=args.steps, episodes=args.episodes,
                                        hidden=list(full["student_hidden"][0]), ref=full))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    columns = ["variant", "team", "retention", "student_return", "student_ci95", "teacher_return", "random_return",
               "min_flops_reduction", "student_hidden", "env_steps", "train_minutes"]
    notes = ["retention = (R_student - R_random) / (R_teacher - R_random), greedy teacher and students, uniform "
             "random, same mpe2 seeds (DESIGN.md §5)",
             "FLOPs = 2 x MACs of the Linear layers at batch 1; reduction = teacher actor FLOPs / student FLOPs",
             f"env-step budget per method: {args.steps}; one distillation seed (seed 1)"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny teachers and budgets; figures are not the benchmark")
    by_team = {r["team"]: r for r in main_rows if "error" not in r}
    targets = []
    if "spread3_full" in by_team:
        r = by_team["spread3_full"]
        targets.append({"what": "spread N=3 full obs: retention at >= 30x FLOPs reduction, < 10 min",
                        "target": "retention >= 0.95, reduction >= 30x, < 10 min",
                        "reached": f"{r['retention']} at {r['min_flops_reduction']}x in {r['train_minutes']} min",
                        "met": bool(r["retention"] >= 0.95 and r["min_flops_reduction"] >= 30
                                    and r["train_minutes"] < 10)})
    for team, label in (("spread3_hetero", "heterogeneous spread team"), ("speaker_listener", "speaker-listener")):
        if team in by_team:
            targets.append({"what": f"{label}: retention", "target": ">= 0.90",
                            "reached": str(by_team[team]["retention"]),
                            "met": bool(by_team[team]["retention"] >= 0.90)})
    full = by_team.get("spread3_full")
    baselines = [r for r in abl_rows if r["variant"] in ("kl_only", "mappo_scratch") and "error" not in r]
    best_baseline = max(baselines, key=lambda r: r["retention"]) if baselines else None
    if full is not None and best_baseline is not None:
        targets.append({"what": "KD-MARL full loss vs the better baseline at equal size",
                        "target": f">= {best_baseline['variant']}",
                        "reached": f"{full['retention']} vs {best_baseline['retention']}",
                        "met": bool(full["retention"] >= best_baseline["retention"])})
    name = "distill_quick" if args.quick else "distill"
    write_result(name, title="KD-MARL distillation: retention, FLOPs reduction, wall time", columns=columns,
                 rows=main_rows, targets=targets, notes=notes,
                 extra={"ablation_rows": abl_rows} if args.quick else None)
    if abl_rows and not args.quick:
        write_result("distill_ablation", title="KD-MARL on spread3_full: baselines and ablations at equal size",
                     columns=columns, rows=abl_rows, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
