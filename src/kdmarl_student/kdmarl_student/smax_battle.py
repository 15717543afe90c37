"""SMAX's battle rules in jax + numpy (no torch), and one battle stepped with numpy in and out.

This module owns what the teacher side's batched adapter (``kdmarl_teacher.envs.smax``) and the bundle side
(``kdmarl evaluate --bundle``, the ROS simulation bridge) share, so the two cannot drift apart:

- :func:`import_smax` / :func:`make_smax_env`: the raw JaxMARL ``HeuristicEnemySMAX`` of a SMAX ``ScenarioSpec``;
- :class:`SmaxRules`: one battle's pure functions, traceable by ``jax.jit``/``jax.vmap``: the key chain (every
  reset or step first splits the chain, ``key, sub = split(key)``, and hands ``sub`` to JaxMARL as its own
  ``reset(sub)`` / ``step(sub, ...)`` would get it; a step splits ``sub`` again into the step key and the key
  of JaxMARL's auto-reset), the stacked observations and available actions, the strong-typed state (one jit
  signature), and the end-of-battle figures (``won``, ``allies_alive``, ``enemy_hp_left``).

``SmaxBattle(spec)`` has the PettingZoo parallel API that ``kdmarl_student.bundle_eval`` and the exporter's
episode parity use for mpe2 (``reset(seed)``, ``agents``, ``step(actions)``), plus ``available_actions()``
(per agent a bool vector of ``n_actions``: SMAX's ``get_avail_actions``; "stop" is always available) and, after
the last step, ``metrics``. The battle of seed s is the one the teacher side's
``SmaxBatchedEnv.reset_from_seeds([s])`` plays: the chain starts at ``PRNGKey(s)`` and both step it with
:class:`SmaxRules`; the episode ends at its first ``done`` (no auto-reset: ``agents`` becomes empty). jax and
jaxmarl are imported on first use only.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from kdmarl_student.scenarios import ScenarioSpec


def import_smax() -> tuple[Any, Any, Any]:
    """jax, jax.numpy and jaxmarl's smax module; jaxmarl prints a line about submodules on import, swallowed."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import jax  # noqa: PLC0415
            import jax.numpy as jnp  # noqa: PLC0415
            from jaxmarl.environments import smax  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the bootstrap installs them
        raise ImportError(f"SMAX scenarios need jax and jaxmarl==0.2.0 (requirements/python.txt): {exc}") from exc
    return jax, jnp, smax


def make_smax_env(spec: ScenarioSpec) -> Any:
    """The raw JaxMARL ``HeuristicEnemySMAX`` for a SMAX spec (its params are the env's keyword arguments)."""
    _jax, _jnp, smax = import_smax()
    p = dict(spec.params)
    return smax.HeuristicEnemySMAX(scenario=smax.map_name_to_scenario(spec.extra["map_name"]),
                                   attack_mode=p.pop("attack_mode"), **p)


class SmaxRules:
    """One SMAX battle's pure functions (no Python state changes: safe under ``jit`` and ``vmap``)."""

    def __init__(self, raw: Any) -> None:
        self.jax, self.jnp, _smax = import_smax()
        self.raw = raw
        self.agents = list(raw.agents)
        self.n_allies = raw.num_allies
        self.unit_health = raw.unit_type_health

    def strong(self, tree: Any) -> Any:
        """Every leaf cast to a strong type of its dtype (values unchanged). SMAX's reset leaves some leaves
        weakly typed (the step counter, the heuristic enemy's last target) that its step makes strong; cast in
        reset AND step, a jitted step sees one input signature and never recompiles."""
        jax = self.jax
        return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)

    def stack(self, per_agent: dict) -> Any:
        """A per-agent dict (observations, rewards) as one array in agent order, [N, ...]."""
        return self.jnp.stack([per_agent[a] for a in self.agents], axis=0)

    def avail(self, state: Any) -> Any:
        """bool [N, n_actions]: SMAX's ``get_avail_actions``."""
        return self.stack(self.raw.get_avail_actions(state)).astype(self.jnp.bool_)

    def metrics(self, state: Any) -> dict[str, Any]:
        """The battle's figures in ``state`` (the state a step ends in, before any reset): ``won`` (all enemies
        dead and an ally alive, SMAX's won_battle bonus condition), ``allies_alive``, ``enemy_hp_left`` (the
        enemy team's remaining health as a fraction of its full health)."""
        jnp, n = self.jnp, self.n_allies
        inner = state.state
        alive = inner.unit_alive
        won = jnp.all(~alive[n:]) & jnp.any(alive[:n])
        hp = jnp.where(alive, inner.unit_health, 0.0)
        full = self.unit_health[inner.unit_types]
        return {"won": won.astype(jnp.float32), "allies_alive": jnp.sum(alive[:n]).astype(jnp.float32),
                "enemy_hp_left": jnp.sum(hp[n:]) / jnp.sum(full[n:])}

    def reset(self, key: Any) -> tuple[Any, Any, dict]:
        """(next key, strong state, JaxMARL's observation dict) of the battle that starts from chain ``key``."""
        key, sub = self.jax.random.split(key)
        obs, state = self.raw.reset(sub)
        return key, self.strong(state), obs

    def step(self, key: Any, state: Any, actions: Any) -> tuple[Any, Any, dict, Any, Any, Any]:
        """One step without the auto-reset: (next key, the auto-reset's key, observation dict, state, rewards [N],
        done). ``actions`` int [N] in agent order. JaxMARL's ``MultiAgentEnv.step`` is ``step_env`` with the
        first half of the split and ``reset`` with the second, which is what a caller that auto-resets does."""
        key, sub = self.jax.random.split(key)
        k_step, k_reset = self.jax.random.split(sub)
        obs, state, rewards, dones, _info = self.raw.step_env(
            k_step, state, {a: actions[i] for i, a in enumerate(self.agents)})
        return key, k_reset, obs, state, self.stack(rewards), dones["__all__"]


class SmaxBattle:
    """A single HeuristicEnemySMAX battle for a SMAX ``ScenarioSpec`` (one jit per function)."""

    def __init__(self, spec: ScenarioSpec) -> None:
        self.spec = spec
        self.possible_agents = list(spec.agent_names)
        self.agents: list[str] = []
        self.metrics: dict[str, float] = {}
        self.raw = make_smax_env(spec)
        rules = SmaxRules(self.raw)
        jax = self._jax = rules.jax

        def one_reset(key: Any) -> tuple[Any, ...]:
            key, state, obs = rules.reset(key)
            return key, state, rules.stack(obs), rules.avail(state)

        def one_step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
            key, _k_reset, obs, state, rewards, done = rules.step(key, state, actions)
            return key, rules.strong(state), rules.stack(obs), rules.avail(state), rewards, done, rules.metrics(state)

        self._reset, self._step = jax.jit(one_reset), jax.jit(one_step)
        self._key = self._state = self._mask = None

    def _obs(self, obs: Any) -> dict[str, np.ndarray]:
        arr = np.asarray(obs, dtype=np.float32)
        return {name: arr[i] for i, name in enumerate(self.possible_agents)}

    def reset(self, seed: int) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        self._key, self._state, obs, self._mask = self._reset(self._jax.random.PRNGKey(int(seed)))
        self.agents, self.metrics = list(self.possible_agents), {}
        return self._obs(obs), {a: {} for a in self.agents}

    def available_actions(self) -> dict[str, np.ndarray]:
        """Per agent bool [n_actions]: what may be picked in the current state."""
        mask = np.asarray(self._mask, dtype=bool)
        return {name: mask[i].copy() for i, name in enumerate(self.possible_agents)}

    def step(self, actions: dict[str, int]) -> tuple[dict, dict, dict, dict, dict]:
        act = np.asarray([int(actions.get(a, self.spec.extra["safe_action"])) for a in self.possible_agents],
                         dtype=np.int32)
        self._key, self._state, obs, self._mask, rewards, done, metrics = self._step(self._key, self._state, act)
        rewards = np.asarray(rewards, dtype=np.float64)
        done = bool(done)
        if done:
            self.metrics = {k: float(v) for k, v in metrics.items()}
        flags = {a: done for a in self.possible_agents}
        out = (self._obs(obs), {a: float(rewards[i]) for i, a in enumerate(self.possible_agents)}, flags,
               dict(flags), {a: {} for a in self.possible_agents})
        self.agents = [] if done else list(self.possible_agents)
        return out

    def close(self) -> None:
        pass
