"""Students with memory (issue 11), teacher side: history features, recurrent students, their ladders,
truncated BPTT in distillation, and export with explicit state, on a real (tiny) teacher and real envs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from kdmarl_student.sensing import apply_sensing, history_dim
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.core.resources import gru_resources, measured_flops
from kdmarl_teacher.distill.config import DistillConfig
from kdmarl_teacher.distill.loop import distill
from kdmarl_teacher.distill.mappo_recipe import rollout
from kdmarl_teacher.distill.profiles import apply_sensing_torch, load_team
from kdmarl_teacher.distill.students import GRU_LADDER, StudentGRU, budget_violations, rung_resources
from kdmarl_teacher.distill.students_file import load_students
from kdmarl_teacher.distill.team import StudentTeam, sequences, unroll

SPREAD_LAYOUT = load_team("spread3_full").agents[0].layout


@pytest.mark.parametrize("sensing", [
    {"slices": ["self_pos", "landmarks", "other_agents"], "history": {"mode": "delta"}},
    {"slices": ["self_pos", "landmarks"], "nearest": {"landmarks": 2}, "history": {"mode": "previous",
                                                                                  "slices": ["self_pos", "landmarks"]}},
])
def test_history_features_torch_twin_is_bit_identical(sensing: dict) -> None:
    rng = np.random.default_rng(0)
    obs, prev = (rng.normal(0, 2, (64, 18)).astype(np.float32) for _ in range(2))
    ref = apply_sensing(obs, SPREAD_LAYOUT, sensing, prev)
    got = apply_sensing_torch(torch.from_numpy(obs), SPREAD_LAYOUT, sensing, torch.from_numpy(prev)).numpy()
    assert got.shape == ref.shape and np.array_equal(got, ref)
    # an episode start (no previous observation): deltas are exactly 0, "previous" repeats the observation
    start = apply_sensing_torch(torch.from_numpy(obs), SPREAD_LAYOUT, sensing).numpy()
    assert np.array_equal(start, apply_sensing(obs, SPREAD_LAYOUT, sensing))
    width = history_dim(SPREAD_LAYOUT, sensing)
    if sensing["history"]["mode"] == "delta":
        assert not start[:, -width:].any()


@pytest.mark.parametrize("trunk, hidden", [((), 4), ((16,), 16), ((64,), 48)])
def test_gru_flops_match_the_flop_counter(trunk: tuple[int, ...], hidden: int) -> None:
    student = StudentGRU(18, trunk, hidden, 5)
    res = student.resources()
    assert res == gru_resources(18, trunk, hidden, 5)
    assert res.params == sum(p.numel() for p in student.parameters())
    assert res.state_bytes == 4 * hidden and res.memory_bytes == res.weight_bytes + res.activation_bytes + 4 * hidden

    class OneStep(torch.nn.Module):  # the flop counter's single-input call of one recurrent step
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return student(x, student.initial_state(x.shape[0]))[0]

    assert measured_flops(OneStep(), 18) == res.flops


def test_memory_kinds_in_team_configs(tmp_path: Path) -> None:
    for kind in ("history", "recurrent"):
        team = load_team("spread3_hetero", memory=kind)
        for a in team.agents:
            assert a.memory == kind and not budget_violations(a.rung.resources, a.hardware), a.name
            assert bool(a.rung.gru_hidden) == (kind == "recurrent")
            assert ("history" in a.sensing) == (kind == "history")
        if kind == "recurrent":  # the largest GRU rung that fits each budget
            for a in team.agents:
                bigger = [(t, g) for t, g in GRU_LADDER
                          if rung_resources(a.input_dim, a.n_actions, t, g).flops > a.rung.resources.flops]
                assert all(budget_violations(rung_resources(a.input_dim, a.n_actions, t, g), a.hardware)
                           for t, g in bigger), a.name
    # a list of kinds: the first whose ladder fits (a microcontroller too small for any GRU gets history)
    path = tmp_path / "team.yaml"
    path.write_text("scenario: simple_spread\nparams: {N: 3}\ndefault: {sensing: no_velocity, memory: [recurrent, "
                    "history, none], hardware: {name: tiny, max_flops: 400, max_params: 400}}\n")
    team = load_team(path)
    assert {a.memory for a in team.agents} == {"history"}
    path.write_text("scenario: simple_spread\nparams: {N: 3}\ndefault: {sensing: full, memory: lstm, hardware: "
                    "jetson_nano}\n")
    with pytest.raises(ValueError, match=r"agent agent_0: field 'memory' = 'lstm'"):
        load_team(path)
    path.write_text("scenario: simple_spread\nparams: {N: 3}\ndefault: {sensing: full, memory: history, history: "
                    "{mode: delta, slices: [wheel_odometry]}, hardware: jetson_nano}\n")
    with pytest.raises(ValueError, match=r"agent agent_0: field 'history'.*wheel_odometry"):
        load_team(path)


def test_truncated_bptt_replays_the_rollout(teacher_path: Path) -> None:
    """The update recomputes recurrent students from the states the rollout stored at each chunk start; with
    any chunk length it must give back exactly the log-probabilities the students acted with."""
    from kdmarl_teacher.envs import make_env

    teacher = load_teacher(teacher_path)
    team = load_team("spread3_hetero", memory="recurrent")
    torch.manual_seed(0)
    students = [a.rung.build(a.input_dim, a.n_actions) for a in team.agents]
    st = StudentTeam(team, students)
    env = make_env("simple_spread", num_envs=8, seed=0, N=3, max_cycles=10)
    gen = torch.Generator().manual_seed(0)
    ro = rollout(env, teacher, st, gen, teacher.actor.initial_state(8 * 3), seed=5, num_steps=20)
    assert ro.starts[0].all() and ro.starts[10].all() and not ro.starts[1:10].any()  # two episodes of 10 steps
    for L in (20, 5, 1):
        for i, s in enumerate(students):
            X, H0, starts = sequences(ro.inputs[i], L), sequences(ro.states[i], L)[:, 0], sequences(ro.starts, L)
            with torch.no_grad():
                _, logits = unroll(s, X, H0, starts)
            act = sequences(ro.actions[..., i], L).reshape(-1)
            logp = torch.log_softmax(logits, -1).gather(-1, act[:, None]).squeeze(-1)
            torch.testing.assert_close(logp, sequences(ro.logp[..., i], L).reshape(-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("memory", ["history", "recurrent"])
def test_distill_memory_students_beat_random_and_resume_bit_exact(teacher_path: Path, tmp_path: Path,
                                                                  memory: str) -> None:
    teacher = load_teacher(teacher_path)
    base = {"team": "spread3_hetero", "memory": memory, "num_envs": 64, "num_steps": 25, "chunk_len": 5,
            "total_steps": 64 * 25 * 20, "eval_episodes": 60, "torch_threads": 1, "checkpoint_every": 10,
            "lr": 0.01, "anneal_lr": False}
    report = distill(DistillConfig(**base), teacher, tmp_path / "full", progress=False)
    s, r = report["students_eval"], report["random_eval"]
    assert s["team_return"] - s["ci95"] > r["team_return"] + r["ci95"], report
    assert {a["memory"] for a in report["agents"]} == {memory} and all(a["fits_budget"] for a in report["agents"])
    assert all(a["state_bytes"] > 0 for a in report["agents"])

    # stop at the checkpoint (iteration 10), resume to the end: the same students, bit for bit
    half = tmp_path / "half"
    distill(DistillConfig(**{**base, "total_steps": 64 * 25 * 10}), teacher, half, progress=False)
    resumed = distill(DistillConfig(**base), teacher, half, resume=True, progress=False)
    a_students, _ = load_students(tmp_path / "full")
    b_students, _ = load_students(half)
    for a, b in zip(a_students, b_students, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert resumed["students_eval"]["team_return"] == report["students_eval"]["team_return"]


def test_a_recurrent_teacher_is_distilled_into_recurrent_students(tmp_path: Path) -> None:
    """MAPPO's GRU option as the teacher: its state is carried through the student rollouts (reset per episode),
    its cost counted with the GRU rule, and recurrent students come out of it."""
    from kdmarl_teacher.algos.config import default_config_path, load_config
    from kdmarl_teacher.algos.mappo import train
    from kdmarl_teacher.core.resources import module_resources

    cfg = load_config(default_config_path("simple_spread"), [
        "num_envs=64", "total_steps=16000", "actor_hidden=[32]", "critic_hidden=[32]", "use_gru=true",
        "gru_hidden=16", "torch_threads=1", "checkpoint_every=1000"])
    teacher = load_teacher(train(cfg, tmp_path / "teacher", progress=False))
    res = module_resources(teacher.actor)
    in_dim = teacher.actor.in_dim
    assert res.macs == in_dim * 32 + 3 * 16 * (32 + 16) + 16 * teacher.actor.n_actions_max
    assert res.state_bytes == 4 * 16
    report = distill(DistillConfig(team="spread3_hetero", memory="recurrent", num_envs=32, total_steps=32 * 25 * 3,
                                   eval_episodes=10, checkpoint_every=10), teacher, tmp_path / "students",
                     progress=False)
    assert all(a["student"].startswith(("gru", "mlp")) and "gru" in a["student"] for a in report["agents"])
    assert report["teacher"]["actor_resources"]["macs"] == res.macs
