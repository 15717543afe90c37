"""The batched env contract (`kdmarl_teacher.envs.contract.BatchedEnv`): one API test over every env, then shapes,
dtypes, bad input, seeds, auto-reset and returns in detail."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kdmarl_student.scenarios import scenario_spec
from kdmarl_teacher.envs import BatchedEnv, PettingZooBatchedEnv, make_env


def random_actions(env, gen: torch.Generator) -> torch.Tensor:
    """Uniform actions [B, A], each agent within its own n_actions."""
    return torch.stack([torch.randint(0, n, (env.num_envs,), generator=gen) for n in env.n_actions], dim=1)


# Every environment `make_env` builds: the three MPE scenarios of the torch port, SMAX (jax), the PettingZoo adapter.
CONTRACT_ENVS = [("simple_spread", {}), ("simple_speaker_listener", {}), ("simple_reference", {}), ("smax:3m", {}),
                 ("mpe2.simple_spread_v3", {"max_cycles": 6})]


def available_random_actions(env: BatchedEnv, gen: torch.Generator) -> torch.Tensor:
    """Uniform actions [B, N] among each agent's available ones (all of its n_actions when there are no masks)."""
    mask = env.available_actions()
    if mask is None:
        return random_actions(env, gen)
    scores = torch.rand(mask.shape, generator=gen).masked_fill(~mask, -1.0)
    return scores.argmax(-1)


@pytest.mark.parametrize(("name", "params"), CONTRACT_ENVS)
def test_every_env_keeps_the_contract(name: str, params: dict) -> None:
    """In the spirit of PettingZoo's parallel_api_test, for the batched contract: attributes, reset and step
    shapes and dtypes, masks (None, or bool rows with one available action), step counter and auto-reset,
    episode returns equal to the summed rewards, and seeding."""
    if name.startswith("smax:"):
        pytest.importorskip("jaxmarl")
    B = 3
    env = make_env(name, num_envs=B, seed=0, **params)
    assert isinstance(env, BatchedEnv)
    N, D, S = env.n_agents, env.obs_dim_max, env.state_dim
    assert env.num_envs == B and len(env.n_actions) == N == env.spec.n_agents and env.spec.obs_dim_max == D
    obs, state = env.reset(seed=7)
    assert obs.shape == (B, N, D) and state.shape == (B, S) and obs.dtype == state.dtype
    again, _ = env.reset(seed=7)
    assert torch.equal(obs, again)  # a seed fixes the first observation
    gen = torch.Generator().manual_seed(0)
    summed = torch.zeros(B, N, dtype=torch.float64)
    ended = 0
    for _ in range(2 * env.spec.max_cycles + 2):
        mask = env.available_actions()
        if mask is not None:
            assert mask.dtype == torch.bool and mask.shape == (B, N, max(env.n_actions))
            assert bool(mask.any(-1).all())  # every agent can always do something
        steps_before = torch.as_tensor(env.t).clone()
        actions = available_random_actions(env, gen)
        obs, state, rewards, dones, info = env.step(actions)
        assert obs.shape == (B, N, D) and state.shape == (B, S) and rewards.shape == (B, N)
        assert dones.dtype == torch.bool and dones.shape == (B,) and bool(torch.isfinite(rewards).all())
        assert info["episode_returns"].shape == (B, N) and all(v.shape == (B,) for v in info["metrics"].values())
        summed += rewards.double()
        steps = torch.as_tensor(env.t)
        assert torch.equal(steps[~dones], steps_before[~dones] + 1) and not steps[dones].any()  # auto-reset
        assert int(steps.max()) <= env.spec.max_cycles
        if bool(dones.any()):
            torch.testing.assert_close(info["episode_returns"][dones].double(), summed[dones], rtol=1e-5, atol=1e-5)
            summed[dones] = 0.0
            ended += int(dones.sum())
    assert ended >= B  # every environment finished at least one episode (time limit or battle end)


@pytest.mark.parametrize(
    ("name", "params", "obs_dims", "n_actions"),
    [
        ("simple_spread", {}, (18, 18, 18), (5, 5, 5)),
        ("simple_spread", {"N": 6, "num_agent_neighbors": 2, "num_landmark_neighbors": 3}, (18,) * 6, (5,) * 6),
        ("simple_speaker_listener", {}, (3, 11), (3, 5)),
        ("simple_reference", {}, (21, 21), (50, 50)),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(name: str, params: dict, obs_dims: tuple, n_actions: tuple, dtype: torch.dtype) -> None:
    B = 5
    env = make_env(name, num_envs=B, seed=0, dtype=dtype, **params)
    assert env.obs_dims == obs_dims and env.n_actions == n_actions
    assert env.n_agents == len(obs_dims) and env.obs_dim_max == max(obs_dims) and env.state_dim == sum(obs_dims)
    assert env.spec == scenario_spec(name, **params)
    obs, state = env.reset()
    assert obs.shape == (B, env.n_agents, env.obs_dim_max) and obs.dtype == dtype
    assert state.shape == (B, env.state_dim) and state.dtype == dtype
    gen = torch.Generator().manual_seed(0)
    obs, state, rewards, dones, info = env.step(random_actions(env, gen))
    assert obs.shape == (B, env.n_agents, env.obs_dim_max) and rewards.shape == (B, env.n_agents)
    assert rewards.dtype == dtype and dones.dtype == torch.bool and dones.shape == (B,)
    assert info["episode_returns"].shape == (B, env.n_agents)
    # the global state is the concatenation of the unpadded per-agent observations
    torch.testing.assert_close(state, torch.cat([obs[:, i, :d] for i, d in enumerate(obs_dims)], dim=1))
    for i, d in enumerate(obs_dims):
        assert not obs[:, i, d:].any()
    expected_metrics = {"simple_spread": {"landmarks_covered", "collisions"}}.get(name, {"goal_distance"})
    assert set(info["metrics"]) == expected_metrics
    assert all(v.shape == (B,) for v in info["metrics"].values())


def test_float32_tracks_float64_over_an_episode() -> None:
    """Training runs in float32: over one 25-step episode it stays close to the float64 (= mpe2) run."""
    envs = {dt: make_env("simple_spread", num_envs=64, seed=0, dtype=dt) for dt in (torch.float32, torch.float64)}
    seeds = list(range(64))
    for env in envs.values():
        env.reset_from_mpe2_seeds(seeds)
    gen = torch.Generator().manual_seed(1)
    for _ in range(25):
        actions = random_actions(envs[torch.float64], gen)
        out32 = envs[torch.float32].step(actions)
        out64 = envs[torch.float64].step(actions)
        assert (out32[3] == out64[3]).all()
    torch.testing.assert_close(out32[4]["final_obs"].double(), out64[4]["final_obs"], rtol=0, atol=2e-4)


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("simple_sprad", {}, "expected one of simple_spread, simple_speaker_listener, simple_reference"),
        ("simple_spread", {"n_agents": 3}, r"unknown parameter\(s\) \['n_agents'\].*'N'"),
        ("simple_spread", {"N": 0}, "'N' must be an int >= 1"),
        ("simple_spread", {"num_agent_neighbors": 0}, "'num_agent_neighbors' must be an int >= 1 or None"),
        ("simple_reference", {"local_ratio": 1.5}, r"'local_ratio' must be a number in \[0, 1\]"),
        ("simple_speaker_listener", {"local_ratio": 0.5}, r"expected a subset of \['max_cycles'\]"),
        ("mpe2.no_such_env_v0", {}, "expected an importable PettingZoo environment module"),
        ("mpe2.simple_spread_v3", {"n": 3}, r"unknown parameter\(s\) \['n'\]"),
    ],
)
def test_bad_scenarios_and_params(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_env(name, num_envs=2, **params)


@pytest.mark.parametrize("adapter", [False, True])
def test_bad_actions(adapter: bool) -> None:
    env = make_env("mpe2.simple_speaker_listener_v4" if adapter else "simple_speaker_listener", num_envs=3)
    good = torch.zeros(3, 2, dtype=torch.long)
    env.step(good)
    with pytest.raises(ValueError, match=r"shape \[num_envs, n_agents\] = \[3, 2\], got \[3\]"):
        env.step(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \[num_envs, n_agents\] = \[3, 2\], got \[2, 3\]"):
        env.step(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer action indices"):
        env.step(torch.zeros(3, 2))
    bad = good.clone()
    bad[1, 0] = 3  # the speaker has 3 words; 3 would be a valid listener move
    expected = r"action 3 of agent speaker_0 in env 1 is out of range: expected 0 <= action < 3"
    with pytest.raises(ValueError, match=expected):
        env.step(bad)
    bad = good.clone()
    bad[2, 1] = -1
    with pytest.raises(ValueError, match=r"agent listener_0 in env 2 .*expected 0 <= action < 5"):
        env.step(bad)
    bad[2, 1] = 3
    env.step(bad)  # numpy / lists of ints are accepted too
    env.step(np.zeros((3, 2), dtype=np.int64))


@pytest.mark.parametrize("name", ["simple_spread", "simple_speaker_listener", "simple_reference"])
def test_seeds_make_runs_reproducible(name: str) -> None:
    def rollout(seed: int, reset_seed: int | None = None) -> list[torch.Tensor]:
        env = make_env(name, num_envs=8, seed=seed, max_cycles=10)
        out = list(env.reset(seed=reset_seed))
        gen = torch.Generator().manual_seed(123)
        for _ in range(25):  # crosses two auto-resets
            obs, state, rewards, _, _ = env.step(random_actions(env, gen))
            out += [obs, state, rewards]
        return out

    a, b, c = rollout(0), rollout(0), rollout(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    # reset(seed=s) reseeds: the constructor's seed no longer matters
    assert all(torch.equal(x, y) for x, y in zip(rollout(5, reset_seed=9), rollout(6, reset_seed=9), strict=True))


def test_auto_reset_and_episode_returns() -> None:
    env = make_env("simple_spread", num_envs=4, seed=0, dtype=torch.float64, max_cycles=5)
    obs, _ = env.reset()
    gen = torch.Generator().manual_seed(0)
    summed = torch.zeros(4, 3, dtype=torch.float64)
    for t in range(1, 13):
        obs, state, rewards, dones, info = env.step(random_actions(env, gen))
        summed += rewards
        assert dones.tolist() == [t % 5 == 0] * 4
        if t % 5 == 0:
            torch.testing.assert_close(info["episode_returns"], summed, rtol=0, atol=1e-12)
            summed.zero_()
            # obs/state already belong to the next episode: agents at rest, positions in [-1, 1]
            assert not obs[:, :, 0:2].any() and obs[:, :, 2:4].abs().max() <= 1
            assert not torch.equal(obs, info["final_obs"])
            assert (env.t == 0).all() and not env.episode_returns.any()
            assert info["metrics"]["collisions"].ge(0).all()
        else:
            assert torch.equal(obs, info["final_obs"]) and torch.equal(state, info["final_state"])


def test_pettingzoo_adapter_generic_env() -> None:
    """A ParallelEnv the port does not know (mpe2.simple_push_v3) runs through the adapter."""
    env = make_env("mpe2.simple_push_v3", num_envs=2, seed=0, max_cycles=4)
    assert isinstance(env, PettingZooBatchedEnv)
    assert env.agent_names == ("adversary_0", "agent_0") and env.obs_dims == (8, 19) and env.n_actions == (5, 5)
    obs, state = env.reset(seed=3)
    assert obs.shape == (2, 2, 19) and state.shape == (2, 27)
    gen = torch.Generator().manual_seed(0)
    total = torch.zeros(2, 2)
    for t in range(1, 6):
        obs, state, rewards, dones, info = env.step(random_actions(env, gen))
        total += rewards
        assert dones.tolist() == [t == 4] * 2
        if t == 4:
            torch.testing.assert_close(info["episode_returns"], total)
            assert info["metrics"] == {}  # task figures only for the scenarios the port defines
