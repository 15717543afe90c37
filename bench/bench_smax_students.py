#!/usr/bin/env python3
"""KD-MARL students on SMAX (issue 12 §2): win-rate retention at the FLOPs reduction the budgets give, with
baselines at equal size.

Rows (each a `kdmarl distill` run on one MAPPO teacher, evaluated greedy on the same 200 battles, seeds 1000-1199,
as teacher and random):
- smax_2s3z_mcu (the heterogeneous unit-type team, stalkers and zealots, every student mlp[8]): the full KD-MARL
  loss and the KL-only baseline (use_pg/ce/relation/role off), on the same distillation seeds, compared paired;
  MAPPO from scratch with the students' hidden size as a shared actor (one seed, same env steps);
- smax_3m_mcu (a homogeneous small team, three marines), with --teacher-3m: the full loss;
- any other team on its own teacher, with --team-teacher TEAM=RUN (e.g. smax_3s5z_mcu, smax_5m_vs_6m_mcu): the full
  loss.
Per run: win rate with its 95 % interval, win-rate retention (student / teacher win rate), return retention
(DESIGN.md §5) and FLOPs reduction per agent. Per (team, variant): mean and 95 % interval across seeds; KL-only
against the full loss with the sweep's paired statistics (kdmarl_teacher.experiments.statistics.paired).
Target per team (issue 26 §4): >= 0.90 win-rate retention on every distillation seed at >= 20x fewer FLOPs (the
published claim is > 90 % at up to 28.6x).

    python bench/bench_smax_students.py --teacher runs/smax_bench/mappo_2s3z --teacher-3m runs/smax_bench/mappo_3m \\
        --keep runs/smax_bench [--seeds 1 2 3] [--only kdmarl_full,kl_only,mappo_scratch] \\
        [--team-teacher smax_5m_vs_6m_mcu=runs/bench/peers_smax_5m_vs_6m/ours]

Finished runs under --keep are read back, not rerun (so two processes with different --only can share the
work, and a last one without --only writes the whole table). Writes bench/results/smax_students.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

VARIANTS: dict[str, list[str]] = {  # distill.yaml switches per variant (`kdmarl distill --set`)
    "kdmarl_full": [],
    "kl_only": ["use_pg=false", "use_ce=false", "use_relation=false", "use_role=false"],
}
SCRATCH = "mappo_scratch"


def run_dir(out: Path, team: str, variant: str, seed: int) -> Path:
    """students_TEAM_seedN for the full loss (the directories of earlier runs), else with the variant."""
    name = f"students_{team}_seed{seed}" if variant == "kdmarl_full" else f"students_{team}_{variant}_seed{seed}"
    return out / name


def distill_row(teacher: Path, team: str, variant: str, seed: int, *, out: Path, steps: int | None) -> dict[str, Any]:
    from kdmarl_teacher.cli import main as kdmarl  # noqa: PLC0415

    run = run_dir(out, team, variant, seed)
    report = run / "distill_report.json"
    if not report.is_file():
        args = ["distill", "--teacher", str(teacher), "--out", str(run), "--team", team, "--no-progress",
                "--set", f"seed={seed}", "--set", "torch_threads=1"]
        for item in VARIANTS[variant] + ([f"total_steps={steps}"] if steps else []):
            args += ["--set", item]
        args += ["--resume"] if (run / "checkpoint.pt").is_file() else []
        if kdmarl(args) != 0:
            raise RuntimeError(f"kdmarl {' '.join(args)} failed")
    rep = json.loads(report.read_text())
    s, t, r = rep["students_eval"], rep["teacher_eval"], rep["random_eval"]
    return {"team": team, "variant": variant, "seed": seed, "win_rate_retention": round(rep["win_rate_retention"], 4),
            "student_win_rate": round(s["win_rate"], 3), "student_win_ci95": round(s["win_rate_ci95"], 3),
            "teacher_win_rate": round(t["win_rate"], 3), "random_win_rate": round(r["win_rate"], 3),
            "return_retention": round(rep["retention"], 4), "student_return": round(s["team_return"], 3),
            "teacher_return": round(t["team_return"], 3), "random_return": round(r["team_return"], 3),
            "min_flops_reduction": round(rep["min_flops_reduction"], 1),
            "students": ", ".join(sorted({a["student"] for a in rep["agents"]})),
            "budgets_met": all(a.get("fits_budget", True) for a in rep["agents"]),
            "env_steps": rep["global_step"], "train_minutes": round(rep["wall_time_s"] / 60, 2), "run": str(run)}


def scratch_row(teacher: Path, ref: dict[str, Any], seed: int, out: Path, episodes: int) -> dict[str, Any]:
    """MAPPO from scratch at the students' hidden size (bench_distill.train_scratch), same env steps and battles;
    retention against the teacher and random figures of the full-loss run `ref`."""
    from bench_distill import train_scratch  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.core.resources import module_resources  # noqa: PLC0415
    from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

    run = out / f"{SCRATCH}_{ref['team']}_seed{seed}"
    hidden = [int(h) for h in ref["students"].removeprefix("mlp[").removesuffix("]").split(",")]
    if (run / "teacher.pt").is_file() and (run / "eval.json").is_file():
        small, minutes = load_teacher(run / "teacher.pt"), json.loads((run / "eval.json").read_text())["train_minutes"]
    else:
        small, minutes = train_scratch(teacher, run, steps=ref["env_steps"], hidden=hidden)
    ev = evaluate(small, episodes=episodes, seed_start=1000)
    ev["train_minutes"] = minutes
    (run / "eval.json").write_text(json.dumps(ev, indent=1))
    det = ev["results"]["deterministic"]
    win, ret = det["win_rate"], det["team_return"]["mean"]
    reduction = module_resources(load_teacher(teacher).actor).flops / module_resources(small.actor).flops
    return {"team": ref["team"], "variant": SCRATCH, "seed": seed,
            "win_rate_retention": round(win["mean"] / ref["teacher_win_rate"], 4),
            "student_win_rate": round(win["mean"], 3), "student_win_ci95": round(win["ci95"], 3),
            "teacher_win_rate": ref["teacher_win_rate"], "random_win_rate": ref["random_win_rate"],
            "return_retention": round((ret - ref["random_return"]) / (ref["teacher_return"] - ref["random_return"]), 4),
            "student_return": round(ret, 3), "teacher_return": ref["teacher_return"],
            "random_return": ref["random_return"],
            "min_flops_reduction": round(reduction, 1),
            "students": f"shared mlp{hidden} + one-hot", "budgets_met": None, "env_steps": ref["env_steps"],
            "train_minutes": round(minutes, 2), "run": str(run)}


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (team, variant): mean and 95 % interval across seeds; non-reference variants compared with the
    full loss on the seeds both have (paired)."""
    from kdmarl_student.stats import mean_ci  # noqa: PLC0415
    from kdmarl_teacher.experiments.statistics import paired  # noqa: PLC0415

    good = [r for r in rows if "error" not in r]
    out = []
    for team, variant in dict.fromkeys((r["team"], r["variant"]) for r in good):
        mine = {r["seed"]: r for r in good if (r["team"], r["variant"]) == (team, variant)}
        s = mean_ci([r["win_rate_retention"] for r in mine.values()])
        row = {"team": team, "variant": variant, "n_seeds": s["n"], "win_rate_retention": round(s["mean"], 4),
               "retention_ci95": round(s["ci95"], 4) if s["n"] > 1 else None,
               "per_seed": " / ".join(f"{r['win_rate_retention']:.3f}" for r in mine.values()),
               "student_win_rate": round(sum(r["student_win_rate"] for r in mine.values()) / s["n"], 3),
               "teacher_win_rate": next(iter(mine.values()))["teacher_win_rate"],
               "return_retention": round(sum(r["return_retention"] for r in mine.values()) / s["n"], 4),
               "min_flops_reduction": min(r["min_flops_reduction"] for r in mine.values()),
               "students": next(iter(mine.values()))["students"]}
        full = {r["seed"]: r for r in good if (r["team"], r["variant"]) == (team, "kdmarl_full")}
        both = sorted(set(mine) & set(full))
        if variant != "kdmarl_full" and both:
            cmp = paired([mine[k]["win_rate_retention"] for k in both], [full[k]["win_rate_retention"] for k in both])
            def num(v: float, nd: int) -> float | None:
                return None if math.isnan(v) else round(v, nd)

            row.update({"diff_vs_full": round(cmp["mean_diff"], 4), "p_value": num(cmp["p_value"], 4),
                        "d_z": num(cmp["d_z"], 2), "verdict": cmp["verdict"], "n_pairs": cmp["n_pairs"]})
        out.append(row)
    return out


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="a MAPPO smax:2s3z teacher run (bench_smax_teacher.py): the 2s3z rows with "
                                          "their baselines")
    parser.add_argument("--teacher-3m", help="a MAPPO smax:3m teacher run: adds the homogeneous smax_3m_mcu rows")
    parser.add_argument("--team", default="smax_2s3z_mcu", help="the 2s3z team")
    parser.add_argument("--team-teacher", action="append", default=[], metavar="TEAM=RUN",
                        help="also distill TEAM (full loss) on the MAPPO teacher run RUN of its map; repeatable")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--only", default="kdmarl_full,kl_only,mappo_scratch",
                        help="comma list of variants to run (finished runs of the others are still read back)")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation battles of the scratch baseline")
    parser.add_argument("--keep", help="run directories (default: temporary); finished runs are read back")
    parser.add_argument("--result", default="smax_students", help="bench/results/RESULT.json (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke check: one seed, a few thousand steps")
    args = parser.parse_args()
    if not args.teacher and not args.teacher_3m and not args.team_teacher:
        parser.error("nothing to distill: give --teacher, --teacher-3m or --team-teacher")
    steps = None
    if args.quick:
        args.seeds, steps, args.episodes = [1], 4096, 20
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_smax_students_"))
    only = set(args.only.split(","))
    plan = [(Path(args.teacher), args.team, v, s) for v in VARIANTS for s in args.seeds] if args.teacher else []
    extra = [("smax_3m_mcu", args.teacher_3m)] if args.teacher_3m else []
    for item in args.team_teacher:
        team, sep, run = item.partition("=")
        if not sep or not team or not run:
            parser.error(f"--team-teacher {item!r}: expected TEAM=RUN, e.g. smax_5m_vs_6m_mcu=runs/smax/mappo_5m")
        extra.append((team, run))
    plan += [(Path(run), team, "kdmarl_full", s) for team, run in extra for s in args.seeds]
    rows: list[dict[str, Any]] = []
    for teacher, team, variant, seed in plan:
        if variant not in only and not (run_dir(out, team, variant, seed) / "distill_report.json").is_file():
            continue
        try:
            rows.append(distill_row(teacher, team, variant, seed, out=out, steps=steps))
        except Exception as err:  # a failed run is an error row, not a lost table
            rows.append({"team": team, "variant": variant, "seed": seed, "error": f"{type(err).__name__}: {err}"})
        print(rows[-1], flush=True)
    ref = next((r for r in rows if (r["team"], r["variant"], r.get("seed")) == (args.team, "kdmarl_full", args.seeds[0])
                and "error" not in r), None)
    scratch_done = (out / f"{SCRATCH}_{args.team}_seed{args.seeds[0]}" / "eval.json").is_file()
    if args.teacher and ref is not None and (SCRATCH in only or scratch_done):
        try:
            rows.append(scratch_row(Path(args.teacher), ref, args.seeds[0], out, args.episodes))
        except Exception as err:
            rows.append({"team": args.team, "variant": SCRATCH, "seed": args.seeds[0],
                         "error": f"{type(err).__name__}: {err}"})
        print(rows[-1], flush=True)
    summaries = summary_rows(rows)
    targets = []
    for s in summaries:
        if s["variant"] == "kdmarl_full":
            ci = f" ± {s['retention_ci95']:.3f}" if s["retention_ci95"] is not None else ""
            worst = min(r["win_rate_retention"] for r in rows
                        if "error" not in r and (r["team"], r["variant"]) == (s["team"], "kdmarl_full"))
            targets.append({"what": f"students of {s['team']} ({s['n_seeds']} distillation seeds): win-rate "
                                    "retention on every seed at FLOPs reduction",
                            "target": ">= 0.90 on every seed at >= 20x",
                            "met": bool(worst >= 0.90 and s["min_flops_reduction"] >= 20),
                            "reached": f"worst seed {worst:.3f}; mean {s['win_rate_retention']:.3f}{ci} (per seed "
                                       f"{s['per_seed']}) at {s['min_flops_reduction']}x"})
    notes = ["win-rate retention = student win rate / teacher win rate; return retention = (R_s - R_random) / "
             "(R_t - R_random) (DESIGN.md §5); greedy policies on 200 battles from PRNGKey(1000..1199), masks applied",
             "kdmarl_full: shipped distill.yaml (KD-MARL loss: teacher-guided PG, KL, CE, relation, role) on masked "
             "logits; kl_only: the same run with use_pg, use_ce, use_relation and use_role off (same seeds, same env "
             "steps); FLOPs reduction = teacher actor FLOPs / student FLOPs (per agent, the smallest shown)",
             f"{SCRATCH}: MAPPO from scratch, the teacher's training config with a shared actor of the students' "
             "hidden size (full observation + agent one-hot, so more FLOPs than the students), same env steps, one "
             "seed; not a distillation",
             "rows: one per (team, variant), the runs (one per seed) under `runs`; mean across seeds, "
             "retention_ci95 = t(0.975, n-1) sd / sqrt(n); diff_vs_full, p_value "
             "(paired t), d_z: kdmarl_teacher.experiments.statistics.paired on the seeds both variants have",
             "one teacher per map (bench_smax_teacher.py); train_minutes move with the machine's load"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: figures are not the benchmark")
    write_result(args.result + ("_quick" if args.quick else ""),
                 title="KD-MARL students on SMAX: win-rate retention at the budgets' FLOPs reduction, baselines at "
                       "equal size",
                 columns=["team", "variant", "n_seeds", "win_rate_retention", "retention_ci95", "per_seed",
                          "student_win_rate", "teacher_win_rate", "return_retention", "diff_vs_full", "p_value",
                          "verdict", "min_flops_reduction", "students"],
                 rows=summaries, targets=targets, notes=notes, extra={"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
