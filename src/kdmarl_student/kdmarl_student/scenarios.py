"""Scenario metadata: observation layouts and action meanings of the MPE scenarios, defined once.

Everything that has to agree about an observation vector or an action index (the teacher's batched
environments, the bundle manifest, the student runtime on a robot, the ROS simulation bridge) reads it from
here. This module is pure Python + numpy on purpose: robots import it and never have torch.

The numbers below are mpe2 1.1.1's (``mpe2/<scenario>/<scenario>.py`` and ``_mpe_utils/simple_env.py``):

- a movable agent's discrete move is ``MPE_MOVES`` (0 no-op, 1 -x, 2 +x, 3 -y, 4 +y);
- a speaking agent's discrete utterance is a one-hot of width ``dim_c``;
- an agent that both moves and speaks has ``5 * dim_c`` actions, index = move + 5 * utterance
  (mpe2 takes ``action % 5`` as the move and ``action // 5`` as the utterance).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MPE_MOVES: tuple[str, ...] = ("no_op", "left", "right", "down", "up")  # 0 no-op, 1 -x, 2 +x, 3 -y, 4 +y
# Unit direction of each move, in MPE_MOVES order (mpe2's SimpleEnv._set_action): the env port's forces and
# the robot adapter's Twist both come from this table.
MPE_MOVE_DIRECTIONS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))
# How a scenario is stepped against its students: lockstep (evaluation: every action awaited) or realtime
# (fixed rate, latest action wins). The launch arguments, the bridge and the student node all check this.
MODES: tuple[str, ...] = ("lockstep", "realtime")
# mpe2 simple_spread's benchmark_data: a landmark is occupied when an agent is closer than this.
OCCUPANCY_DISTANCE = 0.1

SCENARIOS: tuple[str, ...] = ("simple_spread", "simple_speaker_listener", "simple_reference")

# mpe2 module per scenario, and the parameters each accepts with mpe2's defaults.
_MPE2_MODULES: dict[str, str] = {
    "simple_spread": "mpe2.simple_spread_v3",
    "simple_speaker_listener": "mpe2.simple_speaker_listener_v4",
    "simple_reference": "mpe2.simple_reference_v3",
}
_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "simple_spread": {
        "N": 3,
        "local_ratio": 0.5,
        "max_cycles": 25,
        "num_agent_neighbors": None,
        "num_landmark_neighbors": None,
    },
    "simple_speaker_listener": {"max_cycles": 25},
    "simple_reference": {"local_ratio": 0.5, "max_cycles": 25},
}


@dataclass(frozen=True)
class AgentSpec:
    """One agent of a scenario: what its observation vector holds and what its action indices mean."""

    name: str  # mpe2 name: agent_0, speaker_0, listener_0, ...
    role: str  # "agent" | "speaker" | "listener"
    obs_dim: int
    n_actions: int
    layout: dict[str, tuple[int, int]]  # named slices [start, stop) of the observation, in order
    action_meanings: tuple[str, ...]  # index -> meaning


@dataclass(frozen=True)
class ScenarioSpec:
    """A scenario with its resolved parameters (mpe2 defaults filled in) and its agents in mpe2's order."""

    name: str  # "simple_spread" | "simple_speaker_listener" | "simple_reference"
    params: dict[str, Any]  # every parameter mpe2 takes for this scenario, defaults filled in
    agents: tuple[AgentSpec, ...]
    state_dim: int  # global state = concatenation of every agent's observation (mpe2's state())
    max_cycles: int
    mpe2_module: str  # "mpe2.simple_spread_v3"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # world constants (dim_c, ...)

    @property
    def n_agents(self) -> int:
        return len(self.agents)

    @property
    def agent_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.agents)

    @property
    def obs_dims(self) -> tuple[int, ...]:
        return tuple(a.obs_dim for a in self.agents)

    @property
    def n_actions(self) -> tuple[int, ...]:
        return tuple(a.n_actions for a in self.agents)

    @property
    def obs_dim_max(self) -> int:
        return max(self.obs_dims)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (layouts as [start, stop] lists), e.g. for a bundle manifest."""
        return {
            "name": self.name,
            "params": dict(self.params),
            "state_dim": self.state_dim,
            "max_cycles": self.max_cycles,
            "mpe2_module": self.mpe2_module,
            "agents": [
                {
                    "name": a.name,
                    "role": a.role,
                    "obs_dim": a.obs_dim,
                    "n_actions": a.n_actions,
                    "layout": {k: [int(s), int(e)] for k, (s, e) in a.layout.items()},
                    "action_meanings": list(a.action_meanings),
                }
                for a in self.agents
            ],
        }


def _layout(parts: list[tuple[str, int]]) -> dict[str, tuple[int, int]]:
    """Consecutive named slices from (name, width) pairs; zero-width parts are kept (empty slice)."""
    out: dict[str, tuple[int, int]] = {}
    start = 0
    for name, width in parts:
        out[name] = (start, start + width)
        start += width
    return out


def _check_int(name: str, value: Any, minimum: int, allow_none: bool = False) -> None:
    if allow_none and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        expected = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"parameter {name!r} must be {expected}, got {value!r}")


def _check_ratio(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"parameter 'local_ratio' must be a number in [0, 1], got {value!r}")


def _spread(p: dict[str, Any]) -> tuple[tuple[AgentSpec, ...], dict[str, Any]]:
    _check_int("N", p["N"], 1)
    _check_ratio(p["local_ratio"])
    p["local_ratio"] = float(p["local_ratio"])
    _check_int("num_agent_neighbors", p["num_agent_neighbors"], 1, allow_none=True)
    _check_int("num_landmark_neighbors", p["num_landmark_neighbors"], 1, allow_none=True)
    n = p["N"]
    dim_c = 2
    # mpe2 pads to exactly k slots when k is given, even if fewer entities exist.
    n_landmark_slots = n if p["num_landmark_neighbors"] is None else p["num_landmark_neighbors"]
    n_other_slots = n - 1 if p["num_agent_neighbors"] is None else p["num_agent_neighbors"]
    layout = _layout(
        [
            ("self_vel", 2),
            ("self_pos", 2),
            ("landmarks", 2 * n_landmark_slots),
            ("other_agents", 2 * n_other_slots),
            ("comm", dim_c * n_other_slots),  # agents are silent in simple_spread: always zeros
        ]
    )
    obs_dim = max(stop for _, stop in layout.values())
    agents = tuple(
        AgentSpec(f"agent_{i}", "agent", obs_dim, len(MPE_MOVES), layout, MPE_MOVES) for i in range(n)
    )
    extra = {
        "dim_c": dim_c,
        "n_landmarks": n,
        "n_landmark_slots": n_landmark_slots,
        "n_other_slots": n_other_slots,
        "agent_size": 0.15,
        "occupancy_distance": OCCUPANCY_DISTANCE,
    }
    return agents, extra


def _speaker_listener(p: dict[str, Any]) -> tuple[tuple[AgentSpec, ...], dict[str, Any]]:
    dim_c = 3
    speaker = AgentSpec(
        "speaker_0", "speaker", 3, dim_c, _layout([("goal_color", 3)]), tuple(f"say_{k}" for k in range(dim_c))
    )
    listener_layout = _layout([("self_vel", 2), ("landmarks", 6), ("comm", dim_c)])
    listener = AgentSpec("listener_0", "listener", 11, len(MPE_MOVES), listener_layout, MPE_MOVES)
    return (speaker, listener), {"dim_c": dim_c, "n_landmarks": 3}


def _reference(p: dict[str, Any]) -> tuple[tuple[AgentSpec, ...], dict[str, Any]]:
    _check_ratio(p["local_ratio"])
    p["local_ratio"] = float(p["local_ratio"])
    dim_c = 10
    layout = _layout([("self_vel", 2), ("landmarks", 6), ("goal_color", 3), ("comm", dim_c)])
    # mpe2: action % 5 is the move, action // 5 the utterance.
    meanings = tuple(f"{MPE_MOVES[a % 5]}+say_{a // 5}" for a in range(5 * dim_c))
    agents = tuple(AgentSpec(f"agent_{i}", "agent", 21, 5 * dim_c, layout, meanings) for i in range(2))
    return agents, {"dim_c": dim_c, "n_landmarks": 3}


_BUILDERS = {"simple_spread": _spread, "simple_speaker_listener": _speaker_listener, "simple_reference": _reference}


# ---- SMAX (JaxMARL's SMAC re-implementation, jaxmarl 0.2.0 ``jaxmarl/environments/smax/smax_env.py``) --------
# Scenario names are "smax:<map>"; the environment is HeuristicEnemySMAX (our team = the allies, the enemy a
# heuristic). Nothing here imports jax: robots read layouts and meanings from this table.
SMAX_PREFIX = "smax:"
SMAX_UNIT_TYPES: tuple[str, ...] = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
SMAX_MOVES: tuple[str, ...] = ("north", "east", "south", "west", "stop")  # actions 0-4; 5 + j = attack enemy j
SMAX_UNIT_FEATURES = 7 + len(SMAX_UNIT_TYPES)  # health, rel x, rel y, last move x, y, last target, cooldown, type
SMAX_OWN_FEATURES = 4 + len(SMAX_UNIT_TYPES)  # health, x, y, cooldown, type one-hot
# map -> (ally unit types, enemy unit types): SMAX's MAP_NAME_TO_SCENARIO without its smacv2_* maps (those draw
# unit types and positions per episode, so an agent has no fixed type); tested equal to jaxmarl's table.
SMAX_MAPS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "3m": ((0,) * 3, (0,) * 3),
    "2s3z": ((2, 2, 3, 3, 3), (2, 2, 3, 3, 3)),
    "25m": ((0,) * 25, (0,) * 25),
    "3s5z": ((2, 2, 2, 3, 3, 3, 3, 3), (2, 2, 2, 3, 3, 3, 3, 3)),
    "8m": ((0,) * 8, (0,) * 8),
    "5m_vs_6m": ((0,) * 5, (0,) * 6),
    "10m_vs_11m": ((0,) * 10, (0,) * 11),
    "27m_vs_30m": ((0,) * 27, (0,) * 30),
    "3s5z_vs_3s6z": ((2, 2, 2, 3, 3, 3, 3, 3), (2, 2, 2, 3, 3, 3, 3, 3, 3)),
    "3s_vs_5z": ((2, 2, 2), (3, 3, 3, 3, 3)),
    "6h_vs_8z": ((5,) * 6, (3,) * 8),
}
# HeuristicEnemySMAX keyword arguments with the values of JaxMARL's MAPPO SMAX baseline
# (baselines/MAPPO/config/mappo_homogenous_rnn_smax.yaml ENV_KWARGS) and SMAX's defaults.
_SMAX_DEFAULT_PARAMS: dict[str, Any] = {
    "see_enemy_actions": True,
    "walls_cause_death": True,
    "attack_mode": "closest",
    "max_steps": 100,
}


def is_smax(name: str) -> bool:
    """True for a SMAX scenario name ("smax:3m")."""
    return isinstance(name, str) and name.startswith(SMAX_PREFIX)


def observation_scale(name: str) -> float:
    """Typical magnitude of a scenario's observation entries: MPE's relative positions and velocities reach a
    few units (1.5); SMAX's features are normalized (health and cooldown fractions, positions over the sight
    range, one-hots; GRF's pitch coordinates in [-1, 1]: 0.5). The exporter draws its random parity inputs at
    this scale."""
    return 0.5 if is_smax(name) or is_grf(name) else 1.5


def smax_agent_layout(n_allies: int, n_enemies: int) -> dict[str, tuple[int, int]]:
    """An ally's observation in SMAX's "unit_list" order: the other allies' features, the enemies', then its own
    (health, position, cooldown) and its unit-type one-hot."""
    return _layout([
        ("allies", SMAX_UNIT_FEATURES * (n_allies - 1)),
        ("enemies", SMAX_UNIT_FEATURES * n_enemies),
        ("own", SMAX_OWN_FEATURES - len(SMAX_UNIT_TYPES)),
        ("unit_type", len(SMAX_UNIT_TYPES)),
    ])


def _smax_spec(name: str, params: dict[str, Any]) -> ScenarioSpec:
    map_name = name.removeprefix(SMAX_PREFIX)
    if map_name not in SMAX_MAPS:
        raise ValueError(f"unknown SMAX map {map_name!r} in scenario {name!r}: expected one of "
                         f"{', '.join(SMAX_PREFIX + m for m in SMAX_MAPS)}")
    unknown = sorted(set(params) - set(_SMAX_DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {name}: expected a subset of "
                         f"{sorted(_SMAX_DEFAULT_PARAMS)}")
    resolved = {**_SMAX_DEFAULT_PARAMS, **params}
    _check_int("max_steps", resolved["max_steps"], 1)
    if resolved["attack_mode"] not in ("closest", "random"):
        raise ValueError(f"parameter 'attack_mode' must be 'closest' or 'random', got {resolved['attack_mode']!r}")
    allies, enemies = SMAX_MAPS[map_name]
    layout = smax_agent_layout(len(allies), len(enemies))
    obs_dim = max(stop for _, stop in layout.values())
    meanings = SMAX_MOVES + tuple(f"attack_enemy_{j}" for j in range(len(enemies)))
    agents = tuple(AgentSpec(f"ally_{i}", SMAX_UNIT_TYPES[t], obs_dim, len(meanings), layout, meanings)
                   for i, t in enumerate(allies))
    n_units = len(allies) + len(enemies)
    return ScenarioSpec(
        name=SMAX_PREFIX + map_name,
        params=resolved,
        agents=agents,
        state_dim=(SMAX_OWN_FEATURES + 2) * n_units,  # SMAX get_world_state: every unit's features + team + type
        max_cycles=int(resolved["max_steps"]),
        mpe2_module="jaxmarl.environments.smax",  # not mpe2: the module the environment comes from
        extra={"map_name": map_name, "n_allies": len(allies), "n_enemies": len(enemies),
               "ally_unit_types": list(allies), "enemy_unit_types": list(enemies),
               "unit_types": list(SMAX_UNIT_TYPES), "safe_action": SMAX_MOVES.index("stop"),
               "action_mask": "per step: SMAX get_avail_actions (stop always available)"},
    )


# ---- Google Research Football (gfootball 2.10.2, ``gfootball/env/wrappers.py`` Simple115StateWrapper) ----------
# Scenario names are "grf:<scenario>"; every controlled left player is an agent (GRF switches which footballer an
# agent drives as the ball moves, as a human player's "active" player; the ``active`` slice says which).
GRF_PREFIX = "grf:"
# scenario -> (controlled left players, GRF's game_duration in steps): the agent counts of the MAPPO reference
# (marlbenchmark/on-policy train_football_*.sh) and the game_duration in each ``gfootball/scenarios/*.py``.
GRF_SCENARIOS: dict[str, tuple[int, int]] = {
    "academy_3_vs_1_with_keeper": (3, 400),
    "academy_counterattack_easy": (4, 400),
    "academy_pass_and_shoot_with_keeper": (2, 400),
    "academy_run_pass_and_shoot_with_keeper": (2, 400),
    "academy_corner": (10, 400),
}
# GRF's default action set (football_action_set.action_set_v1), index -> meaning.
GRF_ACTIONS: tuple[str, ...] = (
    "idle", "left", "top_left", "top", "top_right", "right", "bottom_right", "bottom", "bottom_left",
    "long_pass", "high_pass", "short_pass", "shot", "sprint", "release_direction", "release_sprint",
    "sliding", "dribble", "release_dribble")
# simple115v2: 11 (x, y) per team and their directions (missing players -1), the ball's position (x, y, z) and
# direction, who owns the ball (none, left, right), the agent's active player one-hot and the game mode.
GRF_LAYOUT: dict[str, tuple[int, int]] = _layout([
    ("left_team", 22), ("left_team_direction", 22), ("right_team", 22), ("right_team_direction", 22),
    ("ball", 3), ("ball_direction", 3), ("ball_owned_team", 3), ("active", 11), ("game_mode", 7)])
GRF_OBS_DIM = 115
_GRF_DEFAULT_PARAMS: dict[str, Any] = {"rewards": "scoring,checkpoints", "max_steps": None}


def is_grf(name: str) -> bool:
    """True for a Google Research Football scenario name ("grf:academy_3_vs_1_with_keeper")."""
    return isinstance(name, str) and name.startswith(GRF_PREFIX)


def _grf_spec(name: str, params: dict[str, Any]) -> ScenarioSpec:
    scenario = name.removeprefix(GRF_PREFIX)
    if scenario not in GRF_SCENARIOS and "academy_" + scenario in GRF_SCENARIOS:
        scenario = "academy_" + scenario  # "grf:3_vs_1_with_keeper" is the academy scenario
    if scenario not in GRF_SCENARIOS:
        raise ValueError(f"unknown GRF scenario {scenario!r} in {name!r}: expected one of "
                         f"{', '.join(GRF_PREFIX + s for s in GRF_SCENARIOS)}")
    unknown = sorted(set(params) - set(_GRF_DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {name}: expected a subset of "
                         f"{sorted(_GRF_DEFAULT_PARAMS)}")
    n_players, duration = GRF_SCENARIOS[scenario]
    resolved = {**_GRF_DEFAULT_PARAMS, **params}
    if resolved["max_steps"] is None:
        resolved["max_steps"] = duration
    _check_int("max_steps", resolved["max_steps"], 1)
    if resolved["max_steps"] > duration:
        raise ValueError(f"parameter 'max_steps' must be <= {duration} (GRF ends {scenario} there), "
                         f"got {resolved['max_steps']}")
    rewards = resolved["rewards"]
    if rewards not in ("scoring", "scoring,checkpoints"):
        raise ValueError(f"parameter 'rewards' must be 'scoring' or 'scoring,checkpoints', got {rewards!r}")
    agents = tuple(AgentSpec(f"player_{i}", "player", GRF_OBS_DIM, len(GRF_ACTIONS), GRF_LAYOUT, GRF_ACTIONS)
                   for i in range(n_players))
    return ScenarioSpec(
        name=GRF_PREFIX + scenario,
        params=resolved,
        agents=agents,
        state_dim=GRF_OBS_DIM * n_players,  # the critic sees every agent's observation (MAPPO's share_obs)
        max_cycles=int(resolved["max_steps"]),
        mpe2_module="gfootball.env",  # not mpe2: the module the environment comes from
        extra={"scenario": scenario, "representation": "simple115v2", "game_duration": duration,
               "safe_action": GRF_ACTIONS.index("idle")},
    )


def scenario_spec(name: str, **params: Any) -> ScenarioSpec:
    """Resolve a scenario name and parameters into its spec; unknown names or parameters raise ValueError.

    Accepts the mpe2 module name too (``simple_spread_v3``, ``mpe2.simple_spread_v3``), and SMAX maps as
    ``smax:<map>`` (``smax:3m``, ``smax:2s3z``; see ``SMAX_MAPS``), and Google Research Football as
    ``grf:<scenario>`` (``grf:academy_3_vs_1_with_keeper``; see ``GRF_SCENARIOS``).
    """
    if is_smax(name):
        return _smax_spec(name, params)
    if is_grf(name):
        return _grf_spec(name, params)
    if not isinstance(name, str):
        raise ValueError(f"scenario name must be a str, expected one of {', '.join(SCENARIOS)}; got {name!r}")
    key = name.removeprefix("mpe2.")
    for base, module in _MPE2_MODULES.items():
        if key == module.removeprefix("mpe2."):
            key = base
    if key not in _BUILDERS:
        raise ValueError(f"unknown scenario {name!r}: expected one of {', '.join(SCENARIOS)}")
    defaults = _DEFAULT_PARAMS[key]
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {key}: expected a subset of {sorted(defaults)}")
    resolved = {**defaults, **params}
    _check_int("max_cycles", resolved["max_cycles"], 1)
    agents, extra = _BUILDERS[key](resolved)
    return ScenarioSpec(
        name=key,
        params=resolved,
        agents=agents,
        state_dim=sum(a.obs_dim for a in agents),
        max_cycles=resolved["max_cycles"],
        mpe2_module=_MPE2_MODULES[key],
        extra=extra,
    )


def make_mpe2_env(spec: ScenarioSpec, render_mode: str | None = None) -> Any:
    """The real mpe2 ParallelEnv (numpy) for this spec, discrete actions; mpe2 is imported lazily."""
    module = importlib.import_module(spec.mpe2_module)
    return module.parallel_env(**spec.params, continuous_actions=False, render_mode=render_mode)


def task_metrics(scenario: str, world: Any) -> dict[str, float]:
    """Task figures of an mpe2 world's current state, with DESIGN.md section 5's definitions.

    Called after every step by the offline bundle evaluation and by the ROS simulation bridge, so both
    report like for like; ``collisions`` is per step and the caller sums it over the episode.
    """
    if scenario == "simple_spread":
        agents = np.array([a.state.p_pos for a in world.agents])
        landmarks = np.array([lm.state.p_pos for lm in world.landmarks])
        dists = np.linalg.norm(landmarks[:, None, :] - agents[None, :, :], axis=-1)
        covered = float(np.sum(dists.min(axis=1) < OCCUPANCY_DISTANCE))
        sizes = np.array([a.size for a in world.agents])
        pair = np.linalg.norm(agents[:, None, :] - agents[None, :, :], axis=-1)
        contact = pair < (sizes[:, None] + sizes[None, :])
        collisions = float(np.triu(contact, k=1).sum())
        return {"landmarks_covered": covered, "collisions": collisions}
    if scenario in ("simple_speaker_listener", "simple_reference"):
        dists = [
            float(np.linalg.norm(a.goal_a.state.p_pos - a.goal_b.state.p_pos))
            for a in world.agents
            if getattr(a, "_goal_a", None) is not None and getattr(a, "_goal_b", None) is not None
        ]
        return {"goal_distance": float(np.mean(dists))} if dists else {}
    return {}
