"""The simulators the ROS simulation bridge can step: one per scenario family, picked from the scenario's name.

The bridge (:mod:`kdmarl_bringup.sim_bridge`) only talks to this interface, so a second simulator is a class
here, not a second bridge. Each one reproduces exactly what the offline evaluation
(``kdmarl_student.bundle_eval.evaluate_bundle``, i.e. ``kdmarl evaluate --bundle``) steps for that scenario,
which is why lockstep results over ROS equal the offline ones episode for episode:

- :class:`MpeSimulator`: the real mpe2 parallel env (``scenarios.make_mpe2_env``), episode k ``reset(seed)``;
  no action masks; task figures from ``scenarios.task_metrics`` (``collisions`` summed over the steps).
- :class:`SmaxSimulator`: one SMAX battle (``kdmarl_student.smax_battle.SmaxBattle``: jax + jaxmarl, no torch);
  per step every agent's available actions (``masks()``, published in ``AgentObservation.action_mask``);
  figures ``won``, ``allies_alive``, ``enemy_hp_left`` at the battle's end.
- :class:`GrfSimulator`: one Google Research Football game (``kdmarl_student.grf_game.GrfGame``: gfootball, no
  torch); no masks; figures ``won`` and ``goal_diff`` at the episode's end.

Interface: ``possible_agents``, ``dt`` (simulated seconds per step, for ``/clock`` and stamps), ``step_limit``
(steps after which the bridge ends an episode; ``None``: the simulator's own ``done`` ends it — a SMAX battle
at its time limit is done after ``max_steps + 1`` steps, as ``evaluate_bundle`` steps it),
``reset(seed) -> observations``, ``masks() -> {agent: bool[n_actions]} | None`` (``None``: every action always
available), ``step(actions) -> (observations, rewards, done)``, ``step_metrics()`` (figures summed over the
steps: ``collisions``), ``episode_metrics()`` (the figures of the episode that just ended, without the summed
ones, which the bridge fills in).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from kdmarl_student.scenarios import ScenarioSpec, is_grf, is_smax, make_mpe2_env, task_metrics


class MpeSimulator:
    """mpe2's parallel env, as the bridge has always stepped it."""

    masked = False

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.env = make_mpe2_env(spec)
        self.possible_agents = list(spec.agent_names)
        self.dt = float(getattr(self.env.unwrapped.world, "dt", 0.1))
        self.step_limit: int | None = spec.max_cycles

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        obs, _ = self.env.reset(seed=seed)
        return obs

    def masks(self) -> dict[str, np.ndarray] | None:
        return None

    def step(self, actions: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
        obs, rewards, terms, truncs, _ = self.env.step(actions)
        return obs, rewards, all(terms.get(a, True) or truncs.get(a, True) for a in self.possible_agents)

    def step_metrics(self) -> dict[str, float]:
        return {"collisions": task_metrics(self.spec.name, self.env.unwrapped.world).get("collisions", 0.0)}

    def episode_metrics(self) -> dict[str, float]:
        """Task figures of the current world state with the offline evaluation's definitions."""
        return task_metrics(self.spec.name, self.env.unwrapped.world)


class SmaxSimulator:
    """One SMAX battle per episode (HeuristicEnemySMAX), with per-step action masks."""

    masked = True

    def __init__(self, spec: ScenarioSpec) -> None:
        from kdmarl_student.smax_battle import SmaxBattle  # noqa: PLC0415  (jax only for SMAX)

        self.spec = spec
        self.battle = SmaxBattle(spec)
        self.possible_agents = list(self.battle.possible_agents)
        raw = self.battle.raw
        self.dt = float(raw.time_per_step) * float(raw.world_steps_per_env_step)  # SMAX: 8 x 1/16 s
        self.step_limit: int | None = None  # the battle ends itself (victory, defeat or SMAX's time limit)

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        obs, _ = self.battle.reset(seed)
        return obs

    def masks(self) -> dict[str, np.ndarray]:
        return self.battle.available_actions()

    def step(self, actions: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
        obs, rewards, terms, truncs, _ = self.battle.step(actions)
        return obs, rewards, all(terms[a] or truncs[a] for a in self.possible_agents)

    def step_metrics(self) -> dict[str, float]:
        return {}

    def episode_metrics(self) -> dict[str, float]:
        return dict(self.battle.metrics)


class GrfSimulator:
    """One Google Research Football game per episode (``kdmarl_student.grf_game.GrfGame``); no action masks."""

    masked = False

    def __init__(self, spec: ScenarioSpec) -> None:
        from kdmarl_student.grf_game import GrfGame  # noqa: PLC0415  (gfootball only for GRF)

        self.spec = spec
        self.game = GrfGame(spec)
        self.possible_agents = list(self.game.possible_agents)
        self.dt = 0.1  # a GRF step is physics_steps_per_frame = 10 engine steps of 10 ms of game time
        self.step_limit: int | None = None  # the game ends itself (GRF's end or the spec's max_steps)

    def reset(self, seed: int) -> dict[str, np.ndarray]:
        obs, _ = self.game.reset(seed)
        return obs

    def masks(self) -> dict[str, np.ndarray] | None:
        return None

    def step(self, actions: dict[str, int]) -> tuple[dict[str, np.ndarray], dict[str, float], bool]:
        obs, rewards, terms, truncs, _ = self.game.step(actions)
        return obs, rewards, all(terms[a] or truncs[a] for a in self.possible_agents)

    def step_metrics(self) -> dict[str, float]:
        return {}

    def episode_metrics(self) -> dict[str, float]:
        return dict(self.game.metrics)


def make_simulator(spec: ScenarioSpec) -> Any:
    """The simulator of a scenario: SMAX for ``smax:<map>``, GRF for ``grf:<scenario>``, mpe2 otherwise."""
    if is_grf(spec.name):
        return GrfSimulator(spec)
    return SmaxSimulator(spec) if is_smax(spec.name) else MpeSimulator(spec)


__all__ = ["GrfSimulator", "MpeSimulator", "SmaxSimulator", "make_simulator"]
