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
from kdmarl_student.scenarios import OCCUPANCY_DISTANCE, ScenarioSpec

from .core import Scenario, WorldState

AGENT_SIZE = 0.15


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
        self._others_flat = torch.tensor([i * n + j for i in range(n) for j in others[i]], dtype=torch.long)
        self._not_self = ~torch.eye(n, dtype=torch.bool)  # [A, A]

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
    def _nearest(dist: torch.Tensor, k: int, *items: torch.Tensor) -> list[torch.Tensor]:
        """mpe2 partial observability: the k nearest entities, nearest first, zero-padded to k slots.

        dist [B, A, M] orders the entities (np.argsort, which is stable for so few entries);
        items [B, A, M, X] are selected alike. Returns each item as [B, A, k, X].
        """
        B, A, M = dist.shape
        order = torch.argsort(dist, dim=-1, stable=True)[..., :k]  # [B, A, min(k, M)]
        out = []
        for x in items:
            sel = torch.gather(x, 2, order[..., None].expand(-1, -1, -1, x.shape[-1]))
            if k > M:
                sel = torch.cat([sel, sel.new_zeros(B, A, k - M, x.shape[-1])], dim=2)
            out.append(sel)
        return out

    def observe(self, w: WorldState) -> torch.Tensor:
        B, A = w.pos.shape[:2]
        # [self_vel, self_pos, landmark_rel_positions, other_agent_rel_positions, communication]
        landmarks, landmark_dist = w.landmark_offsets()  # [B, A, L, 2] (lm.p - agent.p), [B, A, L]
        rel, dist = w.agent_pairs()  # [B, A, A, 2] (p_j - p_i), [B, A, A]
        others_flat = self._others_flat.to(w.pos.device)
        others = rel.reshape(B, A * A, 2).index_select(1, others_flat).view(B, A, A - 1, 2)  # other agents
        if self.k_landmarks is not None:
            (landmarks,) = self._nearest(landmark_dist, self.k_landmarks, landmarks)
        if self.k_agents is not None:
            other_dist = dist.reshape(B, A * A).index_select(1, others_flat).view(B, A, A - 1)
            (others,) = self._nearest(other_dist, self.k_agents, others)
        # every agent is silent: the utterances it observes are always zeros (dim_c per other-agent slot)
        comm = w.pos.new_zeros(B, A, others.shape[2] * self.dim_c)
        return torch.cat([w.vel, w.pos, landmarks.reshape(B, A, -1), others.reshape(B, A, -1), comm], dim=2)

    # ------------------------------------------------------------------ rewards and metrics
    def reward(self, w: WorldState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        min_dist = w.landmark_offsets()[1].amin(dim=1)  # [B, L], nearest agent per landmark
        glob = -min_dist[:, 0]
        for lm in range(1, self.n_landmarks):  # mpe2 subtracts landmark by landmark: keep the order
            glob = glob - min_dist[:, lm]
        # is_collision: |p_i - p_j| < size_i + size_j, for every other agent j
        contacts = (w.agent_pairs()[1] < 2 * AGENT_SIZE) & self._not_self.to(w.pos.device)  # [B, A, A]
        n_contacts = contacts.sum(dim=2).to(w.pos.dtype)  # [B, A]
        rewards = glob[:, None] * (1 - self.local_ratio) - n_contacts * self.local_ratio  # local = -n_contacts
        pairs = n_contacts.sum(dim=1) / 2  # [B], each unordered pair counted once
        return rewards, {"collisions": pairs}

    def last_step_metrics(self, w: WorldState) -> dict[str, torch.Tensor]:
        covered = (w.landmark_offsets()[1].amin(dim=1) < OCCUPANCY_DISTANCE).sum(dim=1).to(w.pos.dtype)  # [B]
        return {"landmarks_covered": covered}
