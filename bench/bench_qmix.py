#!/usr/bin/env python3
"""QMIX teacher, value-decomposition distillation and the deployment table (issue 13 §1-3).

On this machine, the same scenario (mpe2 `simple_spread`, N=3, 25 steps) and the same evaluation seeds (mpe2
1000-1199, DESIGN.md §5 team return with 95 % CI):
1. **Teachers at equal wall time**: QMIX (`kdmarl train --algo qmix`, shipped config) and MAPPO (shipped config)
   each trained for `--minutes` (default 10) one after the other; deterministic team return.
   Target: QMIX at -9.0 or better within 10 minutes (peer: JaxMARL's QMIX, -9.53 after 8.7 min measured here).
2. **Distillation from the QMIX teacher** (`spread3_full`: three microcontroller students): the full
   value-decomposition loss and the same without the mixer-distillation term, `--seeds` seeds each, same env
   steps. Target: retention >= 0.95 at >= 20x fewer FLOPs; mixer term on vs off measured across >= 3 seeds.
3. **Deployment table**: per teacher (MAPPO actor, QMIX agent utility network) and its distilled team (the MAPPO
   recipe for the MAPPO teacher, the value-decomposition recipe for QMIX, seed 1), exported to ONNX bundles
   (`kdmarl export`): model bytes, FLOPs, params, p50/p99 latency at batch 1 (ONNX Runtime, one thread, 10 000 warm
   calls), return with CI and retention, an energy-per-inference *estimate* (FLOPs x J/FLOP of a hardware profile;
   no power counter is readable here; the J/FLOP figures and their sources are in `ENERGY` below, or a profile's
   own `joules_per_flop` when it has one) and communication per step (none: every agent acts on its own
   observation; neither the mixer nor the critic is deployed).

    python bench/bench_qmix.py                                     # everything (about 45 min on a busy 2-core box)
    python bench/bench_qmix.py --qmix-teacher runs/q --mappo-teacher runs/m   # reuse trained teachers
    python bench/bench_qmix.py --quick                             # smoke check (~3 min)

Writes bench/results/qmix.json (teachers, distillation, targets) and bench/results/deployment.json
(--quick: qmix_quick.json, deployment_quick.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent

TARGET_QMIX_RETURN = -9.0
JAXMARL_PEER = "JaxMARL QMIX (its MPE config, CPU jax, this machine): -9.53 after 8.7 min at 15 300 env-steps/s"

# Joules per FLOP of one float32 FLOP of a batch-1 dense layer on each hardware profile's core: the core's active
# power over the profile's own sustained FLOP/s (`sustained_flops_per_s`). Estimates from data sheets, not
# measurements; a profile that carries `joules_per_flop` (with its source) overrides them.
ENERGY: dict[str, dict[str, Any]] = {
    "jetson_orin": {"joules_per_flop": 3.75e-10, "source": (
        "one Cortex-A78AE core of a Jetson Orin NX at 2.0 GHz taken as ~1.5 W active (NVIDIA Jetson Orin NX data "
        "sheet: 10-25 W module power modes for 8 cores + GPU; Arm's A78 figure of ~1 W/core at 3 GHz on 5 nm, "
        "derated for Orin's 8 nm) / 4.0 GFLOP/s sustained (the profile) = 0.375 nJ/FLOP")},
    "jetson_nano": {"joules_per_flop": 1.56e-9, "source": (
        "one Cortex-A57 core of a Jetson Nano at 1.43 GHz taken as ~1.25 W active (NVIDIA Jetson Nano data sheet: "
        "5 W / 10 W module modes for 4 cores + GPU) / 0.8 GFLOP/s sustained (the profile) = 1.56 nJ/FLOP")},
    "mcu_cortex_m4": {"joules_per_flop": 3.1e-10, "source": (
        "nRF52840 Cortex-M4F at 64 MHz running from flash with the DC/DC regulator: 52 uA/MHz = 3.3 mA at 3 V, "
        "~10 mW (Nordic nRF52840 product specification, CPU current) / 32 MFLOP/s sustained (the profile) "
        "= 0.31 nJ/FLOP")},
}
PROFILE_ORDER = ("jetson_orin", "jetson_nano", "mcu_cortex_m4")


def energy_per_flop(profile: str) -> tuple[float, str]:
    """(J/FLOP, source) of a hardware profile: its own `joules_per_flop` if it has one, else `ENERGY`."""
    from kdmarl_teacher.distill.profiles import load_hardware  # noqa: PLC0415

    hw = load_hardware(profile)
    if hw.get("joules_per_flop"):
        return float(hw["joules_per_flop"]), str(hw.get("joules_per_flop_source", f"hardware profile {profile}"))
    return ENERGY[profile]["joules_per_flop"], ENERGY[profile]["source"]


def guarded(fn: Any, label: str, **kwargs: Any) -> dict[str, Any]:
    """Run one entry; a failure becomes an error row instead of losing every other result."""
    try:
        return fn(**kwargs)
    except Exception as err:
        traceback.print_exc()
        return {"variant": label, "error": f"{type(err).__name__}: {err}"}


# ---- 1. teachers ---------------------------------------------------------------------------------------------------
def train_teacher(algo: str, minutes: float, out: Path, quick: bool) -> Path:
    from kdmarl_teacher.algos.config import default_config_path, load_config, load_qmix_config  # noqa: PLC0415

    overrides = [f"time_limit_minutes={minutes}", "torch_threads=1"]
    if algo == "qmix":
        from kdmarl_teacher.algos.qmix import train  # noqa: PLC0415

        if quick:
            overrides += ["total_steps=64000", "learning_starts=3200", "eps_anneal_steps=32000", "eval_every=0"]
        cfg = load_qmix_config(default_config_path("simple_spread", "qmix"), overrides)
    else:
        from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415

        if quick:
            overrides += ["num_envs=128", "total_steps=96000", "lr=0.003"]
        cfg = load_config(default_config_path("simple_spread"), overrides)
    if (out / "teacher.pt").is_file():
        print(f"reusing {out / 'teacher.pt'}")
        return out / "teacher.pt"
    return train(cfg, out, progress=sys.stderr.isatty())


def teacher_row(algo: str, path: Path, episodes: int) -> dict[str, Any]:
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.core.resources import module_resources  # noqa: PLC0415
    from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

    teacher = load_teacher(path)
    res = evaluate(teacher, episodes=episodes, seed_start=1000)["results"]
    with (Path(path).parent / "metrics.csv").open() as fh:
        last = list(csv.DictReader(fh))[-1]
    actor = module_resources(teacher.actor)
    row: dict[str, Any] = {
        "variant": f"{algo}_teacher", "algo": algo, "teacher": str(path),
        "minutes": round(float(last["wall_time"]) / 60, 2), "env_steps": int(last["global_step"]),
        "steps_per_s": round(float(last["sps"])),
        "det_return": round(res["deterministic"]["team_return"]["mean"], 3),
        "det_ci95": round(res["deterministic"]["team_return"]["ci95"], 3),
        "random_return": round(res["random"]["team_return"]["mean"], 3),
        "deployed_flops": actor.flops, "deployed_params": actor.params,
    }
    for key, stats in res["deterministic"]["metrics"].items():
        row[f"det_{key}"] = round(stats["mean"], 3)
    return row


# ---- 2. distillation -----------------------------------------------------------------------------------------------
def distill_row(name: str, teacher_path: Path, out: Path, *, steps: int, episodes: int, seed: int,
                overrides: dict[str, Any], reuse: bool) -> dict[str, Any]:
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.core.config import CONFIG_DIR  # noqa: PLC0415
    from kdmarl_teacher.distill.config import load_distill_config  # noqa: PLC0415
    from kdmarl_teacher.distill.loop import distill  # noqa: PLC0415

    run = out / f"{name}_seed{seed}"
    report_path = run / "distill_report.json"
    teacher = load_teacher(teacher_path)
    if reuse and report_path.is_file():
        print(f"reusing {report_path}")
        rep = json.loads(report_path.read_text())
    else:
        default = "distill_qmix.yaml" if teacher.algo == "qmix" else "distill.yaml"
        sets = [f"total_steps={steps}", f"eval_episodes={episodes}", f"seed={seed}", "team=spread3_full",
                *(f"{k}={json.dumps(v)}" for k, v in overrides.items())]
        cfg = load_distill_config(CONFIG_DIR / default, sets)
        rep = distill(cfg, teacher, run, teacher_path=teacher_path, progress=sys.stderr.isatty())
    return {"variant": name, "seed": seed, "run": str(run), "teacher_algo": teacher.algo,
            "retention": round(rep["retention"], 4),
            "student_return": round(rep["students_eval"]["team_return"], 3),
            "student_ci95": round(rep["students_eval"]["ci95"], 3),
            "teacher_return": round(rep["teacher_eval"]["team_return"], 3),
            "random_return": round(rep["random_eval"]["team_return"], 3),
            "min_flops_reduction": round(rep["min_flops_reduction"], 2),
            "student_labels": [a["student"] for a in rep["agents"]], "terms": rep["terms"],
            "env_steps": rep["global_step"], "train_minutes": round(rep["wall_time_s"] / 60, 2),
            "student_landmarks_covered": round(rep["students_eval"].get("landmarks_covered", float("nan")), 3),
            "student_collisions": round(rep["students_eval"].get("collisions", float("nan")), 3)}


def paired_summary(on: list[dict[str, Any]], off: list[dict[str, Any]]) -> dict[str, Any]:
    """Mixer term on vs off, seed by seed: mean and sample std of each, and of the paired differences."""
    by_seed = {r["seed"]: r for r in off if "error" not in r}
    pairs = [(r["retention"], by_seed[r["seed"]]["retention"]) for r in on
             if "error" not in r and r["seed"] in by_seed]
    if not pairs:
        return {"pairs": 0}
    diffs = [a - b for a, b in pairs]

    def ms(xs: list[float]) -> tuple[float, float]:
        return round(statistics.mean(xs), 4), round(statistics.stdev(xs), 4) if len(xs) > 1 else 0.0

    (m_on, s_on), (m_off, s_off), (m_d, s_d) = ms([a for a, _ in pairs]), ms([b for _, b in pairs]), ms(diffs)
    return {"pairs": len(pairs), "retention_on_mean": m_on, "retention_on_std": s_on, "retention_off_mean": m_off,
            "retention_off_std": s_off, "diff_mean": m_d, "diff_std": s_d,
            "on_better_in": sum(d > 0 for d in diffs)}


# ---- 3. deployment -------------------------------------------------------------------------------------------------
def export(run: Path, teacher_path: Path, bundle: Path, quick: bool) -> dict[str, Any]:
    from kdmarl_teacher.cli import main as kdmarl  # noqa: PLC0415

    if not (bundle / "manifest.json").is_file():
        args = ["export", str(run), "--out", str(bundle), "--teacher", str(teacher_path), "--force",
                "--eval-episodes", "0"]
        if quick:
            args += ["--parity-random", "500", "--parity-recorded", "100", "--latency-calls", "50", "--legacy-exporter"]
        if kdmarl(args) != 0:
            raise RuntimeError(f"kdmarl export {run} failed")
    return json.loads((bundle / "manifest.json").read_text())


def deployment_rows(label: str, teacher_row_: dict[str, Any], distill_row_: dict[str, Any], manifest: dict, *,
                    bundle: Path, calls: int) -> list[dict[str, Any]]:
    """Two rows (the teacher's deployed network, its distilled team) of the deployment table."""
    from kdmarl_teacher.export.bundle import measure_latency  # noqa: PLC0415

    energies = {p: energy_per_flop(p) for p in PROFILE_ORDER}
    teacher = manifest["teacher"]
    t_path = bundle / teacher["file"]
    t_lat = measure_latency(t_path, teacher["input_dim"], calls)
    agents = manifest["agents"]
    a_lat = [measure_latency(bundle / a["model"]["file"], a["observation"]["input_dim"], calls) for a in agents]
    t_flops = teacher["resources"]["flops_per_decision"]
    s_flops = max(a["resources"]["flops_per_decision"] for a in agents)
    rows = []
    for what, flops, params, size, lat, ret, ci, retention, profiles in (
        (f"{label} teacher ({'agent utility network' if label == 'QMIX' else 'actor'}, shared, one copy per agent)",
         t_flops, teacher["resources"]["params"], t_path.stat().st_size, t_lat, teacher_row_["det_return"],
         teacher_row_["det_ci95"], 1.0, ["jetson_orin"]),
        (f"{label} students ({', '.join(sorted({a['model']['architecture'] for a in agents}))})", s_flops,
         max(a["resources"]["params"] for a in agents), max(a["model"]["bytes"] for a in agents),
         max(a_lat, key=lambda x: x["p50_ms"]), distill_row_["student_return"], distill_row_["student_ci95"],
         distill_row_["retention"], sorted({a["budget"]["profile"] for a in agents if a.get("budget")})),
    ):
        row = {"model": what, "onnx_bytes_per_agent": size, "flops_per_decision": flops, "params": params,
               "latency_p50_ms": lat["p50_ms"], "latency_p99_ms": lat["p99_ms"], "team_return": ret,
               "team_return_ci95": ci, "retention": retention, "communication_per_step": "none",
               "hardware_profiles": profiles}
        for p, (jpf, _) in energies.items():
            row[f"energy_uJ_{p}"] = round(flops * jpf * 1e6, 5)  # an estimate: FLOPs x J/FLOP, microjoules
        rows.append(row)
    rows[1]["flops_reduction"] = round(t_flops / s_flops, 2)
    rows[1]["latency_ratio_p50"] = round(rows[1]["latency_p50_ms"] / rows[0]["latency_p50_ms"], 3)
    return rows


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--qmix-teacher", help="QMIX teacher run dir (default: train one for --minutes)")
    parser.add_argument("--mappo-teacher", help="MAPPO teacher run dir (default: train one for --minutes)")
    parser.add_argument("--minutes", type=float, default=10.0, help="wall time per teacher trained here")
    parser.add_argument("--steps", type=int, default=1_500_000, help="env steps per distillation")
    parser.add_argument("--seeds", type=int, default=3, help="distillation seeds for mixer on / off")
    parser.add_argument("--episodes", type=int, default=200, help="evaluation episodes (mpe2 seeds from 1000)")
    parser.add_argument("--latency-calls", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=2, help="distillations run in parallel (processes)")
    parser.add_argument("--quick", action="store_true", help="smoke check: tiny teachers and budgets")
    parser.add_argument("--keep", help="keep run directories under this path (default: temporary)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: read finished runs instead of rerunning")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.steps, args.episodes, args.seeds, args.latency_calls = 1.0, 32 * 25 * 8, 20, 2, 200
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_qmix_"))
    root.mkdir(parents=True, exist_ok=True)
    t_bench = time.time()
    teachers: dict[str, dict[str, Any]] = {}
    distill_rows: list[dict[str, Any]] = []
    deploy: list[dict[str, Any]] = []
    common: dict[str, Any] = {"num_envs": 32} if args.quick else {}
    try:
        paths = {}
        for algo, given in (("qmix", args.qmix_teacher), ("mappo", args.mappo_teacher)):
            paths[algo] = (Path(given) / "teacher.pt" if given and Path(given).is_dir() else Path(given)) if given \
                else train_teacher(algo, args.minutes, root / f"teacher_{algo}", args.quick)
            teachers[algo] = guarded(teacher_row, f"{algo}_teacher", algo=algo, path=paths[algo],
                                     episodes=args.episodes)
        jobs = [("mappo_full", paths["mappo"], 1, common)]
        for seed in range(1, args.seeds + 1):
            jobs += [("qmix_full", paths["qmix"], seed, common),
                     ("qmix_no_mixer", paths["qmix"], seed, {**common, "use_mixer": False})]
        # distillations in --jobs processes (the teachers above were trained alone: their wall time is the target)
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(guarded, distill_row, name, name=name, teacher_path=tp, out=root, steps=args.steps,
                                   episodes=args.episodes, seed=seed, overrides=ov, reuse=args.reuse)
                       for name, tp, seed, ov in jobs]
            results = [f.result() for f in futures]
        mappo_students = results[0]
        on = [r for (name, *_), r in zip(jobs, results, strict=True) if name == "qmix_full"]
        off = [r for (name, *_), r in zip(jobs, results, strict=True) if name == "qmix_no_mixer"]
        distill_rows += [*on, *off, mappo_students]
        for label, algo, students in (("MAPPO", "mappo", mappo_students), ("QMIX", "qmix", on[0])):
            if "error" in students or "error" in teachers[algo]:
                continue
            manifest = export(Path(students["run"]), paths[algo], root / f"bundle_{algo}", args.quick)
            deploy += deployment_rows(label, teachers[algo], students, manifest, bundle=root / f"bundle_{algo}",
                                      calls=args.latency_calls)
        mixer = paired_summary(on, off)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    q = teachers.get("qmix", {})
    targets = []
    if "det_return" in q:
        targets.append({"what": "QMIX teacher on simple_spread, deterministic team return (200 mpe2 seeds)",
                        "target": f"-9.0 or better (>= {TARGET_QMIX_RETURN}) within 10 min on 2 cores (peer: "
                                  f"{JAXMARL_PEER})",
                        "reached": f"{q['det_return']} ± {q['det_ci95']} in {q['minutes']} min, {q['env_steps']} "
                                   f"env steps at {q['steps_per_s']} env-steps/s",
                        "met": bool(q["det_return"] >= TARGET_QMIX_RETURN and q["minutes"] <= 10.0)})
    good = [r for r in distill_rows if r.get("variant") == "qmix_full" and "error" not in r]
    if good:
        best = good[0]
        targets.append({"what": "students from the QMIX teacher (spread3_full, seed 1): retention at FLOPs reduction",
                        "target": "retention >= 0.95 at >= 20x", "reached":
                            f"{best['retention']} at {best['min_flops_reduction']}x "
                            f"(seeds: {[r['retention'] for r in good]})",
                        "met": bool(best["retention"] >= 0.95 and best["min_flops_reduction"] >= 20)})
    if mixer.get("pairs"):
        targets.append({"what": f"mixer-distillation term on vs off, {mixer['pairs']} seeds (paired)",
                        "target": "measurably better, or the measurement that shows it is not",
                        "reached": f"on {mixer['retention_on_mean']} ± {mixer['retention_on_std']} vs off "
                                   f"{mixer['retention_off_mean']} ± {mixer['retention_off_std']} (paired difference "
                                   f"{mixer['diff_mean']} ± {mixer['diff_std']} sd; on better in "
                                   f"{mixer['on_better_in']} of {mixer['pairs']})",
                        "met": bool(mixer["diff_mean"] > 0 and mixer["diff_mean"] > mixer["diff_std"])})
    notes = ["team return = per episode, mean over agents of each agent's summed reward (DESIGN.md §5); greedy "
             "policies, uniform random baseline on the same mpe2 seeds 1000-1199",
             "teachers trained one after the other on the same machine, torch_threads 1 (it is shared: throughput "
             "figures move with the load, compare ratios within this run)",
             "retention = (R_student - R_random) / (R_teacher - R_random); FLOPs = 2 x MACs of the Linear layers at "
             "batch 1",
             f"bench wall time {round((time.time() - t_bench) / 60, 1)} min"]
    if args.quick:
        notes.insert(0, "QUICK smoke run: tiny teachers and budgets; figures are not the benchmark")
    suffix = "_quick" if args.quick else ""
    write_result(f"qmix{suffix}", title="QMIX teacher vs MAPPO at equal wall time; value-decomposition distillation",
                 columns=["variant", "seed", "det_return", "det_ci95", "minutes", "env_steps", "steps_per_s",
                          "retention", "student_return", "student_ci95", "min_flops_reduction"],
                 rows=[*teachers.values(), *distill_rows], targets=targets, notes=notes, extra={"mixer_term": mixer})
    energy_notes = [f"{p}: {energy_per_flop(p)[1]}" for p in PROFILE_ORDER]
    write_result(f"deployment{suffix}",
                 title="Deployment table: each teacher and its distilled team (ONNX, this machine)",
                 columns=["model", "onnx_bytes_per_agent", "flops_per_decision", "params", "latency_p50_ms",
                          "latency_p99_ms", "team_return", "team_return_ci95", "retention",
                          *(f"energy_uJ_{p}" for p in PROFILE_ORDER), "communication_per_step"],
                 rows=deploy,
                 notes=["latency: ONNX Runtime CPUExecutionProvider, batch 1, one thread, "
                        f"{args.latency_calls} warm calls, this machine (shared, see machine); the students' row "
                        "gives the slowest agent",
                        "energy per inference is an ESTIMATE: FLOPs x joules per FLOP of the hardware profile (no "
                        "power counter is readable here); sources:", *energy_notes,
                        "communication per step: none for all four; each agent acts on its own observation (the "
                        "QMIX mixer and the MAPPO critic are training-only)",
                        "the students were sized for mcu_cortex_m4 (spread3_full); the teachers' natural target is "
                        "jetson_orin"],
                 extra={"energy_sources": {p: energy_per_flop(p)[1] for p in PROFILE_ORDER}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
