#!/usr/bin/env python3
"""Students with memory (issue 11 §3): MLP, history-feature and recurrent students side by side.

On the same teacher, the same budgets and the same evaluation seeds (mpe2 1000-1199):
- the heterogeneous team (spread3_hetero: full / no-velocity / nearest-2-landmarks sensing on Orin / Nano /
  microcontroller budgets) with each memory kind forced on every agent, over ``--seeds`` distillation seeds:
  retention (mean, spread across seeds), distillation wall time. Target:
  retention >= 0.95 with every budget met;
- the same students and teacher past the training horizon: episodes of ``max_cycles=50`` (trained on 25),
  team return over steps 26-50 and landmarks covered at step 50, against the teacher's;
- a partial-observation team from mpe2's own options (simple_spread with num_landmark_neighbors=2,
  num_agent_neighbors=1: its own teacher, trained here unless given) with MLP and recurrent students, and
  the speaker-listener team with a recurrent listener against MLP students (one distillation seed each);
- per student of the first seed's bundle of each kind: FLOPs, parameters, state bytes, ONNX Runtime p50/p99
  per decision with the state fed back (batch 1, one thread).

    python bench/bench_memory.py --teacher runs/bench/teacher/spread --teacher-sl runs/bench/teacher/sl \\
        --keep runs/bench/memory
    python bench/bench_memory.py --quick        # smoke check (tiny teachers and budgets; a few minutes)

Writes bench/results/distill_memory.json (distill_memory_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

from bench_distill import distill_run, guarded, train_teacher  # noqa: E402

KINDS = ("none", "history", "recurrent")
PARTIAL_PARAMS = {"N": 3, "num_landmark_neighbors": 2, "num_agent_neighbors": 1}


def horizon_returns(teacher_path: Path, run_dir: Path | None, *, episodes: int, seed: int = 1000,
                    max_cycles: int = 50, split: int = 25) -> dict[str, float]:
    """Greedy teacher (``run_dir`` None) or the run's students over ``max_cycles``-step episodes of the env port
    (float64, mpe2 seeds): team return over steps 1..split and split+1..max_cycles, landmarks at the end."""
    import torch  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.distill.profiles import load_team  # noqa: PLC0415
    from kdmarl_teacher.distill.students_file import load_students  # noqa: PLC0415
    from kdmarl_teacher.distill.team import StudentTeam  # noqa: PLC0415
    from kdmarl_teacher.envs import make_env  # noqa: PLC0415

    teacher = load_teacher(teacher_path)
    params = {**teacher.config.get("env_params", {}), "max_cycles": max_cycles}
    env = make_env(teacher.config["scenario"], num_envs=episodes, seed=0, dtype=torch.float64, **params)
    obs, _ = env.reset_from_mpe2_seeds(list(range(seed, seed + episodes)))
    team = None
    if run_dir is not None:
        students, payload = load_students(run_dir)
        memory = payload["config"].get("memory") or None
        team = StudentTeam(load_team(payload["team"]["source_file"], memory=memory), students)
        team.begin(episodes)
    h = teacher.actor.initial_state(episodes * env.n_agents)
    early = torch.zeros(episodes, dtype=torch.float64)
    late = torch.zeros(episodes, dtype=torch.float64)
    info: dict[str, Any] = {}
    with torch.no_grad():
        for t in range(max_cycles):
            if team is not None:
                actions = team.act(obs.float())
            else:
                from kdmarl_teacher.core.networks import actor_inputs_all  # noqa: PLC0415

                logits, _, h = teacher.actor.step(actor_inputs_all(obs.float()).reshape(-1, obs.shape[-1] +
                                                                                           env.n_agents), h)
                actions = logits.view(episodes, env.n_agents, -1).argmax(-1)
            obs, _, rewards, _, info = env.step(actions)
            (early if t < split else late).add_(rewards.double().mean(-1))
    out = {"return_1_to_split": float(early.mean()), "return_after_split": float(late.mean())}
    for key, value in info.get("metrics", {}).items():
        out[key] = float(value.double().mean())
    return out


def export_latency(run_dir: Path, out: Path) -> list[dict[str, Any]]:
    """Export the run's students (no team evaluation) and read each agent's cost from the manifest."""
    from kdmarl_student.manifest import load_manifest  # noqa: PLC0415

    from kdmarl_teacher import cli  # noqa: PLC0415

    code = cli.main(["export", str(run_dir), "--out", str(out), "--force", "--eval-episodes", "0",
                     "--latency-calls", "5000"])
    if code != 0:
        raise RuntimeError(f"kdmarl export {run_dir} failed with exit {code}")
    rows = []
    for entry in load_manifest(out).data["agents"]:
        memory = entry.get("memory") or {}
        rows.append({"agent": entry["name"], "architecture": entry["model"]["architecture"],
                     "memory": memory.get("kind", "none"), "state_bytes": memory.get("state_bytes", 0),
                     "flops": entry["resources"]["flops_per_decision"], "params": entry["resources"]["params"],
                     "memory_bytes": entry["resources"]["memory_bytes"],
                     "p50_ms": entry["latency"]["p50_ms"], "p99_ms": entry["latency"]["p99_ms"],
                     "budget": entry["budget"]["profile"], "budget_met": entry["budget"]["met"],
                     "parity_scaled": entry["parity"]["max_scaled_diff"],
                     "parity_decisions": entry["parity"]["n_observations"]})
    return rows


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", help="simple_spread teacher (default: train one, --teacher-minutes)")
    parser.add_argument("--teacher-partial", help="partial-observation simple_spread teacher (default: train one)")
    parser.add_argument("--teacher-sl", help="simple_speaker_listener teacher (default: train one)")
    parser.add_argument("--teacher-minutes", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="distillation seeds (headline rows)")
    parser.add_argument("--steps", type=int, default=1_500_000, help="env-step budget of every distillation")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes (mpe2 seeds from 1000)")
    parser.add_argument("--only", default="hetero,horizon,partial,sl,cost", help="comma list of the parts")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny teachers and budgets")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: read finished runs instead of rerunning")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.episodes, args.seeds = 64 * 25 * 8, 20, args.seeds[:2]
    parts = set(args.only.split(","))
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_memory_"))
    root.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {"num_envs": 64} if args.quick else {}
    run = {"steps": args.steps, "episodes": args.episodes, "reuse": args.reuse}
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    t_start = time.time()
    try:
        t_spread = Path(args.teacher) if args.teacher else train_teacher(
            "simple_spread", args.teacher_minutes, root / "teacher_spread", args.quick)
        if "hetero" in parts:
            for kind in KINDS:
                per_seed = []
                for seed in args.seeds:
                    overrides = {**common, "seed": seed, "memory": kind}
                    per_seed.append(guarded(distill_run, (f"{kind}_s{seed}", "spread3_hetero"),
                                            name=f"{kind}_s{seed}", teacher_path=t_spread, team="spread3_hetero",
                                            out=root / "hetero", overrides=overrides, **run))
                rows.append(summarize(kind, "spread3_hetero", per_seed))
        if "horizon" in parts:
            teacher_h = horizon_returns(t_spread, None, episodes=args.episodes)
            horizon = {"teacher": teacher_h}
            for kind in KINDS:
                run_dir = root / "hetero" / f"{kind}_s{args.seeds[0]}"
                if (run_dir / "students.pt").is_file():
                    horizon[kind] = horizon_returns(t_spread, run_dir, episodes=args.episodes)
            extra["horizon_50"] = horizon
        if "partial" in parts:
            t_partial = Path(args.teacher_partial) if args.teacher_partial else train_partial_teacher(
                args.teacher_minutes, root / "teacher_partial", args.quick)
            for kind in ("none", "recurrent"):
                rows.append(summarize(kind, "spread3_partial", [guarded(
                    distill_run, (kind, "spread3_partial"), name=kind, teacher_path=t_partial,
                    team="spread3_partial", out=root / "partial", overrides={**common, "memory": kind}, **run)]))
        if "sl" in parts:
            t_sl = Path(args.teacher_sl) if args.teacher_sl else train_teacher(
                "simple_speaker_listener", args.teacher_minutes / 2, root / "teacher_sl", args.quick)
            for kind in ("none", "team"):  # the team file gives the listener a recurrent student
                rows.append(summarize(kind if kind == "none" else "recurrent listener", "speaker_listener_memory", [
                    guarded(distill_run, (kind, "speaker_listener_memory"), name=kind, teacher_path=t_sl,
                            team="speaker_listener_memory", out=root / "sl",
                            overrides={**common, "memory": "none" if kind == "none" else ""}, **run)]))
        if "cost" in parts:
            cost = []
            for kind in KINDS:
                run_dir = root / "hetero" / f"{kind}_s{args.seeds[0]}"
                if (run_dir / "students.pt").is_file():
                    cost += [{"kind": kind, **r} for r in export_latency(run_dir, root / "bundles" / kind)]
            extra["students"] = cost
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    hetero = {r["variant"]: r for r in rows if r["team"] == "spread3_hetero" and "error" not in r}
    targets = [{"what": f"spread3_hetero, {kind} students ({r['seeds']} seeds)",
                "target": "retention >= 0.95, every budget met",
                "reached": (f"{r['retention']:.3f} (per seed {r['retention_per_seed']}), budgets met: "
                            f"{r['budgets_met']}"),
                "met": r["retention"] >= 0.95 and r["budgets_met"]} for kind, r in hetero.items()]
    quick = "QUICK smoke run: tiny teachers and budgets; figures are not the benchmark"
    notes = [
        "retention = (R_student - R_random) / (R_teacher - R_random), greedy, same mpe2 seeds (DESIGN.md §5); "
        f"mean over distillation seeds {args.seeds} (one teacher), each seed's value listed",
        "memory kinds: none = MLP on the sensed observation; history = MLP + deltas of the selected slices from "
        "the previous observation; recurrent = GRU student (GRU_LADDER); each kind on every agent of the team",
        "the same env-step budget for every run; train_minutes is the distillation's own wall time (this machine)",
        "FLOPs = 2 x MACs of Linear layers and GRU cells at batch 1; memory includes the carried state",
    ]
    suffix = "_quick" if args.quick else ""
    write_result(f"distill_memory{suffix}", title="Students with memory: MLP vs history features vs recurrent",
                 columns=["variant", "team", "retention", "retention_per_seed", "student_return", "teacher_return",
                          "random_return", "students", "budgets_met", "train_minutes"],
                 rows=rows, targets=targets, notes=[quick] * args.quick + notes,
                 extra={"total_minutes": round((time.time() - t_start) / 60, 1)})
    if "horizon_50" in extra:
        h = extra["horizon_50"]
        horizon_rows = [{"policy": name, **{k: round(v, 3) for k, v in figs.items()}} for name, figs in h.items()]
        write_result(f"distill_memory_horizon{suffix}",
                     title="Past the training horizon: spread3_hetero students at max_cycles=50 (trained on 25)",
                     columns=["policy", "return_1_to_split", "return_after_split", "landmarks_covered",
                              "collisions"],
                     rows=horizon_rows, notes=[quick] * args.quick + [
                         "team return summed over steps 1-25 and 26-50 of 50-step episodes (env port, float64, "
                         f"mpe2 seeds 1000-{999 + args.episodes}); landmarks covered at step 50; students of "
                         f"distillation seed {args.seeds[0]}; teacher greedy"])
    if extra.get("students"):
        write_result(f"distill_memory_students{suffix}",
                     title="Per student of spread3_hetero: cost of each memory kind (ONNX Runtime, batch 1, 1 thread)",
                     columns=["kind", "agent", "architecture", "flops", "params", "state_bytes", "memory_bytes",
                              "p50_ms", "p99_ms", "budget", "budget_met"],
                     rows=extra["students"], notes=[quick] * args.quick + [
                         "latency per decision with the state fed back (recurrent: h_out -> h_in), 5 000 warm "
                         "calls; parity: torch vs ONNX Runtime over random inputs and >= 10 000 decisions stepped "
                         "through whole mpe2 episodes (kdmarl export)"])
    print(json.dumps({"rows": rows, **extra}, indent=1)[:6000])
    return 0


def summarize(variant: str, team: str, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from the seeds' rows: mean retention and return, each seed's retention, the students."""
    ok = [r for r in per_seed if "error" not in r]
    if not ok:
        return {"variant": variant, "team": team, "error": "; ".join(r["error"] for r in per_seed)}
    retention = [r["retention"] for r in ok]
    row = {"variant": variant, "team": team, "seeds": len(ok),
           "retention": round(statistics.fmean(retention), 4),
           "retention_per_seed": " / ".join(f"{v:.3f}" for v in retention),
           "retention_std": round(statistics.stdev(retention), 4) if len(ok) > 1 else 0.0,
           "student_return": round(statistics.fmean(r["student_return"] for r in ok), 3),
           "teacher_return": ok[0]["teacher_return"], "random_return": ok[0]["random_return"],
           "students": ", ".join(ok[0]["student_labels"]), "student_flops": ok[0]["student_flops"],
           "budgets_met": all(r["budgets_met"] for r in ok),
           "train_minutes": round(statistics.fmean(r["train_minutes"] for r in ok), 2),
           "min_flops_reduction": min(r["min_flops_reduction"] for r in ok)}
    if len(ok) < len(per_seed):
        row["errors"] = [r["error"] for r in per_seed if "error" in r]
    return row


def train_partial_teacher(minutes: float, out: Path, quick: bool) -> Path:
    from kdmarl_teacher.algos.config import default_config_path, load_config  # noqa: PLC0415
    from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415

    overrides = [f"time_limit_minutes={minutes}", *(f"env_params.{k}={v}" for k, v in PARTIAL_PARAMS.items())]
    if quick:
        overrides += ["num_envs=128", "total_steps=96000", "actor_hidden=[64,64]", "critic_hidden=[64,64]",
                      "torch_threads=1"]
    return train(load_config(default_config_path("simple_spread"), overrides), out, progress=sys.stderr.isatty())


if __name__ == "__main__":
    raise SystemExit(main())
