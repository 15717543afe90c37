"""The QMIX mixing network, shared by the QMIX teacher (training), its checkpoint (`algos.teacher` rebuilds it)
and the value-decomposition distillation recipe (a small student mixer)."""

from __future__ import annotations

import torch
from torch import nn


def _hypernet(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    """pymarl's hypernetwork: one Linear layer (hidden = 0) or Linear-ReLU-Linear."""
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class QMixer(nn.Module):
    """Monotonic mixing network: (Q_i of the chosen actions [M, N], mixer state [M, S]) -> Q_tot [M].

    Q_tot = |W1(s)|-weighted sum of the Q_i + b1(s), ELU, then a |w2(s)|-weighted sum + V(s) (pymarl QMixer).
    The absolute values make dQ_tot/dQ_i >= 0 for every state, which is what lets each agent maximize its own
    utility alone. The same class, smaller (`hypernet_hidden` 0), is the students' training-only mixer."""

    def __init__(self, state_dim: int, n_agents: int, embed: int = 32, hypernet_hidden: int = 64) -> None:
        super().__init__()
        self.state_dim, self.n_agents, self.embed = int(state_dim), int(n_agents), int(embed)
        self.hyper_w1 = _hypernet(state_dim, hypernet_hidden, embed * n_agents)
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = _hypernet(state_dim, hypernet_hidden, embed)
        self.v = nn.Sequential(nn.Linear(state_dim, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, qs: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """qs [M, N], state [M, S] -> Q_tot [M]."""
        M = qs.shape[0]
        w1 = self.hyper_w1(state).abs().view(M, self.n_agents, self.embed)  # [M, N, E], non-negative
        b1 = self.hyper_b1(state).view(M, 1, self.embed)  # [M, 1, E]
        hidden = nn.functional.elu(torch.bmm(qs.view(M, 1, self.n_agents), w1) + b1)  # [M, 1, E]
        w2 = self.hyper_w2(state).abs().view(M, self.embed, 1)  # [M, E, 1], non-negative
        return (torch.bmm(hidden, w2).view(M) + self.v(state).view(M))


def mixer_state(state: torch.Tensor, t: torch.Tensor | None, max_cycles: int) -> torch.Tensor:
    """The mixer's input: state [B, S] (+ t / max_cycles when `t`, long [B], the steps already taken) -> [B, S']."""
    if t is None:
        return state
    return torch.cat([state, (t.to(state.dtype) / float(max_cycles)).unsqueeze(-1)], dim=-1)
