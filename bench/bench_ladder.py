#!/usr/bin/env python3
"""Retention vs student size (issue 4 §5): distill the spread3_full team at each rung of the student ladder.

Every agent sees its full observation; only the students' hidden widths change, from tiny to teacher-size, with
the same env-step budget, loss and evaluation seeds (mpe2 1000-1199) as bench/bench_distill.py. The result is
the Pareto curve of `kdmarl report --bench`: how much retention each factor of FLOPs reduction costs.

How a rung is forced: the team config's hardware budget decides the rung (`profiles.load_team` picks the largest
rung that fits), so for each rung a copy of spread3_full is written to the run directory with an inline budget
equal to that rung's own FLOPs / params / memory (no latency field). The distillation code is not touched and
the chosen hidden widths are checked against the requested rung.

    python bench/bench_ladder.py --teacher runs/kd_teacher_spread_f/teacher.pt --keep runs/kd_ladder
    python bench/bench_ladder.py --teacher runs/kd_teacher_spread_f --keep runs/kd_ladder --reuse   # re-tabulate
    python bench/bench_ladder.py --teacher runs/T --quick          # smoke check (two rungs, tiny budget)

Writes bench/results/distill_ladder.json (--quick: distill_ladder_quick.json).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_distill import distill_run, guarded  # noqa: E402  (also puts src/kdmarl_* on sys.path)

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
    from kdmarl_teacher.profiles import load_team, team_path  # noqa: PLC0415
    from kdmarl_teacher.students import LADDER  # noqa: PLC0415

    if tuple(hidden) not in LADDER:
        raise ValueError(f"--rungs: {list(hidden)} is not a rung of kdmarl_teacher.students.LADDER {LADDER}")
    base = yaml.safe_load(team_path(BASE_TEAM).read_text())
    ref = load_team(BASE_TEAM).agents
    from kdmarl_teacher.resources import mlp_resources  # noqa: PLC0415

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


def ladder_row(hidden: tuple[int, ...], run_dir: Path, base: dict[str, Any]) -> dict[str, Any]:
    """One table row: the distill_run row plus per-agent params read from the run's distill_report.json."""
    rep = json.loads((run_dir / "distill_report.json").read_text())
    agent = rep["agents"][0]  # every agent has the same rung and input here
    return {
        "hidden": list(hidden), "flops": agent["flops"], "params": agent["params"],
        "flops_reduction": round(base["min_flops_reduction"], 2), "retention": base["retention"],
        "student_return": base["student_return"], "ci95": base["student_ci95"],
        "teacher_return": base["teacher_return"], "random_return": base["random_return"],
        "teacher_flops": base["teacher_flops"], "env_steps": base["env_steps"],
        "train_minutes": base["train_minutes"],
        **{k: base[k] for k in ("student_landmarks_covered", "student_collisions") if k in base},
    }


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True, help="simple_spread teacher.pt or its run directory")
    parser.add_argument("--steps", type=int, default=1_500_000, help="env-step budget per rung (as bench_distill)")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes (mpe2 seeds from 1000)")
    parser.add_argument("--rungs", default=";".join(",".join(map(str, r)) for r in DEFAULT_RUNGS),
                        help="';'-separated hidden widths, each a LADDER rung (default: %(default)s)")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: read finished runs (distill_report.json) instead of rerunning them")
    parser.add_argument("--quick", action="store_true", help="smoke check: two rungs, tiny budget")
    args = parser.parse_args()

    teacher = Path(args.teacher)
    teacher = teacher / "teacher.pt" if teacher.is_dir() else teacher
    if not teacher.is_file():
        parser.error(f"--teacher: no teacher checkpoint at {teacher}")
    rungs = [tuple(int(w) for w in r.split(",")) for r in args.rungs.split(";") if r.strip()]
    overrides: dict[str, Any] = {"torch_threads": 1}
    if args.quick:
        rungs, args.steps, args.episodes = list(QUICK_RUNGS), 64 * 25 * 8, 20
        overrides["num_envs"] = 64
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_ladder_"))
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        for hidden in rungs:
            name = rung_tag(hidden)
            print(f"=== rung {list(hidden)} ===", flush=True)
            team_file = write_rung_team(hidden, root / "teams")
            base = guarded(distill_run, (name, BASE_TEAM), name=name, teacher_path=teacher, team=str(team_file),
                           out=root, steps=args.steps, episodes=args.episodes, overrides=overrides,
                           reuse=args.reuse)
            rows.append({"hidden": list(hidden), "error": base["error"]} if "error" in base
                        else ladder_row(hidden, root / name, base))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    ok = [r for r in rows if "error" not in r]
    targets = []
    at_30x = [r for r in ok if r["flops_reduction"] >= 30]
    if at_30x:
        best = max(at_30x, key=lambda r: r["retention"])
        targets.append({"what": "spread N=3 full obs: best retention among rungs with >= 30x FLOPs reduction",
                        "target": "retention >= 0.95 at >= 30x",
                        "reached": f"{best['retention']} at {best['flops_reduction']}x (hidden {best['hidden']})",
                        "met": bool(best["retention"] >= 0.95)})
    notes = ["team spread3_full (3 agents, full observation); each rung forced by an inline hardware budget equal "
             "to its own resources; KD-MARL full loss, default distill config",
             "retention = (R_student - R_random) / (R_teacher - R_random), greedy teacher and students, uniform "
             "random, same mpe2 seeds (DESIGN.md §5); ci95 is the student team return's 95 % CI",
             "FLOPs = 2 x MACs of the Linear layers at batch 1 per agent; reduction = teacher actor FLOPs / "
             "student FLOPs",
             f"env-step budget per rung: {args.steps}; one distillation seed (seed 1); torch_threads=1",
             "train_minutes moves with the load: the 2-core machine was shared with other jobs"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny budget; figures are not the benchmark")
    write_result("distill_ladder_quick" if args.quick else "distill_ladder",
                 title="KD-MARL retention vs FLOPs reduction over the student ladder (spread3_full)",
                 columns=["hidden", "flops", "params", "flops_reduction", "retention", "student_return", "ci95",
                          "train_minutes"],
                 rows=rows, targets=targets, notes=notes, extra={"teacher": str(teacher)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
