"""The measured part of a collaboration profile (issue 25): the team's results and its envelope.

Both are measured from a bundle alone with :func:`kdmarl_student.bundle_eval.evaluate_bundle` (real mpe2 or
SMAX, ONNX Runtime, one thread, greedy actions), so the exporter, ``kdmarl envelope``, ``kdmarl compose`` and a
robot-side tool write the same figures:

- :func:`measure_team` -> the manifest's ``team`` block: teacher actor, students and uniformly random actions on
  the same seeds, retention (DESIGN.md §5) with a 95 % interval, and the ``protocol`` that produced them;
- :func:`measure_envelope` -> the manifest's ``envelope`` block: team return and retention of the students and of
  the teacher actor under each perturbation of :func:`kdmarl_student.perturbation.default_grid`, bounded in time.

Retention under a perturbation is (R_actor,perturbed - R_random) / (R_teacher,unperturbed - R_random), all on
the same seeds: the unperturbed student's value is the team block's retention, and the teacher's line shows
what the perturbation costs the uncompressed policy. The interval of a retention is a paired bootstrap over
episodes (the three returns of one seed are resampled together), percentile method.

numpy + onnxruntime + mpe2 (scipy through ``stats``); never torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kdmarl_student.bundle_eval import BundleEvaluation, evaluate_bundle, retention
from kdmarl_student.perturbation import Perturbation, default_grid

BOOTSTRAP_RESAMPLES = 2000
RUNTIME = "ONNX Runtime CPUExecutionProvider, 1 intra-op thread, batch 1, greedy actions"
SEEDING = ("mpe2 env.reset(seed=s) per episode (SMAX: SmaxBattle.reset(s)); random actions from "
           "numpy.random.default_rng(s)")
TEAM_RETURN = "per episode, mean over agents of each agent's summed reward; 95 % Student t interval over episodes"
RETENTION = "(R_student - R_random) / (R_teacher - R_random) on the same seeds (DESIGN.md §5)"
RETENTION_INTERVAL = (f"95 % paired bootstrap over episodes (the three returns of a seed resampled together), "
                      f"percentile method, {BOOTSTRAP_RESAMPLES} resamples, numpy default_rng(0)")
ENVELOPE_RETENTION = ("(R_actor,perturbed - R_random) / (R_teacher,unperturbed - R_random) on the same seeds; the "
                      "random baseline is never perturbed")
DEFAULT_ENVELOPE_EPISODES = 50
DEFAULT_ENVELOPE_SECONDS = 120.0


def return_stat(result: BundleEvaluation) -> dict[str, Any]:
    """A ``return_stat`` of the manifest (mean, ci95, episodes, task metrics), rounded to 6 digits."""
    summary = result.summary()
    return {"mean": round(summary["mean"], 6), "ci95": round(summary["ci95"], 6), "episodes": summary["episodes"],
            "metrics": {k: round(v, 6) for k, v in summary["metrics"].items()}}


def retention_interval(student: np.ndarray, teacher: np.ndarray, random: np.ndarray,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> list[float] | None:
    """95 % paired-bootstrap percentile interval of retention from per-episode team returns on the same seeds;
    None below two episodes or when a resample's teacher/random gap degenerates."""
    s, t, r = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (student, teacher, random))
    n = s.size
    if n < 2 or t.size != n or r.size != n:
        return None
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    rs, ts, rr = s[idx].mean(axis=1), t[idx].mean(axis=1), r[idx].mean(axis=1)
    gap = ts - rr
    if np.any(np.abs(gap) < 1e-12):
        return None
    values = (rs - rr) / gap
    low, high = np.percentile(values, [2.5, 97.5])
    return [round(float(low), 6), round(float(high), 6)]


def protocol(seeds: Sequence[int], what: str) -> dict[str, Any]:
    return {"what": what, "episodes": len(seeds), "seeds": [int(seeds[0]), int(seeds[-1])] if seeds else [],
            "seeding": SEEDING, "runtime": RUNTIME, "team_return": TEAM_RETURN, "retention": RETENTION,
            "retention_interval": RETENTION_INTERVAL}


def measure_team(bundle: str | Path, seeds: Sequence[int], *, has_teacher: bool = True) -> dict[str, Any]:
    """The manifest's ``team`` block measured from the bundle on ``seeds`` (one episode each)."""
    seeds = [int(s) for s in seeds]
    student = evaluate_bundle(bundle, seeds, actor="student")
    rand = evaluate_bundle(bundle, seeds, actor="random")
    team: dict[str, Any] = {"eval_seeds": seeds, "teacher_return": None, "student_return": return_stat(student),
                            "random_return": return_stat(rand), "retention": None, "retention_ci95": None,
                            "protocol": protocol(seeds, "teacher actor, students and random from the bundle alone")}
    if has_teacher:
        teacher = evaluate_bundle(bundle, seeds, actor="teacher")
        team["teacher_return"] = return_stat(teacher)
        # from the written (rounded) means, so a reader recomputes it exactly from the manifest
        team["retention"] = retention(team["student_return"]["mean"], team["teacher_return"]["mean"],
                                      team["random_return"]["mean"])
        team["retention_ci95"] = retention_interval(student.returns, teacher.returns, rand.returns)
    return team


def measure_envelope(bundle: str | Path, seeds: Sequence[int], *, grid: Sequence[Perturbation] | None = None,
                     time_budget_s: float = DEFAULT_ENVELOPE_SECONDS, has_teacher: bool = True,
                     max_cycles: int = 25) -> dict[str, Any]:
    """The manifest's ``envelope`` block: each cell of ``grid`` (default :func:`default_grid`) for the students
    and the teacher actor, until ``time_budget_s`` is spent (the cells measured so far are kept and
    ``complete`` says whether the grid was finished)."""
    seeds = [int(s) for s in seeds]
    grid = list(grid if grid is not None else default_grid(max_cycles))
    start = time.perf_counter()
    rand = evaluate_bundle(bundle, seeds, actor="random")
    rand_mean = return_stat(rand)["mean"]
    actors = ("teacher", "student") if has_teacher else ("student",)  # the teacher first: its baseline is the reference
    base: dict[str, BundleEvaluation] = {}
    cells = []
    complete = True
    for cell in grid:
        if cells and time.perf_counter() - start > time_budget_s:
            complete = False
            break
        entry: dict[str, Any] = {"perturbation": cell.describe()}
        for actor in actors:
            ev = evaluate_bundle(bundle, seeds, actor=actor, perturbation=cell)
            if cell.kind == "none":
                base[actor] = ev
            entry[f"{actor}_return"] = return_stat(ev)
            teacher0 = base.get("teacher")
            entry[f"{actor}_retention"] = (None if teacher0 is None else retention(
                entry[f"{actor}_return"]["mean"], return_stat(teacher0)["mean"], rand_mean))  # the written means
            entry[f"{actor}_retention_ci95"] = (None if teacher0 is None else
                                                retention_interval(ev.returns, teacher0.returns, rand.returns))
        cells.append(entry)
    seconds = time.perf_counter() - start
    return {
        "protocol": {**protocol(seeds, "students and teacher actor under each perturbation; random unperturbed"),
                     "retention": ENVELOPE_RETENTION,
                     "perturbations": "kdmarl_student.perturbation (docs/collaboration_profile.md)",
                     "time_budget_s": float(time_budget_s), "seconds": round(seconds, 2), "complete": complete},
        "random_return": return_stat(rand),
        "cells": cells,
        "figure": "envelope.png",
    }


__all__ = ["DEFAULT_ENVELOPE_EPISODES", "DEFAULT_ENVELOPE_SECONDS", "measure_envelope", "measure_team",
           "retention_interval", "return_stat"]
