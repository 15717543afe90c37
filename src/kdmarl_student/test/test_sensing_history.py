"""History features of the sensing profile (issue 11): what ``apply_sensing(..., previous)`` appends, pinned in
numpy (the runtime's copy; the torch twin in kdmarl_teacher is tested equal to it)."""

from __future__ import annotations

import numpy as np
import pytest
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import apply_sensing, history_dim, history_plan, sensed_dim

LAYOUT = scenario_spec("simple_spread").agents[0].layout  # self_vel 0:2, self_pos 2:4, landmarks 4:10, ...


def _obs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 18)).astype(np.float32)


def test_delta_appends_the_difference_of_the_named_slices_after_the_features() -> None:
    sensing = {"slices": ["self_pos", "landmarks"], "history": {"mode": "delta", "slices": ["self_pos"]}}
    obs, prev = _obs(4), _obs(4, seed=1)
    out = apply_sensing(obs, LAYOUT, sensing, previous=prev)
    assert out.shape == (4, 2 + 6 + 2) == (4, sensed_dim(LAYOUT, sensing))
    np.testing.assert_array_equal(out[:, :8], obs[:, 2:10])
    np.testing.assert_array_equal(out[:, 8:], obs[:, 2:4] - prev[:, 2:4])
    assert out.dtype == np.float32


def test_previous_mode_appends_the_previous_values() -> None:
    sensing = {"slices": ["landmarks"], "history": {"mode": "previous", "slices": ["self_vel", "self_pos"]}}
    obs, prev = _obs(3), _obs(3, seed=2)
    out = apply_sensing(obs, LAYOUT, sensing, previous=prev)
    np.testing.assert_array_equal(out[:, 6:], prev[:, 0:4])
    assert history_dim(LAYOUT, sensing) == 4


def test_episode_start_uses_the_current_observation() -> None:
    """previous=None: delta features are 0, "previous" features repeat the current observation."""
    obs = _obs(1)[0]
    delta = apply_sensing(obs, LAYOUT, {"slices": ["self_pos"], "history": {"mode": "delta"}})
    np.testing.assert_array_equal(delta, np.concatenate([obs[2:4], np.zeros(2, np.float32)]))
    previous = apply_sensing(obs, LAYOUT, {"slices": ["self_pos"], "history": {"mode": "previous"}})
    np.testing.assert_array_equal(previous, np.concatenate([obs[2:4], obs[2:4]]))


def test_default_history_slices_are_the_selected_ones_without_nearest() -> None:
    sensing = {"slices": ["self_pos", "landmarks", "other_agents"], "nearest": {"landmarks": 2},
               "history": {"mode": "delta"}}
    mode, plan = history_plan(LAYOUT, sensing)
    assert mode == "delta" and [s for s, _, _ in plan] == ["self_pos", "other_agents"]
    assert sensed_dim(LAYOUT, sensing) == 2 + 4 + 4 + (2 + 4)
    assert history_plan(LAYOUT, {"slices": "all"}) == ("", []) and history_dim(LAYOUT, {"slices": "all"}) == 0


def test_history_slices_come_in_layout_order() -> None:
    sensing = {"slices": ["landmarks"], "history": {"slices": ["other_agents", "self_vel"]}}
    assert [s for s, _, _ in history_plan(LAYOUT, sensing)[1]] == ["self_vel", "other_agents"]


@pytest.mark.parametrize(("history", "words"), [
    ({"mode": "velocity"}, "history.mode"),
    ({"slices": ["lidar"]}, "history.slices"),
    ({"slices": "self_pos"}, "history.slices"),
    ({"slices": ["self_pos", "self_pos"]}, "history.slices"),
    ({"slices": []}, "selects no slice"),
    ({"window": 3}, "unknown field"),
    ("delta", "must be a mapping"),
])
def test_bad_history_fields_are_named(history: object, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace(".", r"\.")):
        sensed_dim(LAYOUT, {"slices": ["self_pos"], "history": history})


def test_previous_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="previous observation"):
        apply_sensing(_obs(2), LAYOUT, {"slices": ["self_pos"], "history": {}}, previous=_obs(3))


@pytest.mark.parametrize("sensing", [
    {"slices": ["self_vel", "landmarks"], "history": {"mode": "delta", "slices": ["self_pos"]}},
    {"slices": "all", "history": {"mode": "previous"}},
    {"slices": ["landmarks", "self_vel"], "history": {"slices": ["other_agents", "self_pos"]}},
    {"slices": ["self_pos", "landmarks"], "nearest": {"landmarks": 2}, "history": {"mode": "delta"}},
], ids=["delta", "previous_all", "unordered", "nearest"])
def test_the_runtime_selector_is_apply_sensing_bit_for_bit(sensing: dict) -> None:
    """The node's precomputed gather (kdmarl_student.observation) gives apply_sensing's numbers exactly."""
    from kdmarl_student.observation import make_selector

    select = make_selector(LAYOUT, sensing, 18)
    obs, prev = _obs(64, seed=4), _obs(64, seed=5)
    np.testing.assert_array_equal(select(obs, prev), apply_sensing(obs, LAYOUT, sensing, previous=prev))
    np.testing.assert_array_equal(select(obs), apply_sensing(obs, LAYOUT, sensing))
    np.testing.assert_array_equal(select(obs[3], prev[3]), apply_sensing(obs[3], LAYOUT, sensing, previous=prev[3]))
    assert select(obs, prev).shape == (64, sensed_dim(LAYOUT, sensing))
