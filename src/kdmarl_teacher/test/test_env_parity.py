"""Parity of the batched torch port with the real mpe2 environments (float64, same worlds, same actions).

Every step compares the port's observations, global state and rewards with mpe2's: the public float32
observations to 1e-6, and mpe2's float64 internals (``scenario.observation``, the world positions and
velocities) to 1e-9, which catches order-of-operations slips that float32 rounding would hide.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from kdmarl_student.scenarios import make_mpe2_env
from kdmarl_teacher.envs import BatchedMPEEnv, make_env

Policy = Callable[[list, np.random.Generator], np.ndarray]  # (mpe2 envs, rng) -> actions [B, A]


def random_policy(n_actions: tuple[int, ...]) -> Policy:
    def act(mpe2_envs: list, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, n, size=len(mpe2_envs)) for n in n_actions], axis=1)

    return act


def pile_up_policy(mpe2_envs: list, rng: np.random.Generator) -> np.ndarray:
    """Drive every agent toward the origin (a sustained pile-up), with 5 % random moves.

    The contact force is a stiff spring integrated explicitly (contact_force * dt^2 = 1), so agents pushed
    together bounce: about half of the env-steps have overlapping agents, the regime where float32 diverges.
    """
    actions = []
    for e in mpe2_envs:
        row = []
        for agent in e.unwrapped.world.agents:
            dx, dy = -agent.state.p_pos
            if rng.random() < 0.05:
                row.append(int(rng.integers(0, 5)))
            elif abs(dx) >= abs(dy):
                row.append(2 if dx > 0 else 1)
            else:
                row.append(4 if dy > 0 else 3)
        actions.append(row)
    return np.asarray(actions)


def assert_close(actual: np.ndarray, expected: np.ndarray, atol: float, what: str) -> None:
    """Max-abs-error check; one numpy reduction per call keeps 1 000-step comparisons cheap."""
    err = np.abs(np.asarray(actual, dtype=np.float64) - np.asarray(expected, dtype=np.float64))
    if not err.max(initial=0.0) <= atol:
        index = np.unravel_index(np.argmax(err), err.shape)
        raise AssertionError(f"{what}: max error {err.max():.3g} > {atol} at {index}: "
                             f"port {np.asarray(actual)[index]} vs mpe2 {np.asarray(expected)[index]}")


def assert_same_world(
    env: BatchedMPEEnv, mpe2_envs: list, obs: torch.Tensor, state: torch.Tensor, check_world: bool = True
) -> None:
    """Port obs [B, A, D] / state [B, S] vs mpe2's public state() and its float64 world.

    ``check_world=False`` after an auto-reset, when the port's world already holds the next episode.
    """
    expected_obs = np.zeros(tuple(obs.shape))
    for b, e in enumerate(mpe2_envs):
        raw = e.unwrapped
        for i, agent in enumerate(raw.world.agents):
            exact = raw.scenario.observation(agent, raw.world)  # float64, before mpe2's float32 cast
            expected_obs[b, i, : len(exact)] = exact  # zero padding beyond the agent's own width
    assert_close(obs.numpy(), expected_obs, 1e-9, "observations (float64)")
    public_state = np.stack([e.unwrapped.state() for e in mpe2_envs])  # float32, mpe2's global state
    assert_close(state.numpy(), public_state, 1e-6, "global state vs mpe2 state()")
    if check_world:
        worlds = [e.unwrapped.world for e in mpe2_envs]
        pos = np.stack([[a.state.p_pos for a in w.agents] for w in worlds])
        vel = np.stack([[a.state.p_vel for a in w.agents] for w in worlds])
        assert_close(env.world.pos.numpy(), pos, 1e-9, "positions")
        assert_close(env.world.vel.numpy(), vel, 1e-9, "velocities")


def run_parity(
    name: str, params: dict, num_envs: int, steps: int, *, policy: Policy | None = None, seed: int = 0
) -> dict[str, float]:
    """Step the port and num_envs real mpe2 envs side by side; returns a few figures about the run."""
    env = make_env(name, num_envs=num_envs, seed=seed, dtype=torch.float64, **params)
    policy = policy or random_policy(env.n_actions)
    rng = np.random.default_rng(seed)
    mpe2_envs = [make_mpe2_env(env.spec) for _ in range(num_envs)]
    next_seed = 1000 * (seed + 1)

    def reset_both() -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal next_seed
        seeds = list(range(next_seed, next_seed + num_envs))
        next_seed += num_envs
        for e, s in zip(mpe2_envs, seeds, strict=True):
            e.reset(seed=s)
        return env.reset_from_mpe2_seeds(seeds)

    obs, state = reset_both()
    assert_same_world(env, mpe2_envs, obs, state)
    max_reward_err, contact_steps, episodes = 0.0, 0, 0
    for _ in range(steps):
        actions = policy(mpe2_envs, rng)  # [B, A]
        obs, state, rewards, dones, info = env.step(torch.as_tensor(actions))
        mpe2_done = []
        for b, e in enumerate(mpe2_envs):
            _, rew, term, trunc, _ = e.step({n: int(actions[b, i]) for i, n in enumerate(env.agent_names)})
            mpe2_rewards = np.array([rew[n] for n in env.agent_names])
            max_reward_err = max(max_reward_err, float(np.abs(rewards[b].numpy() - mpe2_rewards).max()))
            mpe2_done.append(all(term[n] or trunc[n] for n in env.agent_names))
        assert dones.tolist() == mpe2_done
        # The state this step produced, before any auto-reset, is final_obs / final_state.
        assert_same_world(env, mpe2_envs, info["final_obs"], info["final_state"], check_world=not dones.any())
        if not dones.any():
            assert torch.equal(obs, info["final_obs"])
        if name == "simple_spread":  # env-steps in which some pair of agents overlaps (mpe2's own test)
            for e in mpe2_envs:
                agents, scenario = e.unwrapped.world.agents, e.unwrapped.scenario
                contact_steps += any(scenario.is_collision(a, o) for a in agents for o in agents if a is not o)
        if dones.any():
            episodes += 1
            obs, state = reset_both()
            assert_same_world(env, mpe2_envs, obs, state)
    assert max_reward_err < 1e-9, max_reward_err
    return {"max_reward_err": max_reward_err, "episodes": episodes, "contact_steps": contact_steps}


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("simple_spread", {}),
        ("simple_spread", {"N": 5, "local_ratio": 0.25, "num_agent_neighbors": 2, "num_landmark_neighbors": 3}),
        ("simple_spread", {"N": 2, "num_agent_neighbors": 3, "num_landmark_neighbors": 4}),  # padded slots
        ("simple_speaker_listener", {}),
        ("simple_reference", {"local_ratio": 0.3}),
    ],
)
def test_random_actions_match_mpe2(name: str, params: dict) -> None:
    """4 envs x 250 steps = 1 000 random-action steps (40 episodes, each from an mpe2-seeded world)."""
    figures = run_parity(name, params, num_envs=4, steps=250)
    assert figures["episodes"] == 10


def test_pile_up_matches_mpe2() -> None:
    """Agents driven into each other for hundreds of steps: the stiff contact forces must still agree."""
    figures = run_parity(
        "simple_spread", {"N": 5, "max_cycles": 300}, num_envs=2, steps=600, policy=pile_up_policy, seed=3
    )
    assert figures["episodes"] == 2
    assert figures["contact_steps"] > 0.4 * 2 * 600, figures  # agents overlapped in much of the run


def test_set_world_from_mpe2_mid_episode() -> None:
    """Copy mpe2 worlds mid-episode (utterances, goals, step counter) and continue in lockstep."""
    env = make_env("simple_reference", num_envs=2, dtype=torch.float64)
    rng = np.random.default_rng(7)
    mpe2_envs = [make_mpe2_env(env.spec) for _ in range(2)]
    for k, e in enumerate(mpe2_envs):
        e.reset(seed=50 + k)
        for _ in range(10):
            e.step({n: int(rng.integers(0, 50)) for n in env.agent_names})
    obs, state = env.set_world_from_mpe2([0, 1], mpe2_envs)
    assert env.world.comm.abs().sum() > 0  # the copied utterances are observed
    assert_same_world(env, mpe2_envs, obs, state)
    for t in range(15):  # the copied step counter (10) makes both end at max_cycles = 25
        actions = rng.integers(0, 50, size=(2, 2))
        obs, state, rewards, dones, info = env.step(torch.as_tensor(actions))
        for b, e in enumerate(mpe2_envs):
            _, rew, _, trunc, _ = e.step({n: int(actions[b, i]) for i, n in enumerate(env.agent_names)})
            np.testing.assert_allclose(rewards[b].numpy(), [rew[n] for n in env.agent_names], rtol=0, atol=1e-9)
            np.testing.assert_allclose(info["final_state"][b].numpy(), e.unwrapped.state(), rtol=0, atol=1e-6)
            assert bool(dones[b]) == all(trunc.values()) == (t == 14)


def test_metrics_match_mpe2_benchmark_data() -> None:
    """landmarks_covered / collisions / goal_distance against mpe2's own benchmark_data."""
    from mpe2 import simple_speaker_listener_v4, simple_spread_v3

    env = make_env("simple_spread", num_envs=2, dtype=torch.float64, N=4)
    mpe2_envs = [simple_spread_v3.parallel_env(N=4, benchmark_data=True) for _ in range(2)]
    for k, e in enumerate(mpe2_envs):
        e.reset(seed=90 + k)
    env.reset_from_mpe2_seeds([90, 91])
    rng = np.random.default_rng(1)
    pair_counts = np.zeros(2)
    occupied = np.zeros(2)
    for _ in range(25):
        actions = pile_up_policy(mpe2_envs, rng)
        _, _, _, dones, info = env.step(torch.as_tensor(actions))
        for b, e in enumerate(mpe2_envs):
            *_, infos = e.step({n: int(actions[b, i]) for i, n in enumerate(env.agent_names)})
            data = [infos[n]["benchmark_data"] for n in env.agent_names]  # (rew, collisions, min_dists, occupied)
            pair_counts[b] += sum(d[1] for d in data) / 2  # each pair is counted once per agent
            occupied[b] = data[0][3]
    assert dones.all()
    assert pair_counts.sum() > 0
    np.testing.assert_array_equal(info["metrics"]["collisions"].numpy(), pair_counts)
    np.testing.assert_array_equal(info["metrics"]["landmarks_covered"].numpy(), occupied)

    env = make_env("simple_speaker_listener", num_envs=3, dtype=torch.float64)
    mpe2_envs = [simple_speaker_listener_v4.parallel_env(benchmark_data=True) for _ in range(3)]
    for k, e in enumerate(mpe2_envs):
        e.reset(seed=5 + k)
    env.reset_from_mpe2_seeds([5, 6, 7])
    for _ in range(25):
        actions = np.stack([rng.integers(0, 3, size=3), rng.integers(0, 5, size=3)], axis=1)
        _, _, _, dones, info = env.step(torch.as_tensor(actions))
        last = [e.step({"speaker_0": int(actions[b, 0]), "listener_0": int(actions[b, 1])})[4]
                for b, e in enumerate(mpe2_envs)]
    assert dones.all()
    expected = [np.sqrt(-infos["listener_0"]["benchmark_data"]) for infos in last]
    np.testing.assert_allclose(info["metrics"]["goal_distance"].numpy(), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", ["simple_spread", "simple_speaker_listener", "simple_reference"])
def test_reset_from_mpe2_seeds_is_mpe2_reset(name: str) -> None:
    env = make_env(name, num_envs=3, dtype=torch.float64)
    seeds = [0, 1, 123456]
    _, state = env.reset_from_mpe2_seeds(seeds)
    for b, s in enumerate(seeds):
        e = make_mpe2_env(env.spec)
        e.reset(seed=s)
        np.testing.assert_allclose(state[b].numpy(), e.state(), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(env.world.landmark_pos[b].numpy(),
                                      np.stack([lm.state.p_pos for lm in e.unwrapped.world.landmarks]))
        np.testing.assert_array_equal(env.world.pos[b].numpy(),
                                      np.stack([a.state.p_pos for a in e.unwrapped.world.agents]))


def test_pettingzoo_adapter_matches_port() -> None:
    """The adapter (B real mpe2 copies) and the port give the same rewards from the same initial worlds."""
    for name, params in [("simple_spread", {"N": 3}), ("simple_speaker_listener", {})]:
        adapter = make_env(f"mpe2.{make_env(name).spec.mpe2_module.split('.')[-1]}", num_envs=3, seed=20,
                           dtype=torch.float64, **params)
        port = make_env(name, num_envs=3, dtype=torch.float64, **params)
        a_obs, a_state = adapter._out(adapter._obs)
        p_obs, p_state = port.reset_from_mpe2_seeds([20, 21, 22])  # adapter.reset(seed=20): copy b gets 20 + b
        np.testing.assert_allclose(p_state.numpy(), a_state.numpy(), rtol=0, atol=1e-6)
        assert a_obs.shape == p_obs.shape == (3, port.n_agents, port.obs_dim_max)
        rng = np.random.default_rng(4)
        for t in range(50):  # two episodes; the second starts from the adapter's own RNG, copied over
            actions = torch.as_tensor(np.stack([rng.integers(0, n, size=3) for n in port.n_actions], axis=1))
            a_obs, a_state, a_rew, a_done, a_info = adapter.step(actions)
            p_obs, p_state, p_rew, p_done, p_info = port.step(actions)
            np.testing.assert_allclose(p_rew.numpy(), a_rew.numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(p_info["final_obs"].numpy(), a_info["final_obs"].numpy(), rtol=0, atol=1e-6)
            assert torch.equal(p_done, a_done)
            if t == 24:
                torch.testing.assert_close(p_info["episode_returns"], a_info["episode_returns"], rtol=0, atol=1e-9)
                assert set(a_info["metrics"]) == set(p_info["metrics"])
                for key, value in p_info["metrics"].items():
                    torch.testing.assert_close(value, a_info["metrics"][key], rtol=0, atol=1e-9)
                port.set_world_from_mpe2(list(range(3)), adapter.envs)
                assert port.t.tolist() == [0, 0, 0]
