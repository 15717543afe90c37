"""Any PettingZoo ``ParallelEnv`` behind the batched interface, by stepping B copies in a Python loop.

Slower than the torch port (it runs at the wrapped env's own speed, B times over) but general: any
discrete-action ParallelEnv given as an import path (``mpe2.simple_spread_v3``, ``my_pkg.my_env_v0``)
can be trained on. The module must have ``parallel_env(**params)``.

Differences from the port, by necessity: ``reset(seed=s)`` resets copy b with ``seed=s + b`` (PettingZoo
seeds per env) and later episodes continue each copy's own RNG. ``info["metrics"]`` has the port's task
figures for the scenarios the port knows (read from the mpe2 worlds with the port's own definitions) and
is empty for other envs. Agents that leave mid-episode observe zeros and get reward 0 until every agent
is done.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch
from kdmarl_student.scenarios import SCENARIOS, AgentSpec, ScenarioSpec, scenario_spec

from .contract import adopt_spec, check_actions
from .core import Scenario, check_batch_args, read_mpe2_world, stack_worlds
from .registry import SCENARIO_CLASSES


def _generic_spec(path: str, params: dict[str, Any], env: Any) -> ScenarioSpec:
    """A spec read from the env's spaces (no named layout beyond one ``obs`` slice)."""
    agents = []
    for name in env.possible_agents:
        obs_space, act_space = env.observation_space(name), env.action_space(name)
        if not hasattr(act_space, "n"):
            raise ValueError(f"{path}: agent {name} has action space {act_space}, expected Discrete")
        obs_dim = int(np.prod(obs_space.shape))
        n = int(act_space.n)
        agents.append(AgentSpec(str(name), "agent", obs_dim, n, {"obs": (0, obs_dim)}, tuple(str(k) for k in range(n))))
    max_cycles = int(params.get("max_cycles", getattr(env.unwrapped, "max_cycles", 0)) or 0)
    return ScenarioSpec(path, dict(params), tuple(agents), sum(a.obs_dim for a in agents), max_cycles, path)


class PettingZooBatchedEnv:
    """B copies of a PettingZoo ParallelEnv with the interface of ``BatchedMPEEnv`` (see ARCHITECTURE.md)."""

    def __init__(
        self,
        path: str,
        num_envs: int,
        seed: int | None = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        **params: Any,
    ) -> None:
        check_batch_args(num_envs, dtype)
        try:
            module = importlib.import_module(path)
        except ImportError as exc:
            raise ValueError(f"cannot import scenario module {path!r}: expected an importable PettingZoo "
                             f"environment module with parallel_env() ({exc})") from exc
        if not hasattr(module, "parallel_env"):
            raise ValueError(f"module {path!r} has no parallel_env(): expected a PettingZoo environment module")
        known = path in {scenario_spec(name).mpe2_module for name in SCENARIOS}
        self._scenario: Scenario | None = None
        if known:
            # Validate and resolve the parameters exactly as the port does, and always use discrete actions.
            self.spec = scenario_spec(path, **params)
            kwargs = {**self.spec.params, "continuous_actions": False}
            self._scenario = SCENARIO_CLASSES[self.spec.name](self.spec)  # for info["metrics"]
        else:
            kwargs = dict(params)
        self.envs = [module.parallel_env(**kwargs) for _ in range(num_envs)]
        if not known:
            self.spec = _generic_spec(path, params, self.envs[0])
        adopt_spec(self, self.spec, num_envs, device, dtype)
        self._rng = np.random.default_rng(seed)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.episode_returns = np.zeros((num_envs, self.n_agents))
        self._obs = np.zeros((num_envs, self.n_agents, self.obs_dim_max))  # float64 until returned
        names = self._scenario.accumulated_metrics if self._scenario is not None else ()
        self._acc = {k: torch.zeros(num_envs, dtype=torch.float64) for k in names}  # per-episode metric sums
        self.reset(seed=seed)

    def _store_obs(self, b: int, obs: dict[str, np.ndarray]) -> None:
        self._obs[b] = 0.0
        for i, name in enumerate(self.agent_names):
            if name in obs:
                self._obs[b, i, : self.obs_dims[i]] = np.asarray(obs[name], dtype=np.float64).reshape(-1)

    def _out(self, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        o = torch.tensor(obs, dtype=self.dtype, device=self.device)  # [B, A, D], a copy: _obs is reused
        state = torch.cat([o[:, i, :d] for i, d in enumerate(self.obs_dims)], dim=1)  # [B, state_dim]
        return o, state

    def reset_from_mpe2_seeds(self, seeds: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy b is reset with ``seed=seeds[b]``; returns obs [B, A, D], state [B, state_dim]."""
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds (one per environment), got {len(seeds)}")
        for b, (env, s) in enumerate(zip(self.envs, seeds, strict=True)):
            obs, _ = env.reset(seed=s)
            self._store_obs(b, obs)
        self.t[:] = 0
        self.episode_returns[:] = 0
        for v in self._acc.values():
            v.zero_()
        return self._out(self._obs)

    def available_actions(self) -> None:
        """No action masks: every action of every agent is always available (the `BatchedEnv` contract)."""
        return None

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reset copy b with ``seed + b`` (or seeds drawn from this adapter's RNG when seed is None)."""
        if seed is None:
            seeds = self._rng.integers(0, 2**31 - 1, size=self.num_envs)
        else:
            seeds = np.arange(self.num_envs) + int(seed)
        return self.reset_from_mpe2_seeds(seeds)

    def _metrics(self) -> dict[str, torch.Tensor]:
        """The port's task figures [B], measured on the copies' current (pre-reset) mpe2 worlds."""
        if self._scenario is None:
            return {}
        world = stack_worlds([read_mpe2_world(self._scenario, e) for e in self.envs], torch.device("cpu"),
                             torch.float64)
        _, step_figures = self._scenario.reward(world)
        for k, v in step_figures.items():
            self._acc[k] += v
        metrics = {**self._scenario.last_step_metrics(world), **{k: v.clone() for k, v in self._acc.items()}}
        return {k: v.to(device=self.device, dtype=self.dtype) for k, v in metrics.items()}

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Same contract as ``BatchedMPEEnv.step``: obs, state, rewards [B, A], dones [B], info."""
        a = check_actions(self, actions).cpu().numpy()
        rewards = np.zeros((self.num_envs, self.n_agents))
        dones = np.zeros(self.num_envs, dtype=bool)
        for b, env in enumerate(self.envs):
            live = set(env.agents)
            act = {name: int(a[b, i]) for i, name in enumerate(self.agent_names) if name in live}
            obs, rew, term, trunc, _ = env.step(act)
            self._store_obs(b, obs)
            for i, name in enumerate(self.agent_names):
                rewards[b, i] = float(rew.get(name, 0.0))
            dones[b] = not env.agents or all(term.get(n, False) or trunc.get(n, False) for n in env.agents)
        self.t += 1
        self.episode_returns += rewards
        final_obs, final_state = self._out(self._obs)
        info: dict[str, Any] = {
            "episode_returns": torch.tensor(self.episode_returns, dtype=self.dtype, device=self.device),
            "metrics": self._metrics(),
            "final_obs": final_obs,
            "final_state": final_state,
        }
        for b in np.flatnonzero(dones):
            obs, _ = self.envs[b].reset()  # continues this copy's own RNG: reproducible from the first seed
            self._store_obs(b, obs)
            self.t[b] = 0
            self.episode_returns[b] = 0
            for v in self._acc.values():
                v[b] = 0
        obs_t, state_t = self._out(self._obs)
        rewards_t = torch.as_tensor(rewards, dtype=self.dtype, device=self.device)
        return obs_t, state_t, rewards_t, torch.as_tensor(dones, device=self.device), info
