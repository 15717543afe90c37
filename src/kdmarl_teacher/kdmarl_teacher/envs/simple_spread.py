"""simple_spread (mpe2 ``simple_spread_v3``): N agents should cover N landmarks without colliding.

Reward (mpe2, with ``local_ratio``): every agent gets
``global * (1 - local_ratio) + local * local_ratio`` where ``global = -sum over landmarks of the distance of
the nearest agent`` and ``local = -(number of other agents it overlaps)``.

Metrics at episode end (``info["metrics"]``, valid where ``dones``):

- ``landmarks_covered``: landmarks with some agent closer than 0.1 at the last step (mpe2's
  ``benchmark_data`` occupied_landmarks);
- ``collisions``: agent-pair contacts summed over the episode's steps, i.e. for every step (after its
  physics, the state the reward sees) the number of unordered agent pairs closer than the sum of their
  sizes (0.3). mpe2's per-agent ``benchmark_data`` collisions count each pair once per agent, so their sum
  over agents and steps is twice this figure.
"""

from __future__ import annotations

import numpy as np
import torch
from kdmarl_student.scenarios import ScenarioSpec

from .core import Scenario, WorldState, sqrt

AGENT_SIZE = 0.15
OCCUPANCY_DISTANCE = 0.1  # mpe2 benchmark_data / CAPTURE_RADIUS


class SimpleSpread(Scenario):
    accumulated_metrics = ("collisions",)

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        n = spec.params["N"]
        self.n_agents = n
        self.n_landmarks = n
        self.dim_c = 2
        self.agent_size = (AGENT_SIZE,) * n
        self.movable = (True,) * n
        self.silent = (True,) * n
        self.collide = (True,) * n
        self.local_ratio: float = spec.params["local_ratio"]
        self.k_landmarks: int | None = spec.params["num_landmark_neighbors"]
        self.k_agents: int | None = spec.params["num_agent_neighbors"]
        # others[i] = the other agents of agent i in mpe2's order (ascending index, self skipped)
        others = [[j for j in range(n) if j != i] for i in range(n)]
        self._rows = torch.tensor([[i] * (n - 1) for i in range(n)], dtype=torch.long)  # [A, A-1]
        self._others = torch.tensor(others, dtype=torch.long).reshape(n, n - 1)  # [A, A-1]
        self._pair_upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # [A, A]

    # ------------------------------------------------------------------ resets
    def sample_reset(self, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> WorldState:
        A, L = self.n_agents, self.n_landmarks
        pos = torch.rand(n, A, 2, generator=gen, device=device, dtype=dtype) * 2 - 1  # uniform(-1, 1)
        landmark_pos = torch.rand(n, L, 2, generator=gen, device=device, dtype=dtype) * 2 - 1
        return WorldState(
            pos=pos,
            vel=torch.zeros(n, A, 2, device=device, dtype=dtype),
            comm=torch.zeros(n, A, self.dim_c, device=device, dtype=dtype),
            landmark_pos=landmark_pos,
            goal=torch.full((n, A), -1, dtype=torch.long, device=device),
        )

    def numpy_reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # mpe2 reset_world: every agent's position, then every landmark's, one uniform(-1, 1, 2) call each.
        pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(self.n_agents)])
        landmark_pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(self.n_landmarks)])
        return {
            "pos": pos,
            "vel": np.zeros((self.n_agents, 2)),
            "comm": np.zeros((self.n_agents, self.dim_c)),
            "landmark_pos": landmark_pos,
            "goal": np.full(self.n_agents, -1, dtype=np.int64),
        }

    # ------------------------------------------------------------------ observations
    @staticmethod
    def _nearest(rel: torch.Tensor, k: int, *payloads: torch.Tensor) -> list[torch.Tensor]:
        """mpe2 partial observability: the k nearest entities (by distance, nearest first, zero-padded to k).

        rel [B, A, M, 2] relative positions; payloads [B, A, M, X] ride along (e.g. utterances).
        Returns the selected rel [B, A, k, 2] and payloads [B, A, k, X].
        """
        B, A, M, _ = rel.shape
        dist = sqrt(rel.square().sum(-1))  # [B, A, M], np.linalg.norm (only orders the slots)
        order = torch.argsort(dist, dim=-1, stable=True)[..., :k]  # np.argsort (stable for small M)
        out = []
        for x in (rel, *payloads):
            sel = torch.gather(x, 2, order[..., None].expand(-1, -1, -1, x.shape[-1]))
            if k > M:
                sel = torch.cat([sel, sel.new_zeros(B, A, k - M, x.shape[-1])], dim=2)
            out.append(sel)
        return out

    def observe(self, w: WorldState) -> torch.Tensor:
        B, A = w.pos.shape[:2]
        # [self_vel, self_pos, landmark_rel_positions, other_agent_rel_positions, communication]
        landmarks = w.landmark_pos[:, None, :, :] - w.pos[:, :, None, :]  # [B, A, L, 2], lm.p - agent.p
        rel = w.pos[:, None, :, :] - w.pos[:, :, None, :]  # [B, A, A, 2], [b, i, j] = p_j - p_i
        others = rel[:, self._rows, self._others]  # [B, A, A-1, 2]
        comm = w.comm[:, self._others]  # [B, A, A-1, C]
        if self.k_landmarks is not None:
            (landmarks,) = self._nearest(landmarks, self.k_landmarks)
        if self.k_agents is not None:
            others, comm = self._nearest(others, self.k_agents, comm)
        parts = [w.vel, w.pos, landmarks.reshape(B, A, -1), others.reshape(B, A, -1), comm.reshape(B, A, -1)]
        return torch.cat(parts, dim=2)  # [B, A, obs_dim]

    # ------------------------------------------------------------------ rewards and metrics
    def _landmark_min_dist(self, w: WorldState) -> torch.Tensor:
        """[B, L]: distance from each landmark to its nearest agent (mpe2: sqrt(sum(square(a.p - lm.p))))."""
        sq = (w.pos[:, :, None, :] - w.landmark_pos[:, None, :, :]).square()  # [B, A, L, 2]
        return sqrt(sq[..., 0] + sq[..., 1]).amin(dim=1)

    def _contacts(self, w: WorldState) -> torch.Tensor:
        """[B, A, A] bool: agents i != j overlap (mpe2 is_collision: dist < size_i + size_j)."""
        sq = (w.pos[:, :, None, :] - w.pos[:, None, :, :]).square()
        dist = sqrt(sq[..., 0] + sq[..., 1])
        eye = torch.eye(self.n_agents, dtype=torch.bool, device=w.pos.device)
        return (dist < 2 * AGENT_SIZE) & ~eye

    def reward(self, w: WorldState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        min_dist = self._landmark_min_dist(w)  # [B, L]
        glob = -min_dist[:, 0]
        for lm in range(1, self.n_landmarks):  # mpe2 subtracts landmark by landmark: keep the order
            glob = glob - min_dist[:, lm]
        contacts = self._contacts(w)  # [B, A, A]
        local = -contacts.sum(dim=2).to(w.pos.dtype)  # [B, A], -1 per overlapping other agent
        rewards = glob[:, None] * (1 - self.local_ratio) + local * self.local_ratio
        pairs = (contacts & self._pair_upper.to(contacts.device)).sum(dim=(1, 2)).to(w.pos.dtype)  # [B]
        return rewards, {"collisions": pairs}

    def last_step_metrics(self, w: WorldState) -> dict[str, torch.Tensor]:
        covered = (self._landmark_min_dist(w) < OCCUPANCY_DISTANCE).sum(dim=1).to(w.pos.dtype)  # [B]
        return {"landmarks_covered": covered}
