"""`kdmarl evaluate --bundle`: the bundle alone gives exactly the returns of the torch students and teacher."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from kdmarl_student.scenarios import scenario_spec
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.distill.profiles import apply_sensing_torch
from kdmarl_teacher.distill.students_file import load_students
from kdmarl_teacher.evaluation import evaluate as evaluate_mod
from kdmarl_teacher.export import cli as export_mod
from test_export import SEEDS, _students_file, _teacher_torch_returns, cli_args, mpe2_returns, write_teacher


def _students_torch_returns(students_file: Path, seeds: list[int]) -> np.ndarray:
    """Torch students (their own sensing, greedy) on the real mpe2 env: the reference for the bundle."""
    students, payload = load_students(students_file)
    spec = scenario_spec("simple_spread")

    @torch.no_grad()
    def act(obs: dict) -> dict:
        actions = {}
        for agent, student, entry in zip(spec.agents, students, payload["agents"], strict=True):
            x = apply_sensing_torch(torch.from_numpy(obs[agent.name]).float()[None], agent.layout, entry["sensing"])
            actions[agent.name] = int(student(x).argmax(-1))
        return actions

    return mpe2_returns(spec, act, seeds)


def test_bundle_evaluation_equals_torch_students_and_teacher(tmp_path: Path) -> None:
    run = write_teacher(tmp_path / "runs" / "s")
    students_file = _students_file(run)
    bundle = tmp_path / "bundles" / "s"
    assert export_mod.run(cli_args(run, bundle, legacy_exporter=True, eval_episodes=0, parity_random=1000)) == 0

    parser = argparse.ArgumentParser()
    evaluate_mod.add_arguments(parser)
    out = tmp_path / "eval.json"
    args = parser.parse_args(["--bundle", str(bundle), "--episodes", str(len(SEEDS)), "--seed-start", str(SEEDS[0]),
                              "--json", str(out)])
    assert evaluate_mod.run(args) == 0
    report = json.loads(out.read_text())

    students = np.array(report["results"]["students (ONNX)"]["episode_team_returns"])
    teacher = np.array(report["results"]["teacher (ONNX)"]["episode_team_returns"])
    np.testing.assert_allclose(students, _students_torch_returns(students_file, SEEDS), rtol=0, atol=1e-6)
    np.testing.assert_allclose(teacher, _teacher_torch_returns(load_teacher(run), SEEDS), rtol=0, atol=1e-6)
    r = {k: v["team_return"]["mean"] for k, v in report["results"].items()}
    expected = (r["students (ONNX)"] - r["random"]) / (r["teacher (ONNX)"] - r["random"])
    assert report["retention"] == pytest.approx(expected, rel=1e-12)
    teacher_flops = report["teacher_flops"]
    for agent in report["agents"]:
        assert agent["flops_reduction"] == pytest.approx(teacher_flops / agent["flops"], rel=1e-12)


