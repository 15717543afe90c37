"""evaluate_bundle: the team from its bundle alone on the real mpe2 env, equal to an independent loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kdmarl_student.bundle_eval import evaluate_bundle, retention
from kdmarl_student.scenarios import make_mpe2_env, scenario_spec
from kdmarl_student.sensing import apply_sensing
from test_support_bundles import make_bundle, numpy_forward

SEEDS = [1000, 1001, 1002, 1003]


def _reference_returns(weights: dict, sensing: dict, scenario: str, seeds: list[int]) -> np.ndarray:
    """An independent loop: numpy forward passes of the same weights on the same mpe2 episodes."""
    spec = scenario_spec(scenario)
    env = make_mpe2_env(spec)
    layouts = {a.name: a.layout for a in spec.agents}
    out = []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        totals = dict.fromkeys(env.possible_agents, 0.0)
        while env.agents:
            actions = {}
            for name in env.agents:
                x = apply_sensing(obs[name][None], layouts[name], sensing.get(name, {"slices": "all"}))
                actions[name] = int(numpy_forward(weights[name], x).argmax())
            obs, rewards, _, _, _ = env.step(actions)
            for name, r in rewards.items():
                totals[name] += r
        out.append(np.mean(list(totals.values())))
    return np.array(out)


@pytest.mark.parametrize("scenario", ["simple_spread", "simple_speaker_listener"])
def test_bundle_returns_equal_an_independent_evaluation(tmp_path: Path, scenario: str) -> None:
    sensing = {"agent_2": {"slices": ["self_vel", "landmarks"], "nearest": {"landmarks": 1}}}
    bundle, weights, _ = make_bundle(tmp_path / "b", scenario=scenario, sensing=sensing)
    result = evaluate_bundle(bundle, SEEDS)
    np.testing.assert_allclose(result.returns, _reference_returns(weights, sensing, scenario, SEEDS), rtol=0, atol=1e-9)
    assert result.agent_returns.shape == (len(SEEDS), len(result.agents))
    assert evaluate_bundle(bundle, SEEDS).returns.tolist() == result.returns.tolist()  # deterministic
    expected_metrics = {"landmarks_covered", "collisions"} if scenario == "simple_spread" else {"goal_distance"}
    assert set(result.metrics) == expected_metrics
    summary = result.summary()
    assert summary["episodes"] == len(SEEDS) and summary["mean"] == float(np.mean(result.returns))
    # The one interval of the project (Student t), checked against scipy's own interval of the same sample.
    from scipy import stats

    low, high = stats.t.interval(0.95, len(SEEDS) - 1, loc=np.mean(result.returns), scale=stats.sem(result.returns))
    assert summary["ci95"] == pytest.approx((high - low) / 2, rel=1e-12)


def test_random_and_teacher_actors(tmp_path: Path) -> None:
    bundle, _, _ = make_bundle(tmp_path / "b")
    random_a = evaluate_bundle(bundle, SEEDS, actor="random")
    assert random_a.returns.tolist() == evaluate_bundle(bundle, SEEDS, actor="random").returns.tolist()
    teacher = evaluate_bundle(bundle, SEEDS, actor="teacher")
    assert teacher.returns.shape == (len(SEEDS),)
    sampled = evaluate_bundle(bundle, SEEDS, deterministic=False)
    assert sampled.returns.tolist() == evaluate_bundle(bundle, SEEDS, deterministic=False).returns.tolist()


def test_retention_formula() -> None:
    assert retention(-10.0, -8.0, -28.0) == pytest.approx(0.9)
    assert retention(None, -8.0, -28.0) is None
    assert retention(-10.0, -28.0, -28.0) is None
