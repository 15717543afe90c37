"""Google Research Football (gfootball 2.10.2) behind the batched-environment contract, stepped in workers.

``make_env("grf:academy_3_vs_1_with_keeper", num_envs=B, seed=0, workers=2)`` gives B GRF games, every
controlled left player an agent, ``simple115v2`` observations (115 floats, named slices in
``kdmarl_student.scenarios.GRF_LAYOUT``), rewards ``scoring,checkpoints``, GRF's 19 default actions:

    obs, state = env.reset(seed=s)              # obs [B, N, 115], state [B, N * 115] (every agent's observation)
    obs, state = env.reset_from_seeds(seeds)    # evaluation: game b is the episode of seeds[b]
    obs, state, rewards, dones, info = env.step(actions)   # actions long [B, N]; rewards [B, N]; dones bool [B]

Why workers: GRF's C++ engine steps one game per call and holds the GIL, so one process cannot vectorise it
(about 300 env-steps/s per process, DESIGN.md section 6). The B games are split into contiguous slices
(``GrfSlice``), one per worker, and every step is sent to all workers before any answer is awaited:

- ``backend="process"`` (default): one worker process per slice, a pipe each (gymnasium's AsyncVectorEnv /
  CleanRL style), started with ``spawn`` (no fork of a process holding torch or Ray threads);
- ``backend="ray"``: one Ray actor per slice (1 CPU each). ``address`` is ``ray.init``'s (``"auto"`` or
  ``"ray://head:10001"``): on a cluster the actors spread over its nodes, so stepping scales with cores;
- ``backend="inline"``: the slice in this process (tests, and 1-core machines).

Seeds, and why the worker count never changes an episode: game b's k-th episode is started from the GRF
engine seed ``episode_seed(root_b, k)``, where ``root_b`` is ``(seed, b)`` after ``reset(seed)`` and ``(s,)``
after ``reset_from_seeds`` gave game b seed ``s`` (its first episode uses ``s`` itself). The seed of an episode
depends on the game's index and history only, never on which worker steps it, and GRF's
``reverse_team_processing`` (drawn from the first seed by GRF otherwise) is set from every episode's seed.

Episodes end when GRF ends them (goal, ball out of play, possession change, ``game_duration``) or at
``max_steps``; the step that ends one returns the first observation of the next (auto-reset) with
``info["episode_returns"]`` [B, N], ``info["metrics"]`` ``{"goal_diff", "won"}`` (left goals minus right goals
over the episode; won = goal_diff > 0, GRF academy's success) and ``info["episode_length"]``.
``available_actions()`` is None: every GRF action is always allowed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kdmarl_student.grf_game import GrfGame, episode_seed, import_gfootball
from kdmarl_student.scenarios import ScenarioSpec, scenario_spec

from .contract import adopt_spec, check_actions
from .core import check_batch_args

BACKENDS = ("process", "ray", "inline")


class GrfSlice:
    """Games ``indices`` of a batch, stepped one after another in one process (a worker's share).

    Each game is a ``kdmarl_student.grf_game.GrfGame`` (the one definition of an episode, shared with the bundle
    side); this adds the seed roots and the auto-reset. Plain numpy in and out, so the same object serves
    in-process, behind a pipe and as a Ray actor.
    """

    def __init__(self, spec_name: str, params: dict[str, Any], indices: list[int]) -> None:
        self.spec = spec = scenario_spec(spec_name, **params)
        self.indices = [int(i) for i in indices]
        self.n_agents = spec.n_agents
        self.games = [GrfGame(spec) for _ in self.indices]
        k = len(self.indices)
        self.roots: list[tuple[int, ...]] = [(0, i) for i in self.indices]
        self.episode = [0] * k
        self.returns = np.zeros((k, self.n_agents), dtype=np.float64)

    def _start(self, j: int) -> np.ndarray:
        """Start game j's next episode from its seed: obs [N, 115]."""
        self.returns[j] = 0.0
        return self.games[j].reset_array(episode_seed(self.roots[j], self.episode[j]))

    def reset(self, seed: int) -> np.ndarray:
        """Every game from ``seed``: game b's episodes follow root (seed, b). Returns obs [k, N, 115]."""
        self.roots = [(int(seed), i) for i in self.indices]
        self.episode = [0] * len(self.indices)
        return np.stack([self._start(j) for j in range(len(self.indices))])

    def reset_from_seeds(self, seeds: list[int]) -> np.ndarray:
        """Game j starts the episode of engine seed ``seeds[j]`` (later episodes follow root (seeds[j],))."""
        self.roots = [(int(s),) for s in seeds]
        self.episode = [0] * len(self.indices)
        return np.stack([self._start(j) for j in range(len(self.indices))])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """actions [k, N] -> obs [k, N, 115], rewards [k, N], done [k], returns [k, N] (of ended episodes),
        goal_diff [k], length [k] (valid where done); ended games already restarted."""
        k = len(self.indices)
        obs_out = np.zeros((k, self.n_agents, self.spec.agents[0].obs_dim), dtype=np.float32)
        rewards = np.zeros((k, self.n_agents), dtype=np.float32)
        done = np.zeros(k, dtype=bool)
        ended_returns = np.zeros((k, self.n_agents), dtype=np.float64)
        goal_diff = np.zeros(k, dtype=np.int64)
        length = np.zeros(k, dtype=np.int64)
        for j, game in enumerate(self.games):
            obs_out[j], rewards[j], done[j] = game.step_array(actions[j])
            self.returns[j] += rewards[j]
            if done[j]:
                ended_returns[j], goal_diff[j], length[j] = self.returns[j], game.metrics["goal_diff"], game.t
                self.episode[j] += 1
                obs_out[j] = self._start(j)
        return obs_out, rewards, done, ended_returns, goal_diff, length

    def close(self) -> None:
        for game in self.games:
            game.close()
        self.games = []


# ---- workers ----------------------------------------------------------------------------------------------------
def _worker_main(conn: Connection, spec_name: str, params: dict[str, Any], indices: list[int]) -> None:
    """A worker process: build the slice, then answer (method, args) requests until "close" or EOF."""
    try:
        games = GrfSlice(spec_name, params, indices)
    except BaseException:  # the parent re-raises it with the worker's traceback
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    try:
        while True:
            method, args = conn.recv()
            if method == "close":
                games.close()
                conn.send(("ok", None))
                return
            try:
                conn.send(("ok", getattr(games, method)(*args)))
            except Exception:  # a failed call is answered, the worker keeps serving
                conn.send(("error", traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        games.close()


class ProcessWorkers:
    """Slices in worker processes, one pipe each: ``call`` sends to every worker, then collects every answer."""

    def __init__(self, spec_name: str, params: dict[str, Any], slices: list[list[int]]) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for indices in slices:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(child, spec_name, params, indices), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self._collect("start")

    def _collect(self, what: str) -> list[Any]:
        out, errors = [], []
        for i, conn in enumerate(self.conns):
            try:
                status, value = conn.recv()
            except EOFError:
                status, value = "error", f"worker {i} exited (exit code {self.procs[i].exitcode})"
            if status != "ok":
                errors.append(f"GRF worker {i} ({what}):\n{value}")
            out.append(value)
        if errors:
            self.close()
            raise RuntimeError("\n".join(errors))
        return out

    def call(self, method: str, args_per_worker: list[tuple]) -> list[Any]:
        for conn, args in zip(self.conns, args_per_worker, strict=True):
            conn.send((method, args))
        return self._collect(method)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(BrokenPipeError, OSError):
                conn.send(("close", ()))
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Connect to Ray once: ``address`` as ``ray.init`` takes it, or a local Ray whose workers import kdmarl_*
    from where this process does (a source checkout on PYTHONPATH included)."""
    import ray  # noqa: PLC0415

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        return
    import kdmarl_student  # noqa: PLC0415

    dirs = [str(Path(__file__).resolve().parents[2]), str(Path(kdmarl_student.__file__).resolve().parents[1])]
    os.environ["PYTHONPATH"] = os.pathsep.join([*dirs, *filter(None, os.environ.get("PYTHONPATH", "").split(
        os.pathsep))])
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
             log_to_driver=False)


class RayWorkers:
    """Slices as Ray actors (1 CPU each): ``call`` submits to every actor, then ``ray.get``s every answer."""

    def __init__(self, spec_name: str, params: dict[str, Any], slices: list[list[int]], address: str | None
                 ) -> None:
        import ray  # noqa: PLC0415

        init_ray(address, num_cpus=max(len(slices), os.cpu_count() or 1))
        self._ray = ray
        actor_cls = ray.remote(num_cpus=1)(GrfSlice)
        self.actors = [actor_cls.remote(spec_name, params, indices) for indices in slices]

    def call(self, method: str, args_per_worker: list[tuple]) -> list[Any]:
        refs = [getattr(a, method).remote(*args) for a, args in zip(self.actors, args_per_worker, strict=True)]
        return self._ray.get(refs)

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []


class InlineWorkers:
    """The whole batch as one slice in this process."""

    def __init__(self, spec_name: str, params: dict[str, Any], slices: list[list[int]]) -> None:
        self.slices = [GrfSlice(spec_name, params, indices) for indices in slices]

    def call(self, method: str, args_per_worker: list[tuple]) -> list[Any]:
        return [getattr(s, method)(*args) for s, args in zip(self.slices, args_per_worker, strict=True)]

    def close(self) -> None:
        for s in self.slices:
            s.close()
        self.slices = []


# ---- the batched env ----------------------------------------------------------------------------------------------
class GrfBatchedEnv:
    """B GRF games as one batch (contract in the module docstring and ``envs.contract``)."""

    def __init__(self, scenario: str, num_envs: int = 1, seed: int | None = 0, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, *, workers: int | None = None, backend: str = "process",
                 address: str | None = None, **params: Any) -> None:
        check_batch_args(num_envs, dtype)
        if backend not in BACKENDS:
            raise ValueError(f"GRF backend must be one of {BACKENDS}, got {backend!r}")
        if workers is None:
            workers = 1 if backend == "inline" else min(num_envs, os.cpu_count() or 1)
        if not isinstance(workers, int) or not 1 <= workers <= num_envs:
            raise ValueError(f"GRF workers must be an int in [1, num_envs={num_envs}], got {workers!r}")
        self.spec: ScenarioSpec = scenario_spec(scenario, **params)
        adopt_spec(self, self.spec, num_envs, device, dtype)
        import_gfootball()  # fail here, in this process, with the install hint
        self.backend, self.workers = backend, workers
        self.slices = [s.tolist() for s in np.array_split(np.arange(num_envs), workers)]
        name, p = self.spec.name, dict(self.spec.params)
        if backend == "process":
            self._pool: Any = ProcessWorkers(name, p, self.slices)
        elif backend == "ray":
            self._pool = RayWorkers(name, p, self.slices, address)
        else:
            self._pool = InlineWorkers(name, p, self.slices)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)
        self.reset(seed=seed)

    def _tensor(self, x: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device, dtype or self.dtype)

    def _out(self, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        o = self._tensor(obs)
        return o, o.reshape(self.num_envs, -1)

    def reset(self, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every game from ``seed`` (None: a random one); returns obs [B, N, 115], state [B, N * 115]."""
        if seed is None:
            seed = int(torch.seed() % (2**31 - 1))
        obs = np.concatenate(self._pool.call("reset", [(int(seed),)] * self.workers))
        self.t.zero_()
        return self._out(obs)

    def reset_from_seeds(self, seeds: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Game b starts the episode of engine seed ``seeds[b]``: the same episode whatever B or the workers."""
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} seeds (one per environment), got {len(seeds)}")
        if any(not 0 <= s < 2**31 - 1 for s in seeds):
            raise ValueError("seeds must be in [0, 2**31 - 1)")
        obs = np.concatenate(self._pool.call("reset_from_seeds", [([seeds[i] for i in s],) for s in self.slices]))
        self.t.zero_()
        return self._out(obs)

    def available_actions(self) -> None:
        """None: every GRF action is always available."""
        return None

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """actions long [B, N] -> obs, state, rewards [B, N], dones bool [B], info (module docstring)."""
        a = check_actions(self, actions).cpu().numpy()
        parts = self._pool.call("step", [(a[s[0]:s[-1] + 1],) for s in self.slices])
        obs, rewards, done, returns, goal_diff, length = (np.concatenate(x) for x in zip(*parts, strict=True))
        dones = torch.from_numpy(done).to(self.device)
        self.t += 1
        self.t[dones] = 0
        goal_t = self._tensor(goal_diff)
        info = {"episode_returns": self._tensor(returns),
                "metrics": {"goal_diff": goal_t, "won": (goal_t > 0).to(self.dtype)},
                "episode_length": torch.from_numpy(length).to(self.device)}
        return *self._out(obs), self._tensor(rewards), dones, info

    def close(self) -> None:
        """Stop the workers (processes or actors); the env is unusable afterwards."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the workers may be gone already
            self.close()
