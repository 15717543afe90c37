#!/usr/bin/env python3
"""Retention vs student size (issue 4 §5, issue 14): distill the spread3_full team at each rung of the student
ladder, 5 distillation seeds per rung, through `kdmarl sweep` (spec: bench/sweeps/ladder.yaml) on the local Ray.

Every agent sees its full observation; only the students' hidden widths change, from tiny to teacher-size, with
the same env-step budget, loss and evaluation seeds (mpe2 1000-1199) as bench/bench_distill.py. The result is
the Pareto curve of `kdmarl report --bench`: how much retention each factor of FLOPs reduction costs, with the
95 % interval across seeds.

How a rung is forced: the team config's hardware budget decides the rung (`profiles.load_team` picks the largest
rung that fits), so for each rung a copy of spread3_full is written to the run directory with an inline budget
equal to that rung's own FLOPs / params / memory (no latency field); the sweep's grid.team is that list of files.
The distillation code is not touched and the chosen hidden widths are checked against the requested rung.

    python bench/bench_ladder.py --teacher runs/kd_teacher_spread_f/teacher.pt --keep runs/kd_ladder
    python bench/bench_ladder.py --teacher runs/kd_teacher_spread_f --keep runs/kd_ladder --reuse   # resume/re-tabulate
    python bench/bench_ladder.py --teacher runs/T --quick          # smoke check (two rungs, two seeds, tiny budget)

Writes bench/results/distill_ladder.json (--quick: distill_ladder_quick.json).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from bench_distill import load_bench_spec, rows_from_sweep, run_spec

DEFAULT_RUNGS = ((4,), (8, 8), (16, 16), (32, 32), (64, 64), (128, 128))
QUICK_RUNGS = ((4,), (16, 16))
BASE_TEAM = "spread3_full"


def rung_tag(hidden: tuple[int, ...]) -> str:
    return "h" + "x".join(str(h) for h in hidden)


def write_rung_team(hidden: tuple[int, ...], out_dir: Path) -> Path:
    """A copy of spread3_full whose inline hardware budget is exactly ``hidden``'s own resources.

    ``load_team`` then picks ``hidden`` (the largest rung within budget); a budget-free override does not exist,
    and the distillation code is not ours to change.
    """
    from kdmarl_teacher.distill.profiles import load_team, team_path  # noqa: PLC0415
    from kdmarl_teacher.distill.students import LADDER  # noqa: PLC0415

    if tuple(hidden) not in LADDER:
        raise ValueError(f"--rungs: {list(hidden)} is not a rung of kdmarl_teacher.students.LADDER {LADDER}")
    base = yaml.safe_load(team_path(BASE_TEAM).read_text())
    ref = load_team(BASE_TEAM).agents
    from kdmarl_teacher.core.resources import mlp_resources  # noqa: PLC0415

    agents: dict[str, Any] = {}
    for agent in ref:
        res = mlp_resources([agent.input_dim, *hidden, agent.n_actions])
        agents[agent.name] = {
            "sensing": base["agents"][agent.name]["sensing"],
            "hardware": {"name": f"ladder_{rung_tag(hidden)}", "class": "benchmark ladder rung",
                         "max_flops": res.flops, "max_params": res.params, "max_memory_bytes": res.memory_bytes,
                         "control_rate_hz": agent.hardware.get("control_rate_hz")},
        }
    data = {"scenario": base["scenario"], "params": base.get("params") or {}, "agents": agents,
            "description": f"bench_ladder: {BASE_TEAM} forced to hidden {list(hidden)}"}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{BASE_TEAM}_{rung_tag(hidden)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    chosen = {tuple(a.rung.hidden) for a in load_team(path).agents}
    if chosen != {tuple(hidden)}:
        raise RuntimeError(f"{path}: budget picks {sorted(chosen)} instead of {list(hidden)}")
    return path


def ladder_row(hidden: tuple[int, ...], row: dict[str, Any]) -> dict[str, Any]:
    """One table row from the sweep row of the rung's grid point (means over seeds, interval across seeds)."""
    return {
        "hidden": list(hidden), "flops": row["student_flops"][0],
        "params": (row.get("student_params") or [None])[0], "flops_reduction": row["min_flops_reduction"],
        "retention": row["retention"], "retention_ci95": row["retention_ci95"], "n_seeds": row["n_seeds"],
        "retention_per_seed": row["retention_per_seed"], "student_return": row["student_return"],
        "ci95": row["student_ci95"], "teacher_return": row["teacher_return"], "random_return": row["random_return"],
        "teacher_flops": row["teacher_flops"], "env_steps": row["env_steps"], "train_minutes": row["train_minutes"],
        "student_labels": row.get("student_labels"), "budgets_met": row.get("budgets_met"),
    }


def main() -> int:
    import os  # noqa: PLC0415

    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="simple_spread teacher.pt or its run directory")
    parser.add_argument("--rungs", help="';'-separated hidden widths, each a LADDER rung (default: the spec's "
                                        "bench.rungs)")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all cores)")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: resume the sweep there (finished trials are read, not rerun)")
    parser.add_argument("--quick", action="store_true", help="smoke check: two rungs, two seeds, tiny budget")
    args = parser.parse_args()

    teacher = Path(args.teacher)
    teacher = teacher / "teacher.pt" if teacher.is_dir() else teacher
    if not teacher.is_file():
        parser.error(f"--teacher: no teacher checkpoint at {teacher}")
    os.environ["KDMARL_TEACHER_SPREAD"] = str(teacher.resolve())
    spec = load_bench_spec("ladder.yaml", args.quick)
    bench = spec.get("bench") or {}
    rungs = ([tuple(int(w) for w in r.split(",")) for r in args.rungs.split(";") if r.strip()] if args.rungs
             else [tuple(r) for r in (bench["quick"]["rungs"] if args.quick else bench["rungs"])])
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_ladder_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        team_files = {str(write_rung_team(h, root / "teams").resolve()): h for h in rungs}
        spec["grid"]["team"] = list(team_files)
        report = run_spec(spec, root / "sweep", cpus=args.cpus, reuse=args.reuse)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    rows = []
    for sweep_row, point in zip(rows_from_sweep(report), report["points"], strict=True):
        hidden = team_files.get(point["point"].get("team"))
        if hidden is None:
            continue
        if "error" in sweep_row:
            rows.append({"hidden": list(hidden), "error": sweep_row["error"]})
            continue
        if any(list(h) != list(hidden) for h in sweep_row["student_hidden"]):
            raise RuntimeError(f"rung {list(hidden)}: the run chose {sweep_row['student_hidden']}")
        rows.append(ladder_row(hidden, sweep_row))
    rows.sort(key=lambda r: sum(r["hidden"]))

    ok = [r for r in rows if "error" not in r]
    targets = []
    at_30x = [r for r in ok if r["flops_reduction"] >= 30]
    if at_30x:
        best = max(at_30x, key=lambda r: r["retention"])
        targets.append({"what": "spread N=3 full obs: best retention among rungs with >= 30x FLOPs reduction "
                                f"(mean over {best['n_seeds']} seeds)",
                        "target": "retention >= 0.95 at >= 30x",
                        "reached": f"{best['retention']} ± {best['retention_ci95']} at {best['flops_reduction']}x "
                                   f"(hidden {best['hidden']})",
                        "met": bool(best["retention"] >= 0.95)})
    steps = spec["base"]["total_steps"]
    notes = ["team spread3_full (3 agents, full observation); each rung forced by an inline hardware budget equal "
             "to its own resources; KD-MARL full loss, default distill config",
             "retention = (R_student - R_random) / (R_teacher - R_random), greedy teacher and students, uniform "
             "random, same mpe2 seeds (DESIGN.md §5); mean over distillation seeds; retention_ci95 the 95 % "
             "interval across seeds (t(0.975, n-1) sd / sqrt(n)); ci95 the same for the student return",
             "FLOPs = 2 x MACs of the Linear layers at batch 1 per agent; reduction = teacher actor FLOPs / "
             "student FLOPs",
             f"env-step budget per rung: {steps}; through `kdmarl sweep bench/sweeps/ladder.yaml` on the local Ray, "
             "one torch thread per trial",
             "train_minutes moves with the load: trials share the 2 cores"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny budget; figures are not the benchmark")
    write_result("distill_ladder_quick" if args.quick else "distill_ladder",
                 title="KD-MARL retention vs FLOPs reduction over the student ladder (spread3_full)",
                 columns=["hidden", "flops", "params", "flops_reduction", "retention", "retention_ci95", "n_seeds",
                          "student_return", "ci95", "train_minutes"],
                 rows=rows, targets=targets, notes=notes,
                 extra={"teacher": str(teacher), "sweep": report["sweep"], "sweep_wall_s": report.get("sweep_wall_s")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
