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

import contextlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from kdmarl_student.atomic import publish_directory
from kdmarl_student.manifest import (
    MANIFEST_FILE,
    action_mask_fields,
    build_agent_entry,
    build_manifest,
    dump_manifest,
    load_manifest,
    oldest_schema_version,
    sha256_file,
)
from kdmarl_student.scenarios import ScenarioSpec, observation_scale
from kdmarl_student.sensing import apply_sensing, history_dim, sensed_dim
from kdmarl_student.team_profile import DEFAULT_ENVELOPE_SECONDS, measure_envelope, measure_team
from torch import nn

from kdmarl_teacher.core.machine import cpu_model
from kdmarl_teacher.export.onnx_models import (
    INPUT_NAME,
    LOGGER,
    OPSET,
    OUTPUT_NAME,
    STATE_INPUT,
    STATE_OUTPUT,
    ExportAgent,
    export_onnx,
    linear_chain_resources,
)
from kdmarl_teacher.export.parity import (
    PARITY_RULE,
    cpu_session,
    episode_parity,
    parity_error,
    random_observations,
    refuse_nonfinite_weights,
)

TEACHER_FILE = "teacher_actor.onnx"
DEFAULT_CONTROL_RATE_HZ = 10.0  # MPE: dt = 0.1 s per step




# -------------------------------------------------------------------------------------------- agents








# ---------------------------------------------------------------------------------------- onnx steps






















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
    envelope_episodes: int = 0,
    envelope_seconds: float = DEFAULT_ENVELOPE_SECONDS,
) -> Path:
    """Write a complete bundle to ``out_dir`` atomically and return its path.

    Raises ``FileExistsError`` if ``out_dir`` exists and ``overwrite`` is false, ``ValueError`` if an agent
    does not fit the scenario or ONNX parity exceeds ``tolerance``. ``eval_seeds`` empty leaves the team
    figures null (not measured). ``envelope_episodes`` > 0 measures the envelope
    (:func:`kdmarl_student.team_profile.measure_envelope`) on the first that many evaluation seeds (from
    ``eval_seeds[0]`` on), stopping after about ``envelope_seconds``.
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
                communication={"topology": "none"}, **action_mask_fields(spec),
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
        if eval_seeds:  # measured from the staged bundle itself, as a robot-side tool would
            manifest["team"] = measure_team(stage, eval_seeds, has_teacher=teacher_entry is not None)
        if envelope_episodes > 0:
            first = int(eval_seeds[0]) if len(eval_seeds) else 1000
            manifest["envelope"] = measure_envelope(
                stage, range(first, first + envelope_episodes), time_budget_s=envelope_seconds,
                has_teacher=teacher_entry is not None, max_cycles=spec.max_cycles)
        if eval_seeds or envelope_episodes > 0:
            manifest["schema_version"] = oldest_schema_version(manifest)
            manifest_path.write_bytes(dump_manifest(manifest, manifest_path))
        load_manifest(stage)  # the runtime's own check of what is about to be published
        stage.chmod(0o755)  # mkdtemp makes it 0700; robots often run the node as another user
        publish_directory(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out_dir


# ------------------------------------------------------------------------------------------------ CLI




