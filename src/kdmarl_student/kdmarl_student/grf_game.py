"""One Google Research Football game for a ``grf:<scenario>`` spec: numpy + gfootball, no torch.

Shared by both sides so an episode is defined once: the teacher's batched env (``kdmarl_teacher.envs.grf``) steps
many ``GrfGame``s in worker processes, and a bundle's evaluation (``kdmarl evaluate --bundle``) and the ROS
simulation bridge step one. The episode of engine seed ``s`` is ``GrfGame.reset(s)`` everywhere: GRF reads
``game_engine_random_seed`` at every reset, and ``reverse_team_processing`` (which GRF otherwise draws once, from
the first seed a process sees) is set from the same seed, so an episode never depends on what the process ran
before. Later episodes of an auto-resetting game follow ``episode_seed`` (see the teacher's env).

Episodes end when GRF ends them (goal, ball out of play, possession change in the academy, ``game_duration``) or
at the spec's ``max_steps``. Figures at the end (``metrics``): ``goal_diff`` (left goals minus right goals in the
episode, from GRF's ``score_reward``) and ``won`` (goal_diff > 0). Every action is always available:
``available_actions()`` gives no masks.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from kdmarl_student.scenarios import ScenarioSpec


def import_gfootball() -> Any:
    """``gfootball.env``, or an ImportError that says how to install it (an optional extra)."""
    try:
        import gfootball.env as football_env  # noqa: PLC0415
    except ImportError as e:
        raise ImportError("Google Research Football is not installed: run `bash scripts/setup_grf.sh` "
                          f"(or `make grf`) to build gfootball 2.10.2 into the venv ({e})") from e
    return football_env


def episode_seed(root: tuple[int, ...], k: int) -> int:
    """Engine seed of episode k of a game whose seed root is ``root``: ``(s,)`` -> s itself for k = 0 (the
    episode of seed s), otherwise a SeedSequence draw from (root..., k)."""
    if len(root) == 1 and k == 0:
        return int(root[0])
    return int(np.random.SeedSequence([*root, k]).generate_state(1)[0] % (2**31 - 1))


class GrfGame:
    """One GRF game: ``reset(seed)``, ``step`` with one action per agent, the episode's figures in ``metrics``.

    ``step_array``/``reset_array`` are the batch side's numpy form; ``reset``/``step`` the PettingZoo-style dicts
    the bundle evaluation and the ROS bridge use.
    """

    def __init__(self, spec: ScenarioSpec) -> None:
        football_env = import_gfootball()
        self.spec = spec
        self.possible_agents = list(spec.agent_names)
        self.agents: list[str] = []
        self.n_agents, self.max_steps = spec.n_agents, spec.max_cycles
        with warnings.catch_warnings():  # gym 0.25's wrappers warn about their (old) step API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.game = football_env.create_environment(
                env_name=spec.extra["scenario"], representation="simple115v2", rewards=spec.params["rewards"],
                number_of_left_players_agent_controls=spec.n_agents, stacked=False, render=False,
                write_goal_dumps=False, write_full_episode_dumps=False, write_video=False)
        self.t, self.goals = 0, 0
        self.metrics: dict[str, float] = {}

    # ---- numpy form (the batched env) -------------------------------------------------------------------------
    def reset_array(self, seed: int) -> np.ndarray:
        """Start the episode of engine seed ``seed``: obs float32 [N, 115]."""
        seed = int(seed)
        config = self.game.unwrapped._config  # GRF's Config: the engine seed is read at every reset
        config["game_engine_random_seed"] = seed
        config["reverse_team_processing"] = bool(seed % 2)
        obs = self.game.reset()
        self.t, self.goals, self.metrics = 0, 0, {}
        self.agents = list(self.possible_agents)
        return np.asarray(obs, dtype=np.float32).reshape(self.n_agents, -1)

    def step_array(self, actions: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        """actions [N] ints -> obs float32 [N, 115], rewards float32 [N], done (the episode ended with this step;
        ``metrics`` then holds its figures)."""
        obs, reward, game_done, info = self.game.step([int(a) for a in actions])
        self.t += 1
        self.goals += int(info.get("score_reward", 0))
        done = bool(game_done) or self.t >= self.max_steps
        if done:
            self.metrics = {"goal_diff": float(self.goals), "won": float(self.goals > 0)}
            self.agents = []
        return (np.asarray(obs, dtype=np.float32).reshape(self.n_agents, -1),
                np.asarray(reward, dtype=np.float32).reshape(self.n_agents), done)

    # ---- dict form (bundle evaluation, ROS bridge) ------------------------------------------------------------
    def reset(self, seed: int) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        obs = self.reset_array(seed)
        return {a: obs[i] for i, a in enumerate(self.possible_agents)}, {a: {} for a in self.possible_agents}

    def available_actions(self) -> dict[str, np.ndarray]:
        """No masks: every GRF action is always available (an empty mapping: no agent has a mask)."""
        return {}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        idle = self.spec.extra["safe_action"]
        obs, rewards, done = self.step_array([int(actions.get(a, idle)) for a in self.possible_agents])
        flags = {a: done for a in self.possible_agents}
        return ({a: obs[i] for i, a in enumerate(self.possible_agents)},
                {a: float(rewards[i]) for i, a in enumerate(self.possible_agents)}, flags, dict(flags),
                {a: {} for a in self.possible_agents})

    def close(self) -> None:
        self.game.close()
