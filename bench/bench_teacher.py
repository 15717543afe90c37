"""Teacher benchmark (issue 3 §3): MAPPO training throughput and the return reached in a wall-time budget.

Trains the shipped `simple_spread` config for `--minutes` of wall time (default 10, the issue's budget) on this
machine, then evaluates the DETERMINISTIC teacher on mpe2 seeds 1000-1199 (DESIGN.md §5 team return, 95 % CI)
next to the uniformly random baseline on the same seeds. Throughput is env-steps/s including the PPO updates
(cumulative over the run, from metrics.csv). Optionally also trains `simple_speaker_listener`.

    python bench/bench_teacher.py                      # 10-minute simple_spread run (the target)
    python bench/bench_teacher.py --minutes 1          # throughput only (the return is not a target then)
    python bench/bench_teacher.py --speaker-listener 5 # also 5 minutes of speaker-listener

Run on a quiet machine: throughput is CPU-bound, and with `torch_threads: 2` a second busy process on a 2-core
machine costs far more than half (intra-op threads wait for each other). Writes bench/results/teacher.json.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent

TARGET_RETURN = -8.05  # DESIGN.md §5: damping-aware global-state velocity controller
TARGET_SPS = 20_000


def train_and_evaluate(scenario: str, minutes: float, out: Path, overrides: list[str]) -> dict[str, Any]:
    from kdmarl_teacher.algos.config import default_config_path, load_config  # noqa: PLC0415
    from kdmarl_teacher.algos.mappo import train  # noqa: PLC0415
    from kdmarl_teacher.algos.teacher import load_teacher  # noqa: PLC0415
    from kdmarl_teacher.evaluation.evaluate import evaluate  # noqa: PLC0415

    cfg = load_config(default_config_path(scenario), [f"time_limit_minutes={minutes}", *overrides])
    train(cfg, out, progress=sys.stderr.isatty())
    with (out / "metrics.csv").open() as fh:
        last = list(csv.DictReader(fh))[-1]
    report = evaluate(load_teacher(out), episodes=200, seed_start=1000)
    res = report["results"]
    row: dict[str, Any] = {
        "scenario": scenario,
        "minutes": round(float(last["wall_time"]) / 60, 2),
        "env_steps": int(last["global_step"]),
        "steps_per_s": round(float(last["sps"])),
        "det_return": round(res["deterministic"]["team_return"]["mean"], 3),
        "det_ci95": round(res["deterministic"]["team_return"]["ci95"], 3),
        "stoch_return": round(res["stochastic"]["team_return"]["mean"], 3),
        "random_return": round(res["random"]["team_return"]["mean"], 3),
        "config": {k: v for k, v in cfg.to_dict().items() if k in (
            "num_envs", "num_steps", "actor_hidden", "critic_hidden", "lr", "update_epochs", "num_minibatches",
            "torch_threads", "seed")},
    }
    for key, stats in res["deterministic"]["metrics"].items():
        row[f"det_{key}"] = round(stats["mean"], 3)
    return row


def main() -> int:
    from benchlib import write_result  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-time budget for simple_spread")
    parser.add_argument("--speaker-listener", type=float, default=0.0, metavar="MIN",
                        help="also train simple_speaker_listener for MIN minutes")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--keep", help="keep the run directories under this path (default: temporary)")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_teacher_"))
    rows = []
    try:
        rows.append(train_and_evaluate("simple_spread", args.minutes, root / "spread", args.overrides))
        if args.speaker_listener > 0:
            rows.append(train_and_evaluate("simple_speaker_listener", args.speaker_listener, root / "sl",
                                           args.overrides))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    spread = rows[0]
    targets = [
        {"what": "simple_spread deterministic team return (200 mpe2 seeds)", "target": f"> {TARGET_RETURN}",
         "reached": f"{spread['det_return']} ± {spread['det_ci95']} in {spread['minutes']} min",
         "met": bool(spread["det_return"] > TARGET_RETURN and args.minutes <= 10.0)},
        {"what": "training throughput incl. updates", "target": f">= {TARGET_SPS} env-steps/s",
         "reached": f"{spread['steps_per_s']} env-steps/s", "met": bool(spread["steps_per_s"] >= TARGET_SPS)},
    ]
    write_result(
        "teacher",
        title="MAPPO teacher: return within a wall-time budget, training throughput",
        columns=["scenario", "minutes", "env_steps", "steps_per_s", "det_return", "det_ci95", "stoch_return",
                 "random_return"],
        rows=rows,
        targets=targets,
        notes=["team return = per episode, mean over agents of each agent's summed reward (DESIGN.md §5)",
               "references on the same scale: random -26.9, velocity controller -8.05, planner -7.05"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
