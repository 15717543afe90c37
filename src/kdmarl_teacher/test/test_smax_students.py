"""SMAX students (issue 12): sensing profiles and team configs per unit type, masked distillation, export with the
action mask in the manifest, the runtime's mask and `kdmarl evaluate --bundle` on a tiny SMAX bundle."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("jaxmarl")

from kdmarl_student.scenarios import scenario_spec
from kdmarl_teacher.distill.profiles import load_team, resolve_sensing


# ---- sensing and hardware profiles ----------------------------------------------------------------------------
def test_smax_sensing_profiles_drop_whole_slices() -> None:
    layout = scenario_spec("smax:2s3z").agents[0].layout  # allies 52, enemies 65, own 4, unit_type 6
    assert resolve_sensing("no_allies", layout)["slices"] == ["enemies", "own", "unit_type"]
    assert resolve_sensing("no_unit_type", layout)["slices"] == ["allies", "enemies", "own"]
    assert resolve_sensing("enemies_and_own", layout)["slices"] == ["enemies", "own"]
    with pytest.raises(ValueError, match="not 2-D positions"):  # 3m's allies slice (26) would split into 2-D pairs
        resolve_sensing({"nearest": {"allies": 1}}, scenario_spec("smax:3m").agents[0].layout)
    mpe = scenario_spec("simple_spread", N=3).agents[0].layout  # "exclude" profiles work across scenarios
    assert resolve_sensing("enemies_and_own", mpe)["slices"] == list(mpe)


def test_smax_teams_load() -> None:
    small = load_team("smax_3m")
    assert [a.role for a in small.agents] == ["marine"] * 3
    assert {a.hardware["name"] for a in small.agents} == {"jetson_nano"} and {a.input_dim for a in small.agents} == {75}
    hetero = load_team("smax_2s3z")
    assert [a.role for a in hetero.agents] == ["stalker"] * 2 + ["zealot"] * 3
    assert [a.hardware["name"] for a in hetero.agents] == ["jetson_orin"] * 2 + ["mcu_cortex_m4"] * 3
    assert [a.input_dim for a in hetero.agents] == [127, 127, 69, 69, 69]  # zealots: 65 enemy + 4 own features
    assert hetero.agents[0].rung.resources.flops > 50 * hetero.agents[2].rung.resources.flops
    assert all(a.rung.resources.flops <= 1280 for a in hetero.agents[2:])
    capped = load_team("smax_2s3z", max_flops=60_000)  # distill caps the ladder at the teacher actor's FLOPs
    assert all(a.rung.resources.flops <= 60_000 for a in capped.agents)


# ---- a tiny SMAX teacher (as test_smax's tiny training run) and masked distillation -----------------------------
@pytest.fixture(scope="module")
def smax_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdmarl_teacher.algos import mappo
    from kdmarl_teacher.algos.config import default_config_path, load_config

    cfg = load_config(default_config_path("smax:3m"), ["scenario=smax:3m", "num_envs=8", "num_steps=16",
                                                       "total_steps=256", "num_minibatches=2", "update_epochs=1",
                                                       "actor_hidden=[32,32]", "critic_hidden=[32,32]"])
    return mappo.train(cfg, tmp_path_factory.mktemp("smax_teacher") / "run", progress=False)


def checked_envs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every env kdmarl makes from here on asserts that each action it is stepped with is available."""
    from kdmarl_teacher import envs

    real, checked = envs.make_env, []

    def make_env(*args, **kwargs):
        env = real(*args, **kwargs)
        step = env.step

        def step_checked(actions):
            assert env.available_actions().gather(-1, actions.unsqueeze(-1)).all(), "an unavailable action"
            checked.append(actions.numel())
            return step(actions)

        env.step = step_checked
        return env

    monkeypatch.setattr(envs, "make_env", make_env)
    return checked


def tiny_distill(teacher_path: Path, out: Path, team: str = "smax_3m") -> dict:
    from kdmarl_teacher.algos.teacher import load_teacher
    from kdmarl_teacher.distill.config import load_distill_config
    from kdmarl_teacher.distill.loop import distill
    from kdmarl_teacher.distill.profiles import CONFIG_DIR

    cfg = load_distill_config(CONFIG_DIR / "distill.yaml", [f"team={team}", "num_envs=8", "num_steps=16",
                                                            "total_steps=256", "update_epochs=1",
                                                            "num_minibatches=2", "eval_episodes=6"])
    return distill(cfg, load_teacher(teacher_path, "cpu"), out, teacher_path=teacher_path, progress=False)


def test_masked_distillation_never_samples_unavailable(smax_teacher: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    checked = checked_envs(monkeypatch)  # role fitting, student rollouts, and the evaluation's three policies
    report = tiny_distill(smax_teacher, tmp_path / "students")
    assert sum(checked) >= 2 * 16 * 8 * 3
    on_disk = json.loads((tmp_path / "students" / "distill_report.json").read_text())
    assert on_disk["scenario"] == "smax:3m" and report["team"] == "smax_3m"
    # 16 steps per iteration from a fresh reset, battles of up to 100: the report says the students never act later
    assert "num_steps 16 < the scenario's episode limit 100" in on_disk["rollout_note"], on_disk["rollout_note"]
    for key in ("teacher_eval", "students_eval", "random_eval"):
        ev = on_disk[key]
        assert 0.0 <= ev["win_rate"] <= 1.0 and ev["win_rate_ci95"] >= 0.0 and ev["episodes"] == 6
    assert "win_rate_retention" in on_disk


def test_kdmarl_distill_rolls_out_whole_battles_by_default(smax_teacher: Path, tmp_path: Path) -> None:
    """The shipped distill config on a SMAX teacher covers a whole battle each iteration (num_steps = max_steps 100)
    at the MPE default's batch (32 x 100 = 128 x 25 joint steps); --set still wins, and a --config file is taken
    as written."""
    import yaml
    from kdmarl_teacher.distill import cli
    from kdmarl_teacher.distill.profiles import CONFIG_DIR

    tiny = ["--set", "total_steps=256", "--set", "update_epochs=1", "--set", "eval_episodes=2", "--no-progress"]
    run = tmp_path / "students"
    assert cli.main(["--teacher", str(smax_teacher), "--out", str(run), "--team", "smax_3m", *tiny]) == 0
    saved = yaml.safe_load((run / "distill_config.yaml").read_text())
    assert (saved["num_steps"], saved["num_envs"]) == (100, 32)
    report = json.loads((run / "distill_report.json").read_text())
    assert report["rollout_note"] == "" and report["global_step"] == 3200  # one iteration: 32 battles, whole

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    own = cli.resolve_config(parser.parse_args(["--teacher", "t", "--out", "o", "--set", "num_steps=50"]),
                             "distill.yaml", 100)
    assert (own.num_steps, own.num_envs) == (50, 32)  # the user's num_steps, the default's batch
    file = cli.resolve_config(parser.parse_args(["--teacher", "t", "--out", "o", "--config",
                                                 str(CONFIG_DIR / "distill.yaml")]), "distill.yaml", 100)
    assert (file.num_steps, file.num_envs) == (25, 128)
    mpe = cli.resolve_config(parser.parse_args(["--teacher", "t", "--out", "o"]), "distill.yaml", 25)
    assert (mpe.num_steps, mpe.num_envs) == (25, 128)


@pytest.fixture(scope="module")
def smax_qmix_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny QMIX teacher on SMAX 3m from the shipped config/qmix_smax.yaml (a few seconds)."""
    from kdmarl_teacher.algos import qmix
    from kdmarl_teacher.algos.config import default_config_path, load_qmix_config

    cfg = load_qmix_config(default_config_path("smax:3m", "qmix"), [
        "num_envs=8", "num_steps=16", "total_steps=384", "learning_starts=128", "buffer_size=32", "batch_size=8",
        "updates_per_iteration=1", "agent_hidden=[32,32]", "mixer_embed=8", "hypernet_hidden=16", "eval_every=0"])
    return qmix.train(cfg, tmp_path_factory.mktemp("smax_qmix_teacher") / "run", progress=False)


def test_qmix_teacher_distillation_on_smax_is_masked_and_reports_win_rates(
        smax_qmix_teacher: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 21: the value-decomposition recipe (QMIX teacher) on SMAX. Every action stepped (student rollouts
    and the evaluation's three policies) is available, and the report carries the win rates as the MAPPO
    recipe's does."""
    from kdmarl_teacher.algos.teacher import load_teacher
    from kdmarl_teacher.distill.config import load_distill_config
    from kdmarl_teacher.distill.loop import distill
    from kdmarl_teacher.distill.profiles import CONFIG_DIR

    checked = checked_envs(monkeypatch)
    cfg = load_distill_config(CONFIG_DIR / "distill_qmix.yaml", [
        "team=smax_3m", "num_envs=8", "num_steps=16", "total_steps=256", "update_epochs=1", "num_minibatches=2",
        "eval_episodes=6"])
    run = tmp_path / "students"
    report = distill(cfg, load_teacher(smax_qmix_teacher, "cpu"), run, teacher_path=smax_qmix_teacher,
                     progress=False)
    assert report["recipe"] == "value_decomposition"
    assert sum(checked) >= 2 * 16 * 8 * 3  # two iterations of 8 envs x 16 steps x 3 agents, plus evaluations
    on_disk = json.loads((run / "distill_report.json").read_text())
    for key in ("teacher_eval", "students_eval", "random_eval"):
        assert 0.0 <= on_disk[key]["win_rate"] <= 1.0 and on_disk[key]["episodes"] == 6
    t_win, s_win = on_disk["teacher_eval"]["win_rate"], on_disk["students_eval"]["win_rate"]
    assert on_disk["win_rate_retention"] == (s_win / t_win if t_win > 0 else None)
    assert "win_rate_definition" in on_disk


def test_mcu_teams_are_at_least_20x_smaller_than_the_shipped_teacher_actor() -> None:
    """Issue 26 §4: every SMAX microcontroller team's students are >= 20x fewer FLOPs than the shipped MAPPO
    teacher's actor on its map (mlp[128, 128] on the full observation) and fit their board's budget."""
    from kdmarl_teacher.algos.config import default_config_path, load_config
    from kdmarl_teacher.core.networks import Actor
    from kdmarl_teacher.core.resources import module_resources

    for team, board in [("smax_3m_mcu", "mcu_cortex_m4_50hz"), ("smax_2s3z_mcu", "mcu_cortex_m4_50hz"),
                        ("smax_3s5z_mcu", "mcu_cortex_m7")]:
        cfg = load_team(team)
        shipped = load_config(default_config_path(cfg.spec.name), [f"scenario={cfg.spec.name}"])
        teacher = Actor(obs_dim_max=max(cfg.spec.obs_dims), n_agents=cfg.spec.n_agents,
                        n_actions=list(cfg.spec.n_actions), hidden=list(shipped.actor_hidden))
        teacher_flops = module_resources(teacher).flops
        for agent in cfg.agents:
            res = agent.rung.resources
            assert agent.hardware["name"] == board and res.flops <= agent.hardware["max_flops"], (team, agent.name)
            assert teacher_flops / res.flops >= 20, (team, agent.name, agent.rung.label, teacher_flops / res.flops)


@pytest.fixture(scope="module")
def smax_winning_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small MAPPO teacher on SMAX 3m trained long enough to win some battles (131 k env steps, ~30 s): win-rate
    retention is student / teacher win rate, so the untrained fixture's zero wins would leave it undefined."""
    from kdmarl_teacher.algos import mappo
    from kdmarl_teacher.algos.config import default_config_path, load_config

    cfg = load_config(default_config_path("smax:3m"), ["scenario=smax:3m", "num_envs=64", "num_steps=128",
                                                       "total_steps=131072", "actor_hidden=[32,32]",
                                                       "critic_hidden=[64,64]", "checkpoint_every=1000"])
    return mappo.train(cfg, tmp_path_factory.mktemp("smax_winning_teacher") / "run", progress=False)


def test_sweep_on_smax_aggregates_win_rate_retention(smax_winning_teacher: Path, tmp_path: Path) -> None:
    """Issue 26 §4 runs the SMAX students through `kdmarl sweep` with metric win_rate_retention: on a real local
    Ray and real (short) distillations, each trial's figure is its report's student / teacher win rate and the
    point's mean and per-seed values are those, with return retention and the win rates alongside."""
    import os
    import subprocess
    import sys

    import yaml

    spec = {"kind": "distill", "teacher": {"smax_3m_mcu": str(smax_winning_teacher)},
            "base": {"num_envs": 16, "num_steps": 25, "total_steps": 16 * 25 * 4, "eval_episodes": 20,
                     "checkpoint_every": 2},
            "grid": {"team": ["smax_3m_mcu"], "seed": [1, 2]}, "variants": {"kdmarl_full": {}},
            "reference": "kdmarl_full", "metric": "win_rate_retention"}
    path, out = tmp_path / "spec.yaml", tmp_path / "sweep"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-m", "kdmarl_teacher.cli", "sweep", str(path), "--out", str(out),
                           "--cpus", "2"], check=False, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rep = json.loads((out / "sweep_report.json").read_text())
    assert rep["metric"] == "win_rate_retention" and rep["done"] == 2, rep["failed"]
    (point,) = rep["points"]
    reports = {s: json.loads((out / "trials" / f"kdmarl_full_team=smax_3m_mcu_seed={s}" / "distill_report.json")
                             .read_text()) for s in (1, 2)}
    t_win = reports[1]["teacher_eval"]["win_rate"]
    assert t_win > 0, "the fixture's teacher won no evaluation battle: win-rate retention is undefined"
    expected = {f"seed={s}": r["students_eval"]["win_rate"] / r["teacher_eval"]["win_rate"] for s, r in reports.items()}
    assert point["per_seed"] == pytest.approx(expected, rel=1e-12)
    assert point["mean"] == pytest.approx(sum(expected.values()) / 2, rel=1e-12)
    assert point["teacher_win_rate"] == pytest.approx(t_win)
    assert point["retention"] == pytest.approx(sum(r["retention"] for r in reports.values()) / 2, rel=1e-12)
    assert point["student_win_rate"] == pytest.approx(
        sum(r["students_eval"]["win_rate"] for r in reports.values()) / 2, rel=1e-12)


def test_masked_update_uses_masked_logits() -> None:
    """The KL and CE terms on masked logits: an unavailable action the teacher's raw logits favour carries no
    mass in the target, and the student's masked distribution matches it exactly when the available logits do."""
    from kdmarl_teacher.core.losses import argmax_ce_loss, kd_kl_loss
    from kdmarl_teacher.distill.team import agent_mask

    mask = torch.tensor([[[True, False, True, True]]])  # [B=1, N=1, A=4]
    teacher = torch.tensor([[0.0, 9.0, 1.0, 2.0]])
    student = torch.tensor([[0.0, -9.0, 1.0, 2.0]])
    t, s = agent_mask(teacher, mask, 0), agent_mask(student, mask, 0)
    assert int(t.argmax()) == 3
    assert float(kd_kl_loss(t, s, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_kl_loss(teacher, student, 2.0)) > 1.0  # unmasked they disagree on the unavailable action
    assert torch.isfinite(argmax_ce_loss(t, s))
    assert agent_mask(teacher, None, 0) is teacher  # MPE: unchanged


# ---- export, the runtime's mask, kdmarl evaluate --bundle --------------------------------------------------------
@pytest.fixture(scope="module")
def smax_bundle(smax_teacher: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdmarl_teacher.export import cli as export

    run = tmp_path_factory.mktemp("smax_students") / "run"
    tiny_distill(smax_teacher, run)
    out = run.parent / "bundle"
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    assert export.run(parser.parse_args([str(run), "--out", str(out), "--teacher", str(smax_teacher),
                                         "--eval-episodes", "4", "--parity-random", "200", "--parity-recorded", "60",
                                         "--latency-calls", "50", "--envelope-episodes", "1",
                                         "--envelope-seconds", "30"])) == 0
    return out


def test_smax_manifest_says_how_the_mask_is_obtained(smax_bundle: Path) -> None:
    from kdmarl_student.manifest import PROFILE_SCHEMA_VERSION, load_manifest

    manifest = load_manifest(smax_bundle)
    # 1.3: the mask (1.2) and the measured profile; the envelope's perturbed battles kept to available actions
    assert manifest.data["schema_version"] == PROFILE_SCHEMA_VERSION == "1.3"
    envelope = manifest.data["envelope"]
    cells = envelope["cells"]  # time-bounded (30 s): on a loaded machine the grid is cut, and says so
    assert cells[0]["perturbation"] == {"kind": "none"} and cells[0]["teacher_return"]["episodes"] == 1
    assert envelope["protocol"]["complete"] == (len(cells) == 14)
    for entry in manifest.agents:
        assert entry.safe_action == 4 and entry.action_meanings[4] == "stop"
        assert entry.action_mask["source"] == "environment" and entry.action_mask["always_available"] == 4


def test_runtime_never_returns_an_unavailable_action(smax_bundle: Path) -> None:
    import numpy as np
    from kdmarl_student.policy import StudentPolicy

    policy = StudentPolicy(smax_bundle, "ally_0", providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, policy.source_dim)).astype(np.float32)
    for row in obs:
        best = int(np.argmax(policy.logits(row)))
        mask = rng.random(8) < 0.4
        mask[4], mask[best] = True, False  # the favourite is unavailable: the runtime must pick another
        assert mask[policy.act(row, mask=mask)]
        assert mask[policy.act(row, deterministic=False, mask=mask)]
        assert policy.act(row, mask=np.eye(8, dtype=bool)[best]) == best
    masks = rng.random((64, 8)) < 0.3
    masks[:, 4] = True
    assert masks[np.arange(64), policy.act_batch(obs, mask=masks)].all()
    with pytest.raises(ValueError, match=r"ally_0: action mask allows no action.*safe action 4"):
        policy.act(obs[0], mask=np.zeros(8, dtype=bool))
    with pytest.raises(ValueError, match=r"ally_0: action mask must have 8 entries .*north.*got shape \[5\]"):
        policy.act(obs[0], mask=np.ones(5, dtype=bool))


def test_evaluate_bundle_on_smax_reports_win_rate(smax_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdmarl_teacher.evaluation.bundle import evaluate_bundle_report

    from kdmarl_student import smax_battle

    real_step, stepped = smax_battle.SmaxBattle.step, []

    def step_checked(self, actions):  # every action a bundle actor picks must be available
        masks = self.available_actions()
        assert all(masks[a][i] for a, i in actions.items()), "an unavailable action"
        stepped.append(len(actions))
        return real_step(self, actions)

    monkeypatch.setattr(smax_battle.SmaxBattle, "step", step_checked)
    report = evaluate_bundle_report(smax_bundle, episodes=3, seed_start=100)
    assert stepped and report["seeding"].startswith("SMAX")
    for label in ("teacher (ONNX)", "students (ONNX)", "random"):
        res = report["results"][label]
        assert 0.0 <= res["win_rate"]["mean"] <= 1.0 and res["win_rate"]["n"] == 3
        assert set(res["metrics"]) == {"won", "allies_alive", "enemy_hp_left"}


def test_mask_field_needs_schema_1_2_and_the_safe_action(smax_bundle: Path) -> None:
    from kdmarl_student.errors import BundleError
    from kdmarl_student.manifest import validate_manifest_data

    data = json.loads((smax_bundle / "manifest.json").read_text())
    old = {**data, "schema_version": "1.1"}
    with pytest.raises(BundleError, match=r"agents\[0\]\.action\.mask.*1\.2"):
        validate_manifest_data(old, smax_bundle / "manifest.json")
    data["agents"][0]["action"]["mask"]["always_available"] = 0
    with pytest.raises(BundleError, match=r"always_available.*safe action 4"):
        validate_manifest_data(data, smax_bundle / "manifest.json")
