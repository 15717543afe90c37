"""Episode runners: one episode per environment from fixed seeds for a policy (the teacher greedy or sampled,
uniform random, or any callable such as a student team). `kdmarl evaluate`,
the QMIX teacher's in-training evaluation and distillation reports all run their episodes here, so their
figures agree."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import torch

from kdmarl_teacher import envs
from kdmarl_teacher.core.networks import Actor, actor_inputs_all, apply_action_mask, sample_actions


class Teacher(Protocol):
    """What the episode runners need of a teacher (`algos.teacher.Teacher` is one): its actor (logits or
    utilities; argmax = greedy), its run config (scenario, env_params) and `act`."""

    actor: Actor
    config: dict

    def act(self, obs: torch.Tensor, deterministic: bool = True, generator: torch.Generator | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor: ...


def make_eval_env(teacher: Teacher, episodes: int, device: str | torch.device, dtype: torch.dtype = torch.float64
                  ) -> Any:
    """The evaluation env of every teacher-side figure (`kdmarl evaluate`, distill's report): `episodes`
    environments of the scenario the teacher was trained on, float64 (see the module docstring)."""
    params = dict(teacher.config.get("env_params", {}))
    return envs.make_env(teacher.config["scenario"], num_envs=episodes, seed=0, device=device, dtype=dtype, **params)


@torch.no_grad()
def run_episodes(env: Any, policy: str | Callable[[torch.Tensor], torch.Tensor], seeds: list[int],
                 teacher: Teacher | None, generator: torch.Generator) -> dict[str, Any]:
    """One episode per environment from the mpe2 seeds; policy in {"deterministic", "stochastic", "random"}
    (the teacher's or uniform), or a callable obs [E, N, obs_dim_max] float32 -> actions long [E, N] (students).

    Returns team returns [E], per-agent returns [E, N] and the task metrics [E] of the episodes.
    """
    if env.available_actions() is not None or hasattr(env, "reset_from_seeds"):
        # SMAX (masks) and GRF (no masks): seeded per environment, and episodes end at different steps
        return run_masked_episodes(env, policy, seeds, teacher, generator)
    if hasattr(env, "reset_from_mpe2_seeds"):
        obs, _state = env.reset_from_mpe2_seeds(seeds)  # obs [E, N, obs_dim_max]
    else:  # an env without mpe2 seeding (e.g. the PettingZoo adapter): reproducible, but not mpe2's worlds
        obs, _state = env.reset(seed=seeds[0])
    E, N = env.num_envs, env.n_agents
    n_actions = torch.tensor(env.n_actions, device=obs.device)  # [N]
    recurrent = teacher is not None and teacher.actor.recurrent
    h = teacher.actor.initial_state(E * N) if recurrent else None
    while True:
        if callable(policy):
            actions = policy(obs.float())
        elif policy == "random":
            u = torch.rand(E, N, generator=generator, device=obs.device)
            actions = (u * n_actions).long().clamp(max=n_actions - 1)  # uniform over each agent's valid actions
        elif recurrent:  # carry the GRU state through the episode (all E episodes start and end together)
            logits, _, h = teacher.actor.step(actor_inputs_all(obs.float()).reshape(E * N, -1), h)
            logits = logits.view(E, N, -1)
            actions = logits.argmax(-1) if policy == "deterministic" else sample_actions(logits, generator)
        else:
            actions = teacher.act(obs.float(), deterministic=policy == "deterministic", generator=generator)
        obs, _state, _rewards, dones, info = env.step(actions)
        if bool(dones.all()):
            break
        if bool(dones.any()):
            raise RuntimeError("environments of one evaluation batch ended at different steps")
    per_agent = info["episode_returns"].double()  # [E, N]
    return {"team": per_agent.mean(-1), "per_agent": per_agent,
            "metrics": {k: v.double() for k, v in info.get("metrics", {}).items()}}


@torch.no_grad()
def run_masked_episodes(env: Any, policy: str | Callable[[torch.Tensor], torch.Tensor], seeds: list[int],
                        teacher: Teacher | None, generator: torch.Generator) -> dict[str, Any]:
    """`run_episodes` for an env whose episodes end at different steps (SMAX, with per-step action masks; GRF,
    whose ``available_actions()`` is None: every action allowed): battle b from ``env.reset_from_seeds``
    seed b, stepped until every battle has ended once (each battle's first episode is the one counted; battles
    that ended keep stepping into their next episode, ignored). The teacher's and the random policy pick only
    available actions (``env.available_actions()``); random = uniform over the available ones. A callable
    policy with a ``mask`` parameter (students: ``StudentTeam.act``, a bundle's policies) gets the mask bool
    [E, N, A] too; one without gets the observations only and its actions are stepped as given (SMAX ignores
    unavailable ones)."""
    takes_mask = callable(policy) and "mask" in inspect.signature(policy).parameters
    obs, _state = env.reset_from_seeds(seeds)
    E, N = env.num_envs, env.n_agents
    recurrent = teacher is not None and teacher.actor.recurrent
    h = teacher.actor.initial_state(E * N) if recurrent else None
    finished = torch.zeros(E, dtype=torch.bool, device=obs.device)
    per_agent = torch.zeros(E, N, dtype=torch.float64, device=obs.device)
    metrics: dict[str, torch.Tensor] = {}
    for _ in range(env.spec.max_cycles + 1):
        mask = env.available_actions()  # [E, N, A]
        if callable(policy):
            actions = policy(obs.float(), mask=mask) if takes_mask else policy(obs.float())
        elif policy == "random":
            shape = (E, N, max(env.n_actions)) if mask is None else mask.shape
            actions = sample_actions(apply_action_mask(torch.zeros(shape, device=obs.device), mask), generator)
        else:
            if recurrent:
                logits, _, h = teacher.actor.step(actor_inputs_all(obs.float()).reshape(E * N, -1), h)
                logits = logits.view(E, N, -1)
            else:
                logits = teacher.actor(actor_inputs_all(obs.float()))
            logits = apply_action_mask(logits, mask)
            actions = logits.argmax(-1) if policy == "deterministic" else sample_actions(logits, generator)
        obs, _state, _rewards, dones, info = env.step(actions)
        new = dones & ~finished
        if bool(new.any()):
            per_agent[new] = info["episode_returns"][new].double()
            for k, v in info.get("metrics", {}).items():
                metrics.setdefault(k, torch.zeros(E, dtype=torch.float64, device=obs.device))[new] = v[new].double()
            finished |= dones
        if bool(finished.all()):
            break
        if recurrent:
            h = h * (~dones).repeat_interleave(N).float().unsqueeze(-1)
    if not bool(finished.all()):
        raise RuntimeError(f"battles did not end within max_steps + 1 = {env.spec.max_cycles + 1} steps")
    return {"team": per_agent.mean(-1), "per_agent": per_agent, "metrics": metrics}
