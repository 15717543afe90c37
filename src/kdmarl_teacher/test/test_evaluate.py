"""`kdmarl evaluate`: DESIGN.md §5 metric fields, CI, random baseline on the same mpe2 seeds, GIF."""

import json
import math
from pathlib import Path

import numpy as np
import torch
from kdmarl_student.bundle_eval import BundleEvaluation
from kdmarl_student.stats import mean_ci
from kdmarl_teacher.algos.config import load_config
from kdmarl_teacher.algos.mappo import train
from kdmarl_teacher.cli import main

TINY = ["num_envs=8", "total_steps=400", "actor_hidden=[16]", "critic_hidden=[16]", "update_epochs=1",
        "num_minibatches=1", "torch_threads=1"]


def test_mean_ci() -> None:
    """The one summary of every figure (kdmarl_student.stats.mean_ci): torch tensors, numpy arrays and lists alike,
    and one treatment of samples too small for a spread."""
    s = mean_ci(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert s["mean"] == 2.5 and s["n"] == 4
    # t(0.975, 3) = 3.182446; std = 1.290994
    assert abs(s["ci95"] - 3.182446 * 1.290994 / 2) < 1e-5
    assert mean_ci(np.array([1.0, 2.0, 3.0, 4.0])) == s == mean_ci([1, 2, 3, 4])
    one = mean_ci([7.0])
    assert one["mean"] == 7.0 and one["n"] == 1 and all(math.isnan(one[k]) for k in ("std", "ci95", "low", "high"))
    assert math.isnan(mean_ci([])["mean"])
    # the bundle manifest is strict JSON: one episode writes ci95 0.0 there, the same mean
    ev = BundleEvaluation("student", [1000], ["a"], np.array([7.0]), np.array([[7.0]]))
    assert ev.summary()["ci95"] == 0.0 and ev.summary()["mean"] == 7.0


def test_evaluate_json_fields(tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(load_config(None, TINY), run, progress=False)
    out = tmp_path / "eval.json"
    gif = tmp_path / "ep.gif"
    assert main(["evaluate", str(run), "--episodes", "20", "--seed-start", "1000", "--json", str(out),
                 "--render", str(gif)]) == 0
    report = json.loads(out.read_text())
    assert report["episodes"] == 20 and report["seeds"] == [1000, 1019]
    assert "references" in report  # simple_spread N=3: the DESIGN.md reference returns
    for policy in ("deterministic", "stochastic", "random"):
        r = report["results"][policy]
        tr = r["team_return"]
        assert {"mean", "ci95", "low", "high", "std", "n"} <= tr.keys() and tr["n"] == 20
        assert tr["low"] < tr["mean"] < tr["high"]
        assert len(r["episode_team_returns"]) == 20
        assert abs(sum(r["episode_team_returns"]) / 20 - tr["mean"]) < 1e-5
        assert {"landmarks_covered", "collisions"} <= r["metrics"].keys()
        assert set(r["agent_returns"]) == {"agent_0", "agent_1", "agent_2"}
    assert "improvement_over_random" in report["results"]["deterministic"]
    # the GIF episode runs in real mpe2 from reset(seed=1000); the port's float64 return must agree
    assert gif.stat().st_size > 0
    assert abs(report["render"]["mpe2_team_return"] - report["results"]["deterministic"]["episode_team_returns"][0]) \
        < 1e-4


def test_random_baseline_is_policy_independent(tmp_path: Path) -> None:
    """Same seeds -> same random baseline for any teacher (it only depends on the seeds)."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(load_config(None, [*TINY, "seed=1"]), a, progress=False)
    train(load_config(None, [*TINY, "seed=2"]), b, progress=False)
    for run in (a, b):
        assert main(["evaluate", str(run), "--episodes", "10"]) == 0
    ra = json.loads((a / "eval.json").read_text())["results"]["random"]
    rb = json.loads((b / "eval.json").read_text())["results"]["random"]
    assert ra["episode_team_returns"] == rb["episode_team_returns"]
