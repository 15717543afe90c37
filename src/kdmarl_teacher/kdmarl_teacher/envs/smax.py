"""SMAX (JaxMARL's SMAC re-implementation) behind the batched-environment interface of the MPE port.

``make_env("smax:2s3z", num_envs=B, seed=0)`` gives B copies of JaxMARL's ``HeuristicEnemySMAX`` (our team =
the allies; the enemy is SMAX's heuristic), stepped by ONE jitted, vmapped function, with torch tensors out:

    obs, state = env.reset(seed=s)              # obs [B, N, obs_dim] float, state [B, state_dim]
    obs, state = env.reset_from_seeds(seeds)    # evaluation: battle b is the one of seeds[b]
    mask = env.available_actions()              # bool [B, N, n_actions]: SMAX get_avail_actions of the current state
    obs, state, rewards, dones, info = env.step(actions)   # actions long [B, N]; rewards [B, N]; dones bool [B]

- ``state`` is SMAX's ``world_state`` (every unit's health, position, cooldown, type one-hot, then teams and
  types), exactly what JaxMARL's MAPPO SMAX baseline (``SMAXWorldStateWrapper``) gives its critic before it
  appends the agent one-hot; our critic appends that one-hot itself (``networks.critic_inputs_all``).
- Episodes end by victory, defeat or SMAX's time limit (``max_steps`` = ``spec.max_cycles``); ``dones[b]`` then
  holds and ``obs[b]``/``state[b]`` already belong to the next episode (auto-reset, as JaxMARL's ``step``).
  ``info["episode_returns"]`` [B, N] (valid where done), ``info["final_obs"]``/``["final_state"]`` (before the
  reset) and ``info["metrics"]`` (valid where done): ``won`` (all enemies dead, an ally alive), ``allies_alive``
  and ``enemy_hp_left`` (the enemy team's remaining health as a fraction of its full health) at the end.
- Randomness: each environment b owns a JAX key chain. ``reset(seed=s)`` starts chain b at
  ``fold_in(PRNGKey(s), b)``, ``reset_from_seeds(seeds)`` at ``PRNGKey(seeds[b])`` (evaluation: seed s is the
  same episode whatever B is). Every reset or step first splits the chain (``key, sub = split(key)``) and hands
  ``sub`` to JaxMARL exactly as its own ``reset(sub)`` / ``step(sub, state, actions)`` would get it; a step is
  JaxMARL's ``MultiAgentEnv.step`` written out (``step_env`` + ``reset`` + select) only to also return the
  observation before the auto-reset. Tested identical to raw JaxMARL stepping with the same keys and actions.
- One compilation per function. Two things would give the jitted step a second signature (and a second 4-9 s
  compilation): SMAX's ``reset`` leaves some state leaves weakly typed that its ``step`` returns strongly typed
  (the heuristic enemy's last target), and jit keys its cache on whether inputs are committed to a device. So
  every state leaf is cast to its strong type (values unchanged) in reset and step, and keys and actions are
  committed to the CPU device; ``compile_counts()`` tells, and a test checks it stays 1 after any reset.
- JAX arrays reach torch through DLPack (``torch.from_dlpack``, zero-copy on CPU); actions go the other way.

The battle rules themselves (key chain, observations, masks, strong typing, won / allies_alive / enemy_hp_left)
are ``kdmarl_student.smax_battle.SmaxRules``, shared with the bundle side's ``SmaxBattle`` (what ``kdmarl
evaluate --bundle`` and the ROS bridge step); this adapter adds the batch, the auto-reset and torch. jax and
jaxmarl are imported only when a SMAX env is made, so the MPE path never pays for them. On a shared machine XLA's CPU
thread pool can be limited with ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (set before jax is imported).
"""

from __future__ import annotations

from typing import Any

import torch
from kdmarl_student.scenarios import scenario_spec
from kdmarl_student.smax_battle import SmaxRules, make_smax_env
from kdmarl_student.smax_battle import import_smax as _import_jax

from .contract import adopt_spec, check_actions
from .core import check_batch_args


def _to_torch(x: Any, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A JAX array as a torch tensor: zero-copy through DLPack on CPU, then cast/moved only if asked."""
    t = torch.from_dlpack(x)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t.to(device) if device.type != "cpu" else t


class SmaxBatchedEnv:
    """B SMAX battles as one batch (contract in the module docstring and docs/ARCHITECTURE.md)."""

    def __init__(self, scenario: str, num_envs: int = 1, seed: int | None = 0, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, **params: Any) -> None:
        check_batch_args(num_envs, dtype)
        self.spec = scenario_spec(scenario, **params)
        adopt_spec(self, self.spec, num_envs, device, dtype)
        jax, jnp, _smax = _import_jax()
        self._jax, self._jnp = jax, jnp
        # Every input of the jitted functions is committed to this device: jit keys its cache on committedness
        # too, and outputs of committed inputs are committed, so keys, state and actions keep one signature.
        self._jax_device = jax.devices("cpu")[0]
        self.raw = raw = make_smax_env(self.spec)
        rules = SmaxRules(raw)  # the battle rules, shared with the bundle side (kdmarl_student.smax_battle)
        select = jax.lax.select

        def one_reset(key: Any) -> tuple[Any, ...]:
            key, state, obs = rules.reset(key)
            return key, state, rules.stack(obs), obs["world_state"], rules.avail(state)

        def one_step(key: Any, state: Any, actions: Any) -> tuple[Any, ...]:
            # JaxMARL's MultiAgentEnv.step, written out to keep the observation before the auto-reset
            key, k_reset, obs_st, st_st, r, done = rules.step(key, state, actions)
            obs_re, st_re = raw.reset(k_reset)
            new_state = rules.strong(jax.tree.map(lambda x, y: select(done, x, y), st_re, st_st))
            new_obs = jax.tree.map(lambda x, y: select(done, x, y), obs_re, obs_st)
            return (key, new_state, rules.stack(new_obs), new_obs["world_state"], rules.avail(new_state), r, done,
                    rules.stack(obs_st), obs_st["world_state"], rules.metrics(st_st))

        self._reset_fn = jax.jit(jax.vmap(one_reset))
        self._step_fn = jax.jit(jax.vmap(one_step))
        self._keys: Any = None
        self._state: Any = None
        self._mask: Any = None
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # steps taken in each episode
        self.episode_returns = torch.zeros(num_envs, self.n_agents, dtype=torch.float64, device=self.device)
        self.reset(seed=seed)

    # ---- keys ------------------------------------------------------------------------------------------------
    def _keys_from_seed(self, seed: int | None) -> Any:
        jax, jnp = self._jax, self._jnp
        if seed is None:
            seed = int(torch.seed() % (2**31 - 1))
        base = jax.random.PRNGKey(int(seed))
        return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(self.num_envs, dtype=jnp.uint32))

    def _keys_from_seeds(self, seeds: list[int]) -> Any:
        jax, jnp = self._jax, self._jnp
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds (one per environment), got {len(seeds)}")
        if any(not 0 <= s < 2**31 for s in seeds):
            raise ValueError("seeds must be in [0, 2**31)")
        return jnp.stack([jax.random.PRNGKey(s) for s in seeds])

    # ---- interface -------------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reset all B environments; chain b restarts at ``fold_in(PRNGKey(seed), b)`` (``seed=None``: continue
        the current chains, or a random seed on the first reset). Returns obs [B, N, obs_dim], state [B, S]."""
        keys = self._keys if (seed is None and self._keys is not None) else self._keys_from_seed(seed)
        return self._reset_keys(keys)

    def reset_from_seeds(self, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Environment b starts the episode of seed ``seeds[b]`` (its chain begins at ``PRNGKey(seeds[b])``):
        seed s is the same battle whatever B is (evaluation on fixed seeds)."""
        return self._reset_keys(self._keys_from_seeds(seeds))

    def _reset_keys(self, keys: Any) -> tuple[torch.Tensor, torch.Tensor]:
        keys = self._jax.device_put(keys, self._jax_device)
        self._keys, self._state, obs, world, self._mask = self._reset_fn(keys)
        self.t.zero_()
        self.episode_returns.zero_()
        return self._out(obs), self._out(world)

    def available_actions(self) -> torch.Tensor:
        """bool [B, N, n_actions]: SMAX's ``get_avail_actions`` of the current state (what may be picked now).
        "stop" is always available, so every row has at least one True; dead units may only stop."""
        return _to_torch(self._mask, self.device)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Step all B battles with ``actions`` long [B, N] (an unavailable action is what SMAX does with it:
        an attack out of range or on a dead enemy does nothing). Same returns as ``BatchedMPEEnv.step``."""
        actions = check_actions(self, actions)
        act = self._jax.device_put(self._jnp.from_dlpack(actions.detach().to("cpu", torch.int32).contiguous()),
                                   self._jax_device)
        (self._keys, self._state, obs, world, self._mask, rewards, done, final_obs, final_world,
         metrics) = self._step_fn(self._keys, self._state, act)
        rewards_t = _to_torch(rewards, self.device, self.dtype)
        dones = _to_torch(done, self.device).clone()
        self.t += 1
        self.episode_returns += rewards_t.double()
        info = {"episode_returns": self.episode_returns.to(self.dtype),  # a copy (or cloned below)
                "final_obs": self._out(final_obs), "final_state": self._out(final_world),
                "metrics": {k: _to_torch(v, self.device, self.dtype) for k, v in metrics.items()},
                "episode_length": self.t.clone()}
        if self.dtype == torch.float64:
            info["episode_returns"] = info["episode_returns"].clone()
        self.episode_returns[dones] = 0.0
        self.t[dones] = 0
        return self._out(obs), self._out(world), rewards_t, dones, info

    def _out(self, x: Any) -> torch.Tensor:
        return _to_torch(x, self.device, self.dtype)

    def compile_counts(self) -> dict[str, int]:
        """How many signatures each jitted function has compiled (1 each after the first step: no recompiles)."""
        return {"reset": self._reset_fn._cache_size(), "step": self._step_fn._cache_size()}

    def close(self) -> None:
        """Nothing to release (the PettingZoo adapter's interface has it)."""
