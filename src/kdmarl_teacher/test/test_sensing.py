"""Sensing profiles: numpy transform (robots) == torch twin (distillation), and profiles really hide slices."""

import numpy as np
import pytest
import torch
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.sensing import apply_sensing, sensed_dim, sensing_mask
from kdmarl_teacher.distill.profiles import SENSING_PROFILES, apply_sensing_torch, resolve_sensing

SPREAD = scenario_spec("simple_spread", N=3)
LAYOUT = SPREAD.agents[0].layout  # self_vel 0:2, self_pos 2:4, landmarks 4:10, other_agents 10:14, comm 14:18


def _obs(batch: int = 64, dim: int = 18, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, 3, dim)).astype(np.float32)


def test_hand_written_layout_and_nearest_order() -> None:
    obs = np.arange(18, dtype=np.float32)
    obs[4:10] = [3.0, 3.0, 0.1, 0.0, -1.0, 1.0]  # landmark distances^2: 18, 0.01, 2
    out = apply_sensing(obs, LAYOUT, {"slices": ["self_pos", "landmarks"], "nearest": {"landmarks": 2}})
    np.testing.assert_array_equal(out, np.float32([2.0, 3.0, 0.1, 0.0, -1.0, 1.0]))  # layout order, nearest first
    assert sensed_dim(LAYOUT, {"nearest": {"landmarks": 1}}) == 14
    assert sensed_dim(LAYOUT, {}) == 18
    assert sum(sensing_mask(LAYOUT, {"slices": ["landmarks"]}, 18)) == 6


@pytest.mark.parametrize("name", sorted(SENSING_PROFILES))
def test_numpy_equals_torch(name: str) -> None:
    sensing = resolve_sensing(name, LAYOUT)
    obs = _obs(dim=20)  # zero-padded past the layout, as the batched envs pad to obs_dim_max
    obs[:5, :, 4:10] = 0.0  # ties in distance: the stable sort keeps the scenario's order in both twins
    ref = apply_sensing(obs, LAYOUT, sensing)
    got = apply_sensing_torch(torch.from_numpy(obs), LAYOUT, sensing).numpy()
    assert ref.shape == (64, 3, sensed_dim(LAYOUT, sensing))
    np.testing.assert_array_equal(ref, got)


def test_profile_that_hides_slices_changes_the_input() -> None:
    obs = _obs(batch=8)
    full = apply_sensing(obs, LAYOUT, resolve_sensing("full", LAYOUT))
    no_vel = apply_sensing(obs, LAYOUT, resolve_sensing("no_velocity", LAYOUT))
    no_others = apply_sensing(obs, LAYOUT, resolve_sensing("no_other_agents", LAYOUT))
    np.testing.assert_array_equal(full, obs)
    np.testing.assert_array_equal(no_vel, obs[..., 2:])
    np.testing.assert_array_equal(no_others, obs[..., :10])
    # A student's input no longer depends on a hidden slice.
    perturbed = obs.copy()
    perturbed[..., 0:2] += 5.0
    np.testing.assert_array_equal(apply_sensing(perturbed, LAYOUT, resolve_sensing("no_velocity", LAYOUT)), no_vel)


def test_real_mpe2_observation() -> None:
    from kdmarl_student.scenarios import make_mpe2_env

    env = make_mpe2_env(SPREAD)
    observations, _ = env.reset(seed=3)
    obs = observations["agent_0"]
    sensing = resolve_sensing("nearest1_landmark", LAYOUT)
    out = apply_sensing(obs, LAYOUT, sensing)
    rel = obs[4:10].reshape(3, 2)
    np.testing.assert_array_equal(out[4:6], rel[np.argmin((rel**2).sum(1))])


def test_invalid_profiles_raise() -> None:
    with pytest.raises(ValueError, match="slices"):
        apply_sensing(np.zeros(18), LAYOUT, {"slices": ["lidar"]})
    with pytest.raises(ValueError, match="nearest"):
        apply_sensing(np.zeros(18), LAYOUT, {"nearest": {"landmarks": 4}})
    with pytest.raises(ValueError, match="unknown sensing profile"):
        resolve_sensing("x-ray", LAYOUT)
    speaker = scenario_spec("simple_speaker_listener").agents[0]
    with pytest.raises(ValueError, match="nearest"):
        resolve_sensing("nearest1_landmark", speaker.layout)
