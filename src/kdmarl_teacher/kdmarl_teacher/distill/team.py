"""The student team: N budget-sized students with their sensing transforms and memory, and what both
distillation recipes do with it (masked logits, BPTT sequences, unrolls)."""

from __future__ import annotations

import torch

from kdmarl_teacher.core.networks import apply_action_mask
from kdmarl_teacher.distill.profiles import TeamConfig, apply_sensing_torch
from kdmarl_teacher.distill.students import StudentGRU, StudentMLP

Student = StudentMLP | StudentGRU


class StudentTeam:
    """The N students with their sensing transforms: observations [B, N, D_max] -> per-agent inputs/logits.

    Students with memory (issue 11) need two things from the past, both reset at an episode start exactly as
    the robot's runtime resets them: the previous full observation (history features, ``apply_sensing``'s
    ``previous``) and a recurrent student's hidden state. ``begin``/``act`` carry them through greedy episodes
    that all start together (evaluation); the rollout carries its own (episodes there end at any step).
    """

    def __init__(self, team: TeamConfig, students: list[Student]) -> None:
        self.team, self.students = team, students
        self._prev: torch.Tensor | None = None
        self._h: list[torch.Tensor] = []

    @property
    def recurrent(self) -> bool:
        return any(s.recurrent for s in self.students)

    def inputs(self, obs: torch.Tensor, previous: torch.Tensor | None = None) -> list[torch.Tensor]:
        """obs [..., N, D_max] (and the previous observation, same shape, for history features; None at an
        episode start) -> list of N tensors [..., in_dim_i] (each agent's sensed observation)."""
        agents = self.team.agents
        return [apply_sensing_torch(obs[..., i, : a.obs_dim], a.layout, a.sensing,
                                    None if previous is None else previous[..., i, : a.obs_dim])
                for i, a in enumerate(agents)]

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        """Per agent: zeros [batch, H_i] for a recurrent student, an empty [batch, 0] tensor otherwise."""
        return [s.initial_state(batch) if s.recurrent else torch.zeros(batch, 0, device=s.head.weight.device)
                for s in self.students]

    def logits(self, xs: list[torch.Tensor], hs: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """One decision of every student: inputs [B, in_i] and states -> (logits [B, A_i], new states)."""
        out, new = [], []
        for s, x, h in zip(self.students, xs, hs, strict=True):
            logits, h_next = s.step(x, h) if s.recurrent else (s(x), h)
            out.append(logits)
            new.append(h_next)
        return out, new

    def begin(self, batch: int) -> None:
        """Start ``batch`` greedy episodes (all at their first step): no previous observation, zero states."""
        self._prev, self._h = None, self.initial_states(batch)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy joint action long [B, N] of the episodes started by ``begin`` (their next step); ``mask`` bool
        [B, N, A_max] (SMAX's available actions) restricts each student's argmax to the available actions."""
        if len(self._h) != len(self.students) or self._h[0].shape[0] != obs.shape[0]:
            self.begin(obs.shape[0])
        logits, self._h = self.logits(self.inputs(obs, self._prev), self._h)
        self._prev = obs
        return torch.stack([agent_mask(lg, mask, i).argmax(-1) for i, lg in enumerate(logits)], dim=-1)


def agent_mask(logits: torch.Tensor, mask: torch.Tensor | None, i: int) -> torch.Tensor:
    """Agent i's logits [..., A_i] masked by its slice of ``mask`` [..., N, A_max] (None: unchanged, MPE)."""
    return logits if mask is None else apply_action_mask(logits, mask[..., i, : logits.shape[-1]])


def sequences(x: torch.Tensor, length: int) -> torch.Tensor:
    """Time-major [T, B, ...] -> [T/length * B, length, ...]: chunk c of env b is row c * B + b (for length 1,
    row t * B + b: the flat sample order of stateless students)."""
    T, B = x.shape[:2]
    return x.reshape(T // length, length, B, *x.shape[2:]).transpose(1, 2).reshape(T // length * B, length,
                                                                                   *x.shape[2:])


def unroll(student: Student, x: torch.Tensor, h0: torch.Tensor, starts: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Recompute a student over sequences: x [m, L, in], h0 [m, H] (its state at each chunk start, stored by the
    rollout), starts bool [m, L] -> (embeddings [m*L, E], logits [m*L, A]), back-propagating through the chunk
    (truncated BPTT, as MAPPO's recurrent policy). The state is zeroed inside a chunk where an episode starts."""
    m, L = x.shape[:2]
    if not student.recurrent:
        z = student.embed(x.reshape(m * L, -1))
        return z, student.head(z)
    h, zs = h0, []
    for t in range(L):
        if t > 0:
            h = h * (~starts[:, t]).to(h.dtype).unsqueeze(1)
        _, h = student.step(x[:, t], h)
        zs.append(h)
    z = torch.stack(zs, dim=1).reshape(m * L, -1)
    return z, student.head(z)
