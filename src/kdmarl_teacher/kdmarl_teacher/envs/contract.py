"""The batched-environment contract, as code: what every trainer, distillation recipe and evaluation may rely on.

`make_env` returns a `BatchedEnv`: B environments of one scenario stepped as tensors, agents in the spec's order,
observations zero-padded to the widest agent. Episodes auto-reset: the step that ends an episode returns the
first observation of the next one (its `done` is True and `info["episode_returns"]` holds the ended episode's
per-agent returns). `available_actions()` is the one way to ask for action masks: None for environments where
every action is always available (the MPE port, the PettingZoo adapter), bool [B, N, A] per step where the game
forbids some (SMAX). `test/test_env_api.py` checks every environment against this.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from kdmarl_student.scenarios import ScenarioSpec


@runtime_checkable
class BatchedEnv(Protocol):
    """B environments of one scenario as tensors (see the module docstring)."""

    spec: ScenarioSpec  # the scenario: agents, layouts, action meanings, max_cycles (kdmarl_student.scenarios)
    num_envs: int  # B
    n_agents: int  # N
    agent_names: tuple[str, ...]  # the spec's agents, in order
    n_actions: tuple[int, ...]  # per agent; actions are long indices in [0, n_actions[i])
    obs_dims: tuple[int, ...]  # per agent, before padding
    obs_dim_max: int  # D: observations are [B, N, D], zero-padded per agent
    state_dim: int  # S: the global state [B, S] a centralized critic or mixer sees
    device: torch.device
    max_cycles: int  # the episode's step limit (SMAX: max_steps)
    t: Any  # long [B] (torch, or numpy for the PettingZoo adapter): steps taken in each current episode

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """All B environments from `seed` -> (obs [B, N, D], state [B, S])."""

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                                   dict[str, Any]]:
        """actions long [B, N] -> (obs [B, N, D], state [B, S], rewards [B, N], done bool [B], info) with
        info["episode_returns"] [B, N] (of the episodes that ended where done) and info["metrics"] {name: [B]}."""

    def available_actions(self) -> torch.Tensor | None:
        """bool [B, N, A] of the current state (every row keeps one True), or None: every action available."""


def adopt_spec(env: Any, spec: ScenarioSpec, num_envs: int, device: str | torch.device, dtype: torch.dtype) -> None:
    """Set the contract's attributes every environment derives from its scenario spec and batch arguments."""
    env.spec, env.num_envs, env.device, env.dtype = spec, num_envs, torch.device(device), dtype
    env.agent_names, env.n_agents = spec.agent_names, spec.n_agents
    env.obs_dims, env.n_actions = spec.obs_dims, spec.n_actions
    env.obs_dim_max, env.state_dim, env.max_cycles = spec.obs_dim_max, spec.state_dim, spec.max_cycles


@functools.lru_cache(maxsize=16)
def _action_limits(n_actions: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """long [N] on ``device``, made once per (env kind, device): ``check_actions`` runs on every step."""
    return torch.tensor(n_actions, device=device)


def check_actions(env: BatchedEnv, actions: Any) -> torch.Tensor:
    """``actions`` as the contract takes them: long [B, N] (on the device they came on), each in ``[0, n_actions[i])``.

    One check for every environment, so a trainer's bad batch reads the same whichever env it hits: the shape, an
    integer dtype (a float or bool tensor is a bug upstream, not something to round), and the first out-of-range
    action with its agent and env index.
    """
    if not isinstance(actions, torch.Tensor):
        actions = torch.as_tensor(np.asarray(actions))
    expected = (env.num_envs, env.n_agents)
    if tuple(actions.shape) != expected:
        raise ValueError(f"actions must have shape [num_envs, n_agents] = {list(expected)}, got {list(actions.shape)}")
    if actions.dtype.is_floating_point or actions.dtype.is_complex or actions.dtype == torch.bool:
        raise ValueError(f"actions must be integer action indices (torch.long), got dtype {actions.dtype}")
    actions = actions.detach().to(torch.long)
    bad = (actions < 0) | (actions >= _action_limits(tuple(env.n_actions), actions.device))  # [B, N]
    if bool(bad.any()):
        b, i = (int(x) for x in bad.nonzero()[0])
        raise ValueError(f"action {int(actions[b, i])} of agent {env.agent_names[i]} in env {b} is out of range: "
                         f"expected 0 <= action < {env.n_actions[i]} (n_actions per agent: "
                         f"{dict(zip(env.agent_names, env.n_actions, strict=True))})")
    return actions
