"""kdmarl export: ONNX per agent, parity with torch, manifest contents, atomic publication, students."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from kdmarl_student.bundle_eval import evaluate_bundle
from kdmarl_student.manifest import load_manifest, sha256_file
from kdmarl_student.policy import StudentPolicy
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec
from kdmarl_teacher.algos.teacher import TEACHER_FILE, load_teacher, teacher_payload
from kdmarl_teacher.core.networks import Actor, Critic
from kdmarl_teacher.core.run_files import atomic_save
from kdmarl_teacher.core.value_norm import IdentityNorm
from kdmarl_teacher.distill.students import StudentMLP
from kdmarl_teacher.export import bundle as export_bundle_mod
from kdmarl_teacher.export import cli as export_mod
from kdmarl_teacher.export import onnx_models, parity

SEEDS = list(range(1000, 1006))


def write_teacher(run: Path, scenario: str = "simple_spread", hidden: tuple[int, ...] = (64, 64)) -> Path:
    """A real teacher.pt (random weights) in the checkpoint format ``load_teacher`` reads."""
    torch.manual_seed(0)
    spec = scenario_spec(scenario)
    actor_kwargs = {"obs_dim_max": spec.obs_dim_max, "n_agents": spec.n_agents, "n_actions": list(spec.n_actions),
                    "hidden": list(hidden)}
    critic_kwargs = {"state_dim": spec.state_dim, "n_agents": spec.n_agents, "hidden": list(hidden)}
    actor, critic = Actor(**actor_kwargs), Critic(**critic_kwargs)
    with torch.no_grad():  # sharper than the 0.01-gain init, so greedy actions differ between states
        actor.head.weight.mul_(100.0)
    payload = teacher_payload({}, spec, actor=actor, actor_kwargs=actor_kwargs, critic=critic,
                              critic_kwargs=critic_kwargs, value_norm=IdentityNorm(), global_step=0, iteration=0)
    atomic_save(payload, run / TEACHER_FILE)
    return run


def cli_args(run: Path, out: Path, **overrides: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    export_mod.add_arguments(parser)
    args = parser.parse_args([str(run), "--out", str(out), "--eval-episodes", str(len(SEEDS)),
                              "--parity-recorded", "1000", "--latency-calls", "100"])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="module")
def teacher_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The CLI path with torch's default (dynamo) exporter: teacher actor for every agent."""
    root = tmp_path_factory.mktemp("export")
    run = write_teacher(root / "runs" / "t")
    assert export_mod.run(cli_args(run, root / "bundles" / "t")) == 0
    return run, root / "bundles" / "t"


def test_bundle_layout_and_models_are_checker_clean(teacher_bundle: tuple[Path, Path]) -> None:
    _, bundle = teacher_bundle
    names = sorted(p.name for p in bundle.iterdir())
    assert names == ["agent_0.onnx", "agent_1.onnx", "agent_2.onnx", "manifest.json", "teacher_actor.onnx"]
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    for file in names:
        if file.endswith(".onnx"):
            model = onnx.load(str(bundle / file))
            onnx.checker.check_model(model, full_check=True)
            assert model.opset_import[0].version >= 17
            dim = model.graph.input[0].type.tensor_type.shape.dim
            assert dim[0].dim_param and model.graph.input[0].name == "observation"


def test_manifest_is_the_collaboration_profile(teacher_bundle: tuple[Path, Path]) -> None:
    _, bundle = teacher_bundle
    manifest = load_manifest(bundle)
    data = manifest.data
    assert data["producer"]["students"] == "teacher_actor"
    assert data["scenario"]["name"] == "simple_spread" and data["scenario"]["params"]["N"] == 3
    for entry in manifest.agents:
        raw = entry.raw
        assert entry.role == "agent" and entry.action_meanings == ("no_op", "left", "right", "down", "up")
        assert entry.layout["landmarks"] == (4, 10) and entry.input_dim == entry.source_dim == 18
        assert raw["model"]["kind"] == "teacher_actor"
        assert sha256_file(bundle / entry.model_file) == entry.model_sha256
        assert raw["parity"]["n_observations"] >= 10_000 and raw["parity"]["max_abs_diff"] <= 1e-5
        assert entry.resources["flops_per_decision"] == 2 * (21 * 64 + 64 * 64 + 64 * 5)
        assert entry.latency["p50_ms"] > 0 and entry.latency["calls"] == 100
        assert entry.budget == {"profile": None, "max_flops": None, "max_params": None, "max_memory_bytes": None,
                                "max_latency_ms": None, "met": None, "checks": {}}
        assert entry.control_rate_hz == 10.0
    team = data["team"]
    assert team["eval_seeds"] == SEEDS
    # every agent runs the teacher's actor, so student and teacher returns are the same episodes
    assert team["student_return"]["mean"] == pytest.approx(team["teacher_return"]["mean"])
    assert team["retention"] == pytest.approx(1.0)
    assert set(team["random_return"]["metrics"]) == {"landmarks_covered", "collisions"}
    # the collaboration profile (issue 25): retention's interval, the protocol, the envelope (min(50, 6) episodes)
    assert data["schema_version"] == "1.3" and all(a["communication"] == {"topology": "none"} for a in data["agents"])
    assert team["retention_ci95"][0] <= team["retention"] <= team["retention_ci95"][1]
    assert team["protocol"]["episodes"] == len(SEEDS) and team["protocol"]["seeds"] == [SEEDS[0], SEEDS[-1]]
    envelope = data["envelope"]
    assert envelope["protocol"]["episodes"] == len(SEEDS) and envelope["protocol"]["complete"]
    kinds = [c["perturbation"]["kind"] for c in envelope["cells"]]
    assert kinds[0] == "none"
    assert {"obs_noise", "obs_drop", "action_delay", "teammate_frozen", "teammate_gone"} <= set(kinds)
    baseline = envelope["cells"][0]
    assert baseline["student_return"]["mean"] == pytest.approx(team["student_return"]["mean"])
    assert baseline["teacher_retention"] == pytest.approx(1.0)


def mpe2_returns(spec, act, seeds: list[int]) -> np.ndarray:
    """Team return per seed of ``act({agent: observation}) -> {agent: action}`` on the real mpe2 env."""
    env = make_mpe2_env(spec)
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        totals = dict.fromkeys(env.possible_agents, 0.0)
        while env.agents:
            obs, rewards, _, _, _ = env.step(act(obs))
            for name, r in rewards.items():
                totals[name] += r
        out.append(np.mean(list(totals.values())))
    return np.array(out)


def _teacher_torch_returns(teacher, seeds: list[int]) -> np.ndarray:
    """The torch teacher on the real mpe2 env: the reference the bundle must reproduce exactly."""
    spec = teacher.spec

    def act(obs: dict) -> dict:
        padded = torch.zeros(1, spec.n_agents, spec.obs_dim_max)
        for i, name in enumerate(spec.agent_names):
            padded[0, i, : len(obs[name])] = torch.from_numpy(obs[name])
        actions = teacher.act(padded)[0]
        return {name: int(actions[i]) for i, name in enumerate(spec.agent_names)}

    return mpe2_returns(spec, act, seeds)


def test_bundle_evaluation_equals_torch_evaluation(teacher_bundle: tuple[Path, Path]) -> None:
    run, bundle = teacher_bundle
    teacher = load_teacher(run)
    from_bundle = evaluate_bundle(bundle, SEEDS)
    np.testing.assert_array_equal(from_bundle.returns, _teacher_torch_returns(teacher, SEEDS))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["team"]["student_return"]["mean"] == pytest.approx(from_bundle.returns.mean(), abs=1e-6)


def _visited_observations(spec: object, episodes: int, seed: int) -> dict[str, np.ndarray]:
    """Full observations per agent from mpe2 episodes under seeded uniform random actions."""
    from kdmarl_student.scenarios import make_mpe2_env

    env, rng = make_mpe2_env(spec), np.random.default_rng(seed)
    rows: dict[str, list[np.ndarray]] = {}
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        while env.agents:
            for name in env.agents:
                rows.setdefault(name, []).append(np.asarray(obs[name], np.float32))
            obs, *_ = env.step({name: int(rng.integers(5)) for name in env.agents})
    return {name: np.stack(r) for name, r in rows.items()}


def test_runtime_parity_with_torch_on_10000_observations(teacher_bundle: tuple[Path, Path]) -> None:
    """The on-board path (StudentPolicy: full observation in) against the torch teacher, 1e-5."""
    run, bundle = teacher_bundle
    teacher = load_teacher(run)
    spec = teacher.spec
    recorded = _visited_observations(spec, episodes=80, seed=5)  # 2 000 per agent
    for i, name in enumerate(spec.agent_names):
        policy = StudentPolicy(bundle, name)
        obs = np.concatenate([parity.random_observations(10_000, 18, seed=i), recorded[name]])
        with torch.no_grad():
            x = teacher.actor_input(torch.from_numpy(obs), torch.full((len(obs),), i))
            expected = teacher.actor(x)[:, :5].numpy()
        np.testing.assert_allclose(policy.logits(obs), expected, atol=1e-5, rtol=0)
        assert (policy.act_batch(obs) == expected.argmax(axis=1)).mean() > 0.999  # ties only
        teacher_policy = StudentPolicy(bundle, name, model="teacher")
        np.testing.assert_allclose(teacher_policy.logits(obs[:500]), expected[:500], atol=1e-5, rtol=0)


def test_existing_bundle_is_not_replaced_without_force(teacher_bundle: tuple[Path, Path]) -> None:
    run, bundle = teacher_bundle
    with pytest.raises(FileExistsError):
        export_mod.run(cli_args(run, bundle))


def _students_file(run: Path) -> Path:
    spec = scenario_spec("simple_spread")
    sensing = [{"slices": "all"}, {"slices": ["self_vel", "self_pos", "landmarks"]},
               {"slices": ["self_vel", "landmarks", "other_agents"], "nearest": {"landmarks": 2, "other_agents": 1}}]
    budgets = [None, {"name": "jetson_nano", "max_flops": 40_000, "max_params": 50_000, "max_memory_bytes": 524_288,
                      "max_latency_ms": 0.04, "control_rate_hz": 20},
               {"name": "tiny", "max_flops": 100, "max_params": None, "max_memory_bytes": None}]
    from kdmarl_student.sensing import sensed_dim

    agents = []
    for agent, profile, budget in zip(spec.agents, sensing, budgets, strict=True):
        student = StudentMLP(sensed_dim(agent.layout, profile), (16, 16), agent.n_actions)
        agents.append({"name": agent.name, "arch": student.arch(), "state_dict": student.state_dict(),
                       "sensing": profile, "hardware": budget})
    torch.save({"format": "kdmarl_students", "version": 1, "agents": agents}, run / "students.pt")
    return run / "students.pt"


def test_students_export_with_sensing_and_budgets(tmp_path: Path) -> None:
    run = write_teacher(tmp_path / "runs" / "s")
    _students_file(run)
    out = tmp_path / "bundles" / "s"
    assert export_mod.run(cli_args(run, out, legacy_exporter=True, eval_episodes=2, parity_random=10_000)) == 0
    manifest = load_manifest(out)
    assert manifest.data["producer"]["students"] == "distilled"
    a0, a1, a2 = manifest.agents
    assert (a0.input_dim, a1.input_dim, a2.input_dim) == (18, 10, 8)
    assert a2.sensing["nearest"] == {"landmarks": 2, "other_agents": 1}
    assert a1.budget["profile"] == "jetson_nano" and a1.budget["met"] is True and a1.control_rate_hz == 20.0
    assert a2.budget["met"] is False and a2.budget["checks"] == {"flops": False}
    assert a0.budget["met"] is None
    for entry in manifest.agents:
        assert entry.raw["model"]["kind"] == "student"
        assert entry.raw["parity"]["max_abs_diff"] <= 1e-5
        assert entry.resources["flops_per_decision"] == 2 * (entry.input_dim * 16 + 16 * 16 + 16 * 5)
    # the runtime cuts the same input as the torch student saw
    payload = torch.load(run / "students.pt", weights_only=True)
    from kdmarl_student.sensing import apply_sensing
    from kdmarl_teacher.distill.students import build_student

    student = build_student(payload["agents"][2]["arch"])
    student.load_state_dict(payload["agents"][2]["state_dict"])
    obs = parity.random_observations(2_000, 18, seed=3)
    with torch.no_grad():
        expected = student(torch.from_numpy(apply_sensing(obs, a2.layout, a2.sensing))).numpy()
    np.testing.assert_allclose(StudentPolicy(out, "agent_2").logits(obs), expected, atol=1e-5, rtol=0)


def test_interrupted_export_leaves_no_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_teacher(tmp_path / "runs" / "i", hidden=(16,))
    out = tmp_path / "bundles" / "i"

    def crash(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the team evaluation

    monkeypatch.setattr(export_bundle_mod, "measure_team", crash)
    with pytest.raises(KeyboardInterrupt):
        export_mod.run(cli_args(run, out, legacy_exporter=True, parity_random=100, parity_recorded=0))
    assert not out.exists()
    assert list((tmp_path / "bundles").iterdir()) == []


def test_failed_replacement_keeps_the_old_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_teacher(tmp_path / "runs" / "r", hidden=(16,))
    out = tmp_path / "bundles" / "r"
    fast = {"legacy_exporter": True, "parity_random": 100, "parity_recorded": 0, "eval_episodes": 0}
    assert export_mod.run(cli_args(run, out, **fast)) == 0
    before = (out / "manifest.json").read_bytes()
    monkeypatch.setattr(export_bundle_mod, "parity_error", lambda *a, **k: (1.0, 1.0))  # parity failure
    with pytest.raises(ValueError, match="differ"):
        export_mod.run(cli_args(run, out, force=True, **fast))
    assert (out / "manifest.json").read_bytes() == before
    assert load_manifest(out).data["team"]["student_return"] is None  # eval_episodes 0: not measured
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == ["r"]
    monkeypatch.undo()
    assert export_mod.run(cli_args(run, out, force=True, **fast)) == 0  # --force replaces atomically
    assert json.loads((out / "manifest.json").read_text())["created"]


def test_teacher_is_found_through_the_students_file(tmp_path: Path) -> None:
    """A distillation run has students.pt only; it records the teacher's path and sha256."""
    teacher_run = write_teacher(tmp_path / "runs" / "teacher", hidden=(16,))
    distill_run = tmp_path / "runs" / "distill"
    distill_run.mkdir()
    students = _students_file(distill_run)
    payload = torch.load(students, weights_only=True)
    payload["teacher"] = {"path": str(teacher_run / "teacher.pt"), "sha256": sha256_file(teacher_run / "teacher.pt")}
    torch.save(payload, students)
    assert export_mod.resolve_sources(distill_run, None, None, False) == (teacher_run / "teacher.pt", students)
    assert export_mod.resolve_sources(teacher_run, None, None, False) == (teacher_run / "teacher.pt", None)
    # --teacher takes a run directory, as every other --teacher does (the SMAX docs' `--teacher runs/smax3m`)
    assert export_mod.resolve_sources(distill_run, None, teacher_run, False) == (teacher_run / "teacher.pt", students)
    payload["teacher"]["sha256"] = "0" * 64  # the teacher was retrained since: refuse to mix them
    torch.save(payload, students)
    with pytest.raises(ValueError, match="changed"):
        export_mod.resolve_sources(distill_run, None, None, False)
    with pytest.raises(FileNotFoundError):
        export_mod.resolve_sources(distill_run, tmp_path / "nope.pt", None, False)


def test_nan_weights_are_refused_and_a_nan_difference_fails_parity(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """A diverged teacher (NaN weights) is refused, naming the agent and the parameter; and parity on NaN logits
    is an infinite difference, not the 0.00 that max() skipping NaN used to report."""
    from kdmarl_teacher import cli

    run = write_teacher(tmp_path / "runs" / "nan", hidden=(8,))
    payload = torch.load(run / "teacher.pt", weights_only=True)
    payload["actor"]["state_dict"]["head.bias"][1] = float("nan")
    torch.save(payload, run / "teacher.pt")
    assert cli.main(["export", str(run), "--out", str(tmp_path / "b"), "--eval-episodes", "0",
                     "--legacy-exporter"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "agent agent_0 (teacher_actor): non-finite (NaN/Inf) weights in " \
        "actor.head.bias: refusing to export" in err, err
    assert not (tmp_path / "b").exists()

    module = StudentMLP(4, (8,), 3).eval()
    path = tmp_path / "m.onnx"
    onnx_models.export_onnx(module, path, 4, dynamo=False)
    inputs = parity.random_observations(64, 4, seed=0)
    assert parity.parity_error(module, path, inputs)[1] <= 1e-5
    with torch.no_grad():
        module.head.bias[0] = float("nan")  # torch now disagrees with the exported (finite) graph
    diff, scaled = parity.parity_error(module, path, inputs)
    assert diff == scaled == float("inf")
