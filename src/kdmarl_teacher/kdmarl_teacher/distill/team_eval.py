"""Greedy evaluation of a distilled team: teacher, students and uniform random on the same seeds, the figures of
distill_report.json (both recipes)."""

from __future__ import annotations

from typing import Any

import torch
from kdmarl_student.stats import mean_ci

from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.episodes import make_eval_env, run_episodes


def run_student_episodes(env: Any, students: Any, seeds: list[int], generator: torch.Generator) -> dict[str, Any]:
    """`run_episodes` for a student team: its memory is reset for the episodes about to start."""
    students.begin(len(seeds))
    return run_episodes(env, students.act, seeds, None, generator)


@torch.no_grad()
def evaluate_students(teacher: Teacher, students: Any, *, episodes: int, seed: int, device: str = "cpu"
                      ) -> dict[str, dict[str, Any]]:
    """Greedy teacher, greedy students (distill's ``StudentTeam``: ``begin(E)`` starts the episodes, resetting
    students with memory, and ``act`` steps them) and uniform random on the same mpe2 seeds
    [seed, seed + episodes): distill_report.json's figures.

    Same environment (`make_eval_env`) and the same teacher/random episodes as `evaluate` (`run_episodes`), so the
    figures agree with `kdmarl evaluate`. Team return = mean over agents of each agent's episode sum (DESIGN.md
    §5), with a 95 % CI.
    """
    env = make_eval_env(teacher, episodes, device)
    seeds = list(range(seed, seed + episodes))
    gen = torch.Generator(device=device).manual_seed(seed)
    runs = {"teacher": run_episodes(env, "deterministic", seeds, teacher, gen),
            "random": run_episodes(env, "random", seeds, None, gen),
            "students": run_student_episodes(env, students, seeds, gen)}
    out = {}
    for name, r in runs.items():
        stats = mean_ci(r["team"].cpu())
        out[name] = {"team_return": stats["mean"], "ci95": stats["ci95"], "episodes": episodes,
                     "seeds": [seed, seed + episodes - 1],
                     **{k: float(v.mean()) for k, v in r["metrics"].items()}}
        if "won" in r["metrics"]:  # SMAX: the win rate with its 95 % interval, as `evaluate` reports it
            wins = mean_ci(r["metrics"]["won"].cpu())
            out[name].update(win_rate=wins["mean"], win_rate_ci95=wins["ci95"])
    return out
