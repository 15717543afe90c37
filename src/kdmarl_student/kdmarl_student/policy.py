"""``StudentPolicy``: one agent of a bundle, ready to act on a robot.

Construction does every check that can fail *before* the robot moves (manifest, signature, sha256, ONNX
inputs and outputs against the manifest, one dummy inference on the chosen execution provider), so that
at run time the only expected failures are a bad observation, which raises a typed
:class:`~kdmarl_student.errors.ObservationError`, and NaN/Inf logits from a broken graph, which raise
:class:`~kdmarl_student.errors.PolicyOutputError`; the node answers both with the safe action.

The model is read once (:meth:`~kdmarl_student.manifest.Manifest.read_model`: bounded, hashed, no ONNX
external data) and ONNX Runtime is given those very bytes, never the path: a file swapped between the
hash and the load cannot run (issue 9).

Runtime choices follow rl_sar and NVIDIA's Isaac Sim policy node: ONNX Runtime with one intra-op thread
(a robot runs several processes on few cores; one thread is also the fastest for batch-1 MLPs), and an
accelerator (TensorRT, CUDA) only after a dummy inference proved it works on this device —
``get_available_providers()`` lists what was compiled in, not what runs.

Students with memory (manifest schema 1.1, ``agents[].memory``) keep a state per policy: the previous
observation for history features (``kind: history``, computed here in numpy by the sensing transform) or
the hidden state of a recurrent graph (``kind: recurrent``: inputs ``observation`` and ``h_in``, outputs
``logits`` and ``h_out``). :meth:`StudentPolicy.act` advances it exactly once per accepted decision; a
refused observation or output leaves it as it was; :meth:`StudentPolicy.reset` starts an episode.

Imports: numpy, onnxruntime, psutil, jsonschema (on load), cryptography (only to verify a signature). Never torch,
never kdmarl_teacher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from kdmarl_student.budget import check_budget
from kdmarl_student.errors import BundleError, DecisionTimeoutError, ObservationError, PolicyOutputError
from kdmarl_student.manifest import AgentEntry, Manifest, load_manifest
from kdmarl_student.metering import LatencyMeter, ProcessMeter, ResourceSnapshot
from kdmarl_student.observation import all_finite, make_selector, validate_observation
from kdmarl_student.onnx_session import (  # re-exported: the session is opened and checked there
    ACCELERATED_PROVIDERS,
    CPU_PROVIDER,
    check_session_io,
    dim_is_dynamic,
    open_session,
    session_options,
)
from kdmarl_student.sensing import history_plan

LOGGER = logging.getLogger("kdmarl_student.policy")

class StudentPolicy:
    """One agent's policy from a bundle: ``act(full_observation) -> action index``.

    Args:
        bundle_dir: bundle directory (``manifest.json`` + ONNX files).
        agent: agent name as in the manifest (``agent_0``, ``listener_0``, ...).
        public_key: ed25519 public key (object, PEM bytes or path); when set, unsigned or badly signed
            bundles are refused.
        require_signature: defaults to ``public_key is not None``.
        intra_op_num_threads: ONNX Runtime threads; 1 by default (see module docstring).
        providers: ``"auto"`` (TensorRT > CUDA > CPU, each proven by a dummy inference) or a list.
        deterministic: greedy actions (argmax) by default; ``False`` samples from the softmax.
        seed: seed of the sampling generator (sampling is reproducible per policy instance).
        latency_window: ring-buffer size of the latency percentiles.
        model: ``"student"`` (default) or ``"teacher"`` to run the teacher actor shipped in the bundle
            for this agent (comparison and benchmarks; its one-hot and padding are added here; always
            stateless).

    Memory (``memory_kind`` "history" or "recurrent", ``stateful`` True): the policy carries one agent's state.
    :meth:`act` and :meth:`step_logits` advance it once per accepted observation; :meth:`reset` is an episode
    start (zeros for a recurrent state, "no previous observation" for history features); :attr:`state` is a
    read-only copy. :meth:`logits` and :meth:`act_batch` cannot know the state of a batch and raise
    ``ValueError`` on a stateful policy; :meth:`logits_with_state` is the pure, batched form.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        agent: str,
        *,
        public_key: Any = None,
        require_signature: bool | None = None,
        intra_op_num_threads: int = 1,
        providers: Sequence[str] | str = "auto",
        deterministic: bool = True,
        seed: int | None = None,
        latency_window: int = 10_000,
        model: str = "student",
    ) -> None:
        started = time.perf_counter()
        self.manifest: Manifest = load_manifest(bundle_dir, public_key=public_key, require_signature=require_signature)
        self.spec: AgentEntry = self.manifest.agent(agent)
        if self.spec.communication["topology"] != "none":  # schema 1.3: a student that listens needs its messages
            raise BundleError(self.manifest.path, f"{self.spec.field_prefix}.communication.topology",
                              f"'none' (this runtime delivers no messages between agents); got "
                              f"{self.spec.communication['topology']!r}")
        self.name = agent
        self.deterministic = deterministic
        self._rng = np.random.default_rng(seed)
        self._memory: dict[str, Any] | None = None
        if model == "student":
            model_file = self.manifest.read_model(self.spec)
            self._input_name, self._output_name = self.spec.input_name, self.spec.output_name
            self.input_dim = self.spec.input_dim
            self._select = make_selector(self.spec.layout, self.spec.sensing, self.spec.source_dim)
            output_width = self.spec.n_actions
            field_prefix = f"{self.spec.field_prefix}.model"
            self._memory = self.spec.memory
        elif model == "teacher":
            model_file = self.manifest.read_teacher_model()
            teacher = self.manifest.data["teacher"]
            self._input_name, self._output_name = teacher["input_name"], teacher["output_name"]
            self.input_dim = int(teacher["input_dim"])
            self._select = self._teacher_input_builder(int(teacher["input_dim"]))
            output_width = int(teacher["n_actions"])
            field_prefix = "teacher"
        else:
            raise ValueError(f"model must be 'student' or 'teacher', got {model!r}")
        self._kind = "none" if self._memory is None else str(self._memory["kind"])
        self._state_dim = 0 if self._memory is None else int(self._memory["state_dim"])
        self._state_input = self._state_output = ""
        if self._kind == "recurrent":
            assert self._memory is not None
            self._state_input, self._state_output = self._memory["state_input"], self._memory["state_output"]
        self.model_path = model_path = model_file.path
        self.session, self.provider = open_session(
            model_file.data, self._input_name, self.input_dim, providers=providers,
            intra_op_num_threads=intra_op_num_threads, source=model_path,
            state_inputs={self._state_input: self._state_dim} if self._kind == "recurrent" else None,
        )
        memory_prefix = f"{self.spec.field_prefix}.memory"
        wanted_in = [(self._input_name, self.input_dim, f"{field_prefix}.input_name",
                      "observation input_dim of the manifest, from its layout and sensing")]
        wanted_out = [(self._output_name, output_width, f"{field_prefix}.output_name", "n_actions")]
        if self._kind == "recurrent":
            wanted_in.append((self._state_input, self._state_dim, f"{memory_prefix}.state_input",
                              f"{memory_prefix}.state_dim"))
            wanted_out.append((self._state_output, self._state_dim, f"{memory_prefix}.state_output",
                               f"{memory_prefix}.state_dim"))
        check_session_io(self.session, model_path, wanted_in, wanted_out)
        self._n_outputs = output_width
        self._inflight: tuple[ort.RunOptions, float] | None = None  # the run in progress and its start (steady)
        self._h: np.ndarray | None = None  # recurrent: [1, H]
        self._previous: np.ndarray | None = None  # history: the last accepted full observation [source_dim]
        self.reset()
        if self.provider == CPU_PROVIDER:
            if providers == "auto" and any(p in ort.get_available_providers() for p in ACCELERATED_PROVIDERS):
                LOGGER.warning("%s: accelerated execution providers failed on this device; running on CPU", agent)
            elif providers == "auto":
                LOGGER.warning("%s: no CUDA/TensorRT execution provider in this onnxruntime; running on CPU", agent)
        self.latency = LatencyMeter(latency_window)
        self.process = ProcessMeter()
        self.rejected_observations = 0
        self.non_finite_outputs = 0  # decisions refused because the graph returned NaN/Inf logits
        self.deadline_overruns = 0  # runs cancelled by cancel_overdue()
        self.load_seconds = time.perf_counter() - started

    # ----------------------------------------------------------------------------------------- checks
    def _teacher_input_builder(self, teacher_input_dim: int):
        """The shared teacher actor wants [obs zero-padded to obs_dim_max, agent one-hot]."""
        n_agents = len(self.manifest.agents)
        obs_dim_max = teacher_input_dim - n_agents
        source_dim, index = self.spec.source_dim, self.spec.index

        def build(obs: np.ndarray) -> np.ndarray:
            out = np.zeros((*obs.shape[:-1], teacher_input_dim), dtype=np.float32)
            out[..., :source_dim] = obs
            out[..., obs_dim_max + index] = 1.0
            return out

        return build

    # ---------------------------------------------------------------------------------------- running
    @property
    def safe_action(self) -> int:
        """What the node does when it cannot trust its input (from the manifest; MPE: no-op)."""
        return self.spec.safe_action

    @property
    def source_dim(self) -> int:
        return self.spec.source_dim

    # ----------------------------------------------------------------------------------------- memory
    @property
    def memory_kind(self) -> str:
        """``"none"`` (stateless), ``"history"`` (previous observation) or ``"recurrent"`` (hidden state)."""
        return self._kind

    @property
    def stateful(self) -> bool:
        return self._kind != "none"

    @property
    def state_dim(self) -> int:
        """Numbers of state kept between decisions (the manifest's ``memory.state_dim``; 0 when stateless)."""
        return self._state_dim

    @property
    def state(self) -> np.ndarray | None:
        """A read-only copy of the state: ``[H]`` for a recurrent policy; for history features the previous
        observation's history slices ``[state_dim]``, or None right after a reset; None when stateless."""
        if self._kind == "recurrent":
            assert self._h is not None
            out = self._h[0].copy()
        elif self._kind == "history" and self._previous is not None:
            _, plan = history_plan(self.spec.layout, self.spec.sensing)
            out = np.concatenate([self._previous[start:stop] for _, start, stop in plan])
        else:
            return None
        out.flags.writeable = False
        return out

    def reset(self) -> None:
        """Start an episode: a recurrent state of zeros, no previous observation for history features
        (the next observation stands in for it). A no-op for a stateless policy."""
        self._h = np.zeros((1, self._state_dim), np.float32) if self._kind == "recurrent" else None
        self._previous = None

    def _require_stateless(self, method: str) -> None:
        if self.stateful:
            raise ValueError(f"{self.name}: {method}() cannot know the state of a batch for a student with memory "
                             f"({self._kind}, {self._state_dim} values); use act() / step_logits() step by step, "
                             "or logits_with_state() with explicit states")

    # ---------------------------------------------------------------------------------------- running
    def logits(self, observations: Any) -> np.ndarray:
        """Raw logits for full observations ``[source_dim]`` -> ``[n_actions]`` or ``[B, source_dim]`` ->
        ``[B, n_actions]``. Validates the input (``ObservationError``) and the output: any NaN/Inf logit
        raises ``PolicyOutputError`` (counted in :attr:`non_finite_outputs`); not metered (offline use).
        Stateless policies only (``ValueError`` otherwise; see :meth:`logits_with_state`)."""
        self._require_stateless("logits")
        obs = validate_observation(observations, self.spec.source_dim, self.name)
        batch = obs if obs.ndim == 2 else obs[None]
        out, _ = self._forward(batch, None)
        return out if obs.ndim == 2 else out[0]

    def logits_with_state(self, observations: Any, state: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Pure batched step: full observations ``[B, source_dim]`` and their states -> (logits ``[B, n_actions]``,
        next states). Leaves the policy's own state alone; validated like :meth:`logits`, not metered.

        ``state``: recurrent, ``[B, H]`` hidden states (``None`` = zeros, an episode start); history features,
        ``[B, source_dim]`` previous full observations (``None`` = an episode start); stateless, ``None``. The
        next states have the same form (the observations themselves for history features; ``None`` when
        stateless), so ``logits, state = policy.logits_with_state(obs_t, state)`` steps B episodes at once.
        """
        obs = validate_observation(observations, self.spec.source_dim, self.name)
        if obs.ndim != 2:
            raise ObservationError(self.name, "shape", f"logits_with_state() takes [B, {self.spec.source_dim}]; "
                                   f"got shape {obs.shape}")
        if state is not None:
            width = self._state_dim if self._kind == "recurrent" else self.spec.source_dim
            state = np.ascontiguousarray(state, dtype=np.float32)
            if self._kind == "none" or state.shape != (obs.shape[0], width):
                raise ValueError(f"{self.name}: state must be None or [{obs.shape[0]}, {width}] for memory "
                                 f"{self._kind!r}; got shape {state.shape}")
        return self._forward(obs, state)

    def _forward(self, batch: np.ndarray, state: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Run the graph on validated full observations [B, source_dim] from ``state`` (see
        :meth:`logits_with_state`); refuse NaN/Inf logits or state before anyone acts or keeps it.

        A broken graph (a NaN weight, Log of a negative, 0/0) gives NaN logits, and ``argmax`` over NaN
        is an arbitrary action: the robot must never act on it, nor carry a NaN state into the next step.
        """
        if self._kind == "history":
            (out,) = self._run([self._output_name], {self._input_name: self._select(batch, state)})
            next_state: np.ndarray | None = batch.copy()
        elif self._kind == "recurrent":
            h = np.zeros((batch.shape[0], self._state_dim), np.float32) if state is None else state
            out, next_state = self._run([self._output_name, self._state_output],
                                        {self._input_name: self._select(batch), self._state_input: h})
            if next_state.shape != (batch.shape[0], self._state_dim):
                raise PolicyOutputError(self.name, "output_shape", f"state {self._state_output!r} of shape "
                                        f"{list(next_state.shape)}, expected [{batch.shape[0]}, {self._state_dim}]")
        else:
            (out,) = self._run([self._output_name], {self._input_name: self._select(batch)})
            next_state = None
        if out.shape != (batch.shape[0], self._n_outputs):  # a width that depends on the data is the model's fault
            raise PolicyOutputError(self.name, "output_shape", f"logits of shape {list(out.shape)}, expected "
                                    f"[{batch.shape[0]}, {self._n_outputs}]")
        out = out[:, : self.spec.n_actions]
        if not (all_finite(out[0]) if out.shape[0] == 1 else bool(np.isfinite(out).all())):
            self.non_finite_outputs += 1
            rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
            raise PolicyOutputError(self.name, "non_finite_logits",
                                    f"{rows.size} of {out.shape[0]} observation(s) gave NaN/Inf logits, first "
                                    f"{out[rows[0]].tolist()}")
        if self._kind == "recurrent" and not np.isfinite(next_state).all():
            self.non_finite_outputs += 1
            raise PolicyOutputError(self.name, "non_finite_state",
                                    f"the recurrent state {self._state_output!r} went NaN/Inf; state kept as it was")
        return out, next_state

    def _run(self, fetch: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``session.run`` with its own ``RunOptions``, visible to :meth:`cancel_overdue` while it runs."""
        options = ort.RunOptions()
        self._inflight = (options, time.perf_counter())
        try:
            return self.session.run(fetch, feeds, options)
        except Exception as exc:
            if options.terminate:
                self.deadline_overruns += 1
                raise DecisionTimeoutError(self.name, "deadline",
                                           "ONNX Runtime cancelled the run at its deadline") from exc
            raise
        finally:
            self._inflight = None

    def cancel_overdue(self, deadline_s: float, now: float | None = None) -> bool:
        """Cancel the run in flight if it started more than ``deadline_s`` ago (thread-safe: meant for another
        thread; ONNX Runtime checks the flag between operators). The decision then raises
        :class:`~kdmarl_student.errors.DecisionTimeoutError`. True when a run was cancelled."""
        inflight = self._inflight  # one read: the run may end meanwhile, its own RunOptions stays its own
        if inflight is None:
            return False
        options, started = inflight
        if (time.perf_counter() if now is None else now) - started <= deadline_s or options.terminate:
            return False
        options.terminate = True
        return True

    def cancel(self) -> bool:
        """Cancel the run in flight now, whatever its age (a stop request); True when there was one."""
        inflight = self._inflight
        if inflight is None:
            return False
        inflight[0].terminate = True
        return True

    @property
    def busy_since(self) -> float | None:
        """Steady-clock start of the run in flight, None when idle."""
        inflight = self._inflight
        return None if inflight is None else inflight[1]

    def _own_state(self) -> np.ndarray | None:
        if self._kind == "recurrent":
            return self._h
        if self._kind == "history" and self._previous is not None:
            return self._previous[None]
        return None

    def _commit(self, next_state: np.ndarray | None) -> None:
        if self._kind == "recurrent":
            self._h = next_state
        elif self._kind == "history":
            assert next_state is not None
            self._previous = next_state[0]

    def _validated_one(self, observation: Any, method: str) -> np.ndarray:
        try:
            obs = validate_observation(observation, self.spec.source_dim, self.name)
        except ValueError:
            self.rejected_observations += 1
            raise
        if obs.ndim != 1:
            self.rejected_observations += 1
            raise ObservationError(self.name, "shape", f"{method}() takes one observation; got shape {obs.shape}")
        return obs

    @property
    def action_mask(self) -> dict[str, Any] | None:
        """The manifest's ``action.mask`` (schema 1.2): how available actions are obtained (SMAX: per step from
        the environment, ``always_available`` the safe action); None: every action is always available (MPE)."""
        return self.spec.action_mask

    def check_mask(self, mask: Any) -> np.ndarray:
        """A mask of available actions -> bool ``[n_actions]`` (or ``[B, n_actions]``); ValueError naming the agent
        and what was expected for a wrong shape, non-boolean values or a row that allows no action."""
        arr = np.asarray(mask)
        n = self.spec.n_actions
        if arr.ndim not in (1, 2) or arr.shape[-1] != n:
            raise ValueError(f"{self.name}: action mask must have {n} entries (one per action: "
                             f"{', '.join(self.spec.action_meanings)}); got shape {list(arr.shape)}")
        if arr.dtype != np.bool_:
            if not np.issubdtype(arr.dtype, np.integer) or not np.isin(arr, (0, 1)).all():
                raise ValueError(f"{self.name}: action mask must be booleans (or 0/1); got dtype {arr.dtype}")
            arr = arr.astype(bool)
        empty = ~arr.any(axis=-1)
        if np.any(empty):
            raise ValueError(f"{self.name}: action mask allows no action; expected at least one available action "
                             f"(the safe action {self.spec.safe_action} is always available in a valid mask)")
        return arr

    def act(self, observation: Any, deterministic: bool | None = None, mask: Any = None) -> int:
        """Action index for one full observation (the environment's or adapter's per-agent vector).

        ``mask``: the available actions of this step (bool ``[n_actions]``, SMAX's ``get_avail_actions``; see
        :attr:`action_mask`): the action is chosen among them only (greedy: the best available logit; sampled:
        unavailable actions get probability 0). A wrong length or an all-false mask is a ``ValueError`` (see
        :meth:`check_mask`), raised before the model runs or the state advances. ``None``: every action.

        Raises ``ObservationError`` on a wrong length, non-numeric values, NaN or Inf, and
        ``PolicyOutputError(agent, "non_finite_logits" | "non_finite_state", ...)`` when the model returns a
        NaN/Inf logit or recurrent state (checked before an action is chosen; counted in
        :attr:`non_finite_outputs`); the caller answers both with :attr:`safe_action`, and the state (if any)
        is left as it was. An accepted decision advances the state once. The recorded latency covers the
        whole decision (validation, sensing, inference, action choice): that is what the robot pays; refused
        decisions are not recorded.
        """
        started = time.perf_counter()
        allowed = None if mask is None else self.check_mask(mask)
        if allowed is not None and allowed.ndim != 1:
            raise ValueError(f"{self.name}: act() takes one mask of {self.spec.n_actions} entries; got shape "
                             f"{list(allowed.shape)}")
        obs = self._validated_one(observation, "act")
        out, next_state = self._forward(obs[None], self._own_state())
        self._commit(next_state)
        greedy = self.deterministic if deterministic is None else deterministic
        if greedy and allowed is None:  # the common case in Python on a short list: fewer cold numpy paths per call
            row = out[0].tolist()
            action = row.index(max(row))  # the first maximum, as np.argmax
        else:
            logits = out[0] if allowed is None else np.where(allowed, out[0], -np.inf)
            action = int(np.argmax(logits)) if greedy else self._sample(logits)
        self.latency.record(time.perf_counter() - started)
        return action

    def step_logits(self, observation: Any) -> np.ndarray:
        """Logits ``[n_actions]`` for one full observation, advancing the state like :meth:`act` (offline
        evaluation with the caller's own sampling; not metered). Raises what :meth:`act` raises, and a refused
        observation or output leaves the state as it was. On a stateless policy it equals :meth:`logits`."""
        obs = self._validated_one(observation, "step_logits")
        out, next_state = self._forward(obs[None], self._own_state())
        self._commit(next_state)
        return out[0]

    def act_batch(self, observations: Any, deterministic: bool | None = None, mask: Any = None) -> np.ndarray:
        """Actions [B] for full observations [B, source_dim] (offline evaluation; not metered); ``mask`` bool
        [B, n_actions] (or one [n_actions] for every row) as in :meth:`act`.

        Raises ``PolicyOutputError`` if any observation of the batch gives NaN/Inf logits (see :meth:`logits`);
        stateless policies only (``ValueError`` otherwise).
        """
        self._require_stateless("act_batch")
        allowed = None if mask is None else self.check_mask(mask)
        logits = self.logits(observations)
        logits = logits if logits.ndim == 2 else logits[None]
        if allowed is not None:
            logits = np.where(allowed, logits, -np.inf)
        greedy = self.deterministic if deterministic is None else deterministic
        if greedy:
            return logits.argmax(axis=-1)
        return np.array([self._sample(row) for row in logits], dtype=np.int64)

    def _sample(self, logits: np.ndarray) -> int:
        z = logits.astype(np.float64) - float(logits.max())
        probs = np.exp(z)  # a masked (-inf) logit gets probability 0
        probs /= probs.sum()
        return int(self._rng.choice(probs.size, p=probs))

    # -------------------------------------------------------------------------------------- reporting
    def snapshot(self) -> ResourceSnapshot:
        """The figures a node publishes: latency percentiles, CPU, RSS, model cost and budget status.

        The budget is re-checked here with the latency measured *on this device* (the manifest's latency
        was measured on the export machine).
        """
        lat = self.latency.summary()
        met, checks = check_budget(self.spec.budget, self.spec.resources, lat["p99_ms"])
        return ResourceSnapshot(
            agent=self.name,
            decisions=self.latency.total,
            latency_p50_ms=lat["p50_ms"],
            latency_p99_ms=lat["p99_ms"],
            latency_max_ms=lat["max_ms"],
            cpu_percent=self.process.cpu_percent(),
            rss_bytes=self.process.rss_bytes(),
            flops_per_decision=self.spec.resources["flops_per_decision"],
            params=self.spec.resources["params"],
            memory_bytes=self.spec.resources["memory_bytes"],
            budget_met=met,
            budget_checks=checks,
            rejected_observations=self.rejected_observations,
            provider=self.provider,
            non_finite_outputs=self.non_finite_outputs,
        )


__all__ = ["ACCELERATED_PROVIDERS", "CPU_PROVIDER", "StudentPolicy", "dim_is_dynamic", "open_session",
           "session_options"]
