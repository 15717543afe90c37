"""Actor and centralized critic of the MAPPO teacher.

- `Actor`: ONE network shared by all agents (parameter sharing). Input = the agent's observation zero-padded to
  `obs_dim_max`, then the agent one-hot (so a shared network can still act differently per agent). Agents with
  fewer actions (speaker: 3, listener: 5) get their invalid logits masked to -1e8; the mask is derived from
  the one-hot inside `forward`, so the network is self-contained (no side input) and exports to ONNX as is.
- `Critic`: the centralized value function of CTDE. Input = global state + agent one-hot, because MPE rewards
  differ per agent (`local_ratio`), so each agent needs its own value of the same state.
- Orthogonal init with gain sqrt(2) for hidden layers, 0.01 for the policy head, 1 for the value head
  (CleanRL ppo.py, MAPPO reference): a near-uniform initial policy and unit-scale initial values.
- Optional GRU after the MLP trunk (MAPPO's recurrent policy). Recurrent networks use `step(x, h)`; `forward(x)`
  then runs one step from a zero hidden state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

MASKED_LOGIT = -1e8  # finite (not -inf): softmax gives exactly 0, and 0 * log-prob stays 0 in the entropy


def sample_actions(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Categorical sample via the Gumbel-max trick, so the draw uses our own generator (resume-exact) and masked
    logits (`MASKED_LOGIT`) can never win. logits [..., A] -> long [...]. The one sampler of teacher training,
    distillation rollouts and stochastic evaluation."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    return (logits - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)


def apply_action_mask(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """logits [..., A] with the actions an environment says are unavailable (mask bool [..., A], False) set to
    `MASKED_LOGIT`: never sampled, never argmax (every row must keep one available action; SMAX's "stop" always
    is). `mask=None` (MPE: every action always available) returns the logits unchanged."""
    if mask is None:
        return logits
    return logits.masked_fill(~mask.to(torch.bool), MASKED_LOGIT)


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    """Orthogonal weights, constant bias (CleanRL's `layer_init`)."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


def mlp(in_dim: int, hidden: Sequence[int], activation: str, input_norm: bool, layer_norm: bool) -> nn.Sequential:
    act = {"relu": nn.ReLU, "tanh": nn.Tanh}[activation]
    layers: list[nn.Module] = [nn.LayerNorm(in_dim)] if input_norm else []
    last = in_dim
    for width in hidden:
        layers += [layer_init(nn.Linear(last, width)), act()]
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        last = width
    return nn.Sequential(*layers)


class _Recurrent(nn.Module):
    """A GRU cell whose hidden state is reset where `reset` is True (episode starts). Shapes: x [M, H_in]."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(in_dim, hidden)
        for name, p in self.cell.named_parameters():
            if "weight" in name:
                nn.init.orthogonal_(p)
            else:
                nn.init.zeros_(p)
        self.norm = nn.LayerNorm(hidden)  # MAPPO's RNNLayer normalizes the GRU output
        self.hidden = hidden

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h_new = self.cell(x, h)
        return self.norm(h_new), h_new


class Actor(nn.Module):
    """Parameter-shared policy: x [*, obs_dim_max + n_agents] -> logits [*, n_actions_max] (invalid masked)."""

    def __init__(self, obs_dim_max: int, n_agents: int, n_actions: Sequence[int], hidden: Sequence[int],
                 *, activation: str = "relu", input_norm: bool = True, layer_norm: bool = False,
                 use_gru: bool = False, gru_hidden: int = 64) -> None:
        super().__init__()
        self.obs_dim_max = obs_dim_max
        self.n_agents = n_agents
        self.n_actions_max = max(n_actions)
        self.in_dim = obs_dim_max + n_agents
        self.trunk = mlp(self.in_dim, hidden, activation, input_norm, layer_norm)
        self.rnn = _Recurrent(hidden[-1], gru_hidden) if use_gru else None
        self.embed_dim = gru_hidden if use_gru else hidden[-1]
        self.head = layer_init(nn.Linear(self.embed_dim, self.n_actions_max), std=0.01)
        valid = torch.zeros(n_agents, self.n_actions_max)  # [N, A_max]: 1 where the action exists for agent i
        for i, n in enumerate(n_actions):
            valid[i, :n] = 1.0
        self.register_buffer("valid_actions", valid)

    @property
    def recurrent(self) -> bool:
        return self.rnn is not None

    def initial_state(self, batch: int) -> torch.Tensor:
        """Zero hidden state [batch, gru_hidden] (an empty [batch, 0] tensor for the MLP)."""
        width = self.rnn.hidden if self.rnn is not None else 0
        return torch.zeros(batch, width, device=self.valid_actions.device)

    def mask_logits(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        onehot = x[..., self.obs_dim_max:]  # [*, N]
        valid = onehot @ self.valid_actions  # [*, A_max], 1 for valid, 0 for invalid
        return torch.where(valid > 0.5, logits, torch.full_like(logits, MASKED_LOGIT))

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [M, D_in], h [M, G] -> (masked logits [M, A_max], embedding [M, H], new hidden [M, G])."""
        z = self.trunk(x)
        if self.rnn is not None:
            z, h = self.rnn(z, h)
        return self.mask_logits(x, self.head(z)), z, h

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Last hidden layer [*, H] (the latent used by the structural-relation distillation loss)."""
        if self.rnn is None:
            return self.trunk(x)
        flat = x.reshape(-1, x.shape[-1])
        _, z, _ = self.step(flat, self.initial_state(flat.shape[0]))
        return z.reshape(*x.shape[:-1], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [*, obs_dim_max + n_agents] -> masked logits [*, n_actions_max]."""
        if self.rnn is None:
            return self.mask_logits(x, self.head(self.trunk(x)))
        flat = x.reshape(-1, x.shape[-1])
        logits, _, _ = self.step(flat, self.initial_state(flat.shape[0]))
        return logits.reshape(*x.shape[:-1], -1)


class Critic(nn.Module):
    """Centralized value: x [*, state_dim + n_agents] -> normalized value [*] (denormalize with ValueNorm)."""

    def __init__(self, state_dim: int, n_agents: int, hidden: Sequence[int], *, activation: str = "relu",
                 input_norm: bool = True, layer_norm: bool = False, use_gru: bool = False,
                 gru_hidden: int = 64, time_feature: bool = False) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.n_agents = n_agents
        self.time_feature = time_feature  # input ends with t / max_cycles (the episode's remaining horizon)
        self.in_dim = state_dim + n_agents + int(time_feature)
        self.trunk = mlp(self.in_dim, hidden, activation, input_norm, layer_norm)
        self.rnn = _Recurrent(hidden[-1], gru_hidden) if use_gru else None
        self.head = layer_init(nn.Linear(gru_hidden if use_gru else hidden[-1], 1), std=1.0)

    @property
    def recurrent(self) -> bool:
        return self.rnn is not None

    def initial_state(self, batch: int) -> torch.Tensor:
        width = self.rnn.hidden if self.rnn is not None else 0
        return torch.zeros(batch, width, device=self.head.weight.device)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [M, D_in], h [M, G] -> (value [M], new hidden [M, G])."""
        z = self.trunk(x)
        if self.rnn is not None:
            z, h = self.rnn(z, h)
        return self.head(z).squeeze(-1), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [*, state_dim + n_agents] -> value [*] (from a zero hidden state if recurrent)."""
        if self.rnn is None:
            return self.head(self.trunk(x)).squeeze(-1)
        flat = x.reshape(-1, x.shape[-1])
        v, _ = self.step(flat, self.initial_state(flat.shape[0]))
        return v.reshape(x.shape[:-1])


def actor_input(obs: torch.Tensor, agent_ids: torch.Tensor, n_agents: int) -> torch.Tensor:
    """obs [*, obs_dim_max] (zero-padded), agent_ids long [*] -> [*, obs_dim_max + n_agents]."""
    onehot = torch.nn.functional.one_hot(agent_ids, n_agents).to(obs.dtype)
    return torch.cat([obs, onehot], dim=-1)


def actor_inputs_all(obs: torch.Tensor) -> torch.Tensor:
    """obs [B, N, obs_dim_max] -> [B, N, obs_dim_max + N]: every agent's padded observation + its one-hot."""
    B, N, _ = obs.shape
    eye = torch.eye(N, dtype=obs.dtype, device=obs.device).expand(B, N, N)
    return torch.cat([obs, eye], dim=-1)


def critic_inputs_all(state: torch.Tensor, n_agents: int, time_frac: torch.Tensor | None = None) -> torch.Tensor:
    """state [B, state_dim] -> [B, N, state_dim + N (+1)]: the same global state once per agent, + its one-hot,
    + (for a time-aware critic) the fraction of the episode elapsed, time_frac [B] = t / max_cycles."""
    B, S = state.shape
    eye = torch.eye(n_agents, dtype=state.dtype, device=state.device).expand(B, n_agents, n_agents)
    parts = [state.unsqueeze(1).expand(B, n_agents, S), eye]
    if time_frac is not None:
        parts.append(time_frac.to(state.dtype).view(B, 1, 1).expand(B, n_agents, 1))
    return torch.cat(parts, dim=-1)
