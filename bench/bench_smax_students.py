#!/usr/bin/env python3
"""KD-MARL students on SMAX 2s3z (issue 12 §2): win-rate retention at the FLOPs reduction the budgets give.

On one MAPPO 2s3z teacher (bench_smax_teacher.py trains it; or --teacher), `kdmarl distill --team TEAM` with
the shipped distill.yaml (masked rollouts and targets), one run per distillation seed, each evaluated greedy on
the same 200 battles (seeds 1000-1199) as teacher and random: win rate with its 95 % interval, win-rate
retention (student / teacher win rate), return retention (DESIGN.md §5) and FLOPs reduction per agent.
Target: >= 0.90 win-rate retention at >= 20x fewer FLOPs (the published KD-MARL claim is > 90 % at up to 28.6x).

    python bench/bench_smax_students.py --teacher runs/smax_bench/mappo_2s3z --keep runs/smax_bench [--seeds 1 2 3]

Finished runs under --keep are read back, not rerun. Writes bench/results/smax_students.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
for pkg in ("kdmarl_student", "kdmarl_teacher"):
    sys.path.insert(0, str(ROOT / "src" / pkg))


def student_row(teacher: Path, team: str, seed: int, out: Path, steps: int | None) -> dict[str, Any]:
    from kdmarl_teacher.cli import main as kdmarl  # noqa: PLC0415

    run = out / f"students_{team}_seed{seed}"
    report = run / "distill_report.json"
    if not report.is_file():
        args = ["distill", "--teacher", str(teacher), "--out", str(run), "--team", team, "--no-progress",
                "--set", f"seed={seed}", "--set", "torch_threads=1"]
        args += ["--set", f"total_steps={steps}"] if steps else []
        args += ["--resume"] if (run / "checkpoint.pt").is_file() else []
        if kdmarl(args) != 0:
            raise RuntimeError(f"kdmarl {' '.join(args)} failed")
    rep = json.loads(report.read_text())
    s, t, r = rep["students_eval"], rep["teacher_eval"], rep["random_eval"]
    return {"team": team, "seed": seed, "win_rate_retention": round(rep["win_rate_retention"], 4),
            "student_win_rate": round(s["win_rate"], 3), "student_win_ci95": round(s["win_rate_ci95"], 3),
            "teacher_win_rate": round(t["win_rate"], 3), "random_win_rate": round(r["win_rate"], 3),
            "return_retention": round(rep["retention"], 4), "student_return": round(s["team_return"], 3),
            "teacher_return": round(t["team_return"], 3), "min_flops_reduction": round(rep["min_flops_reduction"], 1),
            "students": ", ".join(sorted({a["student"] for a in rep["agents"]})),
            "budgets_met": all(a.get("fits_budget", True) for a in rep["agents"]),
            "env_steps": rep["global_step"], "train_minutes": round(rep["wall_time_s"] / 60, 2), "run": str(run)}


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415
    from kdmarl_student.stats import ci95_half_width  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="a MAPPO smax:2s3z teacher run (bench_smax_teacher.py)")
    parser.add_argument("--team", default="smax_2s3z_mcu")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--keep", help="run directories (default: temporary); finished runs are read back")
    parser.add_argument("--quick", action="store_true", help="smoke check: one seed, a few thousand steps")
    args = parser.parse_args()
    steps = None
    if args.quick:
        args.seeds, steps = [1], 4096
    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_smax_students_"))
    rows = []
    for seed in args.seeds:
        try:
            rows.append(student_row(Path(args.teacher), args.team, seed, out, steps))
        except Exception as err:  # a failed seed is an error row, not a lost table
            rows.append({"team": args.team, "seed": seed, "error": f"{type(err).__name__}: {err}"})
        print(rows[-1], flush=True)
    good = [r for r in rows if "error" not in r]
    targets = []
    if good:
        wr = [r["win_rate_retention"] for r in good]
        mean = statistics.mean(wr)
        ci = ci95_half_width(statistics.stdev(wr), len(wr)) if len(wr) > 1 else float("nan")
        red = min(r["min_flops_reduction"] for r in good)
        targets.append({"what": f"students on smax:2s3z ({args.team}, {len(good)} distillation seeds): win-rate "
                                "retention at FLOPs reduction",
                        "target": ">= 0.90 at >= 20x", "met": bool(mean >= 0.90 and red >= 20),
                        "reached": f"{mean:.3f} ± {ci:.3f} (per seed {' / '.join(f'{x:.3f}' for x in wr)}) at {red}x"})
    notes = ["win-rate retention = student win rate / teacher win rate; return retention = (R_s - R_random) / "
             "(R_t - R_random) (DESIGN.md §5); greedy policies on 200 battles from PRNGKey(1000..1199), masks applied",
             "students: shipped distill.yaml (KD-MARL loss: teacher-guided PG, KL, CE, relation, role) on masked "
             "logits; FLOPs reduction = teacher actor FLOPs / student FLOPs (per agent, the smallest shown)",
             "no baselines at equal size (MAPPO from scratch, KL-only) yet: one teacher, distillation seeds only"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: figures are not the benchmark")
    write_result("smax_students" + ("_quick" if args.quick else ""),
                 title="KD-MARL students on SMAX 2s3z: win-rate retention at the budgets' FLOPs reduction",
                 columns=["team", "seed", "win_rate_retention", "student_win_rate", "student_win_ci95",
                          "teacher_win_rate", "return_retention", "min_flops_reduction", "students", "budgets_met",
                          "train_minutes"],
                 rows=rows, targets=targets, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
