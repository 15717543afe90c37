"""Shared physics and episode handling of the batched MPE port.

B worlds live in tensors (no Python loop over environments). The physics is mpe2 1.1.1's
``_mpe_utils/core.py`` and ``simple_env.py`` operation for operation, so that in float64 the port reproduces
mpe2 to rounding error (DESIGN.md §6); every place where the order of floating-point operations matters
says so. Scenario files (``simple_spread.py`` ...) only say what is observed and rewarded.

Shapes: B environments, A agents, L landmarks, C = dim_c communication channels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from kdmarl_student.scenarios import MPE_MOVE_DIRECTIONS, ScenarioSpec

from .contract import adopt_spec, check_actions

# mpe2 World defaults (core.py) and SimpleEnv._set_action's sensitivity.
DT = 0.1
DAMPING = 0.25
CONTACT_FORCE = 1e2
CONTACT_MARGIN = 1e-3
SENSITIVITY = 5.0  # agent.accel is None in every supported scenario
N_MOVES = 5  # dim_p * 2 + 1


def sqrt(x: torch.Tensor) -> torch.Tensor:
    """Square root that, in float64, is correctly rounded like numpy's (and IEEE's) ``sqrt``.

    torch's vectorized float64 sqrt on this CPU (AVX512) is off by one ulp for about 1 % of inputs. In a
    sustained pile-up one ulp in a distance is amplified by the stiff contact force until trajectories part
    within a few hundred steps (and a collision test ``dist < 0.3`` can flip), so parity with mpe2 needs
    numpy's exact rounding. One Newton step with an exactly computed residual x - y^2 (Dekker's
    error-free product, no FMA needed) gives it. float32 (training) takes the plain, fast sqrt.
    """
    y = torch.sqrt(x)
    if x.dtype != torch.float64:
        return y
    c = 134217729.0 * y  # Veltkamp split of y into hi + lo (2^27 + 1)
    hi = c - (c - y)
    lo = y - hi
    p = y * y
    e = ((hi * hi - p) + 2.0 * hi * lo) + lo * lo  # y * y == p + e exactly
    r = (x - p) - e  # x - y^2 (x - p is exact: p is within a factor 2 of x)
    return torch.where(y > 0, y + r / (2.0 * y), y)


@dataclass
class WorldState:
    """The mutable state of B worlds. ``goal[b, i]`` is agent i's ``goal_b`` landmark index (-1: none)."""

    pos: torch.Tensor  # [B, A, 2] agent positions
    vel: torch.Tensor  # [B, A, 2] agent velocities
    comm: torch.Tensor  # [B, A, C] agent utterances (state.c), zeros for silent agents
    landmark_pos: torch.Tensor  # [B, L, 2] (landmarks never move in these scenarios)
    goal: torch.Tensor  # [B, A] long

    def __post_init__(self) -> None:
        self.invalidate()

    def invalidate(self) -> None:
        """Forget the cached geometry; call after any change of positions."""
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._landmarks: tuple[torch.Tensor, torch.Tensor] | None = None

    def agent_pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """rel [B, A, A, 2] with rel[b, i, j] = p_j - p_i, and dist [B, A, A] = |p_i - p_j|, cached.

        One computation serves the observation, the collision test of the reward and the next step's contact
        forces (the positions are the same). mpe2 computes |p_i - p_j| as sqrt(sum(square(p_i - p_j)));
        negating a difference is exact, so the squares and hence the distances are bitwise the same.
        """
        if self._pairs is None:
            rel = self.pos[:, None, :, :] - self.pos[:, :, None, :]
            sq = rel.square()
            self._pairs = rel, sqrt(sq[..., 0] + sq[..., 1])  # np.sum of two squares
        return self._pairs

    def landmark_offsets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """rel [B, A, L, 2] with rel[b, i, l] = landmark_l - p_i, and dist [B, A, L], cached."""
        if self._landmarks is None:
            rel = self.landmark_pos[:, None, :, :] - self.pos[:, :, None, :]
            sq = rel.square()
            self._landmarks = rel, sqrt(sq[..., 0] + sq[..., 1])
        return self._landmarks

    def assign(self, index: torch.Tensor, other: WorldState) -> None:
        """Overwrite worlds ``index`` [K] with the K worlds of ``other``."""
        for f in fields(self):
            getattr(self, f.name)[index] = getattr(other, f.name).to(getattr(self, f.name).dtype)
        self.invalidate()


class Scenario:
    """What a scenario file defines. Agent properties follow mpe2's ``make_world``."""

    spec: ScenarioSpec
    n_landmarks: int
    dim_c: int
    agent_size: tuple[float, ...]
    movable: tuple[bool, ...]
    silent: tuple[bool, ...]
    collide: tuple[bool, ...]
    # per-episode sums accumulated by the core from ``reward``'s step figures
    accumulated_metrics: tuple[str, ...] = ()

    def sample_reset(self, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> WorldState:
        """n fresh worlds drawn from the torch generator (same distribution as mpe2's reset_world)."""
        raise NotImplementedError

    def numpy_reset(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One world drawn exactly as mpe2's ``reset_world`` draws it from ``rng`` (same calls, same order)."""
        raise NotImplementedError

    def read_goals(self, world: Any) -> np.ndarray:
        """[A] goal landmark index per agent of an mpe2 world (-1 where the agent has no goal_b)."""
        return np.full(len(world.agents), -1, dtype=np.int64)

    def observe(self, w: WorldState) -> torch.Tensor | list[torch.Tensor]:
        """Observations in mpe2's ``observation`` order: [B, A, D] if all agents have the same width D,
        else a list with each agent's [B, obs_dim_i]."""
        raise NotImplementedError

    def reward(self, w: WorldState) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rewards [B, A] after a step, and per-step figures [B] for ``accumulated_metrics``."""
        raise NotImplementedError

    def last_step_metrics(self, w: WorldState) -> dict[str, torch.Tensor]:
        """Task figures [B] measured on the last state of an episode."""
        return {}


def read_mpe2_world(scenario: Scenario, env: Any) -> dict[str, np.ndarray]:
    """The state of a real mpe2 env's world (parallel or AEC) as numpy arrays, in WorldState's layout."""
    world = env.unwrapped.world
    names = tuple(a.name for a in world.agents)
    if names != scenario.spec.agent_names or len(world.landmarks) != scenario.n_landmarks:
        raise ValueError(f"mpe2 world has agents {list(names)} and {len(world.landmarks)} landmarks, expected "
                         f"{list(scenario.spec.agent_names)} and {scenario.n_landmarks}")
    return {
        "pos": np.stack([a.state.p_pos for a in world.agents]),
        "vel": np.stack([a.state.p_vel for a in world.agents]),
        "comm": np.stack([np.asarray(a.state.c, dtype=np.float64).reshape(scenario.dim_c) for a in world.agents]),
        "landmark_pos": np.stack([lm.state.p_pos for lm in world.landmarks]),
        "goal": scenario.read_goals(world),
    }


def stack_worlds(worlds: list[dict[str, np.ndarray]], device: torch.device, dtype: torch.dtype) -> WorldState:
    """K numpy worlds (``numpy_reset`` / ``read_mpe2_world``) as one WorldState of K worlds."""

    def stack(key: str, kind: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.stack([w[key] for w in worlds]), dtype=kind, device=device)

    return WorldState(
        pos=stack("pos", dtype),
        vel=stack("vel", dtype),
        comm=stack("comm", dtype),
        landmark_pos=stack("landmark_pos", dtype),
        goal=stack("goal", torch.long),
    )


def check_batch_args(num_envs: int, dtype: torch.dtype) -> None:
    """The arguments every batched env takes, checked once for the port and the PettingZoo adapter."""
    if not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")


class BatchedMPEEnv:
    """B copies of one MPE scenario stepped as tensors, with auto-reset. See docs/ARCHITECTURE.md.

    ``reset`` / ``step`` return ``obs`` [B, A, obs_dim_max] (each agent's observation zero-padded on the
    right) and ``state`` [B, state_dim] (concatenation of the agents' unpadded observations = mpe2's
    ``state()``). Episodes only end by truncation at ``max_cycles`` (mpe2 never terminates these scenarios),
    so every environment of a batch that was reset together finishes together.
    """

    def __init__(
        self,
        scenario: Scenario,
        num_envs: int,
        seed: int | None = 0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        check_batch_args(num_envs, dtype)
        self.scenario = scenario
        self.spec: ScenarioSpec = scenario.spec
        adopt_spec(self, scenario.spec, num_envs, device, dtype)

        A, dev = self.n_agents, self.device
        self._movable = torch.tensor(scenario.movable, device=dev)  # [A] bool
        self._silent = torch.tensor(scenario.silent, device=dev)  # [A] bool
        self._all_movable, self._all_silent = all(scenario.movable), all(scenario.silent)
        self._all_collide = all(scenario.collide)
        # _set_action: u[axis] = +-1.0, then u *= sensitivity; the products are exact (0, +-5)
        self._move_forces = torch.tensor(MPE_MOVE_DIRECTIONS, device=dev, dtype=dtype) * SENSITIVITY  # [5, 2]
        size = torch.tensor(scenario.agent_size, device=dev, dtype=dtype)
        self._dist_min = size[:, None] + size[None, :]  # [A, A], mpe2: entity_a.size + entity_b.size
        collide = torch.tensor(scenario.collide, device=dev)
        self._contact_mask_f = (collide[:, None] & collide[None, :]).to(dtype)  # [A, A]
        self._any_contact = sum(scenario.collide) >= 2  # no colliding pair: skip the contact forces
        self._eye = torch.eye(A, dtype=torch.bool, device=dev)
        self._zero = torch.zeros((), dtype=dtype, device=dev)
        self._comm_eye = torch.eye(scenario.dim_c, device=dev, dtype=dtype)  # one-hot rows

        self._gen = torch.Generator(device=dev)
        self._gen.manual_seed(int(torch.seed() if seed is None else seed))
        self.world = scenario.sample_reset(num_envs, self._gen, dev, dtype)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=dev)  # steps taken in the current episode
        self.episode_returns = torch.zeros(num_envs, A, dtype=dtype, device=dev)
        self._acc = {k: torch.zeros(num_envs, dtype=dtype, device=dev) for k in scenario.accumulated_metrics}

    # ------------------------------------------------------------------ observations
    def _observe(self) -> tuple[torch.Tensor, torch.Tensor]:
        per_agent = self.scenario.observe(self.world)  # [B, A, D] (same width for all) or A x [B, obs_dim_i]
        if isinstance(per_agent, torch.Tensor):
            return per_agent, per_agent.reshape(self.num_envs, self.state_dim)
        state = torch.cat(per_agent, dim=1)  # [B, state_dim]
        if all(d == self.obs_dim_max for d in self.obs_dims):
            obs = torch.stack(per_agent, dim=1)  # [B, A, D]
        else:
            obs = torch.zeros(self.num_envs, self.n_agents, self.obs_dim_max, dtype=self.dtype, device=self.device)
            for i, o in enumerate(per_agent):
                obs[:, i, : o.shape[1]] = o
        return obs, state

    # ------------------------------------------------------------------ resets
    def _reset_bookkeeping(self, index: torch.Tensor | slice) -> None:
        self.t[index] = 0
        self.episode_returns[index] = 0
        for v in self._acc.values():
            v[index] = 0

    def available_actions(self) -> None:
        """No action masks: every action of every agent is always available (the `BatchedEnv` contract)."""
        return None

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reset all B worlds; ``seed`` reseeds this env's torch generator (runs are reproducible).

        Returns obs [B, A, obs_dim_max], state [B, state_dim].
        """
        if seed is not None:
            self._gen.manual_seed(int(seed))
        self.world = self.scenario.sample_reset(self.num_envs, self._gen, self.device, self.dtype)
        self._reset_bookkeeping(slice(None))
        return self._observe()

    def reset_from_mpe2_seeds(self, seeds: list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """World b = the world mpe2 gives for ``reset(seed=seeds[b])`` (same numpy draws, same order).

        For seeded evaluation: B seeds, one episode each. Later auto-resets use this env's own generator.
        """
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds (one per environment), got {len(seeds)}")
        worlds = [self.scenario.numpy_reset(np.random.Generator(np.random.PCG64(np.random.SeedSequence(s))))
                  for s in seeds]  # = gymnasium.utils.seeding.np_random(s), which mpe2's reset uses
        self._load_numpy_worlds(torch.arange(self.num_envs, device=self.device), worlds)
        self._reset_bookkeeping(slice(None))
        return self._observe()

    def set_world_from_mpe2(self, env_ids: list[int], mpe2_envs: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy the worlds of mpe2 envs (parallel or AEC) into environments ``env_ids``.

        Positions, velocities, utterances, landmarks, goals and the step counter are copied; the episode
        return and metric sums of those environments restart at zero. Returns the new obs, state of all B.
        """
        if len(env_ids) != len(mpe2_envs):
            raise ValueError(f"expected one mpe2 env per env id, got {len(env_ids)} ids and {len(mpe2_envs)} envs")
        worlds = [read_mpe2_world(self.scenario, e) for e in mpe2_envs]
        steps = [int(e.unwrapped.steps) for e in mpe2_envs]
        index = torch.as_tensor(list(env_ids), dtype=torch.long, device=self.device)
        self._load_numpy_worlds(index, worlds)
        self._reset_bookkeeping(index)
        self.t[index] = torch.as_tensor(steps, dtype=torch.long, device=self.device)
        return self._observe()

    def _load_numpy_worlds(self, index: torch.Tensor, worlds: list[dict[str, np.ndarray]]) -> None:
        self.world.assign(index, stack_worlds(worlds, self.device, self.dtype))

    # ------------------------------------------------------------------ stepping
    def _physics(self, actions: torch.Tensor) -> None:
        """mpe2 World.step for B worlds, after SimpleEnv._execute_world_step has decoded the actions."""
        scen, world = self.scenario, self.world
        B, A = actions.shape
        # Decode: a movable agent's move is action % 5 and the rest (action // 5) is its utterance.
        if self._all_movable and self._all_silent:
            move, say = actions, None  # [B, A] (actions < 5 was checked)
        else:
            move = torch.where(self._movable, actions % N_MOVES, 0)  # [B, A]
            say = torch.where(self._movable, actions // N_MOVES, actions)  # [B, A]
        # _set_action: u[axis] = +-1.0, then u *= sensitivity (exact in any order: 0, +-5).
        # apply_action_force: p_force = u + 0.0 (no motor noise).
        force = self._move_forces.index_select(0, move.reshape(-1)).view(B, A, 2)  # [B, A, 2]

        if self._any_contact:
            # apply_environment_force visits pairs (a, b > a) in entity order, so agent i receives its contact
            # forces summed in ascending order of the other agent j; each is
            # contact_force * (p_i - p_j) / dist * penetration. With rel = p_j - p_i we compute the negated
            # force and subtract it: both steps are exact in IEEE arithmetic, so the sums are bitwise mpe2's.
            rel, dist = world.agent_pairs()  # [B, A, A, 2], [B, A, A]
            dist = dist.masked_fill(self._eye, 1.0)  # diagonal: rel is 0 there, avoid 0/0
            k = CONTACT_MARGIN
            x = (self._dist_min - dist) / k  # == -(dist - dist_min) / k exactly
            penetration = torch.logaddexp(self._zero, x) * k  # np.logaddexp(0, x) * k
            neg_force = CONTACT_FORCE * rel / dist[..., None] * penetration[..., None]  # [B, A, A, 2]
            if not self._all_collide:
                neg_force = neg_force * self._contact_mask_f[:, :, None]  # exact: x * 1 or 0
            for j in range(A):  # mpe2's summation order, for bitwise parity in float64
                force = force - neg_force[:, :, j]

        # integrate_state (mass 1, no max_speed in these scenarios); only movable entities move.
        new_pos = world.pos + world.vel * DT
        new_vel = world.vel * (1 - DAMPING) + force * DT  # v *= 0.75; v += (F / 1.0) * dt
        if self._all_movable:
            world.pos, world.vel = new_pos, new_vel
        else:
            movable = self._movable[None, :, None]
            world.pos = torch.where(movable, new_pos, world.pos)
            world.vel = torch.where(movable, new_vel, world.vel)
        world.invalidate()
        # update_agent_state: silent agents say zeros (already), the others the one-hot of their utterance.
        if say is not None:
            said = self._comm_eye.index_select(0, say.clamp(max=scen.dim_c - 1).reshape(-1)).view(B, A, -1)
            world.comm = torch.where(self._silent[None, :, None], 0.0, said)

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Step all B worlds with ``actions`` long [B, A].

        Returns obs [B, A, obs_dim_max], state [B, state_dim], rewards [B, A], dones bool [B], info with
        ``episode_returns`` [B, A] and ``metrics`` (dict of [B]) valid where ``dones``, and ``final_obs``
        [B, A, obs_dim_max] / ``final_state`` [B, state_dim]: the last observation of the episode that
        ended (equal to obs/state where not done), for bootstrapping at truncation.
        """
        actions = check_actions(self, actions).to(self.device)
        self._physics(actions)
        rewards, step_figures = self.scenario.reward(self.world)  # [B, A]
        self.t += 1
        self.episode_returns += rewards
        for k, v in step_figures.items():
            self._acc[k] += v
        dones = self.t >= self.max_cycles  # [B]
        obs, state = self._observe()
        metrics = {**self.scenario.last_step_metrics(self.world), **{k: v.clone() for k, v in self._acc.items()}}
        info: dict[str, Any] = {
            "episode_returns": self.episode_returns.clone(),
            "metrics": metrics,
            "final_obs": obs,
            "final_state": state,
        }
        if bool(dones.any()):
            index = dones.nonzero().squeeze(1)
            self.world.assign(index, self.scenario.sample_reset(len(index), self._gen, self.device, self.dtype))
            self._reset_bookkeeping(index)
            obs, state = self._observe()
        return obs, state, rewards, dones, info
