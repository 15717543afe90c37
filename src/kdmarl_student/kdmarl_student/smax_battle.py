"""One SMAX battle stepped with numpy in and out (jax + jaxmarl, no torch): what the bundle side runs on SMAX.

``SmaxBattle(spec)`` has the PettingZoo parallel API that ``kdmarl_student.bundle_eval`` and the exporter's
episode parity use for mpe2 (``reset(seed)``, ``agents``, ``step(actions)``), plus ``available_actions()``
(per agent a bool vector of ``n_actions``: SMAX's ``get_avail_actions``; "stop" is always available) and, after
the last step, ``metrics`` (``won``, ``allies_alive``, ``enemy_hp_left``). The battle of seed s is the one the
teacher side's ``SmaxBatchedEnv.reset_from_seeds([s])`` plays: the key chain starts at ``PRNGKey(s)``, every
reset and step splits it exactly as that adapter does, and the episode ends at its first ``done`` (no
auto-reset: ``agents`` becomes empty). jax and jaxmarl are imported on first use only.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from kdmarl_student.scenarios import ScenarioSpec


class SmaxBattle:
    """A single HeuristicEnemySMAX battle for a SMAX ``ScenarioSpec`` (one jit per function)."""

    def __init__(self, spec: ScenarioSpec) -> None:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # jaxmarl prints a line on import
                import jax  # noqa: PLC0415
                import jax.numpy as jnp  # noqa: PLC0415
                from jaxmarl.environments import smax  # noqa: PLC0415
        except ImportError as exc:  # pragma: no cover - the bootstrap installs them
            raise ImportError(f"SMAX scenarios need jax and jaxmarl==0.2.0: {exc}") from exc
        self.spec = spec
        self.possible_agents = list(spec.agent_names)
        self.agents: list[str] = []
        self.metrics: dict[str, float] = {}
        p = dict(spec.params)
        raw = smax.HeuristicEnemySMAX(scenario=smax.map_name_to_scenario(spec.extra["map_name"]),
                                      attack_mode=p.pop("attack_mode"), **p)
        names, n_allies, unit_health = list(raw.agents), raw.num_allies, raw.unit_type_health
        self._jax = jax

        def avail(state: Any) -> Any:
            masks = raw.get_avail_actions(state)
            return jnp.stack([masks[a] for a in names]).astype(jnp.bool_)

        def one_reset(key: Any) -> tuple[Any, ...]:
            key, sub = jax.random.split(key)
            obs, state = raw.reset(sub)
            return key, state, jnp.stack([obs[a] for a in names]), avail(state)

        def one_step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
            key, sub = jax.random.split(key)
            k_step, _k_reset = jax.random.split(sub)
            obs, state, rewards, dones, _ = raw.step_env(k_step, state, {a: actions[i] for i, a in enumerate(names)})
            inner = state.state
            alive = inner.unit_alive
            hp = jnp.where(alive, inner.unit_health, 0.0)
            full = unit_health[inner.unit_types]
            metrics = {"won": (jnp.all(~alive[n_allies:]) & jnp.any(alive[:n_allies])).astype(jnp.float32),
                       "allies_alive": jnp.sum(alive[:n_allies]).astype(jnp.float32),
                       "enemy_hp_left": jnp.sum(hp[n_allies:]) / jnp.sum(full[n_allies:])}
            return (key, state, jnp.stack([obs[a] for a in names]), avail(state),
                    jnp.stack([rewards[a] for a in names]), dones["__all__"], metrics)

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
