#!/usr/bin/env python3
"""Overhead of `kdmarl sweep` (issue 14 §3): a small grid on the local Ray vs the same runs one after another.

The grid: 2 variants (full loss, KL off) x 2 distillation seeds = 4 trials of about 80 s each on spread3_full
(--quick: about 10 s each, on a tiny teacher trained here). Three measurements, each in its own directory:
1. sequential: the same trial function `kdmarl sweep` runs (`sweep.run_trial`), called 4 times in this process;
2. `kdmarl sweep --cpus 1`: one trial at a time on Ray, so the difference to 1. is Ray Tune's overhead (start,
   scheduling, actor start, result handling, shutdown);
3. `kdmarl sweep --cpus 2`: two trials at a time (the speed-up this machine can give).
Overhead = (sweep wall - sequential wall) / sequential wall, for 2. (target <= 5 % for runs of a minute or more).

Scaling on paper: the per-trial wall time and the worker's peak memory measured in 1., scaled to the benchmark's
1.5 M env steps per trial (linear in env steps, an extrapolation), give the hours of the benchmark grids of
bench/sweeps/ on N machines of M cores (one trial per core, waves of N*M trials, plus the measured overhead).

    python bench/bench_sweep.py --teacher runs/bench/teacher/spread       # 4 trials of ~1 min
    python bench/bench_sweep.py --quick                                    # ~3 min smoke run

Writes bench/results/sweep.json (--quick: sweep_quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from bench_distill import SWEEPS_DIR, load_bench_spec, train_teacher
from benchlib import RESULTS_DIR

FULL_STEPS = 1_500_000  # env steps of one benchmark trial (bench/sweeps/*.yaml)


def grid_spec(teacher: Path, steps: int, episodes: int, num_envs: int) -> dict[str, Any]:
    return {"kind": "distill", "teacher": str(teacher),
            "base": {"team": "spread3_full", "total_steps": steps, "eval_episodes": episodes, "num_envs": num_envs},
            "grid": {"seed": [1, 2]}, "variants": {"full": {}, "no_kl": {"use_kl": False}},
            "reference": "full", "metric": "retention", "cpus_per_trial": 1}


def sequential(spec_file: Path, out: Path) -> tuple[float, list[dict[str, Any]]]:
    """The sweep's trials, one after another in this process, through the same trial function."""
    from kdmarl_teacher.experiments import sweep  # noqa: PLC0415

    trials = sweep.expand(sweep.load_spec(spec_file), out)
    t0 = time.time()
    for t in trials:
        sweep.run_trial(t)
    wall = time.time() - t0
    return wall, [json.loads((Path(t.dir) / sweep.TRIAL_FILE).read_text()) for t in trials]


def via_sweep(spec_file: Path, out: Path, cpus: int) -> tuple[float, dict[str, Any]]:
    from kdmarl_teacher.experiments import sweep  # noqa: PLC0415

    t0 = time.time()
    sweep.main([str(spec_file), "--out", str(out), "--cpus", str(cpus)])
    wall = time.time() - t0
    return wall, json.loads((out / "sweep_report.json").read_text())


def grid_sizes() -> dict[str, int]:
    """Trials of each benchmark sweep spec (bench/sweeps/), full size."""
    sizes = {}
    for name in ("distill.yaml", "distill_teams.yaml", "ladder.yaml"):
        spec = load_bench_spec(name, quick=False)
        seeds = len(spec["grid"]["seed"])
        variants = len(spec.get("variants") or {"default": {}})
        if name == "distill_teams.yaml":
            per_team = {t: len(v) if isinstance(v, list) else 1 for t, v in spec["teacher"].items()}
            sizes[name] = sum(per_team[t] for t in spec["grid"]["team"]) * seeds * variants
        elif name == "ladder.yaml":
            sizes[name] = len(spec["bench"]["rungs"]) * seeds * variants
        else:
            sizes[name] = seeds * variants
    spec = yaml.safe_load((SWEEPS_DIR / "teachers.yaml").read_text())
    sizes["teachers.yaml"] = len(spec["grid"]["seed"])
    return sizes


def scaling_rows(trial_min: float, rss_mb: float, overhead: float, n_trials: int) -> list[dict[str, Any]]:
    rows = []
    for machines, cores in ((1, 2), (1, 8), (2, 8), (4, 16), (8, 32)):
        slots = machines * cores
        waves = math.ceil(n_trials / slots)
        hours = waves * trial_min * (1 + max(overhead, 0.0)) / 60
        rows.append({"machines": machines, "cores_each": cores, "parallel_trials": slots, "trials": n_trials,
                     "waves": waves, "hours": round(hours, 2),
                     "memory_per_machine_gib": round(cores * rss_mb / 1024, 1)})
    return rows


def write_scaling(name: str, *, trial_s: float, steps: int, rss_mb: float, overhead: float) -> None:
    """bench/results/NAME_scaling.json: the benchmark grids of bench/sweeps/ on N machines of M cores, from one
    trial's measured wall time (`trial_s` at `steps` env steps, scaled linearly to FULL_STEPS), its peak memory and
    the measured sweep overhead (the larger of --cpus 1 and --cpus 2: every row runs trials side by side)."""
    from benchlib import write_result  # noqa: PLC0415

    sizes = grid_sizes()
    total = sum(sizes.values()) - sizes["teachers.yaml"]
    full_trial_min = trial_s * FULL_STEPS / steps / 60
    notes = [f"benchmark grids (bench/sweeps/): {sizes} -> {total} distillation trials (teachers.yaml trains 2 "
             "teachers of 10 min before them)",
             f"per trial: {full_trial_min:.2f} min at {FULL_STEPS} env steps, extrapolated linearly from the "
             f"{trial_s:.1f} s measured at {steps} steps here on spread3_full (one core per trial; speaker-listener "
             f"and history-feature trials differ), x (1 + {100 * max(overhead, 0):.1f} % measured overhead)",
             "hours = waves x trial time, waves = ceil(trials / (machines x cores)); memory = cores x peak RSS "
             "of one trial process",
             "command: `ray start --head --num-cpus M` on one machine, `ray start --address HEAD:6379 "
             "--num-cpus M` on the others (same checkout/venv and a shared runs/ at the same path), then "
             "`kdmarl sweep bench/sweeps/distill.yaml --out runs/ablation --address auto`"]
    write_result(f"{name}_scaling", title="kdmarl sweep, scaling on paper: the benchmark grids on N machines of "
                                          "M cores",
                 columns=["machines", "cores_each", "parallel_trials", "trials", "waves", "hours",
                          "memory_per_machine_gib"],
                 rows=scaling_rows(full_trial_min, rss_mb, overhead, total), notes=notes)


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="simple_spread teacher.pt or run dir (default: train a tiny one here)")
    parser.add_argument("--steps", type=int, default=1_000_000,
                        help="env steps per trial (about 80 s on this machine: runs of a minute or more)")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes per trial")
    parser.add_argument("--quick", action="store_true", help="~10 s trials on a tiny teacher")
    parser.add_argument("--keep", help="keep the run directories under this path (default: temporary)")
    args = parser.parse_args()
    num_envs = 128
    if args.quick:
        args.steps, args.episodes, num_envs = 64 * 25 * 16, 50, 64
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        teacher = Path(args.teacher) if args.teacher else train_teacher("simple_spread", 10.0, root / "teacher",
                                                                        quick=True)
        teacher = teacher / "teacher.pt" if teacher.is_dir() else teacher
        spec_file = root / "grid.yaml"
        spec_file.write_text(yaml.safe_dump(grid_spec(teacher.resolve(), args.steps, args.episodes, num_envs)))
        seq_wall, seq_records = sequential(spec_file, root / "sequential")
        one_wall, one_rep = via_sweep(spec_file, root / "sweep_cpus1", 1)
        two_wall, two_rep = via_sweep(spec_file, root / "sweep_cpus2", 2)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    n = len(seq_records)
    trial_s = [r["wall_s"] for r in seq_records]
    mean_trial = sum(trial_s) / n
    rss = max(r["peak_rss_mb"] for r in seq_records)  # this process: teacher, env, students (and torch)
    sweep_rss = one_rep.get("worker_peak_rss_mb")
    overhead1 = (one_wall - seq_wall) / seq_wall
    overhead2 = (two_wall - seq_wall / 2) / (seq_wall / 2)
    rows = [
        {"mode": "sequential (same trial function, this process)", "cpus": 1, "trials": n, "wall_s": round(seq_wall, 1),
         "mean_trial_s": round(mean_trial, 1), "overhead_pct": 0.0, "speedup": 1.0},
        {"mode": "kdmarl sweep --cpus 1 (local Ray)", "cpus": 1, "trials": n, "wall_s": round(one_wall, 1),
         "mean_trial_s": round(one_rep["trial_wall_s"]["mean"], 1), "overhead_pct": round(100 * overhead1, 1),
         "speedup": round(seq_wall / one_wall, 2)},
        {"mode": "kdmarl sweep --cpus 2 (local Ray)", "cpus": 2, "trials": n, "wall_s": round(two_wall, 1),
         "mean_trial_s": round(two_rep["trial_wall_s"]["mean"], 1),
         "overhead_pct": round(100 * overhead2, 1),
         "speedup": round(seq_wall / two_wall, 2)},
    ]
    notes = [f"grid: 2 variants (full, KL off) x 2 seeds on spread3_full, {args.steps} env steps and "
             f"{args.episodes} evaluation episodes per trial, 1 torch thread per trial",
             "overhead_pct of --cpus 1: (sweep wall - sequential wall) / sequential wall, Ray start and shutdown "
             "included; of --cpus 2: against half the sequential wall (perfect 2-way parallelism)",
             f"peak RSS of a trial process: {rss:.0f} MB sequential, {sweep_rss} MB in a Ray worker",
             "walls move with the machine's load: measure with no other job running (as for the committed figure)"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: ~10 s trials, where Ray's fixed start-up cost dominates; the target is "
                        "for runs of a minute or more")
    targets = [] if args.quick else [{"what": "kdmarl sweep overhead vs the same runs one after another "
                                              f"(4 trials of {mean_trial / 60:.1f} min, --cpus 1)",
                                      "target": "<= 5 %", "reached": f"{100 * overhead1:.1f} %",
                                      "met": bool(overhead1 <= 0.05)}]
    name = "sweep_quick" if args.quick else "sweep"
    write_result(name, title="kdmarl sweep: overhead of the local Ray vs the same runs one after another",
                 columns=["mode", "cpus", "trials", "wall_s", "mean_trial_s", "overhead_pct", "speedup"],
                 rows=rows, targets=targets, notes=notes,
                 extra={"trial_wall_s": trial_s, "trial_peak_rss_mb": rss, "worker_peak_rss_mb": sweep_rss,
                        "sweep_reports": {"cpus1": one_rep["sweep"], "cpus2": two_rep["sweep"]}})
    write_scaling(name, trial_s=mean_trial, steps=args.steps, rss_mb=max(rss, sweep_rss or 0.0),
                  overhead=max(overhead1, overhead2))
    for r in rows:
        print(f"{r['mode']:50s} wall {r['wall_s']:7.1f} s  overhead {r['overhead_pct']:6.1f} %  "
              f"speed-up {r['speedup']:.2f}")
    for r in json.loads((RESULTS_DIR / f"{name}_scaling.json").read_text())["rows"]:
        print(f"{r['machines']} x {r['cores_each']} cores: {r['trials']} trials in {r['waves']} waves, "
              f"{r['hours']} h, {r['memory_per_machine_gib']} GiB per machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
