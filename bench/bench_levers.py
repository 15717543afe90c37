#!/usr/bin/env python3
"""Teacher levers at equal env steps (issue 26 §2-3): each lever is the shipped config plus a few `--set`s, trained
for the same number of env steps, so its effect on learning is read off env steps (deterministic: the same on any
machine) and its effect on speed off env-steps/s (moves with the machine's load: compare within one run).

- `qmix_spread`: `config/qmix_simple_spread.yaml` for --steps env steps (default 1.5 M; lr annealing, when a lever
  turns it on, runs over those steps). Learning figure: the in-training greedy return (64 fixed mpe2 seeds, every
  20 iterations) averaged over the evaluations in the last quarter of the steps, and in the quarter before.
- `smax_3m`, `smax_2s3z`, `smax_5m_vs_6m`: the map's shipped config (`config/mappo_smax.yaml`, 5m_vs_6m its own;
  the 10 M-step lr horizon unchanged) stopped after --steps env steps (default 3 M on 3m and 5m_vs_6m, 1.2 M on
  2s3z). Learning figures: the training win rate (battles finished in an iteration) at equal env steps
  (win_at_*), the env steps at which it first reached 0.5 / 0.8 / 0.9, and its mean over the last 10 iterations.

    python bench/bench_levers.py qmix_spread --keep runs/levers_qmix        # about 35 min quiet (12 runs)
    python bench/bench_levers.py smax_3m --keep runs/levers_smax_3m         # about 45 min quiet (gru ~25)
    python bench/bench_levers.py smax_2s3z --keep runs/levers_smax_2s3z     # about 22 min quiet (4 runs)
    python bench/bench_levers.py smax_5m_vs_6m --keep runs/levers_smax_5m   # about 25 min quiet (2 runs)

With --keep, a lever whose run already reached the steps is read, not rerun. Writes
bench/results/levers_<task>.json.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Any

NO_LN = ["input_norm=false", "layer_norm=false"]  # config/mappo_smax*.yaml before 2026-12-07
BEFORE_26 = ["anneal_lr=false", "td_lambda=0.6"]  # config/qmix_simple_spread.yaml before issue 26 (and a 5 M cap)
LEVERS: dict[str, dict[str, list[str]]] = {
    # "before+X": X on the config before issue 26 (constant lr, TD(0.6)), which is how the shipped changes were
    # chosen; the others are on top of the shipped config
    "qmix_spread": {
        "shipped": [],
        "before_issue26": BEFORE_26,
        "before+anneal_lr": ["td_lambda=0.6"],
        "before+td_lambda0.8": ["anneal_lr=false"],
        "before+eps200k": [*BEFORE_26, "eps_anneal_steps=200000"],
        "before+envs128": [*BEFORE_26, "num_envs=128", "updates_per_iteration=16"],  # same gradient steps per env step
        "td_lambda0.9": ["td_lambda=0.9"],
        "eps200k": ["eps_anneal_steps=200000"],
        "envs128": ["num_envs=128", "updates_per_iteration=16"],
        "polyak": ["target_tau=0.005"],
        "gru": ["use_gru=true"],
        "threads2": ["torch_threads=2"],  # the peer's jax uses both cores; only meaningful on a quiet machine
    },
    # SMAX: the shipped config has LayerNorm since 2026-12-07; the levers measured before that ran on the config
    # without it, so they are "before+X" (as qmix's before issue 26) and "before_layernorm" is that config alone.
    # gru: the peer's recurrent actor (and critic); envs32: half the samples per update again (128 -> 64 envs
    # halved the env steps to 0.9 on 3m, docs/teachers.md); envs16: again; envs32_ent: envs32 with an entropy
    # bonus; ent: the bonus alone (on 5m_vs_6m it kept the policy from collapsing); epochs8: twice the epochs
    "smax_3m": {"shipped": [], "before_layernorm": NO_LN, "before+gru": [*NO_LN, "use_gru=true"],
                "before+envs32": [*NO_LN, "num_envs=32"], "before+envs16": [*NO_LN, "num_envs=16"],
                "before+envs32_ent": [*NO_LN, "num_envs=32", "ent_coef=0.01"],
                "before+ent": [*NO_LN, "ent_coef=0.01"], "before+epochs8": [*NO_LN, "update_epochs=8"]},
    "smax_2s3z": {"shipped": [], "before_layernorm": NO_LN, "before+gru": [*NO_LN, "use_gru=true"],
                  "before+envs32": [*NO_LN, "num_envs=32"]},
    "smax_5m_vs_6m": {"shipped": [], "before_layernorm": NO_LN},  # its own config (the entropy bonus)
}
DEFAULT_STEPS = {"qmix_spread": 1_500_000, "smax_3m": 3_000_000, "smax_2s3z": 1_200_000,  # 3m: 0.9 at ~2.8 M
                 "smax_5m_vs_6m": 3_000_000}
WIN_LEVELS = (0.5, 0.8, 0.9)
WIN_AT = (131_072, 262_144, 393_216, 655_360, 1_048_576)
PEER_UPDATE_STEPS = 128 * 128  # JaxMARL's MAPPO SMAX update: 128 envs x 128 steps


def read_rows(run: Path) -> list[dict[str, str]]:
    path = run / "metrics.csv"
    if not path.is_file():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


def train_lever(task: str, sets: list[str], run: Path, steps: int) -> None:
    """Train one lever unless its run already reached `steps`."""
    rows = read_rows(run)
    if rows and int(rows[-1]["global_step"]) >= steps - 25_000:
        print(f"reusing {run}", flush=True)
        return
    if task == "qmix_spread":
        from kdmarl_teacher.algos.config import default_config_path, load_qmix_config  # noqa: PLC0415
        from kdmarl_teacher.algos.qmix import train  # noqa: PLC0415

        sets = [f"total_steps={steps}", "time_limit_minutes=0", *sets]  # equal steps, not equal time
        train(load_qmix_config(default_config_path("simple_spread", "qmix"), sets), run, progress=False)
        return
    from kdmarl_teacher.algos.config import default_config_path, load_config  # noqa: PLC0415
    from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415

    scenario = "smax:" + task.removeprefix("smax_")
    cfg = load_config(default_config_path(scenario), [f"scenario={scenario}", *sets])
    train(cfg, run, progress=False, stop_after_iterations=max(1, steps // (cfg.num_envs * cfg.num_steps)))


def summarise(task: str, name: str, sets: list[str], run: Path, steps: int) -> dict[str, Any]:
    rows = read_rows(run)
    if not rows:
        raise FileNotFoundError(f"{run / 'metrics.csv'}: no training rows (not trained yet: run without --no-train)")
    rows = [r for r in rows if int(r["global_step"]) <= steps] or rows[:1]  # equal steps: a longer run is cut
    last = rows[-1]
    half = rows[len(rows) // 2:]
    row: dict[str, Any] = {"lever": name, "sets": " ".join(sets) or "(shipped config)",
                           "env_steps": int(last["global_step"]), "minutes": round(float(last["wall_time"]) / 60, 2),
                           "median_sps_iter": round(statistics.median(float(r["sps_iter"]) for r in half))}
    if task == "qmix_spread":
        greedy = [(int(r["global_step"]), float(r["greedy_return"])) for r in rows
                  if r.get("greedy_return") not in ("", "nan", None)]

        def window(a: float, b: float) -> float | None:
            vals = [v for s, v in greedy if a * steps < s <= b * steps]
            return round(statistics.mean(vals), 3) if vals else None

        row["greedy_q3"] = window(0.5, 0.75)
        row["greedy_q4"] = window(0.75, 1.0)
        return row
    won = [(int(r["global_step"]), float(r["task/won"])) for r in rows if r.get("task/won") not in ("", "nan", None)]
    for at in WIN_AT:  # equal-steps columns: mean training win rate of the iterations within 32 k steps of `at`
        near = [w for st, w in won if abs(st - at) <= 32_768]
        row[f"win_at_{at // 1024}k"] = round(statistics.mean(near), 3) if near and won[-1][0] >= at else None
    from kdmarl_teacher.reports.peers import read_ours  # noqa: PLC0415

    # read as bench_peers reads our curve: over trailing iterations worth one peer update, so that a lever with
    # fewer envs per iteration does not reach a level early by the noise of fewer battles per reading
    curve = read_ours(run / "metrics.csv", "task/won", name, "training win rate", window_steps=PEER_UPDATE_STEPS)
    for level in WIN_LEVELS:
        row[f"steps_to_{level:g}"] = next((s for s, w in zip(curve.env_steps, curve.value, strict=True)
                                           if s <= steps and w >= level), None)
    row["win_last10"] = round(statistics.mean(w for _, w in won[-10:]), 3) if won else None
    return row


def main() -> int:
    from benchlib import add_note_argument, write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=sorted(LEVERS))
    parser.add_argument("--steps", type=int, help="env steps per lever (default: the task's)")
    parser.add_argument("--only", nargs="+", help="these levers only (names of LEVERS[task])")
    parser.add_argument("--no-train", action="store_true",
                        help="only summarise the runs under --keep as far as they got (e.g. stopped early)")
    add_note_argument(parser)
    parser.add_argument("--keep", required=True, help="run directories (reused when they reached the steps)")
    args = parser.parse_args()
    steps = args.steps or DEFAULT_STEPS[args.task]
    levers = {k: v for k, v in LEVERS[args.task].items() if not args.only or k in args.only}
    t0 = time.time()
    rows = []
    for name, sets in levers.items():
        run = Path(args.keep) / name
        try:
            if not args.no_train:
                train_lever(args.task, sets, run, steps)
            rows.append(summarise(args.task, name, sets, run, steps))
        except Exception as err:  # one failed lever is an error row, not a lost table
            rows.append({"lever": name, "sets": " ".join(sets), "error": f"{type(err).__name__}: {err}"})
        print(rows[-1], flush=True)
    base = next((r for r in rows if r["lever"] == "shipped" and "error" not in r), None)
    qmix = args.task == "qmix_spread"
    key = "greedy_q4" if qmix else "win_last10"
    for r in rows:
        if base and "error" not in r and r.get(key) is not None and base.get(key) is not None:
            if qmix:  # SMAX levers are compared at equal steps in the win_at_* columns
                r[f"{key}_vs_shipped"] = round(r[key] - base[key], 3)
            r["sps_vs_shipped"] = round(r["median_sps_iter"] / base["median_sps_iter"], 2)
    cols = ["lever", "sets", "env_steps", "minutes", "median_sps_iter", "sps_vs_shipped"]
    cols += (["greedy_q3", "greedy_q4", "greedy_q4_vs_shipped"] if qmix else
             [*(f"win_at_{at // 1024}k" for at in WIN_AT), *(f"steps_to_{lv:g}" for lv in WIN_LEVELS), "win_last10"])
    trained = (f"summarised (--no-train) from the runs under --keep as far as each got (env_steps), cut at {steps}"
               if args.no_train else f"every lever trained for {steps} env steps")
    notes = [f"{trained}, seed 1; learning figures are deterministic given the config, speed figures move with the "
             "machine's load (compare sps_vs_shipped within one run)",
             ("greedy_q3 / greedy_q4: mean in-training greedy team return (64 fixed mpe2 seeds) over the evaluations "
              "in the third / last quarter of the steps; one training seed, so differences under ~0.5 are noise"
              if qmix else f"steps_to_X: env steps at which the training win rate over the trailing iterations worth "
              f"{PEER_UPDATE_STEPS} env steps (one peer update, episode-weighted, as bench_peers reads ours) first "
              "reached X; "
              "win_last10: mean training win rate of the last 10 iterations; one training seed"),
             *([] if args.no_train else [f"bench wall time {round((time.time() - t0) / 60, 1)} min"]), *args.note]
    write_result(f"levers_{args.task}", title=f"Teacher levers at equal env steps: {args.task}", columns=cols,
                 rows=rows, notes=notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
