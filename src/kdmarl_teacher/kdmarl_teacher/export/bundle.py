"""``kdmarl export runs/NAME --out bundles/NAME``: the team's deployable bundle.

A bundle is a directory with one ONNX model per agent, the teacher's shared actor as ONNX (for comparison
and benchmarks, never run by a node) and ``manifest.json``, the collaboration profile validated by
``kdmarl_student.manifest`` (schema 1.0, see docs/ARCHITECTURE.md). What the exporter guarantees:

- every model is ``onnx.checker``-clean, opset 18, one float input ``observation`` ``[batch, input_dim]``
  (dynamic batch) and one output ``logits`` ``[batch, n_actions]``; a recurrent student (issue 11) also takes
  its state ``h_in`` ``[batch, H]`` and gives ``h_out`` ``[batch, H]`` (the manifest's ``memory`` says so);
- ONNX and torch agree to ``--tolerance`` (1e-5) on at least 10 000 random inputs per agent (random states
  too, for a recurrent student) and, stepped exactly as a robot steps them (state carried, history
  features from the previous observation, reset at each episode start), over at least 10 000 steps of
  whole episodes of the real mpe2 environment with identical greedy actions, or the export fails (the
  figure goes in the manifest);
- the manifest lists sha256, parameters, FLOPs, memory, latency measured here, the hardware budget and
  whether it is met, and the team's teacher / student / random returns on the evaluation seeds, measured
  *from the staged bundle itself* with ``kdmarl_student.bundle_eval.evaluate_bundle``;
- the bundle appears atomically: everything is written into a temporary sibling directory, the manifest
  last, which is renamed into place only when complete. An interrupted export leaves at most a hidden
  ``.NAME.tmp-*`` directory, never a directory named like the bundle.

What is exported is a list of :class:`ExportAgent` (per agent: a torch module mapping the agent's *sensed*
observation ``[B, input_dim]`` to logits ``[B, n_actions]``, its sensing profile, its hardware budget).
Distilled students come from ``runs/NAME/students.pt``; until they exist, every agent gets the teacher's
shared actor with its one-hot baked in as a constant, so the ONNX input is exactly its own observation.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import logging
import os
import platform
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from kdmarl_student.bundle_eval import evaluate_bundle, make_bundle_env, retention
from kdmarl_student.manifest import (
    MANIFEST_FILE,
    action_mask_fields,
    build_agent_entry,
    build_manifest,
    dump_manifest,
    load_manifest,
    sha256_file,
)
from kdmarl_student.policy import session_options
from kdmarl_student.scenarios import ScenarioSpec, is_smax, observation_scale
from kdmarl_student.sensing import apply_sensing, history_dim, sensed_dim
from torch import nn

from kdmarl_teacher.algos.teacher import TEACHER_FILE as TEACHER_PT_FILE
from kdmarl_teacher.algos.teacher import load_teacher
from kdmarl_teacher.core.errors import NonFiniteError
from kdmarl_teacher.core.machine import cpu_model
from kdmarl_teacher.core.resources import module_resources
from kdmarl_teacher.core.run_files import nonfinite_tensors
from kdmarl_teacher.distill.students_file import FILE_NAME, read_students_payload, student_agents

LOGGER = logging.getLogger("kdmarl.export")

OPSET = 18
INPUT_NAME = "observation"
OUTPUT_NAME = "logits"
STATE_INPUT = "h_in"  # a recurrent student's state in and out (issue 11)
STATE_OUTPUT = "h_out"
TEACHER_FILE = "teacher_actor.onnx"
DEFAULT_CONTROL_RATE_HZ = 10.0  # MPE: dt = 0.1 s per step


@dataclass
class ExportAgent:
    """One agent's deployable policy, as the exporter needs it.

    Attributes:
        name: mpe2 agent name (``agent_0``, ``speaker_0``, ...).
        module: torch module, sensed observation ``[B, input_dim]`` -> logits ``[B, n_actions]``; it must
            be exportable by ``torch.onnx.export`` (plain MLPs are).
        sensing: the agent's sensing profile (``kdmarl_student.sensing`` vocabulary); ``{"slices": "all"}``
            for the full observation.
        kind: ``"student"`` (distilled) or ``"teacher_actor"`` (the teacher's actor standing in).
        budget: the hardware profile the model was built for (``name``, ``max_flops``, ``max_params``,
            ``max_memory_bytes``, ``max_latency_ms``, ``control_rate_hz``) or ``None``.
        resources: ``{"params", "flops_per_decision", "memory_bytes"}``; computed from the module's
            ``nn.Linear`` chain (``kdmarl_teacher.resources``) when ``None``.
        architecture: a short human description for the manifest (``"mlp[32, 32] tanh"``).
    """

    name: str
    module: nn.Module
    sensing: dict[str, Any] = field(default_factory=lambda: {"slices": "all"})
    kind: str = "student"
    budget: dict[str, Any] | None = None
    resources: dict[str, int] | None = None
    architecture: str = ""

    @property
    def state_dim(self) -> int:
        """A recurrent module's hidden size (its ONNX graph takes and gives the state); 0 otherwise."""
        return int(getattr(self.module, "state_dim", 0)) if getattr(self.module, "recurrent", False) else 0

    def memory(self, layout: dict) -> dict[str, Any] | None:
        """The manifest's ``memory`` entry: what the robot keeps between decisions (None: stateless)."""
        if self.state_dim:
            return {"kind": "recurrent", "state_dim": self.state_dim, "state_input": STATE_INPUT,
                    "state_output": STATE_OUTPUT}
        width = history_dim(layout, self.sensing)
        return {"kind": "history", "state_dim": width} if width else None


# -------------------------------------------------------------------------------------------- agents
class TeacherAgentActor(nn.Module):
    """The teacher's shared actor seen from one agent: own observation in, own logits out.

    Pads the observation to ``obs_dim_max``, appends the agent's one-hot as a constant buffer and keeps the
    agent's first ``n_actions`` logits (the others are masked for this agent anyway). The exported graph
    therefore needs nothing but the observation the environment publishes for this agent.
    """

    def __init__(self, actor: nn.Module, agent_index: int, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.actor = actor
        self.obs_dim = int(obs_dim)
        self.n_actions = int(n_actions)
        self.pad = int(actor.obs_dim_max) - self.obs_dim
        onehot = torch.zeros(1, int(actor.n_agents))
        onehot[0, agent_index] = 1.0
        self.register_buffer("onehot", onehot)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        batch = obs.shape[0]
        parts = [obs]
        if self.pad:
            parts.append(obs.new_zeros(batch, self.pad))
        parts.append(self.onehot.expand(batch, -1))
        return self.actor(torch.cat(parts, dim=-1))[:, : self.n_actions]


def linear_chain_resources(module: nn.Module) -> dict[str, int]:
    """FLOPs / params / memory of a module's ``nn.Linear`` layers, per ``kdmarl_teacher.resources``.

    Uses the shared accounting (Linear chain: 2 x MACs, weights + activation buffers); a module whose
    Linear layers do not form one chain (e.g. a recurrent actor) is counted layer by layer instead.
    """
    target = module.actor if isinstance(module, TeacherAgentActor) else module
    try:
        res = module_resources(target)
        return {"params": res.params, "flops_per_decision": res.flops, "memory_bytes": res.memory_bytes}
    except ValueError:
        linears = [m for m in target.modules() if isinstance(m, nn.Linear)]
        macs = sum(m.in_features * m.out_features for m in linears)
        params = sum(p.numel() for p in target.parameters())
        activations = sum(m.out_features for m in linears) + (linears[0].in_features if linears else 0)
        return {"params": params, "flops_per_decision": 2 * macs, "memory_bytes": 4 * (params + activations)}


def teacher_export_agents(teacher: Any) -> list[ExportAgent]:
    """Every agent gets the teacher's shared actor (one-hot baked in): a bundle before students exist."""
    spec: ScenarioSpec = teacher.spec
    hidden = [m.out_features for m in teacher.actor.modules() if isinstance(m, nn.Linear)][:-1]
    agents = []
    for i, agent in enumerate(spec.agents):
        module = TeacherAgentActor(teacher.actor, i, agent.obs_dim, agent.n_actions).eval()
        agents.append(ExportAgent(name=agent.name, module=module, sensing={"slices": "all"}, kind="teacher_actor",
                                  architecture=f"teacher actor mlp{hidden} (shared, one-hot {i})"))
    return agents


def load_student_agents(path: str | Path) -> list[ExportAgent]:
    """Distilled students from ``students.pt`` (format and version: ``kdmarl_teacher.students_file``)."""
    return [ExportAgent(name=a.name, module=a.module, sensing=a.sensing, kind="student", budget=a.budget,
                        resources=a.resources, architecture=a.architecture) for a in student_agents(path)]


# ---------------------------------------------------------------------------------------- onnx steps
def export_onnx(module: nn.Module, path: Path, input_dim: int, *, state_dim: int = 0, opset: int = OPSET,
                dynamo: bool = True) -> None:
    """Export ``module`` with a dynamic batch axis and check the result with ``onnx.checker``.

    With ``state_dim`` the module is one recurrent step, ``(observation, h_in) -> (logits, h_out)``, and the
    graph has those two inputs and outputs (explicit state: the robot's runtime owns it). ``dynamo=True`` uses
    torch's current exporter (``torch.export`` + onnxscript); ``False`` the legacy TorchScript one, kept for
    speed in tests and as a fallback. Both give the same graph for MLPs and GRU cells.
    """
    module = module.eval()
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, input_dim),)
    inputs, outputs = [INPUT_NAME], [OUTPUT_NAME]
    if state_dim:
        example += (torch.zeros(2, state_dim),)
        inputs, outputs = [INPUT_NAME, STATE_INPUT], [OUTPUT_NAME, STATE_OUTPUT]
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            onnx_program = torch.onnx.export(
                module, example, input_names=inputs, output_names=outputs, opset_version=opset,
                dynamic_shapes=tuple({0: batch} for _ in example), dynamo=True, verbose=False,
            )
            onnx_program.save(str(path))
        else:
            torch.onnx.export(
                module, example, str(path), input_names=inputs, output_names=outputs, opset_version=opset,
                dynamic_axes={name: {0: "batch"} for name in (*inputs, *outputs)}, dynamo=False,
            )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    for graph_input, width in zip(model.graph.input, (input_dim, state_dim), strict=False):
        dims = graph_input.type.tensor_type.shape.dim
        if len(dims) != 2 or not dims[0].dim_param or dims[1].dim_value != width:
            raise ValueError(f"{path}: exported input {graph_input.name!r} is not [batch, {width}] with a dynamic "
                             "batch axis")


def cpu_session(path: Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with the robot runtime's own options (so parity and latency describe what robots run)."""
    return ort.InferenceSession(str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"])


PARITY_RULE = "|onnx - torch| <= tolerance * max(1, max_j |torch_j|) for every logit of every observation"


def output_error(onnx_out: np.ndarray, torch_out: np.ndarray) -> tuple[float, float]:
    """(max |torch - ONNX|, the same scaled by max(1, largest |output| of that row)) of one batch [M, K].

    A NaN/Inf output on either side is an infinite difference: NaN compares False, so max() would skip it and
    a NaN model would read as parity 0.00."""
    finite = np.isfinite(onnx_out) & np.isfinite(torch_out)
    diff = np.full(onnx_out.shape, np.inf)
    diff[finite] = np.abs(onnx_out[finite] - torch_out[finite])
    scale = np.maximum(1.0, np.abs(np.where(finite, torch_out, 0.0)).max(axis=-1, keepdims=True))  # [M, 1]
    return float(diff.max()), float((diff / scale).max())


def parity_error(module: nn.Module, path: Path, inputs: np.ndarray, states: np.ndarray | None = None,
                 chunk: int = 4096) -> tuple[float, float]:
    """(max |torch - ONNX|, the same scaled by max(1, largest |logit| of that observation)) over ``inputs``
    (and, for a recurrent module, ``states`` [n, H]: both its outputs, logits and new state, are compared).

    The check uses the second figure: the float32 logits of a trained teacher on the outlier inputs of
    ``random_observations`` reach tens to hundreds, where 1e-5 absolute is below float32 resolution; for
    logits within ±1 it is the absolute bound.
    """
    session = cpu_session(path, threads=max(1, min(2, os.cpu_count() or 1)))
    worst_abs = worst_scaled = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), chunk):
            x = np.ascontiguousarray(inputs[start : start + chunk], dtype=np.float32)
            if states is None:
                pairs = [(session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], module(torch.from_numpy(x)).numpy())]
            else:
                h = np.ascontiguousarray(states[start : start + chunk], dtype=np.float32)
                onnx_logits, onnx_h = session.run([OUTPUT_NAME, STATE_OUTPUT], {INPUT_NAME: x, STATE_INPUT: h})
                torch_logits, torch_h = module(torch.from_numpy(x), torch.from_numpy(h))
                pairs = [(onnx_logits, torch_logits.numpy()), (onnx_h, torch_h.numpy())]
            for onnx_out, torch_out in pairs:
                abs_err, scaled_err = output_error(onnx_out, torch_out)
                worst_abs, worst_scaled = max(worst_abs, abs_err), max(worst_scaled, scaled_err)
    return worst_abs, worst_scaled


def refuse_nonfinite_weights(agents: Sequence[ExportAgent], teacher_actor: nn.Module | None) -> None:
    """Refuse to export a model holding NaN/Inf weights (a diverged training run): its logits are NaN for every
    observation, which a robot must never get. NonFiniteError names the agent (or teacher actor) and parameters."""
    models = [(f"agent {a.name} ({a.kind})", a.module) for a in agents]
    models += [("teacher actor", teacher_actor)] if teacher_actor is not None else []
    for what, module in models:
        bad = nonfinite_tensors(module.state_dict().items())
        if bad:
            raise NonFiniteError(f"{what}: non-finite (NaN/Inf) weights in {', '.join(bad)}: refusing to export; "
                                 "expected the finite weights of a run that did not diverge")


class Stepper:
    """One agent's policy stepped through an episode the way the robot's runtime steps it: the sensing
    transform with the previous observation (history features), the recurrent state carried from decision
    to decision, both reset at an episode start. ``run(x [1, in], h [1, H]) -> (logits [1, A], h')`` is the
    torch module or its ONNX Runtime session, so the two can be stepped side by side."""

    def __init__(self, agent: ExportAgent, layout: dict, run: Any) -> None:
        self.agent, self.layout, self.run = agent, layout, run
        self.reset()

    def reset(self) -> None:
        self.previous: np.ndarray | None = None
        self.h = np.zeros((1, self.agent.state_dim), np.float32)

    def step(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation, dtype=np.float32)[None]
        x = np.ascontiguousarray(apply_sensing(obs, self.layout, self.agent.sensing, self.previous), dtype=np.float32)
        logits, self.h = self.run(x, self.h)
        self.previous = obs
        return logits[0]


def torch_runner(agent: ExportAgent) -> Any:
    def run(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            if agent.state_dim:
                logits, h_new = agent.module(torch.from_numpy(x), torch.from_numpy(h))
                return logits.numpy(), h_new.numpy()
            return agent.module(torch.from_numpy(x)).numpy(), h
    return run


def onnx_runner(agent: ExportAgent, path: Path) -> Any:
    session = cpu_session(path, threads=1)

    def run(x: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if agent.state_dim:
            logits, h_new = session.run([OUTPUT_NAME, STATE_OUTPUT], {INPUT_NAME: x, STATE_INPUT: h})
            return logits, h_new
        return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], h
    return run


def episode_parity(spec: ScenarioSpec, agents: Sequence[ExportAgent], paths: dict[str, Path], steps: int, *,
                   seed: int, epsilon: float = 0.2) -> dict[str, dict[str, Any]]:
    """Torch and ONNX Runtime stepped side by side through whole mpe2 episodes until every agent made
    ``steps`` decisions: per agent the worst logit difference (absolute and scaled, as ``parity_error``), the
    number of steps and of greedy actions that differ (which must be 0), and the episodes.

    Agents act greedily with their torch module, with probability ``epsilon`` uniformly at random (seeded),
    so the record is not a handful of repeated trajectories; both sides see the same observations.
    """
    env = make_bundle_env(spec)
    masked = is_smax(spec.name)  # SMAX: greedy and random actions among the available ones
    rng = np.random.default_rng(seed)
    layouts = {a.name: a.layout for a in spec.agents}
    n_actions = {a.name: a.n_actions for a in spec.agents}
    sides = {a.name: (Stepper(a, layouts[a.name], torch_runner(a)),
                      Stepper(a, layouts[a.name], onnx_runner(a, paths[a.name]))) for a in agents}
    out = {a.name: {"max_abs_diff": 0.0, "max_scaled_diff": 0.0, "steps": 0, "action_mismatches": 0} for a in agents}
    episode = 0
    while min(o["steps"] for o in out.values()) < steps:
        obs, _ = env.reset(seed=seed + episode)
        episode += 1
        for torch_side, onnx_side in sides.values():
            torch_side.reset()
            onnx_side.reset()
        while env.agents:
            actions = {}
            masks = env.available_actions() if masked else {}
            for name in env.agents:
                torch_side, onnx_side = sides[name]
                torch_logits, onnx_logits = torch_side.step(obs[name]), onnx_side.step(obs[name])
                abs_err, scaled_err = output_error(onnx_logits[None], torch_logits[None])
                rec = out[name]
                rec["max_abs_diff"], rec["max_scaled_diff"] = max(rec["max_abs_diff"], abs_err), max(
                    rec["max_scaled_diff"], scaled_err)
                rec["steps"] += 1
                if name in masks:  # the actions compared are the ones the runtime picks: among the available ones
                    torch_logits = np.where(masks[name], torch_logits, -np.inf)
                    onnx_logits = np.where(masks[name], onnx_logits, -np.inf)
                rec["action_mismatches"] += int(np.argmax(torch_logits) != np.argmax(onnx_logits))
                greedy = int(np.argmax(torch_logits))
                explore = rng.random() < epsilon
                if explore and name in masks:
                    greedy = int(rng.choice(np.flatnonzero(masks[name])))
                elif explore:
                    greedy = int(rng.integers(n_actions[name]))
                actions[name] = greedy
            obs, _, _, _, _ = env.step(actions)
    env.close()
    for rec in out.values():
        rec["episodes"] = episode
    return out


def random_observations(n: int, dim: int, seed: int, scale: float = 1.5) -> np.ndarray:
    """Random observations at the scenario's scale and beyond: normal with sd `scale` (MPE: 1.5, positions of a
    few units; SMAX's normalized features: 0.5; ``kdmarl_student.scenarios.observation_scale``), a tenth of
    them 10x larger (outliers). Float32 rounding grows with the inputs, so inputs far outside the scenario's
    range would test rounding, not the export."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, (n, dim))
    x[: n // 10] *= 10.0
    return x.astype(np.float32)


def measure_latency(path: Path, input_dim: int, calls: int, warmup: int = 200, state_dim: int = 0) -> dict[str, Any]:
    """Batch-1, warm, single-thread ONNX Runtime latency of one session.run (DESIGN.md §5); a recurrent graph
    is run with its state fed back, as on the robot."""
    session = cpu_session(path, threads=1)
    feed = {INPUT_NAME: np.zeros((1, input_dim), dtype=np.float32)}
    outputs = [OUTPUT_NAME]
    if state_dim:
        feed[STATE_INPUT] = np.zeros((1, state_dim), dtype=np.float32)
        outputs.append(STATE_OUTPUT)

    def call() -> None:
        result = session.run(outputs, feed)
        if state_dim:
            feed[STATE_INPUT] = result[1]

    for _ in range(warmup):
        call()
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
    ms = times * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 5),
        "p99_ms": round(float(np.percentile(ms, 99)), 5),
        "max_ms": round(float(ms.max()), 5),
        "calls": calls,
        "machine": machine_name(),
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, 1 thread",
    }


def machine_name() -> str:
    return f"{platform.node()} ({cpu_model()}, {os.cpu_count()} cores)"


# ---------------------------------------------------------------------------------------- the bundle
def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        out["mpe2"] = importlib.metadata.version("mpe2")
    return out


def _return_stat(result: Any) -> dict[str, Any]:
    summary = result.summary()
    return {"mean": round(summary["mean"], 6), "ci95": round(summary["ci95"], 6), "episodes": summary["episodes"],
            "metrics": {k: round(v, 6) for k, v in summary["metrics"].items()}}


def export_bundle(
    *,
    spec: ScenarioSpec,
    agents: Sequence[ExportAgent],
    teacher_actor: nn.Module | None,
    out_dir: str | Path,
    source: str = "",
    control_rate_hz: float | None = None,
    eval_seeds: Sequence[int] = tuple(range(1000, 1100)),
    parity_random: int = 10_000,
    parity_recorded: int = 10_000,
    tolerance: float = 1e-5,
    latency_calls: int = 2_000,
    opset: int = OPSET,
    dynamo: bool = True,
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """Write a complete bundle to ``out_dir`` atomically and return its path.

    Raises ``FileExistsError`` if ``out_dir`` exists and ``overwrite`` is false, ``ValueError`` if an agent
    does not fit the scenario or ONNX parity exceeds ``tolerance``. ``eval_seeds`` empty leaves the team
    figures null (not measured).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists (use --force to replace it)")
    by_name = {a.name: a for a in agents}
    if sorted(by_name) != sorted(spec.agent_names):
        raise ValueError(f"agents {sorted(by_name)} do not match the scenario's {sorted(spec.agent_names)}")
    refuse_nonfinite_weights(agents, teacher_actor)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        pending, paths = [], {}
        for index, agent_spec in enumerate(spec.agents):
            agent = by_name[agent_spec.name]
            input_dim, state_dim = sensed_dim(agent_spec.layout, agent.sensing), agent.state_dim
            with torch.no_grad():
                probe = (agent.module(torch.zeros(1, input_dim), torch.zeros(1, state_dim))[0] if state_dim
                         else agent.module(torch.zeros(1, input_dim)))
            if tuple(probe.shape) != (1, agent_spec.n_actions):
                raise ValueError(f"{agent.name}: module maps [1, {input_dim}] to {tuple(probe.shape)}, expected "
                                 f"[1, {agent_spec.n_actions}]")
            model_file = f"{agent.name}.onnx"
            path = stage / model_file
            export_onnx(agent.module, path, input_dim, state_dim=state_dim, opset=opset, dynamo=dynamo)
            scale = observation_scale(spec.name)
            full = random_observations(parity_random, agent_spec.obs_dim, seed + index, scale)
            previous = None
            if history_dim(agent_spec.layout, agent.sensing):  # history features of random pairs of observations
                previous = random_observations(parity_random, agent_spec.obs_dim, seed + index + 4099, scale)
            inputs = apply_sensing(full, agent_spec.layout, agent.sensing, previous)
            states = None
            if state_dim:  # a GRU's state lies in (-1, 1)
                states = np.random.default_rng(seed + index + 8191).uniform(-1, 1, (len(inputs), state_dim))
            diff, scaled = parity_error(agent.module, path, inputs, states)
            if not scaled <= tolerance:
                raise ValueError(f"{agent.name}: ONNX and torch logits differ by {scaled:.3g} > {tolerance:g} "
                                 "(relative to max(1, max |logit|))")
            paths[agent.name] = path
            pending.append((agent_spec, agent, model_file, path, input_dim, diff, scaled, len(inputs)))
        episodes = (episode_parity(spec, agents, paths, parity_recorded, seed=seed + 7919) if parity_recorded else {})
        entries = []
        for agent_spec, agent, model_file, path, input_dim, random_diff, random_scaled, n_random in pending:
            rule, diff, scaled, n_checked = PARITY_RULE, random_diff, random_scaled, n_random
            if agent.name in episodes:
                ep = episodes[agent.name]
                if not ep["max_scaled_diff"] <= tolerance or ep["action_mismatches"]:
                    raise ValueError(f"{agent.name}: stepped through {ep['episodes']} mpe2 episodes, ONNX and torch "
                                     f"differ by {ep['max_scaled_diff']:.3g} (tolerance {tolerance:g}) and in "
                                     f"{ep['action_mismatches']} of {ep['steps']} greedy actions (expected 0)")
                diff, scaled = max(diff, ep["max_abs_diff"]), max(scaled, ep["max_scaled_diff"])
                n_checked += ep["steps"]
                rule += (f"; {n_random} random inputs{' and states' if agent.state_dim else ''}, then "
                         f"{ep['steps']} decisions stepped through {ep['episodes']} whole mpe2 episodes as the "
                         "runtime steps them (state carried, reset per episode) with identical greedy actions")
            budget = dict(agent.budget) if agent.budget else None
            rate = control_rate_hz or (budget or {}).get("control_rate_hz") or DEFAULT_CONTROL_RATE_HZ
            entries.append(build_agent_entry(
                name=agent.name, role=agent_spec.role, source_dim=agent_spec.obs_dim, layout=agent_spec.layout,
                sensing=agent.sensing, action_meanings=agent_spec.action_meanings, model_file=model_file,
                model_sha256=sha256_file(path), kind=agent.kind,
                resources=agent.resources or linear_chain_resources(agent.module), control_rate_hz=float(rate),
                opset=opset, budget=budget,
                latency=(measure_latency(path, input_dim, latency_calls, state_dim=agent.state_dim)
                         if latency_calls else None),
                parity={"max_abs_diff": diff, "max_scaled_diff": scaled, "n_observations": n_checked,
                        "tolerance": tolerance, "rule": rule},
                input_name=INPUT_NAME, output_name=OUTPUT_NAME, architecture=agent.architecture,
                model_bytes=path.stat().st_size, memory=agent.memory(agent_spec.layout),
                **action_mask_fields(spec),
            ))
            LOGGER.info("%s: exported (parity %.2g on %d observations)", agent.name, diff, n_checked)
        teacher_entry = None
        if teacher_actor is not None:
            teacher_in = int(teacher_actor.in_dim)
            path = stage / TEACHER_FILE
            export_onnx(teacher_actor, path, teacher_in, opset=opset, dynamo=dynamo)
            _, scaled = parity_error(teacher_actor, path, random_observations(
                2_000, teacher_in, seed + 99, observation_scale(spec.name)))
            if not scaled <= tolerance:
                raise ValueError(f"teacher actor: ONNX and torch logits differ by {scaled:.3g} > {tolerance:g} "
                                 "(relative to max(1, max |logit|))")
            teacher_entry = {
                "file": TEACHER_FILE, "sha256": sha256_file(path), "input_dim": teacher_in,
                "n_actions": int(teacher_actor.n_actions_max), "input_name": INPUT_NAME, "output_name": OUTPUT_NAME,
                "opset": opset, "resources": linear_chain_resources(teacher_actor),
                "latency": measure_latency(path, teacher_in, latency_calls) if latency_calls else None,
            }
        kinds = {a.kind for a in agents}
        manifest = build_manifest(
            scenario=spec, agents=entries, teacher=teacher_entry, eval_seeds=eval_seeds,
            producer={"tool": "kdmarl export", "source": source,
                      "students": "teacher_actor" if kinds == {"teacher_actor"} else "distilled",
                      "versions": _versions()},
        )
        manifest_path = stage / MANIFEST_FILE
        manifest_path.write_bytes(dump_manifest(manifest, manifest_path))
        if eval_seeds:
            team = manifest["team"]
            team["student_return"] = _return_stat(evaluate_bundle(stage, eval_seeds, actor="student"))
            team["random_return"] = _return_stat(evaluate_bundle(stage, eval_seeds, actor="random"))
            if teacher_entry is not None:
                team["teacher_return"] = _return_stat(evaluate_bundle(stage, eval_seeds, actor="teacher"))
                team["retention"] = retention(team["student_return"]["mean"], team["teacher_return"]["mean"],
                                              team["random_return"]["mean"])
            manifest_path.write_bytes(dump_manifest(manifest, manifest_path))
        load_manifest(stage)  # the runtime's own check of what is about to be published
        stage.chmod(0o755)  # mkdtemp makes it 0700; robots often run the node as another user
        for item in stage.iterdir():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
        _publish(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out_dir


def _publish(stage: Path, out_dir: Path) -> None:
    """Rename the finished staging directory into place; an old bundle is moved aside first, then removed."""
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        old.rmdir()
        os.replace(out_dir, old)
        os.replace(stage, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(stage, out_dir)
    with contextlib.suppress(OSError):  # make the rename durable where the filesystem allows it
        fd = os.open(out_dir.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run directory (teacher.pt and/or students.pt)")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to create (bundles/NAME)")
    parser.add_argument("--students", type=Path, default=None,
                        help="students file (default: RUN/students.pt if it exists, else the teacher's actor)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="teacher.pt (default: RUN/teacher.pt, else the teacher recorded in the students file)")
    parser.add_argument("--from-teacher", action="store_true",
                        help="export the teacher's actor for every agent even if students exist")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle (atomically)")
    parser.add_argument("--eval-episodes", type=int, default=100,
                        help="episodes for the team figures, seeds --eval-seed.. (0: leave them null)")
    parser.add_argument("--eval-seed", type=int, default=1000, help="first evaluation seed")
    parser.add_argument("--control-rate", type=float, default=None,
                        help="control rate in Hz (default: the hardware profile's, else 10 Hz, MPE's dt)")
    parser.add_argument("--parity-random", type=int, default=10_000, help="random observations per agent")
    parser.add_argument("--parity-recorded", type=int, default=10_000,
                        help="decisions per agent stepped through whole mpe2 episodes (torch vs ONNX Runtime)")
    parser.add_argument("--latency-calls", type=int, default=2_000, help="batch-1 calls timed per model")
    parser.add_argument("--legacy-exporter", action="store_true", help="use torch's TorchScript ONNX exporter")


def resolve_sources(run_dir: Path, students: Path | None, teacher: Path | None,
                    from_teacher: bool) -> tuple[Path, Path | None]:
    """Find teacher.pt and students.pt for a run directory.

    A distillation run keeps ``students.pt`` in its own directory and records the teacher's path and
    sha256 in it; a teacher run has ``teacher.pt``. So: ``--teacher`` if given, else ``RUN/teacher.pt``, else
    the teacher recorded in the students file (its sha256 must still match, or the students would be
    compared with a different teacher than the one they were distilled from).
    """
    students_path = None if from_teacher else (students or run_dir / FILE_NAME)
    if students is not None and not from_teacher and not students.is_file():
        raise FileNotFoundError(f"{students} does not exist")
    if students_path is not None and not students_path.is_file():
        students_path = None
    teacher_path = teacher or run_dir / TEACHER_PT_FILE
    if not teacher_path.is_file() and teacher is None and students_path is not None:
        info = read_students_payload(students_path).get("teacher") or {}
        if info.get("path"):
            teacher_path = Path(info["path"])
            if info.get("sha256") and teacher_path.is_file() and sha256_file(teacher_path) != info["sha256"]:
                raise ValueError(f"{teacher_path} changed since {students_path} was distilled from it (sha256)")
    if not teacher_path.is_file():
        raise FileNotFoundError(f"no teacher checkpoint: {teacher_path} (give --teacher PATH)")
    return teacher_path, students_path


def run(args: argparse.Namespace) -> int:
    teacher_path, students_path = resolve_sources(args.run, args.students, args.teacher, args.from_teacher)
    teacher = load_teacher(teacher_path)
    if students_path is not None:
        agents = load_student_agents(students_path)
        what = f"students from {students_path}, teacher {teacher_path}"
    else:
        agents = teacher_export_agents(teacher)
        what = f"the teacher's actor from {teacher_path} (no students)"
    seeds = list(range(args.eval_seed, args.eval_seed + args.eval_episodes))
    out = export_bundle(
        spec=teacher.spec, agents=agents, teacher_actor=teacher.actor, out_dir=args.out, source=str(args.run),
        control_rate_hz=args.control_rate, eval_seeds=seeds, parity_random=args.parity_random,
        parity_recorded=args.parity_recorded, latency_calls=args.latency_calls, dynamo=not args.legacy_exporter,
        overwrite=args.force,
    )
    manifest = load_manifest(out).data  # through the runtime's reader, like every other reader of a bundle
    print(f"kdmarl export: {out} ({what})")
    print(f"{'agent':<12} {'input':>5} {'params':>8} {'FLOPs':>9} {'p50 ms':>8} {'p99 ms':>8} {'parity':>9}  budget")
    for entry in manifest["agents"]:
        lat = entry["latency"] or {}
        print(f"{entry['name']:<12} {entry['observation']['input_dim']:>5} {entry['resources']['params']:>8} "
              f"{entry['resources']['flops_per_decision']:>9} {lat.get('p50_ms', float('nan')):>8.4f} "
              f"{lat.get('p99_ms', float('nan')):>8.4f} {entry['parity']['max_abs_diff']:>9.2e}  "
              f"{entry['budget']['profile'] or '-'} met={entry['budget']['met']}")
    team = manifest["team"]
    for key in ("teacher_return", "student_return", "random_return"):
        stat = team[key]
        if stat:
            print(f"{key:<15} {stat['mean']:8.3f} ± {stat['ci95']:.3f} ({stat['episodes']} episodes)")
    if team["retention"] is not None:
        print(f"retention       {team['retention']:.3f}")
    return 0
