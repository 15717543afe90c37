"""The students' rollout, one for both recipes: the students act in B batched environments for T steps (their own
mistakes are visited, each on its sensing profile's slices), and the frozen teacher labels every visited state.

What the teacher's labels are (MAPPO: logits, embeddings, critic values; QMIX: utilities and the mixer's Q_tot)
and how a student's outputs become a sampling distribution (logits; utilities / T_q) is the recipe's
(`Labeller`); everything else is here once: memory resets at episode starts, and the action masks of
environments that have them (SMAX): every student samples only available actions and the teacher's labels are
masked, in every recipe. MPE environments have no masks (`available_actions()` is None) and take no mask path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from kdmarl_teacher.algos.teacher import Teacher
from kdmarl_teacher.core.networks import actor_inputs_all, apply_action_mask, sample_actions
from kdmarl_teacher.distill.team import StudentTeam, agent_mask


@dataclass(kw_only=True)
class Rollout:
    """One iteration's student rollout, time-major: T steps of B envs, N agents (a recipe's subclass adds the
    teacher's labels)."""

    inputs: list[torch.Tensor]  # per agent [T, B, in_dim_i]: the sensed observation the student acted on
    states: list[torch.Tensor]  # per agent [T, B, H_i]: a recurrent student's state before step t (H_i = 0: MLP)
    starts: torch.Tensor  # bool [T, B]: step t is the first of an episode (memory was reset before it)
    actions: torch.Tensor  # long [T, B, N]
    logp: torch.Tensor  # [T, B, N] log-probability of the action under the acting student's distribution
    rewards: torch.Tensor  # [T, B, N]
    dones: torch.Tensor  # bool [T, B]: the episode ended with step t
    masks: torch.Tensor | None = None  # bool [T, B, N, A_max]: available actions at step t (SMAX); None: MPE
    ep_returns: list[torch.Tensor] = field(default_factory=list)  # team returns of the episodes that ended
    ep_metrics: dict[str, list[torch.Tensor]] = field(default_factory=dict)


class Labeller(Protocol):
    """A recipe's part of the rollout."""

    def new_rollout(self, shared: dict[str, Any], T: int, B: int, N: int, device: torch.device) -> Rollout:
        """The recipe's Rollout subclass, with the shared fields and its own label buffers allocated."""

    def policy(self, out: torch.Tensor) -> torch.Tensor:
        """A student's outputs [B, A_i] -> the logits it samples from (before masking)."""

    def label(self, ro: Rollout, t: int, *, t_out: torch.Tensor, t_emb: torch.Tensor, state: torch.Tensor,
              env: Any) -> None:
        """Store the teacher's labels of step t: t_out [B, N, A_max] its (masked) outputs, t_emb [B, N, E] its
        last-hidden embedding, state [B, S] the global state; the students' actions are in ro.actions[t]."""

    def finish(self, ro: Rollout, state: torch.Tensor, env: Any) -> None:
        """After the last step (e.g. the bootstrap value of the state after it)."""


@torch.no_grad()
def rollout(env: Any, teacher: Teacher, team: StudentTeam, gen: torch.Generator, labeller: Labeller, *, seed: int,
            num_steps: int, h0: torch.Tensor | None = None) -> Rollout:
    """The students act (sampled with `gen`, so a resume replays the same draws) for `num_steps` steps from
    `env.reset(seed=seed)`; the frozen teacher labels every visited state (its GRU state starts at `h0`, zeros by
    default). Memory is reset at every episode start: the previous observation of history features and the
    students' hidden states (the teacher's too)."""
    obs, state = env.reset(seed=seed)  # obs [B, N, D], state [B, S]
    T, B, N = num_steps, obs.shape[0], obs.shape[1]
    device = obs.device
    hs = team.initial_states(B)
    shared = {"inputs": [torch.zeros(T, B, s.in_dim, device=device) for s in team.students],
              "states": [torch.zeros(T, *h.shape, device=device) for h in hs],
              "starts": torch.zeros(T, B, dtype=torch.bool, device=device),
              "actions": torch.zeros(T, B, N, dtype=torch.long, device=device),
              "logp": torch.zeros(T, B, N, device=device), "rewards": torch.zeros(T, B, N, device=device),
              "dones": torch.zeros(T, B, dtype=torch.bool, device=device)}
    ro = labeller.new_rollout(shared, T, B, N, device)
    if env.available_actions() is not None:  # SMAX: per-step masks (MPE: none, no mask path)
        ro.masks = torch.zeros(T, B, N, teacher.actor.n_actions_max, dtype=torch.bool, device=device)
    h = teacher.actor.initial_state(B * N) if h0 is None else h0
    prev = obs  # an episode start: the current observation stands in for the previous one
    start = torch.ones(B, dtype=torch.bool, device=device)
    for t in range(T):
        ro.starts[t] = start
        mask = None
        if ro.masks is not None:
            ro.masks[t] = mask = env.available_actions()  # [B, N, A]: of the state the actions are taken in
        xs = team.inputs(obs, prev)
        for i, hi in enumerate(hs):
            ro.states[i][t] = hi
        outs, hs = team.logits(xs, hs)
        for i, (x, out_i) in enumerate(zip(xs, outs, strict=True)):  # out_i [B, A_i]
            logits_i = agent_mask(labeller.policy(out_i), mask, i)
            a_i = sample_actions(logits_i, gen)
            ro.inputs[i][t], ro.actions[t, :, i] = x, a_i
            ro.logp[t, :, i] = F.log_softmax(logits_i, -1).gather(-1, a_i[:, None]).squeeze(-1)
        t_out, t_emb, h = teacher.actor.step(actor_inputs_all(obs).reshape(B * N, -1), h)
        labeller.label(ro, t, t_out=apply_action_mask(t_out.reshape(B, N, -1), mask),  # the targets, masked too
                       t_emb=t_emb.reshape(B, N, -1), state=state, env=env)
        next_obs, state, ro.rewards[t], ro.dones[t], info = env.step(ro.actions[t])
        start = ro.dones[t]
        keep = (~start).to(h.dtype)  # [B]: 0 where a new episode begins (auto-reset)
        h = h * keep.repeat_interleave(N).unsqueeze(1)
        hs = [hi * keep.unsqueeze(1) for hi in hs]
        prev = torch.where(start.view(B, 1, 1), next_obs, obs)
        obs = next_obs
        if bool(ro.dones[t].any()):
            ro.ep_returns.append(info["episode_returns"][ro.dones[t]].mean(1))
            for k, v in info["metrics"].items():
                ro.ep_metrics.setdefault(k, []).append(v[ro.dones[t]].float())
    labeller.finish(ro, state, env)
    return ro
