"""KD-MARL distillation end to end on a real (tiny, briefly trained) teacher and the real batched envs.

The teacher fixture trains MAPPO for a few seconds; students distilled for a few seconds must beat uniform
random actions on the same seeds, and the teacher must come out bit-identical.
"""

from __future__ import annotations

import argparse
import copy
import csv
from pathlib import Path

import pytest
import torch
from kdmarl_teacher.checkpoint import load_teacher
from kdmarl_teacher.distill import (
    DistillConfig,
    StudentTeam,
    add_arguments,
    distill,
    file_sha256,
    group_lasso_penalty,
    load_students,
    prune_to_budget,
    resolve_config,
)
from kdmarl_teacher.profiles import load_team
from kdmarl_teacher.students import StudentMLP, budget_violations


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdmarl_teacher.config import default_config_path, load_config
    from kdmarl_teacher.mappo import train

    out = tmp_path_factory.mktemp("teacher")
    cfg = load_config(default_config_path("simple_spread"), [
        "num_envs=128", "total_steps=96000", "lr=0.003", "actor_hidden=[64,64]", "critic_hidden=[64,64]",
        "torch_threads=1", "checkpoint_every=1000"])
    return train(cfg, out, progress=False)


def _cfg(**kw: object) -> DistillConfig:
    base = {"num_envs": 64, "num_steps": 25, "total_steps": 64 * 25 * 30, "eval_episodes": 100,
            "torch_threads": 1, "checkpoint_every": 10, "lr": 0.01}
    return DistillConfig(**{**base, **kw})


def test_end_to_end_beats_random_and_teacher_is_untouched(teacher_path: Path, tmp_path: Path) -> None:
    teacher = load_teacher(teacher_path)
    before = {k: v.clone() for m in (teacher.actor, teacher.critic, teacher.value_normalizer)
              for k, v in m.state_dict().items()}
    sha = file_sha256(teacher_path)
    report = distill(_cfg(), teacher, tmp_path, teacher_path=teacher_path, progress=False)

    # Teacher: bit-identical in memory and on disk.
    after = {k: v for m in (teacher.actor, teacher.critic, teacher.value_normalizer) for k, v in m.state_dict().items()}
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert file_sha256(teacher_path) == sha == report["teacher"]["sha256"]

    # Students beat random on the same seeds (with a margin of the confidence intervals).
    s, r = report["students_eval"], report["random_eval"]
    assert s["team_return"] - s["ci95"] > r["team_return"] + r["ci95"], report
    assert report["teacher_eval"]["team_return"] > r["team_return"]
    assert report["min_flops_reduction"] > 1.0

    # Outputs: students.pt (profiles, architecture, teacher hash), metrics.csv, TensorBoard, report.
    students, payload = load_students(tmp_path)
    assert payload["teacher"]["sha256"] == sha and payload["final"]
    assert [a["name"] for a in payload["agents"]] == ["agent_0", "agent_1", "agent_2"]
    for st, a in zip(students, payload["agents"], strict=True):
        assert st.in_dim == a["input_dim"] and a["sensing"]["name"] == "full"
        assert a["resources"]["flops"] <= a["hardware"]["max_flops"]
        assert "role" not in "".join(st.state_dict())  # training-only heads are not part of a student
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert len(rows) == 30 and float(rows[-1]["loss/agreement"]) > float(rows[0]["loss/agreement"])
    assert any((tmp_path / "tb").iterdir())
    assert (tmp_path / "distill_report.json").is_file()


def test_resume_continues(teacher_path: Path, tmp_path: Path) -> None:
    teacher = load_teacher(teacher_path)
    cfg = _cfg(total_steps=64 * 25 * 2, checkpoint_every=1, eval_episodes=10)
    distill(cfg, teacher, tmp_path, progress=False)
    with pytest.raises(FileExistsError):
        distill(cfg, teacher, tmp_path, progress=False)
    report = distill(_cfg(total_steps=64 * 25 * 3, checkpoint_every=1, eval_episodes=10), teacher, tmp_path,
                     progress=False, resume=True)
    assert report["global_step"] == 64 * 25 * 3
    assert len(list(csv.DictReader((tmp_path / "metrics.csv").open()))) == 3


def test_hidden_slices_change_the_student_input(teacher_path: Path) -> None:
    from kdmarl_teacher.envs import make_env

    team = load_team("spread3_hetero")
    students = [StudentMLP(a.input_dim, a.rung.hidden, a.n_actions) for a in team.agents]
    st = StudentTeam(team, students)
    env = make_env("simple_spread", num_envs=8, seed=0, N=3)
    obs, _ = env.reset()
    xs = st.inputs(obs)
    assert [x.shape[-1] for x in xs] == [18, 16, 16]
    torch.testing.assert_close(xs[1], obs[:, 1, 2:18])  # no_velocity drops self_vel
    moved = obs.clone()
    moved[:, 1, 0:2] += 3.0  # change agent_1's velocity: its student cannot see it
    torch.testing.assert_close(st.inputs(moved)[1], xs[1])


def test_ablation_flags_and_config() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--teacher", "t", "--out", "o", "--no-relation", "--no-role", "--set", "w_kl=0.5"])
    cfg = resolve_config(args)
    assert set(cfg.terms()) == {"pg", "kl", "ce"} and cfg.w_kl == 0.5
    with pytest.raises(ValueError, match="unknown distill config key"):
        resolve_config(parser.parse_args(["--teacher", "t", "--out", "o", "--set", "w_kll=1"]))


def test_prune_to_budget_keeps_the_function_of_live_units() -> None:
    torch.manual_seed(0)
    wide = StudentMLP(18, (32, 32), 5)
    with torch.no_grad():  # kill half of each layer's units: incoming row, bias, outgoing column
        wide.body[0].weight[16:] = 0
        wide.body[0].bias[16:] = 0
        wide.body[2].weight[:, 16:] = 0
        wide.body[2].weight[16:] = 0
        wide.body[2].bias[16:] = 0
        wide.head.weight[:, 16:] = 0
    assert group_lasso_penalty(wide) > 0
    budget = {"max_flops": 1280}
    small = prune_to_budget(copy.deepcopy(wide), budget)
    assert small.hidden == (16, 16) and not budget_violations(small.resources(), budget)
    x = torch.randn(10, 18)
    torch.testing.assert_close(small(x), wide(x))  # tanh(0) = 0: dead units contributed nothing
