"""Google Research Football behind the batched-env contract (envs/grf.py) and the GRF scenario specs.

The spec tests need nothing; the env tests step the real gfootball engine and skip with the reason when it is not
installed (`bash scripts/setup_grf.sh`). They are kept to a few short academy episodes: the point is the contract
and the seeding rule (the same seeds give the same episodes whatever the number of workers or the backend),
checked against the real engine in-process, in worker processes and as Ray actors.
"""

from __future__ import annotations

import importlib.util
import itertools
import re

import numpy as np
import pytest
import torch
from kdmarl_student.scenarios import GRF_ACTIONS, GRF_LAYOUT, GRF_OBS_DIM, GRF_SCENARIOS, scenario_spec

SCENARIO = "grf:academy_3_vs_1_with_keeper"
needs_grf = pytest.mark.skipif(importlib.util.find_spec("gfootball") is None,
                               reason="gfootball not installed (optional extra: bash scripts/setup_grf.sh)")


# ---- specs (no gfootball needed) ----------------------------------------------------------------------------------
def test_spec_layout_covers_simple115v2_and_names_the_slices() -> None:
    spec = scenario_spec(SCENARIO)
    assert spec.n_agents == 3 and spec.obs_dims == (GRF_OBS_DIM,) * 3 and spec.n_actions == (19,) * 3
    assert spec.state_dim == 3 * GRF_OBS_DIM and spec.max_cycles == 400
    bounds = sorted(GRF_LAYOUT.values())
    assert bounds[0][0] == 0 and bounds[-1][1] == GRF_OBS_DIM
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))  # contiguous, no gap
    assert GRF_LAYOUT["active"] == (97, 108) and GRF_ACTIONS[12] == "shot"
    assert spec.params == {"rewards": "scoring,checkpoints", "max_steps": 400}
    assert scenario_spec("grf:3_vs_1_with_keeper") == spec  # the academy_ prefix may be left out
    assert scenario_spec("grf:academy_corner").n_agents == GRF_SCENARIOS["academy_corner"][0] == 10


@pytest.mark.parametrize(("name", "params", "message"), [
    ("grf:academy_4_vs_4", {}, "unknown GRF scenario 'academy_4_vs_4'"),
    (SCENARIO, {"representation": "pixels"}, "unknown parameter(s) ['representation']"),
    (SCENARIO, {"max_steps": 401}, "'max_steps' must be <= 400"),
    (SCENARIO, {"rewards": "checkpoints"}, "'rewards' must be 'scoring' or 'scoring,checkpoints'"),
])
def test_spec_rejects_bad_names_and_parameters(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        scenario_spec(name, **params)


def test_make_env_says_how_to_install_when_gfootball_is_missing() -> None:
    if importlib.util.find_spec("gfootball") is not None:
        pytest.skip("gfootball is installed: the hint is not shown")
    from kdmarl_teacher.envs import make_env

    with pytest.raises(ImportError, match=r"scripts/setup_grf\.sh"):
        make_env(SCENARIO, num_envs=1, backend="inline")


# ---- the env (real gfootball) -------------------------------------------------------------------------------------
def _rollout(env, steps: int, seed: int = 11) -> dict[str, np.ndarray]:
    """Fixed pseudo-random actions for `steps` steps from reset(seed); everything the env returned, stacked."""
    rng = np.random.default_rng(0)
    obs, state = env.reset(seed=seed)
    out = {"obs": [obs.numpy().copy()], "rew": [], "done": [], "ret": [], "goal": []}
    for _ in range(steps):
        actions = torch.as_tensor(rng.integers(0, 19, size=(env.num_envs, env.n_agents)))
        obs, state, rew, done, info = env.step(actions)
        assert torch.equal(state, obs.reshape(env.num_envs, -1))
        out["obs"].append(obs.numpy().copy())
        out["rew"].append(rew.numpy().copy())
        out["done"].append(done.numpy().copy())
        out["ret"].append(np.where(done.numpy()[:, None], info["episode_returns"].numpy(), 0.0))
        out["goal"].append(np.where(done.numpy(), info["metrics"]["goal_diff"].numpy(), 0.0))
    return {k: np.stack(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def inline_run():
    from kdmarl_teacher.envs import make_env

    env = make_env(SCENARIO, num_envs=4, seed=11, backend="inline")
    try:
        yield env, _rollout(env, 60)
    finally:
        env.close()


@needs_grf
def test_contract_shapes_auto_reset_and_episode_figures(inline_run) -> None:
    env, run = inline_run
    assert env.available_actions() is None and env.obs_dim_max == GRF_OBS_DIM and env.n_agents == 3
    assert run["obs"].shape == (61, 4, 3, GRF_OBS_DIM) and run["obs"].dtype == np.float32
    first = run["obs"][0]
    # simple115v2 one-hots: the ball owner and the game mode are one-hot, each agent drives one player
    for name in ("ball_owned_team", "active", "game_mode"):
        s, e = GRF_LAYOUT[name]
        assert np.all(first[..., s:e].sum(-1) == 1), name
    assert run["done"].any(), "random play ends academy episodes (possession change, out of play) within 60 steps"
    # an episode's return is the sum of its per-step rewards (the step that ended it included)
    b = int(np.flatnonzero(run["done"].any(0))[0])
    t_end = int(np.flatnonzero(run["done"][:, b])[0])
    np.testing.assert_allclose(run["ret"][t_end, b], run["rew"][: t_end + 1, b].sum(0), rtol=0, atol=1e-5)
    assert set(np.unique(run["goal"])) <= {-1.0, 0.0, 1.0}


@needs_grf
def test_same_seeds_same_episodes_whatever_the_workers(inline_run) -> None:
    """One process with all 4 games, 2 worker processes with 2 games each, and 2 Ray actors: identical."""
    from kdmarl_teacher.envs import make_env

    _, expected = inline_run
    for kwargs in ({"backend": "process", "workers": 2}, {"backend": "ray", "workers": 2}):
        env = make_env(SCENARIO, num_envs=4, seed=11, **kwargs)
        try:
            got = _rollout(env, 60)
        finally:
            env.close()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{kwargs} {key}")


@needs_grf
def test_reset_from_seeds_is_the_same_episode_at_any_batch_position() -> None:
    from kdmarl_teacher.envs import make_env

    env = make_env(SCENARIO, num_envs=2, seed=0, backend="inline")
    try:
        rng = np.random.default_rng(3)
        acts = rng.integers(0, 19, size=(30, 3))
        runs = []
        for seeds, col in (([1234, 99], 0), ([99, 1234], 1)):
            obs, _ = env.reset_from_seeds(seeds)
            trace = [obs[col].numpy().copy()]
            for t in range(30):
                a = torch.zeros(2, 3, dtype=torch.long)
                a[col] = torch.as_tensor(acts[t])
                obs, _, rew, _, _ = env.step(a)
                trace.append(np.concatenate([obs[col].numpy().ravel(), rew[col].numpy()]))
            runs.append(trace)
        for x, y in zip(*runs, strict=True):
            np.testing.assert_array_equal(x, y)
        with pytest.raises(ValueError, match=r"actions must have shape \[num_envs, n_agents\] = \[2, 3\]"):
            env.step(torch.zeros(2, 2, dtype=torch.long))
        with pytest.raises(ValueError, match="0 <= action < 19"):
            env.step(torch.full((2, 3), 19))
    finally:
        env.close()


@needs_grf
def test_a_worker_that_fails_to_start_is_reported_with_its_traceback() -> None:
    from kdmarl_teacher.envs.grf import ProcessWorkers

    with pytest.raises(RuntimeError, match=r"GRF worker 0 \(start\)"):
        ProcessWorkers("grf:not_a_scenario", {}, [[0]])


def test_every_grf_scenario_shares_the_shipped_mappo_config() -> None:
    from kdmarl_teacher.algos.config import default_config_path, load_config

    path = default_config_path("grf:academy_corner")
    assert path is not None and path.name == "mappo_grf.yaml"
    cfg = load_config(path, ["scenario=grf:academy_corner", "env_params.workers=2"])
    assert cfg.num_envs == 50 and cfg.num_steps == 200 and cfg.total_steps == 25_000_000
    assert cfg.env_params == {"workers": 2}


@needs_grf
def test_the_teacher_env_and_the_bundle_side_game_play_the_same_episode_of_a_seed() -> None:
    """Seed s is one episode on both sides: the batched env's reset_from_seeds([s]) and the bundle evaluation's /
    ROS bridge's GrfGame.reset(s) give the same observations and rewards under the same actions."""
    from kdmarl_student.grf_game import GrfGame
    from kdmarl_teacher.envs import make_env

    env = make_env(SCENARIO, num_envs=1, seed=0, backend="inline")
    game = GrfGame(env.spec)
    try:
        obs, _ = env.reset_from_seeds([4321])
        single, _ = game.reset(4321)
        np.testing.assert_array_equal(obs[0].numpy(), np.stack([single[a] for a in env.agent_names]))
        rng = np.random.default_rng(5)
        for _ in range(25):
            a = rng.integers(0, 19, size=3)
            obs, _, rew, done, _ = env.step(torch.as_tensor(a[None]))
            single, rewards, terms, _, _ = game.step(dict(zip(env.agent_names, a.tolist(), strict=True)))
            np.testing.assert_array_equal(rew[0].numpy(), np.float32([rewards[n] for n in env.agent_names]))
            if bool(done[0]):  # the env already started its next episode; the game has ended this one
                assert all(terms.values())
                break
            np.testing.assert_array_equal(obs[0].numpy(), np.stack([single[n] for n in env.agent_names]))
    finally:
        env.close()
        game.close()


@needs_grf
def test_teacher_students_and_bundle_play_the_same_grf_episodes_offline_and_through_onnx(tmp_path) -> None:
    """Issue 27 §4 end to end on the real engine: a tiny MAPPO teacher, students of the shipped grf_3v1_mcu team,
    the exported bundle. The bundle evaluation (ONNX Runtime on GrfGame, the code path the ROS bridge steps) plays
    the distillation's torch evaluation episodes again: the same team returns and win rates for teacher and
    students on the same engine seeds, and the report says what a seed means on GRF."""
    import argparse
    import json

    from kdmarl_teacher.algos import mappo
    from kdmarl_teacher.algos.config import default_config_path, load_config
    from kdmarl_teacher.algos.teacher import load_teacher
    from kdmarl_teacher.distill.config import load_distill_config
    from kdmarl_teacher.distill.loop import distill
    from kdmarl_teacher.distill.profiles import CONFIG_DIR
    from kdmarl_teacher.evaluation.bundle import evaluate_bundle_report
    from kdmarl_teacher.export import cli as export

    small = ["num_envs=2", "num_steps=20", "total_steps=40", "update_epochs=1", "num_minibatches=1"]
    cfg = load_config(default_config_path(SCENARIO), [*small, "env_params.backend=inline"])
    teacher = mappo.train(cfg, tmp_path / "teacher", progress=False)
    dcfg = load_distill_config(CONFIG_DIR / "distill.yaml", ["team=grf_3v1_mcu", *small, "eval_episodes=3",
                                                             "eval_seed=1000"])
    report = distill(dcfg, load_teacher(teacher, "cpu"), tmp_path / "students", teacher_path=teacher, progress=False)
    assert [a["hardware"] for a in report["agents"]] == ["mcu_cortex_m7"] * 3
    assert all(a["fits_budget"] for a in report["agents"]) and report["min_flops_reduction"] > 1
    bundle = tmp_path / "bundle"
    parser = argparse.ArgumentParser()
    export.add_arguments(parser)
    assert export.run(parser.parse_args([str(tmp_path / "students"), "--out", str(bundle), "--eval-episodes", "3",
                                         "--envelope-episodes", "0", "--parity-random", "50",
                                         "--parity-recorded", "20", "--latency-calls", "20"])) == 0
    onnx = evaluate_bundle_report(bundle, episodes=3, seed_start=1000)
    assert onnx["seeding"].startswith("GRF episode s = engine seed s")
    on_disk = json.loads((tmp_path / "students" / "distill_report.json").read_text())
    for torch_key, onnx_label in (("teacher_eval", "teacher (ONNX)"), ("students_eval", "students (ONNX)")):
        res = onnx["results"][onnx_label]
        assert res["team_return"]["mean"] == pytest.approx(on_disk[torch_key]["team_return"], abs=1e-4), onnx_label
        assert res["win_rate"]["mean"] == pytest.approx(on_disk[torch_key]["win_rate"]), onnx_label
        assert set(res["metrics"]) == {"won", "goal_diff"}
