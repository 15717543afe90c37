#!/usr/bin/env python3
"""KD-MARL students on every SMAX map (issue 26 §4): win-rate retention on every seed at the FLOPs reduction the
budgets give, next to the KL-only and MAPPO-from-scratch baselines at equal size.

The students are the `kdmarl sweep` grid bench/sweeps/smax_students.yaml, on the local Ray: teams smax_3m_mcu,
smax_2s3z_mcu and smax_3s5z_mcu (every unit on its full observation, on a microcontroller budget: mlp[8, 8],
25-38x fewer FLOPs than the teacher actor), and smax_5m_vs_6m_mcu for the harder map (enemies' and own features on
a Cortex-M7 budget: mlp[16, 16], about 20x) x 5 distillation seeds x {kdmarl_full (the shipped distill.yaml:
whole battles, 32 x 100 steps per iteration), kl_only (use_pg/ce/relation/role off)}, one MAPPO teacher per map. Every
trial is evaluated greedy on the same 200 battles as its teacher and random, seeds 1000-1199, masks applied.
Per (team, variant): win-rate retention (student / teacher win rate) with its 95 % interval across seeds and
every seed's value, return retention (DESIGN.md §5), FLOPs reduction per agent, and for kl_only the paired
comparison with the full loss on the same seeds (the sweep report's statistics).
MAPPO from scratch is not a distillation, so it is not in the sweep: one seed per map, the teacher's training
config with a shared actor of the students' hidden size (full observation + agent one-hot), the same env steps.
Target per team: >= 0.90 win-rate retention on every seed at >= 20x fewer FLOPs (the published claim is > 90 % at
up to 28.6x).

    python bench/bench_smax_students.py --teacher-3m runs/smax/mappo_3m --teacher-2s3z runs/smax/mappo_2s3z \\
        --teacher-3s5z runs/smax/mappo_3s5z [--teacher-5m_vs_6m runs/smax/mappo_5m_vs_6m] --keep runs/smax \\
        [--reuse] [--cpus 2] [--no-scratch] [--set KEY=VALUE] [--variants kdmarl_full] [--result smax_students_whole]

Teachers come from bench/bench_smax_teacher.py --keep DIR (mappo_MAP) or bench/bench_peers.py smax_MAP --keep DIR
(DIR/ours). Give any subset of the maps. With --keep, the sweep lives in KEEP/students and the scratch runs in
KEEP/mappo_scratch_TEAM_seed1; --reuse resumes the sweep there (finished trials are read, not rerun); finished
scratch runs are read back; --report-only tabulates what KEEP holds (unfinished trials are listed as not run).
Writes bench/results/smax_students.json (--quick: smax_students_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from bench_distill import load_bench_spec, rows_from_sweep, run_spec

METRIC = "win_rate_retention"
TEAMS = {  # team -> (its map, the environment variable the sweep spec reads its teacher from)
    "smax_3m_mcu": ("3m", "KDMARL_TEACHER_SMAX_3M"),
    "smax_2s3z_mcu": ("2s3z", "KDMARL_TEACHER_SMAX_2S3Z"),
    "smax_3s5z_mcu": ("3s5z", "KDMARL_TEACHER_SMAX_3S5Z"),
    "smax_5m_vs_6m_mcu": ("5m_vs_6m", "KDMARL_TEACHER_SMAX_5M_VS_6M"),  # the harder map (issue 26 §6)
}
SCRATCH = "mappo_scratch"
TARGET_RETENTION, TARGET_REDUCTION = 0.90, 20.0


def scratch_row(teacher: Path, ref: dict[str, Any], out: Path, episodes: int) -> dict[str, Any]:
    """MAPPO from scratch at the students' hidden size (bench_distill.train_scratch), the same env steps as the
    full-loss students of `ref` (a sweep row), on the same battles; retention against the teacher and random
    figures of `ref`. A finished run under `out` is read back."""
    from bench_distill import train_scratch  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.core.resources import module_resources  # noqa: PLC0415
    from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

    hidden = list(ref["student_hidden"][0])
    steps = int(ref["env_steps"])
    if (out / "teacher.pt").is_file() and (out / "eval.json").is_file():
        small, minutes = load_teacher(out / "teacher.pt"), json.loads((out / "eval.json").read_text())["train_minutes"]
    else:
        small, minutes = train_scratch(teacher, out, steps=steps, hidden=hidden)
    ev = evaluate(small, episodes=episodes, seed_start=1000)
    ev["train_minutes"] = minutes
    (out / "eval.json").write_text(json.dumps(ev, indent=1))
    det = ev["results"]["deterministic"]
    win, ret = det["win_rate"]["mean"], det["team_return"]["mean"]
    r_teacher, r_random = ref["teacher_return"], ref["random_return"]
    return {"variant": SCRATCH, "team": ref["team"], "label": f"{SCRATCH} (shared actor + one-hot)",
            METRIC: round(win / ref["teacher_win_rate"], 4), "n_seeds": 1, f"{METRIC}_per_seed": {"1": win},
            "student_win_rate": round(win, 3), "student_win_ci95": round(det["win_rate"]["ci95"], 3),
            "teacher_win_rate": ref["teacher_win_rate"], "random_win_rate": ref.get("random_win_rate"),
            "retention": round((ret - r_random) / (r_teacher - r_random), 4), "student_return": round(ret, 3),
            "teacher_return": r_teacher, "random_return": r_random,
            "min_flops_reduction": round(ref["teacher_flops"] / module_resources(small.actor).flops, 2),
            "student_hidden": [hidden], "env_steps": steps, "train_minutes": round(minutes, 2),
            "verdict": "one seed, not in the sweep", "run": str(out)}


def rollouts_note(report: dict[str, Any]) -> str:
    """What each iteration's rollout covered, read from the trials' own distill_config.yaml: SMAX battles last up
    to 100 steps and every iteration restarts them (docs/distillation.md, Whole battles)."""
    shapes = set()
    for trial in report.get("trials", []):
        cfg_file = Path(trial.get("dir", "")) / "distill_config.yaml"
        if cfg_file.is_file():
            cfg = yaml.safe_load(cfg_file.read_text())
            shapes.add((cfg["num_steps"], cfg["num_envs"]))
    if not shapes:
        return "rollouts: no trial's distill_config.yaml found"
    text = ", ".join(f"num_steps {t} x num_envs {b}" for t, b in sorted(shapes))
    if min(t for t, _ in shapes) >= 100:
        return f"rollouts: {text} per iteration from a fresh reset: whole battles"
    return (f"rollouts: {text} per iteration from a fresh reset, so the students never act past that step of a "
            "battle (each report's rollout_note); enough on 3m and 2s3z, not on 3s5z (docs/distillation.md, "
            "Whole battles, today's default)")


def per_seed_text(row: dict[str, Any]) -> str:
    return " / ".join(f"{v:.3f}" for v in row.get(f"{METRIC}_per_seed", {}).values())


def target(row: dict[str, Any]) -> dict[str, Any]:
    """Issue 26 §4 for one team's full-loss row: every seed >= 0.90 at >= 20x."""
    seeds = list(row[f"{METRIC}_per_seed"].values())
    worst = min(seeds)
    ci = row.get(f"{METRIC}_ci95")
    return {"what": f"students of {row['team']} ({row['n_seeds']} distillation seeds): win-rate retention on every "
                    "seed at FLOPs reduction",
            "target": f">= {TARGET_RETENTION:.2f} on every seed at >= {TARGET_REDUCTION:.0f}x",
            "met": bool(worst >= TARGET_RETENTION and row["min_flops_reduction"] >= TARGET_REDUCTION
                        and row.get("budgets_met", True)),
            "reached": f"worst seed {worst:.3f}; mean {row[METRIC]:.3f}"
                       + (f" ± {ci:.3f}" if isinstance(ci, float) else "")
                       + f" (per seed {per_seed_text(row)}) at {row['min_flops_reduction']}x"}


def main() -> int:
    from benchlib import add_note_argument, write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for team, (smax_map, _) in TEAMS.items():
        parser.add_argument(f"--teacher-{smax_map}", metavar="RUN", help=f"a MAPPO smax:{smax_map} teacher run: "
                                                                         f"the {team} rows")
    parser.add_argument("--keep", help="the sweep and scratch runs (default: temporary)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: resume the sweep there (finished "
                                                             "scratch runs are always read back)")
    parser.add_argument("--report-only", action="store_true",
                        help="with --keep: tabulate the sweep there as it is (an interrupted benchmark), run no "
                             "trial; finished scratch runs are read, missing ones not trained")
    parser.add_argument("--cpus", type=int, help="Ray CPUs of the sweep (default: this machine's)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a distill config key for every trial (the sweep's base), e.g. total_steps=3000000; "
                             "repeatable")
    parser.add_argument("--variants", help="comma list of the spec's variants to run (default: all)")
    parser.add_argument("--no-scratch", action="store_true", help="skip the MAPPO-from-scratch baselines")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation battles of the scratch baselines")
    parser.add_argument("--result", default="smax_students", help="bench/results/RESULT.json (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke check: one seed, a few thousand steps")
    add_note_argument(parser)
    args = parser.parse_args()
    teachers = {team: Path(getattr(args, f"teacher_{m}")) for team, (m, _) in TEAMS.items()
                if getattr(args, f"teacher_{m}")}
    if not teachers:
        parser.error("nothing to distill: give any of " + ", ".join(f"--teacher-{m}" for m, _ in TEAMS.values()))
    for team, run in teachers.items():
        if not (run / "teacher.pt").is_file():
            parser.error(f"--teacher-{TEAMS[team][0]} {run}: no teacher.pt there (a `kdmarl train` run directory)")
        os.environ[TEAMS[team][1]] = str(run.resolve())
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_smax_students_"))
    root.mkdir(parents=True, exist_ok=True)
    spec = load_bench_spec("smax_students.yaml", args.quick)
    spec["grid"]["team"] = [t for t in spec["grid"]["team"] if t in teachers]
    spec["teacher"] = {t: v for t, v in spec["teacher"].items() if t in teachers}
    for item in args.sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set {item!r}: expected KEY=VALUE, e.g. num_steps=100")
        spec["base"][key] = yaml.safe_load(value)
    if args.variants:
        unknown = sorted(set(args.variants.split(",")) - set(spec["variants"]))
        if unknown:
            parser.error(f"--variants: {unknown} not in bench/sweeps/smax_students.yaml ({list(spec['variants'])})")
        spec["variants"] = {k: v for k, v in spec["variants"].items() if k in args.variants.split(",")}
    episodes = 20 if args.quick else args.episodes
    report = run_spec(spec, root / "students", cpus=args.cpus, reuse=args.reuse, report_only=args.report_only)
    rows = rows_from_sweep(report)
    if not args.no_scratch:
        for ref in [r for r in rows if r["variant"] == "kdmarl_full" and "error" not in r]:
            out = root / f"{SCRATCH}_{ref['team']}_seed1"
            if args.report_only and not (out / "eval.json").is_file():
                continue
            try:
                rows.append(scratch_row(teachers[ref["team"]], ref, out, episodes))
            except Exception as err:  # a failed baseline is an error row, not a lost table
                rows.append({"variant": SCRATCH, "team": ref["team"], "error": f"{type(err).__name__}: {err}"})
            print(rows[-1], flush=True)
    rows.sort(key=lambda r: (list(TEAMS).index(r["team"]), ["kdmarl_full", "kl_only", SCRATCH].index(r["variant"])))
    for r in rows:
        if "error" not in r:
            r["per_seed"] = per_seed_text(r)
    targets = [target(r) for r in rows if r["variant"] == "kdmarl_full" and "error" not in r]
    notes = ["win-rate retention = student win rate / teacher win rate; return retention (`retention`) = "
             "(R_s - R_random) / (R_t - R_random) (DESIGN.md §5); greedy policies on 200 battles from "
             "PRNGKey(1000..1199), masks applied",
             "kdmarl_full: shipped distill.yaml (KD-MARL loss: teacher-guided PG, KL, CE, relation, role) on masked "
             "logits; kl_only: the same run with use_pg, use_ce, use_relation and use_role off (same seeds, same "
             "env steps); FLOPs reduction = teacher actor FLOPs / student FLOPs (per agent, the smallest shown)",
             "students: `kdmarl sweep` bench/sweeps/smax_students.yaml (the spec as run is next to the sweep under "
             "--keep); mean across seeds with its 95 % interval (t(0.975, n-1) sd / sqrt(n)); diff_vs_full, "
             "p_value (paired t), d_z: the sweep report's paired comparison on the seeds both variants have",
             f"{SCRATCH}: MAPPO from scratch, the teacher's training config with a shared actor of the students' "
             "hidden size (full observation + agent one-hot, so more FLOPs than the students), the same env steps, "
             "one seed; not a distillation, so not in the sweep",
             rollouts_note(report),
             "teachers: " + "; ".join(f"{t}: {run}" for t, run in teachers.items())
             + "; train_minutes move with the machine's load (two trials run at once on 2 cores)", *args.note]
    if args.quick:
        notes.insert(0, "QUICK smoke run: figures are not the benchmark")
    if args.report_only:
        notes.insert(0, "tabulated with --report-only from the runs under --keep (the sweep's trials and the scratch "
                        "runs that the same command without --report-only trains)")
    write_result(args.result + ("_quick" if args.quick else ""),
                 title="KD-MARL students on every SMAX map: win-rate retention on every seed at the budgets' FLOPs "
                       "reduction, baselines at equal size",
                 columns=["team", "variant", "n_seeds", METRIC, f"{METRIC}_ci95", "per_seed", "student_win_rate",
                          "teacher_win_rate", "retention", "diff_vs_full", "p_value", "verdict",
                          "min_flops_reduction", "student_labels"],
                 rows=rows, targets=targets, notes=notes,
                 extra={"sweep": report["sweep"], "sweep_wall_s": report.get("sweep_wall_s"),
                        "teachers": {t: str(run) for t, run in teachers.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
