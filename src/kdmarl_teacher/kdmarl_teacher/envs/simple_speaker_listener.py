"""simple_speaker_listener (mpe2 ``simple_speaker_listener_v4``): a speaker that cannot move names a goal.

Agents (mpe2 order): ``speaker_0`` (immovable, says one of 3 words, observes the goal landmark's color) and
``listener_0`` (moves, silent, observes its velocity, the landmarks relative to itself and the speaker's
word). Both get the same reward, ``-|listener - goal landmark|^2`` (no local_ratio in this scenario).

Metric at episode end: ``goal_distance``, the listener-to-goal distance at the last step (mpe2's
``benchmark_data`` is the reward, i.e. minus its square).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from kdmarl_student.scenarios import ScenarioSpec

from .core import Scenario, WorldState, sqrt

LANDMARK_COLORS = ((0.65, 0.15, 0.15), (0.15, 0.65, 0.15), (0.15, 0.15, 0.65))
SPEAKER, LISTENER = 0, 1


class SimpleSpeakerListener(Scenario):
    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.n_agents = 2
        self.n_landmarks = 3
        self.dim_c = 3
        self.agent_size = (0.075, 0.075)
        self.movable = (False, True)
        self.silent = (False, True)
        self.collide = (False, False)
        self._colors = torch.tensor(LANDMARK_COLORS, dtype=torch.float64)  # [L, 3]

    def sample_reset(self, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> WorldState:
        goal = torch.full((n, 2), -1, dtype=torch.long, device=device)
        goal[:, SPEAKER] = torch.randint(0, self.n_landmarks, (n,), generator=gen, device=device)
        return WorldState(
            pos=torch.rand(n, 2, 2, generator=gen, device=device, dtype=dtype) * 2 - 1,
            vel=torch.zeros(n, 2, 2, device=device, dtype=dtype),
            comm=torch.zeros(n, 2, self.dim_c, device=device, dtype=dtype),
            landmark_pos=torch.rand(n, self.n_landmarks, 2, generator=gen, device=device, dtype=dtype) * 2 - 1,
            goal=goal,
        )

    def numpy_reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # mpe2 reset_world: the speaker's goal landmark, then agent positions, then landmark positions.
        goal = np.array([int(rng.integers(self.n_landmarks)), -1], dtype=np.int64)
        pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(2)])
        landmark_pos = np.stack([rng.uniform(-1, +1, 2) for _ in range(self.n_landmarks)])
        return {"pos": pos, "vel": np.zeros((2, 2)), "comm": np.zeros((2, self.dim_c)),
                "landmark_pos": landmark_pos, "goal": goal}

    def read_goals(self, world: Any) -> np.ndarray:
        goal_b = world.agents[SPEAKER].goal_b
        index = next(k for k, lm in enumerate(world.landmarks) if lm is goal_b)
        return np.array([index, -1], dtype=np.int64)

    def observe(self, w: WorldState) -> list[torch.Tensor]:
        B = w.pos.shape[0]
        goal_color = self._colors.to(device=w.pos.device, dtype=w.pos.dtype)[w.goal[:, SPEAKER]]  # [B, 3]
        landmarks = w.landmark_pos - w.pos[:, LISTENER, None, :]  # [B, L, 2]
        listener = torch.cat([w.vel[:, LISTENER], landmarks.reshape(B, -1), w.comm[:, SPEAKER]], dim=1)  # [B, 11]
        return [goal_color, listener]

    def _goal_sq_dist(self, w: WorldState) -> torch.Tensor:
        goal_pos = w.landmark_pos[torch.arange(w.pos.shape[0], device=w.pos.device), w.goal[:, SPEAKER]]  # [B, 2]
        sq = (w.pos[:, LISTENER] - goal_pos).square()
        return sq[:, 0] + sq[:, 1]  # [B]

    def reward(self, w: WorldState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r = -self._goal_sq_dist(w)
        return torch.stack([r, r], dim=1), {}

    def last_step_metrics(self, w: WorldState) -> dict[str, torch.Tensor]:
        return {"goal_distance": sqrt(self._goal_sq_dist(w))}
