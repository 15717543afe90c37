"""simple_reference (mpe2 ``simple_reference_v3``): two agents that both move and speak.

Each agent's goal is for the *other* agent to reach a landmark that only it knows (it sees the landmark's
color). An action is move + 5 * word (5 moves x 10 words = 50). Local reward of agent i:
``-|other agent - goal landmark of i|``; global reward: the mean of the two; agent i gets
``global * (1 - local_ratio) + local_i * local_ratio``.

Metric at episode end: ``goal_distance``, the mean over both agents of |goal_a - goal_b| at the last step
(= minus the global reward).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from kdmarl_student.scenarios import ScenarioSpec

from .core import Scenario, WorldState, sqrt

LANDMARK_COLORS = ((0.75, 0.25, 0.25), (0.25, 0.75, 0.25), (0.25, 0.25, 0.75))


class SimpleReference(Scenario):
    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.n_agents = 2
        self.n_landmarks = 3
        self.dim_c = 10
        self.agent_size = (0.05, 0.05)
        self.movable = (True, True)
        self.silent = (False, False)
        self.collide = (False, False)
        self.local_ratio: float = spec.params["local_ratio"]
        self._colors = torch.tensor(LANDMARK_COLORS, dtype=torch.float64)  # [L, 3]

    def sample_reset(self, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> WorldState:
        return WorldState(
            pos=torch.rand(n, 2, 2, generator=gen, device=device, dtype=dtype) * 2 - 1,
            vel=torch.zeros(n, 2, 2, device=device, dtype=dtype),
            comm=torch.zeros(n, 2, self.dim_c, device=device, dtype=dtype),
            landmark_pos=torch.rand(n, self.n_landmarks, 2, generator=gen, device=device, dtype=dtype) * 2 - 1,
            goal=torch.randint(0, self.n_landmarks, (n, 2), generator=gen, device=device),
        )

    def numpy_reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # mpe2 reset_world: agent 0's goal landmark, agent 1's, then agent positions, then landmarks.
        goal = np.array([int(rng.integers(self.n_landmarks)), int(rng.integers(self.n_landmarks))], dtype=np.int64)
        pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(2)])
        landmark_pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(self.n_landmarks)])
        return {"pos": pos, "vel": np.zeros((2, 2)), "comm": np.zeros((2, self.dim_c)),
                "landmark_pos": landmark_pos, "goal": goal}

    def read_goals(self, world: Any) -> np.ndarray:
        return np.array([next(k for k, lm in enumerate(world.landmarks) if lm is a.goal_b) for a in world.agents],
                        dtype=np.int64)

    def observe(self, w: WorldState) -> torch.Tensor:
        B = w.pos.shape[0]
        # [self_vel, landmark_rel_positions, goal_color, other agent's word]
        landmarks = w.landmark_pos[:, None, :, :] - w.pos[:, :, None, :]  # [B, 2, L, 2]
        goal_color = self._colors.to(device=w.pos.device, dtype=w.pos.dtype)[w.goal]  # [B, 2, 3]
        other_comm = w.comm.flip(1)  # [B, 2, C]: agent 0 hears agent 1 and vice versa
        return torch.cat([w.vel, landmarks.reshape(B, 2, -1), goal_color, other_comm], dim=2)  # [B, 2, 21]

    def _goal_dist(self, w: WorldState) -> torch.Tensor:
        """[B, 2]: for agent i, |goal_a - goal_b| = |other agent - landmark goal[i]|."""
        B = w.pos.shape[0]
        goal_pos = w.landmark_pos[torch.arange(B, device=w.pos.device)[:, None], w.goal]  # [B, 2, 2]
        sq = (w.pos.flip(1) - goal_pos).square()
        return sqrt(sq[..., 0] + sq[..., 1])

    def reward(self, w: WorldState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        local = -self._goal_dist(w)  # [B, 2]
        glob = (local[:, 0] + local[:, 1]) / 2  # mpe2: sum(rewards) / len(agents), summed in agent order
        return glob[:, None] * (1 - self.local_ratio) + local * self.local_ratio, {}

    def last_step_metrics(self, w: WorldState) -> dict[str, torch.Tensor]:
        d = self._goal_dist(w)
        return {"goal_distance": (d[:, 0] + d[:, 1]) / 2}
